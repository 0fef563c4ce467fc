//! The node's driver state shared by the three CSI services, and the blocking
//! volume lookups they build on.

use std::sync::Arc;

use strata_proto::csi::v1 as csi;
use tracing::{error, info, warn};

use crate::config::NodeConfig;
use crate::error::CsiError;
use crate::kubelet_dir::KubeletDir;
use crate::locks::KeyedLocks;
use crate::lvm::{LvInfo, Lvm, VgInfo};
use crate::metrics::Metrics;
use crate::names::VolumeIdentity;
use crate::readiness::{self, ClassEvents, ClassState, Readiness};
use crate::validate::TOPOLOGY_KEY;

/// One node's driver: its configuration, its LVM backend and its locks.
pub struct Driver {
    /// Validated node configuration.
    pub config: NodeConfig,
    /// This node's id (the Kubernetes node name).
    pub node_id: String,
    /// LVM access.
    pub lvm: Arc<dyn Lvm>,
    /// Serialises requests per volume id.
    pub(crate) volume_locks: KeyedLocks,
    /// Serialises allocations per VG, so two creates cannot both eat the spare.
    pub(crate) vg_locks: KeyedLocks,
    /// Request metrics.
    pub metrics: Metrics,
    /// Who else works on staged volumes (the tiering agent), if anyone.
    pub(crate) users: std::sync::OnceLock<Arc<dyn crate::staged::VolumeUsers>>,
    /// Where the node calls' paths must lie; without one they are all refused.
    kubelet_dir: Option<KubeletDir>,
    /// The device classes' last states ([`crate::readiness`]).
    pub(crate) readiness: Readiness,
    /// Whether ControllerGetCapabilities lists GET_SNAPSHOT ([`Driver::advertise_get_snapshot`]).
    pub(crate) advertise_get_snapshot: bool,
}

/// A strata volume found on this node.
#[derive(Debug, Clone)]
pub struct Found {
    /// The LV.
    pub lv: LvInfo,
    /// What its tags say.
    pub identity: VolumeIdentity,
}

impl Driver {
    /// A driver over `lvm` for `config`.
    pub fn new(config: NodeConfig, node_id: String, lvm: Arc<dyn Lvm>) -> Self {
        let metrics = Metrics::new(&node_id);
        Driver {
            config,
            node_id,
            lvm,
            volume_locks: KeyedLocks::default(),
            vg_locks: KeyedLocks::default(),
            metrics,
            users: std::sync::OnceLock::new(),
            kubelet_dir: None,
            advertise_get_snapshot: false,
            readiness: Readiness::default(),
        }
    }

    /// List the GET_SNAPSHOT controller capability (alpha in CSI 1.12).
    /// Off by default: sidecars built with csi-lib-utils before v0.21
    /// (external-provisioner before v5.3.0, csi-snapshotter before v8.3.0,
    /// csi-resizer before v1.14.0) panic logging a capability value they do
    /// not know. GetSnapshot itself answers either way.
    pub fn advertise_get_snapshot(mut self, on: bool) -> Self {
        self.advertise_get_snapshot = on;
        self
    }

    /// Confines the node calls' staging, target and volume paths to `dir`
    /// ([`crate::kubelet_dir`]).
    pub fn with_kubelet_dir(mut self, dir: KubeletDir) -> Self {
        self.kubelet_dir = Some(dir);
        self
    }

    /// The request path `path` (field `field`) in the resolved form the node
    /// calls work on, if it lies beneath the kubelet directory.
    pub fn confine(
        &self,
        path: &std::path::Path,
        field: &str,
    ) -> Result<std::path::PathBuf, CsiError> {
        match &self.kubelet_dir {
            Some(dir) => dir.confine(path, field),
            None => Err(CsiError::FailedPrecondition(format!(
                "{field}: this driver has no kubelet directory, so it works on no path"
            ))),
        }
    }

    /// Run blocking driver work (LVM, mkfs, mount) off the async workers.
    pub async fn blocking<T: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&Driver) -> Result<T, CsiError> + Send + 'static,
    ) -> Result<T, CsiError> {
        let me = self.clone();
        tokio::task::spawn_blocking(move || f(&me))
            .await
            .map_err(|e| CsiError::Internal(format!("worker failed: {e}")))?
    }

    /// The topology this node serves.
    pub fn topology(&self) -> csi::Topology {
        csi::Topology {
            segments: [(TOPOLOGY_KEY.to_owned(), self.node_id.clone())].into(),
        }
    }

    /// Every LV of the configured VGs.
    pub fn all_lvs(&self) -> Result<Vec<LvInfo>, CsiError> {
        let vgs = self.config.volume_groups();
        if vgs.is_empty() {
            return Ok(Vec::new());
        }
        Ok(self.lvm.lvs(&vgs)?)
    }

    /// strata's volumes on this node, sorted by id.
    pub fn volumes(&self) -> Result<Vec<Found>, CsiError> {
        let mut v: Vec<Found> = self
            .all_lvs()?
            .into_iter()
            .filter_map(|lv| {
                VolumeIdentity::from_tags(&lv.tags).map(|identity| Found { lv, identity })
            })
            .collect();
        v.sort_by(|a, b| a.lv.name.cmp(&b.lv.name));
        Ok(v)
    }

    /// The strata volume with this id, if it exists on this node.
    pub fn find(&self, id: &str) -> Result<Option<Found>, CsiError> {
        Ok(self.volumes()?.into_iter().find(|f| f.lv.name == id))
    }

    /// Like [`Driver::find`], but a missing volume is `NOT_FOUND` naming the field.
    pub fn require(&self, id: &str, field: &str) -> Result<Found, CsiError> {
        self.find(id)?.ok_or_else(|| {
            CsiError::NotFound(format!(
                "{field}: volume {id:?} does not exist on node {}",
                self.node_id
            ))
        })
    }

    /// One VG's report, or `UNAVAILABLE` naming the VG.
    pub fn vg(&self, name: &str) -> Result<VgInfo, CsiError> {
        self.lvm
            .vgs(&[name.to_owned()])?
            .into_iter()
            .next()
            .ok_or_else(|| {
                CsiError::Unavailable(format!(
                    "volume group {name:?} not found on node {}",
                    self.node_id
                ))
            })
    }

    /// Look at every device class (one LVM report) and take the result in
    /// ([`Driver::observe_classes`]). What Probe and the start call: an
    /// error means the LVM backend itself does not answer.
    pub fn check_device_classes(&self) -> Result<Vec<ClassState>, CsiError> {
        let names = self.config.volume_groups();
        let (vgs, lvs) = if names.is_empty() {
            (Vec::new(), Vec::new())
        } else {
            self.lvm.inventory(&names)?
        };
        let states = readiness::class_states(&self.config, &vgs, &lvs);
        self.observe_classes(&states);
        Ok(states)
    }

    /// Take device class states in (some or all classes, from any report):
    /// a log line and an Event for each change, the gauges.
    pub(crate) fn observe_classes(&self, states: &[ClassState]) {
        for s in self.readiness.observe(&self.node_id, states) {
            match &s.problem {
                Some(problem) => warn!(
                    device_class = %s.class,
                    vg = %s.volume_group,
                    "{} cannot take volumes: {problem}; GetCapacity offers 0 bytes for it and CreateVolume refuses it",
                    s.describe()
                ),
                None => {
                    info!(device_class = %s.class, vg = %s.volume_group, "{} is ready", s.describe())
                }
            }
        }
        for s in states {
            self.metrics.set_class_ready(&s.class, s.ready());
        }
        self.metrics.set_ready(
            self.readiness
                .all_ready(self.config.device_classes.iter().map(|c| c.name.as_str())),
        );
    }

    /// Tell `events` (an Event on the Node) of every later change of a
    /// device class's state.
    pub fn set_class_events(&self, events: Arc<dyn ClassEvents>) {
        self.readiness.set_events(events);
    }

    /// Create the VGs that are missing and whose devices the config lists;
    /// report the others. Called once at start; never destroys anything.
    pub fn ensure_volume_groups(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let names = self.config.volume_groups();
        let existing = match self.lvm.vgs(&names) {
            Ok(v) => v,
            Err(e) => return vec![format!("cannot list volume groups: {e}")],
        };
        for (i, c) in self.config.device_classes.iter().enumerate() {
            if existing.iter().any(|v| v.name == c.volume_group) {
                continue;
            }
            let created_by_earlier = self.config.device_classes[..i]
                .iter()
                .any(|o| o.volume_group == c.volume_group && !o.devices.is_empty());
            if created_by_earlier {
                continue;
            }
            if c.devices.is_empty() {
                let msg = format!(
                    "volume group {:?} (device class {:?}) not found, and device_class[{i}].devices lists no device to create it from",
                    c.volume_group, c.name
                );
                error!("{msg}");
                problems.push(msg);
                continue;
            }
            match self.lvm.create_vg(&c.volume_group, &c.devices) {
                Ok(()) => info!(vg = %c.volume_group, devices = ?c.devices, "created volume group"),
                Err(e) => {
                    let msg = format!(
                        "volume group {:?} (device class {:?}) not found and could not be created from {:?}: {e}",
                        c.volume_group, c.name, c.devices
                    );
                    warn!("{msg}");
                    problems.push(msg);
                }
            }
        }
        problems
    }
}

/// The CSI view of a volume.
pub fn csi_volume(found: &Found, topology: csi::Topology) -> csi::Volume {
    csi::Volume {
        capacity_bytes: found.lv.size_bytes as i64,
        volume_id: found.lv.name.clone(),
        volume_context: [(
            crate::validate::CTX_DEVICE_CLASS.to_owned(),
            found.identity.class.clone(),
        )]
        .into(),
        content_source: None,
        accessible_topology: vec![topology],
    }
}

/// The health of an LV from its `lv_attr`: abnormal when LVM reports it
/// suspended, invalid, partial, in need of refresh or with mismatches.
pub fn condition(lv: &LvInfo, need_active: bool) -> csi::VolumeCondition {
    let attr: Vec<char> = lv.attr.chars().collect();
    let state = attr.get(4).copied().unwrap_or('-');
    let health = attr.get(8).copied().unwrap_or('-');
    let problem = match (state, health) {
        (_, 'p') => Some("LVM reports the volume partial: a physical volume is missing".to_owned()),
        (_, 'r') => Some("LVM reports the volume needs a refresh".to_owned()),
        (_, 'm') => Some("LVM reports mismatches on the volume".to_owned()),
        (_, 'X') => Some("LVM cannot tell the volume's health".to_owned()),
        ('s' | 'S', _) => Some("the volume is suspended".to_owned()),
        ('I' | 'i', _) => Some("the volume is invalid".to_owned()),
        ('d', _) => Some("the volume's device is present without tables".to_owned()),
        ('-', _) if need_active => Some("the volume is not active".to_owned()),
        _ => None,
    };
    match problem {
        Some(message) => csi::VolumeCondition {
            abnormal: true,
            message,
        },
        None => csi::VolumeCondition {
            abnormal: false,
            message: "ok".to_owned(),
        },
    }
}
