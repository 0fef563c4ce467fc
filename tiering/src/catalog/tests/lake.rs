//! A record bound to the lake its copy was verified in: set by
//! `MarkArchived`, moved to another lake only by a later verification,
//! never carrying a credential, and read from entries and snapshots
//! written before strata kept it.

use super::*;

const OTHER: &str = "s3://lake-b/site-a";

fn archived_in(path: &str, c: u8, lake: Option<&str>, verified_at: Option<u64>) -> Command {
    let Command::MarkArchived {
        key,
        move_id,
        sha256,
        size,
        ..
    } = archived(path, c)
    else {
        unreachable!()
    };
    Command::MarkArchived {
        key,
        move_id,
        sha256,
        size,
        lake: lake.map(str::to_owned),
        verified_at: verified_at.map(t),
    }
}

fn bound(s: &State) -> (FileState, Option<&str>, Option<Timestamp>) {
    let r = s.file(&key("a.jpg")).unwrap();
    (r.state, r.lake.as_deref(), r.verified_at)
}

#[test]
fn archiving_binds_the_record_to_its_lake() {
    let s = archived_state();
    // No time in the command: the entry's stands in.
    assert_eq!(bound(&s), (FileState::Archived, Some(LAKE), Some(t(30))));
    let mut s = State::new();
    ok(&mut s, volume("vol-a"), 1);
    ok(&mut s, Command::RecordIntent(intent("a.jpg", 1)), 10);
    assert_eq!(bound(&s), (FileState::Intent, None, None));
    ok(&mut s, uploaded("a.jpg", 1), 20);
    ok(&mut s, archived_in("a.jpg", 1, Some(LAKE), Some(25)), 30);
    assert_eq!(bound(&s), (FileState::Archived, Some(LAKE), Some(t(25))));
}

#[test]
fn a_later_verification_moves_the_record_to_its_lake() {
    let mut s = archived_state();
    let to_b = archived_in("a.jpg", 1, Some(OTHER), Some(40));
    assert_eq!(ok(&mut s, to_b.clone(), 41), Applied::Changed);
    assert_eq!(bound(&s), (FileState::Archived, Some(OTHER), Some(t(40))));
    assert_eq!(s.file(&key("a.jpg")).unwrap().updated_at, t(41));
    // A retry of it, later or not, changes nothing.
    assert_eq!(ok(&mut s, to_b, 50), Applied::Unchanged);
    // An older verification that took longer to commit never takes it back,
    // nor one that does not say when it was made (an old agent's), nor one
    // that names no lake.
    for late in [
        archived_in("a.jpg", 1, Some(LAKE), Some(35)),
        archived_in("a.jpg", 1, Some(LAKE), Some(40)),
        archived_in("a.jpg", 1, Some(LAKE), None),
        archived_in("a.jpg", 1, None, Some(60)),
    ] {
        assert_eq!(ok(&mut s, late, 61), Applied::Unchanged);
        assert_eq!(bound(&s), (FileState::Archived, Some(OTHER), Some(t(40))));
    }
    // A fresh verification in the same lake (its copy was lost and put
    // back) counts, and clears the failure it followed.
    let failure = Command::RecordFailure {
        key: key("a.jpg"),
        move_id: 1,
        sha256: sha(1),
        attempt: 1,
        error: "lost".into(),
        next_attempt_at: t(100),
    };
    ok(&mut s, failure, 62);
    ok(&mut s, archived_in("a.jpg", 1, Some(OTHER), Some(70)), 71);
    let r = s.file(&key("a.jpg")).unwrap();
    assert_eq!(bound(&s), (FileState::Archived, Some(OTHER), Some(t(70))));
    assert_eq!((&r.last_error, r.next_attempt_at), (&None, None));
    // Still the move and the content of the record, and its size.
    let stale = Command::MarkArchived {
        key: key("a.jpg"),
        move_id: 9,
        sha256: sha(1),
        size: 100,
        lake: Some(LAKE.into()),
        verified_at: Some(t(90)),
    };
    assert!(matches!(
        rejected(&mut s, stale, 91),
        Rejected::StaleMove { .. }
    ));
    let other = Command::MarkArchived {
        key: key("a.jpg"),
        move_id: 1,
        sha256: sha(2),
        size: 100,
        lake: Some(LAKE.into()),
        verified_at: Some(t(90)),
    };
    assert!(matches!(
        rejected(&mut s, other, 91),
        Rejected::ContentMismatch { .. }
    ));
}

#[test]
fn a_released_record_keeps_the_lake_it_was_released_against() {
    let mut s = archived_state();
    ok(&mut s, released("a.jpg", 1), 40);
    let to_b = archived_in("a.jpg", 1, Some(OTHER), Some(50));
    assert_eq!(ok(&mut s, to_b, 51), Applied::Unchanged);
    assert_eq!(bound(&s), (FileState::Released, Some(LAKE), Some(t(30))));
    // New content at the path: the old object stays on record with its lake.
    ok(&mut s, Command::RecordIntent(intent("a.jpg", 2)), 60);
    let old = s.superseded().next().unwrap();
    assert_eq!((old.sha256, old.lake.as_deref()), (sha(1), Some(LAKE)));
}

#[test]
fn a_lake_with_credentials_or_a_query_is_refused() {
    let mut s = State::new();
    ok(&mut s, volume("vol-a"), 1);
    ok(&mut s, Command::RecordIntent(intent("a.jpg", 1)), 10);
    ok(&mut s, uploaded("a.jpg", 1), 20);
    for bad in [
        "s3://AKIA:hunter2secret@lake/site-a",
        "s3://AKIAsecret@lake/site-a",
        "s3://lake/site-a?X-Amz-Security-Token=hunter2secret",
        "file:///srv/lake#hunter2secret",
        "https://lake.example/site-a",
        "lake/site-a",
    ] {
        let e = rejected(&mut s, archived_in("a.jpg", 1, Some(bad), Some(25)), 30);
        assert!(
            matches!(&e, Rejected::Invalid { field, .. } if field == "lake"),
            "{bad}: {e}"
        );
        assert!(!e.to_string().contains("secret"), "{bad}: {e}");
    }
    // Nor does a snapshot from elsewhere bring one in.
    ok(&mut s, archived_in("a.jpg", 1, Some(LAKE), Some(25)), 30);
    let text = String::from_utf8(s.to_snapshot()).unwrap();
    let forged = text.replace(LAKE, "s3://AKIA:hunter2@lake/site-a");
    assert_ne!(forged, text);
    let e = State::from_snapshot(forged.as_bytes()).unwrap_err();
    assert!(e.to_string().contains("lake"), "{e}");
    assert!(!e.to_string().contains("hunter2"), "{e}");
}

/// Entries and snapshots written before strata kept the lake read as
/// records without one (which the mover verifies again in its policy's
/// lake before any release, and recalls from its policy's lake).
#[test]
fn records_and_entries_from_before_the_lake_was_kept_still_read() {
    let mut s = archived_state();
    let entry = LogEntry {
        at: t(40),
        command: archived("b.jpg", 2),
        by: None,
    };
    let mut json: serde_json::Value = serde_json::to_value(&entry).unwrap();
    let fields = json["command"]["MarkArchived"].as_object_mut().unwrap();
    fields.remove("lake").unwrap();
    fields.remove("verified_at").unwrap();
    let old: LogEntry = serde_json::from_value(json).unwrap();
    let Command::MarkArchived {
        lake, verified_at, ..
    } = &old.command
    else {
        unreachable!()
    };
    assert_eq!((lake, verified_at), (&None, &None));
    ok(&mut s, Command::RecordIntent(intent("b.jpg", 2)), 41);
    ok(&mut s, uploaded("b.jpg", 2), 42);
    s.apply_entry(&old).unwrap();
    let r = s.file(&key("b.jpg")).unwrap();
    assert_eq!((r.state, r.lake.as_deref()), (FileState::Archived, None));

    // A snapshot whose records have neither field.
    let text = String::from_utf8(s.to_snapshot()).unwrap();
    let (head, body) = text.split_once('\n').unwrap();
    let mut json: serde_json::Value = serde_json::from_str(body).unwrap();
    for f in json["files"].as_array_mut().unwrap() {
        let f = f.as_object_mut().unwrap();
        f.remove("lake").unwrap();
        f.remove("verified_at").unwrap();
    }
    let old = format!("{head}\n{json}");
    assert!(!old.contains("verified_at"));
    let restored = State::from_snapshot(old.as_bytes()).unwrap();
    let r = restored.file(&key("a.jpg")).unwrap();
    assert_eq!(
        (r.state, r.lake.as_deref(), r.verified_at),
        (FileState::Archived, None, None)
    );
    // Such a record is bound by the first verification that says when.
    let mut restored = restored;
    ok(
        &mut restored,
        archived_in("a.jpg", 1, Some(LAKE), Some(50)),
        51,
    );
    let r = restored.file(&key("a.jpg")).unwrap();
    assert_eq!(
        (r.lake.as_deref(), r.verified_at),
        (Some(LAKE), Some(t(50)))
    );
}
