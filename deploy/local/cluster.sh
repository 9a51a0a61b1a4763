#!/usr/bin/env bash
# A local kyso cluster on 127.0.0.1, one process per node, for trying and testing.
#
#   deploy/local/cluster.sh [--port-base B] up N   start N nodes (3 or 5), creating keys and configs once
#   deploy/local/cluster.sh down         stop every node (SIGTERM)
#   deploy/local/cluster.sh status       each node's view of the cluster
#   deploy/local/cluster.sh kill I       SIGKILL node I
#   deploy/local/cluster.sh restart I    start node I again (after kill or down)
#
# Node I listens on gRPC 127.0.0.1:B+10+I, HTTP B+90+I, Raft B+110+I; the port base B is
# 7400 unless `--port-base B` or KYSO_PORT_BASE says otherwise (two users on one machine
# pick two bases). `up` remembers it in run/port-base for the other commands. State, logs
# and pid files live in deploy/local/run/ (override with KYSO_LOCAL_DIR). The binary is
# target/release/kyso unless KYSO_BIN names another.
#
# Clients use mutual TLS with run/shared/tls/ (CA ca.pem). Each client certificate that
# init-keys writes gets its role: client.pem/client.key is the operator (admin, clerk,
# signer, verifier, every agency and signer); clerk.pem is a clerk of the agencies in
# KYSO_LOCAL_AGENCIES (default xa-demo, comma-separated); signer.pem may act as any signer
# (each signer still signs only for its own agencies); verifier.pem may verify in bulk.
# Export KYSO_CA, KYSO_CERT and KYSO_KEY as `up` prints. Nodes talk mutual TLS on the peer
# port too, with node-I.pem from the same cluster CA.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
run="${KYSO_LOCAL_DIR:-$here/run}"
bin="${KYSO_BIN:-$root/target/release/kyso}"

if [[ "${1:-}" == "--port-base" ]]; then
  KYSO_PORT_BASE="${2:?--port-base takes a number}"
  shift 2
fi
if [[ -z "${KYSO_PORT_BASE:-}" && -f "$run/port-base" ]]; then
  KYSO_PORT_BASE="$(cat "$run/port-base")"
fi
port_base="${KYSO_PORT_BASE:-7400}"
[[ "$port_base" =~ ^[0-9]+$ ]] && ((port_base >= 1024 && port_base <= 65000)) \
  || { echo "the port base must be a number from 1024 to 65000, not '$port_base'" >&2; exit 2; }

grpc_port() { echo $((port_base + 10 + $1)); }
http_port() { echo $((port_base + 90 + $1)); }
raft_port() { echo $((port_base + 110 + $1)); }

# One [[access.principals]] grant of a client certificate init-keys wrote.
principal() { # certificate name, person, roles, agencies, signers (TOML arrays' insides)
  cat <<TOML

[[access.principals]]
certificate_sha256 = "$("$bin" tls fingerprint "$run/shared/tls/$1.pem")"
name = "$2"
roles = [$3]
agency_ids = [$4]
signer_ids = [$5]
TOML
}

ensure_binary() {
  if [[ ! -x "$bin" ]]; then
    (cd "$root" && cargo build --release --bin kyso)
  fi
}

write_config() { # node count
  local i=$1 n=$2 members="" agencies
  agencies="$(echo "${KYSO_LOCAL_AGENCIES:-xa-demo}" | sed 's/[^,][^,]*/"&"/g')"
  for j in $(seq 1 "$n"); do
    members+="  { id = $j, raft_addr = \"127.0.0.1:$(raft_port "$j")\", client_addr = \"127.0.0.1:$(grpc_port "$j")\" },"$'\n'
  done
  mkdir -p "$run/node$i"
  cat > "$run/node$i/kyso.toml" <<TOML
data_dir = "data"
grpc_addr = "127.0.0.1:$(grpc_port "$i")"
http_addr = "127.0.0.1:$(http_port "$i")"
master_key_file = "$run/shared/master.key"
log_key_file = "$run/shared/log.key"
trust_anchor_files = ["$run/shared/dev-pki/ca.pem"]
public_base_url = "http://127.0.0.1:$(http_port "$i")"

[tls]
cert_file = "$run/shared/tls/node-$i.pem"
key_file = "$run/shared/tls/node-$i.key"
client_ca_files = ["$run/shared/tls/client-ca.pem"]
cluster_ca_file = "$run/shared/tls/ca.pem"
$(principal client "local cluster operator" '"admin", "clerk", "signer", "verifier"' '"*"' '"*"')
$(principal clerk "local cluster clerk" '"clerk"' "$agencies" '')
$(principal signer "local cluster signer" '"signer"' '' '"*"')
$(principal verifier "local cluster verifier" '"verifier"' '' '')

# Every node runs the same dev TSA certificate; serials carry the node id (README.md, "Time stamps").
[tsa]
cert_file = "$run/shared/dev-pki/tsa.pem"
key_file = "$run/shared/dev-pki/tsa.key"

[cluster]
node_id = $i
raft_addr = "127.0.0.1:$(raft_port "$i")"
members = [
$members]
TOML
}

start_node() { # node
  local i=$1
  [[ -f "$run/node$i/kyso.toml" ]] || { echo "node $i has no config; run 'up N' first" >&2; exit 1; }
  if [[ -f "$run/node$i/pid" ]] && kill -0 "$(cat "$run/node$i/pid")" 2>/dev/null; then
    echo "node $i already running (pid $(cat "$run/node$i/pid"))"; return
  fi
  KYSO_LOG="${KYSO_LOG:-info}" nohup "$bin" node --config "$run/node$i/kyso.toml" >"$run/node$i/stdout.log" 2>"$run/node$i/stderr.log" &
  echo $! > "$run/node$i/pid"
  echo "node $i started (pid $!) grpc 127.0.0.1:$(grpc_port "$i")"
}

case "${1:-}" in
  up)
    n="${2:-3}"
    [[ "$n" == 3 || "$n" == 5 ]] || { echo "up takes 3 or 5" >&2; exit 2; }
    ensure_binary
    mkdir -p "$run"
    echo "$port_base" > "$run/port-base"
    "$bin" init-keys --dir "$run/shared" >/dev/null
    for i in $(seq 1 "$n"); do
      [[ -f "$run/node$i/kyso.toml" ]] || write_config "$i" "$n"
      start_node "$i"
    done
    echo "for 'kyso signer add': --signer-cert $run/shared/dev-pki/signer.pem --private-key $run/shared/dev-pki/signer.key"
    echo "export KYSO_CA=$run/shared/tls/ca.pem KYSO_CERT=$run/shared/tls/client.pem KYSO_KEY=$run/shared/tls/client.key KYSO_SERVER=https://127.0.0.1:$(grpc_port 1)"
    ;;
  down)
    for pidfile in "$run"/node*/pid; do
      [[ -f "$pidfile" ]] || continue
      kill -TERM "$(cat "$pidfile")" 2>/dev/null || true
      rm -f "$pidfile"
    done
    ;;
  status)
    ensure_binary
    for dir in "$run"/node*; do
      i="${dir##*node}"
      echo "--- node $i"
      "$bin" cluster status --server "https://127.0.0.1:$(grpc_port "$i")" --ca "$run/shared/tls/ca.pem" \
        --cert "$run/shared/tls/client.pem" --key "$run/shared/tls/client.key" || true
    done
    ;;
  kill)
    i="${2:?node number}"
    kill -KILL "$(cat "$run/node$i/pid")" && rm -f "$run/node$i/pid" && echo "node $i killed"
    ;;
  restart)
    i="${2:?node number}"
    ensure_binary
    if [[ -f "$run/node$i/pid" ]]; then kill -TERM "$(cat "$run/node$i/pid")" 2>/dev/null || true; rm -f "$run/node$i/pid"; sleep 1; fi
    start_node "$i"
    ;;
  *)
    sed -n '2,22p' "$0"; exit 2 ;;
esac
