//! `dbbackup status` as a monitoring probe (#26 part 2): per source the newest snapshot and
//! its age, the check records every host reads (repo-format §13), limits from flags and the
//! config file's `[status]`, exit 4 and one line per problem.

mod common;

use std::path::Path;

use common::{cli, cli_repo, snapshot_stdin, stderr};

fn run(home: &Path, args: &[&str]) -> std::process::Output {
    cli(home).args(args).output().unwrap()
}

/// `status --json` with `extra`: exit code and document.
fn status(home: &Path, repo: &Path, extra: &[&str]) -> (Option<i32>, serde_json::Value) {
    let o = run(
        home,
        &[&["-r", repo.to_str().unwrap(), "--json", "status"][..], extra].concat(),
    );
    let v = serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", stderr(&o)));
    (o.status.code(), v)
}

fn kinds(v: &serde_json::Value) -> Vec<(String, String)> {
    v["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["kind"].as_str().unwrap().to_string(),
                p["subject"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn check_records(repo: &Path) -> usize {
    std::fs::read_dir(repo.join("checks")).map_or(0, |d| d.count())
}

#[test]
fn status_judges_snapshot_ages_per_source() {
    let (home, repo) = cli_repo();
    let h = home.path();
    let host = "probe-host";
    let old = snapshot_stdin(
        h,
        &repo,
        "archive",
        b"old".to_vec(),
        &["--hostname", host, "--time", "2026-01-01T00:00:00Z"],
    );
    snapshot_stdin(
        h,
        &repo,
        "shop",
        b"day 1".to_vec(),
        &["--hostname", host, "--time", "2026-01-02T00:00:00Z"],
    );
    let shop = snapshot_stdin(h, &repo, "shop", b"day 2".to_vec(), &["--hostname", host]);

    // Without limits: the figures, no problem.
    let (code, v) = status(h, &repo, &[]);
    assert_eq!(code, Some(0), "{v}");
    assert_eq!(v["status"], "ok");
    let sources = v["sources"].as_array().unwrap();
    assert_eq!(sources.len(), 2, "{v}");
    assert_eq!(sources[0]["name"], "archive");
    assert_eq!(sources[0]["newest_id"], old.as_str());
    assert_eq!(sources[1]["name"], "shop");
    assert_eq!(sources[1]["newest_id"], shop.as_str(), "the newest of the two");
    assert_eq!(sources[1]["snapshots"], 2);
    assert!(sources[0]["newest_age_seconds"].as_i64().unwrap() > 86_400 * 300, "{v}");

    // A limit: the old source is stale, named by host/engine/name; exit 4, said on stderr.
    let o = run(h, &["-r", repo.to_str().unwrap(), "status", "--max-age", "26h"]);
    assert_eq!(o.status.code(), Some(4), "{}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("PROBLEM snapshot_stale probe-host/stdin/archive: newest snapshot"),
        "{out}"
    );
    assert!(
        stderr(&o).contains("dbbackup: problems found: 1 problem: snapshot_stale"),
        "{}",
        stderr(&o)
    );
    let (_, v) = status(h, &repo, &["--max-age", "26h"]);
    assert_eq!(
        kinds(&v),
        [("snapshot_stale".to_string(), "probe-host/stdin/archive".to_string())]
    );

    // Per source in the config file: the archive may be a year old.
    let config = h.join("status.toml");
    std::fs::write(
        &config,
        "[status]\nmax_age = \"26h\"\n\n[status.sources.archive]\nmax_age = \"1000d\"\n",
    )
    .unwrap();
    let (code, v) = status(h, &repo, &["--config", config.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{v}");
    // A flag wins over the file.
    std::fs::write(&config, "[status]\nmax_age = \"1000d\"\n").unwrap();
    let (code, _) = status(h, &repo, &["--config", config.to_str().unwrap(), "--max-age", "26h"]);
    assert_eq!(code, Some(4));
    // A misspelt key or a bad age is refused.
    for text in ["[status]\nmax_agee = \"1d\"\n", "[status]\nmax_age = \"soon\"\n"] {
        std::fs::write(&config, text).unwrap();
        let o = run(
            h,
            &[
                "-r",
                repo.to_str().unwrap(),
                "--config",
                config.to_str().unwrap(),
                "status",
            ],
        );
        assert_eq!(o.status.code(), Some(78), "{text}: {}", stderr(&o));
    }
    let o = run(h, &["-r", repo.to_str().unwrap(), "status", "--max-age", "soon"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
}

#[test]
fn checks_are_recorded_for_every_host_and_judged() {
    let (home, repo) = cli_repo();
    let h = home.path();
    let r = repo.to_str().unwrap();
    snapshot_stdin(h, &repo, "db", vec![5u8; 200_000], &[]);
    let limits = ["--max-check-age", "1d", "--max-read-data-age", "35d"];

    let (code, v) = status(h, &repo, &limits);
    assert_eq!(code, Some(4));
    assert_eq!(
        kinds(&v),
        [
            ("check_stale".to_string(), "check".to_string()),
            ("read_data_stale".to_string(), "check".to_string())
        ]
    );
    assert_eq!(run(h, &["-r", r, "check"]).status.code(), Some(0));
    let (code, v) = status(h, &repo, &limits);
    assert_eq!(code, Some(4));
    assert_eq!(kinds(&v), [("read_data_stale".to_string(), "check".to_string())]);
    assert_eq!(v["checks"]["last_clean"]["read_data"], "none");
    assert_eq!(run(h, &["-r", r, "check", "--read-data"]).status.code(), Some(0));
    let (code, v) = status(h, &repo, &limits);
    assert_eq!(code, Some(0), "{v}");
    assert_eq!(v["checks"]["last_clean_read_data"]["read_data"], "all");

    // Another host (its own empty cache) reads the same records.
    let other = tempfile::tempdir().unwrap();
    let (code, v) = status(other.path(), &repo, &limits);
    assert_eq!(code, Some(0), "{v}");

    // Older clean records of a class are dropped: one per class stays.
    for _ in 0..3 {
        assert_eq!(run(h, &["-r", r, "check"]).status.code(), Some(0));
    }
    assert_eq!(check_records(&repo), 2);

    // A check that finds damage is recorded too: status says the newest check failed.
    let pack = common::packs(&repo).pop().unwrap();
    let mut bytes = std::fs::read(&pack).unwrap();
    bytes[40] ^= 1;
    std::fs::write(&pack, bytes).unwrap();
    assert_eq!(run(h, &["-r", r, "check", "--read-data"]).status.code(), Some(65));
    let (code, v) = status(h, &repo, &[]);
    assert_eq!(code, Some(4), "{v}");
    assert_eq!(kinds(&v), [("check_failed".to_string(), "check".to_string())]);
    assert!(v["checks"]["newest"]["problems"].as_u64().unwrap() > 0);
    // The clean runs before it still count as the last clean ones.
    assert_eq!(v["checks"]["last_clean_read_data"]["problems"], 0);
    assert_eq!(check_records(&repo), 3);

    // A damaged record is skipped, never an error.
    let rec = std::fs::read_dir(repo.join("checks"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    std::fs::write(&rec, b"garbage").unwrap();
    // (4 while the failed run's record is intact, 0 when it was the one damaged.)
    let (code, v) = status(h, &repo, &[]);
    assert!(matches!(code, Some(0 | 4)), "{code:?} {v}");
    assert_eq!(v["operation"], "status");
}

#[test]
fn wal_archiving_is_judged_by_its_newest_file_and_its_holes() {
    let (home, repo) = cli_repo();
    let h = home.path();
    let (code, v) = status(h, &repo, &["--max-wal-age", "1h"]);
    assert_eq!(code, Some(4));
    assert_eq!(kinds(&v), [("wal_stale".to_string(), "wal".to_string())]);
    assert!(v["wal"].is_null());

    // Synthetic segments 1, 2 and 4 of timeline 1 (no server needed): 3 is missing.
    let sysid: u64 = 7_311_234_567_890_123_457;
    let data = h.join("data");
    std::fs::create_dir_all(data.join("pg_wal")).unwrap();
    std::fs::create_dir_all(data.join("global")).unwrap();
    std::fs::write(data.join("global/pg_control"), sysid.to_le_bytes()).unwrap();
    for segno in [1, 2, 4] {
        let name = common::wal::segment_name(segno);
        std::fs::write(
            data.join("pg_wal").join(&name),
            common::wal::segment_bytes(sysid, segno),
        )
        .unwrap();
        let o = cli(h)
            .current_dir(&data)
            .args(["-r", repo.to_str().unwrap(), "wal", "push", &format!("pg_wal/{name}")])
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    }
    let (code, v) = status(h, &repo, &["--max-wal-age", "1h"]);
    assert_eq!(code, Some(4), "{v}");
    assert_eq!(v["wal"]["files"], 3);
    assert_eq!(v["wal"]["newest_segment"], common::wal::segment_name(4).as_str());
    assert!(v["wal"]["newest_age_seconds"].as_i64().unwrap() < 3600, "{v}");
    assert_eq!(kinds(&v), [("wal_gap".to_string(), "wal".to_string())]);
    let gap = &v["wal"]["gaps"][0];
    assert_eq!(gap["from"], common::wal::segment_name(3).as_str());
    assert_eq!(gap["to"], common::wal::segment_name(3).as_str());
}
