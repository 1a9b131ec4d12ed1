#!/usr/bin/env bash
# The local manifest cache: a repository on a loopback S3 server (moto_server, installed by
# scripts/setup.sh) with N small snapshots (default 200, of 10 names); then `dbbackup
# snapshots` and one more small `snapshot` (which reads the manifests to find its parent),
# each with an empty manifest cache (what every command did before the cache) and with a
# full one. Prints seconds for each and the ratio. Runs on demand, not in CI (about a minute).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked -q
BIN="$PWD/target/release/dbbackup"
N=${SNAPSHOTS:-200}
WORK=$(mktemp -d /var/tmp/dbbackup-manifest-bench.XXXXXX)
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
moto_server -H 127.0.0.1 -p "$PORT" >/dev/null 2>&1 &
MOTO=$!
trap 'kill $MOTO 2>/dev/null || true; rm -rf "$WORK"' EXIT
until (echo >"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; do sleep 0.1; done
curl -sf -X PUT "http://127.0.0.1:$PORT/manifests" >/dev/null
export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1
export DBBACKUP_REPOSITORY="s3://manifests/r?endpoint=http://127.0.0.1:$PORT"
export DBBACKUP_CACHE_DIR="$WORK/cache" XDG_CONFIG_HOME="$WORK/config"
export DBBACKUP_PASSWORD=bench
"$BIN" init --kdf-memory-kib 256 --kdf-iterations 1 >/dev/null
echo "== $N snapshots of 1 KB"
for i in $(seq "$N"); do
    head -c 1000 /dev/urandom | "$BIN" -q snapshot --stdin --name "db$((i % 10))" >/dev/null
done
secs() { local t0 t1; t0=$(date +%s.%N); "$@" >/dev/null; t1=$(date +%s.%N); echo "$t1 - $t0" | bc; }
empty() { rm -rf "$WORK"/cache/*/snapshots; }
one_more() { head -c 1000 /dev/urandom | "$BIN" -q snapshot --stdin --name db1; }
for what in "snapshots" "one_more"; do
    cmd=("$BIN" snapshots)
    [ "$what" = one_more ] && cmd=(one_more)
    for run in 1 2 3; do
        empty
        cold=$(secs "${cmd[@]}")
        warm=$(secs "${cmd[@]}")
        printf '%-10s run %d: empty cache %6.2f s, full cache %6.2f s, ratio %.1fx\n' \
            "$what" "$run" "$cold" "$warm" "$(echo "$cold / $warm" | bc -l)"
    done
done
