//! File operations inside a volume, anchored at the volume's root directory
//! descriptor and never following a symlink.
//!
//! The mover runs as root over directories that pods write to. A path
//! resolved from `/` each time would let a pod that swaps a directory of its
//! volume for a symlink aim root's writes, chowns and unlinks anywhere on the
//! node. So the root (a path from configuration) is opened once without
//! following a symlink at its last component, and every path beneath it is
//! resolved by the kernel with `openat2(RESOLVE_BENEATH |
//! RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS)`: a symlink anywhere on the
//! way is an error, never a detour. What is then done to a file goes through
//! a descriptor: of its directory (`*at` calls on one component, which never
//! resolve further) or of the file itself (`fstat`, `fchown`, `fchmod`,
//! `futimens`). A path from the catalog is checked before any syscall: it
//! must be relative, without `.`, `..`, empty components or NUL.

use std::ffi::{OsStr, OsString};
use std::fs::{File, Metadata};
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use std::sync::atomic::{AtomicBool, Ordering};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, RenameFlags, ResolveFlags};
use rustix::io::Errno;

/// Why a path inside a volume was refused.
#[derive(Debug, thiserror::Error)]
pub(crate) enum AnchorError {
    /// Not a normalised relative path: refused before any syscall.
    #[error(
        "path {path:?} refused: {why} (a path inside a volume must be relative, without `.`, `..`, empty components or NUL)"
    )]
    BadPath {
        /// The path as given.
        path: PathBuf,
        /// What is wrong with it.
        why: &'static str,
    },
    /// The path is a symlink, or one of its directories is.
    #[error(
        "{path} is a symlink or lies beneath one; strata never follows symlinks inside a volume"
    )]
    Symlink {
        /// The path (or the directory of it) found to be a symlink.
        path: PathBuf,
    },
}

/// Whether `e` is the refusal of a path that is or crosses a symlink.
pub(crate) fn is_symlink(e: &io::Error) -> bool {
    e.get_ref()
        .and_then(|inner| inner.downcast_ref::<AnchorError>())
        .is_some_and(|a| matches!(a, AnchorError::Symlink { .. }))
}

/// The components of a path from the catalog, checked before any syscall.
pub(crate) fn components(rel: &Path) -> io::Result<Vec<&OsStr>> {
    let bad = |why| {
        Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            AnchorError::BadPath {
                path: rel.to_owned(),
                why,
            },
        ))
    };
    let bytes = rel.as_os_str().as_bytes();
    if bytes.is_empty() {
        return bad("it is empty");
    }
    if bytes[0] == b'/' {
        return bad("it is absolute");
    }
    if bytes.contains(&0) {
        return bad("it contains a NUL byte");
    }
    let mut out = Vec::new();
    for c in bytes.split(|b| *b == b'/') {
        match c {
            b"" => return bad("it has an empty component"),
            b"." => return bad("it has a `.` component"),
            b".." => return bad("it has a `..` component"),
            c => out.push(OsStr::from_bytes(c)),
        }
    }
    Ok(out)
}

fn resolve_flags() -> ResolveFlags {
    ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS
}

/// A directory inside a volume (or its root), held open.
#[derive(Debug)]
pub(crate) struct Dir {
    fd: OwnedFd,
    /// Where it was when opened, for messages only.
    shown: PathBuf,
}

impl Dir {
    /// `openat2` beneath this directory without following any symlink.
    /// `rel` must have passed [`components`] (or be one checked component).
    fn resolve(&self, rel: &Path, flags: OFlags) -> io::Result<OwnedFd> {
        if NO_OPENAT2.load(Ordering::Relaxed) {
            return self.resolve_stepwise(rel, flags);
        }
        let mut retries = 0;
        loop {
            match rustix::fs::openat2(
                &self.fd,
                rel,
                flags | OFlags::CLOEXEC,
                Mode::empty(),
                resolve_flags(),
            ) {
                Ok(fd) => return Ok(fd),
                Err(Errno::INTR) => {}
                // The kernel saw a rename race it could not rule out; a
                // retry is what openat2(2) asks for.
                Err(Errno::AGAIN) if retries < 8 => retries += 1,
                // RESOLVE_NO_SYMLINKS, O_NOFOLLOW, RESOLVE_BENEATH.
                Err(Errno::LOOP | Errno::XDEV) => {
                    return Err(symlink(self.shown.join(rel)));
                }
                // Before Linux 5.6.
                Err(Errno::NOSYS) => {
                    if !NO_OPENAT2.swap(true, Ordering::Relaxed) {
                        tracing::info!(
                            "openat2 unavailable; paths inside volumes are opened one component at a time with O_NOFOLLOW"
                        );
                    }
                    return self.resolve_stepwise(rel, flags);
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// What [`Dir::resolve`] does, without `openat2`: each directory opened
    /// `O_NOFOLLOW` from the last. As safe, the path having no `..`.
    fn resolve_stepwise(&self, rel: &Path, flags: OFlags) -> io::Result<OwnedFd> {
        let parts: Vec<&OsStr> = rel
            .as_os_str()
            .as_bytes()
            .split(|b| *b == b'/')
            .map(OsStr::from_bytes)
            .collect();
        let (last, dirs) = parts.split_last().expect("split yields one part at least");
        let mut at: Option<OwnedFd> = None;
        let mut shown = self.shown.clone();
        for part in dirs {
            let from = at.as_ref().unwrap_or(&self.fd);
            let dir_flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW;
            at = Some(open_one(from, part, dir_flags, &shown)?);
            shown.push(part);
        }
        open_one(
            at.as_ref().unwrap_or(&self.fd),
            last,
            flags | OFlags::NOFOLLOW,
            &shown,
        )
    }

    /// Where `name` in this directory was, for messages.
    pub(crate) fn shown(&self, name: &OsStr) -> PathBuf {
        self.shown.join(name)
    }

    /// `fstat` of what is at `name` (a symlink itself, not its target);
    /// `None` if nothing is.
    pub(crate) fn lstat(&self, name: &OsStr) -> io::Result<Option<Metadata>> {
        lstat_at(self, Path::new(name))
    }

    /// Opens the regular file `name` for reading (see [`VolumeRoot::open_read`]).
    pub(crate) fn open_read(&self, name: &OsStr) -> io::Result<File> {
        open_read_at(self, Path::new(name))
    }

    /// Creates `name` for writing (`O_CREAT | O_EXCL | O_NOFOLLOW`): never
    /// an existing file, never through a symlink.
    pub(crate) fn create_new(&self, name: &OsStr, mode: u32) -> io::Result<File> {
        let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW;
        let fd = rustix::fs::openat(
            &self.fd,
            name,
            flags | OFlags::CLOEXEC,
            Mode::from_bits_truncate(mode),
        )?;
        Ok(File::from(fd))
    }

    /// Renames `from` to `to` in this directory unless something is at `to`
    /// (`AlreadyExists`). Where the filesystem has no `RENAME_NOREPLACE`, a
    /// hard link (which never replaces either) and an unlink do the same.
    pub(crate) fn rename_noreplace(&self, from: &OsStr, to: &OsStr) -> io::Result<()> {
        match rustix::fs::renameat_with(&self.fd, from, &self.fd, to, RenameFlags::NOREPLACE) {
            Ok(()) => Ok(()),
            Err(Errno::INVAL | Errno::NOSYS) => {
                rustix::fs::linkat(&self.fd, from, &self.fd, to, AtFlags::empty())?;
                self.unlink(from)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Moves `from` to the private name `to` in one atomic step, whatever
    /// sits at `from` at that instant. Where the filesystem has no
    /// `RENAME_NOREPLACE`, a plain rename (the private name checked free
    /// just before).
    pub(crate) fn rename_aside(&self, from: &OsStr, to: &OsStr) -> io::Result<()> {
        match rustix::fs::renameat_with(&self.fd, from, &self.fd, to, RenameFlags::NOREPLACE) {
            Ok(()) => Ok(()),
            Err(Errno::INVAL | Errno::NOSYS) => {
                if self.lstat(to)?.is_some() {
                    return Err(io::ErrorKind::AlreadyExists.into());
                }
                Ok(rustix::fs::renameat(&self.fd, from, &self.fd, to)?)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Removes the name `name` (not a directory) from this directory.
    pub(crate) fn unlink(&self, name: &OsStr) -> io::Result<()> {
        Ok(rustix::fs::unlinkat(&self.fd, name, AtFlags::empty())?)
    }

    /// Makes the renames and unlinks in this directory durable.
    pub(crate) fn sync(&self) -> io::Result<()> {
        Ok(rustix::fs::fsync(&self.fd)?)
    }

    /// Opens the subdirectory `name`, which must not be a symlink.
    fn subdir(&self, name: &OsStr) -> io::Result<Dir> {
        let fd = self.resolve(Path::new(name), OFlags::RDONLY | OFlags::DIRECTORY)?;
        Ok(Dir {
            fd,
            shown: self.shown.join(name),
        })
    }
}

/// Set once `openat2` answered `ENOSYS`.
static NO_OPENAT2: AtomicBool = AtomicBool::new(false);

/// `openat` of one component, not following a symlink there.
fn open_one(dir: &OwnedFd, name: &OsStr, flags: OFlags, shown: &Path) -> io::Result<OwnedFd> {
    loop {
        match rustix::fs::openat(dir, name, flags | OFlags::CLOEXEC, Mode::empty()) {
            Ok(fd) => return Ok(fd),
            Err(Errno::INTR) => {}
            Err(Errno::LOOP) => return Err(symlink(shown.join(name))),
            // O_DIRECTORY may answer for a symlink before O_NOFOLLOW does.
            Err(Errno::NOTDIR)
                if rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW)
                    .is_ok_and(|st| FileType::from_raw_mode(st.st_mode) == FileType::Symlink) =>
            {
                return Err(symlink(shown.join(name)));
            }
            Err(e) => return Err(e.into()),
        }
    }
}

fn symlink(path: PathBuf) -> io::Error {
    io::Error::other(AnchorError::Symlink { path })
}

fn lstat_at(dir: &Dir, rel: &Path) -> io::Result<Option<Metadata>> {
    // O_PATH | O_NOFOLLOW gives a descriptor of a symlink at the last
    // component instead of ELOOP, so that a symlink shows as one.
    match dir.resolve(rel, OFlags::PATH | OFlags::NOFOLLOW) {
        Ok(fd) => File::from(fd).metadata().map(Some),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

fn open_read_at(dir: &Dir, rel: &Path) -> io::Result<File> {
    // O_NONBLOCK: a fifo swapped in must not block the opener.
    let base = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK;
    // O_NOATIME needs ownership or CAP_FOWNER.
    let fd = match dir.resolve(rel, base | OFlags::NOATIME) {
        Err(e) if e.raw_os_error() == Some(libc::EPERM) => dir.resolve(rel, base)?,
        other => other?,
    };
    Ok(File::from(fd))
}

/// A volume's root directory, held open; every path used through it stays
/// beneath it and crosses no symlink.
#[derive(Debug)]
pub(crate) struct VolumeRoot {
    root: Dir,
}

impl VolumeRoot {
    /// Opens the volume root at `path` (from configuration: symlinks in its
    /// ancestors are the operator's, one at its last component is refused).
    pub(crate) fn open(path: &Path) -> io::Result<Self> {
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let fd = match rustix::fs::open(path, flags, Mode::empty()) {
            Ok(fd) => fd,
            // O_DIRECTORY may answer for a symlink before O_NOFOLLOW does.
            Err(Errno::LOOP | Errno::NOTDIR)
                if std::fs::symlink_metadata(path).is_ok_and(|m| m.is_symlink()) =>
            {
                return Err(symlink(path.to_owned()));
            }
            Err(e) => {
                let e = io::Error::from(e);
                return Err(io::Error::new(
                    e.kind(),
                    format!("volume root {}: {e}", path.display()),
                ));
            }
        };
        Ok(Self {
            root: Dir {
                fd,
                shown: path.to_owned(),
            },
        })
    }

    /// Opens the regular file at `rel` for reading: no symlink followed,
    /// a fifo does not block, atime untouched where the kernel allows.
    pub(crate) fn open_read(&self, rel: &Path) -> io::Result<File> {
        components(rel)?;
        open_read_at(&self.root, rel)
    }

    /// `fstat` of what is at `rel` (a symlink itself at the last component);
    /// `None` if nothing is.
    pub(crate) fn lstat(&self, rel: &Path) -> io::Result<Option<Metadata>> {
        components(rel)?;
        lstat_at(&self.root, rel)
    }

    /// The directory holding `rel`, opened, and `rel`'s last component.
    pub(crate) fn parent(&self, rel: &Path) -> io::Result<(Dir, OsString)> {
        let parts = components(rel)?;
        let (name, dirs) = parts.split_last().expect("components are never empty");
        let dir = if dirs.is_empty() {
            self.root
                .resolve(Path::new("."), OFlags::RDONLY | OFlags::DIRECTORY)?
        } else {
            let dir_rel = rel.parent().expect("a path of several components");
            self.root
                .resolve(dir_rel, OFlags::RDONLY | OFlags::DIRECTORY)?
        };
        let shown = match rel.parent() {
            Some(p) if !dirs.is_empty() => self.root.shown.join(p),
            _ => self.root.shown.clone(),
        };
        Ok((Dir { fd: dir, shown }, (*name).to_owned()))
    }

    /// Like [`VolumeRoot::parent`], creating the missing directories one
    /// component at a time (`mkdirat`, then opened without following a
    /// symlink, so one swapped in meanwhile is found and refused).
    pub(crate) fn mkdirs(&self, rel: &Path) -> io::Result<(Dir, OsString)> {
        let parts = components(rel)?;
        let (name, dirs) = parts.split_last().expect("components are never empty");
        let mut dir = Dir {
            fd: self
                .root
                .resolve(Path::new("."), OFlags::RDONLY | OFlags::DIRECTORY)?,
            shown: self.root.shown.clone(),
        };
        for part in dirs {
            match rustix::fs::mkdirat(&dir.fd, *part, Mode::from_bits_truncate(0o777)) {
                Ok(()) | Err(Errno::EXIST) => {}
                Err(e) => {
                    let e = io::Error::from(e);
                    return Err(io::Error::new(
                        e.kind(),
                        format!("mkdir {}: {e}", dir.shown(part).display()),
                    ));
                }
            }
            dir = dir.subdir(part)?;
        }
        Ok((dir, (*name).to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink as ln_s;

    #[test]
    fn anchored_refuses_paths_before_any_syscall() {
        // A root that does not exist: a refusal that reached the filesystem
        // would say NotFound, not InvalidInput.
        let dir = tempfile::tempdir().unwrap();
        let root = VolumeRoot::open(dir.path()).unwrap();
        std::fs::remove_dir(dir.path()).unwrap();
        for (bad, why) in [
            ("", "empty"),
            ("/etc/passwd", "absolute"),
            ("../x", "`..`"),
            ("a/../../x", "`..`"),
            ("a//b", "empty component"),
            ("a/b/", "empty component"),
            ("./a", "`.`"),
            ("a\0b", "NUL"),
        ] {
            let p = Path::new(bad);
            for e in [
                root.open_read(p).unwrap_err(),
                root.lstat(p).unwrap_err(),
                root.parent(p).unwrap_err(),
                root.mkdirs(p).unwrap_err(),
            ] {
                assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{bad:?}: {e}");
                let msg = e.to_string();
                assert!(msg.contains(why), "{bad:?}: {msg}");
                assert!(msg.contains(&format!("{p:?}")), "{bad:?}: {msg}");
            }
        }
        assert_eq!(components(Path::new("a/b.c")).unwrap(), ["a", "b.c"]);
    }

    #[test]
    fn anchored_never_follows_a_symlink() {
        let base = tempfile::tempdir().unwrap();
        let (vol, outside) = (base.path().join("vol"), base.path().join("outside"));
        std::fs::create_dir_all(vol.join("d")).unwrap();
        std::fs::create_dir(&outside).unwrap();
        std::fs::write(outside.join("f"), b"outside").unwrap();
        ln_s(&outside, vol.join("link")).unwrap();
        ln_s(outside.join("f"), vol.join("d/f")).unwrap();
        let root = VolumeRoot::open(&vol).unwrap();

        // A symlinked directory: every operation refuses it, naming the path.
        let through = Path::new("link/f");
        for e in [
            root.open_read(through).unwrap_err(),
            root.lstat(through).unwrap_err(),
            root.parent(through).unwrap_err(),
            root.mkdirs(through).unwrap_err(),
            root.mkdirs(Path::new("link/new/f")).unwrap_err(),
        ] {
            assert!(is_symlink(&e), "{e}");
            assert!(e.to_string().contains("never follows symlinks"), "{e}");
        }
        assert!(!outside.join("new").exists());
        // A symlink as the last component: seen as one, never opened.
        let f = Path::new("d/f");
        assert!(is_symlink(&root.open_read(f).unwrap_err()));
        assert!(root.lstat(f).unwrap().unwrap().file_type().is_symlink());
        let (dir, name) = root.parent(f).unwrap();
        assert_eq!(
            dir.create_new(&name, 0o600).unwrap_err().kind(),
            io::ErrorKind::AlreadyExists
        );
        assert_eq!(std::fs::read(outside.join("f")).unwrap(), b"outside");
        // The root itself as a symlink.
        let e = VolumeRoot::open(&vol.join("link")).unwrap_err();
        assert!(is_symlink(&e), "{e}");
    }

    /// A directory swapped for a symlink after it was opened: what is done
    /// through its descriptor lands in the directory itself, wherever it was
    /// moved to inside the volume, never in the symlink's target.
    #[test]
    fn anchored_a_directory_swapped_once_open_keeps_writes_in_the_volume() {
        use std::io::Write;
        let base = tempfile::tempdir().unwrap();
        let (vol, outside) = (base.path().join("vol"), base.path().join("outside"));
        std::fs::create_dir_all(vol.join("d")).unwrap();
        std::fs::create_dir(&outside).unwrap();
        let root = VolumeRoot::open(&vol).unwrap();
        let (dir, name) = root.mkdirs(Path::new("d/f")).unwrap();
        std::fs::rename(vol.join("d"), vol.join("moved")).unwrap();
        ln_s(&outside, vol.join("d")).unwrap();
        let tmp = OsStr::new(".f.tmp");
        dir.create_new(tmp, 0o600).unwrap().write_all(b"x").unwrap();
        dir.rename_noreplace(tmp, &name).unwrap();
        dir.sync().unwrap();
        assert_eq!(std::fs::read(vol.join("moved/f")).unwrap(), b"x");
        assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0);
        // Opened again, the path is refused.
        assert!(is_symlink(&root.mkdirs(Path::new("d/f")).unwrap_err()));
    }

    /// The same refusals without `openat2` (kernels before 5.6).
    #[test]
    fn anchored_stepwise_never_follows_a_symlink() {
        let base = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(base.path().join("d/e")).unwrap();
        std::fs::write(base.path().join("d/e/f"), b"in").unwrap();
        ln_s(base.path().join("d"), base.path().join("link")).unwrap();
        ln_s(base.path().join("d/e/f"), base.path().join("d/l")).unwrap();
        let root = VolumeRoot::open(base.path()).unwrap();
        let read = |rel: &str| {
            root.root
                .resolve_stepwise(Path::new(rel), OFlags::RDONLY)
                .map(File::from)
        };
        assert_eq!(
            std::io::read_to_string(read("d/e/f").unwrap()).unwrap(),
            "in"
        );
        for rel in ["link/e/f", "d/l"] {
            let e = read(rel).unwrap_err();
            assert!(is_symlink(&e), "{rel}: {e}");
        }
        let e = root
            .root
            .resolve_stepwise(Path::new("link"), OFlags::RDONLY | OFlags::DIRECTORY)
            .unwrap_err();
        assert!(is_symlink(&e), "{e}");
        let fd = root
            .root
            .resolve_stepwise(Path::new("d/l"), OFlags::PATH | OFlags::NOFOLLOW)
            .unwrap();
        assert!(File::from(fd).metadata().unwrap().file_type().is_symlink());
    }

    #[test]
    fn anchored_creates_renames_and_unlinks_beneath_the_root() {
        let base = tempfile::tempdir().unwrap();
        let root = VolumeRoot::open(base.path()).unwrap();
        let (dir, name) = root.mkdirs(Path::new("a/b/c.txt")).unwrap();
        assert_eq!(name, "c.txt");
        assert_eq!(dir.shown(&name), base.path().join("a/b/c.txt"));
        std::fs::write(base.path().join("a/b/tmp"), b"x").unwrap();
        dir.rename_noreplace(OsStr::new("tmp"), &name).unwrap();
        std::fs::write(base.path().join("a/b/tmp"), b"y").unwrap();
        let e = dir.rename_noreplace(OsStr::new("tmp"), &name).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AlreadyExists);
        let e = dir.rename_aside(OsStr::new("tmp"), &name).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(std::fs::read(base.path().join("a/b/c.txt")).unwrap(), b"x");
        dir.unlink(OsStr::new("tmp")).unwrap();
        dir.sync().unwrap();
        assert!(root.lstat(Path::new("a/b/tmp")).unwrap().is_none());
        assert!(
            root.lstat(Path::new("a/b/c.txt"))
                .unwrap()
                .unwrap()
                .is_file()
        );
        let (top, n) = root.parent(Path::new("top")).unwrap();
        assert_eq!((top.shown(&n), n), (base.path().join("top"), "top".into()));
    }
}
