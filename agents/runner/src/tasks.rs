//! Supervised per-job tasks: every task is joined, and one that panics is reported with the
//! job it was for (so that the agent can give the job back instead of holding it forever).

use std::collections::HashMap;
use std::future::Future;

use alloy::primitives::U256;
use tokio::task::{Id, JoinError, JoinSet};

/// How a job's task ended without its own result.
#[derive(Debug, thiserror::Error)]
pub enum TaskFailure {
    /// The task panicked; the message, where the panic had one.
    #[error("job {job}: its task panicked: {message}")]
    Panicked { job: U256, message: String },
    /// The task was cancelled (the set was shut down).
    #[error("job {job}: its task was cancelled")]
    Cancelled { job: U256 },
}

/// Tasks, one per job, each giving a `T` when it ends.
pub struct JobTasks<T> {
    set: JoinSet<T>,
    jobs: HashMap<Id, U256>,
}

impl<T: Send + 'static> Default for JobTasks<T> {
    fn default() -> Self {
        Self { set: JoinSet::new(), jobs: HashMap::new() }
    }
}

impl<T: Send + 'static> JobTasks<T> {
    /// No tasks yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Starts `task` for `job`.
    pub fn spawn(&mut self, job: U256, task: impl Future<Output = T> + Send + 'static) {
        let handle = self.set.spawn(task);
        self.jobs.insert(handle.id(), job);
    }

    /// Tasks not joined yet.
    pub fn len(&self) -> usize {
        self.set.len()
    }

    /// Whether every task has been joined.
    pub fn is_empty(&self) -> bool {
        self.set.is_empty()
    }

    /// The next task to end, with its job: `None` when there are none.
    pub async fn join_next(&mut self) -> Option<(U256, Result<T, TaskFailure>)> {
        let joined = self.set.join_next_with_id().await?;
        Some(self.account(joined))
    }

    /// A task that has ended already, without waiting.
    pub fn try_join_next(&mut self) -> Option<(U256, Result<T, TaskFailure>)> {
        let joined = self.set.try_join_next_with_id()?;
        Some(self.account(joined))
    }

    /// Cancels every task and waits for them all to end.
    pub async fn shutdown(&mut self) {
        self.set.shutdown().await;
        self.jobs.clear();
    }

    fn account(&mut self, joined: Result<(Id, T), JoinError>) -> (U256, Result<T, TaskFailure>) {
        match joined {
            Ok((id, value)) => (self.jobs.remove(&id).unwrap_or_default(), Ok(value)),
            Err(e) => {
                let job = self.jobs.remove(&e.id()).unwrap_or_default();
                if e.is_cancelled() {
                    return (job, Err(TaskFailure::Cancelled { job }));
                }
                let payload = e.into_panic();
                let message = payload
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| payload.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "(no message)".into());
                (job, Err(TaskFailure::Panicked { job, message }))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_panicking_task_is_reported_with_its_job_and_the_others_still_end() {
        let mut tasks = JobTasks::new();
        tasks.spawn(U256::from(7), async { panic!("engine exploded") });
        tasks.spawn(U256::from(8), async { 42u32 });
        let mut seen = HashMap::new();
        while let Some((job, result)) = tasks.join_next().await {
            seen.insert(job, result);
        }
        assert!(tasks.is_empty());
        match seen.remove(&U256::from(7)) {
            Some(Err(TaskFailure::Panicked { job, message })) => {
                assert_eq!(job, U256::from(7));
                assert_eq!(message, "engine exploded");
            }
            other => panic!("job 7: {other:?}"),
        }
        assert!(matches!(seen.remove(&U256::from(8)), Some(Ok(42))));
    }
}
