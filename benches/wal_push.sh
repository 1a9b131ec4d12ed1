#!/usr/bin/env bash
# WAL archiving throughput: 200 segments of real WAL (16 MiB each, written by PostgreSQL 15
# under pgbench with checkpoints, so full-page images included) archived the way
# PostgreSQL's archiver does it — one `sh -c archive_command` per file, in order, the
# .ready status renamed to .done after each success — with:
#   1. the reference: `cp` + `sync` (fsync) into a local directory (the PostgreSQL docs'
#      archive_command, made durable);
#   2. `dbbackup wal push %p --ahead 0`: one file per call;
#   3. `dbbackup wal push %p` (default --ahead 32): each call that unlocks the repository
#      also stores the next ready files; the calls for those are answered from the spool.
# Prints segments/s and ms per call for each, and each one's throughput as a ratio of the
# reference. Heavy (about 3 GiB of WAL): run on demand, not in CI.
# WAL_CACHE=DIR keeps the generated segments in DIR for the next run.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked -q
BIN="$PWD/target/release/dbbackup"
N=${SEGMENTS:-200}
WORK=$(mktemp -d /var/tmp/dbbackup-wal-bench.XXXXXX)
chmod 755 "$WORK"
trap 'pg_stop 2>/dev/null || true; rm -rf "$WORK"' EXIT
# shellcheck source=../scripts/lib-pg.sh
source scripts/lib-pg.sh
SEGS=${WAL_CACHE:-$WORK/segments}
mkdir -p "$SEGS"

if [ "$(find "$SEGS" -name '0*' | wc -l)" -lt "$N" ]; then
    echo "== generating $N segments of real WAL (pgbench, scale 100, checkpoints every 30 s)"
    pg_start -c wal_keep_size=16GB -c max_wal_size=16GB -c checkpoint_timeout=30s
    "$PGBIN/pgbench" -i -s 100 -q postgres >/dev/null 2>&1
    while [ "$(find "$PGDATA/pg_wal" -maxdepth 1 -name '0*' | wc -l)" -le "$((N + 2))" ]; do
        "$PGBIN/pgbench" -c 4 -j 2 -T 20 postgres >/dev/null 2>&1
        psql -c checkpoint
    done
    psql -c 'select pg_switch_wal()' >/dev/null
    # Completed segments only: every one before the current insert segment.
    CUR=$(psql -c 'select pg_walfile_name(pg_current_wal_insert_lsn())')
    find "$PGDATA/pg_wal" -maxdepth 1 -name '0*' -printf '%f\n' | sort | awk -v c="$CUR" '$0 < c' \
        | head -n "$N" | while read -r f; do cp "$PGDATA/pg_wal/$f" "$SEGS/"; done
    pg_stop
fi
mapfile -t FILES < <(find "$SEGS" -name '0*' -printf '%f\n' | sort | head -n "$N")
RAW=$(( ${#FILES[@]} * 16 ))

# A data directory as the archiver sees it: pg_wal/ with every segment marked ready.
stage() {
    rm -rf "$WORK/data" && mkdir -p "$WORK/data/pg_wal/archive_status"
    for f in "${FILES[@]}"; do
        cp "$SEGS/$f" "$WORK/data/pg_wal/"
        : > "$WORK/data/pg_wal/archive_status/$f.ready"
    done
    sync
}
# Archive every ready file in order with archive_command $1; prints wall seconds.
archive() {
    local t0 t1 f
    t0=$(date +%s.%N)
    for f in "${FILES[@]}"; do
        local cmd=${1//%p/pg_wal\/$f}
        cmd=${cmd//%f/$f}
        (cd "$WORK/data" && sh -c "$cmd") || { echo "archive_command failed for $f" >&2; exit 1; }
        mv "$WORK/data/pg_wal/archive_status/$f.ready" "$WORK/data/pg_wal/archive_status/$f.done"
    done
    t1=$(date +%s.%N)
    python3 -c "print(f'{$t1 - $t0:.3f}')"
}

export DBBACKUP_PASSWORD=bench DBBACKUP_CACHE_DIR="$WORK/cache" XDG_CONFIG_HOME="$WORK/config"
newrepo() { rm -rf "$WORK/repo" "$WORK/cache"; "$BIN" init "$WORK/repo" -q >/dev/null; }

stage
mkdir -p "$WORK/archive"
T_CP=$(archive "test ! -f '$WORK/archive/%f' && cp %p '$WORK/archive/%f' && sync '$WORK/archive/%f'")

stage; newrepo
T_ONE=$(archive "'$BIN' -r '$WORK/repo' wal push %p --ahead 0")
STORED_ONE=$(du -sm "$WORK/repo" | cut -f1)

stage; newrepo
T_AHEAD=$(archive "'$BIN' -r '$WORK/repo' wal push %p")
STORED=$(du -sm "$WORK/repo" | cut -f1)
"$BIN" -r "$WORK/repo" wal stats | grep -E '^(files|size|gaps)' || true
"$BIN" -r "$WORK/repo" check -q && echo "check: clean"

row() { python3 -c "
n=${#FILES[@]}; t=$2; ref=$T_CP
print(f'{\"$1\":<44} {n/t:8.1f} {1000*t/n:10.1f} {ref/t:8.2f}')"; }
printf '\n%s segments (%s MiB of WAL); local repository, default argon2id, zstd level 3\n' "${#FILES[@]}" "$RAW"
printf '%-44s %8s %10s %8s\n' "archive_command" "segs/s" "ms/call" "ratio"
row "cp + sync (reference)" "$T_CP"
row "dbbackup wal push %p --ahead 0" "$T_ONE"
row "dbbackup wal push %p (--ahead 32)" "$T_AHEAD"
printf 'repository size: %s MiB (one per call), %s MiB (ahead) for %s MiB of WAL\n' "$STORED_ONE" "$STORED" "$RAW"
