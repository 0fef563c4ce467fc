//! Real-kernel group: snapshots, restores and clones through the CSI gRPC API
//! over the real socket, on real LVM (thin snapshots, COW snapshots and block
//! copies), with the data checked by checksum at every step. Runs inside the
//! QEMU guest (`scripts/real-kernel tests`).
//!
//! For each class: create → write → snapshot → write more → restore the
//! snapshot into a larger new volume (exactly the data at snapshot time) →
//! clone the live volume (exactly the data now) → expand the clone → delete
//! in every order the CSI spec allows, and the refusals where LVM cannot.

mod common;

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

use common::*;
use sha2::{Digest, Sha256};
use strata_proto::csi::v1 as csi;
use tonic::Code;

fn payload(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ ((i >> 12) as u8))
        .collect()
}

fn sha(data: &[u8]) -> String {
    Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn write_at(dev: &str, offset: u64, data: &[u8]) {
    let mut f = std::fs::OpenOptions::new().write(true).open(dev).unwrap();
    f.seek(SeekFrom::Start(offset)).unwrap();
    f.write_all(data).unwrap();
    f.sync_all().unwrap();
}

fn read_range(dev: &str, offset: u64, len: u64) -> Vec<u8> {
    let mut f = std::fs::File::open(dev).unwrap();
    f.seek(SeekFrom::Start(offset)).unwrap();
    let mut buf = vec![0; len as usize];
    f.read_exact(&mut buf).unwrap();
    buf
}

fn scratch() -> tempfile::TempDir {
    tempfile::tempdir_in(std::env::var("STRATA_SCRATCH").unwrap_or("/tmp".into())).unwrap()
}

async fn create(c: &mut Clients, req: csi::CreateVolumeRequest) -> csi::Volume {
    c.controller
        .create_volume(req)
        .await
        .unwrap()
        .into_inner()
        .volume
        .unwrap()
}

async fn snapshot(c: &mut Clients, req: csi::CreateSnapshotRequest) -> csi::Snapshot {
    c.controller
        .create_snapshot(req)
        .await
        .unwrap()
        .into_inner()
        .snapshot
        .unwrap()
}

async fn delete_snapshot(c: &mut Clients, id: &str) {
    c.controller
        .delete_snapshot(csi::DeleteSnapshotRequest {
            snapshot_id: id.into(),
            ..Default::default()
        })
        .await
        .unwrap();
}

async fn list_snapshots(c: &mut Clients, source: &str) -> Vec<csi::Snapshot> {
    c.controller
        .list_snapshots(csi::ListSnapshotsRequest {
            source_volume_id: source.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .entries
        .into_iter()
        .map(|e| e.snapshot.unwrap())
        .collect()
}

async fn stage_publish(c: &mut Clients, id: &str, p: &Paths, cap: &csi::VolumeCapability) {
    c.node
        .node_stage_volume(stage_req(id, p, cap))
        .await
        .unwrap();
    c.node
        .node_publish_volume(publish_req(id, p, cap, false))
        .await
        .unwrap();
}

async fn fs_total(c: &mut Clients, id: &str, path: &Path) -> i64 {
    c.node
        .node_get_volume_stats(csi::NodeGetVolumeStatsRequest {
            volume_id: id.into(),
            volume_path: path.to_string_lossy().into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .usage[0]
        .total
}

fn config_both(vg: &str, backend: &str) -> String {
    let classes = format!(
        "{}[[device_class]]\nname = \"fast\"\nvolume_group = \"{vg}\"\ntype = \"thick\"\n",
        thin_class(vg, "pool0", "overprovision_ratio = 4.0")
    );
    config(&classes, backend)
}

fn with_class(mut req: csi::CreateVolumeRequest, class: &str) -> csi::CreateVolumeRequest {
    req.parameters
        .insert("strata.io/device-class".into(), class.into());
    req
}

fn sync_fs() {
    sh("sync", &[]);
}

/// Thin, with an ext4 or xfs filesystem: snapshot while mounted, restore,
/// clone, expand the clone online, delete the origin while its snapshot and
/// clone live on, restore again from the orphaned snapshot, delete the
/// snapshot while its restores live on.
async fn thin_snapshots(backend: &str, fs: &str) {
    let vg = TestVg::new(2048);
    vg.create_thin_pool("pool0", 1024);
    let node = NodeProc::start(&config_both(&vg.name, backend)).await;
    let mut c = node.clients().await;
    let work = scratch();
    let cap = mount_cap(fs);
    let size = if fs == "xfs" { 320 * MIB } else { 64 * MIB };

    let a = create(&mut c, create_req("pvc-thin-a", size, cap.clone())).await;
    let pa = paths(work.path(), "a");
    stage_publish(&mut c, &a.volume_id, &pa, &cap).await;
    let a_total = fs_total(&mut c, &a.volume_id, &pa.target).await;
    let first = payload(3 << 20, 1);
    std::fs::write(pa.target.join("a.bin"), &first).unwrap();
    sync_fs();

    // Snapshot while mounted: LVM suspends (and so freezes) the origin for the cut.
    let s = snapshot(&mut c, snapshot_req("snapshot-thin-1", &a.volume_id, &[])).await;
    assert_eq!(s.snapshot_id, "snap-thin-1");
    assert_eq!(s.source_volume_id, a.volume_id);
    assert_eq!(s.size_bytes, size);
    assert!(s.ready_to_use);
    let again = snapshot(&mut c, snapshot_req("snapshot-thin-1", &a.volume_id, &[])).await;
    assert_eq!(again, s, "CreateSnapshot is idempotent by name");
    // Read-only, inactive, with LVM's activation-skip flag.
    let attr = vg.lv_field(&s.snapshot_id, "lv_attr");
    assert!(attr.starts_with("Vr"), "{attr}");
    assert_eq!(attr.chars().nth(4), Some('-'), "{attr}");
    assert_eq!(attr.chars().nth(9), Some('k'), "{attr}");

    let second = payload(2 << 20, 2);
    std::fs::write(pa.target.join("a.bin"), &second).unwrap();
    std::fs::write(pa.target.join("b.bin"), &second).unwrap();
    sync_fs();

    // Restore into a larger volume: exactly the snapshot's data, filesystem grown.
    let bigger = size + 64 * MIB;
    let r = create(
        &mut c,
        create_from_req(
            "pvc-thin-r",
            bigger,
            cap.clone(),
            from_snapshot(&s.snapshot_id),
        ),
    )
    .await;
    assert_eq!(r.capacity_bytes, bigger);
    assert_eq!(r.content_source, Some(from_snapshot(&s.snapshot_id)));
    let tags = vg.lv_tags(&r.volume_id);
    assert!(
        tags.contains(&"strata.io/pv=pvc-thin-r".to_string()),
        "{tags:?}"
    );
    assert!(
        !tags
            .iter()
            .any(|t| t.contains("pvc-thin-a") || t == "strata.io/snapshot"),
        "the restore carries no identity of its origin: {tags:?}"
    );
    let pr = paths(work.path(), "r");
    stage_publish(&mut c, &r.volume_id, &pr, &cap).await;
    assert_eq!(
        sha(&std::fs::read(pr.target.join("a.bin")).unwrap()),
        sha(&first)
    );
    assert!(!pr.target.join("b.bin").exists());
    // XFS keeps a 64 MiB log on such small volumes: compare with the
    // origin's filesystem, not with the volume size.
    let total = fs_total(&mut c, &r.volume_id, &pr.target).await;
    // Half the 64 MiB added is plainly grown (inode tables take their share).
    assert!(
        total >= a_total + 32 * MIB,
        "the restored filesystem was not grown to its larger volume: {total} bytes, the origin's {a_total}"
    );

    // Clone the live volume: exactly the data now; then grow the clone online.
    let k = create(
        &mut c,
        create_from_req("pvc-thin-k", size, cap.clone(), from_volume(&a.volume_id)),
    )
    .await;
    assert_eq!(k.content_source, Some(from_volume(&a.volume_id)));
    let pk = paths(work.path(), "k");
    stage_publish(&mut c, &k.volume_id, &pk, &cap).await;
    assert_eq!(
        sha(&std::fs::read(pk.target.join("a.bin")).unwrap()),
        sha(&second)
    );
    assert_eq!(
        sha(&std::fs::read(pk.target.join("b.bin")).unwrap()),
        sha(&second)
    );
    let before = fs_total(&mut c, &k.volume_id, &pk.target).await;
    let grown = c
        .node
        .node_expand_volume(csi::NodeExpandVolumeRequest {
            volume_id: k.volume_id.clone(),
            volume_path: pk.target.to_string_lossy().into(),
            capacity_range: Some(csi::CapacityRange {
                required_bytes: size + 128 * MIB,
                limit_bytes: 0,
            }),
            staging_target_path: pk.staging.to_string_lossy().into(),
            volume_capability: Some(cap.clone()),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(grown.capacity_bytes, size + 128 * MIB);
    assert!(fs_total(&mut c, &k.volume_id, &pk.target).await > before + 100 * MIB);

    // A thin volume with snapshots can be expanded...
    c.node
        .node_expand_volume(csi::NodeExpandVolumeRequest {
            volume_id: a.volume_id.clone(),
            volume_path: pa.target.to_string_lossy().into(),
            capacity_range: Some(csi::CapacityRange {
                required_bytes: size + 32 * MIB,
                limit_bytes: 0,
            }),
            staging_target_path: pa.staging.to_string_lossy().into(),
            volume_capability: Some(cap.clone()),
            ..Default::default()
        })
        .await
        .unwrap();
    // ...and deleted: its snapshot and its clone are independent of it.
    unpublish_unstage(&mut c, &a.volume_id, &pa).await;
    delete_volume(&mut c, &a.volume_id).await.unwrap();
    assert!(!vg.lv_names().contains(&a.volume_id));
    let listed = list_snapshots(&mut c, &a.volume_id).await;
    assert_eq!(listed, vec![s.clone()], "the snapshot outlives its volume");
    let r2 = create(
        &mut c,
        create_from_req(
            "pvc-thin-r2",
            size,
            cap.clone(),
            from_snapshot(&s.snapshot_id),
        ),
    )
    .await;
    let pr2 = paths(work.path(), "r2");
    stage_publish(&mut c, &r2.volume_id, &pr2, &cap).await;
    assert_eq!(
        sha(&std::fs::read(pr2.target.join("a.bin")).unwrap()),
        sha(&first)
    );
    assert_eq!(
        sha(&std::fs::read(pk.target.join("a.bin")).unwrap()),
        sha(&second)
    );

    // The snapshot goes while its restores live on; deleting it twice is fine.
    delete_snapshot(&mut c, &s.snapshot_id).await;
    delete_snapshot(&mut c, &s.snapshot_id).await;
    assert!(list_snapshots(&mut c, "").await.is_empty());
    assert_eq!(
        sha(&std::fs::read(pr.target.join("a.bin")).unwrap()),
        sha(&first)
    );
    for (id, p) in [
        (&r.volume_id, &pr),
        (&r2.volume_id, &pr2),
        (&k.volume_id, &pk),
    ] {
        unpublish_unstage(&mut c, id, p).await;
        delete_volume(&mut c, id).await.unwrap();
    }
    let left: Vec<String> = vg.lv_names().into_iter().filter(|n| n != "pool0").collect();
    assert!(left.is_empty(), "{left:?}");
}

#[cfg(feature = "lvm2cmd")]
#[tokio::test]
async fn thin_ext4_snapshot_restore_clone_lvm2cmd() {
    thin_snapshots("lvm2cmd", "ext4").await;
}

#[tokio::test]
async fn thin_xfs_snapshot_restore_clone_cli() {
    // Also: an XFS restore mounts beside its origin (same filesystem UUID).
    thin_snapshots("cli", "xfs").await;
}

/// Thick, raw block: COW snapshot with its COW size from the class
/// parameter, restore and clone by copying, the refusals LVM imposes on a
/// COW origin, listing with pages and filters.
async fn thick_snapshots(backend: &str) {
    let vg = TestVg::new(1024);
    vg.create_thin_pool("pool0", 64);
    let node = NodeProc::start(&config_both(&vg.name, backend)).await;
    let mut c = node.clients().await;
    let cap = block_cap();
    let size = 64 * MIB;
    let a = create(
        &mut c,
        with_class(create_req("pvc-thick-a", size, cap.clone()), "fast"),
    )
    .await;
    let dev_a = format!("/dev/{}/{}", vg.name, a.volume_id);
    write_at(&dev_a, 0, &payload(8 << 20, 3));
    write_at(&dev_a, 40 << 20, &payload(1 << 20, 4));
    let at_snapshot = sha(&read_range(&dev_a, 0, size as u64));

    let s = snapshot(
        &mut c,
        snapshot_req(
            "snapshot-thick-1",
            &a.volume_id,
            &[("strata.io/cow-size", "50%")],
        ),
    )
    .await;
    assert_eq!((s.size_bytes, s.ready_to_use), (size, true));
    assert_eq!(
        vg.lv_size(&s.snapshot_id),
        32 << 20,
        "COW space is 50% of the origin"
    );
    assert!(vg.lv_field(&s.snapshot_id, "lv_attr").starts_with("sr"));
    let (code, msg) = status_of(
        c.controller
            .create_snapshot(snapshot_req("snapshot-thick-1", "pvc-other", &[]))
            .await,
    );
    assert_eq!(code, Code::AlreadyExists, "{msg}");

    // Write more after the snapshot.
    write_at(&dev_a, 0, &payload(8 << 20, 5));
    write_at(&dev_a, 60 << 20, &payload(1 << 20, 6));
    let now = sha(&read_range(&dev_a, 0, size as u64));
    assert_ne!(now, at_snapshot);

    // Refusals: smaller than the source, another class, another node.
    let small = with_class(
        create_from_req(
            "pvc-thick-small",
            32 * MIB,
            cap.clone(),
            from_snapshot(&s.snapshot_id),
        ),
        "fast",
    );
    let mut small = small;
    small.capacity_range = Some(csi::CapacityRange {
        required_bytes: 32 * MIB,
        limit_bytes: 32 * MIB,
    });
    assert_eq!(
        status_of(c.controller.create_volume(small).await).0,
        Code::OutOfRange
    );
    let other_class = with_class(
        create_from_req(
            "pvc-thick-x",
            size,
            cap.clone(),
            from_snapshot(&s.snapshot_id),
        ),
        "thin",
    );
    let (code, msg) = status_of(c.controller.create_volume(other_class).await);
    assert_eq!(code, Code::InvalidArgument, "{msg}");
    assert!(msg.contains("within the class of their source"), "{msg}");
    let mut elsewhere = with_class(
        create_from_req(
            "pvc-thick-y",
            size,
            cap.clone(),
            from_snapshot(&s.snapshot_id),
        ),
        "fast",
    );
    elsewhere.accessibility_requirements = Some(csi::TopologyRequirement {
        requisite: vec![csi::Topology {
            segments: [(
                "topology.strata.io/node".to_owned(),
                "edge-node-9".to_owned(),
            )]
            .into(),
        }],
        preferred: vec![],
    });
    let (code, msg) = status_of(c.controller.create_volume(elsewhere).await);
    assert_eq!(code, Code::ResourceExhausted, "{msg}");
    assert!(msg.contains("stay on the node"), "{msg}");
    let (code, msg) = status_of(
        c.controller
            .create_volume(with_class(
                create_from_req(
                    "pvc-thick-z",
                    size,
                    cap.clone(),
                    from_snapshot("snap-nothere"),
                ),
                "fast",
            ))
            .await,
    );
    assert_eq!(code, Code::NotFound, "{msg}");

    // Restore into a larger volume: the snapshot's bytes, then zeros.
    let r = create(
        &mut c,
        with_class(
            create_from_req(
                "pvc-thick-r",
                size + 32 * MIB,
                cap.clone(),
                from_snapshot(&s.snapshot_id),
            ),
            "fast",
        ),
    )
    .await;
    assert_eq!(r.capacity_bytes, size + 32 * MIB);
    assert_eq!(r.content_source, Some(from_snapshot(&s.snapshot_id)));
    let dev_r = format!("/dev/{}/{}", vg.name, r.volume_id);
    assert_eq!(sha(&read_range(&dev_r, 0, size as u64)), at_snapshot);
    assert!(
        read_range(&dev_r, size as u64, 32 << 20)
            .iter()
            .all(|b| *b == 0)
    );
    assert!(
        !vg.lv_tags(&r.volume_id)
            .contains(&"strata.io/filling".to_string())
    );

    // Clone the live volume: the bytes of now; no temporary snapshot left behind.
    let k = create(
        &mut c,
        with_class(
            create_from_req("pvc-thick-k", size, cap.clone(), from_volume(&a.volume_id)),
            "fast",
        ),
    )
    .await;
    let dev_k = format!("/dev/{}/{}", vg.name, k.volume_id);
    assert_eq!(sha(&read_range(&dev_k, 0, size as u64)), now);
    assert!(
        !vg.lv_names().iter().any(|n| n.ends_with(".src")),
        "{:?}",
        vg.lv_names()
    );
    // Expand the clone.
    let grown = c
        .node
        .node_expand_volume(csi::NodeExpandVolumeRequest {
            volume_id: k.volume_id.clone(),
            volume_path: "/unused".into(),
            capacity_range: Some(csi::CapacityRange {
                required_bytes: size + 64 * MIB,
                limit_bytes: 0,
            }),
            volume_capability: Some(cap.clone()),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(grown.capacity_bytes, size + 64 * MIB);
    assert_eq!(sha(&read_range(&dev_k, 0, size as u64)), now);

    // Pages and filters: three snapshots of `a`.
    for n in ["snapshot-thick-2", "snapshot-thick-3"] {
        snapshot(
            &mut c,
            snapshot_req(n, &a.volume_id, &[("strata.io/cow-size", "8Mi")]),
        )
        .await;
    }
    assert_eq!(vg.lv_size("snap-thick-2"), 8 << 20);
    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let page = c
            .controller
            .list_snapshots(csi::ListSnapshotsRequest {
                max_entries: 2,
                starting_token: token.clone(),
                source_volume_id: a.volume_id.clone(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert!(page.entries.len() <= 2);
        seen.extend(
            page.entries
                .into_iter()
                .map(|e| e.snapshot.unwrap().snapshot_id),
        );
        if page.next_token.is_empty() {
            break;
        }
        token = page.next_token;
    }
    assert_eq!(seen, ["snap-thick-1", "snap-thick-2", "snap-thick-3"]);
    let one = c
        .controller
        .list_snapshots(csi::ListSnapshotsRequest {
            snapshot_id: "snap-thick-2".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(one.entries.len(), 1);
    assert!(list_snapshots(&mut c, "pvc-none").await.is_empty());
    let got = c
        .controller
        .get_snapshot(csi::GetSnapshotRequest {
            snapshot_id: s.snapshot_id.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .snapshot
        .unwrap();
    assert_eq!(got, s);

    // A thick origin with snapshots: not deleted (LVM would take its
    // snapshots along), not grown (LVM grows a COW origin only inactive).
    let (code, msg) = status_of(delete_volume(&mut c, &a.volume_id).await);
    assert_eq!(code, Code::FailedPrecondition, "{msg}");
    assert!(msg.contains("snap-thick-1"), "{msg}");
    let (code, msg) = status_of(
        c.node
            .node_expand_volume(csi::NodeExpandVolumeRequest {
                volume_id: a.volume_id.clone(),
                volume_path: "/unused".into(),
                capacity_range: Some(csi::CapacityRange {
                    required_bytes: size + 4 * MIB,
                    limit_bytes: 0,
                }),
                volume_capability: Some(cap.clone()),
                ..Default::default()
            })
            .await,
    );
    assert_eq!(code, Code::FailedPrecondition, "{msg}");
    assert_eq!(
        sha(&read_range(&dev_a, 0, size as u64)),
        now,
        "refusals changed nothing"
    );

    // Restores and clones are independent of their source: delete the
    // restore before the snapshot, the snapshots before the origin, the
    // clone after it.
    delete_volume(&mut c, &r.volume_id).await.unwrap();
    for id in ["snap-thick-1", "snap-thick-2", "snap-thick-3"] {
        delete_snapshot(&mut c, id).await;
    }
    delete_snapshot(&mut c, "snap-thick-1").await;
    delete_volume(&mut c, &a.volume_id).await.unwrap();
    assert_eq!(sha(&read_range(&dev_k, 0, size as u64)), now);
    delete_volume(&mut c, &k.volume_id).await.unwrap();
    let left: Vec<String> = vg.lv_names().into_iter().filter(|n| n != "pool0").collect();
    assert!(left.is_empty(), "{left:?}");
}

#[tokio::test]
async fn thick_block_snapshot_restore_clone_cli() {
    thick_snapshots("cli").await;
}
