//! Check records (repo-format §13): what a `check` run leaves in `checks/` when it ends, and
//! how `status` reads them back.

use std::collections::BTreeMap;

use crate::error::{Error, ErrorKind, Result};
use crate::format::check::{CheckRecord, ReadDataClass};
use crate::format::RepoObject;
use crate::format::{Id, ObjectKind, FORMAT_VERSION};
use crate::repo::objects::read_objects_in;
use crate::repo::Repository;

use super::{ReadData, Report};

/// The class of a read-data request, and the subset as the operator gave it.
pub fn class_of(read: ReadData) -> (ReadDataClass, Option<String>) {
    match read {
        ReadData::None => (ReadDataClass::None, None),
        ReadData::All => (ReadDataClass::All, None),
        ReadData::Part { n, of } => (ReadDataClass::Subset, Some(format!("{n}/{of}"))),
        ReadData::Percent(p) => (ReadDataClass::Subset, Some(format!("{p}%"))),
        ReadData::Bytes(b) => (ReadDataClass::Subset, Some(crate::util::human_bytes(b))),
    }
}

/// Save the record of a run that read `read` and reported `report`, then delete the records
/// it makes obsolete (§13). Returns the new record's id.
pub fn save(repo: &Repository, report: &Report, read: ReadData) -> Result<Id> {
    let (read_data, subset) = class_of(read);
    let record = CheckRecord {
        version: FORMAT_VERSION,
        repository: repo.config().id,
        time: jiff::Timestamp::now(),
        hostname: crate::util::hostname(),
        tool_version: env!("CARGO_PKG_VERSION").to_string(),
        read_data,
        subset,
        snapshots: report.snapshots,
        packs: report.packs,
        packs_read: report.packs_read,
        bytes_read: report.bytes_read,
        problems: report.errors.len() as u64,
        warnings: report.warnings.len() as u64,
    };
    let id = repo.save(&record)?;
    let (readable, unreadable) = classify(repo)?;
    // Records that cannot be read back (this check reported them) are replaced by this one.
    let old = expired(&readable)
        .into_iter()
        .chain(unreadable.into_iter().map(|(id, _)| id));
    for o in old {
        repo.store().delete(&format!("{}/{o}", ObjectKind::Check.dir()))?;
    }
    Ok(id)
}

/// The records that fail authentication or decoding, or belong to another repository, with
/// why: `check` reports them, and the next record saved replaces them.
pub fn unreadable(repo: &Repository) -> Result<Vec<(Id, Error)>> {
    Ok(classify(repo)?.1)
}

/// Every readable record of this repository, oldest first. Damaged records and records of
/// another repository are skipped with a warning.
pub fn read_all(repo: &Repository) -> Result<Vec<(Id, CheckRecord)>> {
    let (readable, unreadable) = classify(repo)?;
    for (_, e) in unreadable {
        tracing::warn!(error = %e, "skipping a check record; run `dbbackup check`");
    }
    Ok(readable)
}

/// Every record, read in one parallel pass: those of this repository (oldest first), and
/// those that cannot be read or belong to another repository, with why. A record deleted
/// since the listing (expired by another check) is neither.
fn classify(repo: &Repository) -> Result<Records> {
    let me = repo.config().id;
    let dir = ObjectKind::Check.dir();
    let listed = repo
        .list_ids(ObjectKind::Check)?
        .into_iter()
        .map(|id| (dir.to_string(), id))
        .collect();
    let (mut readable, mut unreadable) = (Vec::new(), Vec::new());
    read_objects_in(repo, ObjectKind::Check, listed, |_, id, r| {
        let object = format!("{dir}/{id}");
        match r.and_then(|plain| CheckRecord::decode(&object, &plain)) {
            Ok(r) if r.repository == me => readable.push((id, r)),
            Ok(_) => unreadable.push((id, Error::corrupt(object, "a check record of another repository"))),
            Err(e) if e.kind() == ErrorKind::NotFound => {} // expired meanwhile
            Err(e) if e.kind() == ErrorKind::Corrupt => unreadable.push((id, e)),
            Err(e) => return Err(e),
        }
        Ok(())
    })?;
    readable.sort_by(|a, b| a.1.time.cmp(&b.1.time).then(a.0.cmp(&b.0)));
    Ok((readable, unreadable))
}

/// Readable records, and unreadable ones with why.
type Records = (Vec<(Id, CheckRecord)>, Vec<(Id, Error)>);

/// The records older than the newest clean record of their class.
fn expired(records: &[(Id, CheckRecord)]) -> Vec<Id> {
    let mut newest_clean: BTreeMap<ReadDataClass, jiff::Timestamp> = BTreeMap::new();
    for (_, r) in records.iter().filter(|(_, r)| r.clean()) {
        let t = newest_clean.entry(r.read_data).or_insert(r.time);
        *t = (*t).max(r.time);
    }
    records
        .iter()
        .filter(|(_, r)| newest_clean.get(&r.read_data).is_some_and(|t| r.time < *t))
        .map(|(id, _)| *id)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(n: u8, class: ReadDataClass, secs: i64, problems: u64) -> (Id, CheckRecord) {
        (
            Id([n; 32]),
            CheckRecord {
                version: 1,
                repository: Id([0; 32]),
                time: jiff::Timestamp::from_second(secs).unwrap(),
                hostname: "h".into(),
                tool_version: "0".into(),
                read_data: class,
                subset: None,
                snapshots: 0,
                packs: 0,
                packs_read: 0,
                bytes_read: 0,
                problems,
                warnings: 0,
            },
        )
    }

    #[test]
    fn records_before_the_newest_clean_one_of_their_class_expire() {
        use ReadDataClass::{All, None as Structure, Subset};
        let records = [
            rec(1, Structure, 10, 0),
            rec(2, Structure, 20, 3),
            rec(3, Structure, 30, 0),
            rec(4, Structure, 40, 2),
            rec(5, All, 15, 0),
            rec(6, All, 25, 1),
            rec(7, Subset, 5, 1),
            rec(8, Subset, 35, 0),
        ];
        let mut gone = expired(&records);
        gone.sort();
        // Structure: 3 is the newest clean, 4 failed after it: both stay. All: no clean run
        // after the failed one, so both stay. Subset: 8 is clean and newest.
        assert_eq!(gone, vec![Id([1; 32]), Id([2; 32]), Id([7; 32])]);
        assert!(expired(&[rec(9, All, 1, 4)]).is_empty(), "a failed record alone stays");
    }

    #[test]
    fn subsets_are_recorded_as_given() {
        assert_eq!(class_of(ReadData::None), (ReadDataClass::None, None));
        assert_eq!(class_of(ReadData::All), (ReadDataClass::All, None));
        assert_eq!(
            class_of(ReadData::Part { n: 2, of: 5 }),
            (ReadDataClass::Subset, Some("2/5".into()))
        );
        assert_eq!(class_of(ReadData::Percent(10.0)).1.as_deref(), Some("10%"));
    }
}
