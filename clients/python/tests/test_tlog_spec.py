"""RFC 9162 proofs and C2SP notes in Python, checked against proofs built here from the
RFC's own definitions (PATH, SUBPROOF) and against the C2SP specification's example."""

import base64
import hashlib

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from kyso_client import tlog


def leaves(n):
    return [tlog.leaf_hash(bytes([i])) for i in range(n)]


def path(m, hashes):
    """RFC 9162 section 2.1.3.1 PATH(m, D[n])."""
    if len(hashes) <= 1:
        return []
    k = 1 << ((len(hashes) - 1).bit_length() - 1)
    if m < k:
        return path(m, hashes[:k]) + [tlog.root_from_leaf_hashes(hashes[k:])]
    return path(m - k, hashes[k:]) + [tlog.root_from_leaf_hashes(hashes[:k])]


def subproof(m, hashes, complete):
    """RFC 9162 section 2.1.4.1 SUBPROOF(m, D[n], b)."""
    n = len(hashes)
    if m == n:
        return [] if complete else [tlog.root_from_leaf_hashes(hashes)]
    k = 1 << ((n - 1).bit_length() - 1)
    if m <= k:
        return subproof(m, hashes[:k], complete) + [tlog.root_from_leaf_hashes(hashes[k:])]
    return subproof(m - k, hashes[k:], False) + [tlog.root_from_leaf_hashes(hashes[:k])]


def test_every_inclusion_proof_up_to_size_17_verifies_and_a_changed_leaf_does_not():
    for size in range(1, 18):
        hashes = leaves(size)
        root = tlog.root_from_leaf_hashes(hashes)
        for index in range(size):
            tlog.verify_inclusion(hashes[index], index, size, path(index, hashes), root)
            with pytest.raises(tlog.LogError):
                tlog.verify_inclusion(tlog.leaf_hash(b"other"), index, size, path(index, hashes), root)
            if size > 1:
                with pytest.raises(tlog.LogError):
                    tlog.verify_inclusion(hashes[index], index, size, path(index, hashes)[:-1], root)


def test_every_consistency_proof_up_to_size_17_verifies_and_a_rewrite_does_not():
    for second in range(1, 18):
        hashes = leaves(second)
        for first in range(1, second + 1):
            proof = subproof(first, hashes, True)
            first_root = tlog.root_from_leaf_hashes(hashes[:first])
            second_root = tlog.root_from_leaf_hashes(hashes)
            tlog.verify_consistency(first, second, first_root, second_root, proof)
            if first < second:
                rewritten = tlog.root_from_leaf_hashes([tlog.leaf_hash(b"x")] + hashes[1:first])
                with pytest.raises(tlog.LogError):
                    tlog.verify_consistency(first, second, rewritten, second_root, proof)


def test_the_c2sp_specification_example_note_verifies():
    key = tlog.VerifierKey.parse("example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k")
    note = "This is an example message.\n\n\u2014 example.com/foo Uw2QOkn8srV1yJGh2VYRlL1Tnagv1YEq6TfXppzi2ONncAlTgK7Ztg1ERYNZXsYjOBH3mFXmRKuwHjG1Yu72IneyaQM=\n"
    assert tlog.open_note(note, key) == "This is an example message.\n"
    with pytest.raises(tlog.LogError):
        tlog.open_note(note.replace("example message", "exampel message"), key)


def test_a_checkpoint_signed_here_opens_and_a_foreign_key_is_refused():
    origin = "kyso.example/log"

    def key_and_signer():
        private = Ed25519PrivateKey.generate()
        public = private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        key_id = tlog.key_id_of(origin, public)
        encoded = base64.b64encode(bytes([1]) + public).decode()
        line = f"{origin}+{key_id.hex()}+{encoded}"
        return tlog.VerifierKey.parse(line), private, key_id

    key, private, key_id = key_and_signer()
    root = hashlib.sha256(b"root").digest()
    text = f"{origin}\n5\n{base64.b64encode(root).decode()}\n"
    note = f"{text}\n\u2014 {origin} {base64.b64encode(key_id + private.sign(text.encode())).decode()}\n"
    assert tlog.open_checkpoint(note, key) == tlog.Checkpoint(origin, 5, root)
    other, _, _ = key_and_signer()
    with pytest.raises(tlog.LogError):
        tlog.open_checkpoint(note, other)
    with pytest.raises(tlog.LogError):
        tlog.open_checkpoint(note.replace("\n5\n", "\n6\n"), key)
