//! A CreateVolume from a snapshot or a volume that fails leaves nothing
//! behind: the rule of `strata_csi::snapshots` (rollback), checked through
//! the Controller service over real LVM, with failures injected at the
//! `Runner` seam ([`Faulty`]: the `lvm` program, except for the command
//! lines a test names).
//!
//! Runs on the host (csi-driver/tests/create_rollback.rs: activation
//! disabled, where LVM cannot make the copy-on-write snapshot a thick clone
//! copies from, which is one of the failures; no restores, no thin pools)
//! and in the real-kernel guest (tests/guest_rollback.rs: snapshots, copies
//! and thin pools work, so the failures are the injected ones). Declare it
//! beside `lvm_suite`:
//! ```ignore
//! #[path = "common/lvm_suite.rs"]
//! mod lvm_suite;
//! #[path = "common/rollback_suite.rs"]
//! mod rollback_suite;
//! ```

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use strata_csi::controller::ControllerService;
use strata_csi::lvm::cli::CliRunner;
use strata_csi::lvm::tool::LvmTool;
use strata_csi::lvm::{Lvm, LvmError, RunOutput, Runner};
use strata_csi::{Driver, NodeConfig};
use strata_proto::csi::v1 as csi;
use tonic::{Code, Request};

use crate::lvm_suite::{SuiteEnv, TestVg};

use csi::controller_server::Controller;

const MIB: i64 = 1 << 20;

/// One command line to fail: every word must be one of its arguments.
#[derive(Debug)]
struct Fault {
    words: Vec<String>,
    times: usize,
}

/// The `lvm` program, except for the command lines a test tells it to fail
/// (exit 5, a message naming the fault on stderr, nothing done).
#[derive(Debug)]
pub struct Faulty {
    inner: CliRunner,
    faults: Mutex<Vec<Fault>>,
}

impl Faulty {
    /// The next `times` commands holding all of `words` fail.
    pub fn fail(&self, words: &[&str], times: usize) {
        self.faults.lock().unwrap().push(Fault {
            words: words.iter().map(|w| (*w).to_owned()).collect(),
            times,
        });
    }

    /// Forget the faults not yet hit.
    pub fn clear(&self) {
        self.faults.lock().unwrap().clear();
    }
}

impl Runner for Faulty {
    fn name(&self) -> &'static str {
        "cli"
    }

    fn run(&self, args: &[String]) -> Result<RunOutput, LvmError> {
        let mut faults = self.faults.lock().unwrap();
        if let Some(f) = faults
            .iter_mut()
            .find(|f| f.times > 0 && f.words.iter().all(|w| args.contains(w)))
        {
            f.times -= 1;
            return Ok(RunOutput {
                code: 5,
                stdout: String::new(),
                stderr: format!("  injected failure of {}\n", f.words.join(" ")),
            });
        }
        drop(faults);
        self.inner.run(args)
    }
}

/// A Controller over a [`Faulty`] LVM, on a VG of its own.
pub struct Rig {
    pub env: SuiteEnv,
    pub lvm: Arc<LvmTool<Faulty>>,
    pub vg: TestVg,
    pub controller: ControllerService,
}

impl Rig {
    /// A thick class `fast` (the default) on a fresh VG, and with
    /// device-mapper a thin class `thin` on a 64 MiB pool `pool0` of it.
    pub fn new(env: SuiteEnv, test: &str) -> Rig {
        let options = env.options();
        let lvm = Arc::new(LvmTool::new(
            Faulty {
                inner: CliRunner::new(&options),
                faults: Mutex::new(Vec::new()),
            },
            options.clone(),
        ));
        let vg = TestVg::new(lvm.as_ref(), &env, test);
        let mut classes = format!(
            "[[device_class]]\nname = \"fast\"\nvolume_group = \"{}\"\ntype = \"thick\"\ndefault = true\n",
            vg.name
        );
        if env.activation {
            lvm.create_thin_pool(&vg.name, "pool0", 64 << 20)
                .expect("thin pool");
            classes.push_str(&format!(
                "[[device_class]]\nname = \"thin\"\nvolume_group = \"{}\"\ntype = \"thin\"\nthin_pool = \"pool0\"\n",
                vg.name
            ));
        }
        let config =
            NodeConfig::parse(&format!("{classes}[lvm]\nbackend = \"cli\"\n")).expect("config");
        let driver = Driver::new(config, "edge-1".into(), lvm.clone());
        Rig {
            env,
            lvm,
            vg,
            controller: ControllerService(Arc::new(driver)),
        }
    }

    /// The LVs of the test's VG, sorted, thin pool internals aside.
    pub fn lv_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .lvm
            .lvs(std::slice::from_ref(&self.vg.name))
            .expect("lvs")
            .into_iter()
            .map(|l| l.name)
            .filter(|n| n != "pool0")
            .collect();
        names.sort();
        names
    }

    /// The tags of one LV.
    pub fn tags(&self, name: &str) -> Vec<String> {
        self.lvm
            .lvs(std::slice::from_ref(&self.vg.name))
            .expect("lvs")
            .into_iter()
            .find(|l| l.name == name)
            .map(|l| l.tags)
            .unwrap_or_default()
    }

    /// `vg/name`, as LVM's command lines name an LV.
    pub fn object(&self, name: &str) -> String {
        format!("{}/{name}", self.vg.name)
    }

    async fn create(&self, req: csi::CreateVolumeRequest) -> Result<csi::Volume, tonic::Status> {
        self.controller
            .create_volume(Request::new(req))
            .await
            .map(|r| r.into_inner().volume.expect("a volume"))
    }
}

fn request(
    name: &str,
    bytes: i64,
    class: &str,
    source: Option<csi::volume_content_source::Type>,
) -> csi::CreateVolumeRequest {
    use csi::volume_capability::{AccessMode, AccessType, BlockVolume, access_mode::Mode};
    csi::CreateVolumeRequest {
        name: name.into(),
        capacity_range: Some(csi::CapacityRange {
            required_bytes: bytes,
            limit_bytes: 0,
        }),
        volume_capabilities: vec![csi::VolumeCapability {
            access_mode: Some(AccessMode {
                mode: Mode::SingleNodeWriter as i32,
            }),
            access_type: Some(AccessType::Block(BlockVolume {})),
        }],
        parameters: HashMap::from([("strata.io/device-class".into(), class.into())]),
        volume_content_source: source.map(|t| csi::VolumeContentSource { r#type: Some(t) }),
        ..Default::default()
    }
}

fn from_volume(id: &str) -> Option<csi::volume_content_source::Type> {
    Some(csi::volume_content_source::Type::Volume(
        csi::volume_content_source::VolumeSource {
            volume_id: id.into(),
        },
    ))
}

fn from_snapshot(id: &str) -> Option<csi::volume_content_source::Type> {
    Some(csi::volume_content_source::Type::Snapshot(
        csi::volume_content_source::SnapshotSource {
            snapshot_id: id.into(),
        },
    ))
}

/// Thick clones and restores: a failure at each step (the temporary
/// snapshot of the source, the last untag after the copy) leaves nothing; a
/// failure to remove what was made says so, UNAVAILABLE, and leaves the
/// volume tagged `filling` for DeleteVolume or gc. With device-mapper also:
/// a restore whose last step fails leaves nothing, and a clone retried
/// after its rollback succeeds.
pub async fn thick(env: SuiteEnv) {
    let rig = Rig::new(env, "rbthick");
    let faults = rig.lvm.runner();
    rig.create(request("pvc-src", 16 * MIB, "fast", None))
        .await
        .expect("source volume");
    let only_source = vec!["pvc-src".to_owned()];

    // The point-in-time snapshot of the source cannot be made.
    faults.fail(&["lvcreate", "-s", "pvc-c1.src"], 1);
    let e = rig
        .create(request("pvc-c1", 16 * MIB, "fast", from_volume("pvc-src")))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Internal, "{}", e.message());
    assert!(
        e.message()
            .contains("injected failure of lvcreate -s pvc-c1.src"),
        "{}",
        e.message()
    );
    assert_eq!(rig.lv_names(), only_source, "the clone's LV went too");

    // The last step fails, after the copy (without device-mapper: LVM
    // cannot make the temporary snapshot, an earlier failure).
    let untag = |name: &str| {
        ["lvchange", "--deltag", "strata.io/filling"]
            .map(str::to_owned)
            .into_iter()
            .chain([rig.object(name)])
            .collect::<Vec<String>>()
    };
    let words = untag("pvc-c2");
    faults.fail(&words.iter().map(String::as_str).collect::<Vec<_>>(), 1);
    let e = rig
        .create(request("pvc-c2", 16 * MIB, "fast", from_volume("pvc-src")))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Internal, "{}", e.message());
    assert_eq!(
        rig.lv_names(),
        only_source,
        "the clone and its temporary snapshot went"
    );
    faults.clear();

    // What was made cannot be removed: said, UNAVAILABLE (the provisioner
    // retries), and the volume is left whole, tagged filling.
    faults.fail(&["lvcreate", "-s", "pvc-c3.src"], 1);
    let target = rig.object("pvc-c3");
    faults.fail(&["lvremove", &target], 1);
    let e = rig
        .create(request("pvc-c3", 16 * MIB, "fast", from_volume("pvc-src")))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unavailable, "{}", e.message());
    assert!(
        e.message()
            .contains("injected failure of lvcreate -s pvc-c3.src")
            && e.message().contains(&format!(
                "what the request made is left (removing {target}: "
            ))
            && e.message().contains("injected failure of lvremove"),
        "{}",
        e.message()
    );
    assert_eq!(rig.lv_names(), ["pvc-c3", "pvc-src"]);
    assert!(
        rig.tags("pvc-c3").contains(&"strata.io/filling".to_owned()),
        "{:?}",
        rig.tags("pvc-c3")
    );
    rig.controller
        .delete_volume(Request::new(csi::DeleteVolumeRequest {
            volume_id: "pvc-c3".into(),
            ..Default::default()
        }))
        .await
        .expect("DeleteVolume of the half-made clone");
    assert_eq!(rig.lv_names(), only_source);

    if !rig.env.activation {
        // Without device-mapper LVM makes no copy-on-write snapshot: no
        // restore to try, and every clone above failed making its
        // temporary snapshot at the latest.
        return;
    }
    // A restore from a snapshot whose copy or last step fails.
    let snap = rig
        .controller
        .create_snapshot(Request::new(csi::CreateSnapshotRequest {
            source_volume_id: "pvc-src".into(),
            name: "snapshot-1".into(),
            ..Default::default()
        }))
        .await
        .expect("snapshot")
        .into_inner()
        .snapshot
        .expect("a snapshot");
    let words = untag("pvc-r1");
    faults.fail(&words.iter().map(String::as_str).collect::<Vec<_>>(), 1);
    let e = rig
        .create(request(
            "pvc-r1",
            16 * MIB,
            "fast",
            from_snapshot(&snap.snapshot_id),
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Internal, "{}", e.message());
    let mut with_snapshot = vec![snap.snapshot_id.clone(), "pvc-src".to_owned()];
    with_snapshot.sort();
    assert_eq!(rig.lv_names(), with_snapshot);

    // After a rollback the retry starts afresh, and succeeds.
    let v = rig
        .create(request("pvc-c2", 16 * MIB, "fast", from_volume("pvc-src")))
        .await
        .expect("the retried clone");
    assert_eq!(v.volume_id, "pvc-c2");
    assert!(!rig.tags("pvc-c2").contains(&"strata.io/filling".to_owned()));
}

/// Thin clones: a failure after the thin snapshot exists (growing it to the
/// size asked, reading it back) removes it.
pub async fn thin(env: SuiteEnv) {
    assert!(env.activation, "thin pools need device-mapper");
    let rig = Rig::new(env, "rbthin");
    let faults = rig.lvm.runner();
    rig.create(request("pvc-tsrc", 8 * MIB, "thin", None))
        .await
        .expect("thin source");
    let grow = rig.object("pvc-t1");
    faults.fail(&["lvextend", &grow], 1);
    let e = rig
        .create(request("pvc-t1", 16 * MIB, "thin", from_volume("pvc-tsrc")))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Internal, "{}", e.message());
    assert!(
        e.message().contains("injected failure of lvextend"),
        "{}",
        e.message()
    );
    assert_eq!(rig.lv_names(), ["pvc-tsrc"], "the thin snapshot went");
    // The thin snapshot is made, but the report of it fails.
    faults.fail(&["lvs", &rig.object("pvc-t2")], 1);
    let e = rig
        .create(request("pvc-t2", 8 * MIB, "thin", from_volume("pvc-tsrc")))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Internal, "{}", e.message());
    assert_eq!(rig.lv_names(), ["pvc-tsrc"]);
    faults.clear();
    rig.create(request("pvc-t1", 16 * MIB, "thin", from_volume("pvc-tsrc")))
        .await
        .expect("the retried thin clone");
    assert_eq!(rig.lv_names(), ["pvc-t1", "pvc-tsrc"]);
}
