//! The HTTP port's router: health, the transparency-log checkpoint and verifier key, and the public lookup
//! routes of [`super::public`]. It serves only public facts about a certification — never
//! dossier contents, applicant data, file names or internal ids. Every response carries
//! the Content-Security-Policy of [`super::public::security_headers`].

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{middleware, Json, Router};
use kyso_cluster::Proposer;

use super::public::{self, PublicSettings};
use crate::service::Kyso;

/// Serve with `api::http_server::serve`, which tells the routes each client's address:
/// every route, health and checkpoint included, is limited per client address.
pub fn router<P: Proposer>(kyso: Arc<Kyso<P>>, settings: PublicSettings) -> Router {
    let operational = Router::new()
        .route("/healthz", get(health::<P>))
        .route("/checkpoint", get(checkpoint::<P>))
        .route("/log-key", get(log_key::<P>))
        .with_state(kyso.clone());
    public::routes(kyso, settings, operational).layer(middleware::from_fn(public::security_headers))
}

async fn health<P: Proposer>(State(kyso): State<Arc<Kyso<P>>>) -> Response {
    match kyso.state().applied() {
        Ok(applied) => Json(serde_json::json!({ "status": "ok", "applied_index": applied })).into_response(),
        Err(error) => (StatusCode::SERVICE_UNAVAILABLE, Json(serde_json::json!({ "status": "unavailable", "error": error.to_string() })))
            .into_response(),
    }
}

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
