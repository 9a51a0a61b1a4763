//! Reading and checking the signatures of a received PDF: Verify and the public page's file
//! check take any bytes from anyone, so every byte is outside input.
#![no_main]

use std::sync::OnceLock;

use kyso::crypto::devpki::{self, CertSpec};
use kyso::crypto::{KeyAlgorithm, TrustAnchors};
use kyso::pdf::{check_signatures, read_signatures};
use libfuzzer_sys::fuzz_target;

fn anchors() -> &'static TrustAnchors {
    static ANCHORS: OnceLock<TrustAnchors> = OnceLock::new();
    ANCHORS.get_or_init(|| {
        let spec = CertSpec::certificate_authority("Fuzz CA", KeyAlgorithm::EcdsaP256, 1_577_836_800, 2_366_841_600);
        let ca = devpki::self_signed_ca(&spec).expect("a dev ca");
        TrustAnchors::from_der_list(vec![ca.cert_der]).expect("one anchor")
    })
}

fuzz_target!(|data: &[u8]| {
    let read = read_signatures(data);
    let checked = check_signatures(data, anchors());
    assert_eq!(read.is_ok(), checked.is_ok(), "checking refuses exactly what reading refuses");
});
