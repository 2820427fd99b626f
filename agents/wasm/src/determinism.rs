//! The fixed clocks and the seeded random source ([`crate::Determinism`]).

use std::time::Duration;

use sha2::{Digest, Sha256};
#[cfg(feature = "runtime")]
pub use runtime::{FixedMonotonicClock, FixedWallClock};

/// How far each reading of a fixed clock advances it.
pub const TICK: Duration = Duration::from_millis(1);

#[cfg(feature = "runtime")]
mod runtime {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::Duration;

    use wasmtime_wasi::{HostMonotonicClock, HostWallClock};

    use super::TICK;

    /// A wall clock that starts at the Unix epoch and advances [`TICK`] at each reading.
    #[derive(Debug, Default)]
    pub struct FixedWallClock {
        readings: AtomicU64,
    }

    impl HostWallClock for FixedWallClock {
        fn resolution(&self) -> Duration {
            TICK
        }

        fn now(&self) -> Duration {
            let n = self.readings.fetch_add(1, Ordering::Relaxed);
            TICK.saturating_mul(u32::try_from(n).unwrap_or(u32::MAX))
        }
    }

    /// A monotonic clock that starts at zero and advances [`TICK`] at each reading.
    #[derive(Debug, Default)]
    pub struct FixedMonotonicClock {
        readings: AtomicU64,
    }

    impl HostMonotonicClock for FixedMonotonicClock {
        fn resolution(&self) -> u64 {
            TICK.as_nanos() as u64
        }

        fn now(&self) -> u64 {
            let n = self.readings.fetch_add(1, Ordering::Relaxed);
            n.saturating_mul(TICK.as_nanos() as u64)
        }
    }
}

/// A random stream derived from a 32-byte seed: block `i` is `SHA-256(label || seed || i)`.
/// Defined here, not by a library's generator, so the bytes stay the same across versions.
pub struct SeededRandom {
    key: [u8; 32],
    label: u8,
    counter: u64,
    block: [u8; 32],
    used: usize,
}

impl SeededRandom {
    /// The stream `label` (0: WASI `random_get`, 1: the insecure source) of `seed`.
    pub fn new(seed: [u8; 32], label: u8) -> Self {
        SeededRandom {
            key: seed,
            label,
            counter: 0,
            block: [0; 32],
            used: 32,
        }
    }

    /// Fills `dst` with the next bytes of the stream.
    pub fn fill(&mut self, dst: &mut [u8]) {
        for b in dst {
            *b = self.next_byte();
        }
    }

    fn next_byte(&mut self) -> u8 {
        if self.used == self.block.len() {
            let mut h = Sha256::new();
            h.update([self.label]);
            h.update(self.key);
            h.update(self.counter.to_le_bytes());
            self.block = h.finalize().into();
            self.counter += 1;
            self.used = 0;
        }
        let b = self.block[self.used];
        self.used += 1;
        b
    }
}

#[cfg(feature = "runtime")]
impl rand_core::TryRng for SeededRandom {
    type Error = std::convert::Infallible;

    fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
        let mut b = [0; 4];
        self.try_fill_bytes(&mut b)?;
        Ok(u32::from_le_bytes(b))
    }

    fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
        let mut b = [0; 8];
        self.try_fill_bytes(&mut b)?;
        Ok(u64::from_le_bytes(b))
    }

    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Self::Error> {
        self.fill(dst);
        Ok(())
    }
}

/// The seed of a job's random source: SHA-256 over the module's own hash, the command line and
/// the environment (each length-prefixed). Every host running the same job derives the same
/// seed; different inputs give different streams.
pub fn job_seed(wasm_sha256: &[u8; 32], argv: &[String], env: &[(String, String)]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"lilypad-wasm seed v1");
    h.update(wasm_sha256);
    let mut item = |s: &str| {
        h.update((s.len() as u64).to_le_bytes());
        h.update(s.as_bytes());
    };
    item(&argv.len().to_string());
    for a in argv {
        item(a);
    }
    item(&env.len().to_string());
    for (k, v) in env {
        item(k);
        item(v);
    }
    h.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(feature = "runtime")]
    #[test]
    fn fixed_clocks_advance_one_tick_per_reading() {
        use wasmtime_wasi::{HostMonotonicClock, HostWallClock};
        let w = FixedWallClock::default();
        assert_eq!(w.now(), Duration::ZERO);
        assert_eq!(w.now(), TICK);
        let m = FixedMonotonicClock::default();
        assert_eq!(m.now(), 0);
        assert_eq!(m.now(), 1_000_000);
    }

    #[test]
    fn seeded_random_is_a_function_of_seed_and_label() {
        let take = |seed, label| {
            let mut r = SeededRandom::new(seed, label);
            let mut b = [0u8; 80];
            r.fill(&mut b);
            b
        };
        assert_eq!(take([1; 32], 0), take([1; 32], 0));
        assert_ne!(take([1; 32], 0), take([2; 32], 0));
        assert_ne!(take([1; 32], 0), take([1; 32], 1));
        // the first block is SHA-256(label || seed || 0u64)
        let mut h = Sha256::new();
        h.update([0u8]);
        h.update([1u8; 32]);
        h.update(0u64.to_le_bytes());
        let first: [u8; 32] = h.finalize().into();
        assert_eq!(&take([1; 32], 0)[..32], &first);
    }

    #[test]
    fn job_seeds_differ_with_inputs_and_not_otherwise() {
        let argv = |m: &str| vec!["lilysay".to_string(), m.to_string()];
        let s1 = job_seed(&[7; 32], &argv("hi"), &[]);
        assert_eq!(s1, job_seed(&[7; 32], &argv("hi"), &[]));
        assert_ne!(s1, job_seed(&[7; 32], &argv("ho"), &[]));
        assert_ne!(s1, job_seed(&[8; 32], &argv("hi"), &[]));
        // the length prefixes keep ("ab","c") and ("a","bc") apart
        let a = job_seed(&[0; 32], &["ab".into(), "c".into()], &[]);
        let b = job_seed(&[0; 32], &["a".into(), "bc".into()], &[]);
        assert_ne!(a, b);
    }
}
