//! The checker: the history against the final state of every node.

use std::collections::{HashMap, HashSet};

use kyso::state::{LogEvent, LogLeaf};
use kyso::tlog;
use kyso_proto::v1 as pb;

use futures::StreamExt;

use super::history::{Operation, Outcome};

/// Verify calls in flight per node during the final check.
const VERIFY_CONCURRENCY: usize = 8;
/// One call of the final check; beyond this the answer counts as an error.
const CHECK_CALL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);
use super::workload::{Pool, Retry};
use crate::common::TestNode;

#[derive(Debug, Default)]
pub struct Verdict {
    pub acknowledged: usize,
    pub lost: usize,
    pub duplicates: usize,
    pub inconsistent: usize,
    /// Operations of unknown outcome sent again (same request id) on every node.
    pub retried: usize,
    pub problems: Vec<String>,
}

impl Verdict {
    fn problem(&mut self, counter: fn(&mut Verdict) -> &mut usize, message: String) {
        *counter(self) += 1;
        if self.problems.len() < 50 {
            self.problems.push(message);
        }
    }
}

/// Every leaf of a node's log.
pub async fn log_entries(node: &TestNode) -> Vec<Vec<u8>> {
    let size = node.cluster().await.state_digest(pb::StateDigestRequest {}).await.unwrap().into_inner().log_tree_size;
    let mut entries = Vec::new();
    let mut log = pb::log_service_client::LogServiceClient::new(node.channel().await);
    let mut start = 0;
    while start < size {
        let end = (start + 1000).min(size);
        let page = log.get_entries(pb::GetEntriesRequest { start, end }).await.unwrap().into_inner().entries;
        assert!(!page.is_empty(), "log entries {start}..{end} missing");
        start += page.len() as u64;
        entries.extend(page.into_iter().map(|entry| entry.leaf_data));
    }
    entries
}

pub async fn check(nodes: &[TestNode], operations: &[Operation], pool: &Pool, checkpoints: &[(u64, [u8; 32])]) -> Verdict {
    let mut verdict = Verdict::default();
    let logs: Vec<Vec<Vec<u8>>> = futures::future::join_all(nodes.iter().map(log_entries)).await;
    for (position, log) in logs.iter().enumerate().skip(1) {
        if log != &logs[0] {
            verdict.problem(|v| &mut v.inconsistent, format!("node at position {position} has a different log ({} vs {} leaves)", log.len(), logs[0].len()));
        }
    }
    let leaves = &logs[0];

    // What the log says happened.
    let mut certified_codes: HashMap<String, String> = HashMap::new();
    let mut certifications_per_document: HashMap<String, usize> = HashMap::new();
    let mut revoked_codes: HashSet<String> = HashSet::new();
    for leaf in leaves {
        match LogLeaf::decode(leaf).expect("every leaf decodes").event {
            LogEvent::Certification(certification) => {
                let code = certification.lookup_code.to_string();
                let document = certification.document_sha256.to_hex();
                *certifications_per_document.entry(document.clone()).or_default() += 1;
                if certified_codes.insert(code.clone(), document).is_some() {
                    verdict.problem(|v| &mut v.duplicates, format!("lookup code {code} issued twice"));
                }
            }
            LogEvent::Revocation { lookup_code, .. } => {
                revoked_codes.insert(lookup_code.to_string());
            }
            _ => {}
        }
    }
    for (document, count) in &certifications_per_document {
        if *count > 1 {
            verdict.problem(|v| &mut v.duplicates, format!("document {document} certified {count} times by one invocation"));
        }
    }

    // Every acknowledged write is there; nothing appears that no client asked for.
    let mut requested_documents: HashMap<String, Outcome> = HashMap::new();
    for operation in operations {
        match (operation.kind, &operation.outcome) {
            ("certify" | "certify_batch", outcome) => {
                for document in &operation.documents {
                    requested_documents.insert(document.clone(), outcome.clone());
                }
                if *outcome == Outcome::Ok {
                    verdict.acknowledged += 1;
                    for code in &operation.codes {
                        match certified_codes.get(code) {
                            Some(document) if operation.documents.contains(document) => {}
                            Some(document) => verdict.problem(|v| &mut v.inconsistent, format!("code {code} certifies {document}, not what {} asked", operation.request_id)),
                            None => verdict.problem(|v| &mut v.lost, format!("acknowledged certification {code} ({}) is not in the log", operation.request_id)),
                        }
                    }
                }
            }
            ("revoke", Outcome::Ok) => {
                verdict.acknowledged += 1;
                if !revoked_codes.contains(&operation.codes[0]) {
                    verdict.problem(|v| &mut v.lost, format!("acknowledged revocation of {} is not in the log", operation.codes[0]));
                }
            }
            ("archive", Outcome::Ok) => verdict.acknowledged += 1,
            _ => {}
        }
    }
    for (code, document) in &certified_codes {
        match requested_documents.get(document) {
            None => verdict.problem(|v| &mut v.inconsistent, format!("certification {code} of {document} was never requested")),
            Some(Outcome::Error) => verdict.problem(|v| &mut v.inconsistent, format!("certification {code} of {document} was refused to its client but applied")),
            Some(_) => {}
        }
    }

    // Reads: a verify that started after an acknowledgement sees it.
    for operation in operations.iter().filter(|operation| operation.kind == "verify" && operation.outcome == Outcome::Ok) {
        let code = &operation.codes[0];
        if operation.detail == "absent" {
            verdict.problem(|v| &mut v.inconsistent, format!("verify {} on node {} did not see acknowledged {code}", operation.request_id, operation.node));
        }
        if let Some(revoked_at) = pool.revoked.get(code) {
            if *revoked_at < operation.invoked_ms && !operation.detail.starts_with("revoked") {
                verdict.problem(|v| &mut v.inconsistent, format!("verify {} saw {code} as {:?} after its revocation was acknowledged", operation.request_id, operation.detail));
            }
        }
    }

    // Final state: every acknowledged certification verifies identically on every node,
    // and a revoked one stays revoked.
    for node in nodes {
        let client = pb::verification_service_client::VerificationServiceClient::new(node.channel().await).max_decoding_message_size(16 << 20);
        let answers: Vec<(String, String)> = futures::stream::iter(pool.certified.keys().cloned())
            .map(|code| {
                let mut client = client.clone();
                async move {
                    let request = pb::VerifyRequest { subject: Some(pb::verify_request::Subject::LookupCode(code.clone())), correlation_id: String::new(), ..Default::default() };
                    let answer = tokio::time::timeout(CHECK_CALL_TIMEOUT, client.verify(request)).await;
                    let summary = match answer.unwrap_or_else(|_| Err(tonic::Status::deadline_exceeded("checker timeout"))) {
                        Ok(response) => response
                            .into_inner()
                            .certifications
                            .into_iter()
                            .find(|verified| verified.certification.as_ref().map(|c| c.lookup_code == code).unwrap_or(false))
                            .map(|verified| verified.summary)
                            .unwrap_or_else(|| "absent".into()),
                        Err(status) => format!("error {:?}", status.code()),
                    };
                    (code, summary)
                }
            })
            .buffer_unordered(VERIFY_CONCURRENCY)
            .collect()
            .await;
        for (code, summary) in answers {
            let expected_revoked = revoked_codes.contains(&code);
            let fine = if expected_revoked { summary.starts_with("revoked") } else { summary == "valid" };
            if !fine {
                verdict.problem(|v| &mut v.inconsistent, format!("{code} on {} reads {summary:?} (revoked in log: {expected_revoked})", node.grpc_url));
            }
        }
    }

    // The documents themselves: every acknowledged certification's document can still be
    // read from the cluster (a node without a copy fetches one from a peer). Verify alone
    // could answer from its cache without reading the document.
    let mut archives = Vec::new();
    for node in nodes {
        archives.push(pb::archive_service_client::ArchiveServiceClient::new(node.channel().await).max_decoding_message_size(16 << 20));
    }
    let documents: HashSet<String> = pool.certified.values().map(|(document, _)| document.clone()).collect();
    let unreadable: Vec<(String, String)> = futures::stream::iter(documents.into_iter().enumerate())
        .map(|(position, document)| {
            let mut client = archives[position % archives.len()].clone();
            async move {
                let request = pb::GetBlobRequest { sha256: hex::decode(&document).unwrap() };
                let read = tokio::time::timeout(CHECK_CALL_TIMEOUT, async {
                    let mut stream = client.get_blob(request).await?.into_inner();
                    while stream.message().await?.is_some() {}
                    Ok::<(), tonic::Status>(())
                })
                .await;
                match read {
                    Ok(Ok(())) => None,
                    Ok(Err(status)) => Some((document, format!("{:?}: {}", status.code(), status.message()))),
                    Err(_) => Some((document, "timeout".to_string())),
                }
            }
        })
        .buffer_unordered(VERIFY_CONCURRENCY)
        .filter_map(|outcome| async move { outcome })
        .collect()
        .await;
    for (document, error) in unreadable {
        verdict.problem(|v| &mut v.lost, format!("document {document} of an acknowledged certification cannot be read: {error}"));
    }

    check_archives(nodes, operations, &mut verdict).await;

    // Checkpoints seen during the run are all prefixes of the final log.
    let mut store = tlog::MemoryNodeStore::new();
    for (size, leaf) in leaves.iter().enumerate() {
        tlog::append(&mut store, size as u64, leaf).unwrap();
    }
    for (size, root) in checkpoints {
        if *size > leaves.len() as u64 {
            verdict.problem(|v| &mut v.lost, format!("a checkpoint of size {size} was served but the final log has {}", leaves.len()));
        } else if *size > 0 && &tlog::root(&store, *size).unwrap() != root {
            verdict.problem(|v| &mut v.inconsistent, format!("checkpoint of size {size} is not a prefix of the final log"));
        }
    }
    // Last, since a retry may apply what never was: it changes the state checked above.
    retry_unknown(nodes, &pool.unknown, &mut verdict).await;
    verdict
}

/// Every acknowledged archive, on every node: its dossier lists exactly the archived files,
/// and every file's bytes read back and hash to its address.
async fn check_archives(nodes: &[TestNode], operations: &[Operation], verdict: &mut Verdict) {
    let archived: Vec<&Operation> = operations.iter().filter(|operation| operation.kind == "archive" && operation.outcome == Outcome::Ok).collect();
    for node in nodes {
        let client = pb::archive_service_client::ArchiveServiceClient::new(node.channel().await).max_decoding_message_size(16 << 20);
        let problems: Vec<String> = futures::stream::iter(archived.iter().copied())
            .map(|operation| {
                let client = client.clone();
                async move { check_archive(client, operation).await.err().map(|why| format!("acknowledged archive {} on {}: {why}", operation.request_id, node.grpc_url)) }
            })
            .buffer_unordered(VERIFY_CONCURRENCY)
            .filter_map(|problem| async move { problem })
            .collect()
            .await;
        for problem in problems {
            verdict.problem(|v| &mut v.lost, problem);
        }
    }
}

async fn check_archive(mut client: pb::archive_service_client::ArchiveServiceClient<tonic::transport::Channel>, operation: &Operation) -> Result<(), String> {
    let dossier_id = operation.codes.first().ok_or("no dossier id was recorded")?.clone();
    let dossier = tokio::time::timeout(CHECK_CALL_TIMEOUT, client.get_dossier(pb::GetDossierRequest { dossier_id }))
        .await
        .map_err(|_| "dossier read timed out".to_string())?
        .map_err(|status| format!("dossier unreadable: {:?} {}", status.code(), status.message()))?
        .into_inner();
    let mut listed: Vec<String> = dossier.files.iter().map(|file| hex::encode(&file.sha256)).collect();
    let mut archived = operation.documents.clone();
    listed.sort();
    archived.sort();
    if listed != archived {
        return Err(format!("dossier lists {listed:?}, the client archived {archived:?}"));
    }
    for hash in &archived {
        let read = tokio::time::timeout(CHECK_CALL_TIMEOUT, async {
            let mut stream = client.get_blob(pb::GetBlobRequest { sha256: hex::decode(hash).unwrap() }).await?.into_inner();
            let mut context = ring::digest::Context::new(&ring::digest::SHA256);
            while let Some(chunk) = stream.message().await? {
                context.update(&chunk.data);
            }
            Ok::<String, tonic::Status>(hex::encode(context.finish()))
        })
        .await
        .map_err(|_| format!("blob {hash} read timed out"))?
        .map_err(|status| format!("blob {hash} unreadable: {:?} {}", status.code(), status.message()))?;
        if &read != hash {
            return Err(format!("blob {hash} reads back as bytes hashing to {read}"));
        }
    }
    Ok(())
}

/// Attempts per node to get a definite answer to a retried request.
const RETRY_ATTEMPTS_MAX: u32 = 10;

/// Sends every request whose outcome was unknown again, with its request id, to every
/// node: each must give one definite outcome, the same on every node.
async fn retry_unknown(nodes: &[TestNode], unknown: &[(String, Retry)], verdict: &mut Verdict) {
    for (request_id, retry) in unknown {
        let mut answers = Vec::new();
        for node in nodes {
            answers.push(definite_answer(node, retry).await);
        }
        verdict.retried += 1;
        if answers.iter().any(|answer| answer.is_none()) {
            verdict.problem(|v| &mut v.inconsistent, format!("retried {request_id}: no definite outcome from every node: {answers:?}"));
        } else if answers.iter().any(|answer| answer != &answers[0]) {
            verdict.problem(|v| &mut v.inconsistent, format!("retried {request_id}: nodes answer differently: {answers:?}"));
        }
    }
}

/// The outcome of `retry` on `node` as comparable text, or None if every attempt ended
/// without one (unavailable, unknown, timeout).
async fn definite_answer(node: &TestNode, retry: &Retry) -> Option<String> {
    for _ in 0..RETRY_ATTEMPTS_MAX {
        let channel = node.channel().await;
        let answer = tokio::time::timeout(CHECK_CALL_TIMEOUT, send(channel, retry)).await.unwrap_or_else(|_| Err(tonic::Status::deadline_exceeded("checker timeout")));
        match answer {
            Ok(text) => return Some(text),
            Err(status) if matches!(status.code(), tonic::Code::Unavailable | tonic::Code::Unknown | tonic::Code::DeadlineExceeded | tonic::Code::ResourceExhausted) => {
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            }
            Err(status) => return Some(format!("refused {:?}", status.code())),
        }
    }
    None
}

async fn send(channel: tonic::transport::Channel, retry: &Retry) -> Result<String, tonic::Status> {
    let mut signing = pb::signing_service_client::SigningServiceClient::new(channel.clone());
    Ok(match retry.clone() {
        Retry::Archive(messages) => {
            let mut archive = pb::archive_service_client::ArchiveServiceClient::new(channel);
            format!("dossier {}", archive.upload_dossier(futures::stream::iter(messages)).await?.into_inner().dossier_id)
        }
        Retry::Certify(request) => format!("codes {}", signing.certify(request).await?.into_inner().lookup_code),
        Retry::CertifyBatch(request) => {
            let mut codes: Vec<String> = signing.certify_batch(request).await?.into_inner().certifications.into_iter().map(|c| c.lookup_code).collect();
            codes.sort();
            format!("codes {}", codes.join(","))
        }
        Retry::Revoke(request) => {
            let revoked = signing.revoke_certification(request).await?.into_inner();
            format!("revoked {}", revoked.lookup_code)
        }
    })
}
