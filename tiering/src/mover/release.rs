//! Freeing the local bytes of an archived file, only if it is still the
//! version that was hashed and nobody has it open.
//!
//! Every step goes through the volume's root descriptor
//! ([`super::anchored`]): a symlink at the path or on the way to it is never
//! followed, so nothing outside the volume is ever checked or removed.
//!
//! The steps, each safe to crash after:
//! 1. open the path (no symlink followed) and take a write lease on that fd:
//!    the kernel grants it only if no other descriptor for the file is open
//!    anywhere (`F_SETLEASE F_WRLCK` on an `O_RDONLY` fd), so a writer that
//!    holds the file open but idle is noticed;
//! 2. compare device, inode, size, mtime and ctime with the record (after
//!    the lease: a write that slipped in before it shows in the ctime, even
//!    one that put the mtime back);
//! 3. rename the path, in its directory, to a private name
//!    `.<name>.strata-release.<move>`: an atomic step that takes whatever is
//!    at the path at that instant;
//! 4. check the set-aside file is the inode checked in 2 (else put it back),
//!    unlink it, fsync the directory.
//!
//! A crash after 3 leaves the set-aside file, and the record `Archived`. The
//! rename itself moved that file's ctime, so the next attempt cannot show it
//! is still the version hashed: if it is the recorded inode it is put back
//! at its path and its move abandoned (a later run hashes and moves it
//! again); anything else under the private name was not put there by strata
//! and is kept and reported, never deleted.
//!
//! While the lease is held (a few syscalls) an `open` of the file by another
//! process waits for it. The kernel signals the lease holder when that
//! happens; the signal is set to `SIGURG`, whose default action is to be
//! ignored, because the default `SIGIO` would end the process. Where leases
//! are refused as unsupported (`EINVAL`, `ENOLCK`, `EACCES`, `EPERM`: some
//! network and FUSE filesystems, an unprivileged process that does not own
//! the file), the release relies on step 2 alone, as the catalog requires.

use std::ffi::OsStr;
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use super::anchored::{Dir, VolumeRoot, is_symlink};
use super::local::{Stamp, Temp, temp_name};

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
    /// A file strata did not set aside is under the private name: it is
    /// kept, and the release waits until someone removes it. Says which.
    Blocked(String),
}

/// Releases the file at `rel` beneath `root` if it is still the version
/// `recorded`.
pub(crate) fn release(
    root: &VolumeRoot,
    rel: &Path,
    recorded: &Stamp,
    move_id: u64,
    use_lease: bool,
) -> io::Result<Release> {
    let (dir, name) = match root.parent(rel) {
        Ok(found) => found,
        // Its directory is gone, and with it the file and any aside copy.
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Release::Gone),
        Err(e) if is_symlink(&e) => return Ok(changed_type("beneath a symlink")),
        Err(e) => return Err(e),
    };
    let aside = temp_name(&name, Temp::Release, move_id);
    let file = match dir.open_read(&name) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return finish_aside(&dir, &name, &aside, recorded);
        }
        Err(e) if is_symlink(&e) => return Ok(changed_type("symlink")),
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
    match dir.rename_aside(&name, &aside) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            // The path holds the recorded inode, so whatever is under the
            // private name is some other file: not ours to delete.
            let found = dir.lstat(&aside)?;
            return Ok(Release::Blocked(foreign(&dir, &aside, found.as_ref())));
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Release::Gone),
        Err(e) => return Err(e),
    }
    let moved = dir.lstat(&aside)?;
    let ours = moved
        .as_ref()
        .is_some_and(|m| m.ino() == meta.ino() && m.dev() == meta.dev());
    // A write through a descriptor opened before the lease (where there is
    // none) may have slipped in between the check and the rename.
    let after = file.metadata()?;
    let rewritten = after.size() != meta.size() || Stamp::of(&after).mtime_ns != now.mtime_ns;
    if !ours || rewritten {
        // Another file was renamed over the path after the checks, or ours
        // changed: put it back.
        if moved.is_some()
            && let Err(e) = dir.rename_noreplace(&aside, &name)
        {
            tracing::error!(path = %dir.shown(&name).display(), aside = %dir.shown(&aside).display(), error = %e,
                "release: a file renamed over the path could not be put back; it is kept under the set-aside name");
        }
        if ours {
            return Ok(Release::Changed {
                field: "size or mtime_ns",
                recorded: format!("{} bytes, mtime {}", now.size, now.mtime_ns),
                observed: format!(
                    "{} bytes, mtime {}",
                    after.size(),
                    Stamp::of(&after).mtime_ns
                ),
            });
        }
        return Ok(Release::Changed {
            field: "ino",
            recorded: meta.ino().to_string(),
            observed: moved.map_or_else(|| "none".to_owned(), |m| m.ino().to_string()),
        });
    }
    dir.unlink(&aside)?;
    dir.sync()?;
    Ok(Release::Removed)
}

/// Nothing is at the path: a release that crashed after its rename may have
/// left the set-aside copy. Only a copy that is provably the version hashed
/// is removed; the recorded inode in any other state goes back to its path
/// (its move is then abandoned); anything else is kept and reported.
fn finish_aside(dir: &Dir, name: &OsStr, aside: &OsStr, recorded: &Stamp) -> io::Result<Release> {
    let Some(m) = dir.lstat(aside)? else {
        return Ok(Release::Gone);
    };
    if !m.is_file() || !recorded.same_inode(&m) {
        return Ok(Release::Blocked(foreign(dir, aside, Some(&m))));
    }
    let Some((field, was, now)) = recorded.differs(&Stamp::of(&m)) else {
        dir.unlink(aside)?;
        dir.sync()?;
        return Ok(Release::Gone);
    };
    match dir.rename_noreplace(aside, name) {
        Ok(()) => dir.sync()?,
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            return Ok(Release::Blocked(format!(
                "{} is the file set aside by an interrupted release, and {} was filled again meanwhile; both kept",
                dir.shown(aside).display(),
                dir.shown(name).display()
            )));
        }
        Err(e) => return Err(e),
    }
    tracing::warn!(
        path = %dir.shown(name).display(),
        field, recorded = %was, observed = %now,
        "release: put back the file an interrupted release had set aside (it cannot be shown unchanged since hashing); its move is abandoned and it moves again later"
    );
    Ok(Release::Changed {
        field,
        recorded: was,
        observed: now,
    })
}

/// What to report about a file under the private name that strata did not
/// set aside.
fn foreign(dir: &Dir, aside: &OsStr, found: Option<&std::fs::Metadata>) -> String {
    let what = match found {
        Some(m) if m.is_file() => format!("a file (inode {})", m.ino()),
        Some(m) if m.file_type().is_symlink() => "a symlink".to_owned(),
        Some(m) if m.is_dir() => "a directory".to_owned(),
        Some(_) => "a special file".to_owned(),
        None => "something that vanished".to_owned(),
    };
    format!(
        "{} is {what} that strata did not set aside; kept, and the release waits until it is removed",
        dir.shown(aside).display()
    )
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
                    tracing::info!(error = %e, "release: file leases unavailable here; releasing on the device/inode/size/mtime/ctime check alone");
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
    use std::path::PathBuf;

    fn setup() -> (tempfile::TempDir, VolumeRoot, PathBuf, Stamp) {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, b"archived").unwrap();
        let s = Stamp::of(&std::fs::metadata(&p).unwrap());
        let root = VolumeRoot::open(dir.path()).unwrap();
        (dir, root, p, s)
    }

    fn aside(p: &Path, move_id: u64) -> PathBuf {
        p.with_file_name(temp_name(p.file_name().unwrap(), Temp::Release, move_id))
    }

    const F: &str = "f";

    fn rel() -> &'static Path {
        Path::new(F)
    }

    #[test]
    fn mover_release_removes_an_unchanged_file() {
        let (_d, root, p, s) = setup();
        assert_eq!(
            release(&root, rel(), &s, 1, true).unwrap(),
            Release::Removed
        );
        assert!(!p.exists());
        assert!(!aside(&p, 1).exists());
        assert_eq!(release(&root, rel(), &s, 1, true).unwrap(), Release::Gone);
    }

    #[test]
    fn mover_release_keeps_a_changed_file() {
        let (_d, root, p, s) = setup();
        std::fs::write(&p, b"archived and more").unwrap();
        let r = release(&root, rel(), &s, 1, true).unwrap();
        assert!(matches!(r, Release::Changed { field: "size", .. }), "{r:?}");
        assert_eq!(std::fs::read(&p).unwrap(), b"archived and more");
    }

    /// `rsync --inplace -t`, `touch -r`: the same size, other bytes, the
    /// mtime put back. Only the ctime tells.
    #[test]
    fn mover_release_keeps_a_rewrite_that_restored_its_mtime() {
        let (_d, root, p, s) = setup();
        let mtime = std::fs::metadata(&p).unwrap().modified().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(&p, b"ARCHIVED").unwrap();
        let f = std::fs::OpenOptions::new().write(true).open(&p).unwrap();
        f.set_times(std::fs::FileTimes::new().set_modified(mtime))
            .unwrap();
        drop(f);
        let now = Stamp::of(&std::fs::metadata(&p).unwrap());
        assert_eq!(
            (now.size, now.mtime_ns, now.ino),
            (s.size, s.mtime_ns, s.ino)
        );
        let r = release(&root, rel(), &s, 1, true).unwrap();
        assert!(
            matches!(
                r,
                Release::Changed {
                    field: "ctime_ns",
                    ..
                }
            ),
            "{r:?}"
        );
        assert_eq!(std::fs::read(&p).unwrap(), b"ARCHIVED");
    }

    #[test]
    fn mover_release_keeps_an_open_file() {
        let (_d, root, p, s) = setup();
        let writer = std::fs::OpenOptions::new().append(true).open(&p).unwrap();
        let r = release(&root, rel(), &s, 1, true).unwrap();
        // Busy where the filesystem grants leases; elsewhere the check alone
        // lets the unchanged file go.
        if r == Release::Busy {
            assert!(p.exists());
        } else {
            assert_eq!(r, Release::Removed);
        }
        drop(writer);
    }

    /// A crash between the rename and the unlink: the rename moved the
    /// file's ctime, so the copy is put back, not deleted, and the move is
    /// abandoned.
    #[test]
    fn mover_release_puts_back_what_a_crashed_release_set_aside() {
        let (_d, root, p, s) = setup();
        let a = aside(&p, 9);
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::rename(&p, &a).unwrap();
        let moved_ctime = Stamp::of(&std::fs::metadata(&a).unwrap()).ctime_ns != s.ctime_ns;
        let r = release(&root, rel(), &s, 9, true).unwrap();
        if moved_ctime {
            assert!(
                matches!(
                    r,
                    Release::Changed {
                        field: "ctime_ns",
                        ..
                    }
                ),
                "{r:?}"
            );
            assert_eq!(std::fs::read(&p).unwrap(), b"archived");
            assert!(!a.exists());
        } else {
            // A filesystem whose rename leaves the ctime alone: provably ours.
            assert_eq!(r, Release::Gone);
            assert!(!a.exists() && !p.exists());
        }
    }

    #[test]
    fn mover_release_keeps_a_foreign_file_under_the_aside_name() {
        let (_d, root, p, s) = setup();
        let a = aside(&p, 3);
        std::fs::write(&a, b"not strata's").unwrap();
        // The file is at its path: the private name is taken by another.
        let r = release(&root, rel(), &s, 3, true).unwrap();
        let Release::Blocked(why) = &r else {
            panic!("{r:?}")
        };
        assert!(why.contains(&a.display().to_string()), "{why}");
        assert_eq!(std::fs::read(&a).unwrap(), b"not strata's");
        assert_eq!(std::fs::read(&p).unwrap(), b"archived");
        // The path is empty: the foreign file is still not taken for ours.
        std::fs::remove_file(&p).unwrap();
        let r = release(&root, rel(), &s, 3, true).unwrap();
        assert!(matches!(r, Release::Blocked(_)), "{r:?}");
        assert_eq!(std::fs::read(&a).unwrap(), b"not strata's");
        // Nor a symlink there.
        std::fs::remove_file(&a).unwrap();
        std::os::unix::fs::symlink("/etc/hostname", &a).unwrap();
        let r = release(&root, rel(), &s, 3, true).unwrap();
        assert!(matches!(r, Release::Blocked(_)), "{r:?}");
        assert!(a.symlink_metadata().unwrap().file_type().is_symlink());
    }

    #[test]
    fn mover_release_refuses_a_path_out_of_the_volume() {
        let (_d, root, p, s) = setup();
        for bad in ["../f", "/etc/hostname", "a//f", "./f", ""] {
            let e = release(&root, Path::new(bad), &s, 1, false).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{bad:?}: {e}");
        }
        assert_eq!(std::fs::read(&p).unwrap(), b"archived");
    }

    #[test]
    fn mover_release_skips_symlinks() {
        let (d, root, p, s) = setup();
        let target = d.path().join("t");
        std::fs::rename(&p, &target).unwrap();
        std::os::unix::fs::symlink(&target, &p).unwrap();
        let r = release(&root, rel(), &s, 1, true).unwrap();
        assert!(matches!(r, Release::Changed { field: "type", .. }), "{r:?}");
        assert!(target.exists());
    }

    /// The recorded file moved out of the volume and its directory replaced
    /// by a symlink to where it went: it is not removed there.
    #[test]
    fn mover_release_never_crosses_a_symlinked_directory() {
        let base = tempfile::tempdir().unwrap();
        let (vol, outside) = (base.path().join("vol"), base.path().join("outside"));
        std::fs::create_dir_all(vol.join("d")).unwrap();
        std::fs::write(vol.join("d/f"), b"archived").unwrap();
        let s = Stamp::of(&std::fs::metadata(vol.join("d/f")).unwrap());
        std::fs::rename(vol.join("d"), &outside).unwrap();
        std::os::unix::fs::symlink(&outside, vol.join("d")).unwrap();
        let root = VolumeRoot::open(&vol).unwrap();
        let r = release(&root, Path::new("d/f"), &s, 1, false).unwrap();
        assert!(matches!(r, Release::Changed { field: "type", .. }), "{r:?}");
        assert_eq!(std::fs::read(outside.join("f")).unwrap(), b"archived");
        assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 1);
    }
}
