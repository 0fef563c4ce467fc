//! The one place where catalog, policy and engine errors become gRPC statuses.

use tonic::Status;

use super::engine::EngineError;
use crate::catalog::{CatalogError, Rejected};
use crate::policy::PolicyErrors;

/// `INVALID_ARGUMENT` naming the request's field.
pub(super) fn invalid(field: &str, reason: impl std::fmt::Display) -> Status {
    Status::invalid_argument(format!("{field}: {reason}"))
}

/// Every error of a policy, one a line, each with its path.
pub(super) fn policy(errors: &PolicyErrors) -> Status {
    Status::invalid_argument(errors.to_string())
}

/// No leader or quorum: retry later. Storage failures are the server's fault.
pub(super) fn catalog(e: CatalogError) -> Status {
    match e {
        CatalogError::Unavailable(_) => Status::unavailable(e.to_string()),
        CatalogError::Storage(_) => Status::internal(e.to_string()),
    }
}

/// A malformed field is the caller's mistake; any other refusal is about the
/// catalog's current state.
pub(super) fn rejected(r: Rejected) -> Status {
    match r {
        Rejected::Invalid { .. } => Status::invalid_argument(r.to_string()),
        _ => Status::failed_precondition(r.to_string()),
    }
}

pub(super) fn engine(e: EngineError) -> Status {
    match e {
        EngineError::Invalid { .. } => Status::invalid_argument(e.to_string()),
        EngineError::NotFound(_) => Status::not_found(e.to_string()),
        EngineError::Busy(_) => Status::failed_precondition(e.to_string()),
        EngineError::LakeUnavailable(_) => Status::unavailable(e.to_string()),
        EngineError::Catalog(c) => catalog(c),
        EngineError::Rejected(r) => rejected(r),
        EngineError::Internal(_) => Status::internal(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use tonic::Code;

    use super::*;
    use crate::catalog::{FileKey, FileState};

    #[test]
    fn catalog_errors_map_to_retry_or_internal() {
        let s = catalog(CatalogError::Unavailable("no leader".into()));
        assert_eq!(s.code(), Code::Unavailable);
        assert_eq!(s.message(), "catalog unavailable: no leader");
        let s = catalog(CatalogError::Storage("disk full".into()));
        assert_eq!(s.code(), Code::Internal);
    }

    #[test]
    fn rejections_map_by_whose_fault() {
        let s = rejected(Rejected::Invalid {
            field: "labels".into(),
            reason: "must not be empty".into(),
        });
        assert_eq!(s.code(), Code::InvalidArgument);
        assert_eq!(s.message(), "labels: must not be empty");
        let s = rejected(Rejected::NotArchived {
            key: FileKey::new("v", "a.jpg"),
            state: FileState::Intent,
        });
        assert_eq!(s.code(), Code::FailedPrecondition);
        assert_eq!(
            s.message(),
            "file v:a.jpg: is intent, only an archived file may be released"
        );
    }

    #[test]
    fn engine_errors_map_to_their_codes() {
        let cases = [
            (
                EngineError::Invalid {
                    field: "glob".into(),
                    reason: "bad".into(),
                },
                Code::InvalidArgument,
            ),
            (EngineError::NotFound("x".into()), Code::NotFound),
            (EngineError::Busy("x".into()), Code::FailedPrecondition),
            (EngineError::LakeUnavailable("x".into()), Code::Unavailable),
            (
                EngineError::Catalog(CatalogError::Unavailable("x".into())),
                Code::Unavailable,
            ),
            (EngineError::Internal("x".into()), Code::Internal),
        ];
        for (e, code) in cases {
            assert_eq!(engine(e.clone()).code(), code, "{e:?}");
        }
    }
}
