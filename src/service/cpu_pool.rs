//! The pool that signs: one thread per core, fed by a bounded queue.
//!
//! Signing, the self-check of a fresh signature and building a certified PDF are CPU work
//! of a fraction of a millisecond to a few milliseconds. On tokio's blocking pool each
//! concurrent call got a thread of its own (135 threads in a 3-node cluster under 64
//! clients), and the kernel switched between them: bounding that pool to the two cores
//! raised one-node certify by 18-27 % (`benches/results/2026-12-07-cpu-pool/`). So this
//! work goes to as many threads as the machine has cores; callers beyond
//! [`QUEUE_MAX`] wait (asynchronously, under their request's deadline) for a place in the
//! queue. PIN unseals (PBKDF2, hundreds of milliseconds) stay on tokio's blocking pool, so
//! that one never holds a signing thread that long.

use std::sync::LazyLock;

/// Jobs queued or running at most; the next caller waits for one to finish.
pub const QUEUE_MAX: usize = 1024;

type Job = Box<dyn FnOnce() + Send>;

struct CpuPool {
    sender: crossbeam_channel::Sender<Job>,
    places: tokio::sync::Semaphore,
    threads: usize,
}

static POOL: LazyLock<CpuPool> = LazyLock::new(|| {
    let (sender, receiver) = crossbeam_channel::bounded::<Job>(QUEUE_MAX);
    let cores = std::thread::available_parallelism().map(usize::from).unwrap_or(2);
    let mut threads = 0;
    for number in 0..cores {
        let receiver = receiver.clone();
        let spawned = std::thread::Builder::new().name(format!("kyso-cpu-{number}")).spawn(move || {
            // The pool lives as long as the process: the sender is never dropped.
            while let Ok(job) = receiver.recv() {
                job();
            }
        });
        match spawned {
            Ok(_) => threads += 1,
            Err(error) => tracing::error!(%error, "cannot start a signing thread; signing runs on the threads that started"),
        }
    }
    CpuPool { sender, places: tokio::sync::Semaphore::new(QUEUE_MAX), threads }
});

/// Why a job gave no answer.
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    #[error("the job panicked: {0}")]
    Panicked(String),
    #[error("no signing thread could be started")]
    NoThreads,
    /// What the pool's own bounds rule out while its threads live (a closed place count, a
    /// full or closed queue, a job dropped unanswered): reported as what happened, not
    /// as a missing thread.
    #[error("the signing pool lost the job: {0}")]
    Lost(&'static str),
}

/// How many threads the pool runs (the machine's cores, unless a spawn failed).
pub fn threads() -> usize {
    POOL.threads
}

/// Runs `work` on the pool and waits for its answer. A panic in `work` is caught and
/// answered as [`PoolError::Panicked`]; the thread goes on with the next job.
pub async fn run<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> Result<T, PoolError> {
    let pool = &*POOL;
    if pool.threads == 0 {
        return Err(PoolError::NoThreads);
    }
    // Never closed: waiting here only ends with a place.
    let place = pool.places.acquire().await.map_err(|_| PoolError::Lost("its places were closed"))?;
    let (answer, answered) = tokio::sync::oneshot::channel();
    let job: Job = Box::new(move || {
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(work)).map_err(|panic| {
            let message = panic
                .downcast_ref::<&str>()
                .map(|text| text.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "no message".to_string());
            PoolError::Panicked(message)
        });
        // The caller may have gone (its deadline passed): the answer is dropped then.
        let _ = answer.send(outcome);
        drop(place);
    });
    // The queue holds QUEUE_MAX jobs and each holds a place: there is room.
    pool.sender.try_send(job).map_err(|error| PoolError::Lost(if error.is_full() { "its queue was full" } else { "its threads had exited" }))?;
    answered.await.map_err(|_| PoolError::Lost("the job was dropped unanswered"))?
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn jobs_run_at_most_one_per_core_at_once_and_each_gets_its_answer() {
        let running = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let jobs = (0..threads() * 8).map(|number| {
            let (running, most) = (running.clone(), most.clone());
            tokio::spawn(run(move || {
                let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(now, Ordering::SeqCst);
                // Long enough for other jobs to start if the pool let them.
                let until = std::time::Instant::now() + std::time::Duration::from_millis(2);
                while std::time::Instant::now() < until {
                    std::hint::spin_loop();
                }
                running.fetch_sub(1, Ordering::SeqCst);
                number * 2
            }))
        });
        let answers: Vec<usize> = futures::future::join_all(jobs).await.into_iter().map(|joined| joined.expect("joined").expect("answered")).collect();
        assert_eq!(answers, (0..threads() * 8).map(|number| number * 2).collect::<Vec<_>>());
        let most = most.load(Ordering::SeqCst);
        assert!(most >= 1 && most <= threads(), "{most} jobs ran at once on {} threads", threads());
    }

    #[tokio::test]
    async fn a_panicking_job_is_answered_as_such_and_the_pool_goes_on() {
        let error = run(|| -> u32 { panic!("a faulty signer") }).await.expect_err("panicked");
        assert!(matches!(&error, PoolError::Panicked(message) if message == "a faulty signer"), "{error:?}");
        for round in 0..threads() * 2 {
            assert_eq!(run(move || round + 1).await.expect("answered"), round + 1);
        }
    }
}
