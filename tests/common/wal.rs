//! Synthetic PostgreSQL WAL segments (a valid long page header, half random bytes) so WAL
//! archiving can be tested without a server.

use std::io::Read;
use std::path::Path;

use super::{cli, json, Gen};

/// Segment size of the synthetic segments.
pub const SEG: usize = 1 << 20;

/// The name of segment `segno` of timeline 1.
pub fn segment_name(segno: u64) -> String {
    format!("00000001{:08X}{:08X}", segno >> 8, segno & 0xff)
}

/// Segment `segno` of timeline 1 of cluster `sysid`: half random (by `segno` and `sysid`),
/// half zeros.
pub fn segment_bytes(sysid: u64, segno: u64) -> Vec<u8> {
    let mut b = vec![0u8; SEG];
    Gen::random((segno << 40) ^ sysid.rotate_left(7), (SEG / 2) as u64)
        .read_exact(&mut b[..SEG / 2])
        .unwrap();
    b[..40].fill(0);
    b[0..2].copy_from_slice(&0xD110u16.to_le_bytes());
    b[2..4].copy_from_slice(&2u16.to_le_bytes()); // XLP_LONG_HEADER
    b[4..8].copy_from_slice(&1u32.to_le_bytes());
    b[8..16].copy_from_slice(&(segno * SEG as u64).to_le_bytes());
    b[24..32].copy_from_slice(&sysid.to_le_bytes());
    b[32..36].copy_from_slice(&(SEG as u32).to_le_bytes());
    b[36..40].copy_from_slice(&8192u32.to_le_bytes());
    b
}

/// The files `wal list` names, sorted.
pub fn archived(home: &Path, repo: &Path) -> Vec<String> {
    let o = cli(home)
        .arg("-r")
        .arg(repo)
        .args(["--json", "wal", "list"])
        .output()
        .unwrap();
    let mut v: Vec<String> = json(&o)
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["file"].as_str().unwrap().to_string())
        .collect();
    v.sort();
    v
}
