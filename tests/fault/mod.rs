//! The fault-injection harness: a real cluster of `kyso node` processes, concurrent
//! clients recording a history, a seeded nemesis, and a checker over the history and the
//! final state of every node.
//!
//! Partitions are injected in the peer transport (`ClusterService.InjectFault`, enabled by
//! the node config `fault_injection = true`), kills with SIGKILL, pauses with SIGSTOP /
//! SIGCONT. The seed fixes the fault schedule (kinds, targets, durations and gaps); the
//! interleaving with client operations still depends on timing.
#![allow(dead_code)]

pub mod checker;
pub mod history;
pub mod nemesis;
pub mod rng;
pub mod workload;
