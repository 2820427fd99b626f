//! The chain side of every Lilypad agent.
//!
//! - [`ChainClient`]: one RPC connection and an optional signer; transactions go out one at a
//!   time, gas estimated, transient failures retried, reverts decoded into the market's errors.
//!   Typed reads ([`reads`]): [`ChainClient::published_module`], [`ChainClient::account`],
//!   [`ChainClient::offer`], [`ChainClient::market_balance`], [`ChainClient::token_balance`],
//!   [`ChainClient::market_allowance`], [`ChainClient::job_hash`].
//! - [`EventStream`]: the market's logs, block range after block range, never skipping one.
//! - [`JobBook`]: every live job's `Job` struct rebuilt from those events, which is what the
//!   market's calls take back (it stores only their hashes).
//! - [`MarketView`]: providers, offers, mediators and module requirements rebuilt from the same
//!   events (the solver matches against it; the web2 gateway lists its offers).
//! - [`Follower`]: checkpoint → book → stream → apply and save, the loop every agent runs.
//! - [`Checkpoint`]: an atomically written file for an agent's last handled block and book.
//! - [`Roles`]: the market's role bits as a type.
//! - [`retry`]: the agents' main loop ([`run_until`]) and logging that backs off
//!   ([`FailureLog`], [`Refusals`]).
//! - [`tasks`]: a [`Supervisor`] of named tasks under one cancellation token, all joined on stop.
//! - [`Deployment`], read from `deployments/<chainId>.json`.
//! - [`StateDir`]: an agent's state folder keyed by [`ChainKey`] (chain id, market, deployment
//!   block hash), so state of one chain is never reused on another.

#![forbid(unsafe_code)]

pub mod capacity;
mod checkpoint;
mod client;
mod deployment;
pub mod engines;
mod error;
pub mod events;
pub mod follower;
pub mod jobs;
pub mod market_view;
pub mod reads;
pub mod retry;
mod roles;
pub mod state_dir;
pub mod tasks;

pub use checkpoint::Checkpoint;
pub use client::{ChainClient, RetryPolicy};
pub use deployment::Deployment;
pub use engines::EngineSet;
pub use error::ChainError;
pub use events::{Batch, EventStream, MarketEvent, MarketLog};
pub use follower::{Applied, Follower, NoState};
pub use jobs::{BookSnapshot, Challenge, JobBook, JobChange, JobRecord, ModuleEntry, Outcome};
pub use lilypad_bindings as bindings;
pub use market_view::{MarketView, MediatorInfo, OfferView, ProviderInfo, ResourcesView};
pub use reads::{Account, Offer, PublishedModule};
pub use retry::{run_until, Backoff, FailureLog, Refusals, Retryable};
pub use roles::Roles;
pub use state_dir::{ChainKey, StateDir};
pub use tasks::{CancellationToken, Supervisor};
