//! The configuration file (#26 part 5): a key for every flag in a section per command, the
//! precedence flag > environment > profile > file > default, profiles chosen with `--profile`
//! or DBBACKUP_PROFILE, unknown keys and bad values refused with the file's line and the
//! nearest key, and `config show` saying where each setting came from without its secrets.

mod common;

use std::path::Path;

use common::{cli, cli_repo, json, ok, stderr};

const PASSWORD_COMMAND: &str = "echo hunter2-not-shown";

fn write_config(home: &Path, text: &str) -> std::path::PathBuf {
    let dir = home.join("config/dbbackup");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("config.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// The file of the precedence test: the repository, a snapshot section, a profile.
fn file_text(repo: &Path) -> String {
    format!(
        r#"repository = "{}"
password_command = "{PASSWORD_COMMAND}"

[snapshot]
hostname = "file-host"
tag = ["from-file", "nightly-set"]
no_verify = true

[forget]
keep_last = 1
host = "profile-host"             # an alias of snapshot_host, as --host of --snapshot-host

[profile.nightly.snapshot]
hostname = "profile-host"
stdin = true
name = "from-profile"

[check]
read_data_subset = "1/7"

[profile.monthly.check]
read_data = true
"#,
        repo.display()
    )
}

/// (host, name, tags) of every snapshot, oldest first.
fn listed(home: &Path) -> Vec<(String, String, Vec<String>)> {
    let o = ok(cli(home).args(["--json", "snapshots"]).output().unwrap(), "snapshots");
    json(&o)
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let s = &s["snapshot"];
            let tags = s["tags"]
                .as_array()
                .map_or(vec![], |t| t.iter().map(|x| x.as_str().unwrap().to_string()).collect());
            (
                s["hostname"].as_str().unwrap().to_string(),
                s["name"].as_str().unwrap().to_string(),
                tags,
            )
        })
        .collect()
}

#[test]
fn settings_come_from_flags_then_environment_then_profile_then_file_then_defaults() {
    let (home, repo) = cli_repo();
    let h = home.path();
    write_config(h, &file_text(&repo));
    let snap = |args: &[&str], env: &[(&str, &str)]| {
        let mut c = cli(h);
        for (k, v) in env {
            c.env(k, v);
        }
        ok(c.args(args).write_stdin("data").output().unwrap(), "snapshot");
    };
    // The file alone: its repository, host and tags.
    snap(&["snapshot", "--stdin", "--name", "plain"], &[]);
    // The profile by flag and by environment: its host, and `stdin` + `name` so that the
    // cron line needs nothing more.
    snap(&["--profile", "nightly", "snapshot"], &[]);
    snap(&["snapshot"], &[("DBBACKUP_PROFILE", "nightly")]);
    // A flag beats the profile; a flag of the exclusive group (--from-command) beats the
    // profile's --stdin instead of clashing with it.
    snap(
        &[
            "--profile",
            "nightly",
            "snapshot",
            "--hostname",
            "flag-host",
            "--from-command",
            "echo hi",
            "--name",
            "cmd",
        ],
        &[],
    );
    let tags = vec!["from-file".to_string(), "nightly-set".to_string()];
    let want = [
        ("file-host", "plain"),
        ("profile-host", "from-profile"),
        ("profile-host", "from-profile"),
        ("flag-host", "cmd"),
    ];
    let got = listed(h);
    assert_eq!(got.len(), want.len(), "{got:?}");
    for ((host, name, t), (wh, wn)) in got.iter().zip(want) {
        assert_eq!((host.as_str(), name.as_str(), t), (wh, wn, &tags), "{got:?}");
    }
    // The environment beats the file: a repository that does not exist in the environment
    // is used (and fails: 66), the file's is not.
    let o = cli(h)
        .env("DBBACKUP_REPOSITORY", h.join("nowhere"))
        .args(["snapshots"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(66), "{}", stderr(&o));
    // A file's `[forget] keep_last` is a policy for a bare `forget`: one snapshot per host
    // and name is kept, so one of the two of the profile goes.
    let o = ok(cli(h).args(["--json", "forget"]).output().unwrap(), "forget");
    assert_eq!(
        json(&o)["forgotten"].as_array().unwrap().len(),
        1,
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );

    // A profile's option replaces the file's options it excludes (read_data, read_data_subset).
    let o = ok(
        cli(h).args(["--profile", "monthly", "check"]).output().unwrap(),
        "check",
    );
    assert!(
        stderr(&o).is_empty() || !stderr(&o).contains("cannot be used"),
        "{}",
        stderr(&o)
    );
    let o = ok(
        cli(h)
            .args(["--profile", "monthly", "--json", "config", "show"])
            .output()
            .unwrap(),
        "show",
    );
    let rows = json(&o)["settings"].to_string();
    assert!(
        rows.contains("\"read_data\"") && !rows.contains("read_data_subset"),
        "{rows}"
    );

    // config show: each setting's source, the password command not shown.
    let o = ok(
        cli(h)
            .env("DBBACKUP_STORAGE_RETRIES", "7")
            .args(["--profile", "nightly", "--json", "config", "show", "snapshot"])
            .output()
            .unwrap(),
        "config show",
    );
    let text = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(!text.contains("hunter2"), "{text}");
    let v = json(&o);
    assert_eq!(v["profile"], "nightly");
    let source = |command: &str, key: &str| -> (String, serde_json::Value, Option<u64>) {
        let row = v["settings"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["command"] == command && r["key"] == key)
            .unwrap_or_else(|| panic!("{command} {key} missing: {text}"));
        (
            row["source"].as_str().unwrap().to_string(),
            row["values"].clone(),
            row["line"].as_u64(),
        )
    };
    assert_eq!(source("", "repository").0, "file");
    assert_eq!(source("", "repository").2, Some(1));
    assert_eq!(source("", "storage_retries").0, "environment");
    assert_eq!(source("", "storage_timeout").0, "default");
    assert_eq!(source("", "json").0, "command line");
    assert_eq!(
        source("snapshot", "hostname"),
        ("profile".into(), serde_json::json!(["profile-host"]), Some(14))
    );
    assert_eq!(source("snapshot", "no_verify").2, Some(7));
    assert_eq!(
        source("snapshot", "jobs"),
        ("default".into(), serde_json::json!(["1"]), None)
    );
    assert_eq!(
        source("", "password_command").1,
        serde_json::json!(["(set, not shown)"])
    );
}

#[test]
fn unknown_keys_and_bad_values_are_refused_with_the_line_and_the_nearest_key() {
    let (home, repo) = cli_repo();
    let h = home.path();
    let r = repo.to_str().unwrap();
    let cases: &[(&str, &[&str])] = &[
        (
            "[snapshot]\njbos = 4\n",
            &["line 2", "unknown key `jbos` in [snapshot]", "`jobs`"],
        ),
        (
            "compresion = 1\n[snapshto]\n",
            &["line 1", "`compresion`", "nearest known key is"],
        ),
        ("[snapshto]\njobs = 1\n", &["line 1", "`snapshto`", "`snapshot`"]),
        ("[wal.push]\nahaed = 3\n", &["line 2", "[wal.push]", "`ahead`"]),
        (
            "[profile.night.prune]\nmax_unusd = \"5%\"\n",
            &["line 2", "profile `night`", "`max_unused`"],
        ),
        (
            "[snapshot]\njobs = \"many\"\n",
            &["line 2", "[snapshot] jobs", "invalid value 'many'"],
        ),
        ("[prune]\nmax_unused = \"lots\"\n", &["line 2", "max_unused", "lots"]),
        ("[snapshot]\nall = \"yes\"\n", &["line 2", "takes true or false"]),
        ("[hooks.snapshot]\nbefor = \"true\"\n", &["line 2", "befor"]),
        ("[profile.a]\n", &["no profile `nightly`", "profiles: a"]),
    ];
    for (text, wants) in cases {
        let path = write_config(h, text);
        let o = cli(h)
            .args(["-r", r, "--profile", "nightly", "snapshots"])
            .output()
            .unwrap();
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(78), "{text}: {err}");
        assert!(err.contains(&path.display().to_string()), "{text}: {err}");
        for w in *wants {
            assert!(err.contains(w), "{text}: want `{w}` in: {err}");
        }
        // --json: the failure as a JSON object too.
        let o = cli(h)
            .args(["-r", r, "--profile", "nightly", "--json", "snapshots"])
            .output()
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(v["error"]["kind"], "config", "{text}");
    }
    // A profile asked for with no file at all.
    std::fs::remove_file(h.join("config/dbbackup/config.toml")).unwrap();
    let o = cli(h)
        .args(["-r", r, "--profile", "nightly", "snapshots"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(78), "{}", stderr(&o));
    // Two of the file's settings that clash are named when the command line is refused.
    write_config(h, "[snapshot]\nall = true\nstdin = true\n");
    let o = cli(h).args(["-r", r, "snapshot"]).output().unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("gave --all, --stdin"), "{}", stderr(&o));
}
