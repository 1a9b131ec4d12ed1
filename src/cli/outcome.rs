//! How a run ends, told the same way by every command: the exit status (0 done, 3 partly
//! done, else the error kind's sysexits code), the error as text on stderr, as a JSON object
//! on stdout with `--json`, and as a JSON log event with `--log-format json`; and the logging
//! that carries one `result` event per finished operation (docs/usage.md, "Exit status and
//! machine-readable output").

use dbbackup::ErrorKind;

use super::{hints, output, Global, LogFormat};

/// The exit status of a run that did part of its work: some databases of `snapshot --all
/// --continue-on-error` failed. Distinct from every failure status (restic uses 3 alike).
pub const PARTIAL: u8 = 3;

/// The exit status of `status` when it found a problem (a stale backup, a failed check, ...):
/// the command worked, the repository needs attention.
pub const PROBLEMS: u8 = 4;

/// How a command that did not fail still did not end well.
#[derive(Debug)]
pub enum Unfinished {
    /// It did part of its work; why.
    Partial(String),
    /// It found problems; how many, in a few words.
    Problems(String),
}

impl Unfinished {
    /// Why, in a few words.
    pub fn why(&self) -> &str {
        match self {
            Unfinished::Partial(w) | Unfinished::Problems(w) => w,
        }
    }
}

/// The log target of result events: on at info level with `--log-format json` (unless `-q`),
/// so a log shipper sees each result without `-v`.
pub const RESULT: &str = "result";

/// Tell that `operation` failed with `e`; the exit status to end with.
pub fn failed(g: &Global, operation: &str, e: &anyhow::Error) -> u8 {
    let lib = hints::library_error(e);
    let kind = lib.map_or(ErrorKind::General, |err| err.kind());
    let hook = e.downcast_ref::<super::after::BeforeHookFailed>().is_some();
    let code = if hook {
        super::after::BEFORE_HOOK
    } else {
        kind.exit_code() as u8
    };
    let kind_name = if hook { "before_hook" } else { kind.name() };
    let root: &(dyn std::error::Error + 'static) = e.as_ref();
    let message = dbbackup::error::one_line(root);
    let hint = lib.and_then(|err| err.hint()).map(hints::say);
    if g.json {
        print_failure(Some(operation), kind_name, code, &message, hint);
    }
    if g.log_format == LogFormat::Json {
        tracing::error!(
            target: RESULT,
            operation,
            status = "failed",
            exit_code = code,
            kind = kind_name,
            hint = hint.unwrap_or(""),
            "{message}"
        );
    } else {
        eprintln!("dbbackup: error: {message}");
        if let Some(h) = hint {
            eprintln!("dbbackup: hint: {h}");
        }
    }
    code
}

/// The `--json` document of a failure: the result the command had (check's report; a list
/// goes under `result`) with the failure's fields beside it, as one object.
pub fn print_failure(operation: Option<&str>, kind: &str, code: u8, message: &str, hint: Option<&str>) {
    let mut v = match output::take_failure_result() {
        Some(serde_json::Value::Object(m)) => m,
        Some(other) => serde_json::Map::from_iter([("result".to_string(), other)]),
        None => serde_json::Map::new(),
    };
    v.insert("operation".into(), operation.into());
    v.insert("status".into(), "failed".into());
    v.insert("exit_code".into(), code.into());
    v.insert(
        "error".into(),
        serde_json::json!({ "kind": kind, "message": message, "hint": hint }),
    );
    let _ = output::json(&v);
}

/// Tell how `operation` ended when it did not end well; the exit status to end with.
pub fn unfinished(g: &Global, operation: &str, u: &Unfinished) -> u8 {
    let (status, code, said, why) = match u {
        Unfinished::Partial(why) => ("partial", PARTIAL, "partly done", why),
        Unfinished::Problems(why) => ("problems", PROBLEMS, "problems found", why),
    };
    if g.log_format == LogFormat::Json {
        tracing::error!(target: RESULT, operation, status, exit_code = code, "{why}");
    } else {
        eprintln!("dbbackup: {said}: {why}");
    }
    code
}

/// Logging on stderr as `-v`/`-q`, `DBBACKUP_LOG` and `--log-format` say.
pub fn init_logging(g: &Global) {
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    use tracing_subscriber::{filter, EnvFilter, Layer, Registry};
    let default = if g.quiet {
        "error"
    } else {
        match g.verbose {
            0 => "warn",
            1 => "info",
            _ => "debug",
        }
    };
    // The SFTP client logs its own connections' ends as errors (with session internals);
    // what matters reaches dbbackup as an error of the request, so it speaks only at -vv.
    let default = if g.verbose >= 2 {
        default.to_string()
    } else {
        format!("{default},openssh_sftp_client=off")
    };
    let default = if g.log_format == LogFormat::Json && !g.quiet && g.verbose == 0 {
        format!("{default},{RESULT}=info")
    } else {
        default
    };
    let filter = EnvFilter::try_from_env("DBBACKUP_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    // JSON: one flat object per event, its target telling `result` events from the rest.
    let fmt: Box<dyn Layer<Registry> + Send + Sync> = match g.log_format {
        LogFormat::Json => fmt.json().flatten_event(true).with_target(true).boxed(),
        LogFormat::Text => fmt.with_target(false).without_time().boxed(),
    };
    // Result events reach the metrics file whatever the log level.
    let capture = super::after::Capture.with_filter(filter::filter_fn(|m| m.target() == RESULT));
    let _ = tracing_subscriber::registry()
        .with(fmt.with_filter(filter))
        .with(capture)
        .try_init();
}
