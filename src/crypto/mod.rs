//! Cryptography for kyso: certificates, signing keys, sealed secrets and CMS signatures.
//!
//! This module is for turning bytes into signatures and back, and for deciding whether a
//! certificate chain leads to a configured trust anchor. Every function is a pure
//! computation over its arguments (plus the operating system's random number generator and,
//! for [`keys::MasterKey::load_or_create`], one file path the caller names).
//!
//! It must never know about storage, gRPC, configuration files or any other part of kyso,
//! never read the wall clock (callers pass the time they mean), never fetch anything over
//! the network (no AIA chasing, no CRL download or OCSP: CRLs are imported by an operator), and never log secret material.
//!
//! Submodules:
//! - [`cert`]: parse PEM/DER certificates, hold trust anchors, validate a signer's chain.
//! - [`keys`]: signing keys loaded from PKCS#8, the master key, `seal`/`open` with it, and
//!   `seal_with_pin`/`open_with_pin` under the master key and a signer's PIN.
//! - [`cms`]: detached CMS (RFC 5652) signatures with CAdES signed attributes.
//! - [`crl`]: certificate revocation lists, their signature checked against trusted CAs.
//! - [`tsa`]: the RFC 3161 time-stamping authority (requests, tokens, replies) and the
//!   checks of a token over a signature.
//! - [`devpki`]: a throwaway certificate authority for `kyso dev` and for tests.

pub mod cert;
pub mod cms;
pub mod crl;
pub mod devpki;
pub mod keys;
pub mod tsa;

#[cfg(test)]
pub(crate) mod testutil;

use std::fmt;

pub use cert::{issuer_name_der, parse_certificates, validate_chain, CertError, ChainCache, TrustAnchors, ValidatedChain};
pub use cms::{add_signature_timestamp, prepare_detached_parts, signature_value, sign_detached, sign_detached_parts, RsaPadding, UnsignedCms, verify_detached, verify_detached_parts, CmsError, VerifiedCms};
pub use devpki::DevPkiError;
pub use crl::{verify_crl, CrlError, VerifiedCrl};
pub use keys::{check_pin, open, open_with_pin, seal, seal_with_pin, KeyError, MasterKey, SigningKey};

/// The public key algorithms a signer may use. This is the whole allow-list: a signer
/// certificate or key of any other kind is rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KeyAlgorithm {
    /// RSA with a modulus of at least 2048 bits, PKCS#1 v1.5 signatures with SHA-256.
    Rsa,
    /// ECDSA on NIST P-256 with SHA-256, DER-encoded signatures.
    EcdsaP256,
    /// Ed25519 (pure EdDSA); CMS signatures use SHA-512 for the content digest (RFC 8419).
    Ed25519,
}

impl KeyAlgorithm {
    /// The stable lowercase name used in APIs and logs: `rsa`, `ecdsa-p256` or `ed25519`.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyAlgorithm::Rsa => "rsa",
            KeyAlgorithm::EcdsaP256 => "ecdsa-p256",
            KeyAlgorithm::Ed25519 => "ed25519",
        }
    }
}

impl fmt::Display for KeyAlgorithm {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.as_str())
    }
}

/// Any error of this module. Each submodule has its own enum naming its causes; this one
/// wraps them so that a caller can use `?` across submodules and map errors in one place.
#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    /// A certificate could not be parsed or its chain did not validate.
    #[error(transparent)]
    Cert(#[from] CertError),
    /// A key could not be loaded or used, or sealed data could not be opened.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// A CMS signature could not be made or did not verify.
    #[error(transparent)]
    Cms(#[from] CmsError),
    /// The development PKI could not issue a certificate.
    #[error(transparent)]
    DevPki(#[from] DevPkiError),
}

#[cfg(test)]
mod tests {
    use super::KeyAlgorithm;

    #[test]
    fn key_algorithm_displays_its_stable_name() {
        assert_eq!(KeyAlgorithm::Rsa.to_string(), "rsa");
        assert_eq!(KeyAlgorithm::EcdsaP256.to_string(), "ecdsa-p256");
        assert_eq!(KeyAlgorithm::Ed25519.to_string(), "ed25519");
    }
}
