//! The local side of a move: what identifies a version of a file (its
//! stamp) and the private names of files being set aside. Every operation
//! on a volume's files goes through [`super::anchored`].

use std::ffi::{OsStr, OsString};
use std::fs::Metadata;
use std::os::unix::fs::MetadataExt;

use crate::catalog::FileRecord;

/// The version of a file as the catalog records it: a different size,
/// mtime, inode, device or ctime is a different version.
///
/// `dev` and `ctime_ns` are zero in records written before strata kept them
/// (and in the few tests that build a stamp by hand): zero means unknown,
/// and an unknown field is not compared. Every stamp taken from a file has
/// both (no Linux filesystem has device 0, and no file changed at exactly
/// the epoch), so a record written since compares all five.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Stamp {
    pub(crate) size: u64,
    pub(crate) mtime_ns: i64,
    pub(crate) ino: u64,
    pub(crate) dev: u64,
    pub(crate) ctime_ns: i64,
}

impl Stamp {
    pub(crate) fn of(m: &Metadata) -> Self {
        let ns = |s: i64, n: i64| s.saturating_mul(1_000_000_000).saturating_add(n);
        Self {
            size: m.size(),
            mtime_ns: ns(m.mtime(), m.mtime_nsec()),
            ino: m.ino(),
            dev: m.dev(),
            ctime_ns: ns(m.ctime(), m.ctime_nsec()),
        }
    }

    pub(crate) fn of_record(r: &FileRecord) -> Self {
        Self {
            size: r.size,
            mtime_ns: r.mtime_ns,
            ino: r.ino,
            dev: r.dev,
            ctime_ns: r.ctime_ns,
        }
    }

    /// The first field that differs from `other`: (name, ours, theirs). A
    /// `dev` or `ctime_ns` that either side does not know (zero) is not
    /// compared.
    pub(crate) fn differs(&self, other: &Stamp) -> Option<(&'static str, String, String)> {
        let field = |name, ours: String, theirs: String| Some((name, ours, theirs));
        if self.size != other.size {
            return field("size", self.size.to_string(), other.size.to_string());
        }
        if self.mtime_ns != other.mtime_ns {
            return field(
                "mtime_ns",
                self.mtime_ns.to_string(),
                other.mtime_ns.to_string(),
            );
        }
        if self.ino != other.ino {
            return field("ino", self.ino.to_string(), other.ino.to_string());
        }
        if self.dev != 0 && other.dev != 0 && self.dev != other.dev {
            return field("dev", self.dev.to_string(), other.dev.to_string());
        }
        if self.ctime_ns != 0 && other.ctime_ns != 0 && self.ctime_ns != other.ctime_ns {
            return field(
                "ctime_ns",
                self.ctime_ns.to_string(),
                other.ctime_ns.to_string(),
            );
        }
        None
    }

    /// Whether `m` is this version's inode (same device where known).
    pub(crate) fn same_inode(&self, m: &Metadata) -> bool {
        m.ino() == self.ino && (self.dev == 0 || m.dev() == self.dev)
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

/// `.<name>.strata-release.<move>` (or `-recall`) beside `name`: a name a
/// crashed step can find again from the catalog record alone.
pub(crate) fn temp_name(name: &OsStr, kind: Temp, move_id: u64) -> OsString {
    let mut out = OsString::from(".");
    out.push(name);
    out.push(match kind {
        Temp::Release => ".strata-release.",
        Temp::Recall => ".strata-recall.",
    });
    out.push(format!("{move_id:016x}"));
    out
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
        let p = temp_name(OsStr::new("b.jpg"), Temp::Release, 0xab);
        assert_eq!(p, ".b.jpg.strata-release.00000000000000ab");
        let r = temp_name(OsStr::new("b.jpg"), Temp::Recall, 1);
        assert_eq!(r, ".b.jpg.strata-recall.0000000000000001");
        assert!(is_temp_name(".b.jpg.strata-release.00000000000000ab"));
        assert!(is_temp_name(".b.jpg.strata-recall.0000000000000001"));
        assert!(is_temp_name(".x.strata-download.12.0"));
        assert!(!is_temp_name("b.jpg"));
        assert!(!is_temp_name(".hidden"));
        assert!(!is_temp_name("a.strata-release.1"));
    }

    #[test]
    fn mover_stamp_differs_names_the_field() {
        let s = Stamp {
            size: 1,
            mtime_ns: 2,
            ino: 3,
            dev: 4,
            ctime_ns: 5,
        };
        assert_eq!(s.differs(&s), None);
        let t = Stamp { mtime_ns: 5, ..s };
        assert_eq!(s.differs(&t).unwrap().0, "mtime_ns");
        let u = Stamp { ino: 9, ..s };
        assert_eq!(s.differs(&u).unwrap().0, "ino");
        let v = Stamp { dev: 7, ..s };
        assert_eq!(s.differs(&v).unwrap().0, "dev");
        // A rewrite in place that put the mtime back still moved the ctime.
        let w = Stamp { ctime_ns: 6, ..s };
        assert_eq!(s.differs(&w).unwrap().0, "ctime_ns");
        // A record from before strata kept them knows neither.
        let old = Stamp {
            dev: 0,
            ctime_ns: 0,
            ..s
        };
        assert_eq!(old.differs(&w), None);
        assert_eq!(w.differs(&old), None);
    }
}
