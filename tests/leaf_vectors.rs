//! The log leaf's published test vectors (proto/testdata/leaf-v3/): the bytes kyso writes
//! for known leaves, pinned in the repository so an auditor's decoder in any language can
//! be checked against them (clients/python/tests/test_leaf_vectors.py reads the same files).
//! A version 2 (postcard) vector pins that old leaves keep their bytes, hence their hashes.
//!
//! To write the files again after a deliberate change: KYSO_WRITE_LEAF_VECTORS=1.

use std::path::PathBuf;

use kyso::access::{Actor, Principal, Role};
use kyso::domain::{Certification, CertificationKind, DeliveredPdf, Sha256};
use kyso::lookup::LookupCode;
use kyso::state::{LogEvent, LogLeaf};
use serde_json::json;

fn vectors_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("proto/testdata/leaf-v3")
}

fn clerk() -> Actor {
    Actor { name: "CN=Nguyễn Văn An,O=UBND xã Tân Lập".into(), certificate_sha256: Some(Sha256([0x11; 32])) }
}

fn certification() -> Certification {
    Certification {
        version: 1,
        lookup_code: LookupCode::parse("7K3M-Q9TX-2HRN-B4WD").unwrap(),
        document_sha256: Sha256([0xd0; 32]),
        kind: CertificationKind::CertifiedCopy,
        agency_id: "xa-tan-lap".into(),
        signer_id: "ab".repeat(32),
        dossier_id: "HS-0001".into(),
        signed_at_unix: 1_795_000_000,
        cms_der: vec![0x30, 0x03, 0x02, 0x01, 0x01],
        revocation: None,
        delivered_pdf: None,
    }
}

/// A version 2 record: the certified PDF the citizen received and its register entry.
fn certified_pdf() -> Certification {
    Certification {
        version: 2,
        delivered_pdf: Some(DeliveredPdf { sha256: Sha256([0xe1; 32]), size_bytes: 48_213, register_year: 2026, register_number: 17 }),
        ..certification()
    }
}

/// (file stem, leaf, the leaf in proto3's JSON mapping with proto field names — what
/// Python's `MessageToDict(preserving_proto_field_name=True)` gives).
fn vectors() -> Vec<(&'static str, LogLeaf, serde_json::Value)> {
    let b64 = |bytes: &[u8]| base64::Engine::encode(&base64::engine::general_purpose::STANDARD, bytes);
    vec![
        (
            "certification",
            LogLeaf::new(clerk(), LogEvent::Certification(certification())),
            json!({
                "actor": { "name": "CN=Nguyễn Văn An,O=UBND xã Tân Lập", "certificate_sha256": b64(&[0x11; 32]) },
                "certification": {
                    "record_version": 1, "lookup_code": "7K3MQ9TX2HRNB4WD", "document_sha256": b64(&[0xd0; 32]),
                    "kind": "CERTIFICATION_KIND_CERTIFIED_COPY", "agency_id": "xa-tan-lap", "signer_id": "ab".repeat(32),
                    "dossier_id": "HS-0001", "signed_at_unix": "1795000000", "cms_der": b64(&[0x30, 0x03, 0x02, 0x01, 0x01]),
                },
            }),
        ),
        (
            "certified-pdf",
            LogLeaf::new(clerk(), LogEvent::Certification(certified_pdf())),
            json!({
                "actor": { "name": "CN=Nguyễn Văn An,O=UBND xã Tân Lập", "certificate_sha256": b64(&[0x11; 32]) },
                "certification": {
                    "record_version": 2, "lookup_code": "7K3MQ9TX2HRNB4WD", "document_sha256": b64(&[0xd0; 32]),
                    "kind": "CERTIFICATION_KIND_CERTIFIED_COPY", "agency_id": "xa-tan-lap", "signer_id": "ab".repeat(32),
                    "dossier_id": "HS-0001", "signed_at_unix": "1795000000", "cms_der": b64(&[0x30, 0x03, 0x02, 0x01, 0x01]),
                    "delivered_pdf": { "sha256": b64(&[0xe1; 32]), "size_bytes": "48213", "register_year": "2026", "register_number": "17" },
                },
            }),
        ),
        (
            "revocation",
            LogLeaf::new(clerk(), LogEvent::Revocation {
                lookup_code: LookupCode::parse("7K3MQ9TX2HRNB4WD").unwrap(),
                document_sha256: Sha256([0xd0; 32]),
                reason: "sai thông tin".into(),
                revoked_at_unix: 1_795_000_600,
            }),
            json!({
                "actor": { "name": "CN=Nguyễn Văn An,O=UBND xã Tân Lập", "certificate_sha256": b64(&[0x11; 32]) },
                "revocation": {
                    "lookup_code": "7K3MQ9TX2HRNB4WD", "document_sha256": b64(&[0xd0; 32]),
                    "reason": "sai thông tin", "revoked_at_unix": "1795000600",
                },
            }),
        ),
        (
            "access-changed-by-local-actor",
            LogLeaf::new(Actor::local("kyso-dev"), LogEvent::AccessChanged(Principal {
                certificate_sha256: Sha256([0x22; 32]),
                name: "verifier".into(),
                roles: vec![Role::Verifier],
                agency_ids: vec![],
                signer_ids: vec![],
            })),
            json!({
                "actor": { "name": "local:kyso-dev" },
                "access_changed": { "certificate_sha256": b64(&[0x22; 32]), "name": "verifier", "roles": ["verifier"] },
            }),
        ),
    ]
}

fn leaf_hash_hex(bytes: &[u8]) -> String {
    let mut input = vec![0u8];
    input.extend_from_slice(bytes);
    hex::encode(ring::digest::digest(&ring::digest::SHA256, &input))
}

fn check_or_write(stem: &str, bytes: &[u8], decoded: serde_json::Value) {
    let document = json!({
        "leaf_hex": hex::encode(bytes),
        "leaf_hash_hex": leaf_hash_hex(bytes),
        "decoded": decoded,
    });
    let path = vectors_dir().join(format!("{stem}.json"));
    let text = format!("{}\n", serde_json::to_string_pretty(&document).unwrap());
    if std::env::var_os("KYSO_WRITE_LEAF_VECTORS").is_some() {
        std::fs::create_dir_all(vectors_dir()).unwrap();
        std::fs::write(&path, &text).unwrap();
    }
    let pinned = std::fs::read_to_string(&path).unwrap_or_else(|error| panic!("{}: {error}", path.display()));
    assert_eq!(pinned, text, "{stem}: kyso no longer writes the pinned bytes");
}

#[test]
fn new_leaves_are_the_pinned_protobuf_bytes_and_decode_back() {
    for (stem, leaf, decoded) in vectors() {
        let bytes = leaf.encode();
        assert_eq!(bytes[0], 3, "{stem}: version byte");
        assert_eq!(LogLeaf::decode(&bytes).unwrap(), leaf, "{stem}: round trip");
        check_or_write(stem, &bytes, decoded);
    }
}

#[test]
fn version_2_leaves_keep_their_bytes_and_decode() {
    let leaf = LogLeaf { version: 2, actor: clerk(), event: LogEvent::Certification(certification()) };
    let bytes = leaf.encode();
    assert_eq!(bytes[0], 2);
    assert_eq!(LogLeaf::decode(&bytes).unwrap(), leaf);
    check_or_write("v2-postcard-certification", &bytes, json!(null));
}

#[test]
fn leaves_that_are_not_the_deterministic_encoding_are_refused() {
    let (_, leaf, _) = vectors().remove(0);
    let bytes = leaf.encode();
    // The actor field (tag 0x0a, a one-byte length below 128) again at the end: protobuf
    // parsers accept it (they merge the two), so only the re-encoding check catches it.
    assert_eq!(bytes[1], 0x0a);
    assert!(bytes[2] < 0x80);
    let mut repeated = bytes.clone();
    repeated.extend_from_slice(&bytes[1..3 + usize::from(bytes[2])]);
    assert!(LogLeaf::decode(&repeated).is_err(), "a repeated field was accepted");
    // An unknown field (number 15, varint 1).
    let mut unknown = bytes.clone();
    unknown.extend_from_slice(&[15 << 3, 1]);
    assert!(LogLeaf::decode(&unknown).unwrap_err().contains("deterministic"));
    let mut other_version = bytes.clone();
    other_version[0] = 4;
    assert!(LogLeaf::decode(&other_version).unwrap_err().contains("version 4"));
}
