//! The WAL archive's record (`wal-archive/`, repo-format §12) is verified and never taken
//! over: `check` reports every kind of damage to it (flipped byte, cut short, deleted, sealed
//! by another repository, naming another cluster, bound to another repository, a stray
//! object) with exit 65 while pushes stop loudly; a push from another cluster is refused with
//! 78 and never writes the record again; `repair wal-archive` writes it again from the
//! catalog, choosing the cluster with `--system-id` when the archive holds two.
//! Segments are synthetic (tests/common/wal.rs), so no server is needed.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

use common::wal::{segment_bytes, segment_name};
use common::{cli, cli_repo, json, stderr, TestRepo};
use dbbackup::format::wal::ArchiveInfo;
use dbbackup::format::RepoObject;
use dbbackup::format::{Id, ObjectKind};

const A: u64 = 7_311_234_567_890_123_456;
const B: u64 = 6_900_000_000_000_000_001;

struct Archive {
    home: tempfile::TempDir,
    repo: PathBuf,
}

impl Archive {
    fn new() -> Archive {
        let (home, repo) = cli_repo();
        Archive { home, repo }
    }

    fn run(&self, args: &[&str]) -> Output {
        cli(self.home.path())
            .arg("-r")
            .arg(&self.repo)
            .args(args)
            .output()
            .unwrap()
    }

    /// `wal push` of segment `segno` of cluster `sysid`, from that cluster's data directory.
    fn push(&self, sysid: u64, segno: u64) -> Output {
        let data = self.home.path().join(format!("cluster-{sysid}"));
        std::fs::create_dir_all(data.join("pg_wal")).unwrap();
        let path = data.join("pg_wal").join(segment_name(segno));
        std::fs::write(&path, segment_bytes(sysid, segno)).unwrap();
        self.run(&["--json", "wal", "push", path.to_str().unwrap()])
    }

    fn pushed(&self, sysid: u64, segno: u64) {
        let o = self.push(sysid, segno);
        assert!(o.status.success(), "push {segno} of {sysid}: {}", stderr(&o));
    }

    /// `check --json`: exit code and report.
    fn check(&self) -> (Option<i32>, serde_json::Value) {
        let o = self.run(&["--json", "check"]);
        (o.status.code(), serde_json::from_slice(&o.stdout).unwrap_or_default())
    }

    fn records(&self) -> Vec<(PathBuf, Vec<u8>)> {
        let dir = self.repo.join("wal-archive");
        let mut v: Vec<(PathBuf, Vec<u8>)> = std::fs::read_dir(&dir)
            .map(|d| d.map(|f| f.unwrap().path()).collect::<Vec<_>>())
            .unwrap_or_default()
            .into_iter()
            .map(|p: PathBuf| {
                let b = std::fs::read(&p).unwrap();
                (p, b)
            })
            .collect();
        v.sort();
        v
    }

    fn set_records(&self, records: &[(PathBuf, Vec<u8>)]) {
        for (p, _) in self.records() {
            std::fs::remove_file(p).unwrap();
        }
        for (p, b) in records {
            std::fs::write(p, b).unwrap();
        }
    }

    /// Archived file names, sorted.
    fn files(&self) -> Vec<String> {
        common::wal::archived(self.home.path(), &self.repo)
    }

    /// Write a record through the library (sealed with this repository's keys).
    fn save_record(&self, system_id: u64, bound: Bound) {
        let t = TestRepo::open(&self.repo);
        let repository = match bound {
            Bound::Here => Some(t.repo.config().id),
            Bound::Elsewhere => Some(Id([7; 32])),
            Bound::Unbound => None,
        };
        t.repo
            .save_object(ObjectKind::WalArchive, &record(system_id, repository).encode().unwrap())
            .unwrap();
    }
}

/// Which repository a record names.
enum Bound {
    Here,
    Elsewhere,
    /// None, as records written before the binding.
    Unbound,
}

fn record(system_id: u64, repository: Option<Id>) -> ArchiveInfo {
    ArchiveInfo {
        version: 1,
        system_id: system_id.to_string(),
        wal_segment_size: common::wal::SEG as u32,
        created: jiff::Timestamp::now(),
        hostname: "elsewhere".into(),
        repository,
    }
}

/// Every error `check` reported, as "object: message".
fn errors(report: &serde_json::Value) -> String {
    report["errors"]
        .as_array()
        .map(|v| {
            v.iter()
                .map(|p| format!("{}: {}", p["object"], p["message"]))
                .collect::<Vec<_>>()
                .join("\n")
        })
        .unwrap_or_default()
}

fn assert_clean(ar: &Archive, what: &str) {
    let (code, rep) = ar.check();
    assert_eq!(code, Some(0), "{what}: check: {}", errors(&rep));
}

/// A record sealed by another repository's keys, under its own (valid) storage id.
fn foreign_record(dir: &Path) -> (PathBuf, Vec<u8>) {
    let other = TestRepo::new();
    let id = other
        .repo
        .save_object(
            ObjectKind::WalArchive,
            &record(A, Some(other.repo.config().id)).encode().unwrap(),
        )
        .unwrap();
    let bytes = std::fs::read(other.dir.path().join("repo/wal-archive").join(id.to_hex())).unwrap();
    (dir.join(id.to_hex()), bytes)
}

#[test]
fn check_reports_each_kind_of_damage_to_the_record_and_repair_mends_it() {
    let ar = Archive::new();
    ar.pushed(A, 1);
    ar.pushed(A, 2);
    assert_clean(&ar, "after two pushes");
    let pristine = ar.records();
    assert_eq!(pristine.len(), 1, "one record");
    let (path, bytes) = pristine[0].clone();
    let dir = ar.repo.join("wal-archive");

    type Damage<'a> = Box<dyn Fn(&Archive) + 'a>;
    let kinds: Vec<(&str, Damage, i32)> = vec![
        (
            "a flipped byte",
            Box::new(|_: &Archive| {
                let mut b = bytes.clone();
                b[bytes.len() / 2] ^= 1;
                std::fs::write(&path, b).unwrap();
            }),
            65,
        ),
        (
            "cut short",
            Box::new(|_: &Archive| std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap()),
            65,
        ),
        (
            "deleted",
            Box::new(|_: &Archive| std::fs::remove_file(&path).unwrap()),
            65,
        ),
        (
            "sealed by another repository",
            Box::new(|ar: &Archive| {
                std::fs::remove_file(&path).unwrap();
                let (p, b) = foreign_record(&ar.repo.join("wal-archive"));
                std::fs::write(p, b).unwrap();
            }),
            65,
        ),
        (
            "naming another cluster",
            Box::new(|ar: &Archive| {
                std::fs::remove_file(&path).unwrap();
                ar.save_record(B, Bound::Here);
            }),
            78,
        ),
        (
            "bound to another repository",
            Box::new(|ar: &Archive| {
                std::fs::remove_file(&path).unwrap();
                ar.save_record(A, Bound::Elsewhere);
            }),
            65,
        ),
        (
            "a stray object beside it",
            Box::new(|_: &Archive| std::fs::write(dir.join("stray"), b"junk").unwrap()),
            65,
        ),
    ];
    let mut segno = 3;
    for (what, damage, push_code) in &kinds {
        ar.set_records(&pristine);
        damage(&ar);
        let damaged = ar.records();

        let (code, rep) = ar.check();
        assert_eq!(code, Some(65), "{what}: check must fail: {rep}");
        assert!(errors(&rep).contains("wal-archive/"), "{what}: {}", errors(&rep));
        assert!(errors(&rep).contains("repair wal-archive"), "{what}: {}", errors(&rep));

        // Pushes stop loudly, and the record is never written again by one.
        let o = ar.push(A, segno);
        assert_eq!(o.status.code(), Some(*push_code), "{what}: push: {}", stderr(&o));
        assert_eq!(ar.records(), damaged, "{what}: the push changed the records");

        let o = ar.run(&["repair", "wal-archive", "--dry-run"]);
        assert!(o.status.success(), "{what}: dry run: {}", stderr(&o));
        assert_eq!(ar.records(), damaged, "{what}: the dry run changed the records");

        let o = ar.run(&["repair", "wal-archive"]);
        assert!(o.status.success(), "{what}: repair: {}", stderr(&o));
        assert_clean(&ar, &format!("{what}, after repair"));
        ar.pushed(A, segno);
        segno += 1;
        assert_clean(&ar, &format!("{what}, after repair and a push"));
    }
    let expected: Vec<String> = (1..segno).map(segment_name).collect();
    assert_eq!(
        ar.files(),
        expected,
        "every push of cluster A after each repair is archived"
    );
}

#[test]
fn a_push_from_another_cluster_never_recreates_the_record() {
    let ar = Archive::new();
    ar.pushed(A, 1);
    ar.pushed(A, 2);
    let (path, _) = ar.records().remove(0);
    std::fs::remove_file(&path).unwrap();

    let o = ar.push(B, 3);
    assert_eq!(o.status.code(), Some(78), "{}", stderr(&o));
    assert!(stderr(&o).contains(&format!("cluster {A}")), "{}", stderr(&o));
    assert!(ar.records().is_empty(), "a push from another cluster wrote a record");
    assert_eq!(ar.files(), vec![segment_name(1), segment_name(2)]);

    // The archive's own cluster does not write it again either: the operator decides.
    let o = ar.push(A, 3);
    assert_eq!(o.status.code(), Some(65), "{}", stderr(&o));
    assert!(stderr(&o).contains("repair wal-archive"), "{}", stderr(&o));
    assert!(ar.records().is_empty());
    let (code, rep) = ar.check();
    assert_eq!(code, Some(65));
    assert!(errors(&rep).contains("missing"), "{}", errors(&rep));

    let o = ar.run(&["--json", "repair", "wal-archive"]);
    let r = json(&o);
    assert_eq!(r["system_id"], A.to_string(), "{r}");
    assert!(r["record_written"].is_string(), "{r}");
    assert_clean(&ar, "after repair");
    let o = ar.push(B, 3);
    assert_eq!(o.status.code(), Some(78), "{}", stderr(&o));
    ar.pushed(A, 3);

    // A record written before records were bound to their repository is sound.
    std::fs::remove_file(&ar.records()[0].0).unwrap();
    ar.save_record(A, Bound::Unbound);
    assert_clean(&ar, "unbound record");
    ar.pushed(A, 4);
    assert_clean(&ar, "unbound record, after a push");
}

#[test]
fn repair_chooses_the_cluster_when_the_archive_holds_two() {
    let ar = Archive::new();
    ar.pushed(A, 1);
    ar.pushed(A, 2);
    // As an older build allowed: the record lost, another cluster's push took the archive.
    std::fs::remove_file(&ar.records()[0].0).unwrap();
    ar.save_record(B, Bound::Here);
    ar.pushed(B, 5);
    let (code, rep) = ar.check();
    assert_eq!(code, Some(65));
    assert!(
        errors(&rep).contains(&format!("names cluster {B}")) && errors(&rep).contains(&format!("cluster {A}: 2 files")),
        "{}",
        errors(&rep)
    );
    let o = ar.push(A, 3);
    assert_eq!(o.status.code(), Some(78), "{}", stderr(&o));

    // Which cluster is right cannot be guessed.
    let before = ar.records();
    let o = ar.run(&["repair", "wal-archive"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains(&A.to_string()) && stderr(&o).contains(&B.to_string()),
        "{}",
        stderr(&o)
    );
    let o = ar.run(&["repair", "wal-archive", "--system-id", "12345"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let o = ar.run(&[
        "--json",
        "repair",
        "wal-archive",
        "--system-id",
        &A.to_string(),
        "--dry-run",
    ]);
    let r = json(&o);
    assert_eq!(r["files_removed"], serde_json::json!([segment_name(5)]), "{r}");
    assert_eq!(r["records_removed"].as_array().map(Vec::len), Some(1), "{r}");
    assert_eq!(ar.records(), before, "dry run");

    let o = ar.run(&["repair", "wal-archive", "--system-id", &A.to_string()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(ar.files(), vec![segment_name(1), segment_name(2)]);
    assert_clean(&ar, "after repair");
    ar.pushed(A, 3);
    let o = ar.push(B, 6);
    assert_eq!(o.status.code(), Some(78), "{}", stderr(&o));
}
