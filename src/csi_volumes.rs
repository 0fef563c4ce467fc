//! The CSI volumes of this node as tiering volumes: a staged filesystem
//! volume is registered in the catalog under its PV name, with its PVC's
//! namespace and name as labels (from its LV tags); before it is unmounted
//! the agent lets go of it and it is unregistered. Its file records stay,
//! so what went to the lake is still known when it is staged again.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

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
pub const LABEL_PV: &str = strata_tiering::catalog::PV_LABEL;
/// Label: the volume's device class.
pub const LABEL_DEVICE_CLASS: &str = "strata.io/device-class";

/// How long an unstage waits for the agent to close the volume's files.
const UNSTAGE_WAIT: Duration = Duration::from_secs(20);

/// How long a stage or unstage waits on the catalog: a mount or an unmount
/// never waits on a catalog group that does not answer (a node agent's
/// learner cut off from it); the reconcile loop brings the catalog in step
/// later.
const HOOK_CATALOG_WAIT: Duration = Duration::from_secs(5);

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
            by: None,
            at: Timestamp::now(),
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
        self.withdraw(id).await;
        self.forget(id).await
    }

    /// Lets the agent's work on the volume end (no catalog involved).
    async fn withdraw(&self, id: &str) {
        if !self.agent.mover().withdraw_volume(id, UNSTAGE_WAIT).await {
            warn!(
                volume = id,
                "the tiering agent still holds files of the volume after {UNSTAGE_WAIT:?}; the unmount may fail and be retried"
            );
        }
    }

    /// Removes the volume from the catalog (its file records stay).
    async fn forget(&self, id: &str) -> anyhow::Result<()> {
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

/// Waits at most [`HOOK_CATALOG_WAIT`] for `work` on the catalog.
async fn bounded(work: impl Future<Output = anyhow::Result<()>>) -> anyhow::Result<()> {
    tokio::time::timeout(HOOK_CATALOG_WAIT, work)
        .await
        .unwrap_or_else(|_| {
            Err(anyhow::anyhow!(
                "the catalog did not answer within {HOOK_CATALOG_WAIT:?}"
            ))
        })
}

impl VolumeUsers for CsiVolumes {
    fn staged(&self, volume: &StagedVolume) {
        let r = self.runtime.block_on(async {
            let _one = self.serial.lock().await;
            bounded(self.register(volume)).await
        });
        if let Err(e) = r {
            warn!(volume = %volume.id, "staged, but not registered for tiering (the next reconcile retries): {e:#}");
        }
    }

    fn unstaging(&self, id: &str, _path: &Path) {
        let r = self.runtime.block_on(async {
            let _one = self.serial.lock().await;
            // The agent lets go of the volume whatever the catalog does;
            // only the catalog's record of it may wait for a reconcile.
            self.withdraw(id).await;
            bounded(self.forget(id)).await
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
    use strata_tiering::agent::AgentOptions;
    use strata_tiering::mover::{Mover, MoverOptions};
    use strata_tiering::raft::{CatalogOptions, ReplicaIdentity, ReplicaStart};

    /// A stage and an unstage do not wait on a catalog that does not
    /// answer: a learner never added to its group (every read and write
    /// would wait for a leader for 30 s).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn hooks_do_not_wait_on_a_catalog_that_does_not_answer() {
        let tmp = tempfile::tempdir().unwrap();
        let node_cert = strata_trust::Identity::new(strata_trust::Role::Node, "edge-1").unwrap();
        let tls = strata_trust::ensure_local_site(&tmp.path().join("tls"), "test", &[node_cert])
            .unwrap()
            .remove(0);
        let options = CatalogOptions {
            address: "127.0.0.1:9".into(),
            identity: ReplicaIdentity {
                cluster: "cut-off".into(),
                node_id: 1 << 40,
            },
            tls: Some(strata_trust::SiteTls::load(&tls).unwrap()),
            ..CatalogOptions::default()
        };
        let node = Arc::new(
            CatalogNode::open_replica(tmp.path(), options, ReplicaStart::Join)
                .await
                .unwrap(),
        );
        let agent = Arc::new(Agent::new(
            Mover::new(node.clone(), MoverOptions::default()),
            AgentOptions::default(),
        ));
        let volumes = CsiVolumes::new(agent, "edge-1".into());
        let dir = tmp.path().join("staged");
        std::fs::create_dir_all(&dir).unwrap();
        let staged = StagedVolume {
            id: "pvc-1".into(),
            path: dir,
            identity: VolumeIdentity {
                class: "fast".into(),
                pv: None,
                pvc_namespace: None,
                pvc_name: None,
            },
            read_only: false,
        };
        let v = volumes.clone();
        let took = tokio::task::spawn_blocking(move || {
            let started = std::time::Instant::now();
            v.staged(&staged);
            v.unstaging("pvc-1", Path::new("/unused"));
            started.elapsed()
        })
        .await
        .unwrap();
        // Each catalog call alone would have waited `leader_wait` (30 s).
        assert!(
            took < CatalogOptions::default().leader_wait,
            "the hooks waited {took:?} on the catalog"
        );
        node.shutdown().await.unwrap();
    }

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
