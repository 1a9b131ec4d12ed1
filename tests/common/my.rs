//! A throwaway MariaDB server on a loopback port, run as the `mysql` OS user when the tests
//! run as root, stopped by PID on drop.
#![allow(dead_code)]

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use sha2::Digest;

use super::ok;
use super::pg::free_port;

pub const MARIADBD: &str = "/usr/sbin/mariadbd";

pub struct My {
    pub dir: tempfile::TempDir,
    pub port: u16,
    child: Child,
}

fn is_root() -> bool {
    unsafe { libc::geteuid() == 0 }
}

impl My {
    /// Start a server with an empty data directory; `root` has no password over TCP.
    pub fn start() -> My {
        assert!(
            Path::new(MARIADBD).exists(),
            "MariaDB server binaries are required ({MARIADBD}); run scripts/setup.sh"
        );
        let dir = tempfile::Builder::new().prefix("dbbackup-my-").tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        let data = dir.path().join("data");
        // A private tmpdir: servers starting side by side must not share temporary tables.
        let tmp = dir.path().join("tmp");
        std::fs::create_dir(&tmp).unwrap();
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o777)).unwrap();
        let mut install = Command::new("mariadb-install-db");
        install.args([
            "--no-defaults",
            "--auth-root-authentication-method=normal",
            "--skip-test-db",
        ]);
        if is_root() {
            install.arg("--user=mysql");
        }
        ok(
            install
                .arg(format!("--datadir={}", data.display()))
                .arg(format!("--tmpdir={}", tmp.display()))
                .output()
                .unwrap(),
            "mariadb-install-db",
        );
        let port = free_port();
        let mut server = Command::new(MARIADBD);
        server.arg("--no-defaults");
        if is_root() {
            server.arg("--user=mysql");
        }
        let child = server
            .args([
                format!("--datadir={}", data.display()),
                format!("--port={port}"),
                format!("--tmpdir={}", tmp.display()),
                "--bind-address=127.0.0.1".into(),
                format!("--socket={}", dir.path().join("sock").display()),
                format!("--pid-file={}", dir.path().join("pid").display()),
                format!("--log-error={}", dir.path().join("log").display()),
                "--skip-log-bin".into(),
                "--innodb-buffer-pool-size=128M".into(),
                "--innodb-log-file-size=256M".into(),
                "--innodb-flush-log-at-trx-commit=0".into(),
                "--max-allowed-packet=512M".into(),
                "--event-scheduler=OFF".into(),
                "--max-recursive-iterations=10000000".into(),
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let my = My { dir, port, child };
        let t0 = Instant::now();
        while !my.mariadb(None, "SELECT 1").status.success() {
            let log = std::fs::read_to_string(my.dir.path().join("log")).unwrap_or_default();
            assert!(t0.elapsed() < Duration::from_secs(60), "server did not come up: {log}");
            std::thread::sleep(Duration::from_millis(100));
        }
        my
    }

    /// The CLI's connection flags for this server.
    pub fn flags(&self) -> Vec<String> {
        vec![
            "--engine".into(),
            "mysql".into(),
            "--host".into(),
            "127.0.0.1".into(),
            "--port".into(),
            self.port.to_string(),
        ]
    }

    /// The client connected as `root` over TCP.
    pub fn client(&self) -> Command {
        let mut c = Command::new("mariadb");
        c.args([
            "--no-defaults",
            "--protocol=TCP",
            "--host=127.0.0.1",
            &format!("--port={}", self.port),
            "--user=root",
            "--batch",
            "--skip-column-names",
            "--max-allowed-packet=512M",
            "--default-character-set=utf8mb4",
        ]);
        c
    }

    pub fn mariadb(&self, db: Option<&str>, sql: &str) -> Output {
        let mut c = self.client();
        if let Some(db) = db {
            c.arg(format!("--database={db}"));
        }
        c.arg("-e").arg(sql).output().unwrap()
    }

    /// Run SQL as root, panicking on failure; returns trimmed stdout.
    pub fn sql(&self, sql: &str) -> String {
        String::from_utf8_lossy(&ok(self.mariadb(None, sql), sql).stdout)
            .trim()
            .to_string()
    }

    /// Run SQL in `db` as root, panicking on failure; returns trimmed stdout.
    pub fn sql_in(&self, db: &str, sql: &str) -> String {
        String::from_utf8_lossy(&ok(self.mariadb(Some(db), sql), sql).stdout)
            .trim()
            .to_string()
    }

    /// Per-table row count and SHA-256 of all rows in primary-key order, for every base table
    /// of `db`.
    pub fn table_checksums(&self, db: &str) -> Vec<String> {
        let tables = self.sql(&format!(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = '{db}' \
             AND table_type = 'BASE TABLE' ORDER BY 1"
        ));
        tables
            .lines()
            .map(|t| {
                let out = ok(self.mariadb(Some(db), &format!("SELECT * FROM `{t}` ORDER BY 1")), t).stdout;
                let rows = out.iter().filter(|b| **b == b'\n').count();
                format!("{t} {rows} {:x}", sha2::Sha256::digest(&out))
            })
            .collect()
    }

    /// Counts of objects by kind, auto-increment counters, sequences' persisted values, and a hash
    /// of the routine, view, trigger and event definitions.
    pub fn object_counts(&self, db: &str) -> String {
        let q = |sql: &str| self.sql(&sql.replace("DB", &format!("'{db}'")));
        let mut s = q(
            "SELECT table_type, COUNT(*) FROM information_schema.tables WHERE table_schema = DB GROUP BY 1 ORDER BY 1",
        );
        s += &q(
            "SELECT routine_type, COUNT(*), MD5(GROUP_CONCAT(routine_name, routine_definition ORDER BY routine_name)) \
                 FROM information_schema.routines WHERE routine_schema = DB GROUP BY 1 ORDER BY 1",
        );
        s += &q(
            "SELECT 'triggers', COUNT(*), MD5(GROUP_CONCAT(trigger_name, action_statement ORDER BY trigger_name)) \
                 FROM information_schema.triggers WHERE trigger_schema = DB",
        );
        s += &q(
            "SELECT 'events', COUNT(*), MD5(GROUP_CONCAT(event_name, event_definition ORDER BY event_name)) \
                 FROM information_schema.events WHERE event_schema = DB",
        );
        s += &q(
            "SELECT 'views', COUNT(*), MD5(GROUP_CONCAT(table_name, view_definition ORDER BY table_name)) \
                 FROM information_schema.views WHERE table_schema = DB",
        );
        s += &q(
            "SELECT 'auto_increment', GROUP_CONCAT(table_name, '=', auto_increment ORDER BY table_name) \
                 FROM information_schema.tables WHERE table_schema = DB AND auto_increment IS NOT NULL",
        );
        for seq in q("SELECT table_name FROM information_schema.tables WHERE table_schema = DB AND table_type = 'SEQUENCE' ORDER BY 1").lines() {
            // What the server persists: values below it may have been handed out (cached).
            s += &format!(
                " {seq}:{}",
                self.sql(&format!("SELECT next_not_cached_value FROM `{db}`.`{seq}`"))
            );
        }
        s += &q("SELECT 'db', default_character_set_name, default_collation_name FROM information_schema.schemata WHERE schema_name = DB");
        s
    }
}

impl Drop for My {
    fn drop(&mut self) {
        let pid = self.child.id() as i32;
        unsafe {
            libc::kill(pid, libc::SIGKILL);
        }
        let _ = self.child.wait();
    }
}
