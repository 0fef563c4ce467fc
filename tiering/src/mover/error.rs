//! Why a run, a drain or a recall could not go on. Failures of single files
//! are not here: they are recorded in the catalog (with a back-off) and
//! counted in the reports.

use crate::catalog::{CatalogError, Rejected};
use crate::scan::ScanError;

/// An error that stops a run, a drain or a recall.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MoverError {
    /// No policy of this name is loaded ([`Mover::add_policy`](super::Mover::add_policy)).
    #[error("policy {0}: not loaded in this mover")]
    UnknownPolicy(String),
    /// The volume is not registered in the catalog.
    #[error("volume {0}: not registered")]
    UnknownVolume(String),
    /// The volume is on another node (a catalog shared by many nodes): only
    /// that node's agent reaches its files.
    #[error("volume {volume}: on node {node}, not this one; ask that node's agent")]
    OtherNode {
        /// The volume.
        volume: String,
        /// Its node, as its labels name it (`?` when they name none).
        node: String,
    },
    /// The volume is being unmounted ([`Mover::withdraw_volume`](super::Mover::withdraw_volume)).
    #[error("volume {0}: being unmounted; no work starts on it")]
    Withdrawn(String),
    /// The policy's selector does not select the volume.
    #[error("policy {policy}: does not select volume {volume}")]
    NotSelected {
        /// The policy.
        policy: String,
        /// The volume.
        volume: String,
    },
    /// The volume's root directory could not be opened (missing, not a
    /// directory, or a symlink, which strata never follows).
    #[error("volume {volume}: its root cannot be opened: {source}")]
    VolumeRoot {
        /// The volume.
        volume: String,
        /// Why.
        source: std::io::Error,
    },
    /// A recall glob does not compile.
    #[error("glob: {0}")]
    InvalidGlob(String),
    /// The volume could not be scanned.
    #[error(transparent)]
    Scan(#[from] ScanError),
    /// The catalog did not answer (no quorum, storage failure): nothing more
    /// is started or released until it does.
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    /// The catalog refused a command that is not about a file (a volume's registration).
    #[error("catalog refused: {0}")]
    Rejected(#[from] Rejected),
    /// A task of the mover panicked or was cancelled.
    #[error("mover task failed: {0}")]
    Task(String),
}
