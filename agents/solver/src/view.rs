//! What the solver knows of providers and mediators, rebuilt from the market's events.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use alloy::primitives::{Address, B256, U256};
use lilypad_bindings::Resources;
use lilypad_chain::{MarketEvent, MarketLog};
use serde::{Deserialize, Serialize};

pub const ROLE_SOLVER: u8 = 1;
pub const ROLE_PROVIDER: u8 = 2;
pub const ROLE_MEDIATOR: u8 = 4;

/// A resource provider as the market's events describe it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProviderInfo {
    pub roles: u8,
    /// Mediators it accepts (bit i = mediator i).
    pub mediators: u64,
    /// Price per module id; `B256::ZERO` is the "any module that fits" offer.
    pub offers: BTreeMap<B256, u128>,
    pub resources: Option<ResourcesView>,
    /// Jobs matched to it and not finished yet (the solver derives this from its job book).
    pub active_jobs: u32,
    /// Order in which providers first appeared (older first on ties).
    pub seen: u64,
    /// Modules whose images it announced it has at hand (`ModulesAnnounced`): matching a job
    /// of one of them to it needs no download or build first.
    #[serde(default)]
    pub ready: BTreeSet<B256>,
}

/// Resources as plain numbers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourcesView {
    pub cpu_milli: u32,
    pub ram_mb: u32,
    pub disk_mb: u32,
    pub vram_mb: u32,
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

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MediatorInfo {
    pub account: Address,
    pub active: bool,
    pub suspended: bool,
}

/// Providers, mediators and module requirements, kept in step with the market.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MarketView {
    pub providers: HashMap<Address, ProviderInfo>,
    pub mediators: Vec<MediatorInfo>,
    pub requirements: HashMap<B256, ResourcesView>,
    pub(crate) next_seen: u64,
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
            E::RolesChanged(e) if e.roles & ROLE_PROVIDER != 0 || self.providers.contains_key(&e.account) => {
                self.provider(e.account).roles = e.roles;
            }
            E::ProviderMediatorsSet(e) => self.provider(e.provider).mediators = e.mediators,
            E::OfferSet(e) => {
                let p = self.provider(e.provider);
                if e.active {
                    p.offers.insert(e.moduleId, e.price);
                } else {
                    p.offers.remove(&e.moduleId);
                }
            }
            E::ResourcesSet(e) => self.provider(e.provider).resources = Some((&e.resources).into()),
            E::ModulesAnnounced(e) => {
                let p = self.provider(e.provider);
                for id in &e.moduleIds {
                    if e.ready {
                        p.ready.insert(*id);
                    } else {
                        p.ready.remove(id);
                    }
                }
            }
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
            }
            _ => {}
        }
    }
}

/// Helper for the U256 ids the market uses.
pub fn id_u64(id: U256) -> u64 {
    u64::try_from(id).unwrap_or(u64::MAX)
}
