//! Real-kernel group: orphans with real device-mapper and real mounts. A
//! running `strata node` reports an orphan LV, a mount of an LV that is gone
//! and a leftover kubelet staging directory; `strata node gc` (dry run)
//! removes nothing; `gc --apply` removes them, keeps an orphan LV that is
//! still mounted, and never touches a volume that has a PersistentVolume.
//! `--persistent-volumes-file` stands in for the Kubernetes API server.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use sha2::{Digest, Sha256};
use strata_proto::csi::v1 as csi;

fn is_mounted(p: &Path) -> bool {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .any(|l| l.split(' ').nth(4) == Some(p.to_str().unwrap()))
}

/// A kubelet volume directory of driver strata.io, as the kubelet makes it
/// before it stages: `vol_data.json` and an empty mount directory.
fn kubelet_volume_dir(dir: &Path, handle: &str, mount_dir: &str) -> PathBuf {
    std::fs::create_dir_all(dir.join(mount_dir)).unwrap();
    std::fs::write(
        dir.join("vol_data.json"),
        format!(r#"{{"driverName":"strata.io","volumeHandle":"{handle}"}}"#),
    )
    .unwrap();
    dir.join(mount_dir)
}

fn gc(cfg: &Path, pvs: &Path, kubelet: &Path, apply: bool) -> (bool, String) {
    let mut cmd = Command::new(strata_bin());
    cmd.args(["node", "gc", "--config"])
        .arg(cfg)
        .arg("--persistent-volumes-file")
        .arg(pvs)
        .arg("--kubelet-dir")
        .arg(kubelet)
        .args(["--orphan-settle", "1s"]);
    if apply {
        cmd.arg("--apply");
    }
    let out = cmd.env("RUST_LOG", "warn").output().unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

async fn stage_and_publish(c: &mut Clients, id: &str, staging: &Path, target: Option<&Path>) {
    let cap = mount_cap("ext4");
    c.node
        .node_stage_volume(csi::NodeStageVolumeRequest {
            volume_id: id.into(),
            staging_target_path: staging.to_string_lossy().into(),
            volume_capability: Some(cap.clone()),
            ..Default::default()
        })
        .await
        .unwrap();
    if let Some(target) = target {
        c.node
            .node_publish_volume(csi::NodePublishVolumeRequest {
                volume_id: id.into(),
                staging_target_path: staging.to_string_lossy().into(),
                target_path: target.to_string_lossy().into(),
                volume_capability: Some(cap),
                ..Default::default()
            })
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn orphans_are_reported_and_removed_only_by_gc_apply() {
    let vg = TestVg::new(512);
    let work =
        tempfile::tempdir_in(std::env::var("STRATA_SCRATCH").unwrap_or("/tmp".into())).unwrap();
    let kubelet = work.path().join("kubelet");
    // The node resolves --kubelet-dir at start: it must exist, as on a node.
    std::fs::create_dir_all(&kubelet).unwrap();
    let csi_dir = kubelet.join("plugins/kubernetes.io/csi/strata.io");
    let pvs = work.path().join("pvs");
    std::fs::write(&pvs, "pvc-owned\n").unwrap();
    let cfg_text = config(&thick_class(&vg.name, 0), "cli");
    let cfg = work.path().join("node.toml");
    std::fs::write(&cfg, &cfg_text).unwrap();
    let node = NodeProc::start_with(
        &cfg_text,
        &[
            "--orphan-scan-interval",
            "1s",
            "--orphan-settle",
            "1s",
            "--persistent-volumes-file",
            pvs.to_str().unwrap(),
            "--kubelet-dir",
            kubelet.to_str().unwrap(),
        ],
    )
    .await;
    let mut c = node.clients().await;
    for name in ["pvc-owned", "pvc-lost", "pvc-lost-mounted"] {
        c.controller
            .create_volume(create_req(name, 32 * MIB, mount_cap("ext4")))
            .await
            .unwrap();
    }
    // pvc-owned: staged and published where the kubelet would, with data.
    let owned_staging = kubelet_volume_dir(&csi_dir.join("h-owned"), "pvc-owned", "globalmount");
    let owned_target = kubelet_volume_dir(
        &kubelet.join("pods/uid-1/volumes/kubernetes.io~csi/pvc-owned"),
        "pvc-owned",
        "mount",
    );
    stage_and_publish(&mut c, "pvc-owned", &owned_staging, Some(&owned_target)).await;
    let data: Vec<u8> = (0..1_000_000u32).map(|i| (i * 7) as u8).collect();
    std::fs::write(owned_target.join("data"), &data).unwrap();
    sh("sync", &[]);
    // pvc-lost-mounted: no PersistentVolume, but staged (in use).
    let lost_staging =
        kubelet_volume_dir(&csi_dir.join("h-lost"), "pvc-lost-mounted", "globalmount");
    stage_and_publish(&mut c, "pvc-lost-mounted", &lost_staging, None).await;
    // A device of the VG that LVM no longer knows (as after its LV went away
    // under a mount), mounted.
    let ghost_img = work.path().join("ghost.img");
    std::fs::File::create(&ghost_img)
        .unwrap()
        .set_len(32 << 20)
        .unwrap();
    let ghost_loop = sh("losetup", &["-f", "--show", ghost_img.to_str().unwrap()])
        .trim()
        .to_owned();
    let ghost_dm = format!("{}-ghost", vg.name.replace('-', "--"));
    sh(
        "dmsetup",
        &[
            "create",
            // no udev in the guest: dmsetup makes the node itself
            "--noudevrules",
            "--noudevsync",
            &ghost_dm,
            "--table",
            &format!("0 65536 linear {ghost_loop} 0"),
        ],
    );
    sh("dmsetup", &["mknodes", &ghost_dm]);
    let ghost_dev = format!("/dev/mapper/{ghost_dm}");
    sh("mkfs.ext4", &["-q", &ghost_dev]);
    let ghost_mnt = work.path().join("ghost-mnt");
    std::fs::create_dir(&ghost_mnt).unwrap();
    sh("mount", &[&ghost_dev, ghost_mnt.to_str().unwrap()]);
    // A staging directory the kubelet left for a volume that is not here.
    let leftover = csi_dir.join("h-gone");
    kubelet_volume_dir(&leftover, "pvc-gone", "globalmount");

    // The node reports each one, once.
    let deadline = Instant::now() + Duration::from_secs(60);
    let wanted = ["pvc-lost\"", "pvc-lost-mounted", "ghost", "pvc-gone"];
    loop {
        let log = node.log_text();
        if wanted
            .iter()
            .all(|w| log.lines().any(|l| l.contains("orphan:") && l.contains(w)))
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "orphans not all reported:\n{log}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let log = node.log_text();
    assert!(
        !log.lines()
            .any(|l| l.contains("orphan:") && l.contains("pvc-owned")),
        "{log}"
    );

    // Dry run: listed, nothing removed.
    let (ok, out) = gc(&cfg, &pvs, &kubelet, false);
    assert!(ok, "{out}");
    for w in [
        format!("{}/pvc-lost ", vg.name),
        format!("{}/pvc-lost-mounted", vg.name),
        format!("{}/ghost", vg.name),
        "pvc-gone".to_owned(),
        "dry run: nothing removed".to_owned(),
    ] {
        assert!(out.contains(&w), "{w} in\n{out}");
    }
    assert!(!out.contains("pvc-owned"), "{out}");
    let mut lvs = vg.lv_names();
    lvs.sort();
    assert_eq!(lvs, ["pvc-lost", "pvc-lost-mounted", "pvc-owned"]);
    assert!(is_mounted(&ghost_mnt));
    assert!(leftover.join("globalmount").is_dir());

    // --apply: removed, except the orphan that is still mounted.
    let (ok, out) = gc(&cfg, &pvs, &kubelet, true);
    assert!(ok, "{out}");
    for w in [
        format!("removed volume {}/pvc-lost", vg.name),
        format!(
            "kept volume {}/pvc-lost-mounted: mounted at {}",
            vg.name,
            lost_staging.display()
        ),
        format!("removed mount {}/ghost at {}", vg.name, ghost_mnt.display()),
        format!("removed staging_dir pvc-gone at {}", leftover.display()),
    ] {
        assert!(out.contains(&w), "{w} in\n{out}");
    }
    let mut lvs = vg.lv_names();
    lvs.sort();
    assert_eq!(lvs, ["pvc-lost-mounted", "pvc-owned"]);
    assert!(!is_mounted(&ghost_mnt));
    assert!(!leftover.exists());
    // The volume with a PersistentVolume: untouched.
    assert!(is_mounted(&owned_staging) && is_mounted(&owned_target));
    assert_eq!(
        Sha256::digest(std::fs::read(owned_target.join("data")).unwrap()),
        Sha256::digest(&data)
    );
    assert!(is_mounted(&lost_staging));

    // Clean up through CSI, as the kubelet and the provisioner would.
    c.node
        .node_unpublish_volume(csi::NodeUnpublishVolumeRequest {
            volume_id: "pvc-owned".into(),
            target_path: owned_target.to_string_lossy().into(),
        })
        .await
        .unwrap();
    for (id, staging) in [
        ("pvc-owned", &owned_staging),
        ("pvc-lost-mounted", &lost_staging),
    ] {
        c.node
            .node_unstage_volume(csi::NodeUnstageVolumeRequest {
                volume_id: id.into(),
                staging_target_path: staging.to_string_lossy().into(),
            })
            .await
            .unwrap();
        c.controller
            .delete_volume(csi::DeleteVolumeRequest {
                volume_id: id.into(),
                ..Default::default()
            })
            .await
            .unwrap();
    }
    sh(
        "dmsetup",
        &["remove", "--noudevrules", "--noudevsync", &ghost_dm],
    );
    sh("losetup", &["-d", &ghost_loop]);
}
