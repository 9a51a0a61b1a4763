//! The closed-loop driver: N clients, each issuing one operation at a time, for a bounded
//! time and a bounded number of operations.
//!
//! A run has a warm-up (operations run but are not recorded) and a measured window. An
//! operation counts when it both starts and completes inside the window, so throughput is
//! the operations completed in the window divided by its length. The driver never runs
//! longer than warm-up + window + the slowest in-flight operation's remaining time, and
//! never starts more than `operations_max` operations.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::stats::{Samples, Summary};

/// How much load to apply and for how long.
#[derive(Debug, Clone, Copy)]
pub struct LoadPlan {
    pub clients: usize,
    pub warmup: Duration,
    pub window: Duration,
    /// Operations started in total (warm-up included) at most.
    pub operations_max: u64,
}

/// One client's view of an operation: its client number and its sequence number within
/// that client. The future resolves to `Err(kind)` on failure, `kind` naming the error.
pub trait Operation: Send + Sync + 'static {
    fn run(&self, client: usize, sequence: u64) -> impl Future<Output = Result<(), String>> + Send;
}

/// Runs `operation` under `plan` and summarises the measured window.
pub async fn run<O: Operation>(plan: LoadPlan, operation: Arc<O>) -> Summary {
    drive(plan, operation, false).await.0
}

/// [`run`], with the completion time of every success in the measured window, in
/// milliseconds since the clients started (unsorted): what [`crate::cold`] reads to tell
/// how soon a cold cluster reached its steady rate. Bounded as the samples are.
pub async fn run_with_timeline<O: Operation>(plan: LoadPlan, operation: Arc<O>) -> (Summary, Vec<u32>) {
    drive(plan, operation, true).await
}

async fn drive<O: Operation>(plan: LoadPlan, operation: Arc<O>, timeline: bool) -> (Summary, Vec<u32>) {
    assert!(plan.clients > 0, "a load plan needs at least one client");
    let started = Arc::new(AtomicU64::new(0));
    let begin = Instant::now();
    let window_start = begin + plan.warmup;
    let window_end = window_start + plan.window;
    let mut tasks = Vec::with_capacity(plan.clients);
    for client in 0..plan.clients {
        let operation = operation.clone();
        let started = started.clone();
        tasks.push(tokio::spawn(async move {
            let mut samples = Samples::default();
            let mut completions = Vec::new();
            let mut sequence = 0u64;
            loop {
                let now = Instant::now();
                if now >= window_end || started.fetch_add(1, Ordering::Relaxed) >= plan.operations_max {
                    break;
                }
                let result = operation.run(client, sequence).await;
                sequence += 1;
                let done = Instant::now();
                if now < window_start || done > window_end {
                    continue;
                }
                match result {
                    Ok(()) => {
                        samples.record(done - now);
                        if timeline {
                            completions.push(u32::try_from((done - begin).as_millis()).unwrap_or(u32::MAX));
                        }
                    }
                    Err(kind) => samples.record_error(&kind),
                }
            }
            (samples, completions)
        }));
    }
    let mut all = Samples::default();
    let mut completions = Vec::new();
    for task in tasks {
        match task.await {
            Ok((samples, times)) => {
                all.merge(samples);
                completions.extend(times);
            }
            Err(error) => all.record_error(&format!("client task failed: {error}")),
        }
    }
    // A run cut short by `operations_max` measured only until its last operation.
    let measured_until = Instant::now().min(window_end);
    (all.summarise(measured_until.saturating_duration_since(window_start)), completions)
}

/// A small deterministic generator (xorshift64*) for picking keys: no dependency, the same
/// sequence for the same seed, and nothing here needs cryptographic randomness.
#[derive(Debug, Clone)]
pub struct PickRandom(u64);

impl PickRandom {
    pub fn new(seed: u64) -> Self {
        PickRandom(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number in `0..bound`; `bound` must be positive.
    pub fn below(&mut self, bound: usize) -> usize {
        (self.next_u64() % bound as u64) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Sleep;

    impl Operation for Sleep {
        async fn run(&self, client: usize, _sequence: u64) -> Result<(), String> {
            tokio::time::sleep(Duration::from_millis(2)).await;
            if client == 1 {
                return Err("Unavailable".into());
            }
            Ok(())
        }
    }

    #[tokio::test]
    async fn a_run_stops_at_its_operation_cap_and_counts_errors_apart() {
        let plan = LoadPlan { clients: 2, warmup: Duration::ZERO, window: Duration::from_secs(30), operations_max: 40 };
        let began = Instant::now();
        let summary = run(plan, Arc::new(Sleep)).await;
        assert!(began.elapsed() < Duration::from_secs(10), "the cap did not end the run");
        assert_eq!(summary.operations + summary.errors, 40);
        assert!(summary.operations >= 10 && summary.errors >= 10, "{summary:?}");
        assert!(summary.p50_ms >= 2.0, "{summary:?}");
    }

    #[tokio::test]
    async fn a_run_stops_at_the_end_of_its_window() {
        let plan = LoadPlan {
            clients: 1,
            warmup: Duration::from_millis(50),
            window: Duration::from_millis(200),
            operations_max: u64::MAX,
        };
        let began = Instant::now();
        let summary = run(plan, Arc::new(Sleep)).await;
        assert!(began.elapsed() < Duration::from_secs(5));
        assert!(summary.operations > 5 && summary.operations < 200, "{summary:?}");
        assert!((summary.seconds - 0.2).abs() < 0.05, "{summary:?}");
    }

    #[tokio::test]
    async fn a_timeline_holds_each_measured_success_once_inside_its_window() {
        let plan = LoadPlan { clients: 2, warmup: Duration::from_millis(50), window: Duration::from_millis(200), operations_max: u64::MAX };
        let (summary, completions) = run_with_timeline(plan, Arc::new(Sleep)).await;
        assert!(summary.operations > 5, "{summary:?}");
        assert_eq!(completions.len() as u64, summary.operations, "client 1 fails every call: its errors have no completion time");
        assert!(completions.iter().all(|&at| (50..=250).contains(&at)), "{completions:?}");
    }

    #[test]
    fn picks_stay_below_the_bound_and_repeat_for_a_seed() {
        let mut first = PickRandom::new(7);
        let mut second = PickRandom::new(7);
        for _ in 0..1000 {
            let pick = first.below(10);
            assert!(pick < 10);
            assert_eq!(pick, second.below(10));
        }
    }
}
