//! What the settle window held back in the runs of one `run now`: files
//! changed less than `--settle` ago are not judged at all, so without this a
//! run that found only such files (a demo's back-dated files: setting the
//! mtime makes the ctime new) moves nothing and says nothing about why.

use std::collections::BTreeMap;
use std::time::Duration;

use strata_proto::strata::v1 as pb;

use super::format::std_duration;

/// Files held back by the settle window across a set of runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Settling {
    /// Files held back, each counted once.
    pub files: u64,
    /// Their bytes.
    pub bytes: u64,
    /// The window, when the agent reported it (the longest, should runs differ).
    pub window: Option<Duration>,
}

/// Sums what the runs held back, counting each volume once: every policy
/// that selects a volume scans it whole, so two policies over one volume
/// see the same settling files; the run that saw the most stands for it.
pub(super) fn settling(runs: &[pb::Run]) -> Settling {
    let mut per_volume: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
    let mut window = None;
    for r in runs {
        let seen = per_volume.entry(r.volume.as_str()).or_default();
        if r.settling_files > seen.0 {
            *seen = (r.settling_files, r.settling_bytes);
        }
        if let Some(d) = &r.settle {
            window = window.max(Some(std_duration(d)));
        }
    }
    per_volume.values().fold(
        Settling {
            window,
            ..Settling::default()
        },
        |total, (files, bytes)| Settling {
            files: total.files + files,
            bytes: total.bytes + bytes,
            ..total
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(volume: &str, files: u64, bytes: u64, settle_secs: Option<i64>) -> pb::Run {
        pb::Run {
            volume: volume.into(),
            settling_files: files,
            settling_bytes: bytes,
            settle: settle_secs.map(|seconds| prost_types::Duration { seconds, nanos: 0 }),
            ..Default::default()
        }
    }

    #[test]
    fn each_volume_counts_once() {
        let runs = [
            run("demo", 5, 500, Some(60)),
            run("demo", 4, 400, Some(60)),
            run("line-3", 2, 20, Some(60)),
        ];
        assert_eq!(
            settling(&runs),
            Settling {
                files: 7,
                bytes: 520,
                window: Some(Duration::from_secs(60)),
            }
        );
    }

    #[test]
    fn runs_from_before_the_counts_hold_nothing_back() {
        assert_eq!(settling(&[run("demo", 0, 0, None)]), Settling::default());
        assert_eq!(settling(&[]), Settling::default());
    }
}
