//! Prune's second mark (repo-format §10.3 step 3): every delta blob that stays indexed after
//! this run keeps its bases indexed, plainly stored and not condemned, whether or not a
//! snapshot references the delta today, because tomorrow's snapshot may deduplicate against
//! it. Bases are plain (delta depth 1), so one pass over the index closes the set: a pack
//! kept whole keeps every delta it holds, a repacked pack only its claimed ones; a pack
//! needed only for bases is repacked, which copies just those bases and so adds no new
//! deltas to the index.

use std::collections::BTreeMap;

use crate::error::{Error, Result};
use crate::format::index::IndexSegment;
use crate::format::pack::BlobEntry;
use crate::format::{BlobKind, Id};
use crate::repo::index::{BlobLocation, IndexCache};
use crate::repo::objects::load_all;
use crate::repo::session::Session;

use super::liveset::{Claim, LiveSet, UNCLAIMED};
use super::{Fate, Indexed};

/// What the closure did.
#[derive(Debug, Default)]
pub(super) struct Closure {
    /// Bases kept only because a delta that stays indexed needs them.
    pub bases_kept: u64,
    /// Plain copies of bases that only packs condemned by an earlier plan hold: the new index
    /// names them (the packs then stay).
    pub adopted: BTreeMap<Id, Vec<BlobEntry>>,
    /// Deltas whose bases no pack holds any more, left out of the new index (their packs are
    /// repacked without them; a snapshot that references one is served by another copy).
    pub dangling: u64,
    /// Claims moved to another copy of the same chunk (a plain copy a delta needs as a base,
    /// or a copy that can be rebuilt in place of a delta that cannot).
    pub moved: u64,
}

/// The state the closure updates.
struct Ctx<'a> {
    index: &'a IndexCache,
    sizes: &'a BTreeMap<Id, u64>,
    ix: &'a mut Indexed,
    fates: &'a mut [Fate],
    live: &'a LiveSet,
    out: Closure,
}

/// Run the closure over the packs prune read, updating claims, pack tallies and fates: a
/// condemned pack that holds a base becomes repacked, a kept pack that holds a delta whose
/// bases are gone becomes repacked (without it). Fails when a delta a snapshot needs cannot be
/// rebuilt from any copy: prune then deletes nothing.
pub(super) fn keep_bases(
    session: &Session<'_>,
    ix: &mut Indexed,
    fates: &mut [Fate],
    live: &LiveSet,
    sizes: &BTreeMap<Id, u64>,
) -> Result<Closure> {
    let (repo, index) = (session.repo(), session.index());
    let segments = ix.segments.clone();
    let mut c = Ctx {
        index,
        sizes,
        ix,
        fates,
        live,
        out: Closure::default(),
    };
    load_all(repo, segments, |_, seg: IndexSegment| {
        for p in seg.packs {
            let Some(&o) = c.ix.ord.get(&p.pack) else { continue };
            for e in p.blobs.iter().filter(|e| !e.bases.is_empty()) {
                c.delta_entry(o as usize, e)?;
            }
        }
        Ok(())
    })?;
    Ok(c.out)
}

impl Ctx<'_> {
    /// Delta entry `e` of pack number `o`: if it stays indexed, secure its bases.
    fn delta_entry(&mut self, o: usize, e: &BlobEntry) -> Result<()> {
        let mine = self.live.get(&e.id)?.is_some_and(|c| c.pack == o as u32);
        let stays = match self.fates[o] {
            Fate::Keep => true,
            Fate::Repack => mine,
            Fate::Condemn => false,
        };
        if !stays || self.secure(&e.bases)? {
            return Ok(());
        }
        // Its bases are gone: it cannot stay in the index.
        let pack = self.ix.packs[o];
        if mine {
            self.rescue(o, e)?;
        } else {
            tracing::warn!(chunk = %e.id, pack = %pack, "unused delta whose bases no pack holds: its pack is repacked without it");
        }
        self.out.dangling += 1;
        if self.fates[o] == Fate::Keep {
            self.fates[o] = Fate::Repack;
        }
        Ok(())
    }

    /// Make every base in `bases` stay plainly available: claimed in a plain copy prune keeps,
    /// or adopted from a pack an earlier plan condemned. False when one is nowhere.
    fn secure(&mut self, bases: &[Id]) -> Result<bool> {
        for b in bases {
            if let Some(l) = self.index.lookup_indexed(b)?.filter(plain_data) {
                match self.ix.ord.get(&l.pack) {
                    Some(&q) if self.sizes.contains_key(&l.pack) => {
                        self.claim_plain(b, q as usize, &l)?;
                        continue;
                    }
                    Some(_) => {} // its pack is missing from storage
                    // A segment written since prune read the index names it; it stays.
                    None => continue,
                }
            }
            let planned = self.index.lookup_planned(b)?;
            if let Some(l) = planned.filter(|l| plain_data(l) && self.sizes.contains_key(&l.pack)) {
                // Only a pack an older plan condemns holds it: the new index names that copy
                // (so the plan's sweep keeps the pack), and it is a root (so this one's does).
                let list = self.out.adopted.entry(l.pack).or_default();
                if !list.iter().any(|e| e.offset == l.offset) {
                    list.push(super::sweep::entry_at(b, &l));
                    self.out.bases_kept += 1;
                }
                self.live.add([*b])?;
                continue;
            }
            return Ok(false);
        }
        Ok(true)
    }

    /// Base `b` must be claimed by a plain copy: the one at `l` in pack number `q`, unless a
    /// plain copy is claimed already.
    fn claim_plain(&mut self, b: &Id, q: usize, l: &BlobLocation) -> Result<()> {
        let cur = self.live.get(b)?;
        match cur {
            Some(c) if c.claimed() && !c.delta => return Ok(()),
            Some(c) if c.claimed() => {
                self.unclaim(c);
                self.out.moved += 1;
            }
            Some(_) => {}
            None => self.out.bases_kept += 1,
        }
        let claim = Claim {
            pack: q as u32,
            delta: false,
            length: l.length,
            entry_len: entry_len(l),
        };
        self.live.set(b, claim)?;
        self.take(claim);
        Ok(())
    }

    /// Delta `e` of pack number `o` is referenced but its bases are gone: move its claim to
    /// the copy the index prefers, when that is another one that can be rebuilt.
    fn rescue(&mut self, o: usize, e: &BlobEntry) -> Result<()> {
        let pack = self.ix.packs[o];
        let other = self
            .index
            .lookup_indexed(&e.id)?
            .filter(|l| !(l.pack == pack && l.offset == e.offset));
        if let Some(l) = other {
            if l.bases.is_empty() || self.secure(&l.bases)? {
                let claim = match self.ix.ord.get(&l.pack) {
                    Some(&q) => Claim {
                        pack: q,
                        delta: !l.bases.is_empty(),
                        length: l.length,
                        entry_len: entry_len(&l),
                    },
                    // Named by a segment written since prune read the index: it stays there.
                    None => Claim {
                        pack: UNCLAIMED,
                        delta: false,
                        length: 0,
                        entry_len: 0,
                    },
                };
                if let Some(c) = self.live.get(&e.id)? {
                    self.unclaim(c);
                }
                self.live.set(&e.id, claim)?;
                self.take(claim);
                self.out.moved += 1;
                tracing::warn!(chunk = %e.id, from = %pack, to = %l.pack, "a referenced delta whose bases are gone is kept through another copy");
                return Ok(());
            }
        }
        let base = e.bases.first().copied().unwrap_or_default();
        Err(Error::corrupt(
            format!("chunk {}", e.id),
            format!(
                "snapshots need this chunk, stored in data/{pack} as a delta against chunk {base}, which no pack holds; prune stops without deleting anything: run `dbbackup check` to see which snapshots are affected, and `dbbackup repair snapshots` to remove what cannot be restored"
            ),
        ))
    }

    /// Count claim `c` in its pack's tally; a condemned pack that gains a claim is repacked.
    fn take(&mut self, c: Claim) {
        let Some(st) = self.ix.stats.get_mut(c.pack as usize) else {
            return;
        };
        st.live_blobs += 1;
        st.live_bytes += u64::from(c.length);
        st.live_entry_bytes += u64::from(c.entry_len);
        if let Some(f) = self.fates.get_mut(c.pack as usize) {
            if *f == Fate::Condemn {
                *f = Fate::Repack;
            }
        }
    }

    /// Remove claim `c` from its pack's tally.
    fn unclaim(&mut self, c: Claim) {
        let Some(st) = self.ix.stats.get_mut(c.pack as usize) else {
            return;
        };
        st.live_blobs = st.live_blobs.saturating_sub(1);
        st.live_bytes = st.live_bytes.saturating_sub(u64::from(c.length));
        st.live_entry_bytes = st.live_entry_bytes.saturating_sub(u64::from(c.entry_len));
    }
}

/// Bytes the entry of the blob at `l` takes in a pack header.
fn entry_len(l: &BlobLocation) -> u16 {
    let bases = if l.bases.is_empty() { 0 } else { 1 + 32 * l.bases.len() };
    (crate::format::pack::ENTRY_LEN + bases) as u16
}

fn plain_data(l: &BlobLocation) -> bool {
    l.kind == BlobKind::Data && l.bases.is_empty()
}
