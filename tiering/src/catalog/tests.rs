//! Tests of the catalog state machine: each transition and rejection, the
//! queries and snapshots (`unit`), and randomized logs checked against the
//! invariant of a move (`random`).

use std::collections::BTreeMap;

use super::*;

mod authorize;
mod lake;
mod random;
mod unit;

/// The lake the tests' files are archived in.
pub(super) const LAKE: &str = "s3://lake/site-a";

pub(super) fn t(n: u64) -> Timestamp {
    Timestamp::from_unix_nanos(n)
}

pub(super) fn sha(b: u8) -> Sha256 {
    Sha256([b; 32])
}

pub(super) fn key(path: &str) -> FileKey {
    FileKey::new("vol-a", path)
}

pub(super) fn volume(id: &str) -> Command {
    Command::RegisterVolume(Volume {
        id: id.into(),
        path: format!("/mnt/{id}"),
        labels: BTreeMap::from([("app".into(), "inspection".into())]),
    })
}

pub(super) fn intent(path: &str, content: u8) -> Intent {
    Intent {
        key: key(path),
        move_id: u64::from(content),
        size: 100 * u64::from(content),
        mtime_ns: 1_000 + i64::from(content),
        ino: 42,
        dev: 7,
        ctime_ns: 2_000 + i64::from(content),
        sha256: sha(content),
        owner: None,
        lake_key: format!("site/vol-a/{path}/{:02x}", content),
        policy: "cold-images".into(),
        rule: "older-than-7d".into(),
    }
}

/// A policy document that parses, named `name`, run on `schedule`.
pub(super) fn policy_spec(name: &str, schedule: &str) -> String {
    format!(
        "name: {name}\nselector: {{volumes: [\"vol-a\"]}}\nschedule: \"{schedule}\"\n\
         lake: {{url: \"file:///lake\"}}\nrules:\n  - name: old\n    modifiedBefore: 1d\n    \
         action: copy\n"
    )
}

pub(super) fn ok(s: &mut State, cmd: Command, at: u64) -> Applied {
    s.apply(&cmd, t(at))
        .unwrap_or_else(|e| panic!("{cmd:?} rejected: {e}"))
}

pub(super) fn rejected(s: &mut State, cmd: Command, at: u64) -> Rejected {
    let before = s.clone();
    let e = s.apply(&cmd, t(at)).expect_err("should be rejected");
    assert_eq!(*s, before, "a rejection must not change the state");
    e
}

pub(super) fn uploaded(path: &str, c: u8) -> Command {
    Command::MarkUploaded {
        key: key(path),
        move_id: u64::from(c),
        sha256: sha(c),
    }
}

pub(super) fn archived(path: &str, c: u8) -> Command {
    Command::MarkArchived {
        key: key(path),
        move_id: u64::from(c),
        sha256: sha(c),
        size: 100 * u64::from(c),
        lake: Some(LAKE.into()),
        verified_at: None,
    }
}

pub(super) fn released(path: &str, c: u8) -> Command {
    let i = intent(path, c);
    Command::MarkReleased {
        key: i.key,
        move_id: i.move_id,
        sha256: i.sha256,
        size: i.size,
        mtime_ns: i.mtime_ns,
        ino: i.ino,
        dev: i.dev,
        ctime_ns: i.ctime_ns,
    }
}

/// A state with volume `vol-a` and `a.jpg` (content 1) archived.
pub(super) fn archived_state() -> State {
    let mut s = State::new();
    ok(&mut s, volume("vol-a"), 1);
    ok(&mut s, Command::RecordIntent(intent("a.jpg", 1)), 10);
    ok(&mut s, uploaded("a.jpg", 1), 20);
    ok(&mut s, archived("a.jpg", 1), 30);
    s
}
