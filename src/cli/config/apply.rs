//! How the file's settings reach a command: the arguments are read once leniently (to find
//! `--config`, `--profile`, the command and what the command line and the environment already
//! set), then each setting of the file for the global options and for that command that
//! nothing explicit set, and that conflicts with nothing explicit, is added to the arguments as
//! its flag. The command line is then parsed as usual, so a value from the file is checked and
//! used exactly as the same flag typed by hand.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::PathBuf;

use clap::parser::ValueSource;
use clap::{Arg, ArgMatches, Command, CommandFactory};
use dbbackup::Error;

use super::keys::{Setting, Value};
use super::{load, Loaded};
use crate::cli::Cli;

/// The arguments to parse, and the configuration they were completed from.
#[derive(Default, Debug)]
pub struct Prepared {
    /// The command line with the file's settings added.
    pub argv: Vec<OsString>,
    /// The configuration read.
    pub loaded: Loaded,
    /// The flags the file added (`--jobs`, without values, which may be secret), for a
    /// message when parsing fails.
    pub added: Vec<String>,
    /// Global options given on the command line or in the environment: id → where.
    pub explicit: BTreeMap<String, Explicit>,
}

/// Where an option given outside the file came from.
#[derive(Debug, Clone)]
pub enum Explicit {
    /// Typed on the command line.
    CommandLine(Vec<String>),
    /// An environment variable.
    Env(String, Vec<String>),
}

/// Read the configuration for `argv` and add its settings to it.
pub fn prepare(argv: Vec<OsString>) -> Result<Prepared, Error> {
    let root = Cli::command();
    let Ok(m) = root.clone().ignore_errors(true).try_get_matches_from(&argv) else {
        // --help, --version: nothing to add; the real parse shows them.
        return Ok(Prepared {
            argv,
            ..Default::default()
        });
    };
    let config = m.get_one::<PathBuf>("config");
    let profile = m.get_one::<String>("profile");
    let loaded = load(&root, config.map(PathBuf::as_path), profile.map(String::as_str))?;
    let (path, leaf_cmd, leaf) = command_of(&root, &m);
    let explicit = explicit_globals(&root, &m, leaf);
    let (mut args, mut added) = (Vec::new(), Vec::new());
    for s in &loaded.settings {
        let take = if s.command.is_empty() {
            !explicit.contains_key(&s.id) && !given(leaf, &s.id)
        } else {
            s.command == path && !given(leaf, &s.id) && !blocked(leaf_cmd, leaf, &s.id)
        };
        if take {
            args.extend(flags(s));
            added.push(format!("--{}", s.long));
        }
    }
    let mut argv = argv;
    let at = argv.iter().position(|a| a == "--").unwrap_or(argv.len());
    argv.splice(at..at, args.into_iter().map(OsString::from));
    Ok(Prepared {
        argv,
        loaded,
        added,
        explicit,
    })
}

/// The command reached (its path, definition and matches).
fn command_of<'a>(root: &'a Command, m: &'a ArgMatches) -> (Vec<String>, &'a Command, &'a ArgMatches) {
    let (mut path, mut cmd, mut leaf) = (Vec::new(), root, m);
    while let Some((name, sub)) = leaf.subcommand() {
        let Some(c) = cmd.find_subcommand(name) else {
            break;
        };
        path.push(name.to_string());
        (cmd, leaf) = (c, sub);
    }
    (path, cmd, leaf)
}

/// Set on the command line or in the environment.
fn given(m: &ArgMatches, id: &str) -> bool {
    matches!(
        m.value_source(id),
        Some(ValueSource::CommandLine | ValueSource::EnvVariable)
    )
}

/// The global options the command line or the environment set (`m` the matches of the whole
/// line, `leaf` those of the command, where a global option given after it is).
fn explicit_globals(root: &Command, m: &ArgMatches, leaf: &ArgMatches) -> BTreeMap<String, Explicit> {
    root.get_arguments()
        .filter_map(|a| {
            let id = a.get_id().as_str();
            let source = m.value_source(id).or_else(|| leaf.value_source(id))?;
            let raw = m.get_raw(id).or_else(|| leaf.get_raw(id));
            let values: Vec<String> = raw
                .into_iter()
                .flatten()
                .map(|v| v.to_string_lossy().into_owned())
                .collect();
            let e = match source {
                ValueSource::CommandLine => Explicit::CommandLine(values),
                ValueSource::EnvVariable => Explicit::Env(a.get_env()?.to_string_lossy().into_owned(), values),
                _ => return None,
            };
            Some((id.to_string(), e))
        })
        .collect()
}

/// Does something explicit on the command line conflict with `id` (an exclusive group such as
/// "a database, --all or --stdin", or a declared conflict)? Then the explicit choice wins.
fn blocked(cmd: &Command, m: &ArgMatches, id: &str) -> bool {
    let Some(arg) = cmd.get_arguments().find(|a| a.get_id() == id) else {
        return false;
    };
    cmd.get_arguments()
        .filter(|b| b.get_id() != id && given(m, b.get_id().as_str()))
        .any(|b| conflict(cmd, arg, b))
}

/// Do options `a` and `b` of the command at `path` exclude each other?
pub(super) fn exclusive(root: &Command, path: &[String], a: &str, b: &str) -> bool {
    let mut cmd = root;
    for name in path {
        match cmd.find_subcommand(name) {
            Some(c) => cmd = c,
            None => return false,
        }
    }
    let find = |id: &str| cmd.get_arguments().find(|x| x.get_id() == id);
    match (find(a), find(b)) {
        (Some(x), Some(y)) => conflict(cmd, x, y),
        _ => false,
    }
}

fn conflict(cmd: &Command, a: &Arg, b: &Arg) -> bool {
    let names = |x: &Arg, y: &Arg| cmd.get_arg_conflicts_with(x).iter().any(|c| c.get_id() == y.get_id());
    names(a, b)
        || names(b, a)
        || cmd.get_groups().any(|g| {
            let has = |x: &Arg| g.get_args().any(|i| i == x.get_id());
            !g.clone().is_multiple() && has(a) && has(b)
        })
}

/// The flags a setting stands for.
fn flags(s: &Setting) -> Vec<String> {
    let flag = format!("--{}", s.long);
    match &s.value {
        Value::Flag(on) => on.then_some(flag).into_iter().collect(),
        Value::Count(n) => (0..*n).map(|_| flag.clone()).collect(),
        Value::Values(v) => v.iter().map(|x| format!("{flag}={x}")).collect(),
    }
}
