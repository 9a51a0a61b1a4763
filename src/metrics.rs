//! The metrics listener: `GET /metrics` in the Prometheus text format, on its own address
//! (`metrics_addr`), apart from the public port. It serves the `prometheus` crate's default
//! registry, which holds raft-engine's metrics, kyso-cluster's counters and the ones below;
//! Raft status gauges are read from the node at each scrape.
//!
//! This module never labels a metric with anything a caller chose (a path outside the
//! role table counts as `unknown`), so a scan of odd paths cannot grow the registry.

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use prometheus::{
    register_histogram_vec, register_int_counter, register_int_counter_vec, register_int_gauge, HistogramVec, IntCounter,
    IntCounterVec, IntGauge, TextEncoder,
};

use crate::consensus::Consensus;
use crate::service::Kyso;

/// Upper bounds, in seconds, of the gRPC latency histogram's buckets: from a cached read
/// (a millisecond) to a large upload (minutes).
pub const GRPC_LATENCY_BUCKETS_SECONDS: &[f64] =
    &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0];

// Every metric below has a fixed, valid name and is registered once per process (a
// LazyLock): registration cannot fail, so `expect` states an invariant.
static GRPC_REQUESTS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!("kyso_grpc_requests_total", "gRPC calls answered, by port, method and status code", &["port", "method", "code"])
        .expect("registered once")
});
static GRPC_DURATION: LazyLock<HistogramVec> = LazyLock::new(|| {
    register_histogram_vec!(
        "kyso_grpc_request_duration_seconds",
        "Time from a gRPC call's arrival to its response headers, by port and method",
        &["port", "method"],
        GRPC_LATENCY_BUCKETS_SECONDS.to_vec()
    )
    .expect("registered once")
});
static CERTIFICATIONS: LazyLock<IntCounter> = LazyLock::new(|| {
    register_int_counter!("kyso_certifications_total", "Certifications this node recorded (Certify items and submitted signatures)")
        .expect("registered once")
});
static VERIFICATIONS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!("kyso_verifications_total", "Verifications answered, by channel (grpc, public_page) and outcome", &["channel", "outcome"])
        .expect("registered once")
});
static KEY_UNSEALS: LazyLock<IntCounter> = LazyLock::new(|| {
    register_int_counter!("kyso_signer_key_unseals_total", "PIN unseals (PBKDF2 runs) of signer keys on this node; one per signer and unlock when calls share it")
        .expect("registered once")
});
static ARCHIVE_BLOBS_WRITTEN: LazyLock<IntCounter> = LazyLock::new(|| {
    register_int_counter!("kyso_archive_blobs_written_total", "Blobs this node wrote to the blob store (new blobs only)").expect("registered once")
});
static ARCHIVE_BYTES_WRITTEN: LazyLock<IntCounter> = LazyLock::new(|| {
    register_int_counter!("kyso_archive_bytes_written_total", "Bytes of the blobs this node wrote to the blob store").expect("registered once")
});
static RAFT_TERM: LazyLock<IntGauge> =
    LazyLock::new(|| register_int_gauge!("kyso_raft_term", "The node's current Raft term").expect("registered once"));
static RAFT_LEADER: LazyLock<IntGauge> = LazyLock::new(|| {
    register_int_gauge!("kyso_raft_leader_id", "The leader this node knows of (0: none)").expect("registered once")
});
static RAFT_IS_LEADER: LazyLock<IntGauge> =
    LazyLock::new(|| register_int_gauge!("kyso_raft_is_leader", "1 when this node leads").expect("registered once"));
static RAFT_COMMIT: LazyLock<IntGauge> =
    LazyLock::new(|| register_int_gauge!("kyso_raft_commit_index", "The node's Raft commit index").expect("registered once"));
static RAFT_APPLIED: LazyLock<IntGauge> = LazyLock::new(|| {
    register_int_gauge!("kyso_raft_applied_index", "The last log index applied to the state machine").expect("registered once")
});
static RAFT_PROPOSALS_IN_FLIGHT: LazyLock<IntGauge> = LazyLock::new(|| {
    register_int_gauge!("kyso_raft_proposals_in_flight", "Proposals appended by this leader and not yet applied").expect("registered once")
});

/// Which channel served a verification.
#[derive(Clone, Copy, Debug)]
pub enum Channel {
    Grpc,
    PublicPage,
}

/// Records one answered gRPC call. `method` MUST be a path the role table names and the
/// service answered (or `unknown`): the caller bounds the label's values.
pub fn record_grpc_call(port: &'static str, method: &str, code: tonic::Code, elapsed: Duration) {
    GRPC_REQUESTS.with_label_values(&[port, method, code_name(code)]).inc();
    GRPC_DURATION.with_label_values(&[port, method]).observe(elapsed.as_secs_f64());
}

pub fn record_certifications(count: usize) {
    CERTIFICATIONS.inc_by(count as u64);
}

pub fn record_verification(channel: Channel, outcome: &'static str) {
    let channel = match channel {
        Channel::Grpc => "grpc",
        Channel::PublicPage => "public_page",
    };
    VERIFICATIONS.with_label_values(&[channel, outcome]).inc();
}

static STATE_REPAIR_MILLISECONDS: LazyLock<IntGauge> = LazyLock::new(|| {
    register_int_gauge!(
        "kyso_state_repair_on_open_milliseconds",
        "How long redb repaired state.redb when this process opened it (0: it had been closed cleanly)"
    )
    .expect("registered once")
});

/// Records how long opening the state store spent repairing it (`None`: no repair).
pub fn record_state_repair(took: Option<Duration>) {
    STATE_REPAIR_MILLISECONDS.set(took.map_or(0, |took| i64::try_from(took.as_millis()).unwrap_or(i64::MAX).max(1)));
}

pub fn record_key_unseal() {
    KEY_UNSEALS.inc();
}

pub fn record_blob_written(size_bytes: u64) {
    ARCHIVE_BLOBS_WRITTEN.inc();
    ARCHIVE_BYTES_WRITTEN.inc_by(size_bytes);
}

/// Registers every metric, so that a first scrape shows each family at zero.
pub fn register() {
    kyso_cluster::metrics::register();
    LazyLock::force(&GRPC_REQUESTS);
    LazyLock::force(&GRPC_DURATION);
    LazyLock::force(&CERTIFICATIONS);
    LazyLock::force(&KEY_UNSEALS);
    for channel in [Channel::Grpc, Channel::PublicPage] {
        for outcome in ["found", "not_found", "error"] {
            let channel = match channel {
                Channel::Grpc => "grpc",
                Channel::PublicPage => "public_page",
            };
            VERIFICATIONS.with_label_values(&[channel, outcome]);
        }
    }
    LazyLock::force(&ARCHIVE_BLOBS_WRITTEN);
    LazyLock::force(&ARCHIVE_BYTES_WRITTEN);
    LazyLock::force(&STATE_REPAIR_MILLISECONDS);
    for gauge in [&RAFT_TERM, &RAFT_LEADER, &RAFT_IS_LEADER, &RAFT_COMMIT, &RAFT_APPLIED, &RAFT_PROPOSALS_IN_FLIGHT] {
        LazyLock::force(gauge);
    }
}

/// The metrics listener's router.
pub fn router(kyso: Arc<Kyso<Consensus>>) -> Router {
    register();
    Router::new().route("/metrics", get(metrics)).with_state(kyso)
}

async fn metrics(State(kyso): State<Arc<Kyso<Consensus>>>) -> Response {
    observe_raft(&kyso);
    match TextEncoder::new().encode_to_string(&prometheus::gather()) {
        Ok(text) => ([(header::CONTENT_TYPE, prometheus::TEXT_FORMAT)], text).into_response(),
        Err(error) => (StatusCode::INTERNAL_SERVER_ERROR, error.to_string()).into_response(),
    }
}

/// Sets the Raft gauges from the node's status (a standalone node reports its applied
/// index and leads itself).
fn observe_raft(kyso: &Kyso<Consensus>) {
    match kyso.proposer().raft() {
        Some(node) => {
            let status = node.status();
            RAFT_TERM.set(gauge_value(status.term));
            RAFT_LEADER.set(gauge_value(status.leader_id.unwrap_or(0)));
            RAFT_IS_LEADER.set(i64::from(status.leader_id == Some(status.id)));
            RAFT_COMMIT.set(gauge_value(status.commit_index));
            RAFT_APPLIED.set(gauge_value(status.applied_index));
            RAFT_PROPOSALS_IN_FLIGHT.set(gauge_value(status.proposals_in_flight));
        }
        None => {
            let applied = kyso.state().applied().unwrap_or(0);
            RAFT_IS_LEADER.set(1);
            RAFT_COMMIT.set(gauge_value(applied));
            RAFT_APPLIED.set(gauge_value(applied));
        }
    }
}

fn gauge_value(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code;
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}
