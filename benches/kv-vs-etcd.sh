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
#   KV_VS_ETCD_ONLY=checkperf bench/...  # etcd's own load check, `etcdctl check perf
#                                        # --load=xl --auto-compact --auto-defrag` (60 s of
#                                        # 1,000 clients), only when named; its verdicts and
#                                        # figures are printed at the end
#   KV_VS_ETCD_NO_BUILD=1 bench/...      # use the release binary already built
#   KV_VS_ETCD_PROFILE=put:256 bench/... # also profile (perf record, on-CPU, 499 Hz) each
#                                        # system's leader during that row (workload:clients);
#                                        # the top symbols and libraries by self time are
#                                        # printed at the end
#   KV_VS_ETCD_TLS=both bench/...        # also (or with `on`, only) with mTLS on both ports:
#                                        # etcd's --cert-file/--client-cert-auth/--peer-* flags,
#                                        # certificates made with openssl, ECDSA P-256
#
# Each row also gives the CPU time per operation of the three members together and of the
# load generator (from /proc/<pid>/stat): on these 2 cores, where clients and members share
# the CPUs, it is what bounds throughput.
#
# Results also land in $KV_VS_ETCD_OUT (default: a temporary directory) as JSON lines.
set -euo pipefail
cd "$(dirname "$0")/.."

SCALE="${KV_VS_ETCD_SCALE:-1}"
ONLY="${KV_VS_ETCD_ONLY:-}"
case "${KV_VS_ETCD_TLS:-off}" in
  off) MODES="plain" ;;
  on) MODES="tls" ;;
  both) MODES="plain tls" ;;
  *) echo "KV_VS_ETCD_TLS is off, on or both" >&2; exit 2 ;;
esac
OUT="${KV_VS_ETCD_OUT:-$(mktemp -d /tmp/kv-vs-etcd.XXXXXX)}"
mkdir -p "$OUT"
RESULTS="$OUT/results.jsonl"
: > "$RESULTS"

missing=()
command -v etcd > /dev/null || missing+=(etcd-server)
command -v etcdctl > /dev/null || missing+=(etcd-client)
command -v python3 > /dev/null || missing+=(python3)
command -v openssl > /dev/null || missing+=(openssl)
[ -z "${KV_VS_ETCD_PROFILE:-}" ] || command -v perf > /dev/null || missing+=(linux-perf)
if [ "${#missing[@]}" -gt 0 ]; then
  echo "installing ${missing[*]}" >&2
  apt-get update -qq > /dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" > /dev/null
fi
# KV_VS_ETCD_NO_BUILD=1 uses the binary as it is (e.g. built by `cargo build --release
# --workspace --all-targets`, whose feature set differs from `--bin flotilla` alone, so
# building here would compile much of the workspace again).
[ -n "${KV_VS_ETCD_NO_BUILD:-}" ] || cargo build --release --workspace --bin flotilla >&2
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

# make_certs <dir>: a CA, a certificate every member serves and dials peers with, and a
# client certificate (CN root).
make_certs() {
  local d="$1"
  mkdir -p "$d"
  local ec=(-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes)
  openssl req -x509 "${ec[@]}" -keyout "$d/ca.key" -out "$d/ca.crt" -subj /CN=bench-ca -days 2 2> /dev/null
  for who in member client; do
    local ext="extendedKeyUsage=clientAuth"
    [ "$who" = member ] && ext="subjectAltName=IP:127.0.0.1
extendedKeyUsage=serverAuth,clientAuth"
    openssl req "${ec[@]}" -keyout "$d/$who.key" -out "$d/$who.csr" -subj "/CN=$who" 2> /dev/null
    openssl x509 -req -in "$d/$who.csr" -CA "$d/ca.crt" -CAkey "$d/ca.key" -CAcreateserial \
      -out "$d/$who.crt" -days 2 -extfile <(printf '%s\n' "$ext") 2> /dev/null
  done
}

# start_cluster <etcd|flotilla> <dir> <plain|tls>: sets ENDPOINTS, PIDLIST, DIRS and, with
# tls, CLIENT_TLS (the client's flags).
start_cluster() {
  local sys="$1" dir="$2" mode="$3"
  read -r -a ports <<< "$(free_ports 6)"
  local initial="" eps="" dirs="" scheme=http tls=()
  CLIENT_TLS=()
  if [ "$mode" = tls ]; then
    scheme=https
    make_certs "$dir/pki"
    local m="$dir/pki/member"
    tls=(--cert-file "$m.crt" --key-file "$m.key" --client-cert-auth --trusted-ca-file "$dir/pki/ca.crt"
      --peer-cert-file "$m.crt" --peer-key-file "$m.key" --peer-client-cert-auth
      --peer-trusted-ca-file "$dir/pki/ca.crt")
    CLIENT_TLS=(--cacert "$dir/pki/ca.crt" --cert "$dir/pki/client.crt" --key "$dir/pki/client.key")
  fi
  for i in 0 1 2; do
    initial+="n$i=$scheme://127.0.0.1:${ports[$((2 * i + 1))]},"
  done
  for i in 0 1 2; do
    local client="$scheme://127.0.0.1:${ports[$((2 * i))]}" peer="$scheme://127.0.0.1:${ports[$((2 * i + 1))]}"
    local cmd=(etcd)
    [ "$sys" = flotilla ] && cmd=("$BIN" kvstore)
    "${cmd[@]}" --name "n$i" --data-dir "$dir/n$i" \
      --listen-client-urls "$client" --advertise-client-urls "$client" \
      --listen-peer-urls "$peer" --initial-advertise-peer-urls "$peer" \
      --initial-cluster "${initial%,}" --initial-cluster-state new \
      --initial-cluster-token bench "${tls[@]}" > "$dir/n$i.log" 2>&1 &
    PIDS+=($!)
    eps+="$scheme://127.0.0.1:${ports[$((2 * i))]},"
    dirs+="$dir/n$i,"
  done
  ENDPOINTS="${eps%,}"
  DIRS="${dirs%,}"
  PIDLIST="$(IFS=,; echo "${PIDS[*]}")"
  local ctl=()
  [ "$mode" = tls ] && ctl=("--cacert=$dir/pki/ca.crt" "--cert=$dir/pki/client.crt" "--key=$dir/pki/client.key")
  for _ in $(seq 1 100); do
    if ETCDCTL_API=3 etcdctl --endpoints="$ENDPOINTS" "${ctl[@]}" --command-timeout=2s endpoint health > /dev/null 2>&1; then
      return 0
    fi
    sleep 0.3
  done
  echo "$sys did not become healthy; logs in $dir" >&2
  exit 1
}

n() { python3 -c "print(max(1, int($1 * $SCALE)))"; }

# leader_pid: the pid of the member that leads (from etcdctl's endpoint status).
leader_pid() {
  local ctl=()
  [ "${#CLIENT_TLS[@]}" -gt 0 ] && ctl=("--cacert=${CLIENT_TLS[1]}" "--cert=${CLIENT_TLS[3]}" "--key=${CLIENT_TLS[5]}")
  ETCDCTL_API=3 etcdctl --endpoints="$ENDPOINTS" "${ctl[@]}" endpoint status -w json 2> /dev/null \
    | python3 -c '
import json, sys
pids = sys.argv[1].split(",")
for i, s in enumerate(json.load(sys.stdin)):
    if s["Status"]["header"]["member_id"] == s["Status"]["leader"]:
        print(pids[i])
' "$PIDLIST"
}

# workload <name> <args...>: one run of the load generator against the running cluster.
workload() {
  local name="$1"; shift
  if [ -n "$ONLY" ] && [[ ",$ONLY," != *",$name,"* ]]; then return 0; fi
  echo "  $SYSTEM: $name $*" >&2
  local perf_pid="" clients="" prev=""
  for a in "$@"; do [ "$prev" = --clients ] && clients="$a"; prev="$a"; done
  if [ -n "${KV_VS_ETCD_PROFILE:-}" ] && [ "$KV_VS_ETCD_PROFILE" = "$name:$clients" ] \
    && [[ " $* " != *" --target all "* ]]; then
    local leader
    leader="$(leader_pid)"
    perf record -F 499 -p "$leader" -o "$OUT/$SYSTEM.perf.data" > /dev/null 2>&1 &
    perf_pid=$!
    sleep 2  # perf takes a moment to attach to every thread
  fi
  "$BIN" bench kv --endpoints "$ENDPOINTS" --system "$SYSTEM" --pids "$PIDLIST" \
    --data-dirs "$DIRS" --json --max-seconds 300 "${CLIENT_TLS[@]}" "$@" >> "$RESULTS" \
    || echo "  ($SYSTEM $name $* failed)" >&2
  if [ -n "$perf_pid" ]; then
    kill -INT "$perf_pid"; wait "$perf_pid" 2> /dev/null || true
    { echo "### $SYSTEM: the leader during $name with $clients clients, by self time"; echo; echo '```'
      perf report -i "$OUT/$SYSTEM.perf.data" --no-children --sort dso --stdio 2> /dev/null | grep -v '^#' | grep -v '^$' | head -12 || true
      echo
      perf report -i "$OUT/$SYSTEM.perf.data" --no-children --sort sym --stdio 2> /dev/null | grep -v '^#' | grep -v '^$' | head -40 | cut -c1-150 || true
      echo '```'; echo; } >> "$OUT/profile.md"
  fi
}

# checkperf: etcdctl's own check against the running cluster, when KV_VS_ETCD_ONLY names it.
checkperf() {
  if [[ ",$ONLY," != *",checkperf,"* ]]; then return 0; fi
  local load="${KV_VS_ETCD_PERF_LOAD:-xl}" ctl=()
  [ "${#CLIENT_TLS[@]}" -gt 0 ] && ctl=("--cacert=${CLIENT_TLS[1]}" "--cert=${CLIENT_TLS[3]}" "--key=${CLIENT_TLS[5]}")
  echo "  $SYSTEM: etcdctl check perf --load=$load" >&2
  { echo "### $SYSTEM: etcdctl check perf --load=$load --auto-compact --auto-defrag"; echo; echo '```'
    ETCDCTL_API=3 timeout 600 etcdctl --endpoints="$ENDPOINTS" "${ctl[@]}" --command-timeout=60s \
      check perf --load="$load" --auto-compact --auto-defrag 2>&1 | tr '\r' '\n' | grep -v '^ *[0-9]* / [0-9]* \|^$' || echo "(exit status $?)"
    echo '```'; echo; } >> "$OUT/checkperf.md"
}

for MODE in $MODES; do
for SYS in etcd flotilla; do
  SYSTEM="$SYS"
  [ "$MODE" = tls ] && SYSTEM="$SYS+tls"
  dir="$OUT/$SYSTEM"
  rm -rf "$dir"; mkdir -p "$dir"
  start_cluster "$SYS" "$dir" "$MODE"
  checkperf
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
done

python3 - "$RESULTS" "$ETCD_VERSION" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
print(f"Machine: {open('/proc/cpuinfo').read().count('processor')} cores; etcd: {sys.argv[2]}\n")
def tls(r):
    return r["system"].endswith("+tls")
def key(r):
    return (r["workload"], r["name"] + (" (mTLS)" if tls(r) else ""), r["clients"], r["conns"], r["target"], r["serializable"])
by = {}
order = []
for r in rows:
    k = key(r)
    if k not in by:
        by[k] = {}
        order.append(k)
    by[k][r["system"].removesuffix("+tls")] = r
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
        print("| measure | clients | conns | target | etcd ops/s | flotilla ops/s | ratio | etcd p50 / p99 | flotilla p50 / p99 | p99 ratio | etcd peak RSS | flotilla peak RSS | server CPU µs/op e/f | client CPU µs/op e/f | errors e/f |")
        print("|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    e, f = by[k].get("etcd"), by[k].get("flotilla")
    g = lambda r, *p: None if r is None else (r[p[0]] if len(p) == 1 else r[p[0]][p[1]])
    lat = lambda r: "-" if r is None else f"{r['latency']['p50_ms']:.2f} / {r['latency']['p99_ms']:.2f} ms"
    rss = lambda r: "-" if r is None or r.get("peak_rss_mib") is None else f"{r['peak_rss_mib']:.0f} MiB" + (f" ({r['disk_mib']:.0f} MiB disk)" if r.get("disk_mib") else "")
    us = lambda r, field: "-" if r is None or r.get(field) is None else f"{r[field] * 1000:,.0f}"
    cpu = lambda field: f"{us(e, field)} / {us(f, field)}"
    print(f"| {name} | {clients} | {conns} | {target} | {fmt(g(e, 'ops_per_sec'))} | {fmt(g(f, 'ops_per_sec'))} | {ratio(g(f, 'ops_per_sec'), g(e, 'ops_per_sec'))} | {lat(e)} | {lat(f)} | {ratio(g(f, 'latency', 'p99_ms'), g(e, 'latency', 'p99_ms'))} | {rss(e)} | {rss(f)} | {cpu('server_cpu_ms_per_op')} | {cpu('client_cpu_ms_per_op')} | {g(e, 'errors')}/{g(f, 'errors')} |")
PY
[ -s "$OUT/checkperf.md" ] && { echo; cat "$OUT/checkperf.md"; }
[ -s "$OUT/profile.md" ] && { echo; cat "$OUT/profile.md"; }
exit 0
