//! Removing orphans, for `strata node gc --apply` only: each removal
//! re-checks what makes it safe first.

use std::path::Path;
use std::time::{Duration, SystemTime};

use tracing::info;

use super::in_flight::still_working;
use super::{DirState, Orphan, OrphanKind, dir_state, is_open};
use crate::driver::Driver;
use crate::lvm::LvInfo;
use crate::mount::{self, MountEntry};
use crate::names::TAG_FILLING;
use crate::snapshots::rollback::temporaries_of;

/// What [`remove`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Removed (or already gone).
    Removed,
    /// Left alone, and why.
    Kept(String),
    /// Removal failed, and why.
    Failed(String),
}

/// Remove one orphan, re-checking what makes removal safe first (on a
/// fresh report, with the same rules as [`super::judge`]; `grace` as there).
/// Blocking.
pub fn remove(driver: &Driver, orphan: &Orphan, grace: Duration) -> Outcome {
    match orphan.kind {
        OrphanKind::Volume => remove_volume(driver, orphan, grace),
        OrphanKind::Mount => {
            let Some(path) = &orphan.path else {
                return Outcome::Failed("no mount point".into());
            };
            match mount::unmount(path) {
                Ok(()) => Outcome::Removed,
                Err(e) => Outcome::Failed(format!("umount {}: {e}", path.display())),
            }
        }
        OrphanKind::StagingDir | OrphanKind::PublishDir => {
            let Some(dir) = &orphan.path else {
                return Outcome::Failed("no directory".into());
            };
            remove_kubelet_dir(dir, orphan.kind)
        }
    }
}

/// Why `lv` must stay: mounted, open, or possibly still a request's.
fn kept_because(driver: &Driver, lv: &LvInfo, grace: Duration) -> Option<String> {
    if lv.is_active()
        && let Ok(dev) = mount::device_number(Path::new(&lv.path))
        && let Ok(table) = mount::mounts()
        && let Some(m) = mount::user_of(&table, dev, Path::new("/dev"))
    {
        return Some(format!("mounted at {}", m.mount_point.display()));
    }
    if is_open(lv) {
        return Some("its device is open".into());
    }
    still_working(lv, SystemTime::now(), grace, &driver.volume_locks.keys())
}

fn remove_volume(driver: &Driver, orphan: &Orphan, grace: Duration) -> Outcome {
    let Some(vg) = &orphan.vg else {
        return Outcome::Failed("no volume group".into());
    };
    // Every configured VG: a clone's temporary snapshot is in its source's.
    let lvs = match driver.all_lvs() {
        Ok(l) => l,
        Err(e) => return Outcome::Failed(e.to_string()),
    };
    let Some(lv) = lvs.iter().find(|l| &l.vg == vg && l.name == orphan.volume) else {
        return Outcome::Removed;
    };
    if let Some(why) = kept_because(driver, lv, grace) {
        return Outcome::Kept(why);
    }
    // A clone that never finished goes with its temporary snapshot of the
    // source, first (the snapshot is what holds the source's space).
    if lv.tags.iter().any(|t| t == TAG_FILLING) {
        for t in temporaries_of(&lvs, &lv.name) {
            if let Some(why) = kept_because(driver, t, grace) {
                return Outcome::Kept(format!("its temporary snapshot {}/{}: {why}", t.vg, t.name));
            }
            if let Err(e) = driver.lvm.remove_lv(&t.vg, &t.name) {
                return Outcome::Failed(format!("its temporary snapshot {}/{}: {e}", t.vg, t.name));
            }
            info!(volume = %format!("{}/{}", t.vg, t.name), "removed orphan volume's temporary snapshot");
        }
    }
    match driver.lvm.remove_lv(vg, &lv.name) {
        Ok(()) => {
            info!(volume = %orphan.name(), "removed orphan volume");
            Outcome::Removed
        }
        Err(e) => Outcome::Failed(e.to_string()),
    }
}

pub(super) fn remove_kubelet_dir(volume_dir: &Path, kind: OrphanKind) -> Outcome {
    let mount_dir = volume_dir.join(if kind == OrphanKind::StagingDir {
        "globalmount"
    } else {
        "mount"
    });
    let table = mount::mounts().unwrap_or_default();
    if mount::mount_at(&table, &mount_dir).is_some() {
        return Outcome::Kept(format!("{} is mounted", mount_dir.display()));
    }
    match dir_state(&mount_dir) {
        DirState::NotEmpty => {
            return Outcome::Kept(format!("{} is not empty", mount_dir.display()));
        }
        DirState::Empty => {
            if let Err(e) = std::fs::remove_dir(&mount_dir) {
                return Outcome::Failed(format!("rmdir {}: {e}", mount_dir.display()));
            }
        }
        DirState::Absent => {}
    }
    let data = volume_dir.join("vol_data.json");
    match std::fs::remove_file(&data) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Outcome::Failed(format!("rm {}: {e}", data.display()));
        }
        _ => {}
    }
    match std::fs::remove_dir(volume_dir) {
        Ok(()) => Outcome::Removed,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Outcome::Removed,
        Err(e) => Outcome::Failed(format!("rmdir {}: {e}", volume_dir.display())),
    }
}

/// The order `gc --apply` removes in: mounts (the latest first, so a bind
/// on top goes before what it binds), then directories, then volumes.
pub fn removal_order(orphans: &[Orphan], mounts: &[MountEntry]) -> Vec<Orphan> {
    let position = |o: &Orphan| {
        o.path
            .as_deref()
            .and_then(|p| mounts.iter().rposition(|m| m.mount_point == p))
            .unwrap_or(0)
    };
    let mut v = orphans.to_vec();
    v.sort_by_key(|o| {
        let rank = match o.kind {
            OrphanKind::Mount => 0,
            OrphanKind::StagingDir | OrphanKind::PublishDir => 1,
            OrphanKind::Volume => 2,
        };
        (rank, std::cmp::Reverse(position(o)))
    });
    v
}
