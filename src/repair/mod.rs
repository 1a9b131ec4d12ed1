//! Making a damaged repository consistent again without losing what is intact:
//! [`index`] rebuilds the index from the packs' own headers when segments are lost or
//! damaged (restic's `repair index`); [`snapshots`] removes from snapshots what can no longer
//! be restored, and the snapshots nothing is left of. Both run under an exclusive lock, and
//! both write what is new before they delete what it replaces, so a kill at any instant
//! leaves a repository at least as usable as before.

pub mod index;
pub mod snapshots;

pub use index::{repair_index, IndexRepair};
pub use snapshots::{repair_snapshots, SnapshotRepair};
