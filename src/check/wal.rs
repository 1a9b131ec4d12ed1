//! The WAL phases of `check`: every catalog entry intact and its chunks indexed, the WAL
//! archive's record against the catalog, and the WAL missing after each physical snapshot.

use super::{structure::for_each_chunk, Checker, Problem, Report};
use crate::error::{ErrorKind, Result};
use crate::format::snapshot::PhysicalSource;
use crate::format::Id;
use crate::wal::archive::Clusters;
use crate::wal::names::{segment_name, segno_of, WalFile};

impl Checker<'_, '_> {
    /// Every WAL catalog entry must be intact, its chunks indexed.
    pub(super) fn wal_catalog(&mut self) -> Result<()> {
        let (session, repo) = (self.session, self.session.repo());
        let wal = crate::wal::catalog::list(repo)?;
        self.rep.wal_files = wal.len() as u64;
        let (rep, missing, gone) = (&mut self.rep, &mut self.missing_chunks, &self.gone);
        let (files, clusters) = (&mut self.wal_files, &mut self.clusters);
        crate::wal::catalog::read_each(repo, wal, |dir, id, r| {
            let e = match r {
                Ok(e) => e,
                Err(e) if matches!(e.kind(), ErrorKind::Corrupt | ErrorKind::NotFound) => {
                    rep.damage(format!("{dir}/{id}"), &e);
                    return Ok(());
                }
                Err(e) => return Err(e),
            };
            let file = e.file.clone();
            files.push(file.clone());
            crate::wal::archive::count(clusters, &e);
            for_each_chunk(session, std::slice::from_ref(&e.data), |cid, loc| {
                let message = match loc {
                    None => format!("needed by WAL file {file} but in no index segment"),
                    Some(l) if gone.contains(&l.pack) => {
                        format!("needed by WAL file {file} but only held by a deleted pack")
                    }
                    Some(_) => return,
                };
                if missing.insert(*cid) {
                    rep.errors.push(Problem {
                        object: format!("chunk {cid}"),
                        message,
                        affects: vec![],
                    });
                }
            })
            .unwrap_or_else(|er| rep.damage(format!("{dir}/{id} ({file})"), &er));
            Ok(())
        })
    }

    /// The archive's record, and the WAL each physical snapshot's recovery needs.
    pub(super) fn wal_archive(&mut self) -> Result<()> {
        wal_archive_record(self.session.repo(), &mut self.rep, &self.clusters, &self.bases)?;
        wal_gaps(&mut self.rep, &self.bases, &self.wal_files);
        Ok(())
    }
}

/// The WAL archive's record against the catalog (damaged, missing, another repository's or
/// cluster's), and physical snapshots of a cluster the archive does not hold.
fn wal_archive_record(
    repo: &crate::repo::Repository,
    rep: &mut Report,
    clusters: &Clusters,
    bases: &[(Id, PhysicalSource)],
) -> Result<()> {
    let records = crate::wal::archive::read(repo)?;
    for (object, message) in crate::wal::archive::problems(&records, rep.wal_files, clusters) {
        rep.errors.push(Problem {
            object,
            message,
            affects: vec![],
        });
    }
    let Some(archive) = records.intact.first().map(|(_, a)| &a.system_id) else {
        return Ok(());
    };
    for (sid, b) in bases.iter().filter(|(_, b)| &b.system_id != archive) {
        rep.warnings.push(Problem {
            object: format!("snapshots/{sid}"),
            message: format!(
                "physical snapshot of cluster {}, but the WAL archive holds cluster {archive}: point-in-time recovery from it cannot use this archive",
                b.system_id
            ),
            affects: vec![*sid],
        });
    }
    Ok(())
}

/// Report WAL missing between each physical snapshot's start and the newest archived segment
/// of its timeline: point-in-time recovery from that snapshot would stop there. Only once WAL
/// of the snapshot's timeline is archived at all (an archive that is not set up is no damage).
fn wal_gaps(rep: &mut Report, bases: &[(Id, PhysicalSource)], files: &[String]) {
    for (sid, b) in bases {
        let seg_size = b.wal_segment_size;
        let mut have: Vec<u64> = files
            .iter()
            .filter_map(|f| match WalFile::parse(f) {
                Ok(w @ WalFile::Segment { tli, .. }) if tli == b.timeline => w.segno(seg_size),
                _ => None,
            })
            .collect();
        have.sort_unstable();
        have.dedup();
        let start = segno_of(b.start_lsn, seg_size);
        let Some(&newest) = have.last() else { continue };
        let mut next = start;
        for &n in have.iter().filter(|&&n| n >= start) {
            if n > next {
                rep.errors.push(Problem {
                    object: format!(
                        "WAL {} .. {}",
                        segment_name(b.timeline, next, seg_size),
                        segment_name(b.timeline, n - 1, seg_size)
                    ),
                    message: "missing from the WAL archive: point-in-time recovery from this snapshot stops before it"
                        .into(),
                    affects: vec![*sid],
                });
            }
            next = n + 1;
        }
        if newest < start {
            rep.warnings.push(Problem {
                object: format!("WAL {}", segment_name(b.timeline, start, seg_size)),
                message: "no WAL archived since this physical snapshot started: is archive_command set?".into(),
                affects: vec![*sid],
            });
        }
    }
}
