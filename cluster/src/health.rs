//! Whether a node may serve: the driver runs (liveness), and it has heard from a quorum
//! recently and applied what it knows to be committed (readiness). A node that is alive but
//! not ready answers nothing from its replica: its state may be stale.
//!
//! This module only judges; it never stops or starts anything.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Bounds past which a live node stops calling itself ready.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HealthBounds {
    /// Longest time without contact with a quorum (a follower: with its leader; a leader:
    /// with a majority of the voters).
    pub quorum_contact_age_max: Duration,
    /// Largest gap between the commit index and the applied index, in entries.
    pub apply_lag_entries_max: u64,
}

impl Default for HealthBounds {
    fn default() -> Self {
        HealthBounds { quorum_contact_age_max: Duration::from_secs(5), apply_lag_entries_max: 1000 }
    }
}

/// Why a node is not ready. Only [`Unhealthy::Stopped`] also means "not alive".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unhealthy {
    #[error("the consensus driver stopped ({0}); restart the node")]
    Stopped(String),
    #[error("no contact with a quorum for {age_milliseconds} ms (bound {bound_milliseconds} ms); the replica may be stale")]
    NoQuorumContact { age_milliseconds: u64, bound_milliseconds: u64 },
    #[error("applied index {applied} is behind commit index {commit} by more than {bound} entries")]
    ApplyLag { applied: u64, commit: u64, bound: u64 },
}

impl Unhealthy {
    /// Whether the node needs a restart (liveness), rather than time (readiness).
    pub fn is_fatal(&self) -> bool {
        matches!(self, Unhealthy::Stopped(_))
    }
}

/// When the node last heard from a quorum, shared between the driver thread (which
/// records) and the handles (which judge). Lock-free: milliseconds since `started`, plus
/// one; zero means never.
#[derive(Debug)]
pub struct QuorumContact {
    started: Instant,
    last_milliseconds_plus_one: AtomicU64,
}

impl Default for QuorumContact {
    fn default() -> Self {
        QuorumContact { started: Instant::now(), last_milliseconds_plus_one: AtomicU64::new(0) }
    }
}

impl QuorumContact {
    pub fn record(&self, at: Instant) {
        let milliseconds = at.saturating_duration_since(self.started).as_millis() as u64;
        self.last_milliseconds_plus_one.fetch_max(milliseconds + 1, Ordering::AcqRel);
    }

    /// Time since the last contact; since start when there was none.
    pub fn age(&self, now: Instant) -> Duration {
        let since_start = now.saturating_duration_since(self.started);
        match self.last_milliseconds_plus_one.load(Ordering::Acquire) {
            0 => since_start,
            plus_one => since_start.saturating_sub(Duration::from_millis(plus_one - 1)),
        }
    }
}

/// Judges a Raft member from its published indexes and contact age.
pub fn judge(stopped: Option<&str>, contact_age: Duration, commit: u64, applied: u64, bounds: &HealthBounds) -> Result<(), Unhealthy> {
    if let Some(reason) = stopped {
        return Err(Unhealthy::Stopped(reason.to_string()));
    }
    if contact_age > bounds.quorum_contact_age_max {
        return Err(Unhealthy::NoQuorumContact {
            age_milliseconds: contact_age.as_millis() as u64,
            bound_milliseconds: bounds.quorum_contact_age_max.as_millis() as u64,
        });
    }
    if commit.saturating_sub(applied) > bounds.apply_lag_entries_max {
        return Err(Unhealthy::ApplyLag { applied, commit, bound: bounds.apply_lag_entries_max });
    }
    Ok(())
}

/// The instant by which a majority of `voters` had been heard from, counting `self_id` as
/// heard `now`: the leader's view of quorum contact. None if no majority was ever heard.
pub(crate) fn majority_heard(voters: &[u64], self_id: u64, heard: impl Fn(u64) -> Option<Instant>, now: Instant) -> Option<Instant> {
    if voters.is_empty() {
        return None;
    }
    let mut times: Vec<Option<Instant>> = voters.iter().map(|&id| if id == self_id { Some(now) } else { heard(id) }).collect();
    // Most recent first; None (never heard) sorts last.
    times.sort_unstable_by(|a, b| b.cmp(a));
    times[voters.len() / 2]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_majority_is_heard_when_the_median_voter_was() {
        let now = Instant::now();
        let old = now - Duration::from_secs(10);
        let heard = |id: u64| match id {
            2 => Some(old),
            3 => None,
            _ => None,
        };
        assert_eq!(majority_heard(&[1, 2, 3], 1, heard, now), Some(old));
        assert_eq!(majority_heard(&[1], 1, heard, now), Some(now));
        assert_eq!(majority_heard(&[1, 2, 3, 4, 5], 1, heard, now), None);
    }

    #[test]
    fn stopped_beats_stale_and_lag_is_bounded() {
        let bounds = HealthBounds { quorum_contact_age_max: Duration::from_secs(1), apply_lag_entries_max: 10 };
        assert!(matches!(judge(Some("disk"), Duration::ZERO, 0, 0, &bounds), Err(Unhealthy::Stopped(_))));
        assert!(matches!(judge(None, Duration::from_secs(2), 5, 5, &bounds), Err(Unhealthy::NoQuorumContact { .. })));
        assert!(matches!(judge(None, Duration::ZERO, 20, 9, &bounds), Err(Unhealthy::ApplyLag { .. })));
        assert_eq!(judge(None, Duration::ZERO, 19, 9, &bounds), Ok(()));
    }

    #[test]
    fn contact_age_counts_from_start_until_first_contact() {
        let contact = QuorumContact::default();
        let later = contact.started + Duration::from_secs(3);
        assert_eq!(contact.age(later), Duration::from_secs(3));
        contact.record(contact.started + Duration::from_secs(2));
        assert_eq!(contact.age(later), Duration::from_secs(1));
    }
}
