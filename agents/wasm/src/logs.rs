//! stdout and stderr: written to a file up to a cap, the rest counted and dropped. Writes never
//! block nor fail, so a module flooding its output only spends its own fuel and time.

use std::fs::File;
use std::io::Write;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError};

#[derive(Debug)]
struct State {
    file: File,
    cap: u64,
    kept: u64,
    total: u64,
    error: Option<std::io::Error>,
}

/// One capped log (stdout or stderr). Clones share it.
#[derive(Debug, Clone)]
pub struct CappedLog {
    state: Arc<Mutex<State>>,
}

/// What a [`CappedLog`] saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogStats {
    /// Bytes the module wrote.
    pub total: u64,
    /// Bytes kept in the file.
    pub kept: u64,
}

impl LogStats {
    pub fn truncated(&self) -> bool {
        self.total > self.kept
    }
}

impl CappedLog {
    /// Writes into `file`, keeping at most `cap` bytes.
    pub fn new(file: File, cap: u64) -> Self {
        CappedLog {
            state: Arc::new(Mutex::new(State {
                file,
                cap,
                kept: 0,
                total: 0,
                error: None,
            })),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock leaves counters that are still consistent.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn append(&self, bytes: &[u8]) {
        let mut s = self.lock();
        s.total = s.total.saturating_add(bytes.len() as u64);
        let room = s.cap.saturating_sub(s.kept);
        let n = usize::try_from(room).unwrap_or(usize::MAX).min(bytes.len());
        if n == 0 || s.error.is_some() {
            return;
        }
        match s.file.write_all(&bytes[..n]) {
            Ok(()) => s.kept += n as u64,
            Err(e) => s.error = Some(e),
        }
    }

    /// Appends a note from the engine itself, past the cap (it is short and says why the run
    /// ended). Not counted in [`LogStats::total`].
    pub fn note(&self, text: &str) -> std::io::Result<()> {
        let mut s = self.lock();
        s.file.write_all(text.as_bytes())
    }

    /// The counts, and the first error writing the file (the host's disk, not the module).
    pub fn finish(&self) -> std::io::Result<LogStats> {
        let mut s = self.lock();
        if let Some(e) = s.error.take() {
            return Err(e);
        }
        s.file.sync_all()?;
        Ok(LogStats {
            total: s.total,
            kept: s.kept,
        })
    }
}

impl IsTerminal for CappedLog {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for CappedLog {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[wasmtime_wasi::async_trait]
impl OutputStream for CappedLog {
    fn write(&mut self, bytes: Bytes) -> Result<(), StreamError> {
        self.append(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> Result<(), StreamError> {
        Ok(())
    }

    fn check_write(&mut self) -> Result<usize, StreamError> {
        Ok(1 << 20)
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for CappedLog {
    async fn ready(&mut self) {}
}

impl tokio::io::AsyncWrite for CappedLog {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        self.append(buf);
        std::task::Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_up_to_the_cap_and_counts_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("stdout");
        let mut log = CappedLog::new(File::create(&path).unwrap(), 10);
        OutputStream::write(&mut log, Bytes::from_static(b"hello ")).unwrap();
        OutputStream::write(&mut log, Bytes::from_static(b"world, again")).unwrap();
        log.note("!").unwrap();
        let stats = log.finish().unwrap();
        assert_eq!(stats, LogStats { total: 18, kept: 10 });
        assert!(stats.truncated());
        assert_eq!(std::fs::read(&path).unwrap(), b"hello worl!");
    }
}
