//! The loop every agent runs over the market: resume from a checkpoint, read the next batch of
//! events, apply it to the [`JobBook`], act, save. [`Follower`] owns the first, second and last
//! steps; the agent keeps only what it does with the changes.
//!
//! ```no_run
//! use lilypad_chain::{ChainClient, Checkpoint, Follower, JobChange};
//!
//! # async fn agent(client: ChainClient) -> Result<(), lilypad_chain::ChainError> {
//! // Resume where the last run stopped (or start at the deployment block), with the agent's
//! // own saved state next to the book ([`NoState`] when it keeps none).
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

/// The `extra` state of an agent that saves nothing but the follower's book.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NoState {}

/// What a follower's checkpoint holds: where to go on, the book, and the agent's own state
/// (`extra`, its fields flattened into the same JSON object).
#[derive(Serialize)]
struct Saved<'a, X> {
    next_block: u64,
    book: BookSnapshot,
    #[serde(flatten)]
    extra: &'a X,
}

/// The follower's part of a checkpoint. It is read on its own, and the agent's part from the
/// same text, rather than through `#[serde(flatten)]`, whose buffering cannot hold the `u128`
/// amounts an agent's state carries.
#[derive(Deserialize)]
struct Head {
    next_block: u64,
    book: BookSnapshot,
}

/// Reads a checkpoint's text: `{next_block, book, ...extra}`, or `[next_block, book]` as
/// agents wrote it before the follower.
fn parse_saved<X: DeserializeOwned + Default>(checkpoint: &Checkpoint, text: &str) -> Result<(u64, BookSnapshot, X), ChainError> {
    if text.trim_start().starts_with('[') {
        let (next_block, book): (u64, BookSnapshot) = checkpoint.parse(text)?;
        return Ok((next_block, book, X::default()));
    }
    let head: Head = checkpoint.parse(text)?;
    let extra: X = checkpoint.parse(text)?;
    Ok((head.next_block, head.book, extra))
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
    /// longer reads as a book). `X` is a struct whose fields sit next to the follower's in the
    /// checkpoint's JSON object ([`NoState`] for none); the `[next_block, book]` pairs agents
    /// wrote before are read too. A checkpoint that does not read is an error that says to
    /// delete it.
    pub fn resume<X: DeserializeOwned + Default>(client: ChainClient, checkpoint: Checkpoint) -> Result<(Self, X), ChainError> {
        let (next_block, book, extra) = match checkpoint.read_text()? {
            Some(text) => parse_saved(&checkpoint, &text)?,
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

    #[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
    struct Amounts {
        prices: std::collections::BTreeMap<String, u128>,
    }

    #[test]
    fn the_saved_state_is_one_object_and_reads_the_older_pair_form() {
        let dir = tempfile::tempdir().unwrap();
        let cp = Checkpoint::new(dir.path().join("cp.json"));
        let extra = Extra { note: "x".into(), count: 2 };
        cp.save(&Saved { next_block: 7, book: BookSnapshot::default(), extra: &extra }).unwrap();
        let json: serde_json::Value = serde_json::from_str(&cp.read_text().unwrap().unwrap()).unwrap();
        assert_eq!(json["next_block"], 7);
        assert_eq!(json["note"], "x", "the agent's state sits next to the book: {json}");
        let (next, _, back) = parse_saved::<Extra>(&cp, &cp.read_text().unwrap().unwrap()).unwrap();
        assert_eq!((next, back), (7, extra));

        let big = Amounts { prices: [("a".to_string(), u128::MAX)].into_iter().collect() };
        cp.save(&Saved { next_block: 3, book: BookSnapshot::default(), extra: &big }).unwrap();
        let (next, _, back) = parse_saved::<Amounts>(&cp, &cp.read_text().unwrap().unwrap()).unwrap();
        assert_eq!((next, back), (3, big), "u128 amounts survive");

        cp.save(&Saved { next_block: 4, book: BookSnapshot::default(), extra: &NoState {} }).unwrap();
        assert_eq!(parse_saved::<NoState>(&cp, &cp.read_text().unwrap().unwrap()).unwrap().0, 4);

        cp.save(&(9u64, BookSnapshot::default())).unwrap();
        let (next, _, back) = parse_saved::<Extra>(&cp, &cp.read_text().unwrap().unwrap()).unwrap();
        assert_eq!((next, back), (9, Extra::default()), "the older [next_block, book] form");

        std::fs::write(cp.path(), "{\"next_block\": 1}").unwrap();
        let err = parse_saved::<Extra>(&cp, &cp.read_text().unwrap().unwrap()).unwrap_err().to_string();
        assert!(err.contains("delete it"), "{err}");
    }
}
