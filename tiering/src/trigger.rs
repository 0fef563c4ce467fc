//! When a policy runs on a volume: its cron schedule came round since the
//! last check, or the volume is at or above the policy's high watermark.
//!
//! Pure decisions over times and fullness; the agent's loop supplies the
//! clock and the `statvfs` reading ([`used_percent`]). Cron expressions are
//! read on the site's clocks ([`SiteZone`]), like the crontab the operators
//! know: `0 2 * * *` runs at two in the night where the site is, summer and
//! winter.

use std::path::Path;
use std::time::SystemTime;

use crate::policy::Policy;
use crate::site_zone::SiteZone;

/// Why a run starts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Trigger {
    /// The policy's schedule fired at this time.
    Schedule(SystemTime),
    /// The volume is this full (percent), at or above the high watermark.
    Watermark(f64),
    /// An operator asked (`strata ctl run now`).
    Manual,
}

impl Trigger {
    /// A short name for logs and metrics labels.
    pub fn as_str(&self) -> &'static str {
        match self {
            Trigger::Schedule(_) => "schedule",
            Trigger::Watermark(_) => "watermark",
            Trigger::Manual => "manual",
        }
    }
}

/// Whether `policy` should run on a volume now.
///
/// `since` is when this volume was last checked for this policy (on start:
/// when the last recorded run began, so that a schedule missed while the
/// agent was down is caught up once, not once per missed firing).
/// `used_pct` is the volume's fullness, when known; `zone` is the site's,
/// whose clocks the schedule is read on. The watermark wins over the
/// schedule: it says why the run is urgent.
pub fn due(
    policy: &Policy,
    since: SystemTime,
    now: SystemTime,
    used_pct: Option<f64>,
    zone: &SiteZone,
) -> Option<Trigger> {
    if let Some(used) = used_pct
        && policy.should_start(used)
    {
        return Some(Trigger::Watermark(used));
    }
    let fire = zone.next_fire(policy.schedule()?, since)?;
    (fire <= now).then_some(Trigger::Schedule(fire))
}

/// How many bytes must go from the filesystem holding `path` to bring it
/// down to `pct` percent full (as [`used_percent`] counts); 0 when it is not
/// above it.
pub fn bytes_above(path: &Path, pct: f64) -> std::io::Result<u64> {
    let st = rustix::fs::statvfs(path)?;
    let used = st.f_blocks.saturating_sub(st.f_bfree) * st.f_frsize;
    let usable = used + st.f_bavail * st.f_frsize;
    let target = (usable as f64 * pct / 100.0) as u64;
    Ok(used.saturating_sub(target))
}

/// How full the filesystem holding `path` is, in percent of the space a
/// non-root writer can use (`df`'s Use%: used / (used + available)).
pub fn used_percent(path: &Path) -> std::io::Result<f64> {
    let st = rustix::fs::statvfs(path)?;
    let used = st.f_blocks.saturating_sub(st.f_bfree) as f64;
    let avail = st.f_bavail as f64;
    if used + avail == 0.0 {
        return Ok(0.0);
    }
    Ok(100.0 * used / (used + avail))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::policy::parse_policy;

    fn policy(extra: &str) -> Policy {
        parse_policy(&format!(
            "name: p\nselector: {{volumes: [\"*\"]}}\nlake: {{url: \"file:///tmp/lake\"}}\n\
             rules:\n  - name: r\n    modifiedBefore: 1d\n    action: move\n{extra}"
        ))
        .unwrap_or_else(|e| panic!("{e}"))
    }

    /// A time on the site's clocks (Europe/Berlin in these tests).
    fn local(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> SystemTime {
        use chrono::TimeZone;
        chrono_tz::Europe::Berlin
            .with_ymd_and_hms(y, mo, d, h, mi, 0)
            .single()
            .expect("unambiguous local time")
            .into()
    }

    fn berlin() -> SiteZone {
        SiteZone::named("Europe/Berlin").unwrap()
    }

    #[test]
    fn trigger_schedule_fires_once_per_period() {
        let p = policy("schedule: \"0 * * * *\"\n");
        let since = local(2026, 3, 10, 9, 0);
        // nothing between 09:00 (exclusive) and 09:59
        assert_eq!(
            due(&p, since, local(2026, 3, 10, 9, 59), None, &berlin()),
            None
        );
        // 10:00 came round
        assert_eq!(
            due(&p, since, local(2026, 3, 10, 10, 0), None, &berlin()),
            Some(Trigger::Schedule(local(2026, 3, 10, 10, 0)))
        );
        // three missed firings while down: one run, at the first of them
        assert_eq!(
            due(&p, since, local(2026, 3, 10, 12, 30), None, &berlin()),
            Some(Trigger::Schedule(local(2026, 3, 10, 10, 0)))
        );
    }

    #[test]
    fn trigger_next_fire_is_strictly_after() {
        let p = policy("schedule: \"30 2 * * *\"\n");
        let s = p.schedule().unwrap();
        let at = local(2026, 3, 10, 2, 30);
        assert_eq!(berlin().next_fire(s, at), Some(local(2026, 3, 11, 2, 30)));
        assert_eq!(
            berlin().next_fire(s, at - Duration::from_secs(1)),
            Some(local(2026, 3, 10, 2, 30))
        );
    }

    #[test]
    fn trigger_schedule_is_read_on_the_site_clocks() {
        use chrono::TimeZone;
        let p = policy("schedule: \"0 2 * * *\"\n");
        let utc = |h: u32, m: u32| -> SystemTime {
            chrono::Utc
                .with_ymd_and_hms(2026, 3, 3, h, m, 0)
                .single()
                .unwrap()
                .into()
        };
        let since = utc(0, 0);
        // 02:30 UTC: two in the night has come in UTC, not yet in Chicago,
        // where 02:00 CST is 08:00 UTC.
        assert_eq!(
            due(&p, since, utc(2, 30), None, &SiteZone::default()),
            Some(Trigger::Schedule(utc(2, 0)))
        );
        let chicago = SiteZone::named("America/Chicago").unwrap();
        assert_eq!(due(&p, since, utc(2, 30), None, &chicago), None);
        assert_eq!(
            due(&p, since, utc(8, 0), None, &chicago),
            Some(Trigger::Schedule(utc(8, 0)))
        );
    }

    #[test]
    fn trigger_watermark_wins_and_needs_watermarks() {
        let p = policy("schedule: \"0 * * * *\"\nwatermarks: {high: 85%, low: 70%}\n");
        let since = local(2026, 3, 10, 9, 0);
        let now = local(2026, 3, 10, 9, 10);
        assert_eq!(due(&p, since, now, Some(84.9), &berlin()), None);
        assert_eq!(
            due(&p, since, now, Some(85.0), &berlin()),
            Some(Trigger::Watermark(85.0))
        );
        // without watermarks fullness alone never starts a run
        let q = policy("");
        assert_eq!(due(&q, since, now, Some(99.0), &berlin()), None);
        // and without a schedule nothing is ever due by time
        assert_eq!(
            due(&q, since, local(2030, 1, 1, 0, 0), None, &berlin()),
            None
        );
    }

    #[test]
    fn trigger_used_percent_reads_a_real_filesystem() {
        let dir = tempfile::tempdir().unwrap();
        let used = used_percent(dir.path()).unwrap();
        assert!((0.0..=100.0).contains(&used), "{used}");
        let e = used_percent(&dir.path().join("missing")).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::NotFound);
    }
}
