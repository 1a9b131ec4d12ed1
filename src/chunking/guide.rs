//! Where the previous version of a stream was cut: the parent snapshot's content list for the
//! same entry, read lazily and followed along the new stream, so the chunker can confirm an
//! unchanged chunk with one keyed hash instead of scanning it for a cut point.
//!
//! The guide only proposes; the chunker accepts a proposal only when the bytes hash to the
//! expected chunk id and FastCDC would cut there too, so a wrong, stale or damaged guide costs
//! time, never a byte or a boundary.

use std::collections::{HashMap, VecDeque};

use crate::format::{BlobKind, Id};
use crate::repo::session::Session;

/// Content lists kept in memory at once (65,536 records each): memory stays bounded whatever
/// the size of the parent stream.
const WINDOW_LISTS: usize = 3;

/// The chunk an earlier version of the stream had at the current position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expected {
    /// Its id.
    pub id: Id,
    /// Its length.
    pub len: u32,
    /// Whether it was the last chunk of that stream.
    pub last: bool,
}

/// A source of expected chunks, told about every chunk actually cut.
pub trait Guide: Send {
    /// The chunk expected at the current position of the new stream, if the guide knows one.
    fn expected(&mut self) -> Option<Expected>;
    /// The chunker cut chunk `id` of `len` bytes at the current position.
    fn cut(&mut self, id: &Id, len: u32);
}

/// Records of one content list of the parent, with their end offsets in the parent stream.
struct Loaded {
    /// Index of the first record in the parent entry.
    first: u64,
    records: Vec<(Id, u32)>,
    /// `ends[i]`: offset in the parent stream just after record `i`.
    ends: Vec<u64>,
}

/// Follows a parent entry's chunk sequence along a new stream. After an edit it finds its
/// place again by offset (a chunk of the same length replaced in place) or by id (the first
/// unchanged chunk after an insertion or deletion).
pub struct ParentGuide<'a> {
    session: &'a Session<'a>,
    lists: Vec<Id>,
    next_list: usize,
    /// Records in the parent entry.
    total: u64,
    window: VecDeque<Loaded>,
    /// Id -> record index, for the records in `window`.
    by_id: HashMap<Id, u64>,
    /// End offset in the parent of the records loaded so far.
    loaded_end: u64,
    /// Record expected next; `None` while the new stream is not aligned with the parent.
    cursor: Option<u64>,
    /// Bytes of the new stream cut so far.
    offset: u64,
    /// New-stream offset minus parent offset at the last alignment.
    shift: i64,
}

impl<'a> ParentGuide<'a> {
    /// A guide over the parent entry whose content lists are `lists` (`total` chunks).
    pub fn new(session: &'a Session<'a>, lists: Vec<Id>, total: u64) -> Self {
        ParentGuide {
            session,
            lists,
            next_list: 0,
            total,
            window: VecDeque::new(),
            by_id: HashMap::new(),
            loaded_end: 0,
            cursor: Some(0),
            offset: 0,
            shift: 0,
        }
    }

    /// Load the next content list; false when there is none or it cannot be read (the guide
    /// then stops proposing: the snapshot goes on without it).
    fn load_next(&mut self) -> bool {
        let Some(lid) = self.lists.get(self.next_list).copied() else {
            return false;
        };
        self.next_list += 1;
        let read = self
            .session
            .repo()
            .store()
            .runtime()
            .block_on(crate::repo::blob_reader::fetch_blob(
                self.session,
                lid,
                BlobKind::ContentList,
            ));
        let records = match read.and_then(|b| crate::repo::blob_reader::parse_list(&lid, &b)) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the parent snapshot's content list; chunking without it");
                self.lists.clear();
                self.cursor = None;
                return false;
            }
        };
        let first = self.window.back().map_or(0, |l| l.first + l.records.len() as u64);
        let mut end = self.loaded_end;
        let ends = records
            .iter()
            .map(|(_, len)| {
                end += u64::from(*len);
                end
            })
            .collect();
        self.loaded_end = end;
        self.window.push_back(Loaded { first, records, ends });
        if self.window.len() > WINDOW_LISTS {
            self.window.pop_front();
        }
        self.by_id.clear();
        for l in &self.window {
            for (i, (id, _)) in l.records.iter().enumerate() {
                self.by_id.entry(*id).or_insert(l.first + i as u64);
            }
        }
        true
    }

    /// Record `i` of the parent entry, loading lists as needed; `None` if it has been dropped
    /// from the window or does not exist.
    fn record(&mut self, i: u64) -> Option<((Id, u32), u64)> {
        if i >= self.total {
            return None;
        }
        while self.window.back().is_none_or(|l| i >= l.first + l.records.len() as u64) {
            if !self.load_next() {
                return None;
            }
        }
        let l = self
            .window
            .iter()
            .find(|l| i >= l.first && i < l.first + l.records.len() as u64)?;
        let k = usize::try_from(i - l.first).ok()?;
        Some((*l.records.get(k)?, *l.ends.get(k)?))
    }

    /// The record ending exactly at parent offset `at`, if loaded (loading ahead up to it).
    fn ending_at(&mut self, at: u64) -> Option<u64> {
        while self.loaded_end < at {
            if !self.load_next() {
                return None;
            }
        }
        self.window
            .iter()
            .find_map(|l| l.ends.binary_search(&at).ok().map(|k| l.first + k as u64))
    }
}

impl Guide for ParentGuide<'_> {
    fn expected(&mut self) -> Option<Expected> {
        let i = self.cursor?;
        let ((id, len), _) = self.record(i)?;
        Some(Expected {
            id,
            len,
            last: i + 1 == self.total,
        })
    }

    fn cut(&mut self, id: &Id, len: u32) {
        self.offset += u64::from(len);
        // The expected chunk: still aligned.
        if let Some(i) = self.cursor {
            if self.record(i).is_some_and(|((pid, plen), _)| pid == *id && plen == len) {
                self.cursor = Some(i + 1);
                return;
            }
        }
        if self.lists.is_empty() && self.window.is_empty() {
            self.cursor = None;
            return;
        }
        // A changed chunk that ends where a parent chunk ended (same shift): the next one may
        // be unchanged.
        if let Some(at) = u64::try_from(i128::from(self.offset) - i128::from(self.shift))
            .ok()
            .filter(|&a| a > 0)
        {
            if let Some(j) = self.ending_at(at) {
                self.cursor = Some(j + 1);
                return;
            }
        }
        // An unchanged chunk found elsewhere in the parent: realign after it.
        if let Some(&j) = self.by_id.get(id) {
            if let Some((_, end)) = self.record(j) {
                self.shift = i64::try_from(i128::from(self.offset) - i128::from(end)).unwrap_or(0);
                self.cursor = Some(j + 1);
                return;
            }
        }
        self.cursor = None;
    }
}
