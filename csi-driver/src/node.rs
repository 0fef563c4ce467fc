//! CSI Node: format on first stage, mount, bind-publish, report usage and
//! health, and grow volumes online.
//!
//! Every staging, target and volume path of Stage, Unstage, Publish,
//! Unpublish and GetVolumeStats must lie beneath the kubelet directory
//! ([`crate::kubelet_dir`]), or the call is refused before anything is
//! touched. NodeExpandVolume's paths are only looked up in the mount table
//! (it grows the volume's own filesystem wherever that is mounted), so they
//! are not confined.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use csi::node_service_capability::{Rpc, Type, rpc};
use csi::volume_capability::AccessType;
use strata_proto::csi::v1 as csi;
use tonic::{Request, Response, Status};
use tracing::info;

use crate::driver::{Driver, Found};
use crate::error::CsiError;
use crate::fs::{self, Content};
use crate::mount::{self, MountEntry};
use crate::rpc::handle;
use crate::validate::{self, Access, FsType, SizeRange};

/// The Node service.
#[derive(Clone)]
pub struct NodeService(pub Arc<Driver>);

const CAPABILITIES: [rpc::Type; 5] = [
    rpc::Type::StageUnstageVolume,
    rpc::Type::GetVolumeStats,
    rpc::Type::ExpandVolume,
    rpc::Type::VolumeCondition,
    rpc::Type::SingleNodeMultiWriter,
];

pub(crate) fn internal(what: impl std::fmt::Display) -> CsiError {
    CsiError::Internal(what.to_string())
}

pub(crate) fn mount_table() -> Result<Vec<MountEntry>, CsiError> {
    mount::mounts().map_err(|e| internal(format!("cannot read the mount table: {e}")))
}

/// The filesystem the capability names explicitly, if any (an empty fs_type
/// means "whatever the volume already holds, ext4 when new").
fn explicit_fs(cap: Option<&csi::VolumeCapability>) -> bool {
    matches!(cap.and_then(|c| c.access_type.as_ref()), Some(AccessType::Mount(m)) if !m.fs_type.is_empty())
}

impl Driver {
    /// The volume's device, activated if it is not.
    pub(crate) fn device(&self, found: &Found) -> Result<PathBuf, CsiError> {
        if !found.lv.is_active() {
            self.lvm.set_active(&found.lv.vg, &found.lv.name, true)?;
        }
        Ok(PathBuf::from(&found.lv.path))
    }

    /// The device of volume `id` for the node calls. An active strata volume
    /// has its node at `/dev/<vg>/<id>` in one of the configured VGs: finding
    /// it there costs a `stat`, not an LVM report (which is most of a node
    /// call's time). Only when no node exists is LVM asked, to activate the
    /// volume or to say it does not exist.
    fn locate(&self, id: &str) -> Result<PathBuf, CsiError> {
        use std::os::unix::fs::FileTypeExt;
        for vg in self.config.volume_groups() {
            let dev = Path::new("/dev").join(&vg).join(id);
            if std::fs::metadata(&dev).is_ok_and(|m| m.file_type().is_block_device()) {
                return Ok(dev);
            }
        }
        let found = self.require(id, "volume_id")?;
        self.device(&found)
    }

    fn stage(
        &self,
        id: &str,
        staging: &Path,
        access: &Access,
        explicit: bool,
    ) -> Result<(), CsiError> {
        let dev = self.locate(id)?;
        let Access::Mount { fs: wanted, flags } = access else {
            // Block volumes need nothing at the staging path: publish binds the device.
            return Ok(());
        };
        let dev_no =
            mount::device_number(&dev).map_err(|e| internal(format!("{}: {e}", dev.display())))?;
        let table = mount_table()?;
        if let Some(m) = mount::mount_at(&table, staging) {
            if m.dev == dev_no {
                self.announce_staged(id, staging);
                return Ok(());
            }
            return Err(CsiError::AlreadyExists(format!(
                "staging_target_path: {} already has {} mounted, not volume {id}",
                staging.display(),
                m.source
            )));
        }
        let content = fs::probe(&dev).map_err(internal)?;
        let existing = content != Content::Empty;
        let fs = match content {
            Content::Empty => {
                fs::mkfs(&dev, *wanted).map_err(internal)?;
                info!(fs = wanted.as_str(), "formatted new volume");
                *wanted
            }
            Content::Signature(found) => match FsType::parse(&found, "") {
                Ok(existing) if existing == *wanted || !explicit => existing,
                Ok(existing) => {
                    return Err(CsiError::FailedPrecondition(format!(
                        "volume_capability.mount.fs_type: volume {id} already holds {}, not {}; strata never reformats a volume",
                        existing.as_str(),
                        wanted.as_str()
                    )));
                }
                Err(_) => {
                    return Err(CsiError::FailedPrecondition(format!(
                        "volume {id} holds a {found:?} signature that strata did not write; refusing to format or mount it"
                    )));
                }
            },
        };
        std::fs::create_dir_all(staging).map_err(|e| {
            internal(format!(
                "staging_target_path: cannot create {}: {e}",
                staging.display()
            ))
        })?;
        // A restore or clone of an XFS volume carries its source's UUID, which
        // XFS refuses to mount twice: `nouuid` lets both be mounted.
        let mut options = flags.clone();
        if fs == FsType::Xfs && !options.iter().any(|o| o == "nouuid") {
            options.push("nouuid".to_owned());
        }
        mount::mount_fs(&dev, staging, fs.as_str(), &options, false).map_err(internal)?;
        if existing && !flags.iter().any(|f| f == "ro") {
            // A volume restored or cloned into more than its source's size (or
            // grown while unstaged): fill the device. A no-op when it already does.
            if let Err(e) = fs::grow(&dev, staging, fs) {
                tracing::warn!("cannot grow the filesystem of volume {id} to its device: {e}");
            }
        }
        self.announce_staged(id, staging);
        Ok(())
    }

    fn unstage(&self, id: &str, staging: &Path) -> Result<(), CsiError> {
        let table = mount_table()?;
        if mount::mount_at(&table, staging).is_some() {
            self.announce_unstaging(id, staging);
            mount::unmount(staging).map_err(|e| {
                CsiError::FailedPrecondition(format!(
                    "staging_target_path: cannot unmount {}: {e}",
                    staging.display()
                ))
            })?;
        }
        Ok(())
    }

    fn publish(
        &self,
        id: &str,
        staging: &Path,
        target: &Path,
        access: &Access,
        read_only: bool,
    ) -> Result<(), CsiError> {
        let dev = self.locate(id)?;
        let dev_no =
            mount::device_number(&dev).map_err(|e| internal(format!("{}: {e}", dev.display())))?;
        let table = mount_table()?;
        match access {
            Access::Mount { flags, .. } => {
                if mount::mount_at(&table, staging).is_none_or(|m| m.dev != dev_no) {
                    return Err(CsiError::FailedPrecondition(format!(
                        "staging_target_path: volume {id} is not staged at {}; call NodeStageVolume first",
                        staging.display()
                    )));
                }
                if let Some(m) = mount::mount_at(&table, target) {
                    return already_published(
                        id,
                        target,
                        m.dev == dev_no,
                        m.read_only() == read_only,
                    );
                }
                std::fs::create_dir_all(target).map_err(|e| {
                    internal(format!(
                        "target_path: cannot create {}: {e}",
                        target.display()
                    ))
                })?;
                mount::bind(staging, target, read_only, flags).map_err(internal)
            }
            Access::Block => {
                if let Some(m) = mount::mount_at(&table, target) {
                    let same = rdev(target).is_some_and(|r| r == dev_no);
                    return already_published(id, target, same, m.read_only() == read_only);
                }
                if let Some(parent) = target.parent() {
                    std::fs::create_dir_all(parent).map_err(|e| {
                        internal(format!(
                            "target_path: cannot create {}: {e}",
                            parent.display()
                        ))
                    })?;
                }
                std::fs::OpenOptions::new()
                    .create(true)
                    .truncate(false)
                    .write(true)
                    .open(target)
                    .map_err(|e| {
                        internal(format!(
                            "target_path: cannot create {}: {e}",
                            target.display()
                        ))
                    })?;
                mount::bind(&dev, target, read_only, &[]).map_err(internal)
            }
        }
    }

    fn unpublish(&self, target: &Path) -> Result<(), CsiError> {
        let table = mount_table()?;
        if mount::mount_at(&table, target).is_some() {
            mount::unmount(target).map_err(|e| {
                CsiError::FailedPrecondition(format!(
                    "target_path: cannot unmount {}: {e}",
                    target.display()
                ))
            })?;
        }
        match std::fs::symlink_metadata(target) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(internal(format!("target_path: {}: {e}", target.display()))),
            // remove_dir refuses a non-empty directory: data is never deleted here.
            Ok(m) if m.is_dir() => std::fs::remove_dir(target).map_err(|e| {
                internal(format!(
                    "target_path: cannot remove {}: {e}",
                    target.display()
                ))
            }),
            Ok(_) => std::fs::remove_file(target).map_err(|e| {
                internal(format!(
                    "target_path: cannot remove {}: {e}",
                    target.display()
                ))
            }),
        }
    }

    fn stats(&self, id: &str, path: &Path) -> Result<csi::NodeGetVolumeStatsResponse, CsiError> {
        let (found, _, lvs) = self.require_in_report(id, "volume_id")?;
        let meta = std::fs::metadata(path)
            .map_err(|e| CsiError::NotFound(format!("volume_path: {}: {e}", path.display())))?;
        let table = mount_table()?;
        // LVM's view of the LV, then its thin pool's danger mark.
        let mut cond = self.volume_condition(&found, &lvs, true);
        let dev_no = mount::device_number(Path::new(&found.lv.path)).ok();
        use std::os::unix::fs::FileTypeExt;
        if meta.file_type().is_block_device() {
            if !cond.abnormal && rdev(path) != dev_no {
                cond = csi::VolumeCondition {
                    abnormal: true,
                    message: format!("{} is not volume {id}'s device", path.display()),
                };
            }
            return Ok(csi::NodeGetVolumeStatsResponse {
                usage: vec![csi::VolumeUsage {
                    total: found.lv.size_bytes as i64,
                    unit: csi::volume_usage::Unit::Bytes as i32,
                    ..Default::default()
                }],
                volume_condition: Some(cond),
            });
        }
        match mount::mount_at(&table, path) {
            None if !cond.abnormal => {
                cond = csi::VolumeCondition {
                    abnormal: true,
                    message: format!("{} is not a mount point", path.display()),
                };
            }
            Some(m) if !cond.abnormal && Some(m.dev) != dev_no => {
                cond = csi::VolumeCondition {
                    abnormal: true,
                    message: format!(
                        "{} has {} mounted, not volume {id}",
                        path.display(),
                        m.source
                    ),
                };
            }
            _ => {}
        }
        let u = fs::usage(path)
            .map_err(|e| internal(format!("volume_path: statvfs {}: {e}", path.display())))?;
        Ok(csi::NodeGetVolumeStatsResponse {
            usage: vec![
                csi::VolumeUsage {
                    available: u.available_bytes as i64,
                    total: u.total_bytes as i64,
                    used: u.used_bytes as i64,
                    unit: csi::volume_usage::Unit::Bytes as i32,
                },
                csi::VolumeUsage {
                    available: u.free_inodes as i64,
                    total: u.total_inodes as i64,
                    used: u.used_inodes as i64,
                    unit: csi::volume_usage::Unit::Inodes as i32,
                },
            ],
            volume_condition: Some(cond),
        })
    }
}

fn rdev(path: &Path) -> Option<(u32, u32)> {
    mount::device_number(path).ok()
}

fn already_published(
    id: &str,
    target: &Path,
    same_volume: bool,
    same_mode: bool,
) -> Result<(), CsiError> {
    match (same_volume, same_mode) {
        (true, true) => Ok(()),
        (true, false) => Err(CsiError::AlreadyExists(format!(
            "target_path: volume {id} is already published at {} with a different read-only setting",
            target.display()
        ))),
        (false, _) => Err(CsiError::AlreadyExists(format!(
            "target_path: {} already has something else mounted",
            target.display()
        ))),
    }
}

#[tonic::async_trait]
impl csi::node_server::Node for NodeService {
    async fn node_stage_volume(
        &self,
        req: Request<csi::NodeStageVolumeRequest>,
    ) -> Result<Response<csi::NodeStageVolumeResponse>, Status> {
        let req = req.into_inner();
        let d = self.0.clone();
        let key = req.volume_id.clone();
        handle(&self.0, "NodeStageVolume", &key, async move {
            let id = validate::volume_id(&req.volume_id, "volume_id")?.to_owned();
            let staging = validate::abs_path(&req.staging_target_path, "staging_target_path")?;
            let access =
                validate::node_capability(req.volume_capability.as_ref(), "volume_capability")?;
            let explicit = explicit_fs(req.volume_capability.as_ref());
            let _g = d.volume_locks.lock(&id).await;
            d.blocking(move |d| {
                let staging = d.confine(&staging, "staging_target_path")?;
                d.stage(&id, &staging, &access, explicit)
            })
            .await?;
            Ok(csi::NodeStageVolumeResponse {})
        })
        .await
    }

    async fn node_unstage_volume(
        &self,
        req: Request<csi::NodeUnstageVolumeRequest>,
    ) -> Result<Response<csi::NodeUnstageVolumeResponse>, Status> {
        let req = req.into_inner();
        let d = self.0.clone();
        let key = req.volume_id.clone();
        handle(&self.0, "NodeUnstageVolume", &key, async move {
            let id = validate::volume_id(&req.volume_id, "volume_id")?.to_owned();
            let staging = validate::abs_path(&req.staging_target_path, "staging_target_path")?;
            let _g = d.volume_locks.lock(&id).await;
            d.blocking(move |d| {
                let staging = d.confine(&staging, "staging_target_path")?;
                d.unstage(&id, &staging)
            })
            .await?;
            Ok(csi::NodeUnstageVolumeResponse {})
        })
        .await
    }

    async fn node_publish_volume(
        &self,
        req: Request<csi::NodePublishVolumeRequest>,
    ) -> Result<Response<csi::NodePublishVolumeResponse>, Status> {
        let req = req.into_inner();
        let d = self.0.clone();
        let key = req.volume_id.clone();
        handle(&self.0, "NodePublishVolume", &key, async move {
            let id = validate::volume_id(&req.volume_id, "volume_id")?.to_owned();
            let staging = validate::abs_path(&req.staging_target_path, "staging_target_path")?;
            let target = validate::abs_path(&req.target_path, "target_path")?;
            let access =
                validate::node_capability(req.volume_capability.as_ref(), "volume_capability")?;
            let read_only =
                req.readonly || validate::is_read_only_mode(req.volume_capability.as_ref());
            let _g = d.volume_locks.lock(&id).await;
            d.blocking(move |d| {
                let staging = d.confine(&staging, "staging_target_path")?;
                let target = d.confine(&target, "target_path")?;
                d.publish(&id, &staging, &target, &access, read_only)
            })
            .await?;
            Ok(csi::NodePublishVolumeResponse {})
        })
        .await
    }

    async fn node_unpublish_volume(
        &self,
        req: Request<csi::NodeUnpublishVolumeRequest>,
    ) -> Result<Response<csi::NodeUnpublishVolumeResponse>, Status> {
        let req = req.into_inner();
        let d = self.0.clone();
        let key = req.volume_id.clone();
        handle(&self.0, "NodeUnpublishVolume", &key, async move {
            let id = validate::volume_id(&req.volume_id, "volume_id")?.to_owned();
            let target = validate::abs_path(&req.target_path, "target_path")?;
            let _g = d.volume_locks.lock(&id).await;
            d.blocking(move |d| {
                let target = d.confine(&target, "target_path")?;
                d.unpublish(&target)
            })
            .await?;
            Ok(csi::NodeUnpublishVolumeResponse {})
        })
        .await
    }

    async fn node_get_volume_stats(
        &self,
        req: Request<csi::NodeGetVolumeStatsRequest>,
    ) -> Result<Response<csi::NodeGetVolumeStatsResponse>, Status> {
        let req = req.into_inner();
        let d = self.0.clone();
        let key = req.volume_id.clone();
        handle(&self.0, "NodeGetVolumeStats", &key, async move {
            let id = validate::volume_id(&req.volume_id, "volume_id")?.to_owned();
            let path = validate::abs_path(&req.volume_path, "volume_path")?;
            d.blocking(move |d| {
                let path = d.confine(&path, "volume_path")?;
                d.stats(&id, &path)
            })
            .await
        })
        .await
    }

    async fn node_expand_volume(
        &self,
        req: Request<csi::NodeExpandVolumeRequest>,
    ) -> Result<Response<csi::NodeExpandVolumeResponse>, Status> {
        let req = req.into_inner();
        let d = self.0.clone();
        let key = req.volume_id.clone();
        handle(&self.0, "NodeExpandVolume", &key, async move {
            let id = validate::volume_id(&req.volume_id, "volume_id")?.to_owned();
            let path = validate::abs_path(&req.volume_path, "volume_path")?;
            let mut paths = vec![path];
            if !req.staging_target_path.is_empty() {
                paths.push(validate::abs_path(
                    &req.staging_target_path,
                    "staging_target_path",
                )?);
            }
            if req.capacity_range.is_none() {
                return Err(CsiError::invalid("capacity_range", "required"));
            }
            let size = SizeRange::parse(req.capacity_range.as_ref(), "capacity_range")?;
            let block = match req.volume_capability.as_ref() {
                Some(c) => validate::capability(c, "volume_capability")? == Access::Block,
                None => false,
            };
            let _g = d.volume_locks.lock(&id).await;
            let vg_key = d
                .blocking({
                    let id = id.clone();
                    move |d| Ok(d.require(&id, "volume_id")?.lv.vg)
                })
                .await?;
            let _vg = d.vg_locks.lock(&vg_key).await;
            let capacity_bytes = d
                .blocking(move |d| d.expand(&id, &paths, size, block))
                .await?;
            Ok(csi::NodeExpandVolumeResponse { capacity_bytes })
        })
        .await
    }

    async fn node_get_capabilities(
        &self,
        _req: Request<csi::NodeGetCapabilitiesRequest>,
    ) -> Result<Response<csi::NodeGetCapabilitiesResponse>, Status> {
        handle(&self.0, "NodeGetCapabilities", "", async {
            Ok(csi::NodeGetCapabilitiesResponse {
                capabilities: CAPABILITIES
                    .iter()
                    .map(|t| csi::NodeServiceCapability {
                        r#type: Some(Type::Rpc(Rpc { r#type: *t as i32 })),
                    })
                    .collect(),
            })
        })
        .await
    }

    async fn node_get_info(
        &self,
        _req: Request<csi::NodeGetInfoRequest>,
    ) -> Result<Response<csi::NodeGetInfoResponse>, Status> {
        handle(&self.0, "NodeGetInfo", "", async {
            Ok(csi::NodeGetInfoResponse {
                node_id: self.0.node_id.clone(),
                max_volumes_per_node: self.0.config.max_volumes,
                accessible_topology: Some(self.0.topology()),
            })
        })
        .await
    }
}
