//! A chunk's resemblance sketch as stored in index segments (repo-format §7.1): the value
//! only; `delta` computes it.

/// Most super-features one sketch holds (the last piece then runs to the chunk's end).
pub const MAX_SUPER_FEATURES: usize = 128;

/// A chunk's resemblance sketch: one super-feature per content-defined piece. A chunk that
/// shares a super-feature with a stored chunk very likely shares that piece's bytes, nearly
/// unchanged, with it; a chunk whose boundaries moved (split, merged, shifted) still shares
/// the pieces it holds.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Sketch(pub Vec<u64>);
