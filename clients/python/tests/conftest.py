"""Generates the stubs before any test imports them, and describes the cluster under test.

The cluster is started by the Rust test `tests/python_client.rs` (real `kyso node`
processes on 127.0.0.1), which runs this suite with KYSO_TEST_CLUSTER naming a JSON file
that describes the nodes, certificates and the workload it ran. Without it the cluster
tests fail: run them through `cargo test --test python_client` or scripts/test.sh.
"""

from __future__ import annotations

import json
import os
import pathlib
import sys

import pytest

CLIENT_DIR = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(CLIENT_DIR))

import generate_stubs  # noqa: E402

generate_stubs.generate()

REPOSITORY = CLIENT_DIR.parent.parent


@pytest.fixture(scope="session")
def cluster() -> dict:
    manifest = os.environ.get("KYSO_TEST_CLUSTER")
    if not manifest:
        pytest.fail("KYSO_TEST_CLUSTER is not set: run these tests through `cargo test --test python_client`")
    return json.loads(pathlib.Path(manifest).read_text())


@pytest.fixture(scope="session")
def leaf_vectors_dir() -> pathlib.Path:
    return REPOSITORY / "proto" / "testdata" / "leaf-v3"
