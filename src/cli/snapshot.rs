//! `dbbackup snapshot --stdin|--from-command CMD --name NAME`: back up one stream.

use dbbackup::format::snapshot::Source;
use dbbackup::lock;
use dbbackup::progress::Progress;
use dbbackup::snapshot::{SnapshotOptions, SnapshotWriter};
use dbbackup::util::human_bytes;
use dbbackup::Error;

use super::{output, Ctx};

/// Arguments of `snapshot`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Read the stream from standard input
    #[arg(long, conflicts_with = "from_command", required_unless_present = "from_command")]
    stdin: bool,
    /// Run this command (sh -c) and back up its standard output; a non-zero exit records nothing
    #[arg(long, value_name = "CMD")]
    from_command: Option<String>,
    /// Source name the snapshot is filed under (e.g. the database name)
    #[arg(long)]
    name: String,
    /// Tag the snapshot (repeatable)
    #[arg(long = "tag", value_name = "TAG")]
    tags: Vec<String>,
    /// zstd level for new chunks (default: the repository's)
    #[arg(long)]
    compression_level: Option<i32>,
    /// Record this time instead of now (RFC 3339 or `YYYY-MM-DD HH:MM:SS` UTC), e.g. importing old dumps
    #[arg(long)]
    time: Option<String>,
    /// Record this host name instead of this machine's
    #[arg(long)]
    host: Option<String>,
}

/// Parse a user-given timestamp: RFC 3339, or a civil time taken as UTC.
pub fn parse_time(s: &str) -> dbbackup::Result<jiff::Timestamp> {
    if let Ok(t) = s.parse::<jiff::Timestamp>() {
        return Ok(t);
    }
    s.parse::<jiff::civil::DateTime>()
        .ok()
        .and_then(|dt| dt.to_zoned(jiff::tz::TimeZone::UTC).ok())
        .map(|z| z.timestamp())
        .ok_or_else(|| {
            Error::usage(format!(
                "cannot parse time `{s}`; use RFC 3339 or `YYYY-MM-DD HH:MM:SS` (UTC)"
            ))
        })
}

/// Run `snapshot`.
pub fn run(ctx: &Ctx, a: Args) -> anyhow::Result<()> {
    let time = a.time.as_deref().map(parse_time).transpose()?;
    if a.stdin && std::io::IsTerminal::is_terminal(&std::io::stdin()) {
        return Err(Error::usage(
            "--stdin is a terminal; pipe the data in (e.g. `pg_dump -Fc -Z0 db | dbbackup snapshot --stdin --name db`)",
        )
        .into());
    }
    let repo = ctx.open()?;
    let index = ctx.index(&repo)?;
    let _lock = lock::acquire(&repo, "snapshot", false)?;
    let opts = SnapshotOptions {
        name: a.name.clone(),
        tags: a.tags,
        compression_level: a.compression_level,
        time,
        hostname: a.host,
    };
    let mut w = SnapshotWriter::new(&repo, &index, opts)?;
    let bar = ctx.progress();
    bar.start("snapshot", None);
    let source = match &a.from_command {
        Some(cmd) => {
            let (child, stdout) = dbbackup::source::CommandSource::spawn(cmd)?;
            match w.add_stream(&a.name, stdout, &bar) {
                Ok(_) => child.wait()?,
                Err(e) => {
                    child.kill();
                    return Err(e.into());
                }
            }
            Source::Command { command: cmd.clone() }
        }
        None => {
            w.add_stream(&a.name, std::io::stdin(), &bar)?;
            Source::Stdin
        }
    };
    bar.finish();
    let (id, m) = w.finish(source)?;
    if ctx.g.json {
        return output::json(&serde_json::json!({ "id": id, "snapshot": m }));
    }
    let s = &m.summary;
    println!(
        "snapshot {} of `{}` saved: {} read, {} new in {} of {} chunks, {} stored, {:.1}s",
        id.short(),
        m.name,
        human_bytes(s.bytes_read),
        human_bytes(s.bytes_new),
        s.chunks_new,
        s.chunks_total,
        human_bytes(s.bytes_stored),
        s.duration_ms as f64 / 1000.0
    );
    Ok(())
}
