//! Node configuration: a TOML file (every key documented in `deploy/kyso.example.toml`),
//! overridable by command-line flags and `KYSO_*` environment variables.
//!
//! Every limit lives here with its unit last in its name and is checked by
//! [`Config::validate`] before the node starts.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where the state store, the local blob store and generated keys live.
    pub data_dir: PathBuf,
    /// Address of the gRPC API. Port 0 picks a free port (printed at start).
    #[serde(default = "default_grpc_addr")]
    pub grpc_addr: SocketAddr,
    /// Address of the public HTTP port (lookup page, health). Port 0 picks a free port.
    #[serde(default = "default_http_addr")]
    pub http_addr: SocketAddr,
    /// Address of the metrics listener (`GET /metrics`, Prometheus text format). Absent: no
    /// metrics listener. Keep it on loopback or an operations network: it needs no identity.
    #[serde(default)]
    pub metrics_addr: Option<SocketAddr>,
    /// File holding the 32-byte master key that seals signers' private keys. Created with
    /// mode 0600 if missing. Relative paths are under `data_dir`.
    #[serde(default = "default_master_key_file")]
    pub master_key_file: PathBuf,
    /// During a master key rotation: the old master key. A signer key sealed under it is
    /// re-sealed under `master_key_file` the next time its signer unlocks it with the PIN.
    /// Relative paths are under `data_dir`. Remove once every key was re-sealed.
    #[serde(default)]
    pub previous_master_key_file: Option<PathBuf>,
    /// PKCS#8 Ed25519 key that signs transparency-log checkpoints. Created when missing.
    /// Every node of a cluster MUST hold the same key. Relative paths are under `data_dir`.
    #[serde(default = "default_log_key_file")]
    pub log_key_file: PathBuf,
    /// Origin line of the log's checkpoints and the name of its key, e.g.
    /// "tracuu.example.gov.vn/kyso". Letters, digits and `.-_/:` only.
    #[serde(default = "default_log_origin")]
    pub log_origin: String,
    /// PEM files of the CA certificates that signer chains must lead to.
    #[serde(default)]
    pub trust_anchor_files: Vec<PathBuf>,
    /// Base URL printed in QR codes, e.g. "https://tracuu.example.gov.vn".
    #[serde(default = "default_public_base_url")]
    pub public_base_url: String,
    #[serde(default)]
    pub storage: StorageConfig,
    /// Lets a test harness cut this node's Raft links (`ClusterService.InjectFault`). Never
    /// in production: the node logs a warning at start when it is on.
    #[serde(default)]
    pub fault_injection: bool,
    /// Raft membership. Absent: a standalone single node (the embedded default).
    #[serde(default)]
    pub cluster: Option<ClusterConfig>,
    /// Certificates and CAs of the client and peer ports.
    #[serde(default)]
    pub tls: TlsConfig,
    /// Client certificates granted roles by configuration (bootstrap operators).
    #[serde(default)]
    pub access: AccessConfig,
    #[serde(default)]
    pub limits: Limits,
    /// Display names of agencies on the public page and stamps, by agency id, e.g.
    /// `xa-demo = "UBND xã Demo"`. An agency without an entry is shown by its id.
    #[serde(default)]
    pub agency_names: BTreeMap<String, String>,
    /// Reverse proxies in front of the HTTP port, by address. Only for a connection from
    /// one of them does the public rate limiter take the client's address from
    /// `X-Forwarded-For` (the rightmost address that is not itself a trusted proxy);
    /// everyone else is counted by the connection's own address.
    #[serde(default)]
    pub trusted_proxies: Vec<std::net::IpAddr>,
    /// The certified PDF per agency id: register format and block placement, e.g.
    /// `[certified_pdf.xa-demo]` `number_format = "{number}/{year}-SCTĐT/BS"`. An agency
    /// without an entry uses `AgencyPdfConfig::default()`.
    #[serde(default)]
    pub certified_pdf: BTreeMap<String, AgencyPdfConfig>,
    /// Logs and traces (`[observability]`).
    #[serde(default)]
    pub observability: ObservabilityConfig,
    /// The node's RFC 3161 time-stamping authority and where signatures get their
    /// signature-time-stamp (`[tsa]`).
    #[serde(default)]
    pub tsa: TsaConfig,
}

/// The time-stamping authority (`POST /tsa`, `LogService.Timestamp`) and the time stamps
/// of kyso's own signatures. With `cert_file` and `key_file` the node runs its own TSA and
/// stamps its signatures with it; with `url` another TSA stamps them (the node may still
/// serve its own); with neither, signatures carry no time stamp (CAdES-BES / PAdES B-B)
/// and the node logs a warning at start.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TsaConfig {
    /// The TSA certificate chain (PEM, TSA certificate first): extendedKeyUsage
    /// timeStamping only, critical. Relative paths are relative to the config file.
    pub cert_file: Option<PathBuf>,
    /// The PKCS#8 key (PEM) of `cert_file`.
    pub key_file: Option<PathBuf>,
    /// An external RFC 3161 TSA (`http://` or `https://`) that stamps this node's
    /// signatures instead of its own, e.g. another kyso node's `http://host:7480/tsa`.
    pub url: Option<String>,
    /// The accuracy stated in every token: the most the node's clock may be off (NTP).
    pub accuracy_seconds: u64,
    /// The TSA policy of the tokens (an OID with 32-bit arcs). The default is a documentation
    /// placeholder (RFC 5612); a production TSA sets its PKI's policy.
    pub policy_oid: String,
    /// How long a request to `url` may take before the certification fails UNAVAILABLE.
    pub request_timeout_seconds: u64,
}

impl Default for TsaConfig {
    fn default() -> Self {
        TsaConfig {
            cert_file: None,
            key_file: None,
            url: None,
            accuracy_seconds: 1,
            policy_oid: crate::crypto::tsa::DEFAULT_POLICY_OID.into(),
            request_timeout_seconds: 10,
        }
    }
}

impl TsaConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        if self.cert_file.is_some() != self.key_file.is_some() {
            return Err(ConfigError::Invalid { key: "tsa.cert_file", reason: "set tsa.cert_file and tsa.key_file together".into() });
        }
        if let Some(url) = &self.url {
            if !(url.starts_with("http://") || url.starts_with("https://")) || url.len() > 200 {
                return Err(ConfigError::Invalid { key: "tsa.url", reason: "use an http:// or https:// URL of at most 200 characters".into() });
            }
        }
        if !(1..=60).contains(&self.accuracy_seconds) {
            return Err(ConfigError::Invalid { key: "tsa.accuracy_seconds", reason: "use 1 to 60 seconds".into() });
        }
        if !(1..=120).contains(&self.request_timeout_seconds) {
            return Err(ConfigError::Invalid { key: "tsa.request_timeout_seconds", reason: "use 1 to 120 seconds".into() });
        }
        if let Err(reason) = crate::crypto::tsa::parse_policy_oid(&self.policy_oid) {
            return Err(ConfigError::Invalid { key: "tsa.policy_oid", reason });
        }
        Ok(())
    }
}

/// How a node writes its logs and where it sends its traces.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ObservabilityConfig {
    /// Log lines on stderr as `text` (the default) or `json` (one object a line); the
    /// `--log-json` flag or `KYSO_LOG_JSON=true` also choose JSON.
    pub log_format: LogFormat,
    /// OTLP/gRPC collector, e.g. "http://127.0.0.1:4317". Absent: no traces are exported.
    pub otlp_endpoint: Option<String>,
    /// `service.name` of the exported spans.
    pub service_name: String,
    /// Spans are sent in batches this often (and when the node stops).
    pub otlp_export_interval_milliseconds: u64,
    /// Spans waiting for export; more are dropped (and counted by the SDK), never blocking
    /// a request.
    pub otlp_queued_spans_max: usize,
}

/// The format of log lines.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

impl Default for ObservabilityConfig {
    fn default() -> Self {
        ObservabilityConfig {
            log_format: LogFormat::Text,
            otlp_endpoint: None,
            service_name: "kyso".into(),
            otlp_export_interval_milliseconds: 5_000,
            otlp_queued_spans_max: 2_048,
        }
    }
}

impl ObservabilityConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        if let Some(endpoint) = &self.otlp_endpoint {
            if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) || endpoint.len() > 200 {
                return Err(ConfigError::Invalid {
                    key: "observability.otlp_endpoint",
                    reason: format!("{endpoint:?} is not an http:// or https:// URL of at most 200 bytes (e.g. http://127.0.0.1:4317)"),
                });
            }
        }
        if self.service_name.is_empty() || self.service_name.len() > 100 || self.service_name.chars().any(char::is_control) {
            return Err(ConfigError::Invalid { key: "observability.service_name", reason: "use 1-100 characters without control characters".into() });
        }
        if !(100..=60_000).contains(&self.otlp_export_interval_milliseconds) {
            return Err(ConfigError::Invalid { key: "observability.otlp_export_interval_milliseconds", reason: "use 100 to 60000".into() });
        }
        if !(1..=1_000_000).contains(&self.otlp_queued_spans_max) {
            return Err(ConfigError::Invalid { key: "observability.otlp_queued_spans_max", reason: "use 1 to 1000000".into() });
        }
        Ok(())
    }
}

/// How one agency's certified PDFs number and place the certification block.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AgencyPdfConfig {
    /// The certification number as printed; `{number}` (two digits at least) and `{year}`.
    pub number_format: String,
    /// The register (quyển số) as printed; `{year}`.
    pub book_format: String,
    /// The block on an appended A4 page instead of the last page's bottom corner.
    pub appended_page: bool,
}

impl Default for AgencyPdfConfig {
    fn default() -> Self {
        AgencyPdfConfig { number_format: "{number}".into(), book_format: "01/{year}-SCTĐT/BS".into(), appended_page: false }
    }
}

/// TLS on the client (gRPC) and peer ports. Paths are relative to the config file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// This node's certificate chain (PEM), issued by the cluster CA: its server identity
    /// on both ports and its client identity toward other nodes. SANs must name the hosts
    /// clients and peers dial.
    pub cert_file: Option<PathBuf>,
    /// The PKCS#8 key of `cert_file` (PEM).
    pub key_file: Option<PathBuf>,
    /// CAs (PEM) whose client certificates the client port accepts (agencies, operators).
    #[serde(default)]
    pub client_ca_files: Vec<PathBuf>,
    /// The CA (PEM) of node certificates. The peer port accepts only its certificates; on
    /// the client port its certificates are nodes (role `node`). Required in a cluster.
    pub cluster_ca_file: Option<PathBuf>,
    /// DANGER: serve the client port without TLS. Callers then have no identity and only
    /// the public role. Logged loudly at start.
    #[serde(default)]
    pub insecure_plaintext_clients: bool,
    /// DANGER: serve the peer port without TLS and dial peers in plain text: anyone who
    /// reaches the port can take part in Raft. Logged loudly.
    #[serde(default)]
    pub insecure_plaintext_peers: bool,
    /// Seconds a TLS handshake may take.
    #[serde(default = "default_handshake_timeout_seconds")]
    pub handshake_timeout_seconds: u64,
}

fn default_handshake_timeout_seconds() -> u64 {
    10
}

impl Default for TlsConfig {
    fn default() -> Self {
        TlsConfig {
            cert_file: None,
            key_file: None,
            client_ca_files: Vec::new(),
            cluster_ca_file: None,
            insecure_plaintext_clients: false,
            insecure_plaintext_peers: false,
            handshake_timeout_seconds: default_handshake_timeout_seconds(),
        }
    }
}

/// Principals granted by configuration. Every node of a cluster MUST list the same.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessConfig {
    #[serde(default)]
    pub principals: Vec<StaticPrincipal>,
}

/// One client certificate's grants, as written in the config file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StaticPrincipal {
    /// Hex SHA-256 of the client certificate's DER (`kyso tls fingerprint FILE` prints it).
    pub certificate_sha256: String,
    pub name: String,
    pub roles: Vec<crate::access::Role>,
    #[serde(default)]
    pub agency_ids: Vec<String>,
    #[serde(default)]
    pub signer_ids: Vec<String>,
}

impl AccessConfig {
    /// The configured principals; fails on a malformed fingerprint.
    pub fn principals(&self) -> Result<Vec<crate::access::Principal>, ConfigError> {
        self.principals
            .iter()
            .map(|principal| {
                let hash = crate::domain::Sha256::from_hex(&principal.certificate_sha256).ok_or_else(|| ConfigError::Invalid {
                    key: "access.principals.certificate_sha256",
                    reason: format!("{:?} is not 64 hex digits", principal.certificate_sha256),
                })?;
                if principal.roles.contains(&crate::access::Role::Node) {
                    return Err(ConfigError::Invalid {
                        key: "access.principals.roles",
                        reason: "the node role comes from the cluster ca; it cannot be granted".into(),
                    });
                }
                Ok(crate::access::Principal {
                    certificate_sha256: hash,
                    name: principal.name.clone(),
                    roles: principal.roles.clone(),
                    agency_ids: principal.agency_ids.clone(),
                    signer_ids: principal.signer_ids.clone(),
                })
            })
            .collect()
    }
}

/// This node's place in a Raft cluster.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// This node's Raft id: non-zero, unique in the cluster, never reused.
    pub node_id: u64,
    /// Address of this node's peer port (Raft messages and snapshots).
    pub raft_addr: SocketAddr,
    /// The client address other nodes name when they redirect a write here. Defaults to
    /// `grpc_addr` (set it when `grpc_addr` binds 0.0.0.0 or port 0).
    #[serde(default)]
    pub advertise_client_addr: Option<String>,
    /// The initial members when the cluster is first created (every node lists the same
    /// set, itself included). Ignored once the node has state. Empty with `join = true`.
    #[serde(default)]
    pub members: Vec<ClusterMember>,
    /// Start empty and wait to be added by `kyso cluster add` on the leader.
    #[serde(default)]
    pub join: bool,
    /// Take a snapshot and compact the log every this many applied entries.
    #[serde(default = "default_compaction_interval_entries")]
    pub compaction_interval_entries: u64,
    /// Entries kept behind a snapshot so slightly lagging peers catch up from the log.
    #[serde(default = "default_log_retained_entries")]
    pub log_retained_entries: u64,
    /// A snapshot for a lagging member is read, sent and staged this many bytes at a time
    /// (1 KiB to 8 MiB): the memory a transfer takes on either side, whatever the state's
    /// size. A snapshot as a whole is limited only by the receiver's disk.
    #[serde(default = "default_snapshot_chunk_size_bytes")]
    pub snapshot_chunk_size_bytes: usize,
    /// Milliseconds between Raft ticks; elections time out after 10 ticks.
    #[serde(default = "default_tick_interval_milliseconds")]
    pub tick_interval_milliseconds: u64,
    /// The node stops calling itself ready (`/readyz`, `/healthz` 503, gRPC health
    /// NOT_SERVING, public lookups "temporarily unavailable") after this long without
    /// contact with a quorum. At least one election timeout (10 ticks).
    #[serde(default = "default_quorum_contact_milliseconds_max")]
    pub quorum_contact_milliseconds_max: u64,
    /// ... and while its applied index trails the commit index by more than this.
    #[serde(default = "default_apply_lag_entries_max")]
    pub apply_lag_entries_max: u64,
}

fn default_quorum_contact_milliseconds_max() -> u64 {
    5_000
}

fn default_apply_lag_entries_max() -> u64 {
    1_000
}

/// One member of the initial cluster.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ClusterMember {
    pub id: u64,
    /// host:port of its peer port.
    pub raft_addr: String,
    /// host:port of its gRPC API.
    pub client_addr: String,
}

fn default_compaction_interval_entries() -> u64 {
    10_000
}
fn default_log_retained_entries() -> u64 {
    1_000
}
fn default_snapshot_chunk_size_bytes() -> usize {
    1024 * 1024
}
fn default_tick_interval_milliseconds() -> u64 {
    100
}

/// Where blobs live.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum StorageConfig {
    /// The local filesystem under `data_dir/blobs` (the embedded default).
    #[default]
    Local,
    /// An S3-compatible bucket (see [`S3Config`]).
    S3(S3Config),
}

/// An S3-compatible bucket. Credentials never live in this config: they come from
/// `credentials_file` or, when it is absent, from `AWS_ACCESS_KEY_ID`,
/// `AWS_SECRET_ACCESS_KEY` (and optionally `AWS_SESSION_TOKEN`) in the node's environment.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3Config {
    /// Endpoint URL, e.g. "https://s3.example.gov.vn" or "http://127.0.0.1:9000".
    pub endpoint: String,
    /// Bucket name (created beforehand by the operator, ideally with Object Lock).
    pub bucket: String,
    #[serde(default = "default_s3_region")]
    pub region: String,
    /// Plain HTTP to the endpoint; only for a store on the same host (tests, development).
    #[serde(default)]
    pub allow_http: bool,
    /// `https://BUCKET.host/KEY` instead of path-style `https://host/BUCKET/KEY`. Most
    /// self-hosted servers want path-style (the default).
    #[serde(default)]
    pub virtual_hosted_style: bool,
    /// TOML file with `access_key_id`, `secret_access_key` and optionally `session_token`,
    /// readable by its owner only (mode 0600). Relative paths are under `data_dir`.
    #[serde(default)]
    pub credentials_file: Option<PathBuf>,
    /// Seconds one HTTP request to the store may take.
    #[serde(default = "default_s3_request_timeout_seconds")]
    pub request_timeout_seconds: u64,
    /// Seconds within which failed requests are retried before the node answers UNAVAILABLE.
    #[serde(default = "default_s3_retry_timeout_seconds")]
    pub retry_timeout_seconds: u64,
    /// Retries of one failed request (0 = none).
    #[serde(default = "default_s3_retries_max")]
    pub retries_max: usize,
}

fn default_s3_region() -> String {
    "us-east-1".to_string()
}
fn default_s3_request_timeout_seconds() -> u64 {
    60
}
fn default_s3_retry_timeout_seconds() -> u64 {
    20
}
fn default_s3_retries_max() -> usize {
    4
}

/// Limits on every input. Defaults suit a commune office; raise them deliberately.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Largest file in a dossier.
    pub file_size_bytes_max: u64,
    /// Most files in one dossier.
    pub dossier_files_max: usize,
    /// Largest gRPC message the node decodes.
    pub grpc_message_size_bytes_max: usize,
    /// Largest `chunk` in an upload stream.
    pub upload_chunk_size_bytes_max: usize,
    /// Uploads processed at once; more wait.
    pub concurrent_uploads_max: usize,
    /// Documents in one `CertifyBatch`.
    pub certify_batch_items_max: usize,
    /// Requests in one `VerifyStream`.
    pub verify_stream_requests_max: usize,
    /// Longest free-text field (names, titles, reasons), in characters.
    pub text_field_chars_max: usize,
    /// Private fields attached to a dossier.
    pub private_fields_max: usize,
    /// Seconds a unary request may take before the node gives up.
    pub request_timeout_seconds: u64,
    /// Largest certificate chain accepted at registration.
    pub certificate_chain_size_bytes_max: usize,
    /// Files up to this size are written to object storage in one conditional PUT (read
    /// into memory from the spool); larger ones go through multipart upload.
    pub blob_multipart_threshold_bytes: u64,
    /// Part size of a multipart upload (S3 wants at least 5 MiB).
    pub blob_part_size_bytes: usize,
    /// Parts of one multipart upload in flight at once; memory per upload is about this
    /// times `blob_part_size_bytes`.
    pub blob_parts_in_flight_max: usize,
    /// Public HTTP requests (lookup page, JSON, QR codes, stamps) one client address may
    /// make per minute, sustained. IPv6 clients are counted per /64 network.
    pub public_requests_per_minute_max: u32,
    /// Public HTTP requests one client address may make at once before the per-minute
    /// rate applies.
    pub public_request_burst_max: u32,
    /// Client addresses the rate limiter remembers. When full, addresses it has not yet
    /// seen share one bucket, so a flood from many addresses is still limited.
    pub public_rate_limited_clients_max: usize,
    /// PBKDF2-HMAC-SHA256 iterations that stretch a signer's PIN when its key is sealed
    /// (at least 100,000; stored with each key, so raising it affects new seals only).
    pub pin_pbkdf2_iterations: u32,
    /// Oldest client-side signature (by its signing time) accepted, in seconds.
    pub client_signature_age_seconds_max: u64,
    /// Requests per second one client certificate may make to this node (burst: the same).
    pub client_requests_per_second_max: u32,
    /// Refused calls recorded in the transparency log per minute, whole node.
    pub refusal_audits_per_minute_max: u32,
    /// Refused calls recorded per minute for one client; more are counted, not recorded.
    pub refusal_audits_per_client_per_minute_max: u32,
    /// Seconds one upload stream may last in all; an endless stream is cut.
    pub upload_stream_seconds_max: u64,
    /// Seconds a stopping node (SIGTERM) waits for calls in flight to finish, after it
    /// stopped accepting new ones and handed its leadership on; calls still running then
    /// are cut.
    pub shutdown_drain_seconds_max: u64,
    /// Seconds between two verification tallies of this node (the verifications it
    /// answered, proposed as one command into the replicated statistics); at most a day.
    /// A tally not yet proposed is lost if the node crashes.
    pub statistics_tally_interval_seconds: u64,
    /// Seconds a signer's key stays open in memory after a PIN unlock, so that the
    /// signer's next requests (each still carrying the PIN, checked against an HMAC) skip
    /// PBKDF2. Counted from the unlock, not extended by use. 0: every request unlocks.
    pub unlocked_key_seconds_max: u64,
    /// Certifications whose signature and chain answers are kept in memory (about 200
    /// bytes each), so a repeated verify reads no blob and runs no cryptography. 0: none.
    pub verify_cache_entries_max: usize,
    /// Bytes of the state store's page cache (redb). The node's memory stays bounded by
    /// this, the verify cache and transport buffers, however many records it holds.
    pub state_cache_size_bytes_max: usize,
    /// Largest CRL accepted by ImportCrl.
    pub crl_size_bytes_max: usize,
    /// Uploads one client certificate may have in progress at once on a node, so one
    /// client cannot take every upload slot.
    pub uploads_per_client_max: usize,
    /// Slowest an upload may arrive once `upload_grace_seconds` have passed, averaged over
    /// the whole stream, in bytes per second; a slower stream gives its slot back.
    pub upload_throughput_bytes_per_second_min: u64,
    /// Seconds an upload may take before its throughput is checked.
    pub upload_grace_seconds: u64,
    /// gRPC calls (streams included) one client certificate may have in flight on a node.
    pub calls_in_flight_per_client_max: usize,
    /// Largest Verify or VerifyStream message (a file sent to be checked): larger files
    /// are verified by hash.
    pub verify_message_size_bytes_max: usize,
    /// Connections the HTTP port holds at once; more are closed on accept.
    pub http_connections_max: usize,
    /// Seconds a client may take to send a request's headers on the HTTP port.
    pub http_header_read_timeout_seconds: u64,
    /// Seconds an HTTP connection may stay silent (between or within requests) before it
    /// is closed.
    pub http_idle_timeout_seconds: u64,
    /// Seconds between HTTP/2 keepalive pings on the gRPC ports; a peer that does not
    /// answer within as long again is disconnected.
    pub grpc_keepalive_interval_seconds: u64,
}

/// Room a Verify message keeps for its fields other than the PDF, in bytes.
pub const VERIFY_REQUEST_FIELDS_BYTES_MAX: usize = 4 * 1024;

impl Limits {
    /// The largest received PDF that Verify (`pdf`) and the public page's file check read:
    /// the Verify message limit less [`VERIFY_REQUEST_FIELDS_BYTES_MAX`], and never more
    /// than `file_size_bytes_max` nor what the PDF reader takes. Derived rather than
    /// configured, so that an oversized PDF always gets kyso's own precise refusal before
    /// the transport's.
    pub fn received_pdf_size_bytes_max(&self) -> usize {
        let file_max = usize::try_from(self.file_size_bytes_max).unwrap_or(usize::MAX);
        self.verify_message_size_bytes_max.saturating_sub(VERIFY_REQUEST_FIELDS_BYTES_MAX).min(file_max).min(crate::pdf::PDF_SIZE_BYTES_MAX)
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            file_size_bytes_max: 64 * 1024 * 1024,
            dossier_files_max: 200,
            grpc_message_size_bytes_max: 66 * 1024 * 1024,
            upload_chunk_size_bytes_max: 1024 * 1024,
            concurrent_uploads_max: 16,
            certify_batch_items_max: 100,
            verify_stream_requests_max: 100_000,
            text_field_chars_max: 500,
            private_fields_max: 32,
            request_timeout_seconds: 60,
            certificate_chain_size_bytes_max: 64 * 1024,
            blob_multipart_threshold_bytes: 16 * 1024 * 1024,
            blob_part_size_bytes: 8 * 1024 * 1024,
            blob_parts_in_flight_max: 2,
            public_requests_per_minute_max: 120,
            public_request_burst_max: 60,
            public_rate_limited_clients_max: 100_000,
            pin_pbkdf2_iterations: 600_000,
            client_signature_age_seconds_max: 86_400,
            client_requests_per_second_max: 200,
            refusal_audits_per_minute_max: 60,
            refusal_audits_per_client_per_minute_max: 6,
            upload_stream_seconds_max: 3600,
            shutdown_drain_seconds_max: 30,
            statistics_tally_interval_seconds: 60,
            unlocked_key_seconds_max: 300,
            verify_cache_entries_max: 100_000,
            state_cache_size_bytes_max: 256 * 1024 * 1024,
            crl_size_bytes_max: 16 * 1024 * 1024,
            uploads_per_client_max: 4,
            upload_throughput_bytes_per_second_min: 4 * 1024,
            upload_grace_seconds: 20,
            calls_in_flight_per_client_max: 128,
            verify_message_size_bytes_max: 16 * 1024 * 1024,
            http_connections_max: 1024,
            http_header_read_timeout_seconds: 10,
            http_idle_timeout_seconds: 60,
            grpc_keepalive_interval_seconds: 30,
        }
    }
}

/// Longest agency display name, in characters.
pub const AGENCY_NAME_CHARS_MAX: usize = 200;
/// Longest `public_base_url`, in bytes (it is printed into every QR code).
pub const PUBLIC_BASE_URL_BYTES_MAX: usize = 200;
/// Highest accepted `limits.public_rate_limited_clients_max`.
pub const PUBLIC_RATE_LIMITED_CLIENTS_CEILING: usize = 10_000_000;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("config file {path} is not valid: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("config value {key} is invalid: {reason}")]
    Invalid { key: &'static str, reason: String },
}

fn default_grpc_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 7400))
}
fn default_http_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 7480))
}
fn default_master_key_file() -> PathBuf {
    PathBuf::from("master.key")
}
fn default_log_key_file() -> PathBuf {
    PathBuf::from("log.key")
}
fn default_log_origin() -> String {
    "kyso.localhost/log".to_string()
}
fn default_public_base_url() -> String {
    "http://127.0.0.1:7480".to_string()
}

impl Config {
    /// A config with defaults for everything but the data directory.
    pub fn with_data_dir(data_dir: impl Into<PathBuf>) -> Config {
        Config {
            data_dir: data_dir.into(),
            grpc_addr: default_grpc_addr(),
            http_addr: default_http_addr(),
            metrics_addr: None,
            master_key_file: default_master_key_file(),
            previous_master_key_file: None,
            log_key_file: default_log_key_file(),
            log_origin: default_log_origin(),
            trust_anchor_files: Vec::new(),
            public_base_url: default_public_base_url(),
            storage: StorageConfig::default(),
            fault_injection: false,
            cluster: None,
            tls: TlsConfig::default(),
            access: AccessConfig::default(),
            limits: Limits::default(),
            agency_names: BTreeMap::new(),
            trusted_proxies: Vec::new(),
            certified_pdf: BTreeMap::new(),
            observability: ObservabilityConfig::default(),
            tsa: TsaConfig::default(),
        }
    }

    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| ConfigError::Read { path: path.to_path_buf(), source })?;
        let mut config: Config = toml::from_str(&text)
            .map_err(|error| ConfigError::Parse { path: path.to_path_buf(), message: error.to_string() })?;
        // Relative paths in a config file are relative to the file.
        if let Some(base) = path.parent() {
            config.data_dir = base.join(&config.data_dir);
            config.trust_anchor_files = config.trust_anchor_files.iter().map(|file| base.join(file)).collect();
            let tls = &mut config.tls;
            for file in [&mut tls.cert_file, &mut tls.key_file, &mut tls.cluster_ca_file].into_iter().flatten() {
                *file = base.join(&*file);
            }
            tls.client_ca_files = tls.client_ca_files.iter().map(|file| base.join(file)).collect();
            for file in [&mut config.tsa.cert_file, &mut config.tsa.key_file].into_iter().flatten() {
                *file = base.join(&*file);
            }
        }
        Ok(config)
    }

    /// The master key path, resolved against `data_dir`.
    pub fn master_key_path(&self) -> PathBuf {
        self.data_dir.join(&self.master_key_file)
    }

    /// The log key path, resolved against `data_dir`.
    pub fn log_key_path(&self) -> PathBuf {
        self.data_dir.join(&self.log_key_file)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.log_origin.is_empty()
            || self.log_origin.len() > 200
            || !self.log_origin.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '/' | ':'))
        {
            return Err(ConfigError::Invalid {
                key: "log_origin",
                reason: "use 1-200 letters, digits and . - _ / : (e.g. tracuu.example.gov.vn/kyso)".into(),
            });
        }
        self.observability.validate()?;
        self.tsa.validate()?;
        if let Some(metrics_addr) = self.metrics_addr {
            if metrics_addr.port() != 0 && (metrics_addr == self.http_addr || metrics_addr == self.grpc_addr) {
                return Err(ConfigError::Invalid {
                    key: "metrics_addr",
                    reason: "must differ from http_addr and grpc_addr: the metrics listener is a port of its own".into(),
                });
            }
        }
        let limits = &self.limits;
        let positive = [
            ("limits.file_size_bytes_max", limits.file_size_bytes_max as usize),
            ("limits.dossier_files_max", limits.dossier_files_max),
            ("limits.upload_chunk_size_bytes_max", limits.upload_chunk_size_bytes_max),
            ("limits.concurrent_uploads_max", limits.concurrent_uploads_max),
            ("limits.certify_batch_items_max", limits.certify_batch_items_max),
            ("limits.verify_stream_requests_max", limits.verify_stream_requests_max),
            ("limits.text_field_chars_max", limits.text_field_chars_max),
            ("limits.request_timeout_seconds", limits.request_timeout_seconds as usize),
            ("limits.certificate_chain_size_bytes_max", limits.certificate_chain_size_bytes_max),
            ("limits.blob_parts_in_flight_max", limits.blob_parts_in_flight_max),
            ("limits.public_requests_per_minute_max", limits.public_requests_per_minute_max as usize),
            ("limits.public_request_burst_max", limits.public_request_burst_max as usize),
            ("limits.public_rate_limited_clients_max", limits.public_rate_limited_clients_max),
            ("limits.client_signature_age_seconds_max", limits.client_signature_age_seconds_max as usize),
            ("limits.client_requests_per_second_max", limits.client_requests_per_second_max as usize),
            ("limits.refusal_audits_per_minute_max", limits.refusal_audits_per_minute_max as usize),
            ("limits.refusal_audits_per_client_per_minute_max", limits.refusal_audits_per_client_per_minute_max as usize),
            ("limits.upload_stream_seconds_max", limits.upload_stream_seconds_max as usize),
            ("limits.shutdown_drain_seconds_max", limits.shutdown_drain_seconds_max as usize),
            ("limits.statistics_tally_interval_seconds", limits.statistics_tally_interval_seconds as usize),
            ("limits.state_cache_size_bytes_max", limits.state_cache_size_bytes_max),
            ("limits.crl_size_bytes_max", limits.crl_size_bytes_max),
            ("limits.uploads_per_client_max", limits.uploads_per_client_max),
            ("limits.upload_throughput_bytes_per_second_min", limits.upload_throughput_bytes_per_second_min as usize),
            ("limits.upload_grace_seconds", limits.upload_grace_seconds as usize),
            ("limits.calls_in_flight_per_client_max", limits.calls_in_flight_per_client_max),
            ("limits.verify_message_size_bytes_max", limits.verify_message_size_bytes_max),
            ("limits.http_connections_max", limits.http_connections_max),
            ("limits.http_header_read_timeout_seconds", limits.http_header_read_timeout_seconds as usize),
            ("limits.http_idle_timeout_seconds", limits.http_idle_timeout_seconds as usize),
            ("limits.grpc_keepalive_interval_seconds", limits.grpc_keepalive_interval_seconds as usize),
            ("tls.handshake_timeout_seconds", self.tls.handshake_timeout_seconds as usize),
        ];
        for (key, value) in positive {
            if value == 0 {
                return Err(ConfigError::Invalid { key, reason: "must be greater than zero".into() });
            }
        }
        if limits.statistics_tally_interval_seconds > 86_400 {
            return Err(ConfigError::Invalid {
                key: "limits.statistics_tally_interval_seconds",
                reason: "must be at most 86400 (a day): a longer interval loses more counts when a node crashes".into(),
            });
        }
        if limits.grpc_message_size_bytes_max < limits.upload_chunk_size_bytes_max + 64 * 1024 {
            return Err(ConfigError::Invalid {
                key: "limits.grpc_message_size_bytes_max",
                reason: "must exceed limits.upload_chunk_size_bytes_max by at least 64 KiB".into(),
            });
        }
        if limits.certify_batch_items_max > 1000 {
            return Err(ConfigError::Invalid {
                key: "limits.certify_batch_items_max",
                reason: "at most 1000: a batch is one replicated command".into(),
            });
        }
        let iterations = crate::crypto::keys::PIN_PBKDF2_ITERATIONS_MIN..=crate::crypto::keys::PIN_PBKDF2_ITERATIONS_MAX;
        if !iterations.contains(&limits.pin_pbkdf2_iterations) {
            return Err(ConfigError::Invalid {
                key: "limits.pin_pbkdf2_iterations",
                reason: format!("must be {}-{}", iterations.start(), iterations.end()),
            });
        }
        if limits.refusal_audits_per_client_per_minute_max > limits.refusal_audits_per_minute_max {
            return Err(ConfigError::Invalid {
                key: "limits.refusal_audits_per_client_per_minute_max",
                reason: "must not exceed limits.refusal_audits_per_minute_max".into(),
            });
        }
        if limits.crl_size_bytes_max > crate::crypto::crl::CRL_SIZE_BYTES_MAX {
            return Err(ConfigError::Invalid {
                key: "limits.crl_size_bytes_max",
                reason: format!("at most {} bytes", crate::crypto::crl::CRL_SIZE_BYTES_MAX),
            });
        }
        if let Some(cluster) = &self.cluster {
            cluster.validate()?;
        }
        self.validate_blob_limits()?;
        if let StorageConfig::S3(s3) = &self.storage {
            s3.validate()?;
        }
        self.validate_tls()?;
        self.access.principals()?;
        if self.trust_anchor_files.is_empty() {
            return Err(ConfigError::Invalid {
                key: "trust_anchor_files",
                reason: "name at least one CA certificate (PEM) that signer chains lead to".into(),
            });
        }
        if limits.public_rate_limited_clients_max > PUBLIC_RATE_LIMITED_CLIENTS_CEILING {
            return Err(ConfigError::Invalid {
                key: "limits.public_rate_limited_clients_max",
                reason: format!("at most {PUBLIC_RATE_LIMITED_CLIENTS_CEILING}: each remembered client costs memory"),
            });
        }
        self.validate_public_base_url()?;
        self.validate_agency_names()
    }

    fn validate_public_base_url(&self) -> Result<(), ConfigError> {
        let url = &self.public_base_url;
        let Some(rest) = url.strip_prefix("http://").or_else(|| url.strip_prefix("https://")) else {
            return Err(ConfigError::Invalid { key: "public_base_url", reason: "must start with http:// or https://".into() });
        };
        // The URL is printed into QR codes and HTML attributes: keep it to plain URL text.
        let plain = |c: char| c.is_ascii_graphic() && !matches!(c, '"' | '\'' | '<' | '>' | '\\' | '?' | '#');
        if rest.trim_end_matches('/').is_empty() || url.len() > PUBLIC_BASE_URL_BYTES_MAX || !url.chars().all(plain) {
            return Err(ConfigError::Invalid {
                key: "public_base_url",
                reason: format!(
                    "must be a host with an optional path, at most {PUBLIC_BASE_URL_BYTES_MAX} bytes, without spaces, quotes, ? or # (e.g. https://tracuu.example.gov.vn)"
                ),
            });
        }
        Ok(())
    }

    fn validate_agency_names(&self) -> Result<(), ConfigError> {
        for (id, name) in &self.agency_names {
            let id_chars = id.chars().count();
            if id_chars == 0
                || id_chars > crate::service::validate::IDENTIFIER_CHARS_MAX
                || crate::text::nfc(id) != *id
                || crate::text::check_identifier_characters(id).is_err()
            {
                return Err(ConfigError::Invalid {
                    key: "agency_names",
                    reason: format!(
                        "agency id {id:?} must be 1-{} Latin letters (in NFC), digits and . - _ / like the ids clerks use",
                        crate::service::validate::IDENTIFIER_CHARS_MAX
                    ),
                });
            }
            let name_chars = name.chars().count();
            if name.trim().is_empty() || name_chars > AGENCY_NAME_CHARS_MAX || crate::text::check_human_text(name).is_err() {
                return Err(ConfigError::Invalid {
                    key: "agency_names",
                    reason: format!(
                        "the name of {id:?} must be 1-{AGENCY_NAME_CHARS_MAX} characters without control, bidirectional or invisible characters"
                    ),
                });
            }
        }
        Ok(())
    }
}

impl Config {
    fn validate_tls(&self) -> Result<(), ConfigError> {
        let tls = &self.tls;
        let needs_identity = !tls.insecure_plaintext_clients || (self.cluster.is_some() && !tls.insecure_plaintext_peers);
        if needs_identity && (tls.cert_file.is_none() || tls.key_file.is_none()) {
            return Err(ConfigError::Invalid {
                key: "tls.cert_file",
                reason: "name this node's certificate and key (tls.cert_file, tls.key_file); plain text needs tls.insecure_plaintext_clients = true".into(),
            });
        }
        if !tls.insecure_plaintext_clients && tls.client_ca_files.is_empty() {
            return Err(ConfigError::Invalid {
                key: "tls.client_ca_files",
                reason: "name at least one CA (PEM) that issues client certificates".into(),
            });
        }
        if self.cluster.is_some() && !tls.insecure_plaintext_peers && tls.cluster_ca_file.is_none() {
            return Err(ConfigError::Invalid {
                key: "tls.cluster_ca_file",
                reason: "a cluster member needs the CA of node certificates (or, DANGER, tls.insecure_plaintext_peers = true)".into(),
            });
        }
        if tls.handshake_timeout_seconds > 300 {
            return Err(ConfigError::Invalid { key: "tls.handshake_timeout_seconds", reason: "at most 300".into() });
        }
        Ok(())
    }
}

impl ClusterConfig {
    /// The readiness bounds of `kyso_cluster::health`.
    pub fn health_bounds(&self) -> kyso_cluster::HealthBounds {
        kyso_cluster::HealthBounds {
            quorum_contact_age_max: std::time::Duration::from_millis(self.quorum_contact_milliseconds_max),
            apply_lag_entries_max: self.apply_lag_entries_max,
        }
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if self.node_id == 0 {
            return Err(ConfigError::Invalid { key: "cluster.node_id", reason: "must be greater than zero".into() });
        }
        if self.join && !self.members.is_empty() {
            return Err(ConfigError::Invalid {
                key: "cluster.members",
                reason: "a joining node starts empty: remove members or set join = false".into(),
            });
        }
        if !self.join && !self.members.iter().any(|member| member.id == self.node_id) {
            return Err(ConfigError::Invalid {
                key: "cluster.members",
                reason: format!("must list this node (id {}) among the initial members", self.node_id),
            });
        }
        let mut ids: Vec<u64> = self.members.iter().map(|member| member.id).collect();
        ids.sort_unstable();
        ids.dedup();
        if ids.len() != self.members.len() || ids.contains(&0) {
            return Err(ConfigError::Invalid { key: "cluster.members", reason: "ids must be unique and non-zero".into() });
        }
        if self.compaction_interval_entries == 0 || self.tick_interval_milliseconds == 0 {
            return Err(ConfigError::Invalid {
                key: "cluster",
                reason: "compaction_interval_entries and tick_interval_milliseconds must be greater than zero".into(),
            });
        }
        if !(1024..=8 * 1024 * 1024).contains(&self.snapshot_chunk_size_bytes) {
            return Err(ConfigError::Invalid { key: "cluster.snapshot_chunk_size_bytes", reason: "must be between 1024 and 8388608 bytes".into() });
        }
        if self.quorum_contact_milliseconds_max < 10 * self.tick_interval_milliseconds || self.apply_lag_entries_max == 0 {
            return Err(ConfigError::Invalid {
                key: "cluster.quorum_contact_milliseconds_max",
                reason: "must be at least one election timeout (10 ticks), and apply_lag_entries_max greater than zero".into(),
            });
        }
        Ok(())
    }
}

/// Multipart parts: S3 refuses parts under 5 MiB (but the last) and uploads over 10,000 parts.
pub const BLOB_PART_SIZE_BYTES_MIN: usize = 5 * 1024 * 1024;
pub const BLOB_PART_SIZE_BYTES_MAX: usize = 512 * 1024 * 1024;
pub const BLOB_PARTS_PER_UPLOAD_MAX: u64 = 10_000;

impl Config {
    fn validate_blob_limits(&self) -> Result<(), ConfigError> {
        let limits = &self.limits;
        if !(BLOB_PART_SIZE_BYTES_MIN..=BLOB_PART_SIZE_BYTES_MAX).contains(&limits.blob_part_size_bytes) {
            return Err(ConfigError::Invalid {
                key: "limits.blob_part_size_bytes",
                reason: format!("must be between {BLOB_PART_SIZE_BYTES_MIN} (5 MiB) and {BLOB_PART_SIZE_BYTES_MAX} bytes"),
            });
        }
        if limits.blob_multipart_threshold_bytes < limits.blob_part_size_bytes as u64
            || limits.blob_multipart_threshold_bytes > 1024 * 1024 * 1024
        {
            return Err(ConfigError::Invalid {
                key: "limits.blob_multipart_threshold_bytes",
                reason: "must be at least limits.blob_part_size_bytes and at most 1 GiB (files below it are held in memory)".into(),
            });
        }
        if limits.file_size_bytes_max.div_ceil(limits.blob_part_size_bytes as u64) > BLOB_PARTS_PER_UPLOAD_MAX {
            return Err(ConfigError::Invalid {
                key: "limits.blob_part_size_bytes",
                reason: format!(
                    "a file of limits.file_size_bytes_max would need more than {BLOB_PARTS_PER_UPLOAD_MAX} parts; raise the part size"
                ),
            });
        }
        if limits.blob_parts_in_flight_max > 64 {
            return Err(ConfigError::Invalid {
                key: "limits.blob_parts_in_flight_max",
                reason: "at most 64: each part in flight holds limits.blob_part_size_bytes of memory".into(),
            });
        }
        Ok(())
    }
}

impl S3Config {
    fn validate(&self) -> Result<(), ConfigError> {
        let endpoint = self.endpoint.as_str();
        let scheme_allowed = endpoint.starts_with("https://") || (self.allow_http && endpoint.starts_with("http://"));
        if !scheme_allowed {
            return Err(ConfigError::Invalid {
                key: "storage.endpoint",
                reason: "must start with https:// (or http:// together with storage.allow_http = true)".into(),
            });
        }
        let bucket_ok = (3..=63).contains(&self.bucket.len())
            && self.bucket.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '.'))
            && !self.bucket.starts_with(['-', '.'])
            && !self.bucket.ends_with(['-', '.']);
        if !bucket_ok {
            return Err(ConfigError::Invalid {
                key: "storage.bucket",
                reason: "use 3-63 lowercase letters, digits, '-' and '.' (an S3 bucket name)".into(),
            });
        }
        if self.region.is_empty() {
            return Err(ConfigError::Invalid { key: "storage.region", reason: "must not be empty (e.g. us-east-1)".into() });
        }
        for (key, seconds) in
            [("storage.request_timeout_seconds", self.request_timeout_seconds), ("storage.retry_timeout_seconds", self.retry_timeout_seconds)]
        {
            if seconds == 0 || seconds > 3600 {
                return Err(ConfigError::Invalid { key, reason: "must be between 1 and 3600 seconds".into() });
            }
        }
        if self.retries_max > 20 {
            return Err(ConfigError::Invalid { key: "storage.retries_max", reason: "at most 20".into() });
        }
        Ok(())
    }

    /// The credentials file, resolved against `data_dir`.
    pub fn credentials_path(&self, data_dir: &Path) -> Option<PathBuf> {
        self.credentials_file.as_ref().map(|file| data_dir.join(file))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_config_in_deploy_parses_and_validates() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/kyso.example.toml");
        let config = Config::load(&path).unwrap();
        config.validate().unwrap();
        assert_eq!(config.limits.dossier_files_max, 200);
        assert_eq!(config.limits.public_requests_per_minute_max, Limits::default().public_requests_per_minute_max);
        assert_eq!(config.agency_names["xa-demo"], "UBND xã Demo");
        assert_eq!(config.metrics_addr, Some(SocketAddr::from(([127, 0, 0, 1], 7490))));
        assert_eq!(config.tsa, TsaConfig::default(), "the example states the defaults");
    }

    #[test]
    fn tsa_settings_are_checked() {
        let check = |tsa: &str| {
            let config: Config = toml::from_str(&format!("data_dir = 'x'\n[tsa]\n{tsa}")).unwrap();
            config.validate().err().map(|error| error.to_string()).unwrap_or_default()
        };
        assert!(check("cert_file = 'tsa.pem'").contains("tsa.cert_file and tsa.key_file together"));
        assert!(check("url = 'ftp://x/tsa'").contains("http:// or https://"));
        assert!(check("accuracy_seconds = 0").contains("1 to 60"));
        assert!(check("policy_oid = 'kyso'").contains("not an OID"));
        assert!(check("policy_oid = '2.25.255917410530658227815106536931473592891'").contains("4294967295"), "refused, not a panic");
        let accepted = check("url = 'http://127.0.0.1:7480/tsa'\ncert_file = 'a'\nkey_file = 'b'");
        assert!(!accepted.contains("tsa."), "an own authority and an external url together are valid: {accepted}");
    }

    #[test]
    fn unknown_keys_are_refused_so_typos_do_not_pass_silently() {
        let error = toml::from_str::<Config>("data_dir = 'x'\ngrpc_adr = '127.0.0.1:1'\n").unwrap_err();
        assert!(error.to_string().contains("grpc_adr"), "{error}");
    }

    #[test]
    fn metrics_listener_cannot_share_the_public_port() {
        let mut config = Config::with_data_dir("x");
        config.trust_anchor_files.push("ca.pem".into());
        config.tls.insecure_plaintext_clients = true;
        config.metrics_addr = Some(config.http_addr);
        assert!(matches!(config.validate(), Err(ConfigError::Invalid { key: "metrics_addr", .. })));
        config.metrics_addr = Some(SocketAddr::from(([127, 0, 0, 1], 7490)));
        config.validate().unwrap();
    }

    #[test]
    fn observability_settings_are_checked_and_json_logs_parse() {
        let parsed: Config = toml::from_str(
            "data_dir = \"x\"\n[observability]\nlog_format = \"json\"\notlp_endpoint = \"http://127.0.0.1:4317\"\n",
        )
        .unwrap();
        assert_eq!(parsed.observability.log_format, LogFormat::Json);
        assert!(toml::from_str::<Config>("data_dir = \"x\"\n[observability]\nlog_format = \"yaml\"\n").is_err());
        let mut config = Config::with_data_dir("x");
        config.trust_anchor_files.push("ca.pem".into());
        config.tls.insecure_plaintext_clients = true;
        config.observability.otlp_endpoint = Some("127.0.0.1:4317".into());
        assert!(matches!(config.validate(), Err(ConfigError::Invalid { key: "observability.otlp_endpoint", .. })));
        config.observability.otlp_endpoint = Some("http://127.0.0.1:4317".into());
        config.observability.otlp_export_interval_milliseconds = 0;
        assert!(matches!(config.validate(), Err(ConfigError::Invalid { key: "observability.otlp_export_interval_milliseconds", .. })));
        config.observability.otlp_export_interval_milliseconds = 200;
        config.validate().unwrap();
    }

    #[test]
    fn zero_limits_are_refused() {
        let mut config = Config::with_data_dir("x");
        config.trust_anchor_files.push("ca.pem".into());
        config.tls.insecure_plaintext_clients = true;
        config.limits.dossier_files_max = 0;
        assert!(matches!(config.validate(), Err(ConfigError::Invalid { key: "limits.dossier_files_max", .. })));
    }

    #[test]
    fn s3_storage_parses_and_plain_http_needs_allow_http() {
        let text = "data_dir = 'x'\ntrust_anchor_files = ['ca.pem']\n[storage]\nkind = 's3'\nendpoint = 'http://127.0.0.1:9000'\nbucket = 'kyso-archive'\n";
        let mut config: Config = toml::from_str(text).unwrap();
        config.tls.insecure_plaintext_clients = true;
        assert!(matches!(config.validate(), Err(ConfigError::Invalid { key: "storage.endpoint", .. })));
        let StorageConfig::S3(s3) = &mut config.storage else { panic!("expected s3 storage") };
        assert_eq!(s3.region, "us-east-1");
        assert!(!s3.virtual_hosted_style);
        s3.allow_http = true;
        config.validate().unwrap();
    }

    #[test]
    fn s3_credentials_are_refused_inside_the_config() {
        let text = "data_dir = 'x'\n[storage]\nkind = 's3'\nendpoint = 'https://s3'\nbucket = 'kyso'\nsecret_access_key = 'x'\n";
        let error = toml::from_str::<Config>(text).unwrap_err();
        assert!(error.to_string().contains("secret_access_key"), "{error}");
    }

    #[test]
    fn multipart_parts_below_five_mebibytes_are_refused() {
        let mut config = Config::with_data_dir("x");
        config.trust_anchor_files.push("ca.pem".into());
        config.limits.blob_part_size_bytes = 1024 * 1024;
        assert!(matches!(config.validate(), Err(ConfigError::Invalid { key: "limits.blob_part_size_bytes", .. })));
    }

    /// Valid apart from what a test changes (plain text: TLS files are not the point here).
    fn valid_config() -> Config {
        let mut config = Config::with_data_dir("x");
        config.trust_anchor_files.push("ca.pem".into());
        config.tls.insecure_plaintext_clients = true;
        config
    }

    #[test]
    fn zero_public_rate_limits_are_refused() {
        let mut config = valid_config();
        config.limits.public_requests_per_minute_max = 0;
        assert!(matches!(config.validate(), Err(ConfigError::Invalid { key: "limits.public_requests_per_minute_max", .. })));
        let mut config = valid_config();
        config.limits.public_request_burst_max = 0;
        assert!(matches!(config.validate(), Err(ConfigError::Invalid { key: "limits.public_request_burst_max", .. })));
        let mut config = valid_config();
        config.limits.public_rate_limited_clients_max = PUBLIC_RATE_LIMITED_CLIENTS_CEILING + 1;
        assert!(matches!(config.validate(), Err(ConfigError::Invalid { key: "limits.public_rate_limited_clients_max", .. })));
    }

    #[test]
    fn agency_names_map_ids_to_display_names() {
        let mut config: Config = toml::from_str(
            "data_dir = 'x'\ntrust_anchor_files = ['ca.pem']\n[agency_names]\nxa-demo = 'UBND xã Demo'\n",
        )
        .unwrap();
        config.tls.insecure_plaintext_clients = true;
        config.validate().unwrap();
        assert_eq!(config.agency_names.get("xa-demo").map(String::as_str), Some("UBND xã Demo"));
    }

    #[test]
    fn bad_agency_names_are_refused() {
        for (id, name) in [("xa demo", "UBND"), ("", "UBND"), ("xa-demo", " "), ("xa-demo", "UBND\u{7}")] {
            let mut config = valid_config();
            config.agency_names.insert(id.into(), name.into());
            assert!(matches!(config.validate(), Err(ConfigError::Invalid { key: "agency_names", .. })), "{id:?} {name:?}");
        }
    }

    #[test]
    fn public_base_url_must_be_plain_url_text() {
        for url in ["tracuu.example.gov.vn", "https://", "https://a b", "https://x/\"><script>", "https://x/?a=1"] {
            let mut config = valid_config();
            config.public_base_url = url.into();
            assert!(matches!(config.validate(), Err(ConfigError::Invalid { key: "public_base_url", .. })), "{url}");
        }
        let mut config = valid_config();
        config.public_base_url = "https://tracuu.example.gov.vn/kyso/".into();
        config.validate().unwrap();
    }
}

#[cfg(test)]
mod security_tests {
    use super::*;

    fn plain() -> Config {
        let mut config = Config::with_data_dir("x");
        config.trust_anchor_files.push("ca.pem".into());
        config.tls.insecure_plaintext_clients = true;
        config
    }

    #[test]
    fn tls_is_required_unless_plain_text_is_asked_for_by_name() {
        let mut config = plain();
        config.validate().unwrap();
        config.tls.insecure_plaintext_clients = false;
        assert!(matches!(config.validate(), Err(ConfigError::Invalid { key: "tls.cert_file", .. })));
        config.tls.cert_file = Some("node.pem".into());
        config.tls.key_file = Some("node.key".into());
        assert!(matches!(config.validate(), Err(ConfigError::Invalid { key: "tls.client_ca_files", .. })));
        config.tls.client_ca_files.push("clients.pem".into());
        config.validate().unwrap();
    }

    #[test]
    fn weak_pin_stretching_and_zero_rates_are_refused() {
        let mut config = plain();
        config.limits.pin_pbkdf2_iterations = 10_000;
        assert!(matches!(config.validate(), Err(ConfigError::Invalid { key: "limits.pin_pbkdf2_iterations", .. })));
        let mut config = plain();
        config.limits.client_requests_per_second_max = 0;
        assert!(matches!(config.validate(), Err(ConfigError::Invalid { key: "limits.client_requests_per_second_max", .. })));
    }

    #[test]
    fn static_principals_need_a_fingerprint_and_cannot_be_nodes() {
        let mut config = plain();
        config.access.principals.push(StaticPrincipal {
            certificate_sha256: "abc".into(),
            name: "x".into(),
            roles: vec![crate::access::Role::Admin],
            agency_ids: vec![],
            signer_ids: vec![],
        });
        assert!(matches!(config.validate(), Err(ConfigError::Invalid { key: "access.principals.certificate_sha256", .. })));
        config.access.principals[0].certificate_sha256 = "00".repeat(32);
        config.access.principals[0].roles = vec![crate::access::Role::Node];
        assert!(matches!(config.validate(), Err(ConfigError::Invalid { key: "access.principals.roles", .. })));
    }
}
