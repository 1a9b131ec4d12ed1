#!/usr/bin/env bash
# The main job end to end on an embedded default: builds dbbackup, starts a throwaway
# PostgreSQL 15 on a loopback port, fills a sample database, snapshots it (`dbbackup snapshot
# shop`: pg_dump -Fc -Z0 plus the globals) into a local encrypted repository, snapshots again
# (deduplicated), restores it into a new database with `restore --to-database`, compares
# per-table checksums, and runs `check --read-data`.
# Everything lives in a temp directory that is removed at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo build --release --locked
BIN="$PWD/target/release/dbbackup"
PGBIN=/usr/lib/postgresql/15/bin

WORK=$(mktemp -d /tmp/dbbackup-demo.XXXXXX)
chmod 755 "$WORK"
source scripts/lib-pg.sh
cleanup() { pg_stop; rm -rf "$WORK"; }
trap cleanup EXIT

echo "== starting a throwaway PostgreSQL 15 on a loopback port"
pg_start

echo "== creating database shop (orders, customers, events)"
psql -d postgres -c "create database shop"
psql -d shop -c "
  create table customers(id int primary key, name text, email text, signed_up date);
  insert into customers select g, 'customer '||g, 'c'||g||'@example.com', date '2020-01-01' + g % 1500 from generate_series(1,50000) g;
  create table orders(id bigint primary key, customer int references customers, placed timestamptz, amount numeric(12,2), items jsonb);
  insert into orders select g, 1 + g % 50000, timestamptz '2024-01-01' + g * interval '13 seconds', (g % 100000) / 100.0,
         jsonb_build_object('sku', 'SKU-'||(g % 5000), 'qty', 1 + g % 7, 'note', md5(g::text)) from generate_series(1,400000) g;"

export DBBACKUP_REPOSITORY="$WORK/repo" DBBACKUP_CACHE_DIR="$WORK/cache" XDG_CONFIG_HOME="$WORK/config"
export DBBACKUP_PASSWORD="demo-only-password" DBBACKUP_DB_BIN_DIR="$PGBIN"

echo "== dbbackup init"
"$BIN" init
echo "== dbbackup snapshot (first: everything is new)"
"$BIN" snapshot shop --tag demo
echo "== 1% of the orders change; dbbackup snapshot again"
psql -d shop -c "update orders set amount = amount + 1 where id % 100 = 0"
"$BIN" snapshot shop --tag demo
echo "== dbbackup snapshots; dbbackup ls latest"
"$BIN" snapshots
"$BIN" ls latest --name shop
echo "== dbbackup restore latest --to-database shop_copy --create"
"$BIN" restore latest --name shop --to-database shop_copy --create
sums() { for t in customers orders; do psql -d "$1" -c "select '$t', count(*), md5(string_agg(x::text, ',' order by x::text)) from $t x"; done; }
if [ "$(sums shop)" = "$(sums shop_copy)" ]; then
    echo "per-table checksums match:"; sums shop_copy
else
    echo "MISMATCH between shop and shop_copy" >&2; exit 1
fi
echo "== dbbackup check --read-data"
"$BIN" check --read-data
echo "== dbbackup stats"
"$BIN" stats
echo "demo complete"
