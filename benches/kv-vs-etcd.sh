#!/usr/bin/env bash
# etcd and Flotilla's kvstore side by side: starts a 3-member etcd (Debian's etcd-server;
# it, etcdctl and python3 are installed if missing) and then a 3-member kvstore on loopback, each with default flags
# (fsync on), its data in a temporary directory on the same disk and free ports; runs every
# workload of `flotilla bench kv` against each with the same client; stops both; prints one
# markdown table per workload with both systems' figures and the ratio Flotilla/etcd.
#
#   benches/kv-vs-etcd.sh                  # everything (about 20 minutes here)
#   KV_VS_ETCD_SCALE=0.1 bench/...       # a tenth of the operations, for a quick look
#   KV_VS_ETCD_ONLY=put,watch bench/...  # some workloads only
#
# Results also land in $KV_VS_ETCD_OUT (default: a temporary directory) as JSON lines.
set -euo pipefail
cd "$(dirname "$0")/.."

SCALE="${KV_VS_ETCD_SCALE:-1}"
ONLY="${KV_VS_ETCD_ONLY:-}"
OUT="${KV_VS_ETCD_OUT:-$(mktemp -d /tmp/kv-vs-etcd.XXXXXX)}"
mkdir -p "$OUT"
RESULTS="$OUT/results.jsonl"
: > "$RESULTS"

missing=()
command -v etcd > /dev/null || missing+=(etcd-server)
command -v etcdctl > /dev/null || missing+=(etcd-client)
command -v python3 > /dev/null || missing+=(python3)
if [ "${#missing[@]}" -gt 0 ]; then
  echo "installing ${missing[*]}" >&2
  apt-get update -qq > /dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" > /dev/null
fi
cargo build --release --workspace --bin flotilla >&2
BIN="${CARGO_TARGET_DIR:-target}/release/flotilla"
ETCD_VERSION="$(etcd --version | sed -n 1p)"

free_ports() {
  python3 - "$1" <<'PY'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket(); s.bind(("127.0.0.1", 0)); socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
PY
}

PIDS=()
stop_cluster() {
  for p in "${PIDS[@]}"; do kill "$p" 2> /dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2> /dev/null || true; done
  PIDS=()
}
trap stop_cluster EXIT

# start_cluster <etcd|flotilla> <dir>: sets ENDPOINTS, PIDLIST, DIRS.
start_cluster() {
  local sys="$1" dir="$2"
  read -r -a ports <<< "$(free_ports 6)"
  local initial="" eps="" dirs=""
  for i in 0 1 2; do
    initial+="n$i=http://127.0.0.1:${ports[$((2 * i + 1))]},"
  done
  for i in 0 1 2; do
    local client="http://127.0.0.1:${ports[$((2 * i))]}" peer="http://127.0.0.1:${ports[$((2 * i + 1))]}"
    local cmd=(etcd)
    [ "$sys" = flotilla ] && cmd=("$BIN" kvstore)
    "${cmd[@]}" --name "n$i" --data-dir "$dir/n$i" \
      --listen-client-urls "$client" --advertise-client-urls "$client" \
      --listen-peer-urls "$peer" --initial-advertise-peer-urls "$peer" \
      --initial-cluster "${initial%,}" --initial-cluster-state new \
      --initial-cluster-token bench > "$dir/n$i.log" 2>&1 &
    PIDS+=($!)
    eps+="127.0.0.1:${ports[$((2 * i))]},"
    dirs+="$dir/n$i,"
  done
  ENDPOINTS="${eps%,}"
  DIRS="${dirs%,}"
  PIDLIST="$(IFS=,; echo "${PIDS[*]}")"
  for _ in $(seq 1 100); do
    if ETCDCTL_API=3 etcdctl --endpoints="$ENDPOINTS" --command-timeout=2s endpoint health > /dev/null 2>&1; then
      return 0
    fi
    sleep 0.3
  done
  echo "$sys did not become healthy; logs in $dir" >&2
  exit 1
}

n() { python3 -c "print(max(1, int($1 * $SCALE)))"; }

# workload <name> <args...>: one run of the load generator against the running cluster.
workload() {
  local name="$1"; shift
  if [ -n "$ONLY" ] && [[ ",$ONLY," != *",$name,"* ]]; then return 0; fi
  echo "  $SYSTEM: $name $*" >&2
  "$BIN" bench kv --endpoints "$ENDPOINTS" --system "$SYSTEM" --pids "$PIDLIST" \
    --data-dirs "$DIRS" --json --max-seconds 300 "$@" >> "$RESULTS" \
    || echo "  ($SYSTEM $name $* failed)" >&2
}

for SYSTEM in etcd flotilla; do
  dir="$OUT/$SYSTEM"
  rm -rf "$dir"; mkdir -p "$dir"
  start_cluster "$SYSTEM" "$dir"
  for c in "1 1" "16 16" "256 16" "1000 100"; do
    read -r clients conns <<< "$c"
    total=$(n $((clients == 1 ? 2000 : clients * 100 < 20000 ? 20000 : clients * 100)))
    workload put --workload put --clients "$clients" --conns "$conns" --total "$total"
  done
  workload put --workload put --clients 256 --conns 16 --target all --total "$(n 25600)"
  for c in "1 1" "16 16" "256 16" "1000 100"; do
    read -r clients conns <<< "$c"
    total=$(n $((clients == 1 ? 5000 : 50000)))
    workload range --workload range --clients "$clients" --conns "$conns" --total "$total"
    workload range --workload range --serializable --target all --clients "$clients" --conns "$conns" --total "$total"
  done
  workload txn --workload txn --clients 64 --conns 16 --total "$(n 20000)"
  workload watch --workload watch --clients 1000 --conns 10 --total "$(n 1000)" --put-rate 100
  workload lease --workload lease --clients 64 --conns 16 --leases "$(n 10000)" --total "$(n 50000)"
  workload dataset --workload dataset --clients 256 --conns 16 --total "$(n 1000000)"
  stop_cluster
done

python3 - "$RESULTS" "$ETCD_VERSION" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
print(f"Machine: {open('/proc/cpuinfo').read().count('processor')} cores; etcd: {sys.argv[2]}\n")
def key(r):
    return (r["workload"], r["name"], r["clients"], r["conns"], r["target"], r["serializable"])
by = {}
order = []
for r in rows:
    k = key(r)
    if k not in by:
        by[k] = {}
        order.append(k)
    by[k][r["system"]] = r
def fmt(v, unit=""):
    return "-" if v is None else (f"{v:,.0f}{unit}" if v >= 100 else f"{v:.2f}{unit}")
def ratio(a, b):
    return "-" if not a or not b else f"{a / b:.2f}"
current = None
for k in order:
    wl, name, clients, conns, target, ser = k
    if wl != current:
        current = wl
        print(f"\n### {wl}\n")
        print("| measure | clients | conns | target | etcd ops/s | flotilla ops/s | ratio | etcd p50 / p99 | flotilla p50 / p99 | p99 ratio | etcd peak RSS | flotilla peak RSS | errors e/f |")
        print("|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    e, f = by[k].get("etcd"), by[k].get("flotilla")
    g = lambda r, *p: None if r is None else (r[p[0]] if len(p) == 1 else r[p[0]][p[1]])
    lat = lambda r: "-" if r is None else f"{r['latency']['p50_ms']:.2f} / {r['latency']['p99_ms']:.2f} ms"
    rss = lambda r: "-" if r is None or r.get("peak_rss_mib") is None else f"{r['peak_rss_mib']:.0f} MiB" + (f" ({r['disk_mib']:.0f} MiB disk)" if r.get("disk_mib") else "")
    print(f"| {name} | {clients} | {conns} | {target} | {fmt(g(e, 'ops_per_sec'))} | {fmt(g(f, 'ops_per_sec'))} | {ratio(g(f, 'ops_per_sec'), g(e, 'ops_per_sec'))} | {lat(e)} | {lat(f)} | {ratio(g(f, 'latency', 'p99_ms'), g(e, 'latency', 'p99_ms'))} | {rss(e)} | {rss(f)} | {g(e, 'errors')}/{g(f, 'errors')} |")
PY
