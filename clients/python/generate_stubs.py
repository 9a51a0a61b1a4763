"""Generates the protobuf and gRPC stubs from the repository's proto/ files.

The stubs are not checked in: `python generate_stubs.py` (run by the tests'
conftest, and before packaging) writes them under clients/python/kyso/ with grpcio-tools,
so they always match proto/. It needs grpcio-tools; without it, it fails loudly.
"""

from __future__ import annotations

import pathlib
import sys

CLIENT_DIR = pathlib.Path(__file__).resolve().parent
PROTO_DIR = CLIENT_DIR.parent.parent / "proto" / "proto"
PROTO_FILES = ["kyso/v1/kyso.proto", "kyso/leaf/v3/leaf.proto"]


def generate(out_dir: pathlib.Path = CLIENT_DIR) -> None:
    """Writes kyso/v1/kyso_pb2*.py and kyso/leaf/v3/leaf_pb2.py under `out_dir`."""
    from grpc_tools import protoc  # grpcio-tools; a missing package is an error, not a skip
    import importlib.resources

    include = str(importlib.resources.files("grpc_tools") / "_proto")
    args = [
        "grpc_tools.protoc",
        f"-I{PROTO_DIR}",
        f"-I{include}",
        f"--python_out={out_dir}",
        f"--pyi_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        *PROTO_FILES,
    ]
    status = protoc.main(args)
    if status != 0:
        raise RuntimeError(f"grpc_tools.protoc failed with status {status}: {' '.join(args)}")


if __name__ == "__main__":
    generate()
    sys.exit(0)
