//! `strata up`: one command brings up the node plugin on a loop-backed volume
//! group under its data directory; a CSI client can create a volume at once,
//! and a second start reuses the same file and volume group.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use strata_proto::csi::v1 as csi;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Up {
    child: std::process::Child,
}

/// Removes the test's VG and detaches its loop device, even when an assertion failed.
struct Cleanup {
    vg: String,
    pv: std::path::PathBuf,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = Command::new("lvm")
            .args([
                "vgremove",
                "-ff",
                "-y",
                "--config",
                "global{activation=0}",
                &self.vg,
            ])
            .output();
        if let Ok(out) = Command::new("losetup")
            .args(["-j", self.pv.to_str().unwrap(), "-O", "NAME", "-n"])
            .output()
        {
            for l in String::from_utf8_lossy(&out.stdout).lines() {
                let _ = Command::new("losetup").args(["-d", l.trim()]).output();
            }
        }
    }
}

impl Drop for Up {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn start(data: &std::path::Path, vg: &str) -> (Up, std::path::PathBuf) {
    // A killed predecessor leaves its socket file behind: wait for a new one.
    let _ = std::fs::remove_file(data.join("csi.sock"));
    let child = Command::new(strata_bin())
        .args(["up", "--size-gib", "1", "--volume-group", vg, "--data-dir"])
        .arg(data)
        .args(["--metrics-addr", &format!("127.0.0.1:{}", free_port())])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let up = Up { child };
    let socket = data.join("csi.sock");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !socket.exists() {
        assert!(
            Instant::now() < deadline,
            "strata up never served its socket"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    (up, socket)
}

#[tokio::test]
async fn up_serves_csi_on_a_loop_backed_volume_group() {
    let data = tempfile::tempdir().unwrap();
    let vg = unique("upvg");
    let _cleanup = Cleanup {
        vg: vg.clone(),
        pv: data.path().join("lvm/pv.img"),
    };
    let (up, socket) = start(data.path(), &vg).await;
    let ch = connect(&socket).await;
    let mut ident = csi::identity_client::IdentityClient::new(ch.clone());
    assert_eq!(
        ident
            .probe(csi::ProbeRequest {})
            .await
            .unwrap()
            .into_inner()
            .ready,
        Some(true)
    );
    let mut ctrl = csi::controller_client::ControllerClient::new(ch);
    let v = ctrl
        .create_volume(create_req("pvc-up-1", 40 * MIB, mount_cap("")))
        .await
        .unwrap()
        .into_inner()
        .volume
        .unwrap();
    assert_eq!(v.capacity_bytes, 40 * MIB);
    drop(up);

    // Second start: same file, same VG, the volume is still there.
    let (up, socket) = start(data.path(), &vg).await;
    let mut ctrl = csi::controller_client::ControllerClient::new(connect(&socket).await);
    let listed = ctrl
        .list_volumes(csi::ListVolumesRequest::default())
        .await
        .unwrap()
        .into_inner();
    let ids: Vec<String> = listed
        .entries
        .iter()
        .map(|e| e.volume.as_ref().unwrap().volume_id.clone())
        .collect();
    drop(up);

    let pv = data.path().join("lvm/pv.img");
    let loops = sh("losetup", &["-j", pv.to_str().unwrap(), "-O", "NAME", "-n"]);
    // The Cleanup guard removes the VG and detaches the loop device.
    assert_eq!(ids, vec!["pvc-up-1".to_string()]);
    assert_eq!(
        loops.lines().count(),
        1,
        "a restart must reuse the loop device: {loops}"
    );
}
