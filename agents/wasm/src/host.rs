//! The per-run store state: WASI context, memory limiter, outputs quota.

use wasmtime::ResourceLimiter;
use wasmtime_wasi::p1::WasiP1Ctx;

use crate::quota::Quota;

/// What a run's `Store` holds.
pub struct Host {
    pub wasi: WasiP1Ctx,
    pub limiter: Limiter,
    pub quota: Quota,
}

/// Marks the error that stops a run whose memory or table grew past its limit.
#[derive(Debug, thiserror::Error)]
#[error("a memory or table grew past its limit")]
pub struct LimitHit;

/// Caps each linear memory and table; growing past a cap stops the run with [`LimitHit`]
/// (rather than failing `memory.grow`, so the ending is the same whatever the module does
/// about a failed allocation).
#[derive(Debug)]
pub struct Limiter {
    pub memory_bytes: u64,
    pub table_elements: u64,
    pub hit: bool,
}

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired as u64 > self.memory_bytes {
            self.hit = true;
            return Err(wasmtime::Error::new(LimitHit));
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired as u64 > self.table_elements {
            self.hit = true;
            return Err(wasmtime::Error::new(LimitHit));
        }
        Ok(true)
    }

    fn instances(&self) -> usize {
        1
    }

    fn memories(&self) -> usize {
        1
    }

    fn tables(&self) -> usize {
        // The function table, and a few more for modules built with reference types.
        16
    }
}
