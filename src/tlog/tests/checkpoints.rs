//! Signed notes and checkpoints: published vectors, round trips, tampering,
//! foreign keys, strict parsing and hostile input.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use ring::digest::{digest, SHA256};

use super::super::checkpoint::{
    open_checkpoint, sign_checkpoint, Checkpoint, CheckpointError, CHECKPOINT_BODY_SIZE_BYTES_MAX,
};
use super::super::note::{
    open_note, sign_note, LogSigner, LogVerifier, NoteError, NOTE_SIGNATURES_MAX,
    NOTE_SIZE_BYTES_MAX,
};
use super::super::proof::{empty_root, leaf_hash, Hash};

const ORIGIN: &str = "kyso.example/log";

/// Test vectors from golang.org/x/mod/sumdb/note, file note_test.go
/// (github.com/golang/mod at commit fe2ec04f7c3c3aa6fad97631aafcff6e49e2d1db,
/// TestSign and TestOpen).
const GO_PRIVATE_KEY: &str =
    "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz";
const GO_VERIFIER_KEY: &str = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
const GO_OTHER_VERIFIER_KEY: &str =
    "EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop";
const GO_TEXT: &str =
    "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n";
const GO_SIGNATURE_LINE: &str =
    "— PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n";
const GO_OTHER_SIGNATURE_LINE: &str =
    "— EnochRoot rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01oOTGwnWLox33WWd1RvMc+QQ=\n";

/// The example of the C2SP signed-note spec (github.com/C2SP/C2SP,
/// signed-note.md, section "Verifier keys").
const C2SP_VERIFIER_KEY: &str =
    "example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k";
const C2SP_NOTE: &str = "This is an example message.\n\n— example.com/foo Uw2QOkn8srV1yJGh2VYRlL1Tnagv1YEq6TfXppzi2ONncAlTgK7Ztg1ERYNZXsYjOBH3mFXmRKuwHjG1Yu72IneyaQM=\n";

/// Wraps a raw Ed25519 seed in a PKCS#8 v1 document (RFC 8410), the form
/// OpenSSL writes.
fn pkcs8_v1_from_seed(seed: &[u8]) -> Vec<u8> {
    let mut document = vec![
        0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04,
        0x20,
    ];
    document.extend_from_slice(seed);
    document
}

fn go_signer() -> LogSigner {
    // PRIVATE+KEY+<name>+<key id>+<base64>; the base64 may itself hold '+'.
    let encoded = GO_PRIVATE_KEY
        .splitn(5, '+')
        .nth(4)
        .expect("key has five parts");
    let key = BASE64.decode(encoded).expect("vector is base64");
    assert_eq!(key[0], 0x01, "vector is an ed25519 key");
    LogSigner::from_pkcs8("PeterNeumann", &pkcs8_v1_from_seed(&key[1..])).expect("vector key loads")
}

fn new_signer(name: &str) -> LogSigner {
    let pkcs8 = LogSigner::generate().expect("key generation");
    LogSigner::from_pkcs8(name, &pkcs8).expect("generated key loads")
}

fn sample_checkpoint() -> Checkpoint {
    Checkpoint::new(ORIGIN, 12345, leaf_hash(b"some root")).expect("valid checkpoint")
}

/// Splits a signed note into its text (with final newline) and the rest
/// (blank line and signatures).
fn split_note(note: &str) -> (&str, &str) {
    let split = note.rfind("\n\n").expect("signed note has a blank line");
    (&note[..split + 1], &note[split + 1..])
}

/// Signs an arbitrary body as a checkpoint would be, to test parsing.
fn signed_body(body: &str, signer: &LogSigner) -> String {
    sign_note(body, signer).expect("body is valid note text")
}

fn root_base64(root: &Hash) -> String {
    BASE64.encode(root)
}

#[test]
fn go_reference_signature_is_reproduced_byte_for_byte() {
    let signer = go_signer();
    assert_eq!(signer.verifier().to_string(), GO_VERIFIER_KEY);
    assert_eq!(hex::encode(signer.key_id()), "c74f20a3");
    let note = sign_note(GO_TEXT, &signer).expect("sign");
    assert_eq!(note, format!("{GO_TEXT}\n{GO_SIGNATURE_LINE}"));
}

#[test]
fn go_reference_note_opens_and_ignores_unknown_signer() {
    let verifier = LogVerifier::parse(GO_VERIFIER_KEY).expect("vector key parses");
    let note = format!("{GO_TEXT}\n{GO_SIGNATURE_LINE}{GO_OTHER_SIGNATURE_LINE}");
    assert_eq!(open_note(&note, &verifier), Ok(GO_TEXT));
    let other = LogVerifier::parse(GO_OTHER_VERIFIER_KEY).expect("vector key parses");
    assert_eq!(open_note(&note, &other), Ok(GO_TEXT));
    let duplicated =
        format!("{GO_TEXT}\n{GO_SIGNATURE_LINE}{GO_SIGNATURE_LINE}{GO_OTHER_SIGNATURE_LINE}");
    assert_eq!(open_note(&duplicated, &verifier), Ok(GO_TEXT));
}

#[test]
fn go_reference_note_without_trusted_signature_is_rejected() {
    let verifier = LogVerifier::parse(GO_VERIFIER_KEY).expect("vector key parses");
    let note = format!("{GO_TEXT}\n{GO_OTHER_SIGNATURE_LINE}");
    assert_eq!(
        open_note(&note, &verifier),
        Err(NoteError::TrustedSignatureMissing {
            name: "PeterNeumann".into(),
            key_id: "c74f20a3".into()
        })
    );
}

#[test]
fn go_reference_note_with_a_bad_trusted_signature_is_rejected_despite_a_good_one() {
    let verifier = LogVerifier::parse(GO_VERIFIER_KEY).expect("vector key parses");
    let corrupted = format!(
        "{}ABCD{}",
        &GO_SIGNATURE_LINE[..60],
        &GO_SIGNATURE_LINE[60..]
    );
    let expected = Err(NoteError::SignatureInvalid {
        name: "PeterNeumann".into(),
        key_id: "c74f20a3".into(),
    });
    assert_eq!(
        open_note(&format!("{GO_TEXT}\n{corrupted}"), &verifier),
        expected
    );
    assert_eq!(
        open_note(
            &format!("{GO_TEXT}\n{GO_SIGNATURE_LINE}{corrupted}"),
            &verifier
        ),
        expected
    );
}

#[test]
fn go_reference_malformed_notes_are_rejected() {
    let verifier = LogVerifier::parse(GO_VERIFIER_KEY).expect("vector key parses");
    let bad_notes = [
        GO_TEXT.to_owned(),
        format!("{GO_TEXT}\n"),
        format!("{GO_TEXT}\n{}", &GO_SIGNATURE_LINE[..GO_SIGNATURE_LINE.len() - 1]),
        format!("\x01{GO_TEXT}\n{GO_SIGNATURE_LINE}"),
        format!("{GO_TEXT}\n— Bad Name x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM="),
        format!("{GO_TEXT}\n{GO_SIGNATURE_LINE}Unexpected line.\n"),
    ];
    for note in bad_notes {
        assert!(open_note(&note, &verifier).is_err(), "accepted {note:?}");
    }
    let too_many = format!(
        "{GO_TEXT}\n{}",
        GO_SIGNATURE_LINE.repeat(NOTE_SIGNATURES_MAX + 1)
    );
    assert_eq!(
        open_note(&too_many, &verifier),
        Err(NoteError::TooManySignatures {
            max: NOTE_SIGNATURES_MAX
        })
    );
}

#[test]
fn c2sp_spec_example_note_verifies() {
    let verifier = LogVerifier::parse(C2SP_VERIFIER_KEY).expect("spec key parses");
    assert_eq!(verifier.to_string(), C2SP_VERIFIER_KEY);
    assert_eq!(
        open_note(C2SP_NOTE, &verifier),
        Ok("This is an example message.\n")
    );
}

#[test]
fn key_id_is_the_signed_note_hash_of_name_type_and_key() {
    let signer = new_signer(ORIGIN);
    let mut preimage = format!("{ORIGIN}\n").into_bytes();
    preimage.push(0x01);
    preimage.extend_from_slice(&signer.public_key());
    assert_eq!(signer.key_id(), digest(&SHA256, &preimage).as_ref()[..4]);
}

#[test]
fn verifier_key_round_trips() {
    let signer = new_signer(ORIGIN);
    let text = signer.verifier().to_string();
    let parsed: LogVerifier = text.parse().expect("own verifier key parses");
    assert_eq!(parsed, signer.verifier());
    assert_eq!(parsed.name(), ORIGIN);
    assert_eq!(parsed.public_key(), signer.public_key());
}

#[test]
fn mangled_verifier_keys_are_rejected() {
    // The manglings of golang.org/x/mod/sumdb/note TestNewVerifier.
    let bytes = GO_VERIFIER_KEY.as_bytes();
    for start in 0..=bytes.len() {
        for end in (start + 1)..=bytes.len() {
            if start == 0 && end == bytes.len() {
                continue;
            }
            let part = std::str::from_utf8(&bytes[start..end]).expect("ascii key");
            assert!(LogVerifier::parse(part).is_err(), "accepted {part:?}");
        }
    }
    for position in 0..bytes.len() {
        let mut changed = bytes.to_vec();
        changed[position] = changed[position].wrapping_add(1);
        if let Ok(changed) = String::from_utf8(changed) {
            assert!(
                LogVerifier::parse(&changed).is_err(),
                "accepted {changed:?}"
            );
        }
    }
    let wrong_length = "PeterNeumann+cc469956+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TWBADKEY==";
    assert_eq!(
        LogVerifier::parse(wrong_length),
        Err(NoteError::VerifierKeyMalformed)
    );
    let unknown_type = "PeterNeumann+173116ae+ZRpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
    assert_eq!(
        LogVerifier::parse(unknown_type),
        Err(NoteError::SignatureTypeUnsupported {
            signature_type: 0x65
        })
    );
    let uppercase = "PeterNeumann+C74F20A3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
    assert_eq!(
        LogVerifier::parse(uppercase),
        Err(NoteError::VerifierKeyMalformed)
    );
}

#[test]
fn signed_checkpoint_opens_to_the_same_checkpoint() {
    let signer = new_signer(ORIGIN);
    let verifier = LogVerifier::parse(&signer.verifier().to_string()).expect("verifier key");
    for checkpoint in [
        sample_checkpoint(),
        Checkpoint::new(ORIGIN, 0, empty_root()).expect("empty tree"),
    ] {
        let note = sign_checkpoint(&checkpoint, &signer);
        assert_eq!(open_checkpoint(&note, &verifier), Ok(checkpoint));
    }
    let largest = Checkpoint::new(ORIGIN, u64::MAX, [0xff; 32]).expect("largest tree");
    assert_eq!(
        open_checkpoint(&sign_checkpoint(&largest, &signer), &verifier),
        Ok(largest)
    );
}

#[test]
fn signed_checkpoint_has_the_c2sp_layout() {
    let signer = new_signer(ORIGIN);
    let checkpoint = sample_checkpoint();
    let note = sign_checkpoint(&checkpoint, &signer);
    let root = root_base64(checkpoint.root());
    let prefix = format!("{ORIGIN}\n12345\n{root}\n\n\u{2014} {ORIGIN} ");
    let signature = note
        .strip_prefix(&prefix)
        .expect("body, blank line, em dash, name");
    let signature = signature
        .strip_suffix('\n')
        .expect("signature line ends the note");
    let signature = BASE64.decode(signature).expect("signature is base64");
    assert_eq!(signature.len(), 4 + 64);
    assert_eq!(signature[..4], signer.key_id());
}

#[test]
fn changed_size_root_or_origin_fails_verification() {
    let signer = new_signer(ORIGIN);
    let verifier = signer.verifier();
    let checkpoint = sample_checkpoint();
    let note = sign_checkpoint(&checkpoint, &signer);
    let (body, signatures) = split_note(&note);
    let root = root_base64(checkpoint.root());
    let other_root = root_base64(&leaf_hash(b"another root"));
    let forged_bodies = [
        body.replace("\n12345\n", "\n12346\n"),
        body.replace("\n12345\n", "\n1234\n"),
        body.replace(&root, &other_root),
        body.replace("kyso.example/log", "kyso.example/lag"),
        format!("{body}extension\n"),
    ];
    for forged in forged_bodies {
        assert_ne!(forged, body);
        let result = open_checkpoint(&format!("{forged}{signatures}"), &verifier);
        assert!(
            matches!(
                result,
                Err(CheckpointError::Note(NoteError::SignatureInvalid { .. }))
            ),
            "{forged:?}: {result:?}"
        );
    }
}

#[test]
fn every_single_byte_change_to_a_signed_checkpoint_is_rejected() {
    let signer = new_signer(ORIGIN);
    let verifier = signer.verifier();
    let note = sign_checkpoint(&sample_checkpoint(), &signer);
    let mut tried = 0;
    for position in 0..note.len() {
        for flip in [0x01u8, 0x20, 0x80] {
            let mut bytes = note.clone().into_bytes();
            bytes[position] ^= flip;
            let Ok(changed) = String::from_utf8(bytes) else {
                continue;
            };
            assert!(
                open_checkpoint(&changed, &verifier).is_err(),
                "byte {position} ^ {flip:#x} accepted"
            );
            tried += 1;
        }
    }
    assert!(tried > note.len());
}

#[test]
fn checkpoint_signed_by_another_key_is_not_trusted() {
    let log = new_signer(ORIGIN);
    let impostor = new_signer(ORIGIN);
    let note = sign_checkpoint(&sample_checkpoint(), &impostor);
    assert!(matches!(
        open_checkpoint(&note, &log.verifier()),
        Err(CheckpointError::Note(
            NoteError::TrustedSignatureMissing { .. }
        ))
    ));
    // The impostor copies the log's key id into its signature: the id only
    // selects the key, so the signature is checked and fails.
    let (body, signatures) = split_note(&note);
    let encoded = signatures.trim_end().rsplit(' ').next().expect("signature");
    let mut signature = BASE64.decode(encoded).expect("base64");
    signature[..4].copy_from_slice(&log.key_id());
    let forged = format!("{body}\n\u{2014} {ORIGIN} {}\n", BASE64.encode(&signature));
    assert!(matches!(
        open_checkpoint(&forged, &log.verifier()),
        Err(CheckpointError::Note(NoteError::SignatureInvalid { .. }))
    ));
    // The same key under another name is another key.
    let renamed = LogVerifier::new("kyso.example/other", log.public_key()).expect("verifier");
    let honest = sign_checkpoint(&sample_checkpoint(), &log);
    assert!(open_checkpoint(&honest, &renamed).is_err());
}

#[test]
fn cosignatures_by_other_keys_are_ignored() {
    let log = new_signer(ORIGIN);
    let witness = new_signer("witness.example/w1");
    let checkpoint = sample_checkpoint();
    let note = sign_checkpoint(&checkpoint, &log);
    let (body, _) = split_note(&note);
    let cosigned = sign_note(body, &witness).expect("cosign");
    let (_, witness_block) = split_note(&cosigned);
    let both = format!("{note}{}", witness_block.trim_start_matches('\n'));
    assert_eq!(
        open_checkpoint(&both, &log.verifier()),
        Ok(checkpoint.clone())
    );
    assert_eq!(open_checkpoint(&both, &witness.verifier()), Ok(checkpoint));
}

#[test]
fn garbage_notes_are_rejected_without_panic() {
    let verifier = new_signer(ORIGIN).verifier();
    let garbage = [
        String::new(),
        "\n".to_owned(),
        "\n\n".to_owned(),
        "\n\n\n".to_owned(),
        "— \n".to_owned(),
        "a\n\n— \n".to_owned(),
        "a\n\n— kyso.example/log\n".to_owned(),
        "a\n\n— kyso.example/log \n".to_owned(),
        "a\n\n— kyso.example/log AAAA\n".to_owned(),
        "a\n\n— kyso.example/log AAAAAA==\n".to_owned(),
        "a\n\n— kyso.example/log !!!!\n".to_owned(),
        "a\n\n-- kyso.example/log AAAAAAAA\n".to_owned(),
        "a\r\n\r\n— kyso.example/log AAAAAAAA\r\n".to_owned(),
        "\u{2014}\u{2014}\u{2014}\n\n\n".to_owned(),
        "x".repeat(NOTE_SIZE_BYTES_MAX + 1),
        format!("{}\n\n— a AAAAAAAA\n", "y".repeat(NOTE_SIZE_BYTES_MAX)),
    ];
    for note in &garbage {
        assert!(
            open_checkpoint(note, &verifier).is_err(),
            "accepted {note:?}"
        );
    }
    let oversized = "z".repeat(NOTE_SIZE_BYTES_MAX + 1);
    assert_eq!(
        open_note(&oversized, &verifier),
        Err(NoteError::NoteTooLarge {
            size_bytes: NOTE_SIZE_BYTES_MAX + 1,
            max_bytes: NOTE_SIZE_BYTES_MAX
        })
    );
    // Pseudo-random printable junk with newlines, from a fixed seed.
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    for _ in 0..2000 {
        let mut junk = String::new();
        for _ in 0..(state % 200) {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let alphabet = "ab+/=09 \n\n—\u{2014}kyso.example/log";
            let choice = alphabet
                .chars()
                .nth((state % alphabet.chars().count() as u64) as usize);
            junk.push(choice.unwrap_or('a'));
        }
        assert!(
            open_checkpoint(&junk, &verifier).is_err(),
            "accepted {junk:?}"
        );
    }
}

#[test]
fn checkpoint_bodies_are_parsed_strictly() {
    let signer = new_signer(ORIGIN);
    let verifier = signer.verifier();
    let root = root_base64(&leaf_hash(b"root"));
    let root_bytes = BASE64.decode(&root).expect("base64");
    let short_root = BASE64.encode(&root_bytes[..31]);
    let long_root = BASE64.encode([root_bytes.clone(), vec![0]].concat());
    let unpadded_root = root.trim_end_matches('=').to_owned();
    // The last character before '=' carries two unused bits; setting one
    // keeps the bytes but makes the encoding non-canonical.
    let mut loose_root = root.clone().into_bytes();
    let last_digit = loose_root.len() - 2;
    loose_root[last_digit] = match loose_root[last_digit] {
        b'A'..=b'Y' | b'a'..=b'y' | b'0'..=b'8' => loose_root[last_digit] + 1,
        _ => b'B',
    };
    let loose_root = String::from_utf8(loose_root).expect("ascii");
    let url_safe_root = BASE64
        .encode([0xfbu8; 32])
        .replace('+', "-")
        .replace('/', "_");
    let cases = [
        (
            format!("{ORIGIN}\n05\n{root}\n"),
            CheckpointError::SizeMalformed,
        ),
        (
            format!("{ORIGIN}\n+5\n{root}\n"),
            CheckpointError::SizeMalformed,
        ),
        (
            format!("{ORIGIN}\n-1\n{root}\n"),
            CheckpointError::SizeMalformed,
        ),
        (
            format!("{ORIGIN}\n 5\n{root}\n"),
            CheckpointError::SizeMalformed,
        ),
        (
            format!("{ORIGIN}\n5 \n{root}\n"),
            CheckpointError::SizeMalformed,
        ),
        (
            format!("{ORIGIN}\n0x5\n{root}\n"),
            CheckpointError::SizeMalformed,
        ),
        (
            format!("{ORIGIN}\n18446744073709551616\n{root}\n"),
            CheckpointError::SizeMalformed,
        ),
        (
            format!("{ORIGIN}\n5\n{short_root}\n"),
            CheckpointError::RootMalformed,
        ),
        (
            format!("{ORIGIN}\n5\n{long_root}\n"),
            CheckpointError::RootMalformed,
        ),
        (
            format!("{ORIGIN}\n5\n{unpadded_root}\n"),
            CheckpointError::RootMalformed,
        ),
        (
            format!("{ORIGIN}\n5\n{loose_root}\n"),
            CheckpointError::RootMalformed,
        ),
        (
            format!("{ORIGIN}\n5\n{url_safe_root}\n"),
            CheckpointError::RootMalformed,
        ),
        (
            format!("{ORIGIN}\n5\n {root}\n"),
            CheckpointError::RootMalformed,
        ),
        (format!("\n5\n{root}\n"), CheckpointError::BodyMalformed),
        (format!("{ORIGIN}\n5\n"), CheckpointError::BodyMalformed),
        (
            format!("{ORIGIN}\n\n{root}\n"),
            CheckpointError::BodyMalformed,
        ),
        (
            format!("{ORIGIN}\n5\n{root}\n\nextension\n"),
            CheckpointError::BodyMalformed,
        ),
        (
            format!("{ORIGIN}\n5\n{root}\n\n"),
            CheckpointError::BodyMalformed,
        ),
    ];
    for (body, expected) in cases {
        let note = signed_body(&body, &signer);
        assert_eq!(open_checkpoint(&note, &verifier), Err(expected), "{body:?}");
    }
}

#[test]
fn checkpoint_with_extension_lines_or_a_spaced_origin_opens() {
    let signer = new_signer(ORIGIN);
    let verifier = signer.verifier();
    let root = leaf_hash(b"root");
    let note = signed_body(
        &format!("{ORIGIN}\n7\n{}\nfirst ext\nsecond\n", root_base64(&root)),
        &signer,
    );
    let checkpoint = open_checkpoint(&note, &verifier).expect("extension lines are allowed");
    assert_eq!(
        (checkpoint.origin(), checkpoint.size(), checkpoint.root()),
        (ORIGIN, 7, &root)
    );
    assert_eq!(checkpoint.extension_lines(), ["first ext", "second"]);
    assert_eq!(
        sign_checkpoint(&checkpoint, &signer),
        note,
        "re-signing keeps the extension lines"
    );
    // Clients must not assume the origin is a URL (tlog-checkpoint spec).
    let spaced = signed_body(&format!("my log\n7\n{}\n", root_base64(&root)), &signer);
    assert_eq!(
        open_checkpoint(&spaced, &verifier)
            .expect("spaced origin")
            .origin(),
        "my log"
    );
}

#[test]
fn checkpoints_with_unsignable_origins_cannot_be_built() {
    let long_origin = "o".repeat(1025);
    for origin in [
        "",
        "a b",
        "a+b",
        "a\nb",
        "a\tb",
        "tab\u{a0}",
        long_origin.as_str(),
    ] {
        assert!(
            Checkpoint::new(origin, 1, empty_root()).is_err(),
            "built {origin:?}"
        );
    }
}

#[test]
fn invalid_signing_inputs_are_rejected() {
    let pkcs8 = LogSigner::generate().expect("key generation");
    for name in ["", "has space", "has+plus", "new\nline"] {
        assert!(
            LogSigner::from_pkcs8(name, &pkcs8).is_err(),
            "loaded name {name:?}"
        );
    }
    assert!(matches!(
        LogSigner::from_pkcs8(ORIGIN, b"not a key"),
        Err(NoteError::PrivateKeyRejected { .. })
    ));
    let signer = LogSigner::from_pkcs8(ORIGIN, &pkcs8).expect("generated key loads");
    for text in ["", "no final newline", "bell\x07\n"] {
        assert_eq!(
            sign_note(text, &signer),
            Err(NoteError::TextMalformed),
            "signed {text:?}"
        );
    }
    assert!(format!("{signer:?}").contains(ORIGIN));
}

#[test]
fn oversized_checkpoint_body_is_rejected_even_when_signed() {
    let signer = new_signer(ORIGIN);
    let root = root_base64(&leaf_hash(b"root"));
    let padding = "e".repeat(CHECKPOINT_BODY_SIZE_BYTES_MAX);
    let note = signed_body(&format!("{ORIGIN}\n7\n{root}\n{padding}\n"), &signer);
    assert!(matches!(
        open_checkpoint(&note, &signer.verifier()),
        Err(CheckpointError::BodyTooLarge {
            max_bytes: CHECKPOINT_BODY_SIZE_BYTES_MAX,
            ..
        })
    ));
}
