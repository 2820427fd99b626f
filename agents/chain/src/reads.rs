//! Typed reads of the market and the token: one method per question an agent asks the chain,
//! each retrying transient failures and saying in its error what it was reading.

use alloy::primitives::{aliases::U40, Address, B256, U256};
use lilypad_bindings::ModuleSpec;

use crate::{ChainClient, ChainError, Roles};

/// A module version as the market's directory holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublishedModule {
    /// Its id (`keccak256(name, version)`, see `lilypad_module::module_id`).
    pub id: B256,
    /// The spec the market pins: spec hash, image hash, default payment, run timeout, flags
    /// and requirements.
    pub spec: ModuleSpec,
    /// Unix time of its publication.
    pub published_at: u64,
}

/// An account of the market: its free balance, roles, accepted mediators and mediator slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Account {
    /// Free (unlocked) balance in the market, in token base units.
    pub balance: u128,
    /// The mediators a provider accepts (bit i = mediator i).
    pub mediators: u64,
    /// The roles it holds.
    pub roles: Roles,
    /// Its mediator slot as the contract stores it: 0 for none, else its index + 1.
    pub mediator_slot: u8,
}

impl Account {
    /// Its index among the mediators, if it ever registered as one.
    pub fn mediator_index(&self) -> Option<u8> {
        self.mediator_slot.checked_sub(1)
    }
}

/// A provider's offer for one module (`B256::ZERO`: any module that fits its resources).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Offer {
    /// Price per job, in token base units.
    pub price: u128,
    /// Whether the offer stands.
    pub active: bool,
    /// The shortest run window (seconds) it accepts.
    pub min_run_timeout: u32,
    /// The longest run window it accepts.
    pub max_run_timeout: u32,
    /// The most gas it forwards to a client's callback.
    pub max_callback_gas: u32,
}

impl ChainClient {
    /// The module `module_id` as the market's directory publishes it, or `None` when it is not
    /// published on this chain.
    pub async fn published_module(&self, module_id: B256) -> Result<Option<PublishedModule>, ChainError> {
        let market = self.market();
        let action = format!("reading module {module_id} from the module directory");
        let r = self.read(&action, || async { market.getModule(module_id).call().await }).await?;
        if r.publishedAt == U40::ZERO {
            return Ok(None);
        }
        Ok(Some(PublishedModule { id: module_id, spec: r.spec, published_at: u64::try_from(r.publishedAt).unwrap_or(u64::MAX) }))
    }

    /// The market account of `who` (all zero for an address the market never saw).
    pub async fn account(&self, who: Address) -> Result<Account, ChainError> {
        let market = self.market();
        let a = self.read(&format!("reading the market account of {who}"), || async { market.accountOf(who).call().await }).await?;
        Ok(Account { balance: a.balance, mediators: a.mediators, roles: Roles::from_bits(a.roles), mediator_slot: a.mediatorSlot })
    }

    /// The offer of `provider` for `module_id` (`B256::ZERO`: its "any module that fits" offer).
    pub async fn offer(&self, provider: Address, module_id: B256) -> Result<Offer, ChainError> {
        let market = self.market();
        let action = format!("reading the offer of {provider} for module {module_id}");
        let o = self.read(&action, || async { market.offerOf(provider, module_id).call().await }).await?;
        Ok(Offer {
            price: o.price,
            active: o.active,
            min_run_timeout: o.minRunTimeout,
            max_run_timeout: o.maxRunTimeout,
            max_callback_gas: o.maxCallbackGas,
        })
    }

    /// The mediators jobs and providers accept when they name none (the owner's default set).
    pub async fn default_mediators(&self) -> Result<u64, ChainError> {
        let market = self.market();
        self.read("reading the market's default mediators", || async { market.defaultMediators().call().await }).await
    }

    /// How many mediator slots are taken (slot i is bit i of every mediator bitmask).
    pub async fn mediator_count(&self) -> Result<u64, ChainError> {
        let market = self.market();
        let n = self.read("reading the number of mediators", || async { market.mediatorCount().call().await }).await?;
        Ok(u64::try_from(n).unwrap_or(u64::MAX))
    }

    /// The free balance of `who` held in the market (not locked as collateral), in token base
    /// units.
    pub async fn market_balance(&self, who: Address) -> Result<U256, ChainError> {
        let market = self.market();
        self.read(&format!("reading the market balance of {who}"), || async { market.balanceOf(who).call().await }).await
    }

    /// The tokens `who` holds (outside the market), in base units.
    pub async fn token_balance(&self, who: Address) -> Result<U256, ChainError> {
        let token = self.token();
        self.read(&format!("reading the token balance of {who}"), || async { token.balanceOf(who).call().await }).await
    }

    /// How many of `owner`'s tokens the market may take (its ERC-20 allowance to the market).
    pub async fn market_allowance(&self, owner: Address) -> Result<U256, ChainError> {
        let token = self.token();
        let market = self.deployment().market;
        self.read(&format!("reading the allowance of {owner} to the market"), || async { token.allowance(owner, market).call().await }).await
    }

    /// The hash the market holds for job `id` (zero once the job is final or never existed).
    pub async fn job_hash(&self, id: U256) -> Result<B256, ChainError> {
        let market = self.market();
        self.read(&format!("reading the hash of job {id}"), || async { market.jobHash(id).call().await }).await
    }

    /// Where `provider` last announced it serves its outputs (`announceEndpoints`), newest
    /// first found by scanning the market's logs backwards from the head in windows of
    /// [`ENDPOINT_SCAN_WINDOW`] blocks down to the deployment's start block, at most
    /// [`ENDPOINT_SCAN_DEPTH`] blocks deep (a bounded number of RPC calls, whatever the chain's
    /// age); empty when it announced none in that range (or withdrew them). A provider checks
    /// with this same call at start and announces again when it finds nothing. Untrusted URLs:
    /// fetch from them only with CID checks.
    pub async fn announced_endpoints(&self, provider: Address) -> Result<Vec<String>, ChainError> {
        use alloy::providers::Provider as _;
        use alloy::rpc::types::Filter;
        use alloy::sol_types::SolEvent as _;
        use lilypad_bindings::LilypadMarket::EndpointsAnnounced;

        let head = self.retrying("reading the block number", || self.provider().get_block_number()).await?;
        let start = self.deployment().start_block;
        let mut to = head;
        loop {
            let from = to.saturating_sub(ENDPOINT_SCAN_WINDOW - 1).max(start);
            let filter = Filter::new()
                .address(self.deployment().market)
                .event_signature(EndpointsAnnounced::SIGNATURE_HASH)
                .topic1(provider.into_word())
                .from_block(from)
                .to_block(to);
            let logs = self.retrying(&format!("reading the endpoints {provider} announced"), || self.provider().get_logs(&filter)).await?;
            let newest = logs.iter().rev().find_map(|log| EndpointsAnnounced::decode_raw_log(log.topics(), &log.data().data).ok());
            if let Some(event) = newest {
                return Ok(event.endpoints);
            }
            if from <= start || head - from >= ENDPOINT_SCAN_DEPTH {
                return Ok(Vec::new());
            }
            to = from - 1;
        }
    }
}

/// Blocks per `eth_getLogs` call when looking for a provider's endpoint announcement (within
/// what public RPC nodes accept).
pub const ENDPOINT_SCAN_WINDOW: u64 = 5_000;

/// How far back (in blocks) an endpoint announcement is looked for: 200 windows at most.
pub const ENDPOINT_SCAN_DEPTH: u64 = 1_000_000;
