//! Client workload: archive, certify, certify in batches, revoke and verify, from several
//! concurrent clients against random nodes. Each document is certified by at most one
//! invocation, so the checker can attribute every certification in the log.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kyso_proto::v1 as pb;
use tonic::transport::Channel;
use tonic::Code;

use super::history::{History, Operation, Outcome};
use super::rng::Rng;

/// Deadline of one client operation.
pub const OPERATION_TIMEOUT: Duration = Duration::from_secs(15);
pub const AGENCY: &str = "xa-fault";
/// Pause after a node refused the connection (it is down or restarting), as a real client
/// backs off; without it a client spins through thousands of calls while a whole-cluster
/// restart lasts, and the history fills with them.
const UNREACHABLE_BACKOFF: Duration = Duration::from_millis(100);
/// What tonic answers when the TCP connection could not be opened: nothing was sent.
const CONNECT_FAILED: &str = "tcp connect error";

/// What clients know has been acknowledged, shared between clients.
#[derive(Default)]
pub struct Pool {
    /// Archived (acknowledged) documents nobody has tried to certify yet: hex hashes.
    pub uncertified: Vec<String>,
    /// Acknowledged certifications: code -> (document hex, acknowledged at ms).
    pub certified: HashMap<String, (String, u64)>,
    /// Codes some client tried to revoke.
    pub revoke_claimed: HashSet<String>,
    /// Acknowledged revocations: code -> acknowledged at ms.
    pub revoked: HashMap<String, u64>,
    /// Requests whose outcome the client never learned, kept whole so that the checker can
    /// send each again with the same request id once the cluster is healed.
    pub unknown: Vec<(String, Retry)>,
}

/// A request to send again, exactly as first sent.
#[derive(Clone)]
pub enum Retry {
    Archive(Vec<pb::UploadDossierRequest>),
    Certify(pb::CertifyRequest),
    CertifyBatch(pb::CertifyBatchRequest),
    Revoke(pb::RevokeCertificationRequest),
}

pub struct Client {
    pub index: usize,
    pub urls: Vec<String>,
    pub signer_id: String,
    pub history: Arc<History>,
    pub pool: Arc<Mutex<Pool>>,
    pub rng: Rng,
    channels: HashMap<usize, Channel>,
    tls: tonic::transport::ClientTlsConfig,
    counter: u64,
    /// Whether the last call found its node unreachable.
    unreachable: bool,
}

fn classify(status: &tonic::Status) -> Outcome {
    match status.code() {
        // The request never left the client, so it certainly did not take effect.
        Code::Unavailable if status.message().starts_with(CONNECT_FAILED) => Outcome::Error,
        Code::InvalidArgument | Code::NotFound | Code::AlreadyExists | Code::PermissionDenied | Code::FailedPrecondition | Code::ResourceExhausted => {
            Outcome::Error
        }
        _ => Outcome::Unknown,
    }
}

impl Client {
    /// A client of the nodes at `urls`, presenting the certificate of `tls`.
    pub fn new(
        index: usize,
        urls: Vec<String>,
        tls: tonic::transport::ClientTlsConfig,
        signer_id: String,
        history: Arc<History>,
        pool: Arc<Mutex<Pool>>,
        seed: u64,
    ) -> Client {
        let rng = Rng::new(seed ^ (index as u64 + 1) * 0x51_7CC1);
        Client { index, urls, signer_id, history, pool, rng, channels: HashMap::new(), tls, counter: 0, unreachable: false }
    }

    fn channel(&mut self, node: usize) -> Channel {
        let url = self.urls[node].clone();
        let tls = self.tls.clone();
        self.channels
            .entry(node)
            .or_insert_with(|| {
                let endpoint = Channel::from_shared(url).unwrap().tls_config(tls).expect("test TLS configuration is usable");
                endpoint.connect_timeout(Duration::from_secs(2)).timeout(OPERATION_TIMEOUT).connect_lazy()
            })
            .clone()
    }

    fn request_id(&mut self, kind: &str) -> String {
        self.counter += 1;
        format!("c{}-{kind}-{}", self.index, self.counter)
    }

    /// Runs operations until `deadline`.
    pub async fn run(mut self, deadline: Instant) {
        while Instant::now() < deadline {
            if self.unreachable {
                tokio::time::sleep(UNREACHABLE_BACKOFF).await;
            }
            let node = self.rng.below(self.urls.len() as u64) as usize;
            match self.rng.below(100) {
                0..=24 => self.archive(node).await,
                25..=54 => self.certify(node, 1).await,
                55..=64 => self.certify(node, 3).await,
                65..=74 => self.revoke(node).await,
                _ => self.verify(node).await,
            }
        }
    }

    fn keep_if_unknown(&self, outcome: &Outcome, request_id: &str, retry: Retry) {
        if *outcome == Outcome::Unknown {
            self.pool.lock().unwrap().unknown.push((request_id.to_string(), retry));
        }
    }

    fn finish(&mut self, kind: &'static str, request_id: String, node: usize, invoked_ms: u64, outcome: Outcome, documents: Vec<String>, codes: Vec<String>, detail: String) {
        self.unreachable = outcome == Outcome::Error && detail.starts_with(CONNECT_FAILED);
        self.history.record(Operation {
            client: self.index,
            kind,
            request_id,
            node,
            invoked_ms,
            completed_ms: self.history.now_ms(),
            outcome,
            documents,
            codes,
            detail,
        });
    }

    async fn archive(&mut self, node: usize) {
        let request_id = self.request_id("archive");
        let contents: Vec<Vec<u8>> = (0..2).map(|part| format!("{request_id}/{part}/{}", self.rng.next_u64()).repeat(40).into_bytes()).collect();
        let hashes: Vec<String> = contents.iter().map(|content| kyso::domain::Sha256::digest(content).to_hex()).collect();
        let files: Vec<(&str, &[u8])> = contents.iter().map(|content| ("scan.pdf", content.as_slice())).collect();
        let messages = crate::common::upload_messages(&request_id, AGENCY, &files, 16 * 1024);
        let mut client = pb::archive_service_client::ArchiveServiceClient::new(self.channel(node));
        let invoked = self.history.now_ms();
        let result = tokio::time::timeout(OPERATION_TIMEOUT, client.upload_dossier(futures::stream::iter(messages.clone()))).await;
        // An acknowledged archive records its dossier id as its one code.
        let (outcome, codes, detail) = match result {
            Ok(Ok(response)) => {
                self.pool.lock().unwrap().uncertified.extend(hashes.iter().cloned());
                (Outcome::Ok, vec![response.into_inner().dossier_id], String::new())
            }
            Ok(Err(status)) => (classify(&status), vec![], status.message().to_string()),
            Err(_) => (Outcome::Unknown, vec![], "client timeout".into()),
        };
        self.keep_if_unknown(&outcome, &request_id, Retry::Archive(messages));
        self.finish("archive", request_id, node, invoked, outcome, hashes, codes, detail);
    }

    async fn certify(&mut self, node: usize, count: usize) {
        let documents: Vec<String> = {
            let mut pool = self.pool.lock().unwrap();
            let take = count.min(pool.uncertified.len());
            let start = pool.uncertified.len() - take;
            pool.uncertified.drain(start..).collect()
        };
        if documents.is_empty() {
            return self.archive(node).await;
        }
        let request_id = self.request_id("certify");
        let items: Vec<pb::CertifyRequest> = documents
            .iter()
            .map(|hex| pb::CertifyRequest {
                request_id: request_id.clone(),
                document_sha256: hex::decode(hex).unwrap(),
                kind: pb::CertificationKind::CertifiedCopy as i32,
                agency_id: AGENCY.into(),
                signer_id: self.signer_id.clone(),
                dossier_id: String::new(),
                pin: crate::common::TEST_PIN.into(),
            })
            .collect();
        let mut client = pb::signing_service_client::SigningServiceClient::new(self.channel(node));
        let invoked = self.history.now_ms();
        let (kind, retry, result) = if items.len() == 1 {
            let item = items.into_iter().next().unwrap();
            let retry = Retry::Certify(item.clone());
            ("certify", retry, tokio::time::timeout(OPERATION_TIMEOUT, client.certify(item)).await.map(|result| result.map(|response| vec![response.into_inner()])))
        } else {
            let batch = pb::CertifyBatchRequest { request_id: request_id.clone(), items, pin: crate::common::TEST_PIN.into() };
            let retry = Retry::CertifyBatch(batch.clone());
            let answer = tokio::time::timeout(OPERATION_TIMEOUT, client.certify_batch(batch)).await;
            ("certify_batch", retry, answer.map(|result| result.map(|response| response.into_inner().certifications)))
        };
        let (outcome, codes, detail) = match result {
            Ok(Ok(certifications)) => {
                let now = self.history.now_ms();
                let mut pool = self.pool.lock().unwrap();
                for certification in &certifications {
                    pool.certified.insert(certification.lookup_code.clone(), (hex::encode(&certification.document_sha256), now));
                }
                (Outcome::Ok, certifications.iter().map(|certification| certification.lookup_code.clone()).collect(), String::new())
            }
            Ok(Err(status)) => (classify(&status), vec![], status.message().to_string()),
            Err(_) => (Outcome::Unknown, vec![], "client timeout".into()),
        };
        self.keep_if_unknown(&outcome, &request_id, retry);
        self.finish(kind, request_id, node, invoked, outcome, documents, codes, detail);
    }

    async fn revoke(&mut self, node: usize) {
        let code = {
            let mut pool = self.pool.lock().unwrap();
            let candidates: Vec<String> = pool.certified.keys().filter(|code| !pool.revoke_claimed.contains(*code)).cloned().collect();
            if candidates.is_empty() {
                None
            } else {
                let code = candidates[self.rng.below(candidates.len() as u64) as usize].clone();
                pool.revoke_claimed.insert(code.clone());
                Some(code)
            }
        };
        let Some(code) = code else { return self.verify(node).await };
        let request_id = self.request_id("revoke");
        let mut client = pb::signing_service_client::SigningServiceClient::new(self.channel(node));
        let invoked = self.history.now_ms();
        let request = pb::RevokeCertificationRequest { request_id: request_id.clone(), lookup_code: code.clone(), reason: format!("fault test {request_id}") };
        let retry = Retry::Revoke(request.clone());
        let (outcome, detail) = match tokio::time::timeout(OPERATION_TIMEOUT, client.revoke_certification(request)).await {
            Ok(Ok(_)) => {
                let now = self.history.now_ms();
                self.pool.lock().unwrap().revoked.insert(code.clone(), now);
                (Outcome::Ok, String::new())
            }
            Ok(Err(status)) => (classify(&status), status.message().to_string()),
            Err(_) => (Outcome::Unknown, "client timeout".into()),
        };
        self.keep_if_unknown(&outcome, &request_id, retry);
        self.finish("revoke", request_id, node, invoked, outcome, vec![], vec![code], detail);
    }

    /// Verifies a certification acknowledged before this call started: a linearizable read
    /// must see it, and must see it revoked if its revocation was acknowledged before.
    async fn verify(&mut self, node: usize) {
        let target = {
            let pool = self.pool.lock().unwrap();
            let codes: Vec<&String> = pool.certified.keys().collect();
            if codes.is_empty() {
                None
            } else {
                Some(codes[self.rng.below(codes.len() as u64) as usize].clone())
            }
        };
        let Some(code) = target else { return self.archive(node).await };
        let request_id = self.request_id("verify");
        let mut client = pb::verification_service_client::VerificationServiceClient::new(self.channel(node)).max_decoding_message_size(16 << 20);
        let invoked = self.history.now_ms();
        let request = pb::VerifyRequest { subject: Some(pb::verify_request::Subject::LookupCode(code.clone())), correlation_id: String::new(), ..Default::default() };
        let (outcome, detail) = match tokio::time::timeout(OPERATION_TIMEOUT, client.verify(request)).await {
            Ok(Ok(response)) => {
                let response = response.into_inner();
                let seen = response
                    .certifications
                    .iter()
                    .find(|verified| verified.certification.as_ref().map(|c| c.lookup_code == code).unwrap_or(false))
                    .map(|verified| verified.summary.clone())
                    .unwrap_or_else(|| "absent".into());
                (Outcome::Ok, seen)
            }
            Ok(Err(status)) if status.code() == Code::NotFound => (Outcome::Ok, "absent".into()),
            Ok(Err(status)) => (classify(&status), status.message().to_string()),
            Err(_) => (Outcome::Unknown, "client timeout".into()),
        };
        self.finish("verify", request_id, node, invoked, outcome, vec![], vec![code], detail);
    }
}
