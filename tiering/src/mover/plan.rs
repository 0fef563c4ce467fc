//! What to do with a candidate, from its catalog record and what the scan saw
//! (pure: no I/O), and the object key of a version.

use std::collections::BTreeMap;
use std::time::SystemTime;

use crate::catalog::{FileRecord, FileState, Sha256};
use crate::lake::hex;
use crate::policy::{FileFacts, KeyTemplate, KeyVars};

use super::clock::system_time;
use super::local::Stamp;
use super::{LABEL_PVC_NAME, LABEL_PVC_NAMESPACE};

/// The verdict on one candidate (a file a policy rule matched).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Plan {
    /// Nothing to do.
    Skip(Skip),
    /// Hash it and record an intent.
    Hash,
    /// It changed since it was archived: abandon that move, then hash it and
    /// record an intent for the new version.
    AbandonThenHash,
}

/// Why a candidate needs nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Skip {
    /// The same version is waiting in the backlog.
    InBacklog,
    /// The same version is archived already.
    Archived,
    /// Recalled, and not cold again when its age counts from the recall.
    NotColdSinceRecall,
}

/// Decides for a candidate the scan saw as `seen`, given its record.
/// `cold_since` answers whether the policy still finds the file cold when its
/// modification and access count from the given time (its recall) at the latest.
pub(crate) fn plan(
    record: Option<&FileRecord>,
    seen: &Stamp,
    cold_since: impl FnOnce(SystemTime) -> bool,
) -> Plan {
    let Some(r) = record else {
        return Plan::Hash;
    };
    let same = Stamp::of_record(r).differs(seen).is_none();
    match r.state {
        FileState::Intent | FileState::Uploaded if same => Plan::Skip(Skip::InBacklog),
        FileState::Intent | FileState::Uploaded => Plan::Hash,
        FileState::Archived if same => Plan::Skip(Skip::Archived),
        FileState::Archived => Plan::AbandonThenHash,
        // A file is at the path of a released one: new content (an intent
        // supersedes the old version) or the same content back (recorded as
        // recalled once hashed).
        FileState::Released | FileState::Abandoned => Plan::Hash,
        FileState::Recalled => match r.recalled_at {
            Some(at) if !cold_since(system_time(at)) => Plan::Skip(Skip::NotColdSinceRecall),
            _ => Plan::Hash,
        },
    }
}

/// The facts of a recalled file as a policy must judge them: a recall
/// restores the old mtime, but the file was in use at its recall.
pub(crate) fn since<'a>(facts: &FileFacts<'a>, at: SystemTime) -> FileFacts<'a> {
    FileFacts {
        modified: facts.modified.max(at),
        accessed: facts.accessed.max(at),
        ..*facts
    }
}

/// The object key of one version of a file: the policy's template with empty
/// segments dropped (a plain directory volume has no namespace or PVC), then
/// `.<sha256>`, so that every version has its own key and an upload retried
/// after a crash finds its own object.
pub(crate) fn lake_key(
    template: &KeyTemplate,
    site: &str,
    volume: &str,
    labels: &BTreeMap<String, String>,
    path: &str,
    sha256: &Sha256,
) -> String {
    let label = |k: &str| labels.get(k).map_or("", String::as_str);
    let rendered = template.render(&KeyVars {
        site,
        namespace: label(LABEL_PVC_NAMESPACE),
        pvc: label(LABEL_PVC_NAME),
        volume,
        path,
    });
    let mut key = rendered
        .split('/')
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join("/");
    key.push('.');
    key.push_str(&hex(&sha256.0));
    key
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;
    use crate::catalog::{FileKey, Timestamp};
    use crate::policy::DEFAULT_KEY_TEMPLATE;

    fn record(state: FileState) -> FileRecord {
        FileRecord {
            key: FileKey::new("v", "a/b.jpg"),
            move_id: 7,
            size: 10,
            mtime_ns: 20,
            ino: 30,
            dev: 40,
            ctime_ns: 50,
            sha256: Sha256([1; 32]),
            owner: None,
            lake_key: "k".into(),
            lake: None,
            verified_at: None,
            state,
            policy: "p".into(),
            rule: "r".into(),
            attempts: 0,
            last_error: None,
            next_attempt_at: None,
            intent_at: Timestamp(1),
            recalled_at: (state == FileState::Recalled).then_some(Timestamp(1_000_000_000)),
            updated_at: Timestamp(1),
        }
    }

    const SAME: Stamp = Stamp {
        size: 10,
        mtime_ns: 20,
        ino: 30,
        dev: 40,
        ctime_ns: 50,
    };
    const OTHER: Stamp = Stamp {
        size: 10,
        mtime_ns: 21,
        ino: 30,
        dev: 40,
        ctime_ns: 51,
    };

    #[test]
    fn mover_plan_table() {
        use FileState::*;
        let cold = |_| true;
        let cases = [
            (None, SAME, Plan::Hash),
            (Some(Intent), SAME, Plan::Skip(Skip::InBacklog)),
            (Some(Uploaded), SAME, Plan::Skip(Skip::InBacklog)),
            (Some(Intent), OTHER, Plan::Hash),
            (Some(Uploaded), OTHER, Plan::Hash),
            (Some(Archived), SAME, Plan::Skip(Skip::Archived)),
            (Some(Archived), OTHER, Plan::AbandonThenHash),
            (Some(Released), SAME, Plan::Hash),
            (Some(Abandoned), SAME, Plan::Hash),
            (Some(Recalled), SAME, Plan::Hash),
        ];
        for (state, seen, want) in cases {
            let r = state.map(record);
            assert_eq!(plan(r.as_ref(), &seen, cold), want, "{state:?} {seen:?}");
        }
        // A recalled file is judged from its recall.
        let r = record(Recalled);
        let mut asked = None;
        let got = plan(Some(&r), &SAME, |t| {
            asked = Some(t);
            false
        });
        assert_eq!(got, Plan::Skip(Skip::NotColdSinceRecall));
        assert_eq!(asked, Some(UNIX_EPOCH + Duration::from_secs(1)));
    }

    #[test]
    fn mover_recalled_facts_count_from_the_recall() {
        let old = UNIX_EPOCH + Duration::from_secs(10);
        let recall = UNIX_EPOCH + Duration::from_secs(1000);
        let f = FileFacts {
            path: Path::new("a"),
            size: 1,
            modified: old,
            accessed: old,
        };
        let g = since(&f, recall);
        assert_eq!((g.modified, g.accessed, g.size), (recall, recall, 1));
        let later = UNIX_EPOCH + Duration::from_secs(2000);
        let h = since(
            &FileFacts {
                modified: later,
                ..f
            },
            recall,
        );
        assert_eq!(h.modified, later);
    }

    #[test]
    fn mover_lake_keys() {
        let sha = Sha256([0xab; 32]);
        let hexed = "ab".repeat(32);
        let mut labels = BTreeMap::new();
        let t = KeyTemplate::parse("{site}/{namespace}/{pvc}/{path}").unwrap();
        // A plain directory volume: no namespace, no PVC, no site.
        assert_eq!(
            lake_key(&t, "", "vol-1", &labels, "a/b.jpg", &sha),
            format!("a/b.jpg.{hexed}")
        );
        labels.insert(LABEL_PVC_NAMESPACE.to_owned(), "line-3".to_owned());
        labels.insert(LABEL_PVC_NAME.to_owned(), "cam".to_owned());
        assert_eq!(
            lake_key(&t, "site-a", "vol-1", &labels, "a/b.jpg", &sha),
            format!("site-a/line-3/cam/a/b.jpg.{hexed}")
        );
        let d = KeyTemplate::parse(DEFAULT_KEY_TEMPLATE).unwrap();
        assert_eq!(
            lake_key(&d, "s", "vol-1", &labels, "x", &sha),
            format!("s/vol-1/x.{hexed}")
        );
    }
}
