//! The public market, rebuilt from its events: providers (roles, offers, resources, modules at
//! hand), mediators and module requirements. The solver matches jobs against it; the web2
//! gateway's `/modules` lists the offers it holds. One implementation, one set of rules: what a
//! `RolesChanged`, `OfferSet` or `MediatorRegistered` means is decided here only.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use alloy::primitives::{Address, B256};
use lilypad_bindings::Resources;
use serde::{Deserialize, Serialize};

use crate::engines::EngineSet;
use crate::events::{MarketEvent, MarketLog};
use crate::Roles;

/// A resource provider as the market's events describe it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProviderInfo {
    /// Its roles (a provider that left, `registerProvider` undone, keeps its entry).
    pub roles: Roles,
    /// Mediators it accepts (bit i = mediator i).
    pub mediators: u64,
    /// Offer per module id (price and terms); `B256::ZERO` is the "any module that fits" offer.
    pub offers: BTreeMap<B256, OfferView>,
    /// The resources it declared (`setResources`), if any.
    pub resources: Option<ResourcesView>,
    /// Jobs matched to it and not finished yet (the solver derives this from its job book).
    pub active_jobs: u32,
    /// Order in which providers first appeared (older first on ties).
    pub seen: u64,
    /// Modules whose images it announced it has at hand (`ModulesAnnounced`): matching a job
    /// of one of them to it needs no download or build first.
    #[serde(default)]
    pub ready: BTreeSet<B256>,
    /// Where it serves its outputs, as it last announced (`EndpointsAnnounced`): IPFS
    /// trustless gateways (`<url>/ipfs/<cid>`). Untrusted: whatever is fetched from them is
    /// verified against its CID.
    #[serde(default)]
    pub endpoints: Vec<String>,
    /// How many jobs it runs at once, as it last announced ([`crate::capacity`]).
    #[serde(default)]
    pub concurrency: Option<u32>,
}

impl ProviderInfo {
    /// The most unfinished jobs to give it: [`crate::capacity::job_limit`] of what it
    /// announced, `default` when it announced nothing.
    pub fn job_limit(&self, default: u32) -> u32 {
        crate::capacity::job_limit(self.concurrency, default)
    }

    /// The engines it runs, as it announced them (Docker alone if it never did; see
    /// [`crate::engines`]).
    pub fn engines(&self) -> EngineSet {
        EngineSet::from_announced(&self.ready)
    }
}

/// A provider's standing offer: its price and the terms under which it puts up collateral. The
/// market matches a job to it only when the job's run window and callback gas are within them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OfferView {
    /// Price per job, in token base units.
    pub price: u128,
    /// The shortest run window (seconds from the match) it accepts.
    pub min_run_timeout: u32,
    /// The longest run window it accepts.
    pub max_run_timeout: u32,
    /// The most gas it forwards to a client's callback when settling.
    pub max_callback_gas: u32,
}

impl OfferView {
    /// An offer at `price` that accepts every run window and callback (for tests and views
    /// built by hand).
    pub fn any_terms(price: u128) -> Self {
        Self { price, min_run_timeout: 0, max_run_timeout: u32::MAX, max_callback_gas: u32::MAX }
    }

    /// Whether a job with this run timeout and callback gas is within the offer's terms (the
    /// same rule as the market's `matchJob`).
    pub fn accepts(&self, run_timeout: u32, callback_gas: u32) -> bool {
        (self.min_run_timeout..=self.max_run_timeout).contains(&run_timeout) && callback_gas <= self.max_callback_gas
    }
}

/// Resources as plain numbers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourcesView {
    /// CPU, in thousandths of a core.
    pub cpu_milli: u32,
    /// Memory, in MiB.
    pub ram_mb: u32,
    /// Disk, in MB.
    pub disk_mb: u32,
    /// GPU memory, in MiB.
    pub vram_mb: u32,
    /// GPUs.
    pub gpus: u8,
}

impl From<&Resources> for ResourcesView {
    fn from(r: &Resources) -> Self {
        Self { cpu_milli: r.cpuMilli, ram_mb: r.ramMb, disk_mb: r.diskMb, vram_mb: r.vramMb, gpus: r.gpus }
    }
}

impl ResourcesView {
    /// Whether `have` covers `self` (the same rule as the market's).
    pub fn fits_in(&self, have: &ResourcesView) -> bool {
        self.cpu_milli <= have.cpu_milli
            && self.ram_mb <= have.ram_mb
            && self.disk_mb <= have.disk_mb
            && self.gpus <= have.gpus
            && (self.gpus == 0 || self.vram_mb <= have.vram_mb)
    }
}

/// A mediator slot of the market.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MediatorInfo {
    /// The mediator's account.
    pub account: Address,
    /// Whether it is registered and not retired.
    pub active: bool,
    /// Whether the owner suspended it.
    pub suspended: bool,
}

/// A hash map for the view's lookups on the solver's hot path (every offer it weighs for every
/// job): foldhash, seeded at random per map, instead of the standard library's SipHash, which
/// was a quarter of a matching decision's time. Keys are addresses and module ids that cost
/// gas to create, and the seed is not known outside the process.
pub type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// Providers, mediators and module requirements, kept in step with the market.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MarketView {
    /// Every account that was ever a provider or set an offer, resources or mediators.
    pub providers: FastMap<Address, ProviderInfo>,
    /// Mediator slots, by index.
    pub mediators: Vec<MediatorInfo>,
    /// Resources each published module needs.
    pub requirements: FastMap<B256, ResourcesView>,
    /// The engine each published module needs (from its `ModuleSpec.flags`).
    #[serde(default)]
    pub engines: FastMap<B256, EngineSet>,
    next_seen: u64,
}

impl MarketView {
    /// Bitmask of the mediators that may be chosen now.
    pub fn usable_mediators(&self) -> u64 {
        self.mediators
            .iter()
            .enumerate()
            .filter(|(_, m)| m.active && !m.suspended)
            .fold(0u64, |mask, (i, _)| mask | (1u64 << i))
    }

    /// Bitmask of the mediator slots held by any of `accounts`: the market refuses a mediator
    /// that is a party of the job (payee, client, solver, provider).
    pub fn mediators_held_by(&self, accounts: &[Address]) -> u64 {
        self.mediators
            .iter()
            .enumerate()
            .filter(|(_, m)| accounts.contains(&m.account))
            .fold(0u64, |mask, (i, _)| mask | (1u64 << i))
    }

    fn provider(&mut self, a: Address) -> &mut ProviderInfo {
        let seen = &mut self.next_seen;
        self.providers.entry(a).or_insert_with(|| {
            *seen += 1;
            ProviderInfo { seen: *seen, ..Default::default() }
        })
    }

    /// Applies one market event.
    pub fn apply(&mut self, log: &MarketLog) {
        use MarketEvent as E;
        match &log.event {
            E::RolesChanged(e) if Roles::from_bits(e.roles).contains(Roles::PROVIDER) || self.providers.contains_key(&e.account) => {
                self.provider(e.account).roles = Roles::from_bits(e.roles);
            }
            E::ProviderMediatorsSet(e) => self.provider(e.provider).mediators = e.mediators,
            E::OfferSet(e) => {
                let p = self.provider(e.provider);
                if e.active {
                    let offer = OfferView {
                        price: e.price,
                        min_run_timeout: e.minRunTimeout,
                        max_run_timeout: e.maxRunTimeout,
                        max_callback_gas: e.maxCallbackGas,
                    };
                    p.offers.insert(e.moduleId, offer);
                } else {
                    p.offers.remove(&e.moduleId);
                }
            }
            E::ResourcesSet(e) => self.provider(e.provider).resources = Some((&e.resources).into()),
            E::ModulesAnnounced(e) => {
                let p = self.provider(e.provider);
                for id in &e.moduleIds {
                    if let Some(n) = crate::capacity::announced_concurrency(id) {
                        if e.ready {
                            p.concurrency = Some(n);
                        }
                    } else if e.ready {
                        p.ready.insert(*id);
                    } else {
                        p.ready.remove(id);
                    }
                }
            }
            E::EndpointsAnnounced(e) => self.provider(e.provider).endpoints = e.endpoints.clone(),
            E::MediatorRegistered(e) => {
                let i = usize::from(e.index);
                if self.mediators.len() <= i {
                    self.mediators.resize(i + 1, MediatorInfo::default());
                }
                self.mediators[i] = MediatorInfo { account: e.mediator, active: true, suspended: false };
            }
            E::MediatorActiveSet(e) => {
                if let Some(m) = self.mediators.get_mut(usize::from(e.index)) {
                    m.active = e.active;
                }
            }
            E::MediatorSuspended(e) => {
                if let Some(m) = self.mediators.get_mut(usize::from(e.index)) {
                    m.suspended = e.suspended;
                }
            }
            E::ModulePublished(e) => {
                self.requirements.insert(e.moduleId, (&e.spec.requirements).into());
                self.engines.insert(e.moduleId, EngineSet::of_module(e.spec.flags));
            }
            _ => {}
        }
    }
}

impl MarketView {
    /// The engine module `module_id` needs: Docker unless it was published as WebAssembly.
    pub fn engine_of(&self, module_id: &B256) -> EngineSet {
        self.engines.get(module_id).copied().unwrap_or(EngineSet::DOCKER)
    }

    /// The standing offers for `module_id` (not the "any module that fits" ones), as
    /// `(provider, price)`, by provider address.
    pub fn offers_for(&self, module_id: B256) -> Vec<(Address, u128)> {
        let mut out: Vec<(Address, u128)> =
            self.providers.iter().filter_map(|(a, p)| p.offers.get(&module_id).map(|o| (*a, o.price))).collect();
        out.sort();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lilypad_bindings::LilypadMarket;

    fn log(event: MarketEvent) -> MarketLog {
        MarketLog { block: 1, tx: B256::ZERO, log_index: 0, event }
    }

    #[test]
    fn offers_follow_their_events_and_withdrawn_ones_are_gone() {
        let (a, b, module) = (Address::repeat_byte(0xa), Address::repeat_byte(0xb), B256::repeat_byte(7));
        let mut view = MarketView::default();
        let offer = |provider, price, active| {
            log(MarketEvent::OfferSet(LilypadMarket::OfferSet {
                provider,
                moduleId: module,
                price,
                active,
                minRunTimeout: 10,
                maxRunTimeout: 600,
                maxCallbackGas: 100_000,
            }))
        };
        view.apply(&offer(b, 5, true));
        view.apply(&offer(a, 3, true));
        assert_eq!(view.offers_for(module), vec![(a, 3), (b, 5)]);
        view.apply(&offer(b, 5, false));
        assert_eq!(view.offers_for(module), vec![(a, 3)]);
        assert!(view.offers_for(B256::ZERO).is_empty());
        let terms = view.providers[&a].offers[&module];
        assert!(terms.accepts(10, 100_000) && terms.accepts(600, 0));
        assert!(!terms.accepts(9, 0), "a run window under the offer's minimum");
        assert!(!terms.accepts(601, 0), "a run window over the offer's maximum");
        assert!(!terms.accepts(60, 100_001), "more callback gas than offered");
        view.apply(&log(MarketEvent::RolesChanged(LilypadMarket::RolesChanged { account: a, roles: 2 })));
        assert!(view.providers[&a].roles.contains(Roles::PROVIDER));
        assert_eq!(view.providers[&b].seen, 1, "first seen first");
    }

    #[test]
    fn mediator_slots_held_by_parties_are_known() {
        let (m0, m1) = (Address::repeat_byte(0x10), Address::repeat_byte(0x11));
        let mut view = MarketView::default();
        for (i, m) in [m0, m1].into_iter().enumerate() {
            view.apply(&log(MarketEvent::MediatorRegistered(LilypadMarket::MediatorRegistered { mediator: m, index: i as u8 })));
        }
        assert_eq!(view.mediators_held_by(&[m1]), 0b10);
        assert_eq!(view.mediators_held_by(&[Address::repeat_byte(0x12), m0]), 0b01);
        assert_eq!(view.mediators_held_by(&[]), 0);
    }
}
