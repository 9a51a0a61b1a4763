#!/usr/bin/env bash
# After the 10 M load was ended (time budget): measurements at the size it reached.
# 1. crash restart: `kyso node` on the directory the killed loader left (redb repairs an
#    uncleanly closed file on open): seconds to the "listening" line and to the first public
#    lookup answered, RSS; then a clean stop.
# 2. `kyso-bench scale --sizes N` (N = records in bench-load.json): loads nothing, starts
#    the node on the clean directory and measures start, first verify, verify p99, RSS.
# 3. state-stats.  4. snapshot-transfer (bounded by TRANSFER_TIMEOUT), file deleted after.
set -uo pipefail
cd /work/bench-10m
BIN=/work/target-rel/release
N=$(python3 -c 'import json;print(json.load(open("run/data/bench-load.json"))["records"])')
echo "phase2 start $(date -u +%FT%TZ) records=$N $(uptime)"
# 1.
code=$(python3 -c '
import hashlib
A="0123456789ABCDEFGHJKMNPQRSTVWXYZ"
b=int.from_bytes(hashlib.sha256(b"kyso-bench-code"+(12345).to_bytes(8,"big")).digest()[:10],"big")
s="".join(A[(b>>(p*5))&31] for p in range(15,-1,-1)); print("-".join(s[i:i+4] for i in range(0,16,4)))')
rm -f crash-start.out
t0=$(date +%s.%N)
KYSO_LOG=warn nice $BIN/kyso node --config run/kyso.toml > crash-start.out 2> crash-start.err &
pid=$!; echo $pid > pids/crash-node.pid
line=""
for i in $(seq 1 ${CRASH_START_TIMEOUT_DECISECONDS:-4800}); do
  line=$(grep -m1 "kyso node listening" crash-start.out) && break; sleep 0.1
  kill -0 $pid 2>/dev/null || break
done
t1=$(date +%s.%N)
http=$(echo "$line" | tr ' ' '\n' | sed -n 's/^http=//p')
status=""
for i in $(seq 1 600); do
  status=$(curl -s -o crash-lookup.json -w '%{http_code}' "http://$http/api/v1/lookup/$code") && [[ $status = 200 ]] && break; sleep 0.1
done
t2=$(date +%s.%N)
rss=$(grep -E 'VmRSS|VmHWM' /proc/$pid/status | tr -s ' ' | tr '\n' ' ')
echo "crash-start: records=$N listening_after_s=$(echo "$t1 - $t0" | bc) first_lookup_after_s=$(echo "$t2 - $t0" | bc) lookup_status=$status code=$code $rss line=[$line]" | tee crash-start.txt
kill -TERM $pid; for i in $(seq 1 600); do kill -0 $pid 2>/dev/null || break; sleep 0.1; done; kill -0 $pid 2>/dev/null && kill -KILL $pid
rm -f pids/crash-node.pid
echo "crash-start done $(date -u +%FT%TZ) $(uptime)"
# 2.
/usr/bin/time -v timeout 900 nice $BIN/kyso-bench scale --kyso-bin $BIN/kyso --dir run --pki pki --sizes "$N" --pid-dir pids > restart.jsonl 2> restart.log
echo "restart exit $? $(date -u +%FT%TZ) $(uptime)"
for f in pids/*.pid; do [[ -f $f ]] && kill "$(cat "$f")" 2>/dev/null; rm -f "$f"; done
# 3.
/usr/bin/time -v timeout 900 nice $BIN/kyso-bench state-stats --data-dir run/data >> results.jsonl 2> stats.log
echo "stats exit $? $(date -u +%FT%TZ) $(uptime)"
# 4.
df -B1 /work > df-before-transfer.txt
rm -rf transfer.redb
/usr/bin/time -v timeout ${TRANSFER_TIMEOUT:-900} sh -c 'echo $$ > current.pid; exec nice "$@"' sh $BIN/kyso-bench snapshot-transfer --data-dir run/data --to transfer.redb --chunk-bytes 4194304 --check-digest >> results.jsonl 2> transfer.log
echo "transfer exit $? $(date -u +%FT%TZ) $(uptime)"
rm -f current.pid
ls -l transfer.redb >> transfer.log 2>&1
df -B1 /work >> transfer.log
rm -rf transfer.redb
echo "phase2 done $(date -u +%FT%TZ)"
