//! Real-kernel group: thin pools that cannot overfill. A pool pushed past its
//! danger mark (a snapshot holding old blocks while its origin is
//! overwritten) refuses new volumes, snapshots and growth with
//! RESOURCE_EXHAUSTED naming the pool, its volumes report an abnormal
//! condition, no data is lost, and it all clears once the pool is below the
//! mark again. Then auto-extension: a pool grows from free VG space for a
//! request, never past its configured bound.

mod common;

use std::io::{Read, Seek, SeekFrom, Write};

use common::*;
use sha2::{Digest, Sha256};
use strata_proto::csi::v1 as csi;
use tonic::Code;

fn payload(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(29).wrapping_add(seed) ^ ((i >> 13) as u8))
        .collect()
}

fn sha(data: &[u8]) -> Vec<u8> {
    Sha256::digest(data).to_vec()
}

fn write_at(dev: &str, offset: u64, data: &[u8]) {
    let mut f = std::fs::OpenOptions::new().write(true).open(dev).unwrap();
    f.seek(SeekFrom::Start(offset)).unwrap();
    f.write_all(data).unwrap();
    f.sync_all().unwrap();
}

fn read_all(dev: &str, len: u64) -> Vec<u8> {
    let mut f = std::fs::File::open(dev).unwrap();
    let mut buf = vec![0; len as usize];
    f.read_exact(&mut buf).unwrap();
    buf
}

async fn condition(c: &mut Clients, id: &str) -> csi::VolumeCondition {
    c.controller
        .controller_get_volume(csi::ControllerGetVolumeRequest {
            volume_id: id.into(),
        })
        .await
        .unwrap()
        .into_inner()
        .status
        .unwrap()
        .volume_condition
        .unwrap()
}

async fn capacity(c: &mut Clients) -> i64 {
    c.controller
        .get_capacity(csi::GetCapacityRequest::default())
        .await
        .unwrap()
        .into_inner()
        .available_capacity
}

fn data_percent(vg: &TestVg) -> f64 {
    vg.lv_field("pool0", "data_percent").parse().unwrap()
}

#[tokio::test]
async fn a_pool_past_its_mark_refuses_and_warns_and_loses_nothing() {
    let vg = TestVg::new(512);
    vg.create_thin_pool("pool0", 64);
    let classes = thin_class(&vg.name, "pool0", "pool_danger_percent = 80");
    let node = NodeProc::start(&config(&classes, "cli")).await;
    let mut c = node.clients().await;

    // 64 MiB pool, mark 80%: at most 51.2 MiB may be promised to one volume.
    assert_eq!(
        capacity(&mut c).await,
        48 * MIB,
        "51.2 MiB, rounded down to extents"
    );
    let (code, msg) = status_of(
        c.controller
            .create_volume(create_req("pvc-too-big", 56 * MIB, block_cap()))
            .await,
    );
    assert_eq!(code, Code::ResourceExhausted, "{msg}");
    assert!(
        msg.contains(&format!("thin pool {}/pool0", vg.name)),
        "{msg}"
    );

    let v = c
        .controller
        .create_volume(create_req("pvc-full", 40 * MIB, block_cap()))
        .await
        .unwrap()
        .into_inner()
        .volume
        .unwrap();
    let dev = format!("/dev/{}/{}", vg.name, v.volume_id);
    let first = payload(40 << 20, 1);
    write_at(&dev, 0, &first);
    assert!(!condition(&mut c, &v.volume_id).await.abnormal);
    let snap = c
        .controller
        .create_snapshot(snapshot_req("snapshot-keep", &v.volume_id, &[]))
        .await
        .unwrap()
        .into_inner()
        .snapshot
        .unwrap();
    // Overwrite 12 MiB: the snapshot keeps the old blocks, the pool passes 80%.
    let second = payload(12 << 20, 2);
    write_at(&dev, 0, &second);
    let pct = data_percent(&vg);
    assert!(pct > 80.0 && pct < 100.0, "pool at {pct}%");

    // Refused: a new volume, a snapshot, growth; each names the pool and its usage.
    let (code, msg) = status_of(
        c.controller
            .create_volume(create_req("pvc-more", 4 * MIB, block_cap()))
            .await,
    );
    assert_eq!(code, Code::ResourceExhausted, "{msg}");
    assert!(
        msg.contains(&format!("thin pool {}/pool0 (data ", vg.name))
            && msg.contains("danger mark 80%")
            && msg.contains("past its danger mark"),
        "{msg}"
    );
    let (code, msg) = status_of(
        c.controller
            .create_snapshot(snapshot_req("snapshot-more", &v.volume_id, &[]))
            .await,
    );
    assert_eq!(code, Code::ResourceExhausted, "{msg}");
    let (code, msg) = status_of(
        c.node
            .node_expand_volume(csi::NodeExpandVolumeRequest {
                volume_id: v.volume_id.clone(),
                volume_path: "/unused".into(),
                capacity_range: Some(csi::CapacityRange {
                    required_bytes: 44 * MIB,
                    limit_bytes: 0,
                }),
                volume_capability: Some(block_cap()),
                ..Default::default()
            })
            .await,
    );
    // Growth the node cannot give: OUT_OF_RANGE, as the CSI spec says for
    // NodeExpandVolume, naming the sizes, the pool and what to do.
    assert_eq!(code, Code::OutOfRange, "{msg}");
    assert!(
        msg.starts_with(&format!(
            "capacity_range: volume {} cannot grow to {} bytes (it has {}, ",
            v.volume_id,
            44 * MIB,
            40 * MIB
        )) && msg.contains(&format!("thin pool {}/pool0 (data ", vg.name))
            && msg.contains("past its danger mark")
            && msg.contains("a volume cannot shrink"),
        "{msg}"
    );
    assert_eq!(capacity(&mut c).await, 0);

    // The volume reports it: ControllerGetVolume, ListVolumes, NodeGetVolumeStats.
    let cond = condition(&mut c, &v.volume_id).await;
    assert!(
        cond.abnormal && cond.message.contains("past its danger mark"),
        "{cond:?}"
    );
    let listed = c
        .controller
        .list_volumes(csi::ListVolumesRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(
        listed.entries[0]
            .status
            .as_ref()
            .unwrap()
            .volume_condition
            .as_ref()
            .unwrap()
            .abnormal
    );
    let work =
        tempfile::tempdir_in(std::env::var("STRATA_SCRATCH").unwrap_or("/tmp".into())).unwrap();
    let p = paths(work.path(), "full");
    std::fs::create_dir_all(p.target.parent().unwrap()).unwrap();
    c.node
        .node_stage_volume(stage_req(&v.volume_id, &p, &block_cap()))
        .await
        .unwrap();
    c.node
        .node_publish_volume(publish_req(&v.volume_id, &p, &block_cap(), false))
        .await
        .unwrap();
    let stats = c
        .node
        .node_get_volume_stats(csi::NodeGetVolumeStatsRequest {
            volume_id: v.volume_id.clone(),
            volume_path: p.target.to_string_lossy().into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(stats.volume_condition.unwrap().abnormal);
    let log = node.log_text();
    assert_eq!(
        log.matches("is past its danger mark: new volumes").count(),
        1,
        "logged once per crossing: {log}"
    );

    // Nothing lost: the volume holds the new bytes, the snapshot the old ones.
    let mut now = first.clone();
    now[..second.len()].copy_from_slice(&second);
    assert_eq!(sha(&read_all(&dev, 40 << 20)), sha(&now));
    let restored = c
        .controller
        .create_volume(create_from_req(
            "pvc-restored",
            40 * MIB,
            block_cap(),
            from_snapshot(&snap.snapshot_id),
        ))
        .await;
    assert_eq!(
        restored.unwrap_err().code(),
        Code::ResourceExhausted,
        "a restore promises new bytes too"
    );

    // Dropping the snapshot frees its blocks: below the mark, all is well again.
    c.controller
        .delete_snapshot(csi::DeleteSnapshotRequest {
            snapshot_id: snap.snapshot_id.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    // The pool frees the blocks as it commits the deletion.
    for _ in 0..20 {
        if data_percent(&vg) < 80.0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    assert!(data_percent(&vg) < 80.0, "{}", data_percent(&vg));
    assert!(!condition(&mut c, &v.volume_id).await.abnormal);
    c.controller
        .create_volume(create_req("pvc-more", 4 * MIB, block_cap()))
        .await
        .unwrap();
    assert_eq!(sha(&read_all(&dev, 40 << 20)), sha(&now));
    assert!(node.log_text().contains("is below its danger mark again"));
    c.node
        .node_unpublish_volume(csi::NodeUnpublishVolumeRequest {
            volume_id: v.volume_id.clone(),
            target_path: p.target.to_string_lossy().into(),
        })
        .await
        .unwrap();
}

#[tokio::test]
async fn a_pool_grows_from_free_vg_space_within_its_bound() {
    let vg = TestVg::new(1024);
    vg.create_thin_pool("pool0", 64);
    let classes = thin_class(
        &vg.name,
        "pool0",
        "pool_auto_extend_max_bytes = 268435456\noverprovision_ratio = 2.0",
    );
    let node = NodeProc::start(&config(&classes, "cli")).await;
    let mut c = node.clients().await;
    // Capacity counts the growth the bound allows: 90% of 256 MiB.
    assert_eq!(capacity(&mut c).await, 228 * MIB);
    let pool_before = vg.lv_size("pool0");
    assert_eq!(pool_before, 64 << 20);
    c.controller
        .create_volume(create_req("pvc-grow", 100 * MIB, block_cap()))
        .await
        .unwrap();
    let pool_after = vg.lv_size("pool0");
    // 100 MiB must fit below 90%: the pool grows to 112 MiB, no more.
    assert_eq!(pool_after, 112 << 20, "grown just enough, in whole extents");
    assert!(
        node.log_text().contains("grew thin pool"),
        "{}",
        node.log_text()
    );
    // Past the bound: refused, and the message says what bounds it.
    let (code, msg) = status_of(
        c.controller
            .create_volume(create_req("pvc-huge", 300 * MIB, block_cap()))
            .await,
    );
    assert_eq!(code, Code::ResourceExhausted, "{msg}");
    assert!(
        msg.contains("pool_auto_extend_max_bytes 268435456"),
        "{msg}"
    );
    assert_eq!(
        vg.lv_size("pool0"),
        pool_after,
        "a refused request grows nothing"
    );
}
