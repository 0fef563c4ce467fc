//! strata's gRPC interfaces, generated with tonic and prost.
//!
//! [`csi::v1`] is the Container Storage Interface, written to the CSI
//! specification v1.12.0 (`proto/csi/v1/csi.proto`): every message, enum and
//! field number as the spec defines it, so the Kubernetes sidecars and the
//! kubelet interoperate with strata's driver on the wire. Each service has a
//! server trait and module (`identity_server`, `controller_server`,
//! `group_controller_server`, `snapshot_metadata_server`, `node_server`) and
//! a client (`identity_client`, ...).
//!
//! The spec's descriptor options (`csi_secret`, `alpha_*`) are not carried
//! into Rust: fields marked `csi_secret` (every `secrets` map) must be kept
//! out of logs by the code that handles them.
//!
//! [`strata::v1`] is strata's own API (`proto/strata/v1/*.proto`): the
//! `Tiering` service that `strata ctl` talks to, and `CatalogRaft`, the Raft
//! traffic between catalog replicas.

#![deny(missing_docs, unreachable_pub)]

/// The Container Storage Interface.
pub mod csi {
    /// CSI v1 (`package csi.v1`), at [`CSI_SPEC_VERSION`](crate::CSI_SPEC_VERSION).
    #[allow(missing_docs)]
    #[allow(clippy::all, clippy::pedantic, clippy::nursery)]
    #[allow(unreachable_pub, rustdoc::all)]
    pub mod v1 {
        tonic::include_proto!("csi.v1");
    }
}

/// strata's own gRPC API.
pub mod strata {
    /// strata v1 (`package strata.v1`): the [`Tiering`](v1::tiering_server::Tiering)
    /// service behind `strata ctl` (`proto/strata/v1/tiering.proto`), with
    /// its server (`tiering_server`) and client (`tiering_client`), and the
    /// catalog replicas' `CatalogRaft` (`proto/strata/v1/raft.proto`).
    #[allow(missing_docs)]
    #[allow(clippy::all, clippy::pedantic, clippy::nursery)]
    #[allow(unreachable_pub, rustdoc::all)]
    pub mod v1 {
        tonic::include_proto!("strata.v1");
    }
}

/// The CSI specification version that `proto/csi/v1/csi.proto` is written to.
///
/// Report it where a version is shown, e.g. in `GetPluginInfoResponse.manifest`.
pub const CSI_SPEC_VERSION: &str = "1.12.0";

#[cfg(test)]
mod tiering_tests;
#[cfg(test)]
mod wire_tests;
