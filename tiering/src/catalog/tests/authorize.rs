//! Who may propose what, decided as each entry is applied.

use super::*;

fn on_node(id: &str, node: &str) -> Command {
    Command::RegisterVolume(Volume {
        id: id.into(),
        path: format!("/var/lib/kubelet/{id}"),
        labels: BTreeMap::from([(NODE_LABEL.into(), node.into())]),
    })
}

fn by(
    s: &mut State,
    who: Option<Proposer>,
    command: Command,
    at: u64,
) -> Result<Applied, Rejected> {
    let before = s.clone();
    let answer = s.apply_entry(&LogEntry {
        at: t(at),
        command,
        by: who,
    });
    if answer.is_err() {
        assert_eq!(*s, before, "a refusal must not change the state");
    }
    answer
}

fn node(n: &str) -> Option<Proposer> {
    Some(Proposer::Node(n.into()))
}

fn forbidden(r: Result<Applied, Rejected>, says: &str) {
    match r {
        Err(e @ Rejected::Forbidden { .. }) => {
            let msg = e.to_string();
            assert!(msg.contains(says), "{msg}");
        }
        other => panic!("expected Forbidden ({says}), got {other:?}"),
    }
}

/// Two nodes' volumes, registered by the catalog itself.
fn two_nodes() -> State {
    let mut s = State::new();
    ok(&mut s, on_node("vol-a", "edge-1"), 1);
    ok(&mut s, on_node("vol-b", "edge-2"), 2);
    ok(&mut s, volume("vol-c"), 3);
    s
}

fn intent_on(volume: &str, path: &str) -> Command {
    let mut i = intent(path, 1);
    i.key = FileKey::new(volume, path);
    Command::RecordIntent(i)
}

#[test]
fn a_node_moves_files_only_on_its_own_volumes() {
    let mut s = two_nodes();
    assert_eq!(
        by(&mut s, node("edge-1"), intent_on("vol-a", "x.jpg"), 10),
        Ok(Applied::Changed)
    );
    forbidden(
        by(&mut s, node("edge-1"), intent_on("vol-b", "x.jpg"), 11),
        "volume vol-b is on node edge-2",
    );
    forbidden(
        by(&mut s, node("edge-1"), intent_on("vol-c", "x.jpg"), 11),
        "on no node",
    );
    // The attack of the issue: marking another node's file uploaded and
    // archived so that its agent releases it.
    ok(&mut s, intent_on("vol-b", "y.jpg"), 12);
    let mark = Command::MarkUploaded {
        key: FileKey::new("vol-b", "y.jpg"),
        move_id: 1,
        sha256: sha(1),
    };
    forbidden(
        by(&mut s, node("edge-1"), mark.clone(), 13),
        "node edge-1 may not",
    );
    assert_eq!(by(&mut s, node("edge-2"), mark, 13), Ok(Applied::Changed));
}

#[test]
fn a_node_registers_only_its_own_volumes_and_takes_over_no_id() {
    let mut s = two_nodes();
    assert_eq!(
        by(&mut s, node("edge-1"), on_node("vol-d", "edge-1"), 10),
        Ok(Applied::Changed)
    );
    forbidden(
        by(&mut s, node("edge-1"), on_node("vol-e", "edge-2"), 11),
        "labelled for node edge-2",
    );
    forbidden(
        by(&mut s, node("edge-1"), volume("vol-f"), 11),
        "only volumes labelled",
    );
    // vol-b is edge-2's: edge-1 cannot claim its id, even labelled for itself.
    forbidden(
        by(&mut s, node("edge-1"), on_node("vol-b", "edge-1"), 12),
        "held by a volume on node edge-2",
    );
    forbidden(
        by(
            &mut s,
            node("edge-1"),
            Command::RemoveVolume { id: "vol-b".into() },
            13,
        ),
        "volume vol-b is on node edge-2",
    );
    assert_eq!(
        by(
            &mut s,
            node("edge-1"),
            Command::RemoveVolume { id: "vol-a".into() },
            14
        ),
        Ok(Applied::Changed)
    );
    // An admin may move a volume between nodes.
    assert_eq!(
        by(
            &mut s,
            Some(Proposer::Admin("ops".into())),
            on_node("vol-b", "edge-1"),
            15
        ),
        Ok(Applied::Changed)
    );
}

#[test]
fn a_node_changes_no_policy_and_no_replica_record() {
    let mut s = two_nodes();
    let put = Command::PutPolicy {
        name: "p".into(),
        spec: policy_spec("p", "0 * * * *"),
    };
    forbidden(
        by(&mut s, node("edge-1"), put.clone(), 10),
        "admin certificate",
    );
    forbidden(
        by(
            &mut s,
            node("edge-1"),
            Command::DeletePolicy { name: "p".into() },
            10,
        ),
        "change policy p",
    );
    forbidden(
        by(&mut s, node("edge-1"), Command::ForgetReplica { id: 2 }, 10),
        "replica 2",
    );
    forbidden(
        by(
            &mut s,
            node("edge-1"),
            Command::RecordReplicaHeldLog { id: 2 },
            10,
        ),
        "replica 2",
    );
    assert_eq!(
        by(&mut s, Some(Proposer::Admin("ops".into())), put.clone(), 11),
        Ok(Applied::Changed)
    );
    assert_eq!(by(&mut s, None, put, 12), Ok(Applied::Unchanged));
}

#[test]
fn volume_paths_are_absolute_and_normalised() {
    let mut s = State::new();
    for bad in ["relative", "/", "/a/../etc", "/a//b", "/a/./b", "/a/b/"] {
        let cmd = Command::RegisterVolume(Volume {
            id: "v".into(),
            path: bad.into(),
            labels: BTreeMap::new(),
        });
        assert!(
            matches!(rejected(&mut s, cmd, 1), Rejected::Invalid { ref field, .. } if field == "path"),
            "{bad}"
        );
    }
}

#[test]
fn a_forged_snapshot_with_an_escaping_path_is_refused() {
    let mut s = archived_state();
    ok(&mut s, on_node("vol-n", "edge-1"), 31);
    let good = String::from_utf8(s.to_snapshot()).unwrap();
    assert!(State::from_snapshot(good.as_bytes()).is_ok());
    for (from, to, says) in [
        ("\"a.jpg\"", "\"../../etc/shadow\"", "path"),
        ("\"a.jpg\"", "\"/etc/shadow\"", "path"),
        ("\"/mnt/vol-a\"", "\"/mnt/vol-a/../../root\"", "path"),
        ("\"/mnt/vol-a\"", "\"mnt\"", "path"),
    ] {
        assert!(good.contains(from), "{from} not in the snapshot");
        let forged = good.replacen(from, to, 1);
        let e = State::from_snapshot(forged.as_bytes())
            .unwrap_err()
            .to_string();
        assert!(e.contains(says), "{to}: {e}");
    }
}

fn claim_cmd(pv: &str, ns: &str) -> Command {
    Command::PutClaim(Claim {
        pv: pv.into(),
        namespace: ns.into(),
        name: "images".into(),
        labels: BTreeMap::from([("app".into(), "vision".into())]),
        storage_class: Some("fast".into()),
        class_policy: Some("week-old-images".into()),
    })
}

/// Claims come from the Kubernetes API through the replicas: a node may not
/// write one (it could pull its volume under another namespace's policy),
/// an admin or the catalog may; a bad label is refused by field.
#[test]
fn claims_are_written_by_the_catalog_only() {
    let mut s = two_nodes();
    forbidden(
        by(&mut s, node("edge-1"), claim_cmd("vol-a", "line-3"), 10),
        "claims come from the Kubernetes API",
    );
    forbidden(
        by(
            &mut s,
            node("edge-1"),
            Command::DeleteClaim { pv: "vol-a".into() },
            11,
        ),
        "change the claim of volume vol-a",
    );
    assert_eq!(
        by(&mut s, None, claim_cmd("vol-a", "line-3"), 12),
        Ok(Applied::Changed)
    );
    assert_eq!(
        by(&mut s, None, claim_cmd("vol-a", "line-3"), 13),
        Ok(Applied::Unchanged)
    );
    assert_eq!(
        by(
            &mut s,
            Some(Proposer::Admin("ops".into())),
            claim_cmd("vol-b", "line-4"),
            14
        ),
        Ok(Applied::Changed)
    );
    let vol_a = s.volume("vol-a").cloned().unwrap();
    assert_eq!(
        s.claim_of(&vol_a).map(|c| c.namespace.as_str()),
        Some("line-3")
    );
    // The snapshot carries claims, and checks them on the way in.
    let back = State::from_snapshot(&s.to_snapshot()).unwrap();
    assert_eq!(back.claims().count(), 2);
    for (bad, field) in [
        (("bad key!", "x"), "labels.bad key!"),
        (("app", "-x"), "labels.app"),
        (("a/b/c", "x"), "labels.a/b/c"),
    ] {
        let mut c = claim_cmd("vol-c", "line-3");
        if let Command::PutClaim(c) = &mut c {
            c.labels.insert(bad.0.into(), bad.1.into());
        }
        match by(&mut s, None, c, 20) {
            Err(Rejected::Invalid { field: f, .. }) => assert_eq!(f, field),
            other => panic!("{bad:?}: {other:?}"),
        }
    }
    let mut c = claim_cmd("vol-c", "Line_3");
    if let Command::PutClaim(c) = &mut c {
        c.labels.clear();
    }
    match by(&mut s, None, c, 21) {
        Err(Rejected::Invalid { field, .. }) => assert_eq!(field, "namespace"),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        by(
            &mut s,
            None,
            Command::DeleteClaim { pv: "vol-a".into() },
            22
        ),
        Ok(Applied::Changed)
    );
    assert!(s.claim_of(&vol_a).is_none());
}
