//! Hosts of its own for a test: a network namespace per host, each with one address on a LAN
//! (a bridge inside a namespace the test made), and processes started inside them. Nothing is
//! configured outside the namespaces it creates, and all of them are removed when the [`Lan`]
//! is dropped, on failure too. Needs root and `ip` (iproute2).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Why namespaces cannot be made here (not root, no `ip`), or `None` when they can.
pub fn unavailable() -> Option<String> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return Some("not running as root (network namespaces need CAP_SYS_ADMIN)".into());
    }
    match Command::new("ip").arg("-V").stdout(Stdio::null()).stderr(Stdio::null()).status() {
        Ok(s) if s.success() => None,
        _ => Some("`ip` (iproute2) is not installed".into()),
    }
}

/// Skips (returns true, printing why) when namespaces cannot be made here, or fails when
/// `LILYPAD_REQUIRE_NETNS=1` (CI: the multi-host tests must run, not skip).
pub fn skip(test: &str) -> bool {
    let Some(why) = unavailable() else { return false };
    if std::env::var("LILYPAD_REQUIRE_NETNS").is_ok_and(|v| v == "1") {
        panic!("{test}: {why}, and LILYPAD_REQUIRE_NETNS=1 says this test must run");
    }
    eprintln!("SKIPPED {test}: {why} (run as root with iproute2; LILYPAD_REQUIRE_NETNS=1 makes this a failure)");
    true
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(out.status.success(), "ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
}

/// A host: a network namespace with one address on the LAN.
#[derive(Clone, Debug)]
pub struct Host {
    pub name: String,
    pub ns: String,
    pub ip: String,
}

impl Host {
    /// `program` run inside this host's namespace (`ip netns exec`).
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.ns]).arg(program);
        c
    }

    /// Takes this host's link down (`ip link set eth0 down`): it can reach no one, and no one it.
    pub fn cut(&self) {
        ip(&["-n", &self.ns, "link", "set", "eth0", "down"]);
    }

    /// Joins this host's network namespace, for the calling thread only (sockets it opens and
    /// processes it starts are then on this host).
    pub fn enter_on_this_thread(&self) {
        let path = format!("/run/netns/{}", self.ns);
        let f = std::fs::File::open(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        use std::os::fd::AsRawFd;
        // SAFETY: a valid namespace file descriptor; CLONE_NEWNET changes only this thread's
        // network namespace.
        let rc = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns {path}: {}", std::io::Error::last_os_error());
    }
}

/// Hosts on one LAN (10.77.0.0/24): a namespace holding the bridge, and one namespace per
/// host linked to it by a veth pair. Names carry this process's id and a counter, so that
/// runs side by side do not collide; the addresses exist only inside these namespaces.
pub struct Lan {
    bridge: String,
    pub hosts: Vec<Host>,
}

impl Lan {
    /// Hosts named `names`, with addresses 10.77.0.1, .2, ... in that order.
    pub fn new(names: &[&str]) -> Lan {
        static RUN: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = RUN.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let prefix = format!("lp{}-{n}", std::process::id());
        let mut lan = Lan { bridge: format!("{prefix}-lan"), hosts: Vec::new() };
        // `lan` is dropped (every namespace made so far removed) if a step below fails.
        ip(&["netns", "add", &lan.bridge]);
        ip(&["-n", &lan.bridge, "link", "add", "br0", "type", "bridge"]);
        ip(&["-n", &lan.bridge, "link", "set", "br0", "up"]);
        for (i, name) in names.iter().enumerate() {
            let host = Host { name: name.to_string(), ns: format!("{prefix}-{name}"), ip: format!("10.77.0.{}", i + 1) };
            ip(&["netns", "add", &host.ns]);
            lan.hosts.push(host.clone());
            let port = format!("v{i}");
            ip(&["-n", &lan.bridge, "link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns", &host.ns]);
            ip(&["-n", &lan.bridge, "link", "set", &port, "master", "br0", "up"]);
            ip(&["-n", &host.ns, "addr", "add", &format!("{}/24", host.ip), "dev", "eth0"]);
            ip(&["-n", &host.ns, "link", "set", "eth0", "up"]);
            ip(&["-n", &host.ns, "link", "set", "lo", "up"]);
        }
        lan
    }

    pub fn host(&self, name: &str) -> &Host {
        self.hosts.iter().find(|h| h.name == name).unwrap_or_else(|| panic!("no host {name}"))
    }
}

impl Drop for Lan {
    fn drop(&mut self) {
        for ns in self.hosts.iter().map(|h| h.ns.clone()).chain([self.bridge.clone()]) {
            let _ = Command::new("ip").args(["netns", "del", &ns]).stderr(Stdio::null()).status();
        }
    }
}

/// A long-running process on a host (an agent, the chain), its stdout and stderr in `log`,
/// killed when dropped.
pub struct Process {
    pub name: String,
    pub log: PathBuf,
    child: Child,
}

impl Process {
    pub fn spawn(name: &str, mut command: Command, log: &Path) -> Process {
        let file = std::fs::File::options().create(true).append(true).open(log).unwrap();
        let child = command
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .unwrap_or_else(|e| panic!("start {name}: {e}"));
        Process { name: name.to_string(), log: log.to_path_buf(), child }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Its last `lines` lines of log, headed by its name.
    pub fn tail(&self, lines: usize) -> String {
        let log = self.log();
        let all: Vec<&str> = log.lines().collect();
        format!("--- {} ({})\n{}\n", self.name, self.log.display(), all[all.len().saturating_sub(lines)..].join("\n"))
    }

    /// Panics with its log if it has exited.
    pub fn assert_running(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!("{} exited ({status}):\n{}", self.name, self.tail(60));
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        // SIGTERM first (agents stop cleanly and remove their containers), SIGKILL after 5 s.
        let _ = Command::new("kill").arg(self.child.id().to_string()).stderr(Stdio::null()).status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
