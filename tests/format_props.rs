//! Property tests of the binary codecs: arbitrary bytes never panic a decoder, and every
//! encodable value round-trips byte for byte.

use dbbackup::crypto::MasterKey;
use dbbackup::format::index::{IndexSegment, PackBlobs};
use dbbackup::format::pack::{decode_header, encode_header, header_len_from_trailer, BlobEntry};
use dbbackup::format::RepoObject;
use dbbackup::format::{open_object, BlobKind, Encoding, Id, ObjectKind};
use proptest::prelude::*;

fn entry() -> impl Strategy<Value = BlobEntry> {
    (
        any::<[u8; 32]>(),
        any::<bool>(),
        0u8..3,
        any::<u32>(),
        any::<u32>(),
        any::<u32>(),
        prop::collection::vec(any::<[u8; 32]>(), 1..=4),
    )
        .prop_map(|(id, list, enc, offset, length, raw_length, mut bases)| {
            // Only data chunks are delta-encoded, against 1 to 4 distinct other chunks.
            bases.sort();
            bases.dedup();
            let delta = enc == 2 && !list && !bases.contains(&id);
            BlobEntry {
                id: Id(id),
                kind: if list { BlobKind::ContentList } else { BlobKind::Data },
                encoding: match enc {
                    0 => Encoding::Raw,
                    _ if delta => Encoding::ZstdDelta,
                    _ => Encoding::Zstd,
                },
                offset,
                length,
                raw_length,
                bases: if delta {
                    bases.into_iter().map(Id).collect()
                } else {
                    vec![]
                },
            }
        })
}

proptest! {
    #[test]
    fn index_segments_round_trip(
        sup in prop::collection::vec(any::<[u8; 32]>(), 0..4),
        packs in prop::collection::vec((any::<[u8; 32]>(), prop::collection::vec(entry(), 0..20)), 0..6),
        sketches in prop::collection::vec((any::<[u8; 32]>(), prop::collection::vec(any::<u64>(), 1..40)), 0..5),
    ) {
        let seg = IndexSegment {
            supersedes: sup.into_iter().map(Id).collect(),
            packs: packs.into_iter().map(|(p, blobs)| PackBlobs { pack: Id(p), blobs }).collect(),
            sketches: sketches.into_iter().map(|(i, s)| (Id(i), dbbackup::delta::Sketch(s))).collect(),
        };
        let b = seg.encode().unwrap();
        let back = IndexSegment::decode("object", &b).unwrap();
        prop_assert_eq!(&back, &seg);
        prop_assert_eq!(back.encode().unwrap(), b.clone());
        // Every truncation is an error, never a panic.
        for cut in [0, 1, 4, b.len() / 2, b.len().saturating_sub(1)] {
            if cut < b.len() {
                prop_assert!(IndexSegment::decode("object", &b[..cut]).is_err());
            }
        }
    }

    #[test]
    fn pack_headers_round_trip(entries in prop::collection::vec(entry(), 0..40)) {
        let b = encode_header(&entries);
        prop_assert_eq!(decode_header(&b).unwrap(), entries);
    }

    #[test]
    fn decoders_never_panic_on_garbage(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        let _ = IndexSegment::decode("object", &bytes);
        let _ = decode_header(&bytes);
        let _ = header_len_from_trailer(&bytes, bytes.len() as u64);
        let _ = dbbackup::format::config::Config::decode(&bytes);
        let _ = dbbackup::format::snapshot::Manifest::decode("x", &bytes);
        let keys = MasterKey::from_bytes([7; 32]).derive();
        let name = Id::of_stored(&bytes).to_hex();
        prop_assert!(open_object(&keys, ObjectKind::Index, &name, &bytes).is_err());
    }
}
