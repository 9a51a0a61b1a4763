//! Statistics: the report a province asks for (`Kyso::statistics`), and the verification
//! tally that brings this node's verification counts into the replicated state.
//!
//! Verifications are reads and never enter the log one by one. Each node counts those it
//! answered, per (Vietnam day on its own clock, agency, channel), in a bounded table
//! ([`VerificationTally`]), and every `statistics_tally_interval_seconds` proposes them as
//! one `TallyVerifications` command (at most `TALLY_ENTRIES_PER_COMMAND_MAX` lines a
//! command), which apply adds to the statistics. A tally not yet proposed is lost when the
//! node crashes; the node proposes what it holds when it stops gracefully. A proposal that
//! fails is retried with the same request id, so a tally whose outcome was unknown is
//! never added twice.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

use kyso_cluster::Proposer;

use super::{fingerprint, now_unix, validate, Kyso, ServiceError};
use crate::access::{Actor, Caller, Role, ANY};
use crate::state::command::TALLY_ENTRIES_PER_COMMAND_MAX;
use crate::state::{Command, Outcome};
use crate::statistics::{parse_period, vietnam_day, Report, VerificationChannel, VerificationCount};

/// Distinct (day, agency, channel) lines a node holds between tallies; verifications of
/// further lines are dropped (and logged) until the next tally empties the table.
pub const TALLY_LINES_MAX: usize = 4 * TALLY_ENTRIES_PER_COMMAND_MAX;

type TallyKey = (i64, String, VerificationChannel);

/// This node's verification counts not yet in the replicated state.
#[derive(Default)]
pub struct VerificationTally {
    inner: Mutex<TallyState>,
}

#[derive(Default)]
struct TallyState {
    counts: BTreeMap<TallyKey, u64>,
    /// A tally proposed without a known outcome: proposed again, with the same id, first.
    pending: Option<(String, Vec<VerificationCount>)>,
    dropped: u64,
}

impl VerificationTally {
    fn lock(&self) -> std::sync::MutexGuard<'_, TallyState> {
        // A panic while holding the lock leaves counts that are still counts.
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Counts one verification for each agency given, on `day`.
    pub fn count(&self, day: i64, channel: VerificationChannel, agencies: &BTreeSet<String>) {
        let mut state = self.lock();
        for agency in agencies {
            let key = (day, agency.clone(), channel);
            if let Some(count) = state.counts.get_mut(&key) {
                *count = count.saturating_add(1);
            } else if state.counts.len() < TALLY_LINES_MAX {
                state.counts.insert(key, 1);
            } else {
                state.dropped += 1;
            }
        }
    }

    /// The next tally to propose: the pending one, or up to one command's lines taken out
    /// of the table under a fresh id from `new_id`. `None` when there is nothing to tally.
    fn next(&self, new_id: impl FnOnce() -> Result<String, ServiceError>) -> Result<Option<(String, Vec<VerificationCount>)>, ServiceError> {
        let mut state = self.lock();
        if state.dropped > 0 {
            tracing::warn!(dropped = state.dropped, lines_max = TALLY_LINES_MAX, "verifications not counted: the tally table was full");
            state.dropped = 0;
        }
        if let Some(pending) = &state.pending {
            return Ok(Some(pending.clone()));
        }
        if state.counts.is_empty() {
            return Ok(None);
        }
        let keys: Vec<TallyKey> = state.counts.keys().take(TALLY_ENTRIES_PER_COMMAND_MAX).cloned().collect();
        let mut lines = Vec::with_capacity(keys.len());
        for key in keys {
            let count = state.counts.remove(&key).unwrap_or(0);
            let (day, agency_id, channel) = key;
            lines.push(VerificationCount { day, agency_id, channel, count });
        }
        let pending = (new_id()?, lines);
        state.pending = Some(pending.clone());
        Ok(Some(pending))
    }

    fn settled(&self) {
        self.lock().pending = None;
    }
}

impl<P: Proposer> Kyso<P> {
    /// Counts a verification this node answered, once for each agency whose certification
    /// it found (a verification that found none counts for no agency).
    pub fn count_verification<'a>(&self, channel: VerificationChannel, agencies: impl IntoIterator<Item = &'a str>) {
        let agencies: BTreeSet<String> = agencies.into_iter().map(str::to_string).collect();
        if !agencies.is_empty() {
            self.verification_tally.count(vietnam_day(now_unix()), channel, &agencies);
        }
    }

    /// Proposes this node's verification counts, one command at a time, until none is left
    /// (at most `TALLY_LINES_MAX / TALLY_ENTRIES_PER_COMMAND_MAX + 1` commands). Returns
    /// the lines added. A failed proposal stays pending and is proposed again, with the
    /// same request id, next time.
    pub async fn propose_verification_tally(&self) -> Result<usize, ServiceError> {
        let actor = Actor::local("verification-tally");
        let mut added = 0;
        for _ in 0..=TALLY_LINES_MAX / TALLY_ENTRIES_PER_COMMAND_MAX {
            let Some((request_id, lines)) = self.verification_tally.next(|| self.random_request_id("tally"))? else {
                break;
            };
            let command = Command::TallyVerifications(lines);
            let request_fingerprint = fingerprint(&[request_id.as_bytes()]);
            match self.propose_for_outcome(&actor, &request_id, request_fingerprint, command).await? {
                Outcome::Tallied(lines) => added += lines as usize,
                Outcome::Rejected(rejection) => tracing::error!(%rejection, "a verification tally was refused; its counts are dropped"),
                other => return Err(ServiceError::Internal(format!("unexpected outcome: {other:?}"))),
            }
            self.verification_tally.settled();
        }
        Ok(added)
    }

    /// The statistics of `from_date..=to_date` (Vietnam days, `YYYY-MM-DD`), per agency and
    /// summed. `agency_id` empty means every agency the caller may read: an admin (or a
    /// grant for any agency) reads all, others only the agencies of their grant.
    pub async fn statistics(&self, caller: &Caller, agency_id: &str, from_date: &str, to_date: &str) -> Result<Report, ServiceError> {
        let (first_day, last_day) = parse_period(from_date, to_date).map_err(ServiceError::InvalidArgument)?;
        let wanted = self.report_agencies(caller, agency_id)?;
        self.read_barrier().await?;
        let agencies = self.state.statistics(first_day, last_day, wanted.as_ref())?;
        Ok(Report::new(first_day, last_day, agencies))
    }

    /// The agencies a report covers (`None`: all of them), or why the caller may not read it.
    fn report_agencies(&self, caller: &Caller, agency_id: &str) -> Result<Option<BTreeSet<String>>, ServiceError> {
        let every_agency = caller.has(Role::Admin) || caller.agency_ids.iter().any(|agency| agency == ANY);
        if agency_id.is_empty() {
            if every_agency {
                return Ok(None);
            }
            if caller.agency_ids.is_empty() {
                return Err(ServiceError::PermissionDenied(format!(
                    "{} acts for no agency, so it may read no statistics (ask an admin for a grant with kyso access set)",
                    caller.actor
                )));
            }
            return Ok(Some(caller.agency_ids.iter().cloned().collect()));
        }
        let agency_id = validate::identifier("agency_id", agency_id)?;
        if !every_agency && !caller.acts_for_agency(&agency_id) {
            return Err(ServiceError::PermissionDenied(format!(
                "{} may read only the statistics of its own agencies, and {agency_id} is not one of them (ask an admin for a grant with kyso access set)",
                caller.actor
            )));
        }
        Ok(Some(BTreeSet::from([agency_id])))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tally_is_bounded_and_a_pending_tally_keeps_its_id() {
        let tally = VerificationTally::default();
        for agency in 0..TALLY_LINES_MAX + 10 {
            tally.count(1, VerificationChannel::Grpc, &BTreeSet::from([format!("xa-{agency}")]));
        }
        tally.count(1, VerificationChannel::Grpc, &BTreeSet::from(["xa-0".to_string()]));
        assert_eq!(tally.lock().counts.len(), TALLY_LINES_MAX);
        assert_eq!(tally.lock().dropped, 10);
        let (id, lines) = tally.next(|| Ok("tally-1".into())).unwrap().unwrap();
        assert_eq!(lines.len(), TALLY_ENTRIES_PER_COMMAND_MAX);
        assert_eq!(lines[0], VerificationCount { day: 1, agency_id: "xa-0".into(), channel: VerificationChannel::Grpc, count: 2 });
        // Not settled (the proposal failed): the same lines under the same id again.
        assert_eq!(tally.next(|| Ok("tally-2".into())).unwrap().unwrap(), (id, lines));
        tally.settled();
        let (id, _) = tally.next(|| Ok("tally-3".into())).unwrap().unwrap();
        assert_eq!(id, "tally-3");
    }
}
