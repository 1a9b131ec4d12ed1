//! Honest progress (#26 part 6): each phase says what it counts (bytes, or items such as
//! snapshots and packs) and gives a total only when it is exact; the work reported adds up
//! to that total. Drawn by the binary (cli/output.rs; bars only on a terminal), recorded here.

mod common;

use std::sync::Mutex;

use common::ops::{input, run, small_repo, snapshot};
use common::TestRepo;
use dbbackup::check::{check, ReadData};
use dbbackup::progress::{Progress, Work};
use dbbackup::prune::{prune, MaxUnused, PruneOptions};
use dbbackup::repo::lock::Operation;
use dbbackup::repo::session::{ReadLock, Session};
use dbbackup::restore::Target;

/// Every phase with what it counts and how much was reported.
#[derive(Default)]
struct Recorder(Mutex<Vec<(String, Work, u64)>>);

impl Progress for Recorder {
    fn start(&self, phase: &str, work: Work) {
        self.0.lock().unwrap().push((phase.to_string(), work, 0));
    }
    fn advance(&self, n: u64) {
        if let Some(last) = self.0.lock().unwrap().last_mut() {
            last.2 += n;
        }
    }
}

impl Recorder {
    fn phases(&self) -> Vec<(String, Work, u64)> {
        self.0.lock().unwrap().clone()
    }
}

/// A phase with a total reports exactly that much.
fn adds_up(phases: &[(String, Work, u64)]) {
    for (phase, work, done) in phases {
        match work {
            Work::Bytes(Some(t)) | Work::Count(t) => assert_eq!(done, t, "{phase}: {work:?}"),
            Work::Bytes(None) => {}
        }
    }
}

#[test]
fn prune_counts_snapshots_as_snapshots_and_repacks_bytes_against_their_exact_total() {
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    let repo = small_repo(h);
    let files: Vec<_> = (0..5).map(|i| input(h, i)).collect();
    for f in &files {
        snapshot(h, &repo, f);
    }
    common::ok(run(h, &repo, &["forget", "--keep-last", "2"]), "forget");
    let t = TestRepo::open(&repo);

    let rec = Recorder::default();
    let s = Session::begin(&t.repo, &t.index, Operation::Prune).unwrap();
    let opts = PruneOptions {
        max_unused: MaxUnused::Percent(0.0),
        dry_run: false,
        work_dir: h.join("prune-work"),
        ignore: vec![],
    };
    let rep = prune(&s, &opts, &rec).unwrap();
    drop(s);
    let phases = rec.phases();
    assert!(rep.repacked_packs > 0, "{rep:?}");
    let refs = phases.iter().find(|p| p.0 == "references").expect("references phase");
    assert_eq!(refs.1, Work::Count(2), "the two kept snapshots, counted: {phases:?}");
    let repack = phases.iter().find(|p| p.0 == "repack").expect("repack phase");
    assert_eq!(repack.1, Work::Bytes(Some(rep.repacked_bytes)), "{phases:?}");
    adds_up(&phases);

    // check --read-data: the bytes of every pack, exactly.
    let rec = Recorder::default();
    let s = Session::begin_reading(&t.repo, &t.index, Operation::Check, ReadLock::Take).unwrap();
    let report = check(&s, ReadData::All, &rec).unwrap();
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    let phases = rec.phases();
    assert!(
        matches!(phases.as_slice(), [(p, Work::Bytes(Some(n)), _)] if p == "check" && *n > 0),
        "{phases:?}"
    );
    adds_up(&phases);

    // restore: the snapshot's size, exactly.
    let (id, _) = t.repo.snapshot_listing().unwrap();
    let newest = id
        .iter()
        .map(|i| t.repo.load_manifest(i).unwrap())
        .max_by_key(|m| m.time)
        .unwrap();
    let rec = Recorder::default();
    let target = Target::Path(h.join("restored"));
    dbbackup::restore::restore_snapshot(&t.reader(), &newest, &target, false, &rec).unwrap();
    let phases = rec.phases();
    assert_eq!(phases.len(), 1, "{phases:?}");
    assert_eq!(phases[0].1, Work::Bytes(Some(newest.size())), "{phases:?}");
    assert_eq!(newest.size(), std::fs::metadata(h.join("restored")).unwrap().len());
    adds_up(&phases);
}

/// A database's size on the server is no total for its dump (often three times the dump):
/// the dump phase reports bytes and rate without a total, and the bytes it reports are the
/// dump's.
#[test]
fn a_dump_reports_its_bytes_without_a_total_it_cannot_know() {
    use common::pg::{Pg, PG_BIN};
    use dbbackup::snapshot::{SnapshotOptions, SnapshotWriter};
    use dbbackup::sources::dump::{dump_databases, DumpOptions, Selection};
    use dbbackup::sources::postgres::{PgConn, Postgres};

    let pg = Pg::start();
    pg.sql("postgres", "create database sized");
    pg.sql(
        "sized",
        "create table t as select g, md5(g::text) as h from generate_series(1, 50000) g;
         create index on t (h);",
    );
    let t = TestRepo::new();
    let engine = Postgres {
        conn: PgConn {
            host: Some("127.0.0.1".into()),
            port: Some(pg.port),
            user: Some("postgres".into()),
            bin_dir: Some(PG_BIN.into()),
        },
    };
    let opts = DumpOptions {
        selection: Selection::One("sized".into()),
        jobs: 1,
        directory: false,
        temp_dir: None,
        continue_on_error: false,
        globals: false,
        host: None,
        port: None,
        user: None,
    };
    let s = t.writer();
    let w = SnapshotWriter::new(&s, SnapshotOptions::named("sized")).unwrap();
    let rec = Recorder::default();
    dump_databases(&w, &engine, &opts, &rec).unwrap();
    let phases = rec.phases();
    let server: u64 = pg
        .sql("postgres", "select pg_database_size('sized')")
        .trim()
        .parse()
        .unwrap();
    match phases.as_slice() {
        [(phase, Work::Bytes(None), done)] => {
            assert_eq!(phase, "snapshot");
            assert!(*done > 0 && *done < server, "dump {done} B, on the server {server} B");
        }
        other => panic!("{other:?}"),
    }
}
