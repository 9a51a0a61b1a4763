#!/usr/bin/env bash
# Issue 16 item 4: a new member joins a 3-node cluster that holds a bulk-loaded state, through
# a streamed Raft snapshot. A bulk-loaded directory has no Raft log, so `kyso-bench
# seed-cluster` makes it the founding voter of a new cluster (what `kyso restore --node-id`
# does with a backup), then nodes 2, 3 and 4 join with `join = true` and
# `kyso cluster add`, each one receiving the whole state as a snapshot. For each join:
# seconds from AddNode to promoted voter, bytes the leader sent (its
# kyso_raft_snapshot_sent_bytes_total), peak RSS (VmHWM) of the leader and of the joiner,
# and the leader's term before and after (no election during the transfer).
#
#   catchup.sh SRC OUT      SRC: a stopped bulk-loaded run dir (kyso.toml, data/, tls/)
# SRC's data directory is modified (it gets a Raft log): pass a copy. PORT_BASE (47000).
set -uo pipefail
SRC=$(realpath "$1"); OUT=$2
BIN=${BIN:-/work/bench-qr/bin}
BASE=${PORT_BASE:-47000}
JOIN_SECONDS_MAX=${JOIN_SECONDS_MAX:-7200}
mkdir -p "$OUT"; OUT=$(realpath "$OUT")
RES=$OUT/results.jsonl
log() { echo "$(date -u +%FT%TZ) $*" | tee -a "$OUT/catchup.log"; }
grpc_port() { echo $((BASE + 10 * $1)); }
http_port() { echo $((BASE + 10 * $1 + 1)); }
raft_port() { echo $((BASE + 10 * $1 + 2)); }
metrics_port() { echo $((BASE + 10 * $1 + 3)); }
secs() { printf "%.3f" "$(echo "$2 - $1" | bc)"; }
pids=()
cleanup() { for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null; done; for p in "${pids[@]}"; do stop_pid "$p"; done; }
trap cleanup EXIT

wait_listening() { # pid stdout-file -> prints grpc addr
  local pid=$1 out=$2
  for _ in $(seq 1 6000); do
    grep -q '^kyso node listening' "$out" 2>/dev/null && { grep -m1 '^kyso node listening' "$out" | sed -E 's/.*grpc=([^ ]+).*/\1/'; return 0; }
    kill -0 "$pid" 2>/dev/null || return 1
    sleep 0.1
  done
  return 1
}
stop_pid() { kill -TERM "$1" 2>/dev/null; for _ in $(seq 1 600); do kill -0 "$1" 2>/dev/null || return 0; sleep 0.1; done; kill -KILL "$1" 2>/dev/null; }
hwm() { awk '/VmHWM/{print $2*1024}' "/proc/$1/status" 2>/dev/null; }
rss() { awk '/VmRSS/{print $2*1024}' "/proc/$1/status" 2>/dev/null; }

# ---- 1. the bulk-loaded directory becomes node 1 of a new cluster ----------------------
# Bulk-loaded fillers name documents whose bytes exist nowhere, so the members share one
# S3 bucket (s3s-fs) instead of per-node storage: AddNode then waits for the log only, not
# for blobs that cannot be fetched. `kyso backup` would refuse the same missing blobs.
records=$(python3 -c "import json;print(json.load(open('$SRC/data/bench-load.json'))['records'])")
mkdir -p "$OUT/s3/kyso"
S3_PORT=$((BASE + 5))
"${S3S_FS:-$HOME/.cache/kyso-tools/bin/s3s-fs}" --host 127.0.0.1 --port "$S3_PORT" --access-key kyso-bench-access --secret-key kyso-bench-secret-0123456789 "$OUT/s3" > "$OUT/s3.log" 2>&1 &
pids+=("$!")
export AWS_ACCESS_KEY_ID=kyso-bench-access AWS_SECRET_ACCESS_KEY=kyso-bench-secret-0123456789
t0=$(date +%s.%N)
"${BENCH:-$BIN/kyso-bench}" seed-cluster --data-dir "$SRC/data" --node-id 1 --raft-addr "127.0.0.1:$(raft_port 1)" --client-addr "127.0.0.1:$(grpc_port 1)" >> "$RES" \
  || { log "seed-cluster failed"; exit 1; }
t1=$(date +%s.%N); seed_s=$(secs $t0 $t1)
log "$records records in $SRC seeded as node 1 in ${seed_s} s"
"$BIN/kyso" init-keys --dir "$OUT/shared" > /dev/null
fingerprint=$("$BIN/kyso" tls fingerprint "$OUT/shared/tls/client.pem")
anchor=$(sed -n 's/^trust_anchor_files = \(.*\)$/\1/p' "$SRC/kyso.toml")
origin=$(sed -n 's/^log_origin = \(.*\)$/\1/p' "$SRC/kyso.toml")
node_config() { # id, join (true/false)
  local i=$1 join=$2 members=""
  [[ $join = false ]] && members="  { id = 1, raft_addr = \"127.0.0.1:$(raft_port 1)\", client_addr = \"127.0.0.1:$(grpc_port 1)\" },"
  mkdir -p "$OUT/node$i"
  cat > "$OUT/node$i/kyso.toml" <<TOML
data_dir = "$( ((i == 1)) && echo "$SRC/data" || echo "$OUT/node$i/data")"
grpc_addr = "127.0.0.1:$(grpc_port "$i")"
http_addr = "127.0.0.1:$(http_port "$i")"
metrics_addr = "127.0.0.1:$(metrics_port "$i")"
master_key_file = "$SRC/data/master.key"
log_key_file = "$SRC/data/log.key"
log_origin = $origin
trust_anchor_files = $anchor

[storage]
kind = "s3"
endpoint = "http://127.0.0.1:$S3_PORT"
bucket = "kyso"
region = "us-east-1"
allow_http = true

[tls]
cert_file = "$OUT/shared/tls/node-$i.pem"
key_file = "$OUT/shared/tls/node-$i.key"
client_ca_files = ["$OUT/shared/tls/client-ca.pem"]
cluster_ca_file = "$OUT/shared/tls/ca.pem"

[[access.principals]]
certificate_sha256 = "$fingerprint"
name = "benchmark operator"
roles = ["admin", "clerk", "signer", "verifier"]
agency_ids = ["*"]
signer_ids = ["*"]

[cluster]
node_id = $i
raft_addr = "127.0.0.1:$(raft_port "$i")"
join = $join
members = [
$members
]
TOML
}
declare -A node_pid
start_node() { # id
  local i=$1
  KYSO_LOG=${KYSO_LOG:-warn} "$BIN/kyso" node --config "$OUT/node$i/kyso.toml" > "$OUT/node$i/stdout.log" 2> "$OUT/node$i/stderr.log" &
  node_pid[$i]=$!; pids+=("$!")
  wait_listening "$!" "$OUT/node$i/stdout.log" > /dev/null || { log "node $i did not start"; tail -20 "$OUT/node$i/stderr.log"; exit 1; }
}
cli() { "$BIN/kyso" cluster "$@" --ca "$OUT/shared/tls/ca.pem" --cert "$OUT/shared/tls/client.pem" --key "$OUT/shared/tls/client.key"; }
status_json() { cli status --server "https://127.0.0.1:$(grpc_port "$1")" --json 2>/dev/null; }
field() { python3 -c "import json,sys;print(json.load(sys.stdin)['$1'])"; }
sent_bytes() { curl -s "http://127.0.0.1:$(metrics_port 1)/metrics" | awk '/^kyso_raft_snapshot_sent_bytes_total/{print $2}'; }

node_config 1 false
t0=$(date +%s.%N); start_node 1; t1=$(date +%s.%N)
log "node 1 (seeded) listening after $(secs $t0 $t1) s, pid ${node_pid[1]}"
for _ in $(seq 1 600); do [[ $(status_json 1 | field role) = leader ]] && break; sleep 0.2; done

# ---- 3. nodes 2, 3, 4 join, each through a streamed snapshot ----------------------------
for j in 2 3 4; do
  node_config "$j" true
  start_node "$j"
  term0=$(status_json 1 | field term); sent0=$(sent_bytes); sent0=${sent0:-0}
  log "node $j started (pid ${node_pid[$j]}); adding it; leader term $term0, snapshot bytes sent so far $sent0"
  t0=$(date +%s.%N); deadline=$(( $(date +%s) + JOIN_SECONDS_MAX )); joined=no; leader_hwm=0; joiner_hwm=0; max_term=$term0; adds=0
  while (( $(date +%s) < deadline )); do
    adds=$((adds + 1))
    if cli add --server "https://127.0.0.1:$(grpc_port 1)" --id "$j" --raft-addr "127.0.0.1:$(raft_port "$j")" --client-addr "127.0.0.1:$(grpc_port "$j")" > "$OUT/node$j/add.out" 2> "$OUT/node$j/add.err"; then
      joined=yes; break
    fi
    term=$(status_json 1 | field term 2>/dev/null); [[ -n $term ]] && (( term > max_term )) && max_term=$term
    grep -q "DeadlineExceeded\|timed out" "$OUT/node$j/add.err" || { log "add of node $j refused: $(tail -2 "$OUT/node$j/add.err")"; sleep 2; }
  done
  t1=$(date +%s.%N)
  term1=$(status_json 1 | field term); sent1=$(sent_bytes); sent1=${sent1:-0}
  (( term1 > max_term )) && max_term=$term1
  leader_hwm=$(hwm "${node_pid[1]}"); joiner_hwm=$(hwm "${node_pid[$j]}")
  applied_leader=$(status_json 1 | field applied_index); applied_joiner=$(status_json "$j" | field applied_index)
  secs=$(secs $t0 $t1)
  log "node $j joined=$joined in $secs s ($adds add calls); snapshot bytes sent $((sent1 - sent0)); leader peak RSS $leader_hwm, joiner peak RSS $joiner_hwm; term $term0 -> $term1 (max seen $max_term); applied leader $applied_leader joiner $applied_joiner"
  echo "{\"kind\":\"catchup\",\"records\":$records,\"joiner\":$j,\"voters_before\":$((j - 1)),\"joined\":\"$joined\",\"seconds\":$secs,\"add_calls\":$adds,\"snapshot_sent_bytes\":$((sent1 - sent0)),\"leader_peak_rss_bytes\":${leader_hwm:-0},\"joiner_peak_rss_bytes\":${joiner_hwm:-0},\"joiner_rss_bytes\":$(rss "${node_pid[$j]}"),\"term_before\":$term0,\"term_after\":$term1,\"term_max_seen\":$max_term,\"state_bytes_joiner\":$(stat -c %s "$OUT/node$j/data/state.redb")}" >> "$RES"
  [[ $joined = yes ]] || exit 1
done
for i in 1 2 3 4; do cli digest --server "https://127.0.0.1:$(grpc_port "$i")" 2>&1 | sed "s/^/node $i: /" | tee -a "$OUT/catchup.log"; done
log "done"
