//! The bandwidth limit of a policy: one token bucket shared by all of the
//! policy's uploads, its rate read from the policy's timetable at the
//! weekday and hour of every request in the site's time zone.

use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use futures::future::BoxFuture;

use crate::lake::Throttle;
use crate::policy::Bandwidth;
use crate::site_zone::SiteZone;

/// How far ahead of the rate a burst may go: small, so that a measured rate
/// over a few seconds is the limit.
const BURST: Duration = Duration::from_millis(50);

/// Longest sleep while uploads are paused (`0B/s`) before looking at the
/// timetable again.
const PAUSED_RECHECK: Duration = Duration::from_secs(60);

/// A token bucket in its GCRA form: `tat` is the time at which everything
/// granted so far will have been sent at the rate; a request waits until it
/// is within [`BURST`] of it. Debt is allowed, so a request larger than the
/// burst waits in proportion to its size instead of never passing.
#[derive(Debug)]
pub(crate) struct TokenBucket {
    bandwidth: Bandwidth,
    /// Whose clocks the timetable's weekdays and hours are read on.
    zone: SiteZone,
    tat: Mutex<Option<Instant>>,
}

impl TokenBucket {
    pub(crate) fn new(bandwidth: Bandwidth, zone: SiteZone) -> Self {
        Self {
            bandwidth,
            zone,
            tat: Mutex::new(None),
        }
    }

    /// Grants `bytes` at `rate` bytes per second as of `now`; the answer is
    /// how long the caller must wait before sending them.
    fn reserve(&self, bytes: u64, rate: u64, now: Instant) -> Duration {
        let cost = Duration::from_secs_f64(bytes as f64 / rate as f64);
        let mut tat = self.tat.lock().unwrap_or_else(|e| e.into_inner());
        let start = tat.map_or(now, |t| t.max(now));
        let next = start + cost;
        *tat = Some(next);
        next.saturating_duration_since(now + BURST)
    }
}

impl Throttle for TokenBucket {
    fn acquire(&self, bytes: u64) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            loop {
                let (day, hour, to_next_hour) = self.zone.day_hour(SystemTime::now());
                match self.bandwidth.limit_at(day, hour) {
                    None => return,
                    Some(0) => tokio::time::sleep(to_next_hour.min(PAUSED_RECHECK)).await,
                    Some(rate) => {
                        let wait = self.reserve(bytes, rate, Instant::now());
                        if !wait.is_zero() {
                            tokio::time::sleep(wait).await;
                        }
                        return;
                    }
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1024 * 1024;

    #[test]
    fn mover_bucket_paces_at_the_rate() {
        let b = TokenBucket::new(Bandwidth::default(), SiteZone::default());
        let t0 = Instant::now();
        // The first MiB at 1 MiB/s: sent over the next second, waited minus the burst.
        assert_eq!(b.reserve(MIB, MIB, t0), Duration::from_secs(1) - BURST);
        // Requests at the same instant queue behind it.
        assert_eq!(b.reserve(MIB, MIB, t0), Duration::from_secs(2) - BURST);
        // Later, the debt has partly drained.
        let later = t0 + Duration::from_millis(1500);
        assert_eq!(
            b.reserve(MIB / 2, MIB, later),
            Duration::from_secs(1) - BURST
        );
        // Long idle: no credit is saved up beyond the burst.
        let idle = t0 + Duration::from_secs(100);
        assert_eq!(b.reserve(MIB / 64, MIB, idle), Duration::ZERO);
        assert_eq!(
            b.reserve(MIB, MIB, idle),
            Duration::from_secs_f64(1.0 + 1.0 / 64.0) - BURST
        );
    }

    #[test]
    fn mover_bucket_many_small_requests_keep_the_rate() {
        let b = TokenBucket::new(Bandwidth::default(), SiteZone::default());
        let t0 = Instant::now();
        let mut last = Duration::ZERO;
        for _ in 0..1000 {
            last = b.reserve(16 * 1024, 8 * MIB, t0);
        }
        // 1000 × 16 KiB = 15.6 MiB at 8 MiB/s ≈ 1.95 s.
        let want = Duration::from_secs_f64(1000.0 * 16.0 / 1024.0 / 8.0) - BURST;
        let diff = want.abs_diff(last);
        assert!(diff < Duration::from_millis(1), "{last:?} vs {want:?}");
    }

    #[tokio::test]
    async fn mover_bucket_unlimited_never_waits() {
        let b = TokenBucket::new(Bandwidth::default(), SiteZone::default());
        let t0 = Instant::now();
        b.acquire(u64::MAX / 2).await;
        assert!(t0.elapsed() < Duration::from_millis(100));
    }
}
