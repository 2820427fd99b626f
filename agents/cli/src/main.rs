//! `lilypad`: run jobs on the network, run its agents, start a local devnet.

mod devnet;
mod gateway;
mod network;
mod run;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Exit codes of `lilypad run` (and of the other commands, where they apply).
pub mod exit {
    pub const OK: u8 = 0;
    /// The job ran and failed (non-zero exit code), or was refused on chain.
    pub const JOB_FAILED: u8 = 1;
    /// Bad input: unknown module, bad inputs, bad flags. Nothing was paid.
    pub const BAD_INPUT: u8 = 2;
    /// The job timed out (no match, no result); its payment is refundable.
    pub const TIMEOUT: u8 = 3;
    /// The chain, Docker or the network failed.
    pub const INFRA: u8 = 4;
}

#[derive(Parser)]
#[command(name = "lilypad", version, about = "Run compute jobs on the Lilypad network", propagate_version = true)]
struct Cli {
    /// Folder for downloaded results, agent state and the devnet's files.
    #[arg(long, global = true, env = "DATA_DIR", default_value = "/tmp/lilypad/data")]
    data_dir: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a module on the network: lilypad run lilysay:0.1.0 -i Message=hello
    Run(run::RunArgs),
    /// Start a local devnet (Anvil, the contracts, a solver and a resource provider) until Ctrl-C.
    Devnet(devnet::DevnetArgs),
    /// Run a solver.
    Solver {
        #[command(flatten)]
        network: network::NetworkArgs,
        /// How often to look for new events, in milliseconds (`lilypad devnet`'s own agents: 20).
        #[arg(long, env = "POLL_MS", default_value_t = 250)]
        poll_ms: u64,
    },
    /// Run a resource provider.
    ResourceProvider {
        #[command(flatten)]
        network: network::NetworkArgs,
        /// Module folders to offer (repeatable).
        #[arg(long = "module", required_unless_present = "offer_any")]
        modules: Vec<PathBuf>,
        /// Price per job, in token units (wei of LP).
        #[arg(long, env = "OFFER_PRICE", default_value = "1000000000000000000")]
        price: u128,
        /// Collateral to keep deposited, in token units.
        #[arg(long, env = "COLLATERAL", default_value = "100000000000000000000")]
        collateral: u128,
        /// Where to serve job outputs.
        #[arg(long, env = "GATEWAY_ADDR", default_value = "127.0.0.1:8090")]
        gateway: SocketAddr,
        /// Jobs run at once.
        #[arg(long, default_value_t = 2)]
        concurrency: usize,
        /// A Kubo RPC API to also add and pin outputs to (e.g. http://127.0.0.1:5001).
        #[arg(long, env = "IPFS_API")]
        ipfs_api: Option<String>,
        /// Also offer any published module that fits these resources: cpu-milli,ram-mb,disk-mb
        /// (e.g. 2000,4096,10000).
        #[arg(long, value_parser = parse_resources)]
        offer_any: Option<lilypad_bindings::Resources>,
        /// Run modules published from git repositories (their build commands run on this host).
        #[arg(long)]
        allow_git_modules: bool,
        /// Do not fetch published modules it has no folder for (by default, with --offer-any,
        /// their folders and image archives are fetched by CID from the IPFS gateway; images
        /// are loaded, never built, so nothing of theirs runs outside the sandbox).
        #[arg(long)]
        no_fetch_modules: bool,
        /// TEST ONLY (never in production): post a wrong result for this share (0 to 1) of the
        /// jobs, to test challenges, audits and mediators against a cheater. Its collateral is
        /// slashed whenever such a result is challenged.
        #[arg(long, hide = true, value_parser = parse_rate)]
        cheat_rate: Option<f64>,
        /// TEST ONLY: seed of the pick of jobs --cheat-rate cheats on.
        #[arg(long, hide = true, default_value_t = 0)]
        cheat_seed: u64,
        /// How often to look for new events, in milliseconds (`lilypad devnet`'s own agents: 20).
        #[arg(long, env = "POLL_MS", default_value_t = 250)]
        poll_ms: u64,
    },
    /// Run a mediator.
    Mediator {
        #[command(flatten)]
        network: network::NetworkArgs,
        /// Module folders it can re-run (repeatable); others are fetched by CID from the IPFS
        /// gateway (folder and pinned image archive).
        #[arg(long = "module")]
        modules: Vec<PathBuf>,
        /// Where to fetch providers' results from, to compare them under a module's declared
        /// comparison (default: the devnet provider's gateway).
        #[arg(long, env = "IPFS_GATEWAY")]
        gateway: Option<String>,
    },
    /// Audit results: challenge a random share of them within their challenge windows (pays
    /// the mediator fee + bond for each, from the market balance or else the token balance).
    Auditor {
        #[command(flatten)]
        network: network::NetworkArgs,
        /// Share of results to challenge, from 0 to 1.
        #[arg(long, value_parser = parse_rate)]
        rate: f64,
        /// Seed of the random pick (default: a random one; keep it secret from providers).
        #[arg(long)]
        seed: Option<u64>,
    },
    /// Challenge a job's result within its challenge window (pays the mediator fee + bond).
    Challenge {
        /// The job id.
        id: u64,
        #[command(flatten)]
        network: network::NetworkArgs,
    },
    /// Content addressing: the same CIDs as `ipfs add -r --cid-version=1`.
    Ipfs {
        #[command(subcommand)]
        command: IpfsCommand,
    },
    /// The web2 gateway: run and pay for jobs over HTTP with API keys and prepaid credit.
    Gateway(gateway::GatewayArgs),
    /// Job modules.
    Module {
        #[command(subcommand)]
        command: ModuleCommand,
    },
}

#[derive(Subcommand)]
enum IpfsCommand {
    /// Print the CID of a file or folder.
    Add { path: PathBuf },
    /// Fetch a CID from a gateway into a folder, verifying every block.
    Get {
        cid: String,
        dest: PathBuf,
        #[arg(long, env = "IPFS_GATEWAY", default_value = "http://127.0.0.1:8090")]
        gateway: String,
    },
}

#[derive(Subcommand)]
enum ModuleCommand {
    /// Create a working module skeleton in a new folder.
    Init {
        dir: PathBuf,
        /// The module's name (default: the folder's name).
        #[arg(long)]
        name: Option<String>,
    },
    /// Build a module's image and print its content hash.
    Build { dir: PathBuf },
    /// Publish a module: build its image, put the folder and the image archive on IPFS, and
    /// register name:version on chain pinned to both content hashes.
    Publish {
        dir: PathBuf,
        #[command(flatten)]
        network: network::NetworkArgs,
        /// Kubo RPC API to import the folder and image archive into (default: the config
        /// file's ipfs_api, else the devnet's IPFS node).
        #[arg(long, env = "LILYPAD_IPFS_API")]
        ipfs_api: Option<String>,
        /// Pin no image archive: providers then need the folder and build the image themselves.
        #[arg(long)]
        no_image: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_env("LOG_LEVEL")
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(default_log_level(&cli.command)))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt().with_env_filter(filter).with_target(false).with_writer(std::io::stderr).init();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            return ExitCode::from(exit::INFRA);
        }
    };
    let code = runtime.block_on(dispatch(cli));
    ExitCode::from(code)
}

fn default_log_level(command: &Command) -> &'static str {
    match command {
        Command::Run(_) | Command::Ipfs { .. } | Command::Module { .. } => "warn",
        Command::Gateway(g) if !matches!(g.command, gateway::GatewayCommand::Serve { .. }) => "warn",
        _ => "info",
    }
}

async fn dispatch(cli: Cli) -> u8 {
    let result = match cli.command {
        Command::Run(args) => return run::run(args, &cli.data_dir).await,
        Command::Devnet(args) => devnet::devnet(args, &cli.data_dir).await,
        Command::Solver { network, poll_ms } => solver(network, &cli.data_dir, poll_ms).await,
        Command::ResourceProvider {
            network,
            modules,
            price,
            collateral,
            gateway,
            concurrency,
            ipfs_api,
            offer_any,
            allow_git_modules,
            no_fetch_modules,
            cheat_rate,
            cheat_seed,
            poll_ms,
        } => {
            let cheat = cheat_rate.map(|rate| lilypad_provider::cheat::Cheat { rate, seed: cheat_seed });
            let extra = ProviderExtra { ipfs_api, offer_any, allow_git_modules, fetch_modules: !no_fetch_modules, cheat, poll_ms };
            provider(network, &cli.data_dir, modules, price, collateral, gateway, concurrency, extra).await
        }
        Command::Mediator { network, modules, gateway } => mediator(network, &cli.data_dir, modules, gateway).await,
        Command::Auditor { network, rate, seed } => auditor(network, &cli.data_dir, rate, seed).await,
        Command::Challenge { id, network } => challenge(id, network, &cli.data_dir).await,
        Command::Ipfs { command } => ipfs(command).await,
        Command::Module { command } => module(command, &cli.data_dir).await,
        Command::Gateway(args) => gateway::gateway(args, &cli.data_dir).await,
    };
    match result {
        Ok(()) => exit::OK,
        Err(e) => {
            eprintln!("Error: {e:#}");
            exit::INFRA
        }
    }
}

async fn solver(network: network::NetworkArgs, data_dir: &std::path::Path, poll_ms: u64) -> eyre::Result<()> {
    let net = network.resolve(data_dir)?;
    let client = net.connect(true).await?;
    let options = lilypad_solver::SolverOptions {
        checkpoint: Some(data_dir.join("solver").join(format!("{}.json", client.address()?))),
        poll: std::time::Duration::from_millis(poll_ms.max(1)),
        ..Default::default()
    };
    let solver = lilypad_solver::Solver::start(client, options).await?;
    solver.run(shutdown_signal()).await?;
    Ok(())
}

struct ProviderExtra {
    ipfs_api: Option<String>,
    offer_any: Option<lilypad_bindings::Resources>,
    allow_git_modules: bool,
    fetch_modules: bool,
    cheat: Option<lilypad_provider::cheat::Cheat>,
    poll_ms: u64,
}

/// A share from 0 to 1.
fn parse_rate(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(r) if (0.0..=1.0).contains(&r) => Ok(r),
        _ => Err(format!("{s:?}: expected a share from 0 to 1, e.g. 0.1")),
    }
}

fn parse_resources(s: &str) -> Result<lilypad_bindings::Resources, String> {
    let parts: Vec<u32> = s.split(',').map(|p| p.trim().parse::<u32>()).collect::<Result<_, _>>().map_err(|e| format!("{s:?}: {e}"))?;
    match parts[..] {
        [cpu, ram, disk] => Ok(lilypad_bindings::Resources { cpuMilli: cpu, ramMb: ram, diskMb: disk, vramMb: 0, gpus: 0 }),
        _ => Err(format!("{s:?}: expected cpu-milli,ram-mb,disk-mb")),
    }
}

#[allow(clippy::too_many_arguments)]
async fn provider(
    network: network::NetworkArgs,
    data_dir: &std::path::Path,
    modules: Vec<PathBuf>,
    price: u128,
    collateral: u128,
    gateway: SocketAddr,
    concurrency: usize,
    extra: ProviderExtra,
) -> eyre::Result<()> {
    let net = network.resolve_with(data_dir, |d| d.provider_key.clone())?;
    let client = net.connect(true).await?;
    let options = lilypad_provider::ProviderOptions {
        modules,
        price,
        collateral,
        mediators: u64::MAX,
        data_dir: data_dir.join("provider").join(client.address()?.to_string()),
        gateway,
        concurrency,
        allow_network: false,
        poll: std::time::Duration::from_millis(extra.poll_ms.max(1)),
        ipfs_api: extra.ipfs_api,
        offer_any: extra.offer_any,
        allow_git_modules: extra.allow_git_modules,
        fetch_modules: extra.fetch_modules,
        ipfs_gateways: net.ipfs_gateways.clone(),
        cheat: extra.cheat,
    };
    let provider = lilypad_provider::Provider::start(client, options).await?;
    provider.run(shutdown_signal()).await?;
    Ok(())
}

async fn mediator(network: network::NetworkArgs, data_dir: &std::path::Path, modules: Vec<PathBuf>, gateway: Option<String>) -> eyre::Result<()> {
    let net = network.resolve_with(data_dir, |_| lilypad_devnet::accounts::MEDIATOR.to_string())?;
    let gateway = gateway.or_else(|| net.gateway.clone()).or_else(|| net.devnet.as_ref().map(|d| d.gateway.clone()).filter(|g| !g.is_empty()));
    let client = net.connect(true).await?;
    let options = lilypad_mediator::MediatorOptions {
        modules,
        ipfs_gateways: net.ipfs_gateways.clone(),
        data_dir: data_dir.join("mediator").join(client.address()?.to_string()),
        poll: std::time::Duration::from_millis(250),
        gateway,
    };
    let mediator = lilypad_mediator::Mediator::start(client, options).await?;
    mediator.run(shutdown_signal()).await?;
    Ok(())
}

async fn auditor(network: network::NetworkArgs, data_dir: &std::path::Path, rate: f64, seed: Option<u64>) -> eyre::Result<()> {
    let net = network.resolve_with(data_dir, |_| lilypad_devnet::accounts::AUDITOR.to_string())?;
    let client = net.connect(true).await?;
    let seed = seed.unwrap_or_else(random_seed);
    let options = lilypad_mediator::auditor::AuditorOptions { rate, seed, poll: std::time::Duration::from_millis(250) };
    let auditor = lilypad_mediator::auditor::Auditor::start(client, options).await?;
    auditor.run(shutdown_signal()).await?;
    Ok(())
}

/// A seed nobody else knows: the clock's nanoseconds and this process, hashed.
fn random_seed() -> u64 {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    let h = alloy::primitives::keccak256(format!("{nanos}-{}", std::process::id()));
    u64::from_be_bytes(h[..8].try_into().unwrap_or([0; 8]))
}

async fn challenge(id: u64, network: network::NetworkArgs, data_dir: &std::path::Path) -> eyre::Result<()> {
    use alloy::primitives::U256;
    let net = network.resolve_with(data_dir, |d| d.job_creator_key.clone())?;
    let client = net.connect(true).await?;
    let id = U256::from(id);
    // rebuild the job from the events
    let mut stream = lilypad_chain::EventStream::new(client.clone(), client.deployment().start_block);
    let mut book = lilypad_chain::JobBook::new();
    while let Some(batch) = stream.poll_once().await? {
        for log in &batch.logs {
            book.apply(log);
        }
    }
    let record = book.get(id).ok_or_else(|| eyre::eyre!("job {id} is not live (never created, or already final)"))?;
    if record.state() != lilypad_bindings::JobState::Submitted {
        return Err(eyre::eyre!("job {id} is {:?}: only a submitted result can be challenged", record.state()));
    }
    let deposit = U256::from(client.deployment().challenge_deposit());
    let me = client.address()?;
    let market = client.market();
    let free = market.balanceOf(me).call().await?;
    if free < deposit {
        let token = client.token();
        client.send("approve", token.approve(client.deployment().market, deposit)).await?;
    }
    client.send(&format!("challenge(job {id})"), market.challenge(id, record.job.clone())).await?;
    println!("challenged job {id}: mediator {} re-runs it and rules", record.job.mediator);
    Ok(())
}

async fn ipfs(command: IpfsCommand) -> eyre::Result<()> {
    match command {
        IpfsCommand::Add { path } => {
            let cid = tokio::task::spawn_blocking(move || lilypad_store::cid_of_path(&path)).await??;
            println!("{cid}");
        }
        IpfsCommand::Get { cid, dest, gateway } => {
            let cid = lilypad_store::parse_cid(&cid)?;
            let files = lilypad_store::fetch(&gateway, &cid, &dest).await?;
            println!("fetched and verified {} files into {}", files.len(), dest.display());
        }
    }
    Ok(())
}

async fn module(command: ModuleCommand, data_dir: &std::path::Path) -> eyre::Result<()> {
    match command {
        ModuleCommand::Init { dir, name } => {
            let name = match name {
                Some(n) => n,
                None => dir
                    .file_name()
                    .and_then(|n| n.to_str())
                    .map(str::to_string)
                    .ok_or_else(|| eyre::eyre!("give the module a --name"))?,
            };
            let module = lilypad_module::init_module(&dir, &name)?;
            println!("created {} in {} (content hash {})", module.reference(), dir.display(), module.cid());
            println!("build it with: lilypad module build {}", dir.display());
        }
        ModuleCommand::Build { dir } => {
            let module = lilypad_module::Module::load(&dir)?;
            let executor = lilypad_executor::Executor::connect().await?;
            executor.preflight().await?;
            let image = lilypad_module::build_image(&module, &executor).await?;
            println!("{} built as image {image}", module.reference());
            println!("content hash (CID): {}", module.cid());
            println!("spec hash (on chain): {}", module.spec_hash());
        }
        ModuleCommand::Publish { dir, network, ipfs_api, no_image } => {
            let module = lilypad_module::Module::load(&dir)?;
            let net = network.resolve_with(data_dir, |d| d.job_creator_key.clone())?;
            let api = ipfs_api.or(net.ipfs_api.clone());
            let image_hash = publish_content(&module, api.as_deref(), !no_image).await?;
            let client = net.connect(true).await?;
            let market = client.market();
            let call = market.publishModule(module.name().to_string(), module.version().to_string(), module.chain_spec_with_image(image_hash));
            client.send(&format!("publishModule({})", module.reference()), call).await.map_err(|e| match e.market_error() {
                Some(_) => eyre::eyre!("the module directory refused {}: {e}", module.reference()),
                None => eyre::eyre!(e),
            })?;
            println!("published {} pinned to {} (spec hash {})", module.reference(), module.cid(), module.spec_hash());
            if image_hash != alloy::primitives::B256::ZERO {
                println!("image archive: {} (image hash {image_hash})", lilypad_module::cid_from_spec_hash(image_hash));
            }
            println!("run it with: lilypad run {}", module.reference());
        }
    }
    Ok(())
}

/// Builds the image (unless `!with_image`), saves its archive, and imports the module folder
/// and the archive into the IPFS node at `api` as CARs. Returns the image hash to pin (zero
/// without an image).
async fn publish_content(module: &lilypad_module::Module, api: Option<&str>, with_image: bool) -> eyre::Result<alloy::primitives::B256> {
    use eyre::WrapErr;
    let Some(api) = api else {
        return Err(eyre::eyre!(
            "no IPFS node to publish {} to: pass --ipfs-api <Kubo RPC URL> (or set ipfs_api in the config file)",
            module.reference()
        ));
    };
    let kubo = lilypad_store::KuboClient::new(api)?;
    let work = tempfile::tempdir().wrap_err("temporary folder")?;
    let store = lilypad_store::DiskBlockstore::open(work.path().join("blocks"))?;
    let mut roots = vec![];
    let (dir, s) = (module.dir().to_path_buf(), store.clone());
    let folder = tokio::task::spawn_blocking(move || lilypad_store::add_path(&dir, &s)).await??;
    roots.push(("module folder", folder));
    let mut image_hash = alloy::primitives::B256::ZERO;
    if with_image {
        let executor = lilypad_executor::Executor::connect().await?;
        executor.preflight().await?;
        let tag = lilypad_module::build_image(module, &executor).await?;
        println!("{} built as image {tag}", module.reference());
        let archive = lilypad_module::save_image_archive(module, &executor, &work.path().join("image.tar"), &store).await?;
        println!("image archive {} ({} bytes)", archive.cid, archive.bytes);
        roots.push(("image archive", archive.cid));
        image_hash = archive.image_hash;
    }
    for (what, root) in roots {
        let car = work.path().join(format!("{root}.car"));
        let (s, c) = (store.clone(), car.clone());
        tokio::task::spawn_blocking(move || -> eyre::Result<u64> { Ok(lilypad_store::export_car(&s, &root, std::fs::File::create(&c)?)?) }).await??;
        let imported = kubo.dag_import(&car).await.wrap_err_with(|| format!("importing the {what} into {api}"))?;
        if !imported.contains(&root) {
            return Err(eyre::eyre!("{api} imported {imported:?}, not the {what} {root}"));
        }
        println!("{what} {root} is on {api}");
    }
    Ok(image_hash)
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => {
                let _ = ctrl_c.await;
                return;
            }
        };
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

#[cfg(test)]
mod cli_tests {
    /// clap's own consistency checks over every subcommand (duplicate argument names, e.g. a
    /// flattened NetworkArgs flag that a subcommand also declares, only fail at run time).
    #[test]
    fn the_command_line_is_well_formed() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}
