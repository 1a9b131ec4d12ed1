//! Physical base backups of PostgreSQL: `pg_basebackup -D - -Ft -X fetch` streamed into the
//! repository as one tar entry, with the backup label read from the stream as it passes and
//! the end point from the tool's verbose output; and their restore into a data directory.

use std::io::{Read, Write};
use std::path::Path;
use std::sync::{Arc, Mutex};

use crate::error::{Error, ErrorKind, Hint, Result};
use crate::format::snapshot::{Manifest, PhysicalSource, Source};
use crate::progress::{Progress, Work};
use crate::repo::session::Session;
use crate::snapshot::SnapshotWriter;
use crate::sources::pg_backup::{parse_label, server_info};
use crate::sources::postgres::{classify, PgConn};
use crate::sources::process::Process;
use crate::wal::names::Lsn;

/// Entry name of the base backup's tar stream.
pub const BASE_TAR: &str = "base.tar";

/// Largest backup label kept (PostgreSQL writes a few hundred bytes).
const MAX_LABEL: u64 = 64 << 10;

/// Passes a tar stream through, capturing the content of its `backup_label` member (the
/// first member of pg_basebackup's main tar).
struct LabelTap<R> {
    inner: R,
    pos: u64,
    header_at: u64,
    header: Vec<u8>,
    capture: Option<(u64, u64)>,
    label: Arc<Mutex<Vec<u8>>>,
    done: bool,
}

fn octal(field: &[u8]) -> Option<u64> {
    let s = std::str::from_utf8(field).ok()?;
    let s = s.trim_matches(|c: char| c == '\0' || c == ' ');
    u64::from_str_radix(s, 8).ok()
}

impl<R: Read> LabelTap<R> {
    fn new(inner: R, label: Arc<Mutex<Vec<u8>>>) -> Self {
        LabelTap {
            inner,
            pos: 0,
            header_at: 0,
            header: Vec::with_capacity(512),
            capture: None,
            label,
            done: false,
        }
    }

    fn observe(&mut self, mut b: &[u8]) {
        while !b.is_empty() && !self.done {
            if let Some((start, end)) = self.capture {
                if self.pos < start {
                    let skip = ((start - self.pos) as usize).min(b.len());
                    self.pos += skip as u64;
                    b = &b[skip..];
                    continue;
                }
                let take = ((end - self.pos) as usize).min(b.len());
                if let Ok(mut l) = self.label.lock() {
                    l.extend_from_slice(&b[..take]);
                }
                self.pos += take as u64;
                b = &b[take..];
                if self.pos >= end {
                    self.done = true;
                }
                continue;
            }
            if self.pos < self.header_at {
                let skip = ((self.header_at - self.pos) as usize).min(b.len());
                self.pos += skip as u64;
                b = &b[skip..];
                continue;
            }
            let take = (512 - self.header.len()).min(b.len());
            self.header.extend_from_slice(&b[..take]);
            self.pos += take as u64;
            b = &b[take..];
            if self.header.len() < 512 {
                continue;
            }
            let h = std::mem::take(&mut self.header);
            let name_end = h[..100].iter().position(|&c| c == 0).unwrap_or(100);
            let size = octal(&h[124..136]);
            match size {
                None => self.done = true, // end of archive or not a plain tar: stop looking
                Some(size) => {
                    let data = self.header_at + 512;
                    if &h[..name_end] == b"backup_label" && size <= MAX_LABEL {
                        self.capture = Some((data, data + size));
                        if size == 0 {
                            self.done = true;
                        }
                    }
                    self.header_at = data + size.div_ceil(512) * 512;
                }
            }
        }
    }
}

impl<R: Read> Read for LabelTap<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        if !self.done {
            self.observe(&buf[..n]);
        }
        Ok(n)
    }
}

/// The end point pg_basebackup -v reports: `write-ahead log end point: 0/2000100`.
pub fn parse_end_point(stderr: &[String]) -> Option<Lsn> {
    stderr.iter().find_map(|l| {
        let (_, v) = l.split_once("write-ahead log end point:")?;
        v.split_whitespace().next()?.parse().ok()
    })
}

/// Take a base backup of the cluster `conn` reaches into `w` as entry [`BASE_TAR`].
pub fn base_backup(w: &SnapshotWriter, conn: &PgConn, progress: &dyn Progress) -> Result<PhysicalSource> {
    let (server_version, system_id, wal_segment_size) = server_info(conn)?;
    let tool = conn.tool_version("pg_basebackup")?;
    let mut cmd = conn.tool("pg_basebackup");
    cmd.args([
        "-D", "-", "-F", "t", "-X", "fetch", "-c", "fast", "-v", "-w", "-l", "dbbackup",
    ]);
    let started = jiff::Timestamp::now();
    let mut p = Process::spawn(cmd, "pg_basebackup", false, false)?;
    let label = Arc::new(Mutex::new(Vec::new()));
    let tap = LabelTap::new(p.take_stdout()?, label.clone());
    if let Err(e) = w.add_stream(BASE_TAR, tap, progress) {
        p.kill();
        return Err(e);
    }
    let (ok, f) = p.finish()?;
    if !ok {
        return Err(classify(f, "postgres"));
    }
    let finished = jiff::Timestamp::now();
    let label_text = String::from_utf8_lossy(&crate::util::lock_or_fail(&label, "backup label")?).into_owned();
    if label_text.is_empty() {
        return Err(Error::general(
            "pg_basebackup's tar stream did not start with a backup_label; nothing was recorded",
        ));
    }
    let l = parse_label(&label_text)?;
    let stop_lsn = parse_end_point(&f.tail).ok_or_else(|| {
        Error::general(format!(
            "pg_basebackup did not report its end point; nothing was recorded{}",
            f.tail_text()
        ))
    })?;
    Ok(PhysicalSource {
        engine: "postgresql".into(),
        server_version,
        host: None,
        port: None,
        user: None,
        tool,
        system_id,
        timeline: l.timeline,
        start_lsn: l.start_lsn,
        stop_lsn,
        start_wal: l.start_wal,
        wal_segment_size,
        wal_included: true,
        started,
        finished,
        backup_label: label_text,
        mode: None,
        parent: None,
    })
}

/// Refuse a target data directory that holds anything, unless `force`; create it 0700.
pub fn prepare_pgdata(dir: &Path, force: bool) -> Result<()> {
    if dir.exists() {
        let mut rd = std::fs::read_dir(dir).map_err(|e| Error::io(format!("cannot read {}", dir.display()), e))?;
        if rd.next().is_some() && !force {
            return Err(
                Error::new(ErrorKind::CantCreate, format!("{} is not empty", dir.display()))
                    .with_hint(Hint::PgdataNotEmpty),
            );
        }
    }
    crate::util::create_dir_private(dir).map_err(|e| Error::io(format!("cannot create {}", dir.display()), e))?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| Error::io(format!("cannot set the mode of {}", dir.display()), e))
}

/// Restore physical snapshot `m` into data directory `dir` (prepared by [`prepare_pgdata`]):
/// the tar is streamed, verified chunk by chunk and as a whole, and unpacked as it arrives.
pub fn restore_pgdata(session: &Session<'_>, m: &Manifest, dir: &Path, progress: &dyn Progress) -> Result<u64> {
    let Source::Physical(_) = &m.source else {
        return Err(Error::usage(
            "this snapshot is not a physical one: only physical snapshots restore into a data directory",
        ));
    };
    if m.entries.iter().any(|e| e.path == crate::sources::pgdata::FILE_LIST) {
        return crate::sources::pgdata::restore_files(session, m, dir, progress);
    }
    let entry = m
        .entries
        .iter()
        .find(|e| e.path == BASE_TAR)
        .ok_or_else(|| Error::corrupt("snapshot", "physical snapshot without base.tar"))?;
    let (reader, writer) = std::io::pipe().map_err(|e| Error::io("cannot create a pipe", e))?;
    progress.start("restore", Work::Bytes(Some(entry.size)));
    let r = std::thread::scope(|s| {
        let unpack = s.spawn(move || -> Result<()> {
            let mut a = tar::Archive::new(reader);
            a.set_preserve_permissions(true);
            a.set_overwrite(true);
            a.unpack(dir)
                .map_err(|e| Error::io(format!("cannot unpack the base backup into {}", dir.display()), e))?;
            // Drain what follows the archive's end marker so the writer never blocks.
            let mut rest = a.into_inner();
            std::io::copy(&mut rest, &mut std::io::sink()).map_err(|e| Error::io("cannot read the base backup", e))?;
            Ok(())
        });
        let mut w = writer;
        let written = crate::restore::restore_entry(session, entry, &mut w, progress);
        let _ = w.flush();
        drop(w);
        let unpacked = unpack
            .join()
            .unwrap_or_else(|_| Err(Error::general("unpacking thread panicked")));
        // A verification failure is the real cause when both fail.
        let n = written?;
        unpacked?;
        Ok(n)
    });
    progress.finish();
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_with(files: &[(&str, &[u8])]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, data) in files {
            let mut h = tar::Header::new_ustar();
            h.set_size(data.len() as u64);
            h.set_mode(0o600);
            h.set_cksum();
            b.append_data(&mut h, name, *data).unwrap();
        }
        b.into_inner().unwrap()
    }

    #[test]
    fn tap_captures_the_label_whatever_the_read_sizes() {
        let label = b"START WAL LOCATION: 0/2000028 (file 000000010000000000000002)\nSTART TIMELINE: 1\n";
        let t = tar_with(&[("backup_label", label), ("global/pg_control", &[7u8; 9000])]);
        for step in [1usize, 7, 511, 512, 513, 100_000] {
            let got = Arc::new(Mutex::new(Vec::new()));
            let mut tap = LabelTap::new(&t[..], got.clone());
            let mut out = Vec::new();
            let mut buf = vec![0u8; step];
            loop {
                let n = tap.read(&mut buf).unwrap();
                if n == 0 {
                    break;
                }
                out.extend_from_slice(&buf[..n]);
            }
            assert_eq!(out, t, "passes bytes through unchanged");
            assert_eq!(&got.lock().unwrap()[..], &label[..], "step {step}");
        }
        // A label that is not the first member is found too.
        let t = tar_with(&[("tablespace_map", b"x"), ("backup_label", label)]);
        let got = Arc::new(Mutex::new(Vec::new()));
        std::io::copy(&mut LabelTap::new(&t[..], got.clone()), &mut std::io::sink()).unwrap();
        assert_eq!(&got.lock().unwrap()[..], &label[..]);
    }

    #[test]
    fn label_and_end_point_parse() {
        let l = parse_label(
            "START WAL LOCATION: 0/2000028 (file 000000010000000000000002)\nCHECKPOINT LOCATION: 0/2000060\n\
             BACKUP METHOD: streamed\nSTART TIMELINE: 3\n",
        )
        .unwrap();
        assert_eq!(l.start_lsn, Lsn(0x200_0028));
        assert_eq!(l.start_wal, "000000010000000000000002");
        assert_eq!(l.timeline, 3);
        assert!(parse_label("START TIMELINE: 1\n").is_err());
        let lines = vec![
            "pg_basebackup: write-ahead log start point: 0/2000028 on timeline 1".to_string(),
            "pg_basebackup: write-ahead log end point: 0/2000100".to_string(),
        ];
        assert_eq!(parse_end_point(&lines), Some(Lsn(0x200_0100)));
        assert_eq!(parse_end_point(&lines[..1]), None);
    }
}
