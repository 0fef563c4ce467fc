//! CreateVolume from a snapshot or from a volume.
//!
//! - Thin: one writable thin snapshot of the snapshot (restore) or of the
//!   live volume (clone: LVM suspends the origin for the moment of the cut,
//!   which freezes its filesystem), grown to the requested size. The new LV
//!   is tagged at creation, so it is complete the moment it exists.
//! - Thick: a new thick LV tagged `strata.io/filling`, filled by copying
//!   (from the COW snapshot, or for a clone from a temporary COW snapshot of
//!   the source, the point-in-time of the request), zeros to its end, fsync,
//!   and only then untagged. A crash mid-copy leaves the tag: the retried
//!   request copies again, and the volume is never handed out half filled.
//!   The copy runs outside the VG's allocation lock.
//!
//! The new volume stays in its source's device class (and so on this node).

use std::path::PathBuf;

use strata_proto::csi::v1 as csi;
use tracing::info;

use super::{SnapshotFound, copy, snapshots_in};
use crate::config::{ClassType, DeviceClass};
use crate::driver::{Driver, Found, csi_volume};
use crate::error::CsiError;
use crate::lvm::{LvInfo, LvKind, NewLv, NewSnapshot, VgInfo};
use crate::names::{ContentSource, TAG_FILLING, TAG_SOURCE, TAG_TEMPORARY};
use crate::pool::found_in;
use crate::validate::{CreatePlan, SizeRange, describe_source};

/// What is left after the allocation step of a CreateVolume with a source.
#[derive(Debug)]
pub(crate) enum Created {
    /// The volume is complete.
    Done(csi::Volume),
    /// The volume exists and its content must be copied in ([`Driver::fill`]).
    Fill(Fill),
}

/// A thick volume waiting for its content.
#[derive(Debug)]
pub(crate) struct Fill {
    volume: csi::Volume,
    vg: String,
    lv: String,
    dst: PathBuf,
    src: PathBuf,
    src_bytes: u64,
    total_bytes: u64,
    temporary: Option<String>,
    source: ContentSource,
}

/// `FAILED_PRECONDITION` for a volume whose content is still being copied in.
pub(crate) fn refuse_filling(found: &Found, field: &str) -> Result<(), CsiError> {
    if found.lv.tags.iter().any(|t| t == TAG_FILLING) {
        return Err(CsiError::FailedPrecondition(format!(
            "{field}: volume {} is still being filled from its source; retry when its CreateVolume has succeeded",
            found.lv.name
        )));
    }
    Ok(())
}

/// The CSI view of a volume, with the source it was made from.
pub(crate) fn volume_view(d: &Driver, found: &Found) -> csi::Volume {
    use csi::volume_content_source::{SnapshotSource, Type, VolumeSource};
    let mut v = csi_volume(found, d.topology());
    v.content_source = ContentSource::from_tags(&found.lv.tags).map(|s| csi::VolumeContentSource {
        r#type: Some(match s {
            ContentSource::Snapshot(snapshot_id) => Type::Snapshot(SnapshotSource { snapshot_id }),
            ContentSource::Volume(volume_id) => Type::Volume(VolumeSource { volume_id }),
        }),
    });
    v
}

/// The size of a volume made from `src_bytes` of content: at least the
/// source, else `OUT_OF_RANGE`.
pub(crate) fn restore_size(
    plan: &CreatePlan,
    src_bytes: u64,
    extent: u64,
) -> Result<u64, CsiError> {
    if plan.size.limit != 0 && plan.size.limit < src_bytes {
        return Err(CsiError::OutOfRange {
            field: "capacity_range".into(),
            reason: format!(
                "the source holds {src_bytes} bytes and a restored or cloned volume cannot be smaller; limit_bytes is {}",
                plan.size.limit
            ),
        });
    }
    SizeRange {
        required: plan.size.required.max(src_bytes),
        limit: plan.size.limit,
    }
    .fit(plan.access.min_bytes(), extent, "capacity_range")
}

/// The source LV, its class and its content size.
struct Source {
    lv: LvInfo,
    class: String,
    bytes: u64,
}

impl Driver {
    fn resolve_source(&self, source: &ContentSource, lvs: &[LvInfo]) -> Result<Source, CsiError> {
        let missing = |field: &str| {
            CsiError::NotFound(format!(
                "{field}: {} does not exist on node {}; strata's snapshots and clones stay on the node of their volume",
                describe_source(source),
                self.node_id
            ))
        };
        match source {
            ContentSource::Snapshot(id) => {
                let field = "volume_content_source.snapshot.snapshot_id";
                let s: SnapshotFound = snapshots_in(lvs)
                    .into_iter()
                    .find(|s| s.lv.name == *id)
                    .ok_or_else(|| missing(field))?;
                if !s.is_valid() {
                    return Err(CsiError::FailedPrecondition(format!(
                        "{field}: snapshot {id} is invalid (its copy-on-write space overflowed) and cannot be restored"
                    )));
                }
                Ok(Source {
                    bytes: s.identity.size_bytes,
                    class: s.identity.class,
                    lv: s.lv,
                })
            }
            ContentSource::Volume(id) => {
                let field = "volume_content_source.volume.volume_id";
                let f = found_in(lvs, id).ok_or_else(|| missing(field))?;
                refuse_filling(&f, field)?;
                Ok(Source {
                    bytes: f.lv.size_bytes,
                    class: f.identity.class,
                    lv: f.lv,
                })
            }
        }
    }

    /// The allocation step of CreateVolume from `source`, under the locks of
    /// the new volume, the source and the VG. `existing`: the new volume's
    /// LV from an earlier, interrupted attempt. The caller rolls a failure
    /// back ([`super::rollback`]).
    pub(crate) fn create_from_source(
        &self,
        plan: &CreatePlan,
        source: &ContentSource,
        vg: &VgInfo,
        lvs: &[LvInfo],
        existing: Option<Found>,
    ) -> Result<Created, CsiError> {
        let class: &DeviceClass = &plan.class;
        let src = self.resolve_source(source, lvs)?;
        if src.class != class.name {
            return Err(CsiError::invalid(
                format!("parameters.{}", crate::validate::PARAM_DEVICE_CLASS),
                format!(
                    "the source {} is in device class {:?}; strata restores and clones within the class of their source, not into {:?}",
                    describe_source(source),
                    src.class,
                    class.name
                ),
            ));
        }
        let size = restore_size(plan, src.bytes, vg.extent_bytes)?;
        let mut tags = plan.identity.to_tags();
        tags.push(source.to_tag());
        match class.class_type {
            ClassType::Thin => self.thin_from(plan, &src, vg, lvs, existing, size, tags),
            ClassType::Thick => self.thick_from(plan, source, &src, vg, lvs, existing, size, tags),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn thin_from(
        &self,
        plan: &CreatePlan,
        src: &Source,
        vg: &VgInfo,
        lvs: &[LvInfo],
        existing: Option<Found>,
        size: u64,
        tags: Vec<String>,
    ) -> Result<Created, CsiError> {
        let what = format!("a {size}-byte volume");
        let mut lv = match existing {
            Some(f) => {
                if f.lv.size_bytes < size {
                    self.make_room(&plan.class, vg, lvs, size - f.lv.size_bytes, true, &what)?;
                }
                f.lv
            }
            None => {
                self.make_room(&plan.class, vg, lvs, size, true, &what)?;
                self.lvm.create_snapshot(&NewSnapshot {
                    vg: src.lv.vg.clone(),
                    origin: src.lv.name.clone(),
                    name: plan.lv_name.clone(),
                    cow_bytes: None,
                    writable: true,
                    tags: tags.clone(),
                })?
            }
        };
        // A snapshot LV must never carry its origin's identity: keep our tags only.
        let foreign: Vec<String> = lv
            .tags
            .iter()
            .filter(|t| !tags.contains(t))
            .cloned()
            .collect();
        if !foreign.is_empty() {
            lv = self.lvm.change_tags(&lv.vg, &lv.name, &[], &foreign)?;
        }
        if lv.size_bytes < size {
            lv = self.lvm.extend_lv(&lv.vg, &lv.name, size)?;
        }
        if !lv.is_active() {
            self.lvm.set_active(&lv.vg, &lv.name, true)?;
        }
        info!(lv = %lv.name, origin = %src.lv.name, bytes = lv.size_bytes, "created volume from a thin snapshot");
        let found = Found {
            lv,
            identity: plan.identity.clone(),
        };
        Ok(Created::Done(volume_view(self, &found)))
    }

    #[allow(clippy::too_many_arguments)]
    fn thick_from(
        &self,
        plan: &CreatePlan,
        source: &ContentSource,
        src: &Source,
        vg: &VgInfo,
        lvs: &[LvInfo],
        existing: Option<Found>,
        size: u64,
        mut tags: Vec<String>,
    ) -> Result<Created, CsiError> {
        // A clone copies from a point in time: a temporary COW snapshot of
        // the live source, as large as the source so it cannot overflow.
        let temp_name = crate::names::clone_source_name(&plan.lv_name);
        let clone = matches!(source, ContentSource::Volume(_));
        let mut temp = lvs.iter().find(|l| l.name == temp_name).cloned();
        if let Some(t) = temp.as_ref()
            && (t.attr.starts_with('S') || t.attr.chars().nth(4) == Some('I'))
        {
            // Overflowed during an earlier attempt: take a new point in time.
            self.lvm.remove_lv(&t.vg, &t.name)?;
            temp = None;
        }
        let temp_cow = if clone && temp.is_none() {
            src.bytes.div_ceil(vg.extent_bytes.max(1)) * vg.extent_bytes.max(1)
        } else {
            0
        };
        let lv = match existing {
            Some(f) => {
                self.make_room(
                    &plan.class,
                    vg,
                    lvs,
                    temp_cow,
                    true,
                    "a temporary snapshot of the source",
                )?;
                f.lv
            }
            None => {
                let what = if clone {
                    format!(
                        "a {size}-byte clone and a {temp_cow}-byte temporary snapshot of its source"
                    )
                } else {
                    format!("a {size}-byte volume")
                };
                self.make_room(&plan.class, vg, lvs, size + temp_cow, true, &what)?;
                tags.push(TAG_FILLING.to_owned());
                self.lvm.create_lv(&NewLv {
                    vg: plan.class.volume_group.clone(),
                    name: plan.lv_name.clone(),
                    size_bytes: size,
                    kind: LvKind::Thick,
                    tags,
                })?
            }
        };
        let src_dev = if clone {
            let t = match temp {
                // Left by an attempt cut short; after a reboot it is
                // inactive. LVM activates a COW snapshot with its origin
                // (changing the snapshot alone asks for a confirmation).
                Some(t) if !t.is_active() => {
                    self.lvm.set_active(&src.lv.vg, &src.lv.name, true)?;
                    t
                }
                Some(t) => t,
                None => {
                    if !src.lv.is_active() {
                        self.lvm.set_active(&src.lv.vg, &src.lv.name, true)?;
                    }
                    self.lvm.create_snapshot(&NewSnapshot {
                        vg: src.lv.vg.clone(),
                        origin: src.lv.name.clone(),
                        name: temp_name.clone(),
                        cow_bytes: Some(temp_cow),
                        writable: false,
                        tags: vec![
                            TAG_TEMPORARY.to_owned(),
                            format!("{TAG_SOURCE}{}", src.lv.name),
                        ],
                    })?
                }
            };
            PathBuf::from(t.path)
        } else {
            // A COW snapshot is read through its device (activating it
            // activates its origin as well).
            if !src.lv.is_active() {
                self.lvm.set_active(&src.lv.vg, &src.lv.name, true)?;
            }
            PathBuf::from(&src.lv.path)
        };
        if !lv.is_active() {
            self.lvm.set_active(&lv.vg, &lv.name, true)?;
        }
        let found = Found {
            lv: lv.clone(),
            identity: plan.identity.clone(),
        };
        let mut volume = volume_view(self, &found);
        volume.capacity_bytes = lv.size_bytes as i64;
        Ok(Created::Fill(Fill {
            volume,
            vg: lv.vg.clone(),
            lv: lv.name.clone(),
            dst: PathBuf::from(&lv.path),
            src: src_dev,
            src_bytes: src.bytes,
            total_bytes: lv.size_bytes,
            temporary: clone.then_some(temp_name),
            source: source.clone(),
        }))
    }

    /// The copy step of a thick restore or clone (outside the VG lock, still
    /// under the volume's and the source's): copy, sync, drop the temporary
    /// snapshot, then the `filling` tag. A failure leaves nothing behind
    /// ([`super::rollback`]).
    pub(crate) fn fill(&self, fill: Fill) -> Result<csi::Volume, CsiError> {
        let (vg, lv, source) = (fill.vg.clone(), fill.lv.clone(), fill.source.clone());
        self.copy_in(fill)
            .map_err(|e| self.roll_back(&vg, &lv, &source, e))
    }

    fn copy_in(&self, fill: Fill) -> Result<csi::Volume, CsiError> {
        copy::copy_device(&fill.src, &fill.dst, fill.src_bytes, fill.total_bytes).map_err(|e| {
            CsiError::Internal(format!(
                "copying {} into volume {}: {e}",
                fill.src.display(),
                fill.lv
            ))
        })?;
        if let Some(t) = &fill.temporary {
            self.lvm.remove_lv(&fill.vg, t)?;
        }
        let lv = self
            .lvm
            .change_tags(&fill.vg, &fill.lv, &[], &[TAG_FILLING.to_owned()])?;
        info!(lv = %lv.name, copied = fill.src_bytes, bytes = lv.size_bytes, "filled volume from its source");
        Ok(fill.volume)
    }
}
