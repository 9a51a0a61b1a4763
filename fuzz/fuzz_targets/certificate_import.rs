//! Certificate import: what RegisterSigner and trust-anchor loading do with outside bytes.
//! Any input must give a value or an error, never a panic.
#![no_main]

use std::sync::OnceLock;

use kyso::crypto::devpki::{self, CertSpec};
use kyso::crypto::{parse_certificates, validate_chain, KeyAlgorithm, TrustAnchors};
use libfuzzer_sys::fuzz_target;

fn anchors() -> &'static TrustAnchors {
    static ANCHORS: OnceLock<TrustAnchors> = OnceLock::new();
    ANCHORS.get_or_init(|| {
        let spec = CertSpec::certificate_authority("fuzz root", KeyAlgorithm::EcdsaP256, 0, 4_102_444_800);
        let root = devpki::self_signed_ca(&spec).expect("a root for the fuzzer");
        TrustAnchors::from_der_list(vec![root.cert_der]).expect("the root is an anchor")
    })
}

fuzz_target!(|data: &[u8]| {
    let _ = TrustAnchors::from_pem(data);
    if let Ok(chain) = parse_certificates(data) {
        let _ = validate_chain(&chain, anchors(), 1_767_225_600);
    }
});
