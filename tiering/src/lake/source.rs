//! The local side of an upload: opening the file to send without following
//! a symlink, checking on the open file that it is still the version the
//! caller hashed, and reading a small file whole in one blocking call.

use std::fs::{File, Metadata, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::Arc;

use md5::Md5;
use sha2::{Digest, Sha256};

use super::LakeError;

/// A check of the file about to be uploaded, made on its open descriptor
/// (`fstat`) before any byte is sent: `Err(reason)` refuses the upload as
/// [`LakeError::SourceChanged`]. The mover uses it to send only the version
/// (size, mtime, inode, device, ctime) it recorded.
pub type VersionCheck = Arc<dyn Fn(&Metadata) -> Result<(), String> + Send + Sync>;

/// Opens the file to upload, on a blocking thread, once per upload. The
/// mover's opens it beneath the volume's root descriptor; [`Lake::upload`]
/// opens the path it is given without following a symlink at its end.
///
/// [`Lake::upload`]: super::Lake::upload
pub type Opener = Arc<dyn Fn() -> io::Result<File> + Send + Sync>;

/// An [`Opener`] of `path` (see [`open_read`]).
pub(super) fn path_opener(path: &Path) -> Opener {
    let path = path.to_path_buf();
    Arc::new(move || open_read(&path))
}

/// Opens a file for reading without following a symlink at its last
/// component, without blocking on a fifo swapped in, and without touching its
/// atime where the kernel allows (`O_NOATIME` needs ownership or `CAP_FOWNER`).
pub(crate) fn open_read(path: &Path) -> io::Result<File> {
    let base = libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC;
    let open = |flags| OpenOptions::new().read(true).custom_flags(flags).open(path);
    match open(base | libc::O_NOATIME) {
        Err(e) if e.raw_os_error() == Some(libc::EPERM) => open(base),
        other => other,
    }
}

/// Opens `path` for an upload (with `open`) and runs `check` on what is
/// open: a symlink or anything but a regular file at the path is a changed
/// source, as is a version `check` refuses.
pub(super) fn open_source(
    path: &Path,
    open: &Opener,
    check: Option<&VersionCheck>,
) -> Result<File, LakeError> {
    let file = match open() {
        Ok(f) => f,
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            return Err(changed(path, "replaced by a symlink".into()));
        }
        Err(e) => return Err(LakeError::io(path, "open", e)),
    };
    let meta = file
        .metadata()
        .map_err(|e| LakeError::io(path, "stat", e))?;
    if !meta.is_file() {
        return Err(changed(path, "no longer a regular file".into()));
    }
    if let Some(check) = check {
        check(&meta).map_err(|reason| changed(path, reason))?;
    }
    Ok(file)
}

/// A small file read whole for a single-request upload: its bytes, checked
/// against the size and SHA-256 the caller hashed, and their MD5 (what an S3
/// server's ETag of the object will be). One blocking call: open, `fstat`,
/// read, both digests.
pub(super) struct WholeFile {
    pub(super) data: Vec<u8>,
    pub(super) md5: [u8; 16],
}

pub(super) fn read_whole(
    path: &Path,
    open: &Opener,
    size: u64,
    sha256: &[u8; 32],
    check: Option<&VersionCheck>,
) -> Result<WholeFile, LakeError> {
    let mut file = open_source(path, open, check)?;
    // One byte more than expected finds a grown file's excess in the same read.
    let want = usize::try_from(size)
        .unwrap_or(usize::MAX)
        .saturating_add(1);
    let mut data = Vec::with_capacity(want);
    (&mut file)
        .take(want as u64)
        .read_to_end(&mut data)
        .map_err(|e| LakeError::io(path, "read", e))?;
    super::check_source(
        path,
        data.len() as u64,
        &Sha256::digest(&data).into(),
        size,
        sha256,
    )?;
    let md5 = Md5::digest(&data).into();
    Ok(WholeFile { data, md5 })
}

fn changed(path: &Path, reason: String) -> LakeError {
    LakeError::SourceChanged {
        path: path.to_path_buf(),
        reason,
    }
}
