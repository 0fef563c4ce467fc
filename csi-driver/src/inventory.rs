//! The inventory series of `/metrics`: volume groups, thin pools, volumes and
//! snapshots, computed at scrape time from one LVM report.
//!
//! A scrape refreshes the cached report when it is older than [`MAX_AGE`]
//! ([`Driver::refresh_inventory`], on a blocking thread), then the registry
//! encodes the cached figures ([`InventoryCache`] is its collector). However
//! fast Prometheus (or several of them) scrape, LVM sees one `lvs` report
//! (plus one `vgs` for a VG without LVs) per [`MAX_AGE`], never a call per
//! volume; a report that failed is cached too, so a broken LVM is not hammered.
//!
//! | series | labels |
//! |---|---|
//! | `strata_vg_size_bytes`, `strata_vg_free_bytes` | `device_class`, `volume_group` |
//! | `strata_thin_pool_size_bytes`, `strata_thin_pool_data_percent`, `strata_thin_pool_metadata_percent`, `strata_thin_pool_danger_percent` | `device_class`, `volume_group`, `thin_pool` |
//! | `strata_device_class_available_bytes` | `device_class` |
//! | `strata_volume_size_bytes`, `strata_volume_used_bytes` | `device_class`, `volume`, `pvc_namespace`, `pvc` |
//! | `strata_snapshots` | `device_class` |
//! | `strata_inventory_up` | |
//!
//! A VG that serves several device classes appears once per class.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::gauge::ConstGauge;
use tracing::warn;

use crate::capacity;
use crate::config::{ClassType, NodeConfig};
use crate::driver::Driver;
use crate::lvm::{LvInfo, VgInfo};
use crate::mount;
use crate::names::{self, VolumeIdentity};

/// How long one LVM report serves scrapes.
pub const MAX_AGE: Duration = Duration::from_secs(5);

/// True for a snapshot LV: a thick (COW) snapshot (`lv_attr` starting with
/// `s`, or `S` when invalid) or an LV tagged as a strata snapshot.
///
/// The one rule the inventory (snapshot count) and the orphan scan (which
/// leaves snapshots to their own owners) share: adjust it here when the
/// snapshot tags change. Thin snapshots look like thin volumes in `lv_attr`
/// (`V`), so for them the tag is what counts.
pub fn is_snapshot(lv: &LvInfo) -> bool {
    lv.attr.starts_with(['s', 'S'])
        || lv
            .tags
            .iter()
            .any(|t| t == names::SNAPSHOT_MARKER_TAG || t.starts_with(names::TAG_SOURCE))
}

/// True for an LV strata made: it carries a `strata.io` tag.
pub fn is_strata(lv: &LvInfo) -> bool {
    lv.tags.iter().any(|t| t.starts_with(names::MARKER_TAG))
}

/// A device class's figures.
#[derive(Debug, Clone, PartialEq)]
pub struct ClassFigures {
    /// Device class name.
    pub class: String,
    /// Its VG, with size and free bytes (absent when the VG is missing).
    pub vg: Option<(String, u64, u64)>,
    /// Its thin pool (thin classes whose pool exists).
    pub pool: Option<PoolFigures>,
    /// What a new volume may still take ([`capacity::available`]); 0 when the VG is missing.
    pub available: u64,
    /// strata snapshots in this class.
    pub snapshots: u64,
}

/// A thin pool's figures.
#[derive(Debug, Clone, PartialEq)]
pub struct PoolFigures {
    /// VG name.
    pub vg: String,
    /// Pool LV name.
    pub name: String,
    /// Data size in bytes.
    pub size_bytes: u64,
    /// Data usage in percent.
    pub data_percent: Option<f64>,
    /// Metadata usage in percent.
    pub metadata_percent: Option<f64>,
    /// The class's danger mark in percent (data or metadata).
    pub danger_percent: u32,
}

/// A volume's figures.
#[derive(Debug, Clone, PartialEq)]
pub struct VolumeFigures {
    /// Device class (from its tags).
    pub class: String,
    /// Volume id (the LV name).
    pub id: String,
    /// PVC namespace, when the tags name it.
    pub pvc_namespace: String,
    /// PVC name, when the tags name it.
    pub pvc: String,
    /// Size in bytes (virtual size for thin volumes).
    pub size_bytes: u64,
    /// Bytes used by its filesystem, when it is staged on this node.
    pub used_bytes: Option<u64>,
}

/// Everything the inventory series show, from one report.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Inventory {
    /// One entry per configured device class.
    pub classes: Vec<ClassFigures>,
    /// strata's volumes (snapshots excluded), sorted by id.
    pub volumes: Vec<VolumeFigures>,
}

/// The device class of an LV: its class tag, or else the configured class
/// whose VG (and, for thin volumes, pool) holds it.
fn class_of(config: &NodeConfig, lv: &LvInfo) -> Option<String> {
    if let Some(id) = VolumeIdentity::from_tags(&lv.tags).filter(|i| !i.class.is_empty()) {
        return Some(id.class);
    }
    config
        .device_classes
        .iter()
        .find(|c| {
            c.volume_group == lv.vg
                && match c.class_type {
                    ClassType::Thick => lv.pool.is_none(),
                    ClassType::Thin => lv.pool.is_some() && lv.pool == c.thin_pool,
                }
        })
        .map(|c| c.name.clone())
}

impl Inventory {
    /// The figures of `config`'s classes from one report; `used` holds the
    /// used bytes of staged volumes by LV name.
    pub fn build(
        config: &NodeConfig,
        vgs: &[VgInfo],
        lvs: &[LvInfo],
        used: &HashMap<String, u64>,
    ) -> Inventory {
        let mut snapshots: HashMap<String, u64> = HashMap::new();
        let mut volumes = Vec::new();
        for lv in lvs.iter().filter(|l| is_strata(l)) {
            let class = class_of(config, lv).unwrap_or_default();
            if is_snapshot(lv) {
                *snapshots.entry(class).or_default() += 1;
                continue;
            }
            let Some(identity) = VolumeIdentity::from_tags(&lv.tags) else {
                continue;
            };
            volumes.push(VolumeFigures {
                class,
                id: lv.name.clone(),
                pvc_namespace: identity.pvc_namespace.unwrap_or_default(),
                pvc: identity.pvc_name.unwrap_or_default(),
                size_bytes: lv.size_bytes,
                used_bytes: used.get(&lv.name).copied(),
            });
        }
        volumes.sort_by(|a, b| a.id.cmp(&b.id));
        let classes = config
            .device_classes
            .iter()
            .map(|c| {
                let vg = vgs.iter().find(|v| v.name == c.volume_group);
                let pool = c.thin_pool.as_deref().and_then(|p| {
                    lvs.iter()
                        .find(|l| l.vg == c.volume_group && l.name == p && l.is_thin_pool())
                });
                ClassFigures {
                    class: c.name.clone(),
                    vg: vg.map(|v| (v.name.clone(), v.size_bytes, v.free_bytes)),
                    pool: pool
                        .filter(|_| c.class_type == ClassType::Thin)
                        .map(|p| PoolFigures {
                            vg: p.vg.clone(),
                            name: p.name.clone(),
                            size_bytes: p.size_bytes,
                            data_percent: p.data_percent,
                            metadata_percent: p.metadata_percent,
                            danger_percent: c.pool_danger_percent(),
                        }),
                    available: vg.map_or(0, |v| capacity::available(c, v, lvs)),
                    snapshots: snapshots.get(&c.name).copied().unwrap_or(0),
                }
            })
            .collect();
        Inventory { classes, volumes }
    }
}

#[derive(Debug, Default)]
struct Cached {
    taken: Option<Instant>,
    /// `None` when the last report failed.
    inventory: Option<Arc<Inventory>>,
}

/// The last inventory and when it was taken; the registry's collector for
/// the inventory series.
#[derive(Debug, Default)]
pub struct InventoryCache {
    cached: Mutex<Cached>,
    /// Held while a report runs, so concurrent scrapes share one report.
    refreshing: Mutex<()>,
}

impl InventoryCache {
    /// Replace the cached inventory with `take()`'s unless the cached one is
    /// younger than `max_age`. Blocks while another refresh runs.
    pub fn refresh_with<E: std::fmt::Display>(
        &self,
        max_age: Duration,
        take: impl FnOnce() -> Result<Inventory, E>,
    ) {
        let _one = self.refreshing.lock().unwrap_or_else(|e| e.into_inner());
        let fresh = self
            .cached
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .taken
            .is_some_and(|t| t.elapsed() < max_age);
        if fresh {
            return;
        }
        let inventory = match take() {
            Ok(i) => Some(Arc::new(i)),
            Err(e) => {
                warn!("metrics: cannot read the LVM inventory: {e}");
                None
            }
        };
        *self.cached.lock().unwrap_or_else(|e| e.into_inner()) = Cached {
            taken: Some(Instant::now()),
            inventory,
        };
    }

    /// The cached inventory, if the last report succeeded.
    pub fn current(&self) -> Option<Arc<Inventory>> {
        self.cached
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .inventory
            .clone()
    }

    fn taken(&self) -> bool {
        self.cached
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .taken
            .is_some()
    }
}

/// One gauge family: its name, help and series.
fn gauges<L: EncodeLabelSet, V: prometheus_client::encoding::EncodeGaugeValue + Copy>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    series: impl IntoIterator<Item = (L, V)>,
) -> Result<(), std::fmt::Error> {
    let mut series = series.into_iter().peekable();
    if series.peek().is_none() {
        return Ok(());
    }
    let mut family = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for (labels, value) in series {
        let gauge = ConstGauge::new(value);
        gauge.encode(family.encode_family(&labels)?)?;
    }
    Ok(())
}

impl Collector for InventoryCache {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        if !self.taken() {
            return Ok(());
        }
        let inventory = self.current();
        gauges(
            &mut encoder,
            "inventory_up",
            "1 when the last LVM report for the inventory series succeeded",
            [([("", ""); 0], i64::from(inventory.is_some()))],
        )?;
        let Some(inv) = inventory else {
            return Ok(());
        };
        let vg_labels = |c: &'_ ClassFigures| {
            c.vg.as_ref().map(|(vg, size, free)| {
                (
                    [
                        ("device_class", c.class.clone()),
                        ("volume_group", vg.clone()),
                    ],
                    (*size, *free),
                )
            })
        };
        gauges(
            &mut encoder,
            "vg_size_bytes",
            "Size of the device class's volume group",
            inv.classes
                .iter()
                .filter_map(vg_labels)
                .map(|(l, (size, _))| (l, size)),
        )?;
        gauges(
            &mut encoder,
            "vg_free_bytes",
            "Unallocated bytes of the device class's volume group",
            inv.classes
                .iter()
                .filter_map(vg_labels)
                .map(|(l, (_, free))| (l, free)),
        )?;
        let pools = || {
            inv.classes.iter().filter_map(|c| {
                c.pool.as_ref().map(|p| {
                    (
                        [
                            ("device_class", c.class.clone()),
                            ("volume_group", p.vg.clone()),
                            ("thin_pool", p.name.clone()),
                        ],
                        p,
                    )
                })
            })
        };
        gauges(
            &mut encoder,
            "thin_pool_size_bytes",
            "Data size of the device class's thin pool",
            pools().map(|(l, p)| (l, p.size_bytes)),
        )?;
        gauges(
            &mut encoder,
            "thin_pool_data_percent",
            "Data usage of the thin pool in percent (0-100)",
            pools().filter_map(|(l, p)| p.data_percent.map(|v| (l, v))),
        )?;
        gauges(
            &mut encoder,
            "thin_pool_metadata_percent",
            "Metadata usage of the thin pool in percent (0-100)",
            pools().filter_map(|(l, p)| p.metadata_percent.map(|v| (l, v))),
        )?;
        gauges(
            &mut encoder,
            "thin_pool_danger_percent",
            "The configured danger mark of the thin pool in percent: at or above it (data or metadata) new volumes are refused",
            pools().map(|(l, p)| (l, i64::from(p.danger_percent))),
        )?;
        gauges(
            &mut encoder,
            "device_class_available_bytes",
            "Bytes a new volume of the class may still take (what GetCapacity reports)",
            inv.classes
                .iter()
                .map(|c| ([("device_class", c.class.clone())], c.available)),
        )?;
        gauges(
            &mut encoder,
            "snapshots",
            "strata snapshot LVs by device class",
            inv.classes
                .iter()
                .map(|c| ([("device_class", c.class.clone())], c.snapshots)),
        )?;
        let volume_labels = |v: &VolumeFigures| {
            [
                ("device_class", v.class.clone()),
                ("volume", v.id.clone()),
                ("pvc_namespace", v.pvc_namespace.clone()),
                ("pvc", v.pvc.clone()),
            ]
        };
        gauges(
            &mut encoder,
            "volume_size_bytes",
            "Size of a volume (virtual size for thin volumes)",
            inv.volumes.iter().map(|v| (volume_labels(v), v.size_bytes)),
        )?;
        gauges(
            &mut encoder,
            "volume_used_bytes",
            "Bytes used by a staged filesystem volume (statvfs of its staging mount)",
            inv.volumes
                .iter()
                .filter_map(|v| v.used_bytes.map(|u| (volume_labels(v), u))),
        )?;
        Ok(())
    }
}

impl Driver {
    /// Refresh the inventory the metrics show, unless it is younger than
    /// [`MAX_AGE`]. Blocking: one LVM report, the mount table and a `statvfs`
    /// per staged volume.
    pub fn refresh_inventory(&self) {
        self.metrics
            .inventory
            .refresh_with(MAX_AGE, || self.take_inventory());
    }

    fn take_inventory(&self) -> Result<Inventory, crate::CsiError> {
        let names = self.config.volume_groups();
        let (vgs, lvs) = if names.is_empty() {
            (Vec::new(), Vec::new())
        } else {
            self.lvm.inventory(&names)?
        };
        self.observe_classes(&crate::readiness::class_states(&self.config, &vgs, &lvs));
        Ok(Inventory::build(
            &self.config,
            &vgs,
            &lvs,
            &used_bytes(&lvs),
        ))
    }
}

/// Used bytes of every staged strata filesystem volume, by LV name: the
/// filesystem at its staging mount, as `statvfs` sees it.
fn used_bytes(lvs: &[LvInfo]) -> HashMap<String, u64> {
    let Ok(table) = mount::mounts() else {
        return HashMap::new();
    };
    lvs.iter()
        .filter(|l| is_strata(l) && !is_snapshot(l) && l.is_active())
        .filter_map(|l| {
            let dev = mount::device_number(Path::new(&l.path)).ok()?;
            let m = crate::staged::staging_mount(&table, dev)?;
            let usage = crate::fs::usage(&m.mount_point).ok()?;
            Some((l.name.clone(), usage.used_bytes))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lv(name: &str, attr: &str, pool: Option<&str>, tags: &[&str]) -> LvInfo {
        LvInfo {
            vg: "vg".into(),
            name: name.into(),
            size_bytes: 1 << 30,
            tags: tags.iter().map(|t| (*t).to_owned()).collect(),
            attr: attr.into(),
            pool: pool.map(str::to_owned),
            path: format!("/dev/vg/{name}"),
            data_percent: None,
            metadata_percent: None,
            created: None,
        }
    }

    fn config() -> NodeConfig {
        NodeConfig::parse(
            "[[device_class]]\nname = \"fast\"\nvolume_group = \"vg\"\ntype = \"thick\"\nspare_bytes = 100\ndefault = true\n\
             [[device_class]]\nname = \"thin\"\nvolume_group = \"vg\"\ntype = \"thin\"\nthin_pool = \"pool0\"\n\
             [[device_class]]\nname = \"gone\"\nvolume_group = \"novg\"\ntype = \"thick\"\n",
        )
        .unwrap()
    }

    #[test]
    fn one_report_gives_every_figure() {
        let vgs = [VgInfo {
            name: "vg".into(),
            size_bytes: 10 << 30,
            free_bytes: 4 << 30,
            extent_bytes: 4 << 20,
        }];
        let mut pool = lv("pool0", "twi-a-tz--", None, &[]);
        pool.data_percent = Some(40.0);
        pool.metadata_percent = Some(12.5);
        let lvs = [
            pool,
            lv(
                "pvc-a",
                "-wi-a-----",
                None,
                &[
                    "strata.io",
                    "strata.io/class=fast",
                    "strata.io/pvc-namespace=line-3",
                    "strata.io/pvc=images",
                ],
            ),
            lv(
                "pvc-b",
                "Vwi-a-tz--",
                Some("pool0"),
                &["strata.io", "strata.io/class=thin"],
            ),
            // a thick snapshot of pvc-a, and a thin one the tag marks
            lv("snap-1", "swi-a-s---", None, &["strata.io"]),
            lv(
                "snap-2",
                "Vwi---tz-k",
                Some("pool0"),
                &["strata.io", names::SNAPSHOT_MARKER_TAG],
            ),
            // not strata's
            lv("other", "-wi-a-----", None, &[]),
        ];
        let used = HashMap::from([("pvc-a".to_owned(), 123)]);
        let inv = Inventory::build(&config(), &vgs, &lvs, &used);
        let [fast, thin, gone] = &inv.classes[..] else {
            panic!("{inv:?}")
        };
        assert_eq!(fast.vg, Some(("vg".into(), 10 << 30, 4 << 30)));
        assert_eq!(fast.available, (4 << 30) - 100);
        assert_eq!(fast.pool, None);
        assert_eq!((fast.snapshots, thin.snapshots), (1, 1));
        let p = thin.pool.as_ref().unwrap();
        assert_eq!(
            (
                p.size_bytes,
                p.data_percent,
                p.metadata_percent,
                p.danger_percent
            ),
            (1 << 30, Some(40.0), Some(12.5), 90)
        );
        assert_eq!(
            thin.available,
            capacity::available(&config().device_classes[1], &vgs[0], &lvs)
        );
        assert_eq!((gone.vg.as_ref(), gone.available), (None, 0));
        let ids: Vec<_> = inv.volumes.iter().map(|v| v.id.as_str()).collect();
        assert_eq!(ids, ["pvc-a", "pvc-b"]);
        assert_eq!(inv.volumes[0].used_bytes, Some(123));
        assert_eq!(inv.volumes[0].pvc, "images");
        assert_eq!(inv.volumes[1].used_bytes, None);
        assert_eq!(inv.volumes[1].class, "thin");
    }

    #[test]
    fn the_cache_serves_scrapes_and_encodes_the_series() {
        let cache = InventoryCache::default();
        let mut calls = 0;
        let inv = Inventory {
            classes: vec![ClassFigures {
                class: "fast".into(),
                vg: Some(("vg".into(), 1000, 400)),
                pool: None,
                available: 300,
                snapshots: 2,
            }],
            volumes: vec![],
        };
        for _ in 0..3 {
            cache.refresh_with(Duration::from_secs(60), || {
                calls += 1;
                Ok::<_, String>(inv.clone())
            });
        }
        assert_eq!(calls, 1, "one report per max age");
        let mut registry = prometheus_client::registry::Registry::with_prefix("strata");
        let cache = Arc::new(cache);
        registry.register_collector(Box::new(cache.clone()));
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        for line in [
            "strata_inventory_up 1",
            r#"strata_vg_size_bytes{device_class="fast",volume_group="vg"} 1000"#,
            r#"strata_vg_free_bytes{device_class="fast",volume_group="vg"} 400"#,
            r#"strata_device_class_available_bytes{device_class="fast"} 300"#,
            r#"strata_snapshots{device_class="fast"} 2"#,
        ] {
            assert!(text.contains(line), "{line} in {text}");
        }
        cache.refresh_with(Duration::ZERO, || Err("lvm is gone"));
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        assert!(text.contains("strata_inventory_up 0"), "{text}");
        assert!(!text.contains("strata_vg_size_bytes"), "{text}");
    }
}
