//! The benchmark's throwaway PKI: a CA that the node under test trusts
//! (`trust_anchor_files`) and one document signer issued by it, made with
//! `kyso::crypto::devpki`. RSA keys come from the openssl CLI (ring cannot generate them).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context};
use kyso::crypto::devpki::{self, CertSpec, IssuedCert};
use kyso::crypto::KeyAlgorithm;

pub const CA_FILE: &str = "ca.pem";
pub const CA_KEY_FILE: &str = "ca.key.pem";
pub const SIGNER_FILE: &str = "signer.pem";
pub const SIGNER_KEY_FILE: &str = "signer.key.pem";
/// The agency the benchmark signer is registered to.
pub const AGENCY: &str = "xa-bench";

/// What a benchmark client needs to register and use the signer.
pub struct BenchPki {
    pub dir: PathBuf,
    pub ca: IssuedCert,
    pub signer: IssuedCert,
}

impl BenchPki {
    /// Creates the CA and signer in `dir` (which must not hold a PKI yet).
    pub fn create(dir: &Path, algorithm: KeyAlgorithm) -> anyhow::Result<BenchPki> {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        if dir.join(CA_FILE).exists() {
            bail!("{} already holds a PKI; use a fresh directory", dir.display());
        }
        let now = kyso::service::now_unix();
        let mut ca_spec = CertSpec::certificate_authority("kyso bench CA", KeyAlgorithm::EcdsaP256, now - 86_400, now + 3650 * 86_400);
        ca_spec.organization = Some("kyso benchmarks".into());
        let ca = devpki::self_signed_ca(&ca_spec)?;
        let mut signer_spec = CertSpec::signer("Nguyễn Văn Bench", algorithm, now - 3600, now + 365 * 86_400);
        signer_spec.organization = Some("UBND xã Bench".into());
        let signer = match algorithm {
            KeyAlgorithm::Rsa => devpki::issue_with_key(&signer_spec, &openssl_rsa_pkcs8(dir)?, &ca)?,
            _ => devpki::issue(&signer_spec, &ca)?,
        };
        write(dir, CA_FILE, ca.cert_pem().as_bytes())?;
        write(dir, CA_KEY_FILE, ca.key_pem().as_bytes())?;
        write(dir, SIGNER_FILE, signer.cert_pem().as_bytes())?;
        write(dir, SIGNER_KEY_FILE, signer.key_pem().as_bytes())?;
        Ok(BenchPki { dir: dir.to_path_buf(), ca, signer })
    }

    /// Loads a PKI made by [`BenchPki::create`].
    pub fn load(dir: &Path) -> anyhow::Result<BenchPki> {
        Ok(BenchPki {
            dir: dir.to_path_buf(),
            ca: load_issued(&dir.join(CA_FILE), &dir.join(CA_KEY_FILE))?,
            signer: load_issued(&dir.join(SIGNER_FILE), &dir.join(SIGNER_KEY_FILE))?,
        })
    }

    pub fn ca_pem_path(&self) -> PathBuf {
        self.dir.join(CA_FILE)
    }

    /// The signer's chain, leaf first, with the CA: what the node stores for the signer.
    pub fn chain_der(&self) -> Vec<Vec<u8>> {
        vec![self.signer.cert_der.clone(), self.ca.cert_der.clone()]
    }
}

fn write(dir: &Path, name: &str, content: &[u8]) -> anyhow::Result<()> {
    let path = dir.join(name);
    std::fs::write(&path, content).with_context(|| format!("cannot write {}", path.display()))
}

fn load_issued(cert_path: &Path, key_path: &Path) -> anyhow::Result<IssuedCert> {
    let cert_pem = std::fs::read(cert_path).with_context(|| format!("cannot read {}", cert_path.display()))?;
    let key_pem = std::fs::read(key_path).with_context(|| format!("cannot read {}", key_path.display()))?;
    let cert = pem::parse(&cert_pem).with_context(|| format!("{} is not PEM", cert_path.display()))?;
    let key = pem::parse(&key_pem).with_context(|| format!("{} is not PEM", key_path.display()))?;
    Ok(IssuedCert { cert_der: cert.into_contents(), key_pkcs8_der: key.into_contents().into() })
}

/// An RSA-2048 PKCS#8 DER key made by `openssl genpkey`.
pub fn openssl_rsa_pkcs8(dir: &Path) -> anyhow::Result<Vec<u8>> {
    let pem_path = dir.join("rsa-2048.pem");
    let der_path = dir.join("rsa-2048.pk8");
    let run = |args: &[&str]| -> anyhow::Result<()> {
        let output = Command::new("openssl")
            .args(args)
            .output()
            .context("openssl is needed for RSA keys: apt-get install -y openssl")?;
        if !output.status.success() {
            bail!("openssl {args:?} failed: {}", String::from_utf8_lossy(&output.stderr));
        }
        Ok(())
    };
    let pem = pem_path.to_string_lossy().into_owned();
    let der = der_path.to_string_lossy().into_owned();
    run(&["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", &pem])?;
    run(&["pkcs8", "-topk8", "-nocrypt", "-in", &pem, "-outform", "DER", "-out", &der])?;
    let key = std::fs::read(&der_path)?;
    let _ = std::fs::remove_file(&pem_path);
    let _ = std::fs::remove_file(&der_path);
    Ok(key)
}

pub fn parse_algorithm(name: &str) -> anyhow::Result<KeyAlgorithm> {
    match name {
        "rsa" | "rsa-2048" => Ok(KeyAlgorithm::Rsa),
        "ecdsa-p256" | "ecdsa" => Ok(KeyAlgorithm::EcdsaP256),
        "ed25519" => Ok(KeyAlgorithm::Ed25519),
        other => bail!("unknown key algorithm {other:?}: use rsa, ecdsa-p256 or ed25519"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_created_pki_loads_back_and_its_signer_chains_to_the_ca() {
        let dir = tempfile::tempdir().unwrap();
        let created = BenchPki::create(dir.path(), KeyAlgorithm::EcdsaP256).unwrap();
        let loaded = BenchPki::load(dir.path()).unwrap();
        assert_eq!(created.signer.cert_der, loaded.signer.cert_der);
        let anchors = kyso::crypto::TrustAnchors::from_pem(&std::fs::read(loaded.ca_pem_path()).unwrap()).unwrap();
        kyso::crypto::validate_chain(&loaded.chain_der(), &anchors, kyso::service::now_unix()).unwrap();
        assert!(BenchPki::create(dir.path(), KeyAlgorithm::EcdsaP256).is_err(), "an existing PKI must not be overwritten");
    }
}
