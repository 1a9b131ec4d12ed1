//! Pack writer: gathers sealed blobs into packs of the repository's target size and uploads
//! finished packs in parallel through a bounded queue, so memory stays flat. With `verify`,
//! each pack is read back from storage and fully checked (name, header, every blob
//! authenticated, decoded and re-hashed) before it counts as written.

use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use crossbeam_channel::{bounded, Sender};

use crate::backend::{pack_path, Store};
use crate::crypto::Keys;
use crate::error::{Error, Result};
use crate::format::index::PackBlobs;
use crate::format::pack::{finish_pack, BlobEntry};
use crate::format::{BlobKind, Encoding, Id};

/// Packs being uploaded at once.
const UPLOADERS: usize = 3;

/// Builds and uploads packs.
pub struct Packer {
    keys: Keys,
    target: usize,
    cur: Vec<u8>,
    entries: Vec<BlobEntry>,
    tx: Option<Sender<Vec<u8>>>,
    uploaders: Vec<JoinHandle<Result<()>>>,
    done: Arc<Mutex<Vec<PackBlobs>>>,
    /// Bytes of packs handed to the uploaders so far.
    pub bytes_written: u64,
    /// Packs handed to the uploaders so far.
    pub packs_written: u64,
}

impl Packer {
    /// A packer writing to `store`; `verify` reads every pack back and checks it.
    pub fn new(store: &Store, keys: &Keys, target: usize, verify: bool) -> Packer {
        let (tx, rx) = bounded::<Vec<u8>>(1);
        let done: Arc<Mutex<Vec<PackBlobs>>> = Arc::default();
        let uploaders = (0..UPLOADERS)
            .map(|_| {
                let rx = rx.clone();
                let store = store.clone();
                let keys = keys.clone();
                let done = done.clone();
                std::thread::spawn(move || -> Result<()> {
                    for pack in rx {
                        let id = Id::of_stored(&pack);
                        // Re-read the header of the pack just built (cheap; proves it decodes).
                        let blobs = crate::check::pack_header(&keys, &id, &pack)?;
                        let path = pack_path(&id);
                        store.write(&path, pack, false)?;
                        if verify {
                            let back = store.read(&path)?;
                            crate::check::verify_pack(&keys, &id, &back).map_err(|e| {
                                Error::new(
                                    e.kind(),
                                    format!(
                                        "{e} (read back right after writing it: the storage returned different bytes)"
                                    ),
                                )
                            })?;
                        }
                        done.lock()
                            .map_err(|_| Error::general("uploader poisoned"))?
                            .push(PackBlobs { pack: id, blobs });
                    }
                    Ok(())
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
        if tx.send(pack).is_err() {
            // Every uploader has exited: one of them failed; surface its error.
            return Err(self
                .join_uploaders()
                .err()
                .unwrap_or_else(|| Error::general("pack uploaders stopped")));
        }
        Ok(())
    }

    /// Packs durably written since the last call.
    pub fn take_done(&self) -> Vec<PackBlobs> {
        self.done
            .lock()
            .map(|mut d| std::mem::take(&mut *d))
            .unwrap_or_default()
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

    /// Flush, wait for every upload, and return the packs not yet taken.
    pub fn finish(&mut self) -> Result<Vec<PackBlobs>> {
        self.flush()?;
        self.join_uploaders()?;
        Ok(self.take_done())
    }
}
