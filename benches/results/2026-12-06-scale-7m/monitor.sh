#!/usr/bin/env bash
# Every 60 s: time, load, free disk, records loaded, state and transfer file sizes.
# Ends the current heavy step (current.pid) if less than 3 GB of disk is left.
cd /work/bench-10m
while true; do
  rec=$(grep -o "\"records\": *[0-9]*" run/data/bench-load.json 2>/dev/null)
  st=$(stat -c %s run/data/state.redb 2>/dev/null); tr=$(stat -c %s transfer.redb 2>/dev/null)
  avail=$(df -B1 --output=avail /work | tail -1)
  echo "$(date -u +%FT%TZ) load[$(cut -d' ' -f1-3 /proc/loadavg)] avail=$avail $rec state=$st transfer=$tr"
  if (( avail < 3000000000 )) && [[ -f current.pid ]]; then
    echo "$(date -u +%FT%TZ) disk below 3 GB: ending step $(cat current.pid)"; kill -TERM "$(cat current.pid)"
  fi
  sleep 60
done
