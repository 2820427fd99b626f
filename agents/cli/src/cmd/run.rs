//! `lilypad run <name>:<version> -i Key=Value ...`: pay for a job on chain, follow it through
//! match, run and result, fetch and verify its outputs, and show them. The steps (resolve,
//! check, pay, follow, fetch) are [`lilypad_client`]'s, shared with the web2 gateway; this
//! file holds the flags, the progress shown and the exit codes.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use alloy::primitives::Address;
use indicatif::{ProgressBar, ProgressStyle};
use lilypad_chain::{ChainClient, Outcome};
use lilypad_client::{ClientError, Progress};
use lilypad_module::{Module, ModuleRef};

use crate::exit;
use crate::network::{Network, NetworkArgs};

#[derive(clap::Args, Debug)]
pub struct RunArgs {
    /// The module, as name:version (e.g. lilysay:0.1.0).
    pub module: String,
    /// An input, Key=Value (repeatable). For a file or folder input (type cid), Key=@path puts
    /// the local file or folder on the IPFS node (--ipfs-api) and passes its CID.
    #[arg(short = 'i', long = "input")]
    pub inputs: Vec<String>,
    /// IPFS node (Kubo RPC API) that Key=@path inputs are put on, for providers to fetch them
    /// (default: the config file's ipfs_api, else the devnet's IPFS node).
    #[arg(long)]
    pub ipfs_api: Option<String>,
    /// The module's folder, to check inputs before paying (default: modules/<name> here or
    /// among the devnet's modules).
    #[arg(long)]
    pub module_dir: Option<PathBuf>,
    /// The most to pay (token units); default: the module's published default payment.
    #[arg(long)]
    pub max_payment: Option<u128>,
    /// Where to fetch outputs from first (then where the job's provider announced on chain it
    /// serves them, then the network's configured gateway; all verified by CID).
    #[arg(long, env = "LILYPAD_OUTPUTS_GATEWAY")]
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

impl RunArgs {
    /// Runs the command; returns the process exit code.
    pub async fn run(self, data_dir: &Path) -> u8 {
        match run_job(self, data_dir).await {
            Ok(code) => code,
            Err(Failure(code, msg)) => {
                eprintln!("Error: {msg}");
                code
            }
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

/// Client-side instants of the job's phases, for `--timings`.
struct Clock {
    started: Instant,
    prepared: Duration,
    submitted: Duration,
    matched: Option<Duration>,
    /// The provider the job was (last) matched to: the one whose result is fetched.
    provider: Option<Address>,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

async fn run_job(args: RunArgs, data_dir: &Path) -> Result<u8, Failure> {
    let started = Instant::now();
    let reference = lilypad_module::parse_reference(&args.module).map_err(|e| bad_input(format!("{e}")))?;
    let net = args.network.resolve_with(data_dir, |d| d.job_creator_key.clone()).map_err(|e| bad_input(format!("{e:#}")))?;
    let (client, spec, module) = resolve(&args, &reference, &net, data_dir).await?;
    // Refuse what the inputs' check refuses before uploading anything; then put @paths on IPFS.
    let with_placeholders: Vec<String> = args.inputs.iter().map(|i| placeholder_cid(i, module.as_ref())).collect();
    check(&with_placeholders, &reference, module.as_ref(), args.module_dir.as_deref())?;
    let api = args.ipfs_api.clone().or_else(|| net.ipfs_api.clone());
    let items = crate::upload::put_local_inputs(&args.inputs, module.as_ref(), api.as_deref()).await.map_err(|e| match e {
        crate::upload::UploadFailure::BadInput(m) => bad_input(m),
        crate::upload::UploadFailure::Infra(m) => infra(m),
    })?;
    let inputs = check(&items, &reference, module.as_ref(), args.module_dir.as_deref())?;

    println!("🌟 Lilypad submitting job {reference} {}", inputs.join(" "));
    let spinner = ProgressBar::new_spinner();
    spinner.set_style(ProgressStyle::with_template("{spinner} {msg} ({elapsed})").unwrap_or_else(|_| ProgressStyle::default_spinner()));
    spinner.enable_steady_tick(Duration::from_millis(100));
    let me = client.address().map_err(infra)?;
    let payment = args.max_payment.unwrap_or(spec.defaultPayment);
    let submitted = pay(&client, &spinner, &reference, &inputs, me, payment, args.max_payment, started).await;
    let (job, mut clock) = match submitted {
        Ok(s) => s,
        Err(f) => {
            spinner.finish_and_clear();
            return Err(f);
        }
    };
    if args.detach {
        spinner.finish_and_clear();
        println!("job {} created in block {}", job.id, job.block);
        if args.timings {
            eprintln!("timings: prepare={:.1}ms submit={:.1}ms", ms(clock.prepared), ms(clock.submitted - clock.prepared));
        }
        return Ok(exit::OK);
    }
    let data_id = follow(&client, &spinner, job, &mut clock, args.timeout).await;
    let data_id = match data_id {
        Ok(d) => d,
        Err(f) => {
            spinner.finish_and_clear();
            return Err(f);
        }
    };
    let resulted = started.elapsed();
    spinner.set_message(format!("🤔 Results submitted ({data_id}). Downloading..."));
    let fetched = fetch(&args, &net, &client, clock.provider, data_dir, job.id, &data_id, module.as_ref()).await;
    spinner.finish_and_clear();
    let result = fetched?;
    let elapsed = started.elapsed();
    if args.timings {
        let matched = clock.matched.unwrap_or(resulted);
        eprintln!(
            "timings: prepare={:.1}ms submit={:.1}ms match={:.1}ms run={:.1}ms fetch={:.1}ms total={:.1}ms",
            ms(clock.prepared),
            ms(clock.submitted - clock.prepared),
            ms(matched - clock.submitted),
            ms(resulted - matched),
            ms(elapsed - resulted),
            ms(elapsed)
        );
    }
    show(&result, &data_id, job.id, elapsed)
}

/// Resolve: the module's folder (a local one, from git, or fetched by the CID the chain
/// pins), and what the chain publishes for it. A broken local folder is refused before the
/// chain is asked.
async fn resolve(
    args: &RunArgs,
    reference: &ModuleRef,
    net: &Network,
    data_dir: &Path,
) -> Result<(ChainClient, lilypad_bindings::ModuleSpec, Option<Module>), Failure> {
    let devnet_modules = net.devnet.as_ref().map(|d| d.modules.clone()).unwrap_or_default();
    let local = lilypad_client::local_folder(args.module_dir.clone(), &reference.name, &devnet_modules).map_err(bad_input)?;
    let client = net.connect(true).await.map_err(|e| infra(format!("{e:#}")))?;
    let sources = lilypad_runner::Sources { gateways: net.ipfs_gateways.clone(), cache: data_dir.join("cache"), allow_git: true, git_policy: None, fetch: true, input_cache_max: lilypad_runner::DEFAULT_INPUT_CACHE_MAX };
    let found = lilypad_client::find_module(&client, reference, local, &sources).await.map_err(|e| match e {
        ClientError::Chain(e) => infra(e),
        ClientError::Module(lilypad_runner::RunError::HashMismatch { local, chain, .. }) => bad_input(format!(
            "the local folder of {reference} (hash {local}) is not the published version (hash {chain}): update it"
        )),
        ClientError::Module(e) if e.is_retryable() => infra(format!("fetching {reference}'s folder to check the inputs: {e}")),
        other => bad_input(other),
    })?;
    Ok((client, found.spec, found.module))
}

/// Check: the inputs against the module's spec (typed and complete), before anything is paid.
/// Without a folder they are only parsed; the provider checks them.
fn check(items: &[String], reference: &ModuleRef, module: Option<&Module>, module_dir: Option<&Path>) -> Result<Vec<String>, Failure> {
    let Some(m) = module else {
        eprintln!("warning: no local folder for {reference}; its inputs are checked only by the provider");
        return Ok(lilypad_module::parse_inputs(items).map_err(|e| bad_input(format!("{e}")))?.to_strings());
    };
    if m.reference() != *reference {
        let dir = module_dir.map(Path::to_path_buf).unwrap_or_else(|| m.dir().to_path_buf());
        return Err(bad_input(format!("{} holds {}, not {}", dir.display(), m.reference(), reference)));
    }
    // Errors about inputs end with the inputs the module accepts; add them where not.
    let with_usage = |e: String| if e.contains(" accepts:") { bad_input(e) } else { bad_input(format!("{e}\n\n{}", m.usage())) };
    let parsed = m.parse_inputs(items).map_err(|e| with_usage(e.to_string()))?;
    m.render(&parsed).map_err(|e| with_usage(e.to_string()))?;
    Ok(parsed.to_strings())
}

/// `Key=@path` for a `cid` input of `module` as `Key=<a valid CID>`, so that the other inputs
/// are checked before anything is uploaded; any other item as it is.
fn placeholder_cid(item: &str, module: Option<&Module>) -> String {
    match (item.split_once('='), module) {
        (Some((key, value)), Some(m)) if value.starts_with('@') => match m.inputs().iter().find(|d| d.name == key) {
            Some(d) if d.ty == lilypad_module::InputType::Cid => format!("{key}={}", d.sample()),
            _ => item.to_string(),
        },
        _ => item.to_string(),
    }
}

/// Pay: nothing to do when the market balance covers the payment (the market takes it from
/// there); else approve exactly what the job escrows (unless already allowed). Then create the job.
#[allow(clippy::too_many_arguments)]
async fn pay(
    client: &ChainClient,
    spinner: &ProgressBar,
    reference: &ModuleRef,
    inputs: &[String],
    me: Address,
    payment: u128,
    max_payment: Option<u128>,
    started: Instant,
) -> Result<(lilypad_client::Submitted, Clock), Failure> {
    let to_failure = |e: ClientError| match e {
        ClientError::NoFunds { .. } => bad_input(e),
        ClientError::Chain(c) if c.market_error().is_some() => bad_input(c),
        ClientError::Chain(c) => infra(c),
        other => infra(other),
    };
    let approving = lilypad_client::pay(client, me, payment);
    spinner.set_message("checking the payment (market balance, else token allowance)");
    let paid = approving.await.map_err(|e| match e {
        // reading balances or approving: only a missing balance is the user's to fix
        ClientError::Chain(c) => infra(c),
        other => to_failure(other),
    })?;
    tracing::debug!(?paid, payment, "payment");
    let prepared = started.elapsed();
    spinner.set_message("submitting the job");
    let job = lilypad_client::submit(client, &reference.to_string(), inputs, me, max_payment).await.map_err(to_failure)?;
    Ok((job, Clock { started, prepared, submitted: started.elapsed(), matched: None, provider: None }))
}

/// Follow: the job's events until its result is posted; exit 3 at `--timeout` or when it
/// timed out on chain, 1 when it ended otherwise.
async fn follow(client: &ChainClient, spinner: &ProgressBar, job: lilypad_client::Submitted, clock: &mut Clock, timeout: u64) -> Result<String, Failure> {
    let id = job.id;
    spinner.set_message(format!("🤝 Job {id} submitted. Waiting for a resource provider..."));
    let deadline = clock.started + Duration::from_secs(timeout);
    let started = clock.started;
    let matched = &mut clock.matched;
    let matched_provider = &mut clock.provider;
    let followed = lilypad_client::follow(client, id, job.block, deadline, timeout, |p| match p {
        Progress::Matched { provider, price } => {
            matched.get_or_insert_with(|| started.elapsed());
            *matched_provider = Some(provider);
            spinner.set_message(format!("💌 Deal agreed with {provider} at {price} LP units. Running job..."));
        }
        Progress::Released => spinner.set_message(format!("🔁 Job {id} given back by its provider; waiting for another...")),
    })
    .await;
    followed.map_err(|e| match e {
        ClientError::NoResult { .. } => Failure(exit::TIMEOUT, e.to_string()),
        ClientError::Ended { outcome: outcome @ (Outcome::Expired | Outcome::ResultTimedOut), .. } => {
            Failure(exit::TIMEOUT, format!("job {id} timed out ({outcome:?}); its payment was returned to your balance in the market"))
        }
        ClientError::Ended { outcome, .. } => Failure(exit::JOB_FAILED, format!("job {id} ended: {outcome:?}")),
        other => infra(other),
    })
}

/// The longest `lilypad run` waits for a result's download.
const RESULT_FETCH_DEADLINE: Duration = Duration::from_secs(600);

/// Fetch: the result folder from the outputs gateway into `downloaded-files/<job>`, verified,
/// within the module's output caps (when its folder is known here; else the store's defaults)
/// and [`RESULT_FETCH_DEADLINE`]: a provider cannot fill this disk or stall the command.
async fn fetch(
    args: &RunArgs,
    net: &Network,
    client: &ChainClient,
    provider: Option<Address>,
    data_dir: &Path,
    id: alloy::primitives::U256,
    data_id: &str,
    module: Option<&Module>,
) -> Result<lilypad_client::JobResult, Failure> {
    // where to fetch from: --gateway, then where the job's provider announced it serves its
    // outputs (on chain), then the network's configured gateway; all verified by CID
    let mut sources: Vec<String> = args.gateway.iter().cloned().collect();
    if let Some(p) = provider {
        match client.announced_endpoints(p).await {
            Ok(urls) => sources.extend(urls),
            Err(e) => eprintln!("warning: could not read where provider {p} serves its outputs: {e}"),
        }
    }
    sources.extend(net.gateway.iter().cloned());
    sources.extend(net.devnet.as_ref().map(|d| d.gateway.clone()));
    let mut seen = std::collections::HashSet::new();
    sources.retain(|s| seen.insert(s.trim_end_matches('/').to_string()));
    if sources.is_empty() {
        return Err(bad_input("where are the outputs served? the job's provider announced no endpoint on chain: pass --gateway"));
    }
    let dest = data_dir.join("downloaded-files").join(id.to_string());
    let limits = match module {
        Some(m) => lilypad_runner::result_fetch_limits(&m.limits(), RESULT_FETCH_DEADLINE),
        None => lilypad_store::FetchLimits { deadline: RESULT_FETCH_DEADLINE, ..Default::default() },
    };
    let cid = lilypad_store::parse_cid(data_id).map_err(|e| infra(format!("the result's data id {data_id:?} is not a CID: {e}")))?;
    lilypad_runner::fetch_fresh_from_any(&sources, &cid, &dest, &limits).await.map_err(|e| match e {
        lilypad_client::FetchFreshError::Fetch { cid, source, .. } => infra(format!("fetching {cid}: {source}")),
        other => infra(other),
    })?;
    let stdout = std::fs::read_to_string(dest.join("stdout")).unwrap_or_default();
    let exit_code = std::fs::read_to_string(dest.join("exitCode")).ok().and_then(|s| s.trim().parse().ok()).unwrap_or(-1);
    Ok(lilypad_client::JobResult { dir: dest, stdout, exit_code })
}

/// A job's text made safe for a terminal: control characters other than newline and tab
/// (escape sequences that move the cursor, retitle the window, write to the clipboard) and the
/// bidirectional overrides are shown escaped (`\u{1b}`), not obeyed.
pub(crate) fn sanitize(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        let bidi = matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}');
        if (c.is_control() && c != '\n' && c != '\t') || bidi {
            out.push_str(&c.escape_unicode().to_string());
        } else {
            out.push(c);
        }
    }
    out
}

/// Shows the result; exit 1 when the job's program failed.
fn show(result: &lilypad_client::JobResult, data_id: &str, id: alloy::primitives::U256, elapsed: Duration) -> Result<u8, Failure> {
    let (stdout, dest) = (&sanitize(&result.stdout), &result.dir);
    print!("{stdout}");
    if !stdout.ends_with('\n') && !stdout.is_empty() {
        println!();
    }
    println!("\n🆔  Data ID: {data_id}  (job {id}, verified, {:.2} s)", elapsed.as_secs_f64());
    println!("\n🍂 Lilypad job completed, try 👇");
    println!("    open {}", dest.display());
    println!("    cat {}", dest.join("stdout").display());
    println!("    cat {}", dest.join("stderr").display());
    println!("    ls {}", dest.join("outputs").display());
    if result.exit_code != 0 {
        let stderr = std::fs::read_to_string(dest.join("stderr")).unwrap_or_default();
        eprintln!("the job's program exited with code {}; its stderr:\n{}", result.exit_code, sanitize(&stderr));
        return Ok(exit::JOB_FAILED);
    }
    Ok(exit::OK)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_sequences_in_a_jobs_output_are_shown_not_obeyed() {
        let hostile = "ok\n\x1b]0;pwned\x07\x1b[2J\rover\u{202e}txt\tend";
        let shown = sanitize(hostile);
        assert!(!shown.chars().any(|c| c == '\x1b' || c == '\x07' || c == '\r' || c == '\u{202e}'), "{shown:?}");
        assert_eq!(shown, "ok\n\\u{1b}]0;pwned\\u{7}\\u{1b}[2J\\u{d}over\\u{202e}txt\tend");
        assert_eq!(sanitize(" _____\n< hi >\n"), " _____\n< hi >\n", "plain text is unchanged");
    }
}
