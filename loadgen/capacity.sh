#!/usr/bin/env bash
# Capacity side by side (issue 15 §5, BENCHMARKS.md "Capacity"): the same 1,000-device
# device-day load on SQLite (one node), PostgreSQL behind one replica and PostgreSQL behind
# two replicas sharing one database and one key folder. Release binaries of this workspace;
# a PostgreSQL server reachable as POSTGRES_URL (default: this machine's, trust auth).
#
#   cargo build --release --locked -p fieldsync-server -p fieldsync-loadgen
#   loadgen/capacity.sh            # BIN_DIR=target/release DEVICES=1000 IN_FLIGHT=100
#
# Each set-up gets a fresh database (device-day pushes from seq 1); the databases
# capacity_one and capacity_two are dropped and re-created on that server.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${BIN_DIR:-target/release}
pg=${POSTGRES_URL:-postgres://postgres@127.0.0.1:5432}
devices=${DEVICES:-1000}
in_flight=${IN_FLIGHT:-100}
root=$(mktemp -d "${TMPDIR:-/var/tmp}/capacity.XXXX")
# Every device comes from 127.0.0.1: the per-address login limit must not count them.
export FIELDSYNC_LOGIN__ADDRESS_FAILURES_BEFORE_LOCK=1000000

start_server() { # name data_dir key_dir [database_url]; prints the address once serving
  local name=$1 data=$2 keys=$3 url=${4:-} address=""
  FIELDSYNC_DATABASE_URL="$url" FIELDSYNC_METRICS__ENABLED=false \
    "$bin/fieldsync-server" --data-dir "$data" --key-dir "$keys" --listen 127.0.0.1:0 \
    >"$root/$name.log" 2>&1 &
  echo $! >"$root/$name.pid"
  for _ in $(seq 1 600); do
    address=$(grep -o '控制台 console: http://[0-9.:]*' "$root/$name.log" | sed 's/.*http:\/\///' || true)
    [ -n "$address" ] && break
    sleep 0.2
  done
  [ -n "$address" ] || { echo "$name did not start:"; cat "$root/$name.log"; exit 1; } >&2
  echo "$address"
}
peak_rss() { grep VmHWM "/proc/$(cat "$root/$1.pid")/status" | awk '{print $2}'; }
stop() { for name in "$@"; do kill "$(cat "$root/$name.pid")"; done; }
fresh_database() { psql -q "$pg/postgres" -c "DROP DATABASE IF EXISTS $1" -c "CREATE DATABASE $1"; }
seed() { "$bin/fieldsync-loadgen" seed "$@" --cadres "$devices" --households-per-cadre 10 >/dev/null; }
run() { # label address...
  local label=$1 urls=()
  shift
  for address in "$@"; do urls+=(--url "http://$address"); done
  echo "### $label (load $(cut -d' ' -f1-3 /proc/loadavg))"
  for mix in device-day health; do
    "$bin/fieldsync-loadgen" run "${urls[@]}" --devices "$devices" --in-flight "$in_flight" \
      --think-ms 0 --seed 42 --mix "$mix"
  done
}

seed --data-dir "$root/sqlite" --key-dir "$root/sqlite-keys"
a=$(start_server sqlite "$root/sqlite" "$root/sqlite-keys")
run "SQLite, 1 node" "$a"
echo "peak RSS: $(peak_rss sqlite) kB"
stop sqlite

fresh_database capacity_one
seed --data-dir "$root/one" --key-dir "$root/keys" --database-url "$pg/capacity_one"
a=$(start_server one "$root/one" "$root/keys" "$pg/capacity_one")
run "PostgreSQL, 1 replica" "$a"
echo "peak RSS: $(peak_rss one) kB"
stop one

fresh_database capacity_two
seed --data-dir "$root/two-a" --key-dir "$root/keys" --database-url "$pg/capacity_two"
a=$(start_server two-a "$root/two-a" "$root/keys" "$pg/capacity_two")
b=$(start_server two-b "$root/two-b" "$root/keys" "$pg/capacity_two")
run "PostgreSQL, 2 replicas" "$a" "$b"
echo "peak RSS: A $(peak_rss two-a) kB, B $(peak_rss two-b) kB"
stop two-a two-b
rm -rf "$root"
