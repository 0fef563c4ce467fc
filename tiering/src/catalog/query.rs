//! Read-only questions about the catalog: the backlog, files, volumes,
//! policies and runs. All answers come in a deterministic order.

use std::ops::Bound;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::scope::{PV_LABEL, VolumeScope};
use super::state::State;
use super::types::{
    Claim, FileKey, FileRecord, FileState, Policy, RunSummary, Superseded, Timestamp, Volume,
};

/// The backlog (files in [`FileState::Intent`] or [`FileState::Uploaded`]) at a glance.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BacklogSummary {
    /// Files waiting for the lake.
    pub files: u64,
    /// Their total size in bytes.
    pub bytes: u64,
    /// How long the oldest has waited (from its intent), if any waits.
    pub oldest_age: Option<Duration>,
}

/// Which files to list; every field that is set must match.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileFilter {
    /// Only files in this state.
    pub state: Option<FileState>,
    /// Only files on this volume.
    pub volume: Option<String>,
    /// Only files whose path starts with this (plain string prefix).
    pub path_prefix: Option<String>,
}

impl FileFilter {
    fn matches(&self, r: &FileRecord) -> bool {
        self.state.is_none_or(|s| r.state == s)
            && self.volume.as_ref().is_none_or(|v| &r.key.volume == v)
            && self
                .path_prefix
                .as_ref()
                .is_none_or(|p| r.key.path.starts_with(p.as_str()))
    }
}

/// One page of a listing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Page<'a> {
    /// The records, in key order.
    pub items: Vec<&'a FileRecord>,
    /// Pass this as `after` to get the next page; `None` on the last page.
    pub next: Option<FileKey>,
}

impl State {
    /// The record of one file.
    pub fn file(&self, key: &FileKey) -> Option<&FileRecord> {
        self.files.get(key)
    }

    /// Number of file records.
    pub fn file_count(&self) -> usize {
        self.files.len()
    }

    /// Backlog count, bytes and the oldest entry's age at `now`, across all volumes.
    pub fn backlog(&self, now: Timestamp) -> BacklogSummary {
        BacklogSummary {
            files: self.backlog.len() as u64,
            bytes: self.backlog_bytes,
            oldest_age: self.backlog.get_min().map(|(t, _)| t.age_at(now)),
        }
    }

    /// The same summary over the files of the volumes `scope` owns.
    pub fn scoped_backlog(&self, scope: &VolumeScope, now: Timestamp) -> BacklogSummary {
        if scope.is_everything() {
            return self.backlog(now);
        }
        self.backlog_of(now, |r| scope.owns(self.volume(&r.key.volume)))
    }

    /// The same summary for one volume (a space-pressure condition needs it per volume).
    pub fn volume_backlog(&self, volume: &str, now: Timestamp) -> BacklogSummary {
        self.backlog_of(now, |r| r.key.volume == volume)
    }

    /// The summary of the backlog's files that `keep` keeps.
    fn backlog_of(&self, now: Timestamp, keep: impl Fn(&FileRecord) -> bool) -> BacklogSummary {
        let mut s = BacklogSummary::default();
        for r in self.backlog_files().filter(|r| keep(r)) {
            s.files += 1;
            s.bytes += r.size;
            s.oldest_age.get_or_insert(r.intent_at.age_at(now));
        }
        s
    }

    /// The backlog oldest first (by intent time, then key): the drain order.
    pub fn backlog_files(&self) -> impl Iterator<Item = &FileRecord> + '_ {
        self.backlog.iter().map(|(_, k)| &self.files[k])
    }

    /// The backlog oldest first, without the files still backing off at `now`.
    pub fn due_backlog(&self, now: Timestamp) -> impl Iterator<Item = &FileRecord> + '_ {
        self.backlog_files()
            .filter(move |r| r.next_attempt_at.is_none_or(|t| t <= now))
    }

    /// Files matching `filter`, in key order (volume, then path), at most
    /// `limit` of them, starting after the key `after`.
    pub fn files(&self, filter: &FileFilter, after: Option<&FileKey>, limit: usize) -> Page<'_> {
        // Narrow the scan to the volume (and path prefix) when they are given.
        let floor = filter
            .volume
            .as_ref()
            .map(|v| FileKey::new(v.clone(), filter.path_prefix.clone().unwrap_or_default()));
        let start = match (after, floor) {
            (Some(a), Some(f)) if *a < f => Bound::Included(f),
            (Some(a), _) => Bound::Excluded(a.clone()),
            (None, Some(f)) => Bound::Included(f),
            (None, None) => Bound::Unbounded,
        };
        let mut items = Vec::new();
        let mut next = None;
        for (k, r) in self.files.range((start, Bound::Unbounded)) {
            if let Some(v) = &filter.volume {
                if &k.volume != v {
                    break;
                }
                // Paths with the prefix are contiguous in key order.
                if let Some(p) = &filter.path_prefix
                    && !k.path.starts_with(p.as_str())
                    && k.path.as_str() > p.as_str()
                {
                    break;
                }
            }
            if !filter.matches(r) {
                continue;
            }
            if items.len() == limit {
                next = items.last().map(|r: &&FileRecord| r.key.clone());
                break;
            }
            items.push(r);
        }
        Page { items, next }
    }

    /// Files and bytes per state.
    pub fn counts_by_state(&self) -> Vec<(FileState, u64, u64)> {
        FileState::ALL
            .iter()
            .map(|&s| {
                let (n, b) = self
                    .files
                    .values()
                    .filter(|r| r.state == s)
                    .fold((0, 0), |(n, b), r| (n + 1, b + r.size));
                (s, n, b)
            })
            .collect()
    }

    /// Whether a leader has seen catalog replica `id` acknowledge the log
    /// as a voter (and it was not removed from the group since).
    pub fn replica_held_log(&self, id: u64) -> bool {
        self.held_log.contains(&id)
    }

    /// The registered volumes, by id.
    pub fn volumes(&self) -> impl Iterator<Item = &Volume> + '_ {
        self.volumes.values()
    }

    /// One volume.
    pub fn volume(&self, id: &str) -> Option<&Volume> {
        self.volumes.get(id)
    }

    /// What Kubernetes says of the CSI volumes' claims, by PV name.
    pub fn claims(&self) -> impl Iterator<Item = &Claim> + '_ {
        self.claims.values()
    }

    /// The claim of a volume: by its `strata.io/pv` label (a CSI volume's
    /// PV), else by its id.
    pub fn claim_of(&self, volume: &Volume) -> Option<&Claim> {
        let pv = volume
            .labels
            .get(PV_LABEL)
            .map_or(volume.id.as_str(), String::as_str);
        self.claims.get(pv)
    }

    /// The stored policies, by name.
    pub fn policies(&self) -> impl Iterator<Item = &Policy> + '_ {
        self.policies.values()
    }

    /// One policy.
    pub fn policy(&self, name: &str) -> Option<&Policy> {
        self.policies.get(name)
    }

    /// The last `n` runs, newest (by end time, then id) first.
    pub fn last_runs(&self, n: usize) -> Vec<&RunSummary> {
        let mut runs: Vec<&RunSummary> = self.runs.values().collect();
        runs.sort_by(|a, b| (b.finished_at, &b.id).cmp(&(a.finished_at, &a.id)));
        runs.truncate(n);
        runs
    }

    /// Released versions whose path has since received new content, by lake key.
    pub fn superseded(&self) -> impl Iterator<Item = &Superseded> + '_ {
        self.superseded.values()
    }
}
