//! Writing what prune and repair decide: index segments and deletion plans in batches of
//! about [`OBJECT_BLOBS`] entries (memory stays flat), a plan written again when its write was
//! too slow for the timing argument of repo-format §10.4, and deletions many at a time.

use std::time::{Duration, Instant};

use crate::delta::Sketch;
use crate::error::{Error, ErrorKind, Result};
use crate::format::index::{IndexSegment, PackBlobs};
use crate::format::pending::DeletionPlan;
use crate::format::{Id, ObjectKind};
use crate::repo::Repository;

/// Blob entries per index segment or deletion plan written by prune.
pub(crate) const OBJECT_BLOBS: usize = 50_000;
/// A deletion plan whose write took longer than this is written again (repo-format §10.3).
const PUBLISH_BOUND: Duration = Duration::from_secs(60);

/// Writes packs as index segments or deletion plans of about [`OBJECT_BLOBS`] entries each.
pub(crate) struct Batcher<'r> {
    repo: &'r Repository,
    kind: ObjectKind,
    buf: Vec<PackBlobs>,
    sketches: Vec<(Id, Sketch)>,
    blobs: usize,
    written: Vec<Id>,
}

impl<'r> Batcher<'r> {
    pub(crate) fn new(repo: &'r Repository, kind: ObjectKind) -> Self {
        Batcher {
            repo,
            kind,
            buf: vec![],
            sketches: vec![],
            blobs: 0,
            written: vec![],
        }
    }

    /// Sketches to carry in the segments (written in batches like entries).
    pub(crate) fn push_sketches(&mut self, sk: Vec<(Id, Sketch)>) -> Result<()> {
        for chunk in sk.chunks(OBJECT_BLOBS) {
            self.blobs += chunk.len();
            self.sketches.extend_from_slice(chunk);
            if self.blobs >= OBJECT_BLOBS {
                self.write(vec![])?;
            }
        }
        Ok(())
    }

    pub(crate) fn push(&mut self, p: PackBlobs) -> Result<()> {
        self.blobs += p.blobs.len();
        self.buf.push(p);
        if self.blobs >= OBJECT_BLOBS {
            self.write(vec![])?;
        }
        Ok(())
    }

    /// Write what is left; a segment batch's last object lists `supersedes` (and is written
    /// even when empty, to carry that list). Returns the ids of every object written.
    pub(crate) fn finish(mut self, supersedes: Vec<Id>) -> Result<Vec<Id>> {
        if !self.buf.is_empty()
            || !self.sketches.is_empty()
            || (self.kind == ObjectKind::Index && !supersedes.is_empty())
        {
            self.write(supersedes)?;
        }
        Ok(self.written)
    }

    fn write(&mut self, supersedes: Vec<Id>) -> Result<()> {
        let packs = std::mem::take(&mut self.buf);
        self.blobs = 0;
        let id = if self.kind == ObjectKind::Pending {
            publish_plan(self.repo, packs)?
        } else {
            let seg = IndexSegment {
                supersedes,
                packs,
                sketches: std::mem::take(&mut self.sketches),
            };
            self.repo.save(&seg)?
        };
        self.written.push(id);
        Ok(())
    }
}

/// Write `packs` as one deletion plan. A plan whose write took longer than [`PUBLISH_BOUND`]
/// is written again with a new time (and the slow copy deleted), to keep the timing argument
/// of repo-format §10.4; after three slow writes prune gives up, deleting the last copy (its
/// packs are still indexed, so nothing is lost).
fn publish_plan(repo: &Repository, packs: Vec<PackBlobs>) -> Result<Id> {
    let mut slow: Option<Id> = None;
    for _ in 0..3 {
        let plan = DeletionPlan {
            created: jiff::Timestamp::now(),
            packs: packs.clone(),
        };
        let t = Instant::now();
        let id = repo.save(&plan)?;
        let took = t.elapsed();
        if let Some(old) = slow.take() {
            repo.store().delete(&format!("pending/{old}"))?;
        }
        if took <= PUBLISH_BOUND {
            return Ok(id);
        }
        tracing::warn!(plan = %id, secs = took.as_secs(), "writing the deletion plan was slow; writing it again");
        slow = Some(id);
    }
    if let Some(old) = slow {
        repo.store().delete(&format!("pending/{old}"))?;
    }
    Err(Error::new(
        ErrorKind::Temporary,
        "the storage is too slow to publish a deletion plan safely (over 60 s per write); nothing was deleted, run prune again later",
    ))
}

/// Delete objects, many at a time; objects already gone are fine.
pub(crate) fn delete_all(repo: &Repository, paths: Vec<String>) -> Result<()> {
    use futures::StreamExt;
    let store = repo.store();
    store.runtime().block_on(async {
        let mut s = futures::stream::iter(paths.into_iter().map(|p| async move { store.delete_async(&p).await }))
            .buffer_unordered(16);
        while let Some(r) = s.next().await {
            r?;
        }
        Ok(())
    })
}
