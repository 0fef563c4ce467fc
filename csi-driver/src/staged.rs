//! Staged filesystem volumes and who else uses them.
//!
//! The tiering agent works on a volume's files through the path where the
//! node staged it. The driver knows nothing of tiering: it tells a
//! [`VolumeUsers`] when a filesystem volume has been staged and before it
//! unmounts one, and [`Driver::staged_volumes`] lists what is staged now, so
//! a user that started late (or after a crash) can catch up.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tracing::warn;

use crate::driver::Driver;
use crate::error::CsiError;
use crate::mount::{self, MountEntry};
use crate::names::VolumeIdentity;

/// A filesystem volume mounted on this node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StagedVolume {
    /// The CSI volume id (the LV name).
    pub id: String,
    /// Where its filesystem is mounted: the staging path.
    pub path: PathBuf,
    /// The Kubernetes identity its tags record.
    pub identity: VolumeIdentity,
    /// Mounted read-only.
    pub read_only: bool,
}

/// Something else on the node that works on staged volumes' files.
///
/// Both calls run on a blocking thread and may block; neither can fail the
/// CSI request: volumes keep being served whatever their other users do.
pub trait VolumeUsers: Send + Sync {
    /// The volume is mounted at `volume.path` and may be used.
    fn staged(&self, volume: &StagedVolume);
    /// The volume mounted at `path` is about to be unmounted: stop using it
    /// and return once nothing of this user holds a file on it open (or a
    /// bounded wait has passed).
    fn unstaging(&self, id: &str, path: &Path);
}

/// kubelet stages a volume at `…/globalmount` before it bind-mounts it into
/// pods; any mount of the filesystem reaches the same files, but the staging
/// path is the one that stays for as long as the volume is staged.
pub(crate) fn staging_mount(table: &[MountEntry], dev: (u32, u32)) -> Option<&MountEntry> {
    let whole: Vec<&MountEntry> = table
        .iter()
        .filter(|m| m.dev == dev && m.root == "/")
        .collect();
    whole
        .iter()
        .find(|m| m.mount_point.ends_with("globalmount"))
        .or_else(|| whole.first())
        .copied()
}

impl Driver {
    /// Sets who else uses staged volumes; the first call wins.
    pub fn set_volume_users(&self, users: Arc<dyn VolumeUsers>) {
        if self.users.set(users).is_err() {
            warn!("volume users were already set; keeping the first");
        }
    }

    /// The strata filesystem volumes mounted on this node now, by id: one
    /// LVM report and the mount table.
    pub fn staged_volumes(&self) -> Result<Vec<StagedVolume>, CsiError> {
        let table = mount::mounts()
            .map_err(|e| CsiError::Internal(format!("cannot read the mount table: {e}")))?;
        let mut out = Vec::new();
        for found in self.volumes()? {
            if !found.lv.is_active() {
                continue;
            }
            let Ok(dev) = mount::device_number(Path::new(&found.lv.path)) else {
                continue;
            };
            if let Some(m) = staging_mount(&table, dev) {
                out.push(StagedVolume {
                    id: found.lv.name.clone(),
                    path: m.mount_point.clone(),
                    identity: found.identity.clone(),
                    read_only: m.read_only(),
                });
            }
        }
        Ok(out)
    }

    /// Tells the volume users that volume `id` is staged at `path`.
    pub(crate) fn announce_staged(&self, id: &str, path: &Path) {
        let Some(users) = self.users.get() else {
            return;
        };
        let found = match self.find(id) {
            Ok(Some(f)) => f,
            Ok(None) => return,
            Err(e) => {
                warn!(
                    volume = id,
                    "staged, but its tags could not be read for tiering: {e}"
                );
                return;
            }
        };
        let table = mount::mounts().unwrap_or_default();
        users.staged(&StagedVolume {
            id: id.to_owned(),
            path: path.to_owned(),
            identity: found.identity,
            read_only: mount::mount_at(&table, path).is_some_and(MountEntry::read_only),
        });
    }

    /// Tells the volume users that volume `id` at `path` is about to go.
    pub(crate) fn announce_unstaging(&self, id: &str, path: &Path) {
        if let Some(users) = self.users.get() {
            users.unstaging(id, path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(dev: (u32, u32), root: &str, at: &str) -> MountEntry {
        MountEntry {
            dev,
            root: root.into(),
            mount_point: at.into(),
            options: vec!["rw".into()],
            fs_type: "ext4".into(),
            source: "/dev/mapper/vg-a".into(),
        }
    }

    #[test]
    fn the_staging_path_wins_over_earlier_and_later_mounts() {
        let table = [
            entry((253, 1), "/", "/var/lib/kubelet/pods/p/volumes/x/mount"),
            entry(
                (253, 1),
                "/",
                "/var/lib/kubelet/plugins/kubernetes.io/csi/strata.io/h/globalmount",
            ),
            entry((253, 2), "/", "/other"),
        ];
        let m = staging_mount(&table, (253, 1)).unwrap();
        assert!(m.mount_point.ends_with("globalmount"));
    }

    #[test]
    fn without_a_globalmount_the_first_whole_filesystem_mount_is_used() {
        let table = [
            entry((253, 1), "/sub", "/bind-of-a-subdir"),
            entry((253, 1), "/", "/stage/a"),
            entry((253, 1), "/", "/target/a"),
        ];
        assert_eq!(
            staging_mount(&table, (253, 1)).unwrap().mount_point,
            Path::new("/stage/a")
        );
        assert!(staging_mount(&table, (9, 9)).is_none());
    }
}
