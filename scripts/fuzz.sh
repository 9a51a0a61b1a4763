#!/usr/bin/env bash
# Runs every cargo-fuzz target in fuzz/ for a bounded time; any crash fails the run.
#
#   scripts/fuzz.sh                 each target for FUZZ_SECONDS (default 20) seconds
#   FUZZ_TARGET_DIR=DIR ...         build into DIR instead of fuzz/target
#
# Only the stable toolchain exists here: RUSTC_BOOTSTRAP=1 lets it accept the -Z flags
# cargo-fuzz passes (sanitizer coverage, AddressSanitizer). cargo-fuzz is installed from
# crates.io when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
export RUSTC_BOOTSTRAP=1
CARGO_FUZZ_VERSION=0.13.2
if ! cargo fuzz --version 2>/dev/null | grep -q "$CARGO_FUZZ_VERSION"; then
  echo "installing cargo-fuzz $CARGO_FUZZ_VERSION (crates.io)"
  cargo install cargo-fuzz --version "$CARGO_FUZZ_VERSION" --locked
fi
seconds="${FUZZ_SECONDS:-20}"
target_dir=()
[[ -n "${FUZZ_TARGET_DIR:-}" ]] && target_dir=(--target-dir "$FUZZ_TARGET_DIR")
targets=$(cargo fuzz list --fuzz-dir fuzz)
cargo fuzz build --fuzz-dir fuzz "${target_dir[@]}"
for target in $targets; do
  echo "fuzzing $target for ${seconds}s"
  mkdir -p "fuzz/corpus/$target"
  # -seed_inputs: known-good samples (fuzz/seeds/TARGET) start the search where the parser is deep.
  seeds=()
  [[ -d "fuzz/seeds/$target" ]] && seeds=("fuzz/seeds/$target")
  log="fuzz/corpus/$target.log"
  if ! cargo fuzz run --fuzz-dir fuzz "${target_dir[@]}" "$target" "fuzz/corpus/$target" "${seeds[@]}" -- \
    -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 >"$log" 2>&1; then
    tail -n 60 "$log" >&2
    echo "fuzz target $target FAILED; the crashing input is in fuzz/artifacts/$target/" >&2
    exit 1
  fi
  grep -E "^(Done|stat::number_of_executed_units|stat::peak_rss_mb)" "$log" || tail -n 3 "$log"
done
echo "fuzzing: every target ran ${seconds}s without a crash"
