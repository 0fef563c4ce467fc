//! Where on the node's disks an agent may work: beneath its configured
//! volume roots, and never in a catalog's own data.
//!
//! A volume registered in the catalog names a path, and the agent (root)
//! scans, uploads, deletes and writes files there. Anyone who can register a
//! volume (a node certificate, `strata ctl volume add`) must not be able to
//! aim it at `/etc`, at the kubelet's keys, or at a catalog's RocksDB files
//! (a `*/*` move rule would release them). So a volume's path must:
//!
//! - lie beneath (or be) one of the agent's volume roots, each resolved
//!   once at start (a root that is a symlink is the administrator's and
//!   trusted as it pointed then), compared lexically;
//! - not pass through a symlink beneath its root (a pod writes inside its
//!   volume, so a link there may point anywhere);
//! - not be, contain, or lie inside a reserved directory (the agent's own
//!   catalog store), nor be or lie inside any strata catalog store found on
//!   disk (a `strata catalog` replica's on the same host).
//!
//! The lexical checks ([`VolumeBounds::check`]) cost nothing and run
//! wherever a volume is picked, down to every record a drain considers; the
//! checks on disk ([`VolumeBounds::check_on_disk`]) run when the agent picks
//! the volumes of a tick, a run or a recall.

use std::path::{Component, Path, PathBuf};

/// The file every strata catalog store holds (beside RocksDB's `CURRENT`).
const STORE_MARKER: &str = "IDENTITY.json";

/// Why the agent does not work on a volume.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OutOfBounds {
    /// The path is not absolute and normalised.
    #[error("{path}: not an absolute path without '.' and '..'")]
    NotNormal {
        /// The volume's path.
        path: String,
    },
    /// The path is beneath none of the agent's volume roots.
    #[error("{path}: not beneath a volume root of this node ({})", list(.roots))]
    OutsideRoots {
        /// The volume's path.
        path: String,
        /// The roots (resolved).
        roots: Vec<PathBuf>,
    },
    /// The path is, contains or lies inside a catalog's own data.
    #[error("{path}: {relation} the catalog's own data at {store}")]
    CatalogData {
        /// The volume's path.
        path: String,
        /// `is`, `contains` or `lies inside`.
        relation: &'static str,
        /// The catalog's directory.
        store: PathBuf,
    },
    /// The path passes through a symlink beneath its root.
    #[error(
        "{path}: passes through {link}, a symlink; the agent follows none beneath its volume root"
    )]
    Symlink {
        /// The volume's path.
        path: String,
        /// The link.
        link: PathBuf,
    },
}

fn list(paths: &[PathBuf]) -> String {
    let v: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
    v.join(", ")
}

/// The volume roots and reserved directories of one agent.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VolumeBounds {
    /// `None`: any absolute path (a library user that chose not to bound it).
    roots: Option<Vec<PathBuf>>,
    reserved: Vec<PathBuf>,
}

impl VolumeBounds {
    /// Volumes only beneath `roots` (already resolved: see the module doc).
    pub fn within(roots: Vec<PathBuf>) -> Self {
        Self {
            roots: Some(roots),
            reserved: Vec::new(),
        }
    }

    /// Also keeps off `dir` (a catalog's store, resolved): no volume may be,
    /// contain or lie inside it.
    pub fn reserve(mut self, dir: PathBuf) -> Self {
        self.reserved.push(dir);
        self
    }

    /// The volume roots, if the agent has any.
    pub fn roots(&self) -> Option<&[PathBuf]> {
        self.roots.as_deref()
    }

    /// The lexical checks: normalised, beneath a root, clear of the
    /// reserved directories.
    pub fn check(&self, path: &str) -> Result<(), OutOfBounds> {
        let p = Path::new(path);
        if !p.is_absolute()
            || p.components()
                .any(|c| matches!(c, Component::CurDir | Component::ParentDir))
        {
            return Err(OutOfBounds::NotNormal {
                path: path.to_owned(),
            });
        }
        for store in &self.reserved {
            if let Some(relation) = relation(p, store) {
                return Err(OutOfBounds::CatalogData {
                    path: path.to_owned(),
                    relation,
                    store: store.clone(),
                });
            }
        }
        if self.root_of(p).is_none() {
            return Err(OutOfBounds::OutsideRoots {
                path: path.to_owned(),
                roots: self.roots.clone().unwrap_or_default(),
            });
        }
        Ok(())
    }

    /// The root `path` lies beneath (the longest), `/` when unbounded.
    fn root_of(&self, path: &Path) -> Option<&Path> {
        match &self.roots {
            None => Some(Path::new("/")),
            Some(roots) => roots
                .iter()
                .filter(|r| path.starts_with(r))
                .max_by_key(|r| r.components().count())
                .map(PathBuf::as_path),
        }
    }

    /// [`VolumeBounds::check`], then on disk: no symlink beneath the root
    /// on the way to the volume, the path neither is nor lies inside a
    /// strata catalog store, and (resolved) it is clear of the reserved
    /// directories. A path that does not exist passes what it can: the
    /// mover refuses a volume root it cannot open.
    pub fn check_on_disk(&self, path: &str) -> Result<(), OutOfBounds> {
        self.check(path)?;
        let p = Path::new(path);
        let root = self.root_of(p).unwrap_or(Path::new("/"));
        let mut at = root.to_path_buf();
        if let Ok(rest) = p.strip_prefix(root) {
            for c in rest.components() {
                at.push(c);
                match std::fs::symlink_metadata(&at) {
                    Ok(m) if m.file_type().is_symlink() && self.roots.is_some() => {
                        return Err(OutOfBounds::Symlink {
                            path: path.to_owned(),
                            link: at,
                        });
                    }
                    Ok(_) => {}
                    Err(_) => break,
                }
            }
        }
        let resolved = std::fs::canonicalize(p).unwrap_or_else(|_| p.to_owned());
        for store in &self.reserved {
            if let Some(relation) = relation(&resolved, store) {
                return Err(OutOfBounds::CatalogData {
                    path: path.to_owned(),
                    relation,
                    store: store.clone(),
                });
            }
        }
        for dir in resolved.ancestors() {
            if is_catalog_store(dir) {
                let relation = if dir == resolved { "is" } else { "lies inside" };
                return Err(OutOfBounds::CatalogData {
                    path: path.to_owned(),
                    relation,
                    store: dir.to_owned(),
                });
            }
        }
        // A data directory whose catalog is one level down (`--data-dir`).
        let below = resolved.join("catalog");
        if is_catalog_store(&below) {
            return Err(OutOfBounds::CatalogData {
                path: path.to_owned(),
                relation: "contains",
                store: below,
            });
        }
        Ok(())
    }
}

/// How `path` stands to `store`, if they overlap.
fn relation(path: &Path, store: &Path) -> Option<&'static str> {
    if path == store {
        Some("is")
    } else if store.starts_with(path) {
        Some("contains")
    } else if path.starts_with(store) {
        Some("lies inside")
    } else {
        None
    }
}

/// Whether `dir` holds a strata catalog store (its identity and RocksDB's
/// `CURRENT`).
pub fn is_catalog_store(dir: &Path) -> bool {
    dir.join(STORE_MARKER).is_file() && dir.join("CURRENT").is_file()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lexical_checks_name_the_roots_and_the_catalog() {
        let b = VolumeBounds::within(vec![
            "/var/lib/kubelet/plugins/kubernetes.io/csi".into(),
            "/srv/data".into(),
        ])
        .reserve("/srv/data/strata/catalog".into());
        assert_eq!(b.check("/srv/data/cams"), Ok(()));
        // A root is itself a volume's place, unless it holds the catalog.
        assert_eq!(
            VolumeBounds::within(vec!["/srv/data".into()]).check("/srv/data"),
            Ok(())
        );
        assert_eq!(
            b.check("/var/lib/kubelet/plugins/kubernetes.io/csi/strata.io/h/globalmount"),
            Ok(())
        );
        let e = b.check("/var/lib/kubelet/pki").unwrap_err().to_string();
        assert_eq!(
            e,
            "/var/lib/kubelet/pki: not beneath a volume root of this node \
             (/var/lib/kubelet/plugins/kubernetes.io/csi, /srv/data)"
        );
        assert!(matches!(
            b.check("/etc"),
            Err(OutOfBounds::OutsideRoots { .. })
        ));
        assert!(matches!(
            b.check("/srv/data-other"),
            Err(OutOfBounds::OutsideRoots { .. })
        ));
        for (path, relation) in [
            ("/srv/data/strata/catalog", "is"),
            ("/srv/data/strata", "contains"),
            ("/srv/data/strata/catalog/x", "lies inside"),
        ] {
            assert_eq!(
                b.check(path).unwrap_err().to_string(),
                format!("{path}: {relation} the catalog's own data at /srv/data/strata/catalog")
            );
        }
        // The catalog's own data is kept off even by unbounded scopes.
        let any = VolumeBounds::default().reserve("/d/catalog".into());
        assert_eq!(any.check("/etc"), Ok(()));
        assert!(any.check("/").is_err());
        assert!(matches!(
            b.check("/srv/data/../etc"),
            Err(OutOfBounds::NotNormal { .. })
        ));
    }

    #[test]
    fn on_disk_a_symlink_or_a_catalog_store_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(tmp.path()).unwrap();
        let outside = root.join("outside");
        std::fs::create_dir_all(outside.join("x")).unwrap();
        std::fs::create_dir_all(root.join("vols/a")).unwrap();
        std::os::unix::fs::symlink(&outside, root.join("vols/link")).unwrap();
        let b = VolumeBounds::within(vec![root.join("vols")]);
        let s = |p: PathBuf| p.display().to_string();
        assert_eq!(b.check_on_disk(&s(root.join("vols/a"))), Ok(()));
        assert!(matches!(
            b.check_on_disk(&s(root.join("vols/link/x"))),
            Err(OutOfBounds::Symlink { .. })
        ));
        // A replica's data directory, found by its store's files.
        let store = root.join("vols/replica/catalog");
        std::fs::create_dir_all(&store).unwrap();
        std::fs::write(store.join("CURRENT"), "MANIFEST-000001\n").unwrap();
        std::fs::write(store.join(STORE_MARKER), "{}").unwrap();
        for (path, relation) in [
            (store.clone(), "is"),
            (store.join("x"), "lies inside"),
            (root.join("vols/replica"), "contains"),
        ] {
            std::fs::create_dir_all(&path).unwrap();
            let e = b.check_on_disk(&s(path.clone())).unwrap_err();
            assert_eq!(
                e,
                OutOfBounds::CatalogData {
                    path: s(path),
                    relation,
                    store: store.clone()
                }
            );
        }
    }
}
