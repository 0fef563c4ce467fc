//! [`SiteTls`]: a TLS directory loaded, checked, and re-read when its files
//! change (a rotated certificate is used from the next connection on,
//! without a restart).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};

use rustls::RootCertStore;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::UnixTime;
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::ClientCertVerifier;
use rustls::sign::CertifiedKey;

use crate::error::TrustError;
use crate::files::{self, CA_CERT, TLS_CERT, TLS_KEY};
use crate::refusal::Refusal;
use crate::role::Identity;

/// How often the files are looked at for a change.
const RECHECK: Duration = Duration::from_secs(1);

/// One loaded set of files.
pub(crate) struct Material {
    pub(crate) roots: Arc<RootCertStore>,
    /// Checks a client's chain (after the handshake: see `verify`).
    pub(crate) client_chain: Arc<dyn ClientCertVerifier>,
    pub(crate) key: Arc<CertifiedKey>,
    /// The CA's subject, for messages.
    pub(crate) ca_subject: String,
    identity: Identity,
    fingerprint: Fingerprint,
}

/// What tells a changed file: size, modification time and inode of each.
type Fingerprint = [(u64, i64, i64, u64); 3];

/// A site TLS directory (`ca.crt`, `tls.crt`, `tls.key`), shared by every
/// listener and client of a process. Cheap to clone.
#[derive(Clone)]
pub struct SiteTls {
    inner: Arc<Inner>,
}

struct Inner {
    dir: PathBuf,
    provider: Arc<CryptoProvider>,
    current: RwLock<Arc<Material>>,
    /// When the files were last looked at, and the fingerprint of a set that
    /// failed to load (not tried again until the files change again).
    checked: Mutex<(Instant, Option<Fingerprint>)>,
}

impl std::fmt::Debug for SiteTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SiteTls")
            .field("dir", &self.inner.dir)
            .field("identity", &self.identity())
            .finish()
    }
}

impl SiteTls {
    /// Loads `dir`: the site CA, this part's certificate (which must be
    /// issued by that CA, valid now, and carry a strata role) and its key
    /// (which must match the certificate).
    pub fn load(dir: &Path) -> Result<Self, TrustError> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let material = load(dir, &provider)?;
        Ok(Self {
            inner: Arc::new(Inner {
                dir: dir.to_owned(),
                provider,
                current: RwLock::new(Arc::new(material)),
                checked: Mutex::new((Instant::now(), None)),
            }),
        })
    }

    /// The directory it was loaded from.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// Who this process is, by its own certificate.
    pub fn identity(&self) -> Identity {
        self.material().identity.clone()
    }

    pub(crate) fn provider(&self) -> &Arc<CryptoProvider> {
        &self.inner.provider
    }

    /// The current material, re-read first if the files changed (looked at
    /// no more than once a second). A set of files that does not load (a
    /// rotation half done) is logged and the previous one kept.
    pub(crate) fn material(&self) -> Arc<Material> {
        let current = lock_read(&self.inner.current).clone();
        let mut checked = self.inner.checked.lock().unwrap_or_else(|e| e.into_inner());
        if checked.0.elapsed() < RECHECK {
            return current;
        }
        checked.0 = Instant::now();
        let dir = &self.inner.dir;
        let Ok(now) = fingerprint(dir) else {
            return current;
        };
        if now == current.fingerprint || checked.1 == Some(now) {
            return current;
        }
        match load(dir, &self.inner.provider) {
            Ok(fresh) => {
                tracing::info!(
                    dir = %dir.display(),
                    identity = %fresh.identity,
                    "TLS certificates changed on disk: using the new ones for new connections"
                );
                let fresh = Arc::new(fresh);
                *self
                    .inner
                    .current
                    .write()
                    .unwrap_or_else(|e| e.into_inner()) = fresh.clone();
                checked.1 = None;
                fresh
            }
            Err(e) => {
                tracing::warn!(
                    dir = %dir.display(),
                    "TLS certificates changed on disk but do not load ({e}); keeping the previous ones"
                );
                checked.1 = Some(now);
                current
            }
        }
    }
}

fn lock_read<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|e| e.into_inner())
}

fn fingerprint(dir: &Path) -> std::io::Result<Fingerprint> {
    use std::os::unix::fs::MetadataExt;
    let one = |name: &str| -> std::io::Result<(u64, i64, i64, u64)> {
        let m = std::fs::metadata(dir.join(name))?;
        Ok((m.len(), m.mtime(), m.mtime_nsec(), m.ino()))
    };
    Ok([one(CA_CERT)?, one(TLS_CERT)?, one(TLS_KEY)?])
}

fn load(dir: &Path, provider: &Arc<CryptoProvider>) -> Result<Material, TrustError> {
    let fingerprint = fingerprint(dir).map_err(|source| TrustError::Io {
        path: dir.to_owned(),
        source,
    })?;
    let ca_path = files::at(dir, CA_CERT);
    let cert_path = files::at(dir, TLS_CERT);
    let key_path = files::at(dir, TLS_KEY);
    let mut roots = RootCertStore::empty();
    let ca_certs = files::certs(&ca_path)?;
    for c in &ca_certs {
        roots
            .add(c.clone())
            .map_err(|e| files::invalid(&ca_path, format!("not a usable CA certificate: {e}")))?;
    }
    let ca_subject = crate::refusal::subject(&ca_certs[0]);
    let roots = Arc::new(roots);
    let chain = files::certs(&cert_path)?;
    let key = files::key(&key_path)?;
    let key = CertifiedKey::from_der(chain.clone(), key, provider)
        .map_err(|e| files::invalid(&key_path, format!("does not fit {TLS_CERT}: {e}")))?;
    let client_chain = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone())
        .build()
        .map_err(|e| files::invalid(&ca_path, format!("{e}")))?;
    // Our own certificate must pass the check every peer applies to it.
    let now = UnixTime::now();
    if let Err(e) = client_chain.verify_client_cert(&chain[0], &chain[1..], now) {
        let why = Refusal::from_chain_error(&e, &chain[0], &ca_subject, SystemTime::now());
        return Err(files::invalid(&cert_path, why.to_string()));
    }
    let identity = Identity::from_cert(&chain[0]).map_err(|e| files::invalid(&cert_path, e))?;
    Ok(Material {
        roots,
        client_chain,
        key: Arc::new(key),
        ca_subject,
        identity,
        fingerprint,
    })
}
