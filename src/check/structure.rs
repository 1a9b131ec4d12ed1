//! The structure phases of `check`: index segments read from storage (and the deltas among
//! them whose bases are gone), and every snapshot's manifest, registry copy and chunks.

use std::collections::HashSet;

use super::{Checker, Problem, Report};
use crate::error::{ErrorKind, Result};
use crate::format::index::IndexSegment;
use crate::format::snapshot::{Entry, Manifest, Source};
use crate::format::{BlobKind, Id, ObjectKind};
use crate::repo::index::BlobLocation;
use crate::repo::session::Session;
use crate::repo::{ManifestCopy, Repository};

impl Checker<'_, '_> {
    /// Every snapshot's manifest and registry copy must be intact, its chunks indexed.
    pub(super) fn snapshots(&mut self) -> Result<()> {
        let repo = self.session.repo();
        let (primaries, copies) = repo.snapshot_listing()?;
        self.snaps = primaries.union(&copies).copied().collect();
        self.snaps.sort();
        for sid in &self.snaps {
            self.rep.snapshots += 1;
            let listed = (primaries.contains(sid), copies.contains(sid));
            let Some(m) = check_manifest(repo, &mut self.rep, sid, listed) else {
                continue;
            };
            if let Source::Physical(p) = &m.source {
                self.bases.push((*sid, (**p).clone()));
            }
            let (rep, missing, gone) = (&mut self.rep, &mut self.missing_chunks, &self.gone);
            let dangling = &mut self.dangling_affects;
            for_each_chunk(self.session, &m.entries, |id, loc| {
                if let Some(a) = dangling.get_mut(id) {
                    if a.last() != Some(sid) {
                        a.push(*sid);
                    }
                }
                let message = match loc {
                    None => "referenced by a snapshot but in no index segment",
                    Some(l) if gone.contains(&l.pack) => "referenced by a snapshot but only held by a deleted pack",
                    Some(_) => return,
                };
                if missing.insert(*id) {
                    rep.errors.push(Problem {
                        object: format!("chunk {id}"),
                        message: message.into(),
                        affects: vec![*sid],
                    });
                }
            })
            .unwrap_or_else(|e| self.rep.damage(format!("snapshots/{sid}"), &e));
        }
        Ok(())
    }
}

/// Read both copies of snapshot `sid`'s manifest (those the listings hold: primary,
/// registry), record what is wrong with them in `rep`, and return the manifest when either
/// copy is intact.
fn check_manifest(repo: &Repository, rep: &mut Report, sid: &Id, listed: (bool, bool)) -> Option<Manifest> {
    let mut found = None;
    for (place, listed) in [(ManifestCopy::Primary, listed.0), (ManifestCopy::Registry, listed.1)] {
        // Not listed, or gone since the listing: missing.
        match listed.then(|| repo.load_manifest_from(sid, place)) {
            Some(Ok(m)) => {
                found.get_or_insert(m);
            }
            None => missing_manifest(rep, sid, place),
            Some(Err(e)) if e.kind() == ErrorKind::NotFound => missing_manifest(rep, sid, place),
            Some(Err(e)) => rep.errors.push(Problem {
                object: place.path(sid),
                message: e.to_string(),
                affects: vec![*sid],
            }),
        }
    }
    found
}

/// A missing manifest is damage (its registry copy stands in); a missing registry copy is a
/// warning (an interrupted commit or forget leaves one).
fn missing_manifest(rep: &mut Report, sid: &Id, place: ManifestCopy) {
    let (message, damage) = match place {
        ManifestCopy::Primary => (
            "snapshot manifest is missing; its registry copy is intact (restore uses it, the next prune writes the manifest again)",
            true,
        ),
        ManifestCopy::Registry => (
            "registry copy of the manifest is missing (a snapshot or forget was interrupted, or the copy was lost); the next prune writes it again",
            false,
        ),
    };
    let p = Problem {
        object: place.path(sid),
        message: message.into(),
        affects: if damage { vec![*sid] } else { vec![] },
    };
    if damage {
        rep.errors.push(p)
    } else {
        rep.warnings.push(p)
    }
}

/// An indexed delta whose base no index segment holds plainly.
pub(super) struct Dangling {
    pub(super) delta: Id,
    pub(super) pack: Id,
    pub(super) base: Id,
    /// The segment naming the delta.
    segment: Id,
}

/// Read every index segment from storage: the packs they name, and the deltas among their
/// entries whose bases no segment holds as plainly stored data (the cache, synced after the
/// listing, answers for the bases). Segments another segment supersedes are left out of the
/// latter: an interrupted prune leaves them, their content is in the superseding segments and
/// the deletion plan, and the next prune deletes them (in any order, so for a while one may
/// name a delta whose base's segment is gone). A segment that vanishes while being read was
/// replaced by a concurrent prune: the listing is read again.
pub(super) fn read_segments(session: &Session<'_>, rep: &mut Report) -> Result<(HashSet<Id>, Vec<Dangling>)> {
    let (repo, index) = (session.repo(), session.index());
    let mut attempt = 0;
    'listing: loop {
        attempt += 1;
        let ids = repo.list_ids(ObjectKind::Index)?;
        index.sync(repo)?;
        let mut packs: HashSet<Id> = HashSet::new();
        let mut dangling = Vec::new();
        let mut damaged = Vec::new();
        let mut superseded: HashSet<Id> = HashSet::new();
        for id in &ids {
            let seg = match repo.load::<IndexSegment>(id) {
                Ok(seg) => seg,
                Err(e) if e.kind() == ErrorKind::NotFound && attempt < 3 => continue 'listing,
                Err(e) => {
                    damaged.push((format!("index/{id}"), e));
                    continue;
                }
            };
            superseded.extend(seg.supersedes.iter().filter(|s| *s != id));
            for p in seg.packs {
                for e in p.blobs.iter().filter(|e| !e.bases.is_empty()) {
                    for b in &e.bases {
                        let plain = index
                            .lookup_indexed(b)?
                            .is_some_and(|l| l.kind == BlobKind::Data && l.bases.is_empty());
                        if !plain {
                            dangling.push(Dangling {
                                delta: e.id,
                                pack: p.pack,
                                base: *b,
                                segment: *id,
                            });
                        }
                    }
                }
                packs.insert(p.pack);
            }
        }
        dangling.retain(|d| !superseded.contains(&d.segment));
        rep.index_segments = ids.len() as u64;
        for (object, e) in damaged {
            rep.damage(object, &e);
        }
        return Ok((packs, dangling));
    }
}

/// Visit every chunk of every entry of `m` (content lists are read and verified), and the
/// base of every delta among them.
pub(super) fn for_each_chunk(
    session: &Session<'_>,
    entries: &[Entry],
    mut f: impl FnMut(&Id, Option<BlobLocation>),
) -> Result<()> {
    let (repo, index) = (session.repo(), session.index());
    for e in entries {
        for lid in &e.content {
            // The list itself first, so a caller learns where it lives even when it is damaged.
            f(lid, index.lookup(lid)?);
            let list = repo.store().runtime().block_on(crate::repo::blob_reader::fetch_blob(
                session,
                *lid,
                BlobKind::ContentList,
            ))?;
            for rec in list.chunks_exact(36) {
                let id = Id::from_slice(&rec[..32]).unwrap_or_default();
                let loc = index.lookup(&id)?;
                let bases = loc.as_ref().map(|l| l.bases.clone()).unwrap_or_default();
                f(&id, loc);
                // A delta needs its bases as much as the snapshot needs the delta, plainly
                // stored (a base that is only held as a delta cannot be used).
                for b in bases {
                    f(&b, index.lookup(&b)?.filter(|l| l.bases.is_empty()));
                }
            }
        }
    }
    Ok(())
}
