//! WebAssembly jobs through the whole network (issue 15): `lilypad devnet`'s provider runs
//! Docker and WASM; a provider started with `--no-docker` (and no Docker engine it could reach)
//! serves WASM jobs only, is never matched a Docker job, and gives back at once a Docker job
//! matched to it while it still announced Docker; the same WASM job on two providers gives the
//! same CID; a challenge of an honest WASM result is rejected by the mediator's re-run; a new
//! module from `lilypad module init --wasm` is published and run; WASM jobs that trap or grow
//! their memory past the limit settle and the provider keeps serving.
//!
//! Needs anvil (tools/bootstrap) and a Docker engine (for the Docker provider and jobs).

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use alloy::primitives::{Address, U256};
use alloy::providers::Provider as _;
use alloy::sol_types::SolEvent;
use lilypad_bindings::LilypadMarket;
use lilypad_chain::ChainClient;
use lilypad_devnet::accounts;

use common::{repo, text, wait_until, Devnet, LILYPAD};

/// The Data ID (CID) `lilypad run` printed.
fn data_id(stdout: &str) -> String {
    stdout
        .lines()
        .find_map(|l| l.split("Data ID: ").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no Data ID line in:\n{stdout}"))
        .to_string()
}

async fn events<E: SolEvent>(c: &ChainClient) -> Vec<E> {
    let d = c.deployment();
    let logs = c
        .provider()
        .get_logs(&alloy::rpc::types::Filter::new().address(d.market).event_signature(E::SIGNATURE_HASH).from_block(0))
        .await
        .unwrap();
    logs.iter().map(|l| E::decode_log(&l.inner).unwrap().data).collect()
}

async fn matched_to(c: &ChainClient, job: u64) -> Vec<Address> {
    events::<LilypadMarket::JobMatched>(c).await.into_iter().filter(|e| e.id == U256::from(job)).map(|e| e.provider).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn lilysay_wasm_runs_through_the_network_and_an_honest_challenge_is_rejected() {
    let devnet = Devnet::start(30);
    let observer = devnet.client(accounts::AUDITOR).await;
    let market = observer.market();
    let out = devnet.lilypad(&["run", "lilysay-wasm:0.1.0", "-i", "Message=hi"]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "stdout:\n{stdout}\nstderr:\n{stderr}\ndevnet:\n{}", devnet.log());
    let cid = data_id(&stdout);
    let dir = devnet.data_dir.path().join("downloaded-files").join("1");
    let art = std::fs::read_to_string(dir.join("stdout")).unwrap();
    assert!(art.starts_with(" ____\n< hi >\n"), "the cow says hi:\n{art}");
    assert_eq!(std::fs::read_to_string(dir.join("exitCode")).unwrap().trim(), "0");
    let out = devnet.lilypad(&["ipfs", "add", dir.to_str().unwrap()]);
    assert_eq!(text(&out).0.trim(), cid, "the downloaded folder hashes to the CID on chain");

    // the job creator challenges the honest result: the mediator re-runs the WASM module, gets
    // the same bytes and rejects the challenge
    let out = devnet.lilypad(&["challenge", "1"]);
    assert_eq!(out.status.code(), Some(0), "{:?}\n{}", text(&out), devnet.log());
    wait_until("the ruling", 90, || async { market.jobHash(U256::from(1)).call().await.unwrap().is_zero() }).await;
    let ruled = events::<LilypadMarket::ChallengeRuled>(&observer).await;
    assert_eq!(ruled.len(), 1, "one ruling");
    assert!(!ruled[0].upheld, "the honest WASM result stands:\n{}", devnet.log());
    let (shown, _) = text(&devnet.lilypad(&["job", "1"]));
    assert!(shown.contains("the mediator ruled the result right"), "{shown}");
}

/// A `lilypad` agent process against `devnet`, logging to `<data-dir>/<log>`, stopped cleanly
/// when dropped (a provider removes the outputs volumes it prepared ahead); `env` set on it.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        common::stop_child(&mut self.0);
    }
}

fn spawn(devnet: &Devnet, args: &[&str], env: &[(&str, &str)], log: &str) -> Proc {
    let log = std::fs::File::options().create(true).append(true).open(devnet.data_dir.path().join(log)).unwrap();
    let child = Command::new(LILYPAD)
        .arg("--data-dir")
        .arg(devnet.data_dir.path())
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start a lilypad agent");
    Proc(child)
}

fn logs_of(devnet: &Devnet) -> String {
    let mut out = String::new();
    for log in ["solver.log", "provider-a.log", "provider-b.log"] {
        let text = std::fs::read_to_string(devnet.data_dir.path().join(log)).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(30).collect();
        out += &format!("--- {log}\n{}\n", tail.into_iter().rev().collect::<Vec<_>>().join("\n"));
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn a_provider_without_docker_serves_wasm_jobs_only_and_two_providers_give_the_same_cid() {
    let devnet = Devnet::start_with(&["--no-agents", "--challenge-window", "2"]);
    let observer = devnet.client(accounts::SPARE).await;
    let market = observer.market();
    let modules = repo().join("modules");
    let (wasm_module, docker_module) = (modules.join("lilysay-wasm"), modules.join("lilysay"));
    let (wasm_module, docker_module) = (wasm_module.to_str().unwrap(), docker_module.to_str().unwrap());
    let a = lilypad_devnet::address_of(accounts::RESOURCE_PROVIDER).unwrap();
    let b = lilypad_devnet::address_of(accounts::RESOURCE_PROVIDER_2).unwrap();
    let port = || lilypad_devnet::free_port().unwrap();
    let (a_port, b_port) = (port(), port());
    let (a_bind, b_bind) = (format!("127.0.0.1:{a_port}"), format!("127.0.0.1:{b_port}"));
    let (a_gateway, b_gateway) = (format!("http://{a_bind}"), format!("http://{b_bind}"));
    // no Docker engine it could reach: --no-docker must not need one
    let no_docker = [("DOCKER_HOST", "unix:///nonexistent/docker.sock")];

    // refused at start, before any transaction, saying what to do: a Docker module on a
    // provider without Docker, and no Docker engine without --no-docker
    let out = devnet.lilypad(&["resource-provider", "--no-docker", "--module", docker_module, "--gateway", "127.0.0.1:0"]);
    assert_ne!(out.status.code(), Some(0));
    assert!(text(&out).1.contains("module lilysay:0.1.0 runs on the docker engine and this provider runs only wasm: remove --module"), "{:?}", text(&out));
    let out = devnet.lilypad_env(&["resource-provider", "--module", wasm_module, "--gateway", "127.0.0.1:0"], &no_docker);
    assert_ne!(out.status.code(), Some(0));
    assert!(text(&out).1.contains("start the provider with --no-docker"), "{:?}", text(&out));
    assert!(market.balanceOf(a).call().await.unwrap().is_zero(), "nothing was deposited");

    let _solver = spawn(&devnet, &["solver"], &[], "solver.log");
    let wait_started = |who: Address| {
        let market = market.clone();
        let devnet = &devnet;
        async move {
            // ready when its collateral is deposited (the last thing it does before running)
            let start = Instant::now();
            while market.balanceOf(who).call().await.unwrap().is_zero() {
                assert!(start.elapsed() < Duration::from_secs(180), "provider {who} did not start:\n{}", logs_of(devnet));
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    // B: Docker and WASM, the only provider at first
    let b_key = accounts::RESOURCE_PROVIDER_2;
    let b_args = ["resource-provider", "--private-key", b_key, "--module", docker_module, "--module", wasm_module, "--gateway", &b_bind];
    let mut provider_b = Some(spawn(&devnet, &b_args, &[], "provider-b.log"));
    wait_started(b).await;
    let out = devnet.lilypad(&["run", "lilysay-wasm:0.1.0", "-i", "Message=same", "--gateway", &b_gateway]);
    assert_eq!(out.status.code(), Some(0), "{:?}\n{}", text(&out), logs_of(&devnet));
    assert_eq!(matched_to(&observer, 1).await, [b]);
    let cid_b = data_id(&text(&out).0);

    // A: WASM only, cheaper, and offering any module that fits (lilysay would fit)
    let a_args = [
        "resource-provider", "--no-docker", "--module", wasm_module, "--offer-any", "4000,4096,1000",
        "--price", "500000000000000000", "--gateway", &a_bind,
    ];
    let _provider_a = spawn(&devnet, &a_args, &no_docker, "provider-a.log");
    wait_started(a).await;
    // the same WASM job goes to the cheaper, Docker-less provider, which runs it: the same CID
    let out = devnet.lilypad(&["run", "lilysay-wasm:0.1.0", "-i", "Message=same", "--gateway", &a_gateway]);
    assert_eq!(out.status.code(), Some(0), "{:?}\n{}", text(&out), logs_of(&devnet));
    assert_eq!(matched_to(&observer, 2).await, [a], "the WASM job went to the Docker-less provider");
    assert_eq!(data_id(&text(&out).0), cid_b, "the same WASM job gives the same CID on two providers");
    // a Docker job never goes to it, cheaper and fitting as its any-module offer is
    let out = devnet.lilypad(&["run", "lilysay:0.1.0", "-i", "Message=docker", "--gateway", &b_gateway]);
    assert_eq!(out.status.code(), Some(0), "{:?}\n{}", text(&out), logs_of(&devnet));
    assert_eq!(matched_to(&observer, 3).await, [b], "the Docker job went to the provider with Docker, first time");
    for job in [1u64, 3] {
        wait_until("B's jobs settled", 60, || async { market.jobHash(U256::from(job)).call().await.unwrap().is_zero() }).await;
    }

    // B stops; a Docker job is matched to it while it is away (it last announced Docker); it
    // comes back without Docker: it gives the job back at once and loses no collateral, and
    // the solver does not match the job to it (or to A) again
    drop(provider_b.take());
    let before = market.balanceOf(b).call().await.unwrap();
    let out = devnet.lilypad(&["run", "lilysay:0.1.0", "-i", "Message=give it back", "--detach"]);
    assert_eq!(out.status.code(), Some(0), "{:?}", text(&out));
    wait_until("job 4 matched", 60, || async { !matched_to(&observer, 4).await.is_empty() }).await;
    assert_eq!(matched_to(&observer, 4).await, [b]);
    assert!(market.balanceOf(b).call().await.unwrap() < before, "its collateral is locked by the match");
    let b_again = [
        "resource-provider", "--private-key", b_key, "--no-docker", "--offer-any", "4000,4096,1000", "--collateral", "1",
        "--gateway", &b_bind,
    ];
    let _provider_b = spawn(&devnet, &b_again, &no_docker, "provider-b.log");
    wait_until("job 4 given back", 120, || async {
        events::<LilypadMarket::JobReleased>(&observer).await.iter().any(|e| e.id == U256::from(4) && e.provider == b)
    })
    .await;
    assert_eq!(market.balanceOf(b).call().await.unwrap(), before, "giving the job back cost it nothing");
    let log = std::fs::read_to_string(devnet.data_dir.path().join("provider-b.log")).unwrap();
    assert!(log.contains("runs on the docker engine, and this agent runs only wasm"), "says why:\n{log}");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(matched_to(&observer, 4).await, [b], "not matched again to a provider without Docker:\n{}", logs_of(&devnet));
    let solver_log = std::fs::read_to_string(devnet.data_dir.path().join("solver.log")).unwrap();
    assert!(solver_log.contains("runs its engine (docker)"), "the solver says why it waits:\n{solver_log}");
}

/// Authoring: `lilypad module init --wasm`, `module build` (the .wasm checked, no image),
/// `module publish` (imageHash 0, the MODULE_WASM flag), then a job of it on the devnet,
/// whose provider fetches the folder by CID and runs it.
#[tokio::test(flavor = "multi_thread")]
async fn a_new_wasm_module_is_built_published_and_run() {
    let devnet = Devnet::start(3);
    let dir = devnet.data_dir.path().join("hello-wasm");
    let out = devnet.lilypad(&["module", "init", "--wasm", dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{:?}", text(&out));
    assert!(text(&out).0.contains("a WebAssembly module"), "{:?}", text(&out));
    let out = devnet.lilypad(&["module", "build", dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{:?}", text(&out));
    assert!(text(&out).0.contains("compiles for the providers' engine (no image to build)"), "{:?}", text(&out));
    let out = devnet.lilypad(&["module", "publish", dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{:?}", text(&out));
    let (stdout, _) = text(&out);
    assert!(stdout.contains("published hello-wasm:0.1.0") && !stdout.contains("image archive"), "{stdout}");
    let observer = devnet.client(accounts::AUDITOR).await;
    let spec = observer.market().getModule(lilypad_module::module_id("hello-wasm", "0.1.0")).call().await.unwrap().spec;
    assert!(spec.imageHash.is_zero(), "no image pinned");
    assert_eq!(spec.flags & lilypad_module::MODULE_WASM, lilypad_module::MODULE_WASM, "flagged WASM");

    let out = devnet.lilypad(&["run", "hello-wasm:0.1.0", "-i", "Input=you"]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "stdout:\n{stdout}\nstderr:\n{stderr}\ndevnet:\n{}", devnet.log());
    assert!(stdout.contains("Hello, you!"), "{stdout}");
}

/// Bad WASM jobs through the whole network: a module that traps and one that grows its memory
/// past `ramMb` each give the user a clear failure, their jobs settle, and the provider keeps
/// serving (a good WASM job right after runs).
#[tokio::test(flavor = "multi_thread")]
async fn wasm_jobs_that_trap_or_grow_memory_past_the_limit_settle_and_the_provider_keeps_serving() {
    let devnet = Devnet::start(3);
    let observer = devnet.client(accounts::AUDITOR).await;
    let market = observer.market();
    let bad = [
        ("wasm-trap", "(module (memory (export \"memory\") 1) (func (export \"_start\") unreachable))", 134, "trapped"),
        (
            "wasm-grow",
            // grows by 64 MiB at a time until refused, then traps: the limit (ramMb 32) stops it first
            "(module (memory (export \"memory\") 1) (func (export \"_start\") (loop (br_if 0 (i32.ne (memory.grow (i32.const 1024)) (i32.const -1)))) unreachable))",
            137,
            "memory",
        ),
    ];
    for (i, (name, wat, code, says)) in bad.iter().enumerate() {
        let dir = devnet.data_dir.path().join(name);
        let out = devnet.lilypad(&["module", "init", "--wasm", dir.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(0), "{:?}", text(&out));
        std::fs::write(dir.join("app.wasm"), wat::parse_str(wat).unwrap()).unwrap();
        let out = devnet.lilypad(&["module", "publish", dir.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(0), "{:?}", text(&out));
        let out = devnet.lilypad(&["run", &format!("{name}:0.1.0")]);
        let (stdout, stderr) = text(&out);
        assert_ne!(out.status.code(), Some(0), "a failed job is not a success: {stdout}");
        assert!(stderr.contains(&format!("exited with code {code}")) && stderr.contains(says), "{name}: {stderr}\n{}", devnet.log());
        let job = U256::from(i as u64 + 1);
        wait_until("the bad job settled", 60, || async { market.jobHash(job).call().await.unwrap().is_zero() }).await;
    }
    let out = devnet.lilypad(&["run", "lilysay-wasm:0.1.0", "-i", "Message=still here"]);
    assert_eq!(out.status.code(), Some(0), "{:?}\n{}", text(&out), devnet.log());
    assert!(text(&out).0.contains("still here"));
}
