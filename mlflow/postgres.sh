#!/usr/bin/env bash
# A throwaway PostgreSQL server for the MLflow tracking server: a cluster in one directory, on loopback only.
# For tests, benchmarks and a single-host trial of the cluster set-up; a real deployment uses a managed database.
#
#   mlflow/postgres.sh start DIR [PORT]   initdb DIR (first time), start it on 127.0.0.1:PORT (default 5432),
#                                         create database "mlflow"; prints the backend store URI for mlflow/server.sh
#   mlflow/postgres.sh stop DIR           stop it (fast shutdown); DIR stays for the next start
#
# Needs Debian's `postgresql` package (initdb, pg_ctl) and the psycopg driver (`pip install -e ".[postgres]"`).
# PostgreSQL refuses to run as root: under root every command runs as $PG_USER (default: the package's `postgres`).
# Authentication is `trust` on 127.0.0.1 and on the socket under DIR: nothing but this host can connect.
set -euo pipefail

usage() { echo "usage: $0 start DIR [PORT] | stop DIR" >&2; exit 2; }
[[ $# -ge 2 ]] || usage
action="$1"
dir="$(realpath -m "$2")"
port="${3:-5432}"

# Debian keeps the server binaries off PATH; a pg_ctl on PATH may be a link to them
pg_ctl="$(command -v pg_ctl 2>/dev/null || ls -d /usr/lib/postgresql/*/bin/pg_ctl 2>/dev/null | tail -1 || true)"
bin="$(dirname "$(realpath -m "${pg_ctl:-/nonexistent}")")"
if [[ ! -x "$bin/pg_ctl" ]]; then
  echo "mlflow/postgres.sh: pg_ctl not found (install Debian's postgresql: apt-get install postgresql)" >&2
  exit 2
fi
as_owner() {  # run a PostgreSQL binary as the cluster's owner
  if [[ $EUID -eq 0 ]]; then runuser -u "${PG_USER:-postgres}" -- "$@"; else "$@"; fi
}

case "$action" in
  start)
    if [[ ! -f "$dir/PG_VERSION" ]]; then
      mkdir -p "$dir"
      [[ $EUID -ne 0 ]] || chown "${PG_USER:-postgres}" "$dir"
      as_owner "$bin/initdb" -D "$dir" -U mlflow --auth=trust --encoding=UTF8 --no-instructions >"$dir.initdb.log"
    fi
    as_owner "$bin/pg_ctl" -D "$dir" status >/dev/null 2>&1 ||  # already running: reuse it
      as_owner "$bin/pg_ctl" -D "$dir" -l "$dir/server.log" -w -t 60 \
        -o "-c listen_addresses=127.0.0.1 -p $port -k $dir -c max_connections=200" start >/dev/null
    as_owner "$bin/psql" -h 127.0.0.1 -p "$port" -U mlflow -d postgres -tAc \
      "SELECT 1 FROM pg_database WHERE datname = 'mlflow'" | grep -q 1 ||
      as_owner "$bin/createdb" -h 127.0.0.1 -p "$port" -U mlflow mlflow
    echo "postgresql+psycopg://mlflow@127.0.0.1:$port/mlflow"
    ;;
  stop)
    as_owner "$bin/pg_ctl" -D "$dir" -m fast -w stop >/dev/null
    ;;
  *)
    usage
    ;;
esac
