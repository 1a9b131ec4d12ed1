//! Prune's plan (repo-format §10.3 step 2 and the fates of step 3): the index as prune reads
//! it, each referenced chunk claimed by the first pack holding it, and what becomes of every
//! indexed pack (kept, condemned whole, or repacked) under the `max_unused` threshold. Pure
//! bookkeeping over the reference set: nothing here reads or writes the repository.

use std::collections::{BTreeMap, HashMap, HashSet};

use super::liveset::LiveSet;
use super::{MaxUnused, PruneReport};
use crate::error::{Error, Result};
use crate::format::index::IndexSegment;
use crate::format::pack::BlobEntry;
use crate::format::Id;
use crate::storage::pack_path;

/// Bytes of a pack that are neither blobs nor entries (repo-format §6): the sealed header's
/// nonce and tag, its entry count (u32), and the trailer.
pub(super) const PACK_OVERHEAD: u64 = (crate::crypto::OVERHEAD + 4 + crate::format::pack::TRAILER_LEN) as u64;

/// Per-pack tally from the index.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct PackStat {
    pub(super) live_blobs: u32,
    /// Bytes the live blobs' entries take in the pack header (46, or 78 for a delta).
    pub(super) live_entry_bytes: u64,
    pub(super) live_bytes: u64,
}

impl PackStat {
    /// Bytes of the pack that referenced chunks use.
    fn used(&self) -> u64 {
        self.live_bytes + self.live_entry_bytes
    }
}

/// What happens to an indexed pack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Fate {
    Keep,
    Condemn,
    Repack,
}

/// The index as prune read it: packs by ordinal (the order first seen), with their tallies.
#[derive(Default)]
pub(super) struct Indexed {
    pub(super) segments: Vec<Id>,
    /// Ids the segments list as superseded.
    pub(super) superseded: HashSet<Id>,
    pub(super) packs: Vec<Id>,
    pub(super) ord: HashMap<Id, u32>,
    pub(super) stats: Vec<PackStat>,
    /// Packs more than one segment names.
    pub(super) multi: HashSet<Id>,
}

impl Indexed {
    /// Take in segment `sid`: each of its packs claims the referenced chunks in `live` that no
    /// pack read before claimed.
    pub(super) fn add_segment(&mut self, sid: Id, seg: IndexSegment, live: &LiveSet) -> Result<()> {
        self.segments.push(sid);
        self.superseded.extend(seg.supersedes.iter().filter(|s| **s != sid));
        for p in seg.packs {
            let o = self.ordinal(p.pack)?;
            let mine = live.claim(o, &p.blobs)?;
            let st = self
                .stats
                .get_mut(o as usize)
                .ok_or_else(|| Error::general("prune's pack table lost a pack"))?;
            for (b, m) in p.blobs.iter().zip(mine) {
                if m {
                    st.live_blobs += 1;
                    st.live_entry_bytes += b.encoded_len() as u64;
                    st.live_bytes += u64::from(b.length);
                }
            }
        }
        Ok(())
    }

    /// The ordinal of `pack`, numbering it when it is new. A pack named by several segments
    /// (an interrupted prune; a revival naming some of its entries) is one pack with the
    /// union of their entries.
    fn ordinal(&mut self, pack: Id) -> Result<u32> {
        if let Some(&o) = self.ord.get(&pack) {
            self.multi.insert(pack);
            return Ok(o);
        }
        let o = u32::try_from(self.packs.len()).map_err(|_| Error::general("too many packs"))?;
        self.ord.insert(pack, o);
        self.packs.push(pack);
        self.stats.push(PackStat::default());
        Ok(o)
    }
}

/// First fates: condemn packs nothing claims, repack the most wasteful partly used packs until
/// the rest is within `max_unused`, keep the others.
pub(super) fn decide_fates(ix: &Indexed, sizes: &BTreeMap<Id, u64>, max_unused: MaxUnused) -> Vec<Fate> {
    let mut fates = vec![Fate::Keep; ix.packs.len()];
    let mut partly: Vec<(usize, u64, u64)> = Vec::new(); // (ordinal, unused, size)
    let mut used_all = 0u64;
    for (o, (pack, st)) in ix.packs.iter().zip(&ix.stats).enumerate() {
        let Some(&size) = sizes.get(pack) else {
            fates[o] = Fate::Condemn; // missing: settle_fates refuses if it was needed
            continue;
        };
        used_all += st.used();
        let unused = size.saturating_sub(st.used() + PACK_OVERHEAD);
        if st.live_blobs == 0 {
            fates[o] = Fate::Condemn;
        } else if unused > 0 {
            partly.push((o, unused, size));
        }
    }
    let mut left = partly.iter().map(|p| p.1).sum::<u64>();
    let limit = max_unused.limit(used_all);
    // Most wasteful packs first (by unused fraction), until the rest is within the limit.
    partly.sort_by(|a, b| (b.1 as f64 / b.2 as f64).total_cmp(&(a.1 as f64 / a.2 as f64)));
    for &(o, unused, _) in &partly {
        if left <= limit {
            break;
        }
        fates[o] = Fate::Repack;
        left -= unused;
    }
    fates
}

/// Final fates after the base closure: a pack left without claims is condemned; a pack that
/// holds a claimed chunk but is missing from storage stops the prune; a pack to repack whose
/// every byte is claimed (a pack of bases the closure turned from condemned to repacked, which
/// an earlier prune wrote with just those bases) is kept: copying it would gain nothing, and
/// every prune would copy it again.
pub(super) fn settle_fates(ix: &Indexed, fates: &mut [Fate], sizes: &BTreeMap<Id, u64>) -> Result<()> {
    for ((pack, st), fate) in ix.packs.iter().zip(&ix.stats).zip(fates.iter_mut()) {
        let Some(&size) = sizes.get(pack) else {
            if st.live_blobs > 0 {
                return Err(Error::corrupt(
                    pack_path(pack),
                    "missing, yet snapshots need chunks only it holds; prune refuses to run: see `dbbackup check`",
                ));
            }
            *fate = Fate::Condemn;
            continue;
        };
        if st.live_blobs == 0 {
            *fate = Fate::Condemn;
        } else if *fate == Fate::Repack && size <= st.used() + PACK_OVERHEAD {
            *fate = Fate::Keep;
        }
    }
    Ok(())
}

/// Fill the report's figures of used, unused and repacked space from the final fates.
pub(super) fn account(ix: &Indexed, fates: &[Fate], sizes: &BTreeMap<Id, u64>, rep: &mut PruneReport) {
    for ((pack, st), fate) in ix.packs.iter().zip(&ix.stats).zip(fates) {
        let Some(&size) = sizes.get(pack) else { continue };
        rep.used_bytes += st.used();
        rep.unused_bytes += if st.live_blobs == 0 {
            size
        } else {
            size.saturating_sub(st.used() + PACK_OVERHEAD)
        };
        match fate {
            Fate::Condemn => {
                rep.unused_packs += 1;
                rep.unused_packs_bytes += size;
            }
            Fate::Repack => {
                rep.repacked_packs += 1;
                rep.repacked_bytes += size;
            }
            Fate::Keep => {}
        }
    }
}

/// Bytes a pack's entries account for (for reports when the pack's size is unknown).
pub(super) fn entries_bytes(blobs: &[BlobEntry]) -> u64 {
    blobs
        .iter()
        .map(|b| u64::from(b.length) + b.encoded_len() as u64)
        .sum::<u64>()
        + PACK_OVERHEAD
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;
    use crate::format::index::PackBlobs;
    use crate::format::{BlobKind, Encoding};

    fn id(n: u8) -> Id {
        Id([n; 32])
    }

    fn entry(chunk: u8, offset: u32, length: u32) -> BlobEntry {
        BlobEntry {
            id: id(chunk),
            kind: BlobKind::Data,
            encoding: Encoding::Zstd,
            offset,
            length,
            raw_length: length,
            bases: vec![],
        }
    }

    fn segment(supersedes: Vec<Id>, packs: Vec<(u8, Vec<BlobEntry>)>) -> IndexSegment {
        IndexSegment {
            supersedes,
            packs: packs
                .into_iter()
                .map(|(p, blobs)| PackBlobs { pack: id(p), blobs })
                .collect(),
            sketches: vec![],
        }
    }

    /// An index of packs 100, 101, ... with these (live blobs, live bytes) tallies.
    fn indexed(stats: &[(u32, u64)]) -> Indexed {
        let mut ix = Indexed::default();
        for (o, &(live_blobs, live_bytes)) in stats.iter().enumerate() {
            ix.ordinal(id(100 + o as u8)).unwrap();
            ix.stats[o] = PackStat {
                live_blobs,
                live_entry_bytes: 46 * u64::from(live_blobs),
                live_bytes,
            };
        }
        ix
    }

    #[test]
    fn a_pack_is_its_blobs_its_entries_and_the_overhead() {
        let keys = crate::crypto::MasterKey::from_bytes([7; 32]).derive();
        let entries = [entry(1, 0, 100), entry(2, 100, 30)];
        let mut pack = vec![0u8; 130];
        crate::format::pack::finish_pack(&keys, &mut pack, &entries).unwrap();
        let used = entries
            .iter()
            .map(|e| u64::from(e.length) + e.encoded_len() as u64)
            .sum::<u64>();
        assert_eq!(pack.len() as u64, used + PACK_OVERHEAD);
        assert_eq!(entries_bytes(&entries), pack.len() as u64);
    }

    #[test]
    fn each_referenced_chunk_is_claimed_once_by_the_first_pack_read() {
        let dir = tempfile::tempdir().unwrap();
        let live = LiveSet::create(dir.path()).unwrap();
        live.add([id(1), id(2), id(3)]).unwrap();
        let mut ix = Indexed::default();
        // Chunk 9 is referenced by nothing; chunk 1 is in two packs; pack 50 in two segments.
        let first = segment(vec![], vec![(50, vec![entry(1, 0, 100), entry(9, 100, 40)])]);
        let second = segment(
            vec![id(70), id(71)],
            vec![
                (60, vec![entry(1, 0, 100), entry(2, 100, 30)]),
                (50, vec![entry(3, 140, 20)]),
            ],
        );
        ix.add_segment(id(70), first, &live).unwrap();
        ix.add_segment(id(71), second, &live).unwrap();
        assert_eq!(ix.packs, vec![id(50), id(60)]);
        assert_eq!(ix.segments, vec![id(70), id(71)]);
        // A segment never supersedes itself.
        assert_eq!(ix.superseded, HashSet::from([id(70)]));
        assert_eq!(ix.multi, HashSet::from([id(50)]));
        let st = |o: usize| {
            (
                ix.stats[o].live_blobs,
                ix.stats[o].live_bytes,
                ix.stats[o].live_entry_bytes,
            )
        };
        assert_eq!(st(0), (2, 120, 92));
        assert_eq!(st(1), (1, 30, 46));
        assert_eq!(live.get(&id(1)).unwrap().map(|c| c.pack), Some(0));
        assert_eq!(live.get(&id(9)).unwrap(), None);
    }

    #[test]
    fn unused_packs_are_condemned_and_the_most_wasteful_repacked_first() {
        // Pack 100 unused; 101 half unused (used 100 + 46 + 52 of 396); 102 a little unused.
        let ix = indexed(&[(0, 0), (1, 100), (1, 300)]);
        let sizes = BTreeMap::from([(id(100), 500), (id(101), 396), (id(102), 418)]);
        use Fate::*;
        assert_eq!(
            decide_fates(&ix, &sizes, MaxUnused::Percent(0.0)),
            [Condemn, Repack, Repack]
        );
        // 198 + 20 unused: a budget of 20 leaves the smaller waste where it is.
        assert_eq!(decide_fates(&ix, &sizes, MaxUnused::Bytes(20)), [Condemn, Repack, Keep]);
        assert_eq!(decide_fates(&ix, &sizes, MaxUnused::Bytes(218)), [Condemn, Keep, Keep]);
        assert_eq!(decide_fates(&ix, &sizes, MaxUnused::Unlimited), [Condemn, Keep, Keep]);
        let mut rep = PruneReport::default();
        account(&ix, &[Condemn, Repack, Keep], &sizes, &mut rep);
        assert_eq!((rep.used_bytes, rep.unused_bytes), (146 + 346, 500 + 198 + 20));
        assert_eq!((rep.unused_packs, rep.unused_packs_bytes), (1, 500));
        assert_eq!((rep.repacked_packs, rep.repacked_bytes), (1, 396));
    }

    #[test]
    fn settling_keeps_full_packs_and_refuses_a_needed_pack_that_is_missing() {
        // Pack 100 is fully used (a pack of bases an earlier prune wrote); 101 lost its
        // claims to the closure; 102 is missing from storage and unused.
        let ix = indexed(&[(1, 100), (0, 0), (0, 0)]);
        let sizes = BTreeMap::from([(id(100), 198), (id(101), 300)]);
        let mut fates = [Fate::Repack, Fate::Repack, Fate::Keep];
        settle_fates(&ix, &mut fates, &sizes).unwrap();
        assert_eq!(fates, [Fate::Keep, Fate::Condemn, Fate::Condemn]);
        // Missing, yet a claimed chunk lives only there: prune must stop.
        let ix = indexed(&[(1, 100), (2, 10)]);
        let mut fates = [Fate::Keep, Fate::Condemn];
        let sizes = BTreeMap::from([(id(100), 198)]);
        let e = settle_fates(&ix, &mut fates, &sizes).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Corrupt);
        assert!(e.to_string().contains(&pack_path(&id(101))), "{e}");
    }
}
