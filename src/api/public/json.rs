//! `/api/v1/lookup/{code}`: the public facts as JSON (schema in README.md). Built from
//! [`PublicCertification`] only, so it cannot carry anything the page does not show.

use serde::Serialize;

use super::i18n::VietnamTime;
use crate::service::lookup::PublicCertification;

/// Public facts about one certification, as served at `/api/v1/lookup/{code}`.
#[derive(Debug, Serialize)]
pub struct PublicLookup {
    /// The code in groups of four, e.g. "7K3M-Q9TX-2HRN-B4WD".
    pub lookup_code: String,
    /// The public page of this certification (what the QR code carries).
    pub page_url: String,
    /// "result" or "certified-copy".
    pub kind: &'static str,
    pub agency_id: String,
    /// The configured display name of the agency, or its id.
    pub agency_name: String,
    pub signer_name: String,
    pub signer_title: String,
    pub signed_at_unix: i64,
    /// The signing time in Vietnam, RFC 3339 with the +07:00 offset.
    pub signed_at: String,
    /// "valid" or "revoked".
    pub status: &'static str,
    pub revocation_reason: Option<String>,
    pub revoked_at_unix: Option<i64>,
    pub revoked_at: Option<String>,
    /// SHA-256 of the signed document, 64 lowercase hex digits.
    pub document_sha256: String,
    /// Where the answer was read: "local" (this node's replica, no read barrier).
    pub consistency: &'static str,
}

impl PublicLookup {
    pub fn new(facts: &PublicCertification, agency_name: &str, page_url: String) -> PublicLookup {
        let revocation = facts.revocation.as_ref();
        PublicLookup {
            lookup_code: facts.lookup_code.to_string(),
            page_url,
            kind: facts.kind.as_str(),
            agency_id: facts.agency_id.clone(),
            agency_name: agency_name.to_string(),
            signer_name: facts.signer_name.clone(),
            signer_title: facts.signer_title.clone(),
            signed_at_unix: facts.signed_at_unix,
            signed_at: VietnamTime::from_unix(facts.signed_at_unix).rfc3339(),
            status: if revocation.is_some() { "revoked" } else { "valid" },
            revocation_reason: revocation.map(|revocation| revocation.reason.clone()),
            revoked_at_unix: revocation.map(|revocation| revocation.revoked_at_unix),
            revoked_at: revocation.map(|revocation| VietnamTime::from_unix(revocation.revoked_at_unix).rfc3339()),
            document_sha256: facts.document_sha256.to_hex(),
            consistency: "local",
        }
    }
}
