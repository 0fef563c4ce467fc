//! The site's time zone: the one zone in which every policy's cron schedule
//! fires and every bandwidth timetable's windows open and close, and where
//! it came from.
//!
//! A container has no `TZ` and no `/etc/localtime`, so the process's own
//! local time is UTC there, whatever the site's clocks say; the zone is
//! therefore named (`--site-timezone`, an IANA name) or found the way the C
//! library finds it (`TZ`, then `/etc/localtime`), UTC only when neither
//! says anything. The zone's rules come from the IANA database compiled
//! into the binary (`chrono-tz`), never from the machine's tzdata, so a
//! site's schedules do not change with the image they run in.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::{Duration, SystemTime};

use chrono::{DateTime, Datelike, Timelike};
use chrono_tz::Tz;

use crate::policy::{Schedule, Weekday};

/// Where the site's zone came from.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ZoneSource {
    /// Named by the operator (`--site-timezone`, `STRATA_SITE_TIMEZONE`).
    Named,
    /// The `TZ` environment variable.
    TzVariable,
    /// The link at this path (`/etc/localtime`) into a zoneinfo directory.
    LocalTime(PathBuf),
    /// Nothing named one: UTC.
    Default,
}

impl fmt::Display for ZoneSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ZoneSource::Named => f.write_str("--site-timezone"),
            ZoneSource::TzVariable => f.write_str("TZ"),
            ZoneSource::LocalTime(path) => write!(f, "{}", path.display()),
            ZoneSource::Default => f.write_str("default: no TZ, no /etc/localtime"),
        }
    }
}

/// Why no site zone could be settled on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ZoneError {
    /// `what` (`--site-timezone`, `TZ`) holds something that is not an
    /// IANA zone name.
    #[error("{what} {value:?}: {NOT_IANA}")]
    Unknown {
        /// Where the value came from.
        what: &'static str,
        /// The value.
        value: String,
    },
    /// The local-time file exists but does not say which zone it is.
    #[error(
        "{}: {reason}, so the zone it holds has no IANA name strata can use; name the site's \
         zone with --site-timezone (env STRATA_SITE_TIMEZONE)",
        path.display()
    )]
    Unnamed {
        /// The file (`/etc/localtime`, or a file `TZ` names).
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
}

impl ZoneError {
    /// What is wrong, without where the value came from (for a message
    /// that names the flag already).
    pub fn reason(&self) -> String {
        match self {
            ZoneError::Unknown { .. } => NOT_IANA.to_owned(),
            ZoneError::Unnamed { reason, .. } => reason.clone(),
        }
    }
}

const NOT_IANA: &str = "not an IANA time zone name (like Europe/Berlin, America/Chicago or UTC)";

/// What a process finds its zone in when none is named.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZoneEnvironment {
    /// The `TZ` variable (an empty one counts as unset).
    pub tz: Option<String>,
    /// The local-time file, `/etc/localtime`.
    pub localtime: PathBuf,
}

impl ZoneEnvironment {
    /// This process's: its `TZ` and `/etc/localtime`.
    pub fn of_this_process() -> Self {
        Self {
            tz: std::env::var("TZ").ok(),
            localtime: PathBuf::from("/etc/localtime"),
        }
    }
}

/// The site's time zone. Every wall-clock question the agent asks (when a
/// schedule fires next, which hour of which weekday it is for the bandwidth
/// timetable) is answered in it, daylight saving time included.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SiteZone {
    tz: Tz,
    source: ZoneSource,
}

impl Default for SiteZone {
    /// UTC, named by nobody.
    fn default() -> Self {
        Self {
            tz: Tz::UTC,
            source: ZoneSource::Default,
        }
    }
}

impl fmt::Display for SiteZone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (from {})", self.name(), self.source)
    }
}

impl SiteZone {
    /// The zone `name` (an IANA name such as `Europe/Berlin`), as named by
    /// the operator.
    pub fn named(name: &str) -> Result<Self, ZoneError> {
        Ok(Self {
            tz: iana(name).ok_or_else(|| ZoneError::Unknown {
                what: "--site-timezone",
                value: name.to_owned(),
            })?,
            source: ZoneSource::Named,
        })
    }

    /// The zone `name` if given (see [`SiteZone::named`]), else the one
    /// `env` holds: `TZ` (an IANA name, or `:` and one, or the path of a
    /// zoneinfo file), else the zone `/etc/localtime` links to, else UTC
    /// when there is no such file. A `TZ` or a local-time file that holds a
    /// zone without naming it (a POSIX rule like `CET-1CEST`, a copied
    /// file) is an error rather than a guess.
    pub fn resolve(name: Option<&str>, env: &ZoneEnvironment) -> Result<Self, ZoneError> {
        if let Some(name) = name {
            return Self::named(name);
        }
        if let Some(tz) = env.tz.as_deref().filter(|t| !t.is_empty()) {
            let value = tz.strip_prefix(':').unwrap_or(tz);
            let tz = if value.starts_with('/') {
                linked_zone(Path::new(value))?
            } else {
                iana(value).ok_or_else(|| ZoneError::Unknown {
                    what: "TZ",
                    value: tz.to_owned(),
                })?
            };
            return Ok(Self {
                tz,
                source: ZoneSource::TzVariable,
            });
        }
        match std::fs::symlink_metadata(&env.localtime) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            _ => Ok(Self {
                tz: linked_zone(&env.localtime)?,
                source: ZoneSource::LocalTime(env.localtime.clone()),
            }),
        }
    }

    /// The zone's IANA name.
    pub fn name(&self) -> &'static str {
        self.tz.name()
    }

    /// Where the zone came from.
    pub fn source(&self) -> &ZoneSource {
        &self.source
    }

    /// The first time `schedule` fires strictly after `after`, reading its
    /// fields as wall-clock time in this zone, if it ever does. A time the
    /// clocks skip (02:30 on the night they spring forward) fires at the
    /// first instant after the gap; a time they pass twice fires once, the
    /// first time (croner's rules, as cron's).
    pub fn next_fire(&self, schedule: &Schedule, after: SystemTime) -> Option<SystemTime> {
        let after: DateTime<Tz> = DateTime::<chrono::Utc>::from(after).with_timezone(&self.tz);
        schedule
            .cron()
            .find_next_occurrence(&after, false)
            .ok()
            .map(SystemTime::from)
    }

    /// The weekday and hour of `t` on this zone's clocks, and how long
    /// until its next hour begins (at least a second).
    pub fn day_hour(&self, t: SystemTime) -> (Weekday, u8, Duration) {
        let local = DateTime::<chrono::Utc>::from(t).with_timezone(&self.tz);
        let day = Weekday::from_days_from_monday(local.weekday().num_days_from_monday() as u8)
            .unwrap_or(Weekday::Mon);
        let into_hour = u64::from(local.minute() * 60 + local.second().min(59));
        let left = Duration::from_secs((3600 - into_hour).max(1));
        (day, local.hour() as u8, left)
    }
}

/// `name` as a zone of the IANA database compiled in.
fn iana(name: &str) -> Option<Tz> {
    Tz::from_str(name).ok()
}

/// The zone whose zoneinfo file `path` is a link to (`/etc/localtime` →
/// `/usr/share/zoneinfo/Europe/Berlin`: Europe/Berlin). Only the link is
/// read, never the file behind it, which an image without tzdata lacks.
fn linked_zone(path: &Path) -> Result<Tz, ZoneError> {
    let unnamed = |reason: String| ZoneError::Unnamed {
        path: path.to_owned(),
        reason,
    };
    let mut link = path.to_owned();
    // A link to a link (`/etc/localtime` → `/etc/alternatives/…`): follow a
    // few until one names a zoneinfo file.
    for _ in 0..8 {
        if let Some(zone) = zone_in_path(&link) {
            return iana(&zone).ok_or_else(|| {
                unnamed(format!(
                    "{zone:?} (from {}) is not an IANA time zone name",
                    link.display()
                ))
            });
        }
        let target = match std::fs::read_link(&link) {
            Ok(target) => target,
            Err(_) if link != path => break,
            Err(e) if e.kind() == std::io::ErrorKind::InvalidInput => {
                return Err(unnamed(
                    "not a link into a zoneinfo directory (a copied zone file)".to_owned(),
                ));
            }
            Err(e) => return Err(unnamed(format!("cannot read it: {e}"))),
        };
        link = match link.parent() {
            Some(dir) if target.is_relative() => dir.join(target),
            _ => target,
        };
    }
    Err(unnamed(format!(
        "links to {}, which is not in a zoneinfo directory",
        link.display()
    )))
}

/// The zone name a zoneinfo path ends in: what follows `zoneinfo/` (and
/// the `posix/` or `right/` variant directory, whose zones have the same
/// names).
fn zone_in_path(path: &Path) -> Option<String> {
    let text = path.to_str()?;
    let (_, rest) = text.rsplit_once("zoneinfo/")?;
    let rest = rest
        .strip_prefix("posix/")
        .or_else(|| rest.strip_prefix("right/"))
        .unwrap_or(rest);
    (!rest.is_empty()).then(|| rest.to_owned())
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn berlin() -> SiteZone {
        SiteZone::named("Europe/Berlin").unwrap()
    }

    fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> SystemTime {
        chrono::Utc
            .with_ymd_and_hms(y, mo, d, h, mi, 0)
            .single()
            .unwrap()
            .into()
    }

    fn schedule(cron: &str) -> Schedule {
        Schedule::parse(cron).unwrap()
    }

    #[test]
    fn site_zone_daily_run_on_the_spring_forward_night() {
        // Europe/Berlin, Sunday 2026-03-29: 02:00 CET becomes 03:00 CEST.
        let z = berlin();
        let two = schedule("0 2 * * *");
        // Saturday 02:00 CET is 01:00 UTC.
        assert_eq!(
            z.next_fire(&two, utc(2026, 3, 27, 12, 0)),
            Some(utc(2026, 3, 28, 1, 0))
        );
        // 02:00 does not exist on Sunday: the run is at the first instant
        // after the gap, 03:00 CEST (01:00 UTC), once.
        let sunday = z.next_fire(&two, utc(2026, 3, 28, 1, 0)).unwrap();
        assert_eq!(sunday, utc(2026, 3, 29, 1, 0));
        // Monday 02:00 CEST is 00:00 UTC.
        assert_eq!(z.next_fire(&two, sunday), Some(utc(2026, 3, 30, 0, 0)));
        // The process's UTC would have fired at 02:00 UTC every day.
        assert_eq!(
            SiteZone::default().next_fire(&two, utc(2026, 3, 28, 1, 0)),
            Some(utc(2026, 3, 28, 2, 0))
        );
    }

    #[test]
    fn site_zone_daily_run_on_the_fall_back_night_fires_once() {
        // Sunday 2026-10-25: 03:00 CEST becomes 02:00 CET, so 02:00-02:59
        // happens twice (00:00 and 01:00 UTC).
        let z = berlin();
        let two = schedule("0 2 * * *");
        let sunday = z.next_fire(&two, utc(2026, 10, 24, 12, 0)).unwrap();
        assert_eq!(sunday, utc(2026, 10, 25, 0, 0));
        // Not again at the second 02:00: next on Monday, 02:00 CET.
        assert_eq!(z.next_fire(&two, sunday), Some(utc(2026, 10, 26, 1, 0)));
        // An hourly schedule fires in both passes of the repeated hour.
        let hourly = schedule("30 * * * *");
        let first = z.next_fire(&hourly, utc(2026, 10, 25, 0, 0)).unwrap();
        assert_eq!(first, utc(2026, 10, 25, 0, 30));
        assert_eq!(z.next_fire(&hourly, first), Some(utc(2026, 10, 25, 1, 30)));
    }

    #[test]
    fn site_zone_night_window_across_the_fall_back() {
        // `sat 22-06`: Saturday 22:00 CEST (20:00 UTC) to Sunday 06:00 CET
        // (05:00 UTC), nine hours that night.
        let p = crate::policy::parse_policy(
            "name: p\nselector: {volumes: [\"*\"]}\nlake: {url: \"file:///tmp/lake\"}\n\
             rules:\n  - name: r\n    modifiedBefore: 1d\n    action: move\n\
             bandwidth:\n  limit: 50B/s\n  timetable:\n    \
             - {days: [sat], hours: \"22-06\", limit: unlimited}\n",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let limit = |z: &SiteZone, t: SystemTime| {
            let (day, hour, _) = z.day_hour(t);
            p.bandwidth_at(day, hour)
        };
        let z = berlin();
        assert_eq!(limit(&z, utc(2026, 10, 24, 19, 59)), Some(50));
        for open in [
            utc(2026, 10, 24, 20, 0),
            utc(2026, 10, 25, 0, 30), // 02:30 CEST
            utc(2026, 10, 25, 1, 30), // 02:30 CET, the second time
            utc(2026, 10, 25, 4, 59), // 05:59 CET
        ] {
            assert_eq!(limit(&z, open), None, "{:?}", z.day_hour(open));
        }
        assert_eq!(limit(&z, utc(2026, 10, 25, 5, 0)), Some(50));
        assert_eq!(
            z.day_hour(utc(2026, 10, 25, 1, 30)),
            (Weekday::Sun, 2, Duration::from_secs(1800))
        );
        // In UTC the window would open two hours late and close an hour late.
        let utc_zone = SiteZone::default();
        assert_eq!(limit(&utc_zone, utc(2026, 10, 24, 20, 0)), Some(50));
        assert_eq!(limit(&utc_zone, utc(2026, 10, 25, 5, 0)), None);
    }

    #[test]
    fn site_zone_hour_boundaries_of_a_half_hour_zone() {
        // India is UTC+05:30 all year: its hours begin at half past on UTC's.
        let z = SiteZone::named("Asia/Kolkata").unwrap();
        let (day, hour, left) = z.day_hour(utc(2026, 1, 5, 18, 40));
        assert_eq!((day, hour), (Weekday::Tue, 0));
        assert_eq!(left, Duration::from_secs(50 * 60));
    }

    fn env(tz: Option<&str>, localtime: &Path) -> ZoneEnvironment {
        ZoneEnvironment {
            tz: tz.map(str::to_owned),
            localtime: localtime.to_owned(),
        }
    }

    #[test]
    fn site_zone_named_beats_tz_which_beats_localtime() {
        let dir = tempfile::tempdir().unwrap();
        let localtime = dir.path().join("localtime");
        std::os::unix::fs::symlink("/usr/share/zoneinfo/America/Chicago", &localtime).unwrap();

        let z =
            SiteZone::resolve(Some("Europe/Berlin"), &env(Some("Asia/Tokyo"), &localtime)).unwrap();
        assert_eq!(
            (z.name(), z.source()),
            ("Europe/Berlin", &ZoneSource::Named)
        );
        assert_eq!(z.to_string(), "Europe/Berlin (from --site-timezone)");

        let z = SiteZone::resolve(None, &env(Some("Asia/Tokyo"), &localtime)).unwrap();
        assert_eq!(
            (z.name(), z.source()),
            ("Asia/Tokyo", &ZoneSource::TzVariable)
        );
        // glibc's forms: a leading colon, and a path to a zoneinfo file.
        let z = SiteZone::resolve(None, &env(Some(":Asia/Tokyo"), &localtime)).unwrap();
        assert_eq!(z.name(), "Asia/Tokyo");
        let z = SiteZone::resolve(
            None,
            &env(Some(":/usr/share/zoneinfo/posix/Asia/Tokyo"), &localtime),
        )
        .unwrap();
        assert_eq!(z.name(), "Asia/Tokyo");

        // An empty TZ is no TZ: the local-time link, its target never read
        // (this machine need not have tzdata).
        for tz in [None, Some("")] {
            let z = SiteZone::resolve(None, &env(tz, &localtime)).unwrap();
            assert_eq!(z.name(), "America/Chicago");
            assert_eq!(z.source(), &ZoneSource::LocalTime(localtime.clone()));
        }
        // A relative link, through another link.
        let hop = dir.path().join("hop");
        std::os::unix::fs::symlink("zoneinfo/Europe/Lisbon", &hop).unwrap();
        let relative = dir.path().join("relative");
        std::os::unix::fs::symlink("hop", &relative).unwrap();
        assert_eq!(
            SiteZone::resolve(None, &env(None, &relative))
                .unwrap()
                .name(),
            "Europe/Lisbon"
        );

        // Nothing at all: UTC, and it says so.
        let z = SiteZone::resolve(None, &env(None, &dir.path().join("missing"))).unwrap();
        assert_eq!((z.name(), z.source()), ("UTC", &ZoneSource::Default));
        assert_eq!(z, SiteZone::default());
        assert_eq!(
            z.to_string(),
            "UTC (from default: no TZ, no /etc/localtime)"
        );
    }

    #[test]
    fn site_zone_errors_name_where_the_value_came_from() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing");
        let e = SiteZone::named("Europe/Berln").unwrap_err().to_string();
        assert_eq!(
            e,
            "--site-timezone \"Europe/Berln\": not an IANA time zone name (like Europe/Berlin, \
             America/Chicago or UTC)"
        );
        // A POSIX rule says how the clocks go, not which zone it is.
        let e = SiteZone::resolve(None, &env(Some("CET-1CEST,M3.5.0,M10.5.0/3"), &missing))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("TZ \"CET-1CEST,M3.5.0,M10.5.0/3\": not an IANA"),
            "{e}"
        );

        // A copied zone file (a bind-mounted host /etc/localtime).
        let copied = dir.path().join("copied");
        std::fs::write(&copied, b"TZif2").unwrap();
        let e = SiteZone::resolve(None, &env(None, &copied))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with(&format!(
                "{}: not a link into a zoneinfo directory",
                copied.display()
            )) && e
                .ends_with("name the site's zone with --site-timezone (env STRATA_SITE_TIMEZONE)"),
            "{e}"
        );
        // A link elsewhere, and a link to a name the database lacks.
        let through_link = |name: &str, target: &str| {
            let link = dir.path().join(name);
            std::os::unix::fs::symlink(target, &link).unwrap();
            SiteZone::resolve(None, &env(None, &link))
                .unwrap_err()
                .to_string()
        };
        let e = through_link("elsewhere", "/opt/zones/berlin");
        assert!(
            e.contains("links to /opt/zones/berlin, which is not in a zoneinfo"),
            "{e}"
        );
        let e = through_link("unknown", "/usr/share/zoneinfo/Mars/Olympus");
        assert!(
            e.contains("\"Mars/Olympus\" (from /usr/share/zoneinfo/Mars/Olympus) is not an IANA"),
            "{e}"
        );
    }
}
