//! CRL import: ImportCrl parses PEM or DER and checks the signature against trusted CAs.
#![no_main]

use std::sync::OnceLock;

use kyso::crypto::devpki::{self, CertSpec};
use kyso::crypto::{verify_crl, KeyAlgorithm};
use libfuzzer_sys::fuzz_target;

fn issuers() -> &'static [Vec<u8>] {
    static ISSUERS: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    ISSUERS.get_or_init(|| {
        let spec = CertSpec::certificate_authority("fuzz crl issuer", KeyAlgorithm::EcdsaP256, 0, 4_102_444_800);
        vec![devpki::self_signed_ca(&spec).expect("an issuer for the fuzzer").cert_der]
    })
}

fuzz_target!(|data: &[u8]| {
    let _ = verify_crl(data, issuers());
});
