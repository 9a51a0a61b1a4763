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
    #[serde(default)]
    pub limits: Limits,
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
            log_key_file: default_log_key_file(),
            log_origin: default_log_origin(),
            trust_anchor_files: Vec::new(),
            public_base_url: default_public_base_url(),
            storage: StorageConfig::default(),
            fault_injection: false,
            cluster: None,
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
        if let Some(cluster) = &self.cluster {
            cluster.validate()?;
        }
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
        config.limits.dossier_files_max = 0;
        assert!(matches!(config.validate(), Err(ConfigError::Invalid { key: "limits.dossier_files_max", .. })));
    }
}
