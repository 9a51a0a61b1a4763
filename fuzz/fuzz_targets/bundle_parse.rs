//! Offline bundles: `kyso verify --offline` parses a JSON bundle from anyone and checks it.
#![no_main]

use std::sync::OnceLock;

use kyso::bundle::{verify_bundle, Bundle};
use kyso::crypto::devpki::{self, CertSpec};
use kyso::crypto::{KeyAlgorithm, TrustAnchors};
use kyso::tlog::{LogSigner, LogVerifier};
use libfuzzer_sys::fuzz_target;

fn context() -> &'static (TrustAnchors, LogVerifier) {
    static CONTEXT: OnceLock<(TrustAnchors, LogVerifier)> = OnceLock::new();
    CONTEXT.get_or_init(|| {
        let spec = CertSpec::certificate_authority("fuzz root", KeyAlgorithm::EcdsaP256, 0, 4_102_444_800);
        let root = devpki::self_signed_ca(&spec).expect("a root for the fuzzer");
        let anchors = TrustAnchors::from_der_list(vec![root.cert_der]).expect("the root is an anchor");
        let signer = LogSigner::from_pkcs8("fuzz.example/log", &LogSigner::generate().expect("a log key")).expect("a log signer");
        (anchors, signer.verifier())
    })
}

fuzz_target!(|data: &[u8]| {
    if let Ok(bundle) = Bundle::parse(data) {
        let (anchors, verifier) = context();
        let _ = verify_bundle(&bundle, b"the document", anchors, verifier);
    }
});
