//! Client subcommands over gRPC. Errors print the server's message, which says what to do.

use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use kyso_proto::v1 as pb;
use serde_json::json;
use tokio::io::AsyncReadExt;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

use crate::domain::Sha256;

/// Bytes per upload chunk sent by `kyso archive`.
pub const UPLOAD_CHUNK_SIZE_BYTES: usize = 256 * 1024;
/// Largest message the client accepts from a server.
pub const CLIENT_MESSAGE_SIZE_BYTES_MAX: usize = 66 * 1024 * 1024;

#[derive(Debug, Args, Clone)]
pub struct Connection {
    /// gRPC address of any node: https://HOST:PORT (mutual TLS), or http://HOST:PORT only
    /// for a node started with tls.insecure_plaintext_clients (public calls only).
    #[arg(long, default_value = "https://127.0.0.1:7400", env = "KYSO_SERVER")]
    pub server: String,
    /// PEM of the CA that issued the node's certificate (the cluster CA).
    #[arg(long, default_value = "kyso-data/tls/ca.pem", env = "KYSO_CA")]
    pub ca: PathBuf,
    /// Your client certificate (PEM): it decides your roles.
    #[arg(long, default_value = "kyso-data/tls/client.pem", env = "KYSO_CERT")]
    pub cert: PathBuf,
    /// The PKCS#8 key (PEM) of --cert.
    #[arg(long, default_value = "kyso-data/tls/client.key", env = "KYSO_KEY")]
    pub key: PathBuf,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

pub(crate) async fn channel(connection: &Connection) -> anyhow::Result<Channel> {
    let mut endpoint = Channel::from_shared(connection.server.clone())
        .context("--server must be a URL such as https://127.0.0.1:7400")?;
    if connection.server.starts_with("https://") {
        let read = |path: &PathBuf, what: &str| {
            std::fs::read(path).with_context(|| format!("cannot read the {what} {} (see --ca, --cert, --key)", path.display()))
        };
        let tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(read(&connection.ca, "CA certificate")?))
            .identity(Identity::from_pem(read(&connection.cert, "client certificate")?, read(&connection.key, "client key")?));
        endpoint = endpoint.tls_config(tls).context("the TLS files are not usable")?;
    }
    endpoint
        .connect()
        .await
        .with_context(|| format!("cannot reach kyso at {}; is the node running, and do --ca, --cert and --key fit it?", connection.server))
}

/// A fresh random request id (retries of one command reuse it).
pub fn new_request_id() -> String {
    let mut bytes = [0u8; 16];
    // The system random source only fails on a broken OS; fall back to the clock then.
    if ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes).is_err() {
        bytes[..8].copy_from_slice(&crate::service::now_unix().to_be_bytes());
    }
    hex::encode(bytes)
}

pub(crate) fn status_error(status: tonic::Status) -> anyhow::Error {
    anyhow::anyhow!("{:?}: {}", status.code(), status.message())
}

pub(crate) fn print_json(value: serde_json::Value) {
    let json = serde_json::to_string_pretty(&value).unwrap_or_else(|_| value.to_string());
    println!("{}", crate::text::json_for_terminal(&json));
}

// ----- archive --------------------------------------------------------------------------

#[derive(Debug, Args)]
pub struct ArchiveArgs {
    #[command(flatten)]
    pub connection: Connection,
    /// Receiving agency id.
    #[arg(long)]
    pub agency: String,
    /// Procedure code (mã thủ tục).
    #[arg(long)]
    pub procedure: String,
    /// Dossier number (số hồ sơ).
    #[arg(long)]
    pub number: String,
    /// Received date, YYYY-MM-DD (default: today, UTC).
    #[arg(long)]
    pub received_date: Option<String>,
    /// Private field KEY=VALUE (never shown publicly); repeatable.
    #[arg(long = "field", value_parser = parse_field)]
    pub fields: Vec<(String, String)>,
    /// Idempotency key; reuse it to retry safely.
    #[arg(long)]
    pub request_id: Option<String>,
    /// Files to archive.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
}

fn parse_field(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .map(|(key, value)| (key.to_string(), value.to_string()))
        .ok_or_else(|| format!("{text:?} is not KEY=VALUE"))
}

fn today() -> String {
    let days = crate::service::now_unix().div_euclid(86_400);
    // Civil-from-days (Howard Hinnant's algorithm), proleptic Gregorian, UTC.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z - era * 146_097;
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_part = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_part + 2) / 5 + 1;
    let month = if month_part < 10 { month_part + 3 } else { month_part - 9 };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

pub async fn archive(args: ArchiveArgs) -> anyhow::Result<()> {
    let mut total_bytes = 0u64;
    for file in &args.files {
        total_bytes += std::fs::metadata(file).with_context(|| format!("cannot read {}", file.display()))?.len();
    }
    let metadata = pb::DossierMetadata {
        request_id: args.request_id.clone().unwrap_or_else(new_request_id),
        agency_id: args.agency.clone(),
        procedure_code: args.procedure.clone(),
        dossier_number: args.number.clone(),
        received_date: args.received_date.clone().unwrap_or_else(today),
        private_fields: args.fields.iter().cloned().collect(),
    };
    let progress = if args.connection.json { ProgressBar::hidden() } else { ProgressBar::new(total_bytes) };
    progress.set_style(
        ProgressStyle::with_template("{spinner} {msg:24!} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    let (sender, receiver) = tokio::sync::mpsc::channel(8);
    let reader = tokio::spawn(send_files(args.files.clone(), metadata, sender, progress.clone()));
    let mut client = pb::archive_service_client::ArchiveServiceClient::new(channel(&args.connection).await?)
        .max_decoding_message_size(CLIENT_MESSAGE_SIZE_BYTES_MAX);
    let response = client.upload_dossier(tokio_stream::wrappers::ReceiverStream::new(receiver)).await;
    reader.await.context("file reader failed")??;
    let response = response.map_err(status_error)?.into_inner();
    progress.finish_and_clear();
    if args.connection.json {
        print_json(json!({
            "dossier_id": response.dossier_id,
            "files": response.files.iter().map(|file| json!({
                "name": file.name, "size_bytes": file.size_bytes, "sha256": hex::encode(&file.sha256),
            })).collect::<Vec<_>>(),
        }));
    } else {
        out!("archived dossier {}", response.dossier_id);
        for file in &response.files {
            out!("  {}  {:>10} bytes  {}", hex::encode(&file.sha256), file.size_bytes, file.name);
        }
    }
    Ok(())
}

async fn send_files(
    files: Vec<PathBuf>,
    metadata: pb::DossierMetadata,
    sender: tokio::sync::mpsc::Sender<pb::UploadDossierRequest>,
    progress: ProgressBar,
) -> anyhow::Result<()> {
    use pb::upload_dossier_request::Part;
    let send = |part: Part| {
        let sender = sender.clone();
        async move { sender.send(pb::UploadDossierRequest { part: Some(part) }).await.is_ok() }
    };
    if !send(Part::Metadata(metadata)).await {
        return Ok(());
    }
    for path in files {
        let name = path.file_name().map(|name| name.to_string_lossy().into_owned()).unwrap_or_default();
        let mut file = tokio::fs::File::open(&path).await.with_context(|| format!("cannot open {}", path.display()))?;
        let size = file.metadata().await?.len();
        progress.set_message(name.clone());
        let start = pb::FileStart { name, content_type: guess_content_type(&path).to_string(), declared_size_bytes: size };
        if !send(Part::FileStart(start)).await {
            return Ok(());
        }
        let mut buffer = vec![0u8; UPLOAD_CHUNK_SIZE_BYTES];
        loop {
            let read = file.read(&mut buffer).await.with_context(|| format!("cannot read {}", path.display()))?;
            if read == 0 {
                break;
            }
            if !send(Part::Chunk(buffer[..read].to_vec())).await {
                return Ok(());
            }
            progress.inc(read as u64);
        }
    }
    Ok(())
}

fn guess_content_type(path: &std::path::Path) -> &'static str {
    match path.extension().and_then(|extension| extension.to_str()).map(str::to_ascii_lowercase).as_deref() {
        Some("pdf") => "application/pdf",
        Some("jpg" | "jpeg") => "image/jpeg",
        Some("png") => "image/png",
        Some("tif" | "tiff") => "image/tiff",
        Some("xml") => "application/xml",
        _ => "application/octet-stream",
    }
}

// ----- certify --------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum KindArg {
    /// Result of a procedure (kết quả giải quyết).
    Result,
    /// Certified copy from a paper original (bản sao chứng thực).
    Copy,
}

impl KindArg {
    pub fn to_proto(self) -> pb::CertificationKind {
        match self {
            KindArg::Result => pb::CertificationKind::Result,
            KindArg::Copy => pb::CertificationKind::CertifiedCopy,
        }
    }
}

/// What a certification says, server-side or client-side.
#[derive(Debug, Args)]
pub struct CertificationArgs {
    #[arg(long, value_enum)]
    pub kind: KindArg,
    #[arg(long)]
    pub agency: String,
    /// Signer id (hex fingerprint printed by `kyso signer add` or `kyso dev`).
    #[arg(long)]
    pub signer: String,
    #[arg(long, default_value = "")]
    pub dossier: String,
    /// Idempotency key; reuse it to retry safely.
    #[arg(long)]
    pub request_id: Option<String>,
}

#[derive(Debug, Args)]
pub struct CertifyArgs {
    #[command(flatten)]
    pub connection: Connection,
    /// SHA-256 (hex) of an archived document; repeatable.
    #[arg(long = "hash")]
    pub hashes: Vec<String>,
    /// An archived document's file (hashed locally); repeatable.
    #[arg(long = "file")]
    pub files: Vec<PathBuf>,
    #[command(flatten)]
    pub certification: CertificationArgs,
    /// Write each CMS signature to DIR/<lookup code>.p7s.
    #[arg(long)]
    pub signature_dir: Option<PathBuf>,
    /// The signer's PIN, which unlocks its server-held key (once for the whole batch).
    #[arg(long, env = "KYSO_PIN", hide_env_values = true)]
    pub pin: String,
}

fn hash_file(path: &std::path::Path) -> anyhow::Result<Sha256> {
    let content = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    Ok(Sha256::digest(&content))
}

pub async fn certify(args: CertifyArgs) -> anyhow::Result<()> {
    let mut hashes = Vec::new();
    for text in &args.hashes {
        hashes.push(Sha256::from_hex(text).with_context(|| format!("{text:?} is not a SHA-256 in hex (64 digits)"))?);
    }
    for path in &args.files {
        hashes.push(hash_file(path)?);
    }
    if hashes.is_empty() {
        bail!("name at least one document with --hash or --file");
    }
    let target = &args.certification;
    let kind = target.kind.to_proto();
    let request_id = target.request_id.clone().unwrap_or_else(new_request_id);
    let items: Vec<pb::CertifyRequest> = hashes
        .iter()
        .map(|hash| pb::CertifyRequest {
            request_id: request_id.clone(),
            document_sha256: hash.0.to_vec(),
            kind: kind as i32,
            agency_id: target.agency.clone(),
            signer_id: target.signer.clone(),
            dossier_id: target.dossier.clone(),
            pin: args.pin.clone(),
        })
        .collect();
    let mut client = pb::signing_service_client::SigningServiceClient::new(channel(&args.connection).await?)
        .max_decoding_message_size(CLIENT_MESSAGE_SIZE_BYTES_MAX);
    let certifications = if items.len() == 1 {
        let item = items.into_iter().next().expect("one item");
        vec![client.certify(item).await.map_err(status_error)?.into_inner()]
    } else {
        let batch = pb::CertifyBatchRequest { request_id, items, pin: args.pin.clone() };
        client.certify_batch(batch).await.map_err(status_error)?.into_inner().certifications
    };
    if let Some(dir) = &args.signature_dir {
        std::fs::create_dir_all(dir)?;
        let archive = channel(&args.connection).await?;
        for certification in &certifications {
            std::fs::write(dir.join(format!("{}.p7s", certification.lookup_code)), &certification.cms_signature)?;
            if !certification.delivered_pdf_sha256.is_empty() {
                let pdf = download_blob(archive.clone(), &certification.delivered_pdf_sha256).await?;
                std::fs::write(dir.join(format!("{}.pdf", certification.lookup_code)), pdf)?;
            }
        }
    }
    if args.connection.json {
        print_json(json!(certifications.iter().map(certification_json).collect::<Vec<_>>()));
    } else {
        for certification in &certifications {
            out!(
                "certified {}  lookup code {}  ({} bytes of CMS)",
                hex::encode(&certification.document_sha256),
                certification.lookup_code,
                certification.cms_signature.len()
            );
            if !certification.delivered_pdf_sha256.is_empty() {
                println!(
                    "  certified pdf {}  register {}/{}{}",
                    hex::encode(&certification.delivered_pdf_sha256),
                    certification.register_number,
                    certification.register_year,
                    args.signature_dir.as_ref().map(|dir| format!("  saved as {}", dir.join(format!("{}.pdf", certification.lookup_code)).display())).unwrap_or_default()
                );
            }
        }
    }
    Ok(())
}

#[derive(Debug, clap::Args)]
pub struct RegisterArgs {
    #[command(flatten)]
    pub connection: Connection,
    /// The agency whose register to list.
    #[arg(long)]
    pub agency: String,
    /// The register's year (Vietnam time).
    #[arg(long)]
    pub year: i64,
    /// Comma-separated values with a header line instead of text.
    #[arg(long, conflicts_with = "json")]
    pub csv: bool,
}

/// Pages fetched for one register listing: 1,000 entries each, so 10 million entries.
const REGISTER_PAGES_MAX: usize = 10_000;

pub async fn register(args: RegisterArgs) -> anyhow::Result<()> {
    let mut client = pb::verification_service_client::VerificationServiceClient::new(channel(&args.connection).await?)
        .max_decoding_message_size(CLIENT_MESSAGE_SIZE_BYTES_MAX);
    let mut entries = Vec::new();
    let mut after_number = 0;
    for _ in 0..REGISTER_PAGES_MAX {
        let request = pb::ListRegisterRequest { agency_id: args.agency.clone(), year: args.year, after_number, page_size: 0 };
        let page = client.list_register(request).await.map_err(status_error)?.into_inner();
        entries.extend(page.entries);
        if page.next_after_number == 0 {
            break;
        }
        after_number = page.next_after_number;
    }
    let rows: Vec<serde_json::Value> = entries.iter().map(register_row).collect();
    if args.connection.json {
        print_json(json!(rows));
    } else if args.csv {
        println!("number,label,lookup_code,kind,signed_at_unix,signer_id,document_sha256,delivered_pdf_sha256,status");
        for row in &rows {
            let fields: Vec<String> = ["number", "label", "lookup_code", "kind", "signed_at_unix", "signer_id", "document_sha256", "delivered_pdf_sha256", "status"]
                .iter()
                .map(|key| csv_field(&row[key]))
                .collect();
            println!("{}", fields.join(","));
        }
    } else {
        println!("register of {} for {}: {} entries", args.agency, args.year, rows.len());
        for entry in &entries {
            let certification = entry.certification.clone().unwrap_or_default();
            println!("  {:>6}  {}  lookup code {}  pdf {}", entry.number, entry.label, certification.lookup_code, hex::encode(&certification.delivered_pdf_sha256));
        }
    }
    Ok(())
}

fn register_row(entry: &pb::RegisterEntry) -> serde_json::Value {
    let mut row = certification_json(&entry.certification.clone().unwrap_or_default());
    row["number"] = json!(entry.number);
    row["label"] = json!(entry.label);
    row
}

/// One CSV field (RFC 4180): quoted when it holds a comma, a quote or a line break.
pub(crate) fn csv_field(value: &serde_json::Value) -> String {
    let text = match value {
        serde_json::Value::String(text) => text.clone(),
        serde_json::Value::Null => String::new(),
        other => other.to_string(),
    };
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text
    }
}

/// A blob's bytes through ArchiveService.GetBlob (the node checks its hash as it streams).
pub(crate) async fn download_blob(channel: tonic::transport::Channel, sha256: &[u8]) -> anyhow::Result<Vec<u8>> {
    let mut client = pb::archive_service_client::ArchiveServiceClient::new(channel).max_decoding_message_size(CLIENT_MESSAGE_SIZE_BYTES_MAX);
    let mut stream = client.get_blob(pb::GetBlobRequest { sha256: sha256.to_vec() }).await.map_err(status_error)?.into_inner();
    let mut content = Vec::new();
    while let Some(chunk) = stream.message().await.map_err(status_error)? {
        content.extend_from_slice(&chunk.data);
    }
    Ok(content)
}

fn certification_json(certification: &pb::Certification) -> serde_json::Value {
    json!({
        "lookup_code": certification.lookup_code,
        "document_sha256": hex::encode(&certification.document_sha256),
        "kind": pb::CertificationKind::try_from(certification.kind).map(|kind| kind.as_str_name()).unwrap_or("UNKNOWN"),
        "agency_id": certification.agency_id,
        "signer_id": certification.signer_id,
        "dossier_id": certification.dossier_id,
        "signed_at_unix": certification.signed_at_unix,
        "delivered_pdf_sha256": hex::encode(&certification.delivered_pdf_sha256),
        "register_year": certification.register_year,
        "register_number": certification.register_number,
        "status": pb::CertificationStatus::try_from(certification.status).map(|status| status.as_str_name()).unwrap_or("UNKNOWN"),
        "revocation_reason": certification.revocation_reason,
        "revoked_at_unix": certification.revoked_at_unix,
        "cms_signature_base64": base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &certification.cms_signature),
    })
}

// ----- verify ---------------------------------------------------------------------------

#[derive(Debug, Args)]
#[group(id = "subject", required = true, multiple = false, args = ["file", "hash", "code"])]
pub struct VerifyArgs {
    #[command(flatten)]
    pub connection: Connection,
    /// The document (sent to the node, at most 64 MiB).
    #[arg(long)]
    pub file: Option<PathBuf>,
    /// SHA-256 of the document, hex.
    #[arg(long)]
    pub hash: Option<String>,
    /// Lookup code.
    #[arg(long)]
    pub code: Option<String>,
    /// Online: write an offline-verifiable bundle to this file. With --offline: the bundle to check.
    #[arg(long)]
    pub bundle: Option<PathBuf>,
    /// Check --bundle against --file with no network, using --trust and --log-key.
    #[arg(long, requires_all = ["bundle", "file", "trust", "log_key"])]
    pub offline: bool,
    /// PEM file of the CA certificates to trust (offline).
    #[arg(long)]
    pub trust: Option<PathBuf>,
    /// File holding the log's verifier key, as written to data_dir/log.pub (offline).
    #[arg(long)]
    pub log_key: Option<PathBuf>,
}

pub async fn verify(args: VerifyArgs) -> anyhow::Result<()> {
    if args.offline {
        return super::log::verify_offline(&args);
    }
    use pb::verify_request::Subject;
    let subject = if let Some(path) = &args.file {
        Subject::File(std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?)
    } else if let Some(text) = &args.hash {
        Subject::Sha256(Sha256::from_hex(text).with_context(|| format!("{text:?} is not a SHA-256 in hex"))?.0.to_vec())
    } else if let Some(code) = &args.code {
        Subject::LookupCode(code.clone())
    } else {
        bail!("give --file, --hash or --code");
    };
    let mut client = pb::verification_service_client::VerificationServiceClient::new(channel(&args.connection).await?)
        .max_encoding_message_size(CLIENT_MESSAGE_SIZE_BYTES_MAX)
        .max_decoding_message_size(CLIENT_MESSAGE_SIZE_BYTES_MAX);
    let response = client
        .verify(pb::VerifyRequest { subject: Some(subject), correlation_id: String::new(), ..Default::default() })
        .await
        .map_err(status_error)?
        .into_inner();
    // "valid" or "valid: signed before the signer's certificate was revoked ...".
    let all_valid = response.certifications.iter().all(|verified| verified.summary == "valid" || verified.summary.starts_with("valid: "));
    if let Some(path) = &args.bundle {
        let bundle = super::log::bundle_from_response(&response)?;
        std::fs::write(path, bundle.to_json()).with_context(|| format!("cannot write {}", path.display()))?;
        if !args.connection.json {
            out!("wrote offline bundle {}", path.display());
        }
    }
    if args.connection.json {
        print_json(json!({
            "document_sha256": hex::encode(&response.document_sha256),
            "certifications": response.certifications.iter().map(|verified| json!({
                "certification": verified.certification.as_ref().map(certification_json),
                "signer": verified.signer.as_ref().map(|signer| json!({
                    "signer_id": signer.signer_id, "name": signer.name, "title": signer.title, "subject": signer.subject,
                })),
                "signature_valid": verified.signature_valid,
                "chain_valid_at_signing": verified.chain_valid_at_signing,
                "signature_timestamp_unix": (verified.signature_timestamp_unix != 0).then_some(verified.signature_timestamp_unix),
                "summary": verified.summary,
            })).collect::<Vec<_>>(),
        }));
    } else {
        out!("document {}", hex::encode(&response.document_sha256));
        for verified in &response.certifications {
            let certification = verified.certification.clone().unwrap_or_default();
            let signer = verified.signer.clone().unwrap_or_default();
            out!(
                "  {}  {}  signed by {} ({}) for {} at {}",
                certification.lookup_code,
                verified.summary,
                signer.name,
                signer.title,
                certification.agency_id,
                super::human_time(certification.signed_at_unix)
            );
            if verified.signature_timestamp_unix != 0 {
                out!("    time-stamped at {} (RFC 3161 token over the signature)", super::human_time(verified.signature_timestamp_unix));
            }
        }
    }
    if !all_valid {
        bail!("not every certification of this document is valid");
    }
    Ok(())
}

// ----- revoke ---------------------------------------------------------------------------

#[derive(Debug, Args)]
pub struct RevokeArgs {
    #[command(flatten)]
    pub connection: Connection,
    #[arg(long)]
    pub code: String,
    #[arg(long)]
    pub reason: String,
    #[arg(long)]
    pub request_id: Option<String>,
}

pub async fn revoke(args: RevokeArgs) -> anyhow::Result<()> {
    let mut client = pb::signing_service_client::SigningServiceClient::new(channel(&args.connection).await?);
    let request = pb::RevokeCertificationRequest {
        request_id: args.request_id.clone().unwrap_or_else(new_request_id),
        lookup_code: args.code.clone(),
        reason: args.reason.clone(),
    };
    let certification = client.revoke_certification(request).await.map_err(status_error)?.into_inner();
    if args.connection.json {
        print_json(certification_json(&certification));
    } else {
        out!("revoked {}: {}", certification.lookup_code, certification.revocation_reason);
    }
    Ok(())
}

// ----- signer add -----------------------------------------------------------------------

#[derive(Debug, Args)]
pub struct SignerAddArgs {
    #[command(flatten)]
    pub connection: Connection,
    /// Display name, e.g. "Nguyễn Văn An".
    #[arg(long)]
    pub name: String,
    /// Title, e.g. "Chủ tịch UBND xã".
    #[arg(long)]
    pub title: String,
    /// Agency id; repeatable.
    #[arg(long = "agency", required = true)]
    pub agencies: Vec<String>,
    /// The signer's certificate chain, PEM or DER, leaf first (--cert is your own client
    /// certificate).
    #[arg(long = "signer-cert")]
    pub signer_cert: PathBuf,
    /// PKCS#8 private key (PEM or DER) for server-side signing.
    #[arg(long = "private-key")]
    pub private_key: Option<PathBuf>,
    /// The signer's PIN (8-128 characters) sealing --private-key with the master key.
    #[arg(long, env = "KYSO_PIN", hide_env_values = true)]
    pub pin: Option<String>,
    #[arg(long)]
    pub request_id: Option<String>,
}

#[derive(Debug, clap::Args)]
pub struct AgencySealArgs {
    #[command(flatten)]
    pub connection: Connection,
    #[arg(long)]
    pub agency: String,
    /// The organisation certificate chain, PEM or DER, leaf first.
    #[arg(long = "org-cert")]
    pub org_cert: PathBuf,
    /// Its PKCS#8 private key, PEM or DER (sealed under the node's master key).
    #[arg(long = "org-key")]
    pub org_key: PathBuf,
    #[arg(long)]
    pub request_id: Option<String>,
}

pub async fn agency_seal(args: AgencySealArgs) -> anyhow::Result<()> {
    let read = |path: &PathBuf| std::fs::read(path).with_context(|| format!("cannot read {}", path.display()));
    let request = pb::RegisterAgencySealRequest {
        request_id: args.request_id.clone().unwrap_or_else(new_request_id),
        agency_id: args.agency.clone(),
        certificate_chain: read(&args.org_cert)?,
        private_key_pkcs8: read(&args.org_key)?,
    };
    let mut client = pb::signing_service_client::SigningServiceClient::new(channel(&args.connection).await?);
    let seal = client.register_agency_seal(request).await.map_err(status_error)?.into_inner();
    if args.connection.json {
        print_json(json!({ "agency_id": seal.agency_id, "subject": seal.subject, "registered_at_unix": seal.registered_at_unix }));
    } else {
        println!("agency {} signs its certified pdfs as {}", seal.agency_id, seal.subject);
    }
    Ok(())
}

pub async fn signer_add(args: SignerAddArgs) -> anyhow::Result<()> {
    let certificate_chain =
        std::fs::read(&args.signer_cert).with_context(|| format!("cannot read {}", args.signer_cert.display()))?;
    let private_key_pkcs8 = match &args.private_key {
        Some(path) => std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?,
        None => Vec::new(),
    };
    let mut client = pb::signing_service_client::SigningServiceClient::new(channel(&args.connection).await?);
    let request = pb::RegisterSignerRequest {
        request_id: args.request_id.clone().unwrap_or_else(new_request_id),
        name: args.name.clone(),
        title: args.title.clone(),
        agency_ids: args.agencies.clone(),
        certificate_chain,
        private_key_pkcs8,
        pin: args.pin.clone().unwrap_or_default(),
    };
    let signer = client.register_signer(request).await.map_err(status_error)?.into_inner();
    if args.connection.json {
        print_json(json!({
            "signer_id": signer.signer_id, "name": signer.name, "title": signer.title,
            "agency_ids": signer.agency_ids, "subject": signer.subject, "issuer": signer.issuer,
            "key_algorithm": signer.key_algorithm, "not_after_unix": signer.not_after_unix,
            "has_server_key": signer.has_server_key,
        }));
    } else {
        out!("registered signer {} ({}, {}) for {}", signer.signer_id, signer.name, signer.title, signer.agency_ids.join(", "));
    }
    Ok(())
}
