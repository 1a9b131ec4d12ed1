//! `dbbackup init`: create a new encrypted repository.

use dbbackup::crypto::KdfParams;
use dbbackup::format::config::ChunkerParams;
use dbbackup::repo::{InitOptions, Repository};
use dbbackup::storage::Store;

use super::{output, password, Ctx};

/// Arguments of `init`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Repository location (overrides -r/--repo)
    repo: Option<String>,
    /// Default zstd level of the repository (1-22)
    #[arg(long, default_value_t = 3)]
    compression_level: i32,
    /// Average chunk size in bytes (fixed for the repository's life)
    #[arg(long, default_value_t = 1 << 20)]
    chunk_avg: u32,
    /// Target pack size (1M-1G): larger packs mean fewer objects on object stores, smaller
    /// ones finer-grained pruning
    #[arg(long, default_value = "16M", value_name = "SIZE")]
    pack_size: String,
    /// Argon2id memory in KiB for this key
    #[arg(long, default_value_t = KdfParams::default().memory_kib)]
    kdf_memory_kib: u32,
    /// Argon2id iterations for this key
    #[arg(long, default_value_t = KdfParams::default().iterations)]
    kdf_iterations: u32,
}

/// Run `init`. Every option is checked, and an existing or non-empty location refused,
/// before anything is created; a local directory made for the repository is removed again
/// if the repository could not be made in it.
pub fn run(ctx: &Ctx, a: Args) -> anyhow::Result<()> {
    let chunker = ChunkerParams {
        min_size: (a.chunk_avg / 2).max(64),
        avg_size: a.chunk_avg,
        max_size: a.chunk_avg.saturating_mul(4).min(16 << 20),
        ..ChunkerParams::default()
    };
    let pack_size = dbbackup::util::parse_size(&a.pack_size)
        .and_then(|n| u32::try_from(n).ok())
        .ok_or_else(|| dbbackup::Error::usage(format!("--pack-size `{}` is not a size (e.g. 16M)", a.pack_size)))?;
    let opts = InitOptions {
        chunker,
        pack_size,
        compression_level: a.compression_level,
        kdf: KdfParams {
            memory_kib: a.kdf_memory_kib,
            iterations: a.kdf_iterations,
            parallelism: 1,
        },
    };
    Repository::new_config(&opts)?;
    let loc = ctx.location(a.repo.as_deref())?;
    // Refuse an existing repository, or a place holding other things, before asking for a
    // password.
    if loc.local.as_ref().is_none_or(|p| p.exists()) {
        let store = ctx.store(a.repo.as_deref())?;
        Repository::refuse_existing(&store)?;
        Repository::refuse_non_empty(&store)?;
    }
    let pw = password::get(&ctx.g, "new repository password: ", true)?;
    let (store, created) = Store::create(&loc, ctx.rt.handle().clone(), ctx.limits())?;
    let repo = match Repository::init(store, pw.as_bytes(), &opts) {
        Ok(r) => r,
        Err(e) => {
            if let Some(dir) = created {
                let _ = std::fs::remove_dir_all(dir);
            }
            return Err(e.into());
        }
    };
    if ctx.g.json {
        output::json(&serde_json::json!({
            "repository": repo.store().display(),
            "id": repo.config().id,
            "key": repo.key_id(),
            "config": repo.config(),
        }))?;
    } else {
        say!(
            "created repository {} at {}",
            repo.config().id.short(),
            repo.store().display()
        );
        say!("keep the password safe: without it the data cannot be recovered");
    }
    Ok(())
}
