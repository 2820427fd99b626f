//! Saved state is tied to its chain: two devnets one after the other on the same data folder
//! both run jobs (issue 13: the second used to resume the first chain's checkpoint and hang,
//! repeating `settleMany was rejected: StaleJob`).

mod common;

use alloy::primitives::U256;
use common::*;
use lilypad_devnet::accounts;

/// Runs one lilysay job on `devnet`, checks its output, and returns the job's Data ID.
fn one_job(devnet: &Devnet, message: &str) -> String {
    let out = devnet.lilypad(&["run", "lilysay:0.1.0", "-i", &format!("Message={message}")]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "stdout:\n{stdout}\nstderr:\n{stderr}\ndevnet:\n{}", devnet.log());
    assert!(stdout.contains(message), "{stdout}");
    assert!(stdout.contains("(job 1, verified"), "each chain's first job is job 1: {stdout}");
    stdout.lines().find_map(|l| l.split("Data ID: ").nth(1)).and_then(|r| r.split_whitespace().next()).expect("the Data ID line").to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn two_devnets_one_after_the_other_on_the_same_data_folder_both_run_jobs() {
    let modules = repo().join("modules");
    let window = ["--challenge-window", "3"];

    // the first devnet: one job, stopped (Ctrl-C) before it settles, its state left behind
    let first = Devnet::start_in(tempfile::tempdir().unwrap(), &window, &modules);
    let first_cid = one_job(&first, "first chain");
    let first_key = first.client(accounts::AUDITOR).await.chain_key().folder_name();
    let data_dir = first.interrupt();
    let first_results = data_dir.path().join("devnet/chains").join(&first_key).join("provider/results/1");
    assert!(first_results.is_dir(), "the first chain's result folder is kept under its key: {}", first_results.display());

    // the second devnet, same data folder: a new chain (same chain id and market address)
    let second = Devnet::start_in(data_dir, &window, &modules);
    let observer = second.client(accounts::AUDITOR).await;
    let second_key = observer.chain_key().folder_name();
    assert_ne!(second_key, first_key, "the deployment block's hash tells the chains apart");
    let second_cid = one_job(&second, "second chain");
    assert_ne!(second_cid, first_cid);

    // the second chain's job settles (the provider is not stuck on the first chain's job 1)
    let market = observer.market();
    wait_until("job 1 settled on the second chain", 60, || async { market.jobHash(U256::from(1)).call().await.unwrap().is_zero() }).await;
    let log = second.log();
    assert!(!log.contains("StaleJob"), "no transaction refused for another chain's job:\n{log}");
    assert!(log.contains("saved state set aside, not reused"), "one line says the earlier chain's state was set aside:\n{log}");
    let stale = second.dir().join("devnet/stale");
    let set_aside: Vec<String> = std::fs::read_dir(&stale).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert!(set_aside.iter().any(|n| n.contains(&first_key)), "the first chain's folder is under {}: {set_aside:?}", stale.display());
    assert!(second.dir().join("devnet/chains").join(&second_key).join("provider/results/1").is_dir(), "the second chain's result folder");
}
