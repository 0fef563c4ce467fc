//! Latency samples of the guest benchmarks (strata against raw commands):
//! milliseconds per named step, percentiles, and the raw side's output.

use std::collections::BTreeMap;

/// Milliseconds per step.
pub type Samples = BTreeMap<&'static str, Vec<f64>>;

/// The `p` quantile (0..=1) of `v`, nearest rank; sorts `v`.
pub fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i]
}

/// A raw-command loop's output, one `<step> <microseconds>` line per timed
/// command; every step must be one of `steps`.
pub fn parse_raw(out: &str, steps: &[&'static str]) -> Samples {
    let mut s: Samples = BTreeMap::new();
    for line in out.lines() {
        let (step, us) = line.split_once(' ').unwrap();
        let step = steps.iter().find(|x| **x == step).unwrap();
        s.entry(step)
            .or_default()
            .push(us.parse::<f64>().unwrap() / 1e3);
    }
    s
}
