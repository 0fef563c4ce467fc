//! NodeExpandVolume: growing a volume (and its filesystem) in place, and
//! refusing growth the node has no room for.
//!
//! strata expands on the node only: the external-resizer records the new
//! size in the PersistentVolume without asking the driver (no
//! ControllerExpandVolume), so a claim grown past what its node holds is
//! accepted by the control plane and refused here, when the kubelet asks.
//! The refusal is `OUT_OF_RANGE` (the CSI spec's code for a capacity the
//! plugin cannot give), naming the requested and current size, the free
//! bytes of the VG or thin pool and the device class, and counted in
//! `strata_csi_expand_refused_total{device_class,reason}`. The kubelet turns
//! it into `VolumeResizeFailed` on the pod and, where the claim's resize
//! status is tracked (RecoverVolumeExpansionFailure), marks the claim
//! `NodeResizeInfeasible`. A volume cannot shrink: room is made in the VG
//! (or pool), or the claim is set back to a size that fits.

use std::path::PathBuf;

use tracing::info;

use crate::capacity;
use crate::config::{ClassType, DeviceClass};
use crate::driver::{Driver, Found};
use crate::error::CsiError;
use crate::fs::{self, Content};
use crate::lvm::{LvInfo, VgInfo};
use crate::mount;
use crate::node::{internal, mount_table};
use crate::validate::{FsType, SizeRange};

/// Why growth was refused: the `reason` label of
/// `strata_csi_expand_refused_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefusedBecause {
    /// A thick class's VG has too few free bytes (after its spare).
    VolumeGroupFull,
    /// A thin pool cannot promise the bytes (ratio, or data it may still take).
    ThinPoolFull,
    /// A thin pool is past its danger mark.
    ThinPoolPastMark,
}

impl RefusedBecause {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            RefusedBecause::VolumeGroupFull => "volume_group_full",
            RefusedBecause::ThinPoolFull => "thin_pool_full",
            RefusedBecause::ThinPoolPastMark => "thin_pool_past_mark",
        }
    }
}

/// What a refused growth says: the reason label and the message of the
/// `OUT_OF_RANGE` answer. `room` is what allocation said (the VG's or the
/// pool's own words, from [`Driver::make_room`]).
pub fn refusal(
    class: &DeviceClass,
    vg: &VgInfo,
    lvs: &[LvInfo],
    lv: &LvInfo,
    want: u64,
    room: &str,
) -> (RefusedBecause, String) {
    let asked = format!(
        "volume {} cannot grow to {want} bytes (it has {}, {} more asked)",
        lv.name,
        lv.size_bytes,
        want.saturating_sub(lv.size_bytes)
    );
    let what_now = "a volume cannot shrink: make room (delete volumes or snapshots on this node, or add a physical volume to the volume group with vgextend) or set the claim back to a size that fits";
    match class.class_type {
        ClassType::Thick => {
            let spare = class.spare_bytes;
            (
                RefusedBecause::VolumeGroupFull,
                format!(
                    "{asked}: device class {:?} has {} bytes free in volume group {:?} ({} of them kept spare); {what_now}",
                    class.name,
                    vg.free_bytes,
                    vg.name,
                    spare.min(vg.free_bytes)
                ),
            )
        }
        ClassType::Thin => {
            let past = capacity::pool_usage(class, lvs).is_some_and(|u| u.past_mark());
            let why = room.strip_prefix("capacity_range: ").unwrap_or(room);
            (
                if past {
                    RefusedBecause::ThinPoolPastMark
                } else {
                    RefusedBecause::ThinPoolFull
                },
                format!("{asked}: {why}; {what_now}"),
            )
        }
    }
}

impl Driver {
    /// NodeExpandVolume under the volume's and its VG's locks: grow the LV
    /// to the requested size (or refuse, see the module), then its
    /// filesystem where it is mounted.
    pub(crate) fn expand(
        &self,
        id: &str,
        paths: &[PathBuf],
        size: SizeRange,
        block: bool,
    ) -> Result<i64, CsiError> {
        // One report: the volume, its VG and (thin) its pool.
        let (found, vgs, lvs) = self.require_in_report(id, "volume_id")?;
        let class = self.class_of(&found)?;
        let vg = vgs
            .into_iter()
            .find(|v| v.name == found.lv.vg)
            .ok_or_else(|| {
                CsiError::Unavailable(format!("volume group {:?} not found", found.lv.vg))
            })?;
        let want = size.fit(0, vg.extent_bytes, "capacity_range")?;
        let mut lv = found.lv.clone();
        if want > lv.size_bytes {
            if crate::snapshots::is_cow_origin(&lv) {
                return Err(CsiError::FailedPrecondition(format!(
                    "volume_id: thick volume {id} has snapshots, and LVM grows the origin of copy-on-write snapshots only while it is inactive; delete its snapshots first"
                )));
            }
            let grow = want - lv.size_bytes;
            let what = format!("growing volume {id} by {grow} bytes");
            match self.make_room(&class, &vg, &lvs, grow, true, &what) {
                Ok(()) => {}
                Err(CsiError::ResourceExhausted(room)) => {
                    let (because, reason) = refusal(&class, &vg, &lvs, &lv, want, &room);
                    self.metrics.expand_refused(&class.name, because.as_str());
                    return Err(CsiError::OutOfRange {
                        field: "capacity_range".into(),
                        reason,
                    });
                }
                Err(e) => return Err(e),
            }
            lv = self.lvm.extend_lv(&lv.vg, &lv.name, want)?;
            info!(bytes = lv.size_bytes, "extended volume");
        }
        if !block {
            let dev = self.device(&Found {
                lv: lv.clone(),
                identity: found.identity.clone(),
            })?;
            if let Content::Signature(t) = fs::probe(&dev).map_err(internal)?
                && let Ok(fs_type) = FsType::parse(&t, "")
            {
                let dev_no = mount::device_number(&dev)
                    .map_err(|e| internal(format!("{}: {e}", dev.display())))?;
                let table = mount_table()?;
                let mounted = paths
                    .iter()
                    .find_map(|p| mount::mount_at(&table, p).filter(|m| m.dev == dev_no))
                    .or_else(|| table.iter().find(|m| m.dev == dev_no && m.root == "/"))
                    .ok_or_else(|| {
                        CsiError::FailedPrecondition(format!(
                            "volume_path: volume {id} is not mounted; strata grows filesystems online only"
                        ))
                    })?;
                fs::grow(&dev, &mounted.mount_point, fs_type).map_err(internal)?;
            }
        }
        Ok(lv.size_bytes as i64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::NodeConfig;

    const MIB: u64 = 1 << 20;

    fn cfg() -> NodeConfig {
        NodeConfig::parse(
            "[[device_class]]\nname='fast'\nvolume_group='vg1'\ntype='thick'\nspare_bytes=8388608\ndefault=true\n\
             [[device_class]]\nname='thin'\nvolume_group='vg1'\ntype='thin'\nthin_pool='pool'\npool_danger_percent=90\n",
        )
        .unwrap()
    }

    fn lv(name: &str, size: u64, attr: &str, pool: Option<&str>, data: Option<f64>) -> LvInfo {
        LvInfo {
            vg: "vg1".into(),
            name: name.into(),
            size_bytes: size,
            tags: vec![],
            attr: attr.into(),
            pool: pool.map(str::to_owned),
            path: format!("/dev/vg1/{name}"),
            data_percent: data,
            metadata_percent: data.map(|_| 5.0),
            created: None,
        }
    }

    #[test]
    fn a_refusal_names_the_sizes_the_room_and_the_class() {
        let config = cfg();
        let vg = VgInfo {
            name: "vg1".into(),
            size_bytes: 1 << 30,
            free_bytes: 420 * MIB,
            extent_bytes: 4 * MIB,
        };
        let vol = lv("pvc-1", 100 * MIB, "-wi-ao----", None, None);
        let (because, message) = refusal(
            &config.device_classes[0],
            &vg,
            std::slice::from_ref(&vol),
            &vol,
            10 << 30,
            "capacity_range: device class \"fast\" (volume group vg1) can give …",
        );
        assert_eq!(because.as_str(), "volume_group_full");
        assert_eq!(
            message,
            format!(
                "volume pvc-1 cannot grow to 10737418240 bytes (it has 104857600, {} more asked): device class \"fast\" has 440401920 bytes free in volume group \"vg1\" (8388608 of them kept spare); a volume cannot shrink: make room (delete volumes or snapshots on this node, or add a physical volume to the volume group with vgextend) or set the claim back to a size that fits",
                (10u64 << 30) - 100 * MIB
            )
        );

        let thin = &config.device_classes[1];
        let thin_vol = lv("pvc-2", 100 * MIB, "Vwi-aotz--", Some("pool"), Some(10.0));
        for (data, want) in [(10.0, "thin_pool_full"), (95.0, "thin_pool_past_mark")] {
            let lvs = [
                lv("pool", 200 * MIB, "twi-aotz--", None, Some(data)),
                thin_vol.clone(),
            ];
            let (because, message) = refusal(
                thin,
                &vg,
                &lvs,
                &thin_vol,
                1 << 30,
                "capacity_range: device class \"thin\": thin pool vg1/pool (data 10.0%, metadata 5.0%, danger mark 90%) cannot take growing volume pvc-2 by 968884224 bytes: it can promise 104857600 more bytes",
            );
            assert_eq!(because.as_str(), want);
            assert!(
                message.starts_with(
                    "volume pvc-2 cannot grow to 1073741824 bytes (it has 104857600, 968884224 more asked): device class \"thin\": thin pool vg1/pool"
                ),
                "{message}"
            );
            assert!(
                message.contains("it can promise 104857600 more bytes; a volume cannot shrink"),
                "{message}"
            );
        }
    }
}
