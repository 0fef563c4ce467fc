//! Table tests of the reconcile and status functions over plain objects.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    CSIPersistentVolumeSource, ObjectReference, PersistentVolume, PersistentVolumeClaim,
    PersistentVolumeClaimSpec, PersistentVolumeSpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use strata_tiering::catalog::{
    Command, FileKey, Intent, LogEntry, RunSummary, Sha256, State, Timestamp, Volume,
};
use strata_tiering::policy::LabelSelectorSpec;

use crate::condition_types::{DEGRADED, LAKE_UNREACHABLE, READY, SPACE_PRESSURE};
use crate::reconcile::{CLASS_POLICY_PARAM, CatalogView, Plan, Verdict, catalog_name, plan};
use crate::{TieringPolicy, TieringPolicyStatus, policy_facts, status};

fn tp(ns: &str, name: &str, generation: i64, yaml_spec: &str) -> TieringPolicy {
    let mut tp: TieringPolicy = serde_yaml_ng::from_str(&format!(
        "apiVersion: strata.io/v1alpha1\nkind: TieringPolicy\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n{yaml_spec}"
    ))
    .unwrap();
    tp.metadata.generation = Some(generation);
    tp
}

const BODY: &str = "  lake: {url: \"file:///srv/lake\"}\n  rules: [{name: images, include: [\"**/*.jpg\"], modifiedBefore: 7d, action: move}]\n";

fn with_selector(selector: &str) -> String {
    format!("{selector}{BODY}")
}

fn pvc(
    ns: &str,
    name: &str,
    uid: &str,
    labels: &[(&str, &str)],
    class: &str,
) -> PersistentVolumeClaim {
    PersistentVolumeClaim {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some(ns.into()),
            uid: Some(uid.into()),
            labels: Some(
                labels
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
            ..Default::default()
        },
        spec: Some(PersistentVolumeClaimSpec {
            storage_class_name: Some(class.into()),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn pv(
    name: &str,
    driver: &str,
    claim: (&str, &str, &str),
    class_policy: Option<&str>,
) -> PersistentVolume {
    PersistentVolume {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        spec: Some(PersistentVolumeSpec {
            csi: Some(CSIPersistentVolumeSource {
                driver: driver.into(),
                volume_handle: name.into(),
                volume_attributes: class_policy
                    .map(|p| BTreeMap::from([(CLASS_POLICY_PARAM.to_owned(), p.to_owned())])),
                ..Default::default()
            }),
            claim_ref: Some(ObjectReference {
                namespace: Some(claim.0.into()),
                name: Some(claim.1.into()),
                uid: Some(claim.2.into()),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Applies a plan's commands as the catalog would (proposed by a replica).
fn apply(state: &mut State, plan: &Plan) {
    for (i, command) in plan.commands.iter().enumerate() {
        state
            .apply_entry(&LogEntry {
                by: None,
                at: Timestamp::from_unix_nanos(1_000 + i as u64),
                command: command.clone(),
            })
            .unwrap_or_else(|e| panic!("{command:?}: {e}"));
    }
}

/// Plans against the state and applies the plan.
fn sync(
    state: &mut State,
    policies: &[TieringPolicy],
    volumes: &[PersistentVolume],
    claims: &[PersistentVolumeClaim],
) -> Plan {
    let p = plan(policies, volumes, claims, &CatalogView::of(state));
    apply(state, &p);
    p
}

fn csi_volume(state: &mut State, pv: &str) {
    apply(
        state,
        &Plan {
            commands: vec![Command::RegisterVolume(Volume {
                id: pv.into(),
                path: format!("/var/lib/kubelet/{pv}"),
                labels: BTreeMap::from([
                    ("strata.io/node".to_owned(), "edge-1".to_owned()),
                    ("strata.io/pv".to_owned(), pv.to_owned()),
                ]),
            })],
            ..Plan::default()
        },
    );
}

#[test]
fn a_valid_policy_reaches_the_catalog_once() {
    let policies = [tp(
        "line-3",
        "images",
        2,
        &with_selector("  selector: {matchLabels: {app: vision}}\n"),
    )];
    let mut state = State::new();
    let first = plan(&policies, &[], &[], &CatalogView::of(&state));
    assert_eq!(first.commands.len(), 1, "{first:?}");
    let Command::PutPolicy { name, spec } = &first.commands[0] else {
        panic!("{first:?}")
    };
    assert_eq!(name, "line-3.images");
    assert!(spec.contains("\"kubernetes\""), "{spec}");
    assert!(matches!(
        first.verdicts[&("line-3".into(), "images".into())],
        Verdict::Valid(_)
    ));
    apply(&mut state, &first);
    // In step: nothing more to do.
    let again = plan(&policies, &[], &[], &CatalogView::of(&state));
    assert!(again.commands.is_empty(), "{again:?}");
    // A new generation is written again.
    let newer = [tp(
        "line-3",
        "images",
        3,
        &with_selector("  selector: {matchLabels: {app: vision}}\n"),
    )];
    let third = plan(&newer, &[], &[], &CatalogView::of(&state));
    assert_eq!(third.commands.len(), 1);
}

#[test]
fn an_invalid_policy_keeps_the_last_valid_one_and_says_where() {
    let mut state = State::new();
    let good = [tp("line-3", "images", 1, BODY)];
    sync(&mut state, &good, &[], &[]);
    let bad = [tp(
        "line-3",
        "images",
        2,
        "  selector: {matchExpressions: [{key: app, operator: In}]}\n  storageClassNames: [\"\"]\n  lake: {url: \"file:///srv/lake\"}\n  rules: [{name: r, action: shred, modifiedBefore: soon}]\n",
    )];
    let p = plan(&bad, &[], &[], &CatalogView::of(&state));
    assert!(p.commands.is_empty(), "the old version stays: {p:?}");
    let Verdict::Invalid(errors) = &p.verdicts[&("line-3".into(), "images".into())] else {
        panic!("{p:?}")
    };
    for path in [
        "spec.selector.matchExpressions[0].values:",
        "spec.rules[0].action:",
        "spec.rules[0].modifiedBefore:",
    ] {
        assert!(
            errors.iter().any(|e| e.starts_with(path)),
            "{path} in {errors:#?}"
        );
    }
    let facts = policy_facts(&state, "line-3.images", Timestamp::from_unix_nanos(5_000));
    let s = status(
        Some(2),
        "line-3.images",
        &p.verdicts[&("line-3".into(), "images".into())],
        facts.as_ref(),
        None,
        Timestamp::from_unix_nanos(5_000),
    );
    let ready = cond(&s, READY);
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("False", "InvalidSpec")
    );
    assert!(
        ready.message.contains("spec.rules[0].action"),
        "{}",
        ready.message
    );
    let degraded = cond(&s, DEGRADED);
    assert_eq!(
        (degraded.status.as_str(), degraded.reason.as_str()),
        ("True", "OldVersionInForce")
    );
    assert!(
        degraded.message.contains("generation 1 stays in force"),
        "{}",
        degraded.message
    );
    assert_eq!(s.observed_generation, Some(2));
}

#[test]
fn deleted_suspended_and_clashing_policies() {
    let mut state = State::new();
    // An operator's policy with the name a TieringPolicy would take.
    state
        .apply(
            &Command::PutPolicy {
                name: "line-3.videos".into(),
                spec: format!("name: line-3.videos\n{}", BODY.replace("  ", "")),
            },
            Timestamp::from_unix_nanos(1),
        )
        .unwrap();
    let both = [
        tp("line-3", "images", 1, BODY),
        tp("line-3", "videos", 1, BODY),
    ];
    let p = plan(&both, &[], &[], &CatalogView::of(&state));
    assert_eq!(
        p.verdicts[&("line-3".into(), "videos".into())],
        Verdict::NameTaken("line-3.videos".into())
    );
    assert_eq!(p.commands.len(), 1, "only images is written: {p:?}");
    apply(&mut state, &p);
    // Suspended: removed; the operator's policy is never touched.
    let mut suspended = tp("line-3", "images", 2, BODY);
    suspended.spec.suspend = true;
    let p = plan(&[suspended], &[], &[], &CatalogView::of(&state));
    assert_eq!(
        p.commands,
        [Command::DeletePolicy {
            name: "line-3.images".into()
        }]
    );
    assert_eq!(
        p.verdicts[&("line-3".into(), "images".into())],
        Verdict::Suspended
    );
    // Deleted: the same; an empty list removes every policy the controller made.
    sync(&mut state, &both[..1], &[], &[]);
    let p = plan(&[], &[], &[], &CatalogView::of(&state));
    assert_eq!(
        p.commands,
        [Command::DeletePolicy {
            name: "line-3.images".into()
        }]
    );
}

#[test]
fn claims_follow_bound_persistent_volumes_of_the_driver() {
    let claims = [
        pvc("line-3", "cam-1", "u1", &[("app", "vision")], "fast"),
        pvc("line-3", "cam-2", "u2-new", &[], "fast"),
    ];
    let volumes = [
        pv(
            "pvc-1",
            "strata.io",
            ("line-3", "cam-1", "u1"),
            Some("images"),
        ),
        // Another driver's volume: not followed.
        pv("pvc-9", "ebs.csi.aws.com", ("line-3", "cam-1", "u1"), None),
        // Its claim was deleted and made anew: a different uid.
        pv("pvc-2", "strata.io", ("line-3", "cam-2", "u2-old"), None),
        // Its claim is gone.
        pv("pvc-3", "strata.io", ("line-3", "cam-3", "u3"), None),
    ];
    let mut state = State::new();
    let p = plan(&[], &volumes, &claims, &CatalogView::of(&state));
    assert_eq!(p.commands.len(), 1, "{p:?}");
    let Command::PutClaim(c) = &p.commands[0] else {
        panic!("{p:?}")
    };
    assert_eq!(
        (c.pv.as_str(), c.namespace.as_str(), c.name.as_str()),
        ("pvc-1", "line-3", "cam-1")
    );
    assert_eq!(c.labels.get("app").map(String::as_str), Some("vision"));
    assert_eq!(
        (c.storage_class.as_deref(), c.class_policy.as_deref()),
        (Some("fast"), Some("images"))
    );
    apply(&mut state, &p);
    assert!(
        plan(&[], &volumes, &claims, &CatalogView::of(&state))
            .commands
            .is_empty()
    );
    // The claim's labels change: the record follows.
    let relabelled = [pvc(
        "line-3",
        "cam-1",
        "u1",
        &[("app", "vision"), ("tier", "cold")],
        "fast",
    )];
    let p = plan(&[], &volumes, &relabelled, &CatalogView::of(&state));
    assert!(
        matches!(&p.commands[..], [Command::PutClaim(c)] if c.labels.len() == 2),
        "{p:?}"
    );
    // The claim is deleted: its record goes.
    let p = plan(&[], &volumes, &[], &CatalogView::of(&state));
    assert_eq!(p.commands, [Command::DeleteClaim { pv: "pvc-1".into() }]);
}

/// A TieringPolicy selects in its own namespace only, whatever its
/// selector, and a StorageClass naming it selects without one.
#[test]
fn selection_stays_in_the_policy_namespace() {
    let claims = [
        pvc("line-3", "cam-1", "u1", &[("app", "vision")], "fast"),
        pvc("line-4", "cam-1", "u2", &[("app", "vision")], "fast"),
        pvc("line-3", "db", "u3", &[("app", "db")], "slow"),
        pvc("line-4", "named", "u4", &[], "archive"),
    ];
    let volumes = [
        pv("pvc-a", "strata.io", ("line-3", "cam-1", "u1"), None),
        pv("pvc-b", "strata.io", ("line-4", "cam-1", "u2"), None),
        pv("pvc-c", "strata.io", ("line-3", "db", "u3"), None),
        pv(
            "pvc-d",
            "strata.io",
            ("line-4", "named", "u4"),
            Some("images"),
        ),
    ];
    let cases: [(&str, &str, &[&str]); 5] = [
        (
            "line-3",
            "  selector: {matchLabels: {app: vision}}\n",
            &["pvc-a"],
        ),
        ("line-3", "  selector: {}\n", &["pvc-a", "pvc-c"]),
        ("line-3", "  storageClassNames: [slow]\n", &["pvc-c"]),
        // No criteria: only through a class naming it, and pvc-d is in line-4.
        ("line-3", "", &[]),
        ("line-4", "", &["pvc-d"]),
    ];
    for (ns, selector, want) in cases {
        let mut state = State::new();
        for v in &volumes {
            csi_volume(&mut state, v.metadata.name.as_deref().unwrap());
        }
        let policies = [tp(ns, "images", 1, &with_selector(selector))];
        sync(&mut state, &policies, &volumes, &claims);
        let name = catalog_name(ns, "images");
        let stored =
            strata_tiering::policy::parse_policy(&state.policy(&name).unwrap().spec).unwrap();
        let selected: Vec<&str> = state
            .volumes()
            .filter(|v| stored.selects_volume(&v.id, &v.labels, state.claim_of(v)))
            .map(|v| v.id.as_str())
            .collect();
        assert_eq!(selected, want, "{ns} {selector:?}");
        let facts = policy_facts(&state, &name, Timestamp::from_unix_nanos(9)).unwrap();
        assert_eq!(facts.volumes as usize, want.len());
    }
}

fn cond<'a>(
    s: &'a TieringPolicyStatus,
    kind: &str,
) -> &'a k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition {
    s.conditions
        .iter()
        .find(|c| c.type_ == kind)
        .unwrap_or_else(|| panic!("no {kind} in {s:?}"))
}

const SEC: u64 = 1_000_000_000;

#[test]
fn status_counts_backlog_runs_failures_and_pressure() {
    let mut state = State::new();
    csi_volume(&mut state, "pvc-a");
    let claims = [pvc("line-3", "cam-1", "u1", &[("app", "vision")], "fast")];
    let volumes = [pv("pvc-a", "strata.io", ("line-3", "cam-1", "u1"), None)];
    let policies = [tp(
        "line-3",
        "images",
        7,
        &with_selector("  selector: {}\n"),
    )];
    let p = plan(&policies, &volumes, &claims, &CatalogView::of(&state));
    apply(&mut state, &p);
    let verdict = &p.verdicts[&("line-3".into(), "images".into())];
    let at = |s: u64| Timestamp::from_unix_nanos(s * SEC);
    let mut run = |command: Command, t: u64| {
        state
            .apply(&command, at(t))
            .unwrap_or_else(|e| panic!("{command:?}: {e}"));
    };
    for (i, path) in ["a.jpg", "b.jpg"].iter().enumerate() {
        run(
            Command::RecordIntent(Intent {
                key: FileKey::new("pvc-a", *path),
                move_id: i as u64 + 1,
                size: 1000,
                mtime_ns: 1,
                ino: i as u64 + 10,
                dev: 1,
                ctime_ns: 1,
                sha256: Sha256([i as u8; 32]),
                owner: None,
                lake_key: format!("k/{path}"),
                policy: "line-3.images".into(),
                rule: "images".into(),
            }),
            100 + i as u64,
        );
    }
    for attempt in 1..=3 {
        run(
            Command::RecordFailure {
                key: FileKey::new("pvc-a", "a.jpg"),
                move_id: 1,
                sha256: Sha256([0; 32]),
                attempt,
                error: "lake: connection refused".into(),
                next_attempt_at: at(200),
            },
            110 + u64::from(attempt),
        );
    }
    run(
        Command::RecordRun(RunSummary {
            id: "r1".into(),
            policy: "line-3.images".into(),
            volume: "pvc-a".into(),
            started_at: at(90),
            finished_at: at(95),
            files: 2,
            bytes: 2000,
            errors: 0,
            settling_files: 0,
            settling_bytes: 0,
            settle: None,
            free_goal: Some(5000),
        }),
        95,
    );
    let facts = policy_facts(&state, "line-3.images", at(160)).unwrap();
    let s = status(
        Some(7),
        "line-3.images",
        verdict,
        Some(&facts),
        None,
        at(160),
    );
    assert_eq!(
        (s.backlog_files, s.backlog_bytes, s.oldest_pending_seconds),
        (2, 2000, Some(60))
    );
    assert_eq!((s.files_moved, s.bytes_moved, s.volumes), (2, 2000, 1));
    assert_eq!(
        s.last_run.as_ref().map(|r| r.finished_at.as_str()),
        Some("1970-01-01T00:01:35Z")
    );
    assert_eq!(cond(&s, READY).status, "True");
    assert_eq!(cond(&s, DEGRADED).reason, "FilesFailing");
    let lake = cond(&s, LAKE_UNREACHABLE);
    assert_eq!(
        (lake.status.as_str(), lake.reason.as_str()),
        ("True", "UploadsFailing")
    );
    assert!(
        lake.message.contains("connection refused"),
        "{}",
        lake.message
    );
    let pressure = cond(&s, SPACE_PRESSURE);
    assert_eq!(pressure.status, "True");
    assert!(
        pressure.message.contains("set out to free 5000 bytes"),
        "{}",
        pressure.message
    );
    // A later status keeps each unchanged condition's transition time.
    let later = status(
        Some(7),
        "line-3.images",
        verdict,
        Some(&facts),
        Some(&s),
        at(900),
    );
    for (a, b) in s.conditions.iter().zip(&later.conditions) {
        assert_eq!(
            a.last_transition_time, b.last_transition_time,
            "{}",
            a.type_
        );
    }
    // A generation the catalog does not have yet is Pending, not Ready.
    let newer = status(
        Some(8),
        "line-3.images",
        verdict,
        Some(&facts),
        Some(&s),
        at(900),
    );
    assert_eq!(cond(&newer, READY).reason, "Pending");
    assert_ne!(
        cond(&newer, READY).last_transition_time,
        cond(&s, READY).last_transition_time
    );
    let _ = LabelSelectorSpec::default();
}
