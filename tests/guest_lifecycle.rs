//! Real-kernel group: the whole life of a volume through the CSI gRPC API over
//! the real socket, with real device-mapper, mkfs and mounts. Runs inside the
//! QEMU guest (`scripts/real-kernel tests`); on a host without device-mapper it
//! fails, which is why the host group filters `guest_*` binaries out.

mod common;

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

use common::*;
use sha2::{Digest, Sha256};
use strata_proto::csi::v1 as csi;
use tonic::Code;

fn payload(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

fn sha(data: &[u8]) -> Vec<u8> {
    Sha256::digest(data).to_vec()
}

fn is_mounted(p: &Path) -> bool {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .any(|l| l.split(' ').nth(4) == Some(p.to_str().unwrap()))
}

fn blkid_uuid(dev: &str) -> String {
    sh("blkid", &["-p", "-o", "value", "-s", "UUID", dev])
        .trim()
        .to_owned()
}

async fn stats(c: &mut Clients, id: &str, path: &Path) -> csi::NodeGetVolumeStatsResponse {
    c.node
        .node_get_volume_stats(csi::NodeGetVolumeStatsRequest {
            volume_id: id.into(),
            volume_path: path.to_string_lossy().into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
}

/// create → stage → publish → write → expand online → unpublish → unstage →
/// stage again (no reformat, data intact) → delete, for one access type.
async fn lifecycle(backend: &str, fs: Option<&str>) {
    let vg = TestVg::new(1024);
    let node = NodeProc::start(&config(&thick_class(&vg.name, 0), backend)).await;
    let mut c = node.clients().await;
    let work =
        tempfile::tempdir_in(std::env::var("STRATA_SCRATCH").unwrap_or("/tmp".into())).unwrap();
    let cap = match fs {
        Some(f) => mount_cap(f),
        None => block_cap(),
    };
    let size = if fs == Some("xfs") {
        320 * MIB
    } else {
        64 * MIB
    };
    let name = format!("pvc-{}-{}", backend, fs.unwrap_or("block"));
    let vol = c
        .controller
        .create_volume(create_req(&name, size, cap.clone()))
        .await
        .unwrap()
        .into_inner()
        .volume
        .unwrap();
    assert_eq!(vol.capacity_bytes, size);
    let id = vol.volume_id;
    let dev = format!("/dev/{}/{}", vg.name, id);
    let p = paths(work.path(), &name);
    if fs.is_none() {
        std::fs::create_dir_all(p.target.parent().unwrap()).unwrap();
    }

    c.node
        .node_stage_volume(stage_req(&id, &p, &cap))
        .await
        .unwrap();
    // Staging twice is idempotent.
    c.node
        .node_stage_volume(stage_req(&id, &p, &cap))
        .await
        .unwrap();
    c.node
        .node_publish_volume(publish_req(&id, &p, &cap, false))
        .await
        .unwrap();
    c.node
        .node_publish_volume(publish_req(&id, &p, &cap, false))
        .await
        .unwrap();
    assert!(is_mounted(&p.target), "target must be a mount point");

    let data = payload(3 << 20, 7);
    let uuid_before = fs.map(|_| blkid_uuid(&dev));
    match fs {
        Some(_) => {
            assert!(is_mounted(&p.staging));
            std::fs::write(p.target.join("data.bin"), &data).unwrap();
        }
        None => {
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .open(&p.target)
                .unwrap();
            f.write_all(&data).unwrap();
            f.sync_all().unwrap();
        }
    }
    sh("sync", &[]);

    // Delete while staged and published: refused, nothing lost.
    let (code, msg) = {
        let e = c
            .controller
            .delete_volume(csi::DeleteVolumeRequest {
                volume_id: id.clone(),
                ..Default::default()
            })
            .await
            .unwrap_err();
        (e.code(), e.message().to_owned())
    };
    if fs.is_some() {
        assert_eq!(code, Code::FailedPrecondition, "{msg}");
    } else {
        // A block bind mount does not open the device, but the mount table still shows it.
        assert_eq!(code, Code::FailedPrecondition, "{msg}");
    }
    assert!(vg.lv_names().contains(&id));

    // Expand online by 64 MiB while published.
    let before = stats(&mut c, &id, &p.target).await;
    assert!(
        !before.volume_condition.as_ref().unwrap().abnormal,
        "{before:?}"
    );
    let new_size = size + 64 * MIB;
    let exp = c
        .node
        .node_expand_volume(csi::NodeExpandVolumeRequest {
            volume_id: id.clone(),
            volume_path: p.target.to_string_lossy().into(),
            capacity_range: Some(csi::CapacityRange {
                required_bytes: new_size,
                limit_bytes: 0,
            }),
            staging_target_path: p.staging.to_string_lossy().into(),
            volume_capability: Some(cap.clone()),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(exp.capacity_bytes, new_size);
    assert_eq!(vg.lv_size(&id), new_size as u64);
    let after = stats(&mut c, &id, &p.target).await;
    let total = |s: &csi::NodeGetVolumeStatsResponse| s.usage[0].total;
    match fs {
        Some(_) => {
            assert!(
                total(&after) > total(&before) + 50 * MIB,
                "filesystem did not grow: {before:?} -> {after:?}"
            );
            assert_eq!(after.usage.len(), 2, "bytes and inodes");
            assert!(after.usage[0].used > 3 * MIB, "{after:?}");
        }
        None => assert_eq!(total(&after), new_size),
    }

    // Unpublish, unstage, stage again: the same filesystem, the same data.
    c.node
        .node_unpublish_volume(csi::NodeUnpublishVolumeRequest {
            volume_id: id.clone(),
            target_path: p.target.to_string_lossy().into(),
        })
        .await
        .unwrap();
    assert!(!p.target.exists(), "unpublish removes the target");
    c.node
        .node_unstage_volume(csi::NodeUnstageVolumeRequest {
            volume_id: id.clone(),
            staging_target_path: p.staging.to_string_lossy().into(),
        })
        .await
        .unwrap();
    assert!(!is_mounted(&p.staging));
    c.node
        .node_stage_volume(stage_req(&id, &p, &cap))
        .await
        .unwrap();
    if let Some(u) = &uuid_before {
        assert_eq!(&blkid_uuid(&dev), u, "the volume was reformatted");
    }
    c.node
        .node_publish_volume(publish_req(&id, &p, &cap, true))
        .await
        .unwrap();
    let read_back = match fs {
        Some(_) => {
            // Read-only publish: writes fail.
            assert!(
                std::fs::write(p.target.join("new.bin"), b"x").is_err(),
                "read-only publish accepted a write"
            );
            std::fs::read(p.target.join("data.bin")).unwrap()
        }
        None => {
            let mut f = std::fs::File::open(&p.target).unwrap();
            f.seek(SeekFrom::Start(0)).unwrap();
            let mut buf = vec![0; data.len()];
            f.read_exact(&mut buf).unwrap();
            buf
        }
    };
    assert_eq!(
        sha(&read_back),
        sha(&data),
        "data changed across expand and restage"
    );
    unpublish_unstage(&mut c, &id, &p).await;
    c.controller
        .delete_volume(csi::DeleteVolumeRequest {
            volume_id: id.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(!vg.lv_names().contains(&id));
}

#[tokio::test]
async fn ext4_lifecycle_cli() {
    lifecycle("cli", Some("ext4")).await;
}

#[tokio::test]
async fn xfs_lifecycle_cli() {
    lifecycle("cli", Some("xfs")).await;
}

#[tokio::test]
async fn block_lifecycle_cli() {
    lifecycle("cli", None).await;
}

#[cfg(feature = "lvm2cmd")]
#[tokio::test]
async fn ext4_lifecycle_lvm2cmd() {
    lifecycle("lvm2cmd", Some("ext4")).await;
}

#[cfg(feature = "lvm2cmd")]
#[tokio::test]
async fn xfs_lifecycle_lvm2cmd() {
    lifecycle("lvm2cmd", Some("xfs")).await;
}

#[cfg(feature = "lvm2cmd")]
#[tokio::test]
async fn block_lifecycle_lvm2cmd() {
    lifecycle("lvm2cmd", None).await;
}

/// The failure cases with real devices: VG full, unknown class, bad capacity,
/// stage of a missing volume, a failed mount that leaves nothing behind, and a
/// volume holding a foreign signature that is never formatted.
async fn failures(backend: &str) {
    let vg = TestVg::new(256);
    let node = NodeProc::start(&config(&thick_class(&vg.name, 0), backend)).await;
    let mut c = node.clients().await;
    let work =
        tempfile::tempdir_in(std::env::var("STRATA_SCRATCH").unwrap_or("/tmp".into())).unwrap();

    let full = c
        .controller
        .create_volume(create_req("pvc-full", 300 * MIB, mount_cap("ext4")))
        .await
        .unwrap_err();
    assert_eq!(full.code(), Code::ResourceExhausted, "{}", full.message());
    let mut unknown = create_req("pvc-u", 32 * MIB, mount_cap("ext4"));
    unknown
        .parameters
        .insert("strata.io/device-class".into(), "gold".into());
    assert_eq!(
        c.controller
            .create_volume(unknown)
            .await
            .unwrap_err()
            .code(),
        Code::InvalidArgument
    );
    let mut bad = create_req("pvc-b", 32 * MIB, mount_cap("ext4"));
    bad.capacity_range = Some(csi::CapacityRange {
        required_bytes: 64 * MIB,
        limit_bytes: 32 * MIB,
    });
    assert_eq!(
        c.controller.create_volume(bad).await.unwrap_err().code(),
        Code::InvalidArgument
    );
    let p = paths(work.path(), "missing");
    assert_eq!(
        c.node
            .node_stage_volume(stage_req("pvc-nothere", &p, &mount_cap("ext4")))
            .await
            .unwrap_err()
            .code(),
        Code::NotFound
    );

    // A mount that fails (bad option) leaves no mount and no half-staged state.
    let id = c
        .controller
        .create_volume(create_req("pvc-m", 32 * MIB, mount_cap("ext4")))
        .await
        .unwrap()
        .into_inner()
        .volume
        .unwrap()
        .volume_id;
    let mut cap = mount_cap("ext4");
    if let Some(csi::volume_capability::AccessType::Mount(m)) = cap.access_type.as_mut() {
        m.mount_flags = vec!["no_such_option_strata".into()];
    }
    let p = paths(work.path(), "m");
    let e = c
        .node
        .node_stage_volume(stage_req(&id, &p, &cap))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Internal, "{}", e.message());
    assert!(e.message().contains("mount"), "{}", e.message());
    assert!(!is_mounted(&p.staging));
    c.node
        .node_stage_volume(stage_req(&id, &p, &mount_cap("ext4")))
        .await
        .unwrap();
    assert!(is_mounted(&p.staging));
    // Asking for xfs on a volume that already holds ext4: refused, not reformatted.
    let p2 = paths(work.path(), "m2");
    let e = c
        .node
        .node_stage_volume(stage_req(&id, &p2, &mount_cap("xfs")))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{}", e.message());
    c.node
        .node_unstage_volume(csi::NodeUnstageVolumeRequest {
            volume_id: id.clone(),
            staging_target_path: p.staging.to_string_lossy().into(),
        })
        .await
        .unwrap();

    // A volume that holds something strata did not write is never formatted.
    let foreign = c
        .controller
        .create_volume(create_req("pvc-f", 32 * MIB, block_cap()))
        .await
        .unwrap()
        .into_inner()
        .volume
        .unwrap()
        .volume_id;
    let fdev = format!("/dev/{}/{}", vg.name, foreign);
    sh("mke2fs", &["-q", "-t", "ext2", &fdev]);
    let p3 = paths(work.path(), "f");
    let e = c
        .node
        .node_stage_volume(stage_req(&foreign, &p3, &mount_cap("ext4")))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{}", e.message());
    assert!(
        e.message().contains("\"ext2\" signature"),
        "{}",
        e.message()
    );
}

#[tokio::test]
async fn failures_cli() {
    failures("cli").await;
}

#[cfg(feature = "lvm2cmd")]
#[tokio::test]
async fn failures_lvm2cmd() {
    failures("lvm2cmd").await;
}
