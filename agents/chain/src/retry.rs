//! Retrying without flooding the log: the agents' main loop ([`run_until`]), backoff delays
//! ([`Backoff`]), a failure that repeats logged once with its reason and then ever more rarely
//! ([`FailureLog`]), and transactions the market refused tried again only after a growing pause
//! ([`Refusals`]).

use std::collections::HashMap;
use std::fmt::Display;
use std::future::Future;
use std::hash::Hash;
use std::pin::Pin;
use std::time::{Duration, Instant};

use tracing::{info, warn};

use crate::ChainError;

/// An error that may go away by itself (the RPC was unreachable, the node overloaded), as
/// opposed to one that stops the agent.
pub trait Retryable {
    /// True for a failure worth trying again after a pause.
    fn is_retryable(&self) -> bool;
}

impl Retryable for ChainError {
    fn is_retryable(&self) -> bool {
        ChainError::is_retryable(self)
    }
}

/// Exponential delays: `first`, then doubled each time up to `max`, until [`Backoff::reset`].
#[derive(Clone, Debug)]
pub struct Backoff {
    first: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    /// Delays from `first` doubling up to `max`.
    pub fn new(first: Duration, max: Duration) -> Self {
        Self { first, max, next: first }
    }

    /// The delay to wait now; the following one is twice as long (at most `max`).
    pub fn next_delay(&mut self) -> Duration {
        let delay = self.next;
        self.next = (self.next * 2).min(self.max);
        delay
    }

    /// Back to `first` (after a success).
    pub fn reset(&mut self) {
        self.next = self.first;
    }
}

/// How long between log lines of one failure that keeps repeating: from 10 s to 10 minutes.
const FIRST_REPEAT_LOG: Duration = Duration::from_secs(10);
const MAX_REPEAT_LOG: Duration = Duration::from_secs(600);

/// A failure that may repeat: logged (as a warning) the first time with its reason, again only
/// when the reason changes or after 10 s, 20 s, 40 s ... (at most every 10 minutes) with how
/// many times it happened since, and once more when it stops.
#[derive(Debug)]
pub struct FailureLog {
    what: String,
    failures: u64,
    reason: String,
    next_log: Option<Instant>,
    gap: Backoff,
}

impl FailureLog {
    /// A log for failures of `what` (e.g. "reading the market's events").
    pub fn new(what: impl Into<String>) -> Self {
        Self { what: what.into(), failures: 0, reason: String::new(), next_log: None, gap: Backoff::new(FIRST_REPEAT_LOG, MAX_REPEAT_LOG) }
    }

    /// Records a failure; returns whether it was logged.
    pub fn failed(&mut self, reason: &dyn Display) -> bool {
        self.failures += 1;
        let reason = reason.to_string();
        let now = Instant::now();
        let due = reason != self.reason || self.next_log.is_none_or(|at| now >= at);
        if due {
            if self.failures == 1 || reason != self.reason {
                warn!(what = %self.what, error = %reason, "failed; will retry");
            } else {
                warn!(what = %self.what, error = %reason, failures = self.failures, "still failing; retrying with backoff");
            }
            if reason != self.reason {
                self.gap.reset();
            }
            self.next_log = Some(now + self.gap.next_delay());
            self.reason = reason;
        }
        due
    }

    /// Records a success: logs the recovery if there were failures, and forgets them.
    pub fn succeeded(&mut self) {
        if self.failures > 0 {
            info!(what = %self.what, failures = self.failures, "recovered");
        }
        self.failures = 0;
        self.reason.clear();
        self.next_log = None;
        self.gap.reset();
    }

    /// Failures since the last success.
    pub fn failures(&self) -> u64 {
        self.failures
    }
}

/// A step of an agent's main loop: a future borrowing the agent.
pub type StepFuture<'a, E> = Pin<Box<dyn Future<Output = Result<(), E>> + Send + 'a>>;

/// The agents' main loop: runs `step(state)` again and again until `shutdown` resolves
/// (checked while a step waits, so a step must be cancel-safe at its await points). A
/// retryable error is logged through a [`FailureLog`] and retried after a pause growing from
/// 1 s to 16 s (reset by a step that succeeds); any other error ends the loop and is returned.
///
/// ```no_run
/// # use lilypad_chain::{retry::run_until, ChainError, Follower};
/// # async fn agent(mut follower: Follower, shutdown: impl std::future::Future<Output = ()>) -> Result<(), ChainError> {
/// run_until("following the market", shutdown, &mut follower, |f| Box::pin(async move {
///     let applied = f.next().await?;
///     println!("{} logs up to block {}", applied.entries.len(), applied.to);
///     Ok::<(), ChainError>(())
/// }))
/// .await
/// # }
/// ```
pub async fn run_until<T, E, S>(what: &str, shutdown: S, state: &mut T, mut step: impl for<'a> FnMut(&'a mut T) -> StepFuture<'a, E>) -> Result<(), E>
where
    E: Retryable + Display,
    S: Future<Output = ()>,
{
    tokio::pin!(shutdown);
    let mut failures = FailureLog::new(what);
    let mut pause = Backoff::new(Duration::from_secs(1), Duration::from_secs(16));
    loop {
        let result = tokio::select! {
            _ = &mut shutdown => return Ok(()),
            r = step(state) => r,
        };
        match result {
            Ok(()) => {
                failures.succeeded();
                pause.reset();
            }
            Err(e) if e.is_retryable() => {
                failures.failed(&e);
                tokio::select! {
                    _ = &mut shutdown => return Ok(()),
                    _ = tokio::time::sleep(pause.next_delay()) => {}
                }
            }
            Err(e) => return Err(e),
        }
    }
}

/// Transactions the market refused (a revert: the state moved on, or was never what this agent
/// thought), per key (a job, a batch): each refusal is logged once with its reason and then
/// only as the backoff grows, and the transaction is not tried again before its pause is over
/// (2 s doubling up to 5 minutes, or the maximum given). A success forgets the key.
#[derive(Debug)]
pub struct Refusals<K> {
    what: String,
    max_pause: Duration,
    refused: HashMap<K, Refused>,
}

#[derive(Debug)]
struct Refused {
    times: u64,
    retry_at: Instant,
    backoff: Backoff,
}

impl<K: Eq + Hash + Display> Refusals<K> {
    /// Refusals of `what` (e.g. "settleMany").
    pub fn new(what: impl Into<String>) -> Self {
        Self::with_max_pause(what, Duration::from_secs(300))
    }

    /// Refusals of `what` whose pause grows from 2 s up to `max_pause` (not below 2 s).
    pub fn with_max_pause(what: impl Into<String>, max_pause: Duration) -> Self {
        Self { what: what.into(), max_pause, refused: HashMap::new() }
    }

    /// Whether to send the transaction for `key` now: never refused, or its pause is over.
    pub fn may_try(&self, key: &K) -> bool {
        self.refused.get(key).is_none_or(|r| Instant::now() >= r.retry_at)
    }

    /// Records that the market refused `key`'s transaction with `error`. Logs the first
    /// refusal and the 2nd, 4th, 8th ... ones (with the pause before the next try).
    pub fn refused(&mut self, key: K, error: &dyn Display) {
        let key_text = key.to_string();
        let entry = self.refused.entry(key).or_insert_with(|| Refused {
            times: 0,
            retry_at: Instant::now(),
            backoff: Backoff::new(Duration::from_secs(2), self.max_pause.max(Duration::from_secs(2))),
        });
        entry.times += 1;
        let pause = entry.backoff.next_delay();
        entry.retry_at = Instant::now() + pause;
        let times = entry.times;
        if times.is_power_of_two() {
            warn!(what = %self.what, key = %key_text, error = %error, times, retry_in = ?pause, "refused by the market; trying again later");
        }
    }

    /// Records that `key`'s transaction went through (or is no longer needed).
    pub fn forget(&mut self, key: &K) {
        self.refused.remove(key);
    }

    /// Forgets every key `keep` says no to (jobs that are final, say).
    pub fn retain(&mut self, mut keep: impl FnMut(&K) -> bool) {
        self.refused.retain(|k, _| keep(k));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_its_cap_and_resets() {
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(5));
        let got: Vec<u64> = (0..5).map(|_| b.next_delay().as_secs()).collect();
        assert_eq!(got, vec![1, 2, 4, 5, 5]);
        b.reset();
        assert_eq!(b.next_delay(), Duration::from_secs(1));
    }

    #[test]
    fn a_repeated_failure_is_logged_once_until_its_gap_passes_or_its_reason_changes() {
        let mut log = FailureLog::new("reading");
        assert!(log.failed(&"StaleJob"), "the first failure is logged");
        assert!(!log.failed(&"StaleJob"), "the same failure right after is not");
        assert!(!log.failed(&"StaleJob"));
        assert_eq!(log.failures(), 3);
        assert!(log.failed(&"Unreachable"), "a new reason is logged");
        log.succeeded();
        assert_eq!(log.failures(), 0);
        assert!(log.failed(&"Unreachable"), "after a success the next failure is news");
    }

    #[test]
    fn a_refused_transaction_waits_before_its_next_try_and_a_success_forgets_it() {
        let mut r: Refusals<u64> = Refusals::new("settleMany");
        assert!(r.may_try(&1));
        r.refused(1, &"StaleJob");
        assert!(!r.may_try(&1), "not again right away");
        assert!(r.may_try(&2), "other keys are not held back");
        r.forget(&1);
        assert!(r.may_try(&1));
        r.refused(3, &"StaleJob");
        r.retain(|k| *k != 3);
        assert!(r.may_try(&3));
    }

    #[derive(Debug)]
    struct Flaky(bool);
    impl Display for Flaky {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "flaky (retryable: {})", self.0)
        }
    }
    impl Retryable for Flaky {
        fn is_retryable(&self) -> bool {
            self.0
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_loop_retries_what_is_retryable_and_returns_what_is_not() {
        let mut steps = 0u32;
        let result = run_until("test", std::future::pending(), &mut steps, |n| {
            Box::pin(async move {
                *n += 1;
                match *n {
                    1 | 2 => Err(Flaky(true)),
                    3 => Ok(()),
                    _ => Err(Flaky(false)),
                }
            })
        })
        .await;
        assert!(matches!(result, Err(Flaky(false))));
        assert_eq!(steps, 4);
    }

    #[tokio::test(start_paused = true)]
    async fn the_loop_ends_on_shutdown_even_while_retrying() {
        let mut steps = 0u32;
        let shutdown = tokio::time::sleep(Duration::from_secs(30));
        let result = run_until("test", shutdown, &mut steps, |n| {
            Box::pin(async move {
                *n += 1;
                Err::<(), _>(Flaky(true))
            })
        })
        .await;
        assert!(result.is_ok());
        assert!((3..=6).contains(&steps), "1 s, 2 s, 4 s, 8 s, 16 s pauses within 30 s: {steps} steps");
    }
}
