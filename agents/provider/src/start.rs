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
use lilypad_runner::{Engine, Engines, JobTasks, ModuleResolver, Sources};
use lilypad_store::DiskBlockstore;
use tokio::sync::Semaphore;
use tracing::info;

use crate::{Provider, ProviderError, ProviderOptions};

impl Provider {
    /// Checks its engines (Docker unless `docker` is off; WebAssembly always) and the modules,
    /// registers (provider role, engines, offers, collateral) as needed and starts the outputs
    /// server.
    pub async fn start(client: ChainClient, options: ProviderOptions) -> Result<Self, ProviderError> {
        let me = client.address()?;
        let engine = Engines::connect("provider", me, &options.data_dir, options.docker).await.map_err(|source| match options.docker {
            true => ProviderError::NoDocker { source },
            false => ProviderError::Engine(source),
        })?;
        let engines = engine.set();
        info!(%engines, "engines ready");
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
            let needs = lilypad_runner::engine_set(module.engine());
            if !engines.contains(needs) {
                return Err(ProviderError::EngineMissing { reference: module.reference().to_string(), engine: needs, have: engines });
            }
            modules.insert(module.id(), Arc::new(module));
        }

        options.terms.validate().map_err(ProviderError::Terms)?;
        let account = client.account(me).await?;
        // the market keeps a mediator set to the slots taken now (0: its default set now)
        let wanted = match options.mediators {
            0 => client.default_mediators().await?,
            mask => mask & taken_slots(client.mediator_count().await?),
        };
        if !account.roles.contains(Roles::PROVIDER) || account.mediators != wanted {
            client.send("registerProvider", market.registerProvider(options.mediators)).await?;
            info!(provider = %me, mediators = format_args!("{wanted:#x}"), "registered as a resource provider");
        }
        // The engines it runs, stated before any offer so that no solver matches it a job of
        // another engine (an event-only hint; see lilypad_chain::engines).
        let (have, lack) = engines.announcements();
        client.send("announceModules(engines)", market.announceModules(have, true)).await?;
        client.send("announceModules(engines it lacks)", market.announceModules(lack, false)).await?;
        let terms = options.terms;
        for (id, module) in &modules {
            let offer = client.offer(me, *id).await?;
            if !terms.stated_by(&offer, options.price) {
                client.send("setOffer", market.setOffer(*id, terms.offer(options.price))).await?;
                info!(module = %module.reference(), price = options.price, ?terms, "offered");
            }
        }
        if let Some(resources) = &options.offer_any {
            client.send("setResources", market.setResources(resources.clone())).await?;
            let any = client.offer(me, B256::ZERO).await?;
            if !terms.stated_by(&any, options.price) {
                client.send("setOffer(any module that fits)", market.setOffer(B256::ZERO, terms.offer(options.price))).await?;
            }
            info!(price = options.price, ?terms, git = options.allow_git_modules, "offered any module that fits its resources");
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
            engines,
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

/// The bitmask of the first `count` mediator slots (the market's `_takenSlots`).
fn taken_slots(count: u64) -> u64 {
    if count >= 64 {
        u64::MAX
    } else {
        (1u64 << count) - 1
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn taken_slots_are_the_low_bits() {
        assert_eq!(super::taken_slots(0), 0);
        assert_eq!(super::taken_slots(3), 0b111);
        assert_eq!(super::taken_slots(64), u64::MAX);
    }
}
