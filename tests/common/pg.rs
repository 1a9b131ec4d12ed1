//! A throwaway PostgreSQL 15 server on a loopback port, run as the `postgres` OS user when
//! the tests run as root, stopped by PID on drop.
#![allow(dead_code)]

use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use super::ok;

pub const PG_BIN: &str = "/usr/lib/postgresql/15/bin";

pub struct Pg {
    pub dir: tempfile::TempDir,
    pub port: u16,
}

fn is_root() -> bool {
    unsafe { libc::geteuid() == 0 }
}

/// Run a PostgreSQL server binary as the right user.
fn as_pg(bin: &str) -> Command {
    as_pg_user(&format!("{PG_BIN}/{bin}"))
}

/// Run `path` as the `postgres` OS user when the tests run as root (as the server's
/// archive_command and restore_command run), else as ourselves.
pub fn as_pg_user(path: &str) -> Command {
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--", path]);
        c
    } else {
        Command::new(path)
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl Pg {
    pub fn start() -> Pg {
        Pg::start_with("")
    }

    /// Start a server with `conf` appended to its postgresql.conf.
    pub fn start_with(conf: &str) -> Pg {
        assert!(
            Path::new(PG_BIN).join("postgres").exists(),
            "PostgreSQL 15 server binaries are required at {PG_BIN}"
        );
        let dir = tempfile::Builder::new().prefix("dbbackup-pg-").tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        let data = dir.path().join("data");
        ok(
            as_pg("initdb")
                .args([
                    "-D",
                    data.to_str().unwrap(),
                    "-U",
                    "postgres",
                    "--auth=trust",
                    "-E",
                    "UTF8",
                    "--no-sync",
                ])
                .output()
                .unwrap(),
            "initdb",
        );
        if !conf.is_empty() {
            let c = data.join("postgresql.conf");
            let mut text = std::fs::read_to_string(&c).unwrap();
            text.push_str(conf);
            std::fs::write(&c, text).unwrap();
        }
        Pg::run_on(dir)
    }

    /// Start a server on the data directory `dir/data` (a restored one).
    pub fn run_on(dir: tempfile::TempDir) -> Pg {
        let data = dir.path().join("data");
        let port = free_port();
        let opts = format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c shared_buffers=64MB",
            dir.path().display()
        );
        let started = as_pg("pg_ctl")
            .args([
                "-D",
                data.to_str().unwrap(),
                "-o",
                &opts,
                "-l",
                dir.path().join("log").to_str().unwrap(),
                "-w",
                "-t",
                "60",
                "start",
            ])
            .output()
            .unwrap();
        assert!(
            started.status.success(),
            "pg_ctl start failed: {}\nserver log:\n{}",
            String::from_utf8_lossy(&started.stdout),
            std::fs::read_to_string(dir.path().join("log")).unwrap_or_default()
        );
        let pg = Pg { dir, port };
        let t0 = Instant::now();
        while !pg.psql("postgres", "select 1").status.success() {
            assert!(t0.elapsed() < Duration::from_secs(30), "server did not come up");
            std::thread::sleep(Duration::from_millis(100));
        }
        pg
    }

    pub fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Connection environment for client tools.
    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            ("PGHOST".into(), "127.0.0.1".into()),
            ("PGPORT".into(), self.port.to_string()),
            ("PGUSER".into(), "postgres".into()),
        ]
    }

    pub fn client(&self, bin: &str) -> Command {
        let mut c = Command::new(format!("{PG_BIN}/{bin}"));
        c.envs(self.env());
        c
    }

    pub fn psql(&self, db: &str, sql: &str) -> Output {
        self.client("psql")
            .args(["-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-d", db, "-c", sql])
            .output()
            .unwrap()
    }

    /// Run SQL, panicking on failure; returns trimmed stdout.
    pub fn sql(&self, db: &str, sql: &str) -> String {
        String::from_utf8_lossy(&ok(self.psql(db, sql), sql).stdout)
            .trim()
            .to_string()
    }

    /// Per-table checksums (hash of the sorted row hashes) and row counts of every user table.
    pub fn table_checksums(&self, db: &str) -> Vec<String> {
        let tables = self.sql(
            db,
            "select quote_ident(schemaname)||'.'||quote_ident(tablename) from pg_tables \
             where schemaname not in ('pg_catalog','information_schema') order by 1",
        );
        tables
            .lines()
            .map(|t| {
                let r = self.sql(
                    db,
                    &format!(
                        "select count(*)||' '||coalesce(md5(string_agg(h, ',' order by h)),'') \
                         from (select md5(x::text) h from {t} x) s"
                    ),
                );
                format!("{t} {r}")
            })
            .collect()
    }

    /// Counts of user objects by kind: relations by relkind, functions, schemas, extensions,
    /// large objects (with a hash of their contents), sequences' values.
    pub fn object_counts(&self, db: &str) -> String {
        self.sql(
            db,
            "select (select string_agg(relkind || '=' || n, ' ' order by relkind) from \
                      (select c.relkind::text, count(*) n from pg_class c join pg_namespace s on s.oid = c.relnamespace \
                       where s.nspname not in ('pg_catalog','information_schema') and s.nspname !~ '^pg_toast' group by 1) r) \
             || ' functions=' || (select count(*) from pg_proc p join pg_namespace s on s.oid = p.pronamespace \
                       where s.nspname not in ('pg_catalog','information_schema')) \
             || ' schemas=' || (select count(*) from pg_namespace where nspname !~ '^pg_' and nspname <> 'information_schema') \
             || ' extensions=' || (select string_agg(extname, ',' order by extname) from pg_extension) \
             || ' lobs=' || (select count(*) || ':' || coalesce(md5(string_agg(oid::text || md5(lo_get(oid)), ',' order by oid)), '') \
                       from pg_largeobject_metadata) \
             || ' seqs=' || coalesce((select string_agg(schemaname || '.' || sequencename || ':' || coalesce(last_value, 0), ',' \
                       order by schemaname, sequencename) from pg_sequences), '')",
        )
    }

    /// Run SQL as a superuser over the Unix socket (for set-up that must not need a password).
    pub fn sql_local(&self, db: &str, sql: &str) -> String {
        let o = Command::new(format!("{PG_BIN}/psql"))
            .env("PGHOST", self.dir.path())
            .env("PGPORT", self.port.to_string())
            .env("PGUSER", "postgres")
            .args(["-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-d", db, "-c", sql])
            .output()
            .unwrap();
        String::from_utf8_lossy(&ok(o, sql).stdout).trim().to_string()
    }

    /// Require a password for `role` over TCP (put first in pg_hba.conf) and reload.
    pub fn require_password(&self, role: &str) {
        let hba = self.data().join("pg_hba.conf");
        let old = std::fs::read_to_string(&hba).unwrap();
        std::fs::write(&hba, format!("host all {role} 127.0.0.1/32 scram-sha-256\n{old}")).unwrap();
        self.sql("postgres", "select pg_reload_conf()");
        std::thread::sleep(Duration::from_millis(300));
    }
}

impl Drop for Pg {
    fn drop(&mut self) {
        // Stop by PID: the first line of postmaster.pid.
        if let Ok(s) = std::fs::read_to_string(self.data().join("postmaster.pid")) {
            if let Some(pid) = s.lines().next().and_then(|l| l.trim().parse::<i32>().ok()) {
                unsafe {
                    libc::kill(pid, libc::SIGQUIT);
                }
                let t0 = Instant::now();
                while unsafe { libc::kill(pid, 0) } == 0 && t0.elapsed() < Duration::from_secs(10) {
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        }
    }
}
