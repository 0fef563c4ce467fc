//! strata's CSI driver (`strata.io`): local LVM volumes for PersistentVolumeClaims
//! on edge nodes, served over CSI v1.12 on a unix socket.
//!
//! The deciding parts are pure and tested without I/O: [`validate`] (every
//! request field), [`capacity`], [`names`] (volume ids and LV tags). The I/O
//! shells around them are thin: [`lvm`] (one trait, two backends), [`fs`],
//! [`mount`], and the three services [`identity`], [`controller`], [`node`].
#![deny(missing_docs, unreachable_pub)]

pub mod capacity;
pub mod config;
pub mod controller;
pub mod driver;
pub mod error;
pub mod exec;
pub mod expansion;
pub mod fs;
pub mod identity;
pub mod inventory;
pub mod kubelet_dir;
pub mod locks;
pub mod loopvg;
pub mod lvm;
pub mod metrics;
pub mod mount;
pub mod names;
pub mod node;
pub mod node_events;
pub mod orphans;
pub mod owners;
pub mod pool;
pub mod readiness;
mod rpc;
pub mod server;
pub mod snapshots;
pub mod staged;
pub mod validate;

pub use config::NodeConfig;
pub use driver::Driver;
pub use error::CsiError;
pub use identity::DRIVER_NAME;
