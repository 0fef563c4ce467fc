//! The files of a TLS directory, and reading and writing PEM in them.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::error::TrustError;

/// The site CA's certificate, in every TLS directory.
pub const CA_CERT: &str = "ca.crt";
/// The site CA's private key, only in the directory `strata certs init` made.
pub const CA_KEY: &str = "ca.key";
/// This part's certificate (its chain, leaf first).
pub const TLS_CERT: &str = "tls.crt";
/// This part's private key.
pub const TLS_KEY: &str = "tls.key";

pub(crate) fn read(path: &Path) -> Result<Vec<u8>, TrustError> {
    std::fs::read(path).map_err(|source| TrustError::Io {
        path: path.to_owned(),
        source,
    })
}

pub(crate) fn certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TrustError> {
    let pem = read(path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid(path, format!("not PEM certificates: {e}")))?;
    if certs.is_empty() {
        return Err(invalid(path, "holds no CERTIFICATE block".to_owned()));
    }
    Ok(certs)
}

pub(crate) fn key(path: &Path) -> Result<PrivateKeyDer<'static>, TrustError> {
    let pem = read(path)?;
    PrivateKeyDer::from_pem_slice(&pem)
        .map_err(|e| invalid(path, format!("no PEM private key: {e}")))
}

pub(crate) fn invalid(path: &Path, reason: String) -> TrustError {
    TrustError::Invalid {
        path: path.to_owned(),
        reason,
    }
}

/// Writes `text` to a new file `path` (never over an existing one), with
/// `mode`, synced.
pub(crate) fn write_new(path: &Path, text: &str, mode: u32) -> Result<(), TrustError> {
    let io = |source| TrustError::Io {
        path: path.to_owned(),
        source,
    };
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => TrustError::Exists {
                path: path.to_owned(),
            },
            _ => io(e),
        })?;
    f.write_all(text.as_bytes()).map_err(io)?;
    f.sync_all().map_err(io)
}

/// `dir/name`.
pub(crate) fn at(dir: &Path, name: &str) -> PathBuf {
    dir.join(name)
}
