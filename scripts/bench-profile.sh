#!/usr/bin/env bash
# Where a kyso node spends its CPU under one kind of load: starts a one-node cluster,
# sets the operation up, samples the node with perf while kyso-bench drives it, and prints
# the samples grouped by what they do (hashing, ECDSA, kernel, redb, gRPC, ...).
#
#   scripts/bench-profile.sh [--op certify|verify-hash|verify-code] [--clients 16]
#                            [--seconds 6] [--document-size-bytes 102400]
#
# Needs perf (Debian: linux-perf) and a release build (scripts/bench.sh builds one).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)

main() {
  local op=verify-hash clients=16 seconds=6 size=102400
  while (($#)); do
    case $1 in
      --op) op=$2; shift 2 ;;
      --clients) clients=$2; shift 2 ;;
      --seconds) seconds=$2; shift 2 ;;
      --document-size-bytes) size=$2; shift 2 ;;
      *) sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
    esac
  done
  command -v perf >/dev/null || { echo "perf is missing: apt-get install -y linux-perf" >&2; exit 1; }
  local bin=${CARGO_TARGET_DIR:-$repo/target}/release
  [[ -x $bin/kyso && -x $bin/kyso-bench ]] || { echo "build first: cargo build --release -p kyso -p kyso-bench" >&2; exit 1; }
  work=$(mktemp -d -t kyso-profile-XXXXXX)
  # Stop the node (by the pid file cluster.sh wrote) before the directory holding it goes.
  trap '"$repo/deploy/local/bench-nodes.sh" stop --dir "$work/cluster" 2>/dev/null || true; rm -rf "$work"' EXIT
  "$bin/kyso-bench" pki --out "$work/pki" 2>/dev/null
  "$repo/deploy/local/bench-nodes.sh" start --nodes 1 --dir "$work/cluster" --ca "$work/pki/ca.pem" --kyso "$bin/kyso" >/dev/null
  local pid server
  pid=$(cat "$work"/cluster/pids/*.pid)
  server=$(head -1 "$work/cluster/servers.txt")
  # The node asks for a client certificate (mutual TLS): the driver presents the cluster's.
  export KYSO_CA="$work/cluster/shared/tls/ca.pem" KYSO_CERT="$work/cluster/shared/tls/client.pem" KYSO_KEY="$work/cluster/shared/tls/client.key"
  local common=(--server "$server" --pki "$work/pki" --ops "$op" --clients "$clients" --document-size-bytes "$size")
  # A short run first warms the node (the signer's key unsealed, the documents stored), so
  # the measured run's setup is quick and its load meets a warm node.
  "$bin/kyso-bench" kyso "${common[@]}" --seconds 1 --warmup-seconds 0.2 >/dev/null 2>&1
  # The measured run sets up again (uploads every document, certifies the verified ones:
  # seconds of hashing and HTTP/2 framing that are not the load). perf starts when the
  # driver says its setup is done, and samples for the load's seconds.
  local record=(perf record -F 999 -p "$pid" -o "$work/perf.data" -- sleep "$seconds")
  [[ $op == health ]] && { "${record[@]}" >/dev/null 2>&1 & }
  "$bin/kyso-bench" kyso "${common[@]}" --seconds "$seconds" --warmup-seconds 0 2>&1 >/dev/null | {
    while IFS= read -r line; do
      case $line in
        setup:*) "${record[@]}" >/dev/null 2>&1 & ;;
        kyso*) echo "$line" ;;
      esac
    done
    wait
  }
  wait
  [[ -s $work/perf.data ]] || { echo "perf recorded nothing: did the driver print its setup line?" >&2; exit 1; }
  perf report -i "$work/perf.data" --no-children --sort symbol --stdio -g none 2>/dev/null |
    grep -E '^ +[0-9.]+%' | python3 -c '
import collections, re, sys
groups = collections.OrderedDict([
    ("SHA-256", r"sha256"),
    ("ECDSA P-256 (sign, verify, key load)", r"nistz256|p256|ecp_|ecdsa"),
    ("Ed25519 (checkpoint signatures)", r"x25519|curve25519|ed25519|sha512|fiat_25519|fe_loose|fe_mul|ge_scalarmult"),
    ("AES-GCM (unsealing keys)", r"aes_|gcm|ghash"),
    ("kernel: scheduling, syscalls, TCP, file I/O, fsync", r"\[k\]"),
    ("allocator and memcpy", r"malloc|free|memmove|memset|memcpy|realloc|calloc|unlink_chunk|\bmi_|_mi_"),
    ("redb", r"redb::"),
    ("HTTP/2, gRPC, protobuf", r"h2::|hyper|tonic|prost|http::|bytes::"),
    ("tokio runtime", r"tokio::"),
    ("DER, X.509, CMS parsing and encoding", r"der::|x509|asn1|const_oid|cms::|spki"),
    ("postcard, serde", r"postcard|serde"),
    ("object_store", r"object_store"),
])
totals = collections.Counter(); other = 0.0
for line in sys.stdin:
    match = re.match(r"\s+([0-9.]+)%\s+(.*)", line)
    if not match:
        continue
    share, symbol = float(match.group(1)), match.group(2)
    for group, pattern in groups.items():
        if re.search(pattern, symbol):
            totals[group] += share
            break
    else:
        other += share
for group in groups:
    print(f"{totals[group]:5.1f} %  {group}")
print(f"{other:5.1f} %  other")
'
}

main "$@"
