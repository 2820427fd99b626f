//! Separate hosts, in one test (issue 13, items 5 and 6): every party on a host of its own (a
//! network namespace with one address), reaching the others only by IP.
//!
//! - `chain`: Anvil with Arbitrum Sepolia's chain id (421614), listening on its LAN address;
//!   the contracts are deployed to it from another host with `forge script` (a remote RPC).
//! - `solver`, `p1`, `p2` (resource providers), `mediator`, `keeper`, `creator`: `lilypad`
//!   processes, each with its own data folder holding nothing but `networks/testnet.toml`
//!   (RPC URL and deployment file) and a key file; providers serve outputs on their LAN address.
//! - `observer`: the test's own reads of the chain (one thread of the test joins it).
//!
//! Then: each provider has announced its outputs server on chain; a job runs on p1 and the
//! creator fetches verified outputs, knowing only the RPC URL and the deployment file; a second job is matched to
//! p1 and p1's link is cut mid-job: the keeper times it out on chain (the creator refunded, p1's
//! collateral slashed) while p2 takes and runs a third job, which the creator challenges and
//! the mediator re-runs on its own host. Every token is accounted for at the end.
//!
//! Needs root and iproute2 (and Docker, like the other end-to-end tests); it skips with a
//! message otherwise, and fails instead when `LILYPAD_REQUIRE_NETNS=1` (CI). About 70 s here;
//! `forge script` compiles the contracts first if forge's cache is cold (`tools/test` runs
//! `forge test` before, which fills it).

mod common;
#[path = "common/netns.rs"]
mod netns;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use alloy::primitives::{Address, U256};
use alloy::sol_types::SolEvent;
use common::{repo, text, LILYPAD, LP};
use lilypad_bindings::LilypadMarket;
use lilypad_chain::{ChainClient, Deployment};
use lilypad_devnet::{accounts, address_of};
use netns::{Host, Lan, Process};

const CHAIN_ID: u64 = 421614;
const RPC_PORT: u16 = 8545;
const OUTPUTS_PORT: u16 = 8090;
/// Seconds a result can be challenged (the deployment's CHALLENGE_WINDOW).
const CHALLENGE_WINDOW: u64 = 15;
/// The module's run timeout: how long a matched job waits for its result before anyone may
/// time it out (the repository's lilysay has 60 s; this copy 20 s, to keep the test short).
const RUN_TIMEOUT: u64 = 20;
/// p1 asks less than p2, so the solver picks it whenever its collateral allows; that
/// collateral covers one job at a time (collateralBps 20000: twice the price).
const P1_PRICE: u128 = 9 * LP / 10;
const P1_COLLATERAL: u128 = 2 * P1_PRICE;
const P2_PRICE: u128 = LP;

const HOSTS: &[&str] = &["chain", "ops", "solver", "p1", "p2", "mediator", "keeper", "creator", "observer"];

#[test]
fn agents_on_separate_hosts_run_settle_and_survive_a_cut_link() {
    if netns::skip("agents_on_separate_hosts_run_settle_and_survive_a_cut_link") {
        return;
    }
    let started = Instant::now();
    // Dropped last: every process (in the test body) is stopped before the namespaces go.
    let lan = Lan::new(HOSTS);
    let lan = &lan;
    std::thread::scope(|s| {
        // The test's own reads of the chain: from the observer's host (this thread only).
        let body = s.spawn(move || {
            lan.host("observer").enter_on_this_thread();
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(scenario(lan));
        });
        if let Err(panic) = body.join() {
            std::panic::resume_unwind(panic);
        }
    });
    eprintln!("multihost: passed in {:.0} s", started.elapsed().as_secs_f64());
}

/// One host's data folder: `networks/testnet.toml` and a key file, nothing else to start with.
struct Home {
    dir: tempfile::TempDir,
}

impl Home {
    fn new(key: &str, deployment: &Path, rpc_url: &str, extra: &str) -> Home {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir_all(d.join("networks")).unwrap();
        std::fs::create_dir_all(d.join("tmp")).unwrap();
        std::fs::copy(deployment, d.join(format!("{CHAIN_ID}.json"))).unwrap();
        let toml = format!("rpc_url = \"{rpc_url}\"\ndeployment = \"{}\"\n{extra}", d.join(format!("{CHAIN_ID}.json")).display());
        std::fs::write(d.join("networks/testnet.toml"), toml).unwrap();
        let key_file = d.join("key");
        std::fs::write(&key_file, format!("{key}\n")).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600)).unwrap();
        Home { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// `lilypad --data-dir <home> <args> --network testnet --private-key-file <home>/key` on `host`.
    fn lilypad(&self, host: &Host, args: &[&str]) -> Command {
        let mut c = host.command(LILYPAD);
        c.arg("--data-dir").arg(self.path()).args(args);
        c.args(["--network", "testnet", "--private-key-file"]).arg(self.path().join("key"));
        c.current_dir(self.path()).env("TMPDIR", self.path().join("tmp")).env_remove("WEB3_RPC_URL").env_remove("WEB3_PRIVATE_KEY");
        c.env_remove("LILYPAD_DEPLOYMENT").env_remove("LILYPAD_DATA_DIR").env_remove("LILYPAD_OUTPUTS_GATEWAY");
        c
    }

    fn agent(&self, host: &Host, name: &str, args: &[&str]) -> Process {
        Process::spawn(name, self.lilypad(host, args), &self.path().join(format!("{name}.log")))
    }

    fn run(&self, host: &Host, args: &[&str]) -> Output {
        self.lilypad(host, args).stdin(Stdio::null()).output().expect("run lilypad")
    }
}

/// The repository's lilysay with a shorter run timeout, published as lilysay:0.1.0 on this chain.
fn lilysay_copy(into: &Path) -> PathBuf {
    let dir = into.join("lilysay");
    common::copy_dir(&repo().join("modules/lilysay"), &dir);
    let spec = dir.join("lilypad-module.json");
    let mut json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&spec).unwrap()).unwrap();
    json["timeoutSeconds"] = RUN_TIMEOUT.into();
    std::fs::write(&spec, serde_json::to_string_pretty(&json).unwrap()).unwrap();
    dir
}

/// `forge script script/Deploy.s.sol` from `host` to `rpc_url`, the deployment file written
/// to (and returned at) `into/<chainId>.json`.
fn deploy(host: &Host, rpc_url: &str, into: &Path) -> PathBuf {
    let name = format!("deployments/test-multihost-{}-{}.json", std::process::id(), host.ns);
    let written = repo().join(&name);
    let out = host
        .command("forge")
        .args(["script", "script/Deploy.s.sol", "--rpc-url", rpc_url, "--private-key", accounts::ADMIN, "--broadcast"])
        .current_dir(repo())
        .env("DEPLOYMENT_FILE", &name)
        .env("CHALLENGE_WINDOW", CHALLENGE_WINDOW.to_string())
        .output()
        .expect("run forge script (source tools/env.sh first: forge must be on PATH)");
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "forge script to {rpc_url} failed:\n{stdout}\n{stderr}");
    let to = into.join(format!("{CHAIN_ID}.json"));
    std::fs::copy(&written, &to).unwrap_or_else(|e| panic!("{}: {e}\n{stdout}", written.display()));
    std::fs::remove_file(&written).unwrap();
    to
}

async fn wait_for<F: std::future::Future<Output = bool>>(what: &str, secs: u64, logs: &[&Process], mut f: impl FnMut() -> F) {
    let start = Instant::now();
    while !f().await {
        if start.elapsed() > Duration::from_secs(secs) {
            let tails: String = logs.iter().map(|p| p.tail(40)).collect();
            panic!("timed out after {secs} s waiting for {what}\n{tails}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Events `E` of the market, from block 0.
async fn events<E: SolEvent>(c: &ChainClient) -> Vec<E> {
    let filter = alloy::rpc::types::Filter::new().address(c.deployment().market).event_signature(E::SIGNATURE_HASH).from_block(0);
    let logs = alloy::providers::Provider::get_logs(c.provider(), &filter).await.unwrap();
    logs.iter().map(|l| E::decode_log(&l.inner).unwrap().data).collect()
}

fn matched(events: &[LilypadMarket::JobMatched], id: u64) -> Option<&LilypadMarket::JobMatched> {
    events.iter().rev().find(|e| e.id == U256::from(id))
}

/// Tokens held plus market balance of each party, the market's tokens and the supply.
struct Ledger {
    total: std::collections::HashMap<Address, U256>,
    owed: U256,
    held: U256,
    market_tokens: U256,
    supply: U256,
}

impl Ledger {
    async fn read(c: &ChainClient, parties: &[Address]) -> Ledger {
        let (market, token) = (c.market(), c.token());
        let mut l = Ledger {
            total: Default::default(),
            owed: U256::ZERO,
            held: U256::ZERO,
            market_tokens: token.balanceOf(c.deployment().market).call().await.unwrap(),
            supply: token.totalSupply().call().await.unwrap(),
        };
        for &a in parties {
            let (t, m) = (token.balanceOf(a).call().await.unwrap(), market.balanceOf(a).call().await.unwrap());
            l.total.insert(a, t + m);
            l.owed += m;
            l.held += t;
        }
        l
    }
}

fn data_id(stdout: &str) -> String {
    stdout.lines().find_map(|l| l.split("Data ID: ").nth(1)).and_then(|r| r.split_whitespace().next()).unwrap_or_default().to_string()
}

/// A folder named `name` under `dir`, at any depth.
fn find_dir(dir: &Path, name: &str) -> Option<PathBuf> {
    for e in std::fs::read_dir(dir).ok()?.flatten() {
        let p = e.path();
        if p.is_dir() {
            if p.file_name().is_some_and(|n| n == name) {
                return Some(p);
            }
            if let Some(found) = find_dir(&p, name) {
                return Some(found);
            }
        }
    }
    None
}

async fn scenario(lan: &Lan) {
    let work = tempfile::tempdir().unwrap();
    let (chain, ops) = (lan.host("chain"), lan.host("ops"));
    let rpc_url = format!("http://{}:{RPC_PORT}", chain.ip);

    // --- the chain on its own host, and the contracts deployed to it from another (forge script)
    let mut anvil_cmd = chain.command("anvil");
    let (port, chain_id) = (RPC_PORT.to_string(), CHAIN_ID.to_string());
    anvil_cmd.args(["--host", chain.ip.as_str(), "--port", port.as_str(), "--chain-id", chain_id.as_str(), "--block-time", "1"]);
    let mut anvil = Process::spawn("anvil", anvil_cmd, &work.path().join("anvil.log"));
    let up = Instant::now();
    while !anvil.log().contains("Listening on") {
        anvil.assert_running();
        assert!(up.elapsed() < Duration::from_secs(30), "anvil did not start:\n{}", anvil.log());
        std::thread::sleep(Duration::from_millis(50));
    }
    let deployment_file = deploy(ops, &rpc_url, work.path());
    let deployment = Deployment::load(&deployment_file).unwrap();
    assert_eq!(deployment.chain_id, CHAIN_ID, "deployed to the remote chain");

    // --- the owner funds the parties (tokens: a fixed-supply token off the devnets) and
    //     publishes the module
    let admin = ChainClient::connect(&rpc_url, Some(accounts::ADMIN), deployment.clone()).await.unwrap();
    let module_dir = lilysay_copy(work.path());
    let module = lilypad_module::Module::load(&module_dir).unwrap();
    let market = admin.market();
    admin
        .send("publishModule", market.publishModule(module.name().into(), module.version().into(), module.chain_spec()))
        .await
        .unwrap();
    let addr = |k: &str| address_of(k).unwrap();
    // The keeper needs only gas: any funded account does (anvil's ninth).
    let keeper_key = accounts::RESOURCE_PROVIDER_3;
    let (creator, solver, p1, p2, mediator, keeper) = (
        addr(accounts::JOB_CREATOR),
        addr(accounts::SOLVER),
        addr(accounts::RESOURCE_PROVIDER),
        addr(accounts::RESOURCE_PROVIDER_2),
        addr(accounts::MEDIATOR),
        addr(keeper_key),
    );
    let token = admin.token();
    for (who, amount) in [(creator, 100 * LP), (p1, P1_COLLATERAL), (p2, 100 * LP)] {
        admin.send("transfer", token.transfer(who, U256::from(amount))).await.unwrap();
    }
    let parties = [addr(accounts::ADMIN), creator, solver, p1, p2, mediator, keeper];

    // --- the agents, each on its own host with its own data folder
    let home = |key: &str, extra: &str| Home::new(key, &deployment_file, &rpc_url, extra);
    let module_arg = module_dir.to_str().unwrap();
    // who may mediate is the market owner's choice (open-market safety): approve ours first
    admin.send("approveMediator", market.approveMediator(mediator, true)).await.unwrap();
    let mediator_home = home(accounts::MEDIATOR, "");
    let mediator_agent = mediator_home.agent(lan.host("mediator"), "mediator", &["mediator", "--module", module_arg]);
    wait_for("the mediator's registration", 60, &[&mediator_agent], || async {
        market.accountOf(mediator).call().await.unwrap().mediatorSlot == 1
    })
    .await;
    admin.send("setDefaultMediators", market.setDefaultMediators(1)).await.unwrap();

    let solver_home = home(accounts::SOLVER, "");
    let solver_agent = solver_home.agent(lan.host("solver"), "solver", &["solver", "--poll-ms", "100"]);
    let keeper_home = home(keeper_key, "");
    let keeper_agent = keeper_home.agent(lan.host("keeper"), "keeper", &["keeper", "--grace-secs", "1", "--poll-ms", "200"]);
    let provider = |name: &str, key: &str, price: u128, collateral: u128, poll_ms: &str| {
        let host = lan.host(name);
        let h = home(key, "");
        let listen = format!("{}:{OUTPUTS_PORT}", host.ip);
        let (price, collateral) = (price.to_string(), collateral.to_string());
        let args: [&str; 11] =
            ["resource-provider", "--module", module_arg, "--outputs-listen", &listen, "--price", &price, "--collateral", &collateral, "--poll-ms", poll_ms];
        let p = h.agent(host, name, &args);
        (h, p, format!("http://{listen}"))
    };
    // p1 looks for new blocks every 2 s: the test sees its match (every 50 ms) and cuts its
    // link before it can post a result.
    let (_p1_home, p1_agent, p1_outputs) = provider("p1", accounts::RESOURCE_PROVIDER, P1_PRICE, P1_COLLATERAL, "2000");
    let (_p2_home, p2_agent, p2_outputs) = provider("p2", accounts::RESOURCE_PROVIDER_2, P2_PRICE, 10 * P2_PRICE, "100");
    let all = [&solver_agent, &p1_agent, &p2_agent, &mediator_agent, &keeper_agent];
    for (who, what) in [(p1, "p1"), (p2, "p2")] {
        wait_for(&format!("{what}'s collateral deposited"), 120, &all, || async { !market.balanceOf(who).call().await.unwrap().is_zero() }).await;
    }
    let before = Ledger::read(&admin, &parties).await;

    // --- each provider announced on chain where it serves its outputs (its LAN address)
    for (who, url) in [(p1, &p1_outputs), (p2, &p2_outputs)] {
        wait_for(&format!("{who} announced its outputs server"), 60, &all, || async { admin.announced_endpoints(who).await.unwrap() == vec![url.clone()] }).await;
    }

    // --- job 1: the creator knows nothing but the RPC URL and the deployment file (its
    //     network file): where the outputs are served it reads from the chain
    let creator_host = lan.host("creator");
    let creator_home = home(accounts::JOB_CREATOR, "");
    let out = creator_home.run(creator_host, &["run", "lilysay:0.1.0", "-i", "Message=hello from another host"]);
    let (stdout, stderr) = text(&out);
    let tails = || all.iter().map(|p| p.tail(30)).collect::<String>();
    assert_eq!(out.status.code(), Some(0), "job 1:\n{stdout}\n{stderr}\n{}", tails());
    assert!(stdout.contains("hello from another host") && stdout.contains("(job 1, verified"), "{stdout}");
    let job1 = events::<LilypadMarket::JobMatched>(&admin).await;
    assert_eq!(matched(&job1, 1).unwrap().provider, p1, "the cheaper provider runs job 1");
    let got = creator_home.path().join("downloaded-files/1/stdout");
    assert!(std::fs::read_to_string(&got).unwrap().contains("hello from another host"), "{}", got.display());
    // job 1 settles after its window; p1's collateral is free again
    wait_for("job 1 settled", CHALLENGE_WINDOW + 30, &all, || async { market.jobHash(U256::from(1)).call().await.unwrap().is_zero() }).await;

    // --- job 2: matched to p1, whose link is cut mid-job
    let out = creator_home.run(creator_host, &["run", "--detach", "lilysay:0.1.0", "-i", "Message=lost link"]);
    assert_eq!(out.status.code(), Some(0), "job 2: {:?}", text(&out));
    let waiting = Instant::now();
    let job2 = loop {
        if let Some(m) = matched(&events::<LilypadMarket::JobMatched>(&admin).await, 2) {
            break m.clone();
        }
        assert!(waiting.elapsed() < Duration::from_secs(30), "job 2 not matched in 30 s\n{}", tails());
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(job2.provider, p1, "job 2 goes to the cheaper provider, whose collateral is free");
    lan.host("p1").cut();
    let cut_at = Instant::now();

    // --- job 3, meanwhile: p1's collateral is locked in job 2, so p2 takes it; the creator
    //     fetches it from p2's outputs server (found on chain) and challenges it
    let out = creator_home.run(creator_host, &["run", "lilysay:0.1.0", "-i", "Message=the other provider"]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "job 3:\n{stdout}\n{stderr}\n{}", tails());
    assert!(stdout.contains("the other provider") && stdout.contains("(job 3, verified"), "{stdout}");
    let job3_cid = data_id(&stdout);
    assert_eq!(matched(&events::<LilypadMarket::JobMatched>(&admin).await, 3).unwrap().provider, p2, "p2 keeps working");
    let out = creator_home.run(creator_host, &["challenge", "3"]);
    assert_eq!(out.status.code(), Some(0), "challenge 3: {:?}\n{}", text(&out), tails());

    // --- the mediator re-runs job 3 on its host and rules; the keeper times job 2 out
    for id in [3u64, 2] {
        let secs = if id == 2 { RUN_TIMEOUT + 60 } else { 90 };
        wait_for(&format!("job {id} final"), secs, &all, || async { market.jobHash(U256::from(id)).call().await.unwrap().is_zero() }).await;
    }
    eprintln!("multihost: job 2 timed out {:.0} s after p1's link was cut", cut_at.elapsed().as_secs_f64());
    let ruled = events::<LilypadMarket::ChallengeRuled>(&admin).await;
    assert_eq!(ruled.len(), 1, "{}", tails());
    assert_eq!((ruled[0].id, ruled[0].mediator, ruled[0].upheld), (U256::from(3), mediator, false), "the honest result stands");
    let rerun = find_dir(mediator_home.path(), "reruns").map(|r| r.join("3"));
    assert!(rerun.as_ref().is_some_and(|r| r.join("stdout").is_file()), "the mediator's re-run of job 3 is in its own data folder: {rerun:?}");
    assert_eq!(std::fs::read_to_string(rerun.unwrap().join("stdout")).unwrap(), std::fs::read_to_string(creator_home.path().join("downloaded-files/3/stdout")).unwrap());
    assert!(!job3_cid.is_empty());

    let timed_out = events::<LilypadMarket::ResultTimedOut>(&admin).await;
    assert_eq!(timed_out.len(), 1, "{}", tails());
    assert_eq!((timed_out[0].id, timed_out[0].provider, timed_out[0].slashed), (U256::from(2), p1, job2.collateral), "job 2 timed out, p1 slashed");
    let submitted = events::<LilypadMarket::ResultSubmitted>(&admin).await;
    assert!(submitted.iter().all(|e| e.id != U256::from(2)), "p1 posted no result for job 2 after its link was cut");
    let settled = events::<LilypadMarket::JobSettled>(&admin).await;
    let ids: Vec<U256> = settled.iter().map(|e| e.id).collect();
    assert_eq!(ids, [U256::from(1), U256::from(3)], "jobs 1 and 3 settled");

    // --- nothing lost: every party's tokens moved by exactly what the events say
    let after = Ledger::read(&admin, &parties).await;
    assert_eq!(after.supply, before.supply, "no token minted or burnt");
    assert_eq!(after.held + after.market_tokens, after.supply, "every token is a party's or the market's");
    assert_eq!(after.owed, after.market_tokens, "no job live: the market holds exactly what it owes");
    let (fee, bond) = (U256::from(deployment.mediator_fee), U256::from(deployment.challenge_bond));
    let cost = |e: &LilypadMarket::JobSettled| U256::from(e.price) + U256::from(e.solverFee);
    let delta = |who: Address| (before.total[&who], after.total[&who]);
    let slashed = U256::from(job2.collateral);
    let (b, a) = delta(creator);
    assert_eq!(a + cost(&settled[0]) + cost(&settled[1]) + fee + bond, b + slashed, "creator: paid jobs 1 and 3 and the challenge; job 2 refunded with p1's collateral");
    let (b, a) = delta(p1);
    assert_eq!(a + slashed, b + U256::from(settled[0].price), "p1: job 1's price, less the collateral of job 2");
    let (b, a) = delta(p2);
    assert_eq!(a, b + U256::from(settled[1].price) + bond, "p2: job 3's price and the challenger's bond");
    let (b, a) = delta(solver);
    assert_eq!(a, b + U256::from(settled[0].solverFee) + U256::from(settled[1].solverFee), "solver: its fees");
    let (b, a) = delta(mediator);
    assert_eq!(a, b + fee, "mediator: its fee");

    // p2 and the others are still up; p1 too, cut off
    for mut p in [solver_agent, p1_agent, p2_agent, mediator_agent, keeper_agent, anvil] {
        p.assert_running();
    }
}
