//! The blob archive: write-once, content-addressed storage of scanned files through the
//! `object_store` crate (the local filesystem by default, any S3-compatible bucket in
//! production: see [`s3`]).
//!
//! Object keys derive from the SHA-256 only. A blob is never deleted, and never overwritten
//! while its bytes still match its hash: small blobs are written with `PutMode::Create`
//! (`If-None-Match: *` on S3), large ones through multipart upload after a HEAD found no
//! object, and an existing blob with the same hash and size is success. [`BlobStore::repair`]
//! is the one writer that may replace an object, and only after re-reading it and finding
//! bytes that no longer hash to its key. Every read is re-hashed before it is trusted;
//! streamed reads end with an error if the bytes did not match. Uploads reach this module
//! as files in the [`spool`], so no whole file is ever held in memory above
//! `blob_multipart_threshold_bytes`. This module must never know dossiers, signers or
//! gRPC: it stores bytes under their hash.

pub mod s3;
pub mod spool;

use std::path::Path;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use futures::stream::BoxStream;
use futures::StreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload, UpdateVersion, WriteMultipart};
use tokio::io::AsyncReadExt;

use crate::config::Limits;
use crate::domain::Sha256;
pub use spool::{Spool, SpoolWriter, SpooledBlob};

#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("blob {0} is not in the archive")]
    NotFound(Sha256),
    #[error("blob {hash} is corrupt in storage: its bytes hash to {actual}; run `kyso scrub --repair-from URL` against a node with a good copy, or restore it from backup")]
    Corrupt { hash: Sha256, actual: Sha256 },
    #[error("blob {hash} exists with {stored_bytes} bytes, expected {expected_bytes}: storage holds a different object under this key; run `kyso scrub` to find and repair it")]
    SizeMismatch { hash: Sha256, stored_bytes: u64, expected_bytes: u64 },
    #[error("object storage is unavailable: {0}")]
    Unavailable(String),
    #[error("object storage refused kyso's credentials: {0}")]
    Refused(String),
    #[error("the local spool failed: {0}")]
    Spool(String),
}

/// How blobs are written: the sizes that decide between one PUT and a multipart upload.
#[derive(Debug, Clone, Copy)]
pub struct WriteLimits {
    pub multipart_threshold_bytes: u64,
    pub part_size_bytes: usize,
    pub parts_in_flight_max: usize,
}

impl WriteLimits {
    pub fn from_limits(limits: &Limits) -> WriteLimits {
        WriteLimits {
            multipart_threshold_bytes: limits.blob_multipart_threshold_bytes,
            part_size_bytes: limits.blob_part_size_bytes,
            parts_in_flight_max: limits.blob_parts_in_flight_max,
        }
    }
}

/// Bytes read from a spool file per step of a multipart upload.
const SPOOL_READ_BLOCK_BYTES: usize = 1024 * 1024;
/// Bytes gathered per step by whole-blob reads and checks.
const READ_GATHER_BYTES: usize = 1024 * 1024;

/// Content-addressed, write-once blob storage, with the spool that feeds it.
#[derive(Clone, Debug)]
pub struct BlobStore {
    store: Arc<dyn ObjectStore>,
    /// Where the blobs live, for error messages ("s3 bucket kyso at https://…").
    location: Arc<str>,
    spool: Spool,
    limits: WriteLimits,
}

/// What a full re-read of one blob found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlobHealth {
    Good,
    Missing,
    Corrupt { actual: Sha256, stored_bytes: u64 },
}

/// What [`BlobStore::repair`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RepairOutcome {
    /// The stored copy was good by the time of the repair; nothing was written.
    AlreadyGood,
    /// The missing blob was written.
    Restored,
    /// The corrupt copy was replaced by the good bytes.
    Replaced,
}

/// Where a blob lives: `blobs/sha256/<2 hex>/<2 hex>/<64 hex>`. Derived from the hash only,
/// so no client-chosen name ever reaches a storage path.
pub fn blob_key(hash: &Sha256) -> ObjectPath {
    let hex = hash.to_hex();
    ObjectPath::from(format!("blobs/sha256/{}/{}/{}", &hex[0..2], &hex[2..4], hex))
}

impl BlobStore {
    pub fn new(store: Arc<dyn ObjectStore>, location: impl Into<String>, spool: Spool, limits: WriteLimits) -> BlobStore {
        BlobStore { store, location: Arc::from(location.into()), spool, limits }
    }

    /// A store on the local filesystem under `root` (created if missing), fsyncing every
    /// blob before a write returns.
    pub fn local(root: &Path, spool: Spool, limits: WriteLimits) -> Result<BlobStore, ArchiveError> {
        Self::local_with_fsync(root, spool, limits, true)
    }

    /// Like [`BlobStore::local`]; `fsync = false` is for tests that prove a power loss is
    /// caught, never for production.
    pub fn local_with_fsync(root: &Path, spool: Spool, limits: WriteLimits, fsync: bool) -> Result<BlobStore, ArchiveError> {
        std::fs::create_dir_all(root)
            .map_err(|error| ArchiveError::Unavailable(format!("cannot create {}: {error}", root.display())))?;
        let store = object_store::local::LocalFileSystem::new_with_prefix(root)
            .map_err(|error| ArchiveError::Unavailable(error.to_string()))?
            .with_fsync(fsync);
        Ok(BlobStore::new(Arc::new(store), format!("local directory {}", root.display()), spool, limits))
    }

    /// The spool that uploads are received into.
    pub fn spool(&self) -> &Spool {
        &self.spool
    }

    /// Stores `content` under its hash, which the caller computed while receiving it; the
    /// hash is checked again here before anything is written. Idempotent: storing a blob
    /// that already exists (same hash, same size) succeeds without writing.
    pub async fn put(&self, hash: &Sha256, content: Bytes) -> Result<(), ArchiveError> {
        let actual = sha256_off_executor(&content).await;
        assert_eq!(&actual, hash, "caller passed a hash that does not match the content");
        let size_bytes = content.len() as u64;
        match self.put_create(hash, content).await {
            Ok(()) => {
                crate::metrics::record_blob_written(size_bytes);
                Ok(())
            }
            Err(object_store::Error::AlreadyExists { .. }) => self.check_existing(hash, size_bytes).await,
            Err(error) => Err(self.unavailable(error)),
        }
    }

    async fn put_create(&self, hash: &Sha256, content: Bytes) -> Result<(), object_store::Error> {
        let options = PutOptions { mode: PutMode::Create, ..PutOptions::default() };
        self.store.put_opts(&blob_key(hash), PutPayload::from_bytes(content), options).await.map(|_| ())
    }

    /// Stores a spooled file under its hash. Small files: one conditional PUT. Large
    /// files: HEAD, then a multipart upload whose bytes are re-hashed from the spool as
    /// they are sent, completed only if they match. Multipart upload has no conditional
    /// mode, so two writers of the same new blob may both complete: both wrote the same
    /// bytes under the same key (see ARCHITECTURE.md, "Blob writes").
    pub async fn put_file(&self, blob: &SpooledBlob) -> Result<(), ArchiveError> {
        if blob.size_bytes <= self.limits.multipart_threshold_bytes {
            let content = read_spooled(blob).await?;
            return self.put(&blob.hash, content).await;
        }
        match self.store.head(&blob_key(&blob.hash)).await {
            Ok(meta) => return self.expect_size(&blob.hash, meta.size, blob.size_bytes),
            Err(object_store::Error::NotFound { .. }) => {}
            Err(error) => return Err(self.unavailable(error)),
        }
        self.upload_parts(blob).await
    }

    async fn upload_parts(&self, blob: &SpooledBlob) -> Result<(), ArchiveError> {
        let upload = self.store.put_multipart(&blob_key(&blob.hash)).await.map_err(|error| self.unavailable(error))?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, self.limits.part_size_bytes);
        match self.send_parts(blob, &mut writer).await {
            Ok(()) => {
                writer.finish().await.map_err(|error| self.unavailable(error))?;
                crate::metrics::record_blob_written(blob.size_bytes);
                Ok(())
            }
            Err(error) => {
                if let Err(abort_error) = writer.abort().await {
                    tracing::warn!(%abort_error, hash = %blob.hash, "cannot abort a failed multipart upload; the store's lifecycle rule must clean it");
                }
                Err(error)
            }
        }
    }

    /// Feeds the spooled file to the upload in blocks, with at most
    /// `parts_in_flight_max` parts in flight plus the one being filled, re-hashing as it
    /// reads. The writer cuts parts from the blocks without copying them.
    async fn send_parts(&self, blob: &SpooledBlob, writer: &mut WriteMultipart) -> Result<(), ArchiveError> {
        let mut file = tokio::fs::File::open(blob.path()).await.map_err(|error| spool_error(blob, error))?;
        let mut hasher = ring::digest::Context::new(&ring::digest::SHA256);
        let mut remaining = blob.size_bytes;
        let blocks_max = blob.size_bytes.div_ceil(SPOOL_READ_BLOCK_BYTES as u64);
        for _ in 0..blocks_max {
            let length = remaining.min(SPOOL_READ_BLOCK_BYTES as u64) as usize;
            let mut block = BytesMut::zeroed(length);
            file.read_exact(&mut block).await.map_err(|error| spool_error(blob, error))?;
            hasher.update(&block);
            remaining -= length as u64;
            writer.wait_for_capacity(self.limits.parts_in_flight_max).await.map_err(|error| self.unavailable(error))?;
            writer.put(block.freeze());
        }
        let actual = finish_hash(hasher);
        if remaining != 0 || actual != blob.hash {
            return Err(spool_changed(blob, &actual));
        }
        Ok(())
    }

    async fn check_existing(&self, hash: &Sha256, expected_bytes: u64) -> Result<(), ArchiveError> {
        let meta = self.store.head(&blob_key(hash)).await.map_err(|error| self.read_error(hash, error))?;
        self.expect_size(hash, meta.size, expected_bytes)
    }

    fn expect_size(&self, hash: &Sha256, stored_bytes: u64, expected_bytes: u64) -> Result<(), ArchiveError> {
        if stored_bytes != expected_bytes {
            return Err(ArchiveError::SizeMismatch { hash: *hash, stored_bytes, expected_bytes });
        }
        Ok(())
    }

    /// Reads a whole blob of `expected_bytes` (as recorded when it was archived) into
    /// memory and checks its hash before returning it; an object of another size is
    /// refused before it is read. The caller bounds `expected_bytes`.
    ///
    /// One read, not a stream: for a local file object_store's `bytes()` is a single
    /// blocking read, where its stream takes one thread-pool round trip per 8 KiB.
    pub async fn get(&self, hash: &Sha256, expected_bytes: u64) -> Result<Bytes, ArchiveError> {
        let result = self.store.get(&blob_key(hash)).await.map_err(|error| self.read_error(hash, error))?;
        self.expect_size(hash, result.meta.size, expected_bytes)?;
        let content = result.bytes().await.map_err(|error| self.read_error(hash, error))?;
        self.expect_size(hash, content.len() as u64, expected_bytes)?;
        let actual = sha256_off_executor(&content).await;
        if actual != *hash {
            return Err(ArchiveError::Corrupt { hash: *hash, actual });
        }
        Ok(content)
    }

    /// The first `bytes` bytes of a blob, not hash-checked: enough to tell a scan's format
    /// (`ScanFormat::sniff`) without reading the whole file.
    pub async fn head_bytes(&self, hash: &Sha256, bytes: u64) -> Result<Bytes, ArchiveError> {
        if bytes == 0 {
            return Ok(Bytes::new());
        }
        self.store.get_range(&blob_key(hash), 0..bytes).await.map_err(|error| self.read_error(hash, error))
    }

    /// Opens a blob for a streamed, hash-checked read.
    pub async fn open(&self, hash: &Sha256) -> Result<BlobStream, ArchiveError> {
        let result = self.store.get(&blob_key(hash)).await.map_err(|error| self.read_error(hash, error))?;
        Ok(BlobStream {
            hash: *hash,
            size_bytes: result.meta.size,
            version: UpdateVersion { e_tag: result.meta.e_tag.clone(), version: result.meta.version.clone() },
            inner: result.into_stream(),
            hasher: Some(ring::digest::Context::new(&ring::digest::SHA256)),
            pending: Bytes::new(),
            read_bytes: 0,
            location: self.location.clone(),
        })
    }

    /// Whether the blob exists (without reading it).
    pub async fn contains(&self, hash: &Sha256) -> Result<bool, ArchiveError> {
        match self.store.head(&blob_key(hash)).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(error) => Err(self.unavailable(error)),
        }
    }

    /// Re-reads a whole blob (streamed, bounded memory) and says whether its bytes still
    /// hash to its key. An unreachable store is an error, not a finding.
    pub async fn check(&self, hash: &Sha256) -> Result<BlobHealth, ArchiveError> {
        Ok(self.inspect(hash).await?.0)
    }

    async fn inspect(&self, hash: &Sha256) -> Result<(BlobHealth, Option<UpdateVersion>), ArchiveError> {
        let mut stream = match self.open(hash).await {
            Ok(stream) => stream,
            Err(ArchiveError::NotFound(_)) => return Ok((BlobHealth::Missing, None)),
            Err(error) => return Err(error),
        };
        let version = stream.version.clone();
        loop {
            match stream.next_chunk(READ_GATHER_BYTES).await {
                Ok(Some(_)) => {}
                Ok(None) => return Ok((BlobHealth::Good, Some(version))),
                Err(ArchiveError::Corrupt { actual, .. }) => {
                    return Ok((BlobHealth::Corrupt { actual, stored_bytes: stream.read_bytes }, Some(version)))
                }
                Err(ArchiveError::NotFound(_)) => return Ok((BlobHealth::Missing, None)),
                Err(error) => return Err(error),
            }
        }
    }

    /// Replaces a missing or corrupt copy with `good`, a spooled file whose hash the
    /// caller checked. The stored copy is re-read first and left alone if it is good; a
    /// corrupt copy is replaced conditionally on the version just read where the store
    /// supports it (S3 `If-Match`), so a copy repaired meanwhile is never written again.
    pub async fn repair(&self, good: &SpooledBlob) -> Result<RepairOutcome, ArchiveError> {
        let hash = good.hash;
        match self.inspect(&hash).await? {
            (BlobHealth::Good, _) => Ok(RepairOutcome::AlreadyGood),
            (BlobHealth::Missing, _) => {
                self.put_file(good).await?;
                Ok(RepairOutcome::Restored)
            }
            (BlobHealth::Corrupt { .. }, version) => {
                self.replace(good, version).await?;
                Ok(RepairOutcome::Replaced)
            }
        }
    }

    async fn replace(&self, good: &SpooledBlob, version: Option<UpdateVersion>) -> Result<(), ArchiveError> {
        if good.size_bytes > self.limits.multipart_threshold_bytes {
            // Multipart upload cannot be conditional: the copy was found corrupt a moment
            // ago, and a concurrent repair can only write the same good bytes.
            return self.upload_parts(good).await;
        }
        let content = read_spooled(good).await?;
        let key = blob_key(&good.hash);
        let conditional = version.filter(|version| version.e_tag.is_some() || version.version.is_some());
        if let Some(version) = conditional {
            let options = PutOptions { mode: PutMode::Update(version), ..PutOptions::default() };
            match self.store.put_opts(&key, PutPayload::from_bytes(content.clone()), options).await {
                Ok(_) => return Ok(()),
                Err(object_store::Error::NotImplemented { .. }) => {}
                Err(object_store::Error::Precondition { .. }) => {
                    return Err(ArchiveError::Unavailable(format!(
                        "blob {} changed while it was being repaired; run the scrub again",
                        good.hash
                    )))
                }
                Err(error) => return Err(self.unavailable(error)),
            }
        }
        // The local filesystem has no conditional update; it replaces atomically by rename.
        let options = PutOptions { mode: PutMode::Overwrite, ..PutOptions::default() };
        self.store.put_opts(&key, PutPayload::from_bytes(content), options).await.map(|_| ()).map_err(|error| self.unavailable(error))
    }

    fn unavailable(&self, error: object_store::Error) -> ArchiveError {
        match &error {
            object_store::Error::Unauthenticated { .. } | object_store::Error::PermissionDenied { .. } => {
                ArchiveError::Refused(format!("{} answered: {error}; check the access key and the bucket policy", self.location))
            }
            _ => ArchiveError::Unavailable(format!(
                "{} failed: {error}; check that the store is reachable, then retry (writes with the same request_id)",
                self.location
            )),
        }
    }

    fn read_error(&self, hash: &Sha256, error: object_store::Error) -> ArchiveError {
        match error {
            object_store::Error::NotFound { .. } => ArchiveError::NotFound(*hash),
            other => self.unavailable(other),
        }
    }
}

/// A streamed read of one blob. [`BlobStream::next_chunk`] re-hashes as it goes and, after
/// the last byte, returns [`ArchiveError::Corrupt`] instead of the end if the bytes do
/// not hash to the key: a caller that forwards chunks MUST forward that error too.
pub struct BlobStream {
    hash: Sha256,
    size_bytes: u64,
    version: UpdateVersion,
    inner: BoxStream<'static, object_store::Result<Bytes>>,
    hasher: Option<ring::digest::Context>,
    /// Bytes read from the store and hashed but not yet handed out.
    pending: Bytes,
    read_bytes: u64,
    location: Arc<str>,
}

impl BlobStream {
    /// Size the store reports for the object.
    pub fn size_bytes(&self) -> u64 {
        self.size_bytes
    }

    /// The next bytes, gathered up to about `max_bytes`; `None` after the last chunk once
    /// the hash matched.
    pub async fn next_chunk(&mut self, max_bytes: usize) -> Result<Option<Bytes>, ArchiveError> {
        let mut gathered = BytesMut::new();
        while gathered.len() < max_bytes {
            if !self.pending.is_empty() {
                let take = self.pending.len().min(max_bytes - gathered.len());
                gathered.extend_from_slice(&self.pending.split_to(take));
                continue;
            }
            match self.inner.next().await {
                Some(Ok(chunk)) => {
                    self.read_bytes += chunk.len() as u64;
                    if let Some(hasher) = self.hasher.as_mut() {
                        hasher.update(&chunk);
                    }
                    self.pending = chunk;
                }
                Some(Err(object_store::Error::NotFound { .. })) => return Err(ArchiveError::NotFound(self.hash)),
                Some(Err(error)) => {
                    return Err(ArchiveError::Unavailable(format!(
                        "{} failed while reading blob {}: {error}; check that the store is reachable and retry",
                        self.location, self.hash
                    )))
                }
                None => break,
            }
        }
        if !gathered.is_empty() {
            return Ok(Some(gathered.freeze()));
        }
        match self.hasher.take() {
            Some(hasher) => {
                let actual = finish_hash(hasher);
                if actual != self.hash {
                    return Err(ArchiveError::Corrupt { hash: self.hash, actual });
                }
                Ok(None)
            }
            None => Ok(None),
        }
    }
}

/// Files up to this size are hashed on the executor thread: about 70 µs at this size on
/// this machine's SHA extensions, less than the trip to a blocking thread and back costs
/// under load (a typical scanned page is 100 KB).
const HASH_ON_EXECUTOR_BYTES_MAX: usize = 128 * 1024;

/// SHA-256 of a whole file, on a blocking thread unless it is small: hashing hundreds of
/// MiB must not hold an async executor thread (every other request on it would wait).
pub async fn sha256_off_executor(content: &Bytes) -> Sha256 {
    if content.len() <= HASH_ON_EXECUTOR_BYTES_MAX {
        return Sha256::digest(content);
    }
    let shared = content.clone();
    // The closure cannot panic, so the join fails only while the runtime shuts down; then
    // hashing here is still correct, just not off the executor.
    tokio::task::spawn_blocking(move || Sha256::digest(&shared)).await.unwrap_or_else(|_| Sha256::digest(content))
}

fn finish_hash(hasher: ring::digest::Context) -> Sha256 {
    Sha256::from_slice(hasher.finish().as_ref()).expect("SHA-256 digests are 32 bytes")
}

async fn read_spooled(blob: &SpooledBlob) -> Result<Bytes, ArchiveError> {
    let content = Bytes::from(tokio::fs::read(blob.path()).await.map_err(|error| spool_error(blob, error))?);
    let actual = sha256_off_executor(&content).await;
    if actual != blob.hash || content.len() as u64 != blob.size_bytes {
        return Err(spool_changed(blob, &actual));
    }
    Ok(content)
}

fn spool_changed(blob: &SpooledBlob, actual: &Sha256) -> ArchiveError {
    ArchiveError::Spool(format!(
        "the spooled copy of {} changed on local disk before it was stored (hashes to {actual}); check the disk and upload again",
        blob.hash
    ))
}

fn spool_error(blob: &SpooledBlob, error: std::io::Error) -> ArchiveError {
    ArchiveError::Spool(format!("cannot read the spooled copy of {} at {}: {error}", blob.hash, blob.path().display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small_parts() -> WriteLimits {
        WriteLimits { multipart_threshold_bytes: 64 * 1024, part_size_bytes: 16 * 1024, parts_in_flight_max: 2 }
    }

    fn local_store(dir: &Path) -> BlobStore {
        let spool = Spool::open(&dir.join("spool")).unwrap();
        BlobStore::local(&dir.join("blobs"), spool, small_parts()).unwrap()
    }

    async fn spooled(store: &BlobStore, content: &[u8]) -> SpooledBlob {
        let mut writer = store.spool().create().await.unwrap();
        for chunk in content.chunks(10_000) {
            writer.write(chunk).await.unwrap();
        }
        writer.finish().await.unwrap()
    }

    fn on_disk(dir: &Path, hash: &Sha256) -> std::path::PathBuf {
        dir.join("blobs").join(blob_key(hash).as_ref())
    }

    #[tokio::test]
    async fn stored_blob_reads_back_and_second_put_is_success() {
        let dir = tempfile::tempdir().unwrap();
        let store = local_store(dir.path());
        let content = Bytes::from_static(b"giay khai sinh");
        let hash = Sha256::digest(&content);
        store.put(&hash, content.clone()).await.unwrap();
        store.put(&hash, content.clone()).await.unwrap();
        assert_eq!(store.get(&hash, content.len() as u64).await.unwrap(), content);
        assert!(matches!(store.get(&hash, 3).await, Err(ArchiveError::SizeMismatch { stored_bytes: 14, .. })));
        assert!(store.contains(&hash).await.unwrap());
    }

    #[tokio::test]
    async fn corrupted_blob_is_reported_not_returned() {
        let dir = tempfile::tempdir().unwrap();
        let store = local_store(dir.path());
        let content = Bytes::from_static(b"ban sao chung thuc");
        let hash = Sha256::digest(&content);
        store.put(&hash, content).await.unwrap();
        std::fs::write(on_disk(dir.path(), &hash), b"ban sao chung thuX").unwrap();
        assert!(matches!(store.get(&hash, 18).await, Err(ArchiveError::Corrupt { .. })));
        assert!(matches!(store.check(&hash).await.unwrap(), BlobHealth::Corrupt { stored_bytes: 18, .. }));
    }

    #[tokio::test]
    async fn missing_blob_is_not_found() {
        let dir = tempfile::tempdir().unwrap();
        let store = local_store(dir.path());
        let hash = Sha256::digest(b"nothing");
        assert!(matches!(store.get(&hash, 7).await, Err(ArchiveError::NotFound(_))));
        assert!(!store.contains(&hash).await.unwrap());
        assert_eq!(store.check(&hash).await.unwrap(), BlobHealth::Missing);
    }

    #[tokio::test]
    async fn large_file_goes_through_parts_and_reads_back_in_bounded_chunks() {
        let dir = tempfile::tempdir().unwrap();
        let store = local_store(dir.path());
        let content: Vec<u8> = (0..200_001u32).map(|index| (index * 7 % 251) as u8).collect();
        let blob = spooled(&store, &content).await;
        assert_eq!(blob.hash, Sha256::digest(&content));
        store.put_file(&blob).await.unwrap();
        store.put_file(&blob).await.unwrap();
        let mut stream = store.open(&blob.hash).await.unwrap();
        let mut read = Vec::new();
        while let Some(chunk) = stream.next_chunk(32 * 1024).await.unwrap() {
            assert!(chunk.len() <= 32 * 1024, "chunk of {} bytes", chunk.len());
            read.extend_from_slice(&chunk);
        }
        assert_eq!(read, content);
        assert_eq!(store.check(&blob.hash).await.unwrap(), BlobHealth::Good);
    }

    #[tokio::test]
    async fn existing_blob_of_another_size_is_refused_not_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let store = local_store(dir.path());
        let content = vec![5u8; 100_000];
        let blob = spooled(&store, &content).await;
        let path = on_disk(dir.path(), &blob.hash);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, b"short").unwrap();
        assert!(matches!(store.put_file(&blob).await, Err(ArchiveError::SizeMismatch { stored_bytes: 5, .. })));
        assert_eq!(std::fs::read(&path).unwrap(), b"short");
    }

    #[tokio::test]
    async fn repair_replaces_only_a_bad_copy() {
        let dir = tempfile::tempdir().unwrap();
        let store = local_store(dir.path());
        for size in [1_000usize, 150_000] {
            let content = vec![size as u8; size];
            let blob = spooled(&store, &content).await;
            assert_eq!(store.repair(&blob).await.unwrap(), RepairOutcome::Restored);
            assert_eq!(store.repair(&blob).await.unwrap(), RepairOutcome::AlreadyGood);
            let path = on_disk(dir.path(), &blob.hash);
            let mut bad = content.clone();
            bad[size / 2] ^= 1;
            std::fs::write(&path, &bad).unwrap();
            assert_eq!(store.repair(&blob).await.unwrap(), RepairOutcome::Replaced);
            assert_eq!(std::fs::read(&path).unwrap(), content);
        }
    }
}
