//! When a policy runs: a cron expression, checked with `croner`.

use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};

/// A validated cron schedule: 5 fields (minute granularity) or 6 (with
/// seconds first), or a nickname like `@hourly`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    source: String,
    cron: Cron,
}

impl Schedule {
    /// Parses a cron expression.
    pub(crate) fn parse(text: &str) -> Result<Self, String> {
        let parser = CronParser::builder()
            .seconds(Seconds::Optional)
            .year(Year::Disallowed)
            .build();
        parser
            .parse(text)
            .map(|cron| Self {
                source: text.to_owned(),
                cron,
            })
            .map_err(|e| {
                format!("expected a cron expression like \"0 * * * *\", got {text:?}: {e}")
            })
    }

    /// The expression as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// The parsed expression, to find the next run time with.
    pub fn cron(&self) -> &Cron {
        &self.cron
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_cron_schedules() {
        for ok in [
            "0 * * * *",
            "*/15 * * * *",
            "30 2 * * mon-fri",
            "0 0 1 * *",
            "0 */10 * * * *",
            "@hourly",
            "@daily",
        ] {
            let s = Schedule::parse(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
            assert_eq!(s.as_str(), ok);
        }
        for bad in [
            "",
            "every hour",
            "* * * *",
            "60 * * * *",
            "0 24 * * *",
            "0 0 32 * *",
            "0 0 * 13 *",
            "0 0 * * funday",
            "0 0 0 * * * 2030",
        ] {
            let e = Schedule::parse(bad).unwrap_err();
            assert!(e.starts_with("expected a cron expression"), "{bad}: {e}");
        }
    }
}
