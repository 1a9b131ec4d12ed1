#!/usr/bin/env bash
# The whole test suite: formatting, lints, unit, property, CLI, PostgreSQL, MariaDB and storage
# backend tests (S3, Azure Blob, GCS, SFTP, WebDAV on servers the tests start on loopback).
set -euo pipefail
cd "$(dirname "$0")/.."
# Free disk, for reading a failure (the suite needs a few GiB beside target/).
df -h "${TMPDIR:-/tmp}" . | sed 's/^/disk: /'
scripts/setup.sh
cargo fmt --check
cargo clippy --locked --all-targets -- -D warnings
cargo test --locked --all-targets
