//! Crash soak: a devnet with a solver, two resource providers and a mediator, each a `lilypad`
//! process of its own, runs N lilysay jobs (some challenged, so the mediator works) while a
//! driver thread kills a random agent with SIGKILL at random moments (seeded; the seed is
//! printed) and starts it again. At the end:
//!
//! - every job is final (no hash stored in the market) and has exactly one final event
//!   (settled, expired/cancelled, result timed out, mediation timed out, or upheld);
//! - tokens are conserved: the holders' balances plus the market's equal the supply, which did
//!   not change, and the market's internal balances add up to exactly the tokens it holds (no
//!   escrow left behind);
//! - no container or volume of the agents is left in Docker and no temporary folder or file
//!   under their data folders;
//! - no provider cheats, so no challenge is upheld (an upheld one fails the soak with the
//!   mediator's ruling and how its re-run folder differs from the provider's result folder);
//! - every settled result's CID equals the CID of a fresh run of the same module and inputs.
//!
//! CI runs `LILYPAD_SOAK_JOBS` (default 40) jobs. A longer soak, e.g. 300 jobs with a fixed seed:
//!
//! ```sh
//! LILYPAD_SOAK_JOBS=300 LILYPAD_SOAK_SEED=42 cargo test -p lilypad --test soak -- --nocapture
//! ```
//!
//! `tools/soak` runs the long soak (500 jobs, several seeds) and summarises it.
//!
//! Needs anvil (tools/bootstrap) and a Docker engine (tools/bootstrap --docker).

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use alloy::primitives::{keccak256, Address, U256};
use alloy::providers::Provider as _;
use alloy::sol_types::SolEvent;
use common::*;
use lilypad_bindings::{JobState, LilypadMarket};
use lilypad_chain::{EventStream, JobBook, JobChange, JobRecord, Outcome};
use lilypad_devnet::{accounts, address_of};

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok())
}

#[tokio::test(flavor = "multi_thread")]
async fn soak_agents_killed_at_random_every_job_final_and_funds_conserved() {
    let jobs = env_u64("LILYPAD_SOAK_JOBS").unwrap_or(40);
    let seed = env_u64("LILYPAD_SOAK_SEED").unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(1)
    });
    println!("soak: seed {seed} (rerun with LILYPAD_SOAK_SEED={seed}), {jobs} jobs");
    let started = Instant::now();
    const WINDOW: u64 = 8;
    let devnet = Devnet::start_with(&["--no-agents", "--challenge-window", &WINDOW.to_string()]);
    let lilysay = repo().join("modules/lilysay");
    let lilysay = lilysay.to_str().unwrap();
    let provider_args = |key: Option<&str>| -> Vec<String> {
        let mut a: Vec<String> = ["resource-provider", "--module", lilysay, "--gateway", "127.0.0.1:0", "--concurrency", "2"].map(String::from).to_vec();
        if let Some(k) = key {
            a.extend(["--private-key".to_string(), k.to_string()]);
        }
        a
    };
    let agents = vec![
        devnet.agent("solver", &["solver".to_string()]),
        devnet.agent("provider-1", &provider_args(None)),
        devnet.agent("provider-2", &provider_args(Some(accounts::RESOURCE_PROVIDER_2))),
        devnet.agent("mediator", &["mediator".to_string(), "--module".into(), lilysay.into()]),
    ];
    let agents = Arc::new(Mutex::new(agents));
    for a in agents.lock().unwrap().iter_mut() {
        a.start();
    }
    let dump_logs = |agents: &Arc<Mutex<Vec<Agent>>>| -> String {
        agents.lock().unwrap().iter().map(|a| format!("--- {} ---\n{}", a.name, tail(&a.log(), 60))).collect::<Vec<_>>().join("\n")
    };

    let creator = devnet.client(accounts::JOB_CREATOR).await;
    let auditor = devnet.client(accounts::AUDITOR).await;
    let d = creator.deployment().clone();
    let market = creator.market();
    let token = creator.token();
    let supply_before = token.totalSupply().call().await.unwrap();
    let me = creator.address().unwrap();
    let module_id = lilypad_module::module_id("lilysay", "0.1.0");
    let payment = market.getModule(module_id).call().await.unwrap().spec.defaultPayment;
    creator.send("approve", token.approve(d.market, U256::from(payment) * U256::from(jobs))).await.unwrap();
    // the challenger pays from its balance in the market
    let deposit = U256::from(d.challenge_deposit());
    auditor.send("approve", auditor.token().approve(d.market, deposit * U256::from(jobs))).await.unwrap();
    auditor.send("deposit", auditor.market().deposit(auditor.address().unwrap(), deposit * U256::from(jobs))).await.unwrap();

    // --- the killer: SIGKILL a random agent every 1.5-5 s, start it again 0.2-2 s later
    let stop = Arc::new(AtomicBool::new(false));
    let unexpected: Arc<Mutex<Vec<String>>> = Arc::default();
    let killer = {
        let (agents, stop, unexpected) = (agents.clone(), stop.clone(), unexpected.clone());
        std::thread::spawn(move || {
            let mut rng = Rng::new(seed ^ 0x5eed);
            let mut kills = 0u32;
            while !stop.load(Ordering::SeqCst) {
                let until = Instant::now() + Duration::from_millis(rng.range(1500, 5000));
                while Instant::now() < until && !stop.load(Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(50));
                    // an agent that stopped by itself is a bug: note it, start it again
                    for a in agents.lock().unwrap().iter_mut() {
                        if let Some(status) = a.exited() {
                            unexpected.lock().unwrap().push(format!("{} exited by itself ({status})", a.name));
                            a.child = None;
                            a.start();
                        }
                    }
                }
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let mut guard = agents.lock().unwrap();
                let i = rng.range(0, guard.len() as u64) as usize;
                guard[i].kill();
                let name = guard[i].name.clone();
                drop(guard);
                kills += 1;
                println!("soak: kill {kills}: {name} (t={:.1}s)", started.elapsed().as_secs_f64());
                std::thread::sleep(Duration::from_millis(rng.range(200, 2000)));
                agents.lock().unwrap()[i].start();
            }
        })
    };

    // --- the job creator and the challenger
    let mut rng = Rng::new(seed);
    let mut stream = EventStream::new(creator.clone(), d.start_block);
    let mut book = JobBook::new();
    // every job's last record (inputs, submitted result) as it left the book
    let mut ended: BTreeMap<U256, (Outcome, JobRecord)> = BTreeMap::new();
    let mut created: u64 = 0;
    let mut to_challenge = BTreeSet::new();
    let mut challenged = BTreeSet::new();
    let mut challenge_missed = 0u32;
    let mut results = BTreeSet::new();
    let busy_budget = Duration::from_secs(env_u64("LILYPAD_SOAK_SECS").unwrap_or(60 + jobs * 3));
    loop {
        while let Some(batch) = stream.poll_once().await.unwrap() {
            for log in &batch.logs {
                if let Some(JobChange::Finished { id, outcome, record }) = book.apply(log) {
                    ended.insert(id, (outcome, *record));
                }
            }
        }
        let waiting = book.live().filter(|r| matches!(r.state(), JobState::Open | JobState::Matched)).count();
        if created < jobs && waiting < 8 {
            created += 1;
            creator.send("runJob", market.runJob("lilysay:0.1.0".into(), vec![format!("Message=soak job {created}")], me)).await.unwrap();
            if rng.chance(20) {
                to_challenge.insert(U256::from(created));
            }
        }
        let due: Vec<_> = book
            .live()
            .filter(|r| r.state() == JobState::Submitted && to_challenge.contains(&r.id) && !challenged.contains(&r.id))
            .cloned()
            .collect();
        for r in due {
            challenged.insert(r.id);
            match auditor.send(&format!("challenge(job {})", r.id), auditor.market().challenge(r.id, r.job.clone())).await {
                Ok(_) => {}
                // the window passed under load, or the provider settled it first: not challenged
                Err(e) => {
                    challenge_missed += 1;
                    println!("soak: challenge of job {} missed: {e}", r.id);
                }
            }
        }
        for r in book.live() {
            if r.state() == JobState::Submitted {
                results.insert(r.id);
            }
        }
        let live = book.live().count();
        if created == jobs && live == 0 {
            break;
        }
        if started.elapsed() > busy_budget {
            println!("soak: busy phase over after {:?} with {live} live jobs", started.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.store(true, Ordering::SeqCst);
    killer.join().unwrap();
    for a in agents.lock().unwrap().iter_mut() {
        if a.child.is_none() {
            a.start();
        }
    }
    assert_eq!(created, jobs, "every job was created within the time budget:\n{}", dump_logs(&agents));

    // --- the chain's own exits for whatever is still live: its timeouts, anyone may call them
    let mut forced: BTreeMap<U256, &'static str> = BTreeMap::new();
    let calm = Instant::now();
    loop {
        while let Some(batch) = stream.poll_once().await.unwrap() {
            for log in &batch.logs {
                if let Some(JobChange::Finished { id, outcome, record }) = book.apply(log) {
                    ended.insert(id, (outcome, *record));
                }
            }
        }
        if book.is_empty() || calm.elapsed() > Duration::from_secs(45) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    if !book.is_empty() {
        let live: Vec<_> = book.live().map(|r| (r.id, r.state())).collect();
        println!("soak: still live after the agents had 45 s of calm: {live:?}; using the market's timeouts");
        advance_time(&auditor, u64::from(d.mediation_timeout.max(d.match_timeout)) + 120).await;
        let m = auditor.market();
        for r in book.live().cloned().collect::<Vec<_>>() {
            let (what, sent) = match r.state() {
                JobState::Open => ("expireJob", auditor.send("expireJob", m.expireJob(r.id, r.job.clone())).await),
                JobState::Matched => ("timeoutResult", auditor.send("timeoutResult", m.timeoutResult(r.id, r.job.clone())).await),
                JobState::Submitted => (
                    "settle",
                    auditor.send("settle", m.settle(r.id, r.job.clone(), r.data_id.clone().unwrap_or_default(), r.result_hash.unwrap_or_default())).await,
                ),
                JobState::Challenged => ("timeoutMediation", auditor.send("timeoutMediation", m.timeoutMediation(r.id, r.job.clone(), r.data_id.clone().unwrap_or_default(), r.result_hash.unwrap_or_default())).await),
                _ => continue,
            };
            if let Err(e) = sent {
                // an agent may have got there first
                println!("soak: {what}(job {}) refused: {e}", r.id);
            }
            forced.insert(r.id, what);
        }
    }
    // the agents settle what they still hold; give them a moment, then stop them cleanly
    wait_until_final(&creator, jobs, 60).await.unwrap_or_else(|live| panic!("jobs {live:?} not final:\n{}", dump_logs(&agents)));
    for a in agents.lock().unwrap().iter_mut() {
        a.stop();
    }
    let elapsed = started.elapsed();
    // the last events: every job's final record
    while let Some(batch) = stream.poll_once().await.unwrap() {
        for log in &batch.logs {
            if let Some(JobChange::Finished { id, outcome, record }) = book.apply(log) {
                ended.insert(id, (outcome, *record));
            }
        }
    }

    // --- every job final, exactly one final event each
    let mut finals: HashMap<U256, Vec<&'static str>> = HashMap::new();
    for (sig, what) in [
        (LilypadMarket::JobSettled::SIGNATURE_HASH, "settled"),
        (LilypadMarket::JobExpired::SIGNATURE_HASH, "expired"),
        (LilypadMarket::JobCancelled::SIGNATURE_HASH, "cancelled"),
        (LilypadMarket::ResultTimedOut::SIGNATURE_HASH, "result timed out"),
        (LilypadMarket::MediationTimedOut::SIGNATURE_HASH, "mediation timed out"),
    ] {
        for id in job_ids(&logs(&creator, sig).await) {
            finals.entry(id).or_default().push(what);
        }
    }
    let mut upheld = Vec::new();
    let mut rejected = 0;
    for l in logs(&creator, LilypadMarket::ChallengeRuled::SIGNATURE_HASH).await {
        let e = LilypadMarket::ChallengeRuled::decode_log(&l.inner).unwrap().data;
        if e.upheld {
            upheld.push(e.id);
            finals.entry(e.id).or_default().push("upheld");
        } else {
            rejected += 1; // also JobSettled
        }
    }
    let mut per_result: HashMap<U256, u32> = HashMap::new();
    for id in job_ids(&logs(&creator, LilypadMarket::ResultSubmitted::SIGNATURE_HASH).await) {
        *per_result.entry(id).or_default() += 1;
    }
    let mut outcome_counts: BTreeMap<&str, u32> = BTreeMap::new();
    for j in 1..=jobs {
        let id = U256::from(j);
        assert!(market.jobHash(id).call().await.unwrap().is_zero(), "job {j} is not final");
        let f = finals.get(&id).cloned().unwrap_or_default();
        assert_eq!(f.len(), 1, "job {j}: exactly one final event, got {f:?}\n{}", dump_logs(&agents));
        *outcome_counts.entry(f[0]).or_default() += 1;
        assert!(per_result.get(&id).copied().unwrap_or(0) <= 1, "job {j}: at most one result");
    }
    assert_eq!(finals.len() as u64, jobs, "no final event for a job that does not exist");

    // --- tokens: holders + market = supply (unchanged); market balances = market's tokens
    let transfer = keccak256("Transfer(address,address,uint256)");
    let transfers = creator
        .provider()
        .get_logs(&alloy::rpc::types::Filter::new().address(d.token).event_signature(transfer).from_block(0))
        .await
        .unwrap();
    let mut parties: BTreeSet<Address> = BTreeSet::new();
    for l in &transfers {
        for t in &l.topics()[1..3] {
            parties.insert(Address::from_word(*t));
        }
    }
    parties.remove(&Address::ZERO);
    parties.remove(&d.market);
    let supply = token.totalSupply().call().await.unwrap();
    let market_tokens = token.balanceOf(d.market).call().await.unwrap();
    let mut held = U256::ZERO;
    let mut credited = U256::ZERO;
    for p in &parties {
        held += token.balanceOf(*p).call().await.unwrap();
        credited += market.balanceOf(*p).call().await.unwrap();
    }
    assert_eq!(supply, supply_before, "no tokens minted or burnt during the soak");
    assert_eq!(held + market_tokens, supply, "holders' tokens + the market's = supply");
    assert_eq!(credited, market_tokens, "the market's balances add up to the tokens it holds: no escrow left");

    // --- nothing left in Docker or on disk
    let dir = devnet.dir();
    let state = devnet.state_dir().await;
    let instances = [
        instance_of("provider", "provider", address_of(accounts::RESOURCE_PROVIDER).unwrap(), &state),
        instance_of("provider", "provider", address_of(accounts::RESOURCE_PROVIDER_2).unwrap(), &state),
        instance_of("mediator", "mediator", address_of(accounts::MEDIATOR).unwrap(), &state),
    ];
    for i in &instances {
        let left = docker_leftovers(i);
        assert!(left.is_empty(), "left in Docker by {i}: {left:?}");
    }
    let left = temp_leftovers(dir);
    assert!(left.is_empty(), "temporary files left: {left:?}");
    let unexpected = unexpected.lock().unwrap().clone();
    assert!(unexpected.is_empty(), "agents stopped by themselves: {unexpected:?}\n{}", dump_logs(&agents));

    // --- every settled result is the job's real result: the CID of a fresh run of the same
    // module and inputs here (the upheld ones are run too, to tell who was wrong)
    let to_verify: Vec<JobRecord> = ended
        .values()
        .filter(|(o, r)| r.data_id.is_some() && (matches!(o, Outcome::Settled { .. }) || upheld.contains(&r.id)))
        .map(|(_, r)| r.clone())
        .collect();
    let settled_results = to_verify.iter().filter(|r| !upheld.contains(&r.id)).count();
    let verify_started = Instant::now();
    let fresh = fresh_run_cids(&repo().join("modules/lilysay"), &to_verify).await;
    let mut wrong = Vec::new();
    for r in &to_verify {
        let posted = r.data_id.as_deref().unwrap_or_default();
        match fresh.get(&r.id) {
            Some(Ok(cid)) if cid == posted => {}
            Some(Ok(cid)) if upheld.contains(&r.id) => println!("soak: job {}: a fresh run gives {cid}, the provider posted {posted}", r.id),
            Some(Ok(cid)) => wrong.push(format!("job {}: settled {posted}, a fresh run gives {cid}", r.id)),
            Some(Err(e)) => wrong.push(format!("job {}: the fresh run failed: {e}", r.id)),
            None => wrong.push(format!("job {}: not run again", r.id)),
        }
    }
    println!("soak: {} results checked against fresh runs in {:.0} s", to_verify.len(), verify_started.elapsed().as_secs_f64());

    // --- why a challenge was upheld: the mediator's ruling and how its re-run differs
    let explained: Vec<String> = upheld
        .iter()
        .map(|id| {
            let fresh = fresh.get(id).map(|r| format!("{r:?}")).unwrap_or_default();
            format!("{}\n  a fresh run here: {fresh}", explain_upheld(&state, &agents.lock().unwrap()[3], *id))
        })
        .collect();

    let kills: Vec<String> = agents.lock().unwrap().iter().map(|a| format!("{} {}", a.name, a.kills)).collect();
    let total_kills: u32 = agents.lock().unwrap().iter().map(|a| a.kills).sum();
    println!(
        "soak summary: seed {seed}, {jobs} jobs in {:.0} s: {outcome_counts:?} (challenges {} sent, {challenge_missed} missed, {} upheld, {rejected} rejected; {} forced by timeouts {forced:?}); {total_kills} kills ({}); fresh runs: {} of {settled_results} settled results differ; tokens: supply {supply} = holders {held} + market {market_tokens}; market balances {credited} = market tokens {market_tokens}",
        elapsed.as_secs_f64(),
        challenged.len(),
        upheld.len(),
        forced.len(),
        kills.join(", "),
        wrong.len(),
    );
    assert!(total_kills > 0, "the soak killed something");
    // No provider here cheats and lilysay is deterministic: an upheld challenge is an honest
    // provider slashed.
    assert!(upheld.is_empty(), "{} challenges upheld against honest providers:\n{}", upheld.len(), explained.join("\n"));
    assert!(wrong.is_empty(), "settled results that are not the jobs' real results:\n{}", wrong.join("\n"));
}

/// The CID of a fresh run of each job (same module, same inputs, the same run path as a
/// provider's and a mediator's), by an executor of its own, a few at a time.
async fn fresh_run_cids(module_dir: &std::path::Path, records: &[JobRecord]) -> HashMap<U256, Result<String, String>> {
    use futures_util::StreamExt as _;
    let module = lilypad_module::Module::load(module_dir).unwrap();
    let config = lilypad_executor::ExecutorConfig { instance: format!("soak-fresh-{}", std::process::id()), ..Default::default() };
    let engine = lilypad_runner::DockerEngine::connect(config).await.unwrap();
    if !engine.executor().has_image(&module.image_tag()).await.unwrap() {
        lilypad_module::build_image(&module, engine.executor()).await.unwrap();
    }
    let work = tempfile::tempdir().unwrap();
    let store = lilypad_store::DiskBlockstore::open(work.path().join("blocks")).unwrap();
    let (engine, store, module, work) = (&engine, &store, &module, work.path());
    let runs = futures_util::stream::iter(records.iter().map(|r| async move {
        let dir = work.join(r.id.to_string());
        let cid = lilypad_runner::run_job(engine, store, module, r, &dir, false).await.map(|(cid, _)| cid.to_string()).map_err(|e| e.to_string());
        (r.id, cid)
    }));
    let cids: HashMap<U256, Result<String, String>> = runs.buffer_unordered(3).collect().await;
    // the outputs volumes it prepared ahead and the removals still running in the background
    engine.executor().release().await;
    assert!(docker_leftovers(&engine.executor().config().instance).is_empty(), "the fresh runs left containers");
    cids
}

/// What the mediator said when it upheld job `id`, and how its re-run folder differs from the
/// provider's result folder (both kept under the chain's state folder, [`Devnet::state_dir`]).
fn explain_upheld(dir: &std::path::Path, mediator: &Agent, id: U256) -> String {
    let job = format!("job={id} ");
    let ruling: Vec<String> = mediator.log().lines().map(strip_ansi).filter(|l| l.contains(&job) && l.contains("upholding")).collect();
    let folders = |role: &str, sub: &str| -> Vec<std::path::PathBuf> {
        std::fs::read_dir(dir.join(role)).into_iter().flatten().flatten().map(|e| e.path().join(sub).join(id.to_string())).filter(|p| p.is_dir()).collect()
    };
    let mut out = format!("job {id}: {}", ruling.join(" | "));
    for theirs in folders("provider", "results") {
        for mine in folders("mediator", "reruns") {
            out.push_str(&format!("\n  provider {} vs mediator {}: {:?}", theirs.display(), mine.display(), diff_folders(&theirs, &mine)));
        }
    }
    out
}

/// Files that differ between two result folders: `name: only in a`, `name: only in b`,
/// `name: N vs M bytes` or `name: same size, different bytes`.
fn diff_folders(a: &std::path::Path, b: &std::path::Path) -> Vec<String> {
    fn files(root: &std::path::Path, at: &std::path::Path, out: &mut BTreeMap<String, Vec<u8>>) {
        for e in std::fs::read_dir(at).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                files(root, &p, out);
            } else {
                let name = p.strip_prefix(root).unwrap().display().to_string();
                out.insert(name, std::fs::read(&p).unwrap_or_default());
            }
        }
    }
    let (mut fa, mut fb) = (BTreeMap::new(), BTreeMap::new());
    files(a, a, &mut fa);
    files(b, b, &mut fb);
    let names: BTreeSet<&String> = fa.keys().chain(fb.keys()).collect();
    let mut out = Vec::new();
    for n in names {
        match (fa.get(n), fb.get(n)) {
            (Some(x), Some(y)) if x == y => {}
            (Some(x), Some(y)) if x.len() != y.len() => out.push(format!("{n}: {} vs {} bytes", x.len(), y.len())),
            (Some(_), Some(_)) => out.push(format!("{n}: same size, different bytes")),
            (Some(_), None) => out.push(format!("{n}: only in {}", a.display())),
            _ => out.push(format!("{n}: only in {}", b.display())),
        }
    }
    out
}

/// Waits until no job 1..=jobs has a stored hash; returns the live ones on timeout.
async fn wait_until_final(client: &lilypad_chain::ChainClient, jobs: u64, secs: u64) -> Result<(), Vec<u64>> {
    let start = Instant::now();
    loop {
        let mut live = Vec::new();
        for j in 1..=jobs {
            if !client.market().jobHash(U256::from(j)).call().await.unwrap().is_zero() {
                live.push(j);
            }
        }
        if live.is_empty() {
            return Ok(());
        }
        if start.elapsed() > Duration::from_secs(secs) {
            return Err(live);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn tail(s: &str, lines: usize) -> String {
    let v: Vec<&str> = s.lines().collect();
    v[v.len().saturating_sub(lines)..].join("\n")
}

/// Regression: a mediator killed mid re-run left its containers (the outputs holder runs until
/// removed), its volume and its unfinished re-run folder behind for good, because only the
/// provider removed its leftovers at start. A restarted mediator now removes them.
#[tokio::test(flavor = "multi_thread")]
async fn a_restarted_mediator_removes_what_its_killed_self_left() {
    let devnet = Devnet::start_with(&["--no-agents"]);
    let lilysay = repo().join("modules/lilysay");
    let mut mediator = devnet.agent("mediator", &["mediator".to_string(), "--module".into(), lilysay.to_str().unwrap().into()]);
    let ready = |m: &Agent, n: usize| m.log().matches("mediator ready").count() >= n;
    mediator.start();
    let start = Instant::now();
    while !ready(&mediator, 1) {
        assert!(mediator.exited().is_none() && start.elapsed() < Duration::from_secs(120), "mediator not ready:\n{}", mediator.log());
        std::thread::sleep(Duration::from_millis(100));
    }
    mediator.kill();

    // what a SIGKILL mid re-run leaves: a container and a volume with its label, a .tmp folder
    let addr = address_of(accounts::MEDIATOR).unwrap();
    let state = devnet.state_dir().await;
    let instance = instance_of("mediator", "mediator", addr, &state);
    let label = format!("lilypad.executor={instance}");
    let holder = std::process::Command::new("docker")
        .args(["images", "-q", "--filter", "reference=lilypad/outputs-holder"])
        .output()
        .unwrap();
    let holder = String::from_utf8_lossy(&holder.stdout).lines().next().expect("the holder image the mediator's preflight built").to_string();
    let docker = |args: &[&str]| {
        let o = std::process::Command::new("docker").args(args).output().unwrap();
        assert!(o.status.success(), "docker {args:?}: {}", String::from_utf8_lossy(&o.stderr));
    };
    // (the killed mediator also left the outputs volumes and holder it had prepared ahead)
    let prepared = docker_leftovers(&instance).len();
    docker(&["volume", "create", "--label", &label]);
    docker(&["create", "--label", &label, &holder]);
    let unfinished = state.join("mediator").join(addr.to_string()).join("reruns/9.tmp");
    std::fs::create_dir_all(unfinished.join("outputs")).unwrap();
    assert_eq!(docker_leftovers(&instance).len(), prepared + 2);

    mediator.start();
    let start = Instant::now();
    while !ready(&mediator, 2) {
        assert!(mediator.exited().is_none() && start.elapsed() < Duration::from_secs(120), "mediator not ready again:\n{}", mediator.log());
        std::thread::sleep(Duration::from_millis(100));
    }
    mediator.stop();
    assert_eq!(docker_leftovers(&instance), Vec::<String>::new(), "the restarted mediator removed its leftovers");
    assert!(!unfinished.exists(), "and its unfinished re-run folder");
}

/// Regression (issue 19): in a 500-job crash soak the mediator was killed while it finished
/// the re-run of a challenged job (after the job's container had exited, while its containers
/// were being removed and before the re-run folder was published); the re-run it made after
/// restarting came back without the job's output file, and it upheld the challenge against
/// the honest provider. Here the mediator is killed at that point, at several delays after the
/// re-run's "job finished", and started again: every challenge must be rejected.
#[tokio::test(flavor = "multi_thread")]
async fn a_mediator_killed_while_finishing_a_rerun_rejects_the_challenge_after_restart() {
    let devnet = Devnet::start_with(&["--no-agents", "--challenge-window", "120"]);
    let lilysay = repo().join("modules/lilysay");
    let lilysay = lilysay.to_str().unwrap().to_string();
    let mut solver = devnet.agent("solver", &["solver".to_string()]);
    let mut provider = devnet.agent("provider-1", &["resource-provider".into(), "--module".into(), lilysay.clone(), "--gateway".into(), "127.0.0.1:0".into()]);
    let mut mediator = devnet.agent("mediator", &["mediator".to_string(), "--module".into(), lilysay]);
    solver.start();
    provider.start();
    mediator.start();

    let creator = devnet.client(accounts::JOB_CREATOR).await;
    let auditor = devnet.client(accounts::AUDITOR).await;
    let d = creator.deployment().clone();
    let market = creator.market();
    let me = creator.address().unwrap();
    let delays_ms = [0u64, 40, 120, 250, 500, 900];
    let payment = market.getModule(lilypad_module::module_id("lilysay", "0.1.0")).call().await.unwrap().spec.defaultPayment;
    creator.send("approve", creator.token().approve(d.market, U256::from(payment) * U256::from(delays_ms.len()))).await.unwrap();
    let deposit = U256::from(d.challenge_deposit()) * U256::from(delays_ms.len());
    auditor.send("approve", auditor.token().approve(d.market, deposit)).await.unwrap();
    auditor.send("deposit", auditor.market().deposit(auditor.address().unwrap(), deposit)).await.unwrap();

    let submitted = |id: U256| {
        let creator = creator.clone();
        async move { job_ids(&logs(&creator, LilypadMarket::ResultSubmitted::SIGNATURE_HASH).await).contains(&id) }
    };
    for (i, delay) in delays_ms.iter().enumerate() {
        let id = U256::from(i + 1);
        creator.send("runJob", market.runJob("lilysay:0.1.0".into(), vec![format!("Message=killed mediator {i}")], me)).await.unwrap();
        wait_until(&format!("job {id}'s result"), 180, || submitted(id)).await;
        let record = {
            let mut book = JobBook::new();
            let mut stream = EventStream::new(creator.clone(), d.start_block);
            while let Some(batch) = stream.poll_once().await.unwrap() {
                for log in &batch.logs {
                    book.apply(log);
                }
            }
            book.get(id).cloned().expect("the job is live")
        };
        auditor.send(&format!("challenge(job {id})"), auditor.market().challenge(id, record.job.clone())).await.unwrap();

        // kill the mediator `delay` ms after its re-run's container exited
        let finished = format!("job{{job=\"job-{id}\"}}: job finished");
        let start = Instant::now();
        while !mediator.log().lines().any(|l| strip_ansi(l).contains(&finished)) {
            assert!(start.elapsed() < Duration::from_secs(180), "the mediator did not re-run job {id}:\n{}", tail(&mediator.log(), 40));
            std::thread::sleep(Duration::from_millis(5));
        }
        std::thread::sleep(Duration::from_millis(*delay));
        mediator.kill();
        println!("mediator killed {delay} ms after its re-run of job {id} finished");
        std::thread::sleep(Duration::from_millis(300));
        mediator.start();

        let start = Instant::now();
        while !market.jobHash(id).call().await.unwrap().is_zero() {
            assert!(start.elapsed() < Duration::from_secs(180), "job {id} was not ruled on:\n{}", tail(&mediator.log(), 40));
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let ruling = logs(&creator, LilypadMarket::ChallengeRuled::SIGNATURE_HASH)
            .await
            .iter()
            .map(|l| LilypadMarket::ChallengeRuled::decode_log(&l.inner).unwrap().data)
            .find(|e| e.id == id)
            .unwrap_or_else(|| panic!("job {id} ended without a ruling:\n{}", tail(&mediator.log(), 40)));
        assert!(!ruling.upheld, "job {id}: the challenge was upheld against the honest provider (mediator killed {delay} ms after its re-run finished):\n{}", explain_upheld(&devnet.state_dir().await, &mediator, id));
    }
    for a in [&mut solver, &mut provider, &mut mediator] {
        a.stop();
    }
}

/// `s` without its ANSI colour sequences.
fn strip_ansi(s: &str) -> String {
    let mut out = String::new();
    let mut it = s.chars();
    while let Some(c) = it.next() {
        if c == '\u{1b}' {
            for c in it.by_ref() {
                if c == 'm' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}
