//! Freeing the local bytes of an archived file, only if it is still the
//! version that was hashed and nobody has it open.
//!
//! The steps, each safe to crash after:
//! 1. open the path (no symlink follow) and take a write lease on that fd:
//!    the kernel grants it only if no other descriptor for the file is open
//!    anywhere (`F_SETLEASE F_WRLCK` on an `O_RDONLY` fd), so a writer that
//!    holds the file open but idle is noticed;
//! 2. compare size, mtime and inode with the record (after the lease: a write
//!    that slipped in before it shows in the mtime);
//! 3. rename the path to a private name `.<name>.strata-release.<move>`: an
//!    atomic step that takes whatever is at the path at that instant;
//! 4. check the set-aside file is the inode checked in 2 (else put it back),
//!    unlink it, fsync the directory.
//!
//! A crash after 3 leaves the set-aside file, and the record `Archived`; the
//! next attempt finds no file at the path and removes the set-aside copy if it
//! is the recorded inode.
//!
//! While the lease is held (a few syscalls) an `open` of the file by another
//! process waits for it. The kernel signals the lease holder when that
//! happens; the signal is set to `SIGURG`, whose default action is to be
//! ignored, because the default `SIGIO` would end the process. Where leases
//! are refused as unsupported (`EINVAL`, `ENOLCK`, `EACCES`, `EPERM`: some
//! network and FUSE filesystems, an unprivileged process that does not own
//! the file), the release relies on step 2 alone, as the catalog requires.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use super::local::{
    Stamp, Temp, fsync_dir, lstat, open_read, parent, rename_aside, rename_noreplace, temp_path,
};

/// What a release attempt did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Release {
    /// The file was removed.
    Removed,
    /// Nothing was at the path (removed before a crash, or by someone else):
    /// the lake copy is all there is.
    Gone,
    /// The file is another version than the one hashed: it stays.
    Changed {
        field: &'static str,
        recorded: String,
        observed: String,
    },
    /// Someone has the file open: it stays until a later attempt.
    Busy,
}

/// Releases the file at `path` if it is still the version `recorded`.
pub(crate) fn release(
    path: &Path,
    recorded: &Stamp,
    move_id: u64,
    use_lease: bool,
) -> io::Result<Release> {
    let aside = temp_path(path, Temp::Release, move_id);
    let file = match open_read(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            finish_aside(&aside, recorded)?;
            return Ok(Release::Gone);
        }
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => return Ok(changed_type("symlink")),
        Err(e) => return Err(e),
    };
    let _lease = if use_lease {
        match Lease::take(&file)? {
            Some(l) => Some(l),
            None => return Ok(Release::Busy),
        }
    } else {
        None
    };
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Ok(changed_type("not a regular file"));
    }
    let now = Stamp::of(&meta);
    if let Some((field, recorded, observed)) = recorded.differs(&now) {
        return Ok(Release::Changed {
            field,
            recorded,
            observed,
        });
    }
    match rename_aside(path, &aside) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            // Left by an attempt that crashed, and the path was filled again
            // since: the set-aside copy is of this archived move; drop it.
            std::fs::remove_file(&aside)?;
            rename_aside(path, &aside)?;
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Release::Gone),
        Err(e) => return Err(e),
    }
    let moved = lstat(&aside)?;
    let ours = moved
        .as_ref()
        .is_some_and(|m| m.ino() == meta.ino() && m.dev() == meta.dev());
    if !ours {
        // Another file was renamed over the path after the checks: put it back.
        if moved.is_some()
            && let Err(e) = rename_noreplace(&aside, path)
        {
            tracing::error!(path = %path.display(), aside = %aside.display(), error = %e,
                "release: a file renamed over the path could not be put back; it is kept under the set-aside name");
        }
        return Ok(Release::Changed {
            field: "ino",
            recorded: meta.ino().to_string(),
            observed: moved.map_or_else(|| "none".to_owned(), |m| m.ino().to_string()),
        });
    }
    std::fs::remove_file(&aside)?;
    fsync_dir(parent(path))?;
    Ok(Release::Removed)
}

/// Removes a set-aside copy left by a crashed release, if it is the recorded version.
fn finish_aside(aside: &Path, recorded: &Stamp) -> io::Result<()> {
    let Some(m) = lstat(aside)? else {
        return Ok(());
    };
    if m.is_file() && Stamp::of(&m).differs(recorded).is_none() {
        std::fs::remove_file(aside)?;
        fsync_dir(parent(aside))?;
    }
    Ok(())
}

fn changed_type(observed: &str) -> Release {
    Release::Changed {
        field: "type",
        recorded: "regular file".to_owned(),
        observed: observed.to_owned(),
    }
}

/// `fcntl(F_SETSIG)` on Linux (<fcntl.h>, `__F_SETSIG`); the libc crate
/// does not export it for every target.
const F_SETSIG: libc::c_int = 10;

/// A write lease on an open file, given up on drop.
struct Lease<'a> {
    file: &'a File,
}

impl<'a> Lease<'a> {
    /// `Ok(None)`: someone else has the file open. Leases refused as
    /// unsupported give a `Lease` that holds nothing (logged once).
    fn take(file: &'a File) -> io::Result<Option<Self>> {
        static UNSUPPORTED_LOGGED: AtomicBool = AtomicBool::new(false);
        let fd = file.as_raw_fd();
        // SAFETY: fcntl on a descriptor we own, with integer arguments only.
        let r = unsafe { libc::fcntl(fd, F_SETSIG, libc::SIGURG) };
        if r == -1 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: as above.
        let r = unsafe { libc::fcntl(fd, libc::F_SETLEASE, libc::F_WRLCK) };
        if r == 0 {
            return Ok(Some(Self { file }));
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EAGAIN) => Ok(None),
            Some(libc::EINVAL | libc::ENOLCK | libc::EACCES | libc::EPERM | libc::ENOSYS) => {
                if !UNSUPPORTED_LOGGED.swap(true, Ordering::Relaxed) {
                    tracing::info!(error = %e, "release: file leases unavailable here; releasing on the size/mtime/inode check alone");
                }
                Ok(Some(Self { file }))
            }
            _ => Err(e),
        }
    }
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        // SAFETY: as above; failing to unlock is harmless (close drops it).
        unsafe { libc::fcntl(self.file.as_raw_fd(), libc::F_SETLEASE, libc::F_UNLCK) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup() -> (tempfile::TempDir, std::path::PathBuf, Stamp) {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, b"archived").unwrap();
        let s = Stamp::of(&std::fs::metadata(&p).unwrap());
        (dir, p, s)
    }

    #[test]
    fn mover_release_removes_an_unchanged_file() {
        let (_d, p, s) = setup();
        assert_eq!(release(&p, &s, 1, true).unwrap(), Release::Removed);
        assert!(!p.exists());
        assert!(!temp_path(&p, Temp::Release, 1).exists());
        assert_eq!(release(&p, &s, 1, true).unwrap(), Release::Gone);
    }

    #[test]
    fn mover_release_keeps_a_changed_file() {
        let (_d, p, s) = setup();
        std::fs::write(&p, b"archived and more").unwrap();
        let r = release(&p, &s, 1, true).unwrap();
        assert!(matches!(r, Release::Changed { field: "size", .. }), "{r:?}");
        assert_eq!(std::fs::read(&p).unwrap(), b"archived and more");
    }

    #[test]
    fn mover_release_keeps_an_open_file() {
        let (_d, p, s) = setup();
        let writer = std::fs::OpenOptions::new().append(true).open(&p).unwrap();
        let r = release(&p, &s, 1, true).unwrap();
        // Busy where the filesystem grants leases; elsewhere the check alone
        // lets the unchanged file go.
        if r == Release::Busy {
            assert!(p.exists());
        } else {
            assert_eq!(r, Release::Removed);
        }
        drop(writer);
    }

    #[test]
    fn mover_release_finishes_a_crashed_release() {
        let (_d, p, s) = setup();
        let aside = temp_path(&p, Temp::Release, 9);
        std::fs::rename(&p, &aside).unwrap();
        assert_eq!(release(&p, &s, 9, true).unwrap(), Release::Gone);
        assert!(!aside.exists());
    }

    #[test]
    fn mover_release_skips_symlinks() {
        let (d, p, s) = setup();
        let target = d.path().join("t");
        std::fs::rename(&p, &target).unwrap();
        std::os::unix::fs::symlink(&target, &p).unwrap();
        let r = release(&p, &s, 1, true).unwrap();
        assert!(matches!(r, Release::Changed { field: "type", .. }), "{r:?}");
        assert!(target.exists());
    }
}
