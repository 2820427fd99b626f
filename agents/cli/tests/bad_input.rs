//! The bad-input catalogue (docs/bad-input.md), end to end on a devnet: each case is named,
//! says what the user must see (exit code and message), and checks that nothing was lost:
//! balances unchanged when refused before payment, the job final when refused later, and the
//! provider still serving a normal job afterwards.
//!
//! Needs anvil (tools/bootstrap) and a Docker engine (tools/bootstrap --docker).

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use alloy::primitives::U256;
use alloy::sol_types::SolEvent;
use common::*;
use lilypad_bindings::{JobState, LilypadMarket};
use lilypad_chain::{EventStream, JobBook};
use lilypad_devnet::{accounts, address_of};

/// One CLI case: arguments, the exit code and the words the message must hold.
struct Case {
    name: &'static str,
    args: Vec<String>,
    code: i32,
    says: &'static [&'static str],
}

fn case(name: &'static str, args: &[&str], code: i32, says: &'static [&'static str]) -> Case {
    Case { name, args: args.iter().map(|s| s.to_string()).collect(), code, says }
}

/// (token balance, market balance) of an account.
async fn funds(c: &lilypad_chain::ChainClient, who: alloy::primitives::Address) -> (U256, U256) {
    (c.token().balanceOf(who).call().await.unwrap(), c.market().balanceOf(who).call().await.unwrap())
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_is_refused_before_payment_or_ends_the_job_with_a_refund() {
    let devnet = Devnet::start_with(&["--challenge-window", "2"]);
    let observer = devnet.client(accounts::AUDITOR).await;
    let market = observer.market();
    let creator = address_of(accounts::JOB_CREATOR).unwrap();
    let before = funds(&observer, creator).await;

    // a deployment file for another chain than the RPC's
    let other_chain = devnet.dir().join("other-chain.json");
    let mut dep: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(devnet.deployment_path()).unwrap()).unwrap();
    dep["chainId"] = 1.into();
    std::fs::write(&other_chain, dep.to_string()).unwrap();
    let other_chain = other_chain.to_str().unwrap().to_string();
    let deployment = devnet.deployment_path().to_str().unwrap().to_string();
    let rpc = devnet.rpc_url();
    let long = format!("Message={}", "x".repeat(1025));
    let cases = vec![
        // module names and versions
        case("module reference without a version", &["run", "lilysay"], 2, &["lilysay"]),
        case("module reference with spaces", &["run", "not a module"], 2, &["not a module"]),
        case("module reference with an empty version", &["run", "lilysay:"], 2, &["version"]),
        case("module version that climbs out of folders", &["run", "lilysay:../../etc"], 2, &["version"]),
        case("module name with a slash and capitals", &["run", "Lily/Say:0.1.0"], 2, &["Lily/Say"]),
        case("module not published", &["run", "nosuchmodule:1.0.0", "-i", "Message=x"], 2, &["nosuchmodule:1.0.0", "not published"]),
        case("version not published", &["run", "lilysay:9.9.9", "-i", "Message=x"], 2, &["lilysay:9.9.9"]),
        // inputs
        case("unknown input", &["run", "lilysay:0.1.0", "-i", "Colour=red"], 2, &["Colour", "Message"]),
        case("input near a known name", &["run", "lilysay:0.1.0", "-i", "message=hi"], 2, &["message", "Message"]),
        case("input without =", &["run", "lilysay:0.1.0", "-i", "Message"], 2, &["Message", "="]),
        case("input with an empty key", &["run", "lilysay:0.1.0", "-i", "=hi"], 2, &["\"=hi\"", "Key=Value"]),
        case("input given twice", &["run", "lilysay:0.1.0", "-i", "Message=a", "-i", "Message=b"], 2, &["Message"]),
        case("input over its maxLength", &["run", "lilysay:0.1.0", "-i", &long], 2, &["Message", "1024"]),
        // payment and accounts
        case("account with no tokens", &["run", "lilysay:0.1.0", "--private-key", accounts::SPARE], 2, &["holds 0", "fund the account"]),
        case("private key that is not one", &["run", "lilysay:0.1.0", "--private-key", "0x1234"], 4, &["invalid private key"]),
        // networks
        case("RPC of another chain than the deployment's", &["run", "lilysay:0.1.0", "--rpc-url", &rpc, "--deployment", &other_chain, "--private-key", accounts::JOB_CREATOR], 4, &["serves chain 31337", "chain 1"]),
        case("deployment file missing", &["run", "lilysay:0.1.0", "--rpc-url", &rpc, "--deployment", "/nonexistent/31337.json"], 2, &["/nonexistent/31337.json"]),
        case("unknown named network", &["run", "lilysay:0.1.0", "--network", "mainnet"], 2, &["mainnet"]),
        case("network name that climbs out of folders", &["run", "lilysay:0.1.0", "--network", "../x"], 2, &["network names"]),
        case("RPC URL that is not a URL", &["run", "lilysay:0.1.0", "--rpc-url", "not a url", "--deployment", &deployment, "--private-key", accounts::JOB_CREATOR], 4, &["invalid RPC URL"]),
        case("RPC nobody answers", &["run", "lilysay:0.1.0", "--rpc-url", "http://127.0.0.1:1", "--deployment", &deployment, "--private-key", accounts::JOB_CREATOR], 4, &["127.0.0.1:1", "reachable"]),
        // other commands
        case("challenge of a job that does not exist", &["challenge", "999"], 4, &["999", "never created"]),
        case("job that does not exist", &["job", "999"], 4, &["job 999 was never created", "0 jobs"]),
        case("ipfs get of a malformed CID", &["ipfs", "get", "bafy-not-a-cid", "/tmp/x"], 4, &["bafy-not-a-cid"]),
    ];
    let mut failures = Vec::new();
    for c in &cases {
        let args: Vec<&str> = c.args.iter().map(String::as_str).collect();
        let out = devnet.lilypad(&args);
        let (stdout, stderr) = text(&out);
        let missing: Vec<_> = c.says.iter().filter(|w| !stderr.contains(**w)).collect();
        if out.status.code() != Some(c.code) || !missing.is_empty() {
            failures.push(format!("{}: exit {:?} (want {}), missing {missing:?}\nstdout: {stdout}\nstderr: {stderr}", c.name, out.status.code(), c.code));
        }
    }
    assert!(failures.is_empty(), "{} of {} cases wrong:\n{}", failures.len(), cases.len(), failures.join("\n\n"));
    assert_eq!(market.jobCount().call().await.unwrap(), U256::ZERO, "no job was created");
    assert_eq!(funds(&observer, creator).await, before, "nothing was paid");

    // --- on chain, bypassing the CLI: no allowance → the market refuses, nothing moves
    let c2 = devnet.client(accounts::JOB_CREATOR_2).await;
    let who2 = c2.address().unwrap();
    c2.send("approve", c2.token().approve(c2.deployment().market, U256::ZERO)).await.unwrap();
    let before2 = funds(&c2, who2).await;
    let err = c2.send("runJob", c2.market().runJob("lilysay:0.1.0".into(), vec!["Message=x".into()], who2)).await.unwrap_err();
    assert!(!err.is_retryable(), "{err}");
    assert!(err.to_string().contains("runJob was rejected"), "{err}");
    // unknown module on chain
    let err = c2.send("runJob", c2.market().runJob("nosuch:1.0.0".into(), vec![], who2)).await.unwrap_err();
    assert_eq!(err.market_error(), Some("UnknownModule"), "{err}");
    assert_eq!(funds(&c2, who2).await, before2, "nothing moved");
    assert_eq!(market.jobCount().call().await.unwrap(), U256::ZERO);

    // --- refused later: a price cap below every offer. Paid, never matched, `lilypad run`
    // gives up (exit 3); after the match deadline the devnet's keeper expires it and the payee
    // is refunded (tests/keeper.rs checks that on its own).
    let out = devnet.lilypad(&["run", "lilysay:0.1.0", "--max-payment", "1000", "--timeout", "4"]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("no result after 4 s") && stderr.contains("reclaimed"), "{stderr}");
    let mut stream = EventStream::new(observer.clone(), observer.deployment().start_block);
    let mut book = JobBook::new();
    while let Some(b) = stream.poll_once().await.unwrap() {
        b.logs.iter().for_each(|l| {
            book.apply(l);
        });
    }
    let record = book.get(U256::from(1)).expect("job 1 is live").clone();
    assert_eq!(record.state(), JobState::Open, "nobody can match a job whose cap is below every offer");
    let err = observer.send("expireJob", market.expireJob(record.id, record.job.clone())).await.unwrap_err();
    assert_eq!(err.market_error(), Some("DeadlineNotReached"), "{err}");
    tokio::time::timeout(Duration::from_secs(60), advance_time(&observer, u64::from(observer.deployment().match_timeout) + 1))
        .await
        .expect("evm_increaseTime answered");
    let deadline = Instant::now() + Duration::from_secs(90);
    while !market.jobHash(U256::from(1)).call().await.unwrap().is_zero() {
        assert!(Instant::now() < deadline, "the keeper did not expire job 1 within 90 s:\n{}", devnet.log());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let after = funds(&observer, creator).await;
    assert_eq!(after.0 + after.1, before.0 + before.1, "the whole payment is back (in the market balance): {before:?} → {after:?}");

    // --- and the network still serves a normal job
    let out = devnet.lilypad(&["run", "lilysay:0.1.0", "-i", "Message=still serving"]);
    assert_eq!(out.status.code(), Some(0), "{:?}\n{}", text(&out), devnet.log());
}

/// Jobs whose program misbehaves (one way per `Mode` of the test module
/// `tests/modules/misbehave`, a static C program in a `FROM scratch` image) and inputs that try
/// to inject something: each reaches a final state through the whole network (result with its
/// exit code, settled), the sandbox holds, and the provider then still runs a normal job.
#[tokio::test(flavor = "multi_thread")]
async fn misbehaving_jobs_and_injection_attempts_end_final_and_the_provider_keeps_serving() {
    let modules = tempfile::tempdir().unwrap();
    copy_dir(&repo().join("modules/lilysay"), &modules.path().join("lilysay"));
    copy_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/modules/misbehave"), &modules.path().join("misbehave"));
    let devnet = Devnet::start_with_modules(&["--challenge-window", "2"], modules.path());
    let observer = devnet.client(accounts::AUDITOR).await;
    let market = observer.market();

    // (name, mode, exit code of `lilypad run`, what its output must hold, what must not be in the result)
    type Check = fn(&Path) -> Result<(), String>;
    let cases: Vec<(&str, &str, i32, &str, Check)> = vec![
        ("container that exits non-zero", "exit", 1, "failing on purpose", |d| expect_code(d, "7")),
        ("run past its time limit", "sleep", 1, "exited with code", |d| expect_code(d, "137")),
        ("symlink to /etc/passwd in its outputs", "symlink", 0, "wrote a symlink", |d| {
            if d.join("outputs/passwd").exists() || std::fs::symlink_metadata(d.join("outputs/passwd")).is_ok() {
                return Err("the symlink came out".into());
            }
            if !d.join("outputs/kept.txt").is_file() {
                return Err("the regular file was lost".into());
            }
            expect_code(d, "0")
        }),
        ("tries to reach the network", "network", 0, "no network", |d| expect_code(d, "0")),
        // contained either way: fork fails at the pids limit, or the memory limit kills it
        ("fork bomb", "fork", -1, "", |d| expect_code(d, "0").or_else(|_| expect_code(d, "137"))),
        ("allocates past its memory limit", "memory", 1, "exited with code", |d| expect_code(d, "137")),
        ("writes more output than allowed", "bigout", 0, "outputs full after", |d| {
            let size = std::fs::metadata(d.join("outputs/big")).map(|m| m.len()).unwrap_or(0);
            if size > 1_048_576 {
                return Err(format!("outputs/big has {size} bytes, over the 1 MiB cap"));
            }
            expect_code(d, "0")
        }),
        ("fills stdout with a gigabyte", "flood", -1, "", |d| {
            let size = std::fs::metadata(d.join("stdout")).map(|m| m.len()).unwrap_or(u64::MAX);
            if size > 64 * 1_048_576 {
                return Err(format!("stdout kept {size} bytes"));
            }
            Ok(())
        }),
    ];
    let mut failures = Vec::new();
    let mut id = 0u64;
    for (name, mode, code, says, check) in &cases {
        id += 1;
        let started = Instant::now();
        let out = devnet.lilypad(&["run", "misbehave:0.1.0", "-i", &format!("Mode={mode}"), "--timeout", "120"]);
        let (stdout, stderr) = text(&out);
        let dir = devnet.dir().join("downloaded-files").join(id.to_string());
        let mut problems = Vec::new();
        // code -1: any exit code (the flood's depends on when the wall time hits)
        if *code >= 0 && out.status.code() != Some(*code) {
            problems.push(format!("exit {:?}, want {code}", out.status.code()));
        }
        if !(stdout.contains(says) || stderr.contains(says)) {
            problems.push(format!("output lacks {says:?}"));
        }
        if let Err(e) = check(&dir) {
            problems.push(e);
        }
        println!("bad input: {name}: exit {:?} in {:.1} s", out.status.code(), started.elapsed().as_secs_f64());
        if !problems.is_empty() {
            failures.push(format!("{name} (job {id}): {problems:?}\nstdout: {}\nstderr: {stderr}", tail_chars(&stdout, 2000)));
        }
    }

    // injection attempts: each value reaches the program as one argument, untouched
    let injections = [
        ("shell metacharacters", "$(id);rm -rf /;`id`|cat>/etc/x"),
        ("a placeholder of another input", "{{Other}} {{Message}}"),
        ("JSON-breaking quotes and brackets", "\"]},{\"evil\":true"),
        ("a newline", "line one\nline two"),
    ];
    for (name, value) in injections {
        id += 1;
        let out = devnet.lilypad(&["run", "lilysay:0.1.0", "-i", &format!("Message={value}")]);
        let (stdout, stderr) = text(&out);
        let dir = devnet.dir().join("downloaded-files").join(id.to_string());
        let art = std::fs::read_to_string(dir.join("stdout")).unwrap_or_default();
        let first = value.lines().next().unwrap_or_default();
        if out.status.code() != Some(0) || !art.contains(first) {
            failures.push(format!("injection {name} (job {id}): exit {:?}, art lacks {first:?}\n{stdout}\n{stderr}", out.status.code()));
        }
    }
    assert!(failures.is_empty(), "{} cases wrong:\n{}\ndevnet:\n{}", failures.len(), failures.join("\n\n"), tail_chars(&devnet.log(), 6000));

    // every job final: one settlement each (results with their exit codes, paid)
    let jobs = id;
    wait_until("every job settled", 60, || async {
        let mut live = 0;
        for j in 1..=jobs {
            if !market.jobHash(U256::from(j)).call().await.unwrap().is_zero() {
                live += 1;
            }
        }
        live == 0
    })
    .await;
    let mut settled = job_ids(&logs(&observer, LilypadMarket::JobSettled::SIGNATURE_HASH).await);
    settled.sort();
    assert_eq!(settled, (1..=jobs).map(U256::from).collect::<Vec<_>>(), "each job settled once");

    // the provider keeps serving
    let out = devnet.lilypad(&["run", "lilysay:0.1.0", "-i", "Message=after the bad ones"]);
    assert_eq!(out.status.code(), Some(0), "{:?}", text(&out));
    assert!(text(&out).0.contains("after the bad ones"));
}

fn expect_code(dir: &Path, want: &str) -> Result<(), String> {
    let got = std::fs::read_to_string(dir.join("exitCode")).map_err(|e| format!("no exitCode in {}: {e}", dir.display()))?;
    if got.trim() == want {
        Ok(())
    } else {
        Err(format!("exitCode {}, want {want}", got.trim()))
    }
}

fn tail_chars(s: &str, n: usize) -> String {
    let start = s.char_indices().rev().nth(n).map(|(i, _)| i).unwrap_or(0);
    s[start..].to_string()
}
