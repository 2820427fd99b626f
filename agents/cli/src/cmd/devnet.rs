//! `lilypad devnet`: Anvil as a child process, the contracts deployed, the well-known accounts
//! funded and given their roles, the modules published, and a solver, a resource provider and
//! a mediator and a keeper running in this process, until Ctrl-C.

use std::path::{Path, PathBuf};
use std::time::Duration;

use alloy::primitives::U256;
use eyre::{eyre, WrapErr};
use lilypad_chain::{ChainClient, Supervisor};
use lilypad_devnet::{accounts, address_of, deploy, devnet_config, write_deployment, Anvil};
use lilypad_module::Module;
use tracing::info;

use crate::network::DevnetInfo;

#[derive(clap::Args, Debug)]
pub struct DevnetArgs {
    /// Anvil's port (0: any free one).
    #[arg(long, default_value_t = 8545)]
    pub port: u16,
    /// Folder of module folders to publish and offer.
    #[arg(long, default_value = "modules")]
    pub modules: PathBuf,
    /// Port of the resource provider's outputs server (0: any free one; `--gateway-port` is
    /// the older name of this flag).
    #[arg(long, alias = "gateway-port", default_value_t = 0)]
    pub outputs_port: u16,
    /// Seconds a result can be challenged before it settles.
    #[arg(long, default_value_t = 30)]
    pub challenge_window: u32,
    /// Start only the chain (contracts deployed, accounts funded, modules published, mediator
    /// registered); run the agents yourself (`lilypad solver`, `lilypad resource-provider`, ...).
    #[arg(long)]
    pub no_agents: bool,
    /// Set up and exit once ready (for scripts), leaving nothing running.
    #[arg(long, hide = true)]
    pub check: bool,
}

const LP: u128 = 1_000_000_000_000_000_000;
/// What the devnet provider asks per lilysay-sized job, and the collateral it keeps.
const PRICE: u128 = LP;
const COLLATERAL: u128 = 1_000 * LP;
/// Largest upload the devnet's IPFS node takes in one request (an image archive).
const IPFS_MAX_UPLOAD: usize = 4 << 30;
/// What the devnet provider offers for any published module that fits (besides its own):
/// its module folders and image archives are fetched from the devnet's IPFS node.
const OFFER_ANY: lilypad_bindings::Resources = lilypad_bindings::Resources { cpuMilli: 2000, ramMb: 4096, diskMb: 10_000, vramMb: 0, gpus: 0 };

impl DevnetArgs {
    pub async fn run(self, data_dir: &Path) -> eyre::Result<()> {
        devnet(self, data_dir).await
    }
}

async fn devnet(args: DevnetArgs, data_dir: &Path) -> eyre::Result<()> {
    let root = data_dir.join("devnet");
    std::fs::create_dir_all(&root).wrap_err_with(|| format!("creating {}", root.display()))?;
    let module_dirs = module_folders(&args.modules)?;
    let modules: Vec<Module> = module_dirs
        .iter()
        .map(|d| Module::load(d).wrap_err_with(|| format!("module {}", d.display())))
        .collect::<eyre::Result<_>>()?;

    let anvil = Anvil::start_with(Some(args.port), Some(1)).await.wrap_err("starting anvil")?;
    let url = anvil.url();
    info!(%url, "anvil started");
    let mut config = devnet_config();
    config.challengeWindow = args.challenge_window.max(1);
    let d = deploy(&url, config).await?;
    let deployment = write_deployment(&root, &d)?;
    info!(market = %d.market, token = %d.token, "contracts deployed");

    // The devnet's IPFS node: module folders and image archives by CID (a gateway that also
    // takes `dag/import`, which is what `lilypad module publish` sends).
    let node_store = lilypad_store::DiskBlockstore::open(root.join("ipfs")).wrap_err("opening the devnet's IPFS store")?;
    let (ipfs_addr, _ipfs_task) = lilypad_store::gateway::serve_writable(node_store.clone(), ([127, 0, 0, 1], 0).into(), IPFS_MAX_UPLOAD)
        .await
        .wrap_err("starting the devnet's IPFS node")?;
    let ipfs = format!("http://{ipfs_addr}");
    for m in &modules {
        let (dir, store) = (m.dir().to_path_buf(), node_store.clone());
        let cid = tokio::task::spawn_blocking(move || lilypad_store::add_path(&dir, &store)).await??;
        if &cid != m.cid() {
            return Err(eyre!("module {}: the IPFS node computed {cid}, not {}", m.reference(), m.cid()));
        }
    }

    let admin = ChainClient::connect(&url, Some(accounts::ADMIN), d.clone()).await?;
    // The agents' state is this chain's: earlier devnets' chains are gone for good.
    let state = admin.state_dir(&root)?;
    state.set_aside_other_chains()?;
    for unkeyed in ["provider", "mediator"] {
        state.set_aside(unkeyed)?;
    }
    let dev = lilypad_bindings::LilypadDevToken::new(d.token, admin.provider().clone());
    for key in [
        accounts::JOB_CREATOR,
        accounts::JOB_CREATOR_2,
        accounts::SOLVER,
        accounts::MEDIATOR,
        accounts::RESOURCE_PROVIDER,
        accounts::RESOURCE_PROVIDER_2,
        accounts::RESOURCE_PROVIDER_3,
        accounts::AUDITOR,
    ] {
        let who = address_of(key).ok_or_else(|| eyre!("bad devnet key"))?;
        admin.send("faucet", dev.faucet(who, U256::from(100_000 * LP))).await?;
    }
    let keeper = address_of(accounts::KEEPER).ok_or_else(|| eyre!("bad devnet key"))?;
    let _: serde_json::Value =
        alloy::providers::Provider::raw_request(admin.provider(), "anvil_setBalance".into(), (keeper, U256::from(1_000u64) * U256::from(LP))).await?;
    let mediator = ChainClient::connect(&url, Some(accounts::MEDIATOR), d.clone()).await?;
    // mediators are approved by the market's owner before they can take a slot
    let mediator_address = address_of(accounts::MEDIATOR).ok_or_else(|| eyre!("bad devnet key"))?;
    admin.send("approveMediator", admin.market().approveMediator(mediator_address, true)).await?;
    mediator.send("registerMediator", mediator.market().registerMediator()).await?;
    admin.send("setDefaultMediators", admin.market().setDefaultMediators(1)).await?;
    for m in &modules {
        let spec = m.chain_spec();
        admin
            .send(&format!("publishModule({})", m.reference()), admin.market().publishModule(m.name().to_string(), m.version().to_string(), spec))
            .await?;
        info!(module = %m.reference(), hash = %m.cid(), "module published");
    }

    if args.no_agents {
        let info = DevnetInfo {
            rpc_url: url.clone(),
            deployment,
            gateway: String::new(),
            p2p: Vec::new(),
            modules: module_dirs.iter().map(|p| p.canonicalize().unwrap_or_else(|_| p.clone())).collect(),
            ipfs: ipfs.clone(),
            job_creator_key: accounts::JOB_CREATOR.into(),
            solver_key: accounts::SOLVER.into(),
            provider_key: accounts::RESOURCE_PROVIDER.into(),
        };
        write_info(data_dir, &info)?;
        println!("Lilypad devnet ready (chain only): {url}, market {}", d.market);
        crate::shutdown_signal().await;
        let _ = std::fs::remove_file(DevnetInfo::path(data_dir));
        anvil.stop().await;
        return Ok(());
    }
    let solver_client = ChainClient::connect(&url, Some(accounts::SOLVER), d.clone()).await?;
    let solver = lilypad_solver::Solver::start(
        solver_client,
        lilypad_solver::SolverOptions { poll: Duration::from_millis(20), ..Default::default() },
    )
    .await?;
    let provider_client = ChainClient::connect(&url, Some(accounts::RESOURCE_PROVIDER), d.clone()).await?;
    let provider = lilypad_provider::Provider::start(
        provider_client,
        lilypad_provider::ProviderOptions {
            modules: module_dirs.clone(),
            price: PRICE,
            collateral: COLLATERAL,
            mediators: 0, // the market's default set: the devnet's mediator
            terms: lilypad_provider::OfferTerms::default(),
            data_dir: state.join("provider"),
            outputs_listen: ([127, 0, 0, 1], args.outputs_port).into(),
            public_urls: Vec::new(),
            // bitswap on a free loopback port (announced on chain; in devnet.json as `p2p`)
            p2p_listen: vec!["/ip4/127.0.0.1/tcp/0".parse()?],
            public_p2p: Vec::new(),
            concurrency: 2,
            allow_network: false,
            poll: Duration::from_millis(20),
            ipfs_api: None,
            offer_any: Some(OFFER_ANY),
            docker: true,
            allow_git_modules: false,
            git_policy: Default::default(),
            fetch_modules: true,
            ipfs_gateways: vec![ipfs.clone()],
            input_cache_max: lilypad_runner::DEFAULT_INPUT_CACHE_MAX,
            testing: Default::default(),
        },
    )
    .await?;
    let outputs = format!("http://{}", provider.outputs_server());
    let p2p: Vec<String> = provider.p2p_addrs().iter().map(|a| a.to_string()).collect();
    let keeper_client = ChainClient::connect(&url, Some(accounts::KEEPER), d.clone()).await?;
    let keeper_options = lilypad_keeper::KeeperOptions { poll: Duration::from_millis(200), grace_secs: 2, ..Default::default() };
    let keeper = lilypad_keeper::Keeper::start(keeper_client, keeper_options).await?;
    let mediator_agent = lilypad_mediator::Mediator::start(
        mediator,
        lilypad_mediator::MediatorOptions {
            modules: module_dirs.clone(),
            ipfs_gateways: vec![ipfs.clone()],
            data_dir: state.join("mediator"),
            poll: Duration::from_millis(50),
            gateway: Some(outputs.clone()),
            input_cache_max: lilypad_runner::DEFAULT_INPUT_CACHE_MAX,
        },
    )
    .await?;

    let info = DevnetInfo {
        rpc_url: url.clone(),
        deployment,
        gateway: outputs.clone(),
        p2p: p2p.clone(),
        modules: module_dirs.iter().map(|p| p.canonicalize().unwrap_or_else(|_| p.clone())).collect(),
        ipfs: ipfs.clone(),
        job_creator_key: accounts::JOB_CREATOR.into(),
        solver_key: accounts::SOLVER.into(),
        provider_key: accounts::RESOURCE_PROVIDER.into(),
    };
    let info_path = write_info(data_dir, &info)?;

    println!("Lilypad devnet ready");
    println!("  chain      {url} (chain id 31337)");
    println!("  market     {}", d.market);
    println!("  outputs    {outputs}/ipfs/<cid>");
    for addr in &p2p {
        println!("  bitswap    {addr} (libp2p: TCP, noise, yamux)");
    }
    println!("  ipfs       {ipfs} (modules and image archives; `lilypad module publish` imports here)");
    println!("  modules    {}", modules.iter().map(|m| m.reference().to_string()).collect::<Vec<_>>().join(", "));
    // another data folder than the default: other terminals must be told it
    let default = crate::network::default_data_dir().ok();
    let env = if default.as_deref() == Some(data_dir) { String::new() } else { format!("LILYPAD_DATA_DIR={} ", data_dir.display()) };
    println!("  run a job  {env}lilypad run lilysay:0.1.0 -i Message=hello");
    if let Some(w) = modules.iter().find(|m| m.engine() == lilypad_module::EngineKind::Wasm) {
        println!("  WASM job   {env}lilypad run {} (WebAssembly; the provider runs Docker and WASM)", run_example(w));
    }
    println!("  a job      {env}lilypad job 1");
    println!("(Ctrl-C to stop)");
    if args.check {
        let _ = std::fs::remove_file(&info_path);
        anvil.stop().await;
        return Ok(());
    }

    // Every agent is a supervised task under one token: the first to end (or the shutdown
    // signal) stops them all, and each is joined (the provider waits for its runs to end), so
    // nothing of theirs is left running when Anvil goes.
    let mut agents = Supervisor::new();
    agents.spawn_graceful("solver", |t| async move { solver.run(t.cancelled_owned()).await });
    agents.spawn_graceful("resource provider", |t| async move { provider.run(t.cancelled_owned()).await });
    agents.spawn_graceful("mediator", |t| async move { mediator_agent.run(t.cancelled_owned()).await });
    agents.spawn_graceful("keeper", |t| async move { keeper.run(t.cancelled_owned()).await });
    let stopped = tokio::select! {
        _ = crate::shutdown_signal() => {
            info!("stopping");
            None
        }
        Some(exit) = agents.next_exit() => Some(eyre!("{exit}")),
    };
    // Supervisor::stop logs how each ended (failures and panics as errors)
    agents.stop(AGENT_STOP).await;
    let _ = std::fs::remove_file(&info_path);
    anvil.stop().await;
    match stopped {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// How long the agents get to stop (their runs cancelled and their containers removed).
const AGENT_STOP: Duration = Duration::from_secs(30);

fn write_info(data_dir: &Path, info: &DevnetInfo) -> eyre::Result<PathBuf> {
    let path = DevnetInfo::path(data_dir);
    let tmp = path.with_extension("tmp");
    // It holds the devnet's private keys: readable by this user only.
    crate::network::write_private(&tmp, &serde_json::to_vec_pretty(info)?)?;
    std::fs::rename(&tmp, &path)?;
    Ok(path)
}

fn module_folders(dir: &Path) -> eyre::Result<Vec<PathBuf>> {
    let entries = std::fs::read_dir(dir).wrap_err_with(|| {
        format!("reading the modules folder {} (run from the repository root, or pass --modules)", dir.display())
    })?;
    let mut out: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join(lilypad_module::SPEC_FILE).is_file())
        .collect();
    out.sort();
    if out.is_empty() {
        return Err(eyre!("no module folders (with {}) in {}", lilypad_module::SPEC_FILE, dir.display()));
    }
    Ok(out)
}

/// `name:version` with the module's required inputs, e.g. `lilysay-wasm:0.1.0 -i Message=hello`.
fn run_example(m: &Module) -> String {
    let mut s = m.reference().to_string();
    for d in m.inputs().iter().filter(|d| d.default.is_none()) {
        s.push_str(&format!(" -i {}=hello", d.name));
    }
    s
}
