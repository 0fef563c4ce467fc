//! Host group: orphans and the inventory metrics of a real `strata node`
//! process and of `strata node gc`, on a loop-device VG with activation off
//! (LVM metadata only, so no mounts here: tests/guest_orphans.rs covers
//! mounts with a real kernel). `--persistent-volumes-file` stands in for the
//! Kubernetes API server.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// A strata-tagged LV made with the lvm command, as a crashed or forgotten
/// volume would be left.
fn tagged_lv(vg: &TestVg, name: &str) {
    lv_with_tags(vg, name, &["strata.io", "strata.io/class=fast"]);
}

/// An 8 MiB LV in `vg` with these tags.
fn lv_with_tags(vg: &TestVg, name: &str, tags: &[&str]) {
    let mut args = vec!["lvcreate", "--yes", "-Wn", "-Zn", "-n", name, "-L", "8m"];
    for t in tags {
        args.extend(["--addtag", t]);
    }
    args.push(&vg.name);
    lvm(&args);
}

/// A kubelet staging directory of driver strata.io for `handle`, with an
/// empty `globalmount`.
fn staging_dir(kubelet: &Path, hash: &str, handle: &str) -> PathBuf {
    let dir = kubelet
        .join("plugins/kubernetes.io/csi/strata.io")
        .join(hash);
    std::fs::create_dir_all(dir.join("globalmount")).unwrap();
    std::fs::write(
        dir.join("vol_data.json"),
        format!(r#"{{"driverName":"strata.io","volumeHandle":"{handle}"}}"#),
    )
    .unwrap();
    dir
}

struct Site {
    vg: TestVg,
    dir: tempfile::TempDir,
}

impl Site {
    fn new() -> Site {
        let vg = TestVg::new(256);
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("node.toml"),
            config(&thick_class(&vg.name, 0), "cli"),
        )
        .unwrap();
        std::fs::create_dir(dir.path().join("kubelet")).unwrap();
        Site { vg, dir }
    }
    fn config(&self) -> PathBuf {
        self.dir.path().join("node.toml")
    }
    fn pvs(&self) -> PathBuf {
        self.dir.path().join("pvs")
    }
    fn kubelet(&self) -> PathBuf {
        self.dir.path().join("kubelet")
    }

    /// `strata node gc`: (exit success, stdout + stderr).
    fn gc(&self, extra: &[&str]) -> (bool, String) {
        let out = Command::new(strata_bin())
            .args(["node", "gc", "--config"])
            .arg(self.config())
            .arg("--persistent-volumes-file")
            .arg(self.pvs())
            .arg("--kubelet-dir")
            .arg(self.kubelet())
            .args(["--orphan-settle", "0s"])
            .args(extra)
            .env("RUST_LOG", "warn")
            .output()
            .unwrap();
        (
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    }
}

#[test]
fn gc_lists_orphans_and_removes_them_only_with_apply() {
    let site = Site::new();
    tagged_lv(&site.vg, "pvc-owned");
    tagged_lv(&site.vg, "pvc-lost");
    // Not strata's: never an orphan, whatever the API says.
    lvm(&[
        "lvcreate",
        "--yes",
        "-Wn",
        "-Zn",
        "-n",
        "keepme",
        "-L",
        "8m",
        &site.vg.name,
    ]);
    let leftover = staging_dir(&site.kubelet(), "aaa", "pvc-gone");
    let staged = staging_dir(&site.kubelet(), "bbb", "pvc-owned");
    std::fs::write(
        site.pvs(),
        "# the stand-in's PersistentVolumes\npvc-owned\n",
    )
    .unwrap();

    for dry in [&[][..], &["--dry-run"][..]] {
        let (ok, out) = site.gc(dry);
        assert!(ok, "{out}");
        assert!(out.contains(&format!("{}/pvc-lost", site.vg.name)), "{out}");
        assert!(
            out.contains("staging_dir") && out.contains("pvc-gone"),
            "{out}"
        );
        assert!(
            !out.contains("pvc-owned") && !out.contains("keepme"),
            "{out}"
        );
        assert!(out.contains("dry run: nothing removed"), "{out}");
    }
    let mut lvs = site.vg.lv_names();
    lvs.sort();
    assert_eq!(lvs, ["keepme", "pvc-lost", "pvc-owned"]);
    assert!(leftover.join("globalmount").is_dir());

    let (ok, out) = site.gc(&["--apply"]);
    assert!(ok, "{out}");
    assert!(
        out.contains(&format!("removed volume {}/pvc-lost", site.vg.name)),
        "{out}"
    );
    let mut lvs = site.vg.lv_names();
    lvs.sort();
    assert_eq!(lvs, ["keepme", "pvc-owned"]);
    assert!(!leftover.exists(), "the leftover directory is gone");
    assert!(
        staged.join("globalmount").is_dir(),
        "a volume that is here keeps its directory"
    );

    let (ok, out) = site.gc(&["--apply"]);
    assert!(ok && out.contains("no orphans"), "{out}");
    assert!(
        site.gc(&["--apply", "--dry-run"])
            .1
            .contains("cannot be used with")
    );
}

/// A clone given up for good (its claim deleted after its create failed or
/// crashed) leaves its LV tagged filling and its temporary snapshot of the
/// source: gc keeps them while a request could still be working on them
/// (made less than --filling-grace ago), removes them once not, and the dry
/// run says in advance what --apply does. (Without device-mapper LVM makes
/// no snapshot, so the temporary here is a plain LV with the same tags.)
#[test]
fn gc_removes_a_create_that_never_finished_once_no_request_can_hold_it() {
    let site = Site::new();
    std::fs::write(site.pvs(), "pvc-src\n").unwrap();
    tagged_lv(&site.vg, "pvc-src");
    let filling = [
        "strata.io",
        "strata.io/class=fast",
        "strata.io/from-volume=pvc-src",
        "strata.io/filling",
    ];
    let temporary = ["strata.io/temporary", "strata.io/source=pvc-src"];
    lv_with_tags(&site.vg, "pvc-clone", &filling);
    lv_with_tags(&site.vg, "pvc-clone.src", &temporary);
    // A temporary whose clone is gone.
    lv_with_tags(&site.vg, "pvc-other.src", &temporary);

    // Just made: kept, saying why, by the dry run and by --apply alike.
    let (ok, out) = site.gc(&[]);
    assert!(ok, "{out}");
    assert!(
        out.contains("tagged strata.io/filling, made ")
            && out.contains(
                "(less than --filling-grace 900s): a request may still be working on it: kept"
            ),
        "{out}"
    );
    assert!(
        out.contains(
            "the temporary snapshot a clone \"pvc-other\" copied from, and that clone is gone"
        ),
        "{out}"
    );
    assert!(out.contains("would remove 0 of these and keep 2"), "{out}");
    let (ok, out) = site.gc(&["--apply"]);
    assert!(ok, "{out}");
    assert!(
        out.contains(&format!(
            "kept volume {}/pvc-clone: tagged strata.io/filling",
            site.vg.name
        )),
        "{out}"
    );
    let mut all = vec!["pvc-clone", "pvc-clone.src", "pvc-other.src", "pvc-src"];
    assert_eq!(site.vg.lv_names(), all);

    // Older than the grace (1s here): the dry run would remove both, and
    // --apply does, the clone with its temporary snapshot.
    std::thread::sleep(Duration::from_millis(2100));
    let (ok, out) = site.gc(&["--filling-grace", "1s"]);
    assert!(ok, "{out}");
    assert!(out.contains("would remove 2 of these and keep 0"), "{out}");
    assert!(
        out.contains("and its restore or clone never finished (tagged strata.io/filling)"),
        "{out}"
    );
    let (ok, out) = site.gc(&["--apply", "--filling-grace", "1s"]);
    assert!(ok, "{out}");
    for removed in ["pvc-clone", "pvc-other.src"] {
        assert!(
            out.contains(&format!("removed volume {}/{removed}", site.vg.name)),
            "{out}"
        );
    }
    all.retain(|n| *n == "pvc-src");
    assert_eq!(site.vg.lv_names(), all);
    let (ok, out) = site.gc(&["--filling-grace", "1s"]);
    assert!(ok && out.contains("no orphans"), "{out}");
}

#[test]
fn with_the_api_unreachable_no_volume_is_judged() {
    let site = Site::new();
    tagged_lv(&site.vg, "pvc-lost");
    // No PV file: the stand-in API server does not answer.
    let (ok, out) = site.gc(&["--apply"]);
    assert!(ok, "{out}");
    assert!(out.contains("PersistentVolumes unknown"), "{out}");
    assert!(out.contains("no orphans"), "{out}");
    assert_eq!(site.vg.lv_names(), ["pvc-lost"]);
}

/// A running `strata node` with metrics and a fast orphan scan.
struct Node {
    child: Child,
    log: PathBuf,
    metrics: String,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Node {
    async fn start(site: &Site) -> (Node, Clients) {
        let port = common::free_port();
        let socket = site.dir.path().join("csi.sock");
        let log = site.dir.path().join("node.log");
        let child = Command::new(strata_bin())
            .args(["node", "--config"])
            .arg(site.config())
            .arg("--csi-endpoint")
            .arg(format!("unix://{}", socket.display()))
            .args(["--node-id", "edge-node-1"])
            .args(["--metrics-addr", &format!("127.0.0.1:{port}")])
            .args(["--orphan-scan-interval", "1s", "--orphan-settle", "0s"])
            .arg("--persistent-volumes-file")
            .arg(site.pvs())
            .arg("--kubelet-dir")
            .arg(site.kubelet())
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let node = Node {
            child,
            log,
            metrics: format!("127.0.0.1:{port}"),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !socket.exists() {
            assert!(Instant::now() < deadline, "no socket: {}", node.log_text());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let ch = connect(&socket).await;
        let clients = Clients {
            identity: strata_proto::csi::v1::identity_client::IdentityClient::new(ch.clone()),
            controller: strata_proto::csi::v1::controller_client::ControllerClient::new(ch.clone()),
            node: strata_proto::csi::v1::node_client::NodeClient::new(ch),
        };
        (node, clients)
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// GET /metrics (the body), or an empty string while it does not answer.
    fn scrape(&self) -> String {
        common::scrape(&self.metrics)
    }

    /// Scrape until `line` shows up.
    async fn wait_for(&self, line: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let text = self.scrape();
            if text.contains(line) {
                return text;
            }
            assert!(
                Instant::now() < deadline,
                "{line} never appeared in\n{text}\nlog:\n{}",
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

#[tokio::test]
async fn the_node_reports_orphans_and_its_inventory_in_metrics() {
    let site = Site::new();
    std::fs::write(site.pvs(), "pvc-m1\n").unwrap();
    let (node, mut c) = Node::start(&site).await;
    c.controller
        .create_volume(create_req("pvc-m1", 16 * MIB, mount_cap("ext4")))
        .await
        .unwrap();
    tagged_lv(&site.vg, "pvc-lost");

    let n = r#"node="edge-node-1""#;
    node.wait_for(&format!(r#"strata_orphans{{{n},kind="volume"}} 1"#))
        .await;
    // The inventory is cached for 5 s: let it catch up with pvc-lost.
    tokio::time::sleep(Duration::from_millis(5500)).await;
    let text = node.scrape();
    let vg_size: u64 = lvm(&[
        "vgs",
        "--noheadings",
        "--units",
        "b",
        "--nosuffix",
        "-o",
        "vg_size",
        &site.vg.name,
    ])
    .trim()
    .parse()
    .unwrap();
    let vg = &site.vg.name;
    for line in [
        format!(r#"strata_vg_size_bytes{{{n},device_class="fast",volume_group="{vg}"}} {vg_size}"#),
        format!(
            r#"strata_vg_free_bytes{{{n},device_class="fast",volume_group="{vg}"}} {}"#,
            site.vg.free()
        ),
        format!(
            r#"strata_device_class_available_bytes{{{n},device_class="fast"}} {}"#,
            site.vg.free()
        ),
        format!(
            r#"strata_volume_size_bytes{{{n},device_class="fast",volume="pvc-m1",pvc_namespace="line-3",pvc="data"}} {}"#,
            // the driver rounds up to the filesystem's minimum
            site.vg.lv_size("pvc-m1")
        ),
        format!(r#"strata_snapshots{{{n},device_class="fast"}} 0"#),
        format!(r#"strata_inventory_up{{{n}}} 1"#),
        format!(r#"strata_orphan_scan_owners_known{{{n}}} 1"#),
        format!(r#"strata_orphans{{{n},kind="mount"}} 0"#),
        format!(r#"strata_csi_requests_total{{{n},method="CreateVolume",code="Ok"}} 1"#),
        format!(
            r#"strata_lvm_command_duration_seconds_count{{{n},operation="lvcreate",backend="cli"}} 1"#
        ),
    ] {
        assert!(text.contains(&line), "{line} in\n{text}");
    }
    assert!(text.trim_end().ends_with("# EOF"), "{text}");

    // Logged once, however many scans see it; the scan removes nothing.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let log = node.log_text();
    assert_eq!(
        log.matches("orphan: no PersistentVolume").count(),
        1,
        "{log}"
    );
    assert!(log.contains("pvc-lost"), "{log}");
    assert!(site.vg.lv_names().contains(&"pvc-lost".to_owned()));

    // Its PersistentVolume appears: no longer an orphan.
    std::fs::write(site.pvs(), "pvc-m1\npvc-lost\n").unwrap();
    node.wait_for(&format!(r#"strata_orphans{{{n},kind="volume"}} 0"#))
        .await;
    assert!(node.log_text().contains("no longer an orphan"));

    // The API goes away: the count is kept, and the scan says it could not judge.
    std::fs::remove_file(site.pvs()).unwrap();
    node.wait_for(&format!(r#"strata_orphan_scan_owners_known{{{n}}} 0"#))
        .await;
}
