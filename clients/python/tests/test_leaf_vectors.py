"""The published leaf vectors decode in Python to the fields the Rust side pinned."""

import json

import pytest
from google.protobuf.json_format import MessageToDict

from kyso_client import LeafError, UnreadableLeafVersion, decode_leaf, leaf_hash


def load(directory, pattern):
    vectors = sorted(directory.glob(pattern))
    assert vectors, f"no leaf vectors in {directory}"
    return [(path.stem, json.loads(path.read_text())) for path in vectors]


def test_every_version_3_vector_decodes_to_its_pinned_fields(leaf_vectors_dir):
    vectors = [(name, vector) for name, vector in load(leaf_vectors_dir, "*.json") if not name.startswith("v2-")]
    assert len(vectors) >= 3
    for name, vector in vectors:
        data = bytes.fromhex(vector["leaf_hex"])
        assert leaf_hash(data).hex() == vector["leaf_hash_hex"], name
        decoded = MessageToDict(decode_leaf(data), preserving_proto_field_name=True)
        assert decoded == vector["decoded"], name


def test_version_2_leaves_hash_but_are_not_read(leaf_vectors_dir):
    for name, vector in load(leaf_vectors_dir, "v2-*.json"):
        data = bytes.fromhex(vector["leaf_hex"])
        assert leaf_hash(data).hex() == vector["leaf_hash_hex"], name
        with pytest.raises(UnreadableLeafVersion):
            decode_leaf(data)


def test_bytes_other_than_the_deterministic_encoding_are_refused(leaf_vectors_dir):
    data = bytes.fromhex(json.loads((leaf_vectors_dir / "certification.json").read_text())["leaf_hex"])
    with pytest.raises(LeafError):
        decode_leaf(data + bytes([15 << 3, 1]))  # an unknown field
    actor_field = data[1 : 3 + data[2]]
    with pytest.raises(LeafError):
        decode_leaf(data + actor_field)  # the actor twice
    with pytest.raises(LeafError):
        decode_leaf(b"\x03")  # no actor, no event
