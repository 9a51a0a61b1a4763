#!/usr/bin/env bash
# Issue 16 item 4 with quick repair: extend run/run (1.07 M) to $TARGET (2 M: the time left in the session), then the node's
# start, verify and RSS (kyso-bench scale), state-stats, a crash restart (crash.sh, loader
# killed mid-write), a 10 k reference directory measured right after for the verify ratio,
# and the commit cost with and without quick repair on the 10 M file.
set -uo pipefail
cd /work/bench-qr
BIN=/work/bench-qr/bin
echo "ten start $(date -u +%FT%TZ) $(uptime)"
/usr/bin/time -v nice -n ${NICE:-19} $BIN/kyso-bench scale --kyso-bin $BIN/kyso --dir run/run --pki pki --sizes ${TARGET:-4000000} --pid-dir run/pids >> ten-results.jsonl 2> ten-scale.log
echo "scale exit $? $(date -u +%FT%TZ) $(uptime)"
for f in run/pids/*.pid; do [[ -f $f ]] && kill "$(cat "$f")" 2>/dev/null; rm -f "$f"; done
nice -n 19 $BIN/kyso-bench state-stats --data-dir run/run/data >> ten-results.jsonl 2> ten-stats.log
echo "stats exit $? $(date -u +%FT%TZ)"
LOAD_SECONDS=20 ./crash.sh > ten-crash.log 2>&1
echo "crash exit $? $(date -u +%FT%TZ)"
cp crash-start.txt ten-crash-start.txt
rm -rf ref10k
nice -n 19 $BIN/kyso-bench scale --kyso-bin $BIN/kyso --dir ref10k --pki pki --sizes 10000 --pid-dir run/pids >> ten-ref10k.jsonl 2> ten-ref10k.log
echo "ref10k exit $? $(date -u +%FT%TZ) $(uptime)"
nice -n 19 $BIN/kyso-bench scale --kyso-bin $BIN/kyso --dir run/run --pki pki --sizes ${TARGET:-4000000} --pid-dir run/pids >> ten-restart.jsonl 2> ten-restart.log
echo "restart exit $? $(date -u +%FT%TZ) $(uptime)"
/work/target-rel/release/kyso-bench commit-cost --file run/run/data/state.redb --commits 100 --rounds 3 > ten-commit-cost.jsonl 2>&1
echo "commit-cost exit $? $(date -u +%FT%TZ)"
echo "ten done $(date -u +%FT%TZ)"
