//! Mounts: reading `/proc/self/mountinfo`, mounting filesystems, bind mounts
//! for publishing, and unmounting.

use std::io;
use std::path::{Path, PathBuf};

use crate::exec::{self, ExecError};

/// One line of `/proc/self/mountinfo`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountEntry {
    /// Device number `major:minor` of the mounted filesystem.
    pub dev: (u32, u32),
    /// Path inside the filesystem that is mounted (`/` for a whole filesystem).
    pub root: String,
    /// Where it is mounted.
    pub mount_point: PathBuf,
    /// Per-mount options (`rw`, `ro`, `nosuid`, …).
    pub options: Vec<String>,
    /// Filesystem type.
    pub fs_type: String,
    /// Mount source (device path for block filesystems).
    pub source: String,
}

impl MountEntry {
    /// True when mounted read-only.
    pub fn read_only(&self) -> bool {
        self.options.iter().any(|o| o == "ro")
    }
}

/// Undo mountinfo's octal escapes (`\040` for a space, …).
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && let Ok(v) =
                u8::from_str_radix(std::str::from_utf8(&b[i + 1..i + 4]).unwrap_or("x"), 8)
        {
            out.push(v);
            i += 4;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parse mountinfo text; malformed lines are skipped.
pub fn parse_mountinfo(text: &str) -> Vec<MountEntry> {
    text.lines()
        .filter_map(|line| {
            let (pre, post) = line.split_once(" - ")?;
            let f: Vec<&str> = pre.split(' ').collect();
            let p: Vec<&str> = post.split(' ').collect();
            if f.len() < 6 || p.len() < 2 {
                return None;
            }
            let (ma, mi) = f[2].split_once(':')?;
            Some(MountEntry {
                dev: (ma.parse().ok()?, mi.parse().ok()?),
                root: unescape(f[3]),
                mount_point: PathBuf::from(unescape(f[4])),
                options: f[5].split(',').map(str::to_owned).collect(),
                fs_type: p[0].to_owned(),
                source: unescape(p[1]),
            })
        })
        .collect()
}

/// The current mount table of this process's mount namespace.
pub fn mounts() -> io::Result<Vec<MountEntry>> {
    Ok(parse_mountinfo(&std::fs::read_to_string(
        "/proc/self/mountinfo",
    )?))
}

/// The topmost mount at exactly `path`, if any.
pub fn mount_at<'a>(table: &'a [MountEntry], path: &Path) -> Option<&'a MountEntry> {
    table.iter().rev().find(|m| m.mount_point == path)
}

/// The first mount that uses block device `dev`: a filesystem on it, or a bind
/// mount of its device node (how raw block volumes are published). A bind of a
/// node shows the node's path inside devtmpfs as its root (`/dm-3` with udev,
/// `/mapper/vg-lv` without), so the node is looked up under `dev_dir` and
/// compared by device number, whatever its name.
pub fn user_of<'a>(
    table: &'a [MountEntry],
    dev: (u32, u32),
    dev_dir: &Path,
) -> Option<&'a MountEntry> {
    table.iter().find(|m| {
        m.dev == dev
            || (m.fs_type == "devtmpfs"
                && m.root != "/"
                && device_number(&dev_dir.join(m.root.trim_start_matches('/')))
                    .is_ok_and(|d| d == dev))
    })
}

/// `major:minor` of a block device node.
pub fn device_number(dev: &Path) -> io::Result<(u32, u32)> {
    use std::os::unix::fs::MetadataExt;
    let rdev = std::fs::metadata(dev)?.rdev();
    Ok((libc::major(rdev), libc::minor(rdev)))
}

/// Mount a filesystem: `mount -t fs -o opts dev target`.
pub fn mount_fs(
    dev: &Path,
    target: &Path,
    fs: &str,
    flags: &[String],
    read_only: bool,
) -> Result<(), ExecError> {
    let mut opts: Vec<&str> = flags.iter().map(String::as_str).collect();
    if read_only {
        opts.push("ro");
    }
    let opts = opts.join(",");
    let (dev, target) = (dev.to_string_lossy(), target.to_string_lossy());
    let mut args = vec!["-t", fs];
    if !opts.is_empty() {
        args.extend(["-o", &opts]);
    }
    args.extend([&*dev, &*target]);
    exec::run("mount", &args).map(drop)
}

/// Bind-mount `source` onto `target`, read-only when asked (a bind mount needs a
/// second remount to become read-only).
pub fn bind(
    source: &Path,
    target: &Path,
    read_only: bool,
    flags: &[String],
) -> Result<(), ExecError> {
    let (s, t) = (source.to_string_lossy(), target.to_string_lossy());
    exec::run("mount", &["--bind", &s, &t])?;
    let mut opts = vec!["remount", "bind"];
    opts.extend(
        flags
            .iter()
            .map(String::as_str)
            .filter(|f| *f != "bind" && *f != "ro" && *f != "rw"),
    );
    if read_only {
        opts.push("ro");
    }
    if opts.len() > 2
        && let Err(e) = exec::run("mount", &["-o", &opts.join(","), &t])
    {
        // Never leave a writable bind behind when read-only was asked for.
        let _ = unmount(target);
        return Err(e);
    }
    Ok(())
}

/// Unmount `target` (not lazily: a busy mount is an error the caller must see).
pub fn unmount(target: &Path) -> io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(target.as_os_str().as_bytes()).map_err(io::Error::other)?;
    // SAFETY: c is a valid NUL-terminated path for the duration of the call.
    if unsafe { libc::umount2(c.as_ptr(), 0) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
22 1 253:0 / / rw,relatime shared:1 - ext4 /dev/vda rw
95 22 253:3 / /var/lib/kubelet/plugins/kubernetes.io/csi/strata.io/abc/globalmount rw,relatime shared:50 - xfs /dev/mapper/vg1-pvc--1 rw,attr2
96 22 253:3 / /var/lib/kubelet/pods/p/volumes/kubernetes.io~csi/pvc-1/mount ro,relatime shared:50 - xfs /dev/mapper/vg1-pvc--1 rw,attr2
97 22 0:5 /dm-4 /var/lib/kubelet/pods/p/volumeDevices/x/pvc-2 rw,nosuid shared:2 - devtmpfs udev rw
98 22 0:40 / /mnt/with\\040space rw shared:3 - tmpfs tmpfs rw
";

    #[test]
    fn parses_mountinfo() {
        let t = parse_mountinfo(SAMPLE);
        assert_eq!(t.len(), 5);
        assert_eq!(t[1].dev, (253, 3));
        assert_eq!(t[1].fs_type, "xfs");
        assert_eq!(t[1].source, "/dev/mapper/vg1-pvc--1");
        assert!(!t[1].read_only() && t[2].read_only());
        assert_eq!(t[3].root, "/dm-4");
        assert_eq!(t[4].mount_point, PathBuf::from("/mnt/with space"));
        let m = mount_at(
            &t,
            Path::new("/var/lib/kubelet/pods/p/volumes/kubernetes.io~csi/pvc-1/mount"),
        )
        .unwrap();
        assert_eq!(m.dev, (253, 3));
        assert!(mount_at(&t, Path::new("/nope")).is_none());
    }

    #[test]
    fn finds_filesystem_and_device_node_users() {
        let null = device_number(Path::new("/dev/null")).unwrap();
        let t = parse_mountinfo(
            "30 22 0:5 /zero /pods/a/dev rw shared:2 - devtmpfs udev rw\n\
             31 22 0:5 /null /pods/b/dev rw shared:2 - devtmpfs udev rw\n\
             32 22 253:3 / /staging rw shared:9 - ext4 /dev/mapper/vg-lv rw\n",
        );
        assert_eq!(
            user_of(&t, null, Path::new("/dev")).unwrap().mount_point,
            PathBuf::from("/pods/b/dev")
        );
        assert_eq!(
            user_of(&t, (253, 3), Path::new("/dev"))
                .unwrap()
                .mount_point,
            PathBuf::from("/staging")
        );
        assert!(user_of(&t, (253, 4), Path::new("/dev")).is_none());
    }

    #[test]
    fn skips_garbage() {
        assert!(parse_mountinfo("not a mountinfo line\n1 2 x / / rw - a b c\n").is_empty());
    }
}
