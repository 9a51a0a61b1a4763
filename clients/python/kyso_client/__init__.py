"""kyso's Python client for agencies and auditors.

The protobuf stubs are generated from proto/ (`python generate_stubs.py`) before
this package is imported; see clients/python/README.md.
"""

from .client import KysoClient, StreamItem, sha256_file
from .leaf import LeafError, UnreadableLeafVersion, decode_leaf, event_kind
from .tlog import Checkpoint, LogError, VerifierKey, leaf_hash, open_checkpoint, root_from_leaf_hashes, verify_consistency, verify_inclusion

__all__ = [
    "Checkpoint", "KysoClient", "LeafError", "LogError", "StreamItem", "UnreadableLeafVersion", "VerifierKey",
    "decode_leaf", "event_kind", "leaf_hash", "open_checkpoint", "root_from_leaf_hashes", "sha256_file",
    "verify_consistency", "verify_inclusion",
]
