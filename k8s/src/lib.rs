//! strata's Kubernetes side.
//!
//! - [`TieringPolicy`] (`strata.io/v1alpha1`, namespaced): a tiering policy
//!   as a custom resource, its spec the policy's own serde types, its
//!   `status` what the catalog knows of it. [`crd_yaml`] writes the CRD
//!   that `deploy/` carries (`strata crd`).
//! - [`reconcile`]: pure functions from what the API server holds
//!   (TieringPolicies, PersistentVolumeClaims, PersistentVolumes of driver
//!   `strata.io`) and what the catalog holds to the catalog commands that
//!   bring the catalog in step, and each TieringPolicy's status.
//! - [`Controller`]: the I/O shell around them, run by `strata catalog` on
//!   the Raft leader only. While the API server does not answer nothing
//!   stops: the catalog keeps the last policies and claims, the agents keep
//!   running them, and status catches up when it answers.

#![deny(missing_docs, unreachable_pub)]

mod controller;
mod crd;
mod facts;
pub mod reconcile;
mod schema;
mod status;

pub use controller::{Controller, ControllerError, ControllerOptions};
pub use crd::{LastRun, TieringPolicy, TieringPolicySpec, TieringPolicyStatus, condition_types};
pub use facts::{PolicyFacts, policy_facts};
pub use schema::{crd, crd_yaml};
pub use status::status;

#[cfg(test)]
mod tests;
