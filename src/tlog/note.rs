//! C2SP signed notes (<https://c2sp.org/signed-note>) with Ed25519 keys.
//!
//! A signed note is a text ending in a newline, a blank line, and one or more
//! signature lines `— <key name> <base64(key id || signature)>`. The key id is
//! the first four bytes of `SHA-256(key name || 0x0A || 0x01 || public key)`,
//! and a verifier key is written `<name>+<hex key id>+<base64(0x01 || key)>`,
//! as in golang.org/x/mod/sumdb/note, so notes and keys interoperate with the
//! Go and transparency-dev tooling that auditors already run.
//!
//! This module must never return note text that was not signed by the key the
//! caller trusts, never accept a known key's signature that fails to verify,
//! never let a signature from another key count, and never panic on hostile
//! input. It knows nothing about what the text means; checkpoints are the
//! checkpoint module's business.

use std::fmt;
use std::str::FromStr;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use ring::digest::{Context, SHA256};
use ring::rand::SystemRandom;
use ring::signature::{Ed25519KeyPair, KeyPair as _, UnparsedPublicKey, ED25519};

/// Largest note [`open_note`] will read. Sixteen signatures must be accepted
/// (signed-note spec) and post-quantum signatures run to about 5 kB each, so
/// this leaves room for those and a generous text.
pub const NOTE_SIZE_BYTES_MAX: usize = 128 * 1024;

/// Most signature lines [`open_note`] will read; the Go implementation's cap.
pub const NOTE_SIGNATURES_MAX: usize = 100;

/// Longest key name accepted when creating or parsing keys and signatures.
pub const KEY_NAME_SIZE_BYTES_MAX: usize = 1024;

/// Signature type byte for Ed25519 in key ids and verifier keys.
const SIGNATURE_TYPE_ED25519: u8 = 0x01;

/// Size of an Ed25519 public key.
const PUBLIC_KEY_SIZE_BYTES: usize = 32;

/// Size of a key id.
const KEY_ID_SIZE_BYTES: usize = 4;

/// Every signature line starts with an em dash (U+2014) and a space.
const SIGNATURE_LINE_PREFIX: &str = "\u{2014} ";

/// Why a note or key was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoteError {
    #[error("note is {size_bytes} bytes, more than the {max_bytes} bytes accepted; refuse it")]
    NoteTooLarge { size_bytes: usize, max_bytes: usize },
    #[error("note contains a control character other than newline; signed notes are plain text")]
    ControlCharacter,
    #[error("note has no blank line followed by signature lines; it is not a signed note")]
    SignatureBlockMissing,
    #[error("signature line {line} is malformed; expected `— <key name> <base64 signature>`")]
    SignatureLineMalformed { line: usize },
    #[error("note has more than {max} signature lines; refuse it")]
    TooManySignatures { max: usize },
    #[error(
        "signature by trusted key {name}+{key_id} does not verify; the note was altered or forged"
    )]
    SignatureInvalid { name: String, key_id: String },
    #[error("note has no signature by trusted key {name}+{key_id}; check the verifier key belongs to this signer")]
    TrustedSignatureMissing { name: String, key_id: String },
    #[error("note text must be non-empty, end with a newline and contain no control character other than newline")]
    TextMalformed,
    #[error("key name must be non-empty, at most {max_bytes} bytes, without spaces, plus signs or control characters")]
    KeyNameInvalid { max_bytes: usize },
    #[error("verifier key is malformed; expected `<name>+<8 lowercase hex digits>+<base64 of 0x01 and 32-byte ed25519 key>`")]
    VerifierKeyMalformed,
    #[error("verifier key id does not match its name and public key; the key was altered")]
    VerifierKeyIdMismatch,
    #[error(
        "verifier key has signature type {signature_type:#04x}; only ed25519 (0x01) is supported"
    )]
    SignatureTypeUnsupported { signature_type: u8 },
    #[error("ed25519 private key rejected ({reason}); supply an unencrypted pkcs#8 ed25519 key")]
    PrivateKeyRejected { reason: String },
    #[error("system random number generator failed; retry key generation")]
    RandomUnavailable,
}

/// Whether `name` may be a key name under the signed-note spec: non-empty,
/// and free of Unicode white space, plus signs and ASCII control characters.
pub(crate) fn is_valid_key_name(name: &str) -> bool {
    !name.is_empty()
        && !name
            .chars()
            .any(|c| c.is_whitespace() || c == '+' || c < '\u{20}')
}

/// Checks a name given to a new signer or verifier: a valid key name of at
/// most [`KEY_NAME_SIZE_BYTES_MAX`] bytes.
fn check_new_key_name(name: &str) -> Result<(), NoteError> {
    if name.len() > KEY_NAME_SIZE_BYTES_MAX || !is_valid_key_name(name) {
        return Err(NoteError::KeyNameInvalid {
            max_bytes: KEY_NAME_SIZE_BYTES_MAX,
        });
    }
    Ok(())
}

/// Whether `text` contains an ASCII control character other than newline.
fn has_forbidden_control(text: &str) -> bool {
    text.bytes().any(|b| b < 0x20 && b != b'\n')
}

/// Key id of an Ed25519 key: `SHA-256(name || 0x0A || 0x01 || key)[:4]`.
fn ed25519_key_id(name: &str, public_key: &[u8; PUBLIC_KEY_SIZE_BYTES]) -> [u8; KEY_ID_SIZE_BYTES] {
    let mut context = Context::new(&SHA256);
    context.update(name.as_bytes());
    context.update(b"\n");
    context.update(&[SIGNATURE_TYPE_ED25519]);
    context.update(public_key);
    let digest = context.finish();
    let mut key_id = [0u8; KEY_ID_SIZE_BYTES];
    key_id.copy_from_slice(&digest.as_ref()[..KEY_ID_SIZE_BYTES]);
    key_id
}

/// An Ed25519 signing key with the name it signs under.
///
/// Holds the private key; [`fmt::Debug`] shows only the name and key id.
pub struct LogSigner {
    name: String,
    key_id: [u8; KEY_ID_SIZE_BYTES],
    key_pair: Ed25519KeyPair,
}

impl LogSigner {
    /// Generates a new Ed25519 key and returns it as PKCS#8 v2 bytes.
    ///
    /// The caller MUST store the bytes as a secret (they are the private key)
    /// and load them with [`LogSigner::from_pkcs8`].
    pub fn generate() -> Result<Vec<u8>, NoteError> {
        let document = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new())
            .map_err(|_| NoteError::RandomUnavailable)?;
        Ok(document.as_ref().to_vec())
    }

    /// Loads an unencrypted Ed25519 PKCS#8 key (v1 as written by OpenSSL, or
    /// v2 as written by [`LogSigner::generate`]) that signs as `name`.
    ///
    /// For a checkpoint signer the name SHOULD be the log's origin.
    pub fn from_pkcs8(name: &str, pkcs8: &[u8]) -> Result<Self, NoteError> {
        check_new_key_name(name)?;
        let key_pair = Ed25519KeyPair::from_pkcs8_maybe_unchecked(pkcs8).map_err(|rejected| {
            NoteError::PrivateKeyRejected {
                reason: rejected.to_string(),
            }
        })?;
        let public_key = public_key_of(&key_pair);
        Ok(Self {
            name: name.to_owned(),
            key_id: ed25519_key_id(name, &public_key),
            key_pair,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn key_id(&self) -> [u8; 4] {
        self.key_id
    }

    pub fn public_key(&self) -> [u8; 32] {
        public_key_of(&self.key_pair)
    }

    /// The verifier for this signer, to publish as a verifier key string.
    pub fn verifier(&self) -> LogVerifier {
        LogVerifier {
            name: self.name.clone(),
            key_id: self.key_id,
            public_key: self.public_key(),
        }
    }

    /// Signature line for `text`, which the caller guarantees is valid note
    /// text (non-empty, ending in a newline, no other control characters).
    fn signature_line(&self, text: &str) -> String {
        let signature = self.key_pair.sign(text.as_bytes());
        let mut signed = Vec::with_capacity(KEY_ID_SIZE_BYTES + signature.as_ref().len());
        signed.extend_from_slice(&self.key_id);
        signed.extend_from_slice(signature.as_ref());
        format!(
            "{SIGNATURE_LINE_PREFIX}{} {}\n",
            self.name,
            BASE64.encode(signed)
        )
    }
}

impl fmt::Debug for LogSigner {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("LogSigner")
            .field("name", &self.name)
            .field("key_id", &hex::encode(self.key_id))
            .finish_non_exhaustive()
    }
}

fn public_key_of(key_pair: &Ed25519KeyPair) -> [u8; PUBLIC_KEY_SIZE_BYTES] {
    let mut public_key = [0u8; PUBLIC_KEY_SIZE_BYTES];
    // ring's Ed25519 public keys are always 32 bytes (RFC 8032 encoding).
    public_key.copy_from_slice(key_pair.public_key().as_ref());
    public_key
}

/// An Ed25519 public key with the name it signs under, as a note verifier.
///
/// Parse one from a verifier key string with [`LogVerifier::parse`] (or
/// `str::parse`); [`fmt::Display`] writes that string back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogVerifier {
    name: String,
    key_id: [u8; KEY_ID_SIZE_BYTES],
    public_key: [u8; PUBLIC_KEY_SIZE_BYTES],
}

impl LogVerifier {
    /// Builds a verifier from a key name and a raw Ed25519 public key.
    pub fn new(name: &str, public_key: [u8; 32]) -> Result<Self, NoteError> {
        check_new_key_name(name)?;
        Ok(Self {
            name: name.to_owned(),
            key_id: ed25519_key_id(name, &public_key),
            public_key,
        })
    }

    /// Parses a verifier key `<name>+<hex key id>+<base64(0x01 || key)>`.
    ///
    /// Rejects anything but exactly eight lowercase hex digits, canonical
    /// base64, signature type 0x01, a 32-byte key, and a key id that matches
    /// the name and key. The caller MUST obtain the string from a trusted
    /// source (configuration, not the note being verified).
    pub fn parse(verifier_key: &str) -> Result<Self, NoteError> {
        let mut parts = verifier_key.splitn(3, '+');
        let (Some(name), Some(key_id_hex), Some(key_base64)) =
            (parts.next(), parts.next(), parts.next())
        else {
            return Err(NoteError::VerifierKeyMalformed);
        };
        if check_new_key_name(name).is_err() {
            return Err(NoteError::VerifierKeyMalformed);
        }
        let key_id = parse_key_id(key_id_hex).ok_or(NoteError::VerifierKeyMalformed)?;
        let key = BASE64
            .decode(key_base64)
            .map_err(|_| NoteError::VerifierKeyMalformed)?;
        let Some((&signature_type, public_key)) = key.split_first() else {
            return Err(NoteError::VerifierKeyMalformed);
        };
        if signature_type != SIGNATURE_TYPE_ED25519 {
            return Err(NoteError::SignatureTypeUnsupported { signature_type });
        }
        let public_key: [u8; PUBLIC_KEY_SIZE_BYTES] = public_key
            .try_into()
            .map_err(|_| NoteError::VerifierKeyMalformed)?;
        let verifier = Self::new(name, public_key)?;
        if verifier.key_id != key_id {
            return Err(NoteError::VerifierKeyIdMismatch);
        }
        Ok(verifier)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn key_id(&self) -> [u8; 4] {
        self.key_id
    }

    pub fn public_key(&self) -> [u8; 32] {
        self.public_key
    }

    fn verifies(&self, text: &str, signature: &[u8]) -> bool {
        UnparsedPublicKey::new(&ED25519, &self.public_key)
            .verify(text.as_bytes(), signature)
            .is_ok()
    }

    fn signature_invalid(&self) -> NoteError {
        NoteError::SignatureInvalid {
            name: self.name.clone(),
            key_id: hex::encode(self.key_id),
        }
    }
}

/// Exactly eight lowercase hex digits, as the signed-note spec writes key ids.
fn parse_key_id(text: &str) -> Option<[u8; KEY_ID_SIZE_BYTES]> {
    let lowercase_hex = text
        .bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if text.len() != 2 * KEY_ID_SIZE_BYTES || !lowercase_hex {
        return None;
    }
    let mut key_id = [0u8; KEY_ID_SIZE_BYTES];
    hex::decode_to_slice(text, &mut key_id).ok()?;
    Some(key_id)
}

impl fmt::Display for LogVerifier {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut key = Vec::with_capacity(1 + PUBLIC_KEY_SIZE_BYTES);
        key.push(SIGNATURE_TYPE_ED25519);
        key.extend_from_slice(&self.public_key);
        write!(
            formatter,
            "{}+{}+{}",
            self.name,
            hex::encode(self.key_id),
            BASE64.encode(key)
        )
    }
}

impl FromStr for LogVerifier {
    type Err = NoteError;

    fn from_str(verifier_key: &str) -> Result<Self, NoteError> {
        Self::parse(verifier_key)
    }
}

/// Signs `text` as a note with one signature line.
///
/// `text` must be non-empty, end with a newline, contain no control character
/// other than newline, and make a note of at most [`NOTE_SIZE_BYTES_MAX`]
/// bytes.
pub fn sign_note(text: &str, signer: &LogSigner) -> Result<String, NoteError> {
    if text.len() > NOTE_SIZE_BYTES_MAX {
        return Err(NoteError::NoteTooLarge {
            size_bytes: text.len(),
            max_bytes: NOTE_SIZE_BYTES_MAX,
        });
    }
    if text.is_empty() || !text.ends_with('\n') || has_forbidden_control(text) {
        return Err(NoteError::TextMalformed);
    }
    let note = sign_valid_text(text, signer);
    if note.len() > NOTE_SIZE_BYTES_MAX {
        return Err(NoteError::NoteTooLarge {
            size_bytes: note.len(),
            max_bytes: NOTE_SIZE_BYTES_MAX,
        });
    }
    Ok(note)
}

/// Signs text the caller has already checked the way [`sign_note`] does.
pub(crate) fn sign_valid_text(text: &str, signer: &LogSigner) -> String {
    let line = signer.signature_line(text);
    let mut note = String::with_capacity(text.len() + 1 + line.len());
    note.push_str(text);
    note.push('\n');
    note.push_str(&line);
    note
}

/// Verifies `note` against the trusted `verifier` and returns its text,
/// including the final newline.
///
/// Follows the signed-note spec: the text ends at the last blank line;
/// signature lines from other keys (a different name or key id) are ignored;
/// every signature line from the trusted key must verify, and at least one
/// must be present. The caller MUST treat the returned text as trusted only
/// for what the trusted key vouches for, and parse it strictly.
pub fn open_note<'note>(note: &'note str, verifier: &LogVerifier) -> Result<&'note str, NoteError> {
    if note.len() > NOTE_SIZE_BYTES_MAX {
        return Err(NoteError::NoteTooLarge {
            size_bytes: note.len(),
            max_bytes: NOTE_SIZE_BYTES_MAX,
        });
    }
    if has_forbidden_control(note) {
        return Err(NoteError::ControlCharacter);
    }
    let split = note.rfind("\n\n").ok_or(NoteError::SignatureBlockMissing)?;
    let (text, signatures) = (&note[..split + 1], &note[split + 2..]);
    let Some(signatures) = signatures.strip_suffix('\n') else {
        return Err(NoteError::SignatureBlockMissing);
    };
    let mut trusted_signatures = 0usize;
    for (line_number, line) in signatures.split('\n').enumerate() {
        if line_number >= NOTE_SIGNATURES_MAX {
            return Err(NoteError::TooManySignatures {
                max: NOTE_SIGNATURES_MAX,
            });
        }
        let (name, key_id, signature) =
            parse_signature_line(line).ok_or(NoteError::SignatureLineMalformed {
                line: line_number + 1,
            })?;
        if name != verifier.name || key_id != verifier.key_id {
            continue;
        }
        if !verifier.verifies(text, &signature) {
            return Err(verifier.signature_invalid());
        }
        trusted_signatures += 1;
    }
    if trusted_signatures == 0 {
        return Err(NoteError::TrustedSignatureMissing {
            name: verifier.name.clone(),
            key_id: hex::encode(verifier.key_id),
        });
    }
    Ok(text)
}

/// Splits `— <name> <base64(key id || signature)>` into the name, the key id
/// and the signature. Rejects bad names, non-canonical base64 and signatures
/// with no byte after the key id.
fn parse_signature_line(line: &str) -> Option<(&str, [u8; KEY_ID_SIZE_BYTES], Vec<u8>)> {
    let rest = line.strip_prefix(SIGNATURE_LINE_PREFIX)?;
    let (name, signature_base64) = rest.split_once(' ')?;
    if !is_valid_key_name(name) || signature_base64.is_empty() {
        return None;
    }
    let mut signature = BASE64.decode(signature_base64).ok()?;
    if signature.len() <= KEY_ID_SIZE_BYTES {
        return None;
    }
    let signature_only = signature.split_off(KEY_ID_SIZE_BYTES);
    let key_id: [u8; KEY_ID_SIZE_BYTES] = signature.try_into().ok()?;
    Some((name, key_id, signature_only))
}
