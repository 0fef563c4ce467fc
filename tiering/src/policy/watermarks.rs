//! Free-space triggers: start above `high`, stop at `low`.

/// Validated watermarks, as percentages of the volume used (0–100), with
/// `low < high` so that a run cannot start and stop at the same level.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Watermarks {
    pub(crate) high: f64,
    pub(crate) low: f64,
}

impl Watermarks {
    /// The used percentage at which a run starts.
    pub fn high(&self) -> f64 {
        self.high
    }

    /// The used percentage at which a run stops.
    pub fn low(&self) -> f64 {
        self.low
    }

    /// A run starts once the volume is at least `high` full.
    pub fn should_start(&self, used_pct: f64) -> bool {
        used_pct >= self.high
    }

    /// A running move stops once the volume is at most `low` full.
    pub fn should_stop(&self, used_pct: f64) -> bool {
        used_pct <= self.low
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_watermark_hysteresis() {
        let w = Watermarks {
            high: 85.0,
            low: 70.0,
        };
        for (used, start, stop) in [
            (50.0, false, true),
            (70.0, false, true),
            (70.1, false, false),
            (84.9, false, false),
            (85.0, true, false),
            (99.0, true, false),
        ] {
            assert_eq!(w.should_start(used), start, "start at {used}");
            assert_eq!(w.should_stop(used), stop, "stop at {used}");
        }
    }
}
