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
use super::plan::{Fate, Indexed};

/// Where the closure finds a chunk: the copy the index names, and a copy only a deletion
/// plan names. The index cache answers in a run; the tests answer from a table.
pub(super) trait Lookup {
    /// The indexed copy of `id`.
    fn indexed(&self, id: &Id) -> Result<Option<BlobLocation>>;
    /// A copy of `id` in a pack a deletion plan condemns.
    fn planned(&self, id: &Id) -> Result<Option<BlobLocation>>;
}

impl Lookup for IndexCache {
    fn indexed(&self, id: &Id) -> Result<Option<BlobLocation>> {
        self.lookup_indexed(id)
    }
    fn planned(&self, id: &Id) -> Result<Option<BlobLocation>> {
        self.lookup_planned(id)
    }
}

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
struct Ctx<'a, L: Lookup> {
    index: &'a L,
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
    let (repo, segments) = (session.repo(), ix.segments.clone());
    let mut c = Ctx {
        index: session.index(),
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

impl<L: Lookup> Ctx<'_, L> {
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
            if let Some(l) = self.index.indexed(b)?.filter(plain_data) {
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
            let planned = self.index.planned(b)?;
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
            .indexed(&e.id)?
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

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::error::ErrorKind;
    use crate::format::index::{IndexSegment, PackBlobs};
    use crate::format::Encoding;

    fn id(n: u8) -> Id {
        Id([n; 32])
    }

    fn entry(chunk: u8, offset: u32, length: u32, bases: &[u8]) -> BlobEntry {
        BlobEntry {
            id: id(chunk),
            kind: BlobKind::Data,
            encoding: if bases.is_empty() {
                Encoding::Zstd
            } else {
                Encoding::ZstdDelta
            },
            offset,
            length,
            raw_length: length,
            bases: bases.iter().map(|&b| id(b)).collect(),
        }
    }

    /// The index as a table: chunk -> (pack, entry), indexed and planned copies apart.
    #[derive(Default)]
    struct Table {
        indexed: HashMap<Id, BlobLocation>,
        planned: HashMap<Id, BlobLocation>,
    }

    impl Lookup for Table {
        fn indexed(&self, id: &Id) -> Result<Option<BlobLocation>> {
            Ok(self.indexed.get(id).cloned())
        }
        fn planned(&self, id: &Id) -> Result<Option<BlobLocation>> {
            Ok(self.planned.get(id).cloned())
        }
    }

    /// A run over these packs (all in storage) with these chunks referenced and these fates;
    /// the table indexes every entry where its pack is.
    struct Run {
        _dir: tempfile::TempDir,
        live: LiveSet,
        ix: Indexed,
        fates: Vec<Fate>,
        sizes: BTreeMap<Id, u64>,
        table: Table,
    }

    fn run(packs: &[(u8, Vec<BlobEntry>)], referenced: &[u8], fates: Vec<Fate>) -> Run {
        let dir = tempfile::tempdir().unwrap();
        let live = LiveSet::create(dir.path()).unwrap();
        live.add(referenced.iter().map(|&c| id(c))).unwrap();
        let mut ix = Indexed::default();
        let mut table = Table::default();
        let mut packs_blobs = Vec::new();
        for (p, blobs) in packs {
            for e in blobs {
                table.indexed.insert(e.id, BlobLocation::of(&id(*p), e));
            }
            packs_blobs.push(PackBlobs {
                pack: id(*p),
                blobs: blobs.clone(),
            });
        }
        let seg = IndexSegment {
            supersedes: vec![],
            packs: packs_blobs,
            sketches: vec![],
        };
        ix.add_segment(id(200), seg, &live).unwrap();
        let sizes = packs.iter().map(|(p, _)| (id(*p), 1000)).collect();
        Run {
            _dir: dir,
            live,
            ix,
            fates,
            sizes,
            table,
        }
    }

    impl Run {
        /// Run the closure over delta entry `e` of pack number `o`.
        fn delta(&mut self, o: usize, e: &BlobEntry) -> Result<Closure> {
            let mut c = Ctx {
                index: &self.table,
                sizes: &self.sizes,
                ix: &mut self.ix,
                fates: &mut self.fates,
                live: &self.live,
                out: Closure::default(),
            };
            c.delta_entry(o, e)?;
            Ok(c.out)
        }
    }

    #[test]
    fn a_delta_that_stays_keeps_its_base_out_of_a_condemned_pack() {
        // Delta 1 (referenced) in pack 50 against chunk 2, which only pack 60 holds and
        // nothing references: pack 60 must be repacked with chunk 2, not deleted.
        let d = entry(1, 0, 30, &[2]);
        let mut r = run(
            &[(50, vec![d.clone()]), (60, vec![entry(2, 0, 100, &[])])],
            &[1],
            vec![Fate::Keep, Fate::Condemn],
        );
        let out = r.delta(0, &d).unwrap();
        assert_eq!(r.fates, [Fate::Keep, Fate::Repack]);
        assert_eq!(r.live.get(&id(2)).unwrap().map(|c| c.pack), Some(1));
        assert_eq!((r.ix.stats[1].live_blobs, r.ix.stats[1].live_bytes), (1, 100));
        assert_eq!((out.bases_kept, out.dangling), (1, 0));
    }

    #[test]
    fn an_unused_delta_whose_base_is_gone_is_dropped_from_its_pack() {
        let d = entry(1, 0, 30, &[2]);
        let mut r = run(&[(50, vec![d.clone(), entry(3, 30, 10, &[])])], &[3], vec![Fate::Keep]);
        let out = r.delta(0, &d).unwrap();
        assert_eq!(r.fates, [Fate::Repack]);
        assert_eq!((out.bases_kept, out.dangling), (0, 1));
    }

    #[test]
    fn a_needed_delta_whose_base_is_gone_stops_prune_unless_another_copy_serves() {
        let d = entry(1, 0, 30, &[2]);
        let mut r = run(&[(50, vec![d.clone()])], &[1], vec![Fate::Keep]);
        let e = r.delta(0, &d).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Corrupt);
        assert!(e.to_string().contains(&id(1).to_string()), "{e}");

        // A plain copy in pack 70, which the index prefers, takes the claim over.
        let plain = entry(1, 0, 80, &[]);
        let mut r = run(
            &[(50, vec![d.clone()]), (70, vec![plain.clone()])],
            &[1],
            vec![Fate::Keep, Fate::Keep],
        );
        r.table.indexed.insert(id(1), BlobLocation::of(&id(70), &plain));
        // The run read pack 50 first: it claimed chunk 1.
        assert_eq!(r.live.get(&id(1)).unwrap().map(|c| c.pack), Some(0));
        let out = r.delta(0, &d).unwrap();
        assert_eq!(r.live.get(&id(1)).unwrap().map(|c| (c.pack, c.delta)), Some((1, false)));
        assert_eq!((r.ix.stats[0].live_blobs, r.ix.stats[1].live_blobs), (0, 1));
        assert_eq!((out.moved, out.dangling), (1, 1));
    }

    #[test]
    fn a_base_only_a_deletion_plan_holds_is_adopted_into_the_new_index() {
        let d = entry(1, 0, 30, &[2]);
        let mut r = run(&[(50, vec![d.clone()])], &[1], vec![Fate::Keep]);
        let base = entry(2, 64, 100, &[]);
        r.table.planned.insert(id(2), BlobLocation::of(&id(80), &base));
        r.sizes.insert(id(80), 500);
        let out = r.delta(0, &d).unwrap();
        assert_eq!(r.fates, [Fate::Keep]);
        assert_eq!(out.adopted.get(&id(80)).map(|v| v.as_slice()), Some(&[base][..]));
        assert!(r.live.contains(&id(2)).unwrap());
        assert_eq!((out.bases_kept, out.dangling), (1, 0));
        // Pack 80 must still be in storage to be adopted from.
        let mut r = run(&[(50, vec![d.clone()])], &[1], vec![Fate::Keep]);
        r.table
            .planned
            .insert(id(2), BlobLocation::of(&id(80), &entry(2, 64, 100, &[])));
        assert_eq!(r.delta(0, &d).unwrap_err().kind(), ErrorKind::Corrupt);
    }
}
