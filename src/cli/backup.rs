//! `kyso backup` and `kyso restore`.
//!
//! A backup is a directory, or a prefix in an S3 bucket (`s3://bucket/prefix`, through
//! `object_store` with the usual `AWS_*` variables): `manifest.json` (what [`Manifest`]
//! holds), `state.snapshot` (the replicated state as of one applied index, from
//! AdminService.Backup) and `blobs/<first two hex digits>/<sha256 hex>` (every blob the
//! state references, fetched with GetBlob and hash-checked). A directory is written beside
//! its final name and renamed into place once complete; in a bucket the manifest is
//! written last. Either way, a backup with a manifest is whole.
//!
//! Restore checks everything against the manifest before it builds anything, builds the
//! new data directory beside its final name and renames it at the end: a refused or
//! interrupted restore leaves no data directory a node could start from.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context};
use clap::Args;
use futures::{StreamExt as _, TryStreamExt as _};
use kyso_proto::v1 as pb;
use serde::{Deserialize, Serialize};

use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt as _, WriteMultipart};

use super::client::{channel, print_json, status_error, Connection};
use crate::archive::{BlobStore, Spool, WriteLimits};
use crate::domain::Sha256;
use crate::state::StateStore;
use crate::tlog::{self, LogSigner, LogVerifier};

/// The manifest's format name; a restore refuses any other.
pub const MANIFEST_FORMAT: &str = "kyso-backup/v1";
/// Blobs fetched at once while backing up.
const BLOB_FETCHES_IN_FLIGHT: usize = 4;
/// Largest manifest a restore reads (about 5 million blobs).
const MANIFEST_SIZE_BYTES_MAX: u64 = 1024 * 1024 * 1024;
/// Part size of the uploads that write a backup's files (S3 wants at least 5 MiB).
const PART_SIZE_BYTES: usize = 8 * 1024 * 1024;
/// Parts in flight per file being written.
const PARTS_IN_FLIGHT_MAX: usize = 2;

#[derive(Debug, Args)]
pub struct BackupArgs {
    #[command(flatten)]
    pub connection: Connection,
    /// Where to write the backup: a directory that does not exist yet (written as
    /// DIR.partial, renamed when complete), or s3://BUCKET/PREFIX holding no backup yet
    /// (credentials, region and endpoint from AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
    /// AWS_REGION, AWS_ENDPOINT_URL, AWS_ALLOW_HTTP). Backups are never overwritten.
    #[arg(long)]
    pub to: String,
}

#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// A backup written by `kyso backup`: its directory, or s3://BUCKET/PREFIX.
    #[arg(long)]
    pub from: String,
    /// The new node's data directory; it must not exist yet.
    #[arg(long)]
    pub data_dir: PathBuf,
    /// Write the blobs into this S3 bucket (s3://BUCKET, for a node with
    /// `[storage] kind = "s3"`; settings from the AWS_* variables, as for --from) instead of
    /// DATA_DIR/blobs. Blobs the bucket already holds are checked by size and kept, so a
    /// bucket that outlived its cluster can be restored into.
    #[arg(long, value_name = "s3://BUCKET")]
    pub blobs_to: Option<String>,
    /// The original cluster's master key: signer keys in the backup are sealed under it.
    /// Copied into the new data directory as master.key (mode 0600).
    #[arg(long)]
    pub master_key: PathBuf,
    /// The original log's signing key (PKCS#8 Ed25519): it must be the key that signed
    /// the backup's checkpoint, so the restored log's checkpoints verify under the same
    /// key. Copied into the new data directory as log.key (mode 0600).
    #[arg(long)]
    pub log_key: PathBuf,
    /// Make the data directory the founding member of a new Raft cluster with this node
    /// id (a new id; the node's certificate must name it). Without it the directory is a
    /// standalone node's.
    #[arg(long, requires_all = ["raft_addr", "client_addr"])]
    pub node_id: Option<u64>,
    /// With --node-id: host:port of the new member's Raft peer port (as in its config).
    #[arg(long)]
    pub raft_addr: Option<String>,
    /// With --node-id: host:port of the new member's client gRPC port.
    #[arg(long)]
    pub client_addr: Option<String>,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// `manifest.json`: everything a restore checks the files against.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Manifest {
    pub format: String,
    /// When the node took the snapshot (Unix seconds).
    pub created_at_unix: i64,
    /// The node the backup was taken from (its gRPC URL).
    pub source: String,
    pub applied_index: u64,
    pub log: ManifestLog,
    pub state: ManifestFile,
    pub blobs: Vec<ManifestBlob>,
}

#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ManifestLog {
    pub tree_size: u64,
    /// Hex root hash at `tree_size`.
    pub root: String,
    /// A checkpoint of exactly `tree_size`, signed with the log key.
    pub checkpoint: String,
    /// The verifier key line that checks `checkpoint`.
    pub log_key: String,
}

#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ManifestFile {
    pub file: String,
    pub size_bytes: u64,
    pub sha256: String,
}

#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ManifestBlob {
    pub sha256: String,
    pub size_bytes: u64,
}

const STATE_FILE: &str = "state.snapshot";
const MANIFEST_FILE: &str = "manifest.json";

/// Where a blob lives inside a backup.
fn blob_path(hash: &Sha256) -> ObjectPath {
    let hex = hash.to_hex();
    ObjectPath::from(format!("blobs/{}/{hex}", &hex[..2]))
}

/// Where a backup is.
enum Location {
    Dir(PathBuf),
    S3 { bucket: String, prefix: String },
}

impl Location {
    fn parse(text: &str) -> anyhow::Result<Location> {
        let Some(rest) = text.strip_prefix("s3://") else {
            return Ok(Location::Dir(PathBuf::from(text)));
        };
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            bail!("{text:?} names no bucket; write s3://BUCKET/PREFIX");
        }
        Ok(Location::S3 { bucket: bucket.to_string(), prefix: prefix.trim_matches('/').to_string() })
    }

    /// A file of the backup, for messages.
    fn describe(&self, path: &ObjectPath) -> String {
        match self {
            Location::Dir(dir) => dir.join(path.as_ref()).display().to_string(),
            Location::S3 { bucket, prefix } if prefix.is_empty() => format!("s3://{bucket}/{path}"),
            Location::S3 { bucket, prefix } => format!("s3://{bucket}/{prefix}/{path}"),
        }
    }
}

/// The bucket named by `--blobs-to`: a node keeps blobs at the root of its bucket, so a
/// prefix is refused rather than silently ignored.
fn blob_bucket(text: &str) -> anyhow::Result<String> {
    match Location::parse(text)? {
        Location::S3 { bucket, prefix } if prefix.is_empty() => Ok(bucket),
        Location::S3 { .. } => bail!("--blobs-to {text:?} has a prefix, but a node keeps its blobs at the root of its bucket; write s3://BUCKET"),
        Location::Dir(_) => bail!("--blobs-to {text:?} is not s3://BUCKET; without --blobs-to the blobs go into DATA_DIR/blobs"),
    }
}

/// The store rooted at a backup in `bucket` under `prefix`.
fn s3_store(bucket: &str, prefix: &str) -> anyhow::Result<Arc<dyn ObjectStore>> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let s3 = object_store::aws::AmazonS3Builder::from_env()
        .with_bucket_name(bucket)
        .build()
        .with_context(|| format!("cannot use bucket {bucket:?} (see AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION, AWS_ENDPOINT_URL)"))?;
    Ok(if prefix.is_empty() { Arc::new(s3) } else { Arc::new(object_store::prefix::PrefixStore::new(s3, prefix)) })
}

fn local_store(dir: &Path) -> anyhow::Result<Arc<dyn ObjectStore>> {
    Ok(Arc::new(
        object_store::local::LocalFileSystem::new_with_prefix(dir).with_context(|| format!("cannot use directory {}", dir.display()))?,
    ))
}

/// `path` with `suffix` appended to its last component.
fn beside(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.file_name().map(|name| name.to_os_string()).unwrap_or_default();
    name.push(suffix);
    path.with_file_name(name)
}

fn refuse_existing(path: &Path, what: &str) -> anyhow::Result<()> {
    if path.exists() {
        bail!("{what} {} already exists; choose a new path (kyso never overwrites one)", path.display());
    }
    Ok(())
}

/// A file of the backup being written, hashed as it goes; nothing is left under its name
/// unless [`HashedUpload::finish`] finds the expected size and hash.
struct HashedUpload {
    writer: WriteMultipart,
    hasher: ring::digest::Context,
    size_bytes: u64,
}

impl HashedUpload {
    async fn start(store: &dyn ObjectStore, path: &ObjectPath) -> anyhow::Result<HashedUpload> {
        let upload = store.put_multipart(path).await.with_context(|| format!("cannot start writing {path}"))?;
        Ok(HashedUpload {
            writer: WriteMultipart::new_with_chunk_size(upload, PART_SIZE_BYTES),
            hasher: ring::digest::Context::new(&ring::digest::SHA256),
            size_bytes: 0,
        })
    }

    async fn write(&mut self, bytes: &[u8]) -> anyhow::Result<()> {
        self.writer.wait_for_capacity(PARTS_IN_FLIGHT_MAX).await?;
        self.hasher.update(bytes);
        self.size_bytes += bytes.len() as u64;
        self.writer.write(bytes);
        Ok(())
    }

    /// Completes the file if its bytes are `expected` (hash and size), else aborts it and
    /// returns what arrived.
    async fn finish(self, expected: (&Sha256, u64)) -> anyhow::Result<Result<(), (u64, Sha256)>> {
        let actual = Sha256::from_slice(self.hasher.finish().as_ref()).expect("SHA-256 digests are 32 bytes");
        if actual != *expected.0 || self.size_bytes != expected.1 {
            let _ = self.writer.abort().await;
            return Ok(Err((self.size_bytes, actual)));
        }
        self.writer.finish().await?;
        Ok(Ok(()))
    }

    async fn abort(self) {
        let _ = self.writer.abort().await;
    }
}

pub async fn backup(args: BackupArgs) -> anyhow::Result<()> {
    let location = Location::parse(&args.to)?;
    let store = match &location {
        Location::Dir(dir) => {
            refuse_existing(dir, "backup directory")?;
            let partial = beside(dir, ".partial");
            if partial.exists() {
                bail!("{} is left from an interrupted backup; remove it (rm -r) and run the backup again", partial.display());
            }
            std::fs::create_dir_all(&partial).with_context(|| format!("cannot create {}", partial.display()))?;
            local_store(&partial)?
        }
        Location::S3 { bucket, prefix } => {
            let store = s3_store(bucket, prefix)?;
            let manifest = ObjectPath::from(MANIFEST_FILE);
            match store.head(&manifest).await {
                Ok(_) => bail!("{} already holds a backup; choose a new prefix (kyso never overwrites one)", location.describe(&manifest)),
                Err(object_store::Error::NotFound { .. }) => {}
                Err(error) => bail!("cannot reach {}: {error}", location.describe(&manifest)),
            }
            store
        }
    };
    let result = write_backup(&args, &location, store.as_ref()).await;
    let (manifest, state_bytes) = match result {
        Ok(written) => written,
        Err(error) => {
            if let Location::Dir(dir) = &location {
                let _ = std::fs::remove_dir_all(beside(dir, ".partial"));
            }
            return Err(error);
        }
    };
    if let Location::Dir(dir) = &location {
        let partial = beside(dir, ".partial");
        sync_tree(&partial)?;
        std::fs::rename(&partial, dir).with_context(|| format!("cannot rename {} to {}", partial.display(), dir.display()))?;
        sync_parent(dir)?;
    }
    let blob_bytes: u64 = manifest.blobs.iter().map(|blob| blob.size_bytes).sum();
    if args.connection.json {
        print_json(serde_json::json!({
            "backup": args.to,
            "applied_index": manifest.applied_index,
            "log_tree_size": manifest.log.tree_size,
            "log_root": manifest.log.root,
            "state_size_bytes": state_bytes,
            "blobs": manifest.blobs.len(),
            "blob_bytes": blob_bytes,
        }));
    } else {
        out!(
            "backup {}: state at index {} ({state_bytes} bytes), log size {} root {}, {} blobs ({blob_bytes} bytes)",
            args.to,
            manifest.applied_index,
            manifest.log.tree_size,
            manifest.log.root,
            manifest.blobs.len()
        );
    }
    Ok(())
}

/// Streams the snapshot and every blob into `store`, then the manifest; returns it with
/// the state's size.
async fn write_backup(args: &BackupArgs, location: &Location, store: &dyn ObjectStore) -> anyhow::Result<(Manifest, u64)> {
    let channel = channel(&args.connection).await?;
    let mut admin = pb::admin_service_client::AdminServiceClient::new(channel.clone());
    let mut stream = admin.backup(pb::BackupRequest {}).await.map_err(status_error)?.into_inner();
    let Some(pb::BackupChunk { part: Some(pb::backup_chunk::Part::Header(header)) }) = stream.message().await.map_err(status_error)? else {
        bail!("the node did not start its backup stream with a header; is it running this release?");
    };

    // The state snapshot, hashed as it is written.
    let state_path = ObjectPath::from(STATE_FILE);
    let mut state = HashedUpload::start(store, &state_path).await?;
    let mut blobs: Vec<(Sha256, u64)> = Vec::with_capacity(usize::try_from(header.blob_count.min(10_000_000)).unwrap_or(0));
    let received: anyhow::Result<()> = async {
        while let Some(chunk) = stream.message().await.map_err(status_error)? {
            match chunk.part {
                Some(pb::backup_chunk::Part::State(bytes)) => {
                    if state.size_bytes + bytes.len() as u64 > header.state_size_bytes || !blobs.is_empty() {
                        bail!("the node sent more state than the {} bytes it announced", header.state_size_bytes);
                    }
                    state.write(&bytes).await?;
                }
                Some(pb::backup_chunk::Part::Blobs(list)) => {
                    for blob in list.blobs {
                        let hash = Sha256::from_slice(&blob.sha256).context("the node listed a blob hash that is not 32 bytes")?;
                        blobs.push((hash, blob.size_bytes));
                    }
                    if blobs.len() as u64 > header.blob_count {
                        bail!("the node listed more than the {} blobs it announced", header.blob_count);
                    }
                }
                _ => bail!("the node sent an unexpected backup message"),
            }
        }
        Ok(())
    }
    .await;
    if let Err(error) = received {
        state.abort().await;
        return Err(error);
    }
    let state_bytes = state.size_bytes;
    let state_sha256 = Sha256::from_slice(&header.state_sha256).context("the node sent a state hash that is not 32 bytes")?;
    if let Err((size, actual)) = state.finish((&state_sha256, header.state_size_bytes)).await? {
        bail!("the state snapshot arrived damaged ({size} of {} bytes, SHA-256 {actual}); run the backup again", header.state_size_bytes);
    }
    if blobs.len() as u64 != header.blob_count {
        bail!("the node listed {} of the {} blobs it announced; run the backup again", blobs.len(), header.blob_count);
    }

    // Every referenced blob, streamed into the backup and checked.
    let archive = pb::archive_service_client::ArchiveServiceClient::new(channel).max_decoding_message_size(4 * 1024 * 1024);
    futures::stream::iter(blobs.iter().cloned())
        .map(|(hash, size)| {
            let archive = archive.clone();
            async move { fetch_blob(archive, store, &hash, size).await }
        })
        .buffer_unordered(BLOB_FETCHES_IN_FLIGHT)
        .try_collect::<Vec<()>>()
        .await?;

    let manifest = Manifest {
        format: MANIFEST_FORMAT.to_string(),
        created_at_unix: header.created_at_unix,
        source: args.connection.server.clone(),
        applied_index: header.applied_index,
        log: ManifestLog {
            tree_size: header.log_tree_size,
            root: hex::encode(&header.log_root),
            checkpoint: header.checkpoint_note.clone(),
            log_key: header.log_key.clone(),
        },
        state: ManifestFile { file: STATE_FILE.to_string(), size_bytes: state_bytes, sha256: state_sha256.to_hex() },
        blobs: blobs.iter().map(|(hash, size)| ManifestBlob { sha256: hash.to_hex(), size_bytes: *size }).collect(),
    };
    let manifest_path = ObjectPath::from(MANIFEST_FILE);
    store
        .put(&manifest_path, serde_json::to_vec_pretty(&manifest)?.into())
        .await
        .with_context(|| format!("cannot write {}", location.describe(&manifest_path)))?;
    Ok((manifest, state_bytes))
}

async fn fetch_blob(
    mut archive: pb::archive_service_client::ArchiveServiceClient<tonic::transport::Channel>,
    store: &dyn ObjectStore,
    hash: &Sha256,
    size: u64,
) -> anyhow::Result<()> {
    let mut stream = archive
        .get_blob(pb::GetBlobRequest { sha256: hash.0.to_vec() })
        .await
        .map_err(|status| {
            if status.code() == tonic::Code::PermissionDenied {
                anyhow::anyhow!(
                    "cannot read blob {hash}: {}; a backup reads every document, so its certificate needs the admin role and the verifier (or clerk) role for every agency (kyso access set --role admin --role verifier --agency '*')",
                    status.message()
                )
            } else {
                anyhow::anyhow!("cannot read blob {hash}: {:?}: {}", status.code(), status.message())
            }
        })?
        .into_inner();
    let mut upload = HashedUpload::start(store, &blob_path(hash)).await?;
    let received: anyhow::Result<()> = async {
        while let Some(chunk) = stream
            .message()
            .await
            .map_err(|status| anyhow::anyhow!("reading blob {hash} failed: {:?}: {}", status.code(), status.message()))?
        {
            if upload.size_bytes + chunk.data.len() as u64 > size {
                bail!("the node sent more than the {size} bytes of blob {hash}");
            }
            upload.write(&chunk.data).await?;
        }
        Ok(())
    }
    .await;
    if let Err(error) = received {
        upload.abort().await;
        return Err(error);
    }
    if let Err((written, actual)) = upload.finish((hash, size)).await? {
        bail!("blob {hash} arrived as {written} bytes hashing to {actual} (expected {size} bytes); run `kyso scrub` on the node, then the backup again");
    }
    Ok(())
}

/// fsyncs every file and directory under `root` (object_store's local files are not
/// synced as written), so the whole tree survives a crash before the final rename.
fn sync_tree(root: &Path) -> anyhow::Result<()> {
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            if entry.file_type()?.is_dir() {
                pending.push(entry.path());
            } else {
                std::fs::File::open(entry.path())?.sync_all()?;
            }
        }
        std::fs::File::open(&dir)?.sync_all()?;
    }
    Ok(())
}

fn sync_parent(path: &Path) -> anyhow::Result<()> {
    let parent = path.parent().filter(|parent| !parent.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::File::open(parent)?.sync_all()?;
    Ok(())
}

/// Reads a whole (small) file of the backup.
async fn read_all(location: &Location, store: &dyn ObjectStore, path: &ObjectPath, size_max: u64, missing: &str) -> anyhow::Result<bytes::Bytes> {
    let meta = match store.head(path).await {
        Ok(meta) => meta,
        Err(object_store::Error::NotFound { .. }) => bail!("{} is missing: {missing}", location.describe(path)),
        Err(error) => bail!("cannot read {}: {error}", location.describe(path)),
    };
    if meta.size > size_max {
        bail!("{} is {} bytes, more than it can be ({size_max})", location.describe(path), meta.size);
    }
    let result = store.get(path).await.with_context(|| format!("cannot read {}", location.describe(path)))?;
    Ok(result.bytes().await.with_context(|| format!("cannot read {}", location.describe(path)))?)
}

/// Reads and checks a backup's manifest and state file; refuses precisely on any mismatch.
async fn read_checked_state(location: &Location, store: &dyn ObjectStore) -> anyhow::Result<(Manifest, bytes::Bytes, LogVerifier)> {
    let manifest_path = ObjectPath::from(MANIFEST_FILE);
    let manifest = read_all(location, store, &manifest_path, MANIFEST_SIZE_BYTES_MAX, "this is not a complete kyso backup").await?;
    let manifest: Manifest = serde_json::from_slice(&manifest)
        .with_context(|| format!("{} is not a kyso backup manifest", location.describe(&manifest_path)))?;
    if manifest.format != MANIFEST_FORMAT {
        bail!("{} has format {:?}; this kyso restores {MANIFEST_FORMAT:?}", location.describe(&manifest_path), manifest.format);
    }
    let state_path = ObjectPath::from(manifest.state.file.as_str());
    let state = read_all(location, store, &state_path, manifest.state.size_bytes, "the backup has no state").await?;
    let state_sha256 = Sha256::digest(&state);
    if state.len() as u64 != manifest.state.size_bytes || state_sha256.to_hex() != manifest.state.sha256 {
        bail!(
            "the backup's state {} is corrupt: {} bytes hashing to {state_sha256}, but the manifest says {} bytes hashing to {}",
            location.describe(&state_path),
            state.len(),
            manifest.state.size_bytes,
            manifest.state.sha256
        );
    }
    let verifier = LogVerifier::parse(&manifest.log.log_key)
        .map_err(|error| anyhow::anyhow!("the manifest's log key {:?} is not a verifier key: {error}", manifest.log.log_key))?;
    let checkpoint = tlog::open_checkpoint(&manifest.log.checkpoint, &verifier)
        .map_err(|error| anyhow::anyhow!("the manifest's checkpoint does not verify under its log key: {error}"))?;
    if checkpoint.size() != manifest.log.tree_size || hex::encode(checkpoint.root()) != manifest.log.root {
        bail!(
            "the manifest's checkpoint is for size {} root {}, but the manifest says size {} root {}",
            checkpoint.size(),
            hex::encode(checkpoint.root()),
            manifest.log.tree_size,
            manifest.log.root
        );
    }
    Ok((manifest, state, verifier))
}

/// Reads a key file the node will own; refuses one that others may read.
fn read_key(path: &Path, what: &str) -> anyhow::Result<zeroize::Zeroizing<Vec<u8>>> {
    crate::node::refuse_if_readable_by_others(path, what)?;
    Ok(zeroize::Zeroizing::new(std::fs::read(path).with_context(|| format!("cannot read {what} {}", path.display()))?))
}

pub async fn restore(args: RestoreArgs) -> anyhow::Result<()> {
    refuse_existing(&args.data_dir, "data directory")?;
    let blobs_to = args.blobs_to.as_deref().map(blob_bucket).transpose()?;
    let location = Location::parse(&args.from)?;
    let store = match &location {
        Location::Dir(dir) => {
            if !dir.is_dir() {
                bail!("{} is not a directory holding a kyso backup", dir.display());
            }
            local_store(dir)?
        }
        Location::S3 { bucket, prefix } => s3_store(bucket, prefix)?,
    };
    let (manifest, state, verifier) = read_checked_state(&location, store.as_ref()).await?;
    let master_key = read_key(&args.master_key, "the master key")?;
    crate::crypto::MasterKey::from_slice(&master_key)
        .map_err(|error| anyhow::anyhow!("{} is not a master key: {error}", args.master_key.display()))?;
    let log_key = read_key(&args.log_key, "the log key")?;
    let signer = LogSigner::from_pkcs8(verifier.name(), &log_key)
        .map_err(|error| anyhow::anyhow!("{} is not a PKCS#8 Ed25519 log key: {error}", args.log_key.display()))?;
    if signer.public_key() != verifier.public_key() {
        bail!(
            "the log key {} is not the key that signed this backup's checkpoint (that key's verifier is {}); give the original cluster's log_key_file",
            args.log_key.display(),
            manifest.log.log_key
        );
    }

    let building = beside(&args.data_dir, ".restoring");
    if building.exists() {
        bail!("{} is left from an interrupted restore; remove it (rm -r) and run the restore again", building.display());
    }
    crate::node::prepare_data_dir(&building)?;
    let blob_store = match &blobs_to {
        None => None,
        Some(bucket) => Some(s3_store(bucket, "")?),
    };
    let result = build_data_dir(&args, &location, store.as_ref(), blob_store, &manifest, state, &building, &master_key, &log_key).await;
    if let Err(error) = result {
        let _ = std::fs::remove_dir_all(&building);
        return Err(error);
    }
    sync_tree(&building)?;
    std::fs::rename(&building, &args.data_dir)
        .with_context(|| format!("cannot rename {} to {}", building.display(), args.data_dir.display()))?;
    sync_parent(&args.data_dir)?;
    if args.json {
        print_json(serde_json::json!({
            "data_dir": args.data_dir.display().to_string(),
            "applied_index": manifest.applied_index,
            "log_tree_size": manifest.log.tree_size,
            "log_root": manifest.log.root,
            "log_origin": verifier.name(),
            "blobs": manifest.blobs.len(),
            "node_id": args.node_id,
            "blobs_bucket": blobs_to,
        }));
    } else {
        out!(
            "restored {} into {}: state at index {}, log size {} root {}, {} blobs{}; start it with data_dir = {:?}, master_key_file = \"master.key\", log_key_file = \"log.key\", log_origin = {:?}{}{}",
            args.from,
            args.data_dir.display(),
            manifest.applied_index,
            manifest.log.tree_size,
            manifest.log.root,
            manifest.blobs.len(),
            match &blobs_to {
                Some(bucket) => format!(" in bucket {bucket}"),
                None => String::new(),
            },
            args.data_dir.display().to_string(),
            verifier.name(),
            match &blobs_to {
                Some(bucket) => format!(", [storage] kind = \"s3\" with bucket = {bucket:?} and that bucket's endpoint"),
                None => String::new(),
            },
            match args.node_id {
                Some(id) => format!(", and [cluster] node_id = {id} listing only itself in members; add other members with `kyso cluster add`"),
                None => " and no [cluster] section".to_string(),
            }
        );
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
async fn build_data_dir(
    args: &RestoreArgs,
    location: &Location,
    store: &dyn ObjectStore,
    blob_bucket: Option<Arc<dyn ObjectStore>>,
    manifest: &Manifest,
    state: bytes::Bytes,
    dir: &Path,
    master_key: &[u8],
    log_key: &[u8],
) -> anyhow::Result<()> {
    // Blobs first: every one must be present and whole before any state exists.
    let spool = Spool::open(&dir.join("spool"))?;
    let limits = WriteLimits::from_limits(&crate::config::Limits::default());
    let blobs = match blob_bucket {
        Some(bucket) => BlobStore::new(bucket, args.blobs_to.clone().unwrap_or_default(), spool.clone(), limits),
        None => BlobStore::local_with_fsync(&dir.join("blobs"), spool.clone(), limits, true)?,
    };
    let mut listed = std::collections::BTreeSet::new();
    for blob in &manifest.blobs {
        let hash = Sha256::from_hex(&blob.sha256).with_context(|| format!("the manifest lists blob {:?}, which is not a SHA-256", blob.sha256))?;
        listed.insert((hash, blob.size_bytes));
        let path = blob_path(&hash);
        let mut source = match store.get(&path).await {
            Ok(result) => result.into_stream(),
            Err(object_store::Error::NotFound { .. }) => {
                bail!("blob {hash} listed in the manifest is missing from the backup ({})", location.describe(&path))
            }
            Err(error) => bail!("cannot read blob {hash} from the backup ({}): {error}", location.describe(&path)),
        };
        let mut writer = spool.create().await?;
        while let Some(chunk) = source.try_next().await.with_context(|| format!("cannot read {}", location.describe(&path)))? {
            if writer.size_bytes() + chunk.len() as u64 > blob.size_bytes {
                bail!(
                    "blob {hash} in the backup ({}) is corrupt: it is longer than the {} bytes the manifest says",
                    location.describe(&path),
                    blob.size_bytes
                );
            }
            writer.write(&chunk).await?;
        }
        let spooled = writer.finish().await?;
        if spooled.hash != hash || spooled.size_bytes != blob.size_bytes {
            bail!(
                "blob {hash} in the backup ({}) is corrupt: its {} bytes hash to {} (the manifest says {} bytes hashing to {hash}); restore from another backup copy",
                location.describe(&path),
                spooled.size_bytes,
                spooled.hash,
                blob.size_bytes
            );
        }
        blobs.put_file(&spooled).await?;
    }
    drop(blobs);
    drop(spool);
    std::fs::remove_dir_all(dir.join("spool"))?;

    let store_path = dir.join("state.redb");
    let (applied, tree_size, root, referenced) = tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
        let store = StateStore::open(&store_path)?;
        let applied = store.restore_backup(&state)?;
        let tree_size = store.tlog_size()?;
        let root = store.tlog_root(tree_size)?;
        let mut referenced = Vec::new();
        let mut after = None;
        loop {
            let page = store.blobs_after(after.as_ref(), 10_000)?;
            let Some(last) = page.last() else { break };
            after = Some(last.0);
            referenced.extend(page);
        }
        Ok((applied, tree_size, root, referenced))
    })
    .await??;
    if applied != manifest.applied_index || tree_size != manifest.log.tree_size || hex::encode(root) != manifest.log.root {
        bail!(
            "the backup's state holds index {applied}, log size {tree_size} root {}, but the manifest says index {}, size {} root {}",
            hex::encode(root),
            manifest.applied_index,
            manifest.log.tree_size,
            manifest.log.root
        );
    }
    if let Some((hash, size)) = referenced.iter().find(|blob| !listed.contains(blob)) {
        bail!("the backup's state references blob {hash} ({size} bytes), which its manifest does not list; the backup is incomplete");
    }

    crate::node::write_private_file(&dir.join("master.key"), master_key)?;
    crate::node::write_private_file(&dir.join("log.key"), log_key)?;
    if let Some(id) = args.node_id {
        let member = kyso_cluster::raft::PeerAddress {
            id,
            raft_addr: args.raft_addr.clone().unwrap_or_default(),
            client_addr: args.client_addr.clone().unwrap_or_default(),
        };
        kyso_cluster::raft::seed_restored_log(&dir.join("raft"), applied, &member)
            .map_err(|error| anyhow::anyhow!("cannot write the new cluster's Raft log: {error}"))?;
    }
    Ok(())
}
