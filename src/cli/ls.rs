//! `dbbackup ls SNAPSHOT`: a snapshot's entries (dump files, globals) with their sizes and
//! SHA-256, and for database snapshots which database each entry holds.

use dbbackup::format::snapshot::Source;
use dbbackup::util::human_bytes;

use super::{output, Ctx};

/// Arguments of `ls`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Snapshot id, unique id prefix, or `latest`
    snapshot: String,
    #[command(flatten)]
    select: super::select::SelectArgs,
    /// Only snapshots of this database engine
    #[arg(long, value_enum)]
    engine: Option<super::db::Engine>,
}

/// Run `ls`.
pub fn run(ctx: &Ctx, a: Args) -> anyhow::Result<()> {
    let repo = ctx.open()?;
    let (id, m) = repo.select_snapshot(&a.snapshot, &a.select.filter(a.engine))?;
    let db_of = |path: &str| -> String {
        let Source::Database(d) = &m.source else {
            return String::new();
        };
        if d.globals.as_deref() == Some(path) {
            return "(globals)".into();
        }
        d.databases
            .iter()
            .find(|db| db.holds(path))
            .map(|db| db.name.clone())
            .unwrap_or_default()
    };
    if ctx.g.json {
        let entries: Vec<_> = m
            .entries
            .iter()
            .map(|e| {
                serde_json::json!({
                    "path": e.path, "size": e.size, "sha256": e.sha256, "chunks": e.chunks,
                    "database": Some(db_of(&e.path)).filter(|s| !s.is_empty()),
                })
            })
            .collect();
        return output::json(&serde_json::json!({ "id": id, "name": m.name, "time": m.time, "entries": entries }));
    }
    say!(
        "snapshot {} of `{}` taken {} on {}",
        id.short(),
        m.name,
        m.time.strftime("%Y-%m-%d %H:%M:%S UTC"),
        m.hostname
    );
    if let Source::Database(d) = &m.source {
        say!(
            "{} {} dumped with {} ({} format)",
            d.engine,
            d.server_version,
            d.dump_tool,
            d.format
        );
    }
    let rows: Vec<Vec<String>> = m
        .entries
        .iter()
        .map(|e| {
            vec![
                e.path.clone(),
                db_of(&e.path),
                human_bytes(e.size),
                e.size.to_string(),
                e.chunks.to_string(),
                e.sha256.clone(),
            ]
        })
        .collect();
    output::table(&["Entry", "Database", "Size", "Bytes", "Chunks", "SHA-256"], &rows);
    if let Source::Database(d) = &m.source {
        for f in &d.failed {
            say!("failed: {} ({})", f.name, f.error.lines().next().unwrap_or(""));
        }
        for w in &d.warnings {
            say!("warning: {w}");
        }
    }
    Ok(())
}
