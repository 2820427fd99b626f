//! `lilypad run <name>:<version> -i Key=Value ...`: pay for a job on chain, follow it through
//! match, run and result, fetch and verify its outputs, and show them.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use alloy::primitives::U256;
use alloy::sol_types::SolEvent;
use indicatif::{ProgressBar, ProgressStyle};
use lilypad_bindings::{JobState, LilypadMarket};
use lilypad_chain::{EventStream, JobBook, JobChange, Outcome};
use lilypad_module::Module;

use crate::exit;
use crate::network::NetworkArgs;

#[derive(clap::Args, Debug)]
pub struct RunArgs {
    /// The module, as name:version (e.g. lilysay:0.1.0).
    pub module: String,
    /// An input, Key=Value (repeatable).
    #[arg(short = 'i', long = "input")]
    pub inputs: Vec<String>,
    /// The module's folder, to check inputs before paying (default: modules/<name> here or
    /// among the devnet's modules).
    #[arg(long)]
    pub module_dir: Option<PathBuf>,
    /// The most to pay (token units); default: the module's published default payment.
    #[arg(long)]
    pub max_payment: Option<u128>,
    /// Where to fetch outputs from (default: the devnet provider's gateway).
    #[arg(long, env = "IPFS_GATEWAY")]
    pub gateway: Option<String>,
    /// Give up (exit 3) after this many seconds without a result.
    #[arg(long, default_value_t = 900)]
    pub timeout: u64,
    /// Print how long each phase took to stderr (client-side instants: when the receipt came
    /// back, when each event was seen): prepare, submit, match, run (start, run and result
    /// posting, on the provider), fetch (download and verification), total.
    #[arg(long)]
    pub timings: bool,
    /// Return once the job is created on chain (print its id) instead of following it.
    #[arg(long)]
    pub detach: bool,
    #[command(flatten)]
    pub network: NetworkArgs,
}

/// Runs the command; returns the process exit code.
pub async fn run(args: RunArgs, data_dir: &Path) -> u8 {
    match run_inner(args, data_dir).await {
        Ok(code) => code,
        Err(Failure(code, msg)) => {
            eprintln!("Error: {msg}");
            code
        }
    }
}

struct Failure(u8, String);

fn bad_input(msg: impl std::fmt::Display) -> Failure {
    Failure(exit::BAD_INPUT, msg.to_string())
}

fn infra(msg: impl std::fmt::Display) -> Failure {
    Failure(exit::INFRA, msg.to_string())
}

async fn run_inner(args: RunArgs, data_dir: &Path) -> Result<u8, Failure> {
    let started = Instant::now();
    let reference = lilypad_module::parse_reference(&args.module).map_err(|e| bad_input(format!("{e}")))?;
    let net = args.network.resolve_with(data_dir, |d| d.job_creator_key.clone()).map_err(|e| bad_input(format!("{e:#}")))?;

    // The module's folder: check the inputs before anything is paid.
    let module_dir = args.module_dir.clone().or_else(|| {
        let mut candidates = vec![PathBuf::from("modules").join(&reference.name)];
        if let Some(d) = &net.devnet {
            candidates.extend(d.modules.iter().filter(|m| m.file_name().and_then(|n| n.to_str()) == Some(reference.name.as_str())).cloned());
        }
        candidates.into_iter().find(|p| p.join(lilypad_module::SPEC_FILE).exists())
    });
    // A module in a git repository (github.com/org/repo:tag): fetched at the tag's commit.
    let module_dir = match module_dir {
        Some(d) => Some(d),
        None if lilypad_module::is_git_name(&reference.name) => {
            let cache = data_dir.join("repos");
            Some(lilypad_module::fetch_git_module(&reference.name, &reference.version, &cache).await.map_err(|e| {
                if e.is_retryable() { infra(e) } else { bad_input(e) }
            })?)
        }
        None => None,
    };
    let module = match &module_dir {
        Some(dir) => Some(Module::load(dir).map_err(|e| bad_input(format!("module folder {}: {e}", dir.display())))?),
        None => None,
    };
    let client = net.connect(true).await.map_err(|e| infra(format!("{e:#}")))?;
    let me = client.address().map_err(infra)?;
    let market = client.market();
    let module_id = lilypad_module::module_id(&reference.name, &reference.version);
    let (spec, published_at) = client
        .read("reading the module directory", || async {
            market.getModule(module_id).call().await.map(|r| (r.spec, r.publishedAt))
        })
        .await
        .map_err(infra)?;
    if published_at == alloy::primitives::aliases::U40::ZERO {
        return Err(bad_input(format!("{reference} is not published in the module directory of this network")));
    }
    // No local folder: fetch the published one by the CID the chain pins (verified).
    let module = match module {
        Some(m) => Some(m),
        None if !net.ipfs_gateways.is_empty() => {
            let cache = data_dir.join("cache").join("modules");
            match lilypad_module::fetch_module(spec.specHash, &net.ipfs_gateways, &cache).await {
                Ok(m) => Some(m),
                Err(e) if e.is_retryable() => return Err(infra(format!("fetching {reference}'s folder to check the inputs: {e}"))),
                Err(e) => return Err(bad_input(format!("{reference}: {e}"))),
            }
        }
        None => None,
    };
    let module_dir = module_dir.or_else(|| module.as_ref().map(|m| m.dir().to_path_buf()));
    if let Some(m) = &module {
        if m.spec_hash() != spec.specHash {
            return Err(bad_input(format!(
                "the local folder of {reference} (hash {}) is not the published version (hash {}): update it",
                m.spec_hash(),
                spec.specHash
            )));
        }
    }

    let inputs = match &module {
        Some(m) => {
            if m.reference() != reference {
                return Err(bad_input(format!("{} holds {}, not {}", module_dir.unwrap_or_default().display(), m.reference(), reference)));
            }
            // Errors about inputs end with the inputs the module accepts; add them where not.
            let with_usage = |e: String| {
                if e.contains(" accepts:") {
                    bad_input(e)
                } else {
                    bad_input(format!("{e}\n\n{}", m.usage()))
                }
            };
            let parsed = m.parse_inputs(&args.inputs).map_err(|e| with_usage(e.to_string()))?;
            m.render(&parsed).map_err(|e| with_usage(e.to_string()))?;
            parsed.to_strings()
        }
        None => {
            eprintln!("warning: no local folder for {reference}; its inputs are checked only by the provider");
            lilypad_module::parse_inputs(&args.inputs).map_err(|e| bad_input(format!("{e}")))?.to_strings()
        }
    };

    println!("🌟 Lilypad submitting job {reference} {}", inputs.join(" "));
    let spinner = ProgressBar::new_spinner();
    spinner.set_style(ProgressStyle::with_template("{spinner} {msg} ({elapsed})").unwrap_or_else(|_| ProgressStyle::default_spinner()));
    spinner.enable_steady_tick(Duration::from_millis(100));

    // Pay: approve exactly what the job escrows (unless already allowed), then runJob.
    let payment = match args.max_payment {
        Some(p) => p,
        None => spec.defaultPayment,
    };
    let token = client.token();
    let held = client.read("reading the token balance", || async { token.balanceOf(me).call().await }).await.map_err(infra)?;
    if held < U256::from(payment) {
        spinner.finish_and_clear();
        return Err(bad_input(format!("{me} holds {held} LP units but the job needs {payment}: fund the account")));
    }
    let allowance = client
        .read("reading the allowance", || async { token.allowance(me, client.deployment().market).call().await })
        .await
        .map_err(infra)?;
    if allowance < U256::from(payment) {
        spinner.set_message("approving the payment");
        client.send("approve", token.approve(client.deployment().market, U256::from(payment))).await.map_err(infra)?;
    }
    let prepared = started.elapsed();
    spinner.set_message("submitting the job");
    let receipt = if args.max_payment.is_some() {
        let request = lilypad_bindings::JobRequest {
            module: reference.to_string(),
            inputs: inputs.clone(),
            payee: me,
            maxPayment: payment,
            ..Default::default()
        };
        client.send("createJob", market.createJob(request)).await
    } else {
        client.send("runJob", market.runJob(reference.to_string(), inputs.clone(), me)).await
    }
    .map_err(|e| match e.market_error() {
        Some(_) => bad_input(format!("{e}")),
        None => infra(e),
    })?;
    let id = receipt
        .inner
        .logs()
        .iter()
        .find_map(|l| LilypadMarket::JobCreated::decode_log(&l.inner).ok().map(|e| e.data.id))
        .ok_or_else(|| infra("the job was created but its JobCreated event is missing from the receipt"))?;
    let from_block = receipt.block_number.unwrap_or(client.deployment().start_block);
    let submitted = started.elapsed();
    if args.detach {
        spinner.finish_and_clear();
        println!("job {id} created in block {from_block}");
        if args.timings {
            eprintln!("timings: prepare={:.1}ms submit={:.1}ms", ms(prepared), ms(submitted - prepared));
        }
        return Ok(exit::OK);
    }
    let mut matched_at = None;

    // Follow it.
    spinner.set_message(format!("🤝 Job {id} submitted. Waiting for a resource provider..."));
    let mut stream = EventStream::new(client.clone(), from_block).poll_interval(Duration::from_millis(50));
    let mut book = JobBook::new();
    let deadline = started + Duration::from_secs(args.timeout);
    // the job's JobCreated is in from_block: replay from there
    let data_id = loop {
        if Instant::now() > deadline {
            spinner.finish_and_clear();
            return Err(Failure(exit::TIMEOUT, format!("job {id}: no result after {} s (its payment can be reclaimed once its deadline passes)", args.timeout)));
        }
        let batch = match tokio::time::timeout(Duration::from_secs(2), stream.next_batch()).await {
            Ok(b) => b.map_err(infra)?,
            Err(_) => continue,
        };
        let mut result = None;
        for log in &batch.logs {
            let change = book.apply(log);
            match change {
                Some(JobChange::Matched(j)) if j == id => {
                    matched_at.get_or_insert_with(|| started.elapsed());
                    if let Some(r) = book.get(id) {
                        spinner.set_message(format!("💌 Deal agreed with {} at {} LP units. Running job...", r.job.provider, r.job.price));
                    }
                }
                Some(JobChange::Released(j)) if j == id => spinner.set_message(format!("🔁 Job {id} given back by its provider; waiting for another...")),
                Some(JobChange::Submitted(j)) if j == id => {
                    result = book.get(id).and_then(|r| r.data_id.clone());
                }
                Some(JobChange::Finished { id: j, outcome, record }) if j == id => match outcome {
                    Outcome::Settled { .. } => result = record.data_id.clone(),
                    Outcome::Expired | Outcome::ResultTimedOut | Outcome::MediationTimedOut => {
                        spinner.finish_and_clear();
                        return Err(Failure(exit::TIMEOUT, format!("job {id} timed out ({outcome:?}); its payment was returned to your balance in the market")));
                    }
                    other => {
                        spinner.finish_and_clear();
                        return Err(Failure(exit::JOB_FAILED, format!("job {id} ended: {other:?}")));
                    }
                },
                _ => {}
            }
        }
        if let Some(r) = book.get(id) {
            if r.state() == JobState::Submitted && result.is_none() {
                result = r.data_id.clone();
            }
        }
        if let Some(cid) = result {
            break cid;
        }
    };
    let resulted = started.elapsed();
    let matched = matched_at.unwrap_or(resulted);

    spinner.set_message(format!("🤔 Results submitted ({data_id}). Downloading..."));
    let gateway = args.gateway.clone().or_else(|| net.gateway.clone()).or_else(|| net.devnet.as_ref().map(|d| d.gateway.clone())).ok_or_else(|| bad_input("where are the outputs served? pass --gateway"))?;
    let cid = lilypad_store::parse_cid(&data_id).map_err(|e| infra(format!("the provider posted a malformed CID: {e}")))?;
    let dest = data_dir.join("downloaded-files").join(id.to_string());
    if dest.exists() {
        let _ = std::fs::remove_dir_all(&dest);
    }
    if let Some(parent) = dest.parent() {
        std::fs::create_dir_all(parent).map_err(|e| infra(format!("cannot create {}: {e}", parent.display())))?;
    }
    lilypad_store::fetch(&gateway, &cid, &dest).await.map_err(|e| infra(format!("fetching {cid}: {e}")))?;
    spinner.finish_and_clear();
    let elapsed = started.elapsed();
    if args.timings {
        eprintln!(
            "timings: prepare={:.1}ms submit={:.1}ms match={:.1}ms run={:.1}ms fetch={:.1}ms total={:.1}ms",
            ms(prepared),
            ms(submitted - prepared),
            ms(matched - submitted),
            ms(resulted - matched),
            ms(elapsed - resulted),
            ms(elapsed)
        );
    }

    let stdout = std::fs::read_to_string(dest.join("stdout")).unwrap_or_default();
    let exit_code: i64 = std::fs::read_to_string(dest.join("exitCode")).ok().and_then(|s| s.trim().parse().ok()).unwrap_or(-1);
    print!("{stdout}");
    if !stdout.ends_with('\n') && !stdout.is_empty() {
        println!();
    }
    println!("\n🆔  Data ID: {data_id}  (job {id}, verified, {:.2} s)", elapsed.as_secs_f64());
    println!("\n🍂 Lilypad job completed, try 👇");
    println!("    open {}", dest.display());
    println!("    cat {}", dest.join("stdout").display());
    println!("    cat {}", dest.join("stderr").display());
    if exit_code != 0 {
        let stderr = std::fs::read_to_string(dest.join("stderr")).unwrap_or_default();
        eprintln!("the job's program exited with code {exit_code}; its stderr:\n{stderr}");
        return Ok(exit::JOB_FAILED);
    }
    Ok(exit::OK)
}


fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
