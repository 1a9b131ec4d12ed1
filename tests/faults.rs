//! Storage that fails: a fault-injecting proxy (tests/common/faults.rs) between dbbackup and
//! a real S3 server (moto) drops connections, cuts answers short, answers 500 and 503, and
//! stalls longer than the request timeout. While faults are transient, every command
//! succeeds and restores byte-identical; during an outage, from the start or in the middle
//! of an upload, commands fail with 69 or 75. Afterwards, read without faults, the
//! repository holds nothing half-written: check --read-data is clean, every snapshot
//! reported saved restores byte-identical, no failed one appears, and prune cleans up.
//! The fault sequence comes from a seed printed at the start (DBBACKUP_FAULT_SEED=N
//! replays it; which request meets which fault also depends on scheduling).

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use common::faults::{FaultProxy, Mode};
use common::servers;
use common::{cli, digest, json, stderr, Gen};

const CREDS: [(&str, &str); 3] = [
    ("AWS_ACCESS_KEY_ID", "test"),
    ("AWS_SECRET_ACCESS_KEY", "test"),
    ("AWS_REGION", "us-east-1"),
];
/// 2 s per attempt; a stall (3 s) always outlasts one.
const LIMITS: [&str; 4] = ["--storage-timeout", "8s", "--storage-retries", "3"];

fn seed() -> u64 {
    let seed = std::env::var("DBBACKUP_FAULT_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    eprintln!("fault seed {seed} (DBBACKUP_FAULT_SEED={seed} replays it)");
    seed
}

struct Case {
    home: tempfile::TempDir,
    faulty: String,
    direct: String,
}

impl Case {
    fn run(&self, loc: &str, args: &[&str], stdin: Option<&Path>) -> Output {
        let mut c = cli(self.home.path());
        c.envs(CREDS).args(["-r", loc]).args(LIMITS).args(args);
        if let Some(p) = stdin {
            c.pipe_stdin(p).unwrap();
        }
        c.output().unwrap()
    }

    fn input(&self, n: u64) -> PathBuf {
        let p = self.home.path().join(format!("in{n}"));
        let g = if n.is_multiple_of(2) {
            Gen::dump(n, 3_000_000)
        } else {
            Gen::random(n, 2_000_000)
        };
        std::io::copy(&mut { g }, &mut std::fs::File::create(&p).unwrap()).unwrap();
        p
    }

    fn snapshot(&self, loc: &str, input: &Path) -> Output {
        self.run(loc, &["--json", "snapshot", "--name", "db", "--stdin"], Some(input))
    }

    /// The restored stream's digest, or the exit code.
    fn restore(&self, loc: &str, id: &str) -> Result<(u64, String), Option<i32>> {
        let o = self.run(loc, &["restore", id, "--target", "-"], None);
        if o.status.success() {
            Ok(digest(&o.stdout[..]))
        } else {
            Err(o.status.code())
        }
    }
}

fn unavailable(o: &Output, what: &str) {
    let code = o.status.code();
    assert!(
        matches!(code, Some(69) | Some(75)),
        "{what}: exit {code:?}, expected 69 or 75: {}",
        stderr(o)
    );
}

/// Run `f` while the proxy passes `n` more requests, then turns to an outage.
fn cut_after(proxy: &FaultProxy, n: u64, f: impl FnOnce() -> Output + Send) -> Output {
    let (_, before) = proxy.counts();
    std::thread::scope(|s| {
        let t = s.spawn(f);
        let t0 = Instant::now();
        while proxy.counts().1 < before + n && !t.is_finished() && t0.elapsed() < Duration::from_secs(60) {
            std::thread::sleep(Duration::from_millis(2));
        }
        proxy.set_mode(Mode::Outage);
        t.join().unwrap()
    })
}

fn succeeded(o: Output, what: &str) -> Output {
    assert!(o.status.success(), "{what}: {}", stderr(&o));
    o
}

#[test]
fn s3_faults_never_corrupt_or_half_write() {
    let seed = seed();
    let moto = servers::moto("backups");
    let proxy = FaultProxy::start(moto.port, seed, Duration::from_secs(3));
    let case = Case {
        home: tempfile::tempdir().unwrap(),
        faulty: format!("s3://backups/r?endpoint=http://127.0.0.1:{}", proxy.port),
        direct: format!("s3://backups/r?endpoint=http://127.0.0.1:{}", moto.port),
    };
    let init = cli(case.home.path())
        .envs(CREDS)
        .args(["init", &case.direct, "--kdf-memory-kib", "256", "--kdf-iterations", "1"])
        .args(["--pack-size", "1M", "--chunk-avg", "65536"])
        .output()
        .unwrap();
    succeeded(init, "init");
    let mut saved: Vec<(String, (u64, String))> = Vec::new();
    let f = &case.faulty;

    // Transient faults: retries get every request through; everything succeeds.
    proxy.set_mode(Mode::Flaky {
        percent: 20,
        per_request: 2,
    });
    for n in 0..4 {
        let input = case.input(n);
        let o = succeeded(case.snapshot(f, &input), "snapshot under transient faults");
        saved.push((
            json(&o)["id"].as_str().unwrap().to_string(),
            digest(std::fs::File::open(&input).unwrap()),
        ));
    }
    for (id, want) in &saved {
        assert_eq!(
            case.restore(f, id).as_ref(),
            Ok(want),
            "restore {id} under transient faults"
        );
    }
    succeeded(
        case.run(f, &["check", "--read-data"], None),
        "check under transient faults",
    );
    succeeded(
        case.run(f, &["forget", &saved[0].0], None),
        "forget under transient faults",
    );
    saved.remove(0);
    succeeded(case.run(f, &["prune"], None), "prune under transient faults");
    let (injected, passed) = proxy.counts();
    eprintln!("transient phase: {passed} requests passed, faults injected {injected:?}");
    assert!(
        injected.values().sum::<u64>() >= 10,
        "faults were injected: {injected:?}"
    );

    // An outage: every command fails with 69 or 75, none hangs or claims success.
    proxy.set_mode(Mode::Outage);
    let lost = case.input(10);
    unavailable(&case.snapshot(f, &lost), "snapshot during an outage");
    match case.restore(f, &saved[0].0) {
        Err(Some(69 | 75)) => {}
        other => panic!("restore during an outage: {other:?}"),
    }
    unavailable(&case.run(f, &["check"], None), "check during an outage");
    let target = case.home.path().join("restored");
    std::fs::create_dir(&target).unwrap();
    let o = case.run(f, &["restore", &saved[0].0, "--target", target.to_str().unwrap()], None);
    unavailable(&o, "restore into a directory during an outage");
    let left: Vec<_> = std::fs::read_dir(&target)
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(left.is_empty(), "a failed restore left {left:?}");

    // An outage in the middle of an upload: 69/75, the snapshot not saved.
    proxy.set_mode(Mode::Pass);
    let big = case.input(11);
    let cut = cut_after(&proxy, 12, || case.snapshot(f, &big));
    unavailable(&cut, "snapshot cut by an outage");

    // An outage in the middle of a restore into a directory: byte-identical, or 69/75 and
    // no file at all.
    proxy.set_mode(Mode::Pass);
    let (id, want) = &saved[saved.len() - 1];
    let o = cut_after(&proxy, 10, || {
        case.run(f, &["restore", id, "--target", target.to_str().unwrap()], None)
    });
    eprintln!("restore cut by an outage: exit {:?}", o.status.code());
    let files: Vec<_> = std::fs::read_dir(&target)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    if o.status.success() {
        assert_eq!(files.len(), 1, "{files:?}");
        assert_eq!(&digest(std::fs::File::open(&files[0]).unwrap()), want);
    } else {
        unavailable(&o, "restore cut by an outage");
        assert!(files.is_empty(), "a failed restore left {files:?}");
    }

    // Without faults: nothing half-written, nothing lost, nothing failed shows.
    proxy.set_mode(Mode::Pass);
    let d = &case.direct;
    succeeded(case.run(d, &["check", "--read-data"], None), "check after the faults");
    let listed = json(&succeeded(case.run(d, &["--json", "snapshots"], None), "snapshots"));
    let mut ids: Vec<String> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_string())
        .collect();
    ids.sort();
    let mut want: Vec<String> = saved.iter().map(|(id, _)| id.clone()).collect();
    want.sort();
    assert_eq!(ids, want, "exactly the snapshots reported saved");
    for (id, want) in &saved {
        assert_eq!(case.restore(d, id).as_ref(), Ok(want), "restore {id} after the faults");
    }
    succeeded(case.run(d, &["prune"], None), "prune after the faults");
    succeeded(case.run(d, &["check", "--read-data"], None), "check after prune");
    let locks = moto.request("GET", "/backups?list-type=2&prefix=r/locks/", "");
    assert!(!locks.contains("<Key>"), "locks left: {locks}");
}

/// The answer to init's conditional write of `config` is lost after the server stored it:
/// the retry finds `config` there, with the very bytes init wrote, and init succeeds
/// (before: "already exists", exit 73, for a repository it had just made).
#[test]
fn init_whose_answer_is_lost_succeeds() {
    let moto = servers::moto("backups");
    let proxy = FaultProxy::start(moto.port, 1, Duration::from_secs(3));
    let home = tempfile::tempdir().unwrap();
    let faulty = format!("s3://backups/lost?endpoint=http://127.0.0.1:{}", proxy.port);
    proxy.set_mode(Mode::Targeted {
        fault: common::faults::Fault::Truncate,
        target: "PUT /backups/lost/config ",
        times: 1,
    });
    let init = cli(home.path())
        .envs(CREDS)
        .args(["init", &faulty, "--kdf-memory-kib", "256", "--kdf-iterations", "1"])
        .output()
        .unwrap();
    assert_eq!(proxy.counts().0.values().sum::<u64>(), 1, "the answer was cut");
    succeeded(init, "init whose answer was lost");
    let direct = format!("s3://backups/lost?endpoint=http://127.0.0.1:{}", moto.port);
    let o = cli(home.path())
        .envs(CREDS)
        .args(["-r", &direct, "check"])
        .output()
        .unwrap();
    succeeded(o, "check");
}
