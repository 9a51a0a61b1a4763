//! Signing keys, the master key, and sealing secrets with the master key.
//!
//! This module is for holding private keys in memory and using them: signing with a
//! [`SigningKey`], and encrypting small secrets (signing keys at rest) with AES-256-GCM
//! under the [`MasterKey`].
//!
//! It must never print, log or return key material in errors or `Debug` output, never
//! choose a nonce other than a fresh random one, and never return plaintext from [`open`]
//! unless the authentication tag verified. Buffers that held secrets are zeroized.

use std::fs;
use std::io::{self, Read as _, Write as _};
use std::path::{Path, PathBuf};

use der::asn1::{AnyRef, OctetStringRef, UintRef};
use der::{Decode as _, Reader as _, SliceReader};
use ring::aead;
use ring::rand::{SecureRandom as _, SystemRandom};
use ring::signature::{self, EcdsaKeyPair, Ed25519KeyPair, KeyPair as _, RsaKeyPair};
use spki::AlgorithmIdentifierRef;
use zeroize::{Zeroize as _, Zeroizing};

use super::cert::{
    parse_certificate, signer_key_algorithm, RSA_MODULUS_BITS_MAX, RSA_MODULUS_BITS_MIN,
};
use super::KeyAlgorithm;

/// The length of the master key.
pub const MASTER_KEY_LENGTH_BYTES: usize = 32;
/// The first byte of every sealed blob; bump it when the format changes.
pub const SEAL_FORMAT_VERSION: u8 = 1;
/// The largest plaintext [`seal`] accepts. Sealing is for keys and similar small secrets.
pub const SEAL_PLAINTEXT_SIZE_BYTES_MAX: usize = 1024 * 1024;
/// The largest PKCS#8 input (DER or PEM) accepted; an 8192-bit RSA key is about 5 KB.
pub const PRIVATE_KEY_INPUT_SIZE_BYTES_MAX: usize = 64 * 1024;

/// The first byte of a key sealed under the master key AND a signer's PIN.
pub const PIN_SEAL_FORMAT_VERSION: u8 = 2;
/// Fewest PBKDF2-HMAC-SHA256 iterations a PIN-sealed key may use.
pub const PIN_PBKDF2_ITERATIONS_MIN: u32 = 100_000;
/// Most iterations (bounds the work an attacker-chosen sealed blob can demand).
pub const PIN_PBKDF2_ITERATIONS_MAX: u32 = 10_000_000;
/// Shortest PIN, in characters: PBKDF2 makes each guess slow, the length makes guesses many.
pub const PIN_CHARS_MIN: usize = 8;
/// Longest PIN, in characters.
pub const PIN_CHARS_MAX: usize = 128;

const NONCE_LENGTH_BYTES: usize = 12;
const SALT_LENGTH_BYTES: usize = 16;
const MASTER_CHECK_LENGTH_BYTES: usize = 8;
const PIN_SEAL_HEADER_BYTES: usize = 1 + 4 + SALT_LENGTH_BYTES + MASTER_CHECK_LENGTH_BYTES;
const TAG_LENGTH_BYTES: usize = 16;
const SEAL_OVERHEAD_BYTES: usize = 1 + NONCE_LENGTH_BYTES + TAG_LENGTH_BYTES;

const OID_RSA_ENCRYPTION: der::oid::ObjectIdentifier = const_oid::db::rfc5912::RSA_ENCRYPTION;
const OID_EC_PUBLIC_KEY: der::oid::ObjectIdentifier = const_oid::db::rfc5912::ID_EC_PUBLIC_KEY;
const OID_P256: der::oid::ObjectIdentifier = const_oid::db::rfc5912::SECP_256_R_1;
const OID_ED25519: der::oid::ObjectIdentifier = const_oid::db::rfc8410::ID_ED_25519;

/// Why a key could not be loaded or used, or sealed data could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The bytes are not an unencrypted PKCS#8 private key.
    #[error("private key is not valid PKCS#8 DER: {0}; supply an unencrypted PKCS#8 key (`openssl pkcs8 -topk8 -nocrypt`)")]
    MalformedPrivateKey(String),
    /// The PEM input holds no usable "PRIVATE KEY" block.
    #[error("{0}")]
    UnsupportedPem(String),
    /// The key's algorithm is not on the allow-list.
    #[error("unsupported private key algorithm: {0}; use rsa (2048 bits or more), ecdsa-p256 or ed25519")]
    UnsupportedAlgorithm(String),
    /// An RSA key below 2048 bits.
    #[error("rsa key of {bits} bits is too small: use at least 2048 bits")]
    RsaKeyTooSmall { bits: usize },
    /// ring refused the key (inconsistent components, wrong curve, ...).
    #[error("private key rejected: {0}")]
    Rejected(String),
    /// The input is larger than the limit for its kind.
    #[error("{what} is {size_bytes} bytes, more than the limit of {limit_bytes} bytes")]
    TooLarge {
        what: &'static str,
        size_bytes: usize,
        limit_bytes: usize,
    },
    /// Signing failed inside ring (should not happen with a valid key).
    #[error("signing failed")]
    SigningFailed,
    /// The operating system's random number generator failed.
    #[error("the system random number generator failed")]
    RandomFailed,
    /// A master key of the wrong length.
    #[error("master key must be exactly 32 bytes, found {length_bytes}: restore the right file or remove it to create a new key (which makes existing sealed data unreadable)")]
    MasterKeyLength { length_bytes: usize },
    /// The master key file could not be read or created.
    #[error("master key file {}: {source}", path.display())]
    MasterKeyIo { path: PathBuf, source: io::Error },
    /// Sealed data too short to hold a version, nonce and tag.
    #[error("sealed data is {length_bytes} bytes, too short to be sealed data")]
    SealedTooShort { length_bytes: usize },
    /// Sealed data in a format this build does not know.
    #[error("sealed data has format version {version}, this build reads version 1 only")]
    UnsupportedSealVersion { version: u8 },
    /// Authentication failed.
    #[error("sealed data failed authentication: wrong master key, wrong associated data, or the data was altered")]
    OpenFailed,
    /// The PIN does not open the key (the master key matched).
    #[error("wrong pin")]
    WrongPin,
    /// The key was sealed under another master key: no PIN can open it here.
    #[error("the key was sealed under another master key: restore this node's master key")]
    WrongMasterKey,
    /// A PIN outside the allowed length.
    #[error("a pin must be {PIN_CHARS_MIN}-{PIN_CHARS_MAX} characters without control characters, got {chars} characters")]
    BadPin { chars: usize },
    /// An iteration count outside the allowed range.
    #[error("pbkdf2 iterations must be {PIN_PBKDF2_ITERATIONS_MIN}-{PIN_PBKDF2_ITERATIONS_MAX}, got {iterations}")]
    BadIterations { iterations: u32 },
    /// Sealed without a PIN (format 1) where a PIN-sealed key is required.
    #[error("the key is sealed without a pin; register the key again with a pin")]
    NotPinSealed,
}

/// A private key that signs with one fixed algorithm:
/// RSA PKCS#1 v1.5 with SHA-256, ECDSA P-256 with SHA-256 (DER signatures), or Ed25519.
pub struct SigningKey {
    pair: KeyPairKind,
    random: SystemRandom,
}

enum KeyPairKind {
    Rsa(RsaKeyPair),
    EcdsaP256(EcdsaKeyPair),
    Ed25519(Ed25519KeyPair),
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("SigningKey")
            .field("algorithm", &self.algorithm())
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// Loads an unencrypted PKCS#8 (v1 or v2) DER private key.
    pub fn from_pkcs8_der(pkcs8_der: &[u8]) -> Result<Self, KeyError> {
        if pkcs8_der.len() > PRIVATE_KEY_INPUT_SIZE_BYTES_MAX {
            return Err(KeyError::TooLarge {
                what: "private key",
                size_bytes: pkcs8_der.len(),
                limit_bytes: PRIVATE_KEY_INPUT_SIZE_BYTES_MAX,
            });
        }
        let random = SystemRandom::new();
        let rejected = |error: ring::error::KeyRejected| KeyError::Rejected(error.to_string());
        let pair = match pkcs8_key_algorithm(pkcs8_der)? {
            KeyAlgorithm::Rsa => {
                KeyPairKind::Rsa(RsaKeyPair::from_pkcs8(pkcs8_der).map_err(rejected)?)
            }
            KeyAlgorithm::EcdsaP256 => KeyPairKind::EcdsaP256(
                EcdsaKeyPair::from_pkcs8(
                    &signature::ECDSA_P256_SHA256_ASN1_SIGNING,
                    pkcs8_der,
                    &random,
                )
                .map_err(rejected)?,
            ),
            // OpenSSL writes PKCS#8 v1 Ed25519 keys without the public key, which
            // `from_pkcs8` refuses; the unchecked variant accepts both versions.
            KeyAlgorithm::Ed25519 => KeyPairKind::Ed25519(
                Ed25519KeyPair::from_pkcs8_maybe_unchecked(pkcs8_der).map_err(rejected)?,
            ),
        };
        Ok(SigningKey { pair, random })
    }

    /// Loads a PEM "PRIVATE KEY" (unencrypted PKCS#8) block. The first PRIVATE KEY block is
    /// used; certificates around it are ignored.
    pub fn from_pem(input: &[u8]) -> Result<Self, KeyError> {
        if input.len() > PRIVATE_KEY_INPUT_SIZE_BYTES_MAX {
            return Err(KeyError::TooLarge {
                what: "private key PEM",
                size_bytes: input.len(),
                limit_bytes: PRIVATE_KEY_INPUT_SIZE_BYTES_MAX,
            });
        }
        let blocks = pem::parse_many(input).map_err(|error| {
            KeyError::UnsupportedPem(format!("private key PEM is invalid: {error}"))
        })?;
        let mut tags = Vec::new();
        for block in blocks {
            let tag = block.tag().to_string();
            let contents = Zeroizing::new(block.into_contents());
            match tag.as_str() {
                "PRIVATE KEY" => return Self::from_pkcs8_der(&contents),
                "ENCRYPTED PRIVATE KEY" => {
                    return Err(KeyError::UnsupportedPem(
                        "encrypted private keys are not supported: decrypt it with `openssl pkcs8 -topk8 -nocrypt`".to_string(),
                    ))
                }
                "RSA PRIVATE KEY" | "EC PRIVATE KEY" => {
                    return Err(KeyError::UnsupportedPem(format!(
                        "\"{tag}\" keys are not supported: convert to PKCS#8 with `openssl pkcs8 -topk8 -nocrypt`"
                    )))
                }
                _ => tags.push(tag),
            }
        }
        Err(KeyError::UnsupportedPem(format!(
            "no \"PRIVATE KEY\" PEM block found (found: {}): supply an unencrypted PKCS#8 key",
            if tags.is_empty() {
                "nothing".to_string()
            } else {
                tags.join(", ")
            }
        )))
    }

    /// The key's algorithm.
    pub fn algorithm(&self) -> KeyAlgorithm {
        match self.pair {
            KeyPairKind::Rsa(_) => KeyAlgorithm::Rsa,
            KeyPairKind::EcdsaP256(_) => KeyAlgorithm::EcdsaP256,
            KeyPairKind::Ed25519(_) => KeyAlgorithm::Ed25519,
        }
    }

    /// The public key as it appears in a certificate's subjectPublicKey BIT STRING
    /// (PKCS#1 RSAPublicKey, uncompressed P-256 point, or the 32 Ed25519 bytes).
    pub fn public_key_bytes(&self) -> &[u8] {
        match &self.pair {
            KeyPairKind::Rsa(pair) => pair.public_key().as_ref(),
            KeyPairKind::EcdsaP256(pair) => pair.public_key().as_ref(),
            KeyPairKind::Ed25519(pair) => pair.public_key().as_ref(),
        }
    }

    /// Whether `cert_der` is a certificate for this key (same algorithm, same public key).
    /// False for anything that does not parse.
    pub fn public_key_matches(&self, cert_der: &[u8]) -> bool {
        let Ok(certificate) = parse_certificate(cert_der) else {
            return false;
        };
        let spki = certificate.public_key();
        signer_key_algorithm(spki).is_ok_and(|algorithm| algorithm == self.algorithm())
            && spki.subject_public_key.data.as_ref() == self.public_key_bytes()
    }

    /// [`SigningKey::sign`], except that an RSA key signs with RSASSA-PSS (SHA-256, MGF1
    /// with SHA-256, 32-byte salt), as Vietnam's validation rules ask of RSA signatures.
    pub fn sign_pss(&self, message: &[u8]) -> Result<Vec<u8>, KeyError> {
        match &self.pair {
            KeyPairKind::Rsa(pair) => {
                let mut signature = vec![0u8; pair.public().modulus_len()];
                pair.sign(&signature::RSA_PSS_SHA256, &self.random, message, &mut signature)
                    .map_err(|_| KeyError::SigningFailed)?;
                Ok(signature)
            }
            _ => self.sign(message),
        }
    }

    /// Signs `message` (for CMS: the DER of the signed attributes). RSA and ECDSA hash it
    /// with SHA-256; Ed25519 signs it directly.
    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>, KeyError> {
        match &self.pair {
            KeyPairKind::Rsa(pair) => {
                let mut signature = vec![0u8; pair.public().modulus_len()];
                pair.sign(
                    &signature::RSA_PKCS1_SHA256,
                    &self.random,
                    message,
                    &mut signature,
                )
                .map_err(|_| KeyError::SigningFailed)?;
                Ok(signature)
            }
            KeyPairKind::EcdsaP256(pair) => pair
                .sign(&self.random, message)
                .map(|signature| signature.as_ref().to_vec())
                .map_err(|_| KeyError::SigningFailed),
            KeyPairKind::Ed25519(pair) => Ok(pair.sign(message).as_ref().to_vec()),
        }
    }
}

/// Reads the algorithm out of a PKCS#8 PrivateKeyInfo / OneAsymmetricKey, and for RSA checks
/// the modulus size so that a small key gets a precise error.
fn pkcs8_key_algorithm(pkcs8_der: &[u8]) -> Result<KeyAlgorithm, KeyError> {
    let malformed = |error: der::Error| KeyError::MalformedPrivateKey(error.to_string());
    let mut reader = SliceReader::new(pkcs8_der).map_err(malformed)?;
    let (algorithm, private_key) = reader
        .sequence(|body| {
            let _version = u8::decode(body)?;
            let algorithm = AlgorithmIdentifierRef::decode(body)?;
            let private_key = OctetStringRef::decode(body)?;
            // Attributes and (v2) the public key follow; ring checks them.
            let rest = body.remaining_len();
            body.read_slice(rest)?;
            Ok((algorithm, private_key))
        })
        .map_err(malformed)?;
    reader.finish(()).map_err(malformed)?;

    if algorithm.oid == OID_RSA_ENCRYPTION {
        let bits = rsa_modulus_bits(private_key.as_bytes()).map_err(malformed)?;
        if bits < RSA_MODULUS_BITS_MIN {
            return Err(KeyError::RsaKeyTooSmall { bits });
        }
        if bits > RSA_MODULUS_BITS_MAX {
            return Err(KeyError::UnsupportedAlgorithm(format!(
                "rsa key of {bits} bits (the limit is {RSA_MODULUS_BITS_MAX})"
            )));
        }
        return Ok(KeyAlgorithm::Rsa);
    }
    if algorithm.oid == OID_EC_PUBLIC_KEY {
        let curve = algorithm.parameters.and_then(|parameters: AnyRef<'_>| {
            parameters.decode_as::<der::oid::ObjectIdentifier>().ok()
        });
        return match curve {
            Some(curve) if curve == OID_P256 => Ok(KeyAlgorithm::EcdsaP256),
            Some(curve) => Err(KeyError::UnsupportedAlgorithm(format!(
                "elliptic curve {curve}"
            ))),
            None => Err(KeyError::UnsupportedAlgorithm(
                "elliptic curve key without a named curve".to_string(),
            )),
        };
    }
    if algorithm.oid == OID_ED25519 {
        return Ok(KeyAlgorithm::Ed25519);
    }
    Err(KeyError::UnsupportedAlgorithm(format!(
        "key algorithm {}",
        algorithm.oid
    )))
}

/// The modulus size of a PKCS#1 RSAPrivateKey.
fn rsa_modulus_bits(rsa_private_key_der: &[u8]) -> der::Result<usize> {
    let mut reader = SliceReader::new(rsa_private_key_der)?;
    reader.sequence(|body| {
        let _version = u8::decode(body)?;
        let modulus = UintRef::decode(body)?;
        let rest = body.remaining_len();
        body.read_slice(rest)?;
        let bytes = modulus.as_bytes();
        Ok(match bytes.first() {
            // `UintRef` strips leading zeros, so the first byte is significant.
            Some(first) => (bytes.len() - 1) * 8 + (8 - first.leading_zeros() as usize),
            None => 0,
        })
    })
}

/// The 32-byte key that seals secrets at rest. Zeroized on drop; `Debug` prints no key.
#[derive(Clone)]
pub struct MasterKey(Zeroizing<[u8; MASTER_KEY_LENGTH_BYTES]>);

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("MasterKey(<redacted>)")
    }
}

impl MasterKey {
    /// A master key from its 32 bytes.
    pub fn from_bytes(bytes: [u8; MASTER_KEY_LENGTH_BYTES]) -> Self {
        MasterKey(Zeroizing::new(bytes))
    }

    /// A master key from a slice, which must be exactly 32 bytes.
    pub fn from_slice(bytes: &[u8]) -> Result<Self, KeyError> {
        let mut key = Zeroizing::new([0u8; MASTER_KEY_LENGTH_BYTES]);
        if bytes.len() != MASTER_KEY_LENGTH_BYTES {
            return Err(KeyError::MasterKeyLength {
                length_bytes: bytes.len(),
            });
        }
        key.copy_from_slice(bytes);
        Ok(MasterKey(key))
    }

    /// A fresh random master key.
    pub fn generate() -> Result<Self, KeyError> {
        let mut key = Zeroizing::new([0u8; MASTER_KEY_LENGTH_BYTES]);
        SystemRandom::new()
            .fill(key.as_mut())
            .map_err(|_| KeyError::RandomFailed)?;
        Ok(MasterKey(key))
    }

    /// Reads the raw 32-byte key at `path`, or, if no file is there, creates one with a fresh
    /// random key, permissions 0600 (on Unix) and an fsync. A file of any other length is an
    /// error, never overwritten. Existing files' permissions are not checked (mounted
    /// secrets often are 0644); the caller decides that policy.
    pub fn load_or_create(path: &Path) -> Result<Self, KeyError> {
        let io_error = |source: io::Error| KeyError::MasterKeyIo {
            path: path.to_path_buf(),
            source,
        };
        match Self::load(path) {
            Err(KeyError::MasterKeyIo { source, .. })
                if source.kind() == io::ErrorKind::NotFound => {}
            other => return other,
        }
        let key = Self::generate()?;
        match create_private_file(path) {
            Ok(mut file) => {
                file.write_all(key.0.as_ref()).map_err(io_error)?;
                file.sync_all().map_err(io_error)?;
                Ok(key)
            }
            // Another process created it between our read and our create: use theirs.
            Err(error) if error.kind() == io::ErrorKind::AlreadyExists => Self::load(path),
            Err(error) => Err(io_error(error)),
        }
    }

    fn load(path: &Path) -> Result<Self, KeyError> {
        let io_error = |source: io::Error| KeyError::MasterKeyIo {
            path: path.to_path_buf(),
            source,
        };
        let mut file = fs::File::open(path).map_err(io_error)?;
        // Read one byte past the expected length to detect longer files without reading them whole.
        let mut buffer = Zeroizing::new(Vec::with_capacity(MASTER_KEY_LENGTH_BYTES + 1));
        (&mut file)
            .take(MASTER_KEY_LENGTH_BYTES as u64 + 1)
            .read_to_end(&mut buffer)
            .map_err(io_error)?;
        if buffer.len() != MASTER_KEY_LENGTH_BYTES {
            let length_bytes = match file.metadata() {
                Ok(metadata) => usize::try_from(metadata.len()).unwrap_or(usize::MAX),
                Err(_) => buffer.len(),
            };
            return Err(KeyError::MasterKeyLength { length_bytes });
        }
        Self::from_slice(&buffer)
    }

    fn aead_key(&self) -> Result<aead::LessSafeKey, KeyError> {
        // AES-256 takes exactly 32 bytes, which the type guarantees; map the error anyway.
        let unbound = aead::UnboundKey::new(&aead::AES_256_GCM, self.0.as_ref())
            .map_err(|_| KeyError::OpenFailed)?;
        Ok(aead::LessSafeKey::new(unbound))
    }
}

#[cfg(unix)]
fn create_private_file(path: &Path) -> io::Result<fs::File> {
    use std::os::unix::fs::OpenOptionsExt as _;
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
}

#[cfg(not(unix))]
fn create_private_file(path: &Path) -> io::Result<fs::File> {
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
}

/// The additional authenticated data: the format's version byte, then the caller's data, so
/// that a blob cannot be replayed under another format version.
fn versioned_aad(version: u8, associated_data: &[u8]) -> aead::Aad<Vec<u8>> {
    let mut aad = Vec::with_capacity(1 + associated_data.len());
    aad.push(version);
    aad.extend_from_slice(associated_data);
    aead::Aad::from(aad)
}

/// AES-256-GCM: `plaintext` encrypted under `key` with `nonce`, the tag appended. Room for
/// the tag is reserved first so that appending it does not reallocate and leave a copy of
/// the plaintext behind in freed memory.
fn aead_seal(key: &aead::LessSafeKey, nonce: [u8; NONCE_LENGTH_BYTES], aad: aead::Aad<Vec<u8>>, plaintext: &[u8]) -> Result<Zeroizing<Vec<u8>>, KeyError> {
    let mut in_out = Zeroizing::new(Vec::with_capacity(plaintext.len() + TAG_LENGTH_BYTES));
    in_out.extend_from_slice(plaintext);
    key.seal_in_place_append_tag(aead::Nonce::assume_unique_for_key(nonce), aad, &mut *in_out)
        .map_err(|_| KeyError::TooLarge {
            what: "plaintext to seal",
            size_bytes: plaintext.len(),
            limit_bytes: SEAL_PLAINTEXT_SIZE_BYTES_MAX,
        })?;
    Ok(in_out)
}

/// Opens what [`aead_seal`] produced; `None` unless the tag verified. The tag bytes are
/// zeroized and cut off.
fn aead_open(key: &aead::LessSafeKey, nonce: &[u8], aad: aead::Aad<Vec<u8>>, ciphertext: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
    let nonce = aead::Nonce::try_assume_unique_for_key(nonce).ok()?;
    let mut in_out = Zeroizing::new(ciphertext.to_vec());
    let plaintext_length = key.open_in_place(nonce, aad, &mut in_out).ok()?.len();
    in_out[plaintext_length..].zeroize();
    in_out.truncate(plaintext_length);
    Some(in_out)
}

/// Encrypts `plaintext` with AES-256-GCM under `master`, binding `associated_data` (for
/// example the key's identifier, so a sealed key cannot be swapped for another's).
/// Output: version byte (1) || 96-bit random nonce || ciphertext || 128-bit tag.
pub fn seal(
    master: &MasterKey,
    associated_data: &[u8],
    plaintext: &[u8],
) -> Result<Vec<u8>, KeyError> {
    if plaintext.len() > SEAL_PLAINTEXT_SIZE_BYTES_MAX {
        return Err(KeyError::TooLarge {
            what: "plaintext to seal",
            size_bytes: plaintext.len(),
            limit_bytes: SEAL_PLAINTEXT_SIZE_BYTES_MAX,
        });
    }
    let mut nonce = [0u8; NONCE_LENGTH_BYTES];
    SystemRandom::new()
        .fill(&mut nonce)
        .map_err(|_| KeyError::RandomFailed)?;
    let body = aead_seal(&master.aead_key()?, nonce, versioned_aad(SEAL_FORMAT_VERSION, associated_data), plaintext)?;
    let mut sealed = Vec::with_capacity(SEAL_OVERHEAD_BYTES + plaintext.len());
    sealed.push(SEAL_FORMAT_VERSION);
    sealed.extend_from_slice(&nonce);
    sealed.extend_from_slice(&body);
    Ok(sealed)
}

/// Decrypts what [`seal`] produced. Fails (never panics) on a wrong key, wrong associated
/// data, truncation or any altered byte. The plaintext is zeroized when dropped.
pub fn open(
    master: &MasterKey,
    associated_data: &[u8],
    sealed: &[u8],
) -> Result<Zeroizing<Vec<u8>>, KeyError> {
    if sealed.len() < SEAL_OVERHEAD_BYTES {
        return Err(KeyError::SealedTooShort {
            length_bytes: sealed.len(),
        });
    }
    if sealed.len() > SEAL_PLAINTEXT_SIZE_BYTES_MAX + SEAL_OVERHEAD_BYTES {
        return Err(KeyError::TooLarge {
            what: "sealed data",
            size_bytes: sealed.len(),
            limit_bytes: SEAL_PLAINTEXT_SIZE_BYTES_MAX + SEAL_OVERHEAD_BYTES,
        });
    }
    let Some((&version, rest)) = sealed.split_first() else {
        return Err(KeyError::SealedTooShort { length_bytes: 0 });
    };
    if version != SEAL_FORMAT_VERSION {
        return Err(KeyError::UnsupportedSealVersion { version });
    }
    // `rest` holds at least a nonce and a tag: the length was checked above.
    let (nonce, ciphertext) = rest.split_at(NONCE_LENGTH_BYTES);
    aead_open(&master.aead_key()?, nonce, versioned_aad(SEAL_FORMAT_VERSION, associated_data), ciphertext).ok_or(KeyError::OpenFailed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::devpki;
    use crate::crypto::testutil::{
        openssl, openssl_genpkey, openssl_genpkey_pem, openssl_ok, path_text, rsa_keys, signer_spec,
    };

    fn master() -> MasterKey {
        MasterKey::from_bytes([7u8; MASTER_KEY_LENGTH_BYTES])
    }

    #[test]
    fn sealed_data_opens_to_the_plaintext() {
        let sealed = seal(&master(), b"key-id-1", b"secret key bytes").expect("seal");
        assert_eq!(
            sealed.len(),
            SEAL_OVERHEAD_BYTES + b"secret key bytes".len()
        );
        assert_eq!(sealed[0], SEAL_FORMAT_VERSION);
        assert!(
            !contains(&sealed, b"secret"),
            "the plaintext must not appear in the output"
        );
        let opened = open(&master(), b"key-id-1", &sealed).expect("open");
        assert_eq!(opened.as_slice(), b"secret key bytes");
    }

    #[test]
    fn empty_plaintext_round_trips() {
        let sealed = seal(&master(), b"", b"").expect("seal");
        assert!(open(&master(), b"", &sealed).expect("open").is_empty());
    }

    fn contains(haystack: &[u8], needle: &[u8]) -> bool {
        haystack
            .windows(needle.len())
            .any(|window| window == needle)
    }

    #[test]
    fn sealing_twice_uses_fresh_nonces() {
        let first = seal(&master(), b"aad", b"same plaintext").expect("seal");
        let second = seal(&master(), b"aad", b"same plaintext").expect("seal");
        assert_ne!(
            first[1..1 + NONCE_LENGTH_BYTES],
            second[1..1 + NONCE_LENGTH_BYTES]
        );
        assert_ne!(first, second);
    }

    #[test]
    fn opening_with_the_wrong_key_fails() {
        let sealed = seal(&master(), b"aad", b"plaintext").expect("seal");
        let other = MasterKey::from_bytes([8u8; MASTER_KEY_LENGTH_BYTES]);
        assert!(matches!(
            open(&other, b"aad", &sealed),
            Err(KeyError::OpenFailed)
        ));
    }

    #[test]
    fn opening_with_any_byte_flipped_fails() {
        let sealed = seal(&master(), b"aad", b"plaintext").expect("seal");
        for position in 0..sealed.len() {
            let mut altered = sealed.clone();
            altered[position] ^= 0x01;
            let result = open(&master(), b"aad", &altered);
            assert!(result.is_err(), "flipping byte {position} went unnoticed");
        }
    }

    #[test]
    fn opening_with_the_wrong_associated_data_fails() {
        let sealed = seal(&master(), b"key-id-1", b"plaintext").expect("seal");
        assert!(matches!(
            open(&master(), b"key-id-2", &sealed),
            Err(KeyError::OpenFailed)
        ));
        assert!(matches!(
            open(&master(), b"", &sealed),
            Err(KeyError::OpenFailed)
        ));
    }

    #[test]
    fn truncated_sealed_data_fails() {
        let sealed = seal(&master(), b"aad", b"plaintext").expect("seal");
        for length in 0..sealed.len() {
            assert!(
                open(&master(), b"aad", &sealed[..length]).is_err(),
                "truncated to {length} opened"
            );
        }
        assert!(matches!(
            open(&master(), b"aad", &sealed[..5]),
            Err(KeyError::SealedTooShort { length_bytes: 5 })
        ));
    }

    #[test]
    fn unknown_seal_version_is_reported() {
        let mut sealed = seal(&master(), b"aad", b"plaintext").expect("seal");
        sealed[0] = 2;
        assert!(matches!(
            open(&master(), b"aad", &sealed),
            Err(KeyError::UnsupportedSealVersion { version: 2 })
        ));
    }

    #[test]
    fn oversized_plaintext_is_refused() {
        let plaintext = vec![0u8; SEAL_PLAINTEXT_SIZE_BYTES_MAX + 1];
        assert!(matches!(
            seal(&master(), b"", &plaintext),
            Err(KeyError::TooLarge { .. })
        ));
    }

    #[test]
    fn master_key_is_created_private_and_loaded_again() {
        let directory = tempfile::tempdir().expect("temporary directory");
        let path = directory.path().join("master.key");
        let created = MasterKey::load_or_create(&path).expect("create");
        let metadata = fs::metadata(&path).expect("file exists");
        assert_eq!(metadata.len(), MASTER_KEY_LENGTH_BYTES as u64);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            assert_eq!(metadata.permissions().mode() & 0o777, 0o600);
        }
        let loaded = MasterKey::load_or_create(&path).expect("load");
        let sealed = seal(&created, b"aad", b"plaintext").expect("seal");
        assert_eq!(
            open(&loaded, b"aad", &sealed).expect("same key").as_slice(),
            b"plaintext"
        );
    }

    #[test]
    fn master_key_file_of_the_wrong_length_is_refused_and_kept() {
        let directory = tempfile::tempdir().expect("temporary directory");
        let path = directory.path().join("master.key");
        fs::write(&path, [1u8; 31]).expect("write");
        assert!(matches!(
            MasterKey::load_or_create(&path),
            Err(KeyError::MasterKeyLength { length_bytes: 31 })
        ));
        fs::write(&path, [1u8; 100]).expect("write");
        assert!(matches!(
            MasterKey::load_or_create(&path),
            Err(KeyError::MasterKeyLength { length_bytes: 100 })
        ));
        assert_eq!(
            fs::read(&path).expect("still there"),
            vec![1u8; 100],
            "never overwritten"
        );
        assert!(matches!(
            MasterKey::from_slice(&[0u8; 33]),
            Err(KeyError::MasterKeyLength { length_bytes: 33 })
        ));
    }

    #[test]
    fn master_key_in_a_missing_directory_is_an_io_error() {
        let directory = tempfile::tempdir().expect("temporary directory");
        let path = directory.path().join("absent").join("master.key");
        assert!(matches!(
            MasterKey::load_or_create(&path),
            Err(KeyError::MasterKeyIo { .. })
        ));
    }

    #[test]
    fn debug_output_never_shows_key_material() {
        let key = MasterKey::from_bytes([0xAB; MASTER_KEY_LENGTH_BYTES]);
        let shown = format!("{key:?}");
        assert!(
            !shown.to_lowercase().contains("ab") && !shown.contains("171"),
            "{shown}"
        );
        let signing_key = devpki::self_signed_ca(&crate::crypto::testutil::ca_spec(
            "Root",
            KeyAlgorithm::Ed25519,
        ))
        .expect("root")
        .signing_key()
        .expect("key");
        assert_eq!(
            format!("{signing_key:?}"),
            "SigningKey { algorithm: Ed25519, .. }"
        );
    }

    #[test]
    fn openssl_made_keys_of_each_algorithm_load_from_pem() {
        let cases: [(&[&str], KeyAlgorithm); 3] = [
            (
                &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"],
                KeyAlgorithm::EcdsaP256,
            ),
            (&["-algorithm", "ED25519"], KeyAlgorithm::Ed25519),
            (
                &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"],
                KeyAlgorithm::Rsa,
            ),
        ];
        for (arguments, algorithm) in cases {
            let key = SigningKey::from_pem(&openssl_genpkey_pem(arguments))
                .unwrap_or_else(|error| panic!("{algorithm}: {error}"));
            assert_eq!(key.algorithm(), algorithm);
        }
    }

    /// Signs a message with the key (optionally spoiling the signature), and asks
    /// `openssl pkeyutl` to verify it with the public key openssl derives from the same key.
    fn openssl_verifies_raw_signature(
        key_pkcs8_der: &[u8],
        digest_args: &[&str],
        tamper: bool,
    ) -> bool {
        let key = SigningKey::from_pkcs8_der(key_pkcs8_der).expect("key");
        let message = b"message to sign";
        let mut signature = key.sign(message).expect("sign");
        if tamper {
            let last = signature.len() - 1;
            signature[last] ^= 0x01;
        }
        let directory = tempfile::tempdir().expect("temporary directory");
        let path = |name: &str| path_text(&directory.path().join(name));
        fs::write(path("key.der"), key_pkcs8_der).expect("write");
        fs::write(path("message"), message).expect("write");
        fs::write(path("signature"), &signature).expect("write");
        openssl_ok(&[
            "pkey",
            "-inform",
            "DER",
            "-in",
            &path("key.der"),
            "-pubout",
            "-out",
            &path("public.pem"),
        ]);
        let (public_path, message_path, signature_path) =
            (path("public.pem"), path("message"), path("signature"));
        let mut args = vec!["pkeyutl", "-verify", "-pubin", "-inkey", &public_path];
        args.extend_from_slice(digest_args);
        args.extend_from_slice(&["-rawin", "-in", &message_path, "-sigfile", &signature_path]);
        openssl(&args).status.success()
    }

    #[test]
    fn signatures_of_each_algorithm_verify_with_openssl() {
        let ecdsa = openssl_genpkey(&["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"]);
        let ed25519 = openssl_genpkey(&["-algorithm", "ED25519"]);
        let rsa = &rsa_keys()[0];
        for (key, digest_args, name) in [
            (&ecdsa, &["-digest", "sha256"][..], "ecdsa-p256"),
            (&ed25519, &[][..], "ed25519"),
            (rsa, &["-digest", "sha256"][..], "rsa"),
        ] {
            assert!(
                openssl_verifies_raw_signature(key, digest_args, false),
                "{name} signature rejected"
            );
            assert!(
                !openssl_verifies_raw_signature(key, digest_args, true),
                "{name} spoiled signature accepted"
            );
        }
    }

    #[test]
    fn rsa_key_below_2048_bits_is_refused_as_too_small() {
        let small = openssl_genpkey(&["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:1024"]);
        assert!(matches!(
            SigningKey::from_pkcs8_der(&small),
            Err(KeyError::RsaKeyTooSmall { bits: 1024 })
        ));
    }

    #[test]
    fn p384_key_is_refused_as_unsupported() {
        let p384 = openssl_genpkey(&["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-384"]);
        let error = SigningKey::from_pkcs8_der(&p384).expect_err("p-384");
        assert!(
            matches!(&error, KeyError::UnsupportedAlgorithm(reason) if reason.contains("1.3.132.0.34")),
            "{error}"
        );
    }

    #[test]
    fn encrypted_and_legacy_pem_keys_are_refused_with_advice() {
        let encrypted =
            b"-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n";
        let error = SigningKey::from_pem(encrypted).expect_err("encrypted");
        assert!(error.to_string().contains("-nocrypt"), "{error}");
        let legacy = b"-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----\n";
        let error = SigningKey::from_pem(legacy).expect_err("sec1");
        assert!(error.to_string().contains("convert to PKCS#8"), "{error}");
        let certificate_only = b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        let error = SigningKey::from_pem(certificate_only).expect_err("no key");
        assert!(error.to_string().contains("found: CERTIFICATE"), "{error}");
    }

    #[test]
    fn garbage_pkcs8_is_refused_as_malformed() {
        assert!(matches!(
            SigningKey::from_pkcs8_der(b"\x30\x03\x02\x01"),
            Err(KeyError::MalformedPrivateKey(_))
        ));
        assert!(matches!(
            SigningKey::from_pkcs8_der(b""),
            Err(KeyError::MalformedPrivateKey(_))
        ));
    }

    #[test]
    fn public_key_matches_only_its_own_certificate() {
        let root = devpki::self_signed_ca(&crate::crypto::testutil::ca_spec(
            "Root",
            KeyAlgorithm::EcdsaP256,
        ))
        .expect("root");
        let leaf =
            devpki::issue(&signer_spec("Alice", KeyAlgorithm::EcdsaP256), &root).expect("leaf");
        let leaf_key = leaf.signing_key().expect("key");
        assert!(leaf_key.public_key_matches(&leaf.cert_der));
        assert!(!leaf_key.public_key_matches(&root.cert_der));
        assert!(!leaf_key.public_key_matches(b"not a certificate"));
    }
}

/// Checks a PIN's length and characters.
pub fn check_pin(pin: &str) -> Result<(), KeyError> {
    let chars = pin.chars().count();
    if !(PIN_CHARS_MIN..=PIN_CHARS_MAX).contains(&chars) || pin.chars().any(char::is_control) {
        return Err(KeyError::BadPin { chars });
    }
    Ok(())
}

/// The key-encryption key: HMAC-SHA256 under the master key over the PBKDF2-HMAC-SHA256
/// stretch of the PIN. Neither secret alone yields it.
fn pin_key_encryption_key(
    master: &MasterKey,
    pin: &str,
    salt: &[u8],
    iterations: u32,
) -> Result<Zeroizing<[u8; 32]>, KeyError> {
    let iterations_nonzero =
        std::num::NonZeroU32::new(iterations).ok_or(KeyError::BadIterations { iterations })?;
    let mut stretched = Zeroizing::new([0u8; 32]);
    ring::pbkdf2::derive(ring::pbkdf2::PBKDF2_HMAC_SHA256, iterations_nonzero, salt, pin.as_bytes(), stretched.as_mut());
    let mac_key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, master.0.as_ref());
    let mut context = ring::hmac::Context::with_key(&mac_key);
    context.update(b"kyso/pin-sealed-key/v2");
    context.update(salt);
    context.update(stretched.as_ref());
    let mut kek = Zeroizing::new([0u8; 32]);
    kek.copy_from_slice(context.sign().as_ref());
    Ok(kek)
}

fn pin_aead_key(master: &MasterKey, pin: &str, salt: &[u8], iterations: u32) -> Result<aead::LessSafeKey, KeyError> {
    let kek = pin_key_encryption_key(master, pin, salt, iterations)?;
    // AES-256 takes exactly 32 bytes, which the type guarantees; map the error anyway.
    let unbound = aead::UnboundKey::new(&aead::AES_256_GCM, kek.as_ref()).map_err(|_| KeyError::OpenFailed)?;
    Ok(aead::LessSafeKey::new(unbound))
}

/// A short value that tells a wrong master key from a wrong PIN without revealing either.
fn master_check(master: &MasterKey, salt: &[u8]) -> [u8; MASTER_CHECK_LENGTH_BYTES] {
    let mac_key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, master.0.as_ref());
    let mut context = ring::hmac::Context::with_key(&mac_key);
    context.update(b"kyso/master-check/v2");
    context.update(salt);
    let mut check = [0u8; MASTER_CHECK_LENGTH_BYTES];
    check.copy_from_slice(&context.sign().as_ref()[..MASTER_CHECK_LENGTH_BYTES]);
    check
}

/// Encrypts `plaintext` (a signer's PKCS#8 key) under a key derived from both the master
/// key and `pin` (PBKDF2-HMAC-SHA256 with `iterations` and a random salt), binding
/// `associated_data`. Output: version (2) || iterations (u32, big-endian) || salt (16) ||
/// master-key check (8) || nonce (12) || ciphertext || tag (16).
pub fn seal_with_pin(
    master: &MasterKey,
    pin: &str,
    iterations: u32,
    associated_data: &[u8],
    plaintext: &[u8],
) -> Result<Vec<u8>, KeyError> {
    check_pin(pin)?;
    if !(PIN_PBKDF2_ITERATIONS_MIN..=PIN_PBKDF2_ITERATIONS_MAX).contains(&iterations) {
        return Err(KeyError::BadIterations { iterations });
    }
    if plaintext.len() > SEAL_PLAINTEXT_SIZE_BYTES_MAX {
        return Err(KeyError::TooLarge {
            what: "plaintext to seal",
            size_bytes: plaintext.len(),
            limit_bytes: SEAL_PLAINTEXT_SIZE_BYTES_MAX,
        });
    }
    let random = SystemRandom::new();
    let mut salt = [0u8; SALT_LENGTH_BYTES];
    let mut nonce = [0u8; NONCE_LENGTH_BYTES];
    random.fill(&mut salt).map_err(|_| KeyError::RandomFailed)?;
    random.fill(&mut nonce).map_err(|_| KeyError::RandomFailed)?;
    let key = pin_aead_key(master, pin, &salt, iterations)?;
    let in_out = aead_seal(&key, nonce, versioned_aad(PIN_SEAL_FORMAT_VERSION, associated_data), plaintext)?;
    let mut sealed = Vec::with_capacity(PIN_SEAL_HEADER_BYTES + NONCE_LENGTH_BYTES + in_out.len());
    sealed.push(PIN_SEAL_FORMAT_VERSION);
    sealed.extend_from_slice(&iterations.to_be_bytes());
    sealed.extend_from_slice(&salt);
    sealed.extend_from_slice(&master_check(master, &salt));
    sealed.extend_from_slice(&nonce);
    sealed.extend_from_slice(&in_out);
    Ok(sealed)
}

/// Decrypts what [`seal_with_pin`] produced. A wrong PIN is [`KeyError::WrongPin`]; a key
/// sealed under another master key is [`KeyError::WrongMasterKey`] (no PIN was tried, so
/// it must not count as a wrong PIN).
pub fn open_with_pin(
    master: &MasterKey,
    pin: &str,
    associated_data: &[u8],
    sealed: &[u8],
) -> Result<Zeroizing<Vec<u8>>, KeyError> {
    match sealed.first() {
        Some(&PIN_SEAL_FORMAT_VERSION) => {}
        Some(&SEAL_FORMAT_VERSION) => return Err(KeyError::NotPinSealed),
        Some(&version) => return Err(KeyError::UnsupportedSealVersion { version }),
        None => return Err(KeyError::SealedTooShort { length_bytes: 0 }),
    }
    if sealed.len() < PIN_SEAL_HEADER_BYTES + NONCE_LENGTH_BYTES + TAG_LENGTH_BYTES {
        return Err(KeyError::SealedTooShort { length_bytes: sealed.len() });
    }
    let (header, body) = sealed.split_at(PIN_SEAL_HEADER_BYTES);
    let iterations = u32::from_be_bytes([header[1], header[2], header[3], header[4]]);
    if !(PIN_PBKDF2_ITERATIONS_MIN..=PIN_PBKDF2_ITERATIONS_MAX).contains(&iterations) {
        return Err(KeyError::BadIterations { iterations });
    }
    let salt = &header[5..5 + SALT_LENGTH_BYTES];
    let check = &header[5 + SALT_LENGTH_BYTES..];
    if master_check(master, salt) != check {
        return Err(KeyError::WrongMasterKey);
    }
    check_pin(pin).map_err(|_| KeyError::WrongPin)?;
    let key = pin_aead_key(master, pin, salt, iterations)?;
    let (nonce, ciphertext) = body.split_at(NONCE_LENGTH_BYTES);
    aead_open(&key, nonce, versioned_aad(PIN_SEAL_FORMAT_VERSION, associated_data), ciphertext).ok_or(KeyError::WrongPin)
}

#[cfg(test)]
mod pin_tests {
    use super::*;

    const ITERATIONS: u32 = PIN_PBKDF2_ITERATIONS_MIN;

    #[test]
    fn pin_sealed_key_opens_only_with_both_the_master_key_and_the_pin() {
        let master = MasterKey::generate().unwrap();
        let sealed = seal_with_pin(&master, "correct horse", ITERATIONS, b"signer-1", b"secret pkcs8").unwrap();
        assert_eq!(open_with_pin(&master, "correct horse", b"signer-1", &sealed).unwrap().as_slice(), b"secret pkcs8");
        assert!(matches!(open_with_pin(&master, "wrong horse!", b"signer-1", &sealed), Err(KeyError::WrongPin)));
        let other_master = MasterKey::generate().unwrap();
        assert!(matches!(open_with_pin(&other_master, "correct horse", b"signer-1", &sealed), Err(KeyError::WrongMasterKey)));
        // The master key alone (the format-1 opener) cannot open it either.
        assert!(open(&master, b"signer-1", &sealed).is_err());
        assert!(matches!(open_with_pin(&master, "correct horse", b"signer-2", &sealed), Err(KeyError::WrongPin)));
    }

    #[test]
    fn short_pins_and_weak_iteration_counts_are_refused() {
        let master = MasterKey::generate().unwrap();
        assert!(matches!(seal_with_pin(&master, "1234", ITERATIONS, b"a", b"k"), Err(KeyError::BadPin { chars: 4 })));
        assert!(matches!(seal_with_pin(&master, "12345678", 1000, b"a", b"k"), Err(KeyError::BadIterations { .. })));
        let mut sealed = seal_with_pin(&master, "12345678", ITERATIONS, b"a", b"k").unwrap();
        sealed[1..5].copy_from_slice(&1u32.to_be_bytes());
        assert!(matches!(open_with_pin(&master, "12345678", b"a", &sealed), Err(KeyError::BadIterations { iterations: 1 })));
    }

    #[test]
    fn a_master_key_only_seal_is_not_accepted_as_pin_sealed() {
        let master = MasterKey::generate().unwrap();
        let sealed = seal(&master, b"a", b"k").unwrap();
        assert!(matches!(open_with_pin(&master, "12345678", b"a", &sealed), Err(KeyError::NotPinSealed)));
    }
}
