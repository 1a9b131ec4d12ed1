//! A real `pg_dump -Fc -Z0` from a PostgreSQL 15 server the test starts: snapshotted,
//! restored, loaded with `pg_restore` into a new database whose tables match the source.

mod common;

use common::pg::Pg;
use common::{cli, cli_repo};

#[test]
fn pg_dump_snapshot_restores_into_identical_database() {
    let pg = Pg::start();
    pg.sql("postgres", "create database src");
    pg.sql(
        "src",
        "create schema sales;
         create table sales.orders(id bigint primary key, customer text, placed timestamptz, amount numeric(12,2), meta jsonb);
         insert into sales.orders select g, 'customer ' || (g % 997), timestamptz '2024-01-01' + g * interval '37 seconds',
                (g % 10000) / 7.0, jsonb_build_object('n', g, 'tag', md5(g::text)) from generate_series(1, 200000) g;
         create table public.notes(id serial primary key, body text, data bytea);
         insert into public.notes(body, data) select repeat(md5(g::text), 20), decode(md5(g::text), 'hex') from generate_series(1, 20000) g;
         create sequence public.counter start 100; select nextval('public.counter'); select nextval('public.counter');",
    );
    let (home, repo) = cli_repo();
    let r = repo.to_str().unwrap();
    let bin = format!("{}/pg_dump", common::pg::PG_BIN);
    let mut c = cli(home.path());
    c.envs(pg.env()).args([
        "-r",
        r,
        "snapshot",
        "--name",
        "src",
        "--from-command",
        &format!("{bin} -Fc -Z0 -d src"),
    ]);
    c.assert().success();
    let dump = home.path().join("src.dump");
    cli(home.path())
        .args([
            "-r",
            r,
            "restore",
            "latest",
            "--name",
            "src",
            "--target",
            dump.to_str().unwrap(),
        ])
        .assert()
        .success();
    // The restored file is a valid custom-format dump with the same SHA-256 as a fresh one would
    // not be (timestamps differ), so load it and compare the data.
    pg.sql("postgres", "create database dst");
    let o = pg
        .client("pg_restore")
        .args(["-d", "dst", "--exit-on-error", dump.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(o.status.success(), "pg_restore: {}", String::from_utf8_lossy(&o.stderr));
    let a = pg.table_checksums("src");
    let b = pg.table_checksums("dst");
    assert_eq!(a.len(), 2);
    assert_eq!(a, b);
    assert_eq!(pg.sql("dst", "select last_value from public.counter"), "101");
    // A second snapshot of the unchanged database stores little.
    let out = cli(home.path())
        .envs(pg.env())
        .args([
            "-r",
            r,
            "--json",
            "snapshot",
            "--name",
            "src",
            "--from-command",
            &format!("{bin} -Fc -Z0 -d src"),
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let read = v["snapshot"]["summary"]["bytes_read"].as_u64().unwrap();
    let stored = v["snapshot"]["summary"]["bytes_stored"].as_u64().unwrap();
    println!("pg_dump of {read} bytes re-snapshotted: {stored} bytes stored");
    assert!(stored * 10 < read, "{stored} of {read}");
}
