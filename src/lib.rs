//! dbbackup: deduplicating, encrypted backups of PostgreSQL and MySQL/MariaDB into any storage
//! OpenDAL reaches. The library does all the work and never prints; the `dbbackup` binary
//! (`src/cli/`) parses arguments, draws progress, and maps [`ErrorKind`]s to exit codes.
//!
//! # The layers
//!
//! Each room (top-level module) uses only rooms of its own layer or below, and no two rooms
//! use each other; `tests/layers.rs` checks both against the `use crate::` lines.
//!
//! ```text
//!  cli/ (binary)    arguments -> library calls; tables, JSON, progress bars, exit codes
//!  ─────────────────────────────────────────────────────────────────────────────────────
//!  sources          pg_dump / pg_restore / pg_basebackup / pgdata copy / mysqldump, children
//!  snapshot restore check prune repair retention stats wal chunking preflight
//!  repo             the engine: Repository (open, init, typed objects, manifests), keys,
//!                   lock (Operation), index (cache), blob codec, packer, pack/blob readers
//!  storage  delta   OpenDAL store, location grammar, retries, ssh │ zstd patch-from deltas
//!  format           every byte on storage (repo-format/), pure codecs, RepoObject
//!  crypto           key derivation, AEAD seal/open, chunk-id keys
//!  error id util interrupt progress     leaves
//! ```
//!
//! # The data path
//!
//! ```text
//!  snapshot: source stream ─► chunking (FastCDC) ─► keyed BLAKE3 id ─► index: known? ─► reuse
//!                                                                        │ new
//!                      delta: similar stored chunk? (sketch) ─► zstd patch-from, else zstd
//!                      ─► seal (XChaCha20-Poly1305, AD binds kind+encoding+id) ─► packer
//!                      ─► pack upload ─► index segment ─► manifest (snapshots/ + registry/)
//!  restore:  manifest ─► content lists ─► blob reader (pack range, open, bases for a delta,
//!            keyed BLAKE3 check per chunk) ─► stream ─► SHA-256 of the whole ─► target
//! ```
//!
//! What may be reused and when is the safety protocol of `repo-format/README.md` §10 (locks,
//! deletion plans, the base closure of deltas); [`repo::lock`] and [`prune`] implement it.
//! Start reading at [`repo::Repository`], [`snapshot::SnapshotWriter`] and
//! [`restore`].

#![warn(missing_docs)]

pub mod check;
pub mod chunking;
pub mod crypto;
pub mod delta;
pub mod error;
pub mod format;
pub mod hooks;
pub mod id;
pub mod interrupt;
pub mod metrics;
pub mod notify;
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
pub mod status;
pub mod storage;
pub mod util;
pub mod wal;

pub use error::{Error, ErrorKind, Hint, Result};
