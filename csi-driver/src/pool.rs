//! The I/O shell around [`crate::capacity`]: making room for a request (and
//! growing a thin pool within its limits to do it), volume health with the
//! pool's state, and the log line when a pool crosses its danger mark.

use std::collections::BTreeSet;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use strata_proto::csi::v1 as csi;
use tracing::{info, warn};

use crate::capacity::{self, PoolPlan, PoolUsage};
use crate::config::{ClassType, DeviceClass};
use crate::driver::{Driver, Found, condition};
use crate::error::CsiError;
use crate::lvm::{LvInfo, VgInfo};
use crate::names::VolumeIdentity;

/// Pools last seen past their danger mark (`vg/pool`), to log each crossing once.
static PAST_MARK: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());
/// How many times a pool was seen crossing its danger mark upwards.
static CROSSINGS: AtomicU64 = AtomicU64::new(0);

/// How many times, since the process started, a thin pool was seen crossing
/// its danger mark upwards (each crossing counted once, however often the
/// pool is looked at while past it).
pub fn danger_crossings() -> u64 {
    CROSSINGS.load(Ordering::Relaxed)
}

/// Record what one report says about a pool: log a warning when it is newly
/// past its mark, a note when it is back below.
pub fn observe(usage: &PoolUsage) {
    let key = format!("{}/{}", usage.vg, usage.pool);
    let mut past = PAST_MARK.lock().unwrap_or_else(|e| e.into_inner());
    if usage.past_mark() {
        if past.insert(key) {
            CROSSINGS.fetch_add(1, Ordering::Relaxed);
            warn!(
                vg = %usage.vg,
                pool = %usage.pool,
                data_percent = usage.data_percent,
                metadata_percent = usage.metadata_percent,
                "{} is past its danger mark: new volumes and expansions on it are refused, its volumes report an abnormal condition",
                usage.describe()
            );
        }
    } else if past.remove(&key) {
        info!(vg = %usage.vg, pool = %usage.pool, "{} is below its danger mark again", usage.describe());
    }
}

/// The strata volume `id` among `lvs`.
pub(crate) fn found_in(lvs: &[LvInfo], id: &str) -> Option<Found> {
    lvs.iter().find(|l| l.name == id).and_then(|lv| {
        VolumeIdentity::from_tags(&lv.tags).map(|identity| Found {
            lv: lv.clone(),
            identity,
        })
    })
}

impl Driver {
    /// Every VG and LV of the configured VGs, in one report.
    pub(crate) fn inventory_all(&self) -> Result<(Vec<VgInfo>, Vec<LvInfo>), CsiError> {
        let vgs = self.config.volume_groups();
        if vgs.is_empty() {
            return Ok((Vec::new(), Vec::new()));
        }
        let (vgs, lvs) = self.lvm.inventory(&vgs)?;
        for u in capacity::pools(&self.config, &lvs) {
            observe(&u);
        }
        Ok((vgs, lvs))
    }

    /// Volume `id` and the report it was found in (one LVM call), or
    /// `NOT_FOUND` naming `field`.
    pub(crate) fn require_in_report(
        &self,
        id: &str,
        field: &str,
    ) -> Result<(Found, Vec<VgInfo>, Vec<LvInfo>), CsiError> {
        let (vgs, lvs) = self.inventory_all()?;
        let found = found_in(&lvs, id).ok_or_else(|| {
            CsiError::NotFound(format!(
                "{field}: volume {id:?} does not exist on node {}",
                self.node_id
            ))
        })?;
        Ok((found, vgs, lvs))
    }

    /// The configured class a volume belongs to, or `FAILED_PRECONDITION`.
    pub(crate) fn class_of(&self, found: &Found) -> Result<DeviceClass, CsiError> {
        self.config.class(Some(&found.identity.class)).cloned().ok_or_else(|| {
            CsiError::FailedPrecondition(format!(
                "volume {} belongs to device class {:?}, which this node's config no longer declares",
                found.lv.name, found.identity.class
            ))
        })
    }

    /// Make sure `bytes` more fit in `class` (VG free space, or the thin
    /// pool's rule), growing the thin pool within its limits when that is
    /// what it takes; `RESOURCE_EXHAUSTED` naming the VG or pool otherwise.
    /// `promise`: the bytes are promised to a volume (not a read-only snapshot).
    pub(crate) fn make_room(
        &self,
        class: &DeviceClass,
        vg: &VgInfo,
        lvs: &[LvInfo],
        bytes: u64,
        promise: bool,
        what: &str,
    ) -> Result<(), CsiError> {
        if class.class_type == ClassType::Thick {
            let available = vg.free_bytes.saturating_sub(class.spare_bytes);
            if bytes > available {
                return Err(CsiError::ResourceExhausted(format!(
                    "capacity_range: device class {:?} (volume group {}) can give {available} bytes (after {} spare), {what} needs {bytes}",
                    class.name, class.volume_group, class.spare_bytes
                )));
            }
            return Ok(());
        }
        let pool = class.thin_pool.as_deref().unwrap_or_default();
        let usage = capacity::pool_usage(class, lvs).ok_or_else(|| {
            CsiError::Unavailable(format!(
                "device class {:?}: thin pool {}/{pool} not found on node {}",
                class.name, class.volume_group, self.node_id
            ))
        })?;
        let room = capacity::vg_room_for_pools(&self.config, class, vg);
        match capacity::plan_thin(class, &usage, room, vg.extent_bytes, bytes, promise, what)? {
            PoolPlan::Fits => Ok(()),
            PoolPlan::Extend(to) => {
                let grown = self.lvm.extend_lv(&usage.vg, &usage.pool, to)?;
                info!(
                    vg = %usage.vg,
                    pool = %usage.pool,
                    from = usage.size_bytes,
                    to = grown.size_bytes,
                    "grew thin pool from free VG space to make room for {what}"
                );
                Ok(())
            }
        }
    }

    /// A volume's health: LVM's view of the LV, then its thin pool's.
    pub(crate) fn volume_condition(
        &self,
        found: &Found,
        lvs: &[LvInfo],
        need_active: bool,
    ) -> csi::VolumeCondition {
        let c = condition(&found.lv, need_active);
        if c.abnormal {
            return c;
        }
        match capacity::pool_problem(&self.config, &found.lv, lvs) {
            Some(message) => csi::VolumeCondition {
                abnormal: true,
                message,
            },
            None => c,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_crossing_is_counted_once() {
        let mut u = PoolUsage {
            vg: "vg-pool-test".into(),
            pool: "p".into(),
            size_bytes: 100,
            data_percent: 95.0,
            metadata_percent: 1.0,
            virtual_bytes: 0,
            danger_percent: 90,
            ratio: 1.0,
        };
        let before = danger_crossings();
        observe(&u);
        observe(&u);
        assert_eq!(danger_crossings() - before, 1);
        u.data_percent = 10.0;
        observe(&u);
        u.data_percent = 91.0;
        observe(&u);
        assert_eq!(danger_crossings() - before, 2);
    }
}
