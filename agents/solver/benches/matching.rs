//! The solver's matching step: 10,000 waiting jobs against 1,000 provider offers.
//!
//!   cargo bench -p lilypad-solver --bench matching
//!
//! `full_scan` is `choose` (every provider looked at for each job); `indexed` is
//! `choose_indexed` with the offers indexed by module id and sorted by price (the index is built
//! once, as the solver does once per pass; its build is measured apart). Criterion's time is for
//! the whole batch of 10,000 decisions: divide by 10,000 for the time per decision.

#![allow(missing_docs)] // criterion_main! generates an undocumented `main`

use std::hint::black_box;

use alloy::primitives::{aliases::U40, Address, B256};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use lilypad_bindings::Job;
use lilypad_chain::Roles;
use lilypad_solver::view::{MarketView, MediatorInfo, ProviderInfo};
use lilypad_solver::{choose, choose_indexed, OfferIndex, Terms};

const LP: u128 = 1_000_000_000_000_000_000;
const JOBS: usize = 10_000;
const PROVIDERS: usize = 1_000;
const MODULES: u8 = 10;
const TERMS: Terms = Terms { solver: alloy::primitives::Address::ZERO, solver_fee_bps: 500, collateral_bps: 20_000, mediator_fee: LP };

struct Rng(u64);
impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// 1,000 providers, one offer each for one of 10 modules, prices 1..=10 LP, a quarter of them at
/// capacity; 10,000 open jobs spread over the modules with payments of 2..=11 LP.
fn market() -> (MarketView, Vec<Job>) {
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let mut view = MarketView::default();
    view.mediators = vec![MediatorInfo { account: Address::repeat_byte(0xee), active: true, suspended: false }];
    for i in 0..PROVIDERS {
        let module = B256::repeat_byte(rng.below(u64::from(MODULES)) as u8 + 1);
        let p = ProviderInfo {
            roles: Roles::PROVIDER,
            mediators: 1,
            offers: [(module, lilypad_chain::OfferView::any_terms((1 + rng.below(10) as u128) * LP))].into_iter().collect(),
            active_jobs: if rng.below(4) == 0 { 4 } else { rng.below(4) as u32 },
            seen: i as u64 + 1,
            ..Default::default()
        };
        let mut raw = [0u8; 20];
        raw[..8].copy_from_slice(&(i as u64 + 1).to_be_bytes());
        view.providers.insert(Address::from(raw), p);
    }
    let jobs = (0..JOBS)
        .map(|_| {
            let mut j = Job::default();
            j.moduleId = B256::repeat_byte(rng.below(u64::from(MODULES)) as u8 + 1);
            j.payment = (2 + rng.below(10) as u128) * LP;
            j.mediators = 1;
            j.createdAt = U40::from(1000u64);
            j.matchTimeout = 3600;
            j
        })
        .collect();
    (view, jobs)
}

fn bench(c: &mut Criterion) {
    let (view, jobs) = market();
    let index = OfferIndex::build(&view);
    // the two must agree before their speeds are worth comparing
    for j in &jobs {
        let a = choose(j, &view, &TERMS, 1000, 4, |_| None);
        let b = choose_indexed(j, &view, &index, &TERMS, 1000, 4, |_| None);
        if a.is_ok() || b.is_ok() {
            assert_eq!(a, b);
        }
    }
    let mut g = c.benchmark_group("match_10000_jobs_1000_offers");
    g.throughput(Throughput::Elements(JOBS as u64));
    g.sample_size(20);
    g.bench_function("full_scan", |b| {
        b.iter(|| {
            for j in &jobs {
                let _ = black_box(choose(black_box(j), &view, &TERMS, 1000, 4, |_| None));
            }
        })
    });
    g.bench_function("indexed", |b| {
        b.iter(|| {
            for j in &jobs {
                let _ = black_box(choose_indexed(black_box(j), &view, &index, &TERMS, 1000, 4, |_| None));
            }
        })
    });
    g.finish();
    c.bench_function("offer_index_build_1000_offers", |b| b.iter(|| black_box(OfferIndex::build(black_box(&view)))));
}

criterion_group!(benches, bench);
criterion_main!(benches);
