//! The local side of a move: what identifies a version of a file (its
//! stamp), renames that never replace, directory fsync, and the private
//! names of files being set aside. Opening without following symlinks is
//! the lake's (`open_read`), shared with hashing and release.

use std::ffi::OsString;
use std::fs::{File, Metadata};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use rustix::fs::{CWD, RenameFlags, renameat_with};
use rustix::io::Errno;

use crate::catalog::FileRecord;
pub(crate) use crate::lake::source::open_read;

/// The version of a file as the catalog records it: a different size,
/// mtime or inode is a different version.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Stamp {
    pub(crate) size: u64,
    pub(crate) mtime_ns: i64,
    pub(crate) ino: u64,
}

impl Stamp {
    pub(crate) fn of(m: &Metadata) -> Self {
        Self {
            size: m.size(),
            mtime_ns: m
                .mtime()
                .saturating_mul(1_000_000_000)
                .saturating_add(m.mtime_nsec()),
            ino: m.ino(),
        }
    }

    pub(crate) fn of_record(r: &FileRecord) -> Self {
        Self {
            size: r.size,
            mtime_ns: r.mtime_ns,
            ino: r.ino,
        }
    }

    /// The first field that differs from `other`: (name, ours, theirs).
    pub(crate) fn differs(&self, other: &Stamp) -> Option<(&'static str, String, String)> {
        if self.size != other.size {
            return Some(("size", self.size.to_string(), other.size.to_string()));
        }
        if self.mtime_ns != other.mtime_ns {
            return Some((
                "mtime_ns",
                self.mtime_ns.to_string(),
                other.mtime_ns.to_string(),
            ));
        }
        if self.ino != other.ino {
            return Some(("ino", self.ino.to_string(), other.ino.to_string()));
        }
        None
    }
}

/// `lstat`; `None` if nothing is at `path`.
pub(crate) fn lstat(path: &Path) -> io::Result<Option<Metadata>> {
    match std::fs::symlink_metadata(path) {
        Ok(m) => Ok(Some(m)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// The directory holding `path`.
pub(crate) fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    }
}

/// Makes a rename or unlink in `dir` durable.
pub(crate) fn fsync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Renames `from` to `to` unless something is at `to` (`AlreadyExists`).
/// Where the filesystem has no `RENAME_NOREPLACE`, a hard link (which never
/// replaces either) and an unlink do the same.
pub(crate) fn rename_noreplace(from: &Path, to: &Path) -> io::Result<()> {
    match renameat_with(CWD, from, CWD, to, RenameFlags::NOREPLACE) {
        Ok(()) => Ok(()),
        Err(Errno::INVAL | Errno::NOSYS) => {
            std::fs::hard_link(from, to)?;
            std::fs::remove_file(from)
        }
        Err(e) => Err(e.into()),
    }
}

/// Moves `from` to the private name `to` in one atomic step, whatever sits at
/// `from` at that instant. Where the filesystem has no `RENAME_NOREPLACE`, a
/// plain rename (the private name was checked free just before).
pub(crate) fn rename_aside(from: &Path, to: &Path) -> io::Result<()> {
    match renameat_with(CWD, from, CWD, to, RenameFlags::NOREPLACE) {
        Ok(()) => Ok(()),
        Err(Errno::INVAL | Errno::NOSYS) => {
            if lstat(to)?.is_some() {
                return Err(io::ErrorKind::AlreadyExists.into());
            }
            std::fs::rename(from, to)
        }
        Err(e) => Err(e.into()),
    }
}

/// What a temporary file beside a volume file is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Temp {
    /// A file set aside just before it is unlinked.
    Release,
    /// A recalled file before it is renamed into place.
    Recall,
}

/// `.<name>.strata-release.<move>` (or `-recall`) beside `path`: a name a
/// crashed step can find again from the catalog record alone.
pub(crate) fn temp_path(path: &Path, kind: Temp, move_id: u64) -> PathBuf {
    let mut name = OsString::from(".");
    name.push(path.file_name().unwrap_or_default());
    name.push(match kind {
        Temp::Release => ".strata-release.",
        Temp::Recall => ".strata-recall.",
    });
    name.push(format!("{move_id:016x}"));
    parent(path).join(name)
}

/// Whether a file name is one of strata's temporary files (these, and the
/// lake's download temporaries), which no policy may move.
pub(crate) fn is_temp_name(name: &str) -> bool {
    name.starts_with('.')
        && [".strata-release.", ".strata-recall.", ".strata-download."]
            .iter()
            .any(|m| name.contains(m))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mover_temp_names() {
        let p = temp_path(Path::new("/v/a/b.jpg"), Temp::Release, 0xab);
        assert_eq!(p, Path::new("/v/a/.b.jpg.strata-release.00000000000000ab"));
        let r = temp_path(Path::new("b.jpg"), Temp::Recall, 1);
        assert_eq!(r, Path::new("./.b.jpg.strata-recall.0000000000000001"));
        assert!(is_temp_name(".b.jpg.strata-release.00000000000000ab"));
        assert!(is_temp_name(".b.jpg.strata-recall.0000000000000001"));
        assert!(is_temp_name(".x.strata-download.12.0"));
        assert!(!is_temp_name("b.jpg"));
        assert!(!is_temp_name(".hidden"));
        assert!(!is_temp_name("a.strata-release.1"));
    }

    #[test]
    fn mover_renames_never_replace() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        std::fs::write(&a, b"a").unwrap();
        std::fs::write(&b, b"b").unwrap();
        let e = rename_noreplace(&a, &b).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(std::fs::read(&b).unwrap(), b"b");
        let e = rename_aside(&a, &b).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AlreadyExists);
        std::fs::remove_file(&b).unwrap();
        rename_noreplace(&a, &b).unwrap();
        assert_eq!(std::fs::read(&b).unwrap(), b"a");
        assert!(lstat(&a).unwrap().is_none());
    }

    #[test]
    fn mover_stamp_differs_names_the_field() {
        let s = Stamp {
            size: 1,
            mtime_ns: 2,
            ino: 3,
        };
        assert_eq!(s.differs(&s), None);
        let t = Stamp { mtime_ns: 5, ..s };
        assert_eq!(s.differs(&t).unwrap().0, "mtime_ns");
        let u = Stamp { ino: 9, ..s };
        assert_eq!(s.differs(&u).unwrap().0, "ino");
    }
}
