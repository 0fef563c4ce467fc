//! The errors of loading and issuing certificates.

use std::path::PathBuf;

/// Why certificates could not be loaded, made or used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TrustError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What the system said.
        source: std::io::Error,
    },
    /// A file holds no usable PEM certificate or key, or one that does not
    /// fit the rest.
    #[error("{path}: {reason}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A file that would be written exists already (nothing is overwritten).
    #[error("{path}: exists already; move it away first (strata never overwrites a key)")]
    Exists {
        /// The file.
        path: PathBuf,
    },
    /// A request to issue a certificate is not one strata can issue.
    #[error("{field}: {reason}")]
    Request {
        /// The field of the request.
        field: &'static str,
        /// Why it is refused.
        reason: String,
    },
    /// The certificate library failed.
    #[error("making a certificate: {0}")]
    Generate(#[from] rcgen::Error),
    /// The TLS library refused a configuration.
    #[error("TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
}
