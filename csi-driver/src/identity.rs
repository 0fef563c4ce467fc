//! CSI Identity: who the plugin is, what it offers, and whether it is
//! healthy (Probe: the process serves and LVM answers; device classes are
//! [`crate::readiness`]'s business).

use std::sync::Arc;

use csi::plugin_capability::{Service, Type, VolumeExpansion, service, volume_expansion};
use strata_proto::csi::v1 as csi;
use tonic::{Request, Response, Status};

use crate::driver::Driver;
use crate::rpc::handle;

/// The CSI driver name.
pub const DRIVER_NAME: &str = "strata.io";

/// The Identity service.
#[derive(Clone)]
pub struct IdentityService(pub Arc<Driver>);

fn service_cap(t: service::Type) -> csi::PluginCapability {
    csi::PluginCapability {
        r#type: Some(Type::Service(Service { r#type: t as i32 })),
    }
}

#[tonic::async_trait]
impl csi::identity_server::Identity for IdentityService {
    async fn get_plugin_info(
        &self,
        _req: Request<csi::GetPluginInfoRequest>,
    ) -> Result<Response<csi::GetPluginInfoResponse>, Status> {
        handle(&self.0, "GetPluginInfo", "", async {
            Ok(csi::GetPluginInfoResponse {
                name: DRIVER_NAME.to_owned(),
                vendor_version: env!("CARGO_PKG_VERSION").to_owned(),
                manifest: [("lvm-backend".to_owned(), self.0.lvm.backend().to_owned())].into(),
            })
        })
        .await
    }

    async fn get_plugin_capabilities(
        &self,
        _req: Request<csi::GetPluginCapabilitiesRequest>,
    ) -> Result<Response<csi::GetPluginCapabilitiesResponse>, Status> {
        handle(&self.0, "GetPluginCapabilities", "", async {
            Ok(csi::GetPluginCapabilitiesResponse {
                capabilities: vec![
                    service_cap(service::Type::ControllerService),
                    service_cap(service::Type::VolumeAccessibilityConstraints),
                    csi::PluginCapability {
                        r#type: Some(Type::VolumeExpansion(VolumeExpansion {
                            r#type: volume_expansion::Type::Online as i32,
                        })),
                    },
                ],
            })
        })
        .await
    }

    async fn probe(
        &self,
        _req: Request<csi::ProbeRequest>,
    ) -> Result<Response<csi::ProbeResponse>, Status> {
        let d = self.0.clone();
        handle(&self.0, "Probe", "", async move {
            // The plugin's health: it serves, and its LVM backend answers.
            // A device class that cannot take volumes is reported on its
            // own (crate::readiness): restarting the plugin would not bring
            // its volume group.
            d.blocking(|d| d.check_device_classes()).await?;
            Ok(csi::ProbeResponse { ready: Some(true) })
        })
        .await
    }
}
