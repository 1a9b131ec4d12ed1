//! PostgreSQL WAL archiving (repo-format §12): `wal push` stores a WAL file through the same
//! chunk/pack path as snapshots and records it in the catalog; `wal fetch` restores it;
//! the summary (`wal list`, `wal stats`) shows timelines, ranges and gaps.

pub mod ahead;
pub mod archive;
pub mod catalog;
pub mod fetch;
pub mod names;
pub mod pitr;
pub mod push;
pub mod retention;
pub mod spool;
pub mod summary;

pub use names::{Lsn, WalFile};

/// WAL segment size assumed when the archive does not record one (PostgreSQL's default).
pub const DEFAULT_SEG_SIZE: u32 = 16 << 20;
