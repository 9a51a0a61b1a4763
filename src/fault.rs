//! Storage faults for test harnesses: a switch that makes every later state-machine write
//! fail, as a dead or read-only disk would, so that tests can watch a running node stop and
//! say so. Flipped only through `ClusterService.InjectFault` on a node that runs with
//! `fault_injection = true`; otherwise the switch exists but nothing can reach it.
//!
//! Also the test-only fsync switches: `KYSO_UNSAFE_SKIP_FSYNC=raft-log,state,blobs` (any
//! subset) makes those stores write without fsync, so that the power-loss test can show it
//! catches a store that forgot to sync. Never set it in production: the node says so loudly.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use kyso_cluster::{Entry, SnapshotSink, SnapshotSource, StateMachine, StateMachineError};

/// The shared switch. Cheap to clone.
#[derive(Clone, Default)]
pub struct StorageFault(Arc<AtomicBool>);

impl StorageFault {
    pub fn fail_from_now_on(&self) {
        self.0.store(true, Ordering::Release);
    }

    fn failing(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }

    fn check(&self) -> Result<(), StateMachineError> {
        if self.failing() {
            return Err(StateMachineError("injected storage failure: the state store refuses writes".into()));
        }
        Ok(())
    }
}

/// A state machine whose writes fail once its [`StorageFault`] is set; reads still work.
pub struct FaultableState<S> {
    inner: Arc<S>,
    fault: StorageFault,
}

impl<S: StateMachine> FaultableState<S> {
    pub fn new(inner: Arc<S>, fault: StorageFault) -> Self {
        FaultableState { inner, fault }
    }
}

impl<S: StateMachine> StateMachine for FaultableState<S> {
    fn apply(&self, entries: &[Entry]) -> Result<Vec<Bytes>, StateMachineError> {
        self.fault.check()?;
        self.inner.apply(entries)
    }

    fn apply_logged(&self, entries: &[Entry]) -> Result<Vec<Bytes>, StateMachineError> {
        self.fault.check()?;
        self.inner.apply_logged(entries)
    }

    fn applied_index(&self) -> Result<u64, StateMachineError> {
        self.inner.applied_index()
    }

    fn durable_index(&self) -> Result<u64, StateMachineError> {
        self.inner.durable_index()
    }

    fn persist_if_due(&self) -> Result<(), StateMachineError> {
        self.fault.check()?;
        self.inner.persist_if_due()
    }

    fn snapshot(&self) -> Result<Arc<dyn SnapshotSource>, StateMachineError> {
        self.inner.snapshot()
    }

    fn receive_snapshot(&self, index: u64) -> Result<Box<dyn SnapshotSink>, StateMachineError> {
        self.fault.check()?;
        self.inner.receive_snapshot(index)
    }

    fn restore(&self, index: u64) -> Result<(), StateMachineError> {
        self.fault.check()?;
        self.inner.restore(index)
    }
}

/// A store whose fsync a test may switch off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durable {
    RaftLog,
    State,
    Blobs,
}

impl Durable {
    fn name(self) -> &'static str {
        match self {
            Durable::RaftLog => "raft-log",
            Durable::State => "state",
            Durable::Blobs => "blobs",
        }
    }
}

/// The environment variable of the test-only fsync switches.
pub const SKIP_FSYNC_VARIABLE: &str = "KYSO_UNSAFE_SKIP_FSYNC";

/// Whether `KYSO_UNSAFE_SKIP_FSYNC` names `store` (logged as an error when it does).
pub fn skips_fsync(store: Durable) -> bool {
    let skipped = std::env::var(SKIP_FSYNC_VARIABLE).is_ok_and(|value| value.split(',').any(|name| name.trim() == store.name()));
    if skipped {
        tracing::error!(store = store.name(), "{SKIP_FSYNC_VARIABLE}: this store writes WITHOUT fsync; a power loss loses data (tests only)");
    }
    skipped
}
