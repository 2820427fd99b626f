//! A job's file and folder inputs fetched from a real trustless gateway (the store's outputs
//! server on loopback): laid out as `/inputs/<Name>`, cached by CID, refused over their cap or
//! when nobody serves them.

use std::fs;
use std::time::Duration;

use alloy::primitives::U256;
use lilypad_module::DataInput;
use lilypad_runner::{prepare_inputs, RunError, Sources};
use lilypad_store::DiskBlockstore;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inputs_are_fetched_laid_out_cached_and_refused_over_their_cap() {
    let tmp = tempfile::tempdir().unwrap();
    // a node serving a folder and a file
    let node = DiskBlockstore::open(tmp.path().join("node")).unwrap();
    let folder = tmp.path().join("corpus");
    fs::create_dir_all(folder.join("sub")).unwrap();
    fs::write(folder.join("a.txt"), "one two\n").unwrap();
    fs::write(folder.join("sub/b.txt"), "three\n").unwrap();
    let file = tmp.path().join("poem.txt");
    fs::write(&file, "a frog\n").unwrap();
    let folder_cid = lilypad_store::add_path(&folder, &node).unwrap();
    let file_cid = lilypad_store::add_path(&file, &node).unwrap();
    let (addr, _server) = lilypad_store::gateway::serve(node, ([127, 0, 0, 1], 0).into()).await.unwrap();
    let sources = Sources { gateways: vec![format!("http://{addr}")], cache: tmp.path().join("cache"), ..Default::default() };
    let job = U256::from(1);
    let inputs = vec![
        DataInput { name: "Data".into(), cid: folder_cid, max_bytes: 1000 },
        DataInput { name: "Poem".into(), cid: file_cid, max_bytes: 1000 },
    ];

    let dest = tmp.path().join("results/1.inputs");
    let laid = prepare_inputs(job, &inputs, &sources, &dest, Duration::from_secs(30)).await.unwrap().unwrap();
    assert_eq!(laid.path(), dest);
    assert_eq!(fs::read_to_string(dest.join("Data/a.txt")).unwrap(), "one two\n");
    assert_eq!(fs::read_to_string(dest.join("Data/sub/b.txt")).unwrap(), "three\n");
    assert!(fs::metadata(dest.join("Poem")).unwrap().is_file(), "a file input is a file at /inputs/<Name>");
    assert_eq!(fs::read_to_string(dest.join("Poem")).unwrap(), "a frog\n");
    assert!(tmp.path().join("cache/inputs").join(folder_cid.to_string()).is_dir(), "cached by CID");
    assert_eq!(lilypad_store::cid_of_path(&dest.join("Data")).unwrap(), folder_cid, "the same bytes");
    let lost = lilypad_store::cid_of_path(&dest.join("Poem")).unwrap();
    assert_eq!(lost, file_cid);
    drop(laid);
    assert!(!dest.exists(), "the laid-out folder goes when the run is over");
    assert!(tmp.path().join("cache/inputs").join(folder_cid.to_string()).is_dir(), "the cache keeps it");

    // no inputs: nothing to mount
    assert!(prepare_inputs(job, &[], &sources, &dest, Duration::from_secs(1)).await.unwrap().is_none());

    // from the cache, with no gateway answering (the server is gone from these sources)
    let offline = Sources { gateways: vec!["http://127.0.0.1:9".into()], ..sources.clone() };
    let again = tmp.path().join("results/2.inputs");
    let _held = prepare_inputs(U256::from(2), &inputs, &offline, &again, Duration::from_secs(5)).await.unwrap();
    assert_eq!(fs::read_to_string(again.join("Poem")).unwrap(), "a frog\n");

    // the cached folder (14 bytes) against a smaller cap: refused
    let small = vec![DataInput { name: "Data".into(), cid: folder_cid, max_bytes: 10 }];
    let e = prepare_inputs(U256::from(3), &small, &offline, &tmp.path().join("3.inputs"), Duration::from_secs(5)).await.unwrap_err();
    assert!(matches!(e, RunError::InputData { .. }) && !e.is_retryable(), "{e}");
    assert!(e.to_string().contains("input Data") && e.to_string().contains("maxBytes 10"), "{e}");

    // fetched fresh over the cap: refused from the declared sizes, nothing cached
    let fresh = Sources { cache: tmp.path().join("cache2"), ..sources.clone() };
    let e = prepare_inputs(U256::from(4), &small, &fresh, &tmp.path().join("4.inputs"), Duration::from_secs(30)).await.unwrap_err();
    assert!(e.to_string().contains("over the limit of 10"), "{e}");
    assert!(!tmp.path().join("cache2/inputs").join(folder_cid.to_string()).exists());

    // nobody serves it
    let unknown = tmp.path().join("unknown.txt");
    fs::write(&unknown, "nobody has this\n").unwrap();
    let unknown_cid = lilypad_store::cid_of_path(&unknown).unwrap();
    let missing = vec![DataInput { name: "Text".into(), cid: unknown_cid, max_bytes: 1000 }];
    let e = prepare_inputs(U256::from(5), &missing, &fresh, &tmp.path().join("5.inputs"), Duration::from_secs(30)).await.unwrap_err();
    assert!(e.to_string().contains(&format!("input Text ({unknown_cid}) could not be had")), "{e}");

    // no gateway at all
    let none = Sources { cache: tmp.path().join("cache3"), ..Default::default() };
    let e = prepare_inputs(U256::from(6), &missing, &none, &tmp.path().join("6.inputs"), Duration::from_secs(1)).await.unwrap_err();
    assert!(matches!(e, RunError::NoInputSource { .. }), "{e}");
}

/// The input cache keeps at most its cap: the least recently used inputs no run holds go
/// first, an input a run holds stays, and an input larger than the whole cache is refused
/// before it is cached, saying so; what a fetch cut short left behind is tidied at start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_input_cache_keeps_to_its_cap() {
    let tmp = tempfile::tempdir().unwrap();
    let node = DiskBlockstore::open(tmp.path().join("node")).unwrap();
    let mut cids = Vec::new();
    for (name, len) in [("a", 400), ("b", 400), ("c", 400), ("big", 1200)] {
        let file = tmp.path().join(name);
        fs::write(&file, name.repeat(len / name.len())).unwrap();
        cids.push(lilypad_store::add_path(&file, &node).unwrap());
    }
    let (addr, _server) = lilypad_store::gateway::serve(node, ([127, 0, 0, 1], 0).into()).await.unwrap();
    let sources = Sources { gateways: vec![format!("http://{addr}")], cache: tmp.path().join("cache"), input_cache_max: 1000, ..Default::default() };
    let entry = |i: usize| tmp.path().join("cache/inputs").join(cids[i].to_string());
    let input = |i: usize| vec![DataInput { name: "In".into(), cid: cids[i], max_bytes: 1 << 20 }];
    let run = |i: usize, job: u64| {
        let sources = sources.clone();
        let dest = tmp.path().join(format!("results/{job}.inputs"));
        let inputs = input(i);
        async move { prepare_inputs(U256::from(job), &inputs, &sources, &dest, Duration::from_secs(30)).await }
    };

    // a, then b (the run of a still holds it)
    let holds_a = run(0, 1).await.unwrap().unwrap();
    drop(run(1, 2).await.unwrap());
    std::thread::sleep(Duration::from_millis(20));
    // c: 1200 bytes with a and b; b (not held) goes though a was used first
    drop(run(2, 3).await.unwrap());
    assert!(entry(0).exists(), "a running job holds it");
    assert!(!entry(1).exists(), "the least recently used input no run holds is evicted");
    assert!(entry(2).exists());
    assert_eq!(fs::read_to_string(holds_a.path().join("In")).unwrap(), "a".repeat(400), "the held input is untouched");
    drop(holds_a);

    // b again: now a, no longer held and the least recently used, goes
    std::thread::sleep(Duration::from_millis(20));
    drop(run(1, 4).await.unwrap());
    assert!(!entry(0).exists() && entry(1).exists() && entry(2).exists());

    // an input larger than the whole cache: refused, saying so, and nothing cached
    let e = run(3, 5).await.unwrap_err();
    assert!(matches!(e, RunError::InputOverCache { cap: 1000, .. }) && !e.is_retryable(), "{e}");
    assert!(e.to_string().contains("input In") && e.to_string().contains("--input-cache-max"), "{e}");
    assert!(!entry(3).exists());
    assert!(!tmp.path().join("results/5.inputs").exists(), "nothing laid out for a refused job");

    // what a fetch killed midway left (an hour old, unlocked) goes at the next start; the
    // entries stay (within the cap)
    let leftover = tmp.path().join("cache/inputs/.lilypad-fetch-killed");
    fs::create_dir_all(leftover.join("blocks")).unwrap();
    fs::File::open(&leftover).unwrap().set_modified(std::time::SystemTime::now() - Duration::from_secs(3600)).unwrap();
    lilypad_runner::remove_fetch_leftovers(&sources);
    assert!(!leftover.exists());
    assert!(entry(1).exists() && entry(2).exists());
    let leftovers: Vec<_> = fs::read_dir(tmp.path().join("cache/inputs"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".lilypad-fetch-"))
        .collect();
    assert!(leftovers.is_empty(), "no fetch left its folder behind: {leftovers:?}");
}
