//! Wiring of one node: state store, blob store, consensus driver, services, and the gRPC
//! and HTTP servers. The only place that knows every layer.
//!
//! Three ports: the client gRPC port (mutual TLS; agencies, operators, and nodes), the
//! public HTTP port (lookup page, health; no identity), and the Raft peer port (mutual TLS
//! with the cluster CA only) where kyso-cluster's RaftPeer and kyso's NodeInternalService
//! are mounted. Each gRPC port has the auth layer (`api::auth`) in front of its services.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use kyso_cluster::raft::{PeerAddress, RaftConfig, RaftNode};
use kyso_cluster::single::SingleNode;
use kyso_cluster::DriverConfig;
use kyso_proto::v1 as pb;
use tokio::net::TcpListener;

use crate::api::auth::{AuthLayer, AuthSettings, Port};
use crate::api::grpc::GrpcApi;
use crate::api::admin::AdminApi;
use crate::archive::{s3, ArchiveError, BlobStore, Spool, WriteLimits};
use crate::api::public::PublicSettings;
use crate::api::tls::NodeTls;
use crate::config::{ClusterConfig, Config, StorageConfig};
use crate::consensus::{Consensus, PeerClients, RaftPeerBlobs};
use crate::crypto::{MasterKey, TrustAnchors};
use crate::fault::{FaultableState, StorageFault};
use crate::service::log::LogIdentity;
use crate::service::Kyso;
use crate::tlog::LogSigner;
use crate::state::StateStore;

/// Streams served at once on one client connection.
pub const CONCURRENT_STREAMS_PER_CONNECTION_MAX: u32 = 256;
/// HTTP/2 flow-control windows of the client port. The h2 library closes a connection
/// (GOAWAY ENHANCE_YOUR_CALM "too_many_data_frames") when the small DATA frames it holds
/// unread cost more than half the connection window (each frame under 256 bytes costs 256
/// less its size). A stream window far below half the connection window keeps one stream
/// of tiny messages (VerifyStream requests, ~45 bytes each: 64 KiB of them cost ~300 KB)
/// well within the 8 MiB budget that a 16 MiB connection window gives, however fast the
/// client sends.
pub const STREAM_WINDOW_BYTES: u32 = 64 * 1024;
pub const CONNECTION_WINDOW_BYTES: u32 = 16 * 1024 * 1024;
/// Largest request of the services whose requests carry no documents (log, access).
pub const SMALL_REQUEST_SIZE_BYTES_MAX: usize = 64 * 1024;

/// A started node: its bound addresses and its services.
pub struct Node {
    pub grpc_addr: SocketAddr,
    pub http_addr: SocketAddr,
    /// The metrics listener, when `metrics_addr` is set.
    pub metrics_addr: Option<SocketAddr>,
    /// The peer port, when the node is a Raft member.
    pub raft_addr: Option<SocketAddr>,
    pub kyso: Arc<Kyso<Consensus>>,
    /// Settings of the public lookup routes; `kyso dev` points the base URL at the port
    /// it bound before serving.
    pub public: PublicSettings,
    tls: NodeTls,
    grpc_listener: TcpListener,
    http_listener: TcpListener,
    metrics_listener: Option<TcpListener>,
    raft_listener: Option<TcpListener>,
    fault_injection: bool,
    /// Fails the Raft state machine's writes when set (fault injection only).
    storage_fault: StorageFault,
}

impl Node {
    /// Opens the stores and binds both ports; serving starts with [`Node::serve`].
    pub async fn start(config: &Config) -> anyhow::Result<Node> {
        config.validate()?;
        if config.fault_injection {
            tracing::warn!("FAULT INJECTION IS ON: any client can cut this node's Raft links; never run so in production");
        }
        prepare_data_dir(&config.data_dir)?;
        check_private_key_files(config)?;
        let mut state = StateStore::open_with_cache(&config.data_dir.join("state.redb"), config.limits.state_cache_size_bytes_max)?;
        crate::metrics::record_state_repair(state.repaired_on_open());
        if crate::fault::skips_fsync(crate::fault::Durable::State) {
            state = state.without_fsync();
        }
        let state = Arc::new(state);
        let blobs = open_blob_store(config).await?;
        let master_key = MasterKey::load_or_create(&config.master_key_path())
            .with_context(|| format!("cannot load master key {}", config.master_key_path().display()))?;
        let trust = load_trust_anchors(config)?;
        let log = load_log_identity(config)?;
        let timestamps = load_timestamps(config)?;
        let tls = NodeTls::load(config)?;
        let principals = config.access.principals()?;
        let previous_master_key = load_previous_master_key(config)?;
        let grpc_listener = TcpListener::bind(config.grpc_addr)
            .await
            .with_context(|| format!("cannot bind gRPC address {}", config.grpc_addr))?;
        let http_listener = TcpListener::bind(config.http_addr)
            .await
            .with_context(|| format!("cannot bind HTTP address {}", config.http_addr))?;
        let metrics_listener = match config.metrics_addr {
            Some(addr) => Some(TcpListener::bind(addr).await.with_context(|| format!("cannot bind metrics address {addr}"))?),
            None => None,
        };
        let grpc_addr = grpc_listener.local_addr()?;
        let storage_fault = StorageFault::default();
        let pdf_settings = crate::service::certified_pdf::PdfSettings {
            public_base_url: config.public_base_url.clone(),
            agency_names: config.agency_names.clone(),
            agencies: config.certified_pdf.clone(),
        };
        let (kyso, raft_listener) = match &config.cluster {
            None => {
                let driver = SingleNode::start(state.clone(), DriverConfig::default())?;
                let kyso = Kyso::new(state, blobs, Consensus::Single(driver), trust, master_key, config.limits.clone(), log)
                    .with_node_identity(0, grpc_addr.to_string())
                    .with_static_principals(principals)
                    .with_previous_master_key(previous_master_key)
                    .with_pdf_settings(pdf_settings)
                    .with_timestamps(timestamps);
                (kyso, None)
            }
            Some(cluster) => {
                let raft_listener = TcpListener::bind(cluster.raft_addr)
                    .await
                    .with_context(|| format!("cannot bind Raft peer address {}", cluster.raft_addr))?;
                let mut raft_config = raft_config(config, cluster, grpc_addr, raft_listener.local_addr()?);
                raft_config.peer_tls = tls.to_peer_ports.clone();
                raft_config.unsafe_skip_log_fsync = crate::fault::skips_fsync(crate::fault::Durable::RaftLog);
                let faultable = Arc::new(FaultableState::new(state.clone(), storage_fault.clone()));
                let node = RaftNode::start(raft_config, faultable).await.context("cannot start the Raft node")?;
                let peers = Arc::new(PeerClients::new(tls.to_client_ports.clone(), tls.to_peer_ports.clone()));
                let consensus = Consensus::Raft { node: node.clone(), peers: peers.clone() };
                let local_blobs = blobs.clone();
                let mut kyso = Kyso::new(state, blobs, consensus, trust, master_key, config.limits.clone(), log)
                    .with_node_identity(cluster.node_id, grpc_addr.to_string())
                    .with_static_principals(principals)
                    .with_previous_master_key(previous_master_key)
                    .with_health_bounds(cluster.health_bounds())
                    .with_pdf_settings(pdf_settings)
                    .with_timestamps(timestamps);
                if matches!(config.storage, StorageConfig::Local) {
                    kyso = kyso.with_peer_blobs(Arc::new(RaftPeerBlobs::new(node, peers, local_blobs)));
                }
                (kyso, Some(raft_listener))
            }
        };
        Ok(Node {
            grpc_addr,
            http_addr: http_listener.local_addr()?,
            metrics_addr: metrics_listener.as_ref().map(|listener| listener.local_addr()).transpose()?,
            raft_addr: raft_listener.as_ref().map(|listener| listener.local_addr()).transpose()?,
            kyso: Arc::new(kyso),
            public: PublicSettings::from_config(config),
            tls,
            grpc_listener,
            http_listener,
            metrics_listener,
            raft_listener,
            fault_injection: config.fault_injection,
            storage_fault,
        })
    }

    /// Serves gRPC and HTTP until `shutdown` completes, then stops gracefully: leadership
    /// handed on, no new calls, calls in flight drained (at most
    /// `limits.shutdown_drain_seconds_max`), then the HTTP, metrics and peer ports.
    pub async fn serve(self, shutdown: impl std::future::Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
        let (stop_http, http_stopped) = tokio::sync::oneshot::channel::<()>();
        let http_limits = crate::api::http_server::HttpServerLimits::from_limits(self.kyso.limits());
        let http_router = crate::api::http::router(self.kyso.clone(), self.public);
        let http = crate::api::http_server::serve(self.http_listener, http_router, http_limits, async move {
            let _ = http_stopped.await;
        });
        let http_task = tokio::spawn(http);
        let (stop_metrics, metrics_stopped) = tokio::sync::oneshot::channel::<()>();
        let metrics_task = self.metrics_listener.map(|listener| {
            let router = crate::metrics::router(self.kyso.clone());
            tokio::spawn(crate::api::http_server::serve(listener, router, http_limits, async move {
                let _ = metrics_stopped.await;
            }))
        });
        let blob_fill_task = tokio::spawn(fill_missing_blobs(self.kyso.clone()));
        let tally_task = tokio::spawn(propose_verification_tallies(self.kyso.clone()));
        let (stop_raft, raft_stopped) = tokio::sync::oneshot::channel::<()>();
        let raft_task = match (self.raft_listener, self.kyso.proposer().raft()) {
            (Some(listener), Some(node)) => {
                let peer_service = node.peer_service();
                let decode_max = self.kyso.limits().grpc_message_size_bytes_max;
                let internal = crate::api::cluster::NodeInternalApi::new(GrpcApi::new(self.kyso.clone()));
                let mut server = tonic::transport::Server::builder();
                if let Some(tls) = self.tls.peer_port.clone() {
                    server = server.tls_config(tls).context("peer port TLS configuration is not usable")?;
                }
                let auth = AuthLayer::new(
                    self.kyso.clone(),
                    AuthSettings { port: Port::Peer, plaintext: self.tls.peer_port.is_none(), cluster_ca_der: self.tls.cluster_ca_der.clone() },
                );
                let keepalive = std::time::Duration::from_secs(self.kyso.limits().grpc_keepalive_interval_seconds);
                let call_timeout = server_call_timeout(self.kyso.limits());
                Some(tokio::spawn(async move {
                    server
                        .tcp_nodelay(true)
                        .http2_keepalive_interval(Some(keepalive))
                        .http2_keepalive_timeout(Some(keepalive))
                        .timeout(call_timeout)
                        .layer(auth)
                        .add_service(peer_service)
                        .add_service(
                            pb::node_internal_service_server::NodeInternalServiceServer::new(internal)
                                .max_decoding_message_size(decode_max),
                        )
                        .serve_with_incoming_shutdown(nodelay_incoming(listener), async move {
                            let _ = raft_stopped.await;
                        })
                        .await
                }))
            }
            _ => None,
        };
        let drain = std::time::Duration::from_secs(self.kyso.limits().shutdown_drain_seconds_max);
        let (draining, drain_started) = tokio::sync::oneshot::channel::<()>();
        let raft_node = self.kyso.proposer().raft().cloned();
        // On the signal the node first hands its leadership on (still serving), then the
        // server stops accepting and lets calls in flight finish, for at most `drain`.
        let stop_accepting = async move {
            shutdown.await;
            if let Some(node) = raft_node {
                hand_off_leadership(&node, drain).await;
            }
            tracing::info!(drain_seconds_max = drain.as_secs(), "no longer accepting calls; draining those in flight");
            let _ = draining.send(());
        };
        let grpc = grpc_router(self.kyso.clone(), self.fault_injection.then(|| self.storage_fault.clone()), &self.tls)?
            .serve_with_incoming_shutdown(nodelay_incoming(self.grpc_listener), stop_accepting);
        let drain_over = async move {
            match drain_started.await {
                Ok(()) => tokio::time::sleep(drain).await,
                Err(_) => std::future::pending::<()>().await,
            }
        };
        let result = tokio::select! {
            result = grpc => result.context("gRPC server failed"),
            () = drain_over => {
                tracing::warn!(drain_seconds_max = drain.as_secs(), "calls still in flight after the drain bound are cut");
                Ok(())
            }
        };
        tally_task.abort();
        // The verifications counted since the last tally, while the peer port still
        // runs (the cluster still hears this node).
        match tokio::time::timeout(TALLY_AT_SHUTDOWN_SECONDS_MAX, self.kyso.propose_verification_tally()).await {
            Ok(Ok(_)) => {}
            Ok(Err(error)) => tracing::warn!(%error, "the last verification tally was not proposed; its counts are lost"),
            Err(_) => tracing::warn!("the last verification tally took too long; its counts are lost"),
        }
        let _ = stop_http.send(());
        let _ = stop_metrics.send(());
        let _ = stop_raft.send(());
        blob_fill_task.abort();
        if let Some(node) = self.kyso.proposer().raft() {
            node.shutdown().await;
        }
        if let Some(task) = raft_task {
            task.await.context("Raft peer server task failed")?.context("Raft peer server failed")?;
        }
        http_task.await.context("HTTP server task failed")?.context("HTTP server failed")?;
        if let Some(task) = metrics_task {
            task.await.context("metrics server task failed")?.context("metrics server failed")?;
        }
        result
    }
}

/// When this node leads, hands the leadership to the voter whose log is furthest ahead
/// and waits (at most `bound`) until it leads, so that the cluster does not wait an
/// election timeout for a leader once this node is gone. Failures are logged only: the
/// node stops either way, and the others elect a leader by themselves.
async fn hand_off_leadership(node: &RaftNode, bound: std::time::Duration) {
    let status = node.status();
    if status.leader_id != Some(status.id) {
        return;
    }
    let Some(successor) = status
        .voters
        .iter()
        .filter(|voter| **voter != status.id)
        .max_by_key(|voter| status.matched.get(voter).copied().unwrap_or(0))
        .copied()
    else {
        return;
    };
    match tokio::time::timeout(bound, node.transfer_leader(successor)).await {
        Ok(Ok(())) => tracing::info!(successor, "leadership handed on before stopping"),
        Ok(Err(error)) => tracing::warn!(successor, %error, "cannot hand the leadership on; the others will elect a leader"),
        Err(_) => tracing::warn!(successor, "the leadership hand-off did not finish in time; the others will elect a leader"),
    }
}

/// Opens the blob store named by `[storage]` and its spool (clearing what a crashed run
/// left there: the caller holds the state store's lock, so no other process uses it).
async fn open_blob_store(config: &Config) -> anyhow::Result<BlobStore> {
    let spool = Spool::open(&config.data_dir.join("spool"))?;
    let limits = WriteLimits::from_limits(&config.limits);
    match &config.storage {
        StorageConfig::Local => {
            let fsync = !crate::fault::skips_fsync(crate::fault::Durable::Blobs);
            Ok(BlobStore::local_with_fsync(&config.data_dir.join("blobs"), spool, limits, fsync)?)
        }
        StorageConfig::S3(s3_config) => {
            let (store, location) = s3::open(s3_config, &config.data_dir)?;
            let blobs = BlobStore::new(store, location.clone(), spool, limits);
            probe_store(&blobs, &location).await?;
            Ok(blobs)
        }
    }
}

/// Refuses to start with credentials the store rejects; an unreachable store is only
/// logged, since the node answers UNAVAILABLE until it is back.
async fn probe_store(blobs: &BlobStore, location: &str) -> anyhow::Result<()> {
    match blobs.contains(&crate::domain::Sha256([0u8; 32])).await {
        Ok(_) => Ok(()),
        Err(error @ ArchiveError::Refused(_)) => Err(error.into()),
        Err(error) => {
            tracing::warn!(%error, %location, "object storage is not reachable yet; blob reads and writes answer UNAVAILABLE until it is");
            Ok(())
        }
    }
}

/// Loads the log key (creating it when missing) and writes its verifier key to
/// `data_dir/log.pub` for offline verifiers and auditors.
fn load_log_identity(config: &Config) -> anyhow::Result<LogIdentity> {
    let path = config.log_key_path();
    if !path.exists() {
        let pkcs8 = LogSigner::generate().context("cannot generate the log key")?;
        write_private_file(&path, &pkcs8)?;
    }
    let pkcs8 = std::fs::read(&path).with_context(|| format!("cannot read log key {}", path.display()))?;
    let signer = LogSigner::from_pkcs8(&config.log_origin, &pkcs8)
        .with_context(|| format!("log key {} is not a PKCS#8 Ed25519 key", path.display()))?;
    std::fs::write(config.data_dir.join("log.pub"), format!("{}\n", signer.verifier()))?;
    Ok(LogIdentity { origin: config.log_origin.clone(), signer })
}

/// The old master key of a rotation in progress, if configured; it must exist.
fn load_previous_master_key(config: &Config) -> anyhow::Result<Option<MasterKey>> {
    let Some(file) = &config.previous_master_key_file else { return Ok(None) };
    let path = config.data_dir.join(file);
    let bytes = zeroize::Zeroizing::new(std::fs::read(&path).with_context(|| format!("cannot read previous master key {}", path.display()))?);
    tracing::warn!(path = %path.display(), "master key rotation: keys sealed under the previous master key are re-sealed on next use");
    Ok(Some(MasterKey::from_slice(&bytes).with_context(|| format!("previous master key {} is not usable", path.display()))?))
}

/// Creates the data directory readable by its owner only (0700), or tightens an existing
/// one that others could enter: it holds the state (dossier metadata, sealed keys) and
/// every archived scan.
pub fn prepare_data_dir(dir: &std::path::Path) -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{DirBuilderExt as _, PermissionsExt as _};
        if !dir.exists() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .with_context(|| format!("cannot create data directory {}", dir.display()))?;
        }
        let mode = std::fs::metadata(dir).with_context(|| format!("cannot read data directory {}", dir.display()))?.permissions().mode();
        if mode & 0o077 != 0 {
            tracing::warn!(dir = %dir.display(), mode = format!("{:o}", mode & 0o777), "the data directory was open to other users; setting it to 0700");
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
                .with_context(|| format!("cannot restrict data directory {} to its owner (chmod 700)", dir.display()))?;
        }
    }
    #[cfg(not(unix))]
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create data directory {}", dir.display()))?;
    Ok(())
}

/// Refuses to start with a private key file that others may read: such a key may already
/// be copied, and starting would hide that. Allowed, as PostgreSQL allows its TLS key: read
/// and write by the owner only (0600), or, for a file owned by root, read by its group too
/// (0640, 0440) — what Kubernetes makes of a Secret volume under the pod's `fsGroup`, and
/// what an operator uses to keep a key root-owned with systemd's `Group=kyso`.
pub fn refuse_if_readable_by_others(path: &std::path::Path, what: &str) -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
        let Ok(metadata) = std::fs::metadata(path) else { return Ok(()) };
        let mode = metadata.permissions().mode() & 0o777;
        if !key_file_mode_allowed(mode, metadata.uid()) {
            anyhow::bail!(
                "{what} {} is readable by other users (mode {mode:o}); run `chmod 600 {}` (or 640 with owner root) and consider the key exposed if others had access",
                path.display(),
                path.display()
            );
        }
    }
    #[cfg(not(unix))]
    let _ = (path, what);
    Ok(())
}

/// The rule of [`refuse_if_readable_by_others`]: nothing for other users, nothing for the
/// group unless root owns the file and the group only reads.
fn key_file_mode_allowed(mode: u32, owner_uid: u32) -> bool {
    let group_and_others = mode & 0o077;
    group_and_others == 0 || (owner_uid == 0 && group_and_others & !0o040 == 0)
}

/// Every key file the configuration names that exists already (missing ones are created
/// 0600 by the node itself).
fn check_private_key_files(config: &Config) -> anyhow::Result<()> {
    refuse_if_readable_by_others(&config.master_key_path(), "the master key")?;
    refuse_if_readable_by_others(&config.log_key_path(), "the log key")?;
    if let Some(file) = &config.previous_master_key_file {
        refuse_if_readable_by_others(&config.data_dir.join(file), "the previous master key")?;
    }
    if let Some(file) = &config.tls.key_file {
        refuse_if_readable_by_others(file, "tls.key_file")?;
    }
    if let Some(file) = &config.tsa.key_file {
        refuse_if_readable_by_others(file, "tsa.key_file")?;
    }
    Ok(())
}

/// Creates a file readable by its owner only.
pub fn write_private_file(path: &std::path::Path, content: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path).with_context(|| format!("cannot create {}", path.display()))?;
    file.write_all(content)?;
    file.sync_all()?;
    Ok(())
}

/// The node's time-stamping authority (`[tsa] cert_file`, `key_file`; its serial numbers
/// carry the Raft node id, 0 for a standalone node) and where its signatures get their
/// time stamps: `[tsa] url` when set, else its own authority, else none (logged).
fn load_timestamps(config: &Config) -> anyhow::Result<crate::service::timestamp::Timestamps> {
    use crate::service::timestamp::{StampSource, Timestamps};
    let settings = &config.tsa;
    let authority = match (&settings.cert_file, &settings.key_file) {
        (Some(cert_file), Some(key_file)) => {
            let chain = std::fs::read(cert_file).with_context(|| format!("cannot read tsa.cert_file {}", cert_file.display()))?;
            let chain = crate::crypto::parse_certificates(&chain).with_context(|| format!("tsa.cert_file {}", cert_file.display()))?;
            let key = std::fs::read(key_file).with_context(|| format!("cannot read tsa.key_file {}", key_file.display()))?;
            let key = crate::crypto::SigningKey::from_pem(&key).with_context(|| format!("tsa.key_file {} is not a PKCS#8 PEM key", key_file.display()))?;
            let node_id = config.cluster.as_ref().map_or(0, |cluster| cluster.node_id);
            let authority = crate::crypto::tsa::TimeStampAuthority::new(chain, key, &settings.policy_oid, settings.accuracy_seconds, node_id)
                .with_context(|| format!("tsa.cert_file {}", cert_file.display()))?;
            Some(Arc::new(authority))
        }
        _ => None,
    };
    let source = match (&settings.url, &authority) {
        (Some(url), _) => {
            // reqwest is built without a bundled TLS provider; kyso uses ring's (as for S3).
            let _ = rustls::crypto::ring::default_provider().install_default();
            let client = reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(settings.request_timeout_seconds))
                .build()
                .context("cannot build the HTTP client of tsa.url")?;
            StampSource::External { url: url.clone(), client }
        }
        (None, Some(authority)) => StampSource::Own(authority.clone()),
        (None, None) => {
            tracing::warn!("no [tsa] configured: signatures carry no time stamp (CAdES-BES, PAdES B-B) and POST /tsa answers 404");
            StampSource::None
        }
    };
    tracing::info!(source = ?source, serves_tsa = authority.is_some(), "time stamps");
    Ok(Timestamps { authority, source })
}

fn load_trust_anchors(config: &Config) -> anyhow::Result<TrustAnchors> {
    let mut pem = Vec::new();
    for file in &config.trust_anchor_files {
        let content = std::fs::read(file).with_context(|| format!("cannot read trust anchor {}", file.display()))?;
        pem.extend_from_slice(&content);
        pem.push(b'\n');
    }
    TrustAnchors::from_pem(&pem).context("trust anchors are not usable")
}

/// How soon a cluster node with its own blob storage looks again after a pass that left
/// blobs missing (or ran out of time).
const BLOB_FILL_RETRY: std::time::Duration = std::time::Duration::from_secs(5);
/// How often it looks when the last pass found everything but blobs were archived since
/// (they normally arrive by the archiving node's push; this catches the ones it missed
/// while down or cut off).
const BLOB_FILL_INTERVAL: std::time::Duration = std::time::Duration::from_secs(30);
/// Longest single background pass.
const BLOB_FILL_BUDGET: std::time::Duration = std::time::Duration::from_secs(120);

/// Keeps this node's own storage holding every archived blob (see
/// `Kyso::fill_missing_blobs`): soon after start, then again [`BLOB_FILL_RETRY`] after a
/// pass that left some missing, or [`BLOB_FILL_INTERVAL`] after a complete one if blobs
/// were archived since.
/// How long a stopping node tries to propose its last verification tally.
const TALLY_AT_SHUTDOWN_SECONDS_MAX: std::time::Duration = std::time::Duration::from_secs(5);

/// Every `limits.statistics_tally_interval_seconds`, proposes the verifications this node
/// answered (see `service::statistics`). Failures are retried at the next interval.
async fn propose_verification_tallies(kyso: Arc<Kyso<Consensus>>) {
    let interval = std::time::Duration::from_secs(kyso.limits().statistics_tally_interval_seconds);
    loop {
        tokio::time::sleep(interval).await;
        if let Err(error) = kyso.propose_verification_tally().await {
            tracing::warn!(%error, "proposing the verification tally failed; retrying at the next interval");
        }
    }
}

async fn fill_missing_blobs(kyso: Arc<Kyso<Consensus>>) {
    let mut checked: Option<u64> = None;
    let mut wait = BLOB_FILL_RETRY;
    loop {
        tokio::time::sleep(wait).await;
        let Ok(count) = kyso.state().blob_count() else { continue };
        if checked == Some(count) {
            continue;
        }
        match kyso.fill_missing_blobs(BLOB_FILL_BUDGET).await {
            Ok(fill) => {
                if fill.fetched > 0 || fill.missing > 0 || !fill.complete {
                    tracing::info!(fetched = fill.fetched, missing = fill.missing, complete = fill.complete, "filled in missing blob copies from peers");
                }
                let holds_all = fill.holds_all(count);
                checked = holds_all.then_some(count);
                wait = if holds_all { BLOB_FILL_INTERVAL } else { BLOB_FILL_RETRY };
            }
            Err(error) => {
                tracing::warn!(%error, "checking for missing blob copies failed");
                wait = BLOB_FILL_RETRY;
            }
        }
    }
}

/// Accepted sockets with TCP_NODELAY: tonic sets it only on listeners it binds itself, and
/// without it Nagle's algorithm and delayed ACKs add ~40 ms to every small request/response
/// (a ReadIndex round, a forwarded command).
fn nodelay_incoming(listener: TcpListener) -> tonic::transport::server::TcpIncoming {
    tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true))
}

fn raft_config(config: &Config, cluster: &ClusterConfig, grpc_addr: SocketAddr, raft_addr: SocketAddr) -> RaftConfig {
    let client_addr = cluster.advertise_client_addr.clone().unwrap_or_else(|| grpc_addr.to_string());
    let mut raft = RaftConfig::new(cluster.node_id, raft_addr.to_string(), client_addr, config.data_dir.join("raft"));
    raft.initial_members = cluster
        .members
        .iter()
        .map(|member| PeerAddress { id: member.id, raft_addr: member.raft_addr.clone(), client_addr: member.client_addr.clone() })
        .collect();
    raft.compaction_interval_entries = cluster.compaction_interval_entries;
    raft.log_retained_entries = cluster.log_retained_entries;
    raft.snapshot_chunk_size_bytes = cluster.snapshot_chunk_size_bytes;
    raft.tick_interval = std::time::Duration::from_millis(cluster.tick_interval_milliseconds);
    raft
}

type AuthStack = tower::layer::util::Stack<AuthLayer, tower::layer::util::Identity>;

fn grpc_router(kyso: Arc<Kyso<Consensus>>, fault_injection: Option<StorageFault>, tls: &NodeTls) -> anyhow::Result<tonic::transport::server::Router<AuthStack>> {
    let decode_max = kyso.limits().grpc_message_size_bytes_max;
    let admin = AdminApi::new(kyso.clone(), tls.to_client_ports.clone());
    let auth = AuthLayer::new(
        kyso.clone(),
        AuthSettings { port: Port::Client, plaintext: tls.client_port.is_none(), cluster_ca_der: tls.cluster_ca_der.clone() },
    );
    let mut server = tonic::transport::Server::builder();
    if let Some(tls) = tls.client_port.clone() {
        server = server.tls_config(tls).context("client port TLS configuration is not usable")?;
    }
    let limits = kyso.limits().clone();
    let health_kyso = kyso.clone();
    let api = GrpcApi::new(kyso);
    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    // Both reflection versions: grpcurl 1.8 and many tools still speak only v1alpha.
    let reflection_builder = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(kyso_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let reflection = reflection_builder().build_v1().context("cannot build reflection service")?;
    let reflection_v1alpha = reflection_builder().build_v1alpha().context("cannot build reflection service")?;
    use tonic::server::NamedService;
    let services = vec![
        "",
        <pb::archive_service_server::ArchiveServiceServer<GrpcApi<Consensus>> as NamedService>::NAME,
        <pb::signing_service_server::SigningServiceServer<GrpcApi<Consensus>> as NamedService>::NAME,
        <pb::verification_service_server::VerificationServiceServer<GrpcApi<Consensus>> as NamedService>::NAME,
        <pb::log_service_server::LogServiceServer<GrpcApi<Consensus>> as NamedService>::NAME,
        <pb::report_service_server::ReportServiceServer<GrpcApi<Consensus>> as NamedService>::NAME,
        <pb::admin_service_server::AdminServiceServer<AdminApi<Consensus>> as NamedService>::NAME,
    ];
    tokio::spawn(report_grpc_health(health_reporter, health_kyso, services));
    let keepalive = std::time::Duration::from_secs(limits.grpc_keepalive_interval_seconds);
    Ok(server
        .tcp_nodelay(true)
        .max_concurrent_streams(CONCURRENT_STREAMS_PER_CONNECTION_MAX)
        .initial_stream_window_size(STREAM_WINDOW_BYTES)
        .initial_connection_window_size(CONNECTION_WINDOW_BYTES)
        .http2_keepalive_interval(Some(keepalive))
        .http2_keepalive_timeout(Some(keepalive))
        .tcp_keepalive(Some(keepalive))
        // The outer bound of any call: handlers bound unary calls by request_timeout_seconds
        // and streams by their own limits; nothing outlives the longest of them.
        .timeout(server_call_timeout(&limits))
        .layer(auth)
        .add_service(health_service)
        .add_service(reflection)
        .add_service(reflection_v1alpha)
        .add_service(pb::archive_service_server::ArchiveServiceServer::new(api.clone()).max_decoding_message_size(decode_max))
        .add_service(pb::signing_service_server::SigningServiceServer::new(api.clone()).max_decoding_message_size(decode_max))
        .add_service(
            // A file sent to Verify has its own, smaller limit: anyone may call Verify.
            pb::verification_service_server::VerificationServiceServer::new(api.clone())
                .max_decoding_message_size(limits.verify_message_size_bytes_max),
        )
        .add_service(pb::log_service_server::LogServiceServer::new(api.clone()).max_decoding_message_size(SMALL_REQUEST_SIZE_BYTES_MAX))
        .add_service(pb::access_service_server::AccessServiceServer::new(api.clone()).max_decoding_message_size(SMALL_REQUEST_SIZE_BYTES_MAX))
        .add_service(pb::report_service_server::ReportServiceServer::new(api.clone()).max_decoding_message_size(SMALL_REQUEST_SIZE_BYTES_MAX))
        .add_service(
            pb::cluster_service_server::ClusterServiceServer::new(crate::api::cluster::ClusterApi::new(api, fault_injection))
                .max_decoding_message_size(decode_max),
        )
        .add_service(pb::admin_service_server::AdminServiceServer::new(admin)))
}

/// The longest any gRPC call may last on a node: an upload stream's limit, or the unary
/// request timeout, plus a minute for the answer.
pub fn server_call_timeout(limits: &crate::config::Limits) -> std::time::Duration {
    std::time::Duration::from_secs(limits.upload_stream_seconds_max.max(limits.request_timeout_seconds) + 60)
}

/// How often gRPC health re-judges the node (`Kyso::check_health`).
const GRPC_HEALTH_REFRESH_INTERVAL: std::time::Duration = std::time::Duration::from_millis(250);

/// Keeps gRPC health true for the node's lifetime: every service (and "", the server)
/// is SERVING exactly while `Kyso::check_health` passes. Watchers hear only changes.
async fn report_grpc_health(reporter: tonic_health::server::HealthReporter, kyso: Arc<Kyso<Consensus>>, services: Vec<&'static str>) {
    use tonic_health::ServingStatus;
    let mut reported: Option<ServingStatus> = None;
    loop {
        let health = kyso.check_health();
        let status = if health.is_ok() { ServingStatus::Serving } else { ServingStatus::NotServing };
        if reported != Some(status) {
            match &health {
                Ok(()) => tracing::info!("node ready: grpc health SERVING"),
                Err(reason) => tracing::warn!(%reason, "node not ready: grpc health NOT_SERVING"),
            }
            for service in &services {
                reporter.set_service_status(*service, status).await;
            }
            reported = Some(status);
        }
        tokio::time::sleep(GRPC_HEALTH_REFRESH_INTERVAL).await;
    }
}

/// Completes on Ctrl-C (SIGINT) or SIGTERM. The handlers are installed when this is
/// called, not when the future is first polled: a SIGTERM that arrives right after the node
/// said it is ready (systemd stopping it, a test) is a graceful shutdown, never the default
/// action that kills the process without draining
/// (`tests/otlp.rs::json_log_format_writes_one_json_object_a_line` stops a node the moment
/// it is ready and expects "shutting down").
pub fn shutdown_signal() -> impl std::future::Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    let (interrupt, terminate) = {
        use tokio::signal::unix::{signal, SignalKind};
        (signal(SignalKind::interrupt()), signal(SignalKind::terminate()))
    };
    async move {
        #[cfg(unix)]
        {
            let wait = |registered: std::io::Result<tokio::signal::unix::Signal>| async move {
                match registered {
                    Ok(mut signal) => {
                        signal.recv().await;
                    }
                    Err(error) => {
                        tracing::warn!(%error, "cannot listen for a shutdown signal");
                        std::future::pending::<()>().await
                    }
                }
            };
            tokio::select! {
                () = wait(interrupt) => {},
                () = wait(terminate) => {},
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
        tracing::info!("shutting down");
    }
}

#[cfg(test)]
mod tests {
    #[test]
    #[cfg(unix)]
    fn private_files_are_readable_by_their_owner_only_and_never_overwritten() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.key");
        super::write_private_file(&path, b"secret").unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        assert!(super::write_private_file(&path, b"again").is_err(), "an existing key is never overwritten");
        assert_eq!(std::fs::read(&path).unwrap(), b"secret");
    }

    #[test]
    fn key_files_are_refused_when_others_or_a_non_root_group_may_read_them() {
        use super::key_file_mode_allowed as allowed;
        assert!(allowed(0o600, 1000) && allowed(0o400, 1000) && allowed(0o600, 0));
        // A Kubernetes Secret under fsGroup (root-owned, group-readable) and a root-owned
        // key read through systemd's Group=kyso.
        assert!(allowed(0o440, 0) && allowed(0o640, 0));
        assert!(!allowed(0o640, 1000), "group read only when root owns the file");
        assert!(!allowed(0o660, 0), "the group never writes");
        assert!(!allowed(0o644, 0) && !allowed(0o604, 1000), "other users never read");
    }
}
