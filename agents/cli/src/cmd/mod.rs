//! One file per `lilypad` command: each an args struct with a `run`.

pub mod auditor;
pub mod balance;
pub mod challenge;
pub mod devnet;
pub mod gateway;
pub mod ipfs;
pub mod job;
pub mod keeper;
pub mod mediator;
pub mod module;
pub mod provider;
pub mod run;
pub mod solver;

/// A share from 0 to 1.
pub fn parse_rate(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(r) if (0.0..=1.0).contains(&r) => Ok(r),
        _ => Err(format!("{s:?}: expected a share from 0 to 1, e.g. 0.1")),
    }
}
