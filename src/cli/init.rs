//! `dbbackup init`: create a new encrypted repository.

use dbbackup::crypto::KdfParams;
use dbbackup::format::config::ChunkerParams;
use dbbackup::repo::{InitOptions, Repository};

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

/// Run `init`.
pub fn run(ctx: &Ctx, a: Args) -> anyhow::Result<()> {
    let store = ctx.store(a.repo.as_deref())?;
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
    // Refuse an existing repository before asking for a password.
    Repository::refuse_existing(&store)?;
    let pw = password::get(&ctx.g, "new repository password: ", true)?;
    let repo = Repository::init(store, pw.as_bytes(), &opts)?;
    if ctx.g.json {
        output::json(&serde_json::json!({
            "repository": repo.store().display(),
            "id": repo.config().id,
            "key": repo.key_id(),
            "config": repo.config(),
        }))?;
    } else {
        println!(
            "created repository {} at {}",
            repo.config().id.short(),
            repo.store().display()
        );
        println!("keep the password safe: without it the data cannot be recovered");
    }
    Ok(())
}
