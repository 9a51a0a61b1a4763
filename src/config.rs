//! Node configuration: a TOML file (every key documented in `deploy/kyso.example.toml`),
//! overridable by command-line flags and `KYSO_*` environment variables.
//!
//! Every limit lives here with its unit last in its name and is checked by
//! [`Config::validate`] before the node starts.

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
    /// DANGER: serve the peer port without TLS and dial peers in plain text. Needed for
    /// multi-node clusters until kyso-cluster dials its peers over TLS. Logged loudly.
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
    /// Milliseconds between Raft ticks; elections time out after 10 ticks.
    #[serde(default = "default_tick_interval_milliseconds")]
    pub tick_interval_milliseconds: u64,
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
    /// Largest CRL accepted by ImportCrl.
    pub crl_size_bytes_max: usize,
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
            pin_pbkdf2_iterations: 600_000,
            client_signature_age_seconds_max: 86_400,
            client_requests_per_second_max: 200,
            refusal_audits_per_minute_max: 60,
            refusal_audits_per_client_per_minute_max: 6,
            upload_stream_seconds_max: 3600,
            crl_size_bytes_max: 16 * 1024 * 1024,
        }
    }
}

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
            master_key_file: default_master_key_file(),
            previous_master_key_file: None,
            log_key_file: default_log_key_file(),
            log_origin: default_log_origin(),
            trust_anchor_files: Vec::new(),
            public_base_url: default_public_base_url(),
            storage: StorageConfig::default(),
            cluster: None,
            tls: TlsConfig::default(),
            access: AccessConfig::default(),
            limits: Limits::default(),
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
            ("limits.client_signature_age_seconds_max", limits.client_signature_age_seconds_max as usize),
            ("limits.client_requests_per_second_max", limits.client_requests_per_second_max as usize),
            ("limits.refusal_audits_per_minute_max", limits.refusal_audits_per_minute_max as usize),
            ("limits.refusal_audits_per_client_per_minute_max", limits.refusal_audits_per_client_per_minute_max as usize),
            ("limits.upload_stream_seconds_max", limits.upload_stream_seconds_max as usize),
            ("limits.crl_size_bytes_max", limits.crl_size_bytes_max),
            ("tls.handshake_timeout_seconds", self.tls.handshake_timeout_seconds as usize),
        ];
        for (key, value) in positive {
            if value == 0 {
                return Err(ConfigError::Invalid { key, reason: "must be greater than zero".into() });
            }
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
        self.validate_tls()?;
        self.access.principals()?;
        if self.trust_anchor_files.is_empty() {
            return Err(ConfigError::Invalid {
                key: "trust_anchor_files",
                reason: "name at least one CA certificate (PEM) that signer chains lead to".into(),
            });
        }
        if !self.public_base_url.starts_with("http://") && !self.public_base_url.starts_with("https://") {
            return Err(ConfigError::Invalid { key: "public_base_url", reason: "must start with http:// or https://".into() });
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
        Ok(())
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
    }

    #[test]
    fn unknown_keys_are_refused_so_typos_do_not_pass_silently() {
        let error = toml::from_str::<Config>("data_dir = 'x'\ngrpc_adr = '127.0.0.1:1'\n").unwrap_err();
        assert!(error.to_string().contains("grpc_adr"), "{error}");
    }

    #[test]
    fn zero_limits_are_refused() {
        let mut config = Config::with_data_dir("x");
        config.trust_anchor_files.push("ca.pem".into());
        config.tls.insecure_plaintext_clients = true;
        config.limits.dossier_files_max = 0;
        assert!(matches!(config.validate(), Err(ConfigError::Invalid { key: "limits.dossier_files_max", .. })));
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
