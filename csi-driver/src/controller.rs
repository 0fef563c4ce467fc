//! CSI Controller, run on every node (distributed provisioning): each node
//! creates, deletes, lists and reports capacity for its own volumes only.

use std::sync::Arc;

use csi::controller_service_capability::{Rpc, Type, rpc};
use strata_proto::csi::v1 as csi;
use tonic::{Request, Response, Status};
use tracing::{Instrument, info};

use crate::capacity;
use crate::driver::{Driver, Found};
use crate::error::CsiError;
use crate::lvm::{LvInfo, LvKind, NewLv};
use crate::mount;
use crate::names::{ContentSource, TAG_FILLING, TAG_SOURCE, TAG_TEMPORARY};
use crate::pool::found_in;
use crate::readiness;
use crate::rpc::handle;
use crate::snapshots::restore::{Created, volume_view};
use crate::snapshots::rollback::temporaries_of;
use crate::snapshots::{self, csi_snapshot, is_cow_origin, is_open};
use crate::validate::{
    self, CreatePlan, PARAM_DEVICE_CLASS, PARAM_TIERING_POLICY, SizeRange, StorageClassParams,
};

/// The Controller service.
#[derive(Clone)]
pub struct ControllerService(pub Arc<Driver>);

/// Controller RPCs strata offers and always lists.
const CAPABILITIES: [rpc::Type; 9] = [
    rpc::Type::CreateDeleteVolume,
    rpc::Type::ListVolumes,
    rpc::Type::GetCapacity,
    rpc::Type::GetVolume,
    rpc::Type::VolumeCondition,
    rpc::Type::SingleNodeMultiWriter,
    rpc::Type::CreateDeleteSnapshot,
    rpc::Type::ListSnapshots,
    rpc::Type::CloneVolume,
];

/// The controller capabilities to list: [`CAPABILITIES`], and GET_SNAPSHOT
/// (CSI 1.12, alpha) only when asked to ([`Driver::advertise_get_snapshot`]).
fn capabilities(get_snapshot: bool) -> Vec<rpc::Type> {
    let mut caps = CAPABILITIES.to_vec();
    if get_snapshot {
        caps.push(rpc::Type::GetSnapshot);
    }
    caps
}

fn unimplemented(what: &str) -> Status {
    Status::unimplemented(format!("{what} is not offered by strata.io"))
}

impl Driver {
    /// CreateVolume after validation: takes the locks of the new volume and
    /// its source (in name order: no two requests ever wait for each
    /// other's second lock) and of the VG, then creates (and fills) it.
    async fn create_locked(self: Arc<Self>, plan: CreatePlan) -> Result<csi::Volume, CsiError> {
        let mut keys = vec![plan.lv_name.clone()];
        keys.extend(plan.source.as_ref().map(|s| s.id().to_owned()));
        keys.sort();
        keys.dedup();
        let mut held = Vec::new();
        for k in &keys {
            held.push(self.volume_locks.lock(k).await);
        }
        let vg = self.vg_locks.lock(&plan.class.volume_group).await;
        let tiering_policy = plan.tiering_policy.clone();
        let mut volume = match self.blocking(move |d| d.create_volume(&plan)).await? {
            Created::Done(v) => v,
            Created::Fill(fill) => {
                drop(vg);
                self.blocking(move |d| d.fill(fill)).await?
            }
        };
        drop(held);
        // Into the PersistentVolume's spec.csi.volumeAttributes, where the
        // tiering controller reads it.
        if let Some(policy) = tiering_policy {
            volume
                .volume_context
                .insert(PARAM_TIERING_POLICY.to_owned(), policy);
        }
        Ok(volume)
    }

    /// CreateVolume after validation, under the locks of the volume (and
    /// its source) and of the VG. A thick volume made from a source comes
    /// back as [`Created::Fill`]: its copy runs after the VG lock is released.
    fn create_volume(&self, plan: &CreatePlan) -> Result<Created, CsiError> {
        let class = &plan.class;
        // One report for idempotency, capacity, the thin pool and the source.
        let (vgs, lvs) = self.inventory_all()?;
        let state = readiness::class_state(class, &vgs, &lvs);
        self.observe_classes(std::slice::from_ref(&state));
        if let Some(problem) = &state.problem {
            // Not final for the external-provisioner: it has the scheduler
            // pick another node.
            return Err(CsiError::ResourceExhausted(format!(
                "parameters.{PARAM_DEVICE_CLASS}: device class {:?} cannot take volumes on node {}: {problem}",
                class.name, self.node_id
            )));
        }
        let mut resume = None;
        if let Some(lv) = lvs.iter().find(|l| l.name == plan.lv_name) {
            let found = Found {
                identity: crate::names::VolumeIdentity::from_tags(&lv.tags).ok_or_else(|| {
                    CsiError::AlreadyExists(format!(
                        "name: an LV {}/{} exists that strata did not create; refusing to adopt it",
                        lv.vg, lv.name
                    ))
                })?,
                lv: lv.clone(),
            };
            if found.lv.vg != class.volume_group || found.identity.class != class.name {
                return Err(CsiError::AlreadyExists(format!(
                    "name: volume {:?} exists in device class {:?}, the request asks for {:?}",
                    plan.name, found.identity.class, class.name
                )));
            }
            let had = ContentSource::from_tags(&found.lv.tags);
            if had != plan.source {
                let show = |s: &Option<ContentSource>| {
                    s.as_ref()
                        .map_or_else(|| "no source".to_owned(), validate::describe_source)
                };
                return Err(CsiError::AlreadyExists(format!(
                    "volume_content_source: volume {:?} exists with content from {}, the request asks for {}",
                    plan.name,
                    show(&had),
                    show(&plan.source)
                )));
            }
            let unfinished = found.lv.tags.iter().any(|t| t == TAG_FILLING)
                || (plan.source.is_some() && found.lv.size_bytes < plan.size.required);
            if !unfinished {
                if !plan.size.admits(found.lv.size_bytes) {
                    return Err(CsiError::AlreadyExists(format!(
                        "capacity_range: volume {:?} exists with {} bytes, outside the requested range (required {}, limit {})",
                        plan.name, found.lv.size_bytes, plan.size.required, plan.size.limit
                    )));
                }
                return Ok(Created::Done(volume_view(self, &found)));
            }
            // An earlier attempt stopped half way: finish it.
            resume = Some(found);
        }
        let vg = vgs
            .into_iter()
            .find(|v| v.name == class.volume_group)
            .ok_or_else(|| {
                CsiError::Unavailable(format!(
                    "volume group {:?} not found on node {}",
                    class.volume_group, self.node_id
                ))
            })?;
        if let Some(source) = &plan.source {
            // A failure leaves nothing behind (snapshots::rollback).
            return self
                .create_from_source(plan, source, &vg, &lvs, resume)
                .map_err(|e| self.roll_back(&vg.name, &plan.lv_name, source, e));
        }
        let size = plan
            .size
            .fit(plan.access.min_bytes(), vg.extent_bytes, "capacity_range")?;
        self.make_room(
            class,
            &vg,
            &lvs,
            size,
            true,
            &format!("a {size}-byte volume"),
        )?;
        let kind = match &class.thin_pool {
            Some(pool) => LvKind::Thin { pool: pool.clone() },
            None => LvKind::Thick,
        };
        let lv = self.lvm.create_lv(&NewLv {
            vg: class.volume_group.clone(),
            name: plan.lv_name.clone(),
            size_bytes: size,
            kind,
            tags: plan.identity.to_tags(),
        })?;
        info!(lv = %lv.name, vg = %lv.vg, bytes = lv.size_bytes, "created volume");
        Ok(Created::Done(volume_view(
            self,
            &Found {
                lv,
                identity: plan.identity.clone(),
            },
        )))
    }

    /// DeleteVolume under the volume's lock: refuses while the volume is in
    /// use, and while a thick volume has snapshots (LVM would remove them
    /// with it). A thin volume's snapshots are independent and stay.
    fn delete_volume(&self, id: &str) -> Result<(), CsiError> {
        let lvs = self.all_lvs()?;
        let Some(found) = found_in(&lvs, id) else {
            return Ok(());
        };
        if is_open(&found.lv) {
            return Err(CsiError::FailedPrecondition(format!(
                "volume_id: volume {id} is open (mounted or in use); unpublish and unstage it first"
            )));
        }
        let sourced = |l: &&LvInfo| {
            l.vg == found.lv.vg
                && l.tags
                    .iter()
                    .any(|t| t.strip_prefix(TAG_SOURCE) == Some(id))
        };
        // The temporary snapshots of interrupted thick clones of this volume.
        let temporary: Vec<&LvInfo> = lvs
            .iter()
            .filter(sourced)
            .filter(|l| l.tags.iter().any(|t| t == TAG_TEMPORARY))
            .collect();
        if is_cow_origin(&found.lv) {
            let snaps: Vec<&str> = lvs
                .iter()
                .filter(sourced)
                .filter(|l| !temporary.iter().any(|t| t.name == l.name))
                .map(|l| l.name.as_str())
                .collect();
            if !snaps.is_empty() || temporary.is_empty() {
                return Err(CsiError::FailedPrecondition(format!(
                    "volume_id: thick volume {id} has snapshots ({}); LVM removes copy-on-write snapshots with their origin, so delete them first",
                    if snaps.is_empty() {
                        "not strata's".to_owned()
                    } else {
                        snaps.join(", ")
                    }
                )));
            }
        }
        if let Ok(dev) = mount::device_number(std::path::Path::new(&found.lv.path)) {
            let table = mount::mounts()
                .map_err(|e| CsiError::Internal(format!("cannot read mount table: {e}")))?;
            if let Some(m) = mount::user_of(&table, dev, std::path::Path::new("/dev")) {
                return Err(CsiError::FailedPrecondition(format!(
                    "volume_id: volume {id} is still mounted at {}; unpublish and unstage it first",
                    m.mount_point.display()
                )));
            }
        }
        if !temporary.is_empty() {
            for t in &temporary {
                self.lvm.remove_lv(&t.vg, &t.name)?;
            }
            // Only strata's temporary snapshots may go with the volume:
            // anything LVM still counts as a snapshot of it stops the delete.
            let lv = self.lvm.lvs(std::slice::from_ref(&found.lv.vg))?;
            if lv
                .iter()
                .any(|l| l.name == found.lv.name && is_cow_origin(l))
            {
                return Err(CsiError::FailedPrecondition(format!(
                    "volume_id: thick volume {id} has copy-on-write snapshots strata did not make; delete them first"
                )));
            }
        }
        if found.lv.tags.iter().any(|t| t == TAG_FILLING) {
            // A clone given up half-copied: its temporary snapshot of the
            // source (`<name>.src`, in the source's VG) goes with it, or it
            // would hold a source-sized copy-on-write area until the source
            // itself is deleted.
            for t in temporaries_of(&lvs, &found.lv.name) {
                self.lvm.remove_lv(&t.vg, &t.name)?;
            }
        }
        self.lvm.remove_lv(&found.lv.vg, &found.lv.name)?;
        info!(lv = %found.lv.name, vg = %found.lv.vg, "deleted volume");
        Ok(())
    }

    fn volume_status(
        &self,
        found: &Found,
        lvs: &[LvInfo],
    ) -> csi::list_volumes_response::VolumeStatus {
        let mut c = self.volume_condition(found, lvs, false);
        if !c.abnormal && found.lv.tags.iter().any(|t| t == TAG_FILLING) {
            c = csi::VolumeCondition {
                abnormal: true,
                message: "the volume's content is still being copied from its source".to_owned(),
            };
        }
        csi::list_volumes_response::VolumeStatus {
            published_node_ids: vec![],
            volume_condition: Some(c),
        }
    }
}

#[tonic::async_trait]
impl csi::controller_server::Controller for ControllerService {
    async fn create_volume(
        &self,
        req: Request<csi::CreateVolumeRequest>,
    ) -> Result<Response<csi::CreateVolumeResponse>, Status> {
        let req = req.into_inner();
        let d = self.0.clone();
        let key = req.name.clone();
        handle(&self.0, "CreateVolume", &key, async move {
            let plan = validate::create(&req, &d.config, &d.node_id)?;
            // On a task of its own, which holds the locks until the work
            // ends: a caller that gives up (the provisioner's --timeout on a
            // long thick copy) must not free them while the copy still runs,
            // or its retry would copy into the same volume at the same time.
            let work = d.create_locked(plan).instrument(tracing::Span::current());
            tokio::spawn(work)
                .await
                .map_err(|e| CsiError::Internal(format!("worker failed: {e}")))?
                .map(|volume| csi::CreateVolumeResponse {
                    volume: Some(volume),
                })
        })
        .await
    }

    async fn delete_volume(
        &self,
        req: Request<csi::DeleteVolumeRequest>,
    ) -> Result<Response<csi::DeleteVolumeResponse>, Status> {
        let req = req.into_inner();
        let d = self.0.clone();
        let key = req.volume_id.clone();
        handle(&self.0, "DeleteVolume", &key, async move {
            if req.volume_id.is_empty() {
                return Err(CsiError::invalid("volume_id", "required"));
            }
            if !crate::names::is_lvm_name(&req.volume_id) {
                // Not an id strata ever issued: nothing of ours to delete.
                return Ok(csi::DeleteVolumeResponse {});
            }
            let _g = d.volume_locks.lock(&req.volume_id).await;
            let id = req.volume_id.clone();
            d.blocking(move |d| d.delete_volume(&id)).await?;
            Ok(csi::DeleteVolumeResponse {})
        })
        .await
    }

    async fn controller_publish_volume(
        &self,
        _req: Request<csi::ControllerPublishVolumeRequest>,
    ) -> Result<Response<csi::ControllerPublishVolumeResponse>, Status> {
        Err(unimplemented(
            "ControllerPublishVolume (local volumes need no attach)",
        ))
    }

    async fn controller_unpublish_volume(
        &self,
        _req: Request<csi::ControllerUnpublishVolumeRequest>,
    ) -> Result<Response<csi::ControllerUnpublishVolumeResponse>, Status> {
        Err(unimplemented(
            "ControllerUnpublishVolume (local volumes need no attach)",
        ))
    }

    async fn validate_volume_capabilities(
        &self,
        req: Request<csi::ValidateVolumeCapabilitiesRequest>,
    ) -> Result<Response<csi::ValidateVolumeCapabilitiesResponse>, Status> {
        let req = req.into_inner();
        let d = self.0.clone();
        let key = req.volume_id.clone();
        handle(&self.0, "ValidateVolumeCapabilities", &key, async move {
            validate::volume_id(&req.volume_id, "volume_id")?;
            if req.volume_capabilities.is_empty() {
                return Err(CsiError::invalid("volume_capabilities", "at least one capability is required"));
            }
            let id = req.volume_id.clone();
            let found = d.blocking(move |d| d.require(&id, "volume_id")).await?;
            let unconfirmed = |message: String| csi::ValidateVolumeCapabilitiesResponse { confirmed: None, message };
            if let Err(e) = validate::capabilities(&req.volume_capabilities, "volume_capabilities") {
                return Ok(unconfirmed(e.to_string()));
            }
            if let Some(class) = req.parameters.get(PARAM_DEVICE_CLASS)
                && *class != found.identity.class
            {
                return Ok(unconfirmed(format!(
                    "parameters.{PARAM_DEVICE_CLASS}: volume is in device class {:?}, not {class:?}",
                    found.identity.class
                )));
            }
            Ok(csi::ValidateVolumeCapabilitiesResponse {
                confirmed: Some(csi::validate_volume_capabilities_response::Confirmed {
                    volume_context: req.volume_context,
                    volume_capabilities: req.volume_capabilities,
                    parameters: req.parameters,
                    mutable_parameters: req.mutable_parameters,
                }),
                message: String::new(),
            })
        })
        .await
    }

    async fn list_volumes(
        &self,
        req: Request<csi::ListVolumesRequest>,
    ) -> Result<Response<csi::ListVolumesResponse>, Status> {
        let req = req.into_inner();
        let d = self.0.clone();
        handle(&self.0, "ListVolumes", "", async move {
            let (max, after) = validate::page(req.max_entries, &req.starting_token)?;
            d.blocking(move |d| {
                let (_, lvs) = d.inventory_all()?;
                let mut all: Vec<Found> = lvs
                    .iter()
                    .filter_map(|lv| found_in(std::slice::from_ref(lv), &lv.name))
                    .collect();
                all.sort_by(|a, b| a.lv.name.cmp(&b.lv.name));
                let rest: Vec<&Found> = all
                    .iter()
                    .filter(|f| after.as_deref().is_none_or(|a| f.lv.name.as_str() > a))
                    .collect();
                let page = &rest[..rest.len().min(max)];
                let next_token = if rest.len() > page.len() {
                    page.last()
                        .map(|f| validate::next_token(&f.lv.name))
                        .unwrap_or_default()
                } else {
                    String::new()
                };
                Ok(csi::ListVolumesResponse {
                    entries: page
                        .iter()
                        .map(|f| csi::list_volumes_response::Entry {
                            volume: Some(volume_view(d, f)),
                            status: Some(d.volume_status(f, &lvs)),
                        })
                        .collect(),
                    next_token,
                })
            })
            .await
        })
        .await
    }

    async fn get_capacity(
        &self,
        req: Request<csi::GetCapacityRequest>,
    ) -> Result<Response<csi::GetCapacityResponse>, Status> {
        let req = req.into_inner();
        let d = self.0.clone();
        handle(&self.0, "GetCapacity", "", async move {
            let zero = csi::GetCapacityResponse::default();
            // The parameters CreateVolume would refuse are refused here too.
            let params = StorageClassParams::parse(&req.parameters)?;
            let min_fs = if req.volume_capabilities.is_empty() {
                params.fstype.map_or(0, |fs| fs.min_bytes())
            } else {
                let access =
                    validate::capabilities(&req.volume_capabilities, "volume_capabilities")?;
                params
                    .access(
                        access,
                        validate::names_a_filesystem(&req.volume_capabilities),
                    )?
                    .min_bytes()
            };
            if let Some(t) = &req.accessible_topology
                && t.segments
                    .get(validate::TOPOLOGY_KEY)
                    .is_some_and(|n| *n != d.node_id)
            {
                return Ok(zero);
            }
            // A class this node does not have holds nothing here: the
            // capacity controller publishes 0 for it rather than retrying.
            let Some(class) = d.config.class(params.device_class.as_deref()).cloned() else {
                return Ok(zero);
            };
            d.blocking(move |d| {
                let (vgs, lvs) = d.lvm.inventory(std::slice::from_ref(&class.volume_group))?;
                let state = readiness::class_state(&class, &vgs, &lvs);
                d.observe_classes(std::slice::from_ref(&state));
                let Some(vg) = vgs.into_iter().next().filter(|_| state.ready()) else {
                    return Ok(zero);
                };
                if let Some(u) = capacity::pool_usage(&class, &lvs) {
                    crate::pool::observe(&u);
                }
                let room = capacity::vg_room_for_pools(&d.config, &class, &vg);
                let available = capacity::available_growing(&class, &vg, &lvs, room);
                // The largest volume strata would really create, rounded down to extents.
                let extent = vg.extent_bytes.max(1);
                let max = available / extent * extent;
                let min = SizeRange {
                    required: 1,
                    limit: 0,
                }
                .fit(min_fs, extent, "")
                .unwrap_or(extent);
                Ok(csi::GetCapacityResponse {
                    available_capacity: max as i64,
                    maximum_volume_size: Some(max as i64),
                    minimum_volume_size: Some(min as i64),
                })
            })
            .await
        })
        .await
    }

    async fn controller_get_capabilities(
        &self,
        _req: Request<csi::ControllerGetCapabilitiesRequest>,
    ) -> Result<Response<csi::ControllerGetCapabilitiesResponse>, Status> {
        handle(&self.0, "ControllerGetCapabilities", "", async {
            Ok(csi::ControllerGetCapabilitiesResponse {
                capabilities: capabilities(self.0.advertise_get_snapshot)
                    .into_iter()
                    .map(|t| csi::ControllerServiceCapability {
                        r#type: Some(Type::Rpc(Rpc { r#type: t as i32 })),
                    })
                    .collect(),
            })
        })
        .await
    }

    async fn create_snapshot(
        &self,
        req: Request<csi::CreateSnapshotRequest>,
    ) -> Result<Response<csi::CreateSnapshotResponse>, Status> {
        let req = req.into_inner();
        let d = self.0.clone();
        let key = req.name.clone();
        handle(&self.0, "CreateSnapshot", &key, async move {
            let plan = validate::snapshot::create_snapshot(&req)?;
            let mut keys = [plan.lv_name.clone(), plan.source_volume.clone()];
            keys.sort();
            let _first = d.volume_locks.lock(&keys[0]).await;
            let _second = d.volume_locks.lock(&keys[1]).await;
            // Allocations (COW space, pool growth) are serialised per VG: the
            // VG is known only from the report, so take every VG's lock, in order.
            let mut vgs = d.config.volume_groups();
            vgs.sort();
            let mut held = Vec::new();
            for vg in &vgs {
                held.push(d.vg_locks.lock(vg).await);
            }
            let snapshot = d.blocking(move |d| d.create_snapshot(&plan)).await?;
            drop(held);
            Ok(csi::CreateSnapshotResponse {
                snapshot: Some(snapshot),
            })
        })
        .await
    }

    async fn delete_snapshot(
        &self,
        req: Request<csi::DeleteSnapshotRequest>,
    ) -> Result<Response<csi::DeleteSnapshotResponse>, Status> {
        let req = req.into_inner();
        let d = self.0.clone();
        let key = req.snapshot_id.clone();
        handle(&self.0, "DeleteSnapshot", &key, async move {
            if req.snapshot_id.is_empty() {
                return Err(CsiError::invalid("snapshot_id", "required"));
            }
            if !crate::names::is_snapshot_id(&req.snapshot_id) {
                // Not an id strata ever issued: nothing of ours to delete.
                return Ok(csi::DeleteSnapshotResponse {});
            }
            let _g = d.volume_locks.lock(&req.snapshot_id).await;
            let id = req.snapshot_id.clone();
            d.blocking(move |d| d.delete_snapshot(&id)).await?;
            Ok(csi::DeleteSnapshotResponse {})
        })
        .await
    }

    async fn list_snapshots(
        &self,
        req: Request<csi::ListSnapshotsRequest>,
    ) -> Result<Response<csi::ListSnapshotsResponse>, Status> {
        let req = req.into_inner();
        let d = self.0.clone();
        handle(&self.0, "ListSnapshots", "", async move {
            let (max, after) = validate::page(req.max_entries, &req.starting_token)?;
            d.blocking(move |d| {
                let all = d.snapshots()?;
                let rest: Vec<&snapshots::SnapshotFound> = all
                    .iter()
                    .filter(|s| req.snapshot_id.is_empty() || s.lv.name == req.snapshot_id)
                    .filter(|s| {
                        req.source_volume_id.is_empty()
                            || s.identity.source_volume == req.source_volume_id
                    })
                    .filter(|s| after.as_deref().is_none_or(|a| s.lv.name.as_str() > a))
                    .collect();
                let page = &rest[..rest.len().min(max)];
                let next_token = if rest.len() > page.len() {
                    page.last()
                        .map(|s| validate::next_token(&s.lv.name))
                        .unwrap_or_default()
                } else {
                    String::new()
                };
                Ok(csi::ListSnapshotsResponse {
                    entries: page
                        .iter()
                        .map(|s| csi::list_snapshots_response::Entry {
                            snapshot: Some(csi_snapshot(s)),
                        })
                        .collect(),
                    next_token,
                })
            })
            .await
        })
        .await
    }

    async fn get_snapshot(
        &self,
        req: Request<csi::GetSnapshotRequest>,
    ) -> Result<Response<csi::GetSnapshotResponse>, Status> {
        let req = req.into_inner();
        let d = self.0.clone();
        let key = req.snapshot_id.clone();
        handle(&self.0, "GetSnapshot", &key, async move {
            let id = validate::snapshot::snapshot_id(&req.snapshot_id, "snapshot_id")?.to_owned();
            d.blocking(move |d| {
                let s = d
                    .snapshots()?
                    .into_iter()
                    .find(|s| s.lv.name == id)
                    .ok_or_else(|| {
                        CsiError::NotFound(format!(
                            "snapshot_id: snapshot {id:?} does not exist on node {}",
                            d.node_id
                        ))
                    })?;
                Ok(csi::GetSnapshotResponse {
                    snapshot: Some(csi_snapshot(&s)),
                })
            })
            .await
        })
        .await
    }

    async fn controller_expand_volume(
        &self,
        _req: Request<csi::ControllerExpandVolumeRequest>,
    ) -> Result<Response<csi::ControllerExpandVolumeResponse>, Status> {
        Err(unimplemented(
            "ControllerExpandVolume (strata expands on the node: NodeExpandVolume)",
        ))
    }

    async fn controller_get_volume(
        &self,
        req: Request<csi::ControllerGetVolumeRequest>,
    ) -> Result<Response<csi::ControllerGetVolumeResponse>, Status> {
        let req = req.into_inner();
        let d = self.0.clone();
        let key = req.volume_id.clone();
        handle(&self.0, "ControllerGetVolume", &key, async move {
            validate::volume_id(&req.volume_id, "volume_id")?;
            let id = req.volume_id.clone();
            d.blocking(move |d| {
                let (found, _, lvs) = d.require_in_report(&id, "volume_id")?;
                let s = d.volume_status(&found, &lvs);
                Ok(csi::ControllerGetVolumeResponse {
                    volume: Some(volume_view(d, &found)),
                    status: Some(csi::controller_get_volume_response::VolumeStatus {
                        published_node_ids: s.published_node_ids,
                        volume_condition: s.volume_condition,
                    }),
                })
            })
            .await
        })
        .await
    }

    async fn controller_modify_volume(
        &self,
        _req: Request<csi::ControllerModifyVolumeRequest>,
    ) -> Result<Response<csi::ControllerModifyVolumeResponse>, Status> {
        Err(unimplemented("ControllerModifyVolume"))
    }
}
