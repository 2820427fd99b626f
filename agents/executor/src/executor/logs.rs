//! A job's logs: stdout and stderr drained from the attached container into files, each
//! capped, read to the end so the container never blocks on a full pipe.

use std::path::Path;

use bollard::container::LogOutput;
use bollard::errors::Error as BollardError;
use futures_util::{Stream, StreamExt};
use tokio::io::AsyncWriteExt;

#[derive(Debug, Default, Clone, Copy)]
pub(super) struct LogStats {
    pub(super) stdout_bytes: u64,
    pub(super) stderr_bytes: u64,
    pub(super) truncated: bool,
}

pub(super) enum LogError {
    Io(std::io::Error),
    Engine(BollardError),
    Timeout,
}

/// stdout and stderr files, each keeping at most `cap` bytes.
pub(super) struct LogFiles {
    stdout: tokio::io::BufWriter<tokio::fs::File>,
    stderr: tokio::io::BufWriter<tokio::fs::File>,
    cap: u64,
}

impl LogFiles {
    pub(super) async fn create(stdout: &Path, stderr: &Path, cap: u64) -> std::io::Result<Self> {
        Ok(LogFiles {
            stdout: tokio::io::BufWriter::new(tokio::fs::File::create(stdout).await?),
            stderr: tokio::io::BufWriter::new(tokio::fs::File::create(stderr).await?),
            cap,
        })
    }

    /// Reads the stream to its end, keeping the first `cap` bytes of each of stdout and
    /// stderr and counting the rest (reading on so the container never blocks on a full pipe).
    pub(super) async fn drain<S>(mut self, mut output: S) -> Result<LogStats, LogError>
    where
        S: Stream<Item = Result<LogOutput, BollardError>> + Unpin,
    {
        let mut stats = LogStats::default();
        while let Some(item) = output.next().await {
            let (file, seen, message) = match item.map_err(LogError::Engine)? {
                LogOutput::StdOut { message } | LogOutput::Console { message } => {
                    (&mut self.stdout, &mut stats.stdout_bytes, message)
                }
                LogOutput::StdErr { message } => {
                    (&mut self.stderr, &mut stats.stderr_bytes, message)
                }
                LogOutput::StdIn { .. } => continue,
            };
            let room = self.cap.saturating_sub(*seen);
            let keep = (message.len() as u64).min(room) as usize;
            if keep > 0 {
                file.write_all(&message[..keep])
                    .await
                    .map_err(LogError::Io)?;
            }
            if keep < message.len() {
                stats.truncated = true;
            }
            *seen += message.len() as u64;
        }
        for f in [&mut self.stdout, &mut self.stderr] {
            f.flush().await.map_err(LogError::Io)?;
            f.get_mut().sync_all().await.map_err(LogError::Io)?;
        }
        Ok(stats)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[tokio::test]
    async fn logs_are_capped_per_stream() {
        let d = tempfile::tempdir().unwrap();
        let (o, e) = (d.path().join("stdout"), d.path().join("stderr"));
        let logs = LogFiles::create(&o, &e, 10).await.unwrap();
        let items = vec![
            Ok(LogOutput::StdOut {
                message: "12345".into(),
            }),
            Ok(LogOutput::StdErr {
                message: "abc".into(),
            }),
            Ok(LogOutput::StdOut {
                message: "6789012345".into(),
            }),
            Ok(LogOutput::StdOut {
                message: "more".into(),
            }),
        ];
        let stats = match logs.drain(futures_util::stream::iter(items)).await {
            Ok(s) => s,
            Err(_) => panic!("drain failed"),
        };
        assert_eq!(std::fs::read(&o).unwrap(), b"1234567890");
        assert_eq!(std::fs::read(&e).unwrap(), b"abc");
        assert_eq!(
            (stats.stdout_bytes, stats.stderr_bytes, stats.truncated),
            (19, 3, true)
        );
    }
}
