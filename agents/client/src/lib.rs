//! The job creator's side of Lilypad, used by `lilypad run` and the web2 gateway:
//!
//! 1. [`find_module`]: the module a job names, in [`lilypad_runner`]'s one order (a local
//!    folder, a git repository, the folder fetched by the CID the chain pins), checked against
//!    the hash the chain pins ([`published_module`], [`check_pinned`]), so that its inputs can
//!    be checked before anything is paid;
//! 2. [`pay`] and [`submit`]: the payment allowed (exactly what the job escrows) and the job
//!    created on chain ([`created_job_id`] reads its id from the receipt);
//! 3. [`follow`]: the job's events until a result is posted or it ends;
//! 4. [`fetch_result`]: the result folder fetched into a clean folder, every block verified
//!    against the CID posted on chain.
//!
//! Errors are [`ClientError`]s: [`ClientError::is_bad_input`] tells what the user must fix
//! from what failed on the way.

#![forbid(unsafe_code)]

mod error;
mod find;
mod follow;
mod pay;

pub use error::ClientError;
pub use find::{find_module, local_folder, Found};
pub use follow::{fetch_result, follow, Progress, JobResult};
pub use lilypad_runner::{check_pinned, fetch_fresh, published_module, FetchFreshError};
pub use pay::{created_job_id, pay, submit, Payment, Submitted};
