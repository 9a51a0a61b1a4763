#!/usr/bin/env bash
# Runs every benchmark of BENCHMARKS.md in one go and writes the report:
#
#   scripts/bench.sh [--nodes 1,3] [--out DIR] [--sizes 10000,100000,1000000]
#                    [--clients 1,16,64,256] [--seconds S] [--keep-data] [--quick | --short]
#
# --short prints the four ratios of issue 18 in about three minutes with a warm build:
# 1 node (certify, verify by hash in both views, health check) and 3 nodes (certify,
# verify by code in both views) at 16 then 64 clients, etcd's puts and linearizable gets
# in the same run; no limits, scale
# or criterion steps. The ratios (at 64 clients) go to stdout and DIR/ratios.txt, with the
# cold start of each cluster (below).
#
#  1. the machine's limits: fsyncs/s in the run directory, ring signing per core and on
#     all cores, CMS build and check, SHA-256 bandwidth (kyso-bench limits);
#  2. kyso under load: for each cluster size in --nodes (default 1,3), real `kyso node`
#     processes (deploy/local/bench-nodes.sh; more than one form a Raft cluster): first the
#     cold start (64 clients certify at once on the fresh nodes for 6 s: how soon they
#     reach the steady rate), then certify, verify by hash, verify by lookup code and a
#     gRPC health check at each client count;
#  3. the peer in the same run: Debian's etcd-server (installed when missing), three members
#     on 127.0.0.1 with their defaults (fsync on), puts of one kyso record's size and
#     linearizable gets at the same client counts;
#  4. scale: bulk-load certifications in stages, start a node on the data after each
#     stage, measure verify latency, RSS, bytes per record and start time;
#  5. criterion micro-benchmarks (SHA-256, sign/verify, CMS, Merkle log and state lookups
#     at the scale test's largest size).
#
# Results: DIR/results.jsonl (one JSON object per measurement) and DIR/report.md.
# Every server binds 127.0.0.1 only; every loop is bounded by the flags above; every
# process this script starts is stopped on exit, by its recorded process id.
set -euo pipefail
# Bash reads a script as it runs it: wrapping the body in a function makes it parse the
# whole file first, so editing this file during a run cannot change that run.
main() {
cd "$(dirname "$0")/.."
repo=$(pwd)

nodes=1,3
sizes=10000,100000,1000000
clients=1,16,64,256
seconds=3
warmup_seconds=1
cold_seconds=6
probe_seconds=1
criterion_args=(--warm-up-time 0.5 --measurement-time 1)
out=""
keep_data=false
short=false
while (($#)); do
  case $1 in
    --nodes) nodes=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --sizes) sizes=$2; shift 2 ;;
    --clients) clients=$2; shift 2 ;;
    --seconds) seconds=$2; shift 2 ;;
    --keep-data) keep_data=true; shift ;;
    --quick)
      # A smoke run of every step in about two minutes; its numbers are not the report's.
      sizes=2000,10000; clients=1,16; seconds=1; warmup_seconds=0.5; probe_seconds=0.3; cold_seconds=3
      criterion_args=(--warm-up-time 0.2 --measurement-time 0.3 --sample-size 10)
      export KYSO_BENCH_TLOG_LEAVES=100000
      shift ;;
    --short)
      short=true; nodes=1,3; clients=16,64; seconds=3; warmup_seconds=1
      shift ;;
    *) sed -n '2,4p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
  esac
done

target_dir=${CARGO_TARGET_DIR:-$repo/target}
out=${out:-$target_dir/bench-results/$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$out"
out=$(realpath "$out")
results=$out/results.jsonl
: >"$results"
began=$(date +%s)
step() { echo "== [$(($(date +%s) - began)) s] $*" >&2; }

# ---- cleanup: exactly the processes this script started ----------------------------------
etcd_pids=()
cleanup() {
  "$repo/deploy/local/bench-nodes.sh" stop --dir "$out/cluster" 2>/dev/null || true
  shopt -s nullglob
  for pid_file in "$out"/pids/*.pid; do
    kill -TERM "$(cat "$pid_file")" 2>/dev/null || true
    rm -f "$pid_file"
  done
  for pid in "${etcd_pids[@]}"; do
    kill -TERM "$pid" 2>/dev/null || true
  done
  for pid in "${etcd_pids[@]}"; do
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  done
  etcd_pids=()
}
trap cleanup EXIT INT TERM

# ---- tools --------------------------------------------------------------------------------
missing=()
command -v etcd >/dev/null || missing+=(etcd-server)
command -v etcdctl >/dev/null || missing+=(etcd-client)
command -v openssl >/dev/null || missing+=(openssl)
if ((${#missing[@]})); then
  step "installing ${missing[*]} (Debian)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

step "building kyso and kyso-bench (release)"
cargo build --release -q -p kyso -p kyso-bench
bin=$target_dir/release
kyso_bench=$bin/kyso-bench

{
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet 2>/dev/null || echo ' (with local changes)')"
  echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//') × $(nproc)"
  echo "memory: $(free -g | awk '/Mem:/ {print $2}') GiB"
  echo "kernel: $(uname -r)"
  echo "filesystem of $out: $(df -T "$out" | awk 'NR == 2 {print $2 " on " $1}')"
  echo "rustc: $(rustc --version)"
  echo "etcd: $(etcd --version | head -1)"
  echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
} >"$out/machine.txt"
cat "$out/machine.txt" >&2

# ---- 1. limits ------------------------------------------------------------------------------
if ! $short; then
  step "limits: fsync, signing, SHA-256"
  "$kyso_bench" limits --dir "$out/limits" --seconds-per-probe "$probe_seconds" >>"$results"
fi
"$kyso_bench" record-size >>"$results"
record_bytes=$("$kyso_bench" record-size --bytes-only)

# ---- 2. kyso under load ----------------------------------------------------------------------
"$kyso_bench" pki --out "$out/pki"
for cluster_nodes in ${nodes//,/ }; do
  step "kyso: $cluster_nodes-node cluster, certify and verify at $clients clients"
  rm -rf "$out/cluster"
  "$repo/deploy/local/bench-nodes.sh" start --nodes "$cluster_nodes" --dir "$out/cluster" --ca "$out/pki/ca.pem" --kyso "$bin/kyso" >&2
  # certify-cold first: the nodes and the signer's key are fresh.
  ops=certify-cold,certify,verify-hash,verify-code,verify-hash-summary,verify-code-summary,health
  if $short; then
    ((cluster_nodes == 1)) && ops=certify-cold,certify,verify-hash,verify-hash-summary,health || ops=certify-cold,certify,verify-code,verify-code-summary
  fi
  servers=()
  while read -r url; do servers+=(--server "$url"); done <"$out/cluster/servers.txt"
  KYSO_CA="$out/cluster/shared/tls/ca.pem" KYSO_CERT="$out/cluster/shared/tls/client.pem" \
    KYSO_KEY="$out/cluster/shared/tls/client.key" "$kyso_bench" kyso "${servers[@]}" --pki "$out/pki" --nodes "$cluster_nodes" --clients "$clients" --ops "$ops" \
    --seconds "$seconds" --warmup-seconds "$warmup_seconds" --cold-seconds "$cold_seconds" >>"$results"
  "$repo/deploy/local/bench-nodes.sh" stop --dir "$out/cluster"
done

# ---- 3. etcd, the peer ----------------------------------------------------------------------
step "etcd: 3 members, puts of $record_bytes bytes and linearizable gets at $clients clients"
etcd_port() { echo $((40000 + $1 * 1000 + $2)); } # member, 379 client / 380 peer / 381 metrics
initial_cluster=""
for member in 1 2 3; do
  initial_cluster+="${initial_cluster:+,}e$member=http://127.0.0.1:$(etcd_port "$member" 380)"
done
for member in 1 2 3; do
  for kind in 379 380 381; do
    if ss -ltn "sport = :$(etcd_port "$member" "$kind")" | grep -q LISTEN; then
      echo "port $(etcd_port "$member" "$kind") is taken; etcd cannot start" >&2
      exit 1
    fi
  done
done
for member in 1 2 3; do
  mkdir -p "$out/etcd"
  etcd --name "e$member" --data-dir "$out/etcd/e$member" \
    --listen-client-urls "http://127.0.0.1:$(etcd_port "$member" 379)" \
    --advertise-client-urls "http://127.0.0.1:$(etcd_port "$member" 379)" \
    --listen-peer-urls "http://127.0.0.1:$(etcd_port "$member" 380)" \
    --initial-advertise-peer-urls "http://127.0.0.1:$(etcd_port "$member" 380)" \
    --listen-metrics-urls "http://127.0.0.1:$(etcd_port "$member" 381)" \
    --initial-cluster "$initial_cluster" --initial-cluster-token kyso-bench --initial-cluster-state new \
    >"$out/etcd/e$member.log" 2>&1 &
  etcd_pids+=($!)
done
endpoints=()
endpoint_list=""
for member in 1 2 3; do
  endpoints+=(--endpoint "http://127.0.0.1:$(etcd_port "$member" 379)")
  endpoint_list+="${endpoint_list:+,}127.0.0.1:$(etcd_port "$member" 379)"
done
for _ in $(seq 1 300); do
  ETCDCTL_API=3 etcdctl --endpoints "$endpoint_list" endpoint health >/dev/null 2>&1 && break
  sleep 0.2
done
ETCDCTL_API=3 etcdctl --endpoints "$endpoint_list" endpoint health >&2
"$kyso_bench" etcd "${endpoints[@]}" --nodes 3 --value-size-bytes "$record_bytes" --clients "$clients" \
  --seconds "$seconds" --warmup-seconds "$warmup_seconds" >>"$results"
cleanup

if $short; then
  "$kyso_bench" report --results "$results" >"$out/report.md"
  "$kyso_bench" ratios --results "$results" --clients 64 | tee "$out/ratios.txt"
  echo "total: $(($(date +%s) - began)) s" | tee -a "$out/machine.txt"
  step "done in $(($(date +%s) - began)) s: $out/ratios.txt"
  return 0
fi

# ---- 4. scale -------------------------------------------------------------------------------
step "scale: $sizes records"
"$kyso_bench" scale --kyso-bin "$bin/kyso" --dir "$out/scale" --pki "$out/pki" --sizes "$sizes" \
  --seconds "$seconds" --warmup-seconds "$warmup_seconds" --pid-dir "$out/pids" >>"$results"

"$kyso_bench" state-stats --data-dir "$out/scale/data" >>"$results"
"$kyso_bench" state-rss --data-dir "$out/scale/data" --lookups-max 1000000 --seconds 30 >>"$results"

# ---- 5. criterion ---------------------------------------------------------------------------
step "criterion micro-benchmarks"
export CRITERION_HOME=$out/criterion
KYSO_BENCH_STATE_DIR=$out/scale/data cargo bench -q -p kyso-bench -- "${criterion_args[@]}" >"$out/criterion.log" 2>&1 ||
  { tail -30 "$out/criterion.log" >&2; exit 1; }
"$kyso_bench" criterion --dir "$CRITERION_HOME" >>"$results"
# The scale test's data directory is gigabytes at 1 M records; --keep-data keeps it.
$keep_data || rm -rf "$out/scale/data"

# ---- report ---------------------------------------------------------------------------------
"$kyso_bench" report --results "$results" >"$out/report.md"
echo "total: $(($(date +%s) - began)) s" >>"$out/machine.txt"
step "done in $(($(date +%s) - began)) s: $out/report.md"
echo "$out/report.md"
}

main "$@"
