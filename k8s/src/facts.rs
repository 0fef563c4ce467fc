//! What the catalog knows of one policy, read in one pass over its state:
//! the volumes it selects, its backlog, its failing files and its runs.

use std::collections::BTreeMap;
use std::time::Duration;

use strata_tiering::catalog::{FileFilter, FileState, RunSummary, State, Timestamp};
use strata_tiering::policy::parse_policy;

/// Failed attempts in a row after which the oldest waiting file says the
/// lake is not taking uploads.
pub(crate) const UNREACHABLE_AFTER_ATTEMPTS: u32 = 3;

/// One policy's facts, as of one read of the catalog.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PolicyFacts {
    /// The generation of the TieringPolicy the catalog's version was made from.
    pub generation_in_catalog: Option<i64>,
    /// Volumes it selects now.
    pub volumes: u32,
    /// Files it chose that wait for the lake, their bytes, the oldest's age.
    pub backlog_files: u64,
    /// Their bytes.
    pub backlog_bytes: u64,
    /// How long the oldest has waited.
    pub oldest_pending: Option<Duration>,
    /// Waiting files whose last attempt failed.
    pub failing_files: u64,
    /// The oldest waiting file's failed attempts in a row, and its last error.
    pub oldest_failure: Option<(u32, String)>,
    /// Its most recent run.
    pub last_run: Option<RunSummary>,
    /// Files and bytes moved by its runs the catalog keeps.
    pub moved: (u64, u64),
    /// Files it moved that were brought back from the lake and stay recalled.
    pub recalled: u64,
    /// Of each volume's most recent run of this policy, those started by a
    /// high watermark.
    pub pressure: Vec<RunSummary>,
}

/// Reads the facts of catalog policy `name` at `now`; `None` when the
/// catalog has no such policy.
pub fn policy_facts(state: &State, name: &str, now: Timestamp) -> Option<PolicyFacts> {
    let stored = state.policy(name)?;
    let mut f = PolicyFacts::default();
    if let Ok(policy) = parse_policy(&stored.spec) {
        f.generation_in_catalog = policy.kubernetes().map(|o| o.generation);
        f.volumes = state
            .volumes()
            .filter(|v| policy.selects_volume(&v.id, &v.labels, state.claim_of(v)))
            .count() as u32;
    }
    for r in state.backlog_files().filter(|r| r.policy == name) {
        f.backlog_files += 1;
        f.backlog_bytes += r.size;
        if f.oldest_pending.is_none() {
            f.oldest_pending = Some(r.intent_at.age_at(now));
            if r.attempts > 0 {
                f.oldest_failure = Some((r.attempts, r.last_error.clone().unwrap_or_default()));
            }
        }
        if r.last_error.is_some() {
            f.failing_files += 1;
        }
    }
    // A scan of every record: the catalog has no index by state yet.
    f.recalled = state
        .files(
            &FileFilter {
                state: Some(FileState::Recalled),
                ..FileFilter::default()
            },
            None,
            usize::MAX,
        )
        .items
        .iter()
        .filter(|r| r.policy == name)
        .count() as u64;
    let mut latest_by_volume: BTreeMap<&str, &RunSummary> = BTreeMap::new();
    for run in state
        .last_runs(State::MAX_RUNS)
        .into_iter()
        .filter(|r| r.policy == name)
    {
        f.moved.0 += run.files;
        f.moved.1 += run.bytes;
        if f.last_run.is_none() {
            f.last_run = Some(run.clone());
        }
        // Newest first: the first of each volume is its latest.
        latest_by_volume.entry(run.volume.as_str()).or_insert(run);
    }
    f.pressure = latest_by_volume
        .into_values()
        .filter(|r| r.free_goal.is_some())
        .cloned()
        .collect();
    Some(f)
}
