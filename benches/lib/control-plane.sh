# Sourced by the benchmark scripts: a single-member kvstore and one apiserver from the
# release binary, on free loopback ports, data in $dir (the caller's temporary directory),
# pids appended to the caller's `pids` array. Sets KUBECONFIG.
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

start_control_plane() {
  local kv peer api
  kv=$(port); peer=$(port); api=$(port)
  "$BIN" kvstore --name b1 --data-dir "$dir/kv" \
    --listen-client-urls "http://127.0.0.1:$kv" --advertise-client-urls "http://127.0.0.1:$kv" \
    --listen-peer-urls "http://127.0.0.1:$peer" --initial-advertise-peer-urls "http://127.0.0.1:$peer" \
    --initial-cluster "b1=http://127.0.0.1:$peer" --initial-cluster-state new >"$dir/kv.log" 2>&1 &
  pids+=($!)
  "$BIN" apiserver --etcd-servers "http://127.0.0.1:$kv" --bind-address 127.0.0.1 --secure-port "$api" \
    --cert-dir "$dir/pki" --write-kubeconfig "$dir/kubeconfig" >"$dir/api.log" 2>&1 &
  pids+=($!)
  export KUBECONFIG="$dir/kubeconfig"
  for _ in $(seq 1 120); do
    [ -f "$KUBECONFIG" ] && kubectl get --raw /readyz >/dev/null 2>&1 && return 0
    sleep 0.5
  done
  echo "the apiserver did not become ready; its log:" >&2
  tail -20 "$dir/api.log" >&2
  return 1
}
