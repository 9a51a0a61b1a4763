//! How soon a cold cluster certifies at its steady rate. Issue 18 asks that 64 clients
//! starting at once on freshly started nodes, whose signer key no node has unsealed yet,
//! see the steady rate within 2 s: one PIN unseal (600,000 PBKDF2 rounds) per signer and
//! node, however many calls wait for it.
//!
//! A cold run has no warm-up: every success's completion time since the clients started
//! ([`crate::load::run_with_timeline`]) is kept. "Steady" is the rate over the run's second
//! half; the run reached it at the start of the first one-second window (tried every
//! 100 ms) that completed at least 90 % of that rate.

use serde::{Deserialize, Serialize};

/// The window whose rate is compared with the steady rate.
pub const RAMP_WINDOW_MS: u32 = 1000;
/// How far apart the windows tried start.
pub const RAMP_STEP_MS: u32 = 100;
/// The share of the steady rate a window must reach.
pub const STEADY_SHARE: f64 = 0.9;
/// The target: steady within this many seconds of the clients starting.
pub const STEADY_WITHIN_SECONDS: f64 = 2.0;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ColdStart {
    /// Length of the run, from the clients' start.
    pub run_seconds: f64,
    /// Successes per second over the run's second half.
    pub steady_per_second: f64,
    /// When the first call succeeded (on a cold node, after its unseal).
    pub first_success_seconds: Option<f64>,
    /// Successes in the first second.
    pub first_second: u64,
    /// Start of the first one-second window at [`STEADY_SHARE`] of the steady rate; `None`
    /// when no window did (or nothing succeeded).
    pub steady_after_seconds: Option<f64>,
}

impl ColdStart {
    pub fn met(&self) -> bool {
        self.steady_after_seconds.is_some_and(|seconds| seconds <= STEADY_WITHIN_SECONDS)
    }
}

/// `seconds` with `decimals` places, or "never": how a cold run's moments are printed.
pub fn seconds_or_never(seconds: Option<f64>, decimals: usize) -> String {
    seconds.map_or_else(|| "never".to_string(), |seconds| format!("{seconds:.decimals$} s"))
}

/// Reads a cold run's completion times (milliseconds since the clients started, any order)
/// of a run that lasted `run_ms`.
pub fn cold_start(completions_ms: &[u32], run_ms: u32) -> ColdStart {
    let mut sorted = completions_ms.to_vec();
    sorted.sort_unstable();
    let count_in = |from: u32, to: u32| (sorted.partition_point(|&at| at < to) - sorted.partition_point(|&at| at < from)) as u64;
    let half = run_ms / 2;
    let steady_per_second = if run_ms > half { count_in(half, run_ms) as f64 * 1000.0 / f64::from(run_ms - half) } else { 0.0 };
    let needed = steady_per_second * STEADY_SHARE * f64::from(RAMP_WINDOW_MS) / 1000.0;
    let steady_after_seconds = (steady_per_second > 0.0)
        .then(|| {
            (0..=run_ms.saturating_sub(RAMP_WINDOW_MS))
                .step_by(RAMP_STEP_MS as usize)
                .find(|&start| count_in(start, start + RAMP_WINDOW_MS) as f64 >= needed)
                .map(|start| f64::from(start) / 1000.0)
        })
        .flatten();
    ColdStart {
        run_seconds: f64::from(run_ms) / 1000.0,
        steady_per_second,
        first_success_seconds: sorted.first().map(|&at| f64::from(at) / 1000.0),
        first_second: count_in(0, 1000),
        steady_after_seconds,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One completion every `every_ms` from `from_ms` (inclusive) to `to_ms` (exclusive).
    fn steady(from_ms: u32, to_ms: u32, every_ms: u32) -> Vec<u32> {
        (from_ms..to_ms).step_by(every_ms as usize).collect()
    }

    #[test]
    fn a_run_at_its_rate_from_the_start_is_steady_at_once() {
        let cold = cold_start(&steady(0, 6000, 10), 6000);
        assert_eq!(cold.steady_per_second, 100.0);
        assert_eq!(cold.first_second, 100);
        assert_eq!(cold.steady_after_seconds, Some(0.0));
        assert!(cold.met());
    }

    #[test]
    fn a_stall_delays_the_steady_window_by_its_length_less_the_slack() {
        // Nothing for 1.5 s (the unseal), then 100/s: [1.4 s, 2.4 s) holds 90 completions,
        // 90 % of the steady rate; [1.3 s, 2.3 s) holds 80.
        let mut completions = steady(1500, 6000, 10);
        completions.reverse();
        let cold = cold_start(&completions, 6000);
        assert_eq!(cold.steady_per_second, 100.0);
        assert_eq!(cold.first_second, 0);
        assert_eq!(cold.first_success_seconds, Some(1.5));
        assert_eq!(cold.steady_after_seconds, Some(1.4));
        assert!(cold.met());
    }

    #[test]
    fn a_slow_ramp_misses_the_target() {
        // A trickle (10/s) for 2.5 s, then 100/s: the first window at 90 starts at 2.4 s.
        let mut completions = steady(0, 2500, 100);
        completions.extend(steady(2500, 8000, 10));
        let cold = cold_start(&completions, 8000);
        assert_eq!(cold.steady_after_seconds, Some(2.4));
        assert!(!cold.met());
    }

    #[test]
    fn a_run_without_successes_never_reaches_a_steady_rate() {
        let cold = cold_start(&[], 6000);
        assert_eq!(cold.steady_per_second, 0.0);
        assert_eq!(cold.first_success_seconds, None);
        assert_eq!(cold.steady_after_seconds, None);
        assert!(!cold.met());
    }
}
