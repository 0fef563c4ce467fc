//! Snapshot and restore: the whole state as bytes, for Raft snapshots and
//! log compaction.
//!
//! The encoding is a one-line header naming the format (`strata-catalog/1`)
//! followed by compact JSON (serde_json is already a dependency) whose maps
//! are written as sorted lists: the same state always gives the same bytes.
//! Derived indexes are not written; they are rebuilt on restore.

use serde::{Deserialize, Serialize};

use super::state::State;
use super::types::{Claim, FileRecord, Policy, RunSummary, Superseded, Volume};

/// The snapshot format this build writes and reads.
const FORMAT: u32 = 1;
/// Every snapshot starts with this, then the format number and a newline.
const MAGIC: &[u8] = b"strata-catalog/";

/// Why a snapshot could not be restored.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SnapshotError {
    /// The bytes do not start with a catalog snapshot header.
    #[error("catalog snapshot: no `strata-catalog/<format>` header")]
    Header,
    /// The body does not decode.
    #[error("catalog snapshot: cannot decode: {0}")]
    Decode(#[from] serde_json::Error),
    /// The snapshot was written by a newer strata.
    #[error("catalog snapshot: format {found}, this build reads format {FORMAT}")]
    Format {
        /// The format number found.
        found: u32,
    },
    /// The snapshot decodes but contradicts itself.
    #[error("catalog snapshot: {0}")]
    Inconsistent(String),
}

#[derive(Serialize)]
struct Out<'a> {
    last_applied: Option<u64>,
    volumes: Vec<&'a Volume>,
    policies: Vec<&'a Policy>,
    claims: Vec<&'a Claim>,
    runs: Vec<&'a RunSummary>,
    files: Vec<&'a FileRecord>,
    superseded: Vec<&'a Superseded>,
    held_log: Vec<u64>,
}

#[derive(Deserialize)]
struct In {
    last_applied: Option<u64>,
    volumes: Vec<Volume>,
    policies: Vec<Policy>,
    /// Absent from snapshots written before it existed.
    #[serde(default)]
    claims: Vec<Claim>,
    runs: Vec<RunSummary>,
    files: Vec<FileRecord>,
    superseded: Vec<Superseded>,
    /// Absent from snapshots written before it existed.
    #[serde(default)]
    held_log: Vec<u64>,
}

impl State {
    /// The whole state as bytes; equal states give equal bytes.
    pub fn to_snapshot(&self) -> Vec<u8> {
        let out = Out {
            last_applied: self.last_applied,
            volumes: self.volumes.values().collect(),
            policies: self.policies.values().collect(),
            claims: self.claims.values().collect(),
            runs: self.runs.values().collect(),
            files: self.files.values().collect(),
            superseded: self.superseded.values().collect(),
            held_log: self.held_log.iter().copied().collect(),
        };
        let mut bytes = format!("strata-catalog/{FORMAT}\n").into_bytes();
        serde_json::to_writer(&mut bytes, &out)
            .expect("catalog state serialises: plain data, string keys");
        bytes
    }

    /// The state a snapshot was taken of.
    pub fn from_snapshot(bytes: &[u8]) -> Result<State, SnapshotError> {
        let body = bytes.strip_prefix(MAGIC).ok_or(SnapshotError::Header)?;
        let nl = body
            .iter()
            .position(|&b| b == b'\n')
            .ok_or(SnapshotError::Header)?;
        let found: u32 = std::str::from_utf8(&body[..nl])
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or(SnapshotError::Header)?;
        if found != FORMAT {
            return Err(SnapshotError::Format { found });
        }
        let inp: In = serde_json::from_slice(&body[nl + 1..])?;
        let mut state = State {
            last_applied: inp.last_applied,
            held_log: inp.held_log.into_iter().collect(),
            ..State::new()
        };
        // A snapshot may come from another replica: every record is checked
        // as a command carrying it would be, before any is used.
        let bad = |what: String| {
            move |r: super::outcome::Rejected| SnapshotError::Inconsistent(format!("{what}: {r}"))
        };
        for v in inp.volumes {
            super::validate::check_volume(&v).map_err(bad(format!("volume {:?}", v.id)))?;
            if let Some(v) = state.volumes.insert(v.id.clone(), v) {
                return Err(dup("volume", &v.id));
            }
        }
        for p in inp.policies {
            super::validate::check_policy(&p.name, &p.spec)
                .map_err(bad(format!("policy {:?}", p.name)))?;
            if let Some(p) = state.policies.insert(p.name.clone(), p) {
                return Err(dup("policy", &p.name));
            }
        }
        for c in inp.claims {
            super::validate::check_claim(&c).map_err(bad(format!("claim of {:?}", c.pv)))?;
            if let Some(c) = state.claims.insert(c.pv.clone(), c) {
                return Err(dup("claim", &c.pv));
            }
        }
        for r in inp.runs {
            if let Some(r) = state.runs.insert(r.id.clone(), r) {
                return Err(dup("run", &r.id));
            }
        }
        for f in inp.files {
            super::validate::check_name("volume", &f.key.volume)
                .and_then(|()| super::validate::check_path("path", &f.key.path))
                .and_then(|()| {
                    f.lake
                        .as_deref()
                        .map_or(Ok(()), |l| super::validate::check_lake("lake", l))
                })
                .map_err(bad(format!("file {:?}", f.key.to_string())))?;
            if let Some(f) = state.files.insert(f.key.clone(), f) {
                return Err(dup("file", &f.key.to_string()));
            }
        }
        for s in inp.superseded {
            if let Some(s) = state.superseded.insert(s.lake_key.clone(), s) {
                return Err(dup("superseded lake key", &s.lake_key));
            }
        }
        state.reindex();
        Ok(state)
    }
}

fn dup(what: &str, id: &str) -> SnapshotError {
    SnapshotError::Inconsistent(format!("{what} {id} appears twice"))
}
