//! The single-node driver: a one-member log where every proposal commits as soon as the
//! state machine has durably applied it.
//!
//! Group commit: the driver drains every proposal already queued (up to
//! [`DriverConfig::batch_entries_max`] entries and [`DriverConfig::batch_size_bytes_max`]
//! bytes) and hands them to the state machine in one call, so concurrent writers share
//! one transaction and one fsync. It never answers a proposal before its batch is durable.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};

use crate::{DriverConfig, Entry, ProposeError, Proposer, StateMachine};

struct Proposal {
    command: Bytes,
    reply: oneshot::Sender<Result<Bytes, ProposeError>>,
}

/// Handle to a running single-node driver. Cheap to clone.
#[derive(Clone)]
pub struct SingleNode {
    queue: mpsc::Sender<Proposal>,
    stopped: Arc<AtomicBool>,
    command_size_bytes_max: usize,
}

impl SingleNode {
    /// Starts the driver on the current tokio runtime.
    pub fn start<S: StateMachine>(state: Arc<S>, config: DriverConfig) -> Result<Self, ProposeError> {
        let applied = state
            .applied_index()
            .map_err(|error| ProposeError::Stopped(error.to_string()))?;
        let (queue, receiver) = mpsc::channel(config.proposal_queue_depth_max);
        let stopped = Arc::new(AtomicBool::new(false));
        tokio::spawn(run(state, receiver, applied, config.clone(), stopped.clone()));
        Ok(SingleNode { queue, stopped, command_size_bytes_max: config.command_size_bytes_max })
    }

    /// False once the driver stopped after a storage failure.
    pub fn is_healthy(&self) -> bool {
        !self.stopped.load(Ordering::Acquire)
    }
}

impl Proposer for SingleNode {
    async fn propose(&self, command: Bytes) -> Result<Bytes, ProposeError> {
        if command.len() > self.command_size_bytes_max {
            return Err(ProposeError::TooLarge {
                size_bytes: command.len(),
                limit_bytes: self.command_size_bytes_max,
            });
        }
        let (reply, response) = oneshot::channel();
        self.queue.try_send(Proposal { command, reply }).map_err(|error| match error {
            mpsc::error::TrySendError::Full(_) => ProposeError::Busy,
            mpsc::error::TrySendError::Closed(_) => ProposeError::Stopped("driver exited".into()),
        })?;
        response
            .await
            .unwrap_or_else(|_| Err(ProposeError::Stopped("driver exited".into())))
    }

    async fn read_barrier(&self) -> Result<(), ProposeError> {
        // Every acknowledged proposal was applied before it was acknowledged, and there is
        // no other replica: the local state is always current.
        if self.is_healthy() {
            Ok(())
        } else {
            Err(ProposeError::Stopped("state storage failed".into()))
        }
    }

    /// A single node is its own quorum and applies before it answers: only a stopped
    /// driver makes it unhealthy.
    fn check_health(&self, _bounds: &crate::HealthBounds) -> Result<(), crate::Unhealthy> {
        if self.is_healthy() {
            Ok(())
        } else {
            Err(crate::Unhealthy::Stopped("state storage failed".into()))
        }
    }
}

async fn run<S: StateMachine>(
    state: Arc<S>,
    mut receiver: mpsc::Receiver<Proposal>,
    mut applied: u64,
    config: DriverConfig,
    stopped: Arc<AtomicBool>,
) {
    while let Some(first) = receiver.recv().await {
        let batch = drain_batch(first, &mut receiver, &config);
        let entries: Vec<Entry> = batch
            .iter()
            .enumerate()
            .map(|(offset, proposal)| Entry {
                index: applied + 1 + offset as u64,
                term: 1,
                data: proposal.command.clone(),
            })
            .collect();
        let last_index = applied + entries.len() as u64;
        let state_for_apply = state.clone();
        let outcome = tokio::task::spawn_blocking(move || state_for_apply.apply(&entries)).await;
        match outcome {
            Ok(Ok(responses)) => {
                assert_eq!(responses.len(), batch.len(), "state machine must answer every entry");
                applied = last_index;
                for (proposal, response) in batch.into_iter().zip(responses) {
                    let _ = proposal.reply.send(Ok(response));
                }
            }
            Ok(Err(error)) => {
                stop(&stopped, batch, &error.to_string(), &mut receiver);
                return;
            }
            Err(join_error) => {
                stop(&stopped, batch, &format!("apply panicked: {join_error}"), &mut receiver);
                return;
            }
        }
    }
}

fn drain_batch(first: Proposal, receiver: &mut mpsc::Receiver<Proposal>, config: &DriverConfig) -> Vec<Proposal> {
    let mut size_bytes = first.command.len();
    let mut batch = vec![first];
    while batch.len() < config.batch_entries_max && size_bytes < config.batch_size_bytes_max {
        match receiver.try_recv() {
            Ok(next) => {
                size_bytes += next.command.len();
                batch.push(next);
            }
            Err(_) => break,
        }
    }
    batch
}

/// A failed write must stop the node, never advance: answer everything in flight as
/// stopped (outcome unknown to the caller) and refuse new work.
fn stop(stopped: &AtomicBool, batch: Vec<Proposal>, reason: &str, receiver: &mut mpsc::Receiver<Proposal>) {
    tracing::error!(reason, "state machine failed; single-node driver stopped");
    stopped.store(true, Ordering::Release);
    receiver.close();
    for proposal in batch {
        let _ = proposal.reply.send(Err(ProposeError::Stopped(reason.to_string())));
    }
    while let Ok(proposal) = receiver.try_recv() {
        let _ = proposal.reply.send(Err(ProposeError::Stopped(reason.to_string())));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::StateMachineError;
    use std::sync::Mutex;

    #[derive(Default)]
    struct Recorder {
        log: Mutex<Vec<(u64, Bytes)>>,
        batches: Mutex<Vec<usize>>,
        fail: AtomicBool,
        /// When set, the first apply signals `entered` and waits here until released.
        hold_first: Mutex<Option<std::sync::mpsc::Receiver<()>>>,
        entered: AtomicBool,
    }

    impl StateMachine for Recorder {
        fn apply(&self, entries: &[Entry]) -> Result<Vec<Bytes>, StateMachineError> {
            if self.fail.load(Ordering::Acquire) {
                return Err(StateMachineError("disk full".into()));
            }
            let hold = self.hold_first.lock().unwrap().take();
            if let Some(release) = hold {
                self.entered.store(true, Ordering::Release);
                release.recv_timeout(std::time::Duration::from_secs(60)).expect("the test releases the first batch");
            }
            let mut log = self.log.lock().unwrap();
            for entry in entries {
                assert_eq!(entry.index, log.len() as u64 + 1, "entries applied out of order");
                log.push((entry.index, entry.data.clone()));
            }
            self.batches.lock().unwrap().push(entries.len());
            Ok(entries.iter().map(|entry| Bytes::from(entry.index.to_string())).collect())
        }
        fn applied_index(&self) -> Result<u64, StateMachineError> {
            Ok(self.log.lock().unwrap().len() as u64)
        }
        fn snapshot(&self) -> Result<std::sync::Arc<dyn crate::SnapshotSource>, StateMachineError> {
            Err(StateMachineError("a single node never sends snapshots".into()))
        }
        fn receive_snapshot(&self, _index: u64) -> Result<Box<dyn crate::SnapshotSink>, StateMachineError> {
            Err(StateMachineError("a single node never receives snapshots".into()))
        }
        fn restore(&self, _index: u64) -> Result<(), StateMachineError> {
            Err(StateMachineError("a single node never receives snapshots".into()))
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_proposals_are_applied_in_order_and_answered_once() {
        let state = Arc::new(Recorder::default());
        let node = SingleNode::start(state.clone(), DriverConfig::default()).unwrap();
        let mut tasks = Vec::new();
        for i in 0..200u32 {
            let node = node.clone();
            tasks.push(tokio::spawn(async move { node.propose(Bytes::from(i.to_string())).await }));
        }
        let mut indexes = Vec::new();
        for task in tasks {
            let response = task.await.unwrap().unwrap();
            indexes.push(String::from_utf8(response.to_vec()).unwrap().parse::<u64>().unwrap());
        }
        indexes.sort_unstable();
        assert_eq!(indexes, (1..=200).collect::<Vec<u64>>());
        assert_eq!(state.log.lock().unwrap().len(), 200);
    }

    /// Waits, bounded in count and time, until `condition` holds.
    async fn wait_until(what: &str, condition: impl Fn() -> bool) {
        for _ in 0..6000 {
            if condition() {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        panic!("timed out waiting until {what}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn proposals_queued_behind_a_slow_batch_are_applied_in_batches_of_the_bound() {
        let (release, hold) = std::sync::mpsc::channel();
        let state = Arc::new(Recorder { hold_first: Mutex::new(Some(hold)), ..Recorder::default() });
        let config = DriverConfig { batch_entries_max: 16, ..DriverConfig::default() };
        let node = SingleNode::start(state.clone(), config).unwrap();
        let first = tokio::spawn({
            let node = node.clone();
            async move { node.propose(Bytes::from_static(b"first")).await }
        });
        wait_until("the first batch is being applied", || state.entered.load(Ordering::Acquire)).await;
        let mut tasks = Vec::new();
        for i in 0..100u32 {
            let node = node.clone();
            tasks.push(tokio::spawn(async move { node.propose(Bytes::from(i.to_string())).await }));
        }
        let queued = || node.queue.max_capacity() - node.queue.capacity();
        wait_until("100 proposals are queued", || queued() == 100).await;
        release.send(()).unwrap();
        first.await.unwrap().unwrap();
        for task in tasks {
            task.await.unwrap().unwrap();
        }
        // One fsync for the first proposal, then the 100 queued ones share seven.
        assert_eq!(*state.batches.lock().unwrap(), vec![1, 16, 16, 16, 16, 16, 16, 4]);
    }

    #[tokio::test]
    async fn oversize_command_is_refused_before_queueing() {
        let state = Arc::new(Recorder::default());
        let config = DriverConfig { command_size_bytes_max: 8, ..DriverConfig::default() };
        let node = SingleNode::start(state.clone(), config).unwrap();
        let error = node.propose(Bytes::from_static(b"0123456789")).await.unwrap_err();
        assert_eq!(error, ProposeError::TooLarge { size_bytes: 10, limit_bytes: 8 });
        assert!(state.log.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn storage_failure_stops_the_node_instead_of_advancing() {
        let state = Arc::new(Recorder::default());
        let node = SingleNode::start(state.clone(), DriverConfig::default()).unwrap();
        node.propose(Bytes::from_static(b"a")).await.unwrap();
        state.fail.store(true, Ordering::Release);
        assert!(matches!(node.propose(Bytes::from_static(b"b")).await, Err(ProposeError::Stopped(_))));
        state.fail.store(false, Ordering::Release);
        assert!(matches!(node.propose(Bytes::from_static(b"c")).await, Err(ProposeError::Stopped(_))));
        assert!(!node.is_healthy());
        assert_eq!(state.log.lock().unwrap().len(), 1);
    }
}
