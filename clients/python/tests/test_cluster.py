"""The client against a real 3-node cluster (started by tests/python_client.rs), and the
auditor: every leaf decoded from the documented format, the root recomputed, the signed
checkpoint checked with the key from GET /log-key."""

import collections
import hashlib
import urllib.request

import grpc
import pytest

from kyso.v1 import kyso_pb2, kyso_pb2_grpc
from kyso_client import Checkpoint, KysoClient, LogError, VerifierKey, decode_leaf, event_kind, leaf_hash, open_checkpoint, root_from_leaf_hashes


def client(cluster, node, who):
    identity = cluster[who]
    return KysoClient.from_files(node["grpc"], cluster["ca"], identity["cert"], identity["key"])


def http_log_key(node):
    with urllib.request.urlopen(node["http"] + "/log-key", timeout=30) as response:
        assert response.status == 200
        return response.read().decode()


def test_every_node_serves_one_log_key_over_http_and_grpc(cluster):
    keys = set()
    for node in cluster["nodes"]:
        line = http_log_key(node)
        assert line.endswith("\n")
        with client(cluster, node, "verifier") as kyso:
            assert kyso.log_key() == line.strip()
        keys.add(VerifierKey.parse(line))
    assert len(keys) == 1, keys


def test_auditor_decodes_every_leaf_recomputes_the_root_and_checks_the_signed_checkpoint(cluster):
    node = cluster["nodes"][0]
    key = VerifierKey.parse(http_log_key(node))
    with client(cluster, node, "verifier") as kyso:
        checkpoint, _note = kyso.checkpoint(key)
        leaves = kyso.entries(0, checkpoint.size)
    assert len(leaves) == checkpoint.size > 0
    assert root_from_leaf_hashes([leaf_hash(leaf) for leaf in leaves]) == checkpoint.root
    decoded = [decode_leaf(leaf) for leaf in leaves]
    kinds = collections.Counter(event_kind(leaf) for leaf in decoded)
    for kind, count in cluster["expected_leaves"].items():
        assert kinds[kind] == count, (kind, kinds)
    certified = {leaf.certification.lookup_code: leaf.certification for leaf in decoded if event_kind(leaf) == "certification"}
    for document in cluster["documents"]:
        certification = certified[document["lookup_code"].replace("-", "")]
        assert certification.document_sha256.hex() == document["sha256_hex"]
        assert certification.agency_id == cluster["agency"]
    revoked = [leaf.revocation for leaf in decoded if event_kind(leaf) == "revocation"]
    assert [revocation.reason for revocation in revoked] == [cluster["revocation_reason"]]
    assert all(leaf.actor.name for leaf in decoded), "every leaf names its actor"
    # A changed leaf no longer leads to the signed root.
    changed = list(leaves)
    changed[-1] = changed[-1][:-1] + bytes([changed[-1][-1] ^ 1])
    assert root_from_leaf_hashes([leaf_hash(leaf) for leaf in changed]) != checkpoint.root


def test_every_node_signs_the_same_checkpoint_and_a_foreign_key_is_refused(cluster):
    key = VerifierKey.parse(http_log_key(cluster["nodes"][0]))
    notes = set()
    for node in cluster["nodes"]:
        with client(cluster, node, "verifier") as kyso:
            notes.add(kyso.checkpoint(key)[1])
    assert len(notes) == 1
    note = notes.pop()
    with pytest.raises(LogError):
        open_checkpoint(note.replace(note.split("\n")[1], str(int(note.split("\n")[1]) + 1), 1), key)


def test_verify_by_file_hash_and_code_on_any_node(cluster):
    for position, document in enumerate(cluster["documents"]):
        node = cluster["nodes"][position % len(cluster["nodes"])]
        with client(cluster, node, "operator") as kyso:
            answers = [kyso.verify_file(document["path"]), kyso.verify_hash(bytes.fromhex(document["sha256_hex"])), kyso.verify_code(document["lookup_code"])]
        for answer in answers:
            assert answer.document_sha256.hex() == document["sha256_hex"]
            [verified] = answer.certifications
            status = kyso_pb2.CERTIFICATION_STATUS_REVOKED if document["revoked"] else kyso_pb2.CERTIFICATION_STATUS_VALID
            assert verified.certification.status == status
            assert verified.signature_valid and verified.chain_valid_at_signing
    with client(cluster, cluster["nodes"][0], "operator") as kyso:
        with pytest.raises(grpc.RpcError) as refused:
            kyso.verify_hash(hashlib.sha256(b"never certified").digest())
        assert refused.value.code() == grpc.StatusCode.NOT_FOUND


def test_verify_stream_answers_each_hash_in_order_and_needs_the_verifier_role(cluster):
    hashes = [bytes.fromhex(document["sha256_hex"]) for document in cluster["documents"]]
    unknown = hashlib.sha256(b"never certified").digest()
    with client(cluster, cluster["nodes"][1], "verifier") as kyso:
        items = list(kyso.verify_stream(hashes + [unknown]))
    assert [item.correlation_id for item in items] == [str(position) for position in range(len(hashes) + 1)]
    assert all(item.ok for item in items[:-1]), items
    assert items[-1].error_code == grpc.StatusCode.NOT_FOUND
    assert all(item.response.certifications[0].HasField("inclusion") for item in items[:-1])
    with client(cluster, cluster["nodes"][1], "verifier") as kyso:
        summaries = list(kyso.verify_stream(hashes + [unknown], summary=True))
    assert [summary.correlation_id for summary in summaries] == [item.correlation_id for item in items]
    assert summaries[-1].error_code == grpc.StatusCode.NOT_FOUND
    for item, summary in zip(items[:-1], summaries[:-1]):
        assert summary.ok, summary
        full, short = item.response.certifications[0], summary.response.certifications[0]
        assert (short.summary, short.signature_valid, short.certification.lookup_code) == (full.summary, full.signature_valid, full.certification.lookup_code)
        assert not short.HasField("inclusion") and short.certification.cms_signature == b"" and len(short.signer.certificate_chain_der) == 0
    with client(cluster, cluster["nodes"][1], "clerk") as kyso:
        with pytest.raises(grpc.RpcError) as refused:
            list(kyso.verify_stream(hashes))
        assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED


def test_inclusion_and_consistency_proofs_verify_in_python(cluster):
    key = VerifierKey.parse(http_log_key(cluster["nodes"][2]))
    with client(cluster, cluster["nodes"][2], "verifier") as kyso:
        for document in cluster["documents"]:
            leaf, _checkpoint = kyso.proven_inclusion(key, lookup_code=document["lookup_code"])
            assert decode_leaf(leaf).certification.document_sha256.hex() == document["sha256_hex"]
        first_leaf, current = kyso.proven_inclusion(key, leaf_index=0)
        # What a witness kept when the log had one leaf: size 1, root = the leaf's hash.
        kept = Checkpoint(current.origin, 1, leaf_hash(first_leaf))
        assert kyso.proven_consistency(key, kept).size == current.size
        forged = Checkpoint(current.origin, 1, leaf_hash(b"rewritten history"))
        with pytest.raises(LogError):
            kyso.proven_consistency(key, forged)


def test_mutual_tls_is_required(cluster):
    node = cluster["nodes"][0]
    with open(cluster["ca"], "rb") as ca:
        channel = grpc.secure_channel(node["grpc"], grpc.ssl_channel_credentials(root_certificates=ca.read()))
    with pytest.raises(grpc.RpcError):
        kyso_pb2_grpc.LogServiceStub(channel).GetLogKey(kyso_pb2.GetLogKeyRequest(), timeout=30)
    channel.close()
