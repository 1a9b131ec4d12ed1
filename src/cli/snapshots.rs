//! `dbbackup snapshots [--name N] [--snapshot-host H] [--engine E] [--tag T]... [--json]`:
//! list snapshots.

use dbbackup::util::human_bytes;

use super::{output, Ctx};

/// Arguments of `snapshots`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    select: super::select::SelectArgs,
    /// Only snapshots of this database engine
    #[arg(long, value_enum)]
    engine: Option<super::db::Engine>,
}

/// Run `snapshots`.
pub fn run(ctx: &Ctx, a: Args) -> anyhow::Result<()> {
    let repo = ctx.open()?;
    let (all, unreadable) = repo.readable_manifests()?;
    let filter = a.select.filter(a.engine);
    let list: Vec<_> = all.into_iter().filter(|(_, m)| filter.matches(m)).collect();
    if ctx.g.json {
        let v: Vec<_> = list
            .iter()
            .map(|(id, m)| serde_json::json!({ "id": id, "snapshot": m }))
            .collect();
        return output::json_unless(&v, output::unreadable_manifests(&unreadable));
    }
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|(id, m)| {
            vec![
                id.short(),
                m.time.strftime("%Y-%m-%d %H:%M:%S UTC").to_string(),
                m.hostname.clone(),
                m.name.clone(),
                m.source.engine().unwrap_or(m.source.kind()).to_string(),
                m.tags.join(","),
                human_bytes(m.size()),
                human_bytes(m.summary.bytes_stored),
            ]
        })
        .collect();
    output::table(
        &["ID", "Time", "Host", "Name", "Source", "Tags", "Size", "Added"],
        &rows,
    );
    say!("{} snapshots", list.len());
    output::unreadable_manifests(&unreadable)
}
