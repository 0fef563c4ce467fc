//! Quantities as people write them: `7d`, `512KiB`, `50MiB/s`, `85%`.
//! Each parser returns the reason to show after the field's path.

use std::time::Duration;

/// `30s`, `15m`, `12h`, `7d`, `2w`, or several together (`1d12h`).
/// A unit is required: a bare `30` could mean anything.
pub(crate) fn parse_duration(text: &str) -> Result<Duration, String> {
    let bad = || format!("expected a duration like 7d, got {text:?} (units: s, m, h, d, w)");
    let mut rest = text.trim();
    if rest.is_empty() {
        return Err(bad());
    }
    let mut total: u64 = 0;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
        if digits == 0 {
            return Err(bad());
        }
        let n: u64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let secs = match &rest[..unit_len] {
            "s" => 1,
            "m" => 60,
            "h" => 3600,
            "d" => 86_400,
            "w" => 604_800,
            _ => return Err(bad()),
        };
        rest = &rest[unit_len..];
        total = n
            .checked_mul(secs)
            .and_then(|s| total.checked_add(s))
            .ok_or_else(|| format!("duration {text:?} is too long"))?;
    }
    Ok(Duration::from_secs(total))
}

/// `512KiB`, `10MiB`, `1GB`, `1.5GiB`, `4096` (bytes). Binary units
/// (`KiB`, `Ki`) are powers of 1024, decimal ones (`kB`, `K`) of 1000, as in
/// Kubernetes quantities. Fractions are rounded down to whole bytes.
pub(crate) fn parse_size(text: &str) -> Result<u64, String> {
    let bad = || {
        format!("expected a size like 10MiB (B, KiB, MiB, GiB, TiB, kB, MB, GB, TB), got {text:?}")
    };
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = (&t[..split], t[split..].trim_start());
    let multiplier = size_unit(unit).ok_or_else(bad)?;
    scale(number, multiplier)
        .ok_or_else(bad)?
        .ok_or_else(|| format!("size {text:?} is too large"))
}

fn size_unit(unit: &str) -> Option<u64> {
    const K: u64 = 1000;
    const KI: u64 = 1024;
    Some(match unit {
        "" | "B" => 1,
        "k" | "K" | "kB" | "KB" => K,
        "M" | "MB" => K.pow(2),
        "G" | "GB" => K.pow(3),
        "T" | "TB" => K.pow(4),
        "Ki" | "KiB" => KI,
        "Mi" | "MiB" => KI.pow(2),
        "Gi" | "GiB" => KI.pow(3),
        "Ti" | "TiB" => KI.pow(4),
        _ => return None,
    })
}

/// `number * multiplier` in whole units, exact for decimal fractions.
/// `None`: not a number; `Some(None)`: overflow.
fn scale(number: &str, multiplier: u64) -> Option<Option<u64>> {
    let (whole, frac) = number.split_once('.').unwrap_or((number, ""));
    if whole.is_empty() || !whole.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if !frac.bytes().all(|b| b.is_ascii_digit()) || (number.contains('.') && frac.is_empty()) {
        return None;
    }
    let Ok(whole) = whole.parse::<u128>() else {
        return Some(None);
    };
    let frac = &frac[..frac.len().min(18)];
    let frac_value = if frac.is_empty() {
        0
    } else {
        frac.parse::<u128>().ok()? * u128::from(multiplier) / 10u128.pow(frac.len() as u32)
    };
    let total = whole
        .checked_mul(u128::from(multiplier))
        .and_then(|w| w.checked_add(frac_value));
    Some(total.and_then(|t| u64::try_from(t).ok()))
}

/// `50MiB/s` (or a bare number of bytes per second); `unlimited` is `None`.
/// `0B/s` is allowed: it pauses uploads (useful in a timetable window).
pub(crate) fn parse_rate(text: &str) -> Result<Option<u64>, String> {
    let t = text.trim();
    if t == "unlimited" {
        return Ok(None);
    }
    let bad = || format!("expected a rate like 50MiB/s or unlimited, got {text:?}");
    let size = match t.strip_suffix("/s") {
        Some(size) => size,
        None if t.bytes().all(|b| b.is_ascii_digit()) && !t.is_empty() => t,
        None => return Err(bad()),
    };
    parse_size(size).map(Some).map_err(|_| bad())
}

/// `85%`, `85.5%`, or a bare `85`, between 0 and 100.
pub(crate) fn parse_percent(text: &str) -> Result<f64, String> {
    let bad = || format!("expected a percentage like 85%, got {text:?}");
    let t = text.trim();
    let number = t.strip_suffix('%').unwrap_or(t).trim_end();
    if number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return Err(bad());
    }
    let pct: f64 = number.parse().map_err(|_| bad())?;
    if !(0.0..=100.0).contains(&pct) {
        return Err(format!(
            "expected a percentage between 0% and 100%, got {text:?}"
        ));
    }
    Ok(pct)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1024 * 1024;

    #[test]
    fn policy_durations() {
        let ok = [
            ("30s", 30),
            ("15m", 900),
            ("12h", 43_200),
            ("7d", 604_800),
            ("2w", 1_209_600),
            ("1d12h", 129_600),
            ("1h30m", 5400),
            ("0s", 0),
            (" 7d ", 604_800),
        ];
        for (text, secs) in ok {
            assert_eq!(
                parse_duration(text),
                Ok(Duration::from_secs(secs)),
                "{text}"
            );
        }
        for text in [
            "", "7", "7 days", "7days", "d", "7D", "1y", "-3d", "1.5h", "7d ago", "h1",
        ] {
            let err = parse_duration(text).unwrap_err();
            assert!(
                err.starts_with("expected a duration like 7d"),
                "{text}: {err}"
            );
        }
        assert!(
            parse_duration("99999999999999999w")
                .unwrap_err()
                .contains("too long")
        );
    }

    #[test]
    fn policy_sizes() {
        let ok = [
            ("0", 0),
            ("4096", 4096),
            ("4096B", 4096),
            ("512KiB", 512 * 1024),
            ("10MiB", 10 * MIB),
            ("10Mi", 10 * MIB),
            ("1GiB", 1024 * MIB),
            ("1GB", 1_000_000_000),
            ("1G", 1_000_000_000),
            ("1kB", 1000),
            ("2TiB", 2 * 1024 * 1024 * MIB),
            ("1.5KiB", 1536),
            ("0.5MB", 500_000),
            ("10 MiB", 10 * MIB),
        ];
        for (text, bytes) in ok {
            assert_eq!(parse_size(text), Ok(bytes), "{text}");
        }
        for text in [
            "", "MiB", "10XB", "-1KiB", "1.KiB", ".5KiB", "10mib", "ten", "1e3",
        ] {
            let err = parse_size(text).unwrap_err();
            assert!(
                err.starts_with("expected a size like 10MiB"),
                "{text}: {err}"
            );
        }
        assert!(
            parse_size("99999999999TiB")
                .unwrap_err()
                .contains("too large")
        );
    }

    #[test]
    fn policy_rates() {
        assert_eq!(parse_rate("50MiB/s"), Ok(Some(50 * MIB)));
        assert_eq!(parse_rate("1GB/s"), Ok(Some(1_000_000_000)));
        assert_eq!(parse_rate("1000000"), Ok(Some(1_000_000)));
        assert_eq!(parse_rate("0B/s"), Ok(Some(0)));
        assert_eq!(parse_rate("unlimited"), Ok(None));
        for text in ["50MiB", "50MiB/h", "fast", "/s", "50Mbit/s", ""] {
            let err = parse_rate(text).unwrap_err();
            assert!(
                err.starts_with("expected a rate like 50MiB/s"),
                "{text}: {err}"
            );
        }
    }

    #[test]
    fn policy_percentages() {
        for (text, pct) in [
            ("85%", 85.0),
            ("70", 70.0),
            ("0%", 0.0),
            ("100%", 100.0),
            ("92.5%", 92.5),
        ] {
            assert_eq!(parse_percent(text), Ok(pct), "{text}");
        }
        for text in ["", "%", "eighty", "-5%", "85%%", "0x10", "NaN", "inf%"] {
            let err = parse_percent(text).unwrap_err();
            assert!(
                err.starts_with("expected a percentage like 85%"),
                "{text}: {err}"
            );
        }
        assert!(
            parse_percent("101%")
                .unwrap_err()
                .contains("between 0% and 100%")
        );
    }
}
