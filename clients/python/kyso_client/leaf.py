"""Log leaves as specified in proto/kyso/leaf/v3/leaf.proto: `0x03 || protobuf(LogLeaf)`.

Leaves written before issue 20 begin with 0x02 and are postcard, a Rust encoding: they
can be hashed (their hashes are part of every root) but not read here.
"""

from __future__ import annotations

from kyso.leaf.v3 import leaf_pb2

LEAF_VERSION = 3
LEAF_VERSION_POSTCARD = 2


class LeafError(Exception):
    """Bytes that are not a readable version 3 leaf."""


class UnreadableLeafVersion(LeafError):
    """A leaf of a version this client does not decode (it can still be hashed)."""

    def __init__(self, version: int):
        super().__init__(f"leaf version {version} is not {LEAF_VERSION}")
        self.version = version


def decode_leaf(data: bytes) -> leaf_pb2.LogLeaf:
    """The leaf's message; refuses bytes that are not its deterministic encoding."""
    if not data:
        raise LeafError("an empty leaf")
    if data[0] != LEAF_VERSION:
        raise UnreadableLeafVersion(data[0])
    message = leaf_pb2.LogLeaf()
    try:
        message.ParseFromString(data[1:])
    except Exception as error:  # the protobuf runtime raises DecodeError or its own types
        raise LeafError(f"leaf protobuf: {error}") from error
    message.DiscardUnknownFields()
    if message.SerializeToString(deterministic=True) != data[1:]:
        raise LeafError("leaf bytes are not the deterministic encoding of the leaf")
    if not message.HasField("actor") or message.WhichOneof("event") is None:
        raise LeafError("a leaf needs an actor and an event")
    return message


def event_kind(message: leaf_pb2.LogLeaf) -> str:
    """The event's field name, e.g. "certification" or "revocation"."""
    kind = message.WhichOneof("event")
    assert kind is not None, "decode_leaf refuses leaves without an event"
    return kind
