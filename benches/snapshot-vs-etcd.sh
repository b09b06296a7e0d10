#!/usr/bin/env bash
# Maintenance.Snapshot beside etcd: one single-member cluster of each (plain text, loopback,
# free ports, a temporary directory), the same load (`flotilla bench kv --workload put`,
# SNAPSHOT_KEYS puts from 64 clients), then `etcdctl snapshot save` three times against
# each, timed, with the server's RSS before and after. Prints one line per run.
# Needs the release build (`cargo build --release --bin flotilla`) and etcd/etcdctl 3.4.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN="${CARGO_TARGET_DIR:-target}/release/flotilla"
N="${SNAPSHOT_KEYS:-200000}"
dir="$(mktemp -d)"
pid=""
cleanup() {
  [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
  rm -rf "$dir"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
export ETCDCTL_API=3
echo "keys=$N etcd=$(etcd --version | sed -n 1p)"
for sys in flotilla etcd; do
  d="$dir/$sys"
  mkdir -p "$d"
  cp="$(free_port)" pp="$(free_port)"
  cmd=(etcd)
  [ "$sys" = flotilla ] && cmd=("$BIN" kvstore)
  "${cmd[@]}" --name n0 --data-dir "$d/n0" \
    --listen-client-urls "http://127.0.0.1:$cp" --advertise-client-urls "http://127.0.0.1:$cp" \
    --listen-peer-urls "http://127.0.0.1:$pp" --initial-advertise-peer-urls "http://127.0.0.1:$pp" \
    --initial-cluster "n0=http://127.0.0.1:$pp" --initial-cluster-state new \
    --initial-cluster-token snapshot-bench > "$d/log" 2>&1 &
  pid=$!
  for _ in $(seq 1 100); do
    etcdctl --endpoints "127.0.0.1:$cp" endpoint health > /dev/null 2>&1 && break
    sleep 0.2
  done
  timeout 300 "$BIN" bench kv --endpoints "http://127.0.0.1:$cp" --workload put \
    --clients 64 --conns 8 --total "$N" --max-seconds 200 > "$d/load.txt"
  size="$(etcdctl --endpoints "127.0.0.1:$cp" endpoint status -w json \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["Status"]["dbSize"])')"
  rss0="$(ps -o rss= -p "$pid" | tr -d ' ')"
  for r in 1 2 3; do
    rm -f "$d/snap.db"
    s="$(date +%s.%N)"
    etcdctl --endpoints "127.0.0.1:$cp" snapshot save "$d/snap.db" > /dev/null 2> "$d/save.log"
    e="$(date +%s.%N)"
    echo "$sys run=$r db_size=$size snapshot_bytes=$(stat -c %s "$d/snap.db")" \
      "seconds=$(python3 -c "print(round($e - $s, 3))")" \
      "rss_kib_before=$rss0 rss_kib_after=$(ps -o rss= -p "$pid" | tr -d ' ')"
  done
  kill "$pid"
  wait "$pid" 2>/dev/null || true
  pid=""
done
