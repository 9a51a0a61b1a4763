#!/usr/bin/env bash
# The benchmark's kyso clusters: real `kyso node` processes on 127.0.0.1 in a directory of
# their own, trusting the benchmark's CA (deploy/local/cluster.sh is the one to try kyso by
# hand; this one serves scripts/bench.sh).
#
#   deploy/local/bench-nodes.sh start --nodes N --dir DIR --ca CA.pem [--kyso BIN]
#   deploy/local/bench-nodes.sh stop --dir DIR
#
# One node runs standalone on ephemeral ports. N > 1 nodes form a Raft cluster on fixed
# ports from BENCH_CLUSTER_PORT_BASE (default 46000): node i takes base+10i (gRPC), +1
# (HTTP), +2 (Raft), and all share one master key and log key (`kyso init-keys`). Clients
# and peers use mutual TLS with the development certificates in DIR/shared/tls (the
# generator reads KYSO_CA, KYSO_CERT, KYSO_KEY: ca.pem, client.pem, client.key). `start`
# waits until each node prints its addresses, then writes one gRPC URL per line to
# DIR/servers.txt and each process id to DIR/pids/kyso-<pid>.pid. `stop` sends SIGTERM to
# exactly those process ids and waits for them. Nothing else is ever signalled.
set -euo pipefail

NODE_START_SECONDS_MAX=120
NODE_STOP_SECONDS_MAX=30

usage() {
  sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'
  exit 2
}

port() { # node, offset
  echo $((${BENCH_CLUSTER_PORT_BASE:-46000} + 10 * $1 + $2))
}

# TLS, the operator's grant, and per-client limits lifted: every benchmark client
# presents the same certificate from 127.0.0.1.
security_config() { # dir, kyso, node index (each member has its own certificate)
  local dir=$1 kyso=$2 index=$3
  cat <<CONFIG
[tls]
cert_file = "$dir/shared/tls/node-$index.pem"
key_file = "$dir/shared/tls/node-$index.key"
client_ca_files = ["$dir/shared/tls/client-ca.pem"]
cluster_ca_file = "$dir/shared/tls/ca.pem"

[[access.principals]]
certificate_sha256 = "$("$kyso" tls fingerprint "$dir/shared/tls/client.pem")"
name = "benchmark operator"
roles = ["admin", "clerk", "signer", "verifier"]
agency_ids = ["*"]
signer_ids = ["*"]

# The load generator is one client certificate standing for many agency systems: its
# per-client bounds are lifted, so that 256 closed-loop clients on one node are not refused
# by the bound meant for one system (128 calls in flight by default).
[limits]
client_requests_per_second_max = 1000000
calls_in_flight_per_client_max = 4096
CONFIG
}

node_config() {
  local index=$1 nodes=$2 dir=$3 ca=$4 kyso=$5
  if ((nodes == 1)); then
    cat <<CONFIG
data_dir = "data"
grpc_addr = "127.0.0.1:0"
http_addr = "127.0.0.1:0"
trust_anchor_files = ["$ca"]

$(security_config "$dir" "$kyso" "$index")
CONFIG
    return
  fi
  local members=""
  for ((member = 1; member <= nodes; member++)); do
    members+="  { id = $member, raft_addr = \"127.0.0.1:$(port "$member" 2)\", client_addr = \"127.0.0.1:$(port "$member" 0)\" },"$'\n'
  done
  cat <<CONFIG
data_dir = "data"
grpc_addr = "127.0.0.1:$(port "$index" 0)"
http_addr = "127.0.0.1:$(port "$index" 1)"
master_key_file = "$dir/shared/master.key"
log_key_file = "$dir/shared/log.key"
trust_anchor_files = ["$ca"]

$(security_config "$dir" "$kyso" "$index")

[cluster]
node_id = $index
raft_addr = "127.0.0.1:$(port "$index" 2)"
members = [
$members]
CONFIG
}

start() {
  local nodes=1 dir="" ca="" kyso="${KYSO_BIN:-}"
  while (($#)); do
    case $1 in
      --nodes) nodes=$2; shift 2 ;;
      --dir) dir=$2; shift 2 ;;
      --ca) ca=$2; shift 2 ;;
      --kyso) kyso=$2; shift 2 ;;
      *) usage ;;
    esac
  done
  [[ -n $dir && -n $ca ]] || usage
  [[ -n $kyso ]] || kyso=$(command -v kyso || true)
  [[ -x $kyso ]] || { echo "no kyso binary: pass --kyso PATH (e.g. target/release/kyso)" >&2; exit 1; }
  ca=$(realpath "$ca")
  mkdir -p "$dir/pids"
  dir=$(realpath "$dir")
  if ((nodes > 1)); then
    for ((index = 1; index <= nodes; index++)); do
      for offset in 0 1 2; do
        if ss -ltn "sport = :$(port "$index" "$offset")" | grep -q LISTEN; then
          echo "port $(port "$index" "$offset") is taken; set BENCH_CLUSTER_PORT_BASE" >&2
          exit 1
        fi
      done
    done
  fi
  "$kyso" init-keys --dir "$dir/shared" >/dev/null
  : >"$dir/servers.txt"
  for ((index = 1; index <= nodes; index++)); do
    local node_dir="$dir/node$index"
    mkdir -p "$node_dir"
    node_config "$index" "$nodes" "$dir" "$ca" "$kyso" >"$node_dir/kyso.toml"
    KYSO_LOG=${KYSO_LOG:-warn} "$kyso" node --config "$node_dir/kyso.toml" >"$node_dir/stdout.log" 2>"$node_dir/stderr.log" &
    local pid=$!
    echo "$pid" >"$dir/pids/kyso-$pid.pid"
    local waited=0
    until grep -q '^kyso node listening' "$node_dir/stdout.log" 2>/dev/null; do
      if ! kill -0 "$pid" 2>/dev/null; then
        echo "node $index exited; its log:" >&2
        cat "$node_dir/stderr.log" >&2
        exit 1
      fi
      if ((waited >= NODE_START_SECONDS_MAX * 10)); then
        echo "node $index did not start within ${NODE_START_SECONDS_MAX} s" >&2
        exit 1
      fi
      sleep 0.1
      waited=$((waited + 1))
    done
    local grpc
    grpc=$(grep -m1 '^kyso node listening' "$node_dir/stdout.log" | sed -E 's/.*grpc=([^ ]+).*/\1/')
    echo "https://$grpc" >>"$dir/servers.txt"
    echo "node $index: pid $pid, grpc https://$grpc"
  done
}

stop() {
  local dir=""
  while (($#)); do
    case $1 in
      --dir) dir=$2; shift 2 ;;
      *) usage ;;
    esac
  done
  [[ -n $dir ]] || usage
  shopt -s nullglob
  for pid_file in "$dir"/pids/kyso-*.pid; do
    local pid
    pid=$(cat "$pid_file")
    if kill -0 "$pid" 2>/dev/null; then
      kill -TERM "$pid" 2>/dev/null || true
      for ((waited = 0; waited < NODE_STOP_SECONDS_MAX * 10; waited++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
      done
      kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$pid_file"
  done
}

case ${1:-} in
  start) shift; start "$@" ;;
  stop) shift; stop "$@" ;;
  *) usage ;;
esac
