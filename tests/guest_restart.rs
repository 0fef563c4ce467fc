//! Real-kernel group: restart safety. `strata node` is killed (SIGKILL) in
//! the middle of CreateVolume, CreateSnapshot, DeleteVolume, DeleteSnapshot
//! and a thick restore's copy; a new node on the same config then gets the
//! identical request again, which must succeed with the right result and
//! leave no half-made LV, snapshot, tag or mount behind. Runs inside the
//! QEMU guest (`scripts/real-kernel tests restart_`).
//!
//! The LVM commands themselves take milliseconds, so "in the middle" is made
//! deterministic with the CLI backend's `[lvm] command_prefix`: a [`Gate`]
//! script that holds the first command of one kind (`lvcreate`, `lvremove`)
//! until the test has killed the node. Three ways the command can end
//! ([`Interrupt`]): it never runs, it runs after the node died, or it had
//! run and only its answer was lost. The copy of a thick restore is long
//! enough to be caught in flight without a gate.

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::*;
use strata_proto::csi::v1 as csi;

const FILLING: &str = "strata.io/filling";
const SNAPSHOT_MARKER: &str = "strata.io/snapshot";

/// How the gated LVM command ends relative to the kill.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Interrupt {
    /// The node dies before the command starts, and it never runs.
    NeverRan,
    /// The node dies before the command starts; the orphaned command then
    /// runs on its own (its output pipes lead nowhere).
    RanLate,
    /// The command ran to its end; the node dies before it read the answer.
    AnswerLost,
}

impl Interrupt {
    /// For names: `neverran`, `ranlate`, `answerlost`.
    fn label(self) -> String {
        format!("{self:?}").to_lowercase()
    }
}

const ALL: [Interrupt; 3] = [
    Interrupt::NeverRan,
    Interrupt::RanLate,
    Interrupt::AnswerLost,
];

/// A `command_prefix` script that holds the first `lvm <subcommand>` it sees
/// (every other command passes straight through) and reports through files
/// in its directory: `entered` when it holds, `exited` when it is gone. It
/// waits for `go` (run the command, if it has not) or `abort` (do not), and
/// gives up after a minute so that a failed test leaves no process behind.
struct Gate {
    dir: tempfile::TempDir,
    script: PathBuf,
}

impl Gate {
    fn new(subcommand: &str, how: Interrupt) -> Gate {
        let dir = scratch();
        let script = dir.path().join("gate.sh");
        let d = dir.path().display();
        let after = matches!(how, Interrupt::AnswerLost);
        std::fs::write(
            &script,
            format!(
                r#"#!/bin/sh
# $1 is lvm, $2 its subcommand.
D='{d}'
if [ "$2" = '{subcommand}' ] && mkdir "$D/claimed" 2>/dev/null; then
  rc=1
  if [ {after} = true ]; then "$@"; rc=$?; fi
  : > "$D/entered"
  i=0
  while [ ! -e "$D/go" ] && [ ! -e "$D/abort" ] && [ $i -lt 1200 ]; do
    sleep 0.05; i=$((i+1))
  done
  if [ {after} = false ] && [ -e "$D/go" ]; then "$@"; rc=$?; fi
  echo $rc > "$D/rc" && mv "$D/rc" "$D/exited"
  exit $rc
fi
exec "$@"
"#
            ),
        )
        .unwrap();
        sh("chmod", &["+x", script.to_str().unwrap()]);
        Gate { dir, script }
    }

    /// `config_text` (which ends in the `[lvm]` table) with this gate as the prefix.
    fn config(&self, config_text: &str) -> String {
        assert!(config_text.contains("backend = \"cli\""), "{config_text}");
        format!(
            "{config_text}command_prefix = [\"{}\"]\n",
            self.script.display()
        )
    }

    fn file(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Wait until the gate holds its command (the node is then inside the
    /// request, waiting for LVM).
    async fn entered(&self, node: &mut NodeProc) {
        wait_for("the gated lvm command", || {
            if let Ok(Some(status)) = node.child.try_wait() {
                panic!("strata node exited with {status}: {}", node.log_text());
            }
            self.file("entered").exists()
        })
        .await;
    }

    /// Let the held command go on as `how` says, and wait until the gate
    /// script has exited. Returns the command's exit code, if it ran.
    async fn finish(&self, how: Interrupt) -> Option<i32> {
        let release = if how == Interrupt::NeverRan {
            "abort"
        } else {
            "go"
        };
        std::fs::write(self.file(release), "").unwrap();
        wait_for("the gate to exit", || self.file("exited").exists()).await;
        let rc: i32 = std::fs::read_to_string(self.file("exited"))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        (how != Interrupt::NeverRan).then_some(rc)
    }
}

/// Prints how long a test took (the guest runs under emulation: keep an eye on it).
struct Took(&'static str, Instant);

impl Drop for Took {
    fn drop(&mut self) {
        eprintln!("{} took {:.1}s", self.0, self.1.elapsed().as_secs_f64());
    }
}

async fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn scratch() -> tempfile::TempDir {
    tempfile::tempdir_in(std::env::var("STRATA_SCRATCH").unwrap_or("/tmp".into())).unwrap()
}

/// SIGKILL, as the OOM killer or a node crash would.
fn kill9(node: &mut NodeProc) {
    node.child.kill().unwrap();
    let status = node.child.wait().unwrap();
    assert!(!status.success(), "{status}");
}

/// Mount points of anything in `vg` (device-mapper names start `<vg>-`).
fn mounts_of(vg: &str) -> Vec<String> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter(|l| l.contains(&format!("/{vg}-")) || l.contains(&format!("/{vg}/")))
        .map(str::to_owned)
        .collect()
}

/// The VG's LVs besides its thin pool, sorted.
fn lvs_besides_pool(vg: &TestVg) -> Vec<String> {
    let mut v: Vec<String> = vg.lv_names().into_iter().filter(|n| n != "pool0").collect();
    v.sort();
    v
}

fn has_tag(vg: &TestVg, lv: &str, tag: &str) -> bool {
    vg.lv_tags(lv).iter().any(|t| t == tag)
}

fn sha256_of(dev: &str) -> String {
    sh("sha256sum", &[dev])
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Thick,
    Thin,
}

/// A VG (with a 512 MiB thin pool for `Thin`) and the node config for it.
fn setup(kind: Kind, vg_mib: u64) -> (TestVg, String) {
    let vg = TestVg::new(vg_mib);
    let classes = match kind {
        Kind::Thick => thick_class(&vg.name, 0),
        Kind::Thin => {
            vg.create_thin_pool("pool0", 512);
            thin_class(&vg.name, "pool0", "overprovision_ratio = 4.0")
        }
    };
    let text = config(&classes, "cli");
    (vg, text)
}

async fn create_volume(
    c: &mut Clients,
    req: csi::CreateVolumeRequest,
) -> Result<csi::Volume, tonic::Status> {
    c.controller
        .create_volume(req)
        .await
        .map(|r| r.into_inner().volume.unwrap())
}

async fn create_snapshot(
    c: &mut Clients,
    req: csi::CreateSnapshotRequest,
) -> Result<csi::Snapshot, tonic::Status> {
    c.controller
        .create_snapshot(req)
        .await
        .map(|r| r.into_inner().snapshot.unwrap())
}

async fn delete_snapshot(c: &mut Clients, id: &str) -> Result<(), tonic::Status> {
    c.controller
        .delete_snapshot(csi::DeleteSnapshotRequest {
            snapshot_id: id.into(),
            ..Default::default()
        })
        .await
        .map(drop)
}

async fn snapshot_ids(c: &mut Clients) -> Vec<String> {
    c.controller
        .list_snapshots(csi::ListSnapshotsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .entries
        .into_iter()
        .map(|e| e.snapshot.unwrap().snapshot_id)
        .collect()
}

async fn volume_ids(c: &mut Clients) -> Vec<String> {
    c.controller
        .list_volumes(csi::ListVolumesRequest::default())
        .await
        .unwrap()
        .into_inner()
        .entries
        .into_iter()
        .map(|e| e.volume.unwrap().volume_id)
        .collect()
}

/// Send one request to a node whose gate holds its LVM command, kill the
/// node there, let the command end as `how` says, and start a fresh node
/// (no gate) on the same config. The killed request must have failed.
async fn interrupted<T, F>(
    config_text: &str,
    gate_on: &str,
    how: Interrupt,
    request: impl FnOnce(Clients) -> F,
) -> NodeProc
where
    F: std::future::Future<Output = Result<T, tonic::Status>> + Send + 'static,
    T: std::fmt::Debug + Send + 'static,
{
    let gate = Gate::new(gate_on, how);
    let mut node = NodeProc::start(&gate.config(config_text)).await;
    let call = tokio::spawn(request(node.clients().await));
    gate.entered(&mut node).await;
    kill9(&mut node);
    let answer = call.await.unwrap();
    assert!(
        answer.is_err(),
        "{how:?}: a request whose node was killed cannot have been answered: {answer:?}"
    );
    let rc = gate.finish(how).await;
    if how == Interrupt::AnswerLost {
        assert_eq!(rc, Some(0), "{how:?}: the gated {gate_on} failed");
    }
    eprintln!("{how:?}: gated {gate_on} exit code {rc:?}");
    NodeProc::start(config_text).await
}

// ---- CreateVolume -----------------------------------------------------------------

/// Kill in the middle of CreateVolume (at its lvcreate), restart, retry:
/// the volume exists once, tagged, not filling, and stages, formats, holds
/// data and deletes like any other.
async fn create_killed(kind: Kind) {
    let (vg, cfg) = setup(kind, 1024);
    let work = scratch();
    let cap = mount_cap("ext4");
    for how in ALL {
        let name = format!("pvc-create-{}", how.label());
        let req = create_req(&name, 64 * MIB, cap.clone());
        let r = req.clone();
        let node = interrupted(&cfg, "lvcreate", how, move |mut c| async move {
            create_volume(&mut c, r).await
        })
        .await;
        let on_disk = lvs_besides_pool(&vg);
        eprintln!("{how:?}: after the kill: {on_disk:?}");
        match how {
            Interrupt::NeverRan => assert!(on_disk.is_empty(), "{on_disk:?}"),
            Interrupt::AnswerLost => {
                // Complete the moment it exists: tagged by the lvcreate itself.
                assert_eq!(on_disk, std::slice::from_ref(&name));
                assert!(has_tag(&vg, &name, &format!("strata.io/pv={name}")));
            }
            Interrupt::RanLate => {
                assert!(on_disk.is_empty() || on_disk == std::slice::from_ref(&name))
            }
        }

        let mut c = node.clients().await;
        let v = create_volume(&mut c, req.clone()).await.unwrap();
        assert_eq!(
            (v.volume_id.as_str(), v.capacity_bytes),
            (name.as_str(), 64 * MIB)
        );
        assert_eq!(create_volume(&mut c, req).await.unwrap(), v, "idempotent");
        assert_eq!(lvs_besides_pool(&vg), std::slice::from_ref(&name));
        let tags = vg.lv_tags(&name);
        assert!(tags.contains(&"strata.io".to_owned()), "{tags:?}");
        assert!(!tags.iter().any(|t| t == FILLING), "{tags:?}");
        assert_eq!(vg.lv_size(&name), 64 << 20);

        // A working volume: format on stage, data in, data back.
        let p = paths(work.path(), &name);
        c.node
            .node_stage_volume(stage_req(&name, &p, &cap))
            .await
            .unwrap();
        c.node
            .node_publish_volume(publish_req(&name, &p, &cap, false))
            .await
            .unwrap();
        let data = format!("written after a restart in {how:?}").repeat(1000);
        std::fs::write(p.target.join("f"), &data).unwrap();
        sh("sync", &[]);
        assert_eq!(std::fs::read_to_string(p.target.join("f")).unwrap(), data);
        unpublish_unstage(&mut c, &name, &p).await;
        delete_volume(&mut c, &name).await.unwrap();
        assert!(lvs_besides_pool(&vg).is_empty());
        assert!(mounts_of(&vg.name).is_empty(), "{:?}", mounts_of(&vg.name));
    }
}

#[tokio::test]
async fn restart_create_thick_cli() {
    let _took = Took("restart_create_thick_cli", Instant::now());
    create_killed(Kind::Thick).await;
}

#[tokio::test]
async fn restart_create_thin_cli() {
    let _took = Took("restart_create_thin_cli", Instant::now());
    create_killed(Kind::Thin).await;
}

// ---- CreateSnapshot ---------------------------------------------------------------

/// Kill in the middle of CreateSnapshot (at its lvcreate -s), restart,
/// retry: one snapshot, of the source at the moment it was cut (a restore
/// of it has the checksum the source had then), listed once.
async fn snapshot_killed(kind: Kind) {
    let (vg, cfg) = setup(kind, 1024);
    let src = "pvc-snap-src";
    {
        let node = NodeProc::start(&cfg).await;
        let mut c = node.clients().await;
        create_volume(&mut c, create_req(src, 32 * MIB, block_cap()))
            .await
            .unwrap();
    }
    let dev = format!("/dev/{}/{src}", vg.name);
    let params: &[(&str, &str)] = match kind {
        Kind::Thick => &[("strata.io/cow-size", "100%")],
        Kind::Thin => &[],
    };
    for how in ALL {
        let tag = how.label();
        fill_random(&dev, 32);
        let at_snapshot = sha256_of(&dev);
        let req = snapshot_req(&format!("snapshot-{tag}"), src, params);
        let id = format!("snap-{tag}");
        let r = req.clone();
        let node = interrupted(&cfg, "lvcreate", how, move |mut c| async move {
            create_snapshot(&mut c, r).await
        })
        .await;
        let made = vg.lv_names().contains(&id);
        eprintln!("{how:?}: after the kill the snapshot LV exists: {made}");
        match how {
            Interrupt::NeverRan => assert!(!made),
            Interrupt::AnswerLost => {
                assert!(made);
                assert!(has_tag(&vg, &id, SNAPSHOT_MARKER), "{:?}", vg.lv_tags(&id));
            }
            Interrupt::RanLate => {}
        }

        let mut c = node.clients().await;
        let s = create_snapshot(&mut c, req.clone()).await.unwrap();
        assert_eq!(
            (s.snapshot_id.as_str(), s.source_volume_id.as_str()),
            (id.as_str(), src)
        );
        assert!(s.ready_to_use);
        assert_eq!(s.size_bytes, 32 * MIB);
        assert_eq!(create_snapshot(&mut c, req).await.unwrap(), s, "idempotent");
        let mut want = vec![id.clone(), src.to_owned()];
        want.sort();
        assert_eq!(lvs_besides_pool(&vg), want);
        assert_eq!(snapshot_ids(&mut c).await, std::slice::from_ref(&id));
        let attr = vg.lv_field(&id, "lv_attr");
        let want_attr = match kind {
            Kind::Thick => "sr",
            Kind::Thin => "Vr",
        };
        assert!(attr.starts_with(want_attr), "{attr}");

        // The source moves on; a restore shows the snapshot's moment.
        fill_random(&dev, 8);
        let restored = format!("pvc-snap-r-{tag}");
        let v = create_volume(
            &mut c,
            create_from_req(&restored, 32 * MIB, block_cap(), from_snapshot(&id)),
        )
        .await
        .unwrap();
        assert_eq!(v.content_source, Some(from_snapshot(&id)));
        let rdev = format!("/dev/{}/{restored}", vg.name);
        assert_eq!(sha256_of(&rdev), at_snapshot, "{how:?}");
        delete_volume(&mut c, &restored).await.unwrap();
        delete_snapshot(&mut c, &id).await.unwrap();
        assert_eq!(lvs_besides_pool(&vg), [src]);
        assert!(mounts_of(&vg.name).is_empty());
    }
}

#[tokio::test]
async fn restart_snapshot_thick_cli() {
    let _took = Took("restart_snapshot_thick_cli", Instant::now());
    snapshot_killed(Kind::Thick).await;
}

#[tokio::test]
async fn restart_snapshot_thin_cli() {
    let _took = Took("restart_snapshot_thin_cli", Instant::now());
    snapshot_killed(Kind::Thin).await;
}

// ---- DeleteVolume and DeleteSnapshot ----------------------------------------------

/// Kill in the middle of DeleteVolume and of DeleteSnapshot (at their
/// lvremove), restart, retry: gone, and nothing else with them. (Thin and
/// thick LVs take the same path through both.)
async fn delete_killed(kind: Kind) {
    let (vg, cfg) = setup(kind, 1024);
    let keep = "pvc-keep";
    {
        let node = NodeProc::start(&cfg).await;
        let mut c = node.clients().await;
        create_volume(&mut c, create_req(keep, 16 * MIB, block_cap()))
            .await
            .unwrap();
    }
    let kept = sha256_of(&format!("/dev/{}/{keep}", vg.name));
    for how in ALL {
        let tag = how.label();
        let vol = format!("pvc-del-{tag}");
        let snap_name = format!("snapshot-del-{tag}");
        let snap = format!("snap-del-{tag}");
        // A snapshot of `keep`, and a volume on its own.
        {
            let node = NodeProc::start(&cfg).await;
            let mut c = node.clients().await;
            create_volume(&mut c, create_req(&vol, 16 * MIB, block_cap()))
                .await
                .unwrap();
            let params: &[(&str, &str)] = match kind {
                Kind::Thick => &[("strata.io/cow-size", "8Mi")],
                Kind::Thin => &[],
            };
            create_snapshot(&mut c, snapshot_req(&snap_name, keep, params))
                .await
                .unwrap();
        }

        let id = vol.clone();
        let node = interrupted(&cfg, "lvremove", how, move |mut c| async move {
            delete_volume(&mut c, &id).await
        })
        .await;
        let left = vg.lv_names().contains(&vol);
        eprintln!("{how:?}: after the kill the volume LV exists: {left}");
        match how {
            Interrupt::NeverRan => {
                assert!(left);
                assert!(has_tag(&vg, &vol, "strata.io"));
            }
            Interrupt::AnswerLost => assert!(!left),
            Interrupt::RanLate => {}
        }
        let mut c = node.clients().await;
        delete_volume(&mut c, &vol).await.unwrap();
        delete_volume(&mut c, &vol).await.unwrap();
        assert!(!vg.lv_names().contains(&vol));
        assert_eq!(volume_ids(&mut c).await, [keep]);
        drop(node);

        let id = snap.clone();
        let node = interrupted(&cfg, "lvremove", how, move |mut c| async move {
            delete_snapshot(&mut c, &id).await
        })
        .await;
        let left = vg.lv_names().contains(&snap);
        eprintln!("{how:?}: after the kill the snapshot LV exists: {left}");
        match how {
            Interrupt::NeverRan => assert!(left && has_tag(&vg, &snap, SNAPSHOT_MARKER)),
            Interrupt::AnswerLost => assert!(!left),
            Interrupt::RanLate => {}
        }
        let mut c = node.clients().await;
        delete_snapshot(&mut c, &snap).await.unwrap();
        delete_snapshot(&mut c, &snap).await.unwrap();
        assert!(snapshot_ids(&mut c).await.is_empty());
        assert_eq!(lvs_besides_pool(&vg), [keep]);
        assert_eq!(
            sha256_of(&format!("/dev/{}/{keep}", vg.name)),
            kept,
            "the volume the snapshot was of is untouched"
        );
        assert!(mounts_of(&vg.name).is_empty());
    }
}

#[tokio::test]
async fn restart_delete_thick_cli() {
    let _took = Took("restart_delete_thick_cli", Instant::now());
    delete_killed(Kind::Thick).await;
}

// ---- CreateVolume from a snapshot -------------------------------------------------

/// The first MiB of a device, or `None` while it cannot be read.
fn head_of(dev: &str) -> Option<Vec<u8>> {
    use std::io::Read;
    let mut buf = vec![0; 1 << 20];
    std::fs::File::open(dev).ok()?.read_exact(&mut buf).ok()?;
    Some(buf)
}

/// A thick restore killed while it copies (its LV exists, tagged
/// `strata.io/filling`, and its first MiB already holds the snapshot's
/// random bytes): the filling tag stays, the volume reports an abnormal
/// condition and is not snapshotted meanwhile, and the retried request
/// copies it all again: the restored bytes are the snapshot's, the tag is
/// gone, no other LV is left.
#[tokio::test]
async fn restart_restore_thick_mid_copy_cli() {
    let _took = Took("restart_restore_thick_mid_copy_cli", Instant::now());
    const SRC_MIB: u64 = 256;
    let (vg, cfg) = setup(Kind::Thick, 3 * SRC_MIB + 256);
    let src = "pvc-big";
    let node = NodeProc::start(&cfg).await;
    let mut c = node.clients().await;
    create_volume(&mut c, create_req(src, (SRC_MIB as i64) * MIB, block_cap()))
        .await
        .unwrap();
    let dev = format!("/dev/{}/{src}", vg.name);
    fill_random(&dev, SRC_MIB);
    let at_snapshot = sha256_of(&dev);
    let head = head_of(&dev).unwrap();
    let s = create_snapshot(&mut c, snapshot_req("snapshot-big", src, &[]))
        .await
        .unwrap();
    drop(c);
    drop(node);
    // The source moves on after its snapshot.
    fill_random(&dev, 16);

    let restored = "pvc-big-restored";
    let req = create_from_req(
        restored,
        (SRC_MIB as i64) * MIB,
        block_cap(),
        from_snapshot(&s.snapshot_id),
    );
    let mut node = NodeProc::start(&cfg).await;
    let mut c = node.clients().await;
    let r = req.clone();
    let call = tokio::spawn(async move { create_volume(&mut c, r).await });
    // The copy is under way once the new LV starts with the snapshot's
    // (random) first MiB: kill at once.
    let rdev = format!("/dev/{}/{restored}", vg.name);
    wait_for("the copy to be under way", || {
        head_of(&rdev).is_some_and(|h| h == head)
    })
    .await;
    kill9(&mut node);
    assert!(call.await.unwrap().is_err());
    assert!(
        has_tag(&vg, restored, FILLING),
        "the node was killed mid-copy: the volume must still say it is filling"
    );

    let node = NodeProc::start(&cfg).await;
    let mut c = node.clients().await;
    // Half filled, it is not handed to anything else meanwhile.
    let (code, msg) = status_of(
        c.controller
            .create_snapshot(snapshot_req("snapshot-of-half", restored, &[]))
            .await,
    );
    assert_eq!(code, tonic::Code::FailedPrecondition, "{msg}");
    let condition = c
        .controller
        .controller_get_volume(csi::ControllerGetVolumeRequest {
            volume_id: restored.into(),
        })
        .await
        .unwrap()
        .into_inner()
        .status
        .unwrap()
        .volume_condition
        .unwrap();
    assert!(condition.abnormal, "{condition:?}");
    let v = create_volume(&mut c, req.clone()).await.unwrap();
    assert_eq!(v.volume_id, restored);
    assert_eq!(v.capacity_bytes, (SRC_MIB as i64) * MIB);
    assert_eq!(v.content_source, Some(from_snapshot(&s.snapshot_id)));
    assert!(
        !has_tag(&vg, restored, FILLING),
        "{:?}",
        vg.lv_tags(restored)
    );
    assert_eq!(
        sha256_of(&format!("/dev/{}/{restored}", vg.name)),
        at_snapshot
    );
    assert_eq!(create_volume(&mut c, req).await.unwrap(), v, "idempotent");
    let mut want = vec![restored.to_owned(), src.to_owned(), s.snapshot_id.clone()];
    want.sort();
    assert_eq!(lvs_besides_pool(&vg), want);
    assert!(mounts_of(&vg.name).is_empty());
    delete_volume(&mut c, restored).await.unwrap();
    delete_snapshot(&mut c, &s.snapshot_id).await.unwrap();
    delete_volume(&mut c, src).await.unwrap();
    assert!(lvs_besides_pool(&vg).is_empty());
}

/// Starts a thick clone of `src` named `clone` and kills the node as soon as
/// its copy is under way (the clone starts with the source's random first
/// MiB); the clone then says it is filling and its temporary snapshot of the
/// source, `<clone>.src`, is there.
async fn clone_killed_mid_copy(vg: &TestVg, cfg: &str, src: &str, clone: &str, mib: u64) {
    let head = head_of(&format!("/dev/{}/{src}", vg.name)).unwrap();
    let mut node = NodeProc::start(cfg).await;
    let mut c = node.clients().await;
    let r = create_from_req(clone, (mib as i64) * MIB, block_cap(), from_volume(src));
    let call = tokio::spawn(async move { create_volume(&mut c, r).await });
    let cdev = format!("/dev/{}/{clone}", vg.name);
    wait_for("the clone's copy to be under way", || {
        head_of(&cdev).is_some_and(|h| h == head)
    })
    .await;
    kill9(&mut node);
    assert!(call.await.unwrap().is_err());
    assert!(has_tag(vg, clone, FILLING), "{:?}", vg.lv_tags(clone));
    assert!(
        vg.lv_names().contains(&format!("{clone}.src")),
        "{:?}",
        vg.lv_names()
    );
}

/// A thick clone killed mid-copy. Given up (DeleteVolume of the half-made
/// clone), its temporary snapshot of the source goes with it. Retried after
/// a reboot (every LV inactive), the copy resumes from the same point in
/// time: the source written after the kill does not leak into the clone.
#[tokio::test]
async fn restart_clone_thick_mid_copy_cli() {
    let _took = Took("restart_clone_thick_mid_copy_cli", Instant::now());
    const SRC_MIB: u64 = 256;
    let (vg, cfg) = setup(Kind::Thick, 3 * SRC_MIB + 256);
    let src = "pvc-origin";
    let dev = format!("/dev/{}/{src}", vg.name);
    {
        let node = NodeProc::start(&cfg).await;
        let mut c = node.clients().await;
        create_volume(&mut c, create_req(src, (SRC_MIB as i64) * MIB, block_cap()))
            .await
            .unwrap();
    }
    fill_random(&dev, SRC_MIB);

    // Given up: the half-made clone and its temporary snapshot both go.
    clone_killed_mid_copy(&vg, &cfg, src, "pvc-given-up", SRC_MIB).await;
    {
        let node = NodeProc::start(&cfg).await;
        let mut c = node.clients().await;
        delete_volume(&mut c, "pvc-given-up").await.unwrap();
        assert_eq!(lvs_besides_pool(&vg), vec![src.to_owned()]);
    }

    // Retried after a reboot: from the same point in time. New bytes first,
    // so the clone's first MiB (on the extents the given-up clone had) is
    // not already the source's.
    fill_random(&dev, 16);
    let at_clone = sha256_of(&dev);
    let clone = "pvc-clone";
    clone_killed_mid_copy(&vg, &cfg, src, clone, SRC_MIB).await;
    // The source moves on, then the node "reboots": every LV inactive.
    fill_random(&dev, 16);
    lvm(&["vgchange", "-an", &vg.name]);
    assert!(
        !std::path::Path::new(&format!("/dev/{}/{clone}.src", vg.name)).exists(),
        "the reboot stand-in left the temporary snapshot active"
    );
    let node = NodeProc::start(&cfg).await;
    let mut c = node.clients().await;
    let req = create_from_req(clone, (SRC_MIB as i64) * MIB, block_cap(), from_volume(src));
    let v = create_volume(&mut c, req.clone()).await.unwrap();
    assert_eq!(v.content_source, Some(from_volume(src)));
    assert!(!has_tag(&vg, clone, FILLING), "{:?}", vg.lv_tags(clone));
    assert_eq!(
        sha256_of(&format!("/dev/{}/{clone}", vg.name)),
        at_clone,
        "the clone holds the source as it was when the first attempt began"
    );
    assert_eq!(create_volume(&mut c, req).await.unwrap(), v, "idempotent");
    let mut want = vec![clone.to_owned(), src.to_owned()];
    want.sort();
    assert_eq!(lvs_besides_pool(&vg), want, "no temporary snapshot left");
    delete_volume(&mut c, clone).await.unwrap();
    delete_volume(&mut c, src).await.unwrap();
    assert!(lvs_besides_pool(&vg).is_empty());
    assert!(mounts_of(&vg.name).is_empty());
}

/// A thin restore killed at its lvcreate (the restore is one thin snapshot
/// LV, tagged by that lvcreate, cleaned and activated after it): the retry
/// finishes it, and the restored volume carries its own identity only,
/// never the snapshot's (or ListSnapshots would show it, and DeleteSnapshot
/// could take a volume).
#[tokio::test]
async fn restart_restore_thin_cli() {
    let _took = Took("restart_restore_thin_cli", Instant::now());
    let (vg, cfg) = setup(Kind::Thin, 1024);
    let src = "pvc-thin-src";
    let dev = format!("/dev/{}/{src}", vg.name);
    let snap = {
        let node = NodeProc::start(&cfg).await;
        let mut c = node.clients().await;
        create_volume(&mut c, create_req(src, 32 * MIB, block_cap()))
            .await
            .unwrap();
        fill_random(&dev, 32);
        create_snapshot(&mut c, snapshot_req("snapshot-thin-src", src, &[]))
            .await
            .unwrap()
            .snapshot_id
    };
    let at_snapshot = sha256_of(&dev);
    fill_random(&dev, 8);
    let work = scratch();
    for how in ALL {
        let restored = format!("pvc-thin-r-{}", how.label());
        let req = create_from_req(&restored, 32 * MIB, block_cap(), from_snapshot(&snap));
        let r = req.clone();
        let node = interrupted(&cfg, "lvcreate", how, move |mut c| async move {
            create_volume(&mut c, r).await
        })
        .await;
        if vg.lv_names().contains(&restored) {
            eprintln!(
                "{how:?}: after the kill {restored} has tags {:?}",
                vg.lv_tags(&restored)
            );
        }
        let mut c = node.clients().await;
        let v = create_volume(&mut c, req.clone()).await.unwrap();
        assert_eq!(v.volume_id, restored);
        assert_eq!(v.content_source, Some(from_snapshot(&snap)));
        let tags = vg.lv_tags(&restored);
        assert!(
            tags.contains(&format!("strata.io/pv={restored}")),
            "{tags:?}"
        );
        assert!(
            !tags
                .iter()
                .any(|t| t == SNAPSHOT_MARKER || t.starts_with("strata.io/source=")),
            "{how:?}: the restored volume carries its snapshot's identity: {tags:?}"
        );
        assert_eq!(snapshot_ids(&mut c).await, std::slice::from_ref(&snap));
        let attr = vg.lv_field(&restored, "lv_attr");
        assert!(attr.starts_with("Vw"), "{attr}");
        c.node
            .node_stage_volume(stage_req(
                &restored,
                &paths(work.path(), &restored),
                &block_cap(),
            ))
            .await
            .unwrap();
        assert_eq!(
            sha256_of(&format!("/dev/{}/{restored}", vg.name)),
            at_snapshot
        );
        assert_eq!(create_volume(&mut c, req).await.unwrap(), v, "idempotent");
        delete_volume(&mut c, &restored).await.unwrap();
        let mut want = vec![snap.clone(), src.to_owned()];
        want.sort();
        assert_eq!(lvs_besides_pool(&vg), want);
    }
}
