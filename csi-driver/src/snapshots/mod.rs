//! Snapshots: CreateSnapshot, DeleteSnapshot, ListSnapshots and GetSnapshot
//! over LVM snapshot LVs, and (in [`restore`]) new volumes from a snapshot or
//! a volume.
//!
//! - Thin class: a snapshot is a read-only thin snapshot LV that keeps LVM's
//!   activation-skip flag (never activated at boot; nothing strata does needs
//!   it active). Thin LVs are independent of each other: a volume can be
//!   deleted and expanded while it has snapshots, and a snapshot deleted while
//!   volumes restored from it live on.
//! - Thick class: a read-only copy-on-write snapshot whose exception store is
//!   `strata.io/cow-size` of the origin (VolumeSnapshotClass parameter, 100%
//!   by default, so it can never overflow). LVM removes COW snapshots along
//!   with their origin and grows an origin only while it is inactive: a thick
//!   volume with snapshots is refused deletion and expansion
//!   (`FAILED_PRECONDITION`, as the CSI spec says for a volume whose
//!   snapshots are not independent).
//!
//! Everything ListSnapshots needs is in the snapshot's tags
//! ([`SnapshotIdentity`]): source volume, creation time, size, class.

use std::time::SystemTime;

use strata_proto::csi::v1 as csi;
use tracing::{info, warn};

use crate::config::ClassType;
use crate::driver::Driver;
use crate::error::CsiError;
use crate::lvm::{LvInfo, NewSnapshot};
use crate::names::SnapshotIdentity;
use crate::pool::found_in;
use crate::validate::snapshot::SnapshotPlan;

pub(crate) mod copy;
pub(crate) mod restore;
pub(crate) mod rollback;

/// A strata snapshot found on this node.
#[derive(Debug, Clone)]
pub struct SnapshotFound {
    /// The snapshot LV.
    pub lv: LvInfo,
    /// What its tags say.
    pub identity: SnapshotIdentity,
}

impl SnapshotFound {
    /// False when LVM reports the snapshot invalid (a COW snapshot whose
    /// exception store overflowed): it cannot be restored any more.
    pub fn is_valid(&self) -> bool {
        !(self.lv.attr.starts_with('S') || self.lv.attr.chars().nth(4) == Some('I'))
    }

    /// True for a copy-on-write (thick) snapshot.
    pub fn is_cow(&self) -> bool {
        self.lv.pool.is_none()
    }
}

/// Every strata snapshot in `lvs`, sorted by id.
pub fn snapshots_in(lvs: &[LvInfo]) -> Vec<SnapshotFound> {
    let mut v: Vec<SnapshotFound> = lvs
        .iter()
        .filter_map(|lv| {
            SnapshotIdentity::from_tags(&lv.tags).map(|identity| SnapshotFound {
                lv: lv.clone(),
                identity,
            })
        })
        .collect();
    v.sort_by(|a, b| a.lv.name.cmp(&b.lv.name));
    v
}

/// The CSI view of a snapshot.
pub fn csi_snapshot(s: &SnapshotFound) -> csi::Snapshot {
    let since = s
        .identity
        .created
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    csi::Snapshot {
        size_bytes: s.identity.size_bytes as i64,
        snapshot_id: s.lv.name.clone(),
        source_volume_id: s.identity.source_volume.clone(),
        creation_time: Some(prost_types::Timestamp {
            seconds: since.as_secs() as i64,
            nanos: since.subsec_nanos() as i32,
        }),
        ready_to_use: s.is_valid(),
        group_snapshot_id: String::new(),
    }
}

/// True when the LV is open (mounted or otherwise in use).
pub(crate) fn is_open(lv: &LvInfo) -> bool {
    lv.attr.chars().nth(5) == Some('o')
}

/// True for the origin of copy-on-write snapshots.
pub(crate) fn is_cow_origin(lv: &LvInfo) -> bool {
    lv.attr.starts_with('o')
}

impl Driver {
    /// CreateSnapshot after validation, under the locks of the snapshot
    /// name and its source volume.
    pub(crate) fn create_snapshot(&self, plan: &SnapshotPlan) -> Result<csi::Snapshot, CsiError> {
        let (vgs, lvs) = self.inventory_all()?;
        if let Some(lv) = lvs.iter().find(|l| l.name == plan.lv_name) {
            let identity = SnapshotIdentity::from_tags(&lv.tags).ok_or_else(|| {
                CsiError::AlreadyExists(format!(
                    "name: an LV {}/{} exists that is not a strata snapshot; refusing to adopt it",
                    lv.vg, lv.name
                ))
            })?;
            if identity.source_volume != plan.source_volume {
                return Err(CsiError::AlreadyExists(format!(
                    "name: snapshot {:?} exists for volume {:?}, not {:?}",
                    plan.name, identity.source_volume, plan.source_volume
                )));
            }
            return Ok(csi_snapshot(&SnapshotFound {
                lv: lv.clone(),
                identity,
            }));
        }
        let source = found_in(&lvs, &plan.source_volume).ok_or_else(|| {
            CsiError::NotFound(format!(
                "source_volume_id: volume {:?} does not exist on node {}",
                plan.source_volume, self.node_id
            ))
        })?;
        restore::refuse_filling(&source, "source_volume_id")?;
        let class = self.class_of(&source)?;
        let vg = vgs.iter().find(|v| v.name == source.lv.vg).ok_or_else(|| {
            CsiError::Unavailable(format!("volume group {:?} not found", source.lv.vg))
        })?;
        let identity = SnapshotIdentity {
            class: class.name.clone(),
            source_volume: source.lv.name.clone(),
            created: SystemTime::now(),
            size_bytes: source.lv.size_bytes,
            vs_namespace: plan.vs_namespace.clone(),
            vs_name: plan.vs_name.clone(),
        };
        let cow_bytes = match class.class_type {
            ClassType::Thin => {
                self.make_room(&class, vg, &lvs, 0, false, "a snapshot")?;
                None
            }
            ClassType::Thick => {
                let cow = plan.cow.bytes_for(source.lv.size_bytes, vg.extent_bytes);
                let what = format!("a snapshot with {cow} bytes of copy-on-write space");
                self.make_room(&class, vg, &lvs, cow, true, &what)?;
                // A COW snapshot is created and initialised through its
                // active origin.
                if !source.lv.is_active() {
                    self.lvm.set_active(&source.lv.vg, &source.lv.name, true)?;
                }
                Some(cow)
            }
        };
        let lv = self.lvm.create_snapshot(&NewSnapshot {
            vg: source.lv.vg.clone(),
            origin: source.lv.name.clone(),
            name: plan.lv_name.clone(),
            cow_bytes,
            writable: false,
            tags: identity.to_tags(),
        })?;
        info!(snapshot = %lv.name, source = %source.lv.name, cow_bytes, "created snapshot");
        Ok(csi_snapshot(&SnapshotFound { lv, identity }))
    }

    /// DeleteSnapshot under the snapshot's lock; a missing snapshot is deleted.
    pub(crate) fn delete_snapshot(&self, id: &str) -> Result<(), CsiError> {
        let lvs = self.all_lvs()?;
        let Some(lv) = lvs.iter().find(|l| l.name == id) else {
            return Ok(());
        };
        if SnapshotIdentity::from_tags(&lv.tags).is_none() {
            warn!(lv = %lv.name, vg = %lv.vg, "DeleteSnapshot: the LV is not a strata snapshot; left alone");
            return Ok(());
        }
        if is_open(lv) {
            return Err(CsiError::FailedPrecondition(format!(
                "snapshot_id: snapshot {id} is open (being read); retry when it is not"
            )));
        }
        self.lvm.remove_lv(&lv.vg, &lv.name)?;
        info!(snapshot = %lv.name, vg = %lv.vg, "deleted snapshot");
        Ok(())
    }

    /// Every strata snapshot on this node, sorted by id.
    pub(crate) fn snapshots(&self) -> Result<Vec<SnapshotFound>, CsiError> {
        Ok(snapshots_in(&self.all_lvs()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lv(name: &str, attr: &str, tags: Vec<String>) -> LvInfo {
        LvInfo {
            vg: "vg".into(),
            name: name.into(),
            size_bytes: 8 << 20,
            tags,
            attr: attr.into(),
            pool: None,
            path: format!("/dev/vg/{name}"),
            data_percent: None,
            metadata_percent: None,
            created: None,
        }
    }

    #[test]
    fn snapshots_are_found_by_their_tags_and_shown_from_them() {
        let identity = SnapshotIdentity {
            class: "fast".into(),
            source_volume: "pvc-1".into(),
            created: std::time::UNIX_EPOCH + std::time::Duration::new(1_700_000_000, 5),
            size_bytes: 64 << 20,
            vs_namespace: None,
            vs_name: None,
        };
        let lvs = vec![
            lv("snap-b", "swi-a-s---", identity.to_tags()),
            lv("pvc-1", "owi-aos---", vec!["strata.io".into()]),
            lv("snap-a", "SwI-a-s---", identity.to_tags()),
            lv("snap-c", "swi-a-s---", vec!["foreign".into()]),
        ];
        let found = snapshots_in(&lvs);
        assert_eq!(
            found.iter().map(|s| s.lv.name.as_str()).collect::<Vec<_>>(),
            ["snap-a", "snap-b"]
        );
        let a = csi_snapshot(&found[0]);
        assert!(!a.ready_to_use, "an overflowed COW snapshot is not usable");
        let b = csi_snapshot(&found[1]);
        assert!(b.ready_to_use);
        assert_eq!(b.size_bytes, 64 << 20);
        assert_eq!(b.source_volume_id, "pvc-1");
        assert_eq!(
            b.creation_time,
            Some(prost_types::Timestamp {
                seconds: 1_700_000_000,
                nanos: 5
            })
        );
        assert!(is_cow_origin(&lvs[1]) && is_open(&lvs[1]));
        assert!(!is_cow_origin(&lvs[0]) && !is_open(&lvs[0]));
        assert!(found[1].is_cow());
    }
}
