//! `dbbackup snapshots [--name N] [--json]`: list snapshots.

use dbbackup::util::human_bytes;

use super::{output, Ctx};

/// Arguments of `snapshots`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Only snapshots of this source name
    #[arg(long)]
    name: Option<String>,
    /// Only snapshots with this tag
    #[arg(long)]
    tag: Option<String>,
}

/// Run `snapshots`.
pub fn run(ctx: &Ctx, a: Args) -> anyhow::Result<()> {
    let repo = ctx.open()?;
    let (all, unreadable) = repo.readable_manifests()?;
    let list: Vec<_> = all
        .into_iter()
        .filter(|(_, m)| a.name.as_ref().is_none_or(|n| &m.name == n))
        .filter(|(_, m)| a.tag.as_ref().is_none_or(|t| m.tags.contains(t)))
        .collect();
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
