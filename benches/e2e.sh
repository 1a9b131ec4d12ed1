#!/usr/bin/env bash
# End-to-end benchmark on a realistic dump (mixed text, numbers, dates, JSON) from a real
# PostgreSQL 15 database: first snapshot, unchanged re-snapshot and restore throughput, peak
# RSS at 1x and 4x the dump size, each beside the limit of its bottleneck primitive measured
# in the same run (benches/limits.rs). Run on demand, not in CI:
#   benches/e2e.sh [ROWS_MILLIONS]      (default 6: a dump of about 1.05 GiB)
# DBBACKUP_BENCH_DUMP=/path/file keeps the generated dump there and reuses it on later runs.
set -euo pipefail
cd "$(dirname "$0")/.."
ROWS=${1:-6}
scripts/setup.sh
[ -x /usr/bin/time ] || apt-get install -y -qq time
cargo build --release --locked --bin dbbackup
BIN="$PWD/target/release/dbbackup"
WORK=$(mktemp -d "${TMPDIR:-/var/tmp}/dbbackup-bench.XXXXXX")
chmod 755 "$WORK"
source scripts/lib-pg.sh
trap 'pg_stop; rm -rf "$WORK"' EXIT
DUMP="$WORK/bench.dump"
if [ -n "${DBBACKUP_BENCH_DUMP:-}" ] && [ -s "$DBBACKUP_BENCH_DUMP" ]; then
    DUMP="$DBBACKUP_BENCH_DUMP"
    echo "== reusing $DUMP"
else
    pg_start -c fsync=off -c max_wal_size=4GB

    echo "== building a database of ${ROWS}M orders + events"
    psql -d postgres -c "create database bench"
    psql -d bench -c "
      create table customers(id int primary key, name text, email text, country text, signed_up date, score double precision);
      insert into customers select g, 'customer '||g, 'user'||g||'@example.'||(array['com','org','net','de'])[1+g%4],
             (array['DE','FR','US','JP','BR','IN'])[1+g%6], date '2015-01-01' + g % 3000, random()*100 from generate_series(1, 500000) g;
      create table orders(id bigint primary key, customer int, placed timestamptz, amount numeric(12,2), status text, items jsonb, note text);
      insert into orders select g, 1 + ((g::bigint*7919) % 500000)::int, timestamptz '2023-01-01' + g * interval '3 seconds',
             round((random()*1000)::numeric, 2), (array['new','paid','shipped','returned'])[1+g%4],
             jsonb_build_object('sku', 'SKU-'||(g % 20000), 'qty', 1 + g % 9, 'price', round((random()*200)::numeric,2), 'tags', jsonb_build_array('t'||g%13, 't'||g%29)),
             case when g % 5 = 0 then 'gift wrap; deliver after '||(g%12+8)||':00' else null end
        from generate_series(1, ${ROWS}000000) g;
      create table events(id bigint, at timestamptz, kind text, payload text);
      insert into events select g, now() - g * interval '1 second', (array['login','view','cart','buy'])[1+g%4], md5(g::text)||md5((g*31)::text)
        from generate_series(1, ${ROWS}00000 * 4) g;"
    "$PGBIN/pg_dump" -Fc -Z0 -d bench -f "$DUMP"
    pg_stop
    if [ -n "${DBBACKUP_BENCH_DUMP:-}" ]; then cp "$DUMP" "$DBBACKUP_BENCH_DUMP"; DUMP="$DBBACKUP_BENCH_DUMP"; fi
fi
SIZE=$(stat -c %s "$DUMP")
echo "dump: $SIZE bytes ($((SIZE >> 20)) MiB), pg_dump -Fc -Z0"

echo "== primitive limits on this dump (per core, then for $(nproc) cores)"
LIMITS=$(cargo bench --locked --bench limits -- "$DUMP" 1024 2>/dev/null)
echo "$LIMITS"
lim() { echo "$LIMITS" | awk -v k="$1" '$1=="LIMIT" && $2==k {print $3}'; }

export DBBACKUP_REPOSITORY="$WORK/repo" DBBACKUP_CACHE_DIR="$WORK/cache" XDG_CONFIG_HOME="$WORK/config"
export DBBACKUP_PASSWORD=bench
"$BIN" init >/dev/null
sync; echo 3 > /proc/sys/vm/drop_caches 2>/dev/null || true
cat "$DUMP" > /dev/null   # the source is in the page cache for every run: we time dbbackup, not the disk

run() { # label, then command; prints wall seconds and peak RSS KiB
    local out; out=$( { /usr/bin/time -f "TIME %e %M" "$@" >/dev/null; } 2>&1 | grep '^TIME')
    echo "$out" | awk '{print $2, $3}'
}
mbps() { python3 -c "print(f'{$1/$2/1e6:.0f}')"; }

read -r T1 R1 < <(run sh -c "'$BIN' snapshot --stdin --name bench < '$DUMP'")
# The same first snapshot into a second fresh repository without the read-back verification.
DBBACKUP_REPOSITORY="$WORK/repo-nv" "$BIN" init >/dev/null
read -r T1N _ < <(run sh -c "DBBACKUP_REPOSITORY='$WORK/repo-nv' '$BIN' snapshot --no-verify --stdin --name bench < '$DUMP'")
rm -rf "$WORK/repo-nv"
read -r T2 R2 < <(run sh -c "'$BIN' snapshot --stdin --name bench < '$DUMP'")
# Fixed per-command cost: process start, repository open, argon2id (64 MiB, 3 passes), cache sync.
read -r T0 _ < <(run "$BIN" key list)
# Time inside the snapshot pipeline, as recorded in the manifests.
PIPE=$("$BIN" --json snapshots --name bench | python3 -c 'import json,sys; print(" ".join(str(s["snapshot"]["summary"]["duration_ms"]/1000) for s in json.load(sys.stdin)))')
read -r P1 P2 <<< "$PIPE"
read -r T3 R3 < <(run sh -c "'$BIN' restore latest --target - > /dev/null")
# Peak RSS at 1x and 4x through the same kind of pipe: variants of the dump (bytes remapped
# with tr, so no chunk repeats, but similar to the stored dump: deltas are tried) — memory must
# not grow with the stream. The 1x stream is the first quarter of the 4x one, and each goes
# into its own copy of the repository as it is now, so the two differ in length only.
cp -a "$WORK/repo" "$WORK/repo1"; cp -a "$WORK/cache" "$WORK/cache1"
read -r T5 R5 < <(run sh -c "tr '0-8' '1-9' < '$DUMP' | DBBACKUP_REPOSITORY='$WORK/repo1' DBBACKUP_CACHE_DIR='$WORK/cache1' '$BIN' snapshot --stdin --name bench4")
rm -rf "$WORK/repo1" "$WORK/cache1"
read -r T4 R4 < <(run sh -c "(tr '0-8' '1-9' < '$DUMP'; tr 'a-m' 'n-z' < '$DUMP'; tr 'n-z' 'a-m' < '$DUMP'; tr 'A-Z' 'B-ZA' < '$DUMP') | '$BIN' snapshot --stdin --name bench4")

printf '\n%-26s %10s %12s %14s\n' "operation" "MB/s" "limit MB/s" "peak RSS MiB"
printf '%-26s %10s %12s %14s\n' "first snapshot (zstd-3)" "$(mbps "$SIZE" "$T1")" "$(lim zstd_bound) (all stages $(lim first_snapshot_all_stages))" "$((R1 / 1024))"
printf '%-26s %10s   (verification costs %s%% of the wall time)\n' "  same, --no-verify" "$(mbps "$SIZE" "$T1N")" "$(python3 -c "print(f'{($T1-$T1N)/$T1*100:.0f}')")"
printf '%-26s %10s %12s %14s\n' "unchanged re-snapshot" "$(mbps "$SIZE" "$T2")" "$(lim resnapshot)" "$((R2 / 1024))"
printf '%-26s %10s   (first snapshot %s MB/s)\n' "  pipeline only (manifest)" "$(mbps "$SIZE" "$P2")" "$(mbps "$SIZE" "$P1")"
printf '%-26s %10s s\n' "  fixed cost per command" "$T0"
printf '%-26s %10s %12s %14s\n' "restore to /dev/null" "$(mbps "$SIZE" "$T3")" "$(lim restore)" "$((R3 / 1024))"
printf '%-26s %10s %12s %14s\n' "first snapshot, 1x via tr" "$(mbps "$SIZE" "$T5")" "-" "$((R5 / 1024))"
printf '%-26s %10s %12s %14s\n' "first snapshot, 4x via tr" "$(mbps "$((SIZE * 4))" "$T4")" "-" "$((R4 / 1024))"
"$BIN" stats
