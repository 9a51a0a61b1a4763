//! Scrub: re-read every archived blob, re-hash it, and report copies that are missing or
//! whose bytes no longer match their hash; optionally repair them from a peer node that
//! holds good copies (per-node local storage).
//!
//! A scrub reads what the state store says was archived (the `blobs` table), in pages, one
//! blob at a time with bounded memory. It never deletes anything, and it writes only in
//! place of a copy found missing or corrupt, with bytes whose hash it checked first (see
//! [`crate::archive::BlobStore::repair`]). Blobs archived while a scrub runs may or may not
//! be checked by it. This module knows no gRPC: the peer is a [`BlobPeer`].

use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use kyso_cluster::Proposer;
use tokio::sync::mpsc;

use super::{Kyso, ServiceError};
use crate::archive::{ArchiveError, BlobHealth, RepairOutcome, SpoolWriter};
use crate::domain::Sha256;

/// Blobs read from the state store per page.
pub const SCRUB_PAGE_BLOBS: usize = 1000;
/// Least time between two progress reports (problems are reported at once).
pub const SCRUB_PROGRESS_INTERVAL: Duration = Duration::from_millis(200);

/// A node that may hold good copies of this node's blobs.
pub trait BlobPeer: Send + Sync {
    /// The peer's address, for messages.
    fn describe(&self) -> String;
    /// Writes the blob's bytes as the peer sends them into `into`, refusing more than
    /// `size_bytes_max`. The caller checks the hash; the peer is not trusted.
    fn fetch<'a>(&'a self, hash: &'a Sha256, size_bytes_max: u64, into: &'a mut SpoolWriter) -> BoxFuture<'a, Result<(), String>>;
}

/// What is wrong with one blob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finding {
    Missing,
    Corrupt { actual: Sha256, stored_bytes: u64 },
}

#[derive(Debug, Clone)]
pub struct ScrubProblem {
    pub hash: Sha256,
    pub expected_size_bytes: u64,
    pub finding: Finding,
    /// `None` without a peer; otherwise what the repair did or why it failed.
    pub repair: Option<Result<RepairOutcome, String>>,
}

impl ScrubProblem {
    pub fn repaired(&self) -> bool {
        matches!(self.repair, Some(Ok(_)))
    }
}

/// One report of a running scrub; the last has `done` set.
#[derive(Debug, Clone, Default)]
pub struct ScrubProgress {
    pub blobs_total: u64,
    pub bytes_total: u64,
    pub blobs_checked: u64,
    pub bytes_checked: u64,
    pub problems_found: u64,
    pub problems_repaired: u64,
    pub problem: Option<ScrubProblem>,
    pub done: bool,
}

impl<P: Proposer> Kyso<P> {
    /// Checks every archived blob, sending progress to `progress`; stops early (Ok) when
    /// the receiver is gone, with UNAVAILABLE when the object store is.
    #[tracing::instrument(skip_all, fields(peer = peer.map(|peer| peer.describe())))]
    pub async fn scrub(&self, peer: Option<&dyn BlobPeer>, progress: mpsc::Sender<ScrubProgress>) -> Result<(), ServiceError> {
        let (blobs_total, bytes_total) = self.state.blob_totals()?;
        let mut report = ScrubProgress { blobs_total, bytes_total, ..ScrubProgress::default() };
        let mut last_sent = Instant::now();
        if progress.send(report.clone()).await.is_err() {
            return Ok(());
        }
        let pages_max = blobs_total / SCRUB_PAGE_BLOBS as u64 + 2;
        let mut after: Option<Sha256> = None;
        for _ in 0..pages_max {
            let page = self.state.blobs_after(after.as_ref(), SCRUB_PAGE_BLOBS)?;
            let Some(last) = page.last() else { break };
            after = Some(last.0);
            for (hash, size_bytes) in page {
                let problem = self.scrub_one(&hash, size_bytes, peer).await.map_err(|error| {
                    ServiceError::Unavailable(format!(
                        "{error}; the scrub stopped after {} of {} blobs, run it again when the store is back",
                        report.blobs_checked, report.blobs_total
                    ))
                })?;
                report.blobs_checked += 1;
                report.bytes_checked += size_bytes;
                if let Some(problem) = &problem {
                    report.problems_found += 1;
                    report.problems_repaired += u64::from(problem.repaired());
                    tracing::warn!(hash = %problem.hash, finding = ?problem.finding, repair = ?problem.repair, "scrub found a bad blob");
                }
                let due = problem.is_some() || last_sent.elapsed() >= SCRUB_PROGRESS_INTERVAL;
                report.problem = problem;
                if due {
                    last_sent = Instant::now();
                    if progress.send(report.clone()).await.is_err() {
                        return Ok(());
                    }
                }
            }
        }
        report.problem = None;
        report.done = true;
        tracing::info!(checked = report.blobs_checked, problems = report.problems_found, repaired = report.problems_repaired, "scrub finished");
        let _ = progress.send(report).await;
        Ok(())
    }

    /// Checks one blob and repairs it when a peer is given. Errors only when the store
    /// itself cannot be read.
    async fn scrub_one(&self, hash: &Sha256, size_bytes: u64, peer: Option<&dyn BlobPeer>) -> Result<Option<ScrubProblem>, ArchiveError> {
        let finding = match self.blobs.check(hash).await? {
            BlobHealth::Good => return Ok(None),
            BlobHealth::Missing => Finding::Missing,
            BlobHealth::Corrupt { actual, stored_bytes } => Finding::Corrupt { actual, stored_bytes },
        };
        let repair = match peer {
            Some(peer) => Some(self.repair_from(peer, hash, size_bytes).await),
            None => None,
        };
        Ok(Some(ScrubProblem { hash: *hash, expected_size_bytes: size_bytes, finding, repair }))
    }

    /// Fetches a good copy from the peer into the spool, checks its hash and size, and
    /// lets the blob store replace the bad copy with it.
    async fn repair_from(&self, peer: &dyn BlobPeer, hash: &Sha256, size_bytes: u64) -> Result<RepairOutcome, String> {
        let mut writer = self.blobs.spool().create().await.map_err(|error| error.to_string())?;
        peer.fetch(hash, size_bytes, &mut writer).await?;
        let fetched = writer.finish().await.map_err(|error| error.to_string())?;
        if fetched.hash != *hash || fetched.size_bytes != size_bytes {
            return Err(format!(
                "{} sent {} bytes that hash to {}, not the {size_bytes} bytes of {hash}; nothing was written",
                peer.describe(),
                fetched.size_bytes,
                fetched.hash
            ));
        }
        self.blobs.repair(&fetched).await.map_err(|error| error.to_string())
    }
}
