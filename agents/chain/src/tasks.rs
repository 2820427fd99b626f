//! Supervised tasks: every long-running task of an agent is spawned into one [`Supervisor`],
//! which knows each by name, tells them all to stop through one cancellation token, joins every
//! one of them on stop, and reports how each ended (a panic included) instead of losing it.

use std::collections::HashMap;
use std::fmt::Display;
use std::future::Future;
use std::time::Duration;

use tokio::task::{Id, JoinError, JoinSet};
pub use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

/// How a supervised task ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ended {
    /// It returned `Ok` (or stopped when told to).
    Finished,
    /// It returned an error, shown.
    Failed(String),
    /// It panicked, with the panic's message.
    Panicked(String),
    /// It did not stop within the grace period and was aborted.
    Aborted,
}

/// A task's name and how it ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Exit {
    /// The name it was spawned with.
    pub name: String,
    /// How it ended.
    pub ended: Ended,
}

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.ended {
            Ended::Finished => write!(f, "{} stopped", self.name),
            Ended::Failed(e) => write!(f, "{} failed: {e}", self.name),
            Ended::Panicked(p) => write!(f, "{} panicked: {p}", self.name),
            Ended::Aborted => write!(f, "{} did not stop in time and was aborted", self.name),
        }
    }
}

/// Named tasks under one cancellation token. Dropping a supervisor aborts what is left
/// (use [`Supervisor::stop`] to stop them in order and hear how they ended).
#[derive(Default)]
pub struct Supervisor {
    token: CancellationToken,
    tasks: JoinSet<Result<(), String>>,
    names: HashMap<Id, String>,
}

impl Supervisor {
    /// No tasks yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// The token every task is told to stop through: hand a clone (or
    /// `token.cancelled_owned()`) to a task that should wind down by itself.
    pub fn token(&self) -> CancellationToken {
        self.token.clone()
    }

    /// Spawns `task`, which is dropped at its next await point once a stop is asked for.
    pub fn spawn<F, E>(&mut self, name: impl Into<String>, task: F)
    where
        F: Future<Output = Result<(), E>> + Send + 'static,
        E: Display,
    {
        let token = self.token.clone();
        self.spawn_graceful(name, |_| async move {
            tokio::select! {
                _ = token.cancelled() => Ok(()),
                r = task => r,
            }
        });
    }

    /// Spawns the task `make(token)` builds, which watches the token itself and ends when it is
    /// cancelled (a server shutting down gracefully, an agent finishing its step).
    pub fn spawn_graceful<F, E>(&mut self, name: impl Into<String>, make: impl FnOnce(CancellationToken) -> F)
    where
        F: Future<Output = Result<(), E>> + Send + 'static,
        E: Display,
    {
        let task = make(self.token.clone());
        let handle = self.tasks.spawn(async move { task.await.map_err(|e| e.to_string()) });
        self.names.insert(handle.id(), name.into());
    }

    /// How many tasks are still running.
    pub fn len(&self) -> usize {
        self.tasks.len()
    }

    /// Whether no task is running.
    pub fn is_empty(&self) -> bool {
        self.tasks.is_empty()
    }

    /// Waits until any task ends and says which and how; `None` when there are none.
    pub async fn next_exit(&mut self) -> Option<Exit> {
        let joined = self.tasks.join_next_with_id().await?;
        Some(self.exit(joined))
    }

    fn exit(&mut self, joined: Result<(Id, Result<(), String>), JoinError>) -> Exit {
        let (id, ended) = match joined {
            Ok((id, Ok(()))) => (id, Ended::Finished),
            Ok((id, Err(e))) => (id, Ended::Failed(e)),
            Err(e) => {
                let id = e.id();
                if e.is_panic() {
                    let payload = e.into_panic();
                    let message = payload
                        .downcast_ref::<&str>()
                        .map(|s| s.to_string())
                        .or_else(|| payload.downcast_ref::<String>().cloned())
                        .unwrap_or_else(|| "a panic without a message".into());
                    (id, Ended::Panicked(message))
                } else {
                    (id, Ended::Aborted)
                }
            }
        };
        let name = self.names.remove(&id).unwrap_or_else(|| format!("task {id}"));
        Exit { name, ended }
    }

    /// Cancels the token and joins every task: each gets `grace` to end by itself before it is
    /// aborted. Logs and returns how each ended (panics and failures as errors).
    pub async fn stop(mut self, grace: Duration) -> Vec<Exit> {
        self.token.cancel();
        let mut exits = Vec::new();
        let deadline = tokio::time::Instant::now() + grace;
        loop {
            match tokio::time::timeout_at(deadline, self.tasks.join_next_with_id()).await {
                Ok(Some(joined)) => exits.push(self.exit(joined)),
                Ok(None) => break,
                Err(_) => {
                    warn!(left = self.tasks.len(), "tasks did not stop in time; aborting them");
                    self.tasks.abort_all();
                    while let Some(joined) = self.tasks.join_next_with_id().await {
                        exits.push(self.exit(joined));
                    }
                    break;
                }
            }
        }
        for exit in &exits {
            match exit.ended {
                Ended::Finished => info!(task = %exit.name, "stopped"),
                Ended::Aborted => warn!(task = %exit.name, "{exit}"),
                Ended::Failed(_) | Ended::Panicked(_) => error!(task = %exit.name, "{exit}"),
            }
        }
        exits
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn stop_joins_every_task_and_reports_panics_failures_and_the_stubborn() {
        let mut s = Supervisor::new();
        s.spawn("waits", std::future::pending::<Result<(), String>>());
        s.spawn_graceful("graceful", |t| async move {
            t.cancelled().await;
            Err::<(), _>("stopped with an error")
        });
        s.spawn_graceful("stubborn", |_| std::future::pending::<Result<(), String>>());
        s.spawn("panics", async {
            tokio::task::yield_now().await;
            panic!("boom");
            #[allow(unreachable_code)]
            Ok::<(), String>(())
        });
        let first = s.next_exit().await.unwrap();
        assert_eq!(first, Exit { name: "panics".into(), ended: Ended::Panicked("boom".into()) });
        let mut exits = s.stop(Duration::from_millis(200)).await;
        exits.sort_by(|a, b| a.name.cmp(&b.name));
        assert_eq!(
            exits,
            vec![
                Exit { name: "graceful".into(), ended: Ended::Failed("stopped with an error".into()) },
                Exit { name: "stubborn".into(), ended: Ended::Aborted },
                Exit { name: "waits".into(), ended: Ended::Finished },
            ]
        );
    }
}
