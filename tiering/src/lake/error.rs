//! What can go wrong talking to the lake, and whether waiting helps.

use std::path::PathBuf;

use super::config::LakeConfigError;

/// An error from a lake operation. Every variant names the key (or the local path)
/// it is about; [`LakeError::is_transient`] tells a caller whether backing off and
/// retrying may help.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LakeError {
    /// The configuration was rejected.
    #[error(transparent)]
    Config(#[from] LakeConfigError),
    /// The key is not a valid object path.
    #[error("lake key {key:?}: {reason}")]
    InvalidKey {
        /// The key as given.
        key: String,
        /// Why it was rejected.
        reason: String,
    },
    /// A different object already sits under this (content-addressed) key.
    #[error(
        "lake key {key}: a different object is already stored (expected {expected_size} bytes sha256 {expected_sha256}, found {found_size} bytes sha256 {found_sha256})"
    )]
    Conflict {
        /// The key.
        key: String,
        /// Size the caller uploads.
        expected_size: u64,
        /// SHA-256 (hex) the caller uploads.
        expected_sha256: String,
        /// Size of the stored object.
        found_size: u64,
        /// SHA-256 (hex) of the stored object, or `unknown`.
        found_sha256: String,
    },
    /// The stored object does not match what was expected.
    #[error("lake key {key}: {what} mismatch: expected {expected}, found {found}")]
    Mismatch {
        /// The key.
        key: String,
        /// What differs: `size`, `stored sha256` or `content sha256`.
        what: &'static str,
        /// Expected value.
        expected: String,
        /// Value found in the lake.
        found: String,
    },
    /// No object under this key.
    #[error("lake key {key}: not found")]
    NotFound {
        /// The key.
        key: String,
    },
    /// The local file no longer matches the size or hash it was scheduled with.
    #[error("{}: changed since it was hashed: {reason}", path.display())]
    SourceChanged {
        /// The local file.
        path: PathBuf,
        /// What differs.
        reason: String,
    },
    /// A local file operation failed.
    #[error("{}: {op}: {source}", path.display())]
    LocalIo {
        /// The local file.
        path: PathBuf,
        /// What was being done (`open`, `read`, `write`, `fsync`, `rename`).
        op: &'static str,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The object store failed (network, server, permissions).
    #[error("lake {op} {key}: {source}")]
    Store {
        /// The operation (`put`, `head`, `get`, `multipart`, `delete`, `list`).
        op: &'static str,
        /// The key (or prefix).
        key: String,
        /// The underlying error.
        #[source]
        source: object_store::Error,
    },
}

impl LakeError {
    /// Whether the failure may go away by itself (network, timeouts, server
    /// errors): back off and retry. Conflicts, mismatches, bad keys, bad
    /// configuration and permission errors are not transient.
    pub fn is_transient(&self) -> bool {
        match self {
            LakeError::Store { source, .. } => store_error_is_transient(source),
            LakeError::LocalIo { source, .. } => matches!(
                source.kind(),
                std::io::ErrorKind::Interrupted | std::io::ErrorKind::TimedOut
            ),
            _ => false,
        }
    }

    pub(crate) fn store(op: &'static str, key: &str, source: object_store::Error) -> Self {
        match source {
            object_store::Error::NotFound { .. } => LakeError::NotFound {
                key: key.to_string(),
            },
            source => LakeError::Store {
                op,
                key: key.to_string(),
                source,
            },
        }
    }

    pub(crate) fn io(path: &std::path::Path, op: &'static str, source: std::io::Error) -> Self {
        LakeError::LocalIo {
            path: path.to_path_buf(),
            op,
            source,
        }
    }
}

fn store_error_is_transient(e: &object_store::Error) -> bool {
    use object_store::Error as E;
    match e {
        // Network failures, timeouts, 5xx after retries, and local-directory I/O
        // all surface as Generic; so do 4xx answers, which retrying will not fix.
        E::Generic { source, .. } => !chain_has_client_error(source.as_ref()),
        E::JoinError { .. } => true,
        _ => false,
    }
}

/// Whether the error chain carries an HTTP 4xx status other than 408/429.
fn chain_has_client_error(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        // RetryError is not public; its Display starts with the status line.
        let text = err.to_string();
        if let Some(code) = status_in(&text) {
            return (400..500).contains(&code) && code != 408 && code != 429;
        }
        cur = err.source();
    }
    false
}

fn status_in(text: &str) -> Option<u16> {
    // object_store renders "Server returned non-2xx status code: 403 Forbidden: ...".
    const MARK: &str = "non-2xx status code: ";
    let idx = text.find(MARK)?;
    let rest = &text[idx + MARK.len()..];
    rest.get(..3)?.parse().ok()
}
