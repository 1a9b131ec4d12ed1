//! `stats` counts what the snapshots reference (#26 part 8): after forget + prune kept a
//! partly used pack, the forgotten snapshot's chunks are counted apart as unreferenced, not
//! as unique data (which made the dedup ratio fall below 1).

mod common;

use common::{cli, init_repo, json, ok, snapshot_stdin, Gen};

fn random(seed: u64, n: usize) -> Vec<u8> {
    let mut v = vec![0; n];
    std::io::Read::read_exact(&mut Gen::random(seed, n as u64), &mut v).unwrap();
    v
}

#[test]
fn stats_count_referenced_chunks_and_the_unreferenced_apart() {
    let home = tempfile::tempdir().unwrap();
    let repo = home.path().join("repo");
    // Small chunks (64 KiB on average, 256 KiB at most), so X and Y share one 16 MiB pack.
    init_repo(home.path(), &repo, &["--chunk-avg", "65536"]);
    let (h, r) = (home.path(), repo.to_str().unwrap());
    let (x, y) = (random(1, 2 << 20), random(1 << 40, 2 << 20)); // streams of near seeds overlap
                                                                 // Without deltas, no chunk of X is kept as the base of one of Y.
    let both = snapshot_stdin(h, &repo, "db", [x.clone(), y.clone()].concat(), &["--no-deltas"]);
    snapshot_stdin(h, &repo, "db", y.clone(), &["--no-deltas"]);
    ok(cli(h).args(["-r", r, "forget", &both]).output().unwrap(), "forget");
    // The pack of X and Y stays (Y is in use): X's chunks stay indexed, unreferenced.
    ok(
        cli(h)
            .args(["-r", r, "prune", "--max-unused", "unlimited"])
            .output()
            .unwrap(),
        "prune",
    );
    let s = json(&ok(
        cli(h).args(["-r", r, "--json", "stats"]).output().unwrap(),
        "stats",
    ));
    let n = |k: &str| s[k].as_u64().unwrap_or_else(|| panic!("no {k} in {s}"));
    assert_eq!(n("snapshots"), 1);
    assert_eq!(n("logical_bytes"), y.len() as u64);
    // Exactly Y's chunks; X's (but the one that straddled X and Y) are unreferenced.
    assert_eq!(n("unique_bytes"), y.len() as u64, "{s}");
    assert!((s["dedup_ratio"].as_f64().unwrap() - 1.0).abs() < 1e-9, "{s}");
    assert!(n("unreferenced_stored_bytes") >= (2 << 20) - (256 << 10), "{s}");
    assert!(n("unreferenced_chunks") >= 8, "{s}");
    assert_eq!(s["referenced_only"], true);
}
