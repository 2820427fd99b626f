//! Starting a provider: the engine checked and cleared of a crashed run's leftovers, its
//! modules checked against the chain, its registration, offers and collateral brought up to
//! what the options say, the outputs server started, and its state resumed from the
//! checkpoint.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use std::net::SocketAddr;

use alloy::primitives::{Address, B256, U256};
use lilypad_chain::{ChainClient, Checkpoint, Follower, NoState, Refusals, Roles};
use lilypad_module::Module;
use lilypad_runner::{Engine, Engines, JobTasks, ModuleResolver, Sources};
use lilypad_store::DiskBlockstore;
use tokio::sync::Semaphore;
use tracing::{info, warn};

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
        announce_endpoints(&client, me, &options.public_urls, outputs_server).await?;

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
            input_cache_max: options.input_cache_max,
        };
        lilypad_runner::remove_fetch_leftovers(&sources);
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

/// The URLs a provider announces for its outputs: `public_urls`, or `http://<server>` when the
/// server listens on a specific address. Each must be an http(s) URL of at most
/// [`MAX_ENDPOINT_LENGTH`] bytes, at most [`MAX_ENDPOINTS`] of them (the market's limits).
pub fn endpoints_to_announce(public_urls: &[String], server: SocketAddr) -> Result<Vec<String>, ProviderError> {
    let urls: Vec<String> = if public_urls.is_empty() {
        if server.ip().is_unspecified() {
            return Ok(Vec::new());
        }
        vec![format!("http://{server}")]
    } else {
        public_urls.iter().map(|u| u.trim_end_matches('/').to_string()).collect()
    };
    if urls.len() > MAX_ENDPOINTS {
        return Err(ProviderError::Endpoints(format!("{} public URLs given; the market takes at most {MAX_ENDPOINTS}", urls.len())));
    }
    for url in &urls {
        let parsed = reqwest::Url::parse(url).map_err(|e| ProviderError::Endpoints(format!("{url:?} is not a URL ({e}); give one like https://provider.example:8090")))?;
        if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
            return Err(ProviderError::Endpoints(format!("{url:?} is not an http(s) URL with a host; give one like https://provider.example:8090")));
        }
        if url.len() > MAX_ENDPOINT_LENGTH {
            return Err(ProviderError::Endpoints(format!("{url:?} is {} bytes; the market takes at most {MAX_ENDPOINT_LENGTH}", url.len())));
        }
    }
    Ok(urls)
}

/// The most URLs one announcement holds (the market's `MAX_ENDPOINTS`).
pub const MAX_ENDPOINTS: usize = 4;
/// The longest URL the market takes (its `MAX_ENDPOINT_LENGTH`).
pub const MAX_ENDPOINT_LENGTH: usize = 256;

/// Announces where the outputs are served when that differs from the last announcement on
/// chain (so a restart sends nothing); warns when there is nothing to announce.
async fn announce_endpoints(client: &ChainClient, me: Address, public_urls: &[String], server: SocketAddr) -> Result<(), ProviderError> {
    let urls = endpoints_to_announce(public_urls, server)?;
    if urls.is_empty() {
        warn!(%server, "outputs server listens on all interfaces and no --public-url was given: nothing announced on chain, so creators must be told where to fetch outputs (pass --public-url http://<this host>:<port>)");
    } else if public_urls.is_empty() && server.ip().is_loopback() {
        warn!(%server, "announcing a loopback address: only this host can fetch outputs from it (on other machines, listen on a reachable address or pass --public-url)");
    }
    let announced = client.announced_endpoints(me).await?;
    if announced != urls {
        client.send("announceEndpoints", client.market().announceEndpoints(urls.clone())).await?;
        info!(endpoints = ?urls, "announced where outputs are served");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn taken_slots_are_the_low_bits() {
        assert_eq!(super::taken_slots(0), 0);
        assert_eq!(super::taken_slots(3), 0b111);
        assert_eq!(super::taken_slots(64), u64::MAX);
    }

    #[test]
    fn the_outputs_server_address_is_announced_unless_it_listens_everywhere() {
        let specific: SocketAddr = "10.0.0.3:8090".parse().unwrap();
        assert_eq!(endpoints_to_announce(&[], specific).unwrap(), ["http://10.0.0.3:8090"]);
        let everywhere: SocketAddr = "0.0.0.0:8090".parse().unwrap();
        assert!(endpoints_to_announce(&[], everywhere).unwrap().is_empty(), "0.0.0.0 says nothing about how it is reached");
        let given = vec!["https://provider.example:8090/".to_string(), "http://10.0.0.3:8090".to_string()];
        assert_eq!(endpoints_to_announce(&given, everywhere).unwrap(), ["https://provider.example:8090", "http://10.0.0.3:8090"], "given URLs win, without a trailing slash");
    }

    #[test]
    fn urls_the_market_would_refuse_are_refused_at_start_with_the_reason() {
        let any: SocketAddr = "0.0.0.0:8090".parse().unwrap();
        for (bad, says) in [
            (vec!["provider.example:8090".to_string()], "http(s) URL"),
            (vec!["ftp://provider.example".to_string()], "http(s) URL"),
            (vec!["not a url".to_string()], "not a URL"),
            (vec![format!("https://{}.example", "a".repeat(260))], "at most 256"),
            (vec!["http://a.example".to_string(); 5], "at most 4"),
        ] {
            let err = endpoints_to_announce(&bad, any).unwrap_err().to_string();
            assert!(err.contains(says) && err.contains("--public-url"), "{bad:?}: {err}");
        }
    }
}
