//! Shell completions, man pages and `-h` (#26 part 9): generated from the definitions the
//! binary parses with, so they list every command; help shows a command's own options before
//! the global ones.

mod common;

use common::{cli, ok};

fn stdout(o: &std::process::Output) -> String {
    String::from_utf8(o.stdout.clone()).unwrap()
}

#[test]
fn completions_are_valid_scripts_that_know_the_commands() {
    let home = tempfile::tempdir().unwrap();
    for shell in ["bash", "zsh", "fish"] {
        let o = ok(cli(home.path()).args(["completions", shell]).output().unwrap(), shell);
        let text = stdout(&o);
        for word in ["snapshot", "restore", "prune", "metrics", "repo", "continue-on-error"] {
            assert!(text.contains(word), "{shell} completion lacks {word}");
        }
    }
    let script = home.path().join("dbbackup.bash");
    let o = ok(cli(home.path()).args(["completions", "bash"]).output().unwrap(), "bash");
    std::fs::write(&script, &o.stdout).unwrap();
    let check = std::process::Command::new("bash")
        .arg("-n")
        .arg(&script)
        .output()
        .unwrap();
    assert!(check.status.success(), "{}", String::from_utf8_lossy(&check.stderr));
    let o = cli(home.path()).args(["completions", "tcsh"]).output().unwrap();
    assert_eq!(o.status.code(), Some(2));
    // `completion`, as the issue spells it, is the same command.
    let o = ok(cli(home.path()).args(["completion", "fish"]).output().unwrap(), "alias");
    assert!(stdout(&o).contains("snapshot"));
}

/// Every TOML example in the documentation is a configuration file the binary accepts (so the
/// examples cannot drift from the keys): `config show` reads each, with each profile it names.
#[test]
fn the_configuration_examples_of_the_docs_are_accepted() {
    let home = tempfile::tempdir().unwrap();
    let mut seen = 0;
    for doc in ["docs/usage.md", "docs/operations.md"] {
        let text = std::fs::read_to_string(doc).unwrap();
        for (i, block) in text.split("```toml\n").skip(1).enumerate() {
            let toml = block.split("```").next().unwrap();
            let path = home.path().join(format!("example-{seen}.toml"));
            std::fs::write(&path, toml).unwrap();
            let mut profiles = vec![None];
            for line in toml.lines() {
                if let Some(p) = line.strip_prefix("[profile.") {
                    let name = p.split(['.', ']']).next().unwrap().to_string();
                    if !profiles.contains(&Some(name.clone())) {
                        profiles.push(Some(name));
                    }
                }
            }
            for p in profiles {
                let mut c = cli(home.path());
                c.arg("--config").arg(&path);
                if let Some(p) = &p {
                    c.args(["--profile", p]);
                }
                let o = c.args(["config", "show"]).output().unwrap();
                assert!(
                    o.status.success(),
                    "{doc}, TOML block {} (profile {p:?}): {}",
                    i + 1,
                    String::from_utf8_lossy(&o.stderr)
                );
            }
            seen += 1;
        }
    }
    assert!(seen >= 4, "{seen} examples");
}

#[test]
fn man_pages_cover_every_command() {
    let home = tempfile::tempdir().unwrap();
    let o = ok(cli(home.path()).args(["man"]).output().unwrap(), "man");
    assert!(stdout(&o).contains(".TH dbbackup 1"), "{}", stdout(&o));
    let dir = home.path().join("man");
    ok(
        cli(home.path())
            .args(["man", "--dir", dir.to_str().unwrap()])
            .output()
            .unwrap(),
        "man --dir",
    );
    for page in [
        "dbbackup.1",
        "dbbackup-snapshot.1",
        "dbbackup-metrics-serve.1",
        "dbbackup-wal-push.1",
    ] {
        let text = std::fs::read_to_string(dir.join(page)).unwrap_or_else(|e| panic!("{page}: {e}"));
        assert!(text.contains(".SH OPTIONS") || page == "dbbackup.1", "{page}");
    }
    let snapshot = std::fs::read_to_string(dir.join("dbbackup-snapshot.1")).unwrap();
    assert!(snapshot.contains("continue\\-on\\-error"), "{snapshot}");
}

#[test]
fn help_lists_a_commands_own_options_before_the_global_ones() {
    let home = tempfile::tempdir().unwrap();
    let o = ok(
        cli(home.path()).args(["snapshot", "-h"]).output().unwrap(),
        "snapshot -h",
    );
    let text = stdout(&o);
    let at = |s: &str| text.find(s).unwrap_or_else(|| panic!("no {s} in\n{text}"));
    assert!(at("--continue-on-error") < at("Global options:"), "{text}");
    assert!(at("Global options:") < at("--repo"), "{text}");
    assert!(at("Global options:") < at("--metrics-file"), "{text}");
}
