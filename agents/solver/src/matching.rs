//! The matching decision for one job: which provider, at which price, with which mediator.
//! Pure, so it can be tested and benchmarked without a chain.

use alloy::primitives::{aliases::U40, Address, B256};
use lilypad_bindings::Job;

use crate::view::{MarketView, ROLE_PROVIDER};

/// The market's fixed parameters that a match depends on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Terms {
    pub solver_fee_bps: u64,
    pub collateral_bps: u64,
    pub mediator_fee: u128,
}

impl Terms {
    pub fn fee(&self, price: u128) -> u128 {
        price.saturating_mul(u128::from(self.solver_fee_bps)) / 10_000
    }

    pub fn collateral(&self, price: u128) -> u128 {
        (price.saturating_mul(u128::from(self.collateral_bps)) / 10_000).max(self.mediator_fee)
    }
}

/// A valid match.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Choice {
    pub provider: Address,
    pub mediator: u8,
    pub price: u128,
}

/// Why a job cannot be matched now (the solver logs it and tries again on the next change).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NoMatch {
    #[error("its match deadline passed at {deadline}; anyone may now expire it for a refund")]
    DeadlinePassed { deadline: u64 },
    #[error("no registered provider offers module {module_id} (nor resources that fit it)")]
    NoOffer { module_id: B256 },
    #[error("every offer is above the job's payment of {payment}: the cheapest costs {cheapest} with the solver fee")]
    AboveCap { cheapest: u128, payment: u128 },
    #[error("no mediator is accepted by both the job and an affordable provider")]
    NoCommonMediator,
    #[error("the affordable providers lack free collateral (at least {needed} needed)")]
    NoCollateral { needed: u128 },
    #[error("the affordable providers are all busy ({max_active} jobs each)")]
    AtCapacity { max_active: u32 },
}

/// Picks the cheapest valid provider for `job`; ties go to the least busy, then the longest
/// registered. `balance` gives a provider's free balance in the market when known.
pub fn choose(
    job: &Job,
    view: &MarketView,
    terms: &Terms,
    now: u64,
    max_active: u32,
    balance: impl Fn(Address) -> Option<u128>,
) -> Result<Choice, NoMatch> {
    choose_excluding(job, view, terms, now, max_active, balance, &[])
}

/// [`choose`], never picking a provider in `exclude` (e.g. ones that gave this job back:
/// matching it to them again would only have them release it again).
pub fn choose_excluding(
    job: &Job,
    view: &MarketView,
    terms: &Terms,
    now: u64,
    max_active: u32,
    balance: impl Fn(Address) -> Option<u128>,
    exclude: &[Address],
) -> Result<Choice, NoMatch> {
    let deadline = u40(job.createdAt).saturating_add(u64::from(job.matchTimeout));
    if now > deadline {
        return Err(NoMatch::DeadlinePassed { deadline });
    }
    let usable = view.usable_mediators() & job.mediators;
    let requirements = view.requirements.get(&job.moduleId);
    let mut best: Option<((bool, u128, u32, u64), Choice)> = None;
    let mut worst_reason: Option<NoMatch> = None;
    let mut cheapest: Option<u128> = None;
    let mut any_offer = false;
    for (&address, p) in &view.providers {
        if p.roles & ROLE_PROVIDER == 0 || exclude.contains(&address) {
            continue;
        }
        let price = match p.offers.get(&job.moduleId) {
            Some(&price) => price,
            None => match (p.offers.get(&B256::ZERO), requirements, p.resources) {
                (Some(&price), Some(need), Some(have)) if need.fits_in(&have) => price,
                _ => continue,
            },
        };
        any_offer = true;
        let total = price.saturating_add(terms.fee(price));
        cheapest = Some(cheapest.map_or(total, |c| c.min(total)));
        if total > job.payment {
            continue;
        }
        let common = usable & p.mediators;
        if common == 0 {
            worst_reason.get_or_insert(NoMatch::NoCommonMediator);
            continue;
        }
        if p.active_jobs >= max_active {
            worst_reason = Some(NoMatch::AtCapacity { max_active });
            continue;
        }
        let needed = terms.collateral(price);
        if balance(address).is_some_and(|b| b < needed) {
            worst_reason = Some(NoMatch::NoCollateral { needed });
            continue;
        }
        let mediator = common.trailing_zeros() as u8;
        // Providers that have the module's image at hand first (the job starts without a
        // download or build), then the cheapest, then the least busy, then the oldest.
        let key = (!p.ready.contains(&job.moduleId), price, p.active_jobs, p.seen);
        if best.as_ref().is_none_or(|(bk, _)| key < *bk) {
            best = Some((key, Choice { provider: address, mediator, price }));
        }
    }
    if let Some((_, choice)) = best {
        return Ok(choice);
    }
    if !any_offer {
        return Err(NoMatch::NoOffer { module_id: job.moduleId });
    }
    if let Some(reason) = worst_reason {
        return Err(reason);
    }
    Err(NoMatch::AboveCap { cheapest: cheapest.unwrap_or(0), payment: job.payment })
}

fn u40(v: U40) -> u64 {
    u64::try_from(v).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::view::{MediatorInfo, ProviderInfo, ResourcesView};
    use alloy::primitives::address;

    const LP: u128 = 1_000_000_000_000_000_000;
    const TERMS: Terms = Terms { solver_fee_bps: 500, collateral_bps: 20_000, mediator_fee: LP };

    fn module() -> B256 {
        B256::repeat_byte(7)
    }

    fn job(payment: u128) -> Job {
        let mut j: Job = lilypad_bindings::Job::default();
        j.moduleId = module();
        j.payment = payment;
        j.mediators = u64::MAX;
        j.createdAt = U40::from(1000u64);
        j.matchTimeout = 100;
        j
    }

    fn provider(price: u128, seen: u64) -> ProviderInfo {
        ProviderInfo {
            roles: ROLE_PROVIDER,
            mediators: 1,
            offers: [(module(), price)].into_iter().collect(),
            seen,
            ..Default::default()
        }
    }

    fn view(providers: Vec<(Address, ProviderInfo)>) -> MarketView {
        MarketView {
            providers: providers.into_iter().collect(),
            mediators: vec![MediatorInfo { account: Address::ZERO, active: true, suspended: false }],
            ..Default::default()
        }
    }

    const A: Address = address!("00000000000000000000000000000000000000aa");
    const B: Address = address!("00000000000000000000000000000000000000bb");

    #[test]
    fn picks_the_cheapest_affordable_provider() {
        let v = view(vec![(A, provider(5 * LP, 1)), (B, provider(4 * LP, 2))]);
        let c = choose(&job(10 * LP), &v, &TERMS, 1000, 4, |_| None).unwrap();
        assert_eq!(c, Choice { provider: B, mediator: 0, price: 4 * LP });
    }

    #[test]
    fn ties_go_to_the_least_busy_then_the_oldest() {
        let mut busy = provider(5 * LP, 1);
        busy.active_jobs = 2;
        let v = view(vec![(A, busy), (B, provider(5 * LP, 2))]);
        assert_eq!(choose(&job(10 * LP), &v, &TERMS, 1000, 4, |_| None).unwrap().provider, B);
        let v = view(vec![(A, provider(5 * LP, 1)), (B, provider(5 * LP, 2))]);
        assert_eq!(choose(&job(10 * LP), &v, &TERMS, 1000, 4, |_| None).unwrap().provider, A);
    }

    #[test]
    fn prefers_a_provider_with_the_image_ready_within_the_cap() {
        let mut ready = provider(5 * LP, 2);
        ready.ready.insert(module());
        let v = view(vec![(A, provider(4 * LP, 1)), (B, ready.clone())]);
        assert_eq!(choose(&job(10 * LP), &v, &TERMS, 1000, 4, |_| None).unwrap().provider, B, "ready beats cheaper");
        // Readiness for another module does not count.
        let mut other = provider(5 * LP, 2);
        other.ready.insert(B256::repeat_byte(9));
        let v = view(vec![(A, provider(4 * LP, 1)), (B, other)]);
        assert_eq!(choose(&job(10 * LP), &v, &TERMS, 1000, 4, |_| None).unwrap().provider, A);
        // A ready provider above the job's cap is still not chosen.
        let mut dear = provider(20 * LP, 2);
        dear.ready.insert(module());
        let v = view(vec![(A, provider(4 * LP, 1)), (B, dear)]);
        assert_eq!(choose(&job(10 * LP), &v, &TERMS, 1000, 4, |_| None).unwrap().provider, A);
    }

    #[test]
    fn a_provider_that_gave_the_job_back_is_not_chosen_again() {
        let v = view(vec![(A, provider(4 * LP, 1)), (B, provider(5 * LP, 2))]);
        let c = choose_excluding(&job(10 * LP), &v, &TERMS, 1000, 4, |_| None, &[A]).unwrap();
        assert_eq!(c.provider, B);
        let e = choose_excluding(&job(10 * LP), &v, &TERMS, 1000, 4, |_| None, &[A, B]).unwrap_err();
        assert_eq!(e, NoMatch::NoOffer { module_id: module() });
    }

    #[test]
    fn says_why_it_cannot_match() {
        let v = view(vec![(A, provider(10 * LP, 1))]);
        // 10 LP + 5 % fee > 10 LP
        assert_eq!(
            choose(&job(10 * LP), &v, &TERMS, 1000, 4, |_| None),
            Err(NoMatch::AboveCap { cheapest: 10 * LP + LP / 2, payment: 10 * LP })
        );
        assert_eq!(choose(&job(20 * LP), &view(vec![]), &TERMS, 1000, 4, |_| None), Err(NoMatch::NoOffer { module_id: module() }));
        assert_eq!(choose(&job(20 * LP), &v, &TERMS, 1101, 4, |_| None), Err(NoMatch::DeadlinePassed { deadline: 1100 }));
        assert_eq!(
            choose(&job(20 * LP), &v, &TERMS, 1000, 4, |_| Some(LP)),
            Err(NoMatch::NoCollateral { needed: 20 * LP })
        );
        let mut full = provider(LP, 1);
        full.active_jobs = 4;
        assert_eq!(choose(&job(20 * LP), &view(vec![(A, full)]), &TERMS, 1000, 4, |_| None), Err(NoMatch::AtCapacity { max_active: 4 }));
        let mut picky = provider(LP, 1);
        picky.mediators = 2; // only mediator 1, which does not exist
        assert_eq!(choose(&job(20 * LP), &view(vec![(A, picky)]), &TERMS, 1000, 4, |_| None), Err(NoMatch::NoCommonMediator));
    }

    #[test]
    fn a_resources_offer_matches_modules_that_fit() {
        let mut p = provider(LP, 1);
        p.offers = [(B256::ZERO, 2 * LP)].into_iter().collect();
        p.resources = Some(ResourcesView { cpu_milli: 2000, ram_mb: 1024, disk_mb: 100, vram_mb: 0, gpus: 0 });
        let mut v = view(vec![(A, p)]);
        v.requirements.insert(module(), ResourcesView { cpu_milli: 1000, ram_mb: 512, ..Default::default() });
        assert_eq!(choose(&job(10 * LP), &v, &TERMS, 1000, 4, |_| None).unwrap().price, 2 * LP);
        v.requirements.insert(module(), ResourcesView { gpus: 1, vram_mb: 8000, ..Default::default() });
        assert_eq!(choose(&job(10 * LP), &v, &TERMS, 1000, 4, |_| None), Err(NoMatch::NoOffer { module_id: module() }));
    }

    #[test]
    fn suspended_mediators_are_not_chosen() {
        let mut v = view(vec![(A, provider(LP, 1))]);
        v.mediators[0].suspended = true;
        assert_eq!(choose(&job(10 * LP), &v, &TERMS, 1000, 4, |_| None), Err(NoMatch::NoCommonMediator));
    }
}
