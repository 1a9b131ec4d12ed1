//! Pack writer: gathers sealed blobs into packs of the repository's target size and uploads
//! finished packs in parallel through a bounded queue, so memory stays flat. With `verify`,
//! each pack is fully checked before it counts as written: every blob of the bytes about to be
//! stored is authenticated, decoded and re-hashed, and the stored object is read back as a
//! stream whose SHA-256 must be the pack's name, i.e. those very bytes.

use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

use crossbeam_channel::{bounded, Sender};

use crate::crypto::Keys;
use crate::error::{Error, Result};
use crate::format::index::PackBlobs;
use crate::format::pack::{finish_pack, BlobEntry};
use crate::format::{BlobKind, Encoding, Id};
use crate::storage::{pack_path, Store};

/// Packs being uploaded at once.
const UPLOADERS: usize = 3;

/// Packs durably written, by their number in build order, and the number of the next one
/// [`Packer::take_done`] returns (the packs before it were all taken).
#[derive(Default)]
struct Done {
    finished: std::collections::BTreeMap<u64, PackBlobs>,
    next: u64,
    /// An uploader stopped on an error (which [`Packer::finish`] returns).
    failed: bool,
}

/// [`Done`], and a signal each time an uploader finishes a pack or stops.
#[derive(Default)]
struct DoneSignal {
    done: Mutex<Done>,
    changed: Condvar,
}

/// Wakes the waiters when an uploader ends, marking the uploads failed when it ends on an
/// error (`.1`, true until the uploader returns) or a panic.
struct Exit<'a>(&'a DoneSignal, bool);

impl Drop for Exit<'_> {
    fn drop(&mut self) {
        if self.1 {
            if let Ok(mut d) = self.0.done.lock() {
                d.failed = true;
            }
        }
        self.0.changed.notify_all();
    }
}

/// Waits until the packs handed to the uploaders so far are durable (or an upload failed):
/// [`Packer::waiter`].
pub struct DurableWaiter {
    signal: Arc<DoneSignal>,
    packs: u64,
}

impl DurableWaiter {
    /// Block until then. Takes no lock the packer's users hold.
    pub fn wait(self) {
        let Ok(mut d) = self.signal.done.lock() else { return };
        while !d.failed && d.next + (d.finished.len() as u64) < self.packs {
            d = match self.signal.changed.wait(d) {
                Ok(d) => d,
                Err(_) => return,
            };
        }
    }
}

/// Builds and uploads packs.
pub struct Packer {
    keys: Keys,
    target: usize,
    cur: Vec<u8>,
    entries: Vec<BlobEntry>,
    tx: Option<Sender<(u64, Vec<u8>)>>,
    uploaders: Vec<JoinHandle<Result<()>>>,
    done: Arc<DoneSignal>,
    /// Bytes of packs handed to the uploaders so far.
    pub bytes_written: u64,
    /// Packs handed to the uploaders so far.
    pub packs_written: u64,
}

impl Packer {
    /// A packer writing to `store`; with `verify` every pack is checked before it is stored
    /// and read back after (module doc).
    pub fn new(store: &Store, keys: &Keys, target: usize, verify: bool) -> Packer {
        let (tx, rx) = bounded::<(u64, Vec<u8>)>(1);
        let done: Arc<DoneSignal> = Arc::default();
        let uploaders = (0..UPLOADERS)
            .map(|_| {
                let rx = rx.clone();
                let store = store.clone();
                let keys = keys.clone();
                let done = done.clone();
                std::thread::spawn(move || -> Result<()> {
                    let mut exit = Exit(&done, true);
                    let r = upload(&rx, &store, &keys, &done, verify);
                    exit.1 = r.is_err();
                    r
                })
            })
            .collect();
        Packer {
            keys: keys.clone(),
            target,
            cur: Vec::with_capacity(target + (4 << 20)),
            entries: Vec::new(),
            tx: Some(tx),
            uploaders,
            done,
            bytes_written: 0,
            packs_written: 0,
        }
    }

    /// Append a sealed blob (`bases`: the base chunks of a delta blob, else empty).
    pub fn add(
        &mut self,
        id: Id,
        kind: BlobKind,
        encoding: Encoding,
        raw_length: u32,
        bases: Vec<Id>,
        sealed: &[u8],
    ) -> Result<()> {
        let offset = u32::try_from(self.cur.len()).map_err(|_| Error::general("pack too large"))?;
        let length = u32::try_from(sealed.len()).map_err(|_| Error::general("blob too large"))?;
        self.cur.extend_from_slice(sealed);
        self.entries.push(BlobEntry {
            id,
            kind,
            encoding,
            offset,
            length,
            raw_length,
            bases,
        });
        if self.cur.len() >= self.target {
            self.flush()?;
        }
        Ok(())
    }

    /// Finish the current pack (if any) and queue it for upload.
    pub fn flush(&mut self) -> Result<()> {
        if self.entries.is_empty() {
            return Ok(());
        }
        let mut pack = std::mem::replace(&mut self.cur, Vec::with_capacity(self.target + (4 << 20)));
        let entries = std::mem::take(&mut self.entries);
        finish_pack(&self.keys, &mut pack, &entries)?;
        self.bytes_written += pack.len() as u64;
        self.packs_written += 1;
        let tx = self
            .tx
            .as_ref()
            .ok_or_else(|| Error::general("packer already finished"))?;
        if tx.send((self.packs_written - 1, pack)).is_err() {
            // Every uploader has exited: one of them failed; surface its error.
            return Err(self
                .join_uploaders()
                .err()
                .unwrap_or_else(|| Error::general("pack uploaders stopped")));
        }
        Ok(())
    }

    /// Packs durably written since the last call, in the order they were built: a pack that
    /// finished before an earlier one waits for it. Index segments then list packs, and
    /// record sketches, in stream order whatever order the uploads finished in.
    pub fn take_done(&self) -> Vec<PackBlobs> {
        let Ok(mut d) = self.done.done.lock() else {
            return Vec::new();
        };
        let mut out = Vec::new();
        loop {
            let next = d.next;
            let Some(p) = d.finished.remove(&next) else { break };
            out.push(p);
            d.next += 1;
        }
        out
    }

    fn join_uploaders(&mut self) -> Result<()> {
        self.tx = None;
        let mut first = Ok(());
        for h in self.uploaders.drain(..) {
            let r = h
                .join()
                .unwrap_or_else(|_| Err(Error::general("pack uploader panicked")));
            if first.is_ok() {
                first = r;
            }
        }
        first
    }

    /// Something to wait with, outside any lock that holds the packer, until the packs handed
    /// to the uploaders so far are durable ([`Packer::take_done`] then returns them).
    pub fn waiter(&self) -> DurableWaiter {
        DurableWaiter {
            signal: self.done.clone(),
            packs: self.packs_written,
        }
    }

    /// Flush, wait for every upload, and return the packs not yet taken.
    pub fn finish(&mut self) -> Result<Vec<PackBlobs>> {
        self.flush()?;
        self.join_uploaders()?;
        Ok(self.take_done())
    }
}

/// One uploader: check, store and (with `verify`) read back each pack it receives, and record
/// it as durable.
fn upload(
    rx: &crossbeam_channel::Receiver<(u64, Vec<u8>)>,
    store: &Store,
    keys: &Keys,
    done: &DoneSignal,
    verify: bool,
) -> Result<()> {
    for (seq, pack) in rx {
        // The name first: a bit that flips in memory from here on fails
        // either the blob checks or the read-back.
        let id = Id::of_stored(&pack);
        let path = pack_path(&id);
        let blobs = if verify {
            crate::repo::pack_reader::open_blobs(keys, &id, &pack).map_err(|e| {
                Error::new(
                    e.kind(),
                    format!("{e} (checked before storing it: nothing was written)"),
                )
            })?
        } else {
            // Only the header (cheap; proves it decodes).
            crate::repo::pack_reader::pack_header(keys, &id, &pack)?
        };
        store.write(&path, pack, false)?;
        if verify && store.sha256(&path)? != id.0 {
            return Err(Error::corrupt(
                &path,
                "read back right after writing it, its SHA-256 does not match its name: \
                 the storage returned different bytes",
            ));
        }
        done.done
            .lock()
            .map_err(|_| Error::general("uploader poisoned"))?
            .finished
            .insert(seq, PackBlobs { pack: id, blobs });
        done.changed.notify_all();
    }
    Ok(())
}
