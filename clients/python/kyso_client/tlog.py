"""The transparency log checked from its specifications, in Python alone.

RFC 9162 section 2.1 (Merkle tree hashing, inclusion and consistency proofs, verified as in
2.1.3.2 and 2.1.4.2) and C2SP signed-note / tlog-checkpoint (Ed25519 signatures through
the `cryptography` package). Nothing here trusts the server: callers pass the verifier key
they pinned, and every function raises `LogError` on a proof or signature that does not hold.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import hashlib
from typing import Sequence

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

ED25519_KEY_TYPE = 0x01
SIGNATURE_LINE_PREFIX = "\u2014 "  # an em dash and a space


class LogError(Exception):
    """A proof, checkpoint, signature or key that does not verify."""


def leaf_hash(leaf: bytes) -> bytes:
    """SHA-256(0x00 || leaf), RFC 9162 section 2.1.1."""
    return hashlib.sha256(b"\x00" + leaf).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """SHA-256(0x01 || left || right)."""
    return hashlib.sha256(b"\x01" + left + right).digest()


def root_from_leaf_hashes(hashes: Sequence[bytes]) -> bytes:
    """MTH(D[n]): the root of the tree whose leaves hash to `hashes`."""
    if not hashes:
        return hashlib.sha256(b"").digest()
    if len(hashes) == 1:
        return hashes[0]
    split = 1 << ((len(hashes) - 1).bit_length() - 1)  # largest power of two below n
    return node_hash(root_from_leaf_hashes(hashes[:split]), root_from_leaf_hashes(hashes[split:]))


def verify_inclusion(leaf_hash_value: bytes, leaf_index: int, tree_size: int, path: Sequence[bytes], root: bytes) -> None:
    """RFC 9162 section 2.1.3.2."""
    if leaf_index >= tree_size:
        raise LogError(f"leaf {leaf_index} is not in a tree of size {tree_size}")
    fn, sn, r = leaf_index, tree_size - 1, leaf_hash_value
    for p in path:
        if sn == 0:
            raise LogError("the inclusion path is too long")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while not (fn & 1 or fn == 0):
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0 or r != root:
        raise LogError("the inclusion path does not lead to the root")


def verify_consistency(first_size: int, second_size: int, first_root: bytes, second_root: bytes, proof: Sequence[bytes]) -> None:
    """RFC 9162 section 2.1.4.2: the tree of `first_size` is a prefix of the second."""
    if first_size == 0 or first_size > second_size:
        raise LogError(f"need 0 < first size <= second size, got {first_size} and {second_size}")
    if first_size == second_size:
        if proof or first_root != second_root:
            raise LogError("trees of one size must have one root and an empty proof")
        return
    if not proof:
        raise LogError("an empty consistency proof")
    path = list(proof)
    if first_size & (first_size - 1) == 0:
        path.insert(0, first_root)
    fn, sn = first_size - 1, second_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise LogError("the consistency proof is too long")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while not (fn & 1 or fn == 0):
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0 or fr != first_root or sr != second_root:
        raise LogError("the consistency proof does not join the two roots")


@dataclasses.dataclass(frozen=True)
class VerifierKey:
    """A C2SP signed-note verifier key: `<name>+<hex key id>+<base64(0x01 || Ed25519 key)>`."""

    name: str
    key_id: bytes
    public_key: bytes

    @staticmethod
    def parse(text: str) -> "VerifierKey":
        parts = text.strip().split("+", 2)  # the name has no "+", the base64 key may
        if len(parts) != 3 or not parts[0]:
            raise LogError(f"not a verifier key line: {text!r}")
        name, key_id_hex, key_b64 = parts
        try:
            key_id = bytes.fromhex(key_id_hex)
            key = base64.b64decode(key_b64, validate=True)
        except (ValueError, binascii.Error) as error:
            raise LogError(f"verifier key {text!r}: {error}") from error
        if len(key_id) != 4 or len(key) != 33 or key[0] != ED25519_KEY_TYPE:
            raise LogError(f"verifier key {text!r} is not a 4-byte id and an Ed25519 key")
        public_key = key[1:]
        if key_id_of(name, public_key) != key_id:
            raise LogError(f"verifier key {text!r}: the key id does not match the name and key")
        return VerifierKey(name, key_id, public_key)


def key_id_of(name: str, public_key: bytes) -> bytes:
    """First 4 bytes of SHA-256(name || 0x0A || 0x01 || key)."""
    return hashlib.sha256(name.encode() + b"\n" + bytes([ED25519_KEY_TYPE]) + public_key).digest()[:4]


def open_note(note: str, key: VerifierKey) -> str:
    """The note's text (ending in a newline) if `key` signed it; raises `LogError` if not."""
    text, separator, signatures = note.partition("\n\n")
    if not separator or not signatures.endswith("\n"):
        raise LogError("a signed note needs text, a blank line, and signature lines")
    text += "\n"
    verifier = Ed25519PublicKey.from_public_bytes(key.public_key)
    for line in signatures[:-1].split("\n"):
        if not line.startswith(SIGNATURE_LINE_PREFIX):
            raise LogError(f"not a signature line: {line!r}")
        name, _, signature_b64 = line[len(SIGNATURE_LINE_PREFIX):].rpartition(" ")
        try:
            signature = base64.b64decode(signature_b64, validate=True)
        except binascii.Error as error:
            raise LogError(f"signature line {line!r}: {error}") from error
        if name != key.name or signature[:4] != key.key_id:
            continue
        try:
            verifier.verify(signature[4:], text.encode())
        except InvalidSignature as error:
            raise LogError(f"the signature of {name} does not verify") from error
        return text
    raise LogError(f"the note carries no signature by {key.name}")


@dataclasses.dataclass(frozen=True)
class Checkpoint:
    origin: str
    size: int
    root: bytes


def open_checkpoint(note: str, key: VerifierKey) -> Checkpoint:
    """A C2SP tlog-checkpoint signed by `key`, whose origin must be the key's name."""
    lines = open_note(note, key).split("\n")[:-1]
    if len(lines) < 3:
        raise LogError("a checkpoint has an origin, a size and a root hash")
    origin, size_text, root_b64 = lines[0], lines[1], lines[2]
    if origin != key.name:
        raise LogError(f"checkpoint origin {origin!r} is not the key's {key.name!r}")
    if not size_text.isdigit() or (size_text != "0" and size_text.startswith("0")):
        raise LogError(f"tree size {size_text!r} is not a decimal number")
    root = base64.b64decode(root_b64, validate=True)
    if len(root) != 32:
        raise LogError("the root hash is not 32 bytes")
    return Checkpoint(origin, int(size_text), root)
