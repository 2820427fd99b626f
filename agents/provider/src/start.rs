//! Starting a provider: the engine checked and cleared of a crashed run's leftovers, its
//! modules checked against the chain, its registration, offers and collateral brought up to
//! what the options say, the outputs server started, and its state resumed from the
//! checkpoint.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use alloy::primitives::{B256, U256};
use lilypad_chain::{ChainClient, Checkpoint, Follower, NoState, Refusals, Roles};
use lilypad_module::Module;
use lilypad_runner::{DockerEngine, Engine, JobTasks, ModuleResolver, Sources};
use lilypad_store::DiskBlockstore;
use tokio::sync::Semaphore;
use tracing::info;

use crate::{Provider, ProviderError, ProviderOptions};

impl Provider {
    /// Checks Docker and the modules, registers (provider role, offers, collateral) as needed
    /// and starts the outputs server.
    pub async fn start(client: ChainClient, options: ProviderOptions) -> Result<Self, ProviderError> {
        let me = client.address()?;
        let engine = DockerEngine::connect(lilypad_runner::executor_config("provider", me, &options.data_dir)).await?;
        let removed = engine.remove_leftovers().await?;
        if removed > 0 {
            info!(removed, "removed containers left by a previous run");
        }
        lilypad_runner::remove_unfinished_results(&options.data_dir.join("results"));
        let market = client.market();

        let mut modules = HashMap::new();
        for dir in &options.modules {
            let module = Module::load(dir).map_err(|source| ProviderError::Module { path: dir.clone(), source })?;
            let Some(published) = client.published_module(module.id()).await? else {
                return Err(ProviderError::NotPublished { reference: module.reference().to_string() });
            };
            lilypad_runner::check_pinned(&module, &published.spec)?;
            modules.insert(module.id(), Arc::new(module));
        }

        let account = client.account(me).await?;
        if !account.roles.contains(Roles::PROVIDER) || account.mediators != options.mediators {
            client.send("registerProvider", market.registerProvider(options.mediators)).await?;
            info!(provider = %me, "registered as a resource provider");
        }
        for (id, module) in &modules {
            let offer = client.offer(me, *id).await?;
            if !offer.active || offer.price != options.price {
                client.send("setOffer", market.setOffer(*id, options.price, true)).await?;
                info!(module = %module.reference(), price = options.price, "offered");
            }
        }
        if let Some(resources) = &options.offer_any {
            client.send("setResources", market.setResources(resources.clone())).await?;
            let any = client.offer(me, B256::ZERO).await?;
            if !any.active || any.price != options.price {
                client.send("setOffer(any module that fits)", market.setOffer(B256::ZERO, options.price, true)).await?;
            }
            info!(price = options.price, git = options.allow_git_modules, "offered any module that fits its resources");
        }
        let free = u128::try_from(client.market_balance(me).await?).unwrap_or(u128::MAX);
        if free < options.collateral {
            let needed = options.collateral - free;
            let token = client.token();
            let held = client.token_balance(me).await?;
            let held = u128::try_from(held).unwrap_or(u128::MAX);
            if held < needed {
                return Err(ProviderError::NoFunds { balance: held, needed });
            }
            client.send("approve", token.approve(client.deployment().market, U256::from(needed))).await?;
            client.send("deposit", market.deposit(me, U256::from(needed))).await?;
            info!(deposited = needed, "collateral deposited");
        }

        let store = DiskBlockstore::open(options.data_dir.join("blocks"))?;
        // a killed run of this agent may have left half-written blocks (never read, but kept)
        match store.remove_stray_temp_files() {
            Ok(0) => {}
            Ok(removed) => tracing::info!(removed, "removed temporary block files a killed run left"),
            Err(e) => tracing::warn!(error = %e, "cannot remove temporary block files a killed run left"),
        }
        let (outputs_server, _server) = lilypad_store::gateway::serve(store.clone(), options.outputs_listen).await?;
        info!(%outputs_server, "outputs server: serving results at http://{outputs_server}/ipfs/<cid>");

        let kubo = match &options.ipfs_api {
            Some(url) => {
                let kubo = lilypad_store::KuboClient::new(url)?;
                let version = kubo.version().await?;
                info!(%url, %version, "outputs are also pinned to this IPFS node");
                Some(Arc::new(kubo))
            }
            None => None,
        };
        // Resume from the checkpoint: the last handled block and the live jobs then.
        let (follower, NoState {}) = Follower::resume(client.clone(), Checkpoint::new(options.data_dir.join("checkpoint.json")))?;
        let follower = follower.poll_interval(options.poll);
        let slots = Arc::new(Semaphore::new(options.concurrency.max(1)));
        let sources = Sources {
            gateways: options.ipfs_gateways.clone(),
            cache: options.data_dir.join("cache"),
            allow_git: options.allow_git_modules,
            git_policy: Some(options.git_policy.clone()),
            fetch: options.fetch_modules,
        };
        Ok(Self {
            client,
            me,
            engine: Arc::new(engine),
            store,
            resolver: Arc::new(ModuleResolver::new(modules, sources)),
            announced: HashSet::new(),
            follower,
            running: HashSet::new(),
            submitted: HashSet::new(),
            settle_refusals: Refusals::new("settleMany"),
            settle_tick: tokio::time::interval(Duration::from_secs(2)),
            outputs_server,
            runs: JobTasks::new(),
            slots,
            kubo,
            options,
        })
    }
}
