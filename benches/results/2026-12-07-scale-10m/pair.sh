#!/usr/bin/env bash
# Verify at 2.05 M against a fresh 10 k directory, back to back, three rounds, on a quiet
# machine (kyso-bench scale on an already-loaded directory loads nothing and measures).
set -uo pipefail
cd /work/bench-qr
BIN=/work/bench-qr/bin
N=$(python3 -c 'import json;print(json.load(open("run/run/data/bench-load.json"))["records"])')
for round in 1 2 3; do
  echo "round $round $(date -u +%FT%TZ) $(uptime)"
  $BIN/kyso-bench scale --kyso-bin $BIN/kyso --dir run/run --pki pki --sizes "$N" --pid-dir run/pids >> pair-big.jsonl 2>> pair.log
  $BIN/kyso-bench scale --kyso-bin $BIN/kyso --dir ref10k --pki pki --sizes 10000 --pid-dir run/pids >> pair-10k.jsonl 2>> pair.log
done
echo "done $(date -u +%FT%TZ) $(uptime)"
