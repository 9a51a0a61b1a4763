//! The HTTP port's router: health, the transparency-log checkpoint and verifier key, and the public lookup
//! routes of [`super::public`]. It serves only public facts about a certification — never
//! dossier contents, applicant data, file names or internal ids. Every response carries
//! the Content-Security-Policy of [`super::public::security_headers`].

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use axum::{middleware, Json, Router};
use kyso_cluster::Proposer;

use super::public::{self, PublicSettings};
use crate::service::Kyso;

/// Serve with `api::http_server::serve`, which tells the routes each client's address:
/// every route, health and checkpoint included, is limited per client address.
pub fn router<P: Proposer>(kyso: Arc<Kyso<P>>, settings: PublicSettings) -> Router {
    // Every route is rate limited per client (public::routes); the readiness gate refuses
    // replica reads (public routes, checkpoint) while the node is not ready, never probes.
    let operational = Router::new()
        .route("/healthz", get(ready::<P>))
        .route("/readyz", get(ready::<P>))
        .route("/livez", get(live::<P>))
        .route("/checkpoint", get(checkpoint::<P>))
        .route("/log-key", get(log_key::<P>))
        .route("/tsa", post(timestamp::<P>).layer(DefaultBodyLimit::max(TSA_QUERY_SIZE_BYTES_MAX)))
        .with_state(kyso.clone());
    public::routes(kyso.clone(), settings, operational)
        .layer(middleware::from_fn_with_state(kyso, unavailable_unless_ready::<P>))
        .layer(middleware::from_fn(public::security_headers))
}

/// Health probes answer for themselves, ready or not; so does the time-stamping authority,
/// which reads only the clock, never the replica.
const PROBE_PATHS: [&str; 4] = ["/healthz", "/readyz", "/livez", "/tsa"];

/// The largest body `POST /tsa` reads (a TimeStampReq is about 100 bytes); larger bodies
/// get 413 before they are read whole.
pub const TSA_QUERY_SIZE_BYTES_MAX: usize = crate::crypto::tsa::REQUEST_SIZE_BYTES_MAX;
const TIMESTAMP_QUERY: &str = "application/timestamp-query";
const TIMESTAMP_REPLY: &str = "application/timestamp-reply";

/// Seconds a client is told to wait before asking a node that is not ready again.
const NOT_READY_RETRY_AFTER_SECONDS: u64 = 5;

/// Readiness (`/readyz`, and `/healthz` for older probes): 200 only while the node may
/// answer from its replica ([`Kyso::check_health`]) and its state store reads.
async fn ready<P: Proposer>(State(kyso): State<Arc<Kyso<P>>>) -> Response {
    let applied = kyso.check_health().map_err(|reason| reason.to_string()).and_then(|()| kyso.state().applied().map_err(|error| error.to_string()));
    match applied {
        Ok(applied) => Json(serde_json::json!({ "status": "ok", "applied_index": applied })).into_response(),
        Err(reason) => unavailable_json(&reason),
    }
}

/// Liveness (`/livez`): 503 only when a restart is needed (the consensus driver stopped);
/// a node that is merely cut off or catching up stays alive.
async fn live<P: Proposer>(State(kyso): State<Arc<Kyso<P>>>) -> Response {
    match kyso.check_health() {
        Err(reason) if reason.is_fatal() => unavailable_json(&reason.to_string()),
        _ => Json(serde_json::json!({ "status": "ok" })).into_response(),
    }
}

fn unavailable_json(reason: &str) -> Response {
    let retry_after = [(axum::http::header::RETRY_AFTER, NOT_READY_RETRY_AFTER_SECONDS.to_string())];
    (StatusCode::SERVICE_UNAVAILABLE, retry_after, Json(serde_json::json!({ "status": "unavailable", "error": reason }))).into_response()
}

/// Public lookups and the checkpoint read this node's replica without a read barrier: a
/// node that knows its replica may be stale says "temporarily unavailable" (503) instead.
/// The reason stays in the node's log; the public answer names none.
async fn unavailable_unless_ready<P: Proposer>(
    State(kyso): State<Arc<Kyso<P>>>,
    request: axum::extract::Request,
    next: middleware::Next,
) -> Response {
    if PROBE_PATHS.contains(&request.uri().path()) {
        return next.run(request).await;
    }
    let Err(reason) = kyso.check_health() else {
        return next.run(request).await;
    };
    tracing::debug!(%reason, path = request.uri().path(), "public read refused: node not ready");
    let retry_after = [(axum::http::header::RETRY_AFTER, NOT_READY_RETRY_AFTER_SECONDS.to_string())];
    if request.uri().path().starts_with("/api/") {
        let body = Json(serde_json::json!({ "error": "temporarily unavailable; retry shortly" }));
        return (StatusCode::SERVICE_UNAVAILABLE, retry_after, body).into_response();
    }
    (StatusCode::SERVICE_UNAVAILABLE, retry_after, axum::response::Html(TEMPORARILY_UNAVAILABLE_HTML)).into_response()
}

/// In Vietnamese first, like every public page; no script, no outside resource.
const TEMPORARILY_UNAVAILABLE_HTML: &str = "<!doctype html>\n<html lang=\"vi\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>Tạm thời không phục vụ</title></head>\
<body><h1>Tạm thời không phục vụ</h1><p>Máy chủ này đang mất liên lạc với hệ thống; vui lòng thử lại sau ít phút.</p>\
<p lang=\"en\">Temporarily unavailable: this server cannot confirm its copy is current. Please try again in a few minutes.</p></body></html>\n";

/// The latest checkpoint as a C2SP signed note (text/plain).
async fn checkpoint<P: Proposer>(State(kyso): State<Arc<Kyso<P>>>) -> Response {
    match kyso.checkpoint().await {
        Ok(checkpoint) => ([(axum::http::header::CONTENT_TYPE, "text/plain; charset=utf-8")], checkpoint.note).into_response(),
        Err(error) => (StatusCode::SERVICE_UNAVAILABLE, error.to_string()).into_response(),
    }
}

/// The log's verifier key line (C2SP signed-note), with a trailing newline (text/plain).
async fn log_key<P: Proposer>(State(kyso): State<Arc<Kyso<P>>>) -> Response {
    let (verifier_key, _origin) = kyso.log_key();
    ([(axum::http::header::CONTENT_TYPE, "text/plain; charset=utf-8")], format!("{verifier_key}\n")).into_response()
}

/// RFC 3161 over HTTP (section 3.4): a DER TimeStampReq with Content-Type
/// application/timestamp-query in, a DER TimeStampResp (application/timestamp-reply) out.
/// Another content type gets 415, a body over [`TSA_QUERY_SIZE_BYTES_MAX`] 413, a request
/// the authority refuses 400 with the reason as text, a node without an authority 404.
async fn timestamp<P: Proposer>(State(kyso): State<Arc<Kyso<P>>>, headers: axum::http::HeaderMap, body: axum::body::Bytes) -> Response {
    let text = [(axum::http::header::CONTENT_TYPE, "text/plain; charset=utf-8")];
    let content_type = headers.get(axum::http::header::CONTENT_TYPE).and_then(|value| value.to_str().ok()).unwrap_or("");
    if content_type.split(';').next().map(str::trim) != Some(TIMESTAMP_QUERY) {
        let message = format!("send a DER TimeStampReq with Content-Type {TIMESTAMP_QUERY} (got {content_type:?})\n");
        return (StatusCode::UNSUPPORTED_MEDIA_TYPE, text, message).into_response();
    }
    match kyso.timestamp_reply(&body) {
        Ok(reply) => ([(axum::http::header::CONTENT_TYPE, TIMESTAMP_REPLY)], reply).into_response(),
        Err(error) => {
            let status = match &error {
                crate::service::ServiceError::InvalidArgument(_) => StatusCode::BAD_REQUEST,
                crate::service::ServiceError::NotFound(_) => StatusCode::NOT_FOUND,
                _ => StatusCode::INTERNAL_SERVER_ERROR,
            };
            (status, text, format!("{error}\n")).into_response()
        }
    }
}
