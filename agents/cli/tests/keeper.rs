//! The devnet's keeper ends a job nobody could match once its match deadline has passed, and the
//! creator gets the whole payment back, with nobody acting by hand.
//!
//! Needs anvil (tools/bootstrap) and a Docker engine (tools/bootstrap --docker).

mod common;

use std::time::{Duration, Instant};

use alloy::primitives::U256;
use alloy::providers::Provider as _;
use alloy::sol_types::SolEvent;
use common::*;
use lilypad_devnet::{accounts, address_of};

#[tokio::test(flavor = "multi_thread")]
async fn a_job_nobody_matches_is_expired_by_the_keeper_and_its_creator_refunded() {
    let devnet = Devnet::start(30);
    let observer = devnet.client(accounts::AUDITOR).await;
    let market = observer.market();
    let creator = address_of(accounts::JOB_CREATOR).unwrap();
    let keeper = address_of(accounts::KEEPER).unwrap();
    let funds = || async {
        let token = observer.token().balanceOf(creator).call().await.unwrap();
        token + market.balanceOf(creator).call().await.unwrap()
    };
    let before = funds().await;
    // the banner gives the commands for this data folder; a wrong folder's error names both ways
    let dir = devnet.dir().display().to_string();
    assert!(devnet.log().contains(&format!("DATA_DIR={dir} lilypad run lilysay:0.1.0")), "{}", devnet.log());
    let elsewhere = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(LILYPAD).arg("--data-dir").arg(elsewhere.path()).args(["job", "1"]).output().unwrap();
    let (_, stderr) = text(&out);
    assert!(stderr.contains("no network") && stderr.contains("DATA_DIR=") && stderr.contains("--data-dir"), "{stderr}");

    // a price cap below every offer: paid, never matched; `lilypad run` gives up (exit 3)
    let out = devnet.lilypad(&["run", "lilysay:0.1.0", "-i", "Message=hi", "--max-payment", "1000", "--timeout", "3"]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    let id = U256::from(1);
    assert!(!market.jobHash(id).call().await.unwrap().is_zero(), "job 1 is live");
    assert!(funds().await < before, "the creator paid for it");

    // before its match deadline the keeper leaves it alone
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(!market.jobHash(id).call().await.unwrap().is_zero(), "not expired before its deadline");
    assert_eq!(observer.provider().get_transaction_count(keeper).await.unwrap(), 0, "the keeper sent nothing yet");

    advance_time(&observer, u64::from(observer.deployment().match_timeout) + 1).await;
    let deadline = Instant::now() + Duration::from_secs(90);
    while !market.jobHash(id).call().await.unwrap().is_zero() {
        assert!(Instant::now() < deadline, "the keeper did not expire job 1 within 90 s:\n{}", devnet.log());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(observer.provider().get_transaction_count(keeper).await.unwrap(), 1, "the keeper's one expireJob");
    let expired = logs(&observer, lilypad_bindings::LilypadMarket::JobExpired::SIGNATURE_HASH).await;
    assert_eq!(job_ids(&expired), vec![id], "one JobExpired, for job 1");
    assert_eq!(funds().await, before, "the whole payment is back (in the market balance)");
    assert!(devnet.log().contains("ended a job past its deadline"), "{}", devnet.log());

    // `lilypad job` tells the story; `lilypad challenge` says why there is nothing to challenge
    let (shown, _) = text(&devnet.lilypad(&["job", "1"]));
    for says in ["job 1: expired (nobody matched it before its match deadline)", "payee refunded 0.000000000000001 LP", "expired: payee refunded"] {
        assert!(shown.contains(says), "`lilypad job 1` lacks {says:?}:\n{shown}");
    }
    let out = devnet.lilypad(&["challenge", "1"]);
    assert!(text(&out).1.contains("job 1 is not live: it expired"), "{:?}", text(&out));
}
