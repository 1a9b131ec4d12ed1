#!/usr/bin/env bash
# dbbackup against restic and borg on the same daily database dumps: each day's dump is backed
# up from stdin into one encrypted local repository per tool, then the last day is restored
# from each into a file, compared byte for byte with the dump, and restored again, timed. Prints, per day, each
# repository's growth and the ingest seconds, then the totals, the last restore, and peak RSS;
# `zstd -3 --long=30 --patch-from=<yesterday> <today>` is measured in the same run as the
# information floor. Settings: dbbackup's defaults (zstd-3, deltas); restic's defaults
# (compression auto); borg `--compression zstd,3` (its default is lz4). Debian's restic and
# borgbackup packages are installed when missing. Run on demand, not in CI:
#   benches/versus.sh DIR [DAYS]
# where DIR holds day0.dump, day1.dump, ... (e.g. from
# `DBBACKUP_BENCH_DUMPS=DIR benches/deltas.sh 2 20`); DAYS defaults to every dayN.dump there.
set -euo pipefail
[ $# -ge 1 ] || { echo "usage: $0 DIR [DAYS]" >&2; exit 2; }
DUMPS=$(realpath "$1")
[ -s "$DUMPS/day0.dump" ] || { echo "$DUMPS/day0.dump is missing" >&2; exit 2; }
DAYS=${2:-$(($(ls "$DUMPS" | grep -c '^day[0-9]*\.dump$') - 1))}
cd "$(dirname "$0")/.."
need=()
command -v restic >/dev/null || need+=(restic)
command -v borg >/dev/null || need+=(borgbackup)
command -v zstd >/dev/null || need+=(zstd)
[ -x /usr/bin/time ] || need+=(time)
if [ ${#need[@]} -gt 0 ]; then apt-get install -y -qq "${need[@]}" >/dev/null; fi
if [ -n "${DBBACKUP_BIN:-}" ]; then BIN=$(realpath "$DBBACKUP_BIN"); else
    cargo build --release --locked -q; BIN="$PWD/target/release/dbbackup"; fi
WORK=$(mktemp -d /var/tmp/dbbackup-versus.XXXXXX)
export BIN DUMPS WORK
trap 'rm -rf "$WORK"' EXIT
# Every tool keeps its caches and configuration in WORK; only the repositories are measured.
export DBBACKUP_PASSWORD=bench DBBACKUP_CACHE_DIR="$WORK/dbbackup-cache" XDG_CONFIG_HOME="$WORK/config"
export RESTIC_PASSWORD=bench RESTIC_CACHE_DIR="$WORK/restic-cache" RESTIC_REPOSITORY="$WORK/restic"
export BORG_PASSPHRASE=bench BORG_BASE_DIR="$WORK/borg-base" BORG_REPO="$WORK/borg"
TOOLS=(dbbackup restic borg)
"$BIN" init "$WORK/dbbackup" >/dev/null 2>&1
restic init -q >/dev/null
borg init -e repokey-blake2 >/dev/null 2>&1

# backup TOOL DAY: the dump of DAY on stdin.
backup() {
    local f="$DUMPS/day$2.dump"
    case $1 in
    dbbackup) "$BIN" -r "$WORK/dbbackup" -q snapshot --stdin --name shop < "$f" ;;
    restic) restic backup -q --host bench --stdin --stdin-filename shop.dump < "$f" ;;
    borg) borg create --compression zstd,3 "::day$2" - < "$f" ;;
    esac
}
# restore TOOL DAY DIR: DIR/out.dump afterwards.
restore() {
    case $1 in
    dbbackup) "$BIN" -r "$WORK/dbbackup" -q restore latest --name shop --target "$3/out.dump" ;;
    restic) restic restore -q latest --target "$3" && mv "$3/shop.dump" "$3/out.dump" ;;
    borg) (cd "$3" && borg extract "::day$2" && mv stdin out.dump) ;;
    esac
}
# Seconds of a command, with its peak RSS (KiB) in $WORK/rss.
secs() {
    local t0 t1; t0=$(date +%s.%N)
    /usr/bin/time -f %M -o "$WORK/rss" bash -c "$(declare -f backup restore); \"\$@\"" _ "$@" >/dev/null
    t1=$(date +%s.%N); echo "$t1 - $t0" | bc
}
size() { du -sb "$WORK/$1" | cut -f1; }
mb() { python3 -c "print(f'{$1/1e6:.1f}')"; }

declare -A PREV TOTAL INGEST PEAK
for t in "${TOOLS[@]}"; do PREV[$t]=$(size "$t"); TOTAL[$t]=0; INGEST[$t]=0; PEAK[$t]=0; done
PATCH_TOTAL=0; BYTES=0
printf '%-4s %12s' day "dump MB"
for t in "${TOOLS[@]}"; do printf ' %12s %8s' "$t MB" "s"; done
printf ' %14s\n' "patch-from MB"
sync; echo 3 > /proc/sys/vm/drop_caches 2>/dev/null || true
for day in $(seq 0 "$DAYS"); do
    f="$DUMPS/day$day.dump"
    cat "$f" >/dev/null   # in the page cache for every tool: we time the tools, not the disk
    printf '%-4s %12s' "$day" "$(mb "$(stat -L -c %s "$f")")"
    for t in "${TOOLS[@]}"; do
        s=$(secs backup "$t" "$day")
        now=$(size "$t"); grew=$((now - PREV[$t])); PREV[$t]=$now
        rss=$(cat "$WORK/rss"); [ "$rss" -gt "${PEAK[$t]}" ] && PEAK[$t]=$rss
        if [ "$day" -gt 0 ]; then
            TOTAL[$t]=$((TOTAL[$t] + grew)); INGEST[$t]=$(echo "${INGEST[$t]} + $s" | bc)
        fi
        printf ' %12s %8.2f' "$(mb "$grew")" "$s"
    done
    if [ "$day" -gt 0 ]; then
        p=$(zstd -q -f -3 --long=30 --patch-from="$DUMPS/day$((day - 1)).dump" -c "$f" | wc -c)
        PATCH_TOTAL=$((PATCH_TOTAL + p)); BYTES=$((BYTES + $(stat -L -c %s "$f")))
        printf ' %14s\n' "$(mb "$p")"
    else
        printf ' %14s\n' -
    fi
done

echo
echo "== days 1-$DAYS: stored per day, ingest, restore of day $DAYS (into a file, then compared)"
printf '%-9s %14s %12s %14s %14s %12s %14s\n' tool "MB/day" "× patch-from" "ingest MB/s" "restore MB/s" "identical" "peak RSS MiB"
LAST="$DUMPS/day$DAYS.dump"
for t in "${TOOLS[@]}"; do
    # Restored twice: the first is compared with the dump (and brings the repository into the
    # page cache), the second is timed.
    mkdir "$WORK/out-$t"
    restore "$t" "$DAYS" "$WORK/out-$t" >/dev/null
    same=yes; cmp -s "$LAST" "$WORK/out-$t/out.dump" || same=NO
    rm -f "$WORK/out-$t/out.dump"
    s=$(secs restore "$t" "$DAYS" "$WORK/out-$t")
    rss=$(cat "$WORK/rss"); [ "$rss" -gt "${PEAK[$t]}" ] && PEAK[$t]=$rss
    rm -rf "$WORK/out-$t"
    python3 -c "
days=$DAYS; tot=${TOTAL[$t]}; patch=$PATCH_TOTAL; ing=${INGEST[$t]}; size=$(stat -L -c %s "$LAST"); r=$s
print(f'%-9s %14.2f %12.1f %14.0f %14.0f %12s %14d' % ('$t', tot/days/1e6, tot/max(patch,1), $BYTES/ing/1e6, size/r/1e6, '$same', ${PEAK[$t]}//1024))"
done
printf '%-9s %14.2f\n' patch-from "$(python3 -c "print($PATCH_TOTAL/$DAYS/1e6)")"
