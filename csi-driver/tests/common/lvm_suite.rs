//! The conformance suite every [`Lvm`] backend passes: one body per behaviour,
//! generic over the backend, run by `lvm_conformance_tests!`.
//!
//! Each test makes its own VG (unique name) on its own sparse file behind its
//! own loop device, and a guard removes the VG, the PV label and the loop
//! device even when the test fails. Needs root, `losetup` and the `lvm`
//! program (teardown goes through it, not through the backend under test).
//!
//! Two environments:
//! - a host without device-mapper ([`SuiteEnv::without_device_mapper`]):
//!   `global{activation=0}`, metadata only; thin pools cannot be created there,
//!   which the thin test checks as such;
//! - a real kernel ([`SuiteEnv::with_device_mapper`], e.g. the QEMU guest):
//!   LVs are activated, `/dev/VG/LV` must exist, thin pools and volumes work.
//!
//! To reuse from another test binary (the guest's):
//! ```ignore
//! #[path = "../csi-driver/tests/common/lvm_suite.rs"]
//! mod lvm_suite;               // at the crate root: the macro names `crate::lvm_suite`
//! mod cli {
//!     use strata_csi::lvm::{cli::CliRunner, tool::LvmTool};
//!     crate::lvm_suite::lvm_conformance_tests!(
//!         crate::lvm_suite::SuiteEnv::with_device_mapper(),
//!         |o: &strata_csi::lvm::LvmOptions| LvmTool::new(CliRunner::new(o), o.clone())
//!     );
//! }
//! ```

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use strata_csi::lvm::{LvInfo, LvKind, Lvm, LvmError, LvmOptions, NewLv, NewSnapshot, VgInfo};

const MIB: u64 = 1 << 20;
/// LVM's default physical extent.
const EXTENT: u64 = 4 * MIB;
/// Backing file of each test's PV (sparse: costs nothing until written).
const DISK_BYTES: u64 = 256 * MIB;

/// Where the suite runs.
#[derive(Debug, Clone)]
pub struct SuiteEnv {
    /// device-mapper is there: LVs are activated, `/dev/VG/LV` appears, thin pools work.
    pub activation: bool,
    /// Directory for the sparse backing files.
    pub scratch: PathBuf,
    /// `--config` for the backend under test and for teardown.
    pub extra_config: Option<String>,
}

impl SuiteEnv {
    /// A host whose kernel has no device-mapper: metadata only. `None` (and a
    /// note on stderr) when not root, since loop devices and LVM need it.
    pub fn without_device_mapper() -> Option<SuiteEnv> {
        Self::if_root(SuiteEnv {
            activation: false,
            scratch: scratch_dir(),
            extra_config: Some("global{activation=0}".to_owned()),
        })
    }

    /// A kernel with device-mapper (the real-kernel guest).
    pub fn with_device_mapper() -> Option<SuiteEnv> {
        Self::if_root(SuiteEnv {
            activation: true,
            scratch: scratch_dir(),
            extra_config: None,
        })
    }

    /// Whichever of the two this kernel is. Asks /proc/misc: LVM itself
    /// creates /dev/mapper/control when it tries device-mapper, so that node
    /// exists on kernels without it too.
    pub fn detect() -> Option<SuiteEnv> {
        let misc = std::fs::read_to_string("/proc/misc").unwrap_or_default();
        if misc
            .lines()
            .any(|l| l.trim_end().ends_with(" device-mapper"))
        {
            Self::with_device_mapper()
        } else {
            Self::without_device_mapper()
        }
    }

    fn if_root(env: SuiteEnv) -> Option<SuiteEnv> {
        // SAFETY: geteuid cannot fail.
        // A run without root fails here rather than skipping: a green run
        // must mean the suite ran.
        assert!(
            unsafe { libc::geteuid() } == 0,
            "the LVM conformance suite needs root (loop devices, pvcreate)"
        );
        Some(env)
    }

    /// Options for the backend under test.
    pub fn options(&self) -> LvmOptions {
        LvmOptions {
            extra_config: self.extra_config.clone(),
            ..LvmOptions::default()
        }
    }

    /// Run the `lvm` program directly (for setup the trait has no method for, and teardown).
    pub fn lvm(&self, args: &[&str]) -> std::process::Output {
        let mut cmd = Command::new("lvm");
        cmd.arg(args[0]);
        if let Some(config) = &self.extra_config {
            cmd.args(["--config", config]);
        }
        cmd.args(&args[1..]).env("LVM_SUPPRESS_FD_WARNINGS", "1");
        cmd.output()
            .unwrap_or_else(|e| panic!("cannot run lvm: {e}"))
    }
}

fn scratch_dir() -> PathBuf {
    std::env::var_os("STRATA_SCRATCH")
        .filter(|s| !s.is_empty())
        .map_or_else(std::env::temp_dir, PathBuf::from)
}

/// A sparse file behind a loop device; detached and deleted on drop.
#[derive(Debug)]
pub struct LoopDisk {
    /// `/dev/loopN`.
    pub device: PathBuf,
    file: PathBuf,
}

impl LoopDisk {
    /// Create `bytes` of sparse file named after `name` and attach it.
    pub fn new(env: &SuiteEnv, name: &str, bytes: u64) -> LoopDisk {
        let file = env.scratch.join(format!("{name}.img"));
        std::fs::File::create(&file)
            .and_then(|f| f.set_len(bytes))
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", file.display()));
        let out = Command::new("losetup")
            .args(["-f", "--show"])
            .arg(&file)
            .output()
            .expect("run losetup");
        if !out.status.success() {
            let _ = std::fs::remove_file(&file);
            panic!(
                "losetup -f --show {} failed: {}",
                file.display(),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let device = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        LoopDisk { device, file }
    }
}

impl Drop for LoopDisk {
    fn drop(&mut self) {
        let _ = Command::new("losetup").arg("-d").arg(&self.device).status();
        let _ = std::fs::remove_file(&self.file);
    }
}

/// A VG of its own for one test, made through the backend under test;
/// removed (whatever it holds) on drop.
#[derive(Debug)]
pub struct TestVg {
    /// VG name, unique per process and test.
    pub name: String,
    env: SuiteEnv,
    // Dropped after Drop::drop has removed the VG.
    disk: LoopDisk,
}

static SERIAL: AtomicUsize = AtomicUsize::new(0);

impl TestVg {
    /// A fresh `DISK_BYTES` VG named after `test`.
    pub fn new<L: Lvm + ?Sized>(lvm: &L, env: &SuiteEnv, test: &str) -> TestVg {
        let n = SERIAL.fetch_add(1, Ordering::Relaxed);
        let name = format!(
            "strata_{}_{}_{}_{n}",
            lvm.backend(),
            std::process::id(),
            test
        );
        let disk = LoopDisk::new(env, &name, DISK_BYTES);
        let vg = TestVg {
            name,
            env: env.clone(),
            disk,
        };
        if let Err(e) = lvm.create_vg(&vg.name, std::slice::from_ref(&vg.disk.device)) {
            panic!("create_vg {} on {}: {e}", vg.name, vg.disk.device.display());
        }
        vg
    }

    /// The PV's device.
    pub fn device(&self) -> &Path {
        &self.disk.device
    }
}

impl Drop for TestVg {
    fn drop(&mut self) {
        if self.env.activation {
            let _ = self.env.lvm(&["vgchange", "-an", &self.name]);
        }
        let _ = self.env.lvm(&["vgremove", "-ff", "-y", &self.name]);
        let device = self.disk.device.to_string_lossy().into_owned();
        let _ = self.env.lvm(&["pvremove", "-ff", "-y", &device]);
    }
}

fn the_vg<L: Lvm + ?Sized>(lvm: &L, vg: &str) -> VgInfo {
    let mut vgs = lvm.vgs(&[vg.to_owned()]).expect("vgs");
    assert_eq!(vgs.len(), 1, "vgs {vg}: {vgs:?}");
    vgs.remove(0)
}

fn find_lv<L: Lvm + ?Sized>(lvm: &L, vg: &str, name: &str) -> Option<LvInfo> {
    lvm.lvs(&[vg.to_owned()])
        .expect("lvs")
        .into_iter()
        .find(|lv| lv.name == name)
}

fn thick(vg: &str, name: &str, size_bytes: u64, tags: &[&str]) -> NewLv {
    NewLv {
        vg: vg.to_owned(),
        name: name.to_owned(),
        size_bytes,
        kind: LvKind::Thick,
        tags: tags.iter().map(|t| (*t).to_owned()).collect(),
    }
}

/// With device-mapper: active, with a device node. Without: neither.
fn check_activation(env: &SuiteEnv, lv: &LvInfo) {
    assert_eq!(lv.path, format!("/dev/{}/{}", lv.vg, lv.name));
    if env.activation {
        assert!(lv.is_active(), "{lv:?} should be active");
        assert!(Path::new(&lv.path).exists(), "{} should exist", lv.path);
    } else {
        assert!(
            !lv.is_active(),
            "{lv:?} cannot be active without device-mapper"
        );
    }
}

const MISSING: &str = "strata_no_such_vg";

/// vgs: the named VGs that exist, the others silently absent.
pub fn vgs_existing_and_missing<L: Lvm + ?Sized>(lvm: &L, env: &SuiteEnv) {
    let vg = TestVg::new(lvm, env, "vgs");
    let found = lvm
        .vgs(&[MISSING.to_owned(), vg.name.clone(), format!("{MISSING}2")])
        .unwrap();
    assert_eq!(found.len(), 1, "{found:?}");
    let info = &found[0];
    assert_eq!(info.name, vg.name);
    assert_eq!(info.extent_bytes, EXTENT);
    assert_eq!(info.size_bytes % EXTENT, 0);
    // The PV label and metadata area take less than one extent.
    assert_eq!(info.size_bytes, DISK_BYTES - EXTENT, "{info:?}");
    assert_eq!(info.free_bytes, info.size_bytes, "a new VG is empty");
    assert!(lvm.vgs(&[MISSING.to_owned()]).unwrap().is_empty());
    assert!(lvm.vgs(&[]).unwrap().is_empty());
}

/// create_vg on a device that already holds a VG fails and says which.
pub fn create_vg_on_a_used_device_fails<L: Lvm + ?Sized>(lvm: &L, env: &SuiteEnv) {
    let vg = TestVg::new(lvm, env, "reuse");
    let other = format!("{}x", vg.name);
    let e = lvm
        .create_vg(&other, &[vg.device().to_path_buf()])
        .unwrap_err();
    assert!(matches!(e, LvmError::Failed { .. }), "{e:?}");
    assert!(
        e.to_string().contains(&vg.name),
        "should name the VG that holds the device: {e}"
    );
    assert!(lvm.vgs(&[other]).unwrap().is_empty());
}

/// A thick LV with tags: what create_lv returns is what lvs reports, the size
/// is rounded up to whole extents, the VG's free space shrinks by it, and
/// its creation time is the time of the call (LVM keeps whole seconds).
pub fn thick_lv_with_tags<L: Lvm + ?Sized>(lvm: &L, env: &SuiteEnv) {
    let vg = TestVg::new(lvm, env, "thick");
    let tags = ["strata", "pv=pvc-0d2c1f7e", "pvc_ns=default", "pvc=data-0"];
    let before = SystemTime::now() - Duration::from_secs(1);
    let lv = lvm
        .create_lv(&thick(&vg.name, "vol1", 5 * MIB + 1, &tags))
        .unwrap();
    let created = lv.created.expect("lvs reports when the LV was created");
    assert!(
        created >= before && created <= SystemTime::now(),
        "created {created:?}, the call began at {before:?} (less a second)"
    );
    assert_eq!(
        (lv.vg.as_str(), lv.name.as_str()),
        (vg.name.as_str(), "vol1")
    );
    assert_eq!(
        lv.size_bytes,
        2 * EXTENT,
        "5 MiB + 1 byte rounds up to two extents"
    );
    let got: BTreeSet<&str> = lv.tags.iter().map(String::as_str).collect();
    assert_eq!(
        got,
        tags.into_iter().collect(),
        "tags come back (in LVM's order)"
    );
    assert_eq!(lv.pool, None);
    assert!(!lv.is_thin_pool());
    assert!(lv.attr.starts_with('-'), "linear LV attr: {}", lv.attr);
    check_activation(env, &lv);

    let listed = find_lv(lvm, &vg.name, "vol1").expect("lvs lists the new LV");
    assert_eq!(listed, lv);
    let info = the_vg(lvm, &vg.name);
    assert_eq!(info.free_bytes, info.size_bytes - lv.size_bytes);

    // An exact multiple is taken as is; no tags is fine.
    let lv2 = lvm
        .create_lv(&thick(&vg.name, "vol2", 3 * EXTENT, &[]))
        .unwrap();
    assert_eq!(lv2.size_bytes, 3 * EXTENT);
    assert!(lv2.tags.is_empty());
    let all: Vec<String> = lvm
        .lvs(std::slice::from_ref(&vg.name))
        .unwrap()
        .into_iter()
        .map(|lv| lv.name)
        .collect();
    assert_eq!(all, ["vol1", "vol2"]);

    // The same name again is refused, naming the LV.
    let e = lvm
        .create_lv(&thick(&vg.name, "vol1", EXTENT, &[]))
        .unwrap_err();
    assert!(
        e.to_string().contains("vol1") && e.to_string().contains(&vg.name),
        "{e}"
    );
}

/// The inventory is exactly vgs + lvs: a VG with LVs, an empty VG (no row
/// in an lvs report) and a missing one among the names.
pub fn inventory_is_vgs_plus_lvs<L: Lvm + ?Sized>(lvm: &L, env: &SuiteEnv) {
    let full = TestVg::new(lvm, env, "invf");
    let empty = TestVg::new(lvm, env, "inve");
    lvm.create_lv(&thick(&full.name, "one", EXTENT, &["strata"]))
        .unwrap();
    lvm.create_lv(&thick(&full.name, "two", 2 * EXTENT, &[]))
        .unwrap();
    let asked = [full.name.clone(), MISSING.to_owned(), empty.name.clone()];
    let (mut vgs, mut lvs) = lvm.inventory(&asked).unwrap();
    let (mut want_vgs, mut want_lvs) = (lvm.vgs(&asked).unwrap(), lvm.lvs(&asked).unwrap());
    vgs.sort_by(|a, b| a.name.cmp(&b.name));
    want_vgs.sort_by(|a, b| a.name.cmp(&b.name));
    lvs.sort_by(|a, b| a.name.cmp(&b.name));
    want_lvs.sort_by(|a, b| a.name.cmp(&b.name));
    assert_eq!(vgs.len(), 2, "{vgs:?}");
    assert_eq!(vgs, want_vgs);
    assert_eq!(lvs.len(), 2, "{lvs:?}");
    assert_eq!(lvs, want_lvs);
}

/// lvs over several VGs in one call; a missing one among them is skipped.
pub fn lvs_of_several_vgs<L: Lvm + ?Sized>(lvm: &L, env: &SuiteEnv) {
    let a = TestVg::new(lvm, env, "lvsa");
    let b = TestVg::new(lvm, env, "lvsb");
    lvm.create_lv(&thick(&a.name, "in_a", EXTENT, &["strata"]))
        .unwrap();
    lvm.create_lv(&thick(&b.name, "in_b", EXTENT, &["strata"]))
        .unwrap();
    let asked = [a.name.clone(), MISSING.to_owned(), b.name.clone()];
    let mut got: Vec<(String, String)> = lvm
        .lvs(&asked)
        .unwrap()
        .into_iter()
        .map(|lv| (lv.vg, lv.name))
        .collect();
    got.sort();
    let mut want = vec![
        (a.name.clone(), "in_a".to_owned()),
        (b.name.clone(), "in_b".to_owned()),
    ];
    want.sort();
    assert_eq!(got, want);
    let mut vgs: Vec<String> = lvm
        .vgs(&asked)
        .unwrap()
        .into_iter()
        .map(|v| v.name)
        .collect();
    vgs.sort();
    let mut both = vec![a.name.clone(), b.name.clone()];
    both.sort();
    assert_eq!(vgs, both);
    assert!(lvm.lvs(&[MISSING.to_owned()]).unwrap().is_empty());
}

/// extend_lv grows to whole extents; a size it already has is no error.
pub fn extend_lv<L: Lvm + ?Sized>(lvm: &L, env: &SuiteEnv) {
    let vg = TestVg::new(lvm, env, "extend");
    lvm.create_lv(&thick(&vg.name, "grow", EXTENT, &["strata"]))
        .unwrap();
    let lv = lvm.extend_lv(&vg.name, "grow", 10 * MIB).unwrap();
    assert_eq!(
        lv.size_bytes,
        3 * EXTENT,
        "10 MiB rounds up to three extents"
    );
    assert_eq!(lv.tags, ["strata"], "tags survive");
    check_activation(env, &lv);
    assert_eq!(
        find_lv(lvm, &vg.name, "grow").unwrap().size_bytes,
        3 * EXTENT
    );
    // Retried or smaller requests leave it as it is.
    assert_eq!(
        lvm.extend_lv(&vg.name, "grow", 3 * EXTENT)
            .unwrap()
            .size_bytes,
        3 * EXTENT
    );
    assert_eq!(
        lvm.extend_lv(&vg.name, "grow", EXTENT).unwrap().size_bytes,
        3 * EXTENT
    );
}

/// remove_lv frees the space; removing again is LvNotFound.
pub fn remove_lv<L: Lvm + ?Sized>(lvm: &L, env: &SuiteEnv) {
    let vg = TestVg::new(lvm, env, "remove");
    lvm.create_lv(&thick(&vg.name, "gone", 2 * EXTENT, &["strata"]))
        .unwrap();
    lvm.create_lv(&thick(&vg.name, "kept", EXTENT, &[]))
        .unwrap();
    lvm.remove_lv(&vg.name, "gone").unwrap();
    assert!(find_lv(lvm, &vg.name, "gone").is_none());
    assert!(find_lv(lvm, &vg.name, "kept").is_some());
    let info = the_vg(lvm, &vg.name);
    assert_eq!(info.free_bytes, info.size_bytes - EXTENT);
    if env.activation {
        assert!(!Path::new(&format!("/dev/{}/gone", vg.name)).exists());
    }
    let e = lvm.remove_lv(&vg.name, "gone").unwrap_err();
    assert!(
        matches!(e, LvmError::LvNotFound { vg: ref v, ref name } if *v == vg.name && name == "gone"),
        "{e:?}"
    );
}

/// Every operation on an LV that is not there says LvNotFound, naming VG and LV.
pub fn missing_lv_is_lv_not_found<L: Lvm + ?Sized>(lvm: &L, env: &SuiteEnv) {
    let vg = TestVg::new(lvm, env, "nolv");
    let check = |what: &str, r: Result<(), LvmError>| {
        let e = r.expect_err(what);
        match &e {
            LvmError::LvNotFound { vg: v, name } => assert_eq!(
                (v.as_str(), name.as_str()),
                (vg.name.as_str(), "ghost"),
                "{what}"
            ),
            other => panic!("{what}: expected LvNotFound, got {other:?}"),
        }
        assert!(
            e.to_string().contains(&format!("{}/ghost", vg.name)),
            "{what}: {e}"
        );
    };
    check("remove", lvm.remove_lv(&vg.name, "ghost"));
    check("extend", lvm.extend_lv(&vg.name, "ghost", EXTENT).map(drop));
    check("activate", lvm.set_active(&vg.name, "ghost", true));
    check("deactivate", lvm.set_active(&vg.name, "ghost", false));
}

/// Every operation in a VG that is not there says VgNotFound, naming it.
pub fn missing_vg_is_vg_not_found<L: Lvm + ?Sized>(lvm: &L, _env: &SuiteEnv) {
    let check = |what: &str, e: LvmError| {
        assert!(
            matches!(e, LvmError::VgNotFound(ref v) if v == MISSING),
            "{what}: expected VgNotFound, got {e:?}"
        );
        assert!(e.to_string().contains(MISSING), "{what}: {e}");
    };
    check(
        "create_lv",
        lvm.create_lv(&thick(MISSING, "vol", EXTENT, &["strata"]))
            .unwrap_err(),
    );
    check("remove_lv", lvm.remove_lv(MISSING, "vol").unwrap_err());
    check(
        "extend_lv",
        lvm.extend_lv(MISSING, "vol", 2 * EXTENT).unwrap_err(),
    );
    check(
        "set_active",
        lvm.set_active(MISSING, "vol", true).unwrap_err(),
    );
}

/// More than the VG holds is InsufficientSpace (create and extend), and
/// nothing is left behind.
pub fn too_big_is_insufficient_space<L: Lvm + ?Sized>(lvm: &L, env: &SuiteEnv) {
    let vg = TestVg::new(lvm, env, "full");
    let check = |what: &str, e: LvmError| match &e {
        LvmError::InsufficientSpace { vg: v, message } => {
            assert_eq!(v, &vg.name, "{what}");
            assert!(!message.is_empty(), "{what}");
            assert!(e.to_string().contains(&vg.name), "{what}: {e}");
        }
        other => panic!("{what}: expected InsufficientSpace, got {other:?}"),
    };
    check(
        "create",
        lvm.create_lv(&thick(&vg.name, "huge", DISK_BYTES * 2, &[]))
            .unwrap_err(),
    );
    assert!(find_lv(lvm, &vg.name, "huge").is_none());
    let free = the_vg(lvm, &vg.name).free_bytes;
    lvm.create_lv(&thick(&vg.name, "small", EXTENT, &[]))
        .unwrap();
    check(
        "extend",
        lvm.extend_lv(&vg.name, "small", free + EXTENT).unwrap_err(),
    );
    assert_eq!(find_lv(lvm, &vg.name, "small").unwrap().size_bytes, EXTENT);
    // Exactly what is free fits.
    let rest = lvm
        .create_lv(&thick(&vg.name, "rest", free - EXTENT, &[]))
        .unwrap();
    assert_eq!(rest.size_bytes, free - EXTENT);
    assert_eq!(the_vg(lvm, &vg.name).free_bytes, 0);
}

/// A new LV never shows the filesystem that an earlier LV left on the same
/// extents (needs device-mapper to write one; without it only creation is checked).
pub fn recycled_extents_are_wiped<L: Lvm + ?Sized>(lvm: &L, env: &SuiteEnv) {
    let vg = TestVg::new(lvm, env, "wipe");
    let old = lvm
        .create_lv(&thick(&vg.name, "old", 2 * EXTENT, &[]))
        .unwrap();
    if !env.activation {
        return;
    }
    let mkfs = Command::new("mkfs.ext4")
        .args(["-q", "-F", &old.path])
        .output()
        .expect("run mkfs.ext4");
    assert!(
        mkfs.status.success(),
        "mkfs.ext4: {}",
        String::from_utf8_lossy(&mkfs.stderr)
    );
    assert!(has_ext_magic(&old.path), "mkfs.ext4 wrote no superblock?");
    lvm.remove_lv(&vg.name, "old").unwrap();
    // The VG was empty: the new LV gets the same extents.
    let new = lvm
        .create_lv(&thick(&vg.name, "new", 2 * EXTENT, &[]))
        .unwrap();
    assert!(
        !has_ext_magic(&new.path),
        "the old ext4 superblock shows through on {}",
        new.path
    );
}

/// ext2/3/4 superblock magic 0xEF53 at byte 1080.
fn has_ext_magic(device: &str) -> bool {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = std::fs::File::open(device).unwrap_or_else(|e| panic!("open {device}: {e}"));
    let mut magic = [0u8; 2];
    f.seek(SeekFrom::Start(1080))
        .and_then(|_| f.read_exact(&mut magic))
        .expect("read superblock");
    magic == [0x53, 0xEF]
}

/// set_active: with device-mapper the node comes and goes; without, both
/// directions are accepted and change nothing.
pub fn set_active<L: Lvm + ?Sized>(lvm: &L, env: &SuiteEnv) {
    let vg = TestVg::new(lvm, env, "active");
    let lv = lvm
        .create_lv(&thick(&vg.name, "toggle", EXTENT, &[]))
        .unwrap();
    check_activation(env, &lv);
    lvm.set_active(&vg.name, "toggle", false).unwrap();
    let off = find_lv(lvm, &vg.name, "toggle").unwrap();
    assert!(!off.is_active(), "{off:?}");
    if env.activation {
        assert!(
            !Path::new(&off.path).exists(),
            "{} should be gone",
            off.path
        );
    }
    lvm.set_active(&vg.name, "toggle", true).unwrap();
    check_activation(env, &find_lv(lvm, &vg.name, "toggle").unwrap());
}

/// Thin pool and thin volumes. Without device-mapper LVM refuses to create a
/// pool; the error must say so. A thin volume in a missing pool is
/// LvNotFound naming the pool either way.
pub fn thin_pool_and_volume<L: Lvm + ?Sized>(lvm: &L, env: &SuiteEnv) {
    let vg = TestVg::new(lvm, env, "thin");
    let thin = |name: &str, pool: &str, size_bytes: u64| NewLv {
        vg: vg.name.clone(),
        name: name.to_owned(),
        size_bytes,
        kind: LvKind::Thin {
            pool: pool.to_owned(),
        },
        tags: vec!["strata".to_owned(), format!("pv={name}")],
    };
    let e = lvm.create_lv(&thin("t0", "nopool", 8 * MIB)).unwrap_err();
    assert!(
        matches!(e, LvmError::LvNotFound { vg: ref v, ref name } if *v == vg.name && name == "nopool"),
        "thin LV in a missing pool: {e:?}"
    );

    if !env.activation {
        let e = lvm
            .create_thin_pool(&vg.name, "pool", 64 * MIB)
            .unwrap_err();
        assert!(matches!(e, LvmError::Failed { .. }), "{e:?}");
        let text = e.to_string();
        assert!(
            text.contains("device-mapper") && text.contains(&format!("{}/pool", vg.name)),
            "{text}"
        );
        assert!(
            find_lv(lvm, &vg.name, "pool").is_none(),
            "nothing left behind"
        );
        return;
    }

    let pool = lvm.create_thin_pool(&vg.name, "pool", 64 * MIB).unwrap();
    assert!(pool.is_thin_pool(), "{pool:?}");
    assert_eq!(pool.size_bytes, 64 * MIB);
    assert_eq!(pool.data_percent, Some(0.0));
    assert!(pool.metadata_percent.is_some());

    // Over-provisioned on purpose: thin volumes may exceed the pool.
    let t1 = lvm.create_lv(&thin("t1", "pool", 100 * MIB + 1)).unwrap();
    assert_eq!(t1.pool.as_deref(), Some("pool"));
    assert_eq!(
        t1.size_bytes,
        26 * EXTENT,
        "virtual size rounds to extents too"
    );
    assert!(t1.attr.starts_with('V'), "{}", t1.attr);
    assert_eq!(t1.data_percent, Some(0.0), "a new thin volume maps nothing");
    check_activation(env, &t1);
    let got: BTreeSet<&str> = t1.tags.iter().map(String::as_str).collect();
    assert_eq!(got, ["pv=t1", "strata"].into_iter().collect());

    let t1 = lvm.extend_lv(&vg.name, "t1", 200 * MIB).unwrap();
    assert_eq!(t1.size_bytes, 200 * MIB);

    let listed: Vec<String> = lvm
        .lvs(std::slice::from_ref(&vg.name))
        .unwrap()
        .into_iter()
        .map(|lv| lv.name)
        .collect();
    assert!(
        listed.contains(&"pool".to_owned()) && listed.contains(&"t1".to_owned()),
        "{listed:?}"
    );
    assert!(
        !listed
            .iter()
            .any(|n| n.starts_with('[') || n.contains("_tdata")),
        "hidden LVs stay hidden: {listed:?}"
    );

    lvm.remove_lv(&vg.name, "t1").unwrap();
    assert!(find_lv(lvm, &vg.name, "t1").is_none());
    lvm.remove_lv(&vg.name, "pool").unwrap();
    assert!(find_lv(lvm, &vg.name, "pool").is_none());
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| (*s).to_owned()).collect()
}

fn tag_set(lv: &LvInfo) -> BTreeSet<&str> {
    lv.tags.iter().map(String::as_str).collect()
}

fn write_at(device: &str, offset: u64, data: &[u8]) {
    use std::io::{Seek, SeekFrom, Write};
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .open(device)
        .unwrap_or_else(|e| panic!("open {device} for writing: {e}"));
    f.seek(SeekFrom::Start(offset))
        .and_then(|_| f.write_all(data))
        .and_then(|_| f.sync_all())
        .unwrap_or_else(|e| panic!("write {device}: {e}"));
}

fn read_at(device: &str, offset: u64, len: usize) -> Vec<u8> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = std::fs::File::open(device).unwrap_or_else(|e| panic!("open {device}: {e}"));
    let mut buf = vec![0; len];
    f.seek(SeekFrom::Start(offset))
        .and_then(|_| f.read_exact(&mut buf))
        .unwrap_or_else(|e| panic!("read {device}: {e}"));
    buf
}

/// change_tags adds and removes in one call and leaves other tags alone; a
/// retried change (adding a tag the LV has, removing one it lacks) is no
/// error and changes nothing; with nothing to change it returns the LV.
pub fn change_tags<L: Lvm + ?Sized>(lvm: &L, env: &SuiteEnv) {
    let vg = TestVg::new(lvm, env, "tags");
    let lv = lvm
        .create_lv(&thick(
            &vg.name,
            "vol",
            EXTENT,
            &["strata", "pv=vol", "filling"],
        ))
        .unwrap();
    let changed = lvm
        .change_tags(
            &vg.name,
            "vol",
            &strings(&["from=snap-1"]),
            &strings(&["filling"]),
        )
        .unwrap();
    assert_eq!(
        tag_set(&changed),
        ["from=snap-1", "pv=vol", "strata"].into_iter().collect()
    );
    assert_eq!(
        (changed.size_bytes, changed.attr.as_str()),
        (lv.size_bytes, lv.attr.as_str()),
        "only the tags change"
    );
    assert_eq!(find_lv(lvm, &vg.name, "vol").unwrap(), changed);
    let again = lvm
        .change_tags(
            &vg.name,
            "vol",
            &strings(&["from=snap-1"]),
            &strings(&["filling"]),
        )
        .unwrap();
    assert_eq!(again, changed, "a retried change is no error");
    assert_eq!(lvm.change_tags(&vg.name, "vol", &[], &[]).unwrap(), changed);
    let bare = lvm
        .change_tags(
            &vg.name,
            "vol",
            &[],
            &strings(&["strata", "pv=vol", "from=snap-1"]),
        )
        .unwrap();
    assert!(bare.tags.is_empty(), "{bare:?}");

    let e = lvm
        .change_tags(&vg.name, "ghost", &strings(&["strata"]), &[])
        .unwrap_err();
    assert!(
        matches!(e, LvmError::LvNotFound { ref name, .. } if name == "ghost"),
        "{e:?}"
    );
    let e = lvm
        .change_tags(&vg.name, "vol", &strings(&["two words"]), &[])
        .unwrap_err();
    assert!(matches!(e, LvmError::InvalidArgument { .. }), "{e:?}");
    assert!(find_lv(lvm, &vg.name, "vol").unwrap().tags.is_empty());
}

/// A copy-on-write snapshot of a thick LV: the exception store it was given
/// (rounded up to extents), read-only, the tags it was given, and the
/// origin's bytes of the moment it was cut while the origin moves on; its
/// origin is marked `o` until the snapshot goes. A missing origin is
/// LvNotFound naming it. Without device-mapper LVM refuses to make one,
/// saying so, and leaves nothing behind.
pub fn cow_snapshot<L: Lvm + ?Sized>(lvm: &L, env: &SuiteEnv) {
    let vg = TestVg::new(lvm, env, "cow");
    let origin = lvm
        .create_lv(&thick(
            &vg.name,
            "origin",
            4 * EXTENT,
            &["strata", "pv=origin"],
        ))
        .unwrap();
    let snapshot = |name: &str, of: &str, cow: u64, writable: bool| NewSnapshot {
        vg: vg.name.clone(),
        origin: of.to_owned(),
        name: name.to_owned(),
        cow_bytes: Some(cow),
        writable,
        tags: strings(&["strata/snapshot", "source=origin"]),
    };
    let e = lvm
        .create_snapshot(&snapshot("snap", "ghost", EXTENT, false))
        .unwrap_err();
    assert!(
        matches!(e, LvmError::LvNotFound { vg: ref v, ref name } if *v == vg.name && name == "ghost"),
        "a snapshot of a missing origin: {e:?}"
    );
    if !env.activation {
        let e = lvm
            .create_snapshot(&snapshot("snap", "origin", 5 * MIB, false))
            .unwrap_err();
        assert!(matches!(e, LvmError::Failed { .. }), "{e:?}");
        let text = e.to_string();
        assert!(
            text.contains("device-mapper") && text.contains(&format!("{}/snap", vg.name)),
            "{text}"
        );
        assert!(
            find_lv(lvm, &vg.name, "snap").is_none(),
            "nothing left behind"
        );
        return;
    }

    let before: Vec<u8> = (0..MIB as usize).map(|i| (i % 251) as u8).collect();
    write_at(&origin.path, 0, &before);
    write_at(&origin.path, 9 * MIB, &before);
    let free = the_vg(lvm, &vg.name).free_bytes;
    let s = lvm
        .create_snapshot(&snapshot("snap", "origin", 5 * MIB + 1, false))
        .unwrap();
    assert_eq!((s.vg.as_str(), s.name.as_str()), (vg.name.as_str(), "snap"));
    assert_eq!(s.size_bytes, 2 * EXTENT, "COW space rounds up to extents");
    assert_eq!(the_vg(lvm, &vg.name).free_bytes, free - 2 * EXTENT);
    assert!(
        s.attr.starts_with("sr"),
        "read-only COW snapshot: {}",
        s.attr
    );
    assert_eq!(s.pool, None);
    assert_eq!(
        tag_set(&s),
        ["source=origin", "strata/snapshot"].into_iter().collect(),
        "the tags given, not the origin's"
    );
    check_activation(env, &s);
    assert_eq!(find_lv(lvm, &vg.name, "snap").unwrap(), s);
    let o = find_lv(lvm, &vg.name, "origin").unwrap();
    assert!(o.attr.starts_with('o'), "origin attr: {}", o.attr);
    assert_eq!(o.tags, origin.tags, "the origin keeps its tags");

    let after = vec![0xA5u8; MIB as usize];
    write_at(&origin.path, 0, &after);
    write_at(&origin.path, 9 * MIB, &after);
    assert_eq!(read_at(&s.path, 0, MIB as usize), before);
    assert_eq!(read_at(&s.path, 9 * MIB, MIB as usize), before);
    assert_eq!(read_at(&origin.path, 0, MIB as usize), after);
    let written = std::fs::OpenOptions::new()
        .write(true)
        .open(&s.path)
        .and_then(|mut f| {
            use std::io::Write;
            f.write_all(&[0u8; 4096]).and_then(|_| f.sync_all())
        });
    assert!(written.is_err(), "a read-only snapshot took a write");

    // Writable (`-p rw`): a COW snapshot that can be written.
    let w = lvm
        .create_snapshot(&snapshot("snapw", "origin", EXTENT, true))
        .unwrap();
    assert!(w.attr.starts_with("sw"), "{}", w.attr);
    write_at(&w.path, 0, &[7u8; 4096]);
    assert_eq!(read_at(&origin.path, 0, 4096), after[..4096]);

    lvm.remove_lv(&vg.name, "snap").unwrap();
    lvm.remove_lv(&vg.name, "snapw").unwrap();
    let o = find_lv(lvm, &vg.name, "origin").unwrap();
    assert!(o.attr.starts_with('-'), "no longer an origin: {}", o.attr);
    assert_eq!(read_at(&origin.path, 0, MIB as usize), after);
}

/// Thin snapshots (needs device-mapper for the pool): a read-only one of a
/// thin volume is in the pool, as large as its origin, with the tags given
/// (LVM copies none of the origin's), keeps LVM's activation-skip flag
/// (inactive until activated with it ignored) and the origin's bytes of the
/// moment it was cut; a writable one of that snapshot (a restore) is
/// active, without the flag, independent of it.
pub fn thin_snapshot<L: Lvm + ?Sized>(lvm: &L, env: &SuiteEnv) {
    if !env.activation {
        // No pool without device-mapper: thin_pool_and_volume checks that refusal.
        return;
    }
    let vg = TestVg::new(lvm, env, "tsnap");
    lvm.create_thin_pool(&vg.name, "pool", 64 * MIB).unwrap();
    let t1 = lvm
        .create_lv(&NewLv {
            vg: vg.name.clone(),
            name: "t1".to_owned(),
            size_bytes: 16 * MIB,
            kind: LvKind::Thin {
                pool: "pool".to_owned(),
            },
            tags: strings(&["strata", "pv=t1"]),
        })
        .unwrap();
    let before: Vec<u8> = (0..MIB as usize).map(|i| (i % 241) as u8).collect();
    write_at(&t1.path, 2 * MIB, &before);
    let snapshot = |name: &str, of: &str, writable: bool, tags: &[&str]| NewSnapshot {
        vg: vg.name.clone(),
        origin: of.to_owned(),
        name: name.to_owned(),
        cow_bytes: None,
        writable,
        tags: strings(tags),
    };
    let s = lvm
        .create_snapshot(&snapshot(
            "s1",
            "t1",
            false,
            &["strata/snapshot", "source=t1"],
        ))
        .unwrap();
    assert_eq!(s.pool.as_deref(), Some("pool"));
    assert_eq!(s.size_bytes, t1.size_bytes);
    assert!(s.attr.starts_with("Vr"), "{}", s.attr);
    assert_eq!(
        s.attr.chars().nth(9),
        Some('k'),
        "activation skip: {}",
        s.attr
    );
    assert!(!s.is_active(), "{s:?}");
    assert_eq!(
        tag_set(&s),
        ["source=t1", "strata/snapshot"].into_iter().collect(),
        "the tags given, not the origin's"
    );
    assert_eq!(find_lv(lvm, &vg.name, "s1").unwrap(), s);

    let after = vec![0x5Au8; MIB as usize];
    write_at(&t1.path, 2 * MIB, &after);
    lvm.set_active(&vg.name, "s1", true).unwrap();
    let s = find_lv(lvm, &vg.name, "s1").unwrap();
    assert!(s.is_active(), "{s:?}");
    assert_eq!(read_at(&s.path, 2 * MIB, MIB as usize), before);

    let r = lvm
        .create_snapshot(&snapshot("r1", "s1", true, &["strata", "pv=r1"]))
        .unwrap();
    assert!(r.attr.starts_with("Vw"), "{}", r.attr);
    assert_ne!(r.attr.chars().nth(9), Some('k'), "{}", r.attr);
    check_activation(env, &r);
    assert_eq!(tag_set(&r), ["pv=r1", "strata"].into_iter().collect());
    assert_eq!(read_at(&r.path, 2 * MIB, MIB as usize), before);
    write_at(&r.path, 2 * MIB, &[1u8; 4096]);
    assert_eq!(read_at(&s.path, 2 * MIB, MIB as usize), before);
    assert_eq!(read_at(&t1.path, 2 * MIB, MIB as usize), after);

    // Thin LVs are independent: the origin goes, its snapshot and the restore stay.
    lvm.remove_lv(&vg.name, "t1").unwrap();
    assert_eq!(read_at(&r.path, 2 * MIB + 4096, 4096), before[4096..8192]);
    for lv in ["r1", "s1", "pool"] {
        lvm.remove_lv(&vg.name, lv).unwrap();
    }
    assert!(lvm.lvs(std::slice::from_ref(&vg.name)).unwrap().is_empty());
}

/// `#[test]` functions for one backend: `lvm_conformance_tests!(env, make)`
/// where `env` is an `Option<SuiteEnv>` expression (None skips) and `make`
/// turns `&LvmOptions` into the backend. Expand it in a module of a crate that
/// declares this file as `mod lvm_suite` at its root.
macro_rules! lvm_conformance_tests {
    ($env:expr, $make:expr) => {
        $crate::lvm_suite::lvm_conformance_tests!(@each $env, $make;
            vgs_existing_and_missing,
            create_vg_on_a_used_device_fails,
            thick_lv_with_tags,
            lvs_of_several_vgs,
            inventory_is_vgs_plus_lvs,
            extend_lv,
            remove_lv,
            missing_lv_is_lv_not_found,
            missing_vg_is_vg_not_found,
            too_big_is_insufficient_space,
            set_active,
            recycled_extents_are_wiped,
            thin_pool_and_volume,
            change_tags,
            cow_snapshot,
            thin_snapshot,
        );
    };
    (@each $env:expr, $make:expr; $($test:ident,)*) => {
        $(
            #[test]
            fn $test() {
                let Some(env) = $env else { return };
                let lvm = ($make)(&env.options());
                $crate::lvm_suite::$test(&lvm, &env);
            }
        )*
    };
}
pub(crate) use lvm_conformance_tests;
