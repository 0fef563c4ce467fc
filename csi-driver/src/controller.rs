//! CSI Controller, run on every node (distributed provisioning): each node
//! creates, deletes, lists and reports capacity for its own volumes only.

use std::sync::Arc;

use csi::controller_service_capability::{Rpc, Type, rpc};
use strata_proto::csi::v1 as csi;
use tonic::{Request, Response, Status};
use tracing::info;

use crate::capacity;
use crate::driver::{Driver, Found, condition, csi_volume};
use crate::error::CsiError;
use crate::lvm::{LvKind, NewLv};
use crate::mount;
use crate::rpc::handle;
use crate::validate::{self, CreatePlan, PARAM_DEVICE_CLASS, SizeRange};

/// The Controller service.
#[derive(Clone)]
pub struct ControllerService(pub Arc<Driver>);

/// Controller RPCs strata offers.
const CAPABILITIES: [rpc::Type; 6] = [
    rpc::Type::CreateDeleteVolume,
    rpc::Type::ListVolumes,
    rpc::Type::GetCapacity,
    rpc::Type::GetVolume,
    rpc::Type::VolumeCondition,
    rpc::Type::SingleNodeMultiWriter,
];

fn unimplemented(what: &str) -> Status {
    Status::unimplemented(format!("{what} is not offered by strata.io"))
}

impl Driver {
    /// CreateVolume after validation, under the volume's lock.
    fn create_volume(&self, plan: &CreatePlan) -> Result<csi::Volume, CsiError> {
        let class = &plan.class;
        // One report for idempotency, capacity and the thin pool.
        let (vgs, lvs) = self.lvm.inventory(&self.config.volume_groups())?;
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
            if !plan.size.admits(found.lv.size_bytes) {
                return Err(CsiError::AlreadyExists(format!(
                    "capacity_range: volume {:?} exists with {} bytes, outside the requested range (required {}, limit {})",
                    plan.name, found.lv.size_bytes, plan.size.required, plan.size.limit
                )));
            }
            return Ok(csi_volume(&found, self.topology()));
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
        let size = plan
            .size
            .fit(plan.access.min_bytes(), vg.extent_bytes, "capacity_range")?;
        let available = capacity::available(class, &vg, &lvs);
        if size > available {
            return Err(CsiError::ResourceExhausted(format!(
                "capacity_range: device class {:?} (volume group {}) can give {available} bytes (after {} spare), {size} requested",
                class.name, class.volume_group, class.spare_bytes
            )));
        }
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
        Ok(csi_volume(
            &Found {
                lv,
                identity: plan.identity.clone(),
            },
            self.topology(),
        ))
    }

    /// DeleteVolume under the volume's lock: refuses while the volume is in use.
    fn delete_volume(&self, id: &str) -> Result<(), CsiError> {
        let Some(found) = self.find(id)? else {
            return Ok(());
        };
        if found.lv.attr.chars().nth(5) == Some('o') {
            return Err(CsiError::FailedPrecondition(format!(
                "volume_id: volume {id} is open (mounted or in use); unpublish and unstage it first"
            )));
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
        self.lvm.remove_lv(&found.lv.vg, &found.lv.name)?;
        info!(lv = %found.lv.name, vg = %found.lv.vg, "deleted volume");
        Ok(())
    }

    fn volume_status(&self, found: &Found) -> csi::list_volumes_response::VolumeStatus {
        csi::list_volumes_response::VolumeStatus {
            published_node_ids: vec![],
            volume_condition: Some(condition(&found.lv, false)),
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
            let _volume = d.volume_locks.lock(&plan.lv_name).await;
            let _vg = d.vg_locks.lock(&plan.class.volume_group).await;
            let volume = d.blocking(move |d| d.create_volume(&plan)).await?;
            Ok(csi::CreateVolumeResponse {
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
                let all = d.volumes()?;
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
                            volume: Some(csi_volume(f, d.topology())),
                            status: Some(d.volume_status(f)),
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
            let min_fs = if req.volume_capabilities.is_empty() {
                0
            } else {
                validate::capabilities(&req.volume_capabilities, "volume_capabilities")?.min_bytes()
            };
            if let Some(t) = &req.accessible_topology
                && t.segments
                    .get(validate::TOPOLOGY_KEY)
                    .is_some_and(|n| *n != d.node_id)
            {
                return Ok(zero);
            }
            let class_name = req.parameters.get(PARAM_DEVICE_CLASS).cloned();
            let class =
                validate::device_class(&d.config, class_name.as_deref(), &d.node_id)?.clone();
            d.blocking(move |d| {
                let (vgs, lvs) = d.lvm.inventory(std::slice::from_ref(&class.volume_group))?;
                let Some(vg) = vgs.into_iter().next() else {
                    return Ok(zero);
                };
                let available = capacity::available(&class, &vg, &lvs);
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
                capabilities: CAPABILITIES
                    .iter()
                    .map(|t| csi::ControllerServiceCapability {
                        r#type: Some(Type::Rpc(Rpc { r#type: *t as i32 })),
                    })
                    .collect(),
            })
        })
        .await
    }

    async fn create_snapshot(
        &self,
        _req: Request<csi::CreateSnapshotRequest>,
    ) -> Result<Response<csi::CreateSnapshotResponse>, Status> {
        Err(unimplemented("CreateSnapshot"))
    }

    async fn delete_snapshot(
        &self,
        _req: Request<csi::DeleteSnapshotRequest>,
    ) -> Result<Response<csi::DeleteSnapshotResponse>, Status> {
        Err(unimplemented("DeleteSnapshot"))
    }

    async fn list_snapshots(
        &self,
        _req: Request<csi::ListSnapshotsRequest>,
    ) -> Result<Response<csi::ListSnapshotsResponse>, Status> {
        Err(unimplemented("ListSnapshots"))
    }

    async fn get_snapshot(
        &self,
        _req: Request<csi::GetSnapshotRequest>,
    ) -> Result<Response<csi::GetSnapshotResponse>, Status> {
        Err(unimplemented("GetSnapshot"))
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
                let found = d.require(&id, "volume_id")?;
                let s = d.volume_status(&found);
                Ok(csi::ControllerGetVolumeResponse {
                    volume: Some(csi_volume(&found, d.topology())),
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
