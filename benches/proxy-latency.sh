#!/usr/bin/env bash
# Network programming latency of `flotilla proxy` in a live control plane: from a client's
# write of an EndpointSlice change to the apiserver, to the kernel forwarding the
# Service's cluster IP accordingly, seen by connecting to it. N ClusterIP Services
# (default "1000 10000") with one endpoint each; one of them, `probe`, has its endpoint on
# a veth link of the bench's own (10.250.0.1), moved between a port with a listener
# (connections succeed) and one without (refused). Each sample PATCHes the probe's
# EndpointSlice and polls connect() to the cluster IP every millisecond until the new
# behaviour shows; samples are spaced at random within 1.5 s (the proxy's
# --min-sync-period is 1 s, kube-proxy's default, so a change may wait for it).
#
#   sudo benches/proxy-latency.sh     (PROXY_LATENCY_SERVICES="1000 10000",
#                                      PROXY_LATENCY_SAMPLES=40, PROXY_MIN_SYNC=1s)
#
# Root (nft, a veth pair); a release build. The proxy's table, the link and every
# process are removed at exit.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN="${CARGO_TARGET_DIR:-target}/release/flotilla"
SIZES="${PROXY_LATENCY_SERVICES:-1000 10000}"
SAMPLES="${PROXY_LATENCY_SAMPLES:-40}"
MIN_SYNC="${PROXY_MIN_SYNC:-1s}"
TABLE=flotilla-proxy-latency
LINK=flbench0
[ "$(id -u)" = 0 ] || { echo "needs root (nft, ip link)" >&2; exit 1; }
[ -x "$BIN" ] || { echo "$BIN: build it first (cargo build --release --bin flotilla)" >&2; exit 1; }

dir=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  nft delete table ip "$TABLE" 2>/dev/null || true
  ip link del "$LINK" 2>/dev/null || true
  rm -rf "$dir"
}
trap cleanup EXIT

# A veth pair of its own holds the endpoint's address (no dummy links on every kernel).
ip link add "$LINK" type veth peer name "${LINK}p"
ip addr add 10.250.0.1/32 dev "$LINK"
ip link set "$LINK" up
ip link set "${LINK}p" up
# The live port: accepts and closes.
python3 -c '
import socket
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("10.250.0.1", 9001)); s.listen(128)
while True:
    c, _ = s.accept(); c.close()
' &
pids+=($!)

. benches/lib/control-plane.sh
echo "| Services | samples | p50 ms | p90 ms | p99 ms | max ms |"
echo "|---:|---:|---:|---:|---:|---:|"
for n in $SIZES; do
  for p in "${pids[@]:1}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]:1}"; do wait "$p" 2>/dev/null || true; done
  pids=("${pids[0]}")
  nft delete table ip "$TABLE" 2>/dev/null || true
  rm -rf "$dir/kv" "$dir/pki" "$dir/kubeconfig"
  start_control_plane
  echo "creating $n Services and EndpointSlices ..." >&2
  python3 - "$n" "$dir" <<'PY'
import json, sys
n, d = int(sys.argv[1]), sys.argv[2]
per = 500
for start in range(0, n, per):
    items = []
    for i in range(start, min(n, start + per)):
        name = "probe" if i == 0 else f"svc-{i}"
        ip = "10.250.0.1" if i == 0 else f"10.251.{(i >> 8) & 255}.{i & 255}"
        items.append({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": "default"},
                      "spec": {"ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}})
        items.append({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                      "metadata": {"name": f"{name}-1", "namespace": "default",
                                   "labels": {"kubernetes.io/service-name": name}},
                      "addressType": "IPv4",
                      "endpoints": [{"addresses": [ip], "conditions": {"ready": True}}],
                      "ports": [{"name": "http", "port": 9001, "protocol": "TCP"}]})
    json.dump({"apiVersion": "v1", "kind": "List", "items": items}, open(f"{d}/objs-{start // per}.json", "w"))
PY
  for f in "$dir"/objs-*.json; do kubectl create --validate=false -f "$f" >/dev/null; done
  rm -f "$dir"/objs-*.json
  "$BIN" proxy --kubeconfig "$KUBECONFIG" --hostname-override bench --table "$TABLE" \
    --secure-port 0 --min-sync-period "$MIN_SYNC" >"$dir/proxy.log" 2>&1 &
  pids+=($!)
  cip=$(kubectl get svc probe -o jsonpath='{.spec.clusterIP}')
  server=$(kubectl config view --raw -o jsonpath='{.clusters[0].cluster.server}')
  token=$(kubectl config view --raw -o jsonpath='{.users[0].user.token}')
  python3 - "$n" "$SAMPLES" "$cip" "$server" "$token" <<'PY'
import json, random, socket, ssl, sys, time, urllib.request
n, samples, cip, server, token = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE

def state():
    s = socket.socket(); s.settimeout(0.2)
    try:
        s.connect((cip, 80)); return "live"
    except ConnectionRefusedError:
        return "dead"
    except OSError:
        return "other"
    finally:
        s.close()

def wait_for(want, limit):
    start = time.monotonic()
    while time.monotonic() - start < limit:
        if state() == want:
            return time.monotonic()
        time.sleep(0.001)
    return None

# The first full sync.
if wait_for("live", 300) is None:
    sys.exit(f"the probe's cluster IP {cip} never forwarded")
url = f"{server}/apis/discovery.k8s.io/v1/namespaces/default/endpointslices/probe-1"
lat = []
rnd = random.Random(7)
for k in range(samples):
    port, want = (9002, "dead") if k % 2 == 0 else (9001, "live")
    time.sleep(rnd.uniform(0, 1.5))
    body = json.dumps({"ports": [{"name": "http", "port": port, "protocol": "TCP"}]}).encode()
    req = urllib.request.Request(url, data=body, method="PATCH", headers={
        "Content-Type": "application/merge-patch+json", "Authorization": f"Bearer {token}"})
    t0 = time.monotonic()
    urllib.request.urlopen(req, context=ctx).read()
    t1 = wait_for(want, 60)
    if t1 is None:
        sys.exit(f"sample {k}: the change to port {port} never showed")
    lat.append((t1 - t0) * 1000)
lat.sort()
q = lambda p: lat[min(len(lat) - 1, int(p * len(lat)))]
print(f"| {n} | {len(lat)} | {q(0.5):.0f} | {q(0.9):.0f} | {q(0.99):.0f} | {lat[-1]:.0f} |")
PY
done
