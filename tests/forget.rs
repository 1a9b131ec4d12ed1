//! `dbbackup forget`: a retention policy over a history of imported snapshots (`snapshot
//! --time`), its dry run, its refusals, removal by id; the kept snapshots restore unchanged.

mod common;

use std::path::Path;

use common::{cli, cli_repo, json, snapshot_stdin, stderr};

/// Snapshot `data` as source `name` at `time`; its id.
fn snap(home: &Path, repo: &Path, name: &str, time: &str, tags: &[&str], data: &str) -> String {
    let mut extra = vec!["--time", time];
    for t in tags {
        extra.extend(["--tag", t]);
    }
    snapshot_stdin(home, repo, name, data, &extra)
}

/// The policy under test: 3 daily and 2 monthly buckets, in UTC.
const POLICY: [&str; 6] = ["--keep-daily", "3", "--keep-monthly", "2", "--time-zone", "UTC"];

fn forget(home: &Path, repo: &Path, args: &[&str]) -> std::process::Output {
    cli(home)
        .args(["-r", repo.to_str().unwrap(), "--json", "forget"])
        .args(args)
        .output()
        .unwrap()
}

fn ids(home: &Path, repo: &Path) -> Vec<String> {
    let out = cli(home)
        .args(["-r", repo.to_str().unwrap(), "--json", "snapshots"])
        .output()
        .unwrap();
    let mut v: Vec<String> = json(&out)
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_string())
        .collect();
    v.sort();
    v
}

#[test]
fn policy_dry_run_refusals_and_removal() {
    let (home, repo) = cli_repo();
    let h = home.path();
    // Two daily snapshots of `shop` for 10 days around a month end, one of `audit` tagged.
    let mut shop = Vec::new();
    for day in 0..10 {
        let date = jiff::civil::date(2024, 1, 26) + jiff::Span::new().days(day);
        for hour in [1, 13] {
            let t = format!("{date}T{hour:02}:00:00Z");
            shop.push((t.clone(), snap(h, &repo, "shop", &t, &[], &format!("shop {t}\n"))));
        }
    }
    let audit = snap(h, &repo, "audit", "2023-01-01T00:00:00Z", &["legal"], "audit\n");
    assert_eq!(ids(h, &repo).len(), 21);

    // Dry run: every decision with its reasons, nothing removed.
    let out = forget(h, &repo, &[&POLICY[..], &["--dry-run"]].concat());
    let v = json(&out);
    assert_eq!(v["dry_run"], true);
    let groups = v["groups"].as_array().unwrap();
    assert_eq!(groups.len(), 2);
    let shop_plan = groups.iter().find(|g| g["group"]["name"] == "shop").unwrap();
    let kept: Vec<(&str, String)> = shop_plan["decisions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["keep"] == true)
        .map(|d| {
            let reasons: Vec<&str> = d["reasons"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r.as_str().unwrap())
                .collect();
            (d["time"].as_str().unwrap(), reasons.join(","))
        })
        .collect();
    assert_eq!(
        kept,
        [
            ("2024-02-04T13:00:00Z", "daily,monthly".to_string()),
            ("2024-02-03T13:00:00Z", "daily".to_string()),
            ("2024-02-02T13:00:00Z", "daily".to_string()),
            ("2024-01-31T13:00:00Z", "monthly".to_string()),
        ]
    );
    assert_eq!(ids(h, &repo).len(), 21);
    // It names what it would forget in the same field a real run and `prune` use.
    let dropped = groups
        .iter()
        .flat_map(|g| g["decisions"].as_array().unwrap())
        .filter(|d| d["keep"] == false)
        .count();
    assert!(dropped > 0);
    assert_eq!(v["forgotten"].as_array().unwrap().len(), dropped, "{v}");
    assert_eq!(v["operation"], "forget");

    // A rule set that keeps nothing of a group (audit has no `nightly` tag) is refused, and
    // nothing is removed; so is an empty policy and mixing ids with rules.
    let out = forget(h, &repo, &["--keep-tag", "nightly"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("--allow-remove-all"), "{}", stderr(&out));
    let out = forget(h, &repo, &[]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let out = forget(h, &repo, &[&audit[..8], "--keep-last", "1"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert_eq!(ids(h, &repo).len(), 21);

    // The real thing: 4 of shop kept, audit kept by its tag.
    let out = forget(h, &repo, &[&POLICY[..], &["--keep-tag", "legal"]].concat());
    let v = json(&out);
    assert_eq!(v["forgotten"].as_array().unwrap().len(), 16);
    let left = ids(h, &repo);
    assert_eq!(left.len(), 5);
    assert!(left.contains(&audit));
    // The kept snapshots restore byte for byte.
    for (t, id) in &shop {
        if left.contains(id) {
            let out = cli(h)
                .args(["-r", repo.to_str().unwrap(), "restore", id, "--target", "-"])
                .output()
                .unwrap();
            assert_eq!(String::from_utf8_lossy(&out.stdout), format!("shop {t}\n"));
        }
    }

    // By id: a prefix removes exactly that snapshot; an unknown id is 66.
    let out = forget(h, &repo, &[&audit[..10]]);
    assert_eq!(json(&out)["forgotten"][0], audit.as_str());
    assert_eq!(ids(h, &repo).len(), 4);
    let out = forget(h, &repo, &["deadbeef"]);
    assert_eq!(out.status.code(), Some(66), "{}", stderr(&out));
    // Emptying a group when told to.
    let out = forget(h, &repo, &["--keep-tag", "none", "--allow-remove-all"]);
    assert_eq!(json(&out)["forgotten"].as_array().unwrap().len(), 4);
    assert!(ids(h, &repo).is_empty());
}

/// The policy's host filter is `--snapshot-host`, as in every command that selects snapshots
/// (`--host` is a database server's in `snapshot` and `restore`); `--host` still works.
#[test]
fn the_host_filter_is_snapshot_host_as_everywhere() {
    let (home, repo) = cli_repo();
    let h = home.path();
    for (host, data) in [("db1", "a"), ("db1", "b"), ("db2", "c"), ("db2", "d")] {
        snapshot_stdin(h, &repo, "shop", data, &["--hostname", host]);
    }
    for flag in ["--snapshot-host", "--host"] {
        let o = forget(h, &repo, &["--dry-run", "--keep-last", "1", flag, "db1"]);
        assert!(o.status.success(), "{flag}: {}", stderr(&o));
        let gone = json(&o)["forgotten"].as_array().unwrap().len();
        assert_eq!(gone, 1, "{flag}: only db1's older snapshot");
    }
}
