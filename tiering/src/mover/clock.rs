//! Time and randomness for the mover: catalog timestamps, random ids and
//! jitter. (The weekday and hour of the bandwidth timetable are the site
//! zone's: [`crate::site_zone::SiteZone::day_hour`].)

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::catalog::Timestamp;

/// `t` as a catalog timestamp (the epoch for times before it).
pub(crate) fn timestamp(t: SystemTime) -> Timestamp {
    Timestamp::from_system_time(t)
}

/// The current time as a catalog timestamp.
pub(crate) fn now() -> Timestamp {
    Timestamp::now()
}

/// A catalog timestamp as a `SystemTime`.
pub(crate) fn system_time(t: Timestamp) -> SystemTime {
    t.to_system_time()
}

/// Nanoseconds since the epoch (negative before it), as file records keep mtimes.
pub(crate) fn nanos(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_nanos()).unwrap_or(i64::MAX),
        Err(e) => i64::try_from(e.duration().as_nanos()).map_or(i64::MIN, |n| -n),
    }
}

/// The inverse of [`nanos`].
pub(crate) fn from_nanos(ns: i64) -> SystemTime {
    if ns >= 0 {
        UNIX_EPOCH + Duration::from_nanos(ns.unsigned_abs())
    } else {
        UNIX_EPOCH - Duration::from_nanos(ns.unsigned_abs())
    }
}

/// 64 random bits from the kernel (move ids, run ids, jitter).
pub(crate) fn random_u64() -> u64 {
    let mut buf = [0u8; 8];
    // SAFETY: getrandom writes at most `buf.len()` bytes into `buf`.
    let n = unsafe { libc::getrandom(buf.as_mut_ptr().cast(), buf.len(), 0) };
    if n == buf.len() as isize {
        return u64::from_le_bytes(buf);
    }
    // No getrandom (very old kernel): the hasher's per-process random keys.
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos(),
    );
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mover_clock_round_trips() {
        for ns in [0i64, 1, 1_700_000_000_123_456_789, -5_000_000_001] {
            assert_eq!(nanos(from_nanos(ns)), ns);
        }
        let t = UNIX_EPOCH + Duration::from_secs(90);
        assert_eq!(timestamp(t).unix_nanos(), 90_000_000_000);
        assert_eq!(system_time(timestamp(t)), t);
        assert_eq!(
            timestamp(UNIX_EPOCH - Duration::from_secs(1)).unix_nanos(),
            0
        );
    }

    #[test]
    fn mover_random_ids_differ() {
        let a = random_u64();
        let b = random_u64();
        assert_ne!(a, b);
    }
}
