#!/usr/bin/env bash
# Issue 16 deliverable 4: scale run to 10 M certifications (10k, 100k, 1M, 10M stages in
# one run), then state-stats, a second start of the node on the 10 M directory (restart to
# serving; the loader finds the records there and loads nothing), and the streamed snapshot
# of the 10 M state into a fresh file (deleted right after). Each heavy step runs alone,
# under nice and a time bound; its pid is in current.pid (monitor.sh ends it if the disk
# runs low); node pids are in pids/ and are ended on exit.
set -uo pipefail
cd /work/bench-10m
BIN=/work/target-rel/release
SIZES=${SIZES:-10000,100000,1000000,10000000}
LAST=${SIZES##*,}
cleanup() { for f in pids/*.pid; do [[ -f $f ]] || continue; kill "$(cat "$f")" 2>/dev/null && echo "ended node $(cat "$f")"; rm -f "$f"; done; rm -f current.pid; }
trap cleanup EXIT
# step SECONDS STDOUT STDERR command...: /usr/bin/time -v (to STDERR), timeout, nice.
step() {
  local seconds=$1 out=$2 err=$3; shift 3
  /usr/bin/time -v timeout -s TERM "$seconds" sh -c 'echo $$ > current.pid; exec nice "$@"' sh "$@" >> "$out" 2>> "$err"
  local rc=$?; rm -f current.pid; return $rc
}
[[ -d pki ]] || $BIN/kyso-bench pki --out pki
echo "start $(date -u +%FT%TZ) $(uptime)"
step "${SCALE_TIMEOUT:-5700}" results.jsonl scale.log $BIN/kyso-bench scale --kyso-bin $BIN/kyso --dir run --pki pki --sizes "$SIZES" --pid-dir pids
echo "scale exit $? $(date -u +%FT%TZ) $(uptime)"
cleanup
[[ ${STOP_AFTER_SCALE:-0} = 1 ]] && exit 0
step 1200 results.jsonl stats.log $BIN/kyso-bench state-stats --data-dir run/data
echo "stats exit $? $(date -u +%FT%TZ) $(uptime)"
step 900 restart.jsonl restart.log $BIN/kyso-bench scale --kyso-bin $BIN/kyso --dir run --pki pki --sizes "$LAST" --pid-dir pids
echo "restart exit $? $(date -u +%FT%TZ) $(uptime)"
cleanup
df -B1 /work > df-before-transfer.txt
rm -rf transfer.redb
step "${TRANSFER_TIMEOUT:-2400}" results.jsonl transfer.log $BIN/kyso-bench snapshot-transfer --data-dir run/data --to transfer.redb --chunk-bytes 4194304 --check-digest
echo "transfer exit $? $(date -u +%FT%TZ) $(uptime)"
ls -l transfer.redb >> transfer.log 2>&1
df -B1 /work >> transfer.log
rm -rf transfer.redb
echo "done $(date -u +%FT%TZ)"
