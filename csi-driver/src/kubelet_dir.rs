//! The kubelet's directory, to which every path a node call names is
//! confined: the driver runs as root, and whoever can reach its socket must
//! not make it mount over, unmount or remove anything outside the
//! directories the kubelet hands out.
//!
//! How a request path is judged:
//! - The configured directory (`--kubelet-dir`) is resolved once, at start.
//!   On some distros `/var/lib/kubelet` is itself a symlink (or lies under
//!   one); that link is the host administrator's, so it is trusted, and
//!   only as it pointed at start.
//! - A request path must be absolute, without `..`, and lexically beneath
//!   the configured directory or its resolved form (the kubelet names paths
//!   with its own `--root-dir`, which may be the symlink). The directory
//!   itself is not a path beneath it.
//! - No component beneath the directory may be a symlink: pods write there
//!   (their volumes are mounted beneath it), so a link there is nobody's
//!   the driver may trust. Components that do not exist yet are fine: the
//!   driver creates them as plain directories.
//! - The call then works on the resolved path, which is also what the mount
//!   table shows.

use std::io;
use std::path::{Component, Path, PathBuf};

use crate::error::CsiError;

/// The kubelet's root directory, resolved at start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KubeletDir {
    /// As configured (made absolute).
    configured: PathBuf,
    /// With every symlink resolved, as it was at start.
    resolved: PathBuf,
}

impl KubeletDir {
    /// Resolves `configured` (which must exist) once.
    pub fn resolve(configured: &Path) -> io::Result<Self> {
        let configured = std::path::absolute(configured)?;
        let resolved = std::fs::canonicalize(&configured)?;
        if !std::fs::metadata(&resolved)?.is_dir() {
            return Err(io::Error::new(
                io::ErrorKind::NotADirectory,
                format!("{} is not a directory", resolved.display()),
            ));
        }
        Ok(Self {
            configured,
            resolved,
        })
    }

    /// The directory with its symlinks resolved.
    pub fn path(&self) -> &Path {
        &self.resolved
    }

    /// `path` (request field `field`) in its resolved form, or
    /// `INVALID_ARGUMENT` naming the field and why it is not beneath the
    /// kubelet directory.
    pub fn confine(&self, path: &Path, field: &str) -> Result<PathBuf, CsiError> {
        let outside = |why: String| CsiError::invalid(field, why);
        if path.components().any(|c| c == Component::ParentDir) {
            return Err(outside(format!(
                "{:?} must not contain '..'",
                path.display()
            )));
        }
        let rest = path
            .strip_prefix(&self.resolved)
            .or_else(|_| path.strip_prefix(&self.configured))
            .map_err(|_| {
                outside(format!(
                    "{} is not beneath the kubelet directory {}; strata works only on the \
                     paths the kubelet hands out (--kubelet-dir)",
                    path.display(),
                    self.resolved.display()
                ))
            })?;
        if rest.as_os_str().is_empty() {
            return Err(outside(format!(
                "{} is the kubelet directory itself, not a path beneath it",
                path.display()
            )));
        }
        let mut at = self.resolved.clone();
        for c in rest.components() {
            let Component::Normal(name) = c else {
                return Err(outside(format!(
                    "{} has a component that is not a plain name",
                    path.display()
                )));
            };
            at.push(name);
            match std::fs::symlink_metadata(&at) {
                Ok(m) if m.file_type().is_symlink() => {
                    return Err(outside(format!(
                        "{} passes through {}, a symlink; strata follows no symlink beneath \
                         the kubelet directory",
                        path.display(),
                        at.display()
                    )));
                }
                Ok(_) => {}
                // Not made yet (or beneath a file, which the call itself
                // then fails on): nothing beneath can be a link.
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
                    ) =>
                {
                    break;
                }
                Err(e) => {
                    return Err(CsiError::Internal(format!(
                        "{field}: cannot inspect {}: {e}",
                        at.display()
                    )));
                }
            }
        }
        Ok(self.resolved.join(rest))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(r: Result<PathBuf, CsiError>) -> String {
        match r {
            Err(CsiError::InvalidArgument { field, reason }) => format!("{field}: {reason}"),
            other => panic!("not refused: {other:?}"),
        }
    }

    #[test]
    fn paths_beneath_are_kept_and_others_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let kubelet = tmp.path().join("kubelet");
        std::fs::create_dir_all(kubelet.join("pods/u1")).unwrap();
        let k = KubeletDir::resolve(&kubelet).unwrap();
        let real = std::fs::canonicalize(&kubelet).unwrap();
        assert_eq!(
            k.confine(&kubelet.join("pods/u1/./new/mount"), "target_path")
                .unwrap(),
            real.join("pods/u1/new/mount")
        );
        let e = reason(k.confine(Path::new("/etc/passwd"), "target_path"));
        assert!(
            e.starts_with("target_path: /etc/passwd is not beneath the kubelet directory"),
            "{e}"
        );
        let e = reason(k.confine(&kubelet.join("pods/../../etc"), "target_path"));
        assert!(e.contains("must not contain '..'"), "{e}");
        let e = reason(k.confine(&kubelet, "staging_target_path"));
        assert!(e.contains("the kubelet directory itself"), "{e}");
        // A sibling whose name starts like the directory is not beneath it.
        let e = reason(k.confine(&tmp.path().join("kubelet-other/x"), "target_path"));
        assert!(e.contains("not beneath"), "{e}");
    }

    #[test]
    fn a_symlink_beneath_is_refused_and_one_above_is_resolved() {
        let tmp = tempfile::tempdir().unwrap();
        let real = tmp.path().join("data/kubelet");
        std::fs::create_dir_all(real.join("pods")).unwrap();
        let link = tmp.path().join("kubelet");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let outside = tmp.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        std::os::unix::fs::symlink(&outside, real.join("pods/evil")).unwrap();

        let k = KubeletDir::resolve(&link).unwrap();
        let real = std::fs::canonicalize(&real).unwrap();
        assert_eq!(k.path(), real);
        // The configured link and its target name the same place.
        for base in [&link, &real] {
            assert_eq!(
                k.confine(&base.join("pods/u/mount"), "target_path")
                    .unwrap(),
                real.join("pods/u/mount")
            );
            let e = reason(k.confine(&base.join("pods/evil/x"), "target_path"));
            assert!(e.contains("a symlink"), "{e}");
            let e = reason(k.confine(&base.join("pods/evil"), "target_path"));
            assert!(e.contains("a symlink"), "{e}");
        }
    }
}
