//! Upload bandwidth: a default limit, and weekly windows with their own.

/// A day of the week.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Weekday {
    /// Monday.
    Mon,
    /// Tuesday.
    Tue,
    /// Wednesday.
    Wed,
    /// Thursday.
    Thu,
    /// Friday.
    Fri,
    /// Saturday.
    Sat,
    /// Sunday.
    Sun,
}

impl Weekday {
    const ALL: [Self; 7] = [
        Self::Mon,
        Self::Tue,
        Self::Wed,
        Self::Thu,
        Self::Fri,
        Self::Sat,
        Self::Sun,
    ];

    /// From the number of days since Monday (0 = Monday … 6 = Sunday).
    pub fn from_days_from_monday(n: u8) -> Option<Self> {
        Self::ALL.get(usize::from(n)).copied()
    }

    fn bit(self) -> u8 {
        1 << (self as u8)
    }

    fn parse(text: &str) -> Option<Self> {
        let i = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
            .iter()
            .position(|d| {
                text.eq_ignore_ascii_case(d) || full_name(d).eq_ignore_ascii_case(text)
            })?;
        Some(Self::ALL[i])
    }
}

fn full_name(short: &str) -> &'static str {
    match short {
        "mon" => "monday",
        "tue" => "tuesday",
        "wed" => "wednesday",
        "thu" => "thursday",
        "fri" => "friday",
        "sat" => "saturday",
        _ => "sunday",
    }
}

/// A weekly window with its own limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    /// Bit `d` set: the window covers weekday `d` (Monday = 0).
    days: u8,
    /// Start hour, inclusive (0..=23).
    from: u8,
    /// End hour, exclusive (1..=24); smaller than `from` wraps past midnight.
    to: u8,
    limit: Option<u64>,
}

impl Window {
    /// A window over `days` (empty: every day) and `hours` (`None`: all day).
    pub(crate) fn new(days: &[Weekday], hours: Option<(u8, u8)>, limit: Option<u64>) -> Self {
        let days = if days.is_empty() {
            0x7f
        } else {
            days.iter().fold(0, |acc, d| acc | d.bit())
        };
        let (from, to) = hours.unwrap_or((0, 24));
        Self {
            days,
            from,
            to,
            limit,
        }
    }

    /// Whether the window covers `hour` (0..=23) of `day`. A window that wraps
    /// past midnight belongs to the day it starts on: `fri 22-06` covers
    /// Friday 22:00 to Saturday 06:00.
    pub fn covers(&self, day: Weekday, hour: u8) -> bool {
        let on = |d: Weekday| self.days & d.bit() != 0;
        if self.from < self.to {
            on(day) && (self.from..self.to).contains(&hour)
        } else {
            let yesterday = Weekday::ALL[(day as usize + 6) % 7];
            (on(day) && hour >= self.from) || (on(yesterday) && hour < self.to)
        }
    }

    /// The limit in this window, bytes per second; `None` is unlimited.
    pub fn limit(&self) -> Option<u64> {
        self.limit
    }
}

/// The upload bandwidth of a policy.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Bandwidth {
    pub(crate) limit: Option<u64>,
    pub(crate) timetable: Vec<Window>,
}

impl Bandwidth {
    /// The limit in bytes per second at `hour` (0..=23, site-local time) of
    /// `day`: the first window covering it, else the default. `None` is
    /// unlimited; `Some(0)` pauses uploads.
    pub fn limit_at(&self, day: Weekday, hour: u8) -> Option<u64> {
        self.timetable
            .iter()
            .find(|w| w.covers(day, hour))
            .map_or(self.limit, Window::limit)
    }

    /// The default limit, outside every window.
    pub fn default_limit(&self) -> Option<u64> {
        self.limit
    }
}

/// `mon`, `Monday`, or a range `mon-fri` (which may wrap: `fri-mon`).
pub(crate) fn parse_days(text: &str) -> Result<Vec<Weekday>, String> {
    let bad = || format!("expected a day like mon or a range like mon-fri, got {text:?}");
    let t = text.trim();
    match t.split_once('-') {
        None => Weekday::parse(t).map(|d| vec![d]).ok_or_else(bad),
        Some((a, b)) => {
            let (a, b) = (
                Weekday::parse(a.trim()).ok_or_else(bad)?,
                Weekday::parse(b.trim()).ok_or_else(bad)?,
            );
            let len = (b as usize + 7 - a as usize) % 7 + 1;
            Ok((0..len)
                .map(|i| Weekday::ALL[(a as usize + i) % 7])
                .collect())
        }
    }
}

/// `08-18`: from 08:00 up to 18:00. `22-06` wraps past midnight; `0-24` is
/// the whole day.
pub(crate) fn parse_hours(text: &str) -> Result<(u8, u8), String> {
    let bad = || format!("expected hours like 08-18, got {text:?}");
    let (a, b) = text.trim().split_once('-').ok_or_else(bad)?;
    let hour = |s: &str| -> Option<u8> {
        let s = s.trim();
        (!s.is_empty() && s.len() <= 2 && s.bytes().all(|c| c.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    };
    let (from, to) = (hour(a).ok_or_else(bad)?, hour(b).ok_or_else(bad)?);
    if from > 23 || to > 24 {
        return Err(format!("hours run from 0 to 24, got {text:?}"));
    }
    if from == to {
        return Err(format!(
            "the window {text:?} is empty; omit hours for the whole day"
        ));
    }
    Ok((from, to))
}

#[cfg(test)]
mod tests {
    use super::*;
    use Weekday::*;

    const MIB: u64 = 1024 * 1024;

    fn timetable() -> Bandwidth {
        Bandwidth {
            limit: Some(50 * MIB),
            timetable: vec![
                Window::new(&[Mon, Tue, Wed, Thu, Fri], Some((8, 18)), Some(5 * MIB)),
                Window::new(&[Fri], Some((22, 6)), None),
                Window::new(&[Sun], None, Some(0)),
            ],
        }
    }

    #[test]
    fn policy_bandwidth_timetable() {
        let b = timetable();
        let cases = [
            (Mon, 7, Some(50 * MIB)),
            (Mon, 8, Some(5 * MIB)),
            (Wed, 17, Some(5 * MIB)),
            (Wed, 18, Some(50 * MIB)),
            (Fri, 21, Some(50 * MIB)),
            (Fri, 22, None),
            (Fri, 23, None),
            (Sat, 0, None),
            (Sat, 5, None),
            (Sat, 6, Some(50 * MIB)),
            (Sun, 0, Some(0)),
            (Sun, 23, Some(0)),
            (Mon, 0, Some(50 * MIB)),
        ];
        for (day, hour, want) in cases {
            assert_eq!(b.limit_at(day, hour), want, "{day:?} {hour}:00");
        }
        assert_eq!(Bandwidth::default().limit_at(Tue, 12), None);
    }

    #[test]
    fn policy_days_and_hours() {
        assert_eq!(
            parse_days("mon-fri").unwrap(),
            vec![Mon, Tue, Wed, Thu, Fri]
        );
        assert_eq!(parse_days("fri-mon").unwrap(), vec![Fri, Sat, Sun, Mon]);
        assert_eq!(parse_days("Sunday").unwrap(), vec![Sun]);
        assert_eq!(parse_days("sat").unwrap(), vec![Sat]);
        for bad in ["", "weekend", "mon-", "mon-fri-sat", "1"] {
            assert!(
                parse_days(bad).unwrap_err().starts_with("expected a day"),
                "{bad}"
            );
        }
        assert_eq!(parse_hours("08-18"), Ok((8, 18)));
        assert_eq!(parse_hours("22-06"), Ok((22, 6)));
        assert_eq!(parse_hours("0-24"), Ok((0, 24)));
        for (bad, reason) in [
            ("8", "expected hours like 08-18"),
            ("08:00-18:00", "expected hours like 08-18"),
            ("8-25", "from 0 to 24"),
            ("24-6", "from 0 to 24"),
            ("9-9", "is empty"),
        ] {
            assert!(parse_hours(bad).unwrap_err().contains(reason), "{bad}");
        }
        assert_eq!(Weekday::from_days_from_monday(6), Some(Sun));
        assert_eq!(Weekday::from_days_from_monday(7), None);
    }
}
