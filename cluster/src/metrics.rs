//! Counters of events that no status snapshot holds, registered in the `prometheus`
//! crate's default registry (where raft-engine registers its own). The node's metrics
//! listener exposes that registry; this module never serves anything itself.

use std::sync::LazyLock;

use prometheus::{register_int_counter, register_int_counter_vec, IntCounter, IntCounterVec};

/// Snapshots sent to a peer, by outcome (`finished`, `failed`).
pub static SNAPSHOT_SENDS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    // Registered once per process under a fixed, valid name: cannot fail.
    register_int_counter_vec!("kyso_raft_snapshot_sends_total", "Raft snapshots sent to a peer, by outcome", &["outcome"])
        .expect("a fixed metric name registers once")
});

pub static SNAPSHOT_SENT_BYTES: LazyLock<IntCounter> = LazyLock::new(|| {
    // Registered once per process under a fixed, valid name: cannot fail.
    register_int_counter!("kyso_raft_snapshot_sent_bytes_total", "Bytes of state streamed in Raft snapshots that were received whole")
        .expect("a fixed metric name registers once")
});

pub static SNAPSHOT_RECEIVED_BYTES: LazyLock<IntCounter> = LazyLock::new(|| {
    // Registered once per process under a fixed, valid name: cannot fail.
    register_int_counter!("kyso_raft_snapshot_received_bytes_total", "Bytes of state received in Raft snapshot chunks, whole transfers or not")
        .expect("a fixed metric name registers once")
});

/// Registers every metric of this crate, so that a scrape shows them at zero before their
/// first event.
pub fn register() {
    for outcome in ["finished", "failed"] {
        SNAPSHOT_SENDS.with_label_values(&[outcome]);
    }
    LazyLock::force(&SNAPSHOT_SENT_BYTES);
    LazyLock::force(&SNAPSHOT_RECEIVED_BYTES);
}
