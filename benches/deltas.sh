#!/usr/bin/env bash
# Near-duplicate chunks on a changing database: daily `pg_dump -Fc -Z0` dumps of a real
# PostgreSQL 15 database with a mixed schema, ~0.5% of rows changed a day (scattered updates,
# inserts, deletes, then VACUUM, so new rows land in freed space mid-table). Each day is
# snapshotted into a repository with deltas and into one without (exact dedup only), and
# `zstd -3 --patch-from=<yesterday> <today>` is measured in the same run as the reference.
# Reports per-day growth as a percentage of the first snapshot, ingest and restore MB/s with
# and without deltas, and the ratios the targets are stated in. Run on demand, not in CI:
#   benches/deltas.sh [ORDERS_MILLIONS] [DAYS]     (defaults 2 and 5: a dump of about 370 MB)
# With DBBACKUP_BENCH_KEEP=DIR the two repositories are kept in DIR (for a closer look).
# With DBBACKUP_BENCH_DUMPS=DIR each day's dump is kept there as dayN.dump (input for
# benches/remote_lag.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
ORDERS=${1:-2}
DAYS=${2:-5}
scripts/setup.sh
command -v zstd >/dev/null || apt-get install -y -qq zstd
cargo build --release --locked --bin dbbackup
BIN="$PWD/target/release/dbbackup"
WORK=$(mktemp -d "${TMPDIR:-/var/tmp}/dbbackup-deltas.XXXXXX")
chmod 755 "$WORK"
source scripts/lib-pg.sh
KEEP=${DBBACKUP_BENCH_KEEP:-}
trap 'pg_stop; if [ -n "$KEEP" ]; then mkdir -p "$KEEP" && mv "$WORK/delta" "$WORK/plain" "$KEEP/"; fi; rm -rf "$WORK"' EXIT
pg_start -c fsync=off -c max_wal_size=4GB

echo "== building a database: ${ORDERS}M orders, customers, events, products"
psql -d postgres -c "create database shop"
psql -d shop -c "
  create table customers(id int primary key, name text, email text, country text, signed_up date, score double precision);
  insert into customers select g, 'customer '||g, 'user'||g||'@example.'||(array['com','org','net','de'])[1+g%4],
         (array['DE','FR','US','JP','BR','IN'])[1+g%6], date '2015-01-01' + g % 3000, random()*100
    from generate_series(1, 200000) g;
  create table products(sku text primary key, title text, price numeric(10,2), attrs jsonb);
  insert into products select 'SKU-'||g, 'product '||md5(g::text), round((random()*500)::numeric, 2),
         jsonb_build_object('color', (array['red','green','blue'])[1+g%3], 'weight', g % 97)
    from generate_series(1, 20000) g;
  create table orders(id bigint primary key, customer int, placed timestamptz, amount numeric(12,2), status text, items jsonb, note text);
  insert into orders select g, 1 + ((g::bigint*7919) % 200000)::int, timestamptz '2023-01-01' + g * interval '3 seconds',
         round((random()*1000)::numeric, 2), (array['new','paid','shipped','returned'])[1+g%4],
         jsonb_build_object('sku', 'SKU-'||(g % 20000), 'qty', 1 + g % 9, 'price', round((random()*200)::numeric,2)),
         case when g % 5 = 0 then 'gift wrap; deliver after '||(g%12+8)||':00' else null end
    from generate_series(1, ${ORDERS}000000) g;
  create table events(id bigint primary key, at timestamptz, kind text, payload text);
  insert into events select g, now() - g * interval '1 second', (array['login','view','cart','buy'])[1+g%4], md5(g::text)||md5((g*31)::text)
    from generate_series(1, ${ORDERS}00000 * 4) g;
  create index on orders(customer); create index on events(at);"
psql -d shop -c "vacuum analyze"

# One day of activity: about 0.5% of all rows touched.
change() {
    psql -d shop -c "
      update orders set status = (array['new','paid','shipped','returned'])[1 + (random()*3)::int],
                        amount = round((random()*1000)::numeric, 2) where random() < 0.003;
      update customers set score = random()*100, email = 'changed'||id||'@example.com' where random() < 0.005;
      update products set price = round((random()*500)::numeric, 2) where random() < 0.01;
      delete from orders where random() < 0.0005;
      delete from events where random() < 0.001;
      insert into orders select m + g, 1 + (random()*199999)::int, now(), round((random()*1000)::numeric, 2), 'new',
             jsonb_build_object('sku', 'SKU-'||(g % 20000), 'qty', 1 + g % 9, 'price', round((random()*200)::numeric,2)), null
        from (select max(id) m from orders) x, generate_series(1, ${ORDERS}000) g;
      insert into events select m + g, now(), 'view', md5(random()::text)||md5(random()::text)
        from (select max(id) m from events) x, generate_series(1, ${ORDERS}00 * 8) g;"
    psql -d shop -c "vacuum"
}

export DBBACKUP_CACHE_DIR="$WORK/cache" XDG_CONFIG_HOME="$WORK/config" DBBACKUP_PASSWORD=bench
"$BIN" -r "$WORK/delta" init >/dev/null
"$BIN" -r "$WORK/plain" init >/dev/null
secs() { local t0 t1; t0=$(date +%s.%N); "$@" >/dev/null; t1=$(date +%s.%N); python3 -c "print($t1-$t0)"; }
data_bytes() { du -sb "$1/data" | cut -f1; }
pct() { python3 -c "print(f'{$1*100/$2:.2f}')"; }

printf '\n%-5s %11s %12s %12s %12s %10s %10s\n' day "dump MB" "deltas %" "no-delta %" "patch-from %" "ingest Δ" "ingest ="
FIRST=0; SUM_D=0; SUM_P=0; SUM_Z=0; T_D=0; T_P=0; BYTES=0
for day in $(seq 0 "$DAYS"); do
    [ "$day" -gt 0 ] && change
    "$PGBIN/pg_dump" -Fc -Z0 -d shop -f "$WORK/today.dump"
    SIZE=$(stat -c %s "$WORK/today.dump")
    cat "$WORK/today.dump" > /dev/null
    BD=$( [ -d "$WORK/delta/data" ] && data_bytes "$WORK/delta" || echo 0 )
    BP=$( [ -d "$WORK/plain/data" ] && data_bytes "$WORK/plain" || echo 0 )
    TD=$(secs sh -c "'$BIN' -r '$WORK/delta' --json snapshot --stdin --name shop < '$WORK/today.dump' > '$WORK/last.json'")
    python3 -c "import json; s=json.load(open('$WORK/last.json'))['snapshot']['summary']; print(f'    day $day: {s[\"chunks_new\"]} of {s[\"chunks_total\"]} chunks new, {s.get(\"chunks_delta\",0)} stored as deltas', flush=True)" >&2
    TP=$(secs sh -c "'$BIN' -r '$WORK/plain' snapshot --no-deltas --stdin --name shop < '$WORK/today.dump'")
    GD=$(( $(data_bytes "$WORK/delta") - BD )); GP=$(( $(data_bytes "$WORK/plain") - BP ))
    if [ "$day" -eq 0 ]; then
        FIRST=$GD
        printf '%-5s %11s %12s %12s %12s %10s %10s\n' 0 "$((SIZE / 1000000))" "$GD B" "$GP B" "-" \
            "$(python3 -c "print(f'{$SIZE/$TD/1e6:.0f}')")" "$(python3 -c "print(f'{$SIZE/$TP/1e6:.0f}')")"
    else
        Z=$(zstd -q -3 --long=30 --patch-from="$WORK/yesterday.dump" -c "$WORK/today.dump" | wc -c)
        SUM_D=$((SUM_D + GD)); SUM_P=$((SUM_P + GP)); SUM_Z=$((SUM_Z + Z))
        T_D=$(python3 -c "print($T_D+$TD)"); T_P=$(python3 -c "print($T_P+$TP)"); BYTES=$((BYTES + SIZE))
        printf '%-5s %11s %12s %12s %12s %10s %10s\n' "$day" "$((SIZE / 1000000))" "$(pct $GD $FIRST)" "$(pct $GP $FIRST)" \
            "$(pct $Z $FIRST)" "$(python3 -c "print(f'{$SIZE/$TD/1e6:.0f}')")" "$(python3 -c "print(f'{$SIZE/$TP/1e6:.0f}')")"
    fi
    [ -n "${DBBACKUP_BENCH_DUMPS:-}" ] && mkdir -p "$DBBACKUP_BENCH_DUMPS" && cp "$WORK/today.dump" "$DBBACKUP_BENCH_DUMPS/day$day.dump"
    mv "$WORK/today.dump" "$WORK/yesterday.dump"
done
# Restore from a cold page cache (packs read from disk), then the best of 3 from a warm one.
restore_secs() { secs sh -c "'$BIN' -r '$1' restore latest --name shop --target - > /dev/null"; }
sync; echo 3 > /proc/sys/vm/drop_caches 2>/dev/null || true
RD=$(restore_secs "$WORK/delta"); RP=$(restore_secs "$WORK/plain")
best() { for _ in 1 2 3; do restore_secs "$1"; done | sort -g | head -1; }
WD=$(best "$WORK/delta"); WP=$(best "$WORK/plain")
"$BIN" -r "$WORK/delta" check --read-data | tail -1
LAST=$(stat -c %s "$WORK/yesterday.dump")
python3 - <<EOF
d, p, z, first = $SUM_D / $DAYS, $SUM_P / $DAYS, $SUM_Z / $DAYS, $FIRST
ing_d, ing_p = $BYTES / $T_D / 1e6, $BYTES / $T_P / 1e6
res_d, res_p = $LAST / $RD / 1e6, $LAST / $RP / 1e6
warm_d, warm_p = $LAST / $WD / 1e6, $LAST / $WP / 1e6
print()
print(f"mean daily growth: deltas {d*100/first:.2f}% ({d/1e6:.1f} MB), exact dedup only {p*100/first:.2f}% ({p/1e6:.1f} MB), zstd --patch-from {z*100/first:.2f}% ({z/1e6:.1f} MB)")
print(f"  deltas / patch-from = {d/z:.2f} (target <= 2); exact dedup / deltas = {p/d:.0f}x")
print(f"ingest of days 1..$DAYS: deltas {ing_d:.0f} MB/s, no deltas {ing_p:.0f} MB/s, ratio {ing_d/ing_p:.2f} (target >= 0.70)")
print(f"restore of the last day, cold cache: deltas {res_d:.0f} MB/s, no deltas {res_p:.0f} MB/s, ratio {res_d/res_p:.2f} (target >= 0.80)")
print(f"restore of the last day, warm cache (best of 3): deltas {warm_d:.0f} MB/s, no deltas {warm_p:.0f} MB/s, ratio {warm_d/warm_p:.2f}")
EOF
"$BIN" -r "$WORK/delta" stats | tail -4
