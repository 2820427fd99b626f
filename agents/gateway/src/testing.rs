//! Test support: a throwaway PostgreSQL server from Debian's `postgresql` package, started in a
//! temporary folder on a free loopback port (as the `postgres` user when running as root,
//! since `initdb` refuses root), stopped and deleted on drop.

use std::path::{Path, PathBuf};
use std::process::Command;

pub struct Postgres {
    dir: tempfile::TempDir,
    bin: PathBuf,
    run_as: Option<String>,
    pub port: u16,
}

fn bin_dir() -> Option<PathBuf> {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql").ok()?.flatten().map(|e| e.path().join("bin")).filter(|p| p.join("initdb").exists()).collect();
    versions.sort();
    versions.pop()
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0").unwrap_or(false)
}

impl Postgres {
    /// Starts a server; `Err` says why it cannot (not installed: `tools/bootstrap --gateway`).
    pub fn start() -> Result<Postgres, String> {
        let bin = bin_dir().ok_or("PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb): run tools/bootstrap --gateway")?;
        let dir = tempfile::Builder::new().prefix("lilypad-pg").tempdir().map_err(|e| e.to_string())?;
        let run_as = is_root().then(|| "postgres".to_string());
        if run_as.is_some() {
            let ok = Command::new("chown").args(["-R", "postgres:postgres"]).arg(dir.path()).status().map(|s| s.success()).unwrap_or(false);
            if !ok {
                return Err("cannot chown the data folder to the postgres user".into());
            }
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map_err(|e| e.to_string())?.port();
        let pg = Postgres { dir, bin, run_as, port };
        let data = pg.dir.path().join("data");
        pg.run("initdb", &["-D", path(&data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync", "--locale=C"])?;
        let opts = format!("-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off", pg.port, path(pg.dir.path()));
        let log = pg.dir.path().join("server.log");
        pg.run("pg_ctl", &["-D", path(&data), "-o", &opts, "-l", path(&log), "-w", "-t", "60", "start"])?;
        Ok(pg)
    }

    fn run(&self, tool: &str, args: &[&str]) -> Result<(), String> {
        let exe = self.bin.join(tool);
        let mut cmd = match &self.run_as {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--"]).arg(&exe);
                c
            }
            None => Command::new(&exe),
        };
        let out = cmd.args(args).current_dir(self.dir.path()).output().map_err(|e| format!("{}: {e}", exe.display()))?;
        if !out.status.success() {
            let log = std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default();
            return Err(format!("{tool} failed: {}{}\n{log}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)));
        }
        Ok(())
    }

    /// A URL for a fresh database `name` on this server.
    pub fn database(&self, name: &str) -> Result<String, String> {
        self.run("createdb", &["-h", "127.0.0.1", "-p", &self.port.to_string(), "-U", "postgres", name])?;
        Ok(format!("postgres://postgres@127.0.0.1:{}/{name}", self.port))
    }
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap_or_default()
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let data = self.dir.path().join("data");
        let _ = self.run("pg_ctl", &["-D", path(&data), "-m", "immediate", "stop"]);
    }
}
