#!/usr/bin/env bash
# A disposable PostgreSQL cluster on a free loopback port, for tests and benchmarks.
#   scripts/throwaway-postgres.sh start DIR   prints DATABASE_URL=... on success
#   scripts/throwaway-postgres.sh stop DIR
# Postgres refuses to run as root, so as root the cluster belongs to the
# 'postgres' system user (created by Debian's postgresql package).
set -euo pipefail
cmd=${1:?start|stop}
dir=${2:?data directory}

# Debian's postgresql package keeps the server binaries off the PATH.
export PATH="$PATH:/usr/lib/postgresql/15/bin"
initdb_bin=$(command -v initdb) || { echo "initdb not found (install postgresql)" >&2; exit 1; }
pg_ctl_bin=$(command -v pg_ctl) || { echo "pg_ctl not found (install postgresql)" >&2; exit 1; }

as_owner() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

case "$cmd" in
  start)
    mkdir -p "$dir"
    if [ "$(id -u)" = 0 ]; then
      chown postgres "$dir"
      # mktemp makes 0700 folders; the postgres user must be able to walk in.
      chmod o+x "$(dirname "$dir")"
    fi
    as_owner "$initdb_bin" -D "$dir/data" -U weft --auth=trust --no-sync -E UTF8 >"$dir/initdb.log" 2>&1 \
      || { cat "$dir/initdb.log" >&2; exit 1; }
    port=$(free_port)
    # Sockets live in the cluster's own folder: /var/run/postgresql may not exist.
    as_owner "$pg_ctl_bin" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
      -o "-p $port -c listen_addresses=127.0.0.1 -k $dir -c fsync=off -c max_connections=300" start >/dev/null \
      || { cat "$dir/server.log" >&2; exit 1; }
    echo "DATABASE_URL=postgres://weft@127.0.0.1:$port/postgres"
    ;;
  stop)
    [ -d "$dir/data" ] && as_owner "$pg_ctl_bin" -D "$dir/data" -m fast -w stop >/dev/null 2>&1 || true
    rm -rf "$dir"
    ;;
  *) echo "usage: $0 start|stop DIR" >&2; exit 2 ;;
esac
