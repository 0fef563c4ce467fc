//! Catalog records to their protobuf form.

use std::time::Duration;

use strata_proto::strata::v1 as pb;
use tonic::Status;

use super::engine::{RecallOutcome, RecallProgress};
use super::error::invalid;
use crate::catalog::{
    BacklogSummary, FileRecord, FileState, Policy, RunSummary, Timestamp, Volume,
};
use crate::policy::parse_policy;

const NANOS: u64 = 1_000_000_000;

/// The system clock as a catalog timestamp: what the service stamps on the entries it proposes.
pub(super) fn now() -> Timestamp {
    Timestamp::now()
}

pub(super) fn timestamp(t: Timestamp) -> prost_types::Timestamp {
    let n = t.unix_nanos();
    prost_types::Timestamp {
        seconds: (n / NANOS) as i64,
        nanos: (n % NANOS) as i32,
    }
}

fn unix_nanos(ns: i64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: ns.div_euclid(NANOS as i64),
        nanos: ns.rem_euclid(NANOS as i64) as i32,
    }
}

pub(super) fn duration(d: Duration) -> prost_types::Duration {
    prost_types::Duration {
        seconds: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        nanos: d.subsec_nanos() as i32,
    }
}

pub(super) fn file_state(s: FileState) -> pb::FileState {
    match s {
        FileState::Intent => pb::FileState::Intent,
        FileState::Uploaded => pb::FileState::Uploaded,
        FileState::Archived => pb::FileState::Archived,
        FileState::Released => pb::FileState::Released,
        FileState::Recalled => pb::FileState::Recalled,
        FileState::Abandoned => pb::FileState::Abandoned,
    }
}

/// The state filter of a request; `None` for "any".
pub(super) fn state_filter(value: i32) -> Result<Option<FileState>, Status> {
    let state = pb::FileState::try_from(value)
        .map_err(|_| invalid("state", format!("unknown file state {value}")))?;
    Ok(match state {
        pb::FileState::Unspecified => None,
        pb::FileState::Intent => Some(FileState::Intent),
        pb::FileState::Uploaded => Some(FileState::Uploaded),
        pb::FileState::Archived => Some(FileState::Archived),
        pb::FileState::Released => Some(FileState::Released),
        pb::FileState::Recalled => Some(FileState::Recalled),
        pb::FileState::Abandoned => Some(FileState::Abandoned),
    })
}

pub(super) fn backlog(b: BacklogSummary) -> pb::Backlog {
    pb::Backlog {
        files: b.files,
        bytes: b.bytes,
        oldest_age: b.oldest_age.map(duration),
    }
}

pub(super) fn volume(v: &Volume, b: BacklogSummary) -> pb::Volume {
    pb::Volume {
        id: v.id.clone(),
        path: v.path.clone(),
        labels: v
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        backlog: Some(backlog(b)),
        refused: String::new(),
    }
}

/// A stored policy, with what its spec says parsed out for display. A spec
/// that no longer parses (a newer strata stored it) still lists, without them.
pub(super) fn policy(p: &Policy) -> pb::Policy {
    let mut out = pb::Policy {
        name: p.name.clone(),
        spec: p.spec.clone(),
        updated_at: Some(timestamp(p.updated_at)),
        ..Default::default()
    };
    if let Ok(parsed) = parse_policy(&p.spec) {
        out.schedule = parsed
            .schedule()
            .map(|s| s.as_str().to_owned())
            .unwrap_or_default();
        out.lake_url = parsed.lake().url().to_string();
        out.rules = parsed.rules().iter().map(|r| r.name().to_owned()).collect();
    }
    out
}

pub(super) fn run(r: &RunSummary) -> pb::Run {
    pb::Run {
        id: r.id.clone(),
        policy: r.policy.clone(),
        volume: r.volume.clone(),
        started_at: Some(timestamp(r.started_at)),
        finished_at: Some(timestamp(r.finished_at)),
        files: r.files,
        bytes: r.bytes,
        errors: r.errors,
        settling_files: r.settling_files,
        settling_bytes: r.settling_bytes,
        settle: r.settle.map(duration),
    }
}

pub(super) fn file(r: &FileRecord) -> pb::File {
    pb::File {
        volume: r.key.volume.clone(),
        path: r.key.path.clone(),
        state: file_state(r.state).into(),
        size: r.size,
        sha256: r.sha256.to_string(),
        lake_key: r.lake_key.clone(),
        policy: r.policy.clone(),
        rule: r.rule.clone(),
        move_id: r.move_id,
        attempts: r.attempts,
        last_error: r.last_error.clone(),
        next_attempt_at: r.next_attempt_at.map(timestamp),
        intent_at: Some(timestamp(r.intent_at)),
        recalled_at: r.recalled_at.map(timestamp),
        updated_at: Some(timestamp(r.updated_at)),
        mtime: Some(unix_nanos(r.mtime_ns)),
        owner: r.owner.map(|o| pb::Ownership {
            uid: o.uid,
            gid: o.gid,
            mode: o.mode,
        }),
        lake: r.lake.clone(),
        verified_at: r.verified_at.map(timestamp),
    }
}

pub(super) fn recall_progress(p: RecallProgress) -> pb::RecallEvent {
    pb::RecallEvent {
        event: Some(pb::recall_event::Event::Progress(pb::RecallProgress {
            files_done: p.files_done,
            files_total: p.files_total,
            bytes_done: p.bytes_done,
            bytes_total: p.bytes_total,
            current: p.current.unwrap_or_default(),
        })),
    }
}

pub(super) fn recall_result(o: RecallOutcome) -> pb::RecallEvent {
    pb::RecallEvent {
        event: Some(pb::recall_event::Event::Result(pb::RecallResult {
            matched: o.matched,
            files: o.files,
            bytes: o.bytes,
            already_local: o.already_local,
            conflicts: o.conflicts,
            failed: o.failed,
            failures: o
                .failures
                .into_iter()
                .map(|f| pb::RecallFailure {
                    path: f.path,
                    error: f.error,
                })
                .collect(),
        })),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_split_into_seconds_and_nanos() {
        let t = timestamp(Timestamp::from_unix_nanos(1_700_000_000_123_456_789));
        assert_eq!((t.seconds, t.nanos), (1_700_000_000, 123_456_789));
        // An mtime before the epoch keeps nanos non-negative.
        let m = unix_nanos(-1);
        assert_eq!((m.seconds, m.nanos), (-1, 999_999_999));
    }

    #[test]
    fn every_state_round_trips_through_the_filter() {
        for s in FileState::ALL {
            assert_eq!(state_filter(file_state(s).into()).unwrap(), Some(s));
        }
        assert_eq!(state_filter(0).unwrap(), None);
        assert_eq!(
            state_filter(42).unwrap_err().message(),
            "state: unknown file state 42"
        );
    }
}
