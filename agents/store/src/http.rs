//! A hardened HTTP/1.1 server loop for the store's servers (and any axum [`Router`] an agent
//! exposes to strangers).
//!
//! `axum::serve` has no header-read timeout, no idle or write timeout and no connection limit:
//! a thousand half-open connections exhaust a process's file descriptors (then unrelated file
//! writes fail with "Too many open files"), and downloads that are never read hold their
//! connections for ever. [`serve_router`] adds, per [`ServerLimits`]:
//!
//! * a cap on concurrent connections, and on connections per client IP (over it, a new
//!   connection is closed at once; a flood from one address cannot take every slot);
//! * a header-read timeout (hyper's, per request) and an idle timeout (no byte read or written);
//! * a write timeout: a response that cannot be written for that long (the client stopped
//!   reading) closes the connection;
//! * accept errors (EMFILE, ENFILE) slow the loop down instead of ending it.
//!
//! The defaults follow the process's file limit (`RLIMIT_NOFILE`): at most a quarter of it goes
//! to connections, so the rest of the process keeps room for its own files.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tracing::{debug, warn};

use crate::error::{Result, StoreError};

/// Limits of one server. [`Default`] sizes the connection caps from `RLIMIT_NOFILE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerLimits {
    /// Connections open at once; more are closed as they arrive.
    pub max_connections: usize,
    /// Connections open at once from one IP address.
    pub max_connections_per_ip: usize,
    /// Time a client has to send a request's headers (hyper's `header_read_timeout`).
    pub header_read_timeout: Duration,
    /// A connection on which nothing is read or written for this long is closed (between
    /// requests too).
    pub idle_timeout: Duration,
    /// A response write blocked this long (the client is not reading) closes the connection.
    pub write_timeout: Duration,
}

impl Default for ServerLimits {
    /// `max_connections` = a quarter of the soft file limit (between 16 and 4096; 256 under
    /// systemd's default 1024), a quarter of that per IP, 10 s for headers, 60 s idle, 30 s
    /// blocked writes.
    fn default() -> Self {
        let max_connections = (nofile_soft_limit() / 4).clamp(16, 4096) as usize;
        ServerLimits {
            max_connections,
            max_connections_per_ip: (max_connections / 4).max(4),
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            write_timeout: Duration::from_secs(30),
        }
    }
}

/// The soft `RLIMIT_NOFILE` of this process, from `/proc/self/limits` (1024 when unknown).
pub fn nofile_soft_limit() -> u64 {
    std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|text| {
            let line = text.lines().find(|l| l.starts_with("Max open files"))?;
            let soft = line.split_whitespace().nth(3)?;
            if soft == "unlimited" {
                Some(u64::MAX)
            } else {
                soft.parse().ok()
            }
        })
        .unwrap_or(1024)
}

/// Live counters of a server (for logs and tests).
#[derive(Debug, Default)]
pub struct ServerStats {
    open: AtomicUsize,
    refused: AtomicU64,
    timed_out: AtomicU64,
}

impl ServerStats {
    /// Connections open now.
    pub fn open_connections(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }
    /// Connections closed on arrival because a limit was reached.
    pub fn refused_connections(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }
    /// Connections closed by the idle or write timeout.
    pub fn timed_out_connections(&self) -> u64 {
        self.timed_out.load(Ordering::Relaxed)
    }
}

/// A running server: its address, its task (abort it to stop), its counters.
#[derive(Debug)]
pub struct Server {
    /// The address bound (port 0 picks a free port).
    pub addr: SocketAddr,
    /// The accept loop. Aborting it stops accepting; open connections finish on their own.
    pub task: JoinHandle<io::Result<()>>,
    /// Counters.
    pub stats: Arc<ServerStats>,
}

/// Binds `addr` and serves `app` with `limits` in a background task.
pub async fn serve_router(app: Router, addr: SocketAddr, limits: &ServerLimits) -> Result<Server> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| StoreError::Bind { addr, source })?;
    let bound = listener
        .local_addr()
        .map_err(|source| StoreError::Bind { addr, source })?;
    let stats = Arc::new(ServerStats::default());
    let task = tokio::spawn(accept_loop(listener, app, limits.clone(), stats.clone()));
    Ok(Server {
        addr: bound,
        task,
        stats,
    })
}

/// Connections per IP, released when a connection ends.
#[derive(Default)]
struct PerIp(Mutex<HashMap<IpAddr, usize>>);

impl PerIp {
    fn try_take(&self, ip: IpAddr, max: usize) -> bool {
        let mut map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let n = map.entry(ip).or_insert(0);
        if *n >= max {
            return false;
        }
        *n += 1;
        true
    }

    fn release(&self, ip: IpAddr) {
        let mut map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(n) = map.get_mut(&ip) {
            *n -= 1;
            if *n == 0 {
                map.remove(&ip);
            }
        }
    }
}

async fn accept_loop(
    listener: TcpListener,
    app: Router,
    limits: ServerLimits,
    stats: Arc<ServerStats>,
) -> io::Result<()> {
    let per_ip = Arc::new(PerIp::default());
    let service = TowerToHyperService::new(app);
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors (or a connection reset before accept): wait a
                // little and go on; ending the loop would take the server down.
                warn!(error = %e, "accept failed; retrying in 100 ms");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let ip = peer.ip();
        if stats.open.load(Ordering::Relaxed) >= limits.max_connections
            || !per_ip.try_take(ip, limits.max_connections_per_ip)
        {
            stats.refused.fetch_add(1, Ordering::Relaxed);
            debug!(%peer, "connection refused: limit reached");
            drop(stream);
            continue;
        }
        stats.open.fetch_add(1, Ordering::Relaxed);
        let (service, limits, stats, per_ip) = (
            service.clone(),
            limits.clone(),
            stats.clone(),
            per_ip.clone(),
        );
        tokio::spawn(async move {
            serve_connection(stream, service, &limits, &stats).await;
            per_ip.release(ip);
            stats.open.fetch_sub(1, Ordering::Relaxed);
        });
    }
}

async fn serve_connection(
    stream: TcpStream,
    service: TowerToHyperService<Router>,
    limits: &ServerLimits,
    stats: &ServerStats,
) {
    let _ = stream.set_nodelay(true);
    let activity = Arc::new(Activity::new());
    let io = TokioIo::new(Watched {
        inner: stream,
        activity: activity.clone(),
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .keep_alive(true)
        .serve_connection(io, service);
    tokio::pin!(conn);
    let tick = Duration::from_millis(250)
        .min(limits.write_timeout / 4)
        .max(Duration::from_millis(10));
    let mut interval = tokio::time::interval(tick);
    loop {
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    debug!(error = %e, "connection ended with an error");
                }
                return;
            }
            _ = interval.tick() => {
                if let Some(why) = activity.expired(limits) {
                    stats.timed_out.fetch_add(1, Ordering::Relaxed);
                    debug!(why, "closing connection");
                    return; // dropping the connection closes the socket
                }
            }
        }
    }
}

/// When a connection last made progress, and since when a write has been blocked.
struct Activity {
    start: Instant,
    /// Milliseconds since `start` of the last byte read or written.
    last: AtomicU64,
    /// Milliseconds since `start` when the pending write began blocking (valid if `blocked`).
    blocked_since: AtomicU64,
    blocked: AtomicBool,
}

impl Activity {
    fn new() -> Self {
        Activity {
            start: Instant::now(),
            last: AtomicU64::new(0),
            blocked_since: AtomicU64::new(0),
            blocked: AtomicBool::new(false),
        }
    }

    fn now(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }

    fn progressed(&self) {
        self.last.store(self.now(), Ordering::Relaxed);
    }

    fn expired(&self, limits: &ServerLimits) -> Option<&'static str> {
        let now = self.now();
        if self.blocked.load(Ordering::Relaxed)
            && now.saturating_sub(self.blocked_since.load(Ordering::Relaxed))
                >= limits.write_timeout.as_millis() as u64
        {
            return Some("write timeout: the client is not reading");
        }
        if now.saturating_sub(self.last.load(Ordering::Relaxed))
            >= limits.idle_timeout.as_millis() as u64
        {
            return Some("idle timeout");
        }
        None
    }
}

/// A socket that records its progress in an [`Activity`].
struct Watched {
    inner: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let poll = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(poll, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.progressed();
        }
        poll
    }
}

impl Watched {
    fn track(&self, poll: &Poll<io::Result<usize>>) {
        match poll {
            Poll::Pending => {
                if !self.activity.blocked.swap(true, Ordering::Relaxed) {
                    self.activity
                        .blocked_since
                        .store(self.activity.now(), Ordering::Relaxed);
                }
            }
            Poll::Ready(result) => {
                self.activity.blocked.store(false, Ordering::Relaxed);
                if matches!(result, Ok(n) if *n > 0) {
                    self.activity.progressed();
                }
            }
        }
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write(cx, data);
        self.track(&poll);
        poll
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.track(&poll);
        poll
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_follow_the_file_limit() {
        let limits = ServerLimits::default();
        assert!(limits.max_connections >= 16);
        assert!(limits.max_connections as u64 <= nofile_soft_limit().max(64));
        assert!(limits.max_connections_per_ip < limits.max_connections);
        assert!(nofile_soft_limit() >= 16);
    }

    #[test]
    fn per_ip_counts_and_releases() {
        let per_ip = PerIp::default();
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        assert!(per_ip.try_take(ip, 2));
        assert!(per_ip.try_take(ip, 2));
        assert!(!per_ip.try_take(ip, 2));
        assert!(per_ip.try_take("127.0.0.2".parse().unwrap(), 2));
        per_ip.release(ip);
        assert!(per_ip.try_take(ip, 2));
    }
}
