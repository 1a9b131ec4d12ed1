//! The plain `config` object: format version, repository id, chunker and compression settings.

use serde::{Deserialize, Serialize};

use super::Id;

/// The repository format version `init` writes: 2, which adds near-duplicate (delta) chunks
/// and resemblance sketches to version 1 (repo-format §11).
pub const REPO_VERSION: u32 = 2;
/// The oldest repository format version this build reads and writes (without deltas).
pub const MIN_REPO_VERSION: u32 = 1;
use crate::error::{Error, ErrorKind, Result};

/// Content-defined chunking parameters, fixed for the repository's life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkerParams {
    /// Always `fastcdc-v2020`.
    pub algorithm: ChunkerAlgorithm,
    /// Minimum chunk size in bytes.
    pub min_size: u32,
    /// Target average chunk size in bytes.
    pub avg_size: u32,
    /// Maximum chunk size in bytes.
    pub max_size: u32,
}

/// The only chunker algorithm of format v1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ChunkerAlgorithm {
    /// FastCDC 2020 with normalization level 1 and a key-derived gear seed.
    #[serde(rename = "fastcdc-v2020")]
    FastCdc2020,
}

impl Default for ChunkerParams {
    fn default() -> Self {
        ChunkerParams {
            algorithm: ChunkerAlgorithm::FastCdc2020,
            min_size: 512 * 1024,
            avg_size: 1024 * 1024,
            max_size: 4 * 1024 * 1024,
        }
    }
}

/// Compression defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompressionParams {
    /// Always `zstd`.
    pub algorithm: CompressionAlgorithm,
    /// Default zstd level for new blobs (1..=22).
    pub level: i32,
}

/// The only compression algorithm of format v1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CompressionAlgorithm {
    /// Zstandard.
    #[serde(rename = "zstd")]
    Zstd,
}

/// The repository config, stored in plain JSON as `config`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Repository format version (1 or 2); readers refuse versions they do not know.
    pub version: u32,
    /// Random repository id; keys the local index cache.
    pub id: Id,
    /// Chunking parameters.
    pub chunker: ChunkerParams,
    /// Compression defaults.
    pub compression: CompressionParams,
    /// Target pack size in bytes.
    pub pack_size: u32,
}

impl Config {
    /// A new config with a random id.
    pub fn new(chunker: ChunkerParams, level: i32) -> Self {
        Config {
            version: REPO_VERSION,
            id: Id(crate::crypto::random_bytes()),
            chunker,
            compression: CompressionParams {
                algorithm: CompressionAlgorithm::Zstd,
                level,
            },
            pack_size: 16 << 20,
        }
    }

    /// Encode as the stored JSON (one line plus newline).
    pub fn encode(&self) -> Result<Vec<u8>> {
        let mut v = crate::format::object::to_json("the repository config", self)?;
        v.push(b'\n');
        Ok(v)
    }

    /// Decode and validate.
    pub fn decode(b: &[u8]) -> Result<Config> {
        #[derive(Deserialize)]
        struct V {
            version: u32,
        }
        let v: V = serde_json::from_slice(b)
            .map_err(|e| Error::new(ErrorKind::Corrupt, "repository config is not valid JSON").with_source(e))?;
        if !(MIN_REPO_VERSION..=REPO_VERSION).contains(&v.version) {
            return Err(Error::config(format!(
                "repository format version {} is not supported by this dbbackup (it reads versions {MIN_REPO_VERSION} to {REPO_VERSION}); upgrade dbbackup",
                v.version
            )));
        }
        let c: Config = serde_json::from_slice(b)
            .map_err(|e| Error::new(ErrorKind::Corrupt, "repository config is invalid").with_source(e))?;
        c.validate()?;
        Ok(c)
    }

    /// Whether writers may store near-duplicate chunks as deltas and record sketches
    /// (format version 2 and later).
    pub fn deltas(&self) -> bool {
        self.version >= 2
    }

    /// Check the parameters are in the ranges this build supports.
    pub fn validate(&self) -> Result<()> {
        let c = &self.chunker;
        let ok = c.min_size >= 64
            && c.min_size <= c.avg_size
            && c.avg_size <= c.max_size
            && c.min_size <= 64 << 20
            && (256..=256 << 20).contains(&c.avg_size)
            && (1024..=super::pack::MAX_CHUNK).contains(&c.max_size);
        if !ok {
            return Err(Error::config(format!("chunker parameters {c:?} are out of range")));
        }
        if !(1..=22).contains(&self.compression.level) {
            return Err(Error::config("compression level must be 1..=22"));
        }
        if !(1 << 20..=1 << 30).contains(&self.pack_size) {
            return Err(Error::config("pack size must be 1 MiB..=1 GiB"));
        }
        Ok(())
    }
}
