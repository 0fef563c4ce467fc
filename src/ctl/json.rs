//! `strata ctl -o json`: one JSON document per command on stdout, for scripts.
//!
//! The shapes below are stable: fields are added, never renamed or removed.
//! Every field is always present; unknown or absent values are `null`.
//! Times are RFC 3339 in UTC with milliseconds (`2026-01-02T03:04:05.123Z`),
//! sizes are bytes, ages are seconds. File states are `intent`, `uploaded`,
//! `archived`, `released`, `recalled`, `abandoned`; changes are `created`,
//! `updated`, `unchanged`; the lake is `up`, `down` or `unknown`.
//!
//! | command | document |
//! |---|---|
//! | `status` | `{"time", "catalog": {"role", "term", "leader", "applied_index"}, "site_timezone": {"name", "source"} or null, "lake", "backlog": Backlog, "files_by_state": {"intent": {"files", "bytes"}, … one key per state}, "volumes": [Volume], "policies": [Policy], "last_runs": [Run]}` |
//! | `policy apply` | `{"name", "change"}` |
//! | `policy ls` | `{"policies": [Policy]}` |
//! | `policy rm` | `{"name", "deleted": true}` |
//! | `volume add` | `{"id", "change"}` |
//! | `volume ls` | `{"volumes": [Volume]}` |
//! | `volume rm` | `{"id", "removed": true}` |
//! | `files ls` | `{"files": [File], "next_page_token"}` (`null` on the last page) |
//! | `run now` | `{"runs": [Run], "settling": {"files", "bytes", "settle_seconds"}}` (`settling`: files the settle window held back, each volume counted once) |
//! | `members ls`, `members add`, `members rm` | `{"leader", "term", "committed_index", "served_by", "members": [{"id", "address", "role", "matched_index"}]}` (`role`: `leader`, `voter`, `learner`; the group after the change) |
//! | `recall` | `{"volume", "glob", "matched", "files", "bytes", "already_local", "conflicts", "failed", "failures": [{"path", "error"}]}` (`failures` lists the first few of `failed`) |
//!
//! - Backlog: `{"files", "bytes", "oldest_age_seconds"}`
//! - Volume: `{"id", "path", "labels": {k: v}, "backlog": Backlog}`, and
//!   `"refused"` (why the agent does not work on it) when it does not
//! - Policy: `{"name", "schedule", "lake_url", "rules": [name], "updated_at", "spec"}`
//! - Run: `{"id", "policy", "volume", "started_at", "finished_at", "files",
//!   "bytes", "errors", "settling_files", "settling_bytes", "settle_seconds"}`;
//!   `settling_*` count the files the scan held back because they changed
//!   within the settle window (`settle_seconds`; null for a run recorded
//!   before strata kept it)
//! - File: `{"volume", "path", "state", "size", "sha256", "lake_key", "policy",
//!   "rule", "move_id", "attempts", "last_error", "next_attempt_at",
//!   "intent_at", "recalled_at", "updated_at", "mtime", "owner", "lake",
//!   "verified_at"}`; `owner` is `{"uid", "gid", "mode"}` (mode in octal,
//!   `"0640"`) as recorded when the file was hashed, or null for a record
//!   from before owners were recorded; `lake` is the URL (no credentials)
//!   of the lake the copy was verified in, null before it is verified or
//!   for a record from before lakes were recorded
//!
//! Progress of a recall goes to stderr, never into the document.

use std::collections::BTreeMap;

use serde::Serialize;
use strata_proto::strata::v1 as pb;

use super::format::{rfc3339, std_duration};
use super::settling::settling;

fn time(t: Option<&prost_types::Timestamp>) -> Option<String> {
    t.map(rfc3339)
}

fn non_empty(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_owned())
}

/// A file state's name in JSON and tables.
pub(super) fn state_name(s: pb::FileState) -> &'static str {
    match s {
        pb::FileState::Unspecified => "unknown",
        pb::FileState::Intent => "intent",
        pb::FileState::Uploaded => "uploaded",
        pb::FileState::Archived => "archived",
        pb::FileState::Released => "released",
        pb::FileState::Recalled => "recalled",
        pb::FileState::Abandoned => "abandoned",
    }
}

pub(super) fn change_name(c: pb::Change) -> &'static str {
    match c {
        pb::Change::Unspecified => "unknown",
        pb::Change::Created => "created",
        pb::Change::Updated => "updated",
        pb::Change::Unchanged => "unchanged",
    }
}

pub(super) fn lake_name(l: pb::LakeReachability) -> &'static str {
    match l {
        pb::LakeReachability::Unknown => "unknown",
        pb::LakeReachability::Up => "up",
        pb::LakeReachability::Down => "down",
    }
}

#[derive(Serialize)]
pub(super) struct Backlog {
    files: u64,
    bytes: u64,
    oldest_age_seconds: Option<u64>,
}

impl From<Option<&pb::Backlog>> for Backlog {
    fn from(b: Option<&pb::Backlog>) -> Self {
        let b = b.cloned().unwrap_or_default();
        Self {
            files: b.files,
            bytes: b.bytes,
            oldest_age_seconds: b.oldest_age.as_ref().map(|d| std_duration(d).as_secs()),
        }
    }
}

#[derive(Serialize)]
pub(super) struct Volume {
    id: String,
    path: String,
    labels: BTreeMap<String, String>,
    backlog: Backlog,
    /// Why the agent does not work on it; absent when it does.
    #[serde(skip_serializing_if = "Option::is_none")]
    refused: Option<String>,
}

impl From<&pb::Volume> for Volume {
    fn from(v: &pb::Volume) -> Self {
        Self {
            id: v.id.clone(),
            path: v.path.clone(),
            labels: v.labels.clone().into_iter().collect(),
            backlog: v.backlog.as_ref().into(),
            refused: (!v.refused.is_empty()).then(|| v.refused.clone()),
        }
    }
}

#[derive(Serialize)]
pub(super) struct Policy {
    name: String,
    schedule: Option<String>,
    lake_url: Option<String>,
    rules: Vec<String>,
    updated_at: Option<String>,
    spec: String,
}

impl From<&pb::Policy> for Policy {
    fn from(p: &pb::Policy) -> Self {
        Self {
            name: p.name.clone(),
            schedule: non_empty(&p.schedule),
            lake_url: non_empty(&p.lake_url),
            rules: p.rules.clone(),
            updated_at: time(p.updated_at.as_ref()),
            spec: p.spec.clone(),
        }
    }
}

#[derive(Serialize)]
pub(super) struct Run {
    id: String,
    policy: String,
    volume: String,
    started_at: Option<String>,
    finished_at: Option<String>,
    files: u64,
    bytes: u64,
    errors: u64,
    settling_files: u64,
    settling_bytes: u64,
    settle_seconds: Option<u64>,
}

impl From<&pb::Run> for Run {
    fn from(r: &pb::Run) -> Self {
        Self {
            id: r.id.clone(),
            policy: r.policy.clone(),
            volume: r.volume.clone(),
            started_at: time(r.started_at.as_ref()),
            finished_at: time(r.finished_at.as_ref()),
            files: r.files,
            bytes: r.bytes,
            errors: r.errors,
            settling_files: r.settling_files,
            settling_bytes: r.settling_bytes,
            settle_seconds: r.settle.as_ref().map(|d| std_duration(d).as_secs()),
        }
    }
}

/// What the settle window held back over all runs, each volume once.
#[derive(Serialize)]
struct Settling {
    files: u64,
    bytes: u64,
    settle_seconds: Option<u64>,
}

/// The answer to `run now`.
#[derive(Serialize)]
pub(super) struct RunNow {
    runs: Vec<Run>,
    settling: Settling,
}

impl From<&[pb::Run]> for RunNow {
    fn from(runs: &[pb::Run]) -> Self {
        let held = settling(runs);
        Self {
            runs: runs.iter().map(Run::from).collect(),
            settling: Settling {
                files: held.files,
                bytes: held.bytes,
                settle_seconds: held.window.map(|w| w.as_secs()),
            },
        }
    }
}

#[derive(Serialize)]
pub(super) struct File {
    volume: String,
    path: String,
    state: &'static str,
    size: u64,
    sha256: String,
    lake_key: String,
    policy: String,
    rule: String,
    move_id: u64,
    attempts: u32,
    last_error: Option<String>,
    next_attempt_at: Option<String>,
    intent_at: Option<String>,
    recalled_at: Option<String>,
    updated_at: Option<String>,
    mtime: Option<String>,
    owner: Option<Owner>,
    lake: Option<String>,
    verified_at: Option<String>,
}

#[derive(Serialize)]
struct Owner {
    uid: u32,
    gid: u32,
    /// Octal, as `ls` and `chmod` write it.
    mode: String,
}

impl From<&pb::File> for File {
    fn from(f: &pb::File) -> Self {
        Self {
            volume: f.volume.clone(),
            path: f.path.clone(),
            state: state_name(f.state()),
            size: f.size,
            sha256: f.sha256.clone(),
            lake_key: f.lake_key.clone(),
            policy: f.policy.clone(),
            rule: f.rule.clone(),
            move_id: f.move_id,
            attempts: f.attempts,
            last_error: f.last_error.clone(),
            next_attempt_at: time(f.next_attempt_at.as_ref()),
            intent_at: time(f.intent_at.as_ref()),
            recalled_at: time(f.recalled_at.as_ref()),
            updated_at: time(f.updated_at.as_ref()),
            mtime: time(f.mtime.as_ref()),
            owner: f.owner.as_ref().map(|o| Owner {
                uid: o.uid,
                gid: o.gid,
                mode: format!("{:04o}", o.mode),
            }),
            lake: f.lake.clone(),
            verified_at: time(f.verified_at.as_ref()),
        }
    }
}

#[derive(Serialize, Default)]
struct Count {
    files: u64,
    bytes: u64,
}

#[derive(Serialize, Default)]
struct ByState {
    intent: Count,
    uploaded: Count,
    archived: Count,
    released: Count,
    recalled: Count,
    abandoned: Count,
}

#[derive(Serialize)]
struct Catalog {
    role: Option<String>,
    term: Option<u64>,
    leader: Option<String>,
    applied_index: Option<u64>,
}

#[derive(Serialize)]
struct SiteTimeZone {
    name: String,
    source: String,
}

#[derive(Serialize)]
pub(super) struct Status {
    time: Option<String>,
    catalog: Catalog,
    /// Null from a server that runs no agent (or predates the field).
    site_timezone: Option<SiteTimeZone>,
    lake: &'static str,
    backlog: Backlog,
    files_by_state: ByState,
    volumes: Vec<Volume>,
    policies: Vec<Policy>,
    last_runs: Vec<Run>,
}

impl From<&pb::StatusResponse> for Status {
    fn from(s: &pb::StatusResponse) -> Self {
        let mut by = ByState::default();
        for c in &s.counts {
            let slot = match c.state() {
                pb::FileState::Intent => &mut by.intent,
                pb::FileState::Uploaded => &mut by.uploaded,
                pb::FileState::Archived => &mut by.archived,
                pb::FileState::Released => &mut by.released,
                pb::FileState::Recalled => &mut by.recalled,
                pb::FileState::Abandoned => &mut by.abandoned,
                pb::FileState::Unspecified => continue,
            };
            *slot = Count {
                files: c.files,
                bytes: c.bytes,
            };
        }
        let c = s.catalog.clone().unwrap_or_default();
        Self {
            time: time(s.now.as_ref()),
            catalog: Catalog {
                role: c.role,
                term: c.term,
                leader: c.leader,
                applied_index: c.applied_index,
            },
            site_timezone: s.site_timezone.as_ref().map(|z| SiteTimeZone {
                name: z.name.clone(),
                source: z.source.clone(),
            }),
            lake: lake_name(s.lake()),
            backlog: s.backlog.as_ref().into(),
            files_by_state: by,
            volumes: s.volumes.iter().map(Volume::from).collect(),
            policies: s.policies.iter().map(Policy::from).collect(),
            last_runs: s.last_runs.iter().map(Run::from).collect(),
        }
    }
}

/// The document as pretty-printed JSON with a final newline.
pub(super) fn to_string(value: &impl Serialize) -> String {
    // Serialising these plain structs cannot fail.
    let mut s = serde_json::to_string_pretty(value).unwrap_or_default();
    s.push('\n');
    s
}
