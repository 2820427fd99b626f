//! File and folder inputs (`"type": "cid"`), end to end on a devnet with the example module
//! `modules/wordcount-file`:
//! - `lilypad run wordcount-file:0.1.0 -i Text=@file` and `-i Text=@folder/`: the path is
//!   imported (the CID `lilypad ipfs add` prints), put on the devnet's IPFS node, fetched and
//!   verified by the provider, mounted read-only at `/inputs/Text`, and counted;
//! - a local path over the input's `maxBytes` is refused before anything is paid;
//! - a CID nobody serves, and a CID over the cap that is served: the provider refuses each
//!   before running it and gives the job back; the solver matches it to that provider no more;
//!   once the match deadline passes the job expires and the creator has the whole payment back.
//!
//! Needs anvil (tools/bootstrap) and a Docker engine (tools/bootstrap --docker).

mod common;

use std::time::{Duration, Instant};

use alloy::primitives::U256;
use alloy::sol_types::SolEvent;
use common::*;
use lilypad_devnet::{accounts, address_of};

fn data_id(stdout: &str) -> String {
    stdout
        .lines()
        .find_map(|l| l.split("Data ID: ").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .expect("the Data ID line")
        .to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_file_and_a_folder_given_as_inputs_are_fetched_mounted_and_counted() {
    let devnet = Devnet::start(3);
    let work = tempfile::tempdir().unwrap();

    // --- a file
    let file = work.path().join("poem.txt");
    std::fs::write(&file, "the frog sat\non a lily pad\n").unwrap();
    let out = devnet.lilypad(&["run", "wordcount-file:0.1.0", "-i", &format!("Text=@{}", file.display())]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "stdout:\n{stdout}\nstderr:\n{stderr}\ndevnet:\n{}", devnet.log());
    let file_cid = text(&devnet.lilypad(&["ipfs", "add", file.to_str().unwrap()])).0.trim().to_string();
    assert!(stdout.contains(&format!("is {file_cid} (input Text)")), "the CID Kubo would print is passed: {stdout}");
    assert!(stdout.contains("       2        7         27 (file)"), "2 lines, 7 words, 27 bytes: {stdout}");
    let dir = devnet.dir().join("downloaded-files").join("1");
    assert_eq!(std::fs::read_to_string(dir.join("outputs/counts.txt")).unwrap(), "       2        7         27 (file)\n");
    let out = devnet.lilypad(&["job", "1"]);
    assert!(text(&out).0.contains(&file_cid), "the job's input on chain is the CID: {:?}", text(&out));

    // --- a folder (sub-folders included, walked in name order)
    let folder = work.path().join("corpus");
    std::fs::create_dir_all(folder.join("b")).unwrap();
    std::fs::write(folder.join("a.txt"), "one two three\n").unwrap();
    std::fs::write(folder.join("b/c.txt"), "four\nfive six\n").unwrap();
    let out = devnet.lilypad(&["run", "wordcount-file:0.1.0", "-i", &format!("Text=@{}/", folder.display())]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "stdout:\n{stdout}\nstderr:\n{stderr}\ndevnet:\n{}", devnet.log());
    let counts = std::fs::read_to_string(devnet.dir().join("downloaded-files/2/outputs/counts.txt")).unwrap();
    assert_eq!(counts, "       1        3         14 a.txt\n       2        3         14 b/c.txt\n       3        6         28 total (2 files)\n");
    let folder_cid = text(&devnet.lilypad(&["ipfs", "add", folder.to_str().unwrap()])).0.trim().to_string();
    assert!(stdout.contains(&folder_cid), "{stdout}");

    // --- the same folder by its CID: the provider's cache has it, the result is the same bytes
    let out = devnet.lilypad(&["run", "wordcount-file:0.1.0", "-i", &format!("Text={folder_cid}")]);
    let (again, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{again}\n{stderr}");
    assert_eq!(data_id(&again), data_id(&stdout), "same input, same result CID");

    // --- a local path over the input's maxBytes (1 MiB) is refused before anything is paid
    let big = work.path().join("big.txt");
    std::fs::write(&big, "word ".repeat(300_000)).unwrap();
    let out = devnet.lilypad(&["run", "wordcount-file:0.1.0", "-i", &format!("Text=@{}", big.display())]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("1500000 bytes") && stderr.contains("at most 1048576") && stderr.contains("maxBytes"), "{stderr}");
    let out = devnet.lilypad(&["run", "wordcount-file:0.1.0", "-i", "Text=@/no/such/path"]);
    assert_eq!(out.status.code(), Some(2), "{:?}", text(&out));
    assert!(text(&out).1.contains("/no/such/path"), "{:?}", text(&out));
    let out = devnet.lilypad(&["run", "wordcount-file:0.1.0", "-i", "Text=not-a-cid"]);
    assert_eq!(out.status.code(), Some(2), "{:?}", text(&out));
    assert!(text(&out).1.contains("must be the CID of a file or folder"), "{:?}", text(&out));
    let observer = devnet.client(accounts::AUDITOR).await;
    assert_eq!(observer.market().jobCount().call().await.unwrap(), U256::from(3), "no job for the refused inputs");
}

#[tokio::test(flavor = "multi_thread")]
async fn inputs_that_cannot_be_had_are_refused_before_the_run_and_the_creator_refunded() {
    let devnet = Devnet::start(3);
    let observer = devnet.client(accounts::AUDITOR).await;
    let market = observer.market();
    let creator = address_of(accounts::JOB_CREATOR).unwrap();
    let funds = || async { observer.token().balanceOf(creator).call().await.unwrap() + market.balanceOf(creator).call().await.unwrap() };
    let before = funds().await;

    // a CID nobody serves (the content of a file that was never put anywhere)
    let work = tempfile::tempdir().unwrap();
    let lost = work.path().join("lost.txt");
    std::fs::write(&lost, "nobody has this text\n").unwrap();
    let lost_cid = text(&devnet.lilypad(&["ipfs", "add", lost.to_str().unwrap()])).0.trim().to_string();
    let out = devnet.lilypad(&["run", "wordcount-file:0.1.0", "-i", &format!("Text={lost_cid}"), "--detach"]);
    assert_eq!(out.status.code(), Some(0), "{:?}", text(&out));

    // a CID the devnet's IPFS node serves, over the input's 1 MiB cap
    let big = work.path().join("big");
    std::fs::create_dir(&big).unwrap();
    std::fs::write(big.join("a.txt"), "word ".repeat(150_000)).unwrap();
    std::fs::write(big.join("b.txt"), "word ".repeat(150_000)).unwrap();
    let store = lilypad_store::DiskBlockstore::open(work.path().join("blocks")).unwrap();
    let big_cid = lilypad_store::add_path(&big, &store).unwrap();
    let car = work.path().join("big.car");
    lilypad_store::export_car(&store, &big_cid, std::fs::File::create(&car).unwrap()).unwrap();
    let ipfs = devnet.info()["ipfs"].as_str().unwrap().to_string();
    let imported = lilypad_store::KuboClient::new(&ipfs).unwrap().dag_import(&car).await.unwrap();
    assert!(imported.contains(&big_cid), "{imported:?}");
    let out = devnet.lilypad(&["run", "wordcount-file:0.1.0", "-i", &format!("Text={big_cid}"), "--detach"]);
    assert_eq!(out.status.code(), Some(0), "{:?}", text(&out));

    // each is given back before it runs (the release returns the provider's collateral), and
    // the solver matches it to that provider no more: the devnet's one provider had each once
    let released = |id: u64| {
        let observer = &observer;
        async move {
            let logs = logs(observer, lilypad_bindings::LilypadMarket::JobReleased::SIGNATURE_HASH).await;
            job_ids(&logs).contains(&U256::from(id))
        }
    };
    wait_until("job 1 given back", 180, || released(1)).await;
    wait_until("job 2 given back", 180, || released(2)).await;
    // the solver polls every 20 ms: a new match would come well within this
    tokio::time::sleep(Duration::from_secs(3)).await;
    let matched = logs(&observer, lilypad_bindings::LilypadMarket::JobMatched::SIGNATURE_HASH).await;
    let mut pairs: Vec<(U256, alloy::primitives::Address)> =
        matched.iter().map(|l| (U256::from_be_bytes(l.topics()[1].0), alloy::primitives::Address::from_word(l.topics()[2]))).collect();
    pairs.sort();
    let n = pairs.len();
    pairs.dedup();
    assert_eq!(pairs.len(), n, "a job is matched at most once per provider: {pairs:?}\n{}", devnet.log());
    let released_logs = logs(&observer, lilypad_bindings::LilypadMarket::JobReleased::SIGNATURE_HASH).await;
    assert_eq!(job_ids(&released_logs).len(), 2, "each job given back once");
    for id in [1u64, 2] {
        assert!(!market.jobHash(U256::from(id)).call().await.unwrap().is_zero(), "job {id} waits, open, for its match deadline");
    }
    let provider = address_of(accounts::RESOURCE_PROVIDER).unwrap();
    let slashed = logs(&observer, lilypad_bindings::LilypadMarket::ResultTimedOut::SIGNATURE_HASH).await;
    assert!(slashed.is_empty(), "no collateral lost");
    assert!(market.balanceOf(provider).call().await.unwrap() > U256::ZERO);
    let log = devnet.log();
    assert!(log.contains(&format!("input Text ({lost_cid}) could not be had")), "the refusal names the input and CID:\n{log}");
    assert!(log.contains(&format!("input Text ({big_cid}) could not be had")), "{log}");
    assert!(log.contains("1048576"), "the cap is named:\n{log}");
    let ran = logs(&observer, lilypad_bindings::LilypadMarket::ResultSubmitted::SIGNATURE_HASH).await;
    assert!(ran.is_empty(), "neither job ran");

    // past the match deadline the jobs expire and the creator has everything back
    advance_time(&observer, u64::from(observer.deployment().match_timeout) + 1).await;
    let deadline = Instant::now() + Duration::from_secs(120);
    for id in [1u64, 2] {
        while !market.jobHash(U256::from(id)).call().await.unwrap().is_zero() {
            assert!(Instant::now() < deadline, "job {id} did not end within 120 s:\n{}", devnet.log());
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
    let expired = logs(&observer, lilypad_bindings::LilypadMarket::JobExpired::SIGNATURE_HASH).await;
    let mut ids = job_ids(&expired);
    ids.sort();
    assert_eq!(ids, vec![U256::from(1), U256::from(2)], "both expired");
    assert_eq!(funds().await, before, "the creator has both payments back");
}
