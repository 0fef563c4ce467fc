//! Filesystems on volumes: detect what is there, format only what is empty,
//! grow online, and report usage.

use std::path::Path;

use crate::exec::{self, ExecError};
use crate::validate::FsType;

/// What `blkid` found on a device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Content {
    /// No signature at all: safe to format.
    Empty,
    /// A signature of this type (a filesystem, or something else such as `LVM2_member`).
    Signature(String),
}

/// Probe a device's first signature with `blkid -p` (bypassing blkid's cache).
pub fn probe(dev: &Path) -> Result<Content, ExecError> {
    let d = dev.to_string_lossy();
    match exec::run("blkid", &["-p", "-o", "value", "-s", "TYPE", &d]) {
        Ok(out) => {
            let t = out.trim();
            Ok(if t.is_empty() {
                Content::Empty
            } else {
                Content::Signature(t.to_owned())
            })
        }
        // blkid exits 2 when it finds nothing it knows.
        Err(e) if e.exit_code() == Some(2) => Ok(Content::Empty),
        Err(e) => Err(e),
    }
}

/// Make a filesystem on an empty device. Neither tool is forced (`-F`/`-f`):
/// each refuses to overwrite a signature it finds, a second guard behind
/// [`probe`].
pub fn mkfs(dev: &Path, fs: FsType) -> Result<(), ExecError> {
    let d = dev.to_string_lossy();
    match fs {
        FsType::Ext4 => exec::run("mkfs.ext4", &["-q", &d]),
        FsType::Xfs => exec::run("mkfs.xfs", &["-q", &d]),
    }
    .map(drop)
}

/// Grow a mounted filesystem to fill its device.
pub fn grow(dev: &Path, mount_point: &Path, fs: FsType) -> Result<(), ExecError> {
    match fs {
        FsType::Ext4 => exec::run("resize2fs", &[&dev.to_string_lossy()]),
        FsType::Xfs => exec::run("xfs_growfs", &[&mount_point.to_string_lossy()]),
    }
    .map(drop)
}

/// Usage of a mounted filesystem.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    /// Total bytes.
    pub total_bytes: u64,
    /// Bytes available to unprivileged users.
    pub available_bytes: u64,
    /// Bytes in use.
    pub used_bytes: u64,
    /// Total inodes.
    pub total_inodes: u64,
    /// Free inodes.
    pub free_inodes: u64,
    /// Inodes in use.
    pub used_inodes: u64,
}

/// `statvfs` of a path.
pub fn usage(path: &Path) -> std::io::Result<Usage> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).map_err(std::io::Error::other)?;
    // SAFETY: statvfs is plain data; zeroed is a valid initial value.
    let mut s: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: c is a valid path and s a valid out-pointer for the call.
    if unsafe { libc::statvfs(c.as_ptr(), &mut s) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let f = s.f_frsize as u64;
    let total = s.f_blocks as u64 * f;
    let free = s.f_bfree as u64 * f;
    Ok(Usage {
        total_bytes: total,
        available_bytes: s.f_bavail as u64 * f,
        used_bytes: total.saturating_sub(free),
        total_inodes: s.f_files as u64,
        free_inodes: s.f_ffree as u64,
        used_inodes: (s.f_files as u64).saturating_sub(s.f_ffree as u64),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_of_a_directory() {
        let d = tempfile::tempdir().unwrap();
        let u = usage(d.path()).unwrap();
        assert!(
            u.total_bytes > 0
                && u.used_bytes <= u.total_bytes
                && u.available_bytes <= u.total_bytes
        );
        assert!(usage(Path::new("/definitely/not/here")).is_err());
    }

    #[test]
    fn probe_tells_empty_from_formatted() {
        let d = tempfile::tempdir().unwrap();
        let img = d.path().join("img");
        std::fs::File::create(&img)
            .unwrap()
            .set_len(40 << 20)
            .unwrap();
        assert_eq!(probe(&img).unwrap(), Content::Empty);
        mkfs(&img, FsType::Ext4).unwrap();
        assert_eq!(probe(&img).unwrap(), Content::Signature("ext4".into()));
        // A second mkfs must refuse: nothing is ever formatted twice.
        assert!(mkfs(&img, FsType::Xfs).is_err());
        assert_eq!(probe(&img).unwrap(), Content::Signature("ext4".into()));
    }
}
