#!/usr/bin/env bash
# Paired verify p99: the 7.13 M directory and a fresh 10 k directory measured back to back,
# twice (ABAB), so both sizes see the same machine load. Appends to pair.jsonl / pair.log.
set -uo pipefail
cd /work/bench-10m
BIN=/work/target-rel/release
N=$(python3 -c 'import json;print(json.load(open("run/data/bench-load.json"))["records"])')
for round in ${ROUNDS:-1 2}; do
  for what in big small; do
    if [[ $what = big ]]; then dir=run; sizes=$N; else dir=run10k; sizes=10000; fi
    echo "round $round $what $(date -u +%FT%TZ) $(uptime)" | tee -a pair.log
    timeout 300 nice $BIN/kyso-bench scale --kyso-bin $BIN/kyso --dir $dir --pki pki --sizes $sizes --pid-dir pids >> pair.jsonl 2>> pair.log
    echo "exit $?" >> pair.log
    for f in pids/*.pid; do [[ -f $f ]] && kill "$(cat "$f")" 2>/dev/null; rm -f "$f"; done
  done
done
echo "pair done $(date -u +%FT%TZ)" | tee -a pair.log
