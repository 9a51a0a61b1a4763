#!/usr/bin/env bash
# Issue 16 deliverable 1 (record layout 3): 1 M scale run, state-stats, snapshot transfer.
# Like benches/results/2026-12-06-scale-layout2/run.sh, in its own directory, 1 M only.
set -uo pipefail
cd /work/bench-qr
BIN=${BIN:-/work/target-rel/release}
SIZES=${SIZES:-1000000}
OUT=${OUT:-run}
[[ -d pki ]] || $BIN/kyso-bench pki --out pki
mkdir -p "$OUT"
echo "start $(date -u +%FT%TZ)"
/usr/bin/time -v nice $BIN/kyso-bench scale --kyso-bin $BIN/kyso --dir "$OUT/run" --pki pki --sizes "$SIZES" --pid-dir "$OUT/pids" > "$OUT/results.jsonl" 2> "$OUT/scale.log"
echo "scale exit $? $(date -u +%FT%TZ)"
nice $BIN/kyso-bench state-stats --data-dir "$OUT/run/data" >> "$OUT/results.jsonl" 2> "$OUT/stats.log"
echo "stats exit $? $(date -u +%FT%TZ)"
exit 0
/usr/bin/time -v nice $BIN/kyso-bench snapshot-transfer --data-dir "$OUT/run/data" --to "$OUT/transfer.redb" --chunk-bytes 4194304 --check-digest >> "$OUT/results.jsonl" 2> "$OUT/transfer.log"
echo "transfer exit $? $(date -u +%FT%TZ)"
exit 0
