//! The spool: files being received (uploads, repairs, and in a cluster with per-node
//! storage, replicas pushed by peers and blobs fetched from them) are written to temporary
//! files under `data_dir/spool` while they are hashed, so the node never holds a whole file
//! in memory.
//!
//! A spool file is deleted when its handle drops: after the blob is stored, when the upload
//! fails or the client goes away. Files left by a crash are removed by [`Spool::open`] at
//! startup, which the node calls only while it holds the lock on its state store, so no
//! other process is using them. Disk use is bounded by the callers: at most one file per
//! upload in progress (`concurrent_uploads_max` × `file_size_bytes_max`) plus one per
//! scrub repair, replica received or blob fetched. This module never decides what a file
//! is for or where it is stored.

use std::path::{Path, PathBuf};

use tokio::io::AsyncWriteExt;

use super::ArchiveError;
use crate::domain::Sha256;

/// Prefix of every spool file, so that startup cleanup removes only what the spool made.
const SPOOL_FILE_PREFIX: &str = "incoming-";
/// Entries examined by the startup cleanup; a spool holding more was not made by kyso.
const STALE_ENTRIES_MAX: usize = 100_000;

/// The directory of files being received.
#[derive(Clone, Debug)]
pub struct Spool {
    dir: PathBuf,
}

impl Spool {
    /// Creates the directory if needed and removes files a crashed run left behind. The
    /// caller MUST hold the node's data-directory lock (the state store) first.
    pub fn open(dir: &Path) -> Result<Spool, ArchiveError> {
        std::fs::create_dir_all(dir)
            .map_err(|error| ArchiveError::Spool(format!("cannot create spool directory {}: {error}", dir.display())))?;
        let entries = std::fs::read_dir(dir)
            .map_err(|error| ArchiveError::Spool(format!("cannot list spool directory {}: {error}", dir.display())))?;
        let mut removed = 0usize;
        for entry in entries.take(STALE_ENTRIES_MAX).flatten() {
            let is_ours = entry.file_name().to_string_lossy().starts_with(SPOOL_FILE_PREFIX);
            if is_ours && entry.file_type().map(|kind| kind.is_file()).unwrap_or(false) {
                std::fs::remove_file(entry.path()).map_err(|error| {
                    ArchiveError::Spool(format!("cannot remove stale spool file {}: {error}", entry.path().display()))
                })?;
                removed += 1;
            }
        }
        if removed > 0 {
            tracing::info!(removed, dir = %dir.display(), "removed stale spool files from an interrupted run");
        }
        Ok(Spool { dir: dir.to_path_buf() })
    }

    /// A new, empty spool file.
    pub async fn create(&self) -> Result<SpoolWriter, ArchiveError> {
        let dir = self.dir.clone();
        let named = tokio::task::spawn_blocking(move || tempfile::Builder::new().prefix(SPOOL_FILE_PREFIX).tempfile_in(&dir))
            .await
            .map_err(|error| ArchiveError::Spool(format!("spool task failed: {error}")))?
            .map_err(|error| {
                ArchiveError::Spool(format!("cannot create a file in {}: {error}; check free disk space", self.dir.display()))
            })?;
        let (file, path) = named.into_parts();
        Ok(SpoolWriter {
            file: tokio::fs::File::from_std(file),
            path,
            hasher: ring::digest::Context::new(&ring::digest::SHA256),
            size_bytes: 0,
        })
    }
}

/// A spool file being written; hashes what it writes. Dropping it deletes the file.
pub struct SpoolWriter {
    file: tokio::fs::File,
    path: tempfile::TempPath,
    hasher: ring::digest::Context,
    size_bytes: u64,
}

impl SpoolWriter {
    pub async fn write(&mut self, chunk: &[u8]) -> Result<(), ArchiveError> {
        self.file.write_all(chunk).await.map_err(|error| {
            ArchiveError::Spool(format!("cannot write to {}: {error}; check free disk space", self.path.display()))
        })?;
        self.hasher.update(chunk);
        self.size_bytes += chunk.len() as u64;
        Ok(())
    }

    /// Bytes written so far.
    pub fn size_bytes(&self) -> u64 {
        self.size_bytes
    }

    /// Flushes the file and returns it with its hash and size.
    pub async fn finish(mut self) -> Result<SpooledBlob, ArchiveError> {
        self.file
            .flush()
            .await
            .map_err(|error| ArchiveError::Spool(format!("cannot write to {}: {error}", self.path.display())))?;
        let hash = Sha256::from_slice(self.hasher.finish().as_ref()).expect("SHA-256 digests are 32 bytes");
        Ok(SpooledBlob { path: self.path, hash, size_bytes: self.size_bytes })
    }
}

/// A complete spool file with the hash and size of its bytes. Dropping it deletes the file.
#[derive(Debug)]
pub struct SpooledBlob {
    path: tempfile::TempPath,
    pub hash: Sha256,
    pub size_bytes: u64,
}

impl SpooledBlob {
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn spool_files_are_hashed_and_removed_when_dropped_or_left_by_a_crash() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path()).unwrap();
        let mut writer = spool.create().await.unwrap();
        writer.write(b"ho so ").await.unwrap();
        writer.write(b"mot cua").await.unwrap();
        let blob = writer.finish().await.unwrap();
        assert_eq!(blob.hash, Sha256::digest(b"ho so mot cua"));
        assert_eq!(blob.size_bytes, 13);
        let path = blob.path().to_path_buf();
        assert_eq!(std::fs::read(&path).unwrap(), b"ho so mot cua");
        drop(blob);
        assert!(!path.exists(), "a dropped spool file must be deleted");

        let abandoned = spool.create().await.unwrap();
        std::mem::forget(abandoned);
        std::fs::write(dir.path().join("operator-notes.txt"), b"not ours").unwrap();
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2);
        Spool::open(dir.path()).unwrap();
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|entry| entry.unwrap().file_name()).collect();
        assert_eq!(left, vec![std::ffi::OsString::from("operator-notes.txt")]);
    }
}
