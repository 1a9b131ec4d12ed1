//! The configuration file's command options: every flag of every command has a key, at the top
//! for the global options and in a section per command (`[snapshot]`, `[wal.push]`), named
//! after the flag with `_` for `-` (`--keep-daily` is `keep_daily`). The keys are read against
//! the command-line definitions themselves, so a new flag has its key at once; a key that is
//! not one is refused with its line and the nearest known key.

use clap::{Arg, ArgAction, Command};
use toml::de::{DeTable, DeValue};
use toml::Spanned;

/// One flag's value from the file.
#[derive(Debug, Clone)]
pub struct Setting {
    /// The command it belongs to (`[]` for a global option, `["wal", "push"]`).
    pub command: Vec<String>,
    /// The flag's clap id.
    pub id: String,
    /// The flag (`keep-daily`).
    pub long: String,
    /// What it puts on the command line.
    pub value: Value,
    /// Its line in the file.
    pub line: usize,
    /// The profile that set it, if it was not the file's own section.
    pub profile: Option<String>,
}

/// A value as the command line would take it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// A flag without a value: given (`true`) or not.
    Flag(bool),
    /// A counted flag (`-v`): how many times.
    Count(u64),
    /// One value, or several for a flag that may be repeated.
    Values(Vec<String>),
}

/// Global options the file cannot set: they choose the file, or are no setting.
const NOT_IN_FILE: &[&str] = &["config", "profile", "help", "version"];

/// Sections that are not commands: the typed sections (`sections.rs`) and the profiles.
const TOP_SECTIONS: &[&str] = &["hooks", "notify", "profile"];

/// The key of a flag: its long name with `_` for `-` (`--repo` is `repository`).
pub fn key_of(arg: &Arg) -> Option<String> {
    let long = arg.get_long()?;
    match arg.get_id().as_str() {
        id if NOT_IN_FILE.contains(&id) => None,
        "repo" => Some("repository".into()),
        _ => Some(long.replace('-', "_")),
    }
}

/// The options of `cmd` the file may set.
fn options(cmd: &Command) -> impl Iterator<Item = (String, &Arg)> {
    cmd.get_arguments().filter_map(|a| Some((key_of(a)?, a)))
}

/// Where a key was read: the file's text, for line numbers, and the profile being read.
pub struct Reader<'t> {
    /// The file's text.
    pub text: &'t str,
    /// The file's path, for messages.
    pub path: String,
    /// `Some(name)` while reading `[profile.NAME]`.
    pub profile: Option<String>,
}

impl Reader<'_> {
    /// The 1-based line of a byte offset.
    pub fn line(&self, offset: usize) -> usize {
        self.text.get(..offset).map_or(0, |t| t.matches('\n').count()) + 1
    }

    fn error(&self, offset: usize, what: String) -> String {
        let within = match &self.profile {
            Some(p) => format!(" (in profile `{p}`)"),
            None => String::new(),
        };
        format!("config file {}, line {}{within}: {what}", self.path, self.line(offset))
    }

    /// Read the command options of `table` (the file's top, or a profile's), which belong to
    /// `cmd` reached by `path`, into `out`.
    pub fn read(
        &self,
        cmd: &Command,
        path: &mut Vec<String>,
        table: &DeTable<'_>,
        out: &mut Vec<Setting>,
    ) -> Result<(), String> {
        for (k, v) in table {
            let key = k.get_ref().as_ref();
            let at = k.span().start;
            let top = path.is_empty() && TOP_SECTIONS.contains(&key) && !(key == "profile" && self.profile.is_some());
            if top || *path == ["status"] && key == "sources" {
                continue; // typed sections, read by sections.rs; profiles by the caller
            }
            let name = key.replace('-', "_");
            if let Some(sub) = cmd.get_subcommands().find(|s| s.get_name().replace('-', "_") == name) {
                let DeValue::Table(t) = v.get_ref() else {
                    let section = [&path[..], &[key.to_string()]].concat().join(".");
                    return Err(self.error(at, format!("`{key}` is a command: it takes a section ([{section}])")));
                };
                path.push(sub.get_name().to_string());
                self.read(sub, path, t, out)?;
                path.pop();
                continue;
            }
            let Some((_, arg)) = options(cmd).find(|(k, a)| *k == name || alias_of(a, &name)) else {
                return Err(self.error(at, unknown(cmd, path, key, self.profile.is_some())));
            };
            let value = value(cmd, arg, v).map_err(|e| {
                let section = section_name(path);
                self.error(v.span().start, format!("{section}{key}: {e}"))
            })?;
            out.push(Setting {
                command: path.clone(),
                id: arg.get_id().to_string(),
                long: arg.get_long().unwrap_or_default().to_string(),
                value,
                line: self.line(at),
                profile: self.profile.clone(),
            });
        }
        Ok(())
    }
}

/// Is `name` another spelling of the flag `arg`: one of its aliases (`forget --host` for
/// `--snapshot-host`), or `repo` for `repository`?
fn alias_of(arg: &Arg, name: &str) -> bool {
    let aliases = arg.get_all_aliases().unwrap_or_default();
    aliases.iter().any(|a| a.replace('-', "_") == name) || (arg.get_id() == "repo" && name == "repo")
}

/// `[snapshot] ` for a command's key, nothing for a global one.
fn section_name(path: &[String]) -> String {
    if path.is_empty() {
        String::new()
    } else {
        format!("[{}] ", path.join("."))
    }
}

/// The message for a key that is no option or command here, with the nearest that is.
fn unknown(cmd: &Command, path: &[String], key: &str, in_profile: bool) -> String {
    let mut known: Vec<String> = options(cmd).map(|(k, _)| k).collect();
    known.extend(cmd.get_subcommands().map(|s| s.get_name().to_string()));
    if path.is_empty() {
        let sections = TOP_SECTIONS.iter().filter(|s| !in_profile || **s != "profile");
        known.extend(sections.map(|s| s.to_string()));
    }
    let place = if path.is_empty() {
        let of = if in_profile { "profile" } else { "file" };
        format!("at the top of the {of} (global options and command sections)")
    } else {
        format!("in [{}]", path.join("."))
    };
    let nearest = known
        .iter()
        .min_by_key(|k| strsim::levenshtein(k, key))
        .map(|k| format!("; the nearest known key is `{k}`"))
        .unwrap_or_default();
    format!("unknown key `{key}` {place}{nearest}")
}

/// The command-line value of `v` for `arg`, checked as the command line would check it.
fn value(cmd: &Command, arg: &Arg, v: &Spanned<DeValue<'_>>) -> Result<Value, String> {
    match arg.get_action() {
        ArgAction::SetTrue | ArgAction::SetFalse => match v.get_ref() {
            DeValue::Boolean(b) => Ok(Value::Flag(*b)),
            _ => Err("takes true or false".into()),
        },
        ArgAction::Count => match v.get_ref() {
            DeValue::Integer(i) => integer(i)
                .filter(|n| (0..=255).contains(n))
                .map(|n| Value::Count(n as u64))
                .ok_or_else(|| "takes a small number".into()),
            _ => Err("takes a number".into()),
        },
        action => {
            let many = matches!(action, ArgAction::Append);
            let items: Vec<String> = match v.get_ref() {
                DeValue::Array(a) if many => a.iter().map(|x| scalar(x.get_ref())).collect::<Result<_, _>>()?,
                DeValue::Array(_) => return Err("takes one value, not a list".into()),
                other => vec![scalar(other)?],
            };
            // The flag alone, with its value parser, as the command line would parse it.
            let long = arg.get_long().unwrap_or_default();
            let alone = Command::new(cmd.get_name().to_string()).no_binary_name(true).arg(
                Arg::new(arg.get_id().clone())
                    .long(long.to_string())
                    .value_names(arg.get_value_names().unwrap_or_default().to_vec())
                    .value_parser(arg.get_value_parser().clone())
                    .action(ArgAction::Set),
            );
            for item in &items {
                alone
                    .clone()
                    .try_get_matches_from([format!("--{long}={item}")])
                    .map_err(|e| clap_message(&e))?;
            }
            Ok(Value::Values(items))
        }
    }
}

/// A scalar as the command line would spell it.
fn scalar(v: &DeValue<'_>) -> Result<String, String> {
    Ok(match v {
        DeValue::String(s) => s.to_string(),
        DeValue::Integer(i) => integer(i).ok_or("is too large a number")?.to_string(),
        DeValue::Float(f) => f.as_str().replace('_', ""),
        DeValue::Boolean(b) => b.to_string(),
        DeValue::Datetime(d) => d.to_string(),
        DeValue::Array(_) | DeValue::Table(_) => return Err("takes a single value here, not a list or a table".into()),
    })
}

fn integer(i: &toml::de::DeInteger<'_>) -> Option<i128> {
    i128::from_str_radix(i.as_str(), i.radix()).ok()
}

/// clap's message without its `error: ` prefix and usage lines.
fn clap_message(e: &clap::Error) -> String {
    let text = e.to_string();
    let first = text.lines().next().unwrap_or_default();
    first.strip_prefix("error: ").unwrap_or(first).to_string()
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    /// Every long option of every command, bar `--config` and `--profile`, is a key the file
    /// takes in its command's section: a new flag has its key without anyone writing it.
    #[test]
    fn every_flag_of_every_command_has_a_key() {
        let root = crate::cli::Cli::command();
        let mut stack = vec![(Vec::<String>::new(), &root)];
        let mut seen = 0;
        while let Some((path, cmd)) = stack.pop() {
            for arg in cmd.get_arguments().filter(|a| a.get_long().is_some()) {
                let id = arg.get_id().as_str();
                let Some(key) = key_of(arg) else {
                    assert!(NOT_IN_FILE.contains(&id), "{path:?} {id}");
                    continue;
                };
                let section = if path.is_empty() {
                    String::new()
                } else {
                    format!("[{}]\n", path.join("."))
                };
                let text = format!("{section}{key} = \"x\"\n");
                let doc = DeTable::parse(&text).unwrap();
                let reader = Reader {
                    text: &text,
                    path: "t".into(),
                    profile: None,
                };
                let mut out = Vec::new();
                // The value may be refused ("x" is no number), the key never.
                if let Err(e) = reader.read(&root, &mut Vec::new(), doc.get_ref(), &mut out) {
                    assert!(
                        !e.contains("unknown key"),
                        "{path:?} --{}: {e}",
                        arg.get_long().unwrap()
                    );
                } else {
                    assert_eq!((out.len(), out[0].id.as_str()), (1, id));
                }
                seen += 1;
            }
            for sub in cmd.get_subcommands() {
                let mut p = path.clone();
                p.push(sub.get_name().to_string());
                stack.push((p, sub));
            }
        }
        assert!(seen > 80, "only {seen} options");
    }
}
