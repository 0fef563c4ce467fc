//! How long to wait before retrying a failed step: exponential, capped, with
//! jitter so that many agents that lost the lake together do not knock on it
//! together when it comes back.

use std::time::Duration;

/// Exponential back-off with "equal jitter": after the `n`th failure the wait
/// is `d/2 + random(0..=d/2)` where `d = min(max, base × 2^(n-1))`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    /// The wait after the first failure (before jitter).
    pub base: Duration,
    /// The longest wait.
    pub max: Duration,
}

impl Default for Backoff {
    /// 2 s, doubling, at most 10 minutes.
    fn default() -> Self {
        Self {
            base: Duration::from_secs(2),
            max: Duration::from_secs(600),
        }
    }
}

impl Backoff {
    /// The wait after failure number `attempt` (1 for the first), with
    /// `random` (any 64 bits) choosing the jitter.
    pub fn delay(&self, attempt: u32, random: u64) -> Duration {
        let doublings = attempt.saturating_sub(1).min(63);
        let base = u64::try_from(self.base.as_nanos()).unwrap_or(u64::MAX);
        let max = u64::try_from(self.max.as_nanos()).unwrap_or(u64::MAX);
        let d = base.saturating_mul(1u64 << doublings).min(max);
        let half = d / 2;
        let jitter = random % (d - half + 1);
        Duration::from_nanos(half + jitter)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mover_backoff_doubles_within_jitter_and_caps() {
        let b = Backoff {
            base: Duration::from_secs(1),
            max: Duration::from_secs(60),
        };
        for attempt in 1..=40u32 {
            let d = Duration::from_secs(1u64 << (attempt - 1).min(10)).min(b.max);
            for r in [0, 1, 12345, u64::MAX / 3, u64::MAX] {
                let got = b.delay(attempt, r);
                assert!(
                    got >= d / 2 && got <= d,
                    "attempt {attempt}: {got:?} vs {d:?}"
                );
            }
        }
        assert_eq!(b.delay(1, 0), Duration::from_millis(500));
        assert_eq!(b.delay(100, 0), Duration::from_secs(30));
        assert_eq!(b.delay(0, 0), Duration::from_millis(500));
    }

    #[test]
    fn mover_backoff_jitter_spreads() {
        let b = Backoff::default();
        let mut seen = std::collections::BTreeSet::new();
        for r in 0..64u64 {
            seen.insert(b.delay(3, r.wrapping_mul(0x9E37_79B9_7F4A_7C15)));
        }
        assert!(
            seen.len() > 50,
            "jitter should spread retries: {}",
            seen.len()
        );
    }
}
