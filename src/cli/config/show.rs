//! `dbbackup [--profile NAME] config show [COMMAND...]`: the effective settings and where each
//! came from (command line, environment, profile or file with its line, default), secrets
//! redacted. Without a command: the global options and every option the file or the
//! environment sets; with one (`config show snapshot`, `config show wal push`): all of that
//! command's options that have a value.

use clap::{Arg, Command, CommandFactory};
use dbbackup::Error;
use serde::Serialize;

use super::apply::Explicit;
use super::keys::{key_of, Setting, Value};
use crate::cli::{output, Cli, Ctx};

/// `dbbackup config ...`.
#[derive(clap::Subcommand, Debug)]
pub enum ConfigCmd {
    /// Print the effective settings and where each came from (secrets redacted)
    Show(ShowArgs),
}

/// Arguments of `config show`.
#[derive(clap::Args, Debug)]
pub struct ShowArgs {
    /// Show every option of this command that has a value (e.g. `snapshot`, `wal push`)
    #[arg(value_name = "COMMAND")]
    command: Vec<String>,
}

/// One effective setting.
#[derive(Serialize, Debug)]
struct Row {
    /// The command (`wal push`), empty for a global option.
    command: String,
    /// The key in the file.
    key: String,
    /// Its values (one for most options).
    values: Vec<String>,
    /// `command line`, `environment`, `file`, `profile` or `default`.
    source: &'static str,
    /// The environment variable, for `environment`.
    #[serde(skip_serializing_if = "Option::is_none")]
    variable: Option<String>,
    /// The line in the file, for `file` and `profile`.
    #[serde(skip_serializing_if = "Option::is_none")]
    line: Option<usize>,
}

/// What `config show --json` prints.
#[derive(Serialize, Debug)]
struct Shown {
    file: Option<String>,
    profile: Option<String>,
    settings: Vec<Row>,
    hooks: Vec<String>,
    webhooks: Vec<String>,
}

/// Run `config show`.
pub fn run(ctx: &Ctx, c: ConfigCmd) -> anyhow::Result<()> {
    let ConfigCmd::Show(a) = c;
    let root = Cli::command();
    let named = named_command(&root, &a.command)?;
    let cfg = &ctx.config;
    let mut rows: Vec<Row> = root.get_arguments().filter_map(|arg| global_row(arg, cfg)).collect();
    let mut commands: Vec<(Vec<String>, &Command)> = Vec::new();
    match named {
        Some(cmd) => commands.push((a.command.clone(), cmd)),
        None => walk(&root, &mut Vec::new(), &mut commands),
    }
    for (path, cmd) in commands {
        let all = !a.command.is_empty();
        rows.extend(cmd.get_arguments().filter_map(|arg| command_row(&path, arg, cfg, all)));
    }
    let file = &ctx.file;
    let hooks = file
        .hooks
        .iter()
        .flat_map(|(op, h)| {
            let t = h.timeout.map(|d| format!(" (timeout {d:#})")).unwrap_or_default();
            [
                ("before", &h.before),
                ("after", &h.after),
                ("on_success", &h.on_success),
                ("on_failure", &h.on_failure),
            ]
            .into_iter()
            .filter_map(move |(when, cmd)| Some(format!("[hooks.{op}] {when} = {}{t}", cmd.as_ref()?)))
        })
        .collect();
    let webhooks = file
        .notify
        .webhook
        .iter()
        .enumerate()
        .map(|(i, w)| webhook(i, w))
        .collect();
    let shown = Shown {
        file: cfg.loaded.path.as_ref().map(|p| p.display().to_string()),
        profile: cfg.loaded.profile.clone(),
        settings: rows,
        hooks,
        webhooks,
    };
    if ctx.g.json {
        return output::json(&shown);
    }
    print_text(&shown);
    Ok(())
}

fn print_text(s: &Shown) {
    say!("config file  {}", s.file.as_deref().unwrap_or("(none)"));
    say!("profile      {}", s.profile.as_deref().unwrap_or("(none)"));
    let rows: Vec<Vec<String>> = s
        .settings
        .iter()
        .map(|r| {
            let source = match (&r.variable, r.line) {
                (Some(v), _) => format!("{} {v}", r.source),
                (None, Some(l)) => format!("{}, line {l}", r.source),
                _ => r.source.to_string(),
            };
            vec![r.command.clone(), r.key.clone(), r.values.join(", "), source]
        })
        .collect();
    output::table(&["COMMAND", "KEY", "VALUE", "SOURCE"], &rows);
    for line in s.hooks.iter().chain(&s.webhooks) {
        say!("{line}");
    }
}

/// The command `config show` was asked about, if any.
fn named_command<'a>(root: &'a Command, words: &[String]) -> Result<Option<&'a Command>, Error> {
    let mut cmd = root;
    for w in words {
        cmd = cmd.find_subcommand(w).ok_or_else(|| {
            let known: Vec<&str> = cmd.get_subcommands().map(Command::get_name).collect();
            Error::usage(format!("no command `{}`; known: {}", words.join(" "), known.join(", ")))
        })?;
    }
    Ok((!words.is_empty()).then_some(cmd))
}

/// Every command that takes options, with its path.
fn walk<'a>(cmd: &'a Command, path: &mut Vec<String>, out: &mut Vec<(Vec<String>, &'a Command)>) {
    for sub in cmd.get_subcommands() {
        path.push(sub.get_name().to_string());
        out.push((path.clone(), sub));
        walk(sub, path, out);
        path.pop();
    }
}

fn global_row(arg: &Arg, cfg: &super::Prepared) -> Option<Row> {
    let key = key_of(arg)?;
    let id = arg.get_id().as_str();
    let row = |values, source, variable, line| Row {
        command: String::new(),
        key: key.clone(),
        values,
        source,
        variable,
        line,
    };
    let r = match cfg.explicit.get(id) {
        Some(Explicit::CommandLine(v)) => row(v.clone(), "command line", None, None),
        Some(Explicit::Env(var, v)) => row(v.clone(), "environment", Some(var.clone()), None),
        None => match setting(cfg, &[], id) {
            Some(s) => from_file(s, row(Vec::new(), "file", None, None)),
            None => row(defaults(arg)?, "default", None, None),
        },
    };
    Some(redact(id, r))
}

fn command_row(path: &[String], arg: &Arg, cfg: &super::Prepared, all: bool) -> Option<Row> {
    let key = key_of(arg)?;
    let id = arg.get_id().as_str();
    let mut r = Row {
        command: path.join(" "),
        key,
        values: Vec::new(),
        source: "default",
        variable: None,
        line: None,
    };
    let env = arg
        .get_env()
        .and_then(|v| Some((v.to_string_lossy().into_owned(), std::env::var(v).ok()?)));
    if let Some((var, value)) = env {
        (r.values, r.source, r.variable) = (vec![value], "environment", Some(var));
    } else if let Some(s) = setting(cfg, path, id) {
        r = from_file(s, r);
    } else if all {
        r.values = defaults(arg)?;
    } else {
        return None;
    }
    Some(redact(id, r))
}

fn setting<'a>(cfg: &'a super::Prepared, path: &[String], id: &str) -> Option<&'a Setting> {
    cfg.loaded.settings.iter().find(|s| s.command == path && s.id == id)
}

fn from_file(s: &Setting, mut r: Row) -> Row {
    r.values = match &s.value {
        Value::Flag(b) => vec![b.to_string()],
        Value::Count(n) => vec![n.to_string()],
        Value::Values(v) => v.clone(),
    };
    r.source = if s.profile.is_some() { "profile" } else { "file" };
    r.line = Some(s.line);
    r
}

/// A default worth showing (not an unset flag's `false`).
fn defaults(arg: &Arg) -> Option<Vec<String>> {
    let v: Vec<String> = arg
        .get_default_values()
        .iter()
        .map(|v| v.to_string_lossy().into_owned())
        .collect();
    (!v.is_empty() && v != ["false"] && v != ["0"]).then_some(v)
}

/// Secrets stay out of the output: a password command is shown as set, a location without
/// the password its URL may hold.
fn redact(id: &str, mut r: Row) -> Row {
    if id.contains("password") && !id.ends_with("file") {
        r.values = vec!["(set, not shown)".into()];
    } else if id == "repo" {
        r.values = r
            .values
            .iter()
            .map(|v| dbbackup::storage::parse_location(v).map_or_else(|_| v.clone(), |l| l.display))
            .collect();
    }
    r
}

fn webhook(i: usize, w: &super::WebhookConfig) -> String {
    let name = w.name.clone().unwrap_or_else(|| format!("webhook {}", i + 1));
    let url = match (&w.url, &w.url_file, &w.url_env) {
        (Some(_), _, _) => "url in the file (not shown)".to_string(),
        (_, Some(f), _) => format!("url from {}", f.display()),
        (_, _, Some(v)) => format!("url from ${v}"),
        _ => "no url".to_string(),
    };
    format!("[[notify.webhook]] {name}: {:?}, {url}", w.format)
}
