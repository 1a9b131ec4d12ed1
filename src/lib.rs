//! dbbackup: deduplicating, encrypted backups of PostgreSQL and MySQL/MariaDB into any storage
//! OpenDAL reaches. The library does all the work and never prints; the `dbbackup` binary
//! parses arguments, draws progress, and maps [`ErrorKind`]s to exit codes.

#![warn(missing_docs)]

pub mod check;
pub mod chunking;
pub mod crypto;
pub mod delta;
pub mod error;
pub mod format;
pub mod id;
pub mod interrupt;
pub mod preflight;
pub mod progress;
pub mod prune;
pub mod repair;
pub mod repo;
pub mod restore;
pub mod retention;
pub mod snapshot;
pub mod sources;
pub mod stats;
pub mod storage;
pub mod util;
pub mod wal;

pub use error::{Error, ErrorKind, Result};
