#!/usr/bin/env bash
# Cluster DNS beside unbound, one run: N Services (default 10,000) in 10 namespaces are
# created through a single-member kvstore and an apiserver; `flotilla dns` serves them
# from its watches, and unbound serves the same N names as static local-data. dnsperf
# asks each the same random sample of A queries of those names (and 10% names that do
# not exist, NXDOMAIN) for DURATION seconds at full speed; the table shows queries per
# second, latency (dnsperf gives average, standard deviation and maximum), queries lost
# (unanswered within dnsperf's 5 s), the NXDOMAIN share and the server's CPU time per
# 1,000 answered queries (what a query costs it, whatever dnsperf takes of the same two
# cores), then each server's memory.
#
#   benches/dns-vs-unbound.sh            (DNS_BENCH_SERVICES, DNS_BENCH_SECONDS,
#                                          DNS_BENCH_CLIENTS change the load)
#
# Needs dnsperf and unbound (apt-get install dnsperf unbound) and a release build
# (cargo build --release --bin flotilla). Everything it starts is stopped by pid; its data
# lives in a temporary directory removed at exit.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN="${CARGO_TARGET_DIR:-target}/release/flotilla"
N="${DNS_BENCH_SERVICES:-10000}"
SECS="${DNS_BENCH_SECONDS:-20}"
CLIENTS="${DNS_BENCH_CLIENTS:-4}"
command -v dnsperf >/dev/null || { echo "dnsperf is not installed (apt-get install dnsperf)" >&2; exit 1; }
command -v unbound >/dev/null || { echo "unbound is not installed (apt-get install unbound)" >&2; exit 1; }
[ -x "$BIN" ] || { echo "$BIN: build it first (cargo build --release --bin flotilla)" >&2; exit 1; }

dir=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$dir"
}
trap cleanup EXIT

. benches/lib/control-plane.sh
start_control_plane
DNS=$(port); DNSM=$(port); UB=$(port)

echo "creating $N Services ..." >&2
python3 - "$N" "$dir" <<'PY'
import json, sys
n, d = int(sys.argv[1]), sys.argv[2]
items = [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": f"ns-{j}"}} for j in range(10)]
json.dump({"apiVersion": "v1", "kind": "List", "items": items}, open(f"{d}/ns.json", "w"))
per = 1000
for start in range(0, n, per):
    items = []
    for i in range(start, min(n, start + per)):
        items.append({"apiVersion": "v1", "kind": "Service",
                      "metadata": {"name": f"svc-{i}", "namespace": f"ns-{i % 10}"},
                      "spec": {"ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}})
    json.dump({"apiVersion": "v1", "kind": "List", "items": items}, open(f"{d}/svc-{start // per}.json", "w"))
PY
kubectl create --validate=false -f "$dir/ns.json" >/dev/null
for f in "$dir"/svc-*.json; do kubectl create --validate=false -f "$f" >/dev/null; done

"$BIN" dns --kubeconfig "$KUBECONFIG" --listen "127.0.0.1:$DNS" --secure-port "$DNSM" >"$dir/dns.log" 2>&1 &
pids+=($!)
last="svc-$((N - 1)).ns-$(((N - 1) % 10)).svc.cluster.local"
for _ in $(seq 1 240); do
  [ -n "$(dig @127.0.0.1 -p "$DNS" +short +time=1 +tries=1 "$last" A 2>/dev/null)" ] && break
  sleep 0.5
done
[ -n "$(dig @127.0.0.1 -p "$DNS" +short +time=1 +tries=1 "$last" A)" ] || { echo "flotilla dns never answered $last" >&2; tail "$dir/dns.log" >&2; exit 1; }

# The same names and addresses for unbound, read back from the cluster.
kubectl get services -A -o jsonpath='{range .items[*]}{.metadata.name}{" "}{.metadata.namespace}{" "}{.spec.clusterIP}{"\n"}{end}' >"$dir/services.txt"
{
  echo "server:"
  echo "  interface: 127.0.0.1@$UB"
  echo "  port: $UB"
  echo "  do-daemonize: no"
  echo "  use-syslog: no"
  echo "  logfile: \"\""
  echo "  username: \"\""
  echo "  chroot: \"\""
  echo "  directory: \"$dir\""
  echo "  pidfile: \"$dir/unbound.pid\""
  echo "  num-threads: 2"
  echo "  access-control: 127.0.0.0/8 allow"
  echo "  do-ip6: no"
  echo "  local-zone: \"cluster.local.\" static"
  while read -r name ns ip; do
    [ "$ip" = "None" ] && continue
    echo "  local-data: \"$name.$ns.svc.cluster.local. 30 IN A $ip\""
  done <"$dir/services.txt"
} >"$dir/unbound.conf"
unbound -d -c "$dir/unbound.conf" >"$dir/unbound.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 60); do
  [ -n "$(dig @127.0.0.1 -p "$UB" +short +time=1 +tries=1 "$last" A 2>/dev/null)" ] && break
  sleep 0.5
done

# 100,000 queries: names drawn at random, one in ten of a Service that does not exist.
python3 - "$N" "$dir/queries.txt" <<'PY'
import random, sys
n, out = int(sys.argv[1]), sys.argv[2]
rnd = random.Random(42)
with open(out, "w") as f:
    for _ in range(100000):
        i = rnd.randrange(n)
        if rnd.random() < 0.1:
            f.write(f"nope-{i}.ns-{i % 10}.svc.cluster.local A\n")
        else:
            f.write(f"svc-{i}.ns-{i % 10}.svc.cluster.local A\n")
PY

perf() {
  dnsperf -s 127.0.0.1 -p "$1" -d "$dir/queries.txt" -l "$SECS" -c "$CLIENTS" -T 2 -q 500 2>&1
}
row() {
  local name=$1 out=$2 cpu=$3 qps avg max sd lost nx
  qps=$(awk '/Queries per second:/ {printf "%.0f", $4}' <<<"$out")
  avg=$(awk '/Average Latency/ {printf "%.3f", $4 * 1000}' <<<"$out")
  max=$(awk -F'max ' '/Average Latency/ {sub(/\)/, "", $2); printf "%.3f", $2 * 1000}' <<<"$out")
  sd=$(awk '/Latency StdDev/ {printf "%.3f", $4 * 1000}' <<<"$out")
  lost=$(awk '/Queries lost:/ {print $4}' <<<"$out" | tr -d '()')
  nx=$(awk '/Response codes:/ {for (i=1;i<=NF;i++) if ($i=="NXDOMAIN") print $(i+2)}' <<<"$out" | tr -d '(),')
  printf "| %s | %s | %s | %s | %s | %s | %s | %s |\n" "$name" "$qps" "$avg" "$sd" "$max" "$lost" "$nx" "$cpu"
}
rss() { awk -v k="$2" '$1 == k":" {print $2}' "/proc/$1/status" 2>/dev/null || echo "?"; }
# CPU seconds a process has used (user + system; clock ticks of 1/100 s).
cpu() { awk '{printf "%.2f", ($14 + $15) / 100}' "/proc/$1/stat"; }
# Server CPU per 1,000 answered queries over a run: what one query costs the server.
per_k() { awk -v a="$1" -v b="$2" -v q="$(awk '/Queries completed:/ {print $3}' <<<"$3")" 'BEGIN {printf "%.3f", (b - a) * 1000 * 1000 / q}'; }
f_c0=$(cpu "${pids[2]}"); f_out=$(perf "$DNS"); f_c1=$(cpu "${pids[2]}")
u_c0=$(cpu "${pids[3]}"); u_out=$(perf "$UB"); u_c1=$(cpu "${pids[3]}")
f_hwm=$(rss "${pids[2]}" VmHWM); f_rss=$(rss "${pids[2]}" VmRSS)
u_hwm=$(rss "${pids[3]}" VmHWM); u_rss=$(rss "${pids[3]}" VmRSS)
echo
echo "$N Services, $SECS s per server, dnsperf -c $CLIENTS -T 2 -q 500, $(nproc) cores"
echo
echo "| server | queries/s | avg latency ms | stddev ms | max ms | lost | NXDOMAIN | server CPU ms per 1k queries |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|"
row "flotilla dns" "$f_out" "$(per_k "$f_c0" "$f_c1" "$f_out")"
row "unbound $(unbound -V | awk 'NR==1 {print $2}')" "$u_out" "$(per_k "$u_c0" "$u_c1" "$u_out")"
echo
echo "memory: flotilla dns ${f_rss} KiB resident (peak ${f_hwm} KiB), unbound ${u_rss} KiB (peak ${u_hwm} KiB)"
