//! A volume group on a sparse file behind a loop device: how `strata up` gives
//! a laptop or a single server a device class without a spare disk.

use std::path::{Path, PathBuf};

use crate::exec::{self, ExecError};
use crate::lvm::{Lvm, LvmError};

/// Why the loop-backed VG could not be prepared.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoopVgError {
    /// The backing file could not be created.
    #[error("cannot create {path}: {source}")]
    File {
        /// Backing file.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// `losetup` failed.
    #[error("loop device for {path}: {source}")]
    Loop {
        /// Backing file.
        path: PathBuf,
        /// Cause.
        #[source]
        source: ExecError,
    },
    /// LVM failed.
    #[error(transparent)]
    Lvm(#[from] LvmError),
}

/// True when this kernel offers device-mapper, so LVs can be activated.
/// (`/dev/mapper/control` alone proves nothing: LVM creates that node even
/// where the kernel has no driver behind it.)
pub fn device_mapper_available() -> bool {
    std::fs::read_to_string("/proc/misc")
        .is_ok_and(|m| m.lines().any(|l| l.trim_end().ends_with(" device-mapper")))
}

/// Make sure `vg` exists on `file` (created sparse with `size_bytes` if new),
/// attached to a loop device. Returns the loop device. Reuses an existing
/// attachment and an existing VG; never wipes anything.
pub fn ensure(
    lvm: &dyn Lvm,
    file: &Path,
    size_bytes: u64,
    vg: &str,
) -> Result<String, LoopVgError> {
    if let Some(dir) = file.parent() {
        std::fs::create_dir_all(dir).map_err(|source| LoopVgError::File {
            path: dir.to_owned(),
            source,
        })?;
    }
    if !file.exists() {
        let f = std::fs::File::create(file).map_err(|source| LoopVgError::File {
            path: file.to_owned(),
            source,
        })?;
        f.set_len(size_bytes).map_err(|source| LoopVgError::File {
            path: file.to_owned(),
            source,
        })?;
    }
    let f = file.to_string_lossy();
    let loop_err = |source| LoopVgError::Loop {
        path: file.to_owned(),
        source,
    };
    let attached = exec::run("losetup", &["-j", &f, "-O", "NAME", "-n"]).map_err(loop_err)?;
    let dev = match attached
        .lines()
        .next()
        .map(str::trim)
        .filter(|l| !l.is_empty())
    {
        Some(d) => d.to_owned(),
        None => exec::run("losetup", &["-f", "--show", &f])
            .map_err(loop_err)?
            .trim()
            .to_owned(),
    };
    if lvm.vgs(&[vg.to_owned()])?.is_empty() {
        lvm.create_vg(vg, &[PathBuf::from(&dev)])?;
    }
    Ok(dev)
}
