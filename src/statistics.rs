//! Statistics for the province's reports: per agency and Vietnam day, what was archived,
//! signed, certified, revoked and verified, and how long documents waited from archive to
//! signature. The counters live in the replicated state (`state::store`'s `statistics`
//! table), updated while commands apply; this module holds their types and arithmetic.
//!
//! It must never read the clock: every day here comes from a time the caller passes (the
//! command's own timestamps when applying), so every replica counts the same.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Vietnam's offset from UTC (no daylight saving).
const VIETNAM_OFFSET_SECONDS: i64 = 7 * 3600;
const SECONDS_PER_DAY: i64 = 86_400;

/// The longest period one report covers: five years of days.
pub const REPORT_DAYS_MAX: i64 = 366 * 5;

/// The Vietnam day (days since 1970-01-01 in UTC+7) of a Unix time.
pub fn vietnam_day(unix_seconds: i64) -> i64 {
    unix_seconds.saturating_add(VIETNAM_OFFSET_SECONDS).div_euclid(SECONDS_PER_DAY)
}

/// A day as `YYYY-MM-DD`.
pub fn format_day(day: i64) -> String {
    let (year, month, date) = crate::domain::civil_from_days(day);
    format!("{year:04}-{month:02}-{date:02}")
}

/// Parses `YYYY-MM-DD` (a real calendar date, years 2000-9999) into a day number; the
/// error says what is wrong in words a person can act on.
pub fn parse_day(field: &str, text: &str) -> Result<i64, String> {
    let wrong = || format!("{field} must be a date written YYYY-MM-DD, such as 2026-12-31; got {text:?}");
    let bytes = text.as_bytes();
    if bytes.len() != 10 || bytes[4] != b'-' || bytes[7] != b'-' {
        return Err(wrong());
    }
    let number = |range: std::ops::Range<usize>| -> Result<i64, String> {
        let part = &text[range];
        if !part.bytes().all(|byte| byte.is_ascii_digit()) {
            return Err(wrong());
        }
        part.parse::<i64>().map_err(|_| wrong())
    };
    let (year, month, date) = (number(0..4)?, number(5..7)?, number(8..10)?);
    if !(2000..=9999).contains(&year) {
        return Err(format!("{field} must be in the years 2000-9999; got {text:?}"));
    }
    if !(1..=12).contains(&month) || date < 1 {
        return Err(format!("{field} is not a calendar date: {text:?}"));
    }
    let day = days_from_civil(year, month as u32, date as u32);
    if crate::domain::civil_from_days(day) != (year, month as u32, date as u32) {
        return Err(format!("{field} is not a calendar date: {text:?}"));
    }
    Ok(day)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
/// `days_from_civil`, the inverse of `domain::civil_from_days`).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month = i64::from(month);
    let day_of_year = (153 * (if month > 2 { month - 3 } else { month + 9 }) + 2) / 5 + i64::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// Checks a report's period: both dates valid, `from <= to`, at most
/// [`REPORT_DAYS_MAX`] days. Returns the first and last day.
pub fn parse_period(from: &str, to: &str) -> Result<(i64, i64), String> {
    let first = parse_day("from_date", from)?;
    let last = parse_day("to_date", to)?;
    if first > last {
        return Err(format!("from_date {from} is after to_date {to}; give the earlier date first"));
    }
    let days = last - first + 1;
    if days > REPORT_DAYS_MAX {
        return Err(format!("the period {from} to {to} has {days} days; a report covers at most {REPORT_DAYS_MAX} days, ask for shorter periods"));
    }
    Ok((first, last))
}

/// The archive-to-signature histogram's buckets. Bucket 0 holds delays under one second
/// (and negative ones: clocks of different nodes); bucket `k >= 1` holds delays in
/// `[upper(k - 1), upper(k))`, where `upper(k)` is `2^(k/4)` seconds rounded down, so each
/// bucket is at most 2^(1/4) (about 19 %) wider than its start; the last bucket holds
/// everything from about 28 years on.
pub const DELAY_BUCKETS: usize = 4 * 30 + 1;

/// `2^(j/4)` for j = 0..3, in millionths (rounded): integer arithmetic, so apply is the
/// same on every machine.
const QUARTER_POWERS_MILLIONTHS: [u128; 4] = [1_000_000, 1_189_207, 1_414_214, 1_681_793];

/// The exclusive upper bound, in seconds, of bucket `bucket` (`u64::MAX` for the last).
pub fn delay_bucket_upper_seconds(bucket: usize) -> u64 {
    if bucket + 1 >= DELAY_BUCKETS {
        return u64::MAX;
    }
    let whole = 1u128 << (bucket / 4);
    (whole * QUARTER_POWERS_MILLIONTHS[bucket % 4] / 1_000_000) as u64
}

/// The bucket a delay of `seconds` falls in.
pub fn delay_bucket(seconds: i64) -> usize {
    if seconds < 1 {
        return 0;
    }
    let seconds = seconds as u64;
    // At most DELAY_BUCKETS steps: the bounds grow with the bucket.
    (0..DELAY_BUCKETS).find(|&bucket| seconds < delay_bucket_upper_seconds(bucket)).unwrap_or(DELAY_BUCKETS - 1)
}

/// Channels a verification arrives through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum VerificationChannel {
    /// VerificationService.Verify or VerifyStream.
    Grpc,
    /// The public lookup: the page `/v/{code}` or its JSON `/api/v1/lookup/{code}`.
    PublicPage,
}

/// One line of a node's verification tally, as a command carries it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerificationCount {
    /// The Vietnam day the verifications were answered on (the answering node's clock).
    pub day: i64,
    pub agency_id: String,
    pub channel: VerificationChannel,
    pub count: u64,
}

/// The counters of a day, of a period, or of a sum of agencies.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    pub dossiers_archived: u64,
    pub files_archived: u64,
    pub bytes_archived: u64,
    pub results_signed: u64,
    pub copies_certified: u64,
    pub revocations: u64,
    pub verifications_grpc: u64,
    pub verifications_public_page: u64,
}

impl Counts {
    pub fn add(&mut self, other: &Counts) {
        let pairs = [
            (&mut self.dossiers_archived, other.dossiers_archived),
            (&mut self.files_archived, other.files_archived),
            (&mut self.bytes_archived, other.bytes_archived),
            (&mut self.results_signed, other.results_signed),
            (&mut self.copies_certified, other.copies_certified),
            (&mut self.revocations, other.revocations),
            (&mut self.verifications_grpc, other.verifications_grpc),
            (&mut self.verifications_public_page, other.verifications_public_page),
        ];
        for (counter, more) in pairs {
            *counter = counter.saturating_add(more);
        }
    }
}

/// One agency's counters for one Vietnam day, as the state stores them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DayStatistics {
    pub counts: Counts,
    /// Archive-to-signature delays of the certifications signed that day that name their
    /// dossier: (bucket, count), by bucket, without empty buckets.
    pub signature_delay_buckets: Vec<(u8, u64)>,
}

impl DayStatistics {
    /// Counts one certification's delay from its dossier's archive to its signature.
    pub fn add_signature_delay(&mut self, seconds: i64) {
        // DELAY_BUCKETS is under 256, so the bucket fits a byte.
        let bucket = delay_bucket(seconds) as u8;
        match self.signature_delay_buckets.binary_search_by_key(&bucket, |(index, _)| *index) {
            Ok(position) => self.signature_delay_buckets[position].1 = self.signature_delay_buckets[position].1.saturating_add(1),
            Err(position) => self.signature_delay_buckets.insert(position, (bucket, 1)),
        }
    }

    pub fn add_verifications(&mut self, channel: VerificationChannel, count: u64) {
        let counter = match channel {
            VerificationChannel::Grpc => &mut self.counts.verifications_grpc,
            VerificationChannel::PublicPage => &mut self.counts.verifications_public_page,
        };
        *counter = counter.saturating_add(count);
    }
}

/// Counters summed over a period (and over agencies, for the province).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    pub counts: Counts,
    /// Per bucket, every bucket present.
    pub signature_delay_buckets: Vec<u64>,
}

impl Default for Summary {
    fn default() -> Self {
        Summary { counts: Counts::default(), signature_delay_buckets: vec![0; DELAY_BUCKETS] }
    }
}

impl Summary {
    pub fn add_day(&mut self, day: &DayStatistics) {
        self.counts.add(&day.counts);
        for (bucket, count) in &day.signature_delay_buckets {
            if let Some(slot) = self.signature_delay_buckets.get_mut(usize::from(*bucket)) {
                *slot = slot.saturating_add(*count);
            }
        }
    }

    pub fn add(&mut self, other: &Summary) {
        self.counts.add(&other.counts);
        for (slot, count) in self.signature_delay_buckets.iter_mut().zip(&other.signature_delay_buckets) {
            *slot = slot.saturating_add(*count);
        }
    }

    /// How many delays the histogram holds.
    pub fn signature_delays(&self) -> u64 {
        self.signature_delay_buckets.iter().fold(0u64, |sum, count| sum.saturating_add(*count))
    }

    /// The delay at quantile `numerator / denominator` (nearest rank: the
    /// `ceil(q * n)`-th smallest), reported as the exclusive upper bound of its bucket: at
    /// least the exact value plus one second and below 2^(1/4) times (exact value + 1).
    /// `None` when no delay was counted.
    pub fn signature_delay_quantile_seconds(&self, numerator: u64, denominator: u64) -> Option<u64> {
        let total = self.signature_delays();
        if total == 0 {
            return None;
        }
        let rank = ((u128::from(numerator) * u128::from(total)).div_ceil(u128::from(denominator))).max(1);
        let mut seen = 0u128;
        for (bucket, count) in self.signature_delay_buckets.iter().enumerate() {
            seen += u128::from(*count);
            if seen >= rank {
                return Some(delay_bucket_upper_seconds(bucket));
            }
        }
        Some(u64::MAX)
    }

    pub fn signature_delay_median_seconds(&self) -> Option<u64> {
        self.signature_delay_quantile_seconds(1, 2)
    }

    pub fn signature_delay_p90_seconds(&self) -> Option<u64> {
        self.signature_delay_quantile_seconds(9, 10)
    }
}

/// A report: one summary per agency (by id) and their sum.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    pub first_day: i64,
    pub last_day: i64,
    pub agencies: BTreeMap<String, Summary>,
    /// The sum of every agency above: the province when the report covers all agencies.
    pub total: Summary,
}

impl Report {
    pub fn new(first_day: i64, last_day: i64, agencies: BTreeMap<String, Summary>) -> Report {
        let mut total = Summary::default();
        for summary in agencies.values() {
            total.add(summary);
        }
        Report { first_day, last_day, agencies, total }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_are_vietnam_days_and_dates_round_trip() {
        // 2026-12-05T17:00:00Z is midnight of 2026-12-06 in Vietnam.
        let midnight = 1_796_490_000;
        assert_eq!(format_day(vietnam_day(midnight)), "2026-12-06");
        assert_eq!(format_day(vietnam_day(midnight - 1)), "2026-12-05");
        for text in ["2000-01-01", "2024-02-29", "2026-12-31", "9999-12-31"] {
            assert_eq!(format_day(parse_day("from_date", text).unwrap()), text);
        }
        for (text, why) in [
            ("2026-02-29", "not a calendar date"),
            ("2026-13-01", "not a calendar date"),
            ("26-12-01", "YYYY-MM-DD"),
            ("2026-1-015", "YYYY-MM-DD"),
            ("1999-12-31", "2000-9999"),
            ("2026-+1-01", "YYYY-MM-DD"),
        ] {
            let refused = parse_day("from_date", text).unwrap_err();
            assert!(refused.contains(why) && refused.contains("from_date"), "{text}: {refused}");
        }
        assert!(parse_period("2026-12-02", "2026-12-01").unwrap_err().contains("after"));
        assert!(parse_period("2020-01-01", "2026-01-01").unwrap_err().contains("at most 1830 days"));
        assert_eq!(parse_period("2026-01-01", "2026-12-31").map(|(first, last)| last - first), Ok(364));
    }

    #[test]
    fn quantiles_are_within_a_quarter_power_of_two_above_the_exact_value() {
        for exact in [0i64, 1, 2, 3, 5, 59, 60, 3_599, 86_400, 1_000_000, 30_000_000] {
            let mut day = DayStatistics::default();
            day.add_signature_delay(exact);
            let mut summary = Summary::default();
            summary.add_day(&day);
            let reported = summary.signature_delay_median_seconds().unwrap() as f64;
            assert!(reported > exact as f64 && reported < (exact as f64 + 1.0) * 1.1893, "{exact} reported as {reported}");
        }
        // Ten delays 1..=10 hours: the median is the 5th (5 h), p90 the 9th (9 h).
        let mut day = DayStatistics::default();
        for hours in 1..=10 {
            day.add_signature_delay(hours * 3600);
        }
        let mut summary = Summary::default();
        summary.add_day(&day);
        let median = summary.signature_delay_median_seconds().unwrap() as f64;
        let p90 = summary.signature_delay_p90_seconds().unwrap() as f64;
        assert!(median > 5.0 * 3600.0 && median < (5.0 * 3600.0 + 1.0) * 1.1893, "{median}");
        assert!(p90 > 9.0 * 3600.0 && p90 < (9.0 * 3600.0 + 1.0) * 1.1893, "{p90}");
        assert_eq!(Summary::default().signature_delay_median_seconds(), None);
    }
}
