"""A small typed wrapper over kyso's gRPC API for agencies: mutual TLS, verification by
file, hash or lookup code, bulk VerifyStream, and the transparency log checked in Python.
"""

from __future__ import annotations

import dataclasses
import hashlib
import pathlib
from typing import Iterable, Iterator, List, Optional, Union

import grpc

from kyso.v1 import kyso_pb2, kyso_pb2_grpc

from . import tlog

PathLike = Union[str, pathlib.Path]
ENTRIES_PER_CALL_MAX = 1000


@dataclasses.dataclass(frozen=True)
class StreamItem:
    """One answer of VerifyStream: `error_code` 0 means `response` holds certifications."""

    correlation_id: str
    error_code: grpc.StatusCode
    error_message: str
    response: kyso_pb2.VerifyResponse

    @property
    def ok(self) -> bool:
        return self.error_code == grpc.StatusCode.OK


def _status_code(number: int) -> grpc.StatusCode:
    for code in grpc.StatusCode:
        if code.value[0] == number:
            return code
    return grpc.StatusCode.UNKNOWN


class KysoClient:
    """One mutual-TLS channel to a kyso node.

    `ca_pem` is the CA of the node certificates (the cluster CA); `cert_pem` and `key_pem`
    the agency's client certificate from the client CA, whose grants (roles, agencies) the
    operator set. Use as a context manager, or call `close()`.
    """

    def __init__(self, target: str, ca_pem: bytes, cert_pem: bytes, key_pem: bytes, timeout_seconds: float = 30.0):
        credentials = grpc.ssl_channel_credentials(root_certificates=ca_pem, private_key=key_pem, certificate_chain=cert_pem)
        self._channel = grpc.secure_channel(target, credentials)
        self._timeout = timeout_seconds
        self._verification = kyso_pb2_grpc.VerificationServiceStub(self._channel)
        self._log = kyso_pb2_grpc.LogServiceStub(self._channel)

    @classmethod
    def from_files(cls, target: str, ca: PathLike, cert: PathLike, key: PathLike, timeout_seconds: float = 30.0) -> "KysoClient":
        read = lambda path: pathlib.Path(path).read_bytes()  # noqa: E731
        return cls(target, read(ca), read(cert), read(key), timeout_seconds)

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> "KysoClient":
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # Verification

    def verify_file(self, path: PathLike) -> kyso_pb2.VerifyResponse:
        """Verifies a document by its SHA-256 (the file itself never leaves this machine)."""
        return self.verify_hash(sha256_file(path))

    def verify_hash(self, sha256: bytes) -> kyso_pb2.VerifyResponse:
        return self._verification.Verify(kyso_pb2.VerifyRequest(sha256=sha256), timeout=self._timeout)

    def verify_code(self, lookup_code: str) -> kyso_pb2.VerifyResponse:
        return self._verification.Verify(kyso_pb2.VerifyRequest(lookup_code=lookup_code), timeout=self._timeout)

    def verify_stream(self, hashes: Iterable[bytes], summary: bool = False) -> Iterator[StreamItem]:
        """Bulk verification (role verifier): one item per hash, in order; the correlation id
        is the hash's position. A hash never certified is an item with NOT_FOUND. With
        `summary`, each answer is the verdict without the CMS, the signer's chain and the
        inclusion proof (VERIFY_VIEW_SUMMARY): under a fifth of the bytes. A server older than
        the view answers in full."""
        view = kyso_pb2.VERIFY_VIEW_SUMMARY if summary else kyso_pb2.VERIFY_VIEW_FULL
        requests = (
            kyso_pb2.VerifyRequest(sha256=value, correlation_id=str(position), view=view) for position, value in enumerate(hashes)
        )
        for response in self._verification.VerifyStream(requests, timeout=self._timeout):
            yield StreamItem(response.correlation_id, _status_code(response.error_code), response.error_message, response)

    # Transparency log

    def log_key(self) -> str:
        return self._log.GetLogKey(kyso_pb2.GetLogKeyRequest(), timeout=self._timeout).verifier_key

    def checkpoint(self, key: tlog.VerifierKey) -> tuple[tlog.Checkpoint, str]:
        """The latest checkpoint, its signature checked with `key`; and its note."""
        note = self._log.GetCheckpoint(kyso_pb2.GetCheckpointRequest(), timeout=self._timeout).note
        return tlog.open_checkpoint(note, key), note

    def entries(self, start: int, end: int) -> List[bytes]:
        """Leaf bytes in [start, end), fetched 1000 per call."""
        leaves: List[bytes] = []
        while start + len(leaves) < end:
            first = start + len(leaves)
            response = self._log.GetEntries(
                kyso_pb2.GetEntriesRequest(start=first, end=min(end, first + ENTRIES_PER_CALL_MAX)), timeout=self._timeout
            )
            if not response.entries:
                raise tlog.LogError(f"the log returned no entries from {first}")
            for expected, entry in enumerate(response.entries, start=first):
                if entry.leaf_index != expected:
                    raise tlog.LogError(f"asked for leaf {expected}, got leaf {entry.leaf_index}")
                leaves.append(entry.leaf_data)
        return leaves

    def proven_inclusion(self, key: tlog.VerifierKey, lookup_code: Optional[str] = None, leaf_index: Optional[int] = None) -> tuple[bytes, tlog.Checkpoint]:
        """The leaf of a certification (by lookup code) or of an index, with its inclusion
        checked in Python against a checkpoint signed by `key`. Returns (leaf, checkpoint)."""
        if (lookup_code is None) == (leaf_index is None):
            raise ValueError("name the leaf by lookup_code or by leaf_index")
        request = kyso_pb2.GetInclusionProofRequest(lookup_code=lookup_code) if lookup_code else kyso_pb2.GetInclusionProofRequest(leaf_index=leaf_index)
        proof = self._log.GetInclusionProof(request, timeout=self._timeout)
        checkpoint = tlog.open_checkpoint(proof.checkpoint.note, key)
        if checkpoint.size != proof.tree_size:
            raise tlog.LogError(f"the proof is for size {proof.tree_size}, its checkpoint for {checkpoint.size}")
        tlog.verify_inclusion(tlog.leaf_hash(proof.leaf_data), proof.leaf_index, checkpoint.size, list(proof.audit_path), checkpoint.root)
        return proof.leaf_data, checkpoint

    def proven_consistency(self, key: tlog.VerifierKey, old: tlog.Checkpoint) -> tlog.Checkpoint:
        """The latest checkpoint, proven to extend `old` (a checkpoint kept from before)."""
        proof = self._log.GetConsistencyProof(kyso_pb2.GetConsistencyProofRequest(first_size=old.size, second_size=0), timeout=self._timeout)
        new = tlog.open_checkpoint(proof.checkpoint.note, key)
        tlog.verify_consistency(old.size, new.size, old.root, new.root, list(proof.proof))
        return new


def sha256_file(path: PathLike) -> bytes:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for chunk in iter(lambda: file.read(1 << 20), b""):
            digest.update(chunk)
    return digest.digest()
