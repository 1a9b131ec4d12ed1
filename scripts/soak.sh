#!/usr/bin/env bash
# Soak test of repository safety (tests/lifecycle.rs): seeded random sequences of snapshot,
# forget, prune (each --max-unused), SIGKILL of snapshot and prune at random storage writes,
# two snapshots and a prune at once, and a lost local cache; after every step every snapshot
# must restore byte for byte (shared and empty cache) and `check --read-data` must pass.
# Runs seeds SEED, SEED+1, ... (40 steps each) until SECONDS have passed; a failure prints
# its seed and step, the sequence that led to it, where the repository was kept, and the
# command that replays it.
#   scripts/soak.sh 1800 1000
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:?usage: scripts/soak.sh SECONDS SEED}
seed=${2:?usage: scripts/soak.sh SECONDS SEED}
cargo build --release --locked --quiet
DBBACKUP_SOAK_SECONDS="$secs" DBBACKUP_SOAK_SEED="$seed" \
    exec cargo test --release --locked --test lifecycle -- --ignored soak --nocapture
