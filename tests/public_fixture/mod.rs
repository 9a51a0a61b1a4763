//! A node holding one valid and one revoked certification whose dossier is full of
//! distinctive personal values, for the public-page tests (`tests/public_page.rs`,
//! `tests/public_page_browser.rs`), and a tiny HTTP/1.0 client for its public port.
#![allow(dead_code)]

use std::path::Path;

use kyso::crypto::KeyAlgorithm;
use kyso_proto::v1 as pb;

use crate::common::*;

pub const AGENCY: &str = "xa-thu-nghiem";
pub const AGENCY_NAME: &str = "UBND xã Thử Nghiệm";
pub const PUBLIC_BASE_URL: &str = "https://tracuu.example.gov.vn";
pub const REVOCATION_REASON: &str = "Cấp nhầm, đã cấp lại bản khác";

/// Values that must never appear in a public response.
pub const APPLICANT_NAME: &str = "Hoàng Thị Riêngtư";
pub const APPLICANT_ID_NUMBER: &str = "079188004242";
pub const APPLICANT_PHONE: &str = "0912777313";
pub const APPLICANT_ADDRESS: &str = "Số 17 ngõ Kínđáo";
pub const DOSSIER_NUMBER: &str = "HS-BIMAT-5150";
pub const PROCEDURE_CODE: &str = "9.999777";
pub const VALID_FILE_NAME: &str = "cccd-079188004242-mat-truoc.pdf";
pub const REVOKED_FILE_NAME: &str = "giay-khai-sinh-Riengtu.pdf";
pub const UPLOAD_REQUEST_ID: &str = "req-upload-QZ7781";
pub const CERTIFY_REQUEST_ID: &str = "req-certify-QZ7782";
pub const CERTIFY_REVOKED_REQUEST_ID: &str = "req-certify-QZ7783";
pub const REVOKE_REQUEST_ID: &str = "req-revoke-QZ7784";

pub struct Fixture {
    pub node: TestNode,
    pub valid_code: String,
    pub valid_document: Vec<u8>,
    pub revoked_code: String,
    pub revoked_document: Vec<u8>,
    pub dossier_id: String,
    pub signer_id: String,
}

impl Fixture {
    /// Every value that no public response may contain.
    pub fn secrets(&self) -> Vec<String> {
        [
            APPLICANT_NAME,
            APPLICANT_ID_NUMBER,
            APPLICANT_PHONE,
            APPLICANT_ADDRESS,
            DOSSIER_NUMBER,
            PROCEDURE_CODE,
            VALID_FILE_NAME,
            REVOKED_FILE_NAME,
            "mat-truoc",
            UPLOAD_REQUEST_ID,
            CERTIFY_REQUEST_ID,
            CERTIFY_REVOKED_REQUEST_ID,
            REVOKE_REQUEST_ID,
            "QZ778",
            &self.dossier_id,
            &self.signer_id,
        ]
        .iter()
        .map(|value| value.to_string())
        .collect()
    }
}

/// Bytes that start like a PDF, distinct per seed.
fn pdf_like(seed: u8) -> Vec<u8> {
    // A real PDF: kyso builds a certified PDF from it (an unparseable one is refused).
    kyso::cli::dev::sample_pdf(&format!("kyso public page test {}", hex::encode(document(seed, 20_000))))
}

/// Starts a node (`extra_limits` go under `[limits]`), archives a dossier with planted
/// personal values, certifies two of its files and revokes one.
pub async fn start(dir: &Path, extra_limits: &str) -> Fixture {
    let pki = TestPki::new(&dir.join("pki"));
    let top_level = format!("public_base_url = \"{PUBLIC_BASE_URL}\"\n[agency_names]\n\"{AGENCY}\" = \"{AGENCY_NAME}\"\n");
    let node = TestNode::start_with(&dir.join("node"), &pki.ca_pem_path, &top_level, extra_limits);
    let signer = register_signer(&node, &pki.issue(&signer_spec("Trần Thị Bình", KeyAlgorithm::EcdsaP256)), &[AGENCY])
        .await
        .unwrap();
    let valid_document = pdf_like(61);
    let revoked_document = pdf_like(62);
    let mut messages = upload_messages(
        UPLOAD_REQUEST_ID,
        AGENCY,
        &[(VALID_FILE_NAME, &valid_document), (REVOKED_FILE_NAME, &revoked_document)],
        64 * 1024,
    );
    if let Some(pb::upload_dossier_request::Part::Metadata(metadata)) = &mut messages[0].part {
        metadata.dossier_number = DOSSIER_NUMBER.into();
        metadata.procedure_code = PROCEDURE_CODE.into();
        metadata.private_fields = [
            ("applicant_name", APPLICANT_NAME),
            ("applicant_id_number", APPLICANT_ID_NUMBER),
            ("applicant_phone", APPLICANT_PHONE),
            ("applicant_address", APPLICANT_ADDRESS),
        ]
        .into_iter()
        .map(|(key, value)| (key.to_string(), value.to_string()))
        .collect();
    }
    let archived = node.archive().await.upload_dossier(futures::stream::iter(messages)).await.unwrap().into_inner();
    let certify = |request_id: &str, content: &[u8]| {
        let mut request = certify_request(request_id, content, AGENCY, &signer.signer_id);
        request.dossier_id = archived.dossier_id.clone();
        request
    };
    let valid = node.signing().await.certify(certify(CERTIFY_REQUEST_ID, &valid_document)).await.unwrap().into_inner();
    let revoked = node.signing().await.certify(certify(CERTIFY_REVOKED_REQUEST_ID, &revoked_document)).await.unwrap().into_inner();
    node.signing()
        .await
        .revoke_certification(pb::RevokeCertificationRequest {
            request_id: REVOKE_REQUEST_ID.into(),
            lookup_code: revoked.lookup_code.clone(),
            reason: REVOCATION_REASON.into(),
        })
        .await
        .unwrap();
    Fixture {
        node,
        valid_code: valid.lookup_code,
        valid_document,
        revoked_code: revoked.lookup_code,
        revoked_document,
        dossier_id: archived.dossier_id,
        signer_id: signer.signer_id,
    }
}

/// One HTTP response, headers with lowercase names.
#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(key, _)| key == name).map(|(_, value)| value.as_str())
    }
}

/// GET over HTTP/1.0 (the server closes the connection and never chunks the body).
pub async fn get(base_url: &str, path: &str, headers: &[(&str, &str)]) -> HttpResponse {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let host = base_url.strip_prefix("http://").unwrap();
    let mut stream = tokio::net::TcpStream::connect(host).await.unwrap();
    let mut request = format!("GET {path} HTTP/1.0\r\nHost: {host}\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(std::time::Duration::from_secs(60), stream.read_to_end(&mut raw)).await.unwrap().unwrap();
    let text = String::from_utf8(raw).expect("public responses are UTF-8");
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let mut lines = head.lines();
    let status = lines.next().unwrap().split_whitespace().nth(1).unwrap().parse().unwrap();
    let headers = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_string()))
        .collect();
    HttpResponse { status, headers, body: body.to_string() }
}
