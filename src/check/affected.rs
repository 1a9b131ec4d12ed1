//! The last phase of `check`: which snapshots the damage found reaches (a damaged pack
//! directly or through a delta's base, a delta that could not be rebuilt), so that each
//! problem names what it costs and says what to do.

use std::collections::{BTreeMap, HashSet};

use super::{structure::for_each_chunk, Checker, Problem};
use crate::error::Result;
use crate::format::Id;
use crate::storage::pack_path;

/// For each damaged pack and each broken delta, the snapshots needing it.
#[derive(Default)]
struct Needs {
    packs: BTreeMap<Id, Vec<Id>>,
    deltas: BTreeMap<Id, Vec<Id>>,
}

impl Checker<'_, '_> {
    /// Report damaged packs and broken deltas with the snapshots they affect.
    pub(super) fn attribute(&mut self) -> Result<()> {
        if self.damaged_packs.is_empty() && self.broken_deltas.is_empty() {
            return Ok(());
        }
        let mut needs = self.needs();
        for (d, (msg, planned)) in std::mem::take(&mut self.broken_deltas) {
            let affects = needs.deltas.remove(&d).unwrap_or_default();
            if planned && affects.is_empty() {
                continue; // condemned garbage no snapshot needs: the next sweep deletes it
            }
            self.rep.errors.push(Problem {
                object: format!("chunk {d}"),
                message: msg,
                affects,
            });
        }
        for (p, msg) in std::mem::take(&mut self.damaged_packs) {
            let affects = needs.packs.remove(&p).unwrap_or_default();
            let message = if affects.is_empty() {
                format!("{msg}; no snapshot needs it (the next prune takes it out of the index)")
            } else {
                format!(
                    "{msg}; `dbbackup repair snapshots` removes what cannot be restored from the snapshots it affects"
                )
            };
            self.rep.errors.push(Problem {
                object: pack_path(&p),
                message,
                affects,
            });
        }
        Ok(())
    }

    /// Which snapshots need the damaged packs (directly, or for a delta's base) and the
    /// deltas that could not be rebuilt. A snapshot whose manifest cannot be read was
    /// reported by the snapshots phase.
    fn needs(&self) -> Needs {
        let (repo, index) = (self.session.repo(), self.session.index());
        let mut needs = Needs::default();
        for sid in &self.snaps {
            let Ok(m) = repo.load_manifest(sid) else { continue };
            let mut hit = HashSet::new();
            let mut hit_deltas = HashSet::new();
            let _ = for_each_chunk(self.session, &m.entries, |id, loc| {
                if self.broken_deltas.contains_key(id) {
                    hit_deltas.insert(*id);
                }
                let Some(l) = loc else { return };
                let base_packs = l
                    .bases
                    .iter()
                    .filter_map(|b| index.lookup(b).ok().flatten())
                    .map(|b| b.pack);
                for p in std::iter::once(l.pack).chain(base_packs) {
                    if self.damaged_packs.contains_key(&p) {
                        hit.insert(p);
                    }
                }
            });
            for p in hit {
                needs.packs.entry(p).or_default().push(*sid);
            }
            for d in hit_deltas {
                needs.deltas.entry(d).or_default().push(*sid);
            }
        }
        needs
    }
}
