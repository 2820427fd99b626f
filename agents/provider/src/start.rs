//! Starting a provider: the engine checked and cleared of a crashed run's leftovers, its
//! modules checked against the chain, its registration, offers and collateral brought up to
//! what the options say, the outputs server (and the libp2p node, when asked for) started
//! and announced, and its state resumed from the checkpoint.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use std::net::SocketAddr;

use alloy::primitives::{Address, B256, U256};
use lilypad_chain::{ChainClient, Checkpoint, Follower, NoState, Refusals, Roles, Supervisor};
use lilypad_p2p::{Multiaddr, PeerId, Protocol};
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
        // another engine (an event-only hint; see lilypad_chain::engines), and how many jobs
        // it runs at once, so that solvers give it as many (lilypad_chain::capacity).
        let (mut have, lack) = engines.announcements();
        let concurrency = u32::try_from(options.concurrency.max(1)).unwrap_or(u32::MAX);
        have.push(lilypad_chain::capacity::concurrency_announcement(concurrency));
        client.send("announceModules(engines, concurrency)", market.announceModules(have, true)).await?;
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
        let mut tasks = Supervisor::new();
        let (outputs_server, accept) = lilypad_store::gateway::serve(store.clone(), options.outputs_listen).await?;
        info!(%outputs_server, "outputs server: serving results at http://{outputs_server}/ipfs/<cid>");
        tasks.spawn("the outputs server", async move {
            // stopping the provider drops this future: the accept loop goes with it
            let _stop = AbortOnDrop(accept.abort_handle());
            match accept.await {
                Ok(served) => served,
                Err(e) => Err(std::io::Error::other(format!("the accept loop: {e}"))),
            }
        });
        let p2p = match options.p2p_listen.is_empty() {
            true => None,
            false => {
                let identity = lilypad_p2p::load_or_create_identity(&options.data_dir.join("p2p-identity.key"))?;
                let node_options = lilypad_p2p::NodeOptions { listen: options.p2p_listen.clone(), ..Default::default() };
                let (node, task) = lilypad_p2p::Node::start(identity, lilypad_p2p::StoreBlocks::read_only(store.clone()), &node_options).await?;
                tasks.spawn_graceful("the libp2p node", |stop| task.run(stop.cancelled_owned()));
                Some(node)
            }
        };
        let mut endpoints = endpoints_to_announce(&options.public_urls, outputs_server)?;
        if endpoints.is_empty() {
            warn!(server = %outputs_server, "outputs server listens on all interfaces and no --public-url was given: its URL is not announced on chain (pass --public-url http://<this host>:<port>)");
        } else if options.public_urls.is_empty() && outputs_server.ip().is_loopback() {
            warn!(server = %outputs_server, "announcing a loopback address: only this host can fetch outputs from it (on other machines, listen on a reachable address or pass --public-url)");
        }
        if let Some(node) = &p2p {
            let addrs = p2p_endpoints(&options.public_p2p, &options.p2p_listen, node.listen_addrs(), node.peer_id())?;
            if addrs.is_empty() {
                warn!(peer = %node.peer_id(), "the libp2p node listens on all interfaces and no --public-p2p was given: its address is not announced on chain (pass --public-p2p /ip4/<this host's address>/tcp/<port>)");
            } else if options.public_p2p.is_empty() && addrs.iter().all(is_loopback) {
                warn!(addrs = ?addrs, "announcing a loopback libp2p address: only this host can fetch outputs by bitswap (on other machines, listen on a reachable address or pass --public-p2p)");
            }
            endpoints.extend(addrs.iter().map(|a| a.to_string()));
        }
        check_endpoints(&endpoints)?;
        announce_endpoints(&client, me, endpoints).await?;

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
            p2p,
            tasks,
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
/// server listens on a specific address. Each must be an http(s) URL; [`check_endpoints`]
/// then holds everything announced to the market's limits.
pub fn endpoints_to_announce(public_urls: &[String], server: SocketAddr) -> Result<Vec<String>, ProviderError> {
    let urls: Vec<String> = if public_urls.is_empty() {
        if server.ip().is_unspecified() {
            return Ok(Vec::new());
        }
        vec![format!("http://{server}")]
    } else {
        public_urls.iter().map(|u| u.trim_end_matches('/').to_string()).collect()
    };
    for url in &urls {
        let parsed = reqwest::Url::parse(url).map_err(|e| ProviderError::Endpoints(format!("{url:?} is not a URL ({e}); give one like https://provider.example:8090")))?;
        if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
            return Err(ProviderError::Endpoints(format!("{url:?} is not an http(s) URL with a host; give one like https://provider.example:8090")));
        }
    }
    Ok(urls)
}

/// The multiaddrs a provider announces for its libp2p node (peer `peer`), each ending in
/// `/p2p/<peer>`: `public` when given (a `/p2p/` part naming another peer is refused), else
/// the addresses it listens on (`listening`, ports resolved) whose IP was configured
/// specifically in `configured` (an unspecified 0.0.0.0 or :: says nothing about how it is
/// reached).
pub fn p2p_endpoints(public: &[Multiaddr], configured: &[Multiaddr], listening: &[Multiaddr], peer: PeerId) -> Result<Vec<Multiaddr>, ProviderError> {
    use lilypad_p2p::with_peer_id;
    if !public.is_empty() {
        let mut out = Vec::new();
        for addr in public {
            if let Some(other) = addr.iter().find_map(|p| match p {
                Protocol::P2p(id) if id != peer => Some(id),
                _ => None,
            }) {
                return Err(ProviderError::Endpoints(format!("{addr} names peer {other}, and this node is {peer} (its key is p2p-identity.key in the data folder): leave the /p2p/ part out")));
            }
            out.push(with_peer_id(addr, peer));
        }
        return Ok(out);
    }
    let specific: Vec<std::net::IpAddr> = configured.iter().filter_map(ip_of).filter(|ip| !ip.is_unspecified()).collect();
    Ok(listening.iter().filter(|a| ip_of(a).is_some_and(|ip| specific.contains(&ip))).map(|a| with_peer_id(a, peer)).collect())
}

fn ip_of(addr: &Multiaddr) -> Option<std::net::IpAddr> {
    match addr.iter().next()? {
        Protocol::Ip4(ip) => Some(ip.into()),
        Protocol::Ip6(ip) => Some(ip.into()),
        _ => None,
    }
}

fn is_loopback(addr: &Multiaddr) -> bool {
    ip_of(addr).is_some_and(|ip| ip.is_loopback())
}

/// Holds what is announced to the market's limits: at most [`MAX_ENDPOINTS`] strings of at
/// most [`MAX_ENDPOINT_LENGTH`] bytes.
pub fn check_endpoints(endpoints: &[String]) -> Result<(), ProviderError> {
    if endpoints.len() > MAX_ENDPOINTS {
        return Err(ProviderError::Endpoints(format!(
            "{} endpoints ({}); the market takes at most {MAX_ENDPOINTS}, URLs and multiaddrs together: give fewer --public-url / --public-p2p",
            endpoints.len(),
            endpoints.join(", ")
        )));
    }
    for e in endpoints {
        if e.len() > MAX_ENDPOINT_LENGTH {
            return Err(ProviderError::Endpoints(format!("{e:?} is {} bytes; the market takes at most {MAX_ENDPOINT_LENGTH}", e.len())));
        }
    }
    Ok(())
}

/// The most endpoints one announcement holds (the market's `MAX_ENDPOINTS`).
pub const MAX_ENDPOINTS: usize = 4;
/// The longest endpoint the market takes (its `MAX_ENDPOINT_LENGTH`).
pub const MAX_ENDPOINT_LENGTH: usize = 256;

/// Announces `endpoints` (HTTP URLs, then libp2p multiaddrs) when they differ from the last
/// announcement on chain (so a restart sends nothing).
async fn announce_endpoints(client: &ChainClient, me: Address, endpoints: Vec<String>) -> Result<(), ProviderError> {
    let announced = client.announced_endpoints(me).await?;
    if announced != endpoints {
        client.send("announceEndpoints", client.market().announceEndpoints(endpoints.clone())).await?;
        info!(endpoints = ?endpoints, "announced where outputs are served");
    }
    Ok(())
}

/// Aborts a task when dropped (the supervised future that owns it was stopped).
struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
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
            let err = endpoints_to_announce(&bad, any).and_then(|urls| check_endpoints(&urls)).unwrap_err().to_string();
            assert!(err.contains(says) && err.contains("--public-url"), "{bad:?}: {err}");
        }
    }

    fn addrs(list: &[&str]) -> Vec<Multiaddr> {
        list.iter().map(|a| a.parse().unwrap()).collect()
    }

    #[test]
    fn the_libp2p_node_announces_its_specific_listen_addresses_with_its_peer_id() {
        let peer = lilypad_p2p::Keypair::generate_ed25519().public().to_peer_id();
        let listening = addrs(&["/ip4/127.0.0.1/tcp/40001", "/ip4/10.0.0.3/tcp/40001"]);
        let got = p2p_endpoints(&[], &addrs(&["/ip4/10.0.0.3/tcp/0"]), &listening, peer).unwrap();
        assert_eq!(got, addrs(&[&format!("/ip4/10.0.0.3/tcp/40001/p2p/{peer}")]), "the configured IP, with the port it got");
        let everywhere = p2p_endpoints(&[], &addrs(&["/ip4/0.0.0.0/tcp/4001"]), &listening, peer).unwrap();
        assert!(everywhere.is_empty(), "0.0.0.0 says nothing about how it is reached: {everywhere:?}");
        let public = p2p_endpoints(&addrs(&["/dns4/provider.example/tcp/4001"]), &addrs(&["/ip4/0.0.0.0/tcp/4001"]), &listening, peer).unwrap();
        assert_eq!(public, addrs(&[&format!("/dns4/provider.example/tcp/4001/p2p/{peer}")]));
        let named = addrs(&[&format!("/dns4/provider.example/tcp/4001/p2p/{peer}")]);
        assert_eq!(p2p_endpoints(&named, &[], &[], peer).unwrap(), named, "its own peer id is kept once");
    }

    #[test]
    fn a_public_multiaddr_naming_another_peer_or_too_many_endpoints_are_refused() {
        let me = lilypad_p2p::Keypair::generate_ed25519().public().to_peer_id();
        let other = lilypad_p2p::Keypair::generate_ed25519().public().to_peer_id();
        let err = p2p_endpoints(&addrs(&[&format!("/ip4/10.0.0.3/tcp/4001/p2p/{other}")]), &[], &[], me).unwrap_err().to_string();
        assert!(err.contains(&other.to_string()) && err.contains("leave the /p2p/ part out") && err.contains("--public-p2p"), "{err}");
        let five: Vec<String> = (0..3).map(|i| format!("http://10.0.0.{i}:8090")).chain((0..2).map(|i| format!("/ip4/10.0.0.{i}/tcp/4001/p2p/{me}"))).collect();
        let err = check_endpoints(&five).unwrap_err().to_string();
        assert!(err.contains("at most 4") && err.contains("URLs and multiaddrs together"), "{err}");
    }
}
