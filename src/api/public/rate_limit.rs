//! Per-client rate limiting of the public HTTP port: a token bucket per client address
//! (IPv6 per /64 network, since one household or phone gets a whole /64).
//!
//! Memory is bounded by `limits.public_rate_limited_clients_max`: when the table is full,
//! idle clients (whose buckets have refilled) are dropped, at most once a second; if it is
//! still full, new addresses share one overflow bucket, so a flood from many addresses is
//! limited as a whole instead of growing the table. The limiter never reads the clock
//! itself: callers pass `now`, which keeps it testable.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::config::Limits;

/// How often, at most, a full table is swept for idle clients.
const SWEEP_INTERVAL: Duration = Duration::from_secs(1);

/// Whether a request may proceed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Allowed,
    /// Refused; a request after this many seconds would be allowed.
    Limited { retry_after_seconds: u64 },
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

struct Table {
    buckets: HashMap<IpAddr, Bucket>,
    overflow: Option<Bucket>,
    last_sweep: Option<Instant>,
}

pub struct RateLimiter {
    tokens_per_second: f64,
    burst_tokens: f64,
    clients_max: usize,
    table: Mutex<Table>,
}

impl RateLimiter {
    pub fn new(limits: &Limits) -> RateLimiter {
        RateLimiter {
            tokens_per_second: f64::from(limits.public_requests_per_minute_max) / 60.0,
            burst_tokens: f64::from(limits.public_request_burst_max),
            clients_max: limits.public_rate_limited_clients_max,
            table: Mutex::new(Table { buckets: HashMap::new(), overflow: None, last_sweep: None }),
        }
    }

    /// Takes one token from `client`'s bucket.
    pub fn check(&self, client: IpAddr, now: Instant) -> Decision {
        let key = client_key(client);
        // A poisoned lock only means another request panicked mid-update; the table is
        // still a valid map of buckets.
        let mut table = self.table.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if !table.buckets.contains_key(&key) && table.buckets.len() >= self.clients_max {
            self.sweep_idle(&mut table, now);
        }
        let fresh = Bucket { tokens: self.burst_tokens, updated: now };
        let bucket = if table.buckets.contains_key(&key) || table.buckets.len() < self.clients_max {
            table.buckets.entry(key).or_insert(fresh)
        } else {
            table.overflow.get_or_insert(fresh)
        };
        self.take(bucket, now)
    }

    fn take(&self, bucket: &mut Bucket, now: Instant) -> Decision {
        let elapsed = now.saturating_duration_since(bucket.updated).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * self.tokens_per_second).min(self.burst_tokens);
        bucket.updated = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Decision::Allowed
        } else {
            let wait_seconds = ((1.0 - bucket.tokens) / self.tokens_per_second).ceil();
            Decision::Limited { retry_after_seconds: (wait_seconds as u64).max(1) }
        }
    }

    /// Drops clients whose buckets would be full by now: forgetting them changes nothing.
    fn sweep_idle(&self, table: &mut Table, now: Instant) {
        if table.last_sweep.is_some_and(|last| now.saturating_duration_since(last) < SWEEP_INTERVAL) {
            return;
        }
        table.last_sweep = Some(now);
        table.buckets.retain(|_, bucket| {
            let refilled = bucket.tokens + now.saturating_duration_since(bucket.updated).as_secs_f64() * self.tokens_per_second;
            refilled < self.burst_tokens
        });
    }

    #[cfg(test)]
    fn clients_tracked(&self) -> usize {
        self.table.lock().unwrap().buckets.len()
    }
}

/// The address a limit applies to: IPv4 as is (also when mapped into IPv6), IPv6 by /64.
fn client_key(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V4(_) => address,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let mut segments = v6.segments();
                segments[4..].fill(0);
                IpAddr::V6(segments.into())
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(per_minute: u32, burst: u32, clients: usize) -> RateLimiter {
        RateLimiter::new(&Limits {
            public_requests_per_minute_max: per_minute,
            public_request_burst_max: burst,
            public_rate_limited_clients_max: clients,
            ..Limits::default()
        })
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn a_client_gets_its_burst_then_waits_for_the_rate() {
        let limiter = limiter(60, 3, 10);
        let start = Instant::now();
        for _ in 0..3 {
            assert_eq!(limiter.check(ip("192.0.2.1"), start), Decision::Allowed);
        }
        assert_eq!(limiter.check(ip("192.0.2.1"), start), Decision::Limited { retry_after_seconds: 1 });
        assert_eq!(limiter.check(ip("192.0.2.2"), start), Decision::Allowed, "other clients are not affected");
        assert_eq!(limiter.check(ip("192.0.2.1"), start + Duration::from_millis(1100)), Decision::Allowed);
        assert!(matches!(limiter.check(ip("192.0.2.1"), start + Duration::from_millis(1200)), Decision::Limited { .. }));
    }

    #[test]
    fn retry_after_says_when_the_next_request_is_allowed() {
        let limiter = limiter(2, 1, 10);
        let start = Instant::now();
        assert_eq!(limiter.check(ip("192.0.2.1"), start), Decision::Allowed);
        assert_eq!(limiter.check(ip("192.0.2.1"), start), Decision::Limited { retry_after_seconds: 30 });
        assert_eq!(limiter.check(ip("192.0.2.1"), start + Duration::from_secs(30)), Decision::Allowed);
    }

    #[test]
    fn ipv6_clients_are_limited_per_64_network() {
        let limiter = limiter(60, 1, 10);
        let now = Instant::now();
        assert_eq!(limiter.check(ip("2001:db8:1:2::1"), now), Decision::Allowed);
        assert!(matches!(limiter.check(ip("2001:db8:1:2:ffff::9"), now), Decision::Limited { .. }));
        assert_eq!(limiter.check(ip("2001:db8:1:3::1"), now), Decision::Allowed);
        assert_eq!(limiter.check(ip("::ffff:192.0.2.7"), now), Decision::Allowed);
        assert!(matches!(limiter.check(ip("192.0.2.7"), now), Decision::Limited { .. }), "mapped IPv4 is the same client");
    }

    #[test]
    fn a_full_table_forgets_idle_clients_and_shares_one_bucket_otherwise() {
        let limiter = limiter(60, 2, 2);
        let start = Instant::now();
        limiter.check(ip("192.0.2.1"), start);
        limiter.check(ip("192.0.2.2"), start);
        assert_eq!(limiter.clients_tracked(), 2);
        // Table full, nobody idle: newcomers share the overflow bucket (burst 2).
        assert_eq!(limiter.check(ip("192.0.2.3"), start), Decision::Allowed);
        assert_eq!(limiter.check(ip("192.0.2.4"), start), Decision::Allowed);
        assert!(matches!(limiter.check(ip("192.0.2.5"), start), Decision::Limited { .. }));
        assert_eq!(limiter.clients_tracked(), 2, "the table never grows past its limit");
        // Later both first clients have refilled: they are forgotten and a newcomer gets its own bucket.
        let later = start + Duration::from_secs(10);
        assert_eq!(limiter.check(ip("192.0.2.6"), later), Decision::Allowed);
        assert_eq!(limiter.clients_tracked(), 1);
    }
}
