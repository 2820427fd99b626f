//! A seeded, reproducible pick of jobs: which results an auditor challenges (and, in tests,
//! which jobs a test-only cheating provider tampers with).

use alloy::primitives::{keccak256, U256};

/// A seeded pick at `rate` (0 to 1) for job `id`: keccak256(seed, id) read as a fraction of
/// 2^64. The same jobs on every run with the same seed; unpredictable without it.
pub fn pick(seed: u64, id: U256, rate: f64) -> bool {
    if rate <= 0.0 {
        return false;
    }
    if rate >= 1.0 {
        return true;
    }
    let mut bytes = [0u8; 40];
    bytes[..8].copy_from_slice(&seed.to_be_bytes());
    bytes[8..].copy_from_slice(&id.to_be_bytes::<32>());
    let h = keccak256(bytes);
    let x = u64::from_be_bytes(h[..8].try_into().unwrap_or([0; 8]));
    (x as f64) < rate * (u64::MAX as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_zero_and_one_pick_none_and_all() {
        for id in 1..200u64 {
            assert!(!pick(7, U256::from(id), 0.0));
            assert!(pick(7, U256::from(id), 1.0));
        }
    }

    #[test]
    fn a_rate_picks_about_that_share_and_the_same_jobs_for_the_same_seed() {
        let picked = |seed| (1..=10_000u64).filter(|&id| pick(seed, U256::from(id), 0.1)).collect::<Vec<_>>();
        let a = picked(1);
        assert!((800..1200).contains(&a.len()), "{} of 10000 at rate 0.1", a.len());
        assert_eq!(a, picked(1), "seeded: the same jobs again");
        assert_ne!(a, picked(2), "another seed, other jobs");
    }
}
