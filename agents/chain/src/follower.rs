//! The loop every agent runs over the market: resume from a checkpoint, read the next batch of
//! events, apply it to the [`JobBook`], act, save. [`Follower`] owns the first, second and last
//! steps; the agent keeps only what it does with the changes.
//!
//! ```no_run
//! use lilypad_chain::{ChainClient, Checkpoint, Follower, JobChange};
//!
//! # async fn agent(client: ChainClient) -> Result<(), lilypad_chain::ChainError> {
//! // Resume where the last run stopped (or start at the deployment block), with the agent's
//! // own saved state next to the book (`()` when it keeps none).
//! let (mut follower, mut seen): (Follower, Vec<String>) =
//!     Follower::resume(client, Checkpoint::new("data/checkpoint.json"))?;
//! loop {
//!     let applied = follower.next().await?; // waits for new blocks; cancel-safe
//!     for (log, change) in &applied.entries {
//!         if let Some(JobChange::Finished { id, .. }) = change {
//!             seen.push(format!("job {id} finished in block {}", log.block));
//!         }
//!     }
//!     // act on `follower.book()`, then save: a crash before this re-reads the batch
//!     follower.save(&seen)?;
//! }
//! # }
//! ```

use std::time::Duration;

use serde::{de::DeserializeOwned, Deserialize, Serialize};
use tracing::info;

use crate::{BookSnapshot, ChainClient, ChainError, Checkpoint, EventStream, JobBook, JobChange, MarketLog};

/// One batch of blocks, applied to the book: every log in chain order with what it changed.
#[derive(Clone, Debug, Default)]
pub struct Applied {
    /// First block of the batch.
    pub from: u64,
    /// Last block of the batch (the next one starts at `to + 1`).
    pub to: u64,
    /// The batch's market logs, each with the change it made to the book (if any).
    pub entries: Vec<(MarketLog, Option<JobChange>)>,
}

impl Applied {
    /// The batch's logs, in chain order.
    pub fn logs(&self) -> impl Iterator<Item = &MarketLog> {
        self.entries.iter().map(|(log, _)| log)
    }

    /// The changes the batch made to the book, in chain order.
    pub fn changes(&self) -> impl Iterator<Item = &JobChange> {
        self.entries.iter().filter_map(|(_, change)| change.as_ref())
    }
}

/// What a follower's checkpoint holds: where to go on, the book, and the agent's own state
/// (`extra`, flattened into the same JSON object).
#[derive(Serialize, Deserialize)]
struct Saved<X> {
    next_block: u64,
    book: BookSnapshot,
    #[serde(flatten)]
    extra: X,
}

/// Checkpoints as written before the follower: `[next_block, book]`.
#[derive(Deserialize)]
#[serde(untagged)]
enum AnySaved<X> {
    Current(Saved<X>),
    Pair(u64, BookSnapshot),
}

/// Follows the market: an [`EventStream`] feeding a [`JobBook`], with an optional
/// [`Checkpoint`] that [`Follower::save`] writes. See the module's example.
pub struct Follower {
    stream: EventStream,
    book: JobBook,
    checkpoint: Option<Checkpoint>,
}

impl Follower {
    /// Follows from `from_block` with an empty book and no checkpoint (an agent that rebuilds
    /// its state from the chain on every start, or keeps its cursor elsewhere).
    pub fn new(client: ChainClient, from_block: u64) -> Self {
        Self { stream: EventStream::new(client, from_block), book: JobBook::new(), checkpoint: None }
    }

    /// Resumes from `checkpoint`: the block after the last one saved, the book then and the
    /// agent's `extra` state; from the deployment block with an empty book and
    /// `X::default()` when there is no checkpoint yet (or one an older version wrote that no
    /// longer reads as a book). A checkpoint that is not JSON is an error that says to delete it.
    pub fn resume<X: DeserializeOwned + Default>(client: ChainClient, checkpoint: Checkpoint) -> Result<(Self, X), ChainError> {
        let saved: Option<AnySaved<X>> = checkpoint.load()?;
        let (next_block, book, extra) = match saved {
            Some(AnySaved::Current(s)) => (s.next_block, s.book, s.extra),
            Some(AnySaved::Pair(next_block, book)) => (next_block, book, X::default()),
            None => (client.deployment().start_block, BookSnapshot::default(), X::default()),
        };
        let (next_block, book, extra) = match JobBook::from_snapshot(&book) {
            Some(book) => (next_block, book, extra),
            None => (client.deployment().start_block, JobBook::new(), X::default()),
        };
        if next_block > client.deployment().start_block {
            info!(from_block = next_block, live_jobs = book.len(), checkpoint = %checkpoint.path().display(), "resuming from the checkpoint");
        }
        let follower = Self { stream: EventStream::new(client, next_block), book, checkpoint: Some(checkpoint) };
        Ok((follower, extra))
    }

    /// How often to ask for new blocks when caught up.
    pub fn poll_interval(mut self, poll: Duration) -> Self {
        self.stream = self.stream.poll_interval(poll);
        self
    }

    /// The next batch with at least one new block, applied to the book; waits for the chain
    /// when caught up. Cancel-safe: dropped before it returns, nothing was consumed.
    pub async fn next(&mut self) -> Result<Applied, ChainError> {
        let batch = self.stream.next_batch().await?;
        Ok(self.apply(batch))
    }

    /// Every batch available now, applied, without waiting for new blocks.
    pub async fn catch_up(&mut self) -> Result<Vec<Applied>, ChainError> {
        let mut out = Vec::new();
        while let Some(batch) = self.stream.poll_once().await? {
            out.push(self.apply(batch));
        }
        Ok(out)
    }

    fn apply(&mut self, batch: crate::Batch) -> Applied {
        let entries = batch
            .logs
            .into_iter()
            .map(|log| {
                let change = self.book.apply(&log);
                (log, change)
            })
            .collect();
        Applied { from: batch.from, to: batch.to, entries }
    }

    /// Saves the next block, the book and the agent's `extra` state to the checkpoint,
    /// atomically (nothing without a checkpoint).
    pub fn save<X: Serialize>(&self, extra: &X) -> Result<(), ChainError> {
        let Some(checkpoint) = &self.checkpoint else { return Ok(()) };
        checkpoint.save(&Saved { next_block: self.stream.next_block(), book: self.book.snapshot(), extra })
    }

    /// The live jobs and published modules, as of the last batch.
    pub fn book(&self) -> &JobBook {
        &self.book
    }

    /// The first block the next batch will cover.
    pub fn next_block(&self) -> u64 {
        self.stream.next_block()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
    struct Extra {
        note: String,
        #[serde(default)]
        count: u32,
    }

    #[test]
    fn the_saved_state_is_one_object_and_reads_the_older_pair_form() {
        let saved = Saved { next_block: 7, book: BookSnapshot::default(), extra: Extra { note: "x".into(), count: 2 } };
        let json = serde_json::to_value(&saved).unwrap();
        assert_eq!(json["next_block"], 7);
        assert_eq!(json["note"], "x", "the agent's state sits next to the book: {json}");
        let back: AnySaved<Extra> = serde_json::from_value(json).unwrap();
        assert!(matches!(back, AnySaved::Current(Saved { next_block: 7, ref extra, .. }) if extra.count == 2));
        let unit = serde_json::to_string(&Saved { next_block: 3, book: BookSnapshot::default(), extra: () }).unwrap();
        assert!(matches!(serde_json::from_str::<AnySaved<()>>(&unit).unwrap(), AnySaved::Current(Saved { next_block: 3, .. })));
        let pair = serde_json::to_string(&(9u64, BookSnapshot::default())).unwrap();
        assert!(matches!(serde_json::from_str::<AnySaved<Extra>>(&pair).unwrap(), AnySaved::Pair(9, _)));
    }
}
