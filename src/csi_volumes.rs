//! The CSI volumes of this node as tiering volumes: a staged filesystem
//! volume is registered in the catalog under its PV name, with its PVC's
//! namespace and name as labels (from its LV tags); before it is unmounted
//! the agent lets go of it and it is unregistered. Its file records stay,
//! so what went to the lake is still known when it is staged again.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use strata_csi::Driver;
use strata_csi::staged::{StagedVolume, VolumeUsers};
use strata_tiering::agent::Agent;
use strata_tiering::catalog::{CatalogClient, Command, LogEntry, Timestamp, Volume};
use strata_tiering::mover::{LABEL_PVC_NAME, LABEL_PVC_NAMESPACE};
use strata_tiering::raft::CatalogNode;
use tokio::runtime::Handle;
use tracing::{info, warn};

/// Label: how the volume came to the catalog (`csi` for these).
pub const LABEL_SOURCE: &str = "strata.io/source";
/// Label: the node that has the volume staged.
pub const LABEL_NODE: &str = strata_tiering::catalog::NODE_LABEL;
/// Label: the PersistentVolume's name.
pub const LABEL_PV: &str = "strata.io/pv";
/// Label: the volume's device class.
pub const LABEL_DEVICE_CLASS: &str = "strata.io/device-class";

/// How long an unstage waits for the agent to close the volume's files.
const UNSTAGE_WAIT: Duration = Duration::from_secs(20);

/// Keeps the catalog's volumes in step with what this node has staged.
pub struct CsiVolumes {
    agent: Arc<Agent<Arc<CatalogNode>>>,
    node_id: String,
    runtime: Handle,
    /// One change at a time: a reconcile never re-registers a volume that an
    /// unstage is withdrawing.
    serial: tokio::sync::Mutex<()>,
}

/// The catalog's view of a staged volume.
fn catalog_volume(v: &StagedVolume, node_id: &str) -> Volume {
    let mut labels = std::collections::BTreeMap::from([
        (LABEL_SOURCE.to_owned(), "csi".to_owned()),
        (LABEL_NODE.to_owned(), node_id.to_owned()),
        (LABEL_DEVICE_CLASS.to_owned(), v.identity.class.clone()),
    ]);
    for (k, val) in [
        (LABEL_PV, &v.identity.pv),
        (LABEL_PVC_NAMESPACE, &v.identity.pvc_namespace),
        (LABEL_PVC_NAME, &v.identity.pvc_name),
    ] {
        if let Some(val) = val {
            labels.insert(k.to_owned(), val.clone());
        }
    }
    Volume {
        id: v.id.clone(),
        path: v.path.display().to_string(),
        labels,
    }
}

fn is_ours(v: &Volume, node_id: &str) -> bool {
    v.labels.get(LABEL_SOURCE).is_some_and(|s| s == "csi")
        && v.labels.get(LABEL_NODE).is_some_and(|n| n == node_id)
}

impl CsiVolumes {
    /// Must be called inside the runtime the hooks will block on.
    pub fn new(agent: Arc<Agent<Arc<CatalogNode>>>, node_id: String) -> Arc<Self> {
        Arc::new(Self {
            agent,
            node_id,
            runtime: Handle::current(),
            serial: tokio::sync::Mutex::new(()),
        })
    }

    fn catalog(&self) -> &Arc<CatalogNode> {
        self.agent.mover().catalog()
    }

    async fn propose(&self, command: Command) -> anyhow::Result<()> {
        let entry = LogEntry {
            at: Timestamp::from_system_time(SystemTime::now()),
            command,
        };
        self.catalog()
            .propose(entry)
            .await?
            .map_err(|r| anyhow::anyhow!("the catalog refused: {r}"))?;
        Ok(())
    }

    async fn register(&self, v: &StagedVolume) -> anyhow::Result<()> {
        if v.read_only {
            info!(volume = %v.id, path = %v.path.display(), "staged read-only: not a tiering volume");
            return Ok(());
        }
        self.agent.mover().readmit_volume(&v.id);
        let volume = catalog_volume(v, &self.node_id);
        let id = volume.id.clone();
        let current = self.catalog().read(move |s| s.volume(&id).cloned()).await?;
        if current.as_ref() != Some(&volume) {
            self.propose(Command::RegisterVolume(volume)).await?;
            info!(volume = %v.id, path = %v.path.display(), "tiering volume registered");
        }
        Ok(())
    }

    async fn unregister(&self, id: &str) -> anyhow::Result<()> {
        if !self.agent.mover().withdraw_volume(id, UNSTAGE_WAIT).await {
            warn!(
                volume = id,
                "the tiering agent still holds files of the volume after {UNSTAGE_WAIT:?}; the unmount may fail and be retried"
            );
        }
        self.propose(Command::RemoveVolume { id: id.to_owned() })
            .await?;
        info!(
            volume = id,
            "tiering volume unregistered (its records stay)"
        );
        Ok(())
    }

    /// Registers what is staged now and unregisters this node's CSI volumes
    /// that are not staged any more (a crash or a reboot in between).
    pub async fn reconcile(&self, driver: &Arc<Driver>) -> anyhow::Result<()> {
        let d = driver.clone();
        let staged = tokio::task::spawn_blocking(move || d.staged_volumes()).await??;
        let _one = self.serial.lock().await;
        for v in &staged {
            self.register(v).await?;
        }
        let node = self.node_id.clone();
        let registered: Vec<String> = self
            .catalog()
            .read(move |s| {
                s.volumes()
                    .filter(|v| is_ours(v, &node))
                    .map(|v| v.id.clone())
                    .collect()
            })
            .await?;
        for id in registered {
            if !staged.iter().any(|v| v.id == id && !v.read_only) {
                self.unregister(&id).await?;
            }
        }
        Ok(())
    }

    /// Reconciles now and then every `every` until `shutdown` turns true.
    pub async fn keep_in_step(
        self: Arc<Self>,
        driver: Arc<Driver>,
        every: Duration,
        mut shutdown: tokio::sync::watch::Receiver<bool>,
    ) {
        loop {
            if let Err(e) = self.reconcile(&driver).await {
                warn!("tiering volumes: {e:#}");
            }
            tokio::select! {
                _ = shutdown.wait_for(|s| *s) => return,
                _ = tokio::time::sleep(every) => {}
            }
        }
    }
}

impl VolumeUsers for CsiVolumes {
    fn staged(&self, volume: &StagedVolume) {
        let r = self.runtime.block_on(async {
            let _one = self.serial.lock().await;
            self.register(volume).await
        });
        if let Err(e) = r {
            warn!(volume = %volume.id, "staged, but not registered for tiering (the next reconcile retries): {e:#}");
        }
    }

    fn unstaging(&self, id: &str, _path: &Path) {
        let r = self.runtime.block_on(async {
            let _one = self.serial.lock().await;
            self.unregister(id).await
        });
        if let Err(e) = r {
            warn!(
                volume = id,
                "unstaging, but not unregistered from tiering (the next reconcile retries): {e:#}"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_csi::names::VolumeIdentity;

    #[test]
    fn a_staged_volume_carries_its_pvc_into_the_catalog() {
        let v = StagedVolume {
            id: "pvc-1234".into(),
            path: "/var/lib/kubelet/plugins/kubernetes.io/csi/strata.io/ab/globalmount".into(),
            identity: VolumeIdentity {
                class: "fast".into(),
                pv: Some("pvc-1234".into()),
                pvc_namespace: Some("line-3".into()),
                pvc_name: Some("cam-1".into()),
            },
            read_only: false,
        };
        let c = catalog_volume(&v, "edge-1");
        assert_eq!(c.id, "pvc-1234");
        assert_eq!(c.path, v.path.display().to_string());
        assert_eq!(c.labels[LABEL_PVC_NAMESPACE], "line-3");
        assert_eq!(c.labels[LABEL_PVC_NAME], "cam-1");
        assert_eq!(c.labels[LABEL_DEVICE_CLASS], "fast");
        assert!(is_ours(&c, "edge-1"));
        assert!(!is_ours(&c, "edge-2"));
        let mut plain = c.clone();
        plain.labels.remove(LABEL_SOURCE);
        assert!(
            !is_ours(&plain, "edge-1"),
            "a `ctl volume add` directory is never touched"
        );
    }
}
