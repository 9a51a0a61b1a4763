//! Replicated commands: every node decodes log entries, responses and leaves it did not
//! write. Decoding must fail cleanly, and what decodes must encode back to a value that
//! decodes to itself.
#![no_main]

use kyso::state::{CommandEnvelope, LogLeaf, Outcome};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(envelope) = CommandEnvelope::decode(data) {
        assert_eq!(CommandEnvelope::decode(&envelope.encode()).expect("re-encoded command decodes"), envelope);
    }
    if let Ok(outcome) = Outcome::decode(data) {
        assert_eq!(Outcome::decode(&outcome.encode()).expect("re-encoded outcome decodes"), outcome);
    }
    if let Ok(leaf) = LogLeaf::decode(data) {
        assert_eq!(LogLeaf::decode(&leaf.encode()).expect("re-encoded leaf decodes"), leaf);
    }
});
