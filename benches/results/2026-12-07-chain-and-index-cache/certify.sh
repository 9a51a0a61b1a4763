#!/usr/bin/env bash
# usage: certify.sh NODES SKIP   — one certify run at 64 clients
set -euo pipefail
repo=/work/main; bin=${BIN:-/work/target-rel/release}
nodes=$1; export KYSO_UNSAFE_SKIP_FSYNC=${2:-}
out=$(mktemp -d -t kexp-XXXX)
trap '"$repo/deploy/local/bench-nodes.sh" stop --dir "$out/cluster" >/dev/null 2>&1 || true; rm -rf "$out"' EXIT
"$bin/kyso-bench" pki --out "$out/pki" 2>/dev/null
"$repo/deploy/local/bench-nodes.sh" start --nodes "$nodes" --dir "$out/cluster" --ca "$out/pki/ca.pem" --kyso "$bin/kyso" >/dev/null 2>&1
servers=(); while read -r url; do servers+=(--server "$url"); done <"$out/cluster/servers.txt"
KYSO_CA="$out/cluster/shared/tls/ca.pem" KYSO_CERT="$out/cluster/shared/tls/client.pem" KYSO_KEY="$out/cluster/shared/tls/client.key" \
  "$bin/kyso-bench" kyso "${servers[@]}" --pki "$out/pki" --nodes "$nodes" --clients ${CLIENTS:-16,64} --ops ${OPS:-certify} --seconds ${SECS:-4} --warmup-seconds 1 2>&1 | grep -v "^ *$" | tail -20; true # '^kyso'
