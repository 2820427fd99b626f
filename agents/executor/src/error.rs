//! Errors: each names what it is about (a job, an image, the engine) and says whether trying
//! again later can help ([`ExecError::is_retryable`]).

use std::fmt;
use std::path::PathBuf;

use crate::outputs::OutputsError;

/// What an error is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subject {
    /// A job, by the id the caller gave [`crate::Executor::run`].
    Job(String),
    /// An image being built or loaded (tag or description).
    Image(String),
    /// The engine itself (connecting, preflight, cleanup).
    Engine,
}

impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Subject::Job(j) => write!(f, "job {j}"),
            Subject::Image(i) => write!(f, "image {i}"),
            Subject::Engine => f.write_str("docker engine"),
        }
    }
}

/// Everything the executor can fail with.
///
/// Retryable (see [`ExecError::is_retryable`]): the engine could not be reached or answered
/// with a server-side (5xx) error, or the host could not write the results. Fatal: the spec,
/// the image or the job's outputs are bad, and running it again would fail the same way.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    /// No engine answers. Retryable.
    #[error(
        "no Docker engine answers at {endpoint}: {source}. Start one with `tools/bootstrap --docker` \
         (or `tools/docker-engine`, as root), or point DOCKER_HOST at a running engine"
    )]
    EngineUnavailable {
        endpoint: String,
        #[source]
        source: bollard::errors::Error,
    },

    /// The engine answered an operation with an error. Retryable when it is a transport error or
    /// a server-side (5xx) failure; fatal when the engine rejected the request (4xx).
    #[error("{subject}: docker engine error while {action}: {source}")]
    Engine {
        subject: Subject,
        action: &'static str,
        #[source]
        source: bollard::errors::Error,
    },

    /// The job's image is not in the engine. Fatal here: nothing is pulled from a registry;
    /// the caller must load or build it first.
    #[error("job {job}: image {image} is not present in the engine (load or build it first; nothing is pulled)")]
    ImageNotFound { job: String, image: String },

    /// The run spec (or result folder) is invalid. Fatal.
    #[error("job {job}: bad run spec: {reason}")]
    BadSpec { job: String, reason: String },

    /// The container was created but could not start (entrypoint missing, wrong architecture,
    /// bad user...). Fatal.
    #[error("job {job}: the container of image {image} could not start: {message}")]
    StartFailed {
        job: String,
        image: String,
        message: String,
    },

    /// An image could not be built or loaded (bad Dockerfile, bad archive...). Fatal.
    #[error("{subject}: {message}")]
    BadImage { subject: Subject, message: String },

    /// The job's outputs could not be copied out (stream error or an invalid archive). Fatal:
    /// a well-formed archive with unsafe entries is not an error (they are skipped and counted).
    #[error("job {job}: collecting outputs: {source}")]
    Outputs {
        job: String,
        #[source]
        source: OutputsError,
    },

    /// The outputs holder was no longer running when the outputs had been copied out of it:
    /// the outputs volume (a tmpfs) may have been unmounted, and its files lost, before or
    /// while they were copied, so the copy cannot be trusted to be the job's outputs.
    /// Retryable: a fresh run gets a fresh volume and holder.
    #[error("job {job}: the outputs holder {holder} stopped ({state}) before the outputs were copied out: they may be lost; run the job again")]
    OutputsLost { job: String, holder: String, state: String },

    /// The firewall rules that keep a network-enabled job off the host and private ranges
    /// could not be set (no root, no `iptables`, Docker run without its iptables chains).
    /// Fatal: the job is not run on an open network, and it would fail the same way again.
    #[error("job {job}: network-enabled jobs run only behind firewall rules keeping them off this host and private networks, and those could not be set: {reason}. Run the agent as root on the engine's host with iptables (and Docker's iptables integration on), or do not offer network-enabled modules")]
    Firewall { job: String, reason: String },

    /// The job's GPUs cannot be given now (held by other jobs: retryable) or at all (more
    /// than the host has: fatal).
    #[error("job {job}: {source}")]
    Gpus {
        job: String,
        #[source]
        source: crate::gpus::GpuError,
    },

    /// Writing the result folder on this host failed (disk full, permissions). Retryable.
    #[error("{subject}: {what} {}: {source}", path.display())]
    Io {
        subject: Subject,
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl ExecError {
    /// Whether running the same thing again later may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            ExecError::EngineUnavailable { .. } | ExecError::Io { .. } | ExecError::OutputsLost { .. } => true,
            ExecError::Engine { source, .. } => engine_error_is_transient(source),
            ExecError::Outputs { source, .. } => source.is_transient(),
            ExecError::Gpus { source, .. } => source.is_retryable(),
            ExecError::ImageNotFound { .. }
            | ExecError::BadSpec { .. }
            | ExecError::StartFailed { .. }
            | ExecError::BadImage { .. }
            | ExecError::Firewall { .. } => false,
        }
    }

    /// The job this error is about, when it is about one.
    pub fn job(&self) -> Option<&str> {
        match self {
            ExecError::ImageNotFound { job, .. }
            | ExecError::BadSpec { job, .. }
            | ExecError::StartFailed { job, .. }
            | ExecError::Outputs { job, .. }
            | ExecError::OutputsLost { job, .. }
            | ExecError::Firewall { job, .. }
            | ExecError::Gpus { job, .. } => Some(job),
            ExecError::Engine {
                subject: Subject::Job(job),
                ..
            }
            | ExecError::Io {
                subject: Subject::Job(job),
                ..
            }
            | ExecError::BadImage {
                subject: Subject::Job(job),
                ..
            } => Some(job),
            _ => None,
        }
    }
}

/// Transport failures and 5xx answers are transient; 4xx answers and malformed data are not.
pub(crate) fn engine_error_is_transient(e: &bollard::errors::Error) -> bool {
    use bollard::errors::Error as B;
    match e {
        B::DockerResponseServerError { status_code, .. } => *status_code >= 500,
        B::RequestTimeoutError
        | B::IOError { .. }
        | B::HyperResponseError { .. }
        | B::HttpClientError { .. }
        | B::HyperLegacyError { .. }
        | B::SocketNotFoundError(_) => true,
        _ => false,
    }
}

/// The engine's HTTP status in an error, if it is an API answer.
pub(crate) fn status_of(e: &bollard::errors::Error) -> Option<u16> {
    match e {
        bollard::errors::Error::DockerResponseServerError { status_code, .. } => Some(*status_code),
        _ => None,
    }
}

/// The message of an engine API answer, or the error's text.
pub(crate) fn message_of(e: &bollard::errors::Error) -> String {
    match e {
        bollard::errors::Error::DockerResponseServerError { message, .. } => message.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification() {
        let server = |status_code| bollard::errors::Error::DockerResponseServerError {
            status_code,
            message: "x".into(),
        };
        let e = ExecError::Engine {
            subject: Subject::Job("j1".into()),
            action: "creating",
            source: server(500),
        };
        assert!(e.is_retryable());
        assert_eq!(e.job(), Some("j1"));
        assert!(e.to_string().starts_with("job j1: "), "{e}");
        let e = ExecError::Engine {
            subject: Subject::Job("j1".into()),
            action: "creating",
            source: server(400),
        };
        assert!(!e.is_retryable());
        let e = ExecError::EngineUnavailable {
            endpoint: "unix:///var/run/docker.sock".into(),
            source: bollard::errors::Error::SocketNotFoundError("/var/run/docker.sock".into()),
        };
        assert!(e.is_retryable());
        assert!(e.to_string().contains("tools/bootstrap --docker"));
        let e = ExecError::BadSpec {
            job: "j2".into(),
            reason: "no image".into(),
        };
        assert!(!e.is_retryable());
        assert_eq!(e.job(), Some("j2"));
        let e = ExecError::ImageNotFound {
            job: "j3".into(),
            image: "x:1".into(),
        };
        assert!(!e.is_retryable());
        assert!(e.to_string().contains("job j3"));
    }
}
