//! Questions the index cache answers (the other half of `IndexCache`): where a chunk is
//! (indexed, or only in a pack a deletion plan condemns), which stored chunks resemble a new
//! one (delta bases), whether a chunk may be deduplicated against, and what the packs are.

use super::*;

impl IndexCache {
    /// Where is chunk `id`? Index segments first, then deletion plans (their packs still
    /// exist while a plan names them). `None` when the repository does not hold it.
    pub fn lookup(&self, id: &Id) -> Result<Option<BlobLocation>> {
        let tx = self.db.begin_read().map_err(|e| db_err("read", e))?;
        for (table, bases) in [(BLOBS, DELTA_BASES), (PLAN_BLOBS, PLAN_DELTA_BASES)] {
            let blobs = tx.open_table(table).map_err(|e| db_err("read", e))?;
            if let Some(v) = blobs.get(id.0).map_err(|e| db_err("read", e))? {
                return Self::location(&tx, bases, id, &v.value()).map(Some);
            }
        }
        Ok(None)
    }

    /// Where an index segment (not a plan) puts chunk `id`.
    pub fn lookup_indexed(&self, id: &Id) -> Result<Option<BlobLocation>> {
        self.lookup_in(BLOBS, DELTA_BASES, id)
    }

    /// Where a deletion plan (not an index segment) puts chunk `id`: a plainly stored copy
    /// when a plan holds one.
    pub fn lookup_planned(&self, id: &Id) -> Result<Option<BlobLocation>> {
        self.lookup_in(PLAN_BLOBS, PLAN_DELTA_BASES, id)
    }

    fn lookup_in(
        &self,
        table: TableDefinition<[u8; 32], [u8; 22]>,
        bases: TableDefinition<[u8; 32], &[u8]>,
        id: &Id,
    ) -> Result<Option<BlobLocation>> {
        let tx = self.db.begin_read().map_err(|e| db_err("read", e))?;
        let blobs = tx.open_table(table).map_err(|e| db_err("read", e))?;
        match blobs.get(id.0).map_err(|e| db_err("read", e))? {
            Some(v) => Self::location(&tx, bases, id, &v.value()).map(Some),
            None => Ok(None),
        }
    }

    fn location(
        tx: &redb::ReadTransaction,
        bases_table: TableDefinition<[u8; 32], &[u8]>,
        id: &Id,
        v: &[u8; 22],
    ) -> Result<BlobLocation> {
        let inconsistent = || Error::new(ErrorKind::Io, "local index cache is inconsistent; delete it to rebuild");
        let packs = tx.open_table(PACK_ID).map_err(|e| db_err("read", e))?;
        let pack = packs
            .get(pack_no(v))
            .map_err(|e| db_err("read", e))?
            .map(|p| Id(p.value()))
            .ok_or_else(inconsistent)?;
        let (Some(kind), Some(encoding)) = (BlobKind::from_u8(v[8]), Encoding::from_u8(v[9])) else {
            return Err(inconsistent());
        };
        let bases = if encoding == Encoding::ZstdDelta {
            let t = tx.open_table(bases_table).map_err(|e| db_err("read", e))?;
            let b = t.get(id.0).map_err(|e| db_err("read", e))?.ok_or_else(inconsistent)?;
            let ids = b.value().chunks(32).map(Id::from_slice).collect::<Option<Vec<_>>>();
            ids.filter(|v| !v.is_empty()).ok_or_else(inconsistent)?
        } else {
            Vec::new()
        };
        Ok(BlobLocation {
            pack,
            kind,
            encoding,
            offset: u32_at(v, 10),
            length: u32_at(v, 14),
            raw_length: u32_at(v, 18),
            bases,
        })
    }

    /// Stored chunks that a chunk with sketch `sk` may be stored as a delta against: the
    /// chunks sharing super-features with it, most shared first (a chunk that is itself a
    /// delta stands for its bases), each plainly stored data that a writer may deduplicate
    /// against (§10.1). At most `max` bases of at most `max_bytes` plaintext in all.
    pub fn find_bases(&self, sk: &Sketch, max: usize, max_bytes: u64) -> Result<BaseMatch> {
        let tx = self.db.begin_read().map_err(|e| db_err("read", e))?;
        let t = tx.open_table(SKETCHES).map_err(|e| db_err("read", e))?;
        let mut found: Vec<(Id, usize)> = Vec::new();
        for f in &sk.0 {
            if let Some(v) = t.get(*f).map_err(|e| db_err("read", e))? {
                let id = Id(v.value());
                match found.iter_mut().find(|(c, _)| *c == id) {
                    Some((_, n)) => *n += 1,
                    None => found.push((id, 1)),
                }
            }
        }
        drop(t);
        drop(tx);
        // Most shared super-features first; ties keep the order of the pieces.
        found.sort_by_key(|c| std::cmp::Reverse(c.1));
        let mut out: Vec<(Id, BlobLocation)> = Vec::new();
        let mut predecessor = None;
        let mut bytes = 0u64;
        for (cand, _) in found.into_iter().take(4 * max) {
            let Some(loc) = self.lookup_indexed(&cand)? else {
                continue;
            };
            if out.is_empty() && predecessor.is_none() && !loc.bases.is_empty() {
                predecessor = Some((cand, loc.clone()));
            }
            let bases = if loc.bases.is_empty() { vec![cand] } else { loc.bases };
            for b in bases {
                if out.len() == max || out.iter().any(|(x, _)| *x == b) {
                    continue;
                }
                let Some(l) = self.lookup_indexed(&b)? else {
                    continue;
                };
                let fits = bytes + u64::from(l.raw_length) <= max_bytes;
                if fits && l.kind == BlobKind::Data && l.bases.is_empty() && self.usable(&b)? {
                    bytes += u64::from(l.raw_length);
                    out.push((b, l));
                }
            }
        }
        Ok(BaseMatch {
            bases: out,
            predecessor,
        })
    }

    /// May a writer deduplicate against chunk `id` (repo-format §10.1)? Only when an index
    /// segment names it in a pack that no deletion plan condemns and, when that copy is a
    /// delta, each of its bases is plainly stored data named the same way: a delta is only
    /// as restorable as its bases, so it is reused by the same rule a plain chunk is.
    pub fn usable(&self, id: &Id) -> Result<bool> {
        Ok(self.usable_where(id)?.is_some())
    }

    /// [`IndexCache::usable`], telling where: the numbers of the packs holding the chunk's
    /// copy and, for a delta, its bases ([`IndexCache::pack_ids`] names them).
    pub fn usable_where(&self, id: &Id) -> Result<Option<Vec<u64>>> {
        let tx = self.db.begin_read().map_err(|e| db_err("read", e))?;
        let blobs = tx.open_table(BLOBS).map_err(|e| db_err("read", e))?;
        let condemned = tx.open_table(CONDEMNED).map_err(|e| db_err("read", e))?;
        let live =
            |v: &[u8; 22]| -> Result<bool> { Ok(condemned.get(pack_no(v)).map_err(|e| db_err("read", e))?.is_none()) };
        let Some(v) = blobs.get(id.0).map_err(|e| db_err("read", e))?.map(|v| v.value()) else {
            return Ok(None);
        };
        if !live(&v)? {
            return Ok(None);
        }
        let mut packs = vec![pack_no(&v)];
        if v[9] != Encoding::ZstdDelta as u8 {
            return Ok(Some(packs));
        }
        let deltas = tx.open_table(DELTA_BASES).map_err(|e| db_err("read", e))?;
        let Some(bases) = deltas.get(id.0).map_err(|e| db_err("read", e))? else {
            return Ok(None);
        };
        for b in bases.value().chunks(32) {
            let Some(b) = Id::from_slice(b) else { return Ok(None) };
            let Some(bv) = blobs.get(b.0).map_err(|e| db_err("read", e))?.map(|v| v.value()) else {
                return Ok(None);
            };
            let plain_data = bv[8] == BlobKind::Data as u8 && bv[9] != Encoding::ZstdDelta as u8;
            if !plain_data || !live(&bv)? {
                return Ok(None);
            }
            packs.push(pack_no(&bv));
        }
        Ok(Some(packs))
    }

    /// The ids of the packs numbered `numbers` (from [`IndexCache::usable_where`]).
    pub fn pack_ids(&self, numbers: impl IntoIterator<Item = u64>) -> Result<Vec<Id>> {
        let tx = self.db.begin_read().map_err(|e| db_err("read", e))?;
        let t = tx.open_table(PACK_ID).map_err(|e| db_err("read", e))?;
        let mut out = Vec::new();
        for n in numbers {
            let id = t.get(n).map_err(|e| db_err("read", e))?.map(|v| Id(v.value()));
            out.push(
                id.ok_or_else(|| Error::new(ErrorKind::Io, "local index cache is inconsistent; delete it to rebuild"))?,
            );
        }
        Ok(out)
    }

    /// Forget everything and read the repository's index and plans again (when a reader
    /// found the cache disagreeing with storage).
    pub fn rebuild(&self, repo: &Repository) -> Result<SyncStats> {
        self.sync_once(repo, true)
    }

    /// Is pack `id` named by an index segment?
    pub fn pack_indexed(&self, id: &Id) -> Result<bool> {
        let tx = self.db.begin_read().map_err(|e| db_err("read", e))?;
        let pno = tx.open_table(PACK_NO).map_err(|e| db_err("read", e))?;
        let Some(no) = pno.get(id.0).map_err(|e| db_err("read", e))? else {
            return Ok(false);
        };
        let seg = tx.open_table(SEG_PACKS).map_err(|e| db_err("read", e))?;
        Ok(seg.get(no.value()).map_err(|e| db_err("read", e))?.is_some())
    }

    /// Visit every indexed blob (for stats): its kind, `raw_length`, sealed length, and for
    /// a delta its bases' `(raw_length, sealed length)` summed.
    pub fn for_each_blob(&self, mut f: impl FnMut(&Id, BlobKind, u32, u32, Option<(u32, u32)>)) -> Result<()> {
        let tx = self.db.begin_read().map_err(|e| db_err("read", e))?;
        let blobs = tx.open_table(BLOBS).map_err(|e| db_err("read", e))?;
        let deltas = tx.open_table(DELTA_BASES).map_err(|e| db_err("read", e))?;
        for r in blobs.iter().map_err(|e| db_err("read", e))? {
            let (k, v) = r.map_err(|e| db_err("read", e))?;
            let v = v.value();
            let kind = BlobKind::from_u8(v[8]).unwrap_or(BlobKind::Data);
            let mut base = None;
            if v[9] == Encoding::ZstdDelta as u8 {
                if let Some(b) = deltas.get(k.value()).map_err(|e| db_err("read", e))? {
                    let (mut raw, mut len) = (0u32, 0u32);
                    for id in b.value().chunks_exact(32) {
                        let Some(id) = Id::from_slice(id) else { continue };
                        if let Some(bv) = blobs.get(id.0).map_err(|e| db_err("read", e))? {
                            let bv = bv.value();
                            raw = raw.saturating_add(u32_at(&bv, 18));
                            len = len.saturating_add(u32_at(&bv, 14));
                        }
                    }
                    base = Some((raw, len));
                }
            }
            f(&Id(k.value()), kind, u32_at(&v, 18), u32_at(&v, 14), base);
        }
        Ok(())
    }

    /// Number of packs index segments name.
    pub fn pack_count(&self) -> Result<u64> {
        let tx = self.db.begin_read().map_err(|e| db_err("read", e))?;
        let t = tx.open_table(SEG_PACKS).map_err(|e| db_err("read", e))?;
        redb::ReadableTableMetadata::len(&t).map_err(|e| db_err("read", e))
    }
}
