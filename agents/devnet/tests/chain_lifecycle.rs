//! A job's whole on-chain lifecycle driven through lilypad-chain: every call takes the `Job`
//! that the JobBook rebuilt from events, so this checks that the book tracks the market's
//! stored hashes exactly, and that the event stream resumes from a checkpoint without losing
//! or repeating an event.

use alloy::primitives::{keccak256, B256, U256};
use alloy::providers::Provider;
use lilypad_bindings::{JobState, ModuleSpec, Resources};
use lilypad_chain::{ChainClient, Checkpoint, EventStream, JobBook, JobChange, Outcome};
use lilypad_devnet::{accounts, deploy, devnet_config, Anvil};

const LP: u128 = 1_000_000_000_000_000_000;

/// An active offer at `price`: any run window from 10 s to 30 days, callbacks up to 500,000 gas.
fn offer(price: u128) -> lilypad_bindings::Offer {
    lilypad_bindings::Offer { price, active: true, minRunTimeout: 10, maxRunTimeout: 30 * 24 * 3600, maxCallbackGas: 500_000 }
}

async fn client(url: &str, key: &str, d: &lilypad_chain::Deployment) -> ChainClient {
    ChainClient::connect(url, Some(key), d.clone()).await.expect("connect")
}

/// Reads all new events into `book`, returning the changes.
async fn sync(stream: &mut EventStream, book: &mut JobBook) -> Vec<JobChange> {
    let mut changes = vec![];
    while let Some(batch) = stream.poll_once().await.expect("poll") {
        for log in &batch.logs {
            changes.extend(book.apply(log));
        }
    }
    changes
}

#[tokio::test]
async fn a_job_runs_its_lifecycle_with_jobs_rebuilt_from_events() {
    let anvil = Anvil::start(None).await.expect("anvil (run tools/bootstrap; source tools/env.sh)");
    let url = anvil.url();
    let d = deploy(&url, devnet_config()).await.expect("deploy");
    let admin = client(&url, accounts::ADMIN, &d).await;
    let solver = client(&url, accounts::SOLVER, &d).await;
    let mediator = client(&url, accounts::MEDIATOR, &d).await;
    let provider = client(&url, accounts::RESOURCE_PROVIDER, &d).await;
    let creator = client(&url, accounts::JOB_CREATOR, &d).await;
    let provider_addr = provider.address().unwrap();
    let creator_addr = creator.address().unwrap();

    // set-up: roles, module, collateral
    let dev = lilypad_bindings::LilypadDevToken::new(d.token, admin.provider().clone());
    for who in [provider_addr, creator_addr] {
        admin.send("faucet", dev.faucet(who, U256::from(1000 * LP))).await.unwrap();
    }
    solver.send("registerSolver", solver.market().registerSolver()).await.unwrap();
    let mediator_addr = mediator.address().unwrap();
    admin.send("approveMediator", admin.market().approveMediator(mediator_addr, true)).await.unwrap();
    mediator.send("registerMediator", mediator.market().registerMediator()).await.unwrap();
    admin.send("setDefaultMediators", admin.market().setDefaultMediators(1)).await.unwrap();
    let spec = ModuleSpec {
        specHash: keccak256("lilysay"),
        imageHash: Default::default(),
        defaultPayment: 10 * LP,
        runTimeout: 600,
        flags: 0,
        requirements: Resources { cpuMilli: 1000, ramMb: 256, diskMb: 100, vramMb: 0, gpus: 0 },
    };
    admin.send("publishModule", admin.market().publishModule("lilysay".into(), "0.1.0".into(), spec)).await.unwrap();
    let module_id = keccak256("lilysay:0.1.0");
    let p = provider.market();
    provider.send("registerProvider", p.registerProvider(1)).await.unwrap();
    provider.send("setOffer", p.setOffer(module_id, offer(5 * LP))).await.unwrap();
    let pt = provider.token();
    provider.send("approve", pt.approve(d.market, U256::from(100 * LP))).await.unwrap();
    provider.send("deposit", p.deposit(provider_addr, U256::from(100 * LP))).await.unwrap();

    // a bad call comes back as the market's decoded error, and is not retried
    let err = creator
        .send("runJob", creator.market().runJob("nope:1".into(), vec![], creator_addr))
        .await
        .unwrap_err();
    assert_eq!(err.market_error(), Some("UnknownModule"), "{err}");
    assert!(!err.is_retryable());

    // the job creator: approve and runJob
    let ct = creator.token();
    creator.send("approve", ct.approve(d.market, U256::from(10 * LP))).await.unwrap();
    creator
        .send("runJob", creator.market().runJob("lilysay:0.1.0".into(), vec!["Message=hi".into()], creator_addr))
        .await
        .unwrap();

    let mut book = JobBook::new();
    let mut stream = EventStream::new(solver.clone(), d.start_block);
    let changes = sync(&mut stream, &mut book).await;
    let id = U256::from(1);
    assert!(changes.contains(&JobChange::Created(id)), "{changes:?}");
    assert!(book.module(&module_id).is_some_and(|m| m.reference() == "lilysay:0.1.0"));
    let record = book.get(id).unwrap().clone();
    assert_eq!(record.inputs, vec!["Message=hi".to_string()]);
    assert_eq!(record.state(), JobState::Open);
    let stored: B256 = solver.market().jobHash(id).call().await.unwrap();
    assert_eq!(record.hash(), stored, "the book's Job hashes to what the market stores");

    // checkpoint: a stream resumed after the last handled block sees nothing twice
    let dir = tempfile_dir();
    let cp = Checkpoint::new(dir.join("solver.json"));
    cp.save(&(stream.next_block(), book.snapshot())).unwrap();

    // solver matches
    solver.send("matchJob", solver.market().matchJob(id, record.job.clone(), provider_addr, 0)).await.unwrap();
    // provider submits
    let (next, snap): (u64, lilypad_chain::BookSnapshot) = cp.load().unwrap().unwrap();
    let mut book = JobBook::from_snapshot(&snap).unwrap();
    let mut stream = EventStream::new(provider.clone(), next);
    let changes = sync(&mut stream, &mut book).await;
    assert_eq!(changes, vec![JobChange::Matched(id)], "only the new event after the checkpoint");
    let job = book.get(id).unwrap().job.clone();
    let cid = "bafkreicysg23kiwv34eg2d7qweipxwosdo2py4ldv42nbauguluen5v6am".to_string();
    let result_hash = keccak256("outputs");
    provider.send("submitResult", p.submitResult(id, job, cid.clone(), result_hash)).await.unwrap();
    sync(&mut stream, &mut book).await;
    let record = book.get(id).unwrap().clone();
    assert_eq!(record.state(), JobState::Submitted);
    assert_eq!(record.hash(), solver.market().jobHash(id).call().await.unwrap());

    // settling before the window is over is refused, with the deadline in the error
    let err = provider
        .send("settle", p.settle(id, record.job.clone(), cid.clone(), result_hash))
        .await
        .unwrap_err();
    assert_eq!(err.market_error(), Some("DeadlineNotReached"), "{err}");

    // after the window anyone settles
    let _: serde_json::Value = admin
        .provider()
        .raw_request("evm_increaseTime".into(), (u64::from(d.challenge_window) + 1,))
        .await
        .unwrap();
    let _: serde_json::Value = admin.provider().raw_request("evm_mine".into(), ()).await.unwrap();
    let before = provider.market().balanceOf(provider_addr).call().await.unwrap();
    admin.send("settle", admin.market().settle(id, record.job.clone(), cid, result_hash)).await.unwrap();
    let changes = sync(&mut stream, &mut book).await;
    assert!(
        matches!(&changes[..], [JobChange::Finished { outcome: Outcome::Settled { challenge: lilypad_chain::Challenge::Unchallenged, .. }, .. }]),
        "{changes:?}"
    );
    assert!(book.is_empty());
    let after = provider.market().balanceOf(provider_addr).call().await.unwrap();
    assert_eq!(after - before, U256::from(5 * LP + 10 * LP), "price + collateral back");
    assert_eq!(solver.market().jobHash(id).call().await.unwrap(), B256::ZERO);
    anvil.stop().await;
}

fn tempfile_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("lilypad-chain-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A call that reverts when its gas is estimated must not use up a nonce: the signer's next
/// transactions still go through. (alloy's default cached nonce manager reserved one while
/// estimating, and every later transaction of the signer then waited forever for the gap.)
#[tokio::test]
async fn a_send_refused_at_estimation_leaves_no_nonce_gap() {
    let anvil = Anvil::start(None).await.expect("anvil (run tools/bootstrap; source tools/env.sh)");
    let url = anvil.url();
    let d = deploy(&url, devnet_config()).await.expect("deploy");
    let stranger = client(&url, accounts::AUDITOR, &d).await;
    let who = stranger.address().unwrap();
    for round in 0..3 {
        // Not a provider: announceModules reverts with NotProvider at estimation.
        let err = stranger.send("announceModules", stranger.market().announceModules(vec![B256::ZERO], true)).await.unwrap_err();
        assert_eq!(err.market_error(), Some("NotProvider"), "round {round}: {err}");
        let sent = tokio::time::timeout(
            std::time::Duration::from_secs(30),
            stranger.send("registerSolver", stranger.market().leaveRoles(0)),
        )
        .await
        .expect("the next transaction is mined: no nonce gap");
        sent.unwrap();
    }
    let nonce = stranger.provider().get_transaction_count(who).await.unwrap();
    assert_eq!(nonce, 3, "exactly the three mined transactions used nonces");
}
