//! Helpers shared by the crypto tests: fixed instants, ready-made chains, and the openssl CLI.
//!
//! Tests that need `openssl` fail (never skip) when it is missing, with a message saying to
//! install it.

use std::path::Path;
use std::process::{Command, Output};
use std::sync::OnceLock;

use super::devpki::{self, CertSpec, IssuedCert};
use super::KeyAlgorithm;

/// 2026-01-01T00:00:00Z: the instant most tests validate at.
pub(crate) const NOW_UNIX: i64 = 1_767_225_600;
pub(crate) const DAY_SECONDS: i64 = 86_400;
/// 2020-01-01T00:00:00Z and 2045-01-01T00:00:00Z: a window that also holds the real clock,
/// for tests where openssl checks validity against it.
pub(crate) const WIDE_NOT_BEFORE_UNIX: i64 = 1_577_836_800;
pub(crate) const WIDE_NOT_AFTER_UNIX: i64 = 2_366_841_600;

/// Runs `openssl` with `args`; panics with an install hint when it is not there.
pub(crate) fn openssl(args: &[&str]) -> Output {
    match Command::new("openssl").args(args).output() {
        Ok(output) => output,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            panic!("this test needs the openssl command line tool: install it (Debian: apt-get install openssl)")
        }
        Err(error) => panic!("could not run openssl: {error}"),
    }
}

/// Runs `openssl` and panics with its stderr unless it exits 0.
pub(crate) fn openssl_ok(args: &[&str]) -> Output {
    let output = openssl(args);
    assert!(
        output.status.success(),
        "openssl {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// A fresh private key made by `openssl genpkey`, as PKCS#8 DER. The key is written as PEM
/// because openssl writes DER EC keys in the SEC1 format, not PKCS#8.
pub(crate) fn openssl_genpkey(genpkey_args: &[&str]) -> Vec<u8> {
    let pem_text = openssl_genpkey_pem(genpkey_args);
    let block = pem::parse(&pem_text).expect("openssl writes valid PEM");
    assert_eq!(block.tag(), "PRIVATE KEY", "openssl genpkey writes PKCS#8");
    block.into_contents()
}

/// A fresh private key made by `openssl genpkey`, as the PEM text openssl wrote.
pub(crate) fn openssl_genpkey_pem(genpkey_args: &[&str]) -> Vec<u8> {
    let directory = tempfile::tempdir().expect("temporary directory");
    let key_path = directory.path().join("key.pem");
    let key_path_text = path_text(&key_path);
    let mut args = vec!["genpkey"];
    args.extend_from_slice(genpkey_args);
    args.extend_from_slice(&["-out", &key_path_text]);
    openssl_ok(&args);
    std::fs::read(&key_path).expect("read the key openssl wrote")
}

/// Two 2048-bit RSA keys made by openssl, made once per test process (RSA generation is slow).
pub(crate) fn rsa_keys() -> &'static [Vec<u8>; 2] {
    static KEYS: OnceLock<[Vec<u8>; 2]> = OnceLock::new();
    KEYS.get_or_init(|| {
        let rsa = ["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"];
        [openssl_genpkey(&rsa), openssl_genpkey(&rsa)]
    })
}

pub(crate) fn path_text(path: &Path) -> String {
    path.to_str()
        .expect("temporary paths are UTF-8")
        .to_string()
}

/// A root CA, an intermediate CA (not for RSA) and a signer leaf, valid in the wide window.
pub(crate) struct TestChain {
    pub(crate) root: IssuedCert,
    pub(crate) intermediate: Option<IssuedCert>,
    pub(crate) leaf: IssuedCert,
}

impl TestChain {
    /// Leaf first, then the intermediate if any; the root is left out.
    pub(crate) fn chain_der(&self) -> Vec<Vec<u8>> {
        let mut chain = vec![self.leaf.cert_der.clone()];
        if let Some(intermediate) = &self.intermediate {
            chain.push(intermediate.cert_der.clone());
        }
        chain
    }
}

pub(crate) fn ca_spec(common_name: &str, algorithm: KeyAlgorithm) -> CertSpec {
    let mut spec = CertSpec::certificate_authority(
        common_name,
        algorithm,
        WIDE_NOT_BEFORE_UNIX,
        WIDE_NOT_AFTER_UNIX,
    );
    spec.organization = Some("Kyso Test".to_string());
    spec
}

pub(crate) fn signer_spec(common_name: &str, algorithm: KeyAlgorithm) -> CertSpec {
    let mut spec = CertSpec::signer(
        common_name,
        algorithm,
        WIDE_NOT_BEFORE_UNIX,
        WIDE_NOT_AFTER_UNIX,
    );
    spec.organization = Some("Kyso Test".to_string());
    spec
}

/// ECDSA and Ed25519: root, intermediate and leaf of that algorithm.
/// RSA: an RSA root and an RSA leaf, both with keys from `openssl genpkey`.
pub(crate) fn test_chain(algorithm: KeyAlgorithm) -> TestChain {
    match algorithm {
        KeyAlgorithm::Rsa => {
            let [root_key, leaf_key] = rsa_keys();
            let root =
                devpki::self_signed_with_key(&ca_spec("Kyso Test RSA Root", algorithm), root_key)
                    .expect("rsa root");
            let leaf =
                devpki::issue_with_key(&signer_spec("Alice RSA", algorithm), leaf_key, &root)
                    .expect("rsa leaf");
            TestChain {
                root,
                intermediate: None,
                leaf,
            }
        }
        KeyAlgorithm::EcdsaP256 | KeyAlgorithm::Ed25519 => {
            let root =
                devpki::self_signed_ca(&ca_spec(&format!("Kyso Test {algorithm} Root"), algorithm))
                    .expect("root");
            let intermediate = devpki::issue(
                &ca_spec(&format!("Kyso Test {algorithm} Intermediate"), algorithm),
                &root,
            )
            .expect("intermediate");
            let leaf = devpki::issue(
                &signer_spec(&format!("Alice {algorithm}"), algorithm),
                &intermediate,
            )
            .expect("leaf");
            TestChain {
                root,
                intermediate: Some(intermediate),
                leaf,
            }
        }
    }
}
