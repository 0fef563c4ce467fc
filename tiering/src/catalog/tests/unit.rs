//! One test per transition, rejection, query and encoding.

use std::collections::BTreeMap;
use std::time::Duration;

use super::*;

#[test]
fn a_move_goes_intent_uploaded_archived_released() {
    let mut s = archived_state();
    assert_eq!(ok(&mut s, released("a.jpg", 1), 40), Applied::Changed);
    let r = s.file(&key("a.jpg")).unwrap();
    assert_eq!(r.state, FileState::Released);
    assert_eq!(r.intent_at, t(10));
    assert_eq!(r.updated_at, t(40));
    // Replays of every step are harmless no-ops.
    let before = s.clone();
    for cmd in [
        Command::RecordIntent(intent("a.jpg", 1)),
        uploaded("a.jpg", 1),
        archived("a.jpg", 1),
        released("a.jpg", 1),
    ] {
        assert_eq!(ok(&mut s, cmd, 50), Applied::Unchanged);
    }
    assert_eq!(s, before);
}

#[test]
fn release_needs_archived_and_an_unchanged_file() {
    let mut s = State::new();
    ok(&mut s, volume("vol-a"), 1);
    ok(&mut s, Command::RecordIntent(intent("a.jpg", 1)), 10);
    let e = rejected(&mut s, released("a.jpg", 1), 11);
    assert!(
        matches!(
            e,
            Rejected::NotArchived {
                state: FileState::Intent,
                ..
            }
        ),
        "{e}"
    );
    ok(&mut s, uploaded("a.jpg", 1), 12);
    let e = rejected(&mut s, released("a.jpg", 1), 13);
    assert!(
        matches!(
            e,
            Rejected::NotArchived {
                state: FileState::Uploaded,
                ..
            }
        ),
        "{e}"
    );

    let mut s = archived_state();
    let i = intent("a.jpg", 1);
    let (z, m, n, d, c) = (i.size, i.mtime_ns, i.ino, i.dev, i.ctime_ns);
    for (size, mtime_ns, ino, dev, ctime_ns, field) in [
        (z + 1, m, n, d, c, "size"),
        (z, m + 1, n, d, c, "mtime_ns"),
        (z, m, n + 1, d, c, "ino"),
        (z, m, n, d + 1, c, "dev"),
        // A rewrite in place that put the mtime back.
        (z, m, n, d, c + 1, "ctime_ns"),
        // An agent that did not look, for a record that knows.
        (z, m, n, d, 0, "ctime_ns"),
    ] {
        let cmd = Command::MarkReleased {
            key: i.key.clone(),
            move_id: 1,
            sha256: i.sha256,
            size,
            mtime_ns,
            ino,
            dev,
            ctime_ns,
        };
        let e = rejected(&mut s, cmd, 40);
        assert!(
            matches!(&e, Rejected::ChangedSinceHashing { field: f, .. } if f == field),
            "{e}"
        );
        assert!(e.to_string().contains(field), "{e}");
    }
    let cmd = Command::MarkReleased {
        key: i.key.clone(),
        move_id: 1,
        sha256: sha(2),
        size: i.size,
        mtime_ns: i.mtime_ns,
        ino: i.ino,
        dev: i.dev,
        ctime_ns: i.ctime_ns,
    };
    assert!(matches!(
        rejected(&mut s, cmd, 40),
        Rejected::ContentMismatch { .. }
    ));
}

#[test]
fn archiving_checks_content_size_and_order() {
    let mut s = State::new();
    ok(&mut s, volume("vol-a"), 1);
    assert!(matches!(
        rejected(&mut s, archived("a.jpg", 1), 5),
        Rejected::UnknownFile { .. }
    ));
    ok(&mut s, Command::RecordIntent(intent("a.jpg", 1)), 10);
    // Straight from intent: the upload step is not skipped.
    let e = rejected(&mut s, archived("a.jpg", 1), 11);
    assert!(
        matches!(
            e,
            Rejected::InvalidTransition {
                from: FileState::Intent,
                to: FileState::Archived,
                ..
            }
        ),
        "{e}"
    );
    ok(&mut s, uploaded("a.jpg", 1), 12);
    let cmd = Command::MarkArchived {
        key: key("a.jpg"),
        move_id: 1,
        sha256: sha(2),
        size: 100,
        lake: Some(LAKE.into()),
        verified_at: None,
    };
    let e = rejected(&mut s, cmd, 13);
    assert!(
        matches!(e, Rejected::ContentMismatch { recorded, got, .. } if recorded == sha(1) && got == sha(2)),
        "{e}"
    );
    assert!(e.to_string().contains(&sha(2).to_string()));
    let cmd = Command::MarkArchived {
        key: key("a.jpg"),
        move_id: 1,
        sha256: sha(1),
        size: 99,
        lake: Some(LAKE.into()),
        verified_at: None,
    };
    assert!(matches!(
        rejected(&mut s, cmd, 14),
        Rejected::SizeMismatch {
            recorded: 100,
            lake: 99,
            ..
        }
    ));
    assert_eq!(ok(&mut s, archived("a.jpg", 1), 15), Applied::Changed);
}

#[test]
fn intents_validate_their_input() {
    let mut s = State::new();
    let e = rejected(&mut s, Command::RecordIntent(intent("a.jpg", 1)), 1);
    assert!(
        matches!(e, Rejected::UnknownVolume { ref volume } if volume == "vol-a"),
        "{e}"
    );
    ok(&mut s, volume("vol-a"), 1);
    for bad in ["", "/abs", "a//b", "a/../b", "./a"] {
        let e = rejected(&mut s, Command::RecordIntent(intent(bad, 1)), 2);
        assert!(
            matches!(&e, Rejected::Invalid { field, .. } if field == "key.path"),
            "{bad}: {e}"
        );
    }
    let mut i = intent("a.jpg", 1);
    i.lake_key.clear();
    assert!(matches!(
        rejected(&mut s, Command::RecordIntent(i), 3),
        Rejected::Invalid { .. }
    ));
}

#[test]
fn an_intent_for_changed_content() {
    // Before upload finished: the new version replaces the old one.
    let mut s = State::new();
    ok(&mut s, volume("vol-a"), 1);
    ok(&mut s, Command::RecordIntent(intent("a.jpg", 1)), 10);
    ok(&mut s, uploaded("a.jpg", 1), 11);
    assert_eq!(
        ok(&mut s, Command::RecordIntent(intent("a.jpg", 2)), 12),
        Applied::Changed
    );
    let r = s.file(&key("a.jpg")).unwrap();
    assert_eq!(
        (r.state, r.sha256, r.intent_at),
        (FileState::Intent, sha(2), t(12))
    );
    // The stale upload of the old version no longer applies.
    assert!(matches!(
        rejected(&mut s, uploaded("a.jpg", 1), 13),
        Rejected::StaleMove { .. }
    ));

    // Archived: must be abandoned first.
    let mut s = archived_state();
    assert!(matches!(
        rejected(&mut s, Command::RecordIntent(intent("a.jpg", 2)), 40),
        Rejected::ContentMismatch { .. }
    ));
    ok(
        &mut s,
        Command::MarkAbandoned {
            key: key("a.jpg"),
            move_id: 1,
            sha256: sha(1),
        },
        41,
    );
    assert_eq!(s.file(&key("a.jpg")).unwrap().state, FileState::Abandoned);
    ok(&mut s, Command::RecordIntent(intent("a.jpg", 2)), 42);
    assert_eq!(s.file(&key("a.jpg")).unwrap().state, FileState::Intent);
    assert_eq!(s.superseded().count(), 0);

    // Released: the old lake object stays on record.
    let mut s = archived_state();
    ok(&mut s, released("a.jpg", 1), 40);
    ok(&mut s, Command::RecordIntent(intent("a.jpg", 2)), 50);
    let old: Vec<_> = s.superseded().collect();
    assert_eq!(old.len(), 1);
    assert_eq!(
        (
            old[0].sha256,
            old[0].lake_key.as_str(),
            old[0].superseded_at
        ),
        (sha(1), "site/vol-a/a.jpg/01", t(50))
    );
}

#[test]
fn abandon_recall_and_failures() {
    let mut s = archived_state();
    let e = rejected(
        &mut s,
        Command::MarkAbandoned {
            key: key("a.jpg"),
            move_id: 1,
            sha256: sha(9),
        },
        40,
    );
    assert!(matches!(e, Rejected::ContentMismatch { .. }));
    ok(&mut s, released("a.jpg", 1), 40);
    let e = rejected(
        &mut s,
        Command::MarkAbandoned {
            key: key("a.jpg"),
            move_id: 1,
            sha256: sha(1),
        },
        41,
    );
    assert!(
        matches!(
            e,
            Rejected::InvalidTransition {
                from: FileState::Released,
                ..
            }
        ),
        "{e}"
    );

    let recall = Command::MarkRecalled {
        key: key("a.jpg"),
        move_id: 1,
        sha256: sha(1),
    };
    assert_eq!(ok(&mut s, recall.clone(), 50), Applied::Changed);
    assert_eq!(ok(&mut s, recall, 60), Applied::Unchanged);
    let r = s.file(&key("a.jpg")).unwrap();
    assert_eq!((r.state, r.recalled_at), (FileState::Recalled, Some(t(50))));
    // A late retry of the first intent does not restart anything.
    assert_eq!(
        ok(&mut s, Command::RecordIntent(intent("a.jpg", 1)), 65),
        Applied::Unchanged
    );
    // Cold again later: a new move starts.
    let second = Intent {
        move_id: 11,
        ..intent("a.jpg", 1)
    };
    ok(&mut s, Command::RecordIntent(second), 70);
    let r = s.file(&key("a.jpg")).unwrap();
    assert_eq!(
        (r.state, r.intent_at, r.recalled_at),
        (FileState::Intent, t(70), None)
    );

    let fail = |attempt| Command::RecordFailure {
        key: key("a.jpg"),
        move_id: 11,
        sha256: sha(1),
        attempt,
        error: "lake unreachable".into(),
        next_attempt_at: t(1_000 * u64::from(attempt)),
    };
    assert!(matches!(
        rejected(&mut s, fail(0), 71),
        Rejected::Invalid { .. }
    ));
    assert_eq!(ok(&mut s, fail(1), 71), Applied::Changed);
    assert_eq!(
        ok(&mut s, fail(1), 72),
        Applied::Unchanged,
        "a replayed failure counts once"
    );
    ok(&mut s, fail(2), 73);
    let r = s.file(&key("a.jpg")).unwrap();
    assert_eq!(
        (r.attempts, r.last_error.as_deref(), r.next_attempt_at),
        (2, Some("lake unreachable"), Some(t(2_000)))
    );
    assert_eq!(s.due_backlog(t(1_999)).count(), 0);
    assert_eq!(s.due_backlog(t(2_000)).count(), 1);
    let e = rejected(&mut s, uploaded("a.jpg", 1), 80);
    assert!(
        matches!(
            e,
            Rejected::StaleMove {
                recorded: 11,
                got: 1,
                ..
            }
        ),
        "{e}"
    );
    ok(
        &mut s,
        Command::MarkUploaded {
            key: key("a.jpg"),
            move_id: 11,
            sha256: sha(1),
        },
        80,
    );
    let r = s.file(&key("a.jpg")).unwrap();
    assert_eq!(
        (r.attempts, r.last_error.as_deref(), r.next_attempt_at),
        (2, None, None)
    );

    let mut s = State::new();
    ok(&mut s, volume("vol-a"), 1);
    ok(
        &mut s,
        Command::RecordIntent(Intent {
            move_id: 11,
            ..intent("a.jpg", 1)
        }),
        2,
    );
    ok(
        &mut s,
        Command::MarkAbandoned {
            key: key("a.jpg"),
            move_id: 11,
            sha256: sha(1),
        },
        3,
    );
    assert!(matches!(
        rejected(&mut s, fail(1), 4),
        Rejected::NotInFlight {
            state: FileState::Abandoned,
            ..
        }
    ));
}

#[test]
fn backlog_drains_oldest_first() {
    let mut s = State::new();
    ok(&mut s, volume("vol-a"), 1);
    ok(&mut s, Command::RecordIntent(intent("c.jpg", 3)), 30);
    ok(&mut s, Command::RecordIntent(intent("a.jpg", 1)), 10);
    ok(&mut s, Command::RecordIntent(intent("b.jpg", 2)), 20);
    ok(&mut s, uploaded("b.jpg", 2), 40);
    let order: Vec<_> = s.backlog_files().map(|r| r.key.path.as_str()).collect();
    assert_eq!(order, ["a.jpg", "b.jpg", "c.jpg"]);
    let now = t(10 + 5_000_000_000);
    assert_eq!(
        s.backlog(now),
        BacklogSummary {
            files: 3,
            bytes: 600,
            oldest_age: Some(Duration::from_secs(5))
        }
    );
    assert_eq!(s.volume_backlog("vol-a", now), s.backlog(now));
    assert_eq!(s.volume_backlog("vol-b", now), BacklogSummary::default());
    ok(&mut s, uploaded("a.jpg", 1), 50);
    ok(&mut s, archived("a.jpg", 1), 60);
    assert_eq!(s.backlog(now).files, 2);
    assert_eq!(s.backlog(now).bytes, 500);
    assert_eq!(s.backlog(t(20)).oldest_age, Some(Duration::ZERO));
}

#[test]
fn files_listing_filters_and_pages() {
    let mut s = State::new();
    ok(&mut s, volume("vol-a"), 1);
    ok(&mut s, volume("vol-b"), 1);
    for (i, p) in [
        "img/1.jpg",
        "img/2.jpg",
        "img/3.jpg",
        "logs/x.log",
        "imgs.txt",
    ]
    .iter()
    .enumerate()
    {
        ok(&mut s, Command::RecordIntent(intent(p, 1)), 10 + i as u64);
    }
    let mut other = intent("img/9.jpg", 1);
    other.key.volume = "vol-b".into();
    ok(&mut s, Command::RecordIntent(other), 20);
    ok(&mut s, uploaded("img/2.jpg", 1), 30);

    let filter = FileFilter {
        volume: Some("vol-a".into()),
        path_prefix: Some("img/".into()),
        state: None,
    };
    let p1 = s.files(&filter, None, 2);
    assert_eq!(
        p1.items
            .iter()
            .map(|r| r.key.path.as_str())
            .collect::<Vec<_>>(),
        ["img/1.jpg", "img/2.jpg"]
    );
    let p2 = s.files(&filter, p1.next.as_ref(), 2);
    assert_eq!(
        p2.items
            .iter()
            .map(|r| r.key.path.as_str())
            .collect::<Vec<_>>(),
        ["img/3.jpg"]
    );
    assert_eq!(p2.next, None);

    let uploaded_only = FileFilter {
        state: Some(FileState::Uploaded),
        ..FileFilter::default()
    };
    let p = s.files(&uploaded_only, None, 10);
    assert_eq!(p.items.len(), 1);
    let prefix_all_volumes = FileFilter {
        path_prefix: Some("img/".into()),
        ..FileFilter::default()
    };
    assert_eq!(s.files(&prefix_all_volumes, None, 10).items.len(), 4);
    assert_eq!(s.files(&FileFilter::default(), None, 0).items.len(), 0);
    let counts = s.counts_by_state();
    assert_eq!(counts[0], (FileState::Intent, 5, 500));
    assert_eq!(counts[1], (FileState::Uploaded, 1, 100));
}

#[test]
fn volumes_policies_and_runs() {
    let mut s = State::new();
    ok(&mut s, volume("vol-a"), 1);
    assert_eq!(ok(&mut s, volume("vol-a"), 2), Applied::Unchanged);
    let bad = Command::RegisterVolume(Volume {
        id: "v".into(),
        path: "rel".into(),
        labels: BTreeMap::new(),
    });
    assert!(
        matches!(rejected(&mut s, bad, 3), Rejected::Invalid { ref field, .. } if field == "path")
    );
    assert_eq!(s.volumes().count(), 1);
    assert_eq!(
        ok(&mut s, Command::RemoveVolume { id: "vol-a".into() }, 4),
        Applied::Changed
    );
    assert_eq!(
        ok(&mut s, Command::RemoveVolume { id: "vol-a".into() }, 5),
        Applied::Unchanged
    );

    let put = |spec: &str| Command::PutPolicy {
        name: "cold-images".into(),
        spec: spec.into(),
    };
    let first = policy_spec("cold-images", "0 * * * *");
    let second = policy_spec("cold-images", "30 * * * *");
    assert_eq!(ok(&mut s, put(&first), 10), Applied::Changed);
    assert_eq!(ok(&mut s, put(&first), 11), Applied::Unchanged);
    assert_eq!(ok(&mut s, put(&second), 12), Applied::Changed);
    assert_eq!(s.policy("cold-images").unwrap().updated_at, t(12));
    assert!(
        matches!(rejected(&mut s, put("  "), 13), Rejected::Invalid { ref field, .. } if field == "spec")
    );
    // Checked as it is applied, whoever proposed it: a document that does
    // not parse as a policy, or names another policy, is not stored.
    for (bad, field) in [
        ("rules: [x]".to_owned(), "spec"),
        (policy_spec("cold-images", "every now and then"), "spec"),
        (policy_spec("other", "0 * * * *"), "name"),
    ] {
        assert!(
            matches!(rejected(&mut s, put(&bad), 13), Rejected::Invalid { field: ref f, .. } if f == field),
            "{bad}"
        );
    }
    assert_eq!(s.policy("cold-images").unwrap().spec, second);
    let del = Command::DeletePolicy {
        name: "cold-images".into(),
    };
    assert_eq!(ok(&mut s, del.clone(), 14), Applied::Changed);
    assert_eq!(ok(&mut s, del, 15), Applied::Unchanged);
    assert_eq!(s.policies().count(), 0);

    let run = |i: u64| RunSummary {
        id: format!("run-{i:05}"),
        policy: "p".into(),
        volume: "vol-a".into(),
        started_at: t(i * 10),
        finished_at: t(i * 10 + 5),
        files: i,
        bytes: i * 100,
        errors: 0,
        settling_files: 0,
        settling_bytes: 0,
        settle: None,
        free_goal: None,
    };
    let mut bad = run(1);
    bad.finished_at = t(0);
    assert!(matches!(
        rejected(&mut s, Command::RecordRun(bad), 20),
        Rejected::Invalid { .. }
    ));
    for i in 1..=State::MAX_RUNS as u64 + 5 {
        ok(&mut s, Command::RecordRun(run(i)), 20);
    }
    assert_eq!(
        ok(&mut s, Command::RecordRun(run(1)), 21),
        Applied::Unchanged,
        "older than all kept"
    );
    let last = s.last_runs(3);
    assert_eq!(
        last.iter().map(|r| r.files).collect::<Vec<_>>(),
        [1005, 1004, 1003]
    );
    assert_eq!(s.last_runs(usize::MAX).len(), State::MAX_RUNS);
}

/// A run recorded before strata counted what the settle window held back
/// reads with nothing held back and no window.
#[test]
fn a_run_recorded_before_settling_counts_reads_as_none() {
    let old = serde_json::json!({
        "id": "run-1", "policy": "p", "volume": "vol-a",
        "started_at": 10, "finished_at": 15,
        "files": 1, "bytes": 100, "errors": 0,
    });
    let run: RunSummary = serde_json::from_value(old).unwrap();
    assert_eq!((run.settling_files, run.settling_bytes), (0, 0));
    assert_eq!(run.settle, None);
}

#[test]
fn serde_shapes() {
    let json = serde_json::to_string(&sha(0xab)).unwrap();
    assert_eq!(json, format!("\"{}\"", "ab".repeat(32)));
    assert_eq!(serde_json::from_str::<Sha256>(&json).unwrap(), sha(0xab));
    assert!(serde_json::from_str::<Sha256>("\"abc\"").is_err());
    assert_eq!(Sha256::from_hex(&"AB".repeat(32)), Some(sha(0xab)));
    let entry = LogEntry {
        by: None,
        at: t(7),
        command: Command::RecordIntent(intent("a.jpg", 1)),
    };
    let bytes = serde_json::to_vec(&entry).unwrap();
    assert_eq!(serde_json::from_slice::<LogEntry>(&bytes).unwrap(), entry);
    let e = Rejected::NotArchived {
        key: key("a.jpg"),
        state: FileState::Intent,
    };
    let back: Rejected = serde_json::from_str(&serde_json::to_string(&e).unwrap()).unwrap();
    assert_eq!(back, e);
    assert_eq!(
        e.to_string(),
        "file vol-a:a.jpg: is intent, only an archived file may be released"
    );
}

#[test]
fn snapshot_restores_the_same_state() {
    let mut s = archived_state();
    ok(&mut s, Command::RecordIntent(intent("b.jpg", 2)), 40);
    ok(
        &mut s,
        Command::PutPolicy {
            name: "p".into(),
            spec: policy_spec("p", "0 * * * *"),
        },
        41,
    );
    let bytes = s.to_snapshot();
    assert!(bytes.starts_with(b"strata-catalog/1\n"));
    let back = State::from_snapshot(&bytes).unwrap();
    assert_eq!(back, s);
    assert_eq!(back.to_snapshot(), bytes);
    assert_eq!(
        State::from_snapshot(&State::new().to_snapshot()).unwrap(),
        State::new()
    );

    assert!(matches!(
        State::from_snapshot(b"{}"),
        Err(SnapshotError::Header)
    ));
    assert!(matches!(
        State::from_snapshot(b"strata-catalog/2\n{}"),
        Err(SnapshotError::Format { found: 2 })
    ));
    assert!(matches!(
        State::from_snapshot(b"strata-catalog/1\n{"),
        Err(SnapshotError::Decode(_))
    ));
    let text = String::from_utf8(bytes).unwrap();
    let dup = text.replacen(
        "\"policies\":[",
        "\"policies\":[{\"name\":\"p\",\"spec\":\"{}\",\"updated_at\":1},",
        1,
    );
    assert!(matches!(
        State::from_snapshot(dup.as_bytes()),
        Err(SnapshotError::Inconsistent(_))
    ));
}

/// A snapshot is taken of a copy of the state made under its lock: the copy
/// shares the maps instead of cloning every record, and applies after it
/// change the live state only.
#[test]
fn a_copy_of_the_state_shares_its_maps_and_is_not_changed_by_later_applies() {
    let mut s = archived_state();
    for i in 0..2000u32 {
        let path = format!("dir/{i}.jpg");
        let mut it = intent(&path, 3);
        it.move_id = u64::from(i);
        ok(&mut s, Command::RecordIntent(it), 40);
    }
    let copy = s.clone();
    assert!(copy.files.ptr_eq(&s.files), "files cloned, not shared");
    assert!(
        copy.backlog.ptr_eq(&s.backlog),
        "backlog cloned, not shared"
    );
    assert!(
        copy.volumes.ptr_eq(&s.volumes),
        "volumes cloned, not shared"
    );
    let bytes = copy.to_snapshot();

    ok(&mut s, Command::RecordIntent(intent("late.jpg", 4)), 50);
    let upload = Command::MarkUploaded {
        key: key("dir/7.jpg"),
        move_id: 7,
        sha256: sha(3),
    };
    ok(&mut s, upload, 51);
    assert!(!copy.files.ptr_eq(&s.files));
    assert_eq!(copy.files.len() + 1, s.files.len());
    assert_eq!(
        copy.file(&key("dir/7.jpg")).unwrap().state,
        FileState::Intent
    );
    assert_eq!(
        s.file(&key("dir/7.jpg")).unwrap().state,
        FileState::Uploaded
    );
    assert_eq!(
        copy.to_snapshot(),
        bytes,
        "the copy moved with the live state"
    );
    assert_eq!(State::from_snapshot(&bytes).unwrap(), copy);
}

#[test]
fn replicas_that_held_the_log_are_kept_in_snapshots_until_forgotten() {
    let mut s = archived_state();
    assert!(!s.replica_held_log(2));
    let held = |id| Command::RecordReplicaHeldLog { id };
    assert_eq!(ok(&mut s, held(2), 40), Applied::Changed);
    assert_eq!(ok(&mut s, held(2), 41), Applied::Unchanged);
    assert_eq!(ok(&mut s, held(3), 42), Applied::Changed);
    assert!(s.replica_held_log(2) && s.replica_held_log(3) && !s.replica_held_log(1));

    let bytes = s.to_snapshot();
    let back = State::from_snapshot(&bytes).unwrap();
    assert!(back.replica_held_log(2) && back.replica_held_log(3));
    assert_eq!(back, s);

    // A snapshot written before the field existed reads as "none held".
    let text = String::from_utf8(bytes).unwrap();
    let old = text.replace(",\"held_log\":[2,3]", "");
    assert_ne!(old, text);
    assert!(
        !State::from_snapshot(old.as_bytes())
            .unwrap()
            .replica_held_log(2)
    );

    let forget = |id| Command::ForgetReplica { id };
    assert_eq!(ok(&mut s, forget(2), 43), Applied::Changed);
    assert_eq!(ok(&mut s, forget(2), 44), Applied::Unchanged);
    assert!(!s.replica_held_log(2) && s.replica_held_log(3));
}

#[test]
fn an_intent_logged_before_owners_were_kept_still_reads() {
    // Log entries and snapshots written before `owner` existed have no such
    // field; one with no owner writes none, so older readers read it too.
    let without = intent("a.jpg", 1);
    let text = serde_json::to_string(&without).unwrap();
    assert!(!text.contains("owner"), "{text}");
    assert_eq!(serde_json::from_str::<Intent>(&text).unwrap(), without);
    let with = Intent {
        owner: Some(Ownership {
            uid: 1000,
            gid: 100,
            mode: 0o640,
        }),
        ..intent("a.jpg", 1)
    };
    let text = serde_json::to_string(&with).unwrap();
    assert_eq!(serde_json::from_str::<Intent>(&text).unwrap(), with);
    let mut s = State::new();
    ok(&mut s, volume("vol-a"), 1);
    ok(&mut s, Command::RecordIntent(with), 2);
    assert_eq!(s.file(&key("a.jpg")).unwrap().owner.unwrap().mode, 0o640);
}

#[test]
fn an_intent_logged_before_dev_and_ctime_were_kept_releases_on_what_it_knows() {
    // Entries written before `dev` and `ctime_ns` existed lack them: they
    // read as 0, unknown, and a release is checked on size, mtime and inode.
    let mut old = serde_json::to_value(intent("a.jpg", 1)).unwrap();
    let fields = old.as_object_mut().unwrap();
    fields.remove("dev").unwrap();
    fields.remove("ctime_ns").unwrap();
    let i: Intent = serde_json::from_value(old).unwrap();
    assert_eq!((i.dev, i.ctime_ns), (0, 0));
    let mut released = serde_json::to_value(released("a.jpg", 1)).unwrap();
    let fields = released["MarkReleased"].as_object_mut().unwrap();
    fields.remove("dev").unwrap();
    fields.remove("ctime_ns").unwrap();
    let released: Command = serde_json::from_value(released).unwrap();

    let mut s = State::new();
    ok(&mut s, volume("vol-a"), 1);
    ok(&mut s, Command::RecordIntent(i.clone()), 2);
    let (k, sha256) = (i.key.clone(), i.sha256);
    let uploaded = Command::MarkUploaded {
        key: k.clone(),
        move_id: 1,
        sha256,
    };
    ok(&mut s, uploaded, 3);
    let archived = Command::MarkArchived {
        key: k.clone(),
        move_id: 1,
        sha256,
        size: i.size,
        lake: None,
        verified_at: None,
    };
    ok(&mut s, archived, 4);
    let r = s.file(&k).unwrap();
    assert_eq!((r.dev, r.ctime_ns), (0, 0));
    // An old agent's release, and a new one's stating what it saw: the
    // record has nothing to compare them with.
    let Command::MarkReleased { dev, ctime_ns, .. } = released.clone() else {
        unreachable!()
    };
    assert_eq!((dev, ctime_ns), (0, 0));
    let mut s2 = s.clone();
    assert_eq!(ok(&mut s, released, 5), Applied::Changed);
    assert_eq!(s.file(&k).unwrap().state, FileState::Released);
    let seen = Command::MarkReleased {
        key: k.clone(),
        move_id: 1,
        sha256,
        size: i.size,
        mtime_ns: i.mtime_ns,
        ino: i.ino,
        dev: 99,
        ctime_ns: 12_345,
    };
    assert_eq!(ok(&mut s2, seen, 5), Applied::Changed);
    assert_eq!(s2.file(&k).unwrap().state, FileState::Released);
}
