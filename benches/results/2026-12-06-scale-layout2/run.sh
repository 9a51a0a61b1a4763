#!/usr/bin/env bash
# Scale run for issue 16: 10k, 100k, 1M (then 10M if asked), state-stats, snapshot transfer.
set -uo pipefail
cd /work/bench-scale
BIN=/work/target-rel/release
SIZES=${SIZES:-10000,100000,1000000}
[[ -d pki ]] || $BIN/kyso-bench pki --out pki
echo "start $(date -u +%FT%TZ)"
/usr/bin/time -v $BIN/kyso-bench scale --kyso-bin $BIN/kyso --dir run --pki pki --sizes "$SIZES" --pid-dir pids > results.jsonl 2> scale.log
echo "scale exit $? $(date -u +%FT%TZ)"
$BIN/kyso-bench state-stats --data-dir run/data >> results.jsonl 2> stats.log
echo "stats exit $? $(date -u +%FT%TZ)"
rm -rf transfer.redb
/usr/bin/time -v $BIN/kyso-bench snapshot-transfer --data-dir run/data --to transfer.redb --chunk-bytes 4194304 --check-digest >> results.jsonl 2> transfer.log
echo "transfer exit $? $(date -u +%FT%TZ)"
rm -rf transfer.redb
