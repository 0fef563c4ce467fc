//! How many bytes a device class can still hand out. Pure arithmetic over one
//! `vgs` and one `lvs` report: never a new LVM call per volume.

use crate::config::{ClassType, DeviceClass};
use crate::lvm::{LvInfo, VgInfo};

/// Bytes a new (or grown) volume of `class` may take, after the spare.
///
/// Thick: the VG's free bytes. Thin: the pool's unused data bytes (strata does
/// not overprovision a pool). Returns 0 when the pool is missing.
pub fn available(class: &DeviceClass, vg: &VgInfo, lvs: &[LvInfo]) -> u64 {
    let raw = match class.class_type {
        ClassType::Thick => vg.free_bytes,
        ClassType::Thin => {
            let pool = class.thin_pool.as_deref().unwrap_or_default();
            match lvs.iter().find(|l| l.vg == vg.name && l.name == pool) {
                Some(p) => {
                    let used = p.data_percent.unwrap_or(0.0).clamp(0.0, 100.0);
                    (p.size_bytes as f64 * (100.0 - used) / 100.0) as u64
                }
                None => 0,
            }
        }
    };
    raw.saturating_sub(class.spare_bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn class(t: ClassType, spare: u64) -> DeviceClass {
        DeviceClass {
            name: "c".into(),
            volume_group: "vg".into(),
            class_type: t,
            thin_pool: (t == ClassType::Thin).then(|| "pool".to_string()),
            spare_bytes: spare,
            default: false,
            devices: vec![],
        }
    }

    fn vg(free: u64) -> VgInfo {
        VgInfo {
            name: "vg".into(),
            size_bytes: 1 << 40,
            free_bytes: free,
            extent_bytes: 4 << 20,
        }
    }

    fn pool(size: u64, pct: f64) -> LvInfo {
        LvInfo {
            vg: "vg".into(),
            name: "pool".into(),
            size_bytes: size,
            tags: vec![],
            attr: "twi-a-tz--".into(),
            pool: None,
            path: String::new(),
            data_percent: Some(pct),
            metadata_percent: Some(1.0),
        }
    }

    #[test]
    fn thick_is_free_minus_spare() {
        assert_eq!(
            available(&class(ClassType::Thick, 100), &vg(1000), &[]),
            900
        );
        assert_eq!(available(&class(ClassType::Thick, 2000), &vg(1000), &[]), 0);
    }

    #[test]
    fn thin_is_unused_pool_data_minus_spare() {
        let c = class(ClassType::Thin, 10);
        assert_eq!(available(&c, &vg(0), &[pool(1000, 25.0)]), 740);
        assert_eq!(
            available(&c, &vg(5000), &[]),
            0,
            "missing pool offers nothing"
        );
        assert_eq!(available(&c, &vg(0), &[pool(1000, 100.0)]), 0);
    }
}
