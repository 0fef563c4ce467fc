use super::remove::remove_kubelet_dir;
use super::*;
use std::time::{Duration, UNIX_EPOCH};

fn lv(vg: &str, name: &str, attr: &str, tags: &[&str]) -> LvInfo {
    LvInfo {
        vg: vg.into(),
        name: name.into(),
        size_bytes: 1 << 30,
        tags: tags.iter().map(|t| (*t).to_owned()).collect(),
        attr: attr.into(),
        pool: None,
        path: format!("/dev/{vg}/{name}"),
        data_percent: None,
        metadata_percent: None,
        created: None,
    }
}

fn mount(dev: (u32, u32), root: &str, at: &str, fs: &str, source: &str) -> MountEntry {
    MountEntry {
        dev,
        root: root.into(),
        mount_point: at.into(),
        options: vec!["rw".into()],
        fs_type: fs.into(),
        source: source.into(),
    }
}

fn dm(kernel: &str, dev: (u32, u32), name: &str) -> DmDevice {
    DmDevice {
        kernel: kernel.into(),
        dev,
        name: name.into(),
    }
}

const STRATA: &[&str] = &["strata.io", "strata.io/class=fast"];

const GRACE: Duration = in_flight::DEFAULT_GRACE;

fn owners(handles: &[&str]) -> HashSet<String> {
    handles.iter().map(|h| (*h).to_owned()).collect()
}

#[test]
fn dm_names_split_into_vg_and_lv() {
    assert_eq!(
        split_dm_name("strata--fast-pvc--1"),
        Some(("strata-fast".into(), "pvc-1".into()))
    );
    assert_eq!(
        split_dm_name("vg-pool0-tpool"),
        Some(("vg".into(), "pool0".into()))
    );
    assert_eq!(split_dm_name("novg"), None);
    assert_eq!(split_dm_name("-x"), None);
}

#[test]
fn an_lv_without_a_persistent_volume_is_an_orphan() {
    let facts = Facts {
        vgs: vec!["vg".into()],
        lvs: vec![
            lv("vg", "pvc-owned", "-wi-a-----", STRATA),
            lv("vg", "pvc-lost", "-wi-------", STRATA),
            lv("vg", "pvc-open", "-wi-ao----", STRATA),
            // not strata's, a thin pool, a snapshot: never orphans
            lv("vg", "root", "-wi-ao----", &[]),
            lv("vg", "pool0", "twi-a-tz--", &[]),
            lv("vg", "snap", "swi-a-s---", STRATA),
        ],
        ..Facts::default()
    };
    let found = judge(&facts, Some(&owners(&["pvc-owned"])), GRACE);
    let names: Vec<_> = found.iter().map(|o| (o.kind, o.name())).collect();
    assert_eq!(
        names,
        [
            (OrphanKind::Volume, "vg/pvc-lost".to_owned()),
            (OrphanKind::Volume, "vg/pvc-open".to_owned())
        ]
    );
    assert_eq!(found[0].in_use, None);
    assert_eq!(found[1].in_use.as_deref(), Some("its device is open"));
    assert!(found[0].reason.contains("no PersistentVolume"), "{found:?}");
}

#[test]
fn a_create_that_never_finished_is_an_orphan_once_no_request_can_hold_it() {
    let now = UNIX_EPOCH + Duration::from_secs(100_000);
    let at = |ago: u64| Some(now - Duration::from_secs(ago));
    let made = |name: &str, attr: &str, tags: &[&str], ago: u64| LvInfo {
        created: at(ago),
        ..lv("vg", name, attr, tags)
    };
    let filling = &["strata.io", "strata.io/class=fast", "strata.io/filling"];
    let temporary = &["strata.io/temporary", "strata.io/source=pvc-src"];
    let facts = Facts {
        vgs: vec!["vg".into()],
        lvs: vec![
            made("pvc-src", "owi-a-----", STRATA, 50_000),
            // Given up an hour ago: no longer anyone's.
            made("pvc-gone", "-wi-a-----", filling, 3600),
            made("pvc-gone.src", "swi-a-s---", temporary, 3600),
            // Just made: a request may be between lvcreate and its copy.
            made("pvc-new", "-wi-a-----", filling, 60),
            // Copying: its device is open.
            made("pvc-copying", "-wi-ao----", filling, 7200),
            // A request of this process holds it.
            made("pvc-held", "-wi-a-----", filling, 7200),
            // A temporary whose clone is gone, and one of a live clone.
            made("pvc-lost.src", "swi-a-s---", temporary, 7200),
            made("pvc-held.src", "swi-a-s---", temporary, 7200),
        ],
        now,
        held: HashSet::from(["pvc-held".to_owned()]),
        ..Facts::default()
    };
    let found = judge(&facts, Some(&owners(&["pvc-src"])), GRACE);
    let got: Vec<(&str, Option<&str>)> = found
        .iter()
        .map(|o| (o.volume.as_str(), o.in_use.as_deref()))
        .collect();
    assert_eq!(
        got,
        [
            ("pvc-copying", Some("its device is open")),
            ("pvc-gone", None),
            (
                "pvc-held",
                Some("tagged strata.io/filling: a request of this node is working on pvc-held")
            ),
            ("pvc-lost.src", None),
            (
                "pvc-new",
                Some(
                    "tagged strata.io/filling, made 60s ago (less than --filling-grace 900s): a request may still be working on it"
                )
            ),
        ]
    );
    assert!(
        found[1]
            .reason
            .ends_with("and its restore or clone never finished (tagged strata.io/filling)"),
        "{found:?}"
    );
    assert_eq!(
        found[3].reason,
        "the temporary snapshot a clone \"pvc-lost\" copied from, and that clone is gone"
    );
    // With the API away, none of it is judged.
    assert!(judge(&facts, None, GRACE).is_empty());
    // Looked at from the epoch (Facts::default), nothing is old enough.
    let young = Facts {
        now: UNIX_EPOCH,
        held: HashSet::new(),
        ..facts
    };
    assert!(
        judge(&young, Some(&owners(&["pvc-src"])), GRACE)
            .iter()
            .all(|o| o.in_use.is_some())
    );
}

#[test]
fn with_the_api_unknown_no_lv_is_judged() {
    let facts = Facts {
        vgs: vec!["vg".into()],
        lvs: vec![lv("vg", "pvc-lost", "-wi-------", STRATA)],
        ..Facts::default()
    };
    assert!(judge(&facts, None, GRACE).is_empty());
}

#[test]
fn a_mount_of_a_gone_lv_is_an_orphan_and_a_live_one_is_not() {
    let facts = Facts {
        vgs: vec!["strata-fast".into()],
        lvs: vec![lv("strata-fast", "pvc-1", "-wi-ao----", STRATA)],
        dm: vec![
            dm("dm-0", (253, 0), "strata--fast-pvc--1"),
            dm("dm-1", (253, 1), "strata--fast-ghost"),
            dm("dm-2", (253, 2), "othervg-data"),
        ],
        mounts: vec![
            mount((8, 1), "/", "/", "ext4", "/dev/sda1"),
            mount(
                (253, 0),
                "/",
                "/k/stage-1",
                "ext4",
                "/dev/strata-fast/pvc-1",
            ),
            mount(
                (253, 1),
                "/",
                "/k/stage-ghost",
                "ext4",
                "/dev/mapper/strata--fast-ghost",
            ),
            mount(
                (253, 1),
                "/",
                "/k/pod/ghost",
                "ext4",
                "/dev/mapper/strata--fast-ghost",
            ),
            // a block publish: a bind of the device node
            mount((0, 5), "/dm-1", "/k/pod/block-ghost", "devtmpfs", "udev"),
            // another VG's device is none of strata's business
            mount((253, 2), "/", "/data", "xfs", "/dev/mapper/othervg-data"),
        ],
        ..Facts::default()
    };
    let found = judge(&facts, Some(&owners(&["pvc-1"])), GRACE);
    let paths: Vec<_> = found
        .iter()
        .map(|o| (o.kind, o.name(), o.path.clone().unwrap()))
        .collect();
    assert_eq!(
        paths,
        [
            (
                OrphanKind::Mount,
                "strata-fast/ghost".to_owned(),
                PathBuf::from("/k/pod/block-ghost")
            ),
            (
                OrphanKind::Mount,
                "strata-fast/ghost".to_owned(),
                PathBuf::from("/k/pod/ghost")
            ),
            (
                OrphanKind::Mount,
                "strata-fast/ghost".to_owned(),
                PathBuf::from("/k/stage-ghost")
            ),
        ]
    );
    // Mounts are judged without the API too.
    assert_eq!(judge(&facts, None, GRACE).len(), 3);
    // The later mount is unmounted first.
    let order = removal_order(&found, &facts.mounts);
    assert_eq!(
        order[0].path.as_deref(),
        Some(Path::new("/k/pod/block-ghost"))
    );
    assert_eq!(order[2].path.as_deref(), Some(Path::new("/k/stage-ghost")));
}

#[test]
fn an_orphan_lv_that_is_mounted_says_where() {
    let facts = Facts {
        vgs: vec!["vg".into()],
        lvs: vec![lv("vg", "pvc-9", "-wi-ao----", STRATA)],
        dm: vec![dm("dm-4", (253, 4), "vg-pvc--9")],
        mounts: vec![mount((253, 4), "/", "/mnt/x", "xfs", "/dev/vg/pvc-9")],
        ..Facts::default()
    };
    let found = judge(&facts, Some(&HashSet::new()), GRACE);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].in_use.as_deref(), Some("mounted at /mnt/x"));
}

fn write_volume_dir(dir: &Path, driver: &str, handle: &str, mount_dir: Option<&str>) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(
        dir.join("vol_data.json"),
        format!(r#"{{"driverName":"{driver}","volumeHandle":"{handle}"}}"#),
    )
    .unwrap();
    if let Some(m) = mount_dir {
        std::fs::create_dir(dir.join(m)).unwrap();
    }
}

#[test]
fn leftover_kubelet_dirs_of_volumes_not_here_are_orphans() {
    let k = tempfile::tempdir().unwrap();
    let csi = k.path().join("plugins/kubernetes.io/csi");
    // staged volume whose LV is here: accounted for
    write_volume_dir(
        &csi.join("strata.io/aaa"),
        "strata.io",
        "pvc-here",
        Some("globalmount"),
    );
    // LV gone, empty globalmount left
    write_volume_dir(
        &csi.join("strata.io/bbb"),
        "strata.io",
        "pvc-gone",
        Some("globalmount"),
    );
    // LV gone but files in globalmount: not ours to judge empty
    write_volume_dir(
        &csi.join("strata.io/ccc"),
        "strata.io",
        "pvc-full",
        Some("globalmount"),
    );
    std::fs::write(csi.join("strata.io/ccc/globalmount/file"), "x").unwrap();
    // another driver's
    write_volume_dir(
        &csi.join("pv/pv-x"),
        "other.io",
        "pv-x",
        Some("globalmount"),
    );
    // publish dir of a gone volume without its mount dir
    let pod = k.path().join("pods/uid-1/volumes/kubernetes.io~csi");
    write_volume_dir(&pod.join("pvc-gone"), "strata.io", "pvc-gone", None);
    let dirs = kubelet_dirs(k.path(), &[]);
    assert_eq!(dirs.len(), 4, "{dirs:?}");
    let facts = Facts {
        vgs: vec!["vg".into()],
        lvs: vec![lv("vg", "pvc-here", "-wi-a-----", STRATA)],
        kubelet_dirs: dirs,
        ..Facts::default()
    };
    let found = judge(&facts, None, GRACE);
    let got: Vec<_> = found
        .iter()
        .map(|o| (o.kind, o.volume.clone(), o.path.clone().unwrap()))
        .collect();
    assert_eq!(
        got,
        [
            (
                OrphanKind::StagingDir,
                "pvc-gone".to_owned(),
                csi.join("strata.io/bbb")
            ),
            (
                OrphanKind::PublishDir,
                "pvc-gone".to_owned(),
                pod.join("pvc-gone")
            ),
        ]
    );
    // A mounted staging dir is never one.
    let mounted = [mount(
        (253, 9),
        "/",
        csi.join("strata.io/bbb/globalmount").to_str().unwrap(),
        "ext4",
        "/dev/vg/x",
    )];
    let dirs = kubelet_dirs(k.path(), &mounted);
    assert!(dirs.iter().any(|d| d.mounted));
    // Removal takes the empty directories and vol_data.json, and keeps a full one.
    for o in &found {
        assert_eq!(
            remove_kubelet_dir(o.path.as_ref().unwrap(), o.kind),
            Outcome::Removed
        );
    }
    assert!(!csi.join("strata.io/bbb").exists());
    assert!(!pod.join("pvc-gone").exists());
    assert!(matches!(
        remove_kubelet_dir(&csi.join("strata.io/ccc"), OrphanKind::StagingDir),
        Outcome::Kept(_)
    ));
    assert!(csi.join("strata.io/ccc/vol_data.json").exists());
}

#[test]
fn the_log_reports_each_orphan_once_and_keeps_volumes_while_the_api_is_away() {
    let o = |kind, v: &str| Orphan {
        kind,
        volume: v.into(),
        vg: Some("vg".into()),
        path: None,
        reason: "r".into(),
        in_use: None,
    };
    let mut log = OrphanLog::default();
    let s1 = Survey {
        orphans: vec![o(OrphanKind::Volume, "a"), o(OrphanKind::Mount, "b")],
        owners_known: true,
        owners_problem: None,
    };
    let mut c = log.update(&s1);
    c.sort();
    assert_eq!(c, [("mount", 1), ("volume", 1)]);
    // API gone: the volume stays reported, the mount went away.
    let s2 = Survey {
        orphans: vec![],
        owners_known: false,
        owners_problem: Some("unreachable".into()),
    };
    assert_eq!(log.update(&s2), [("volume", 1)]);
    // API back, the volume was dealt with.
    let s3 = Survey {
        owners_known: true,
        ..Survey::default()
    };
    assert!(log.update(&s3).is_empty());
}
