#!/usr/bin/env bash
# Deltas against a remote repository with latency: two consecutive daily dumps (DAY0 DAY1,
# e.g. `pg_dump -Fc -Z0` of one database a day apart, as DBBACKUP_BENCH_DUMPS=DIR
# benches/deltas.sh keeps them) snapshotted into a loopback S3 server behind
# benches/lagproxy.py, which delays every byte by LAG ms each way (default 10: a 20 ms round
# trip); once with deltas and once with --no-deltas; then day 1 restored. Prints seconds for
# each, day 1's peak RSS, and the with/without ratios. SERVER=moto (default; moto_server,
# installed by scripts/setup.sh, handles one request at a time in Python) or SERVER=s3s
# (s3s-fs, a Rust server that serves requests concurrently, like a real object store; built
# with `cargo install` into ~/.cache/dbbackup-bench on first use, a few minutes).
# Run on demand, not in CI:   LAG=10 SERVER=s3s benches/remote_lag.sh DAY0 DAY1
set -euo pipefail
[ $# -eq 2 ] || { echo "usage: [LAG=ms] $0 DAY0 DAY1" >&2; exit 2; }
DAY0=$(realpath "$1"); DAY1=$(realpath "$2")
cd "$(dirname "$0")/.."
# DBBACKUP_BIN=PATH measures that binary instead of building this checkout (to compare two).
if [ -n "${DBBACKUP_BIN:-}" ]; then BIN=$(realpath "$DBBACKUP_BIN"); else
    cargo build --release --locked -q; BIN="$PWD/target/release/dbbackup"; fi
LAG=${LAG:-10}
WORK=$(mktemp -d /var/tmp/dbbackup-remote-bench.XXXXXX)
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
MOTO_PORT=$(free_port); PROXY_PORT=$(free_port)
SERVER=${SERVER:-moto}
case "$SERVER" in
moto)
    moto_server -H 127.0.0.1 -p "$MOTO_PORT" >/dev/null 2>&1 &
    make_bucket() { curl -sf -X PUT "http://127.0.0.1:$MOTO_PORT/$1" >/dev/null; } ;;
s3s)
    S3S_ROOT="${XDG_CACHE_HOME:-$HOME/.cache}/dbbackup-bench/s3s"
    [ -x "$S3S_ROOT/bin/s3s-fs" ] || cargo install -q --locked s3s-fs@0.14.1 --features binary --root "$S3S_ROOT"
    mkdir -p "$WORK/s3s"
    "$S3S_ROOT/bin/s3s-fs" --host 127.0.0.1 --port "$MOTO_PORT" --access-key test --secret-key test "$WORK/s3s" \
        >/dev/null 2>&1 &
    make_bucket() { mkdir "$WORK/s3s/$1"; } ;;
*) echo "SERVER must be moto or s3s" >&2; exit 2 ;;
esac
MOTO=$!
python3 benches/lagproxy.py "$PROXY_PORT" "$MOTO_PORT" "$LAG" &
PROXY=$!
trap 'kill $MOTO $PROXY 2>/dev/null || true; rm -rf "$WORK"' EXIT
for p in "$MOTO_PORT" "$PROXY_PORT"; do
    until (echo >"/dev/tcp/127.0.0.1/$p") 2>/dev/null; do sleep 0.1; done
done
export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1
export DBBACKUP_PASSWORD=bench XDG_CONFIG_HOME="$WORK/config"
# Seconds of a command; its peak RSS (KiB, the largest process under it) lands in $WORK/rss.
secs() {
    local t0 t1; t0=$(date +%s.%N)
    /usr/bin/time -f %M -o "$WORK/rss" "$@" >/dev/null
    t1=$(date +%s.%N); echo "$t1 - $t0" | bc
}
declare -A R
for mode in deltas no-deltas; do
    make_bucket "$mode"
    export DBBACKUP_REPOSITORY="s3://$mode/r?endpoint=http://127.0.0.1:$PROXY_PORT"
    export DBBACKUP_CACHE_DIR="$WORK/cache-$mode"
    "$BIN" init --kdf-memory-kib 256 --kdf-iterations 1 >/dev/null
    flag=(); [ "$mode" = no-deltas ] && flag=(--no-deltas)
    R[$mode-day0]=$(secs sh -c "'$BIN' snapshot --stdin --name d ${flag[*]} < '$DAY0'")
    R[$mode-day1]=$(secs sh -c "'$BIN' snapshot --stdin --name d ${flag[*]} < '$DAY1'")
    R[$mode-rss]=$(( $(cat "$WORK/rss") / 1024 ))
    R[$mode-restore]=$(secs sh -c "'$BIN' restore latest --name d --target - > /dev/null")
    printf '%s, lag %s ms each way, %-9s: day 0 %6.2f s, day 1 %6.2f s (peak RSS %d MiB), restore of day 1 %6.2f s\n' \
        "$SERVER" "$LAG" "$mode" "${R[$mode-day0]}" "${R[$mode-day1]}" "${R[$mode-rss]}" "${R[$mode-restore]}"
done
printf 'with deltas / without, as speed: day 1 ingest %.0f%%, restore %.0f%%\n' \
    "$(echo "100 * ${R[no-deltas-day1]} / ${R[deltas-day1]}" | bc -l)" \
    "$(echo "100 * ${R[no-deltas-restore]} / ${R[deltas-restore]}" | bc -l)"
