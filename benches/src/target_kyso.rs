//! Driving kyso nodes over their public gRPC API: set up a signer and archived documents
//! (RegisterSigner, UploadDossier, CertifyBatch), then certify or verify under load.
//!
//! Setup is idempotent for a given seed: request ids derive from the seed, so running the
//! generator twice against the same node reuses the signer, the documents and their first
//! certification instead of piling up new ones.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use kyso_proto::v1 as pb;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

use crate::load::{Operation, PickRandom};
use crate::pki::{BenchPki, AGENCY};

/// Largest message the generator accepts (a Verify answer carries chains and proofs).
pub const CLIENT_MESSAGE_SIZE_BYTES_MAX: usize = 16 * 1024 * 1024;
/// Files per uploaded dossier (the node's default limit is 200).
pub const DOSSIER_FILES: usize = 100;
/// Documents per CertifyBatch in setup (the node's default limit is 100).
pub const CERTIFY_BATCH_ITEMS: usize = 100;
/// How long to keep trying to reach a node that is still starting.
pub const CONNECT_DEADLINE: Duration = Duration::from_secs(30);
/// The benchmark signer's PIN (its key is sealed under the master key and this PIN).
pub const BENCH_PIN: &str = "2468101214";

/// Opens `connections` HTTP/2 connections spread over `servers` (TLS as [`connect_one`]).
pub async fn connect(servers: &[String], connections: usize) -> anyhow::Result<Vec<Channel>> {
    let tls = match servers.first() {
        Some(url) if url.starts_with("https://") => Some(client_tls_from_env()?),
        _ => None,
    };
    connect_with(servers, connections, tls.as_ref()).await
}

/// Like [`connect`] with the given client TLS (`None`: plain text).
pub async fn connect_with(servers: &[String], connections: usize, tls: Option<&ClientTlsConfig>) -> anyhow::Result<Vec<Channel>> {
    if servers.is_empty() {
        bail!("name at least one --server");
    }
    let mut channels = Vec::with_capacity(connections.max(1));
    for index in 0..connections.max(1) {
        channels.push(connect_one_with(&servers[index % servers.len()], tls).await?);
    }
    Ok(channels)
}

/// One connection to `url`. An `https://` URL is dialled with mutual TLS: the CA, client
/// certificate and key come from KYSO_CA, KYSO_CERT and KYSO_KEY, as for the kyso CLI.
pub async fn connect_one(url: &str) -> anyhow::Result<Channel> {
    let tls = if url.starts_with("https://") { Some(client_tls_from_env()?) } else { None };
    connect_one_with(url, tls.as_ref()).await
}

async fn connect_one_with(url: &str, tls: Option<&ClientTlsConfig>) -> anyhow::Result<Channel> {
    let deadline = Instant::now() + CONNECT_DEADLINE;
    let mut endpoint = Channel::from_shared(url.to_string())
        .with_context(|| format!("{url} is not a URL such as https://127.0.0.1:7400"))?
        .tcp_nodelay(true);
    if let Some(tls) = tls {
        endpoint = endpoint.tls_config(tls.clone()).context("the TLS files are not usable")?;
    }
    loop {
        match endpoint.connect().await {
            Ok(channel) => return Ok(channel),
            Err(error) if Instant::now() > deadline => bail!("cannot reach {url}: {error}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

fn client_tls_from_env() -> anyhow::Result<ClientTlsConfig> {
    let read = |variable: &str| -> anyhow::Result<Vec<u8>> {
        let path = std::env::var(variable).with_context(|| format!("set {variable} (KYSO_CA, KYSO_CERT, KYSO_KEY) to reach an https:// node"))?;
        std::fs::read(&path).with_context(|| format!("cannot read {variable}={path}"))
    };
    client_tls(read("KYSO_CA")?, read("KYSO_CERT")?, read("KYSO_KEY")?)
}

/// Client TLS trusting `ca_pem` and presenting the certificate `cert_pem` with `key_pem`.
pub fn client_tls(ca_pem: Vec<u8>, cert_pem: Vec<u8>, key_pem: Vec<u8>) -> anyhow::Result<ClientTlsConfig> {
    Ok(ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca_pem)).identity(Identity::from_pem(cert_pem, key_pem)))
}

fn signing(channel: &Channel) -> pb::signing_service_client::SigningServiceClient<Channel> {
    pb::signing_service_client::SigningServiceClient::new(channel.clone()).max_decoding_message_size(CLIENT_MESSAGE_SIZE_BYTES_MAX)
}

fn verification(channel: &Channel) -> pb::verification_service_client::VerificationServiceClient<Channel> {
    pb::verification_service_client::VerificationServiceClient::new(channel.clone())
        .max_decoding_message_size(CLIENT_MESSAGE_SIZE_BYTES_MAX)
}

/// Registers the benchmark signer with its key (idempotent); returns its id.
pub async fn register_signer(channel: &Channel, pki: &BenchPki) -> anyhow::Result<String> {
    let request_id = format!("bench-signer-{}", hex::encode(&kyso::domain::Sha256::digest(&pki.signer.cert_der).0[..8]));
    let request = pb::RegisterSignerRequest {
        request_id,
        name: "Nguyễn Văn Bench".into(),
        title: "Chủ tịch UBND xã Bench".into(),
        agency_ids: vec![AGENCY.into()],
        certificate_chain: pki.signer.cert_pem().into_bytes(),
        private_key_pkcs8: pki.signer.key_pem().as_bytes().to_vec(),
        pin: BENCH_PIN.into(),
    };
    // A cluster that just started may still be electing its leader: UNAVAILABLE until then.
    let deadline = Instant::now() + CONNECT_DEADLINE;
    loop {
        match signing(channel).register_signer(request.clone()).await {
            Ok(signer) => return Ok(signer.into_inner().signer_id),
            Err(status) if status.code() == tonic::Code::Unavailable && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(status) => {
                return Err(anyhow::anyhow!("{status}"))
                    .context("RegisterSigner failed; does the node trust the bench CA (trust_anchor_files)?")
            }
        }
    }
}

/// Deterministic document bytes: `size` bytes from (seed, index).
pub fn document(seed: u64, index: u64, size: usize) -> Vec<u8> {
    let mut random = PickRandom::new(seed ^ index.wrapping_mul(0xA24B_AED4_963E_E407) ^ 0x5bd1_e995);
    let mut bytes = Vec::with_capacity(size + 8);
    while bytes.len() < size {
        bytes.extend_from_slice(&random.next_u64().to_le_bytes());
    }
    bytes.truncate(size);
    bytes
}

/// Uploads `count` documents of `size` bytes in dossiers of [`DOSSIER_FILES`]; returns
/// their hashes in order.
pub async fn upload_documents(channel: &Channel, seed: u64, count: usize, size: usize) -> anyhow::Result<Vec<[u8; 32]>> {
    use pb::upload_dossier_request::Part;
    let mut hashes = Vec::with_capacity(count);
    let mut client = pb::archive_service_client::ArchiveServiceClient::new(channel.clone())
        .max_decoding_message_size(CLIENT_MESSAGE_SIZE_BYTES_MAX)
        .max_encoding_message_size(CLIENT_MESSAGE_SIZE_BYTES_MAX);
    for (dossier, first) in (0..count).step_by(DOSSIER_FILES).enumerate() {
        let last = (first + DOSSIER_FILES).min(count);
        let mut messages = vec![pb::UploadDossierRequest {
            part: Some(Part::Metadata(pb::DossierMetadata {
                request_id: format!("bench-{seed}-dossier-{dossier}-{count}-{size}"),
                agency_id: AGENCY.into(),
                procedure_code: "2.000815".into(),
                dossier_number: format!("HS-BENCH-{seed}-{dossier}"),
                received_date: "2026-11-24".into(),
                private_fields: Default::default(),
            })),
        }];
        for index in first..last {
            let content = document(seed, index as u64, size);
            hashes.push(kyso::domain::Sha256::digest(&content).0);
            messages.push(pb::UploadDossierRequest {
                part: Some(Part::FileStart(pb::FileStart {
                    name: format!("ban-sao-{index}.pdf"),
                    content_type: "application/pdf".into(),
                    declared_size_bytes: size as u64,
                })),
            });
            for chunk in content.chunks(256 * 1024) {
                messages.push(pb::UploadDossierRequest { part: Some(Part::Chunk(chunk.to_vec())) });
            }
        }
        client
            .upload_dossier(futures::stream::iter(messages))
            .await
            .with_context(|| format!("UploadDossier of documents {first}..{last} failed"))?;
    }
    Ok(hashes)
}

/// Certifies each document once (CertifyBatch, idempotent per seed); returns the lookup
/// codes in document order.
pub async fn certify_once(channel: &Channel, seed: u64, signer_id: &str, documents: &[[u8; 32]]) -> anyhow::Result<Vec<String>> {
    let mut codes = Vec::with_capacity(documents.len());
    for (batch, items) in documents.chunks(CERTIFY_BATCH_ITEMS).enumerate() {
        let request = pb::CertifyBatchRequest {
            request_id: format!("bench-{seed}-verify-batch-{batch}-{}", documents.len()),
            items: items.iter().map(|hash| certify_request(String::new(), hash, signer_id)).collect(),
            pin: BENCH_PIN.into(),
        };
        let response = signing(channel).certify_batch(request).await.context("CertifyBatch in setup failed")?.into_inner();
        codes.extend(response.certifications.into_iter().map(|certification| certification.lookup_code));
    }
    Ok(codes)
}

fn certify_request(request_id: String, hash: &[u8; 32], signer_id: &str) -> pb::CertifyRequest {
    pb::CertifyRequest {
        request_id,
        document_sha256: hash.to_vec(),
        kind: pb::CertificationKind::CertifiedCopy as i32,
        agency_id: AGENCY.into(),
        signer_id: signer_id.into(),
        dossier_id: String::new(),
        pin: BENCH_PIN.into(),
    }
}

fn code_name(status: &tonic::Status) -> String {
    format!("{:?}", status.code())
}

/// Certify: one new certification per call, of a document picked round-robin per client.
pub struct Certify {
    pub channels: Vec<Channel>,
    pub signer_id: String,
    pub documents: Vec<[u8; 32]>,
    /// Distinguishes request ids of this run from earlier runs on the same node.
    pub run_id: String,
}

impl Operation for Certify {
    async fn run(&self, client: usize, sequence: u64) -> Result<(), String> {
        let channel = &self.channels[client % self.channels.len()];
        let document = &self.documents[(client.wrapping_mul(7919) + sequence as usize) % self.documents.len()];
        let request = certify_request(format!("bench-{}-{client}-{sequence}", self.run_id), document, &self.signer_id);
        match signing(channel).certify(request).await {
            Ok(response) if !response.get_ref().lookup_code.is_empty() => Ok(()),
            Ok(_) => Err("empty-certification".into()),
            Err(status) => Err(code_name(&status)),
        }
    }
}

/// How Verify names the document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VerifyBy {
    Hash,
    Code,
}

/// Verify: a random document among those certified once in setup; the answer must carry
/// exactly one certification, say it is valid, and carry the evidence its view names.
pub struct Verify {
    pub channels: Vec<Channel>,
    pub by: VerifyBy,
    pub view: pb::VerifyView,
    /// (document hash, lookup code) pairs.
    pub subjects: Arc<Vec<([u8; 32], String)>>,
    pub seed: u64,
}

impl Operation for Verify {
    async fn run(&self, client: usize, sequence: u64) -> Result<(), String> {
        let channel = &self.channels[client % self.channels.len()];
        let mut random = PickRandom::new(self.seed ^ ((client as u64) << 32) ^ sequence);
        let (hash, code) = &self.subjects[random.below(self.subjects.len())];
        let subject = match self.by {
            VerifyBy::Hash => pb::verify_request::Subject::Sha256(hash.to_vec()),
            VerifyBy::Code => pb::verify_request::Subject::LookupCode(code.clone()),
        };
        let request = pb::VerifyRequest { subject: Some(subject), view: self.view as i32, ..Default::default() };
        match verification(channel).verify(request).await {
            Ok(response) => check_verified(response.get_ref(), self.view),
            Err(status) => Err(code_name(&status)),
        }
    }
}

fn check_verified(response: &pb::VerifyResponse, view: pb::VerifyView) -> Result<(), String> {
    match response.certifications.as_slice() {
        [only] if only.inclusion.is_some() != (view == pb::VerifyView::Full) => Err("wrong-view".into()),
        [only] if only.summary == "valid" && only.signature_valid && only.chain_valid_at_signing => Ok(()),
        [_] => Err("not-valid".into()),
        _ => Err("not-exactly-one-certification".into()),
    }
}

/// A run id unlikely to repeat: seconds and nanoseconds of the wall clock.
pub fn run_id() -> String {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    format!("{}{:09}", now.as_secs(), now.subsec_nanos())
}

/// The transport's own cost: a gRPC health check, answered by tonic without touching kyso's
/// services. Its rate on this machine bounds what any unary kyso call can reach.
pub struct HealthCheck {
    pub channels: Vec<Channel>,
}

impl Operation for HealthCheck {
    async fn run(&self, client: usize, _sequence: u64) -> Result<(), String> {
        let channel = &self.channels[client % self.channels.len()];
        let request = tonic_health::pb::HealthCheckRequest { service: String::new() };
        match tonic_health::pb::health_client::HealthClient::new(channel.clone()).check(request).await {
            Ok(response) if response.get_ref().status == tonic_health::pb::health_check_response::ServingStatus::Serving as i32 => Ok(()),
            Ok(_) => Err("not-serving".into()),
            Err(status) => Err(code_name(&status)),
        }
    }
}
