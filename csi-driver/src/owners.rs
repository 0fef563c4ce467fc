//! Who owns a volume: the PersistentVolumes of driver `strata.io`.
//!
//! An LV is accounted for when a PersistentVolume names it as its CSI volume
//! handle. The orphan scan ([`crate::orphans`]) asks a [`VolumeOwners`] for
//! that set and judges no LV at all when the answer is unknown: a node cut
//! off from its API server must never take its volumes for orphans.
//!
//! Three homes:
//! - [`KubeOwners`]: the Kubernetes API (lists PersistentVolumes with the
//!   `kube` crate, in pages). No API server can run on the development and CI
//!   machines, so this one is only compile-checked there; it is the one the
//!   DaemonSet uses (its ServiceAccount may list PersistentVolumes).
//! - [`StaticOwners`]: an in-memory stand-in for the API server, for tests.
//! - [`FileOwners`]: a stand-in for the API server backed by a file (one
//!   volume handle a line), so black-box tests can tell a real `strata node`
//!   process which PersistentVolumes exist. Never used in a cluster.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use futures::future::BoxFuture;

use crate::identity::DRIVER_NAME;

/// Why the owners could not be listed this time.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OwnersError {
    /// The Kubernetes API failed or did not answer in time.
    #[error("listing PersistentVolumes: {0}")]
    Api(String),
    /// The stand-in file could not be read.
    #[error("reading {path}: {source}")]
    File {
        /// The file.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
}

/// The volume handles that some PersistentVolume of driver `strata.io` names.
pub trait VolumeOwners: Send + Sync {
    /// `Ok(Some(handles))`: every PersistentVolume of driver `strata.io`
    /// (all nodes; an LV of this node is owned when its name is among them).
    /// `Ok(None)`: there is no API to ask (not configured). Both `Ok(None)`
    /// and `Err` mean "unknown": no LV is judged an orphan, none is removed.
    fn persistent_volumes(&self) -> BoxFuture<'_, Result<Option<HashSet<String>>, OwnersError>>;

    /// Where the answer comes from, for logs and `strata node gc`.
    fn describe(&self) -> String;
}

/// No API: the owners are never known (e.g. `strata up`, or a node started
/// outside a cluster). Nothing is ever judged an orphan LV.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoOwners;

impl VolumeOwners for NoOwners {
    fn persistent_volumes(&self) -> BoxFuture<'_, Result<Option<HashSet<String>>, OwnersError>> {
        Box::pin(async { Ok(None) })
    }

    fn describe(&self) -> String {
        "no Kubernetes API configured".to_owned()
    }
}

/// A stand-in for the Kubernetes API server, in memory, for tests: the set
/// of volume handles it answers with, or "unreachable".
#[derive(Debug, Default)]
pub struct StaticOwners {
    handles: Mutex<Option<HashSet<String>>>,
}

impl StaticOwners {
    /// A stand-in that answers with these volume handles.
    pub fn with(handles: impl IntoIterator<Item = impl Into<String>>) -> Self {
        let s = StaticOwners::default();
        s.set(Some(handles.into_iter().map(Into::into).collect()));
        s
    }

    /// A stand-in whose API server does not answer.
    pub fn unreachable() -> Self {
        StaticOwners::default()
    }

    /// Change the answer (`None`: unreachable).
    pub fn set(&self, handles: Option<HashSet<String>>) {
        *self.handles.lock().expect("owners poisoned") = handles;
    }
}

impl VolumeOwners for StaticOwners {
    fn persistent_volumes(&self) -> BoxFuture<'_, Result<Option<HashSet<String>>, OwnersError>> {
        let answer = self.handles.lock().expect("owners poisoned").clone();
        Box::pin(async move {
            answer
                .map(Some)
                .ok_or_else(|| OwnersError::Api("the stand-in API server is unreachable".into()))
        })
    }

    fn describe(&self) -> String {
        "in-memory stand-in for the API server (tests)".to_owned()
    }
}

/// A stand-in for the Kubernetes API server backed by a file, for black-box
/// tests of the `strata` binary: one volume handle a line (blank lines and
/// `#` comments ignored), read on every call. A missing file reads as an
/// unreachable API server.
#[derive(Debug, Clone)]
pub struct FileOwners {
    path: PathBuf,
}

impl FileOwners {
    /// A stand-in reading `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        FileOwners { path: path.into() }
    }
}

impl VolumeOwners for FileOwners {
    fn persistent_volumes(&self) -> BoxFuture<'_, Result<Option<HashSet<String>>, OwnersError>> {
        Box::pin(async move {
            let text = tokio::fs::read_to_string(&self.path)
                .await
                .map_err(|source| OwnersError::File {
                    path: self.path.clone(),
                    source,
                })?;
            Ok(Some(
                text.lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty() && !l.starts_with('#'))
                    .map(str::to_owned)
                    .collect(),
            ))
        })
    }

    fn describe(&self) -> String {
        format!(
            "stand-in for the API server: volume handles in {} (tests only)",
            self.path.display()
        )
    }
}

/// The Kubernetes API: every PersistentVolume whose `spec.csi.driver` is
/// `strata.io`, listed in pages of 500.
///
/// Only compile-checked on the project's machines (no API server can run
/// there); the orphan logic it feeds is tested with [`StaticOwners`] and
/// [`FileOwners`].
#[derive(Clone)]
pub struct KubeOwners {
    client: kube::Client,
    timeout: Duration,
}

impl std::fmt::Debug for KubeOwners {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeOwners")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl KubeOwners {
    /// A client from the in-cluster ServiceAccount (or `KUBECONFIG` /
    /// `~/.kube/config`); `None` when neither exists.
    pub async fn try_default() -> Option<Self> {
        let client = kube::Client::try_default().await.ok()?;
        Some(KubeOwners {
            client,
            timeout: Duration::from_secs(30),
        })
    }

    async fn list(&self) -> Result<HashSet<String>, kube::Error> {
        use k8s_openapi::api::core::v1::PersistentVolume;
        use kube::api::{Api, ListParams};
        let api: Api<PersistentVolume> = Api::all(self.client.clone());
        let mut handles = HashSet::new();
        let mut params = ListParams::default().limit(500);
        loop {
            let page = api.list(&params).await?;
            handles.extend(page.items.iter().filter_map(strata_handle));
            match page.metadata.continue_.filter(|c| !c.is_empty()) {
                Some(token) => params = params.continue_token(&token),
                None => return Ok(handles),
            }
        }
    }
}

/// The volume handle of a PersistentVolume of driver `strata.io`.
fn strata_handle(pv: &k8s_openapi::api::core::v1::PersistentVolume) -> Option<String> {
    let csi = pv.spec.as_ref()?.csi.as_ref()?;
    (csi.driver == DRIVER_NAME).then(|| csi.volume_handle.clone())
}

impl VolumeOwners for KubeOwners {
    fn persistent_volumes(&self) -> BoxFuture<'_, Result<Option<HashSet<String>>, OwnersError>> {
        Box::pin(async move {
            match tokio::time::timeout(self.timeout, self.list()).await {
                Ok(Ok(handles)) => Ok(Some(handles)),
                Ok(Err(e)) => Err(OwnersError::Api(e.to_string())),
                Err(_) => Err(OwnersError::Api(format!(
                    "no answer within {}s",
                    self.timeout.as_secs()
                ))),
            }
        })
    }

    fn describe(&self) -> String {
        "the Kubernetes API (PersistentVolumes of driver strata.io)".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{
        CSIPersistentVolumeSource, PersistentVolume, PersistentVolumeSpec,
    };

    fn pv(driver: &str, handle: &str) -> PersistentVolume {
        PersistentVolume {
            spec: Some(PersistentVolumeSpec {
                csi: Some(CSIPersistentVolumeSource {
                    driver: driver.into(),
                    volume_handle: handle.into(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn only_strata_volumes_own_lvs() {
        assert_eq!(
            strata_handle(&pv("strata.io", "pvc-1")).as_deref(),
            Some("pvc-1")
        );
        assert_eq!(strata_handle(&pv("topolvm.io", "pvc-2")), None);
        assert_eq!(strata_handle(&PersistentVolume::default()), None);
    }

    #[tokio::test]
    async fn stand_ins_answer_or_say_unknown() {
        let s = StaticOwners::with(["pvc-1"]);
        assert_eq!(
            s.persistent_volumes().await.unwrap(),
            Some(HashSet::from(["pvc-1".to_owned()]))
        );
        s.set(None);
        assert!(s.persistent_volumes().await.is_err());
        assert_eq!(NoOwners.persistent_volumes().await.unwrap(), None);

        let dir = tempfile::tempdir().unwrap();
        let f = FileOwners::new(dir.path().join("pvs"));
        assert!(f.persistent_volumes().await.is_err(), "missing file");
        std::fs::write(dir.path().join("pvs"), "# PVs\npvc-a\n\n  pvc-b \n").unwrap();
        assert_eq!(
            f.persistent_volumes().await.unwrap(),
            Some(HashSet::from(["pvc-a".to_owned(), "pvc-b".to_owned()]))
        );
    }
}
