//! How many bytes a device class can still hand out, and whether a thin pool
//! is past its danger mark. Pure arithmetic over one `lvs` report (and the
//! VG rows it carries): never a new LVM call per volume.
//!
//! The thin rule. For a pool of `P` data bytes with `U` bytes written
//! (data usage), metadata usage `m`, danger mark `D` (fractions), overprovision
//! ratio `r`, `V` bytes already promised (the virtual sizes of every thin LV
//! in the pool, snapshots included: overwriting an origin can make each
//! snapshot hold a full copy) and `spare` bytes kept back, a new volume may
//! take
//!
//! ```text
//! 0                                  when m ≥ D
//! min( r·P − V ,  D·P − U ) − spare  otherwise
//! ```
//!
//! the ratio's room, and the data that may still be written before the pool
//! reaches its mark: no single new volume can fill the pool past its mark,
//! however much of it is written. Metadata gates rather than scales: it has
//! a fixed overhead (about a tenth of a small pool's metadata LV when empty)
//! and grows with written chunks, not with promises, so a reading of it says
//! "stop" (at the mark) but not "how many bytes". With auto-extension the
//! pool may first grow to `P'` (at most the configured maximum, from free VG
//! space), and the same rule holds with `P'` and the same `U` and `m`.

use crate::config::{ClassType, DeviceClass, NodeConfig};
use crate::error::CsiError;
use crate::lvm::{LvInfo, VgInfo};

/// A thin pool as one `lvs` report shows it, with the limits its class sets.
#[derive(Debug, Clone, PartialEq)]
pub struct PoolUsage {
    /// VG name.
    pub vg: String,
    /// Pool LV name.
    pub pool: String,
    /// Data bytes of the pool.
    pub size_bytes: u64,
    /// Data usage, percent.
    pub data_percent: f64,
    /// Metadata usage, percent.
    pub metadata_percent: f64,
    /// Sum of the virtual sizes of the thin LVs in the pool.
    pub virtual_bytes: u64,
    /// The danger mark, percent.
    pub danger_percent: u32,
    /// The overprovision ratio.
    pub ratio: f64,
}

impl PoolUsage {
    /// Data bytes written so far.
    pub fn used_bytes(&self) -> u64 {
        (self.size_bytes as f64 * self.data_percent.clamp(0.0, 100.0) / 100.0).ceil() as u64
    }

    /// True when data or metadata usage is at or above the danger mark.
    pub fn past_mark(&self) -> bool {
        let mark = f64::from(self.danger_percent);
        self.data_percent >= mark || self.metadata_percent >= mark
    }

    /// `thin pool vg/pool (data 93.1%, metadata 1.2%, danger mark 90%)`.
    pub fn describe(&self) -> String {
        format!(
            "thin pool {}/{} (data {:.1}%, metadata {:.1}%, danger mark {}%)",
            self.vg, self.pool, self.data_percent, self.metadata_percent, self.danger_percent
        )
    }

    /// Bytes a new volume may be promised if the pool had `pool_bytes` of
    /// data (≥ its size), before the spare. Counts virtual bytes when
    /// `promise` (new volumes, clones, growth), not for read-only snapshots.
    pub fn room_at(&self, pool_bytes: u64, promise: bool) -> u64 {
        let mark = f64::from(self.danger_percent);
        if self.metadata_percent >= mark {
            return 0;
        }
        let p = pool_bytes as f64;
        let mut room = p * mark / 100.0 - self.used_bytes() as f64;
        if promise {
            room = room.min(p * self.ratio - self.virtual_bytes as f64);
        }
        if room.is_finite() && room > 0.0 {
            room.floor() as u64
        } else {
            0
        }
    }
}

/// The pool of a thin class, from one `lvs` report of its VG; `None` for a
/// thick class or a missing pool.
pub fn pool_usage(class: &DeviceClass, lvs: &[LvInfo]) -> Option<PoolUsage> {
    let pool = class.thin_pool.as_deref()?;
    let p = lvs
        .iter()
        .find(|l| l.vg == class.volume_group && l.name == pool)?;
    Some(PoolUsage {
        vg: p.vg.clone(),
        pool: p.name.clone(),
        size_bytes: p.size_bytes,
        data_percent: p.data_percent.unwrap_or(0.0),
        metadata_percent: p.metadata_percent.unwrap_or(0.0),
        virtual_bytes: lvs
            .iter()
            .filter(|l| l.vg == p.vg && l.pool.as_deref() == Some(pool))
            .map(|l| l.size_bytes)
            .sum(),
        danger_percent: class.pool_danger_percent(),
        ratio: class.overprovision_ratio(),
    })
}

/// Every configured thin pool found in `lvs`, once each (several classes may
/// share a pool: the first class's limits count). For metrics and logs.
pub fn pools(config: &NodeConfig, lvs: &[LvInfo]) -> Vec<PoolUsage> {
    let mut out: Vec<PoolUsage> = Vec::new();
    for c in &config.device_classes {
        if let Some(u) = pool_usage(c, lvs)
            && !out.iter().any(|o| o.vg == u.vg && o.pool == u.pool)
        {
            out.push(u);
        }
    }
    out
}

/// VG bytes a pool of `class` may grow by: the VG's free bytes less the
/// largest spare any thick class on the same VG keeps back.
pub fn vg_room_for_pools(config: &NodeConfig, class: &DeviceClass, vg: &VgInfo) -> u64 {
    let spare = config
        .device_classes
        .iter()
        .filter(|c| c.volume_group == class.volume_group && c.class_type == ClassType::Thick)
        .map(|c| c.spare_bytes)
        .max()
        .unwrap_or(0);
    vg.free_bytes.saturating_sub(spare)
}

/// The largest pool size auto-extension may reach now (the current size when
/// it is off or there is no room).
pub fn max_pool_bytes(class: &DeviceClass, usage: &PoolUsage, vg_room: u64, extent: u64) -> u64 {
    match class.pool_auto_extend_max_bytes {
        Some(max) => {
            let extent = extent.max(1);
            let reach = (usage.size_bytes.saturating_add(vg_room) / extent) * extent;
            reach.min(max).max(usage.size_bytes)
        }
        None => usage.size_bytes,
    }
}

/// Bytes a new (or grown) volume of `class` may take now, after the spare.
///
/// Thick: the VG's free bytes. Thin: the rule of this module's header with
/// the pool as it is (no auto-extension). Returns 0 when the pool is missing.
pub fn available(class: &DeviceClass, vg: &VgInfo, lvs: &[LvInfo]) -> u64 {
    available_growing(class, vg, lvs, 0)
}

/// Like [`available`], with the pool at the size auto-extension could give
/// it from `vg_room` free VG bytes (see [`vg_room_for_pools`]): what
/// GetCapacity reports and CreateVolume honours.
pub fn available_growing(class: &DeviceClass, vg: &VgInfo, lvs: &[LvInfo], vg_room: u64) -> u64 {
    let raw = match class.class_type {
        ClassType::Thick => vg.free_bytes,
        ClassType::Thin => match pool_usage(class, lvs) {
            Some(u) => u.room_at(max_pool_bytes(class, &u, vg_room, vg.extent_bytes), true),
            None => 0,
        },
    };
    raw.saturating_sub(class.spare_bytes)
}

/// What a thin pool needs before `bytes` more can be placed in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoolPlan {
    /// It fits as the pool is.
    Fits,
    /// Grow the pool's data to this many bytes first.
    Extend(u64),
}

/// Decide whether `bytes` fit in the thin pool of `class` (`promise`: they
/// are promised virtual bytes, see [`PoolUsage::room_at`]), growing it within
/// its auto-extension limit if that is what it takes; otherwise
/// `RESOURCE_EXHAUSTED` naming the pool, its usage and the reason. `what`
/// names the request in the message (`a 1073741824-byte volume`).
pub fn plan_thin(
    class: &DeviceClass,
    usage: &PoolUsage,
    vg_room: u64,
    extent: u64,
    bytes: u64,
    promise: bool,
    what: &str,
) -> Result<PoolPlan, CsiError> {
    let need = bytes.saturating_add(class.spare_bytes);
    // Read-only snapshots promise nothing, but never go into a pool past its mark.
    let fits = |room: u64| {
        if promise { room >= need } else { room > 0 }
    };
    if fits(usage.room_at(usage.size_bytes, promise)) {
        return Ok(PoolPlan::Fits);
    }
    let extent = extent.max(1);
    let max = max_pool_bytes(class, usage, vg_room, extent);
    if max > usage.size_bytes && fits(usage.room_at(max, promise)) {
        // The smallest whole-extent size that fits: room_at grows with the size.
        let (mut lo, mut hi) = (usage.size_bytes / extent + 1, max / extent);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if fits(usage.room_at(mid * extent, promise)) {
                hi = mid;
            } else {
                lo = mid + 1;
            }
        }
        return Ok(PoolPlan::Extend(lo * extent));
    }
    let room = usage.room_at(usage.size_bytes, promise);
    let reason = if usage.past_mark() {
        "it is past its danger mark".to_owned()
    } else {
        format!(
            "it can promise {} more bytes (overprovision ratio {}, {} bytes promised of {} bytes of data, {} spare)",
            room.saturating_sub(class.spare_bytes),
            usage.ratio,
            usage.virtual_bytes,
            usage.size_bytes,
            class.spare_bytes
        )
    };
    let grow = match class.pool_auto_extend_max_bytes {
        Some(limit) => format!(
            "; growing it is bounded by pool_auto_extend_max_bytes {limit} and {vg_room} free VG bytes"
        ),
        None => String::new(),
    };
    Err(CsiError::ResourceExhausted(format!(
        "capacity_range: device class {:?}: {} cannot take {what}: {reason}{grow}",
        class.name,
        usage.describe()
    )))
}

/// Why a volume on a thin pool past its danger mark is in danger, if it is.
pub fn pool_problem(config: &NodeConfig, lv: &LvInfo, lvs: &[LvInfo]) -> Option<String> {
    let pool = lv.pool.as_deref()?;
    let class = config.classes_of_pool(&lv.vg, pool).next()?;
    let usage = pool_usage(class, lvs)?;
    usage.past_mark().then(|| {
        format!(
            "{} is past its danger mark: writes to this volume may fail when the pool fills",
            usage.describe()
        )
    })
}

#[cfg(test)]
mod tests;
