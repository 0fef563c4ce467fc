//! Human units and plain tables for `strata ctl`'s default output.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use comfy_table::presets::NOTHING;
use comfy_table::{CellAlignment, Table};

/// A table in the style of `kubectl get`: upper-case headers, columns
/// separated by three spaces, no borders, no trailing spaces.
pub(super) struct Plain {
    table: Table,
    right: Vec<usize>,
}

impl Plain {
    pub(super) fn new(header: &[&str]) -> Self {
        let mut table = Table::new();
        table.load_style(NOTHING).set_header(header.to_vec());
        Self {
            table,
            right: Vec::new(),
        }
    }

    /// Aligns the columns at `columns` (numbers) to the right.
    pub(super) fn right(mut self, columns: &[usize]) -> Self {
        self.right = columns.to_vec();
        self
    }

    pub(super) fn row(&mut self, cells: Vec<String>) {
        self.table.add_row(cells);
    }

    pub(super) fn render(mut self) -> String {
        let n = self.table.column_count();
        for (i, col) in self.table.column_iter_mut().enumerate() {
            col.set_padding((0, if i + 1 == n { 0 } else { 3 }));
            if self.right.contains(&i) {
                col.set_cell_alignment(CellAlignment::Right);
            }
        }
        let mut out = self.table.trim_fmt();
        out.push('\n');
        out
    }
}

/// Bytes in binary units: `0 B`, `512 B`, `1.5 KiB`, `3.0 GiB`.
pub(super) fn bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut value = n as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// A duration in its two largest units: `45s`, `5m12s`, `2h13m`, `3d4h`.
pub(super) fn duration(d: Duration) -> String {
    let s = d.as_secs();
    let (d_, h, m, sec) = (s / 86_400, s / 3_600 % 24, s / 60 % 60, s % 60);
    let two = |a: u64, ua: &str, b: u64, ub: &str| {
        if b == 0 {
            format!("{a}{ua}")
        } else {
            format!("{a}{ua}{b}{ub}")
        }
    };
    if d_ > 0 {
        two(d_, "d", h, "h")
    } else if h > 0 {
        two(h, "h", m, "m")
    } else if m > 0 {
        two(m, "m", sec, "s")
    } else if s == 0 && d.subsec_millis() > 0 {
        format!("{}ms", d.subsec_millis())
    } else {
        format!("{sec}s")
    }
}

/// When `t` was, seen from `now`: `just now`, `5m ago`, `in 2h` (a clock ahead).
pub(super) fn ago(t: Option<SystemTime>, now: SystemTime) -> String {
    let Some(t) = t else {
        return "-".to_owned();
    };
    match now.duration_since(t) {
        Ok(d) if d < Duration::from_secs(1) => "just now".to_owned(),
        Ok(d) => format!("{} ago", duration(d)),
        Err(e) if e.duration() < Duration::from_secs(1) => "just now".to_owned(),
        Err(e) => format!("in {}", duration(e.duration())),
    }
}

/// A protobuf timestamp as a system time.
pub(super) fn system_time(t: &prost_types::Timestamp) -> SystemTime {
    let nanos = Duration::from_nanos(t.nanos.clamp(0, 999_999_999) as u64);
    if t.seconds >= 0 {
        UNIX_EPOCH + Duration::from_secs(t.seconds as u64) + nanos
    } else {
        UNIX_EPOCH - Duration::from_secs(t.seconds.unsigned_abs()) + nanos
    }
}

/// RFC 3339 in UTC with milliseconds: the form of every time in JSON output.
pub(super) fn rfc3339(t: &prost_types::Timestamp) -> String {
    humantime::format_rfc3339_millis(system_time(t)).to_string()
}

/// A protobuf duration as a std one (negative ones as zero).
pub(super) fn std_duration(d: &prost_types::Duration) -> Duration {
    if d.seconds < 0 {
        return Duration::ZERO;
    }
    Duration::new(d.seconds as u64, d.nanos.clamp(0, 999_999_999) as u32)
}

/// `k=v,k2=v2`, or `-` for none.
pub(super) fn labels<'a>(labels: impl Iterator<Item = (&'a String, &'a String)>) -> String {
    let mut pairs: Vec<String> = labels.map(|(k, v)| format!("{k}={v}")).collect();
    if pairs.is_empty() {
        return "-".to_owned();
    }
    pairs.sort();
    pairs.join(",")
}

/// `s` cut to `max` characters with an ellipsis.
pub(super) fn cut(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_owned();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// `-` for an empty cell.
pub(super) fn or_dash(s: &str) -> String {
    if s.is_empty() {
        "-".to_owned()
    } else {
        s.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_units() {
        assert_eq!(bytes(0), "0 B");
        assert_eq!(bytes(1023), "1023 B");
        assert_eq!(bytes(1024), "1.0 KiB");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(3 << 30), "3.0 GiB");
        assert_eq!(bytes(u64::MAX), "16.0 EiB");
    }

    #[test]
    fn durations_in_two_units() {
        let s = Duration::from_secs;
        assert_eq!(duration(Duration::ZERO), "0s");
        assert_eq!(duration(Duration::from_millis(250)), "250ms");
        assert_eq!(duration(s(45)), "45s");
        assert_eq!(duration(s(5 * 60 + 12)), "5m12s");
        assert_eq!(duration(s(2 * 3600)), "2h");
        assert_eq!(duration(s(2 * 3600 + 13 * 60 + 5)), "2h13m");
        assert_eq!(duration(s(3 * 86_400 + 4 * 3600)), "3d4h");
    }

    #[test]
    fn relative_times() {
        let now = UNIX_EPOCH + Duration::from_secs(1_000_000);
        let at = |secs| Some(UNIX_EPOCH + Duration::from_secs(secs));
        assert_eq!(ago(at(1_000_000), now), "just now");
        assert_eq!(ago(at(1_000_000 - 300), now), "5m ago");
        assert_eq!(ago(at(1_000_000 + 7200), now), "in 2h");
        assert_eq!(ago(None, now), "-");
    }

    #[test]
    fn timestamps_in_json_are_rfc3339_utc() {
        let t = prost_types::Timestamp {
            seconds: 1_767_323_045,
            nanos: 123_456_789,
        };
        assert_eq!(rfc3339(&t), "2026-01-02T03:04:05.123Z");
    }

    #[test]
    fn plain_tables_align_without_borders() {
        let mut t = Plain::new(&["NAME", "FILES"]).right(&[1]);
        t.row(vec!["a".into(), "5".into()]);
        t.row(vec!["longer-name".into(), "1234".into()]);
        assert_eq!(
            t.render(),
            "NAME          FILES\n\
             a                 5\n\
             longer-name    1234\n"
        );
    }

    #[test]
    fn cells() {
        assert_eq!(cut("abcdef", 4), "abc…");
        assert_eq!(cut("abc", 4), "abc");
        let l = [
            ("b".to_owned(), "2".to_owned()),
            ("a".to_owned(), "1".to_owned()),
        ];
        assert_eq!(labels(l.iter().map(|(k, v)| (k, v))), "a=1,b=2");
        assert_eq!(or_dash(""), "-");
    }
}
