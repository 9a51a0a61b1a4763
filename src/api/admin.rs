//! The operator's gRPC service (`kyso.v1.AdminService`): Scrub and Backup, streamed; and
//! the gRPC client that fetches good copies from a peer node for repairs ([`GrpcPeer`]).
//!
//! One scrub runs per node at a time. A scrub is not bounded by the request timeout (it
//! reads the whole archive); each store read and each peer message is.

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use kyso_cluster::Proposer;
use kyso_proto::v1 as pb;
use tokio::sync::{mpsc, Semaphore};
use tonic::transport::{ClientTlsConfig, Endpoint};
use tonic::{Request, Response, Status};

use super::grpc::STREAM_BUFFER_MESSAGES_MAX;
use super::status::to_status;
use crate::archive::SpoolWriter;
use crate::domain::Sha256;
use crate::service::scrub::{BlobPeer, Finding, ScrubProblem, ScrubProgress};
use crate::service::Kyso;

/// Seconds to connect to a repair peer.
pub const PEER_CONNECT_TIMEOUT_SECONDS: u64 = 10;
/// Largest message accepted from a repair peer (one `BlobChunk` is 1 MiB).
pub const PEER_MESSAGE_SIZE_BYTES_MAX: usize = 4 * 1024 * 1024;
/// Bytes of snapshot per Backup message.
pub const BACKUP_CHUNK_BYTES: usize = 1024 * 1024;
/// Blobs listed per Backup message (a hash and a size each: about 45 KiB).
pub const BACKUP_BLOBS_PER_MESSAGE: usize = 1000;

pub struct AdminApi<P: Proposer> {
    kyso: Arc<Kyso<P>>,
    scrubs: Arc<Semaphore>,
    /// One backup at a time: each holds a whole snapshot in memory while it streams.
    backups: Arc<Semaphore>,
    /// TLS toward other nodes' client ports (this node's certificate; the cluster CA as
    /// root); `None` when this node has no TLS identity.
    to_nodes: Option<ClientTlsConfig>,
}

impl<P: Proposer> AdminApi<P> {
    pub fn new(kyso: Arc<Kyso<P>>, to_nodes: Option<ClientTlsConfig>) -> Self {
        AdminApi { kyso, scrubs: Arc::new(Semaphore::new(1)), backups: Arc::new(Semaphore::new(1)), to_nodes }
    }
}

type ScrubStream = std::pin::Pin<Box<dyn futures::Stream<Item = Result<pb::ScrubProgress, Status>> + Send + 'static>>;
type BackupStream = std::pin::Pin<Box<dyn futures::Stream<Item = Result<pb::BackupChunk, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl<P: Proposer> pb::admin_service_server::AdminService for AdminApi<P> {
    type ScrubStream = ScrubStream;

    #[tracing::instrument(skip_all)]
    async fn scrub(&self, request: Request<pb::ScrubRequest>) -> Result<Response<Self::ScrubStream>, Status> {
        let request = request.into_inner();
        let timeout = Duration::from_secs(self.kyso.limits().request_timeout_seconds);
        let peer = match request.repair_from.trim() {
            "" => None,
            url => Some(GrpcPeer::new(url, timeout, self.to_nodes.as_ref())?),
        };
        let permit = self
            .scrubs
            .clone()
            .try_acquire_owned()
            .map_err(|_| Status::resource_exhausted("a scrub is already running on this node; wait for it to finish"))?;
        let (progress_sender, mut progress_receiver) = mpsc::channel::<ScrubProgress>(STREAM_BUFFER_MESSAGES_MAX);
        let (sender, receiver) = mpsc::channel(STREAM_BUFFER_MESSAGES_MAX);
        let kyso = self.kyso.clone();
        let forward_sender = sender.clone();
        let forward = tokio::spawn(async move {
            while let Some(progress) = progress_receiver.recv().await {
                if forward_sender.send(Ok(progress_to_proto(&progress))).await.is_err() {
                    return;
                }
            }
        });
        tokio::spawn(async move {
            let _permit = permit;
            let result = kyso.scrub(peer.as_ref().map(|peer| peer as &dyn BlobPeer), progress_sender).await;
            // Every progress report goes out before the final status.
            let _ = forward.await;
            if let Err(error) = result {
                let _ = sender.send(Err(to_status(error))).await;
            }
        });
        Ok(Response::new(Box::pin(tokio_stream::wrappers::ReceiverStream::new(receiver))))
    }

    type BackupStream = BackupStream;

    #[tracing::instrument(skip_all)]
    async fn backup(&self, _request: Request<pb::BackupRequest>) -> Result<Response<Self::BackupStream>, Status> {
        let permit = self
            .backups
            .clone()
            .try_acquire_owned()
            .map_err(|_| Status::resource_exhausted("a backup is already being taken from this node; wait for it to finish"))?;
        let timeout = Duration::from_secs(self.kyso.limits().request_timeout_seconds);
        let backup = tokio::time::timeout(timeout, self.kyso.backup())
            .await
            .map_err(|_| Status::deadline_exceeded("the backup snapshot was not taken within the request timeout; retry"))?
            .map_err(to_status)?;
        tracing::info!(
            applied_index = backup.snapshot.applied,
            log_tree_size = backup.snapshot.tlog_size,
            state_bytes = backup.snapshot.bytes.len(),
            blobs = backup.snapshot.blobs.len(),
            "streaming a backup"
        );
        let (sender, receiver) = mpsc::channel(STREAM_BUFFER_MESSAGES_MAX);
        tokio::spawn(async move {
            let _permit = permit;
            let snapshot = &backup.snapshot;
            let header = pb::BackupHeader {
                applied_index: snapshot.applied,
                log_tree_size: snapshot.tlog_size,
                log_root: snapshot.tlog_root.to_vec(),
                checkpoint_note: backup.checkpoint.note.clone(),
                log_key: backup.log_key.clone(),
                state_size_bytes: snapshot.bytes.len() as u64,
                state_sha256: backup.state_sha256.0.to_vec(),
                blob_count: snapshot.blobs.len() as u64,
                created_at_unix: backup.created_at_unix,
            };
            let chunks = std::iter::once(pb::backup_chunk::Part::Header(header))
                .chain(snapshot.bytes.chunks(BACKUP_CHUNK_BYTES).map(|chunk| pb::backup_chunk::Part::State(chunk.to_vec())))
                .chain(snapshot.blobs.chunks(BACKUP_BLOBS_PER_MESSAGE).map(|blobs| {
                    pb::backup_chunk::Part::Blobs(pb::BackupBlobs {
                        blobs: blobs
                            .iter()
                            .map(|(hash, size)| pb::BackupBlob { sha256: hash.0.to_vec(), size_bytes: *size })
                            .collect(),
                    })
                }));
            for part in chunks {
                // A client that goes away, or stalls for a whole request timeout, ends the
                // stream and frees the permit.
                match tokio::time::timeout(timeout, sender.send(Ok(pb::BackupChunk { part: Some(part) }))).await {
                    Ok(Ok(())) => {}
                    _ => return,
                }
            }
        });
        Ok(Response::new(Box::pin(tokio_stream::wrappers::ReceiverStream::new(receiver))))
    }
}

fn progress_to_proto(progress: &ScrubProgress) -> pb::ScrubProgress {
    pb::ScrubProgress {
        blobs_total: progress.blobs_total,
        bytes_total: progress.bytes_total,
        blobs_checked: progress.blobs_checked,
        bytes_checked: progress.bytes_checked,
        problems_found: progress.problems_found,
        problems_repaired: progress.problems_repaired,
        problem: progress.problem.as_ref().map(problem_to_proto),
        done: progress.done,
    }
}

fn problem_to_proto(problem: &ScrubProblem) -> pb::ScrubProblem {
    let (finding, stored_size_bytes, stored_sha256) = match &problem.finding {
        Finding::Missing => (pb::ScrubFinding::Missing, 0, Vec::new()),
        Finding::Corrupt { actual, stored_bytes } => (pb::ScrubFinding::Corrupt, *stored_bytes, actual.0.to_vec()),
    };
    pb::ScrubProblem {
        sha256: problem.hash.0.to_vec(),
        finding: finding as i32,
        expected_size_bytes: problem.expected_size_bytes,
        stored_size_bytes,
        stored_sha256,
        repaired: problem.repaired(),
        repair_error: match &problem.repair {
            Some(Err(error)) => error.clone(),
            _ => String::new(),
        },
    }
}

/// A peer node reached over gRPC, whose GetBlob supplies good copies for repairs.
pub struct GrpcPeer {
    url: String,
    endpoint: Endpoint,
    message_timeout: Duration,
}

impl GrpcPeer {
    /// A peer at `url`; an `https://` URL is dialled with `tls` (this node's identity).
    pub fn new(url: &str, message_timeout: Duration, tls: Option<&ClientTlsConfig>) -> Result<GrpcPeer, Status> {
        if !url.starts_with("http://") && !url.starts_with("https://") {
            return Err(Status::invalid_argument(format!(
                "repair_from {url:?} must be a gRPC URL such as https://10.0.0.2:7400"
            )));
        }
        let mut endpoint = Endpoint::from_shared(url.to_string())
            .map_err(|error| Status::invalid_argument(format!("repair_from {url:?} is not a usable URL: {error}")))?
            .connect_timeout(Duration::from_secs(PEER_CONNECT_TIMEOUT_SECONDS));
        if url.starts_with("https://") {
            let tls = tls.ok_or_else(|| {
                Status::failed_precondition(format!(
                    "repair_from {url:?} needs TLS, but this node has no certificate to present (tls.cert_file, tls.cluster_ca_file)"
                ))
            })?;
            endpoint = endpoint
                .tls_config(tls.clone())
                .map_err(|error| Status::invalid_argument(format!("repair_from {url:?}: TLS is not usable: {error}")))?;
        }
        Ok(GrpcPeer { url: url.to_string(), endpoint, message_timeout })
    }

    async fn copy_into(&self, hash: &Sha256, size_bytes_max: u64, into: &mut SpoolWriter) -> Result<(), String> {
        let channel = self.endpoint.connect().await.map_err(|error| format!("cannot reach peer {}: {error}", self.url))?;
        let mut client = pb::archive_service_client::ArchiveServiceClient::new(channel)
            .max_decoding_message_size(PEER_MESSAGE_SIZE_BYTES_MAX);
        let request = pb::GetBlobRequest { sha256: hash.0.to_vec() };
        let mut stream = tokio::time::timeout(self.message_timeout, client.get_blob(request))
            .await
            .map_err(|_| format!("peer {} did not answer GetBlob in time", self.url))?
            .map_err(|status| format!("peer {} refused GetBlob: {:?}: {}", self.url, status.code(), status.message()))?
            .into_inner();
        let messages_max = size_bytes_max + 2;
        for _ in 0..messages_max {
            let message = tokio::time::timeout(self.message_timeout, stream.message())
                .await
                .map_err(|_| format!("peer {} stalled while sending {hash}", self.url))?
                .map_err(|status| format!("peer {} failed while sending {hash}: {:?}: {}", self.url, status.code(), status.message()))?;
            let Some(chunk) = message else { return Ok(()) };
            if into.size_bytes() + chunk.data.len() as u64 > size_bytes_max {
                return Err(format!("peer {} sent more than the {size_bytes_max} bytes of {hash}", self.url));
            }
            into.write(&chunk.data).await.map_err(|error| error.to_string())?;
        }
        Err(format!("peer {} sent too many messages for {hash}", self.url))
    }
}

impl BlobPeer for GrpcPeer {
    fn describe(&self) -> String {
        format!("peer {}", self.url)
    }

    fn fetch<'a>(&'a self, hash: &'a Sha256, size_bytes_max: u64, into: &'a mut SpoolWriter) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(self.copy_into(hash, size_bytes_max, into))
    }
}
