#!/usr/bin/env bash
# Installs what dbbackup's demo and tests need on a fresh Debian machine, when missing:
# PostgreSQL 15 server binaries, MariaDB server and client (the MySQL/MariaDB tests start their
# own servers), and a real server for every storage backend the tests start on a loopback
# port: moto_server (S3), openssh-server (SFTP), Azurite (Azure Blob), gcp-storage-emulator
# (GCS) and wsgidav (WebDAV); and promtool (Prometheus's own metrics parser). Idempotent;
# needs root for apt-get and npm -g.
set -euo pipefail

need=()
[ -x /usr/lib/postgresql/15/bin/postgres ] || need+=(postgresql-15)
command -v runuser >/dev/null || need+=(util-linux)
[ -x /usr/sbin/mariadbd ] || need+=(mariadb-server)
command -v mariadb-dump >/dev/null || need+=(mariadb-client)
[ -x /usr/sbin/sshd ] || need+=(openssh-server)
# promtool: Prometheus's own parser checks the metrics pages in tests/metrics.rs.
command -v promtool >/dev/null || need+=(prometheus)
if [ ${#need[@]} -gt 0 ]; then
    echo "setup: installing ${need[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # Packages must not start system-wide servers: the tests start their own.
    policy=""
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        policy=/usr/sbin/policy-rc.d
        printf '#!/bin/sh\nexit 101\n' >"$policy"
        chmod 755 "$policy"
        trap 'rm -f "$policy"' EXIT
    fi
    apt-get install -y -qq --no-install-recommends "${need[@]}"
fi
id postgres >/dev/null 2>&1 || { echo "setup: the postgres OS user is missing" >&2; exit 1; }
id mysql >/dev/null 2>&1 || { echo "setup: the mysql OS user is missing" >&2; exit 1; }
if ! command -v moto_server >/dev/null; then
    echo "setup: installing moto[server] (S3-compatible test server)" >&2
    python3 -m pip install --quiet --disable-pip-version-check 'moto[server]>=5,<6'
fi
pip=()
command -v gcp-storage-emulator >/dev/null || pip+=('gcp-storage-emulator>=2024.8,<2026')
command -v wsgidav >/dev/null || pip+=('wsgidav>=4.3,<5' 'cheroot>=10,<12')
if [ ${#pip[@]} -gt 0 ]; then
    echo "setup: installing ${pip[*]} (GCS and WebDAV test servers)" >&2
    python3 -m pip install --quiet --disable-pip-version-check "${pip[@]}"
fi
if ! command -v azurite-blob >/dev/null; then
    echo "setup: installing azurite (Azure Blob test server)" >&2
    npm install --global --silent --no-fund --no-audit 'azurite@3'
fi
