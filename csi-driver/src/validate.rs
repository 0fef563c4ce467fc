//! Pure validation of CSI requests: every field is checked here, before the
//! driver touches LVM, a filesystem or a mount. Nothing in this module does I/O.

use std::path::PathBuf;

use csi::volume_capability::AccessType;
use csi::volume_capability::access_mode::Mode;
use strata_proto::csi::v1 as csi;

use crate::config::{DeviceClass, NodeConfig};
use crate::error::CsiError;
use crate::names::{self, ContentSource, VolumeIdentity};

pub mod params;
pub mod snapshot;

pub use params::{PARAM_TIERING_POLICY, StorageClassParams};

/// The topology key every strata volume and node carries.
pub const TOPOLOGY_KEY: &str = "topology.strata.io/node";
/// StorageClass parameter that selects the device class.
pub const PARAM_DEVICE_CLASS: &str = "strata.io/device-class";
/// StorageClass parameter for the filesystem (the provisioner normally moves it into the capability).
pub const PARAM_FSTYPE: &str = "csi.storage.k8s.io/fstype";
/// Parameters the external-provisioner adds with `--extra-create-metadata`.
pub const PARAM_PVC_NAME: &str = "csi.storage.k8s.io/pvc/name";
/// PVC namespace parameter.
pub const PARAM_PVC_NAMESPACE: &str = "csi.storage.k8s.io/pvc/namespace";
/// PV name parameter.
pub const PARAM_PV_NAME: &str = "csi.storage.k8s.io/pv/name";
/// Volume context key holding the filesystem chosen at creation.
pub const CTX_FSTYPE: &str = "strata.io/fstype";
/// Volume context key holding the device class.
pub const CTX_DEVICE_CLASS: &str = "strata.io/device-class";

/// Size of a volume whose request gives no capacity.
pub const DEFAULT_SIZE: u64 = 1 << 30;
const MIB: u64 = 1 << 20;

/// Filesystems strata formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsType {
    /// ext4 (the default).
    Ext4,
    /// XFS (needs at least 300 MiB).
    Xfs,
}

impl FsType {
    /// Parse a CSI `fs_type`; empty means ext4.
    pub fn parse(s: &str, field: &str) -> Result<Self, CsiError> {
        match s {
            "" | "ext4" => Ok(FsType::Ext4),
            "xfs" => Ok(FsType::Xfs),
            other => Err(CsiError::invalid(
                field,
                format!("filesystem {other:?} is not supported (ext4, xfs)"),
            )),
        }
    }

    /// Name as blkid and mount know it.
    pub fn as_str(self) -> &'static str {
        match self {
            FsType::Ext4 => "ext4",
            FsType::Xfs => "xfs",
        }
    }

    /// Smallest volume this filesystem can be made on.
    pub fn min_bytes(self) -> u64 {
        match self {
            FsType::Ext4 => 32 * MIB,
            FsType::Xfs => 300 * MIB,
        }
    }
}

/// How a volume is accessed, from its capabilities.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access {
    /// Raw block device.
    Block,
    /// Mounted filesystem.
    Mount {
        /// Filesystem type.
        fs: FsType,
        /// Extra mount options.
        flags: Vec<String>,
    },
}

impl Access {
    /// Smallest size the access type allows.
    pub fn min_bytes(&self) -> u64 {
        match self {
            Access::Block => 0,
            Access::Mount { fs, .. } => fs.min_bytes(),
        }
    }
}

/// Access modes a node-local volume can honour.
fn mode_supported(mode: Mode) -> bool {
    matches!(
        mode,
        Mode::SingleNodeWriter
            | Mode::SingleNodeReaderOnly
            | Mode::SingleNodeSingleWriter
            | Mode::SingleNodeMultiWriter
    )
}

/// Check one capability; `field` is its path in the request.
pub fn capability(cap: &csi::VolumeCapability, field: &str) -> Result<Access, CsiError> {
    let mode_field = format!("{field}.access_mode");
    let mode = cap
        .access_mode
        .as_ref()
        .ok_or_else(|| CsiError::invalid(&mode_field, "required"))?
        .mode;
    let mode = Mode::try_from(mode).map_err(|_| {
        CsiError::invalid(format!("{mode_field}.mode"), format!("unknown mode {mode}"))
    })?;
    if !mode_supported(mode) {
        return Err(CsiError::invalid(
            format!("{mode_field}.mode"),
            format!(
                "{} is not supported: strata volumes are local to one node",
                mode.as_str_name()
            ),
        ));
    }
    match &cap.access_type {
        None => Err(CsiError::invalid(
            format!("{field}.access_type"),
            "one of block or mount is required",
        )),
        Some(AccessType::Block(_)) => Ok(Access::Block),
        Some(AccessType::Mount(m)) => {
            let flags_len: usize = m.mount_flags.iter().map(String::len).sum();
            if flags_len > 4096 {
                return Err(CsiError::invalid(
                    format!("{field}.mount.mount_flags"),
                    "more than 4 KiB of mount flags",
                ));
            }
            for (i, flag) in m.mount_flags.iter().enumerate() {
                if flag.is_empty() || flag.contains(char::is_whitespace) {
                    return Err(CsiError::invalid(
                        format!("{field}.mount.mount_flags[{i}]"),
                        "must be one non-empty word",
                    ));
                }
            }
            Ok(Access::Mount {
                fs: FsType::parse(&m.fs_type, &format!("{field}.mount.fs_type"))?,
                flags: m.mount_flags.clone(),
            })
        }
    }
}

/// Check a list of capabilities; all must agree on block versus mount and on the filesystem.
pub fn capabilities(caps: &[csi::VolumeCapability], field: &str) -> Result<Access, CsiError> {
    let mut access: Option<Access> = None;
    if caps.is_empty() {
        return Err(CsiError::invalid(
            field,
            "at least one capability is required",
        ));
    }
    for (i, cap) in caps.iter().enumerate() {
        let a = capability(cap, &format!("{field}[{i}]"))?;
        match (&access, &a) {
            (None, _) => access = Some(a),
            (Some(Access::Block), Access::Block) => {}
            (Some(Access::Mount { fs: f1, .. }), Access::Mount { fs: f2, .. }) if f1 == f2 => {}
            _ => {
                return Err(CsiError::invalid(
                    format!("{field}[{i}]"),
                    "capabilities disagree (block versus mount, or two filesystems)",
                ));
            }
        }
    }
    Ok(access.expect("at least one capability"))
}

/// The capacity a request allows, before rounding to extents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SizeRange {
    /// At least this many bytes (0: unspecified).
    pub required: u64,
    /// At most this many bytes (0: no limit).
    pub limit: u64,
}

impl SizeRange {
    /// Validate a CSI capacity range at `field`.
    pub fn parse(range: Option<&csi::CapacityRange>, field: &str) -> Result<Self, CsiError> {
        let Some(r) = range else {
            return Ok(SizeRange {
                required: 0,
                limit: 0,
            });
        };
        if r.required_bytes < 0 {
            return Err(CsiError::invalid(
                format!("{field}.required_bytes"),
                "must not be negative",
            ));
        }
        if r.limit_bytes < 0 {
            return Err(CsiError::invalid(
                format!("{field}.limit_bytes"),
                "must not be negative",
            ));
        }
        let (required, limit) = (r.required_bytes as u64, r.limit_bytes as u64);
        if limit != 0 && limit < required {
            return Err(CsiError::invalid(
                field,
                format!("limit_bytes {limit} is smaller than required_bytes {required}"),
            ));
        }
        Ok(SizeRange { required, limit })
    }

    /// The size to allocate: the request (or the default), at least `min`,
    /// rounded up to whole extents, and never above the limit.
    pub fn fit(&self, min: u64, extent: u64, field: &str) -> Result<u64, CsiError> {
        let extent = extent.max(1);
        let mut want = if self.required == 0 {
            DEFAULT_SIZE
        } else {
            self.required
        };
        if self.required == 0 && self.limit != 0 {
            want = want.min(self.limit);
        }
        want = want.max(min).max(extent);
        let rounded =
            want.div_ceil(extent)
                .checked_mul(extent)
                .ok_or_else(|| CsiError::OutOfRange {
                    field: field.into(),
                    reason: format!("{want} bytes is too large"),
                })?;
        if self.limit != 0 && rounded > self.limit {
            return Err(CsiError::OutOfRange {
                field: field.into(),
                reason: format!(
                    "the smallest size strata can make is {rounded} bytes ({} extents of {extent}, filesystem minimum {min}), above limit_bytes {}",
                    rounded / extent,
                    self.limit
                ),
            });
        }
        Ok(rounded)
    }

    /// True when an existing volume of `size` bytes satisfies this range.
    pub fn admits(&self, size: u64) -> bool {
        size >= self.required && (self.limit == 0 || size <= self.limit)
    }
}

/// Everything CreateVolume needs, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct CreatePlan {
    /// The CSI name.
    pub name: String,
    /// The LV name (and volume id).
    pub lv_name: String,
    /// The device class.
    pub class: DeviceClass,
    /// Block or mount.
    pub access: Access,
    /// Capacity range.
    pub size: SizeRange,
    /// Identity recorded in tags.
    pub identity: VolumeIdentity,
    /// The snapshot or volume whose content the new volume starts with.
    pub source: Option<ContentSource>,
    /// `strata.io/tiering-policy`: handed back in the volume context.
    pub tiering_policy: Option<String>,
}

pub(crate) fn non_empty<'a>(value: &'a str, field: &str) -> Result<&'a str, CsiError> {
    if value.is_empty() {
        Err(CsiError::invalid(field, "required"))
    } else {
        Ok(value)
    }
}

/// Check the topology requirement: this node must be among the requisite
/// topologies (if any are given), since a volume can only live where it is made.
pub fn topology(req: Option<&csi::TopologyRequirement>, node_id: &str) -> Result<(), CsiError> {
    let Some(req) = req else { return Ok(()) };
    for (list, name) in [(&req.requisite, "requisite"), (&req.preferred, "preferred")] {
        for (i, t) in list.iter().enumerate() {
            if let Some(k) = t.segments.keys().find(|k| k.as_str() != TOPOLOGY_KEY) {
                return Err(CsiError::invalid(
                    format!("accessibility_requirements.{name}[{i}]"),
                    format!("unknown topology key {k:?} (strata knows {TOPOLOGY_KEY})"),
                ));
            }
        }
    }
    let mine = |t: &csi::Topology| t.segments.get(TOPOLOGY_KEY).is_none_or(|n| n == node_id);
    if !req.requisite.is_empty() && !req.requisite.iter().any(mine) {
        return Err(CsiError::ResourceExhausted(format!(
            "accessibility_requirements.requisite: this node ({node_id}) is not among the requested nodes; strata creates volumes only on the node that asks"
        )));
    }
    Ok(())
}

/// Check a CreateVolume request against the node's configuration.
pub fn create(
    req: &csi::CreateVolumeRequest,
    config: &NodeConfig,
    node_id: &str,
) -> Result<CreatePlan, CsiError> {
    let name = non_empty(&req.name, "name")?;
    if name
        .chars()
        .any(|c| c.is_control() && !matches!(c, '\t' | '\n' | '\r'))
    {
        return Err(CsiError::invalid("name", "contains control characters"));
    }
    if name.len() > 128 {
        return Err(CsiError::invalid("name", "longer than 128 bytes"));
    }
    let access = capabilities(&req.volume_capabilities, "volume_capabilities")?;
    let size = SizeRange::parse(req.capacity_range.as_ref(), "capacity_range")?;
    let source = content_source(req.volume_content_source.as_ref())?;
    topology(req.accessibility_requirements.as_ref(), node_id).map_err(|e| match (&e, &source) {
        (CsiError::ResourceExhausted(_), Some(s)) => CsiError::ResourceExhausted(format!(
            "accessibility_requirements.requisite: the source {} is on this node ({node_id}), which the request does not allow; strata's snapshots and clones stay on the node of their source",
            describe_source(s)
        )),
        _ => e,
    })?;
    let params = StorageClassParams::parse(&req.parameters)?;
    let access = params.access(access, names_a_filesystem(&req.volume_capabilities))?;
    let class = device_class(config, params.device_class.as_deref(), node_id)?.clone();
    let identity = VolumeIdentity {
        class: class.name.clone(),
        pv: params.pv_name,
        pvc_namespace: params.pvc_namespace,
        pvc_name: params.pvc_name,
    };
    Ok(CreatePlan {
        name: name.to_owned(),
        lv_name: names::lv_name_for(name),
        class,
        access,
        size,
        identity,
        source,
        tiering_policy: params.tiering_policy,
    })
}

/// `snapshot "snap-1"` / `volume "pvc-1"`, for messages.
pub fn describe_source(s: &ContentSource) -> String {
    match s {
        ContentSource::Snapshot(id) => format!("snapshot {id:?}"),
        ContentSource::Volume(id) => format!("volume {id:?}"),
    }
}

/// Check a CreateVolume content source: a snapshot id or a volume id strata
/// could have issued (anything else cannot exist: `NOT_FOUND`).
pub fn content_source(
    source: Option<&csi::VolumeContentSource>,
) -> Result<Option<ContentSource>, CsiError> {
    use csi::volume_content_source::Type;
    let Some(source) = source else {
        return Ok(None);
    };
    match &source.r#type {
        None => Err(CsiError::invalid(
            "volume_content_source",
            "one of snapshot or volume is required",
        )),
        Some(Type::Snapshot(s)) => Ok(Some(ContentSource::Snapshot(
            snapshot::snapshot_id(&s.snapshot_id, "volume_content_source.snapshot.snapshot_id")?
                .to_owned(),
        ))),
        Some(Type::Volume(v)) => {
            let field = "volume_content_source.volume.volume_id";
            let id = volume_id(&v.volume_id, field)?;
            if names::is_snapshot_id(id) {
                return Err(CsiError::NotFound(format!(
                    "{field}: {id:?} is a snapshot id, not a volume id"
                )));
            }
            Ok(Some(ContentSource::Volume(id.to_owned())))
        }
    }
}

/// The device class a `strata.io/device-class` parameter names (the default
/// class when absent), or `INVALID_ARGUMENT` naming the parameter.
pub fn device_class<'a>(
    config: &'a NodeConfig,
    name: Option<&str>,
    node_id: &str,
) -> Result<&'a DeviceClass, CsiError> {
    config.class(name).ok_or_else(|| {
        let reason = match name {
            Some(c) => format!(
                "unknown device class {c:?} on node {node_id} (known: {})",
                config
                    .device_classes
                    .iter()
                    .map(|c| c.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            None => format!("not given and node {node_id} has no default device class"),
        };
        CsiError::invalid(format!("parameters.{PARAM_DEVICE_CLASS}"), reason)
    })
}

/// True when some capability names a filesystem (or asks for a block
/// device): a `csi.storage.k8s.io/fstype` parameter may then not contradict it.
pub(crate) fn names_a_filesystem(caps: &[csi::VolumeCapability]) -> bool {
    !caps
        .iter()
        .all(|c| matches!(&c.access_type, Some(AccessType::Mount(m)) if m.fs_type.is_empty()))
}

/// A volume id as the node and controller calls receive it.
pub fn volume_id<'a>(id: &'a str, field: &str) -> Result<&'a str, CsiError> {
    let id = non_empty(id, field)?;
    if !names::is_lvm_name(id) {
        return Err(CsiError::NotFound(format!(
            "{field}: {id:?} is not a strata volume id"
        )));
    }
    Ok(id)
}

/// An absolute path field.
pub fn abs_path(path: &str, field: &str) -> Result<PathBuf, CsiError> {
    let p = non_empty(path, field)?;
    if !p.starts_with('/') {
        return Err(CsiError::invalid(
            field,
            format!("{p:?} is not an absolute path"),
        ));
    }
    if p.split('/').any(|c| c == "..") {
        return Err(CsiError::invalid(
            field,
            format!("{p:?} must not contain '..'"),
        ));
    }
    Ok(PathBuf::from(p))
}

/// The single required capability of a node call.
pub fn node_capability(
    cap: Option<&csi::VolumeCapability>,
    field: &str,
) -> Result<Access, CsiError> {
    capability(
        cap.ok_or_else(|| CsiError::invalid(field, "required"))?,
        field,
    )
}

/// Whether a capability's access mode is read-only.
pub fn is_read_only_mode(cap: Option<&csi::VolumeCapability>) -> bool {
    cap.and_then(|c| c.access_mode.as_ref())
        .and_then(|m| Mode::try_from(m.mode).ok())
        .is_some_and(|m| m == Mode::SingleNodeReaderOnly)
}

/// Parse and check a ListVolumes page request.
pub fn page(max_entries: i32, starting_token: &str) -> Result<(usize, Option<String>), CsiError> {
    if max_entries < 0 {
        return Err(CsiError::invalid("max_entries", "must not be negative"));
    }
    let max = if max_entries == 0 {
        usize::MAX
    } else {
        max_entries as usize
    };
    if starting_token.is_empty() {
        return Ok((max, None));
    }
    match starting_token.strip_prefix("after:") {
        Some(name) if names::is_lvm_name(name) => Ok((max, Some(name.to_owned()))),
        _ => Err(CsiError::Aborted(format!(
            "starting_token: {starting_token:?} was not issued by strata"
        ))),
    }
}

/// The token that continues a listing after volume `last`.
pub fn next_token(last: &str) -> String {
    format!("after:{last}")
}

#[cfg(test)]
mod tests;
