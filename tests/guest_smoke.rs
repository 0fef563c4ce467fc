//! Real-kernel smoke test: assertions that only a kernel with device-mapper satisfies.
//!
//! This binary belongs to the real-kernel group: `scripts/real-kernel tests` runs it
//! inside a QEMU guest (lab/run-guest.sh) where `STRATA_GUEST=1`, `STRATA_BIN` and
//! `STRATA_SCRATCH` are set. The host group excludes every `guest_*` binary with a
//! nextest filter; run on the host by hand, these tests FAIL (there is no
//! device-mapper there), they never skip.

use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{SystemTime, UNIX_EPOCH};

const NOT_IN_GUEST: &str = "this test needs the real-kernel guest: run `scripts/real-kernel tests`";

fn env_path(name: &str) -> PathBuf {
    match std::env::var_os(name) {
        Some(v) if !v.is_empty() => PathBuf::from(v),
        _ => panic!("{name} is not set: {NOT_IN_GUEST}"),
    }
}

fn scratch() -> PathBuf {
    let dir = env_path("STRATA_SCRATCH");
    assert!(
        dir.is_dir(),
        "STRATA_SCRATCH={} is not a directory",
        dir.display()
    );
    dir
}

/// Runs a command and returns its output; panics with both streams when it fails.
fn run(cmd: &str, args: &[&str]) -> Output {
    let out = Command::new(cmd)
        .args(args)
        .env("LVM_SUPPRESS_FD_WARNINGS", "1")
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd}: {e}"));
    assert!(
        out.status.success(),
        "`{cmd} {}` failed ({}):\nstdout: {}\nstderr: {}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn stdout(cmd: &str, args: &[&str]) -> String {
    String::from_utf8_lossy(&run(cmd, args).stdout).into_owned()
}

/// Best-effort command for teardown (never panics: it runs while unwinding too).
fn quiet(cmd: &str, args: &[&str]) {
    let _ = Command::new(cmd)
        .args(args)
        .env("LVM_SUPPRESS_FD_WARNINGS", "1")
        .output();
}

fn unique(prefix: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{prefix}{}x{nanos:x}", std::process::id())
}

/// A loop device over a sparse file in $STRATA_SCRATCH with a VG on it; everything
/// (mounts, LVs, VG, PV, loop device, file) is torn down on drop, also after a failure.
struct LoopVg {
    vg: String,
    loopdev: String,
    backing: PathBuf,
    mounts: Vec<PathBuf>,
}

impl LoopVg {
    fn new(size_mib: u64) -> Self {
        let backing = scratch().join(format!("{}.img", unique("pv")));
        let f = fs::File::create(&backing).expect("create backing file");
        f.set_len(size_mib << 20).expect("size backing file");
        drop(f);
        let loopdev = stdout("losetup", &["--find", "--show", backing.to_str().unwrap()])
            .trim()
            .to_string();
        assert!(
            loopdev.starts_with("/dev/loop"),
            "losetup returned {loopdev:?}"
        );
        // constructed before pvcreate so that Drop cleans up after any failure below
        let me = LoopVg {
            vg: unique("smoke"),
            loopdev,
            backing,
            mounts: Vec::new(),
        };
        run("pvcreate", &["-y", &me.loopdev]);
        run("vgcreate", &["-y", &me.vg, &me.loopdev]);
        me
    }

    fn lv_path(&self, lv: &str) -> PathBuf {
        PathBuf::from(format!("/dev/{}/{lv}", self.vg))
    }

    fn mount(&mut self, dev: &Path, dir: &Path, fstype: &str) {
        fs::create_dir_all(dir).unwrap();
        run(
            "mount",
            &["-t", fstype, dev.to_str().unwrap(), dir.to_str().unwrap()],
        );
        self.mounts.push(dir.to_path_buf());
    }

    fn umount(&mut self, dir: &Path) {
        run("umount", &[dir.to_str().unwrap()]);
        self.mounts.retain(|m| m != dir);
    }

    /// The lv_attr string of vg/lv (e.g. "-wi-a-----").
    fn attr(&self, lv: &str) -> String {
        stdout(
            "lvs",
            &[
                "--noheadings",
                "-o",
                "lv_attr",
                &format!("{}/{lv}", self.vg),
            ],
        )
        .trim()
        .to_string()
    }
}

impl Drop for LoopVg {
    fn drop(&mut self) {
        for m in self.mounts.drain(..).rev() {
            quiet("umount", &[m.to_str().unwrap()]);
        }
        quiet("vgchange", &["-an", &self.vg]);
        quiet("vgremove", &["-ff", "-y", &self.vg]);
        quiet("pvremove", &["-ff", "-y", &self.loopdev]);
        quiet("losetup", &["-d", &self.loopdev]);
        let _ = fs::remove_file(&self.backing);
    }
}

/// Writes `len` bytes of a position-dependent pattern and returns them.
fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[i % 4] ^ seed)
        .collect()
}

fn write_synced(path: &Path, data: &[u8]) {
    let mut f = fs::File::create(path).expect("create file");
    f.write_all(data).expect("write");
    f.sync_all().expect("fsync");
}

fn read_all(path: &Path) -> Vec<u8> {
    let mut v = Vec::new();
    fs::File::open(path)
        .expect("open")
        .read_to_end(&mut v)
        .expect("read");
    v
}

#[test]
fn in_the_guest() {
    assert_eq!(
        std::env::var("STRATA_GUEST").as_deref(),
        Ok("1"),
        "STRATA_GUEST is not 1: {NOT_IN_GUEST}"
    );
}

#[test]
fn device_mapper_control_exists() {
    let ctl = Path::new("/dev/mapper/control");
    assert!(
        ctl.exists(),
        "{} is missing: this kernel has no device-mapper",
        ctl.display()
    );
    let misc = fs::read_to_string("/proc/misc").expect("read /proc/misc");
    assert!(
        misc.contains("device-mapper"),
        "/proc/misc lists no device-mapper:\n{misc}"
    );
}

#[test]
fn dmsetup_lists_thin_pool_and_linear_targets() {
    let targets = stdout("dmsetup", &["targets"]);
    let names: Vec<&str> = targets
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    for want in ["linear", "thin-pool", "thin", "snapshot", "striped"] {
        assert!(
            names.contains(&want),
            "dmsetup targets has no {want}:\n{targets}"
        );
    }
}

#[test]
fn strata_binary_runs() {
    let bin = env_path("STRATA_BIN");
    assert!(bin.is_file(), "STRATA_BIN={} does not exist", bin.display());
    let out = run(bin.to_str().unwrap(), &["--version"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("strata"),
        "`strata --version` printed {text:?}"
    );
}

#[test]
fn lvm_linear_lv_ext4_roundtrip() {
    let mut vg = LoopVg::new(256);
    run("lvcreate", &["-y", "-n", "lv0", "-L", "64M", &vg.vg]);
    let dev = vg.lv_path("lv0");
    assert!(
        dev.exists(),
        "{} did not appear after lvcreate",
        dev.display()
    );
    let mapper = PathBuf::from(format!("/dev/mapper/{}-lv0", vg.vg));
    assert!(mapper.exists(), "{} did not appear", mapper.display());
    let attr = vg.attr("lv0");
    assert_eq!(
        attr.chars().nth(4),
        Some('a'),
        "lv0 is not active: lv_attr {attr}"
    );
    let table = stdout("dmsetup", &["table", &format!("{}-lv0", vg.vg)]);
    assert!(
        table.contains(" linear "),
        "lv0 is not a linear dm device: {table}"
    );

    run("mkfs.ext4", &["-q", "-F", dev.to_str().unwrap()]);
    let mnt = scratch().join(format!("mnt-{}", vg.vg));
    vg.mount(&dev, &mnt, "ext4");
    let data = pattern(3 << 20, 0x5a);
    write_synced(&mnt.join("data.bin"), &data);
    vg.umount(&mnt);

    // read back through a fresh mount: the bytes came from the device, not the page cache
    vg.mount(&dev, &mnt, "ext4");
    assert!(
        read_all(&mnt.join("data.bin")) == data,
        "data read back differs from data written"
    );
    vg.umount(&mnt);
    run("e2fsck", &["-f", "-n", dev.to_str().unwrap()]);

    run("lvremove", &["-y", &format!("{}/lv0", vg.vg)]);
    assert!(
        !dev.exists(),
        "{} still exists after lvremove",
        dev.display()
    );
}

#[test]
fn lvm_thin_pool_and_thin_volume_activate() {
    let mut vg = LoopVg::new(512);
    run(
        "lvcreate",
        &[
            "-y",
            "--type",
            "thin-pool",
            "-L",
            "128M",
            "-n",
            "pool",
            &vg.vg,
        ],
    );
    run(
        "lvcreate",
        &[
            "-y",
            "-V",
            "1G",
            "--thin",
            "-n",
            "thin0",
            &format!("{}/pool", vg.vg),
        ],
    );
    let dev = vg.lv_path("thin0");
    assert!(dev.exists(), "{} did not appear", dev.display());
    let table = stdout("dmsetup", &["table", &format!("{}-thin0", vg.vg)]);
    assert!(
        table.contains(" thin "),
        "thin0 is not a dm thin device: {table}"
    );

    run("mkfs.ext4", &["-q", "-F", dev.to_str().unwrap()]);
    let mnt = scratch().join(format!("mnt-{}", vg.vg));
    vg.mount(&dev, &mnt, "ext4");
    let data = pattern(1 << 20, 0xa5);
    write_synced(&mnt.join("thin.bin"), &data);
    assert!(read_all(&mnt.join("thin.bin")) == data);
    vg.umount(&mnt);
    let used = stdout(
        "lvs",
        &[
            "--noheadings",
            "-o",
            "data_percent",
            &format!("{}/pool", vg.vg),
        ],
    );
    let used: f64 = used
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("data_percent {used:?}"));
    assert!(
        used > 0.0,
        "thin pool reports no data used after writing 1 MiB"
    );
}
