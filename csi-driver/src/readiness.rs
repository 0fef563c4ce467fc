//! Device classes: which of the node's classes can take volumes now, and
//! why not.
//!
//! Probe speaks for the plugin process: it answers ready while the process
//! serves and its LVM backend answers a report (the CSI spec's Probe is the
//! plugin's health, and the livenessprobe sidecar restarts the container on
//! anything else). A device class whose VG or thin pool is missing on this
//! node is not the plugin's ill health, and no restart would bring the VG: a
//! DaemonSet whose config names a VG some nodes lack would restart forever on
//! each of them. Such a class is reported where it matters instead:
//! - a log line, and a Kubernetes Event on the Node when an API client is
//!   configured ([`ClassEvents`]), once per change of its state, naming the
//!   class, its VG and the reason;
//! - the gauge `strata_csi_device_class_ready{device_class}` (0 or 1), and
//!   `strata_node_ready` (1 when every class is ready);
//! - GetCapacity offers 0 bytes for it, and CreateVolume refuses it with
//!   `RESOURCE_EXHAUSTED` naming the class and the reason (the
//!   external-provisioner then has the scheduler pick another node).
//!
//! [`class_state`] is pure (one report in, one state out); [`Readiness`]
//! remembers the last states so each change is told once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use crate::config::{ClassType, DeviceClass, NodeConfig};
use crate::lvm::{LvInfo, VgInfo};

/// One device class as one LVM report shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClassState {
    /// The class's name.
    pub class: String,
    /// Its VG.
    pub volume_group: String,
    /// Why it cannot take volumes; `None` when it can.
    pub problem: Option<String>,
}

impl ClassState {
    /// True when the class can take volumes.
    pub fn ready(&self) -> bool {
        self.problem.is_none()
    }

    /// `device class "fast" (volume group "strata-fast")`.
    pub fn describe(&self) -> String {
        format!(
            "device class {:?} (volume group {:?})",
            self.class, self.volume_group
        )
    }
}

/// The state of `class` in a report of its VG (`vgs`, `lvs`).
pub fn class_state(class: &DeviceClass, vgs: &[VgInfo], lvs: &[LvInfo]) -> ClassState {
    let vg = &class.volume_group;
    let problem = if !vgs.iter().any(|v| &v.name == vg) {
        Some(if class.devices.is_empty() {
            format!(
                "volume group {vg:?} not found on this node, and the class lists no devices to create it from"
            )
        } else {
            format!(
                "volume group {vg:?} not found on this node; creating it from {:?} failed at start (the log says why)",
                class.devices
            )
        })
    } else if class.class_type == ClassType::Thin {
        let pool = class.thin_pool.as_deref().unwrap_or_default();
        match lvs.iter().find(|l| &l.vg == vg && l.name == pool) {
            None => Some(format!("thin pool {vg}/{pool} not found")),
            Some(lv) if !lv.is_thin_pool() => Some(format!(
                "{vg}/{pool} is not a thin pool (lv_attr {})",
                lv.attr
            )),
            Some(_) => None,
        }
    } else {
        None
    };
    ClassState {
        class: class.name.clone(),
        volume_group: vg.clone(),
        problem,
    }
}

/// The state of every configured class in one report.
pub fn class_states(config: &NodeConfig, vgs: &[VgInfo], lvs: &[LvInfo]) -> Vec<ClassState> {
    config
        .device_classes
        .iter()
        .map(|c| class_state(c, vgs, lvs))
        .collect()
}

/// Who else hears of a class changing state (the Kubernetes API, as an
/// Event on the Node). Called once per change, never while blocking on I/O:
/// an implementation hands the news to a task of its own.
pub trait ClassEvents: Send + Sync {
    /// `state` is the class's new state on node `node`.
    fn changed(&self, node: &str, state: &ClassState);
}

/// The last state of each class, so each change is told once.
#[derive(Default)]
pub struct Readiness {
    last: Mutex<HashMap<String, Option<String>>>,
    events: OnceLock<Arc<dyn ClassEvents>>,
}

impl std::fmt::Debug for Readiness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Readiness")
            .field("last", &self.last)
            .finish_non_exhaustive()
    }
}

impl Readiness {
    /// Tell `events` of every later change (the first one set counts).
    pub fn set_events(&self, events: Arc<dyn ClassEvents>) {
        let _ = self.events.set(events);
    }

    /// Take `states` in (some or all classes); returns those whose state
    /// differs from the last one seen (every class, the first time), and
    /// tells [`ClassEvents`] of them, except a class first seen ready
    /// (nothing happened to it: a start is no news).
    pub fn observe(&self, node: &str, states: &[ClassState]) -> Vec<ClassState> {
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        let mut changed = Vec::new();
        let mut news = Vec::new();
        for s in states {
            match last.insert(s.class.clone(), s.problem.clone()) {
                Some(before) if before == s.problem => continue,
                None if s.ready() => {}
                _ => news.push(s.clone()),
            }
            changed.push(s.clone());
        }
        drop(last);
        if let Some(events) = self.events.get() {
            for s in &news {
                events.changed(node, s);
            }
        }
        changed
    }

    /// True when every class in `classes` was last seen ready (one never
    /// seen counts as not ready).
    pub fn all_ready<'a>(&self, mut classes: impl Iterator<Item = &'a str>) -> bool {
        let last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        classes.all(|c| last.get(c).is_some_and(Option::is_none))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> NodeConfig {
        NodeConfig::parse(
            "[[device_class]]\nname='fast'\nvolume_group='vg1'\ntype='thick'\ndefault=true\n\
             [[device_class]]\nname='thin'\nvolume_group='vg1'\ntype='thin'\nthin_pool='pool'\n\
             [[device_class]]\nname='slow'\nvolume_group='vg2'\ntype='thick'\ndevices=['/dev/sdz']\n\
             [[device_class]]\nname='edge'\nvolume_group='strata-fast'\ntype='thick'\n",
        )
        .unwrap()
    }

    fn vg(name: &str) -> VgInfo {
        VgInfo {
            name: name.into(),
            size_bytes: 1 << 30,
            free_bytes: 1 << 29,
            extent_bytes: 4 << 20,
        }
    }

    fn lv(name: &str, attr: &str) -> LvInfo {
        LvInfo {
            vg: "vg1".into(),
            name: name.into(),
            size_bytes: 1 << 28,
            tags: vec![],
            attr: attr.into(),
            pool: None,
            path: format!("/dev/vg1/{name}"),
            data_percent: None,
            metadata_percent: None,
            created: None,
        }
    }

    #[test]
    fn each_class_is_judged_from_one_report() {
        let states = class_states(&cfg(), &[vg("vg1")], &[lv("pool", "twi-a-tz--")]);
        let problems: Vec<(&str, Option<&str>)> = states
            .iter()
            .map(|s| (s.class.as_str(), s.problem.as_deref()))
            .collect();
        assert_eq!(
            problems,
            [
                ("fast", None),
                ("thin", None),
                (
                    "slow",
                    Some(
                        "volume group \"vg2\" not found on this node; creating it from [\"/dev/sdz\"] failed at start (the log says why)"
                    )
                ),
                (
                    "edge",
                    Some(
                        "volume group \"strata-fast\" not found on this node, and the class lists no devices to create it from"
                    )
                ),
            ]
        );
        let no_pool = class_states(&cfg(), &[vg("vg1")], &[lv("pool", "-wi-a-----")]);
        assert_eq!(
            no_pool[1].problem.as_deref(),
            Some("vg1/pool is not a thin pool (lv_attr -wi-a-----)")
        );
        let gone = class_states(&cfg(), &[vg("vg1")], &[]);
        assert_eq!(
            gone[1].problem.as_deref(),
            Some("thin pool vg1/pool not found")
        );
        assert_eq!(
            gone[3].describe(),
            "device class \"edge\" (volume group \"strata-fast\")"
        );
    }

    #[derive(Default)]
    struct Told(Mutex<Vec<(String, String, bool)>>);

    impl ClassEvents for Told {
        fn changed(&self, node: &str, state: &ClassState) {
            self.0
                .lock()
                .unwrap()
                .push((node.into(), state.class.clone(), state.ready()));
        }
    }

    #[test]
    fn each_change_is_told_once() {
        let r = Readiness::default();
        let told = Arc::new(Told::default());
        r.set_events(told.clone());
        let config = cfg();
        let without = class_states(&config, &[vg("vg1")], &[lv("pool", "twi-a-tz--")]);
        let names = || config.device_classes.iter().map(|c| c.name.as_str());
        assert!(!r.all_ready(names()), "nothing seen yet");
        assert_eq!(r.observe("edge-1", &without).len(), 4, "first sight");
        assert!(r.observe("edge-1", &without).is_empty(), "no change");
        assert!(!r.all_ready(names()));
        // vg2 appears (an operator ran vgcreate): only `slow` changes.
        let with = class_states(
            &config,
            &[vg("vg1"), vg("vg2")],
            &[lv("pool", "twi-a-tz--")],
        );
        let changed = r.observe("edge-1", &with);
        assert_eq!(
            changed.iter().map(|s| s.class.as_str()).collect::<Vec<_>>(),
            ["slow"]
        );
        assert!(changed[0].ready());
        assert!(!r.all_ready(names()), "edge still lacks its VG");
        assert!(r.all_ready(["fast", "thin", "slow"].into_iter()));
        // A partial observation changes only what it names.
        assert!(r.observe("edge-1", &without[2..3]).len() == 1);
        assert_eq!(
            *told.0.lock().unwrap(),
            [
                // First sights: only the two classes that cannot take volumes.
                ("edge-1".to_owned(), "slow".to_owned(), false),
                ("edge-1".to_owned(), "edge".to_owned(), false),
                ("edge-1".to_owned(), "slow".to_owned(), true),
                ("edge-1".to_owned(), "slow".to_owned(), false),
            ]
        );
    }
}
