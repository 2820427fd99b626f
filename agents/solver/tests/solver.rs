//! The solver against a real Anvil: it matches an open job to the provider that offers its
//! module, logs why it cannot match a job nobody can run, and resumes from its checkpoint.

use std::time::Duration;

use alloy::primitives::{keccak256, U256};
use lilypad_bindings::{JobState, ModuleSpec, Resources};
use lilypad_chain::{ChainClient, Deployment};
use lilypad_devnet::{accounts, deploy, devnet_config, Anvil};
use lilypad_solver::{Solver, SolverOptions};

const LP: u128 = 1_000_000_000_000_000_000;

/// An active offer at `price`: any run window from 10 s to 30 days, callbacks up to 500,000 gas.
fn offer(price: u128) -> lilypad_bindings::Offer {
    lilypad_bindings::Offer { price, active: true, minRunTimeout: 10, maxRunTimeout: 30 * 24 * 3600, maxCallbackGas: 500_000 }
}

/// A fresh market on Anvil with a mediator, the lilysay and nobody:1 modules, and a provider
/// (collateral deposited) offering lilysay at 5 LP; the job creator holds 1000 LP.
struct Market {
    anvil: Anvil,
    url: String,
    d: Deployment,
    creator: ChainClient,
    /// The provider's address.
    me: alloy::primitives::Address,
}

impl Market {
    async fn client(&self, key: &str) -> ChainClient {
        ChainClient::connect(&self.url, Some(key), self.d.clone()).await.unwrap()
    }
}

async fn market() -> Market {
    let anvil = Anvil::start(None).await.expect("anvil (run tools/bootstrap; source tools/env.sh)");
    let url = anvil.url();
    let d = deploy(&url, devnet_config()).await.unwrap();
    let c = |key: &'static str| {
        let d = d.clone();
        let url = url.clone();
        async move { ChainClient::connect(&url, Some(key), d).await.unwrap() }
    };
    let admin = c(accounts::ADMIN).await;
    let provider = c(accounts::RESOURCE_PROVIDER).await;
    let creator = c(accounts::JOB_CREATOR).await;
    let mediator = c(accounts::MEDIATOR).await;
    let dev = lilypad_bindings::LilypadDevToken::new(d.token, admin.provider().clone());
    for who in [provider.address().unwrap(), creator.address().unwrap()] {
        admin.send("faucet", dev.faucet(who, U256::from(1000 * LP))).await.unwrap();
    }
    let mediator_addr = mediator.address().unwrap();
    admin.send("approveMediator", admin.market().approveMediator(mediator_addr, true)).await.unwrap();
    mediator.send("registerMediator", mediator.market().registerMediator()).await.unwrap();
    admin.send("setDefaultMediators", admin.market().setDefaultMediators(1)).await.unwrap();
    let spec = |hash: &str| ModuleSpec {
        specHash: keccak256(hash),
        imageHash: Default::default(),
        defaultPayment: 10 * LP,
        runTimeout: 600,
        flags: 0,
        requirements: Resources { cpuMilli: 1000, ramMb: 64, diskMb: 16, vramMb: 0, gpus: 0 },
    };
    admin.send("publish", admin.market().publishModule("lilysay".into(), "0.1.0".into(), spec("a"))).await.unwrap();
    admin.send("publish", admin.market().publishModule("nobody".into(), "1".into(), spec("b"))).await.unwrap();
    let p = provider.market();
    let me = provider.address().unwrap();
    provider.send("registerProvider", p.registerProvider(1)).await.unwrap();
    provider.send("setOffer", p.setOffer(keccak256("lilysay:0.1.0"), offer(5 * LP))).await.unwrap();
    provider.send("approve", provider.token().approve(d.market, U256::from(100 * LP))).await.unwrap();
    provider.send("deposit", p.deposit(me, U256::from(100 * LP))).await.unwrap();
    Market { anvil, url, d, creator, me }
}

#[tokio::test]
async fn matches_an_open_job_and_resumes_from_its_checkpoint() {
    let m = market().await;
    let (creator, me, d) = (&m.creator, m.me, m.d.clone());
    let payee = creator.address().unwrap();
    creator.send("approve", creator.token().approve(d.market, U256::from(100 * LP))).await.unwrap();
    creator.send("runJob", creator.market().runJob("nobody:1".into(), vec![], payee)).await.unwrap();
    creator.send("runJob", creator.market().runJob("lilysay:0.1.0".into(), vec!["Message=hi".into()], payee)).await.unwrap();

    let dir = std::env::temp_dir().join(format!("lilypad-solver-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let options = SolverOptions { poll: Duration::from_millis(20), checkpoint: Some(dir.join("solver.json")), ..Default::default() };
    let solver_client = m.client(accounts::SOLVER).await;
    let mut solver = Solver::start(solver_client.clone(), options.clone()).await.unwrap();
    solver.step().await.unwrap();

    let job2 = solver.book().get(U256::from(2)).cloned().unwrap();
    let market = solver_client.market();
    let stored = market.jobHash(U256::from(2)).call().await.unwrap();
    // the match is on chain; the book sees it on the next step
    assert_ne!(stored, job2.hash(), "job 2 was matched (its hash changed)");
    solver.step().await.unwrap();
    let job2 = solver.book().get(U256::from(2)).unwrap();
    assert_eq!(job2.state(), JobState::Matched);
    assert_eq!(job2.job.provider, me);
    assert_eq!(job2.job.price, 5 * LP);
    assert_eq!(job2.hash(), market.jobHash(U256::from(2)).call().await.unwrap());
    // job 1's module has no provider: still open
    assert_eq!(solver.book().get(U256::from(1)).unwrap().state(), JobState::Open);

    // a restarted solver picks up from its checkpoint: a new job is matched, nothing twice
    drop(solver);
    creator.send("runJob", creator.market().runJob("lilysay:0.1.0".into(), vec!["Message=again".into()], payee)).await.unwrap();
    let mut solver = Solver::start(solver_client, options).await.unwrap();
    solver.step().await.unwrap();
    solver.step().await.unwrap();
    assert_eq!(solver.book().get(U256::from(3)).unwrap().state(), JobState::Matched);
    assert_eq!(solver.book().get(U256::from(2)).unwrap().state(), JobState::Matched);
    assert_eq!(solver.book().len(), 3);
    m.anvil.stop().await;
}

/// Jobs open at once are matched in one matchMany: one transaction for all of them.
#[tokio::test]
async fn jobs_open_together_are_matched_in_one_transaction() {
    let m = market().await;
    let (creator, me, d) = (&m.creator, m.me, m.d.clone());
    let payee = creator.address().unwrap();
    creator.send("approve", creator.token().approve(d.market, U256::from(100 * LP))).await.unwrap();
    for i in 0..3 {
        creator.send("runJob", creator.market().runJob("lilysay:0.1.0".into(), vec![format!("Message={i}")], payee)).await.unwrap();
    }
    let options = SolverOptions { poll: Duration::from_millis(20), ..Default::default() };
    let mut solver = Solver::start(m.client(accounts::SOLVER).await, options).await.unwrap();
    solver.step().await.unwrap();
    solver.step().await.unwrap();
    let mut txs = std::collections::HashSet::new();
    for id in 1..=3u64 {
        let record = solver.book().get(U256::from(id)).unwrap();
        assert_eq!(record.state(), JobState::Matched, "job {id}");
        assert_eq!(record.job.provider, me);
    }
    let filter = alloy::rpc::types::Filter::new()
        .address(d.market)
        .event_signature(<lilypad_bindings::LilypadMarket::JobMatched as alloy::sol_types::SolEvent>::SIGNATURE_HASH)
        .from_block(0);
    use alloy::providers::Provider as _;
    for log in creator.provider().get_logs(&filter).await.unwrap() {
        txs.insert(log.transaction_hash.unwrap());
    }
    assert_eq!(txs.len(), 1, "the three matches went in one transaction: {txs:?}");
    m.anvil.stop().await;
}

#[tokio::test]
async fn a_job_given_back_goes_to_another_provider_and_never_again_to_one_that_gave_it_back() {
    let anvil = Anvil::start(None).await.expect("anvil (run tools/bootstrap; source tools/env.sh)");
    let url = anvil.url();
    let d = deploy(&url, devnet_config()).await.unwrap();
    let c = |key: &'static str| {
        let d = d.clone();
        let url = url.clone();
        async move { ChainClient::connect(&url, Some(key), d).await.unwrap() }
    };
    let admin = c(accounts::ADMIN).await;
    let creator = c(accounts::JOB_CREATOR).await;
    let mediator = c(accounts::MEDIATOR).await;
    let cheap = c(accounts::RESOURCE_PROVIDER).await;
    let dear = c(accounts::RESOURCE_PROVIDER_2).await;
    let dev = lilypad_bindings::LilypadDevToken::new(d.token, admin.provider().clone());
    for who in [cheap.address().unwrap(), dear.address().unwrap(), creator.address().unwrap()] {
        admin.send("faucet", dev.faucet(who, U256::from(1000 * LP))).await.unwrap();
    }
    admin.send("approveMediator", admin.market().approveMediator(mediator.address().unwrap(), true)).await.unwrap();
    mediator.send("registerMediator", mediator.market().registerMediator()).await.unwrap();
    admin.send("setDefaultMediators", admin.market().setDefaultMediators(1)).await.unwrap();
    let spec = ModuleSpec {
        specHash: keccak256("a"),
        imageHash: Default::default(),
        defaultPayment: 10 * LP,
        runTimeout: 600,
        flags: 0,
        requirements: Resources { cpuMilli: 1000, ramMb: 64, diskMb: 16, vramMb: 0, gpus: 0 },
    };
    admin.send("publish", admin.market().publishModule("lilysay".into(), "0.1.0".into(), spec)).await.unwrap();
    for (p, price) in [(&cheap, 4 * LP), (&dear, 5 * LP)] {
        let m = p.market();
        let me = p.address().unwrap();
        p.send("registerProvider", m.registerProvider(1)).await.unwrap();
        p.send("setOffer", m.setOffer(keccak256("lilysay:0.1.0"), offer(price))).await.unwrap();
        p.send("approve", p.token().approve(d.market, U256::from(100 * LP))).await.unwrap();
        p.send("deposit", m.deposit(me, U256::from(100 * LP))).await.unwrap();
    }
    let payee = creator.address().unwrap();
    creator.send("approve", creator.token().approve(d.market, U256::from(100 * LP))).await.unwrap();
    creator.send("runJob", creator.market().runJob("lilysay:0.1.0".into(), vec!["Message=hi".into()], payee)).await.unwrap();

    let dir = tempfile_dir("given-back");
    let options = SolverOptions { poll: Duration::from_millis(20), checkpoint: Some(dir.join("solver.json")), ..Default::default() };
    let solver_client = c(accounts::SOLVER).await;
    let mut solver = Solver::start(solver_client.clone(), options.clone()).await.unwrap();
    let id = U256::from(1);
    let give_back = |solver: &Solver, who: &ChainClient| {
        let record = solver.book().get(id).cloned().unwrap();
        assert_eq!(record.state(), JobState::Matched);
        assert_eq!(record.job.provider, who.address().unwrap());
        let who = who.clone();
        async move { who.send("releaseJob", who.market().releaseJob(id, record.job)).await.unwrap() }
    };
    solver.step().await.unwrap();
    solver.step().await.unwrap();
    // the cheaper provider first; it gives the job back (say its input cannot be had)
    give_back(&solver, &cheap).await;
    solver.step().await.unwrap(); // sees the release, matches again
    solver.step().await.unwrap();
    let record = solver.book().get(id).unwrap();
    assert_eq!(record.state(), JobState::Matched);
    assert_eq!(record.job.provider, dear.address().unwrap(), "matched to the other provider, not again to the one that gave it back");

    // the other gives it back too: nobody is left who has not, so it stays open, also for a
    // restarted solver (it remembers who gave it back). A job of the same module created now
    // goes to the cheaper provider: giving one job back excludes a provider from that job only.
    give_back(&solver, &dear).await;
    solver.step().await.unwrap();
    drop(solver);
    let mut solver = Solver::start(solver_client.clone(), options).await.unwrap();
    creator.send("runJob", creator.market().runJob("lilysay:0.1.0".into(), vec!["Message=again".into()], payee)).await.unwrap();
    solver.step().await.unwrap(); // each step waits for a new block: this one has job 2
    solver.step().await.unwrap(); // and this one its match
    let record = solver.book().get(id).unwrap();
    assert_eq!(record.state(), JobState::Open, "not matched again to either provider");
    assert_eq!(record.hash(), solver_client.market().jobHash(id).call().await.unwrap());
    let second = solver.book().get(U256::from(2)).unwrap();
    assert_eq!(second.state(), JobState::Matched);
    assert_eq!(second.job.provider, cheap.address().unwrap());
    let _ = std::fs::remove_dir_all(&dir);
    anvil.stop().await;
}

/// A fresh folder for one test's checkpoint.
fn tempfile_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("lilypad-solver-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}
