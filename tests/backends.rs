//! Every remote backend but S3 and SFTP (tests/s3.rs, tests/sftp.rs) against a real server
//! on a loopback port, through the same cycle (`common::servers::repository_cycle`): Azure
//! Blob on Azurite, GCS on gcp-storage-emulator, WebDAV on wsgidav with basic
//! authentication. Backblaze B2 has no emulator; docs/usage.md says so.

mod common;

use common::servers::{self, repository_cycle};

#[test]
fn azure_blob_cycle() {
    let s = servers::azurite("backups");
    let home = tempfile::tempdir().unwrap();
    let loc = format!("azblob://backups/prod/db?endpoint={}", servers::azurite_endpoint(&s));
    repository_cycle(
        home.path(),
        &loc,
        &[
            ("AZURE_STORAGE_ACCOUNT", servers::AZURITE_ACCOUNT),
            ("AZURE_STORAGE_KEY", servers::AZURITE_KEY),
        ],
    );
}

#[test]
fn gcs_cycle() {
    let s = servers::gcs("backups");
    let home = tempfile::tempdir().unwrap();
    // An emulator takes no credentials: skip_signature sends requests unsigned.
    let loc = format!(
        "gcs://backups/prod/db?endpoint=http://127.0.0.1:{}&skip_signature=true",
        s.port
    );
    repository_cycle(home.path(), &loc, &[]);
}

#[test]
fn webdav_cycle() {
    let s = servers::webdav("backup", "s3cret-dav");
    let home = tempfile::tempdir().unwrap();
    let loc = format!("webdav://127.0.0.1:{}/prod/db", s.port);
    repository_cycle(
        home.path(),
        &loc,
        &[
            ("DBBACKUP_WEBDAV_USERNAME", "backup"),
            ("DBBACKUP_WEBDAV_PASSWORD", "s3cret-dav"),
        ],
    );
    // Without the credentials the server refuses: 77, nothing written.
    let o = common::cli(home.path())
        .args(["-r", &loc, "snapshots"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(77), "{}", common::stderr(&o));
}
