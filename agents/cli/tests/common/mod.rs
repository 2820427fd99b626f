//! Helpers shared by the end-to-end, gateway, soak and bad-input tests: a `lilypad devnet` child process, agents as
//! `lilypad` processes of their own, event counting, Anvil time travel and leftover checks.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use alloy::primitives::{Address, B256, U256};
use alloy::providers::Provider as _;
use lilypad_chain::{ChainClient, Deployment};

pub const LILYPAD: &str = env!("CARGO_BIN_EXE_lilypad");
pub const LP: u128 = 1_000_000_000_000_000_000;

pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

pub struct Devnet {
    pub child: Child,
    pub data_dir: tempfile::TempDir,
    pub log: PathBuf,
}

impl Devnet {
    /// A devnet with its agents and the repository's modules, results challengeable for
    /// `challenge_window` seconds.
    pub fn start(challenge_window: u32) -> Devnet {
        Self::start_with(&["--challenge-window", &challenge_window.to_string()])
    }

    pub fn start_with(extra: &[&str]) -> Devnet {
        Self::start_with_modules(extra, &repo().join("modules"))
    }

    /// A devnet publishing (and, with its agents, offering) the module folders in `modules`.
    pub fn start_with_modules(extra: &[&str], modules: &Path) -> Devnet {
        Self::start_in(tempfile::tempdir().unwrap(), extra, modules)
    }

    /// A devnet in `data_dir`, which may hold what an earlier devnet left ([`Devnet::interrupt`]).
    pub fn start_in(data_dir: tempfile::TempDir, extra: &[&str], modules: &Path) -> Devnet {
        let log = data_dir.path().join("devnet.log");
        std::fs::File::create(&log).unwrap();
        // both appending: a stdout writing from its own offset would overwrite the log lines
        // stderr appended meanwhile (the banner hid the line after it)
        let append = || std::fs::File::options().append(true).open(&log).unwrap();
        let child = Command::new(LILYPAD)
            .args(["--data-dir", data_dir.path().to_str().unwrap(), "devnet", "--port", "0"])
            .args(extra)
            .args(["--modules", modules.to_str().unwrap()])
            .stdout(append())
            .stderr(append())
            .spawn()
            .expect("start lilypad devnet");
        let mut devnet = Devnet { child, data_dir, log };
        let started = Instant::now();
        while !devnet.data_dir.path().join("devnet.json").exists() {
            if let Ok(Some(status)) = devnet.child.try_wait() {
                panic!("lilypad devnet exited ({status}):\n{}", devnet.log());
            }
            assert!(started.elapsed() < Duration::from_secs(180), "devnet not ready in 180 s:\n{}", devnet.log());
            std::thread::sleep(Duration::from_millis(100));
        }
        devnet
    }

    /// Stops the devnet as a user does (Ctrl-C: SIGINT), waits until it has exited, and keeps
    /// its data folder for the next one.
    pub fn interrupt(mut self) -> tempfile::TempDir {
        let status = Command::new("kill").args(["-INT", &self.child.id().to_string()]).status().unwrap();
        assert!(status.success(), "kill -INT the devnet");
        let started = Instant::now();
        while self.child.try_wait().unwrap().is_none() {
            assert!(started.elapsed() < Duration::from_secs(90), "the devnet did not stop within 90 s of Ctrl-C:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = std::fs::rename(&self.log, self.dir().join(format!("devnet.{}.log", self.child.id())));
        // `Drop` kills a child that has already exited (a no-op); the folder goes to the caller.
        std::mem::replace(&mut self.data_dir, tempfile::tempdir().unwrap())
    }

    pub fn dir(&self) -> &Path {
        self.data_dir.path()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn info(&self) -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(self.dir().join("devnet.json")).unwrap()).unwrap()
    }

    pub fn rpc_url(&self) -> String {
        self.info()["rpcUrl"].as_str().unwrap().to_string()
    }

    pub fn deployment_path(&self) -> PathBuf {
        PathBuf::from(self.info()["deployment"].as_str().unwrap())
    }

    pub fn lilypad(&self, args: &[&str]) -> Output {
        self.lilypad_env(args, &[])
    }

    pub fn lilypad_env(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut c = Command::new(LILYPAD);
        c.arg("--data-dir").arg(self.dir()).args(args).stdin(Stdio::null());
        for (k, v) in env {
            c.env(k, v);
        }
        c.output().expect("run lilypad")
    }

    /// Where agents started with this devnet's data folder keep their state on its chain:
    /// `<data-dir>/chains/<chain key>` (`lilypad devnet`'s own agents: under `<data-dir>/devnet`).
    pub async fn state_dir(&self) -> PathBuf {
        let client = self.client(lilypad_devnet::accounts::JOB_CREATOR).await;
        self.dir().join(lilypad_chain::state_dir::CHAINS_DIR).join(client.chain_key().folder_name())
    }

    pub async fn client(&self, key: &str) -> ChainClient {
        let deployment = Deployment::load(&self.deployment_path()).unwrap();
        ChainClient::connect(&self.rpc_url(), Some(key), deployment).await.unwrap()
    }

    /// A `lilypad` agent process (solver, resource-provider, mediator) with this devnet's data
    /// folder, its stderr appended to `<data-dir>/<name>.log`, and `TMPDIR` inside the data
    /// folder (so that leftovers of killed processes can be found).
    pub fn agent(&self, name: &str, args: &[String]) -> Agent {
        let tmp = self.dir().join("tmp");
        std::fs::create_dir_all(&tmp).unwrap();
        Agent { name: name.to_string(), args: args.to_vec(), data_dir: self.dir().to_path_buf(), child: None, kills: 0 }
    }
}

impl Drop for Devnet {
    fn drop(&mut self) {
        let _ = Command::new("kill").arg(self.child.id().to_string()).stderr(Stdio::null()).status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
    }
}

/// An agent as a `lilypad` process that can be killed (SIGKILL) and started again.
pub struct Agent {
    pub name: String,
    pub args: Vec<String>,
    pub data_dir: PathBuf,
    pub child: Option<Child>,
    pub kills: u32,
}

impl Agent {
    pub fn log_path(&self) -> PathBuf {
        self.data_dir.join(format!("{}.log", self.name))
    }

    pub fn start(&mut self) {
        assert!(self.child.is_none(), "{} is running already", self.name);
        let log = std::fs::File::options().create(true).append(true).open(self.log_path()).unwrap();
        let child = Command::new(LILYPAD)
            .arg("--data-dir")
            .arg(&self.data_dir)
            .args(&self.args)
            .env("TMPDIR", self.data_dir.join("tmp"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start a lilypad agent");
        self.child = Some(child);
    }

    /// SIGKILL, then reap it.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
            self.kills += 1;
        }
    }

    /// SIGTERM (a clean stop), then SIGKILL after 10 s.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            stop_child(&mut c);
        }
    }

    /// `Some(status)` if it exited by itself.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.as_mut().and_then(|c| c.try_wait().ok().flatten())
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }
}

/// Stops an agent process cleanly (SIGTERM: it removes what its engine keeps, e.g. a
/// provider's outputs volumes prepared ahead), then SIGKILL after 10 s.
#[allow(dead_code)]
pub fn stop_child(c: &mut Child) {
    let _ = Command::new("kill").arg(c.id().to_string()).status();
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = c.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = c.kill();
    let _ = c.wait();
}

impl Drop for Agent {
    /// A clean stop (an agent removes what its engine keeps, e.g. a provider's outputs volumes
    /// prepared ahead); [`Agent::kill`] is the crash.
    fn drop(&mut self) {
        self.stop();
    }
}

pub fn text(o: &Output) -> (String, String) {
    (String::from_utf8_lossy(&o.stdout).into_owned(), String::from_utf8_lossy(&o.stderr).into_owned())
}

pub async fn wait_until<F: std::future::Future<Output = bool>>(what: &str, secs: u64, mut f: impl FnMut() -> F) {
    let start = Instant::now();
    while !f().await {
        assert!(start.elapsed() < Duration::from_secs(secs), "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Logs of the market with `sig` as first topic, from block 0.
pub async fn logs(client: &ChainClient, sig: B256) -> Vec<alloy::rpc::types::Log> {
    client
        .provider()
        .get_logs(&alloy::rpc::types::Filter::new().address(client.deployment().market).event_signature(sig).from_block(0))
        .await
        .unwrap()
}

/// The job id (first indexed topic) of each log.
pub fn job_ids(logs: &[alloy::rpc::types::Log]) -> Vec<U256> {
    logs.iter().map(|l| U256::from_be_bytes(l.topics()[1].0)).collect()
}

/// Moves the chain's clock on by `secs` and mines a block.
pub async fn advance_time(client: &ChainClient, secs: u64) {
    let _: serde_json::Value = client.provider().raw_request("evm_increaseTime".into(), (secs,)).await.unwrap();
    let _: serde_json::Value = client.provider().raw_request("evm_mine".into(), ()).await.unwrap();
}

/// The executor instance label of the agent with `role` and address `addr` whose data folder
/// is `<state>/<role folder>/<addr>`, `state` being the chain's state folder ([`Devnet::state_dir`];
/// what `lilypad resource-provider` / `lilypad mediator` use).
pub fn instance_of(role: &str, folder: &str, addr: Address, state: &Path) -> String {
    lilypad_runner::executor_config(role, addr, &state.join(folder).join(addr.to_string())).instance
}

/// Docker containers and volumes labelled with executor instance `instance`.
pub fn docker_leftovers(instance: &str) -> Vec<String> {
    let mut out = Vec::new();
    for what in [&["ps", "-aq"][..], &["volume", "ls", "-q"][..]] {
        let o = Command::new("docker").args(what).args(["--filter", &format!("label=lilypad.executor={instance}")]).output().unwrap();
        assert!(o.status.success(), "docker {what:?}: {}", String::from_utf8_lossy(&o.stderr));
        out.extend(String::from_utf8_lossy(&o.stdout).lines().filter(|l| !l.trim().is_empty()).map(|l| format!("{what:?} {l}")));
    }
    out
}

/// Temporary leftovers under `dir`: `*.tmp` files or folders (unfinished result folders,
/// checkpoints), `.tmp-*` (blockstore writes), `lilypad-build-*` (image builds).
pub fn temp_leftovers(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        for e in entries.flatten() {
            let p = e.path();
            let name = e.file_name().to_string_lossy().into_owned();
            if name.ends_with(".tmp") || name.starts_with(".tmp-") || name.starts_with("lilypad-build-") {
                out.push(p.clone());
            }
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                stack.push(p);
            }
        }
    }
    out
}

/// A small seeded generator (splitmix64): the same seed gives the same kills.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..hi` (hi > lo).
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi - lo)
    }

    pub fn chance(&mut self, percent: u64) -> bool {
        self.next_u64() % 100 < percent
    }
}

/// Copies the folder `from` into `to` (files and folders).
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            copy_dir(&p, &to.join(e.file_name()));
        } else {
            std::fs::copy(&p, to.join(e.file_name())).unwrap();
        }
    }
}

/// README's table under `### Environment variables`: `(variable, deprecated name it replaces)`.
pub fn readme_env_table() -> Vec<(String, Option<String>)> {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let start = readme.find("### Environment variables").expect("README has a section `### Environment variables`");
    let rows: Vec<(String, Option<String>)> = readme[start..]
        .lines()
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
        .skip(2) // header and separator
        .map(|row| {
            let cells: Vec<&str> = row.trim_matches('|').split('|').map(|c| c.trim().trim_matches('`')).collect();
            let replaces = cells.last().filter(|c| !c.is_empty()).map(|c| c.to_string());
            (cells[0].to_string(), replaces)
        })
        .collect();
    assert!(rows.len() > 5, "README's environment table has {} rows", rows.len());
    rows
}

/// Builds the LLM module modules/ollama-pipeline (its image: the devnet publishes and offers
/// it), in a throwaway data folder.
pub fn build_llm_module(repo: &Path) {
    let build_dir = tempfile::tempdir().unwrap();
    let out = Command::new(LILYPAD)
        .arg("--data-dir")
        .arg(build_dir.path())
        .args(["module", "build"])
        .arg(repo.join("modules/ollama-pipeline"))
        .stdin(Stdio::null())
        .output()
        .expect("run lilypad module build");
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "building modules/ollama-pipeline failed:\n{stdout}\n{stderr}");
}

/// `lilypad gateway serve` as a child process, stopped (SIGKILL) when dropped.
pub struct GatewayProc {
    pub child: Child,
    pub url: String,
    pub log: PathBuf,
}

impl GatewayProc {
    /// Starts it on a free loopback port, paying from `key`, its output appended to `log`;
    /// `extra` are more `serve` flags (rate limits).
    pub fn start(devnet: &Devnet, db: &str, key: &str, log: PathBuf, extra: &[&str]) -> GatewayProc {
        let before = std::fs::read_to_string(&log).map(|s| s.len()).unwrap_or(0);
        let out = std::fs::File::options().create(true).append(true).open(&log).unwrap();
        let child = Command::new(LILYPAD)
            .arg("--data-dir")
            .arg(devnet.data_dir.path())
            .args(["gateway", "--db", db, "serve", "--listen", "127.0.0.1:0", "--private-key", key])
            .args(extra)
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("start lilypad gateway serve");
        let mut gw = GatewayProc { child, url: String::new(), log };
        let started = Instant::now();
        loop {
            let text = std::fs::read_to_string(&gw.log).unwrap_or_default();
            if let Some(rest) = text[before.min(text.len())..].split("listening on http://").nth(1) {
                gw.url = format!("http://{}", rest.split_whitespace().next().unwrap());
                return gw;
            }
            if let Ok(Some(status)) = gw.child.try_wait() {
                panic!("lilypad gateway exited ({status}):\n{text}");
            }
            assert!(started.elapsed() < Duration::from_secs(120), "gateway not listening in 120 s:\n{text}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGKILL: no cleanup at all.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for GatewayProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
