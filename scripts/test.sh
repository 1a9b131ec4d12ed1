#!/usr/bin/env bash
# The whole test suite: formatting, lints, unit, property, CLI, PostgreSQL, MariaDB and S3 tests.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo fmt --check
cargo clippy --locked --all-targets -- -D warnings
cargo test --locked --all-targets
