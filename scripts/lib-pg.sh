# Sourced by the demo and benchmark scripts: a throwaway PostgreSQL 15 on a loopback port,
# run as the `postgres` OS user when root, stopped by PID. Needs $WORK (a temp directory).
PGBIN=/usr/lib/postgresql/15/bin
PGROOT="$WORK/pg"
PGDATA="$PGROOT/data"
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
pg_start() {
    PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    mkdir -p "$PGROOT" && chmod 700 "$PGROOT"
    if [ "$(id -u)" = 0 ]; then chown postgres "$PGROOT"; fi
    as_pg "$PGBIN/initdb" -D "$PGDATA" -U postgres --auth=trust -E UTF8 --no-sync >/dev/null
    as_pg "$PGBIN/pg_ctl" -D "$PGDATA" -o "-p $PORT -k $PGROOT -c listen_addresses=127.0.0.1 $*" \
        -l "$PGROOT/log" -w start >/dev/null
    export PGHOST=127.0.0.1 PGPORT=$PORT PGUSER=postgres
}
pg_stop() {
    if [ -f "$PGDATA/postmaster.pid" ]; then
        local pid; pid=$(head -1 "$PGDATA/postmaster.pid")
        kill -INT "$pid" 2>/dev/null || true
        for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    fi
}
psql() { "$PGBIN/psql" -X -q -At -v ON_ERROR_STOP=1 "$@"; }
