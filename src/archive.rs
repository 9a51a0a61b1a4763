//! The blob archive: write-once, content-addressed storage of scanned files through the
//! `object_store` crate (the local filesystem by default; S3-compatible stores later).
//!
//! Object keys derive from the SHA-256 only. A blob is never overwritten or deleted: writes
//! use `PutMode::Create`, and an existing blob with the same hash is success. Every read is
//! re-hashed before its bytes are handed out. This module must never know dossiers, signers
//! or gRPC: it stores bytes under their hash.

use std::sync::Arc;

use bytes::Bytes;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};

use crate::domain::Sha256;

#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("blob {0} is not in the archive")]
    NotFound(Sha256),
    #[error("blob {hash} is corrupt in storage: its bytes hash to {actual}; restore it from a replica or backup")]
    Corrupt { hash: Sha256, actual: Sha256 },
    #[error("blob {hash} exists with {stored_bytes} bytes, expected {expected_bytes}: storage holds a different object under this key")]
    SizeMismatch { hash: Sha256, stored_bytes: u64, expected_bytes: u64 },
    #[error("object storage is unavailable: {0}")]
    Unavailable(String),
}

/// Content-addressed, write-once blob storage.
#[derive(Clone, Debug)]
pub struct BlobStore {
    store: Arc<dyn ObjectStore>,
}

/// Where a blob lives: `blobs/sha256/<2 hex>/<2 hex>/<64 hex>`. Derived from the hash only,
/// so no client-chosen name ever reaches a storage path.
pub fn blob_key(hash: &Sha256) -> ObjectPath {
    let hex = hash.to_hex();
    ObjectPath::from(format!("blobs/sha256/{}/{}/{}", &hex[0..2], &hex[2..4], hex))
}

impl BlobStore {
    pub fn new(store: Arc<dyn ObjectStore>) -> BlobStore {
        BlobStore { store }
    }

    /// A store on the local filesystem under `root` (created if missing).
    pub fn local(root: &std::path::Path) -> Result<BlobStore, ArchiveError> {
        std::fs::create_dir_all(root)
            .map_err(|error| ArchiveError::Unavailable(format!("cannot create {}: {error}", root.display())))?;
        let store = object_store::local::LocalFileSystem::new_with_prefix(root)
            .map_err(|error| ArchiveError::Unavailable(error.to_string()))?;
        Ok(BlobStore::new(Arc::new(store)))
    }

    /// Stores `content` under its hash, which the caller computed while receiving it; the
    /// hash is checked again here before anything is written. Idempotent: storing a blob
    /// that already exists (same hash, same size) succeeds without writing.
    pub async fn put(&self, hash: &Sha256, content: Bytes) -> Result<(), ArchiveError> {
        let actual = Sha256::digest(&content);
        assert_eq!(&actual, hash, "caller passed a hash that does not match the content");
        let key = blob_key(hash);
        let options = PutOptions { mode: PutMode::Create, ..PutOptions::default() };
        let size_bytes = content.len() as u64;
        match self.store.put_opts(&key, PutPayload::from_bytes(content), options).await {
            Ok(_) => Ok(()),
            Err(object_store::Error::AlreadyExists { .. }) => self.check_existing(hash, size_bytes).await,
            Err(error) => Err(ArchiveError::Unavailable(error.to_string())),
        }
    }

    async fn check_existing(&self, hash: &Sha256, expected_bytes: u64) -> Result<(), ArchiveError> {
        let meta = self.store.head(&blob_key(hash)).await.map_err(|error| map_read_error(hash, error))?;
        if meta.size != expected_bytes {
            return Err(ArchiveError::SizeMismatch { hash: *hash, stored_bytes: meta.size, expected_bytes });
        }
        Ok(())
    }

    /// Reads a whole blob and checks its hash before returning it.
    pub async fn get(&self, hash: &Sha256) -> Result<Bytes, ArchiveError> {
        let result = self.store.get(&blob_key(hash)).await.map_err(|error| map_read_error(hash, error))?;
        let content = result.bytes().await.map_err(|error| map_read_error(hash, error))?;
        let actual = Sha256::digest(&content);
        if &actual != hash {
            return Err(ArchiveError::Corrupt { hash: *hash, actual });
        }
        Ok(content)
    }

    /// Whether the blob exists (without reading it).
    pub async fn contains(&self, hash: &Sha256) -> Result<bool, ArchiveError> {
        match self.store.head(&blob_key(hash)).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(error) => Err(ArchiveError::Unavailable(error.to_string())),
        }
    }
}

fn map_read_error(hash: &Sha256, error: object_store::Error) -> ArchiveError {
    match error {
        object_store::Error::NotFound { .. } => ArchiveError::NotFound(*hash),
        other => ArchiveError::Unavailable(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn stored_blob_reads_back_and_second_put_is_success() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::local(dir.path()).unwrap();
        let content = Bytes::from_static(b"giay khai sinh");
        let hash = Sha256::digest(&content);
        store.put(&hash, content.clone()).await.unwrap();
        store.put(&hash, content.clone()).await.unwrap();
        assert_eq!(store.get(&hash).await.unwrap(), content);
        assert!(store.contains(&hash).await.unwrap());
    }

    #[tokio::test]
    async fn corrupted_blob_is_reported_not_returned() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::local(dir.path()).unwrap();
        let content = Bytes::from_static(b"ban sao chung thuc");
        let hash = Sha256::digest(&content);
        store.put(&hash, content).await.unwrap();
        let on_disk = dir.path().join(blob_key(&hash).as_ref());
        std::fs::write(&on_disk, b"ban sao chung thuX").unwrap();
        assert!(matches!(store.get(&hash).await, Err(ArchiveError::Corrupt { .. })));
    }

    #[tokio::test]
    async fn missing_blob_is_not_found() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::local(dir.path()).unwrap();
        let hash = Sha256::digest(b"nothing");
        assert!(matches!(store.get(&hash).await, Err(ArchiveError::NotFound(_))));
        assert!(!store.contains(&hash).await.unwrap());
    }
}
