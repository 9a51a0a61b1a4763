//! `kyso backup` and `kyso restore`.
//!
//! A backup is a directory: `manifest.json` (what [`Manifest`] holds), `state.snapshot`
//! (the replicated state as of one applied index, from AdminService.Backup) and
//! `blobs/<first two hex digits>/<sha256 hex>` (every blob the state references, fetched
//! with GetBlob and hash-checked). It is written beside its final name and renamed into
//! place once complete, so a directory with that name is always a whole backup.
//!
//! Restore checks everything against the manifest before it builds anything, builds the
//! new data directory beside its final name and renames it at the end: a refused or
//! interrupted restore leaves no data directory a node could start from.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::Args;
use futures::{StreamExt as _, TryStreamExt as _};
use kyso_proto::v1 as pb;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

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
/// Bytes read at a time from a backup's files.
const READ_CHUNK_BYTES: usize = 1024 * 1024;

#[derive(Debug, Args)]
pub struct BackupArgs {
    #[command(flatten)]
    pub connection: Connection,
    /// Directory to write the backup to; it must not exist yet (backups are never
    /// overwritten). Written as DIR.partial first, renamed when complete.
    #[arg(long)]
    pub to: PathBuf,
}

#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// A directory written by `kyso backup`.
    #[arg(long)]
    pub from: PathBuf,
    /// The new node's data directory; it must not exist yet.
    #[arg(long)]
    pub data_dir: PathBuf,
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

/// Where a blob lives inside a backup directory.
fn blob_path(root: &Path, hash: &Sha256) -> PathBuf {
    let hex = hash.to_hex();
    root.join("blobs").join(&hex[..2]).join(hex)
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

pub async fn backup(args: BackupArgs) -> anyhow::Result<()> {
    refuse_existing(&args.to, "backup directory")?;
    let partial = beside(&args.to, ".partial");
    if partial.exists() {
        bail!(
            "{} is left from an interrupted backup; remove it (rm -r) and run the backup again",
            partial.display()
        );
    }
    std::fs::create_dir_all(&partial).with_context(|| format!("cannot create {}", partial.display()))?;
    let channel = channel(&args.connection).await?;
    let mut admin = pb::admin_service_client::AdminServiceClient::new(channel.clone());
    let mut stream = admin.backup(pb::BackupRequest {}).await.map_err(status_error)?.into_inner();
    let Some(pb::BackupChunk { part: Some(pb::backup_chunk::Part::Header(header)) }) = stream.message().await.map_err(status_error)? else {
        bail!("the node did not start its backup stream with a header; is it running this release?");
    };

    // The state snapshot, hashed as it is written.
    let state_path = partial.join(STATE_FILE);
    let mut state_file = tokio::fs::File::create(&state_path).await.with_context(|| format!("cannot create {}", state_path.display()))?;
    let mut state_hash = ring::digest::Context::new(&ring::digest::SHA256);
    let mut state_bytes = 0u64;
    let mut blobs: Vec<(Sha256, u64)> = Vec::with_capacity(usize::try_from(header.blob_count.min(10_000_000)).unwrap_or(0));
    while let Some(chunk) = stream.message().await.map_err(status_error)? {
        match chunk.part {
            Some(pb::backup_chunk::Part::State(bytes)) => {
                state_bytes += bytes.len() as u64;
                if state_bytes > header.state_size_bytes || !blobs.is_empty() {
                    bail!("the node sent more state than the {} bytes it announced", header.state_size_bytes);
                }
                state_hash.update(&bytes);
                state_file.write_all(&bytes).await?;
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
    state_file.sync_all().await?;
    drop(state_file);
    let state_sha256 = Sha256::from_slice(state_hash.finish().as_ref()).expect("SHA-256 digests are 32 bytes");
    if state_bytes != header.state_size_bytes || state_sha256.0.as_slice() != header.state_sha256.as_slice() {
        bail!(
            "the state snapshot arrived damaged ({state_bytes} of {} bytes, SHA-256 {state_sha256}); run the backup again",
            header.state_size_bytes
        );
    }
    if blobs.len() as u64 != header.blob_count {
        bail!("the node listed {} of the {} blobs it announced; run the backup again", blobs.len(), header.blob_count);
    }

    // Every referenced blob, streamed to disk and checked.
    let archive = pb::archive_service_client::ArchiveServiceClient::new(channel).max_decoding_message_size(4 * 1024 * 1024);
    let partial_ref = &partial;
    futures::stream::iter(blobs.iter().cloned())
        .map(|(hash, size)| {
            let archive = archive.clone();
            async move { fetch_blob(archive, partial_ref, &hash, size).await }
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
    write_synced(&partial.join(MANIFEST_FILE), &serde_json::to_vec_pretty(&manifest)?)?;
    sync_tree(&partial)?;
    std::fs::rename(&partial, &args.to).with_context(|| format!("cannot rename {} to {}", partial.display(), args.to.display()))?;
    sync_parent(&args.to)?;
    let blob_bytes: u64 = blobs.iter().map(|(_, size)| size).sum();
    if args.connection.json {
        print_json(serde_json::json!({
            "directory": args.to.display().to_string(),
            "applied_index": manifest.applied_index,
            "log_tree_size": manifest.log.tree_size,
            "log_root": manifest.log.root,
            "state_size_bytes": state_bytes,
            "blobs": blobs.len(),
            "blob_bytes": blob_bytes,
        }));
    } else {
        out!(
            "backup {}: state at index {} ({state_bytes} bytes), log size {} root {}, {} blobs ({blob_bytes} bytes)",
            args.to.display(),
            manifest.applied_index,
            manifest.log.tree_size,
            manifest.log.root,
            blobs.len()
        );
    }
    Ok(())
}

async fn fetch_blob(
    mut archive: pb::archive_service_client::ArchiveServiceClient<tonic::transport::Channel>,
    root: &Path,
    hash: &Sha256,
    size: u64,
) -> anyhow::Result<()> {
    let path = blob_path(root, hash);
    tokio::fs::create_dir_all(path.parent().expect("blob paths have a parent")).await?;
    let mut stream = archive.get_blob(pb::GetBlobRequest { sha256: hash.0.to_vec() }).await.map_err(|status| {
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
    let mut file = tokio::fs::File::create(&path).await.with_context(|| format!("cannot create {}", path.display()))?;
    let mut hasher = ring::digest::Context::new(&ring::digest::SHA256);
    let mut written = 0u64;
    while let Some(chunk) = stream.message().await.map_err(|status| anyhow::anyhow!("reading blob {hash} failed: {:?}: {}", status.code(), status.message()))? {
        written += chunk.data.len() as u64;
        if written > size {
            bail!("the node sent more than the {size} bytes of blob {hash}");
        }
        hasher.update(&chunk.data);
        file.write_all(&chunk.data).await?;
    }
    file.sync_all().await?;
    let actual = Sha256::from_slice(hasher.finish().as_ref()).expect("SHA-256 digests are 32 bytes");
    if actual != *hash || written != size {
        bail!("blob {hash} arrived as {written} bytes hashing to {actual} (expected {size} bytes); run `kyso scrub` on the node, then the backup again");
    }
    Ok(())
}

fn write_synced(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut file = std::fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    file.write_all(bytes)?;
    file.sync_all()?;
    Ok(())
}

/// fsyncs every directory under `root` (files were synced as they were written), so the
/// names survive a crash before the final rename.
fn sync_tree(root: &Path) -> anyhow::Result<()> {
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            if entry.file_type()?.is_dir() {
                pending.push(entry.path());
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

/// Reads and checks a backup's manifest and state file; refuses precisely on any mismatch.
fn read_checked_state(from: &Path) -> anyhow::Result<(Manifest, Vec<u8>, LogVerifier)> {
    let manifest_path = from.join(MANIFEST_FILE);
    let size = std::fs::metadata(&manifest_path)
        .with_context(|| format!("{} has no {MANIFEST_FILE}: it is not a complete kyso backup", from.display()))?
        .len();
    if size > MANIFEST_SIZE_BYTES_MAX {
        bail!("{} is {size} bytes, more than a manifest can be ({MANIFEST_SIZE_BYTES_MAX})", manifest_path.display());
    }
    let manifest: Manifest = serde_json::from_slice(&std::fs::read(&manifest_path)?)
        .with_context(|| format!("{} is not a kyso backup manifest", manifest_path.display()))?;
    if manifest.format != MANIFEST_FORMAT {
        bail!("{} has format {:?}; this kyso restores {MANIFEST_FORMAT:?}", manifest_path.display(), manifest.format);
    }
    let state_path = from.join(STATE_FILE);
    let state = std::fs::read(&state_path).with_context(|| format!("cannot read the backup's state {}", state_path.display()))?;
    let state_sha256 = Sha256::digest(&state);
    if state.len() as u64 != manifest.state.size_bytes || state_sha256.to_hex() != manifest.state.sha256 {
        bail!(
            "the backup's state {} is corrupt: {} bytes hashing to {state_sha256}, but the manifest says {} bytes hashing to {}",
            state_path.display(),
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
    let (manifest, state, verifier) = read_checked_state(&args.from)?;
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
    let result = build_data_dir(&args, &manifest, &state, &building, &master_key, &log_key).await;
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
        }));
    } else {
        out!(
            "restored {} into {}: state at index {}, log size {} root {}, {} blobs; start it with data_dir = {:?}, master_key_file = \"master.key\", log_key_file = \"log.key\", log_origin = {:?}{}",
            args.from.display(),
            args.data_dir.display(),
            manifest.applied_index,
            manifest.log.tree_size,
            manifest.log.root,
            manifest.blobs.len(),
            args.data_dir.display().to_string(),
            verifier.name(),
            match args.node_id {
                Some(id) => format!(", and [cluster] node_id = {id} listing only itself in members; add other members with `kyso cluster add`"),
                None => " and no [cluster] section".to_string(),
            }
        );
    }
    Ok(())
}

async fn build_data_dir(
    args: &RestoreArgs,
    manifest: &Manifest,
    state: &[u8],
    dir: &Path,
    master_key: &[u8],
    log_key: &[u8],
) -> anyhow::Result<()> {
    // Blobs first: every one must be present and whole before any state exists.
    let spool = Spool::open(&dir.join("spool"))?;
    let blobs = BlobStore::local_with_fsync(&dir.join("blobs"), spool.clone(), WriteLimits::from_limits(&crate::config::Limits::default()), true)?;
    let mut listed = std::collections::BTreeSet::new();
    for blob in &manifest.blobs {
        let hash = Sha256::from_hex(&blob.sha256).with_context(|| format!("the manifest lists blob {:?}, which is not a SHA-256", blob.sha256))?;
        listed.insert((hash, blob.size_bytes));
        let path = blob_path(&args.from, &hash);
        let mut file = tokio::fs::File::open(&path)
            .await
            .with_context(|| format!("blob {hash} listed in the manifest is missing from the backup ({})", path.display()))?;
        let mut writer = spool.create().await?;
        let mut buffer = vec![0u8; READ_CHUNK_BYTES];
        loop {
            let read = file.read(&mut buffer).await?;
            if read == 0 {
                break;
            }
            if writer.size_bytes() + read as u64 > blob.size_bytes {
                bail!("blob {hash} in the backup ({}) is corrupt: it is longer than the {} bytes the manifest says", path.display(), blob.size_bytes);
            }
            writer.write(&buffer[..read]).await?;
        }
        let spooled = writer.finish().await?;
        if spooled.hash != hash || spooled.size_bytes != blob.size_bytes {
            bail!(
                "blob {hash} in the backup ({}) is corrupt: its {} bytes hash to {} (the manifest says {} bytes hashing to {hash}); restore from another backup copy",
                path.display(),
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
    let state = state.to_vec();
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
