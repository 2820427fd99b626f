//! End to end, with everything real: `lilypad devnet` (Anvil, the contracts, a solver, a
//! resource provider running Docker) as a child process, then
//! - `lilypad run lilysay:0.1.0 -i Message=...`: the printed art and CID, the files on disk,
//!   the CID recomputed from them, and the settlement's balances on chain;
//! - the contract path: a client contract calls runJob and is called back with the CID;
//! - bad input is refused before anything is paid.
//!
//! Needs anvil (tools/bootstrap) and a Docker engine (tools/bootstrap --docker).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use alloy::primitives::{Address, U256};
use alloy::providers::Provider as _;
use alloy::sol_types::SolEvent;
use lilypad_bindings::{ExampleClient, LilypadMarket};
use lilypad_chain::{ChainClient, Deployment};
use lilypad_devnet::accounts;

const LILYPAD: &str = env!("CARGO_BIN_EXE_lilypad");
const LP: u128 = 1_000_000_000_000_000_000;

struct Devnet {
    child: Child,
    data_dir: tempfile::TempDir,
    log: PathBuf,
}

impl Devnet {
    fn start(challenge_window: u32) -> Devnet {
        Self::start_with(&["--challenge-window", &challenge_window.to_string()])
    }

    fn start_with(extra: &[&str]) -> Devnet {
        let data_dir = tempfile::tempdir().unwrap();
        let log = data_dir.path().join("devnet.log");
        let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let child = Command::new(LILYPAD)
            .args(["--data-dir", data_dir.path().to_str().unwrap(), "devnet", "--port", "0"])
            .args(extra)
            .args(["--modules", repo.join("modules").to_str().unwrap()])
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(std::fs::File::options().append(true).open(&log).unwrap())
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

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn info(&self) -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(self.data_dir.path().join("devnet.json")).unwrap()).unwrap()
    }

    fn lilypad(&self, args: &[&str]) -> Output {
        Command::new(LILYPAD)
            .arg("--data-dir")
            .arg(self.data_dir.path())
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run lilypad")
    }

    async fn client(&self, key: &str) -> ChainClient {
        let info = self.info();
        let deployment = Deployment::load(Path::new(info["deployment"].as_str().unwrap())).unwrap();
        ChainClient::connect(info["rpcUrl"].as_str().unwrap(), Some(key), deployment).await.unwrap()
    }
}

impl Drop for Devnet {
    fn drop(&mut self) {
        // SIGTERM lets it stop Anvil and its tasks; then make sure.
        let _ = Command::new("kill").arg(self.child.id().to_string()).status();
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

fn text(o: &Output) -> (String, String) {
    (String::from_utf8_lossy(&o.stdout).into_owned(), String::from_utf8_lossy(&o.stderr).into_owned())
}

async fn wait_until<F: std::future::Future<Output = bool>>(what: &str, secs: u64, mut f: impl FnMut() -> F) {
    let start = Instant::now();
    while !f().await {
        assert!(start.elapsed() < Duration::from_secs(secs), "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn lilypad_run_lilysay_end_to_end() {
    let devnet = Devnet::start(3);
    let provider_addr = lilypad_devnet::address_of(accounts::RESOURCE_PROVIDER).unwrap();
    let solver_addr = lilypad_devnet::address_of(accounts::SOLVER).unwrap();
    let observer = devnet.client(accounts::AUDITOR).await;
    let market = observer.market();
    let provider_before = market.balanceOf(provider_addr).call().await.unwrap();
    let solver_before = market.balanceOf(solver_addr).call().await.unwrap();

    // --- bad input is refused before anything is paid
    let out = devnet.lilypad(&["run", "lilysay:0.1.0", "-i", "Colour=red"]);
    let (_, err) = text(&out);
    assert_eq!(out.status.code(), Some(2), "unknown input → exit 2: {err}");
    assert!(err.contains("Colour") && err.contains("Message"), "names the bad input and the accepted ones: {err}");
    let out = devnet.lilypad(&["run", "nosuchmodule:1.0", "-i", "Message=x"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out).1);
    let out = devnet.lilypad(&["run", "not a module"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out).1);
    assert_eq!(market.jobCount().call().await.unwrap(), U256::ZERO, "no job was created, nothing paid");

    // --- a job through the network
    let out = devnet.lilypad(&["run", "lilysay:0.1.0", "-i", "Message=hello from the e2e test"]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "stdout:\n{stdout}\nstderr:\n{stderr}\ndevnet:\n{}", devnet.log());
    assert!(stdout.contains("hello from the e2e test"), "{stdout}");
    let cid = stdout
        .lines()
        .find_map(|l| l.split("Data ID: ").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .expect("the Data ID line")
        .to_string();
    let dir = devnet.data_dir.path().join("downloaded-files").join("1");
    assert!(stdout.contains(&format!("cat {}", dir.join("stdout").display())), "{stdout}");
    assert_eq!(std::fs::read_to_string(dir.join("exitCode")).unwrap().trim(), "0");
    let art = std::fs::read_to_string(dir.join("stdout")).unwrap();
    assert!(art.contains("hello from the e2e test"));
    assert_eq!(std::fs::read_to_string(dir.join("outputs/lilysay.txt")).unwrap(), art, "outputs/ holds the same art");
    // the CID is the content's: recompute it from the files written
    let out = devnet.lilypad(&["ipfs", "add", dir.to_str().unwrap()]);
    assert_eq!(text(&out).0.trim(), cid, "the downloaded folder hashes to the CID on chain");

    // --- settlement after the challenge window: the provider is paid its price, the solver its fee
    let d = observer.deployment().clone();
    wait_until("settlement", 60, || async { market.jobHash(U256::from(1)).call().await.unwrap().is_zero() }).await;
    let price = U256::from(LP); // the devnet provider's price
    let fee = price * U256::from(d.solver_fee_bps) / U256::from(10_000u64);
    assert_eq!(market.balanceOf(provider_addr).call().await.unwrap() - provider_before, price, "provider paid its price");
    assert_eq!(market.balanceOf(solver_addr).call().await.unwrap() - solver_before, fee, "solver paid its fee");
    let settled = observer
        .provider()
        .get_logs(&alloy::rpc::types::Filter::new().address(d.market).event_signature(LilypadMarket::JobSettled::SIGNATURE_HASH).from_block(0))
        .await
        .unwrap();
    assert_eq!(settled.len(), 1, "settled once");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_contract_gets_submit_results_with_the_cid() {
    let devnet = Devnet::start(2);
    let payee = devnet.client(accounts::JOB_CREATOR_2).await;
    let d = payee.deployment().clone();
    let me = payee.address().unwrap();
    // a client contract compiled against the reference interface
    let deployed = ExampleClient::deploy(payee.provider(), d.market).await.expect("deploy ExampleClient");
    let client_addr = *deployed.address();
    let client = ExampleClient::new(client_addr, payee.provider().clone());
    payee.send("authorizeClient", payee.market().authorizeClient(client_addr, true)).await.unwrap();
    let (spec, _) = {
        let r = payee.market().getModule(lilypad_module::module_id("lilysay", "0.1.0")).call().await.unwrap();
        (r.spec, r.publishedAt)
    };
    payee.send("approve", payee.token().approve(d.market, U256::from(spec.defaultPayment))).await.unwrap();
    let receipt = payee.send("runLilysay", client.runLilysay("hi from a contract".into())).await.unwrap();
    let id = receipt
        .inner
        .logs()
        .iter()
        .find_map(|l| LilypadMarket::JobCreated::decode_log(&l.inner).ok().map(|e| e.data.id))
        .expect("JobCreated");

    // nobody runs `lilypad run`: the solver and the provider do it all, and settlement calls back
    let filter = alloy::rpc::types::Filter::new()
        .address(client_addr)
        .event_signature(ExampleClient::JobCompleted::SIGNATURE_HASH)
        .from_block(0);
    let mut completed = None;
    let start = Instant::now();
    while completed.is_none() {
        assert!(start.elapsed() < Duration::from_secs(90), "no submitResults callback; devnet:\n{}", devnet.log());
        let logs = payee.provider().get_logs(&filter).await.unwrap();
        completed = logs.first().and_then(|l| ExampleClient::JobCompleted::decode_log(&l.inner).ok()).map(|e| e.data);
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let completed = completed.unwrap();
    assert_eq!(completed.id, id);
    assert_eq!(completed.dealId, id.to_string());
    assert!(completed.dataId.starts_with("bafy"), "a CIDv1: {}", completed.dataId);
    // the CID is what the provider posted for that job
    let posted = payee
        .provider()
        .get_logs(&alloy::rpc::types::Filter::new().address(d.market).event_signature(LilypadMarket::ResultSubmitted::SIGNATURE_HASH).from_block(0))
        .await
        .unwrap();
    let posted = LilypadMarket::ResultSubmitted::decode_log(&posted[0].inner).unwrap().data;
    assert_eq!(posted.dataId, completed.dataId);
    let _: Address = me;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_challenged_honest_result_stands_and_the_provider_gets_the_bond() {
    let devnet = Devnet::start(30);
    let observer = devnet.client(accounts::AUDITOR).await;
    let market = observer.market();
    let d = observer.deployment().clone();
    let provider_addr = lilypad_devnet::address_of(accounts::RESOURCE_PROVIDER).unwrap();
    let mediator_addr = lilypad_devnet::address_of(accounts::MEDIATOR).unwrap();
    let out = devnet.lilypad(&["run", "lilysay:0.1.0", "-i", "Message=check me"]);
    assert_eq!(out.status.code(), Some(0), "{:?}", text(&out));
    let provider_before = market.balanceOf(provider_addr).call().await.unwrap();
    let mediator_before = market.balanceOf(mediator_addr).call().await.unwrap();

    // the job creator challenges; the mediator re-runs it, gets the same CID and rejects
    let out = devnet.lilypad(&["challenge", "1"]);
    assert_eq!(out.status.code(), Some(0), "{:?}\n{}", text(&out), devnet.log());
    wait_until("the ruling", 60, || async { market.jobHash(U256::from(1)).call().await.unwrap().is_zero() }).await;
    let ruled = observer
        .provider()
        .get_logs(&alloy::rpc::types::Filter::new().address(d.market).event_signature(LilypadMarket::ChallengeRuled::SIGNATURE_HASH).from_block(0))
        .await
        .unwrap();
    let ruling = LilypadMarket::ChallengeRuled::decode_log(&ruled[0].inner).unwrap().data;
    assert!(!ruling.upheld, "an honest result stands");
    let price = U256::from(LP);
    let collateral = (price * U256::from(d.collateral_bps) / U256::from(10_000u64)).max(U256::from(d.mediator_fee));
    assert_eq!(
        market.balanceOf(provider_addr).call().await.unwrap() - provider_before,
        price + collateral + U256::from(d.challenge_bond),
        "the provider is paid, its collateral (locked when measured) released, and it gets the challenger's bond"
    );
    assert_eq!(market.balanceOf(mediator_addr).call().await.unwrap() - mediator_before, U256::from(d.mediator_fee), "the mediator is paid its fee");
}

/// A module published from a git repository (`example.com/org/hello:v1`, served here from a
/// local folder through LILYPAD_GIT_BASE): a provider that offers any module that fits and
/// allows git modules fetches it at the tag's commit, checks its hash against the chain, builds
/// and runs it; `lilypad run` fetches the same commit to check the inputs.
#[tokio::test(flavor = "multi_thread")]
async fn a_module_from_a_git_repository_runs_pinned_to_its_commit() {
    let devnet = Devnet::start(30);
    let git_root = tempfile::tempdir().unwrap();
    let repo = git_root.path().join("example.com/org/hello");
    std::fs::create_dir_all(&repo).unwrap();
    lilypad_module::init_module(&repo, "example.com/org/hello").unwrap();
    // publish it, pinned to the folder's hash (before .git exists: the checkout has none)
    let spec_version = lilypad_module::Module::load(&repo).unwrap().version().to_string();
    let out = devnet.lilypad(&["module", "publish", repo.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{:?}", text(&out));
    let git = |args: &[&str]| {
        let o = Command::new("git")
            .args(["-c", "user.name=t", "-c", "user.email=t@t", "-c", "init.defaultBranch=main"])
            .args(args)
            .current_dir(&repo)
            .output()
            .unwrap();
        assert!(o.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&o.stderr));
    };
    git(&["init", "--quiet"]);
    git(&["add", "."]);
    git(&["commit", "--quiet", "-m", "hello"]);
    git(&["tag", "v1"]);
    let base = format!("file://{}/", git_root.path().display());


    // a second provider: any module that fits, git modules allowed
    let provider_dir = devnet.data_dir.path().join("p2");
    let gw = lilypad_devnet::free_port().unwrap();
    let info = devnet.info();
    let mut provider = Command::new(LILYPAD)
        .arg("--data-dir")
        .arg(&provider_dir)
        .args(["resource-provider", "--offer-any", "4000,4096,1000", "--allow-git-modules", "--price", "500000000000000000"])
        .args(["--rpc-url", info["rpcUrl"].as_str().unwrap(), "--deployment", info["deployment"].as_str().unwrap()])
        .args(["--private-key", accounts::RESOURCE_PROVIDER_2, "--gateway", &format!("127.0.0.1:{gw}")])
        .env("LILYPAD_GIT_BASE", &base)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(devnet.data_dir.path().join("p2.log")).unwrap())
        .spawn()
        .unwrap();
    // wait for its offer
    let observer = devnet.client(accounts::AUDITOR).await;
    let p2 = lilypad_devnet::address_of(accounts::RESOURCE_PROVIDER_2).unwrap();
    wait_until("the second provider's offer", 120, || async {
        observer.market().offerOf(p2, alloy::primitives::B256::ZERO).call().await.map(|o| o.active).unwrap_or(false)
    })
    .await;

    let reference = format!("example.com/org/hello:{spec_version}");
    // the tag names the commit the module was published from: the version in its spec
    git(&["tag", &spec_version]);
    let out = Command::new(LILYPAD)
        .arg("--data-dir")
        .arg(devnet.data_dir.path())
        .args(["run", &reference, "--gateway", &format!("http://127.0.0.1:{gw}")])
        .env("LILYPAD_GIT_BASE", &base)
        .output()
        .unwrap();
    let _ = provider.kill();
    let p2_log = std::fs::read_to_string(devnet.data_dir.path().join("p2.log")).unwrap_or_default();
    assert_eq!(out.status.code(), Some(0), "{:?}\nprovider 2:\n{p2_log}", text(&out));
    let _ = provider.wait();
}


/// The agents as processes of their own, killed with SIGKILL mid-work and restarted: every job
/// still ends settled, with exactly one result and one settlement each, and no container is
/// left behind.
#[tokio::test(flavor = "multi_thread")]
async fn agents_killed_and_restarted_finish_every_job_exactly_once() {
    let devnet = Devnet::start_with(&["--no-agents", "--challenge-window", "2"]);
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let lilysay = repo.join("modules/lilysay");
    let spawn = |args: Vec<String>, log: &str| -> Child {
        Command::new(LILYPAD)
            .arg("--data-dir")
            .arg(devnet.data_dir.path())
            .args(&args)
            .stdout(Stdio::null())
            .stderr(std::fs::File::options().create(true).append(true).open(devnet.data_dir.path().join(log)).unwrap())
            .spawn()
            .unwrap()
    };
    let solver_args = vec!["solver".to_string()];
    let provider_args = vec![
        "resource-provider".to_string(),
        "--module".into(),
        lilysay.to_str().unwrap().into(),
        "--gateway".into(),
        "127.0.0.1:0".into(),
        "--concurrency".into(),
        "2".into(),
    ];
    let mut solver = spawn(solver_args.clone(), "solver.log");
    let mut provider = spawn(provider_args.clone(), "provider.log");

    let creator = devnet.client(accounts::JOB_CREATOR).await;
    let d = creator.deployment().clone();
    let market = creator.market();
    let me = creator.address().unwrap();
    let id = lilypad_module::module_id("lilysay", "0.1.0");
    let payment = market.getModule(id).call().await.unwrap().spec.defaultPayment;
    const JOBS: u64 = 6;
    creator.send("approve", creator.token().approve(d.market, U256::from(payment) * U256::from(JOBS))).await.unwrap();
    for i in 0..JOBS {
        creator.send("runJob", market.runJob("lilysay:0.1.0".into(), vec![format!("Message=job {i}")], me)).await.unwrap();
    }
    let count = |sig: alloy::primitives::B256| {
        let creator = creator.clone();
        async move {
            creator
                .provider()
                .get_logs(&alloy::rpc::types::Filter::new().address(d.market).event_signature(sig).from_block(0))
                .await
                .unwrap()
        }
    };
    // kill both agents as soon as some work is done, twice, restarting them each time
    for round in 0..2 {
        let start = Instant::now();
        while count(LilypadMarket::ResultSubmitted::SIGNATURE_HASH).await.len() < 1 + round * 2 && start.elapsed() < Duration::from_secs(90) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        provider.kill().unwrap(); // SIGKILL
        solver.kill().unwrap();
        let _ = provider.wait();
        let _ = solver.wait();
        provider = spawn(provider_args.clone(), "provider.log");
        solver = spawn(solver_args.clone(), "solver.log");
    }
    let start = Instant::now();
    loop {
        let mut live = 0;
        for j in 1..=JOBS {
            if !market.jobHash(U256::from(j)).call().await.unwrap().is_zero() {
                live += 1;
            }
        }
        if live == 0 {
            break;
        }
        if start.elapsed() > Duration::from_secs(150) {
            let logs = std::fs::read_to_string(devnet.data_dir.path().join("provider.log")).unwrap_or_default();
            panic!("{live} jobs not settled; provider log:\n{logs}");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let _ = provider.kill();
    let _ = solver.kill();
    let _ = provider.wait();
    let _ = solver.wait();

    let per_job = |logs: Vec<alloy::rpc::types::Log>| {
        let mut ids: Vec<U256> = logs.iter().map(|l| U256::from_be_bytes(l.topics()[1].0)).collect();
        ids.sort();
        ids
    };
    let all: Vec<U256> = (1..=JOBS).map(U256::from).collect();
    assert_eq!(per_job(count(LilypadMarket::ResultSubmitted::SIGNATURE_HASH).await), all, "one result per job");
    assert_eq!(per_job(count(LilypadMarket::JobSettled::SIGNATURE_HASH).await), all, "one settlement per job");
    // Nothing of this provider's is left in Docker: what the killed processes left, their
    // restarted selves removed (same identity and data folder, same instance label).
    let addr = lilypad_devnet::address_of(accounts::RESOURCE_PROVIDER).unwrap();
    let instance = lilypad_provider::executor_config("provider", addr, &devnet.data_dir.path().join("provider").join(addr.to_string())).instance;
    for what in [&["ps", "-aq"][..], &["volume", "ls", "-q"][..]] {
        let out = Command::new("docker").args(what).args(["--filter", &format!("label=lilypad.executor={instance}")]).output().unwrap();
        assert!(out.status.success());
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "", "docker {what:?} left behind for {instance}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn more_jobs_than_a_providers_running_limit_all_get_results_within_one_challenge_window() {
    // A long window: nothing settles during the test, so results stay waiting out their window.
    let devnet = Devnet::start(600);
    let observer = devnet.client(accounts::AUDITOR).await;
    let d = observer.deployment().clone();

    // `--detach` returns once the job exists on chain, with its id
    for i in 1..=8 {
        let out = devnet.lilypad(&["run", "--detach", "lilysay:0.1.0", "-i", &format!("Message=job {i}")]);
        let (stdout, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(0), "stdout:\n{stdout}\nstderr:\n{stderr}");
        assert!(stdout.contains(&format!("job {i} created")), "{stdout}");
    }
    // The solver lets a provider run 4 jobs at once; a job whose result is posted is not running
    // any more, so all 8 get results long before the first challenge window ends.
    let results = || async {
        let filter = alloy::rpc::types::Filter::new().address(d.market).event_signature(LilypadMarket::ResultSubmitted::SIGNATURE_HASH).from_block(0);
        observer.provider().get_logs(&filter).await.map(|l| l.len()).unwrap_or(0)
    };
    let start = Instant::now();
    while results().await < 8 {
        assert!(start.elapsed() < Duration::from_secs(120), "only {} of 8 results in 120 s:\n{}", results().await, devnet.log());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // `--timings` prints every phase's duration to stderr
    let out = devnet.lilypad(&["run", "--timings", "lilysay:0.1.0", "-i", "Message=timed"]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "stdout:\n{stdout}\nstderr:\n{stderr}");
    let line = stderr.lines().find(|l| l.starts_with("timings:")).unwrap_or_else(|| panic!("no timings line in:\n{stderr}"));
    for phase in ["prepare", "submit", "match", "run", "fetch", "total"] {
        let value = line
            .split_whitespace()
            .find_map(|kv| kv.strip_prefix(&format!("{phase}=")))
            .and_then(|v| v.strip_suffix("ms"))
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or_else(|| panic!("no {phase}=<n>ms in {line}"));
        assert!(value >= 0.0, "{line}");
    }
}
