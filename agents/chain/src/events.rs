//! The market's event stream: logs read in block order, decoded, from a starting block on.

use std::time::Duration;

use alloy::primitives::B256;
use alloy::providers::Provider;
use alloy::rpc::types::Filter;
use alloy::sol_types::SolEventInterface;
pub use lilypad_bindings::LilypadMarket::LilypadMarketEvents as MarketEvent;
use tracing::warn;

use crate::{ChainClient, ChainError};

/// One decoded event of the market and where it happened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MarketLog {
    /// Its block.
    pub block: u64,
    /// Its transaction.
    pub tx: B256,
    /// Its index in the block.
    pub log_index: u64,
    /// The event, decoded.
    pub event: MarketEvent,
}

/// The logs of a range of blocks, `from..=to`, in chain order.
#[derive(Clone, Debug, Default)]
pub struct Batch {
    /// First block.
    pub from: u64,
    /// Last block.
    pub to: u64,
    /// The market's logs in `from..=to`, in chain order.
    pub logs: Vec<MarketLog>,
}

/// Reads the market's logs block range by block range. It never skips a block: after a
/// batch `from..=to` the next one starts at `to + 1`, whatever happened in between (an RPC
/// outage is retried), so an agent that saves `to` after handling a batch and restarts from
/// `to + 1` sees every event exactly once.
pub struct EventStream {
    client: ChainClient,
    next_block: u64,
    poll: Duration,
    max_range: u64,
    confirmations: u64,
}

impl EventStream {
    /// Streams from `from_block` (inclusive).
    pub fn new(client: ChainClient, from_block: u64) -> Self {
        Self { client, next_block: from_block, poll: Duration::from_millis(250), max_range: 5_000, confirmations: 0 }
    }

    /// How often to ask for new blocks when caught up.
    pub fn poll_interval(mut self, poll: Duration) -> Self {
        self.poll = poll;
        self
    }

    /// Only read blocks this deep below the head (0 on a devnet; more where reorgs happen).
    pub fn confirmations(mut self, confirmations: u64) -> Self {
        self.confirmations = confirmations;
        self
    }

    /// The first block the next batch will cover.
    pub fn next_block(&self) -> u64 {
        self.next_block
    }

    /// The next batch with at least one new block, waiting for the chain when caught up.
    pub async fn next_batch(&mut self) -> Result<Batch, ChainError> {
        loop {
            if let Some(batch) = self.poll_once().await? {
                return Ok(batch);
            }
            tokio::time::sleep(self.poll).await;
        }
    }

    /// One batch if there are new blocks, else `None`.
    pub async fn poll_once(&mut self) -> Result<Option<Batch>, ChainError> {
        let head = self.client.retrying("reading the block number", || self.client.provider().get_block_number()).await?;
        let Some(safe) = head.checked_sub(self.confirmations) else { return Ok(None) };
        if safe < self.next_block {
            return Ok(None);
        }
        let from = self.next_block;
        let to = safe.min(from.saturating_add(self.max_range - 1));
        let filter = Filter::new().address(self.client.deployment().market).from_block(from).to_block(to);
        let logs = self.client.retrying("reading the market's logs", || self.client.provider().get_logs(&filter)).await?;
        let mut out = Vec::with_capacity(logs.len());
        for log in logs {
            let (Some(block), Some(tx), Some(index)) = (log.block_number, log.transaction_hash, log.log_index) else {
                continue; // pending logs carry no position; they come back once mined
            };
            match MarketEvent::decode_raw_log(log.topics(), &log.data().data) {
                Ok(event) => out.push(MarketLog { block, tx, log_index: index, event }),
                Err(e) => warn!(%tx, index, error = %e, "skipping a market log this agent cannot decode (newer contracts?)"),
            }
        }
        out.sort_by_key(|l| (l.block, l.log_index));
        self.next_block = to + 1;
        Ok(Some(Batch { from, to, logs: out }))
    }
}
