#!/usr/bin/env bash
# Issue 16: crash restart with quick repair at ~1 M certifications. Extends the loaded
# directory, kills the loader (SIGKILL) mid-write, then starts `kyso node` on the file it
# left: seconds to "kyso node listening" and to the first public lookup; the repair gauge.
set -uo pipefail
cd /work/bench-qr
BIN=${BIN:-/work/bench-qr/bin}
N=$(python3 -c 'import json;print(json.load(open("run/run/data/bench-load.json"))["records"])')
TARGET=$((N + 300000))
echo "crash: $N records, extending to $TARGET, killing the loader after ${LOAD_SECONDS:-25} s"
nice $BIN/kyso-bench scale --kyso-bin $BIN/kyso --dir run/run --pki pki --sizes "$TARGET" --pid-dir run/pids > crash-load.jsonl 2> crash-load.log &
loader=$!
sleep "${LOAD_SECONDS:-25}"
kill -KILL $loader; wait $loader 2>/dev/null
for f in run/pids/*.pid; do [[ -f $f ]] && kill -KILL "$(cat "$f")" 2>/dev/null; rm -f "$f"; done
M=$(python3 -c 'import json;print(json.load(open("run/run/data/bench-load.json"))["records"])')
echo "loader killed at $M records (bench-load.json); state.redb $(stat -c %s run/run/data/state.redb) bytes"
code=$(python3 -c '
import hashlib
A="0123456789ABCDEFGHJKMNPQRSTVWXYZ"
b=int.from_bytes(hashlib.sha256(b"kyso-bench-code"+(12345).to_bytes(8,"big")).digest()[:10],"big")
s="".join(A[(b>>(p*5))&31] for p in range(15,-1,-1)); print("-".join(s[i:i+4] for i in range(0,16,4)))')
t0=$(date +%s.%N)
KYSO_LOG=warn $BIN/kyso node --config run/run/kyso.toml > crash-start.out 2> crash-start.err &
pid=$!
line=""
for i in $(seq 1 3000); do
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
metrics=$(grep -o 'metrics=[^ ]*' <<<"$line" | cut -d= -f2)
echo "crash-start: listening_after_s=$(echo "$t1 - $t0" | bc) first_lookup_after_s=$(echo "$t2 - $t0" | bc) lookup_status=$status repair_warnings=$(grep -c repair crash-start.err) line=[$line]" | tee crash-start.txt
kill -TERM $pid; for i in $(seq 1 600); do kill -0 $pid 2>/dev/null || break; sleep 0.1; done
