//! Hashing a candidate: streaming SHA-256 between two `fstat`s of the same
//! open file, so the hash belongs to exactly one version of it.

use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use sha2::{Digest, Sha256};

use super::anchored::{VolumeRoot, is_symlink};
use super::local::Stamp;
use crate::catalog::Ownership;

const CHUNK: usize = 1024 * 1024;

/// What hashing a file found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Hashed {
    /// The content of the version `stamp`, and who owned it with which
    /// permission bits.
    Done {
        stamp: Stamp,
        sha256: [u8; 32],
        owner: Ownership,
    },
    /// The file is not the version the scan saw, or changed while it was
    /// read: it is hot, skip it.
    Changed(&'static str),
    /// Nothing (or no regular file) is at the path any more.
    Gone,
}

/// Hashes the file at `rel` beneath `root`, which the scan saw as `seen`.
/// The stamp returned (ctime included) is the `fstat` taken before reading,
/// checked equal to the one taken after.
pub(crate) fn hash_file(root: &VolumeRoot, rel: &Path, seen: &Stamp) -> io::Result<Hashed> {
    let mut file = match root.open_read(rel) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Hashed::Gone),
        // A symlink at the path or on the way to it.
        Err(e) if is_symlink(&e) => return Ok(Hashed::Gone),
        Err(e) => return Err(e),
    };
    let before = file.metadata()?;
    if !before.is_file() {
        return Ok(Hashed::Gone);
    }
    let stamp = Stamp::of(&before);
    if stamp.differs(seen).is_some() {
        return Ok(Hashed::Changed("since the scan"));
    }
    let mut hasher = Sha256::new();
    // One byte more than the file holds finds its end in the same read and
    // spares a small file a zeroed 1 MiB buffer.
    let mut buf = vec![
        0u8;
        CHUNK.min(
            usize::try_from(stamp.size)
                .unwrap_or(CHUNK)
                .saturating_add(1)
        )
    ];
    let mut total = 0u64;
    loop {
        match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                hasher.update(&buf[..n]);
                total += n as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    let after = file.metadata()?;
    let unchanged = Stamp::of(&after) == stamp && total == stamp.size;
    if !unchanged {
        return Ok(Hashed::Changed("while hashing"));
    }
    Ok(Hashed::Done {
        stamp,
        sha256: hasher.finalize().into(),
        owner: Ownership {
            uid: before.uid(),
            gid: before.gid(),
            mode: before.mode() & 0o7777,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn mover_hash_matches_sha256_and_sees_changes() {
        let dir = tempfile::tempdir().unwrap();
        let root = VolumeRoot::open(dir.path()).unwrap();
        let f = Path::new("f");
        let p = dir.path().join(f);
        let data: Vec<u8> = (0..3 * CHUNK + 17).map(|i| (i % 251) as u8).collect();
        std::fs::write(&p, &data).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o2640)).unwrap();
        let meta = std::fs::metadata(&p).unwrap();
        let seen = Stamp::of(&meta);
        let want: [u8; 32] = Sha256::digest(&data).into();
        assert_eq!(
            hash_file(&root, f, &seen).unwrap(),
            Hashed::Done {
                stamp: seen,
                sha256: want,
                owner: Ownership {
                    uid: meta.uid(),
                    gid: meta.gid(),
                    mode: 0o2640,
                },
            }
        );
        // Rewritten since the scan: another size.
        std::fs::write(&p, b"new").unwrap();
        assert_eq!(
            hash_file(&root, f, &seen).unwrap(),
            Hashed::Changed("since the scan")
        );
        std::fs::remove_file(&p).unwrap();
        assert_eq!(hash_file(&root, f, &seen).unwrap(), Hashed::Gone);
        std::os::unix::fs::symlink("/etc/hostname", &p).unwrap();
        assert_eq!(hash_file(&root, f, &seen).unwrap(), Hashed::Gone);
    }
}
