//! The driver's error, mapped once to a gRPC status at the service edge.

use tonic::{Code, Status};

use crate::lvm::LvmError;

/// Why a CSI request failed. Each variant is one gRPC code; messages name the
/// field or the object and the reason.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum CsiError {
    /// A request field is missing or malformed.
    #[error("{field}: {reason}")]
    InvalidArgument {
        /// Request field path, e.g. `volume_capabilities[0].access_mode`.
        field: String,
        /// Why it is rejected.
        reason: String,
    },
    /// The capacity cannot be honoured.
    #[error("{field}: {reason}")]
    OutOfRange {
        /// Request field path.
        field: String,
        /// Why.
        reason: String,
    },
    /// The volume (or path) does not exist.
    #[error("{0}")]
    NotFound(String),
    /// A volume with that name exists but is incompatible.
    #[error("{0}")]
    AlreadyExists(String),
    /// Not enough space (or the topology cannot be served).
    #[error("{0}")]
    ResourceExhausted(String),
    /// The volume is in a state that forbids the call (still staged, not staged, …).
    #[error("{0}")]
    FailedPrecondition(String),
    /// A pagination token this driver did not issue.
    #[error("{0}")]
    Aborted(String),
    /// The call is not offered by this driver.
    #[error("{0}")]
    Unimplemented(String),
    /// LVM, mkfs or mount failed for a reason the caller cannot fix.
    #[error("{0}")]
    Internal(String),
    /// The node cannot serve right now (e.g. a VG is missing).
    #[error("{0}")]
    Unavailable(String),
}

impl CsiError {
    /// Shorthand for [`CsiError::InvalidArgument`].
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        CsiError::InvalidArgument {
            field: field.into(),
            reason: reason.into(),
        }
    }

    /// The gRPC code of this error.
    pub fn code(&self) -> Code {
        match self {
            CsiError::InvalidArgument { .. } => Code::InvalidArgument,
            CsiError::OutOfRange { .. } => Code::OutOfRange,
            CsiError::NotFound(_) => Code::NotFound,
            CsiError::AlreadyExists(_) => Code::AlreadyExists,
            CsiError::ResourceExhausted(_) => Code::ResourceExhausted,
            CsiError::FailedPrecondition(_) => Code::FailedPrecondition,
            CsiError::Aborted(_) => Code::Aborted,
            CsiError::Unimplemented(_) => Code::Unimplemented,
            CsiError::Internal(_) => Code::Internal,
            CsiError::Unavailable(_) => Code::Unavailable,
        }
    }
}

impl From<CsiError> for Status {
    fn from(e: CsiError) -> Status {
        Status::new(e.code(), e.to_string())
    }
}

impl From<LvmError> for CsiError {
    fn from(e: LvmError) -> CsiError {
        match e {
            LvmError::InsufficientSpace { .. } => CsiError::ResourceExhausted(e.to_string()),
            LvmError::LvNotFound { .. } => CsiError::NotFound(e.to_string()),
            LvmError::VgNotFound(_) => CsiError::Unavailable(e.to_string()),
            _ => CsiError::Internal(e.to_string()),
        }
    }
}
