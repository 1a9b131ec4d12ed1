//! Repository statistics: logical bytes, stored bytes, dedup and compression ratios.

use std::path::Path;

use serde::Serialize;

use crate::error::Result;
use crate::format::BlobKind;
use crate::repo::session::Session;

/// Figures for `dbbackup stats`.
#[derive(Debug, Clone, Serialize)]
pub struct Stats {
    /// Snapshots in the repository.
    pub snapshots: u64,
    /// Sum of every snapshot's size: what restoring all of them would produce.
    pub logical_bytes: u64,
    /// Plaintext bytes of the distinct data chunks the snapshots and the WAL archive
    /// reference, with the bases their deltas need (every indexed chunk unless
    /// [`Stats::referenced_only`]).
    pub unique_bytes: u64,
    /// Bytes of all pack files in storage.
    pub stored_bytes: u64,
    /// Distinct data chunks (referenced, as `unique_bytes`).
    pub chunks: u64,
    /// Content-list blobs.
    pub list_blobs: u64,
    /// Pack files.
    pub packs: u64,
    /// logical / unique.
    pub dedup_ratio: f64,
    /// unique / stored (sealed blob bytes).
    pub compression_ratio: f64,
    /// logical / stored.
    pub total_ratio: f64,
    /// Data chunks stored as deltas against a similar chunk (their plaintext is counted in
    /// `unique_bytes`).
    pub delta_chunks: u64,
    /// Sealed bytes those deltas take.
    pub delta_stored_bytes: u64,
    /// Bytes the deltas saved: what the chunks would take compressed plainly (estimated from
    /// each base's own compression ratio) minus what the deltas take.
    pub delta_saved_bytes: u64,
    /// Snapshots whose manifest (every copy) cannot be read: left out of `snapshots` and
    /// `logical_bytes`, and listed in [`Computed::unreadable`].
    pub unreadable_snapshots: u64,
    /// Whether the chunk figures count only referenced chunks (else every indexed one).
    pub referenced_only: bool,
    /// Indexed data chunks no snapshot or WAL file references: what only forgotten snapshots
    /// used, left in packs prune kept (`--max-unused`), or kept as the bases of deltas.
    pub unreferenced_chunks: u64,
    /// Sealed bytes those take.
    pub unreferenced_stored_bytes: u64,
}

/// [`Stats`], and why each snapshot left out of them could not be read.
pub struct Computed {
    /// The figures.
    pub stats: Stats,
    /// Snapshots whose manifest cannot be read, with the error.
    pub unreadable: Vec<(crate::format::Id, crate::error::Error)>,
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 / b as f64
    }
}

/// Compute the repository's statistics. A snapshot whose manifest cannot be read is left out
/// of the snapshot count and the logical size, and reported in [`Computed::unreadable`].
///
/// With `references` (a work directory), only the chunks the snapshots and the WAL archive
/// reference count as data (their lists are read, as prune reads them); the other indexed
/// chunks are counted apart, as what prune may free. Without it every indexed chunk counts
/// (cheap: the index alone), and [`Stats::referenced_only`] says so.
pub fn compute(session: &Session<'_>, references: Option<&Path>) -> Result<Computed> {
    let (repo, index) = (session.repo(), session.index());
    let (manifests, unreadable) = repo.readable_manifests()?;
    let logical: u64 = manifests.iter().map(|(_, m)| m.size()).sum();
    let live = match references {
        Some(dir) => {
            let ignore: Vec<_> = unreadable.iter().map(|(id, _)| *id).collect();
            Some(crate::prune::reference_set(session, dir, &ignore)?)
        }
        None => None,
    };
    let (mut unique, mut sealed, mut chunks, mut lists) = (0u64, 0u64, 0u64, 0u64);
    let (mut deltas, mut delta_stored, mut delta_saved) = (0u64, 0u64, 0u64);
    let (mut unref_chunks, mut unref_sealed) = (0u64, 0u64);
    let mut failed = None;
    index.for_each_blob(|id, kind, raw, len, base| match kind {
        BlobKind::Data => {
            let referenced = match live.as_ref().map(|l| l.contains(id)) {
                None | Some(Ok(true)) => true,
                Some(Ok(false)) => false,
                Some(Err(e)) => {
                    failed.get_or_insert(e);
                    false
                }
            };
            if !referenced {
                unref_chunks += 1;
                unref_sealed += u64::from(len);
                return;
            }
            unique += u64::from(raw);
            sealed += u64::from(len);
            chunks += 1;
            if let Some((braw, blen)) = base {
                deltas += 1;
                delta_stored += u64::from(len);
                let plain = u64::from(blen) * u64::from(raw) / u64::from(braw.max(1));
                delta_saved += plain.saturating_sub(u64::from(len));
            }
        }
        BlobKind::ContentList => lists += 1,
    })?;
    if let Some(e) = failed {
        return Err(e);
    }
    let packs = repo.store().list("data")?;
    let stored: u64 = packs.iter().map(|(_, s)| s).sum();
    let stats = Stats {
        snapshots: manifests.len() as u64,
        logical_bytes: logical,
        unique_bytes: unique,
        stored_bytes: stored,
        chunks,
        list_blobs: lists,
        packs: packs.len() as u64,
        dedup_ratio: ratio(logical, unique),
        compression_ratio: ratio(unique, sealed),
        total_ratio: ratio(logical, stored),
        delta_chunks: deltas,
        delta_stored_bytes: delta_stored,
        delta_saved_bytes: delta_saved,
        unreadable_snapshots: unreadable.len() as u64,
        referenced_only: live.is_some(),
        unreferenced_chunks: unref_chunks,
        unreferenced_stored_bytes: unref_sealed,
    };
    Ok(Computed { stats, unreadable })
}
