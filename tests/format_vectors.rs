//! The test vectors in repo-format/vectors/v1.json: every object is decoded, checked, and
//! re-encoded byte for byte (sealed bytes are reproduced from the recorded nonces).
//! Regenerate (only when the spec changes): `cargo test --test format_vectors -- --ignored`.

use dbbackup::crypto::{self, KdfParams, MasterKey, NONCE_LEN};
use dbbackup::format::check::{CheckRecord, ReadDataClass};
use dbbackup::format::config::{ChunkerParams, Config};
use dbbackup::format::index::{IndexSegment, PackBlobs};
use dbbackup::format::keyfile::{wrap_aad, Kdf, KeyFile};
use dbbackup::format::lock::Lock;
use dbbackup::format::pack::{decode_header, encode_header, BlobEntry, PACK_MAGIC};
use dbbackup::format::pending::DeletionPlan;
use dbbackup::format::snapshot::{DatabaseInfo, DatabaseSource, Entry, Manifest, Source, Summary};
use dbbackup::format::wal::{ArchiveInfo, WalEntry};
use dbbackup::format::RepoObject;
use dbbackup::format::{blob_aad, open_object, BlobKind, Encoding, Id, ObjectKind};
use dbbackup::repo::blob::open_blob;
use dbbackup::repo::index::BlobLocation;
use dbbackup::repo::pack_reader::verify_pack;
use serde_json::{json, Value};

const PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/repo-format/vectors/v1.json");

fn h(v: &Value) -> Vec<u8> {
    hex::decode(v.as_str().unwrap()).unwrap()
}
fn n24(v: &Value) -> [u8; NONCE_LEN] {
    h(v).try_into().unwrap()
}
fn seal(keys: &crypto::Keys, nonce: &[u8; NONCE_LEN], aad: &[u8], pt: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    keys.seal_with_nonce(&mut out, nonce, aad, pt).unwrap();
    out
}

/// Build every vector from fixed inputs.
fn build() -> Value {
    let master_bytes: [u8; 32] = std::array::from_fn(|i| i as u8);
    let master = MasterKey::from_bytes(master_bytes);
    let keys = master.derive();
    let repo_id = Id([0x11; 32]);
    let config = Config {
        version: 1,
        id: repo_id,
        chunker: ChunkerParams::default(),
        compression: serde_json::from_value(json!({"algorithm": "zstd", "level": 3})).unwrap(),
        pack_size: 16 << 20,
    };
    // Key file with fixed salt and nonce.
    let kdf = KdfParams {
        memory_kib: 256,
        iterations: 1,
        parallelism: 1,
    };
    let salt = [0x22u8; 16];
    let key_nonce = [0x33u8; NONCE_LEN];
    let kek = crypto::password_key(b"password", &salt, kdf).unwrap();
    let mut wrapped = Vec::new();
    crypto::seal_with_nonce(
        &crypto::cipher(&kek),
        &mut wrapped,
        &key_nonce,
        &wrap_aad(&repo_id),
        &master_bytes,
    )
    .unwrap();
    let kf = KeyFile {
        version: 1,
        created: "2026-01-01T00:00:00Z".into(),
        hostname: "db1".into(),
        username: "postgres".into(),
        kdf: Kdf {
            algorithm: "argon2id".into(),
            params: kdf,
            salt: salt.to_vec(),
        },
        wrapped_key: wrapped,
    };
    // One data blob, zstd-encoded.
    let plain = b"COPY public.t (id, name) FROM stdin;\n1\talice\n2\tbob\n3\tcarol\n\\.\n".repeat(4);
    let cid = keys.chunk_id(&plain);
    let body = zstd::bulk::compress(&plain, 3).unwrap();
    let blob_nonce = [0x44u8; NONCE_LEN];
    let sealed_blob = seal(
        &keys,
        &blob_nonce,
        &blob_aad(BlobKind::Data, Encoding::Zstd, &cid),
        &body,
    );
    // A content list naming it, raw-encoded.
    let mut list = cid.0.to_vec();
    list.extend_from_slice(&(plain.len() as u32).to_le_bytes());
    let lid = keys.chunk_id(&list);
    let list_nonce = [0x45u8; NONCE_LEN];
    let sealed_list = seal(
        &keys,
        &list_nonce,
        &blob_aad(BlobKind::ContentList, Encoding::Raw, &lid),
        &list,
    );
    // The pack.
    let entries = vec![
        BlobEntry {
            id: cid,
            kind: BlobKind::Data,
            encoding: Encoding::Zstd,
            offset: 0,
            length: sealed_blob.len() as u32,
            raw_length: plain.len() as u32,
            bases: vec![],
        },
        BlobEntry {
            id: lid,
            kind: BlobKind::ContentList,
            encoding: Encoding::Raw,
            offset: sealed_blob.len() as u32,
            length: sealed_list.len() as u32,
            raw_length: list.len() as u32,
            bases: vec![],
        },
    ];
    let header_nonce = [0x55u8; NONCE_LEN];
    let header = seal(
        &keys,
        &header_nonce,
        ObjectKind::PackHeader.aad(),
        &encode_header(&entries),
    );
    let mut pack = [sealed_blob.clone(), sealed_list.clone(), header.clone()].concat();
    pack.extend_from_slice(&(header.len() as u32).to_le_bytes());
    pack.extend_from_slice(PACK_MAGIC);
    let pack_id = Id::of_stored(&pack);
    // Index segment.
    let seg = IndexSegment {
        supersedes: vec![],
        packs: vec![PackBlobs {
            pack: pack_id,
            blobs: entries,
        }],
        sketches: vec![],
    };
    let seg_payload = seg.encode().unwrap();
    let seg_z = zstd::bulk::compress(&seg_payload, 3).unwrap();
    let seg_nonce = [0x66u8; NONCE_LEN];
    let seg_stored = seal(&keys, &seg_nonce, ObjectKind::Index.aad(), &seg_z);
    // Manifest.
    let m = Manifest {
        version: 1,
        time: "2026-01-01T03:00:00Z".parse().unwrap(),
        hostname: "db1".into(),
        username: "postgres".into(),
        name: "shop".into(),
        tags: vec!["nightly".into()],
        source: Source::Database(Box::new(DatabaseSource {
            engine: "postgresql".into(),
            server_version: "15.18".into(),
            host: Some("db1.internal".into()),
            port: Some(5432),
            user: Some("backup".into()),
            dump_tool: "pg_dump (PostgreSQL) 15.18".into(),
            format: "custom".into(),
            all: false,
            databases: vec![DatabaseInfo {
                name: "shop".into(),
                size: 8_601_123,
                path: "shop".into(),
                encoding: Some("UTF8".into()),
                collate: Some("C.UTF-8".into()),
                ctype: Some("C.UTF-8".into()),
                settings: vec!["search_path=app, public".into()],
            }],
            globals: None,
            failed: vec![],
            warnings: vec![],
        })),
        tool_version: "0.1.0".into(),
        entries: vec![Entry {
            path: "shop".into(),
            size: plain.len() as u64,
            sha256: hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&plain)),
            chunks: 1,
            content: vec![lid],
        }],
        summary: Summary {
            bytes_read: plain.len() as u64,
            bytes_new: plain.len() as u64,
            bytes_stored: pack.len() as u64,
            chunks_total: 1,
            chunks_new: 1,
            packs_written: 1,
            duration_ms: 12,
            ..Default::default()
        },
    };
    let m_payload = m.encode().unwrap();
    let m_z = zstd::bulk::compress(&m_payload, 3).unwrap();
    let m_nonce = [0x77u8; NONCE_LEN];
    let m_stored = seal(&keys, &m_nonce, ObjectKind::Snapshot.aad(), &m_z);
    // Lock.
    let lock = Lock {
        version: 1,
        hostname: "db1".into(),
        pid: 4242,
        username: "postgres".into(),
        operation: "snapshot".into(),
        exclusive: false,
        time: "2026-01-01T03:05:00Z".parse().unwrap(),
        started: Some("2026-01-01T03:00:00Z".parse().unwrap()),
    };
    let l_payload = serde_json::to_vec(&lock).unwrap();
    let l_z = zstd::bulk::compress(&l_payload, 3).unwrap();
    let l_nonce = [0x88u8; NONCE_LEN];
    let l_stored = seal(&keys, &l_nonce, ObjectKind::Lock.aad(), &l_z);

    // Deletion plan condemning the pack.
    let plan = DeletionPlan {
        created: "2026-01-02T04:00:00.250Z".parse().unwrap(),
        packs: seg.packs.clone(),
    };
    let d_payload = plan.encode().unwrap();
    let d_z = zstd::bulk::compress(&d_payload, 3).unwrap();
    let d_nonce = [0x99u8; NONCE_LEN];
    let d_stored = seal(&keys, &d_nonce, ObjectKind::Pending.aad(), &d_z);

    // WAL catalog entry and archive record.
    let mut wal = WalEntry {
        version: 1,
        file: "000000010000000000000002".into(),
        system_id: "7301234567890123456".into(),
        timeline: 1,
        time: "2026-01-01T03:10:00Z".parse().unwrap(),
        hostname: "db1".into(),
        data: m.entries[0].clone(),
        bytes_new: plain.len() as u64,
        bytes_stored: pack.len() as u64,
    };
    wal.data.path = wal.file.clone();
    let w_payload = wal.encode().unwrap();
    let w_z = zstd::bulk::compress(&w_payload, 3).unwrap();
    let w_nonce = [0xaau8; NONCE_LEN];
    let w_stored = seal(&keys, &w_nonce, ObjectKind::Wal.aad(), &w_z);
    let archive = ArchiveInfo {
        version: 1,
        system_id: "7301234567890123456".into(),
        wal_segment_size: 16 << 20,
        created: "2026-01-01T03:10:00Z".parse().unwrap(),
        hostname: "db1".into(),
        repository: None,
    };
    let a_payload = archive.encode().unwrap();
    let a_z = zstd::bulk::compress(&a_payload, 3).unwrap();
    let a_nonce = [0xbbu8; NONCE_LEN];
    let a_stored = seal(&keys, &a_nonce, ObjectKind::WalArchive.aad(), &a_z);
    // The same record as written since it names its repository.
    let bound = ArchiveInfo {
        repository: Some(repo_id),
        ..archive
    };
    let b_payload = bound.encode().unwrap();
    let b_z = zstd::bulk::compress(&b_payload, 3).unwrap();
    let b_nonce = [0xbcu8; NONCE_LEN];
    let b_stored = seal(&keys, &b_nonce, ObjectKind::WalArchive.aad(), &b_z);

    let check = CheckRecord {
        version: 1,
        repository: repo_id,
        time: "2026-01-02T04:00:00Z".parse().unwrap(),
        hostname: "db1".into(),
        tool_version: "0.1.0".into(),
        read_data: ReadDataClass::Subset,
        subset: Some("1/5".into()),
        snapshots: 1,
        packs: 1,
        packs_read: 1,
        bytes_read: pack.len() as u64,
        problems: 0,
        warnings: 0,
    };
    let c_payload = check.encode().unwrap();
    let c_z = zstd::bulk::compress(&c_payload, 3).unwrap();
    let c_nonce = [0xccu8; NONCE_LEN];
    let c_stored = seal(&keys, &c_nonce, ObjectKind::Check.aad(), &c_z);

    let kf_bytes = kf.encode().unwrap();
    json!({
        "comment": "dbbackup repository format v1 test vectors; see repo-format/README.md. Hex unless noted.",
        "master_key": hex::encode(master_bytes),
        "subkeys": {
            "chunk_id_key": hex::encode(keys.chunk_id_key()),
            "chunker_seed": keys.chunker_seed.to_string(),
            "wal_name_hash_of_000000010000000000000002": keys.wal_name_hash("000000010000000000000002"),
        },
        "config": { "stored_text": String::from_utf8(config.encode().unwrap()).unwrap() },
        "key_file": {
            "password_text": "password",
            "name": Id::of_stored(&kf_bytes),
            "stored_text": String::from_utf8(kf_bytes).unwrap(),
            "kek": hex::encode(kek),
            "nonce": hex::encode(key_nonce),
        },
        "blob": {
            "plaintext": hex::encode(&plain), "chunk_id": cid, "encoding": 1,
            "zstd_body": hex::encode(&body), "nonce": hex::encode(blob_nonce), "sealed": hex::encode(&sealed_blob),
        },
        "content_list": { "plaintext": hex::encode(&list), "chunk_id": lid, "nonce": hex::encode(list_nonce), "sealed": hex::encode(&sealed_list) },
        "pack": { "name": pack_id, "stored": hex::encode(&pack), "header_nonce": hex::encode(header_nonce) },
        "index_segment": { "name": Id::of_stored(&seg_stored), "payload": hex::encode(&seg_payload), "zstd": hex::encode(&seg_z), "nonce": hex::encode(seg_nonce), "stored": hex::encode(&seg_stored) },
        "snapshot": { "name": Id::of_stored(&m_stored), "payload_text": String::from_utf8(m_payload).unwrap(), "zstd": hex::encode(&m_z), "nonce": hex::encode(m_nonce), "stored": hex::encode(&m_stored) },
        "lock": { "name": Id::of_stored(&l_stored), "payload_text": String::from_utf8(l_payload).unwrap(), "zstd": hex::encode(&l_z), "nonce": hex::encode(l_nonce), "stored": hex::encode(&l_stored) },
        "deletion_plan": { "name": Id::of_stored(&d_stored), "payload": hex::encode(&d_payload), "zstd": hex::encode(&d_z), "nonce": hex::encode(d_nonce), "stored": hex::encode(&d_stored) },
        "wal_entry": { "folder": keys.wal_name_hash(&wal.file), "name": Id::of_stored(&w_stored), "payload_text": String::from_utf8(w_payload).unwrap(), "zstd": hex::encode(&w_z), "nonce": hex::encode(w_nonce), "stored": hex::encode(&w_stored) },
        "wal_archive": { "name": Id::of_stored(&a_stored), "payload_text": String::from_utf8(a_payload).unwrap(), "zstd": hex::encode(&a_z), "nonce": hex::encode(a_nonce), "stored": hex::encode(&a_stored) },
        "wal_archive_bound": { "name": Id::of_stored(&b_stored), "payload_text": String::from_utf8(b_payload).unwrap(), "zstd": hex::encode(&b_z), "nonce": hex::encode(b_nonce), "stored": hex::encode(&b_stored) },
        "check_record": { "name": Id::of_stored(&c_stored), "payload_text": String::from_utf8(c_payload).unwrap(), "zstd": hex::encode(&c_z), "nonce": hex::encode(c_nonce), "stored": hex::encode(&c_stored) },
    })
}

#[test]
#[ignore = "regenerates the vectors; run only when the format changes"]
fn regenerate() {
    std::fs::write(PATH, serde_json::to_string_pretty(&build()).unwrap() + "\n").unwrap();
}

#[test]
fn vectors_decode_and_reencode_byte_for_byte() {
    let v: Value = serde_json::from_str(&std::fs::read_to_string(PATH).unwrap()).unwrap();
    let master: [u8; 32] = h(&v["master_key"]).try_into().unwrap();
    let keys = MasterKey::from_bytes(master).derive();
    assert_eq!(
        hex::encode(keys.chunk_id_key()),
        v["subkeys"]["chunk_id_key"].as_str().unwrap()
    );
    assert_eq!(
        keys.chunker_seed.to_string(),
        v["subkeys"]["chunker_seed"].as_str().unwrap()
    );

    // config
    let ctext = v["config"]["stored_text"].as_str().unwrap();
    let config = Config::decode(ctext.as_bytes()).unwrap();
    assert_eq!(config.encode().unwrap(), ctext.as_bytes());

    // key file: name is its SHA-256, password unwraps the master key, re-wrap is identical.
    let kv = &v["key_file"];
    let ktext = kv["stored_text"].as_str().unwrap();
    let kf = KeyFile::decode(kv["name"].as_str().unwrap(), ktext.as_bytes()).unwrap();
    assert_eq!(kf.encode().unwrap(), ktext.as_bytes());
    let got = kf
        .unwrap(b"password", &config.id)
        .unwrap()
        .expect("password opens the key");
    assert_eq!(got.derive().chunk_id_key(), keys.chunk_id_key());
    assert!(kf.unwrap(b"Password", &config.id).unwrap().is_none());
    assert!(
        kf.unwrap(b"password", &Id([0; 32])).unwrap().is_none(),
        "key is bound to the repository id"
    );
    let kek: [u8; 32] = h(&kv["kek"]).try_into().unwrap();
    assert_eq!(
        crypto::password_key(b"password", &kf.kdf.salt, kf.kdf.params).unwrap(),
        kek
    );
    let mut rewrapped = Vec::new();
    crypto::seal_with_nonce(
        &crypto::cipher(&kek),
        &mut rewrapped,
        &n24(&kv["nonce"]),
        &wrap_aad(&config.id),
        &master,
    )
    .unwrap();
    assert_eq!(rewrapped, kf.wrapped_key);

    // data blob and content list
    let pack = h(&v["pack"]["stored"]);
    let pack_id: Id = v["pack"]["name"].as_str().unwrap().parse().unwrap();
    assert_eq!(Id::of_stored(&pack), pack_id);
    let (blobs, _) = verify_pack(&keys, &pack_id, &pack).unwrap();
    assert_eq!(blobs, 2);
    let hl = u32::from_le_bytes(pack[pack.len() - 8..pack.len() - 4].try_into().unwrap()) as usize;
    let header_sealed = &pack[pack.len() - 8 - hl..pack.len() - 8];
    let header_plain = keys.open(ObjectKind::PackHeader.aad(), header_sealed).unwrap();
    let entries = decode_header(&header_plain).unwrap();
    assert_eq!(encode_header(&entries), header_plain);
    assert_eq!(
        seal(
            &keys,
            &n24(&v["pack"]["header_nonce"]),
            ObjectKind::PackHeader.aad(),
            &header_plain
        ),
        header_sealed
    );
    for (e, name) in entries.iter().zip(["blob", "content_list"]) {
        let bv = &v[name];
        let sealed = &pack[e.offset as usize..(e.offset + e.length) as usize];
        assert_eq!(hex::encode(sealed), bv["sealed"].as_str().unwrap());
        let loc = BlobLocation::of(&pack_id, e);
        let plain = open_blob(&keys, &e.id, &loc, sealed).unwrap();
        assert_eq!(hex::encode(&plain), bv["plaintext"].as_str().unwrap());
        assert_eq!(keys.chunk_id(&plain).to_hex(), bv["chunk_id"].as_str().unwrap());
        let body = keys.open(&blob_aad(e.kind, e.encoding, &e.id), sealed).unwrap();
        assert_eq!(
            seal(&keys, &n24(&bv["nonce"]), &blob_aad(e.kind, e.encoding, &e.id), &body),
            sealed
        );
        // The same bytes under another kind, encoding or id do not authenticate.
        assert!(keys
            .open(&blob_aad(BlobKind::ContentList, Encoding::Zstd, &Id([9; 32])), sealed)
            .is_none());
    }

    // index segment, snapshot manifest, lock
    for (name, kind) in [
        ("index_segment", ObjectKind::Index),
        ("snapshot", ObjectKind::Snapshot),
        ("lock", ObjectKind::Lock),
        ("deletion_plan", ObjectKind::Pending),
        ("wal_entry", ObjectKind::Wal),
        ("wal_archive", ObjectKind::WalArchive),
        ("wal_archive_bound", ObjectKind::WalArchive),
        ("check_record", ObjectKind::Check),
    ] {
        let ov = &v[name];
        let stored = h(&ov["stored"]);
        let oname = ov["name"].as_str().unwrap();
        let payload = open_object(&keys, kind, oname, &stored).unwrap();
        let want = match ov.get("payload") {
            Some(p) => h(p),
            None => ov["payload_text"].as_str().unwrap().as_bytes().to_vec(),
        };
        assert_eq!(payload, want);
        let reencoded = match kind {
            ObjectKind::Index => IndexSegment::decode("object", &payload).unwrap().encode().unwrap(),
            ObjectKind::Snapshot => Manifest::decode(oname, &payload).unwrap().encode().unwrap(),
            ObjectKind::Pending => DeletionPlan::decode("object", &payload).unwrap().encode().unwrap(),
            ObjectKind::Wal => {
                let e = WalEntry::decode(oname, &payload).unwrap();
                assert_eq!(keys.wal_name_hash(&e.file).to_hex(), ov["folder"].as_str().unwrap());
                e.encode().unwrap()
            }
            ObjectKind::WalArchive => ArchiveInfo::decode(oname, &payload).unwrap().encode().unwrap(),
            ObjectKind::Check => CheckRecord::decode(oname, &payload).unwrap().encode().unwrap(),
            _ => serde_json::to_vec(&serde_json::from_slice::<Lock>(&payload).unwrap()).unwrap(),
        };
        assert_eq!(reencoded, payload, "{name} re-encodes byte for byte");
        let z = keys.open(kind.aad(), &stored).unwrap();
        assert_eq!(z, h(&ov["zstd"]));
        assert_eq!(seal(&keys, &n24(&ov["nonce"]), kind.aad(), &z), stored);
        // Swapping kinds fails authentication.
        let other = if kind == ObjectKind::Index {
            ObjectKind::Snapshot
        } else {
            ObjectKind::Index
        };
        assert!(open_object(&keys, other, oname, &stored).is_err());
    }
    // The vectors are what this build writes.
    assert_eq!(
        build(),
        v,
        "vectors are stale: the format changed without updating repo-format/"
    );
}

const PATH_V2: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/repo-format/vectors/v2.json");

/// What format version 2 adds: a delta blob against two bases (one zstd, one raw), the pack
/// holding all three (a 111-byte delta entry), a version 2 index segment with sketches, and
/// sketches on their own.
fn build_v2() -> Value {
    let keys = MasterKey::from_bytes(std::array::from_fn(|i| i as u8)).derive();
    let base = b"COPY public.t (id, name) FROM stdin;\n1\talice\n2\tbob\n3\tcarol\n\\.\n".repeat(4);
    let base2 = b"COPY public.u (k, v) FROM stdin;\nx\t42\ny\t7\n\\.\n".to_vec();
    let mut new = base.clone();
    new[48..51].copy_from_slice(b"bea");
    new.extend_from_slice(b"4\tdave\n");
    new.extend_from_slice(&base2[..40]);
    let (bid, b2id, nid) = (keys.chunk_id(&base), keys.chunk_id(&base2), keys.chunk_id(&new));
    let base_body = zstd::bulk::compress(&base, 3).unwrap();
    let base_sealed = seal(
        &keys,
        &[0x44; NONCE_LEN],
        &blob_aad(BlobKind::Data, Encoding::Zstd, &bid),
        &base_body,
    );
    let base2_sealed = seal(
        &keys,
        &[0x45; NONCE_LEN],
        &blob_aad(BlobKind::Data, Encoding::Raw, &b2id),
        &base2,
    );
    let frame = dbbackup::delta::encode(&[base.as_slice(), &base2].concat(), &new, 3).unwrap();
    let body = [&[2u8][..], &bid.0, &b2id.0, &frame].concat();
    let delta_nonce = [0x46u8; NONCE_LEN];
    let delta_sealed = seal(
        &keys,
        &delta_nonce,
        &blob_aad(BlobKind::Data, Encoding::ZstdDelta, &nid),
        &body,
    );
    let plain_entry = |id, encoding, offset, length, raw_length| BlobEntry {
        id,
        kind: BlobKind::Data,
        encoding,
        offset,
        length,
        raw_length,
        bases: vec![],
    };
    let entries = vec![
        plain_entry(bid, Encoding::Zstd, 0, base_sealed.len() as u32, base.len() as u32),
        plain_entry(
            b2id,
            Encoding::Raw,
            base_sealed.len() as u32,
            base2_sealed.len() as u32,
            base2.len() as u32,
        ),
        BlobEntry {
            id: nid,
            kind: BlobKind::Data,
            encoding: Encoding::ZstdDelta,
            offset: (base_sealed.len() + base2_sealed.len()) as u32,
            length: delta_sealed.len() as u32,
            raw_length: new.len() as u32,
            bases: vec![bid, b2id],
        },
    ];
    let header_nonce = [0x56u8; NONCE_LEN];
    let header = seal(
        &keys,
        &header_nonce,
        ObjectKind::PackHeader.aad(),
        &encode_header(&entries),
    );
    let mut pack = [base_sealed, base2_sealed, delta_sealed.clone(), header.clone()].concat();
    pack.extend_from_slice(&(header.len() as u32).to_le_bytes());
    pack.extend_from_slice(PACK_MAGIC);
    let pack_id = Id::of_stored(&pack);
    let seg = IndexSegment {
        supersedes: vec![],
        packs: vec![PackBlobs {
            pack: pack_id,
            blobs: entries,
        }],
        sketches: vec![
            (bid, dbbackup::delta::sketch(&base, 17)),
            (nid, dbbackup::delta::sketch(&new, 17)),
        ],
    };
    let seg_payload = seg.encode().unwrap();
    let seg_z = zstd::bulk::compress(&seg_payload, 3).unwrap();
    let seg_nonce = [0x67u8; NONCE_LEN];
    let seg_stored = seal(&keys, &seg_nonce, ObjectKind::Index.aad(), &seg_z);
    let text = sketch_text(65536);
    let sk = |s: dbbackup::delta::Sketch| s.0.iter().map(|f| f.to_string()).collect::<Vec<_>>();
    json!({
        "comment": "dbbackup repository format v2 test vectors (what v2 adds to v1.json; same master key). Hex unless noted. Sketches use piece bits 17 (1 MiB chunks) unless named otherwise. text_N is byte i = \"abcdefghij,;\\n 0123456789\"[((i * 2654435761 mod 2^32) >> 7) mod 24] for i < N.",
        "delta": {
            "base_plaintext": hex::encode(&base), "base_chunk_id": bid,
            "base2_plaintext": hex::encode(&base2), "base2_chunk_id": b2id,
            "plaintext": hex::encode(&new), "chunk_id": nid,
            "frame": hex::encode(&frame), "nonce": hex::encode(delta_nonce), "sealed": hex::encode(&delta_sealed),
        },
        "pack": { "name": pack_id, "stored": hex::encode(&pack), "header_nonce": hex::encode(header_nonce) },
        "index_segment": { "name": Id::of_stored(&seg_stored), "payload": hex::encode(&seg_payload), "zstd": hex::encode(&seg_z), "nonce": hex::encode(seg_nonce), "stored": hex::encode(&seg_stored) },
        "sketches": {
            "text_64KiB": hex::encode(&text), "text_64KiB_super_features_decimal": sk(dbbackup::delta::sketch(&text, 17)),
            "text_64KiB_piece_bits_13_super_features_decimal": sk(dbbackup::delta::sketch(&text, 13)),
            "text_1MiB_super_features_decimal": sk(dbbackup::delta::sketch(&sketch_text(1 << 20), 17)),
            "empty_super_features_decimal": sk(dbbackup::delta::sketch(&[], 17)),
        },
    })
}

/// The vectors' sketch input of `n` bytes (its formula is in v2.json's comment).
fn sketch_text(n: u32) -> Vec<u8> {
    (0..n)
        .map(|i| b"abcdefghij,;\n 0123456789"[((i.wrapping_mul(2_654_435_761) >> 7) % 24) as usize])
        .collect()
}

#[test]
#[ignore = "regenerates the vectors; run only when the format changes"]
fn regenerate_v2() {
    std::fs::write(PATH_V2, serde_json::to_string_pretty(&build_v2()).unwrap() + "\n").unwrap();
}

#[test]
fn v2_vectors_decode_rebuild_and_reencode_byte_for_byte() {
    let v: Value = serde_json::from_str(&std::fs::read_to_string(PATH_V2).unwrap()).unwrap();
    let keys = MasterKey::from_bytes(std::array::from_fn(|i| i as u8)).derive();
    let d = &v["delta"];
    let base = h(&d["base_plaintext"]);
    let want = h(&d["plaintext"]);
    let base2 = h(&d["base2_plaintext"]);
    let reference = [base.as_slice(), &base2].concat();
    // The pack: all blobs authenticate; the delta entry lists its two bases (111 bytes).
    let pack = h(&v["pack"]["stored"]);
    let pack_id: Id = v["pack"]["name"].as_str().unwrap().parse().unwrap();
    let (blobs, _) = verify_pack(&keys, &pack_id, &pack).unwrap();
    assert_eq!(blobs, 3);
    let hl = u32::from_le_bytes(pack[pack.len() - 8..pack.len() - 4].try_into().unwrap()) as usize;
    let header_plain = keys
        .open(ObjectKind::PackHeader.aad(), &pack[pack.len() - 8 - hl..pack.len() - 8])
        .unwrap();
    assert_eq!(header_plain.len(), 4 + 46 + 46 + 111);
    let entries = decode_header(&header_plain).unwrap();
    assert_eq!(encode_header(&entries), header_plain);
    let e = &entries[2];
    assert_eq!(
        (e.encoding, e.bases.clone()),
        (Encoding::ZstdDelta, vec![entries[0].id, entries[1].id])
    );
    // The delta: authenticated, its base id checked, rebuilt from the base and verified.
    let sealed = &pack[e.offset as usize..(e.offset + e.length) as usize];
    assert_eq!(hex::encode(sealed), d["sealed"].as_str().unwrap());
    let loc = BlobLocation::of(&pack_id, e);
    let frame = dbbackup::repo::blob::open_delta(&keys, &e.id, &loc, sealed.to_vec()).unwrap();
    assert_eq!(hex::encode(&frame), d["frame"].as_str().unwrap());
    assert_eq!(
        dbbackup::repo::blob::apply_delta(&keys, &e.id, &loc, &reference, &frame).unwrap(),
        want
    );
    assert_eq!(e.id.to_hex(), d["chunk_id"].as_str().unwrap());
    let body = keys
        .open(&blob_aad(BlobKind::Data, Encoding::ZstdDelta, &e.id), sealed)
        .unwrap();
    assert_eq!(body[0], 2);
    assert_eq!(&body[1..33], &entries[0].id.0);
    assert_eq!(&body[33..65], &entries[1].id.0);
    assert_eq!(
        seal(
            &keys,
            &n24(&d["nonce"]),
            &blob_aad(BlobKind::Data, Encoding::ZstdDelta, &e.id),
            &body
        ),
        sealed
    );
    // Other bases, or these in another order, do not rebuild it; an entry naming other bases
    // is refused; the delta is not a plain blob.
    let other: Vec<u8> = reference.iter().map(|b| b ^ 1).collect();
    assert!(dbbackup::repo::blob::apply_delta(&keys, &e.id, &loc, &other, &frame).is_err());
    let swapped = [base2.as_slice(), &base].concat();
    assert!(dbbackup::repo::blob::apply_delta(&keys, &e.id, &loc, &swapped, &frame).is_err());
    let mut wrong = loc.clone();
    wrong.bases.reverse();
    assert!(dbbackup::repo::blob::open_delta(&keys, &e.id, &wrong, sealed.to_vec()).is_err());
    wrong.bases.truncate(1);
    assert!(dbbackup::repo::blob::open_delta(&keys, &e.id, &wrong, sealed.to_vec()).is_err());
    assert!(open_blob(&keys, &e.id, &loc, sealed).is_err());
    // The index segment: version 2 with the sketches of both chunks.
    let ov = &v["index_segment"];
    let stored = h(&ov["stored"]);
    let payload = open_object(&keys, ObjectKind::Index, ov["name"].as_str().unwrap(), &stored).unwrap();
    assert_eq!(payload, h(&ov["payload"]));
    assert_eq!(payload[4], 2);
    let seg = IndexSegment::decode("object", &payload).unwrap();
    assert_eq!(seg.encode().unwrap(), payload);
    assert_eq!(seg.packs[0].blobs, entries);
    assert_eq!(seg.sketches[0], (entries[0].id, dbbackup::delta::sketch(&base, 17)));
    assert_eq!(seg.sketches[1], (entries[2].id, dbbackup::delta::sketch(&want, 17)));
    // Sketches of their own.
    let s = &v["sketches"];
    let dec = |x: &Value| -> Vec<u64> {
        x.as_array()
            .unwrap()
            .iter()
            .map(|f| f.as_str().unwrap().parse().unwrap())
            .collect()
    };
    assert_eq!(
        dbbackup::delta::sketch(&h(&s["text_64KiB"]), 17).0.to_vec(),
        dec(&s["text_64KiB_super_features_decimal"])
    );
    let small = dbbackup::delta::sketch(&h(&s["text_64KiB"]), 13).0;
    assert!(small.len() > 1, "pieces scale with the chunk size");
    assert_eq!(small, dec(&s["text_64KiB_piece_bits_13_super_features_decimal"]));
    let long = dbbackup::delta::sketch(&sketch_text(1 << 20), 17).0;
    assert!(long.len() > 1, "a 1 MiB text has several pieces");
    assert_eq!(long, dec(&s["text_1MiB_super_features_decimal"]));
    assert_eq!(
        dbbackup::delta::sketch(&[], 17).0.to_vec(),
        dec(&s["empty_super_features_decimal"])
    );
    assert_eq!(
        build_v2(),
        v,
        "v2 vectors are stale: the format changed without updating repo-format/"
    );
}
