//! The state machine: the catalog's data and the one function that changes it.

use std::collections::BTreeSet;

use imbl::{OrdMap, OrdSet};

use super::command::{Command, LogEntry};
use super::outcome::{Applied, Rejected};
use super::transition::decide;
use super::types::{Claim, FileKey, FileRecord, Policy, RunSummary, Superseded, Timestamp, Volume};
use super::validate::{check_claim, check_name, check_policy, check_volume, invalid};

/// The catalog's whole state. Change it only through [`State::apply`].
///
/// All collections are ordered maps, so iteration, queries and snapshots are
/// the same on every replica. They are persistent maps (shared, copied on
/// write): a clone, which a snapshot takes under the state's lock, costs
/// O(1) however large the catalog, and applies after it copy only the nodes
/// they change.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct State {
    pub(super) files: OrdMap<FileKey, FileRecord>,
    pub(super) volumes: OrdMap<String, Volume>,
    pub(super) policies: OrdMap<String, Policy>,
    /// What Kubernetes says of CSI volumes, by PV name.
    pub(super) claims: OrdMap<String, Claim>,
    pub(super) runs: OrdMap<String, RunSummary>,
    /// By lake key.
    pub(super) superseded: OrdMap<String, Superseded>,
    /// Catalog replicas a leader has seen acknowledge the log as voters.
    pub(super) held_log: BTreeSet<u64>,
    /// The log index of the last entry applied through [`State::apply_indexed`].
    pub(super) last_applied: Option<u64>,
    /// Derived index, rebuilt on restore: the backlog in drain order.
    pub(super) backlog: OrdSet<(Timestamp, FileKey)>,
    /// Derived: total bytes of the backlog.
    pub(super) backlog_bytes: u64,
}

impl State {
    /// How many run summaries are kept; the oldest (by end time) go first.
    pub const MAX_RUNS: usize = 1000;

    /// An empty catalog.
    pub fn new() -> Self {
        Self::default()
    }

    /// Applies the log entry at `index` of the replicated log, unless an
    /// entry at that index or later was already applied (Raft may hand a
    /// state machine entries again after a crash): then nothing happens and
    /// the answer is [`Applied::Unchanged`].
    ///
    /// The position advances for rejected entries too: they were applied,
    /// as a refusal.
    pub fn apply_indexed(&mut self, index: u64, entry: &LogEntry) -> Result<Applied, Rejected> {
        if self.last_applied.is_some_and(|last| index <= last) {
            return Ok(Applied::Unchanged);
        }
        self.last_applied = Some(index);
        self.apply_entry(entry)
    }

    /// Records that the log entry at `index` was applied without a command
    /// for the catalog (a Raft membership change or a leader's blank entry).
    pub fn skip_to(&mut self, index: u64) {
        if self.last_applied.is_none_or(|last| index > last) {
            self.last_applied = Some(index);
        }
    }

    /// The log index of the last entry applied through [`State::apply_indexed`] or [`State::skip_to`].
    pub fn last_applied(&self) -> Option<u64> {
        self.last_applied
    }

    /// Applies one log entry: [`State::apply`] with the entry's own
    /// timestamp, if its proposer may make the command (refused
    /// [`Rejected::Forbidden`] otherwise; see `authorize`).
    pub fn apply_entry(&mut self, entry: &LogEntry) -> Result<Applied, Rejected> {
        super::authorize::authorize(self, entry.by.as_ref(), &entry.command)?;
        self.apply(&entry.command, entry.at)
    }

    /// Applies `cmd` as of `at` (the time carried in the log entry).
    ///
    /// Deterministic: the result and the new state depend only on the state,
    /// the command and `at`. A rejection leaves the state as it was, and
    /// applying an accepted command a second time is [`Applied::Unchanged`].
    pub fn apply(&mut self, cmd: &Command, at: Timestamp) -> Result<Applied, Rejected> {
        if let Some(key) = cmd.file_key() {
            return self.apply_file(key, cmd, at);
        }
        match cmd {
            Command::PutPolicy { name, spec } => self.put_policy(name, spec, at),
            Command::DeletePolicy { name } => Ok(changed(self.policies.remove(name).is_some())),
            Command::RecordRun(run) => self.record_run(run),
            Command::RegisterVolume(v) => self.register_volume(v),
            Command::RemoveVolume { id } => Ok(changed(self.volumes.remove(id).is_some())),
            Command::PutClaim(c) => self.put_claim(c),
            Command::DeleteClaim { pv } => Ok(changed(self.claims.remove(pv).is_some())),
            Command::RecordReplicaHeldLog { id } => Ok(changed(self.held_log.insert(*id))),
            Command::ForgetReplica { id } => Ok(changed(self.held_log.remove(id))),
            // File commands were handled above.
            _ => Ok(Applied::Unchanged),
        }
    }

    fn apply_file(
        &mut self,
        key: &FileKey,
        cmd: &Command,
        at: Timestamp,
    ) -> Result<Applied, Rejected> {
        let volume_registered = self.volumes.contains_key(&key.volume);
        let Some(effect) = decide(self.files.get(key), volume_registered, cmd, at)? else {
            return Ok(Applied::Unchanged);
        };
        if let Some(s) = effect.superseded {
            self.superseded.insert(s.lake_key.clone(), s);
        }
        if effect.current_again {
            self.superseded.remove(&effect.record.lake_key);
        }
        self.put_file(effect.record);
        Ok(Applied::Changed)
    }

    fn put_policy(&mut self, name: &str, spec: &str, at: Timestamp) -> Result<Applied, Rejected> {
        check_policy(name, spec)?;
        if self.policies.get(name).is_some_and(|p| p.spec == spec) {
            return Ok(Applied::Unchanged);
        }
        let policy = Policy {
            name: name.to_owned(),
            spec: spec.to_owned(),
            updated_at: at,
        };
        self.policies.insert(policy.name.clone(), policy);
        Ok(Applied::Changed)
    }

    fn record_run(&mut self, run: &RunSummary) -> Result<Applied, Rejected> {
        check_name("id", &run.id)?;
        if run.finished_at < run.started_at {
            return Err(invalid("finished_at", "before started_at"));
        }
        if self.runs.get(&run.id) == Some(run) {
            return Ok(Applied::Unchanged);
        }
        let previous = self.runs.insert(run.id.clone(), run.clone());
        if self.runs.len() > Self::MAX_RUNS {
            let oldest = self
                .runs
                .values()
                .min_by(|a, b| (a.finished_at, &a.id).cmp(&(b.finished_at, &b.id)))
                .map(|r| r.id.clone());
            if let Some(id) = oldest {
                self.runs.remove(&id);
                // Older than everything kept: recording it changed nothing.
                if id == run.id && previous.is_none() {
                    return Ok(Applied::Unchanged);
                }
            }
        }
        Ok(Applied::Changed)
    }

    fn register_volume(&mut self, v: &Volume) -> Result<Applied, Rejected> {
        check_volume(v)?;
        if self.volumes.get(&v.id) == Some(v) {
            return Ok(Applied::Unchanged);
        }
        self.volumes.insert(v.id.clone(), v.clone());
        Ok(Applied::Changed)
    }

    fn put_claim(&mut self, c: &Claim) -> Result<Applied, Rejected> {
        check_claim(c)?;
        if self.claims.get(&c.pv) == Some(c) {
            return Ok(Applied::Unchanged);
        }
        self.claims.insert(c.pv.clone(), c.clone());
        Ok(Applied::Changed)
    }

    /// Inserts or replaces a record, keeping the backlog index in step.
    fn put_file(&mut self, rec: FileRecord) {
        if let Some(old) = self.files.get(&rec.key)
            && old.state.is_backlog()
        {
            self.backlog.remove(&(old.intent_at, old.key.clone()));
            self.backlog_bytes -= old.size;
        }
        if rec.state.is_backlog() {
            self.backlog.insert((rec.intent_at, rec.key.clone()));
            self.backlog_bytes += rec.size;
        }
        self.files.insert(rec.key.clone(), rec);
    }

    /// Rebuilds the derived indexes from the records (after a restore).
    pub(super) fn reindex(&mut self) {
        self.backlog.clear();
        self.backlog_bytes = 0;
        for r in self.files.values().filter(|r| r.state.is_backlog()) {
            self.backlog.insert((r.intent_at, r.key.clone()));
            self.backlog_bytes += r.size;
        }
    }
}

fn changed(yes: bool) -> Applied {
    if yes {
        Applied::Changed
    } else {
        Applied::Unchanged
    }
}
