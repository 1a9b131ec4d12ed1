//! WAL archiving and point-in-time recovery against a real PostgreSQL 15 server: the server
//! archives through `dbbackup wal push` (its first push killed mid-way: PostgreSQL retries
//! and nothing is lost), a physical snapshot, a pgbench workload with marker rows at known
//! times and WAL switches between them, PITR to a time between two markers into a new data
//! directory; the recovered server holds exactly the markers up to the target and passes
//! pg_amcheck. Then the push rules: same bytes again, different bytes, another cluster.
//! A second test recovers onto a new timeline that keeps archiving, then recovers again to
//! a moment on that timeline from the base backup taken before the switch.

mod common;

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::pg::{as_pg_user, Pg, PG_BIN};

/// The repository and the settings every dbbackup call (ours and the server's) uses.
struct Archive {
    bin: String,
    repo: PathBuf,
    pw: PathBuf,
    cache: PathBuf,
}

impl Archive {
    fn new(dir: &Path) -> Archive {
        let pw = dir.join("password");
        std::fs::write(&pw, "pitr test password\n").unwrap();
        std::fs::set_permissions(&pw, std::fs::Permissions::from_mode(0o600)).unwrap();
        if unsafe { libc::geteuid() } == 0 {
            let id = |f: &str| -> u32 {
                let o = Command::new("id").args([f, "postgres"]).output().unwrap();
                String::from_utf8_lossy(&o.stdout).trim().parse().unwrap()
            };
            std::os::unix::fs::chown(&pw, Some(id("-u")), Some(id("-g"))).unwrap();
        }
        let a = Archive {
            bin: assert_cmd::cargo::cargo_bin("dbbackup").to_string_lossy().into_owned(),
            repo: dir.join("repo"),
            pw,
            cache: dir.join("cache"),
        };
        let o = a.run(&["init", "--kdf-memory-kib", "256", "--kdf-iterations", "1"]);
        assert!(o.status.success(), "init: {}", common::stderr(&o));
        a
    }

    /// Global options, as the server's commands carry them.
    fn globals(&self) -> Vec<String> {
        vec![
            "--repo".into(),
            self.repo.to_string_lossy().into(),
            "--password-file".into(),
            self.pw.to_string_lossy().into(),
            "--cache-dir".into(),
            self.cache.to_string_lossy().into(),
        ]
    }

    fn cmd(&self) -> Command {
        let mut c = as_pg_user(&self.bin);
        c.env_remove("DBBACKUP_PASSWORD")
            .env_remove("DBBACKUP_REPOSITORY")
            .args(self.globals());
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.cmd().args(args).output().unwrap()
    }

    fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut a = vec!["--json"];
        a.extend_from_slice(args);
        let o = self.run(&a);
        assert!(o.status.success(), "{args:?}: {}", common::stderr(&o));
        serde_json::from_slice(&o.stdout).unwrap()
    }
}

/// A server archiving into `ar` through a script in `dir`. With `kill_flag`, the script's
/// first push is SIGKILLed at its third storage write and the flag file made.
fn archiving_server(ar: &Archive, dir: &Path, kill_flag: Option<&Path>) -> Pg {
    let script = dir.join("push.sh");
    let base = format!("{} {}", ar.bin, ar.globals().join(" "));
    let first = kill_flag.map_or(String::new(), |flag| {
        format!(
            "if [ ! -e {f} ]; then touch {f}; DBBACKUP_TEST_KILL_AT_MUTATION=3 exec {base} -q wal push \"$1\"; fi\n",
            f = flag.display()
        )
    });
    std::fs::write(&script, format!("#!/bin/sh\n{first}exec {base} -q wal push \"$1\"\n")).unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    Pg::start_with(&format!(
        "\nwal_level = replica\narchive_mode = on\narchive_command = '{} %p'\n",
        script.display()
    ))
}

fn private_tempdir(prefix: &str) -> tempfile::TempDir {
    let d = tempfile::Builder::new().prefix(prefix).tempdir().unwrap();
    std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    d
}

fn wait_for(what: &str, log: &Path, mut done: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !done() {
        if t0.elapsed() > Duration::from_secs(90) {
            panic!(
                "timed out waiting for {what}; server log:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn archive_snapshot_and_recover_to_a_point_in_time() {
    let work = private_tempdir("dbbackup-pitr-");
    let ar = Archive::new(work.path());
    // The server's archive_command; its first call is SIGKILLed before its pack is written.
    let flag = work.path().join("killed-once");
    let pg = archiving_server(&ar, work.path(), Some(&flag));
    let log = pg.dir.path().join("log");

    common::ok(
        pg.client("pgbench")
            .args(["-i", "-s", "1", "-q", "postgres"])
            .output()
            .unwrap(),
        "pgbench -i",
    );
    pg.sql(
        "postgres",
        "create table marker (i int primary key, t timestamptz not null default clock_timestamp())",
    );
    let snap = physical_snapshot(&ar, &pg);
    let physical = &snap["snapshot"]["source"];
    assert_eq!(physical["kind"], "physical", "{snap}");
    assert_eq!(
        physical["system_id"],
        pg.sql("postgres", "select system_identifier from pg_control_system()")
    );

    // Markers at known times, a workload and a WAL switch after each.
    let mut times = Vec::new();
    let mut last_switched = String::new();
    for i in 1..=4 {
        common::ok(
            pg.client("pgbench")
                .args(["-n", "-t", "200", "-c", "2", "postgres"])
                .output()
                .unwrap(),
            "pgbench",
        );
        let t = pg.sql("postgres", &format!("insert into marker (i) values ({i}) returning t"));
        times.push(t);
        last_switched = pg.sql("postgres", "select pg_walfile_name(pg_switch_wal())");
        std::thread::sleep(Duration::from_millis(1500));
    }
    wait_archived(&pg, &log, &last_switched);
    // The killed push: the archiver saw its command die (it restarts and retries).
    let server_log = std::fs::read_to_string(&log).unwrap();
    let killed = server_log.contains("terminated by signal 9") || server_log.contains("failed with exit code 137");
    assert!(flag.exists() && killed, "{server_log}");

    // Nothing lost: one timeline, no gaps, from before the base backup to the last switch.
    let stats = ar.json(&["wal", "stats"]);
    let tl = &stats["timelines"][0];
    assert_eq!(stats["timelines"].as_array().unwrap().len(), 1, "{stats}");
    assert_eq!(tl["gaps"], serde_json::json!([]), "{stats}");
    assert!(
        tl["first"].as_str().unwrap() <= physical["start_wal"].as_str().unwrap(),
        "{stats}"
    );
    assert!(tl["last"].as_str().unwrap() >= last_switched.as_str(), "{stats}");
    assert_eq!(stats["system_id"], physical["system_id"]);

    // Recover to a moment between markers 2 and 3.
    let t2: jiff::Timestamp = pg
        .sql(
            "postgres",
            "select to_char(t at time zone 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') from marker where i = 2",
        )
        .parse()
        .unwrap();
    let target = (t2 + jiff::SignedDuration::from_millis(700)).to_string();
    let restored = private_tempdir("dbbackup-pitr-restored-");
    let data = restored.path().join("data");
    // A newer snapshot whose manifest cannot be read (both copies damaged, not cached) does
    // not stop the recovery: the base is chosen among the readable ones, with a warning.
    let damaged = damaged_snapshot(&ar);
    let o = ar.run(&[
        "--json",
        "restore",
        "--pitr",
        "--target-time",
        &target,
        "--target-action",
        "promote",
        "--pgdata",
        data.to_str().unwrap(),
    ]);
    let err = common::stderr(&o);
    assert!(o.status.success(), "restore --pitr: {err}");
    assert!(
        err.contains("cannot read this snapshot's manifest") && err.contains(&damaged.0),
        "{err}"
    );
    for (p, b) in &damaged.1 {
        std::fs::write(p, b).unwrap();
    }
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(r["snapshot_id"], snap["id"], "{r}");
    assert!(data.join("recovery.signal").exists());
    let auto = std::fs::read_to_string(data.join("postgresql.auto.conf")).unwrap();
    assert!(
        auto.contains("wal fetch %f %p") && !auto.contains("pitr test password"),
        "{auto}"
    );
    // A non-empty directory is refused.
    let again = ar.run(&["restore", "--pitr", "--pgdata", data.to_str().unwrap()]);
    assert_eq!(again.status.code(), Some(73), "{}", common::stderr(&again));

    let rec = recover(restored);
    assert_eq!(
        rec.sql("postgres", "select string_agg(i::text, ',' order by i) from marker"),
        "1,2",
        "exactly the markers committed before {target} (marker times {times:?})"
    );
    assert_eq!(rec.sql("postgres", "select count(*) from pgbench_accounts"), "100000");
    common::ok(
        rec.client("pg_amcheck")
            .args(["--install-missing", "--all"])
            .output()
            .unwrap(),
        "pg_amcheck",
    );
    let check = ar.run(&["check"]);
    assert!(check.status.success(), "check: {}", common::stderr(&check));

    push_rules(&ar, work.path(), &last_switched);
    drop(rec);
    retention_keeps_what_the_newest_base_needs(&ar, &pg, &log);
}

/// A point-in-time recovery that becomes the new primary: it promotes onto timeline 2 and
/// archives into the same repository (its `.history` file, then timeline 2's segments). A later PITR to a moment on timeline 2, from
/// the base backup taken on timeline 1, follows the history: it holds the markers of
/// timeline 1 before the switch and those of timeline 2 up to the target, not the one
/// timeline 1 had after the switch point.
#[test]
fn recover_onto_a_new_timeline_and_again_within_it() {
    let work = private_tempdir("dbbackup-tli-");
    let ar = Archive::new(work.path());
    let pg = archiving_server(&ar, work.path(), None);
    let log = pg.dir.path().join("log");
    pg.sql(
        "postgres",
        "create table marker (i int primary key, t timestamptz not null default clock_timestamp())",
    );
    let snap = physical_snapshot(&ar, &pg);
    let marker = |pg: &Pg, i: u32| -> String {
        let t = pg.sql(
            "postgres",
            &format!(
                "insert into marker (i) values ({i}) \
                 returning to_char(t at time zone 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')"
            ),
        );
        let f = pg.sql("postgres", "select pg_walfile_name(pg_switch_wal())");
        std::thread::sleep(Duration::from_millis(1500));
        wait_archived(pg, &pg.dir.path().join("log"), &f);
        t
    };
    let t1 = marker(&pg, 1);
    marker(&pg, 2); // the mistake the recovery undoes
    wait_archived(&pg, &log, "");
    drop(pg);

    // Recover to just after marker 1 and promote; the new primary keeps archiving.
    let b_dir = private_tempdir("dbbackup-tli-b-");
    let data = b_dir.path().join("data");
    ar.json(&[
        "restore",
        "--pitr",
        "--target-time",
        &after(&t1, 700),
        "--target-action",
        "promote",
        "--pgdata",
        data.to_str().unwrap(),
    ]);
    let b = Pg::run_on(b_dir);
    let b_log = b.dir.path().join("log");
    wait_for("promotion", &b_log, || {
        b.psql("postgres", "select pg_is_in_recovery()")
            .stdout
            .starts_with(b"f")
    });
    assert_eq!(b.sql("postgres", TIMELINE), "00000002");
    let t3 = marker(&b, 3);
    marker(&b, 4);
    drop(b);

    let stats = ar.json(&["wal", "stats"]);
    assert_eq!(stats["history"], 1, "{stats}");
    let tls: Vec<u64> = stats["timelines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["timeline"].as_u64().unwrap())
        .collect();
    assert_eq!(tls, [1, 2], "{stats}");
    let check = ar.run(&["check"]);
    assert!(check.status.success(), "check: {}", common::stderr(&check));

    // Back to just after marker 3, on timeline 2, from the base taken on timeline 1.
    let c_dir = private_tempdir("dbbackup-tli-c-");
    let data = c_dir.path().join("data");
    let r = ar.json(&[
        "restore",
        "--pitr",
        "--target-time",
        &after(&t3, 700),
        "--target-action",
        "promote",
        "--pgdata",
        data.to_str().unwrap(),
    ]);
    assert_eq!(r["snapshot_id"], snap["id"], "{r}");
    let c = recover(c_dir);
    assert_eq!(
        c.sql("postgres", "select string_agg(i::text, ',' order by i) from marker"),
        "1,3"
    );
    assert_eq!(c.sql("postgres", TIMELINE), "00000003");
}

/// File-by-file physical snapshots: a full one, an incremental one that reads only what
/// changed (the big table it leaves unread), a differential one against the full; the
/// incremental restores on its own into a new directory, and the server started on it holds
/// exactly the data at its time and passes pg_amcheck.
#[test]
fn incremental_and_differential_physical_snapshots() {
    let work = private_tempdir("dbbackup-incr-");
    let ar = Archive::new(work.path());
    let pg = archiving_server(&ar, work.path(), None);
    common::ok(
        pg.client("pgbench")
            .args(["-i", "-s", "2", "-q", "postgres"])
            .output()
            .unwrap(),
        "pgbench -i",
    );
    pg.sql("postgres", "create table marker (i int primary key)");
    pg.sql("postgres", "checkpoint");
    std::thread::sleep(Duration::from_millis(1200));
    let pgdata = pg.dir.path().join("data");
    let snap = |mode: &str| physical_snapshot_with(&ar, &pg, &["--mode", mode, "--pgdata", pgdata.to_str().unwrap()]);
    let full = snap("full");
    assert_eq!(full["snapshot"]["source"]["mode"], "full", "{full}");
    let full_read = full["snapshot"]["summary"]["bytes_read"].as_u64().unwrap();

    pg.sql("postgres", "insert into marker values (1)");
    pg.sql("postgres", "update pgbench_branches set bbalance = bbalance + 1");
    pg.sql("postgres", "checkpoint");
    let incr = snap("incremental");
    let src = &incr["snapshot"]["source"];
    assert_eq!(src["mode"], "incremental", "{incr}");
    assert_eq!(src["parent"], full["id"], "{incr}");
    let incr_read = incr["snapshot"]["summary"]["bytes_read"].as_u64().unwrap();
    eprintln!("bytes read: full {full_read}, incremental {incr_read}");
    // pgbench_accounts (200000 rows, about 26 MB with its index) is not read again.
    assert!(
        incr_read * 3 < full_read,
        "incremental read {incr_read} bytes, full {full_read}"
    );

    pg.sql("postgres", "insert into marker values (2)");
    let diff = snap("differential");
    assert_eq!(diff["snapshot"]["source"]["parent"], full["id"], "{diff}");

    // Rows updated all over pgbench_accounts change a few bytes of most of its pages: a full
    // snapshot reads every file again, and the changed chunks are stored as deltas (§5.1)
    // against the first full snapshot's.
    pg.sql(
        "postgres",
        "update pgbench_accounts set abalance = abalance + 1 where aid % 400 = 0",
    );
    pg.sql("postgres", "checkpoint");
    let full2 = snap("full");
    let sum = |v: &serde_json::Value, f: &str| v["snapshot"]["summary"][f].as_u64().unwrap_or(0);
    eprintln!(
        "second full: {} new chunks, {} deltas, {} bytes stored; first full stored {}",
        sum(&full2, "chunks_new"),
        sum(&full2, "chunks_delta"),
        sum(&full2, "bytes_stored"),
        sum(&full, "bytes_stored")
    );
    assert!(sum(&full2, "chunks_delta") >= 10, "{full2}");
    assert!(sum(&full2, "bytes_stored") * 5 < sum(&full, "bytes_stored"), "{full2}");
    drop(pg);

    let rec = restore_and_recover(&ar, &incr, "dbbackup-incr-restored-");
    assert_eq!(
        rec.sql("postgres", "select string_agg(i::text, ',' order by i) from marker"),
        "1"
    );
    assert_eq!(rec.sql("postgres", "select count(*) from pgbench_accounts"), "200000");
    assert_eq!(rec.sql("postgres", "select sum(bbalance) from pgbench_branches"), "2");
    common::ok(
        rec.client("pg_amcheck")
            .args(["--install-missing", "--all"])
            .output()
            .unwrap(),
        "pg_amcheck",
    );
    drop(rec);

    // The delta snapshot restores and recovers to the updated rows.
    let rec = restore_and_recover(&ar, &full2, "dbbackup-delta-restored-");
    assert_eq!(
        rec.sql(
            "postgres",
            "select sum(abalance) from pgbench_accounts where aid % 400 = 0"
        ),
        "500"
    );
    assert_eq!(
        rec.sql("postgres", "select string_agg(i::text, ',' order by i) from marker"),
        "1,2"
    );
    let check = ar.run(&["check", "--read-data"]);
    assert!(check.status.success(), "check: {}", common::stderr(&check));
}

/// The timeline a server writes WAL on, as it appears in file names.
const TIMELINE: &str = "select substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8)";

/// RFC 3339 time `t` plus `ms` milliseconds.
/// A `--stdin` snapshot whose manifest and registry copy are overwritten with garbage and whose
/// cached copy is removed: its id, and the original files to put back.
fn damaged_snapshot(ar: &Archive) -> (String, Vec<(PathBuf, Vec<u8>)>) {
    let mut c = ar.cmd();
    c.args(["--json", "snapshot", "--stdin", "--name", "other"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"not a physical snapshot\n")
        .unwrap();
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "snapshot --stdin: {}", common::stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let id = v["id"].as_str().unwrap().to_string();
    let mut saved = Vec::new();
    for dir in ["snapshots", "registry"] {
        let p = ar.repo.join(dir).join(&id);
        saved.push((p.clone(), std::fs::read(&p).unwrap()));
        std::fs::write(&p, b"garbage").unwrap();
    }
    for p in walk(&ar.cache) {
        if p.file_name().is_some_and(|n| n.to_string_lossy() == id) {
            std::fs::remove_file(&p).unwrap();
        }
    }
    (id, saved)
}

fn after(t: &str, ms: i64) -> String {
    let ts: jiff::Timestamp = t.parse().unwrap_or_else(|e| panic!("cannot parse {t}: {e}"));
    (ts + jiff::SignedDuration::from_millis(ms)).to_string()
}

/// A second physical snapshot; prune keeping only it removes the WAL before its start and
/// nothing it needs: recovery from it to the end of the archive has every marker.
fn retention_keeps_what_the_newest_base_needs(ar: &Archive, pg: &Pg, log: &Path) {
    pg.sql("postgres", "insert into marker (i) values (5)");
    let snap = physical_snapshot(ar, pg);
    let start_wal = snap["snapshot"]["source"]["start_wal"].as_str().unwrap().to_string();
    pg.sql("postgres", "insert into marker (i) values (6)");
    let mut last = String::new();
    for _ in 0..2 {
        common::ok(
            pg.client("pgbench")
                .args(["-n", "-t", "100", "postgres"])
                .output()
                .unwrap(),
            "pgbench",
        );
        last = pg.sql("postgres", "select pg_walfile_name(pg_switch_wal())");
    }
    wait_archived(pg, log, &last);
    let before = ar.json(&["wal", "stats"]);
    let p = ar.json(&["prune", "--keep-last", "1"]);
    let expired = p["prune"]["wal_files_expired"].as_u64().unwrap();
    assert!(expired > 0, "{p}");
    let after = ar.json(&["wal", "stats"]);
    assert_eq!(
        after["files"].as_u64().unwrap(),
        before["files"].as_u64().unwrap() - expired,
        "{after}"
    );
    let tl = &after["timelines"][0];
    assert_eq!(tl["first"].as_str().unwrap(), start_wal, "{after}");
    assert_eq!(tl["gaps"], serde_json::json!([]), "{after}");
    let check = ar.run(&["check", "--read-data"]);
    assert!(check.status.success(), "check: {}", common::stderr(&check));

    let restored = private_tempdir("dbbackup-pitr-latest-");
    let data = restored.path().join("data");
    ar.json(&["restore", "--pitr", "--pgdata", data.to_str().unwrap()]);
    let rec = recover(restored);
    assert_eq!(
        rec.sql("postgres", "select string_agg(i::text, ',' order by i) from marker"),
        "1,2,3,4,5,6"
    );

    // A segment lost after the base backup is a gap that check reports against it.
    let list = ar.json(&["wal", "list"]);
    let victim = list
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e, e["file"].as_str().unwrap()))
        .find(|(_, f)| f.len() == 24 && *f > start_wal.as_str() && *f < last.as_str())
        .map(|(e, _)| e)
        .unwrap_or_else(|| panic!("no segment between {start_wal} and {last}: {list}"));
    let id = victim["id"].as_str().unwrap();
    let path = walk(&ar.repo.join("wal"))
        .into_iter()
        .find(|p| p.file_name().is_some_and(|n| n == id))
        .unwrap();
    std::fs::remove_file(&path).unwrap();
    let o = ar.run(&["--json", "check"]);
    assert_eq!(o.status.code(), Some(65), "{}", common::stderr(&o));
    let rep: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let file = victim["file"].as_str().unwrap();
    assert!(
        rep["errors"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| { e["object"] == format!("WAL {file} .. {file}") && e["affects"][0] == snap["id"] }),
        "{rep}"
    );
}

/// Start a server on the restored `dir/data` and wait until recovery has ended. The
/// recovered cluster must not archive into the same repository (it would fork the archive
/// onto a new timeline beside the original server's).
fn recover(dir: tempfile::TempDir) -> Pg {
    let mut auto = std::fs::OpenOptions::new()
        .append(true)
        .open(dir.path().join("data/postgresql.auto.conf"))
        .unwrap();
    std::io::Write::write_all(&mut auto, b"archive_mode = off\n").unwrap();
    let rec = Pg::run_on(dir);
    let log = rec.dir.path().join("log");
    wait_for("the end of recovery", &log, || {
        rec.psql("postgres", "select pg_is_in_recovery()")
            .stdout
            .starts_with(b"f")
    });
    rec
}

/// Restore physical snapshot `snap` (its JSON report) into a new private directory and start
/// a server on it that recovers.
fn restore_and_recover(ar: &Archive, snap: &serde_json::Value, prefix: &str) -> Pg {
    let restored = private_tempdir(prefix);
    let data = restored.path().join("data");
    ar.json(&[
        "restore",
        snap["id"].as_str().unwrap(),
        "--pgdata",
        data.to_str().unwrap(),
    ]);
    recover(restored)
}

/// `snapshot --physical` of `pg`'s cluster; its JSON report.
fn physical_snapshot(ar: &Archive, pg: &Pg) -> serde_json::Value {
    physical_snapshot_with(ar, pg, &[])
}

/// `snapshot --physical` with `extra` options.
fn physical_snapshot_with(ar: &Archive, pg: &Pg, extra: &[&str]) -> serde_json::Value {
    let port = pg.port.to_string();
    let mut args = vec![
        "snapshot",
        "--physical",
        "--host",
        "127.0.0.1",
        "--port",
        &port,
        "--user",
        "postgres",
        "--bin-dir",
        PG_BIN,
    ];
    args.extend_from_slice(extra);
    ar.json(&args)
}

/// Wait until `pg` has archived WAL file `file` (or a later one).
fn wait_archived(pg: &Pg, log: &Path, file: &str) {
    wait_for("the archiver", log, || {
        pg.sql(
            "postgres",
            "select coalesce(last_archived_wal, '') from pg_stat_archiver",
        )
        .as_str()
            >= file
    });
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// The same bytes again: exit 0, stored once; other bytes under an archived name: exit 73;
/// a segment of another cluster: exit 78; a file the archive lacks: exit 66.
fn push_rules(ar: &Archive, dir: &Path, segment: &str) {
    let spool = dir.join("spool");
    std::fs::create_dir_all(&spool).unwrap();
    std::fs::set_permissions(&spool, std::fs::Permissions::from_mode(0o777)).unwrap();
    let seg = spool.join(segment);
    let o = ar.run(&["wal", "fetch", segment, seg.to_str().unwrap()]);
    assert!(o.status.success(), "fetch: {}", common::stderr(&o));
    let before = ar.json(&["wal", "stats"])["files"].clone();
    let again = ar.json(&["wal", "push", seg.to_str().unwrap()]);
    assert_eq!(again["result"], "already_archived", "{again}");
    assert_eq!(ar.json(&["wal", "stats"])["files"], before);

    let mut bytes = std::fs::read(&seg).unwrap();
    bytes[100_000] ^= 1;
    std::fs::write(&seg, &bytes).unwrap();
    let o = ar.run(&["wal", "push", seg.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(73), "{}", common::stderr(&o));
    assert!(
        common::stderr(&o).contains("different content"),
        "{}",
        common::stderr(&o)
    );

    bytes[24] ^= 0xff; // the system identifier in the long page header
    let other = spool.join("0000000900000000000000F0");
    std::fs::write(&other, &bytes).unwrap();
    let o = ar.run(&["wal", "push", other.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(78), "{}", common::stderr(&o));
    assert!(common::stderr(&o).contains("cluster"), "{}", common::stderr(&o));

    let o = ar.run(&["wal", "fetch", "0000000100000000000000FF", seg.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(66), "{}", common::stderr(&o));
}
