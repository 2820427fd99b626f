//! The matching decision for one job: which provider, at which price, with which mediator.
//! Pure, so it can be tested and benchmarked without a chain.

use alloy::primitives::{aliases::U40, Address, B256};
use lilypad_bindings::Job;

use std::collections::HashMap;

use lilypad_chain::{EngineSet, MarketView, OfferView, ResourcesView, Roles};

/// What a match depends on besides the job and the market: the market's fixed parameters and
/// the solver making the match (the market refuses a mediator that is the solver itself, and a
/// job that names another solver).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Terms {
    /// The solver making the match.
    pub solver: Address,
    /// The solver's fee, in basis points of the price.
    pub solver_fee_bps: u64,
    /// The provider's collateral, in basis points of the price.
    pub collateral_bps: u64,
    /// The mediator's fee per challenge (the collateral is never below it).
    pub mediator_fee: u128,
}

impl Terms {
    /// The solver's fee on a job at `price`.
    pub fn fee(&self, price: u128) -> u128 {
        price.saturating_mul(u128::from(self.solver_fee_bps)) / 10_000
    }

    /// The collateral a provider locks for a job at `price`.
    pub fn collateral(&self, price: u128) -> u128 {
        (price.saturating_mul(u128::from(self.collateral_bps)) / 10_000).max(self.mediator_fee)
    }
}

/// A valid match.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Choice {
    /// The provider matched.
    pub provider: Address,
    /// The mediator index both accept.
    pub mediator: u8,
    /// The provider's price.
    pub price: u128,
}

/// Why a job cannot be matched now (the solver logs it and tries again on the next change).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NoMatch {
    /// The job names another solver (`Job.onlySolver`): only that one may match it.
    #[error("the job names solver {solver} as the only one that may match it")]
    OtherSolver {
        /// The solver the job names.
        solver: Address,
    },
    /// The job's match deadline passed.
    #[error("its match deadline passed at {deadline}; anyone may now expire it for a refund")]
    DeadlinePassed {
        /// The deadline, in unix seconds.
        deadline: u64,
    },
    /// No provider offers the module.
    #[error("no registered provider offers module {module_id} (nor resources that fit it)")]
    NoOffer {
        /// The module.
        module_id: B256,
    },
    /// The providers offering the module do not run its engine (e.g. a WebAssembly module and
    /// only Docker providers).
    #[error("no provider offering module {module_id} runs its engine ({engine})")]
    NoEngine {
        /// The module.
        module_id: B256,
        /// The engine it needs.
        engine: EngineSet,
    },
    /// Every offer costs more than the job pays.
    #[error("every offer is above the job's payment of {payment}: the cheapest costs {cheapest} with the solver fee")]
    AboveCap {
        /// The cheapest offer, with the solver fee.
        cheapest: u128,
        /// What the job pays.
        payment: u128,
    },
    /// The job's run window or callback gas is outside the terms of every offer for it: no
    /// provider has agreed to put up collateral on such terms.
    #[error("no offer accepts the job's terms (run timeout {run_timeout} s, callback gas {callback_gas}): providers state the run windows and callback gas they accept")]
    TermsNotOffered {
        /// The job's run timeout, in seconds.
        run_timeout: u32,
        /// The job's callback gas.
        callback_gas: u32,
    },
    /// No affordable provider accepts one of the job's mediators (a mediator that is a party
    /// of the job, its payee, client, solver or provider, never counts).
    #[error("no mediator is accepted by both the job and an affordable provider (and is none of the job's parties)")]
    NoCommonMediator,
    /// The affordable providers lack free collateral.
    #[error("the affordable providers lack free collateral (at least {needed} needed)")]
    NoCollateral {
        /// The collateral the job needs.
        needed: u128,
    },
    /// Every provider that offers the module (and runs its engine) has given this job back
    /// (each release excludes that provider from the job until its match deadline).
    #[error("every provider offering module {module_id} has given this job back ({providers} of them); it waits for another, or its match deadline")]
    GivenBack {
        /// The module.
        module_id: B256,
        /// How many providers gave it back.
        providers: usize,
    },
    /// The affordable providers are all at their job limit.
    #[error("the affordable providers are all busy ({max_active} jobs each)")]
    AtCapacity {
        /// The limit of unfinished jobs of the last busy provider looked at (twice the
        /// concurrency it announced, or the solver's default).
        max_active: u32,
    },
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
    let Open { usable, requirements } = still_open(job, view, terms, now)?;
    let mut best: Option<((u128, bool, u32, u64), Choice)> = None;
    let mut worst_reason: Option<NoMatch> = None;
    let mut cheapest: Option<u128> = None;
    let mut any_offer = false;
    let needs = view.engine_of(&job.moduleId);
    let mut lacks_engine = false;
    let mut given_back = false;
    for (&address, p) in &view.providers {
        if !p.roles.contains(Roles::PROVIDER) {
            continue;
        }
        if exclude.contains(&address) {
            given_back = true;
            continue;
        }
        // a named offer governs the module; the "any module that fits" one only without it
        let offer = match p.offers.get(&job.moduleId) {
            Some(offer) => offer,
            None => match (p.offers.get(&B256::ZERO), requirements, p.resources) {
                (Some(offer), Some(need), Some(have)) if need.fits_in(&have) => offer,
                _ => continue,
            },
        };
        if !p.engines().contains(needs) {
            lacks_engine = true;
            continue;
        }
        any_offer = true;
        if !offer.accepts(job.runTimeout, job.callbackGas) {
            worst_reason.get_or_insert(NoMatch::TermsNotOffered { run_timeout: job.runTimeout, callback_gas: job.callbackGas });
            continue;
        }
        let price = offer.price;
        let total = price.saturating_add(terms.fee(price));
        cheapest = Some(cheapest.map_or(total, |c| c.min(total)));
        if total > job.payment {
            continue;
        }
        let common = usable & p.mediators & !view.mediators_held_by(&[address]);
        if common == 0 {
            worst_reason.get_or_insert(NoMatch::NoCommonMediator);
            continue;
        }
        if p.active_jobs >= p.job_limit(max_active) {
            worst_reason = Some(NoMatch::AtCapacity { max_active: p.job_limit(max_active) });
            continue;
        }
        let needed = terms.collateral(price);
        if balance(address).is_some_and(|b| b < needed) {
            worst_reason = Some(NoMatch::NoCollateral { needed });
            continue;
        }
        let mediator = common.trailing_zeros() as u8;
        // The cheapest; on a tie one that has the module's image at hand (the job starts
        // without a download or build), then the least busy, then the oldest.
        let key = (price, !p.ready.contains(&job.moduleId), p.active_jobs, p.seen);
        if best.as_ref().is_none_or(|(bk, _)| key < *bk) {
            best = Some((key, Choice { provider: address, mediator, price }));
        }
    }
    if let Some((_, choice)) = best {
        return Ok(choice);
    }
    // the others cannot run its engine: that is why no one else takes it
    if !any_offer && lacks_engine {
        return Err(NoMatch::NoEngine { module_id: job.moduleId, engine: needs });
    }
    if !any_offer && given_back {
        return Err(NoMatch::GivenBack { module_id: job.moduleId, providers: exclude.len() });
    }
    if !any_offer {
        return Err(NoMatch::NoOffer { module_id: job.moduleId });
    }
    if let Some(reason) = worst_reason {
        return Err(reason);
    }
    Err(NoMatch::AboveCap { cheapest: cheapest.unwrap_or(0), payment: job.payment })
}

/// Offers indexed for matching: per module id, the providers offering it sorted by (price,
/// seen), and the "any module that fits" offers sorted the same way. Built from a
/// [`MarketView`]; rebuild it when offers, resources or roles change (busy counts and balances
/// are read live from the view, so they need no rebuild).
#[derive(Clone, Debug, Default)]
pub struct OfferIndex {
    by_module: HashMap<B256, Vec<Entry>>,
    any: Vec<AnyEntry>,
}

#[derive(Clone, Copy, Debug)]
struct Entry {
    price: u128,
    seen: u64,
    provider: Address,
    offer: OfferView,
}

#[derive(Clone, Copy, Debug)]
struct AnyEntry {
    entry: Entry,
    resources: ResourcesView,
}

impl OfferIndex {
    /// Indexes the offers of `view` by module.
    pub fn build(view: &MarketView) -> Self {
        let mut by_module: HashMap<B256, Vec<Entry>> = HashMap::new();
        let mut any = Vec::new();
        for (&provider, p) in &view.providers {
            if !p.roles.contains(Roles::PROVIDER) {
                continue;
            }
            for (&module_id, &offer) in &p.offers {
                let entry = Entry { price: offer.price, seen: p.seen, provider, offer };
                if module_id == B256::ZERO {
                    if let Some(resources) = p.resources {
                        any.push(AnyEntry { entry, resources });
                    }
                } else {
                    by_module.entry(module_id).or_default().push(entry);
                }
            }
        }
        for list in by_module.values_mut() {
            list.sort_unstable_by_key(|e| (e.price, e.seen));
        }
        any.sort_unstable_by_key(|e| (e.entry.price, e.entry.seen));
        Self { by_module, any }
    }
}

/// The same decision as [`choose`], from an [`OfferIndex`] built from `view`: offers are walked
/// cheapest first and the walk stops at the first price above the best valid one, so a decision
/// looks at a handful of offers instead of every provider. When no provider is valid it falls
/// back to [`choose`] for the reason.
pub fn choose_indexed(
    job: &Job,
    view: &MarketView,
    index: &OfferIndex,
    terms: &Terms,
    now: u64,
    max_active: u32,
    balance: impl Fn(Address) -> Option<u128>,
) -> Result<Choice, NoMatch> {
    choose_indexed_excluding(job, view, index, terms, now, max_active, balance, &[])
}

/// [`choose_indexed`], never picking a provider in `exclude` (see [`choose_excluding`]).
#[allow(clippy::too_many_arguments)]
pub fn choose_indexed_excluding(
    job: &Job,
    view: &MarketView,
    index: &OfferIndex,
    terms: &Terms,
    now: u64,
    max_active: u32,
    balance: impl Fn(Address) -> Option<u128>,
    exclude: &[Address],
) -> Result<Choice, NoMatch> {
    let Open { usable, requirements } = still_open(job, view, terms, now)?;
    let named = index.by_module.get(&job.moduleId).map(Vec::as_slice).unwrap_or(&[]);
    // a provider offering the module by name is priced by that offer, never by its "any" offer
    let any = requirements.map(|need| {
        index.any.iter().filter(move |a| need.fits_in(&a.resources) && !view.providers.get(&a.entry.provider).is_some_and(|p| p.offers.contains_key(&job.moduleId)))
    });
    let needs = view.engine_of(&job.moduleId);
    let mut best: Option<((u128, bool, u32, u64), Choice)> = None;
    let mut consider = |e: &Entry| -> bool {
        // false: stop, nothing further can be better
        if let Some(((bp, ..), _)) = &best {
            if e.price > *bp {
                return false;
            }
        }
        if exclude.contains(&e.provider) || !e.offer.accepts(job.runTimeout, job.callbackGas) {
            return true;
        }
        if e.price.saturating_add(terms.fee(e.price)) > job.payment {
            return false;
        }
        let Some(p) = view.providers.get(&e.provider) else { return true };
        if !p.roles.contains(Roles::PROVIDER) || !p.engines().contains(needs) {
            return true;
        }
        let common = usable & p.mediators & !view.mediators_held_by(&[e.provider]);
        if common == 0 || p.active_jobs >= p.job_limit(max_active) {
            return true;
        }
        if balance(e.provider).is_some_and(|b| b < terms.collateral(e.price)) {
            return true;
        }
        let key = (e.price, !p.ready.contains(&job.moduleId), p.active_jobs, p.seen);
        if best.as_ref().is_none_or(|(bk, _)| key < *bk) {
            best = Some((key, Choice { provider: e.provider, mediator: common.trailing_zeros() as u8, price: e.price }));
        }
        true
    };
    // merge the two price-sorted lists
    let mut a = named.iter().peekable();
    let mut b = any.into_iter().flatten().map(|x| &x.entry).peekable();
    loop {
        let next = match (a.peek(), b.peek()) {
            (Some(x), Some(y)) => {
                if (x.price, x.seen) <= (y.price, y.seen) {
                    a.next()
                } else {
                    b.next()
                }
            }
            (Some(_), None) => a.next(),
            (None, Some(_)) => b.next(),
            (None, None) => None,
        };
        match next {
            Some(e) if consider(e) => {}
            _ => break,
        }
    }
    match best {
        Some((_, choice)) => Ok(choice),
        None => choose_excluding(job, view, terms, now, max_active, balance, exclude),
    }
}

/// What both matchers start from for a job this solver may still match.
struct Open<'v> {
    /// The mediators the job and the market accept, less those held by the job's payee,
    /// client or this solver (the provider's own slot is taken out per provider).
    usable: u64,
    /// The module's requirements, if declared.
    requirements: Option<&'v ResourcesView>,
}

/// What both matchers check first: the job names no other solver and its match deadline has
/// not passed.
fn still_open<'v>(job: &Job, view: &'v MarketView, terms: &Terms, now: u64) -> Result<Open<'v>, NoMatch> {
    if job.onlySolver != Address::ZERO && job.onlySolver != terms.solver {
        return Err(NoMatch::OtherSolver { solver: job.onlySolver });
    }
    let deadline = u40(job.createdAt).saturating_add(u64::from(job.matchTimeout));
    if now > deadline {
        return Err(NoMatch::DeadlinePassed { deadline });
    }
    let parties = view.mediators_held_by(&[job.payee, job.client, terms.solver]);
    Ok(Open { usable: view.usable_mediators() & job.mediators & !parties, requirements: view.requirements.get(&job.moduleId) })
}

fn u40(v: U40) -> u64 {
    u64::try_from(v).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use lilypad_chain::{MediatorInfo, ProviderInfo, ResourcesView};
    use alloy::primitives::address;

    const LP: u128 = 1_000_000_000_000_000_000;
    const SOLVER: Address = address!("00000000000000000000000000000000000000cc");
    const MEDIATOR: Address = address!("00000000000000000000000000000000000000ee");
    const TERMS: Terms = Terms { solver: SOLVER, solver_fee_bps: 500, collateral_bps: 20_000, mediator_fee: LP };

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
            roles: Roles::PROVIDER,
            mediators: 1,
            offers: [(module(), OfferView::any_terms(price))].into_iter().collect(),
            seen,
            ..Default::default()
        }
    }

    fn view(providers: Vec<(Address, ProviderInfo)>) -> MarketView {
        let mut v = MarketView::default();
        v.providers = providers.into_iter().collect();
        v.mediators = vec![MediatorInfo { account: MEDIATOR, active: true, suspended: false }];
        v
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
    fn on_equal_price_prefers_a_provider_with_the_image_ready() {
        let mut ready = provider(5 * LP, 2);
        ready.ready.insert(module());
        let v = view(vec![(A, provider(5 * LP, 1)), (B, ready.clone())]);
        assert_eq!(choose(&job(10 * LP), &v, &TERMS, 1000, 4, |_| None).unwrap().provider, B, "ready beats older");
        let idx = OfferIndex::build(&v);
        assert_eq!(choose_indexed(&job(10 * LP), &v, &idx, &TERMS, 1000, 4, |_| None).unwrap().provider, B, "indexed: same");
        // Readiness for another module does not count.
        let mut other = provider(5 * LP, 2);
        other.ready.insert(B256::repeat_byte(9));
        let v = view(vec![(A, provider(5 * LP, 1)), (B, other)]);
        assert_eq!(choose(&job(10 * LP), &v, &TERMS, 1000, 4, |_| None).unwrap().provider, A);
        // The price comes first: a cheaper provider beats a ready one.
        let v = view(vec![(A, provider(4 * LP, 1)), (B, ready)]);
        assert_eq!(choose(&job(10 * LP), &v, &TERMS, 1000, 4, |_| None).unwrap().provider, A);
        let idx = OfferIndex::build(&v);
        assert_eq!(choose_indexed(&job(10 * LP), &v, &idx, &TERMS, 1000, 4, |_| None).unwrap().provider, A);
    }

    #[test]
    fn a_provider_that_gave_the_job_back_is_not_chosen_again() {
        let v = view(vec![(A, provider(4 * LP, 1)), (B, provider(5 * LP, 2))]);
        let c = choose_excluding(&job(10 * LP), &v, &TERMS, 1000, 4, |_| None, &[A]).unwrap();
        assert_eq!(c.provider, B);
        let e = choose_excluding(&job(10 * LP), &v, &TERMS, 1000, 4, |_| None, &[A, B]).unwrap_err();
        assert_eq!(e, NoMatch::GivenBack { module_id: module(), providers: 2 });
        assert!(e.to_string().contains("has given this job back (2 of them)"), "{e}");
        let idx = OfferIndex::build(&v);
        let c = choose_indexed_excluding(&job(10 * LP), &v, &idx, &TERMS, 1000, 4, |_| None, &[A]).unwrap();
        assert_eq!(c.provider, B);
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
        assert_eq!(choose(&job(20 * LP), &view(vec![(A, full.clone())]), &TERMS, 1000, 4, |_| None), Err(NoMatch::AtCapacity { max_active: 4 }));
        // a provider that announced it runs 3 jobs at once gets up to 6
        let mut announced = full;
        announced.concurrency = Some(3);
        assert_eq!(choose(&job(20 * LP), &view(vec![(A, announced.clone())]), &TERMS, 1000, 4, |_| None).map(|c| c.provider), Ok(A));
        announced.active_jobs = 6;
        assert_eq!(choose(&job(20 * LP), &view(vec![(A, announced)]), &TERMS, 1000, 4, |_| None), Err(NoMatch::AtCapacity { max_active: 6 }));
        let mut picky = provider(LP, 1);
        picky.mediators = 2; // only mediator 1, which does not exist
        assert_eq!(choose(&job(20 * LP), &view(vec![(A, picky)]), &TERMS, 1000, 4, |_| None), Err(NoMatch::NoCommonMediator));
    }

    #[test]
    fn a_resources_offer_matches_modules_that_fit() {
        let mut p = provider(LP, 1);
        p.offers = [(B256::ZERO, OfferView::any_terms(2 * LP))].into_iter().collect();
        p.resources = Some(ResourcesView { cpu_milli: 2000, ram_mb: 1024, disk_mb: 100, vram_mb: 0, gpus: 0 });
        let mut v = view(vec![(A, p)]);
        v.requirements.insert(module(), ResourcesView { cpu_milli: 1000, ram_mb: 512, ..Default::default() });
        assert_eq!(choose(&job(10 * LP), &v, &TERMS, 1000, 4, |_| None).unwrap().price, 2 * LP);
        v.requirements.insert(module(), ResourcesView { gpus: 1, vram_mb: 8000, ..Default::default() });
        assert_eq!(choose(&job(10 * LP), &v, &TERMS, 1000, 4, |_| None), Err(NoMatch::NoOffer { module_id: module() }));
    }

    #[test]
    fn a_wasm_module_goes_only_to_providers_that_announced_the_wasm_engine() {
        let announce = |p: &mut ProviderInfo, e: EngineSet| p.ready.extend(e.announcements().0);
        // A: cheapest, never announced engines (Docker only); B: Docker and WASM; C: WASM only
        const C: Address = address!("00000000000000000000000000000000000000cc");
        let a = provider(LP, 1);
        let mut b = provider(3 * LP, 2);
        announce(&mut b, EngineSet::DOCKER.union(EngineSet::WASM));
        let mut c = provider(2 * LP, 3);
        announce(&mut c, EngineSet::WASM);
        let mut v = view(vec![(A, a.clone()), (B, b), (C, c)]);
        // a Docker module: the cheapest Docker provider, never the WASM-only one
        assert_eq!(choose(&job(10 * LP), &v, &TERMS, 1000, 4, |_| None).unwrap().provider, A);
        let c_only = choose_excluding(&job(10 * LP), &v, &TERMS, 1000, 4, |_| None, &[A, B]).unwrap_err();
        assert_eq!(c_only, NoMatch::NoEngine { module_id: module(), engine: EngineSet::DOCKER }, "the Docker providers gave it back; C cannot run it");
        // the same module published as WASM: never the Docker-only provider
        v.engines.insert(module(), EngineSet::WASM);
        assert_eq!(choose(&job(10 * LP), &v, &TERMS, 1000, 4, |_| None).unwrap().provider, C);
        let idx = OfferIndex::build(&v);
        assert_eq!(choose_indexed(&job(10 * LP), &v, &idx, &TERMS, 1000, 4, |_| None).unwrap().provider, C);
        assert_eq!(choose_indexed_excluding(&job(10 * LP), &v, &idx, &TERMS, 1000, 4, |_| None, &[C]).unwrap().provider, B);
        let e = choose(&job(10 * LP), &view(vec![(A, a)]).with_engine(module(), EngineSet::WASM), &TERMS, 1000, 4, |_| None).unwrap_err();
        assert_eq!(e, NoMatch::NoEngine { module_id: module(), engine: EngineSet::WASM });
        assert!(e.to_string().contains("runs its engine (wasm)"), "{e}");
    }

    trait WithEngine {
        fn with_engine(self, module: B256, engine: EngineSet) -> Self;
    }

    impl WithEngine for MarketView {
        fn with_engine(mut self, module: B256, engine: EngineSet) -> Self {
            self.engines.insert(module, engine);
            self
        }
    }

    #[test]
    fn suspended_mediators_are_not_chosen() {
        let mut v = view(vec![(A, provider(LP, 1))]);
        v.mediators[0].suspended = true;
        assert_eq!(choose(&job(10 * LP), &v, &TERMS, 1000, 4, |_| None), Err(NoMatch::NoCommonMediator));
    }

    #[test]
    fn only_offers_whose_terms_accept_the_job_are_matched() {
        let mut strict = provider(LP, 1);
        strict.offers.insert(module(), OfferView { price: LP, min_run_timeout: 60, max_run_timeout: 600, max_callback_gas: 100_000 });
        let v = view(vec![(A, strict), (B, provider(3 * LP, 2))]);
        let idx = OfferIndex::build(&v);
        let mut j = job(10 * LP);
        j.runTimeout = 120;
        assert_eq!(choose(&j, &v, &TERMS, 1000, 4, |_| None).unwrap().provider, A, "within the terms: the cheaper");
        for (run_timeout, callback_gas) in [(30, 0), (601, 0), (120, 100_001)] {
            j.runTimeout = run_timeout;
            j.callbackGas = callback_gas;
            assert_eq!(choose(&j, &v, &TERMS, 1000, 4, |_| None).unwrap().provider, B, "{run_timeout} s, {callback_gas} gas: not A's terms");
            assert_eq!(choose_indexed(&j, &v, &idx, &TERMS, 1000, 4, |_| None).unwrap().provider, B);
        }
        let only_strict = view(vec![(A, v.providers[&A].clone())]);
        assert_eq!(
            choose(&j, &only_strict, &TERMS, 1000, 4, |_| None),
            Err(NoMatch::TermsNotOffered { run_timeout: 120, callback_gas: 100_001 })
        );
    }

    #[test]
    fn a_job_naming_another_solver_is_left_to_it() {
        let v = view(vec![(A, provider(LP, 1))]);
        let mut j = job(10 * LP);
        j.onlySolver = B;
        assert_eq!(choose(&j, &v, &TERMS, 1000, 4, |_| None), Err(NoMatch::OtherSolver { solver: B }));
        j.onlySolver = SOLVER;
        assert_eq!(choose(&j, &v, &TERMS, 1000, 4, |_| None).unwrap().provider, A);
    }

    #[test]
    fn a_mediator_that_is_a_party_of_the_job_is_never_chosen() {
        const OTHER: Address = address!("00000000000000000000000000000000000000dd");
        const PAYEE: Address = address!("00000000000000000000000000000000000000e1");
        const CLIENT: Address = address!("00000000000000000000000000000000000000e2");
        let mut both = provider(LP, 1);
        both.mediators = 0b11;
        let mut v = view(vec![(A, both)]);
        v.mediators = vec![MediatorInfo { account: OTHER, active: true, suspended: false }; 2];
        let mut j = job(10 * LP);
        j.payee = PAYEE;
        j.client = CLIENT;
        assert_eq!(choose(&j, &v, &TERMS, 1000, 4, |_| None).unwrap().mediator, 0);
        // slot 0 held by the payee, the client, the solver or the provider: slot 1 is chosen
        for party in [PAYEE, CLIENT, SOLVER, A] {
            let mut v = v.clone();
            v.mediators[0].account = party;
            let idx = OfferIndex::build(&v);
            assert_eq!(choose(&j, &v, &TERMS, 1000, 4, |_| None).unwrap().mediator, 1, "slot 0 held by {party}");
            assert_eq!(choose_indexed(&j, &v, &idx, &TERMS, 1000, 4, |_| None).unwrap().mediator, 1);
            // and with slot 1 held by the provider too, no mediator is left
            v.mediators[1].account = A;
            assert_eq!(choose(&j, &v, &TERMS, 1000, 4, |_| None), Err(NoMatch::NoCommonMediator), "slot 0 held by {party}");
        }
    }

    /// A small deterministic generator (xorshift), so the comparison is reproducible.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    /// An offer at one of six prices; a third of them only for run windows from 60 s and
    /// callbacks up to 100,000 gas.
    fn random_offer(rng: &mut Rng) -> OfferView {
        let price = (1 + rng.below(6) as u128) * LP;
        if rng.below(3) == 0 {
            OfferView { price, min_run_timeout: 60, max_run_timeout: 3600, max_callback_gas: 100_000 }
        } else {
            OfferView::any_terms(price)
        }
    }

    /// A random market: providers with named and "any" offers at few distinct prices (so ties
    /// happen), some without the provider role, some busy, picky mediators, resources that fit or not.
    fn random_market(rng: &mut Rng, providers: usize) -> MarketView {
        let mut v = MarketView::default();
        v.mediators = vec![
            MediatorInfo { account: MEDIATOR, active: true, suspended: false },
            MediatorInfo { account: MEDIATOR, active: true, suspended: rng.below(2) == 0 },
            MediatorInfo { account: MEDIATOR, active: rng.below(2) == 0, suspended: false },
        ];
        for m in 0..4u8 {
            v.requirements.insert(B256::repeat_byte(m), ResourcesView { cpu_milli: 1000 * u32::from(m), ram_mb: 512, ..Default::default() });
            if m % 2 == 1 {
                v.engines.insert(B256::repeat_byte(m), EngineSet::WASM);
            }
        }
        for i in 0..providers {
            let mut p = ProviderInfo {
                roles: if rng.below(10) == 0 { Roles::NONE } else { Roles::PROVIDER },
                mediators: rng.below(8),
                active_jobs: rng.below(5) as u32,
                seen: i as u64 + 1,
                ..Default::default()
            };
            // some announced how many jobs they run at once (their limit is twice that)
            if rng.below(3) == 0 {
                p.concurrency = Some(rng.below(4) as u32);
            }
            for _ in 0..rng.below(3) {
                p.offers.insert(B256::repeat_byte(rng.below(5) as u8), random_offer(rng));
            }
            if rng.below(4) == 0 {
                p.offers.insert(B256::ZERO, random_offer(rng));
                p.resources = Some(ResourcesView { cpu_milli: 1000 * rng.below(4) as u32, ram_mb: 1024, ..Default::default() });
            }
            // a third never announced engines (Docker), the others Docker, WASM or both
            let engines = [EngineSet::NONE, EngineSet::DOCKER, EngineSet::WASM, EngineSet::DOCKER.union(EngineSet::WASM)][rng.below(4) as usize];
            if !engines.is_empty() {
                p.ready.extend(engines.announcements().0);
            }
            let mut raw = [0u8; 20];
            raw[..8].copy_from_slice(&(i as u64 + 1).to_be_bytes());
            v.providers.insert(Address::from(raw), p);
        }
        v
    }

    #[test]
    fn the_index_makes_the_same_choices_as_the_full_scan() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let mut matched = 0;
        for round in 0..200 {
            let v = random_market(&mut rng, 1 + round % 40);
            let index = OfferIndex::build(&v);
            for _ in 0..50 {
                let mut j = job((1 + rng.below(8) as u128) * LP);
                j.moduleId = B256::repeat_byte(rng.below(5) as u8);
                j.mediators = rng.below(8);
                j.runTimeout = [30, 60, 600][rng.below(3) as usize];
                j.callbackGas = [0, 200_000][rng.below(2) as usize];
                let low: Vec<Address> = v.providers.keys().filter(|_| rng.below(6) == 0).copied().collect();
                let balance = |a: Address| if low.contains(&a) { Some(LP) } else { None };
                let now = 1000 + rng.below(120);
                let full = choose(&j, &v, &TERMS, now, 4, balance);
                let fast = choose_indexed(&j, &v, &index, &TERMS, now, 4, balance);
                match (&full, &fast) {
                    (Ok(_), _) => assert_eq!(full, fast, "job {j:?}"),
                    // reasons depend on the providers' (hash) order in the full scan: only
                    // require that both say no
                    (Err(_), _) => assert!(fast.is_err(), "full scan found nothing, the index found {fast:?}"),
                }
                matched += usize::from(full.is_ok());
            }
        }
        assert!(matched > 1000, "the random markets should mostly match ({matched} of 10000)");
    }
}
