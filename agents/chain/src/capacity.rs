//! How many jobs a provider runs at once, as it announces it without an on-chain field: the
//! same event-only hint it uses for its engines and ready modules (`announceModules`), naming a
//! reserved id that carries the number ([`concurrency_announcement`]: the first 28 bytes of
//! `keccak256("lilypad:concurrency")`, then the number as a big-endian `u32`). The latest
//! announcement wins.
//!
//! The solver gives a provider at most [`job_limit`] unfinished jobs: each of its slots
//! running one and one more waiting, so that a slot starts its next job as soon as it is done
//! instead of waiting for the next match to come round. A provider that announced nothing gets
//! the solver's own default (`lilypad solver --max-active-per-provider`).

use alloy::primitives::{keccak256, B256};

/// The most unfinished jobs a solver gives one provider, whatever it announces.
pub const MAX_JOB_LIMIT: u32 = 1024;

fn prefix() -> [u8; 28] {
    let mut p = [0u8; 28];
    p.copy_from_slice(&keccak256(b"lilypad:concurrency")[..28]);
    p
}

/// The id a provider announces (`announceModules([id], true)`) to say it runs `n` jobs at once.
pub fn concurrency_announcement(n: u32) -> B256 {
    let mut id = [0u8; 32];
    id[..28].copy_from_slice(&prefix());
    id[28..].copy_from_slice(&n.to_be_bytes());
    B256::from(id)
}

/// The number an id announced by [`concurrency_announcement`] carries; `None` for any other id.
pub fn announced_concurrency(id: &B256) -> Option<u32> {
    (id[..28] == prefix()).then(|| u32::from_be_bytes([id[28], id[29], id[30], id[31]]))
}

/// The most unfinished jobs (matched, no result yet) to give a provider that announced it runs
/// `concurrency` jobs at once (`None`: it announced nothing, and `default` applies): twice its
/// concurrency, at least 1 and at most [`MAX_JOB_LIMIT`].
pub fn job_limit(concurrency: Option<u32>, default: u32) -> u32 {
    match concurrency {
        Some(c) => c.saturating_mul(2).clamp(1, MAX_JOB_LIMIT),
        None => default,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_announced_number_comes_back_and_other_ids_carry_none() {
        for n in [0, 1, 2, 8, u32::MAX] {
            assert_eq!(announced_concurrency(&concurrency_announcement(n)), Some(n));
        }
        assert_eq!(announced_concurrency(&B256::ZERO), None);
        assert_eq!(announced_concurrency(&keccak256(b"lilypad:engine:docker")), None);
    }

    #[test]
    fn the_limit_is_twice_the_concurrency_within_bounds() {
        assert_eq!(job_limit(None, 4), 4);
        assert_eq!(job_limit(Some(2), 4), 4);
        assert_eq!(job_limit(Some(8), 4), 16);
        assert_eq!(job_limit(Some(0), 4), 1, "a provider announcing 0 still gets one job");
        assert_eq!(job_limit(Some(u32::MAX), 4), MAX_JOB_LIMIT);
    }
}
