//! Real-kernel group: `strata node --tiering-dir` tiers the files of the
//! volumes it stages. A PVC's volume is registered under its PV name with
//! its namespace and PVC name from the LV tags, a policy selecting
//! `line-3/*` moves its cold file to the lake, unstage unregisters it (and
//! the unmount is not blocked by the agent), stage registers it again, and a
//! node restarted after its volume was unmounted behind its back forgets it
//! before the agent could work on an empty mount point. Runs inside the QEMU
//! guest (`scripts/real-kernel tests`).

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, SystemTime};

use common::*;

fn volumes(tiering: &Path) -> Vec<serde_json::Value> {
    ctl(tiering, &["volume", "ls"]).unwrap()["volumes"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// Where the kubelet stages CSI volumes, beneath `kubelet` (the agent's
/// own volume root).
fn csi_dir(kubelet: &Path) -> std::path::PathBuf {
    kubelet.join("plugins/kubernetes.io/csi/strata.io")
}

async fn node(vg: &TestVg, tiering: &Path, kubelet: &Path) -> NodeProc {
    let dir = tiering.to_str().unwrap();
    let node = NodeProc::start_with(
        &config(&thick_class(&vg.name, 0), "cli"),
        &[
            "--tiering-dir",
            dir,
            "--kubelet-dir",
            kubelet.to_str().unwrap(),
            "--tick",
            "1h",
            "--settle",
            "0s",
        ],
    )
    .await;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while ctl(tiering, &["status"]).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "the tiering API never answered: {}",
            node.log_text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    node
}

fn is_mounted(p: &Path) -> bool {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .any(|l| l.split(' ').nth(4) == Some(p.to_str().unwrap()))
}

#[tokio::test]
async fn a_staged_pvc_is_tiered_and_let_go_at_unstage() {
    let vg = TestVg::new(512);
    let work =
        tempfile::tempdir_in(std::env::var("STRATA_SCRATCH").unwrap_or("/tmp".into())).unwrap();
    let tiering = work.path().join("tiering");
    let lake = work.path().join("lake");
    // Resolved: the node registers the staging path as it resolves it.
    let kubelet = std::fs::canonicalize(work.path()).unwrap().join("kubelet");
    std::fs::create_dir_all(csi_dir(&kubelet)).unwrap();
    let n = node(&vg, &tiering, &kubelet).await;
    let mut c = n.clients().await;
    let cap = mount_cap("ext4");
    let id = c
        .controller
        .create_volume(create_req("pvc-tiered", 64 * MIB, cap.clone()))
        .await
        .unwrap()
        .into_inner()
        .volume
        .unwrap()
        .volume_id;
    let p = paths(&csi_dir(&kubelet), "pvc-tiered");
    assert!(
        volumes(&tiering).is_empty(),
        "not staged: not a tiering volume"
    );
    c.node
        .node_stage_volume(stage_req(&id, &p, &cap))
        .await
        .unwrap();

    // Registered under its PV name, with the PVC from the LV tags.
    let v = volumes(&tiering);
    assert_eq!(v.len(), 1, "{v:?}");
    assert_eq!(v[0]["id"], id.as_str());
    assert_eq!(v[0]["path"], p.staging.to_str().unwrap());
    assert_eq!(v[0]["labels"]["strata.io/pvc-namespace"], "line-3");
    assert_eq!(v[0]["labels"]["strata.io/pvc"], "data");
    assert_eq!(v[0]["labels"]["strata.io/node"], n.node_id.as_str());

    // A policy for the namespace moves the cold file, keyed by PVC.
    let cold: Vec<u8> = (0..200_000u32).map(|i| (i % 253) as u8).collect();
    std::fs::write(p.staging.join("cold.bin"), &cold).unwrap();
    let old = SystemTime::now() - Duration::from_secs(3 * 86_400);
    std::fs::File::options()
        .write(true)
        .open(p.staging.join("cold.bin"))
        .unwrap()
        .set_modified(old)
        .unwrap();
    std::fs::write(p.staging.join("hot.txt"), b"in use").unwrap();
    let policy = work.path().join("policy.yaml");
    std::fs::write(
        &policy,
        format!(
            "name: line-3-cold\nselector: {{volumes: [\"line-3/*\"]}}\n\
             lake: {{url: \"file://{}\"}}\nkeyTemplate: \"{{namespace}}/{{pvc}}/{{path}}\"\n\
             rules:\n  - name: old\n    modifiedBefore: 1d\n    action: move\n",
            lake.display()
        ),
    )
    .unwrap();
    ctl(
        &tiering,
        &["policy", "apply", "-f", policy.to_str().unwrap()],
    )
    .unwrap();
    let runs = ctl(&tiering, &["run", "now"]).unwrap();
    assert!(runs.to_string().contains(&id), "{runs}");
    let f = files(&tiering);
    assert_eq!(f.len(), 1, "only the cold file: {f:?}");
    assert_eq!(f[0]["state"], "released");
    assert_eq!(f[0]["volume"], id.as_str());
    let key = f[0]["lake_key"].as_str().unwrap();
    assert!(key.starts_with("line-3/data/cold.bin."), "{key}");
    assert_eq!(
        sha256_hex(&std::fs::read(lake.join(key)).unwrap()),
        sha256_hex(&cold)
    );
    assert!(!p.staging.join("cold.bin").exists());
    assert_eq!(std::fs::read(p.staging.join("hot.txt")).unwrap(), b"in use");

    // Unstage: unregistered, unmounted, the records stay.
    c.node
        .node_unstage_volume(strata_proto::csi::v1::NodeUnstageVolumeRequest {
            volume_id: id.clone(),
            staging_target_path: p.staging.to_string_lossy().into(),
        })
        .await
        .unwrap();
    assert!(!is_mounted(&p.staging));
    assert!(volumes(&tiering).is_empty(), "{:?}", volumes(&tiering));
    assert_eq!(files(&tiering).len(), 1);
    let e = ctl(&tiering, &["recall", &id, "*.bin"]).unwrap_err();
    assert!(
        e.contains(&id),
        "recall of an unstaged volume names it: {e}"
    );

    // Stage again: registered again, and recall brings the file back.
    c.node
        .node_stage_volume(stage_req(&id, &p, &cap))
        .await
        .unwrap();
    assert_eq!(volumes(&tiering).len(), 1);
    ctl(&tiering, &["recall", &id, "*.bin"]).unwrap();
    assert_eq!(std::fs::read(p.staging.join("cold.bin")).unwrap(), cold);

    // Killed; the volume is unmounted behind its back; restarted: the
    // catalog forgets it before the agent could scan an empty directory.
    drop(c);
    drop(n);
    let out = Command::new("umount").arg(&p.staging).output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let n = node(&vg, &tiering, &kubelet).await;
    assert!(
        volumes(&tiering).is_empty(),
        "an unmounted volume is not a tiering volume: {:?}\n{}",
        volumes(&tiering),
        n.log_text()
    );
    // And one staged while the node was down is found at start.
    let out = Command::new("mount")
        .arg(format!("/dev/{}/{}", vg.name, id))
        .arg(&p.staging)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    drop(n);
    let n = node(&vg, &tiering, &kubelet).await;
    let v = volumes(&tiering);
    assert_eq!(v.len(), 1, "{v:?}\n{}", n.log_text());
    assert_eq!(v[0]["path"], p.staging.to_str().unwrap());
    let mut c = n.clients().await;
    c.node
        .node_unstage_volume(strata_proto::csi::v1::NodeUnstageVolumeRequest {
            volume_id: id.clone(),
            staging_target_path: p.staging.to_string_lossy().into(),
        })
        .await
        .unwrap();
    c.controller
        .delete_volume(strata_proto::csi::v1::DeleteVolumeRequest {
            volume_id: id,
            ..Default::default()
        })
        .await
        .unwrap();
}
