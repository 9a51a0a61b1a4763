//! CMS parsing: SubmitSignature and every verify answer run verify_detached on stored or
//! submitted signatures.
#![no_main]

use kyso::crypto::verify_detached;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = verify_detached(data, b"the archived document");
});
