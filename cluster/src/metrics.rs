//! Counters of events that no status snapshot holds, registered in the `prometheus`
//! crate's default registry (where raft-engine registers its own). The node's metrics
//! listener exposes that registry; this module never serves anything itself.

use std::sync::LazyLock;

use prometheus::{register_int_counter_vec, IntCounterVec};

/// Snapshots sent to a peer, by outcome (`finished`, `failed`).
pub static SNAPSHOT_SENDS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    // Registered once per process under a fixed, valid name: cannot fail.
    register_int_counter_vec!("kyso_raft_snapshot_sends_total", "Raft snapshots sent to a peer, by outcome", &["outcome"])
        .expect("a fixed metric name registers once")
});

/// Registers every metric of this crate, so that a scrape shows them at zero before their
/// first event.
pub fn register() {
    for outcome in ["finished", "failed"] {
        SNAPSHOT_SENDS.with_label_values(&[outcome]);
    }
}
