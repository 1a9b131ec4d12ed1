#!/usr/bin/env bash
# Prune and check at scale: a repository of 50 snapshots and over 100k chunks (8 KiB average
# chunks, 1.6 GB of unique random data; consecutive snapshots share half their data), then
# wall time and peak RSS of `prune --keep-last 25`, of a prune with nothing to do, of `check`
# and of `check --read-data` — the last beside `sha256sum` of the same packs, measured in the
# same run, as the reference. With BASELINE_BIN=PATH (another build of dbbackup), the same
# operations run with it on an identical copy of the repository, and each figure is given as
# a ratio to it. Heavy: run on demand, not in CI.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked -q
BIN="$PWD/target/release/dbbackup"
WORK=$(mktemp -d /var/tmp/dbbackup-prune-bench.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
export DBBACKUP_REPOSITORY="$WORK/repo" DBBACKUP_CACHE_DIR="$WORK/cache" XDG_CONFIG_HOME="$WORK/config"
export DBBACKUP_PASSWORD=bench
PART=${PART_MB:-32}
"$BIN" init --chunk-avg 8192 >/dev/null

run() { # command; prints wall seconds and peak RSS KiB (its other stderr lines pass through)
    # A failed command prints "failed 0" (the baseline may be a build that damages repositories).
    local out; out=$( { /usr/bin/time -f "TIME %e %M" "$@" >/dev/null; } 2>&1 ) || { echo "$out" >&2; echo "failed: $*" >&2; echo "failed 0"; return 0; }
    echo "$out" | grep -v '^TIME' >&2 || true
    echo "$out" | grep '^TIME' | awk '{print $2, $3}'
}

echo "== building: 50 snapshots of 2 x ${PART} MB parts, snapshot i = part i + part i+1"
head -c $((PART << 20)) /dev/urandom > "$WORK/p0"
for i in $(seq 1 50); do
    head -c $((PART << 20)) /dev/urandom > "$WORK/p$i"
    cat "$WORK/p$((i - 1))" "$WORK/p$i" | "$BIN" snapshot --stdin --name bench -q >/dev/null
    rm -f "$WORK/p$((i - 1))"
done
rm -f "$WORK"/p*
"$BIN" stats
# Both builds start with an empty cache (their cache formats may differ).
rm -rf "$WORK/cache"
[ -n "${BASELINE_BIN:-}" ] && cp -a "$WORK/repo" "$WORK/repo-baseline"

measure() { # binary repo cache -> prints "TP RP TN RN TC RC TR RR"
    local bin=$1
    export DBBACKUP_REPOSITORY=$2 DBBACKUP_CACHE_DIR=$3
    read -r TP RP < <(run "$bin" prune --keep-last 25 --max-unused 5%)
    read -r TN RN < <(run "$bin" prune)
    read -r TC RC < <(run "$bin" check)
    sync; echo 3 > /proc/sys/vm/drop_caches 2>/dev/null || true
    read -r TR RR < <(run "$bin" check --read-data)
    echo "$TP $RP $TN $RN $TC $RC $TR $RR"
}

read -r TP RP TN RN TC RC TR RR < <(measure "$BIN" "$WORK/repo" "$WORK/cache")
"$BIN" --json prune -n | python3 -c 'import json,sys; p=json.load(sys.stdin)["prune"]; print("after prune:", p["snapshots"], "snapshots,", p["chunks_referenced"], "chunks,", p["packs"], "packs,", p["bytes"], "bytes")'
sync; echo 3 > /proc/sys/vm/drop_caches 2>/dev/null || true
read -r TS _ < <(run sh -c "find '$WORK/repo/data' -type f -print0 | xargs -0 -P 2 -n 64 sha256sum")
BYTES=$(du -sb "$WORK/repo/data" | cut -f1)
mbps() { python3 -c "print(f'{$1/$2/1e6:.0f}')"; }

printf '\n%-32s %10s %14s\n' "operation" "wall s" "peak RSS MiB"
printf '%-32s %10s %14s\n' "prune --keep-last 25 (50 snaps)" "$TP" "$((RP / 1024))"
printf '%-32s %10s %14s\n' "prune, nothing to do" "$TN" "$((RN / 1024))"
printf '%-32s %10s %14s\n' "check (structure)" "$TC" "$((RC / 1024))"
printf '%-32s %10s %14s   %s MB/s; sha256sum of the packs (2 procs): %s MB/s, ratio %s\n' "check --read-data" "$TR" "$((RR / 1024))" \
    "$(mbps "$BYTES" "$TR")" "$(mbps "$BYTES" "$TS")" "$(python3 -c "print(f'{$TS/$TR:.2f}')")"

if [ -n "${BASELINE_BIN:-}" ]; then
    read -r BP BRP BN BRN BC BRC BR BRR < <(measure "$BASELINE_BIN" "$WORK/repo-baseline" "$WORK/cache-baseline")
    ratio() { case "$1 $2" in *failed*|*" 0") echo "-" ;; *) python3 -c "print(f'{$1/$2:.2f}')" ;; esac; }
    printf '\nbaseline %s on an identical copy (ratio = this build / baseline)\n' "$BASELINE_BIN"
    printf '%-32s %10s %8s %14s %8s\n' "operation" "wall s" "ratio" "peak RSS MiB" "ratio"
    printf '%-32s %10s %8s %14s %8s\n' "prune --keep-last 25 (50 snaps)" "$BP" "$(ratio "$TP" "$BP")" "$((BRP / 1024))" "$(ratio "$RP" "$BRP")"
    printf '%-32s %10s %8s %14s %8s\n' "prune, nothing to do" "$BN" "$(ratio "$TN" "$BN")" "$((BRN / 1024))" "$(ratio "$RN" "$BRN")"
    printf '%-32s %10s %8s %14s %8s\n' "check (structure)" "$BC" "$(ratio "$TC" "$BC")" "$((BRC / 1024))" "$(ratio "$RC" "$BRC")"
    printf '%-32s %10s %8s %14s %8s\n' "check --read-data" "$BR" "$(ratio "$TR" "$BR")" "$((BRR / 1024))" "$(ratio "$RR" "$BRR")"
fi
