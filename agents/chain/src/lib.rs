//! The chain side of every Lilypad agent.
//!
//! - [`ChainClient`]: one RPC connection and an optional signer; transactions go out one at a
//!   time, gas estimated, transient failures retried, reverts decoded into the market's errors.
//! - [`EventStream`]: the market's logs, block range after block range, never skipping one.
//! - [`JobBook`]: every live job's `Job` struct rebuilt from those events, which is what the
//!   market's calls take back (it stores only their hashes).
//! - [`Checkpoint`]: an atomically written file for an agent's last handled block and book.
//! - [`Deployment`], read from `deployments/<chainId>.json`.

#![forbid(unsafe_code)]

mod checkpoint;
mod client;
mod deployment;
mod error;
pub mod events;
pub mod jobs;

pub use checkpoint::Checkpoint;
pub use client::{ChainClient, RetryPolicy};
pub use deployment::Deployment;
pub use error::ChainError;
pub use events::{Batch, EventStream, MarketEvent, MarketLog};
pub use jobs::{BookSnapshot, JobBook, JobChange, JobRecord, ModuleEntry, Outcome};
pub use lilypad_bindings as bindings;
