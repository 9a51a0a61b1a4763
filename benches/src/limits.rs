//! The machine's limits, measured in the same run as the load: how many fsyncs the data
//! directory's filesystem completes per second, how fast ring signs on one core and on all
//! of them, how fast a full CMS is built and checked, and SHA-256 bandwidth.
//!
//! Each probe is bounded by a time and by an iteration count, whichever comes first.

use std::io::{Seek, SeekFrom, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;
use kyso::crypto::KeyAlgorithm;
use serde::Serialize;

use crate::fixtures::Signer;
use crate::stats::Samples;

/// Bytes written before each fdatasync: one page, as a small commit writes.
pub const FSYNC_BLOCK_BYTES: usize = 4096;

#[derive(Debug, Clone, Serialize)]
pub struct FsyncProbe {
    /// "overwrite" (a preallocated file, like etcd's WAL) or "append" (the file grows).
    pub mode: &'static str,
    pub fsyncs_per_second: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

/// Writes a 4 KiB block and fdatasyncs it, over and over, in a scratch file in `dir`.
pub fn fsync_probe(dir: &Path, mode: &'static str, duration: Duration, iterations_max: u64) -> anyhow::Result<FsyncProbe> {
    let path = dir.join(format!("kyso-bench-fsync-{mode}.tmp"));
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(&path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    let block = vec![0x5au8; FSYNC_BLOCK_BYTES];
    const OVERWRITE_BLOCKS: u64 = 256;
    if mode == "overwrite" {
        for _ in 0..OVERWRITE_BLOCKS {
            file.write_all(&block)?;
        }
        file.sync_all()?;
    }
    let mut samples = Samples::default();
    let began = Instant::now();
    let mut iterations = 0u64;
    while began.elapsed() < duration && iterations < iterations_max {
        if mode == "overwrite" {
            file.seek(SeekFrom::Start((iterations % OVERWRITE_BLOCKS) * FSYNC_BLOCK_BYTES as u64))?;
        }
        let started = Instant::now();
        file.write_all(&block)?;
        file.sync_data()?;
        samples.record(started.elapsed());
        iterations += 1;
    }
    let elapsed = began.elapsed();
    drop(file);
    let _ = std::fs::remove_file(&path);
    let summary = samples.summarise(elapsed);
    Ok(FsyncProbe { mode, fsyncs_per_second: summary.per_second, p50_ms: summary.p50_ms, p99_ms: summary.p99_ms })
}

/// Operations per second of `operation` on one thread, run for `duration` (at least once).
pub fn rate_one_core(duration: Duration, mut operation: impl FnMut()) -> f64 {
    let began = Instant::now();
    let mut count = 0u64;
    while count == 0 || began.elapsed() < duration {
        operation();
        count += 1;
    }
    count as f64 / began.elapsed().as_secs_f64()
}

/// Aggregate operations per second of `operation` on `threads` threads at once.
pub fn rate_all_cores(threads: usize, duration: Duration, operation: impl Fn() + Sync) -> f64 {
    let began = Instant::now();
    let counts: Vec<u64> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let mut count = 0u64;
                    while count == 0 || began.elapsed() < duration {
                        operation();
                        count += 1;
                    }
                    count
                })
            })
            .collect();
        handles.into_iter().map(|handle| handle.join().unwrap_or(0)).collect()
    });
    counts.iter().sum::<u64>() as f64 / began.elapsed().as_secs_f64()
}

#[derive(Debug, Clone, Serialize)]
pub struct SignLimits {
    pub algorithm: String,
    /// ring's raw signature over 300 bytes (about the size of CMS signed attributes).
    pub raw_sign_per_second_one_core: f64,
    pub raw_sign_per_second_all_cores: f64,
    /// `kyso::crypto::sign_detached` over the benchmark document, one core.
    pub cms_sign_per_second_one_core: f64,
    /// What certify does per document on the signing thread: sign_detached then
    /// verify_detached of the fresh signature, on all cores.
    pub cms_sign_and_check_per_second_all_cores: f64,
    /// `verify_detached` plus `validate_chain` (what verify does per certification), one core.
    pub cms_verify_and_chain_per_second_one_core: f64,
    pub threads: usize,
    pub document_size_bytes: usize,
}

pub fn sign_limits(algorithm: KeyAlgorithm, document_size: usize, threads: usize, duration: Duration) -> anyhow::Result<SignLimits> {
    let signer = Signer::new(algorithm)?;
    let message = vec![0x31u8; 300];
    let document = crate::target_kyso::document(3, 3, document_size);
    let now = kyso::service::now_unix();
    let cms = signer.cms(&document, now)?;
    let chain = signer.chain_der();
    let anchors = kyso::crypto::TrustAnchors::from_der_list(vec![signer.ca.cert_der.clone()])?;
    let sign = || {
        std::hint::black_box(signer.key.sign(&message).expect("raw signing works"));
    };
    let sign_and_check = || {
        let cms = kyso::crypto::sign_detached(&document, now, &chain, &signer.key).expect("CMS signing works");
        std::hint::black_box(kyso::crypto::verify_detached(&cms, &document).expect("fresh CMS verifies"));
    };
    Ok(SignLimits {
        algorithm: algorithm.to_string(),
        raw_sign_per_second_one_core: rate_one_core(duration, sign),
        raw_sign_per_second_all_cores: rate_all_cores(threads, duration, sign),
        cms_sign_per_second_one_core: rate_one_core(duration, || {
            std::hint::black_box(kyso::crypto::sign_detached(&document, now, &chain, &signer.key).expect("CMS signing works"));
        }),
        cms_sign_and_check_per_second_all_cores: rate_all_cores(threads, duration, sign_and_check),
        cms_verify_and_chain_per_second_one_core: rate_one_core(duration, || {
            let verified = kyso::crypto::verify_detached(&cms, &document).expect("CMS verifies");
            std::hint::black_box(kyso::crypto::validate_chain(&chain, &anchors, verified.signing_time_unix).expect("chain validates"));
        }),
        threads,
        document_size_bytes: document_size,
    })
}

#[derive(Debug, Clone, Serialize)]
pub struct Sha256Limit {
    pub bytes_per_second_one_core: f64,
    pub buffer_bytes: usize,
}

pub fn sha256_limit(duration: Duration) -> Sha256Limit {
    let buffer = vec![0xa5u8; 1 << 20];
    let per_second = rate_one_core(duration, || {
        std::hint::black_box(ring::digest::digest(&ring::digest::SHA256, &buffer));
    });
    Sha256Limit { bytes_per_second_one_core: per_second * buffer.len() as f64, buffer_bytes: buffer.len() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fsync_probe_measures_and_removes_its_scratch_file() {
        let dir = tempfile::tempdir().unwrap();
        for mode in ["overwrite", "append"] {
            let probe = fsync_probe(dir.path(), mode, Duration::from_secs(2), 20).unwrap();
            assert!(probe.fsyncs_per_second > 0.0, "{probe:?}");
            assert!(probe.p50_ms <= probe.p99_ms, "{probe:?}");
        }
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn rates_count_at_least_one_operation() {
        assert!(rate_one_core(Duration::ZERO, || {}) > 0.0);
        assert!(rate_all_cores(2, Duration::from_millis(10), || {}) > 0.0);
    }
}
