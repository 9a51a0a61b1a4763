//! Latency samples and the summary a run reports: throughput and percentiles.
//!
//! Every completed operation's latency is kept (in microseconds, 4 bytes each): runs are
//! bounded in time and count, so a run of 60 s at 100,000 ops/s keeps 24 MB. Percentiles
//! are exact (nearest rank over the sorted samples), not estimated.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

/// Latencies of one client (or of all, once merged), in microseconds.
#[derive(Debug, Default, Clone)]
pub struct Samples {
    latencies_micros: Vec<u32>,
    errors: BTreeMap<String, u64>,
}

impl Samples {
    pub fn record(&mut self, latency: Duration) {
        let micros = u32::try_from(latency.as_micros()).unwrap_or(u32::MAX);
        self.latencies_micros.push(micros);
    }

    pub fn record_error(&mut self, kind: &str) {
        *self.errors.entry(kind.to_string()).or_default() += 1;
    }

    pub fn merge(&mut self, other: Samples) {
        self.latencies_micros.extend(other.latencies_micros);
        for (kind, count) in other.errors {
            *self.errors.entry(kind).or_default() += count;
        }
    }

    pub fn count(&self) -> u64 {
        self.latencies_micros.len() as u64
    }

    /// Summarises the samples of a run whose measured part lasted `elapsed`.
    pub fn summarise(mut self, elapsed: Duration) -> Summary {
        self.latencies_micros.sort_unstable();
        let seconds = elapsed.as_secs_f64().max(f64::EPSILON);
        let sorted = &self.latencies_micros;
        Summary {
            operations: sorted.len() as u64,
            errors: self.errors.values().sum(),
            error_kinds: self.errors,
            seconds,
            per_second: sorted.len() as f64 / seconds,
            p50_ms: percentile_ms(sorted, 0.50),
            p99_ms: percentile_ms(sorted, 0.99),
            p999_ms: percentile_ms(sorted, 0.999),
            max_ms: sorted.last().map(|micros| f64::from(*micros) / 1000.0).unwrap_or(0.0),
        }
    }
}

/// Nearest-rank percentile of sorted microsecond samples, in milliseconds; 0 when empty.
pub fn percentile_ms(sorted_micros: &[u32], quantile: f64) -> f64 {
    if sorted_micros.is_empty() {
        return 0.0;
    }
    let rank = (quantile * sorted_micros.len() as f64).ceil() as usize;
    let index = rank.clamp(1, sorted_micros.len()) - 1;
    f64::from(sorted_micros[index]) / 1000.0
}

/// What one measured run produced.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// Operations that succeeded inside the measured window.
    pub operations: u64,
    pub errors: u64,
    /// Errors by kind (gRPC code name or a short label).
    pub error_kinds: BTreeMap<String, u64>,
    /// Length of the measured window.
    pub seconds: f64,
    /// Successful operations per second.
    pub per_second: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank_over_all_samples() {
        let mut samples = Samples::default();
        for micros in 1..=1000u64 {
            samples.record(Duration::from_micros(micros));
        }
        samples.record_error("Unavailable");
        let summary = samples.summarise(Duration::from_secs(2));
        assert_eq!(summary.operations, 1000);
        assert_eq!(summary.errors, 1);
        assert_eq!(summary.per_second, 500.0);
        assert_eq!(summary.p50_ms, 0.5);
        assert_eq!(summary.p99_ms, 0.99);
        assert_eq!(summary.p999_ms, 0.999);
        assert_eq!(summary.max_ms, 1.0);
    }

    #[test]
    fn merged_samples_keep_every_latency_and_error() {
        let mut first = Samples::default();
        first.record(Duration::from_millis(3));
        first.record_error("DeadlineExceeded");
        let mut second = Samples::default();
        second.record(Duration::from_millis(1));
        second.record_error("DeadlineExceeded");
        first.merge(second);
        let summary = first.summarise(Duration::from_secs(1));
        assert_eq!(summary.operations, 2);
        assert_eq!(summary.error_kinds.get("DeadlineExceeded"), Some(&2));
        assert_eq!(summary.p50_ms, 1.0);
        assert_eq!(summary.max_ms, 3.0);
    }

    #[test]
    fn empty_runs_report_zero_rather_than_panicking() {
        let summary = Samples::default().summarise(Duration::from_secs(1));
        assert_eq!(summary.operations, 0);
        assert_eq!(summary.p99_ms, 0.0);
    }
}
