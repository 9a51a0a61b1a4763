//! The public HTTP port: health and the lookup API. It serves only public facts about a
//! certification — never dossier contents, applicant data, file names or internal ids.
//! Reads come from the local replica (`"consistency": "local"`).

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use kyso_cluster::Proposer;
use serde::Serialize;

use crate::lookup::LookupCode;
use crate::service::Kyso;

/// Public facts about one certification, as served at `/api/v1/lookup/{code}`.
#[derive(Debug, Serialize)]
pub struct PublicLookup {
    pub lookup_code: String,
    /// "result" or "certified-copy".
    pub kind: &'static str,
    pub agency_id: String,
    pub signer_name: String,
    pub signer_title: String,
    pub signed_at_unix: i64,
    /// "valid" or "revoked".
    pub status: &'static str,
    pub revocation_reason: Option<String>,
    pub revoked_at_unix: Option<i64>,
    pub document_sha256: String,
    /// Where the answer was read: "local" (this node's replica).
    pub consistency: &'static str,
}

pub fn router<P: Proposer>(kyso: Arc<Kyso<P>>) -> Router {
    Router::new()
        .route("/healthz", get(health::<P>))
        .route("/api/v1/lookup/{code}", get(lookup::<P>))
        .route("/checkpoint", get(checkpoint::<P>))
        .with_state(kyso)
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

async fn lookup<P: Proposer>(State(kyso): State<Arc<Kyso<P>>>, Path(code): Path<String>) -> Response {
    let not_found = || (StatusCode::NOT_FOUND, Json(serde_json::json!({ "error": "không tìm thấy mã tra cứu (lookup code not found)" })));
    let Ok(code) = LookupCode::parse(&code) else {
        return not_found().into_response();
    };
    let certification = match kyso.state().certification(&code) {
        Ok(Some(certification)) => certification,
        Ok(None) => return not_found().into_response(),
        Err(error) => return (StatusCode::SERVICE_UNAVAILABLE, error.to_string()).into_response(),
    };
    let signer = match kyso.state().signer(&certification.signer_id) {
        Ok(Some(signer)) => signer,
        _ => return (StatusCode::SERVICE_UNAVAILABLE, "signer record unavailable").into_response(),
    };
    Json(PublicLookup {
        lookup_code: certification.lookup_code.to_string(),
        kind: certification.kind.as_str(),
        agency_id: certification.agency_id.clone(),
        signer_name: signer.name,
        signer_title: signer.title,
        signed_at_unix: certification.signed_at_unix,
        status: if certification.revocation.is_some() { "revoked" } else { "valid" },
        revocation_reason: certification.revocation.as_ref().map(|revocation| revocation.reason.clone()),
        revoked_at_unix: certification.revocation.as_ref().map(|revocation| revocation.revoked_at_unix),
        document_sha256: certification.document_sha256.to_hex(),
        consistency: "local",
    })
    .into_response()
}
