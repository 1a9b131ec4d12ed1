//! `dbbackup snapshot --engine mysql DBNAME|--all` and `restore --to-database|--all` against
//! real MariaDB servers the tests start: two databases with a cross-database function,
//! routines, triggers, events, views, a sequence, 24 MB BLOB and TEXT values, binary and
//! 4-byte UTF-8 data, and accounts with roles, restored into a new server; a least-privilege
//! backup user with an option file; five databases dumped in parallel with a 1% change; the
//! errors users meet.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use common::my::My;
use common::{cli, cli_repo, db_names, entry_paths, json, report_small_change, stderr};

/// The CLI pointed at `my` (as root) and the repository.
fn db_cli(home: &Path, repo: &Path, my: &My, args: &[&str]) -> assert_cmd::Command {
    let mut c = cli(home);
    c.env_remove("MYSQL_PWD")
        .args(["-r", repo.to_str().unwrap()])
        .args(args)
        .args(my.flags())
        .args(["-U", "root"]);
    c
}

/// The CLI pointed at `my` without a user (given by the caller or an option file).
fn db_cli_as(home: &Path, repo: &Path, my: &My, args: &[&str]) -> assert_cmd::Command {
    let mut c = cli(home);
    c.env_remove("MYSQL_PWD")
        .args(["-r", repo.to_str().unwrap()])
        .args(args)
        .args(my.flags());
    c
}

/// Two databases exercising what dumps get wrong, and accounts.
fn make_rich_databases(my: &My) {
    my.sql(
        "CREATE DATABASE ref CHARACTER SET latin1 COLLATE latin1_swedish_ci;
         CREATE TABLE ref.rates(code CHAR(3) PRIMARY KEY, rate DECIMAL(10,4)) ENGINE=InnoDB;
         INSERT INTO ref.rates VALUES ('EUR', 1.0000), ('USD', 1.0843), ('GBP', 0.8571);
         CREATE TABLE ref.legacy(id INT PRIMARY KEY, v VARCHAR(20)) ENGINE=MyISAM;
         INSERT INTO ref.legacy VALUES (1, 'old'), (2, 'older');
         CREATE DATABASE shop CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci;",
    );
    my.sql_in(
        "shop",
        "CREATE TABLE customers(id INT AUTO_INCREMENT PRIMARY KEY, name VARCHAR(100) NOT NULL,
             email VARCHAR(200) UNIQUE, note TEXT, created DATETIME(6), balance DECIMAL(12,2),
             kind ENUM('retail','wholesale'), flags SET('a','b','c'), doc JSON,
             name_len INT AS (CHAR_LENGTH(name)) PERSISTENT);
         INSERT INTO customers(name, email, note, created, balance, kind, flags, doc)
           WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < 20000)
           SELECT CONCAT('Kundin ', n, IF(n % 7 = 0, ' Ünïcødé 😀', '')), CONCAT('c', n, '@example.com'),
                  IF(n % 11 = 0, NULL, REPEAT(MD5(n), 3)), TIMESTAMPADD(SECOND, n * 37, '2024-01-01 00:00:00.123456'),
                  n * 1.25, IF(n % 3 = 0, 'wholesale', 'retail'), IF(n % 2 = 0, 'a,c', 'b'),
                  JSON_OBJECT('n', n, 'tags', JSON_ARRAY('x', n % 5))
           FROM g;
         DELETE FROM customers WHERE id > 19990;
         CREATE TABLE orders(id BIGINT AUTO_INCREMENT PRIMARY KEY, customer_id INT NOT NULL,
             currency CHAR(3) NOT NULL, amount DECIMAL(12,2), placed DATE,
             FOREIGN KEY (customer_id) REFERENCES customers(id)) ENGINE=InnoDB;
         INSERT INTO orders(customer_id, currency, amount, placed)
           WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < 100000)
           SELECT 1 + n % 19990, ELT(1 + n % 3, 'EUR', 'USD', 'GBP'), (n % 1000) / 7, DATE('2024-01-01') + INTERVAL (n % 700) DAY
           FROM g;
         CREATE TABLE blobs(id INT PRIMARY KEY, b LONGBLOB, t LONGTEXT) ENGINE=InnoDB;
         INSERT INTO blobs VALUES (1, REPEAT(UNHEX(SHA2('seed', 512)), 400000), REPEAT('héllo wörld ✓\\t\\\\ ''q'' ', 1000000));
         INSERT INTO blobs VALUES (2, 0x00090A0D5C27221A00FF, 'tab\\tnewline\\nquote''backslash\\\\nul\\0end');
         INSERT INTO blobs VALUES (3, '', NULL);
         CREATE SEQUENCE invoice_seq START WITH 1000 INCREMENT BY 5;
         SELECT NEXTVAL(invoice_seq), NEXTVAL(invoice_seq), NEXTVAL(invoice_seq);
         CREATE TABLE audit(id INT AUTO_INCREMENT PRIMARY KEY, what VARCHAR(100));
         CREATE TRIGGER orders_audit AFTER INSERT ON orders FOR EACH ROW
           INSERT INTO audit(what) VALUES (CONCAT('order ', NEW.id));
         CREATE VIEW order_totals AS SELECT c.id, c.name, SUM(o.amount) AS total, COUNT(*) AS n
           FROM customers c JOIN orders o ON o.customer_id = c.id GROUP BY c.id, c.name;
         CREATE FUNCTION in_currency(amount DECIMAL(12,2), cur CHAR(3)) RETURNS DECIMAL(14,4)
           READS SQL DATA RETURN amount * (SELECT rate FROM ref.rates WHERE code = cur);
         CREATE PROCEDURE top_customers(IN k INT)
           SELECT id, name FROM order_totals ORDER BY total DESC, id LIMIT k;
         CREATE EVENT nightly ON SCHEDULE EVERY 1 DAY STARTS '2030-01-01 03:00:00'
           DO DELETE FROM audit WHERE id < 0;
         INSERT INTO orders(customer_id, currency, amount, placed) VALUES (42, 'USD', 99.99, '2024-06-01');",
    );
    my.sql(
        "CREATE USER app@'%' IDENTIFIED BY 'S3cret!pw';
         CREATE ROLE reporting;
         GRANT SELECT ON shop.* TO reporting;
         GRANT reporting TO app@'%';
         SET DEFAULT ROLE reporting FOR app@'%';
         GRANT INSERT, EXECUTE ON shop.* TO app@'%';",
    );
}

#[test]
fn databases_with_accounts_restore_into_a_new_server() {
    let src = My::start();
    make_rich_databases(&src);
    let (home, repo) = cli_repo();
    let h = home.path();

    // One database: the dump and the server's accounts, with what was recorded.
    let out = db_cli(h, &repo, &src, &["--json", "snapshot", "shop"])
        .output()
        .unwrap();
    let v = json(&out);
    let m = &v["snapshot"];
    assert_eq!(m["source"]["engine"], "mariadb");
    assert!(m["source"]["server_version"].as_str().unwrap().contains("MariaDB"));
    assert!(m["source"]["dump_tool"].as_str().unwrap().contains("mariadb-dump"));
    assert_eq!(m["source"]["format"], "sql");
    let db = &m["source"]["databases"][0];
    assert_eq!(db["name"], "shop");
    assert_eq!(db["encoding"], "utf8mb4");
    assert_eq!(db["collate"], "utf8mb4_unicode_ci");
    // The server's own size estimate (InnoDB statistics).
    assert!(db["size"].as_u64().unwrap() > 1 << 20, "{db}");
    let entries = entry_paths(m);
    assert_eq!(entries, ["globals.sql", "shop.sql"]);

    // Every user database and the accounts; the MyISAM table is reported.
    let out = db_cli(h, &repo, &src, &["--json", "snapshot", "--all", "-j", "2"])
        .output()
        .unwrap();
    let v = json(&out);
    assert_eq!(db_names(&v), ["ref", "shop"]);
    let warnings = v["snapshot"]["source"]["warnings"].to_string();
    assert!(warnings.contains("ref.legacy (MyISAM)"), "{warnings}");

    // Into a new server: accounts first, then both databases, created like the originals.
    let want_shop = (src.table_checksums("shop"), src.object_counts("shop"));
    let want_ref = (src.table_checksums("ref"), src.object_counts("ref"));
    assert_eq!(want_shop.0.len(), 4, "{:?}", want_shop.0);
    let dst = My::start();
    let out = db_cli(h, &repo, &dst, &["restore", "latest", "--name", "all", "--all"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!((dst.table_checksums("shop"), dst.object_counts("shop")), want_shop);
    assert_eq!((dst.table_checksums("ref"), dst.object_counts("ref")), want_ref);
    assert_eq!(
        dst.sql_in("shop", "SELECT in_currency(100, 'USD')"),
        src.sql_in("shop", "SELECT in_currency(100, 'USD')")
    );
    assert_eq!(
        dst.sql_in(
            "shop",
            "SELECT LENGTH(b), LENGTH(t), MD5(b), MD5(t) FROM blobs ORDER BY id"
        ),
        src.sql_in(
            "shop",
            "SELECT LENGTH(b), LENGTH(t), MD5(b), MD5(t) FROM blobs ORDER BY id"
        )
    );
    assert!(
        dst.sql_in("shop", "SELECT LENGTH(b) FROM blobs WHERE id = 1")
            .parse::<u64>()
            .unwrap()
            > 24 << 20
    );
    // The sequence never hands out a value the source may have used (MariaDB dumps and
    // restores its persisted position, past the cached values, as after a restart).
    let next: u64 = dst.sql_in("shop", "SELECT NEXTVAL(invoice_seq)").parse().unwrap();
    assert!(next >= 1015, "{next}");
    // The trigger works, and the account logs in with its password and its role.
    dst.sql_in(
        "shop",
        "INSERT INTO orders(customer_id, currency, amount, placed) VALUES (7, 'EUR', 1, '2025-01-01')",
    );
    let next_order = src.sql(
        "SELECT auto_increment FROM information_schema.tables WHERE table_schema = 'shop' AND table_name = 'orders'",
    );
    assert_eq!(
        dst.sql_in("shop", "SELECT what FROM audit ORDER BY id DESC LIMIT 1"),
        format!("order {next_order}")
    );
    let o = std::process::Command::new("mariadb")
        .env("MYSQL_PWD", "S3cret!pw")
        .args([
            "--no-defaults",
            "--protocol=TCP",
            "--host=127.0.0.1",
            &format!("--port={}", dst.port),
            "--user=app",
            "--batch",
            "--skip-column-names",
            "-e",
            "SELECT CURRENT_ROLE(), COUNT(*) FROM shop.customers",
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "reporting\t19990");

    // One database under a new name: missing → 66 without --create; then created like the
    // original; a second load refuses the non-empty database (73) unless --force.
    let load_copy = |extra: &[&str]| {
        db_cli(
            h,
            &repo,
            &dst,
            &["restore", "latest", "--name", "shop", "--to-database", "shop copy"],
        )
        .args(extra)
        .output()
        .unwrap()
    };
    let out = load_copy(&[]);
    assert_eq!(out.status.code(), Some(66), "{}", stderr(&out));
    assert!(stderr(&out).contains("--create"), "{}", stderr(&out));
    let out = load_copy(&["--create"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(dst.table_checksums("shop copy"), want_shop.0);
    let out = load_copy(&[]);
    assert_eq!(out.status.code(), Some(73), "{}", stderr(&out));
    assert!(stderr(&out).contains("not empty"), "{}", stderr(&out));
    dst.sql_in("shop copy", "DELETE FROM blobs WHERE id = 3");
    let out = load_copy(&["--force", "--clean"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(dst.table_checksums("shop copy"), want_shop.0);
    // --no-owner is PostgreSQL's; a mysql snapshot cannot be loaded with --engine postgres.
    let out = load_copy(&["--force", "--no-owner"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let out = cli(h)
        .args(["-r", repo.to_str().unwrap(), "restore", "latest", "--name", "shop"])
        .args(["--engine", "postgres", "--to-database", "x"])
        .output()
        .unwrap();
    // `--engine` chooses among the snapshots too (#26): no PostgreSQL snapshot is named shop.
    assert_eq!(out.status.code(), Some(66), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("no snapshot with name `shop`, engine postgresql"),
        "{}",
        stderr(&out)
    );

    // --target writes the SQL dumps for loading by hand: byte-identical to a fresh dump's
    // statements (the tool is deterministic with --skip-dump-date).
    let dir = h.join("files");
    let out = db_cli(
        h,
        &repo,
        &src,
        &["restore", "latest", "--name", "shop", "--target", dir.to_str().unwrap()],
    )
    .output()
    .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let sql = std::fs::read(dir.join("shop.sql")).unwrap();
    assert!(sql.windows(22).any(|w| w == b"CREATE TABLE `blobs` ("));
    assert!(std::fs::read_to_string(dir.join("globals.sql"))
        .unwrap()
        .contains("CREATE USER IF NOT EXISTS `app`@`%`"));
}

#[test]
fn least_privilege_user_option_file_and_errors() {
    let src = My::start();
    make_rich_databases(&src);
    // The privileges docs/mysql.md lists for a backup user.
    src.sql(
        "CREATE USER backup@'%' IDENTIFIED BY 'b4ckup-pw';
         GRANT SELECT, SHOW VIEW, TRIGGER, EVENT ON *.* TO backup@'%';
         CREATE USER weak@'%' IDENTIFIED BY 'weak-pw';
         GRANT SELECT ON shop.* TO weak@'%';",
    );
    let (home, repo) = cli_repo();
    let h = home.path();
    let cnf = h.join("backup.cnf");
    std::fs::write(&cnf, "[client]\nuser=backup\npassword=b4ckup-pw\n").unwrap();
    std::fs::set_permissions(&cnf, std::fs::Permissions::from_mode(0o600)).unwrap();

    // The backup user, its password in an option file, dumps everything.
    let out = db_cli_as(
        h,
        &repo,
        &src,
        &["--json", "snapshot", "--all", "--defaults-file", cnf.to_str().unwrap()],
    )
    .output()
    .unwrap();
    let v = json(&out);
    assert_eq!(v["snapshot"]["source"]["databases"].as_array().unwrap().len(), 2);
    assert_eq!(v["snapshot"]["source"]["globals"], "globals.sql");
    // The password (only in the option file) appears in no output.
    assert!(!stderr(&out).contains("b4ckup-pw"));
    let dst = My::start();
    let out = db_cli(h, &repo, &dst, &["restore", "latest", "--all"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(dst.table_checksums("shop"), src.table_checksums("shop"));

    // Wrong password (MYSQL_PWD) → 77 saying what to check.
    let out = db_cli_as(h, &repo, &src, &["snapshot", "shop", "-U", "backup"])
        .env("MYSQL_PWD", "nope")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(77), "{}", stderr(&out));
    assert!(stderr(&out).contains("MYSQL_PWD"), "{}", stderr(&out));
    // A user that may read the tables but not the triggers' and events' definitions nor the
    // accounts → 77, naming the privilege problem.
    let out = db_cli_as(h, &repo, &src, &["snapshot", "shop", "-U", "weak"])
        .env("MYSQL_PWD", "weak-pw")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(77), "{}", stderr(&out));
    assert!(stderr(&out).contains("privilege"), "{}", stderr(&out));
    // A database that does not exist → 66; an unreachable server → 69; a directory dump → 2 (usage).
    let out = db_cli(h, &repo, &src, &["snapshot", "nosuch"]).output().unwrap();
    assert_eq!(out.status.code(), Some(66), "{}", stderr(&out));
    let out = cli(h)
        .args(["-r", repo.to_str().unwrap(), "snapshot", "shop", "--engine", "mysql"])
        .args(["--host", "127.0.0.1", "--port", &common::pg::free_port().to_string()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(69), "{}", stderr(&out));
    assert!(stderr(&out).contains("cannot be reached"), "{}", stderr(&out));
    let out = db_cli(h, &repo, &src, &["snapshot", "shop", "--format", "directory"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("directory"), "{}", stderr(&out));
    // Nothing of the failed attempts was recorded.
    let out = cli(h)
        .args(["-r", repo.to_str().unwrap(), "--json", "snapshots"])
        .output()
        .unwrap();
    assert_eq!(json(&out).as_array().unwrap().len(), 1);
}

#[test]
fn five_databases_in_parallel_small_change_and_failures() {
    let src = My::start();
    for i in 1..=5 {
        src.sql(&format!(
            "CREATE DATABASE db{i};
             CREATE TABLE db{i}.t(id INT PRIMARY KEY, v VARCHAR(200), n DECIMAL(12,3));
             INSERT INTO db{i}.t WITH RECURSIVE g(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM g WHERE x < 40000 * {i})
               SELECT x, REPEAT(MD5(x * {i}), 4), x / {i} FROM g;
             CREATE TABLE db{i}.kv(k VARCHAR(20) PRIMARY KEY, v JSON);
             INSERT INTO db{i}.kv WITH RECURSIVE g(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM g WHERE x < 500)
               SELECT CONCAT('k', x), JSON_OBJECT('db', {i}, 'x', x) FROM g;
             CREATE VIEW db{i}.big AS SELECT id FROM db{i}.t WHERE n > 100;"
        ));
    }
    let (home, repo) = cli_repo();
    let h = home.path();
    let out = db_cli(h, &repo, &src, &["--json", "snapshot", "--all", "--jobs", "3"])
        .output()
        .unwrap();
    let v = json(&out);
    assert_eq!(db_names(&v), ["db1", "db2", "db3", "db4", "db5"]);
    assert_eq!(v["snapshot"]["source"]["all"], true);

    // Change 1% of the rows of every database (recent rows, as on a live system) and snapshot
    // again: a small fraction of the first snapshot is stored.
    let first_stored = v["snapshot"]["summary"]["bytes_stored"].as_u64().unwrap();
    for i in 1..=5 {
        src.sql(&format!(
            "UPDATE db{i}.t SET v = UPPER(v), n = n + 1 WHERE id > 40000 * {i} * 99 / 100"
        ));
    }
    let out = db_cli(h, &repo, &src, &["--json", "snapshot", "--all", "--jobs", "3"])
        .output()
        .unwrap();
    report_small_change("MariaDB, 5 databases", first_stored, &json(&out));

    let dst = My::start();
    let out = db_cli(h, &repo, &dst, &["restore", "latest", "--all", "--no-globals"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    for i in 1..=5 {
        let db = format!("db{i}");
        assert_eq!(src.table_checksums(&db), dst.table_checksums(&db), "{db}");
        assert_eq!(src.object_counts(&db), dst.object_counts(&db), "{db}");
    }

    // A user that may read every table but see the view definitions of db3 only: --all fails
    // naming db3 (77); with --continue-on-error the others are kept and db3 is recorded.
    src.sql("CREATE USER dumper@'%' IDENTIFIED BY 'd-pw'; GRANT SELECT, EVENT, TRIGGER ON *.* TO dumper@'%';");
    for i in [1, 2, 4, 5] {
        src.sql(&format!("GRANT SHOW VIEW ON db{i}.* TO dumper@'%'"));
    }
    let as_dumper = |extra: &[&str]| {
        db_cli_as(h, &repo, &src, &["snapshot", "--all", "-U", "dumper", "--no-globals"])
            .env("MYSQL_PWD", "d-pw")
            .args(["--name", "as-dumper"])
            .args(extra)
            .output()
            .unwrap()
    };
    let out = as_dumper(&[]);
    assert_eq!(out.status.code(), Some(77), "{}", stderr(&out));
    assert!(stderr(&out).contains("db3"), "{}", stderr(&out));
    let out = as_dumper(&["--json", "--continue-on-error", "-j", "2"]);
    assert_eq!(out.status.code(), Some(3), "partly done: {}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["status"], "partial");
    let meta = &v["snapshot"]["source"];
    assert_eq!(meta["failed"][0]["name"], "db3");
    assert_eq!(meta["databases"].as_array().unwrap().len(), 4);
    let paths = entry_paths(&v["snapshot"]);
    assert_eq!(paths, ["db1.sql", "db2.sql", "db4.sql", "db5.sql"]);
}
