//! The tiering stack of one process (`strata up`, `strata node
//! --tiering-dir`): a catalog replica under a data directory (a one-replica
//! catalog of its own, or a learner of the replicated catalog), the agent's
//! loop, and the tiering API (what `strata ctl` talks to) on a unix socket
//! there; for `strata up` also a local-directory lake and a demo volume and
//! policy when the catalog has none.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use strata_tiering::agent::{Agent, AgentOptions};
use strata_tiering::bounds::VolumeBounds;
use strata_tiering::catalog::{CatalogClient, Command, LogEntry, Timestamp, Volume, VolumeScope};
use strata_tiering::mover::{Mover, MoverOptions};
use strata_tiering::raft::{
    CatalogCollector, CatalogNode, CatalogOptions, JoinAs, ReplicaIdentity, ReplicaStart,
    join_group, serve_replica,
};
use strata_tiering::service::{CatalogInfo, Listener, TieringService};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// How to start the stack.
pub struct StackOptions {
    /// The catalog, the API socket (and for the demo, the lake and volume) live here.
    pub data_dir: PathBuf,
    /// How often the agent checks schedules and watermarks and drains.
    pub tick: Duration,
    /// How the mover works (site, settle time, concurrency, confirmation
    /// window); the stack sets its volume scope.
    pub mover: MoverOptions,
    /// Options for every `s3://` lake (`--lake-option`).
    pub lake_options: Vec<(String, String)>,
    /// Seed a demo volume and policy (and a local lake) into an empty catalog.
    pub demo: bool,
    /// Where the catalog lives.
    pub catalog: CatalogPlacement,
    /// The only directories (resolved) beneath which the agent works on
    /// volumes; the catalog's own store is kept off besides.
    pub volume_roots: Vec<PathBuf>,
}

/// Where the stack's catalog lives.
pub enum CatalogPlacement {
    /// A one-replica catalog of its own under the data directory: every
    /// volume in it is this node's.
    Own,
    /// A learner replica of the replicated catalog (`strata catalog`
    /// replicas) under the data directory: reads are served from it, writes
    /// go to the group's leader, and the agent works only on the volumes of
    /// its node.
    Learner(LearnerOptions),
}

/// A node agent's learner replica.
pub struct LearnerOptions {
    /// Replicas of the group to ask to add this learner.
    pub group: Vec<String>,
    /// Where to serve the learner's Raft RPCs (the leader sends it the log).
    pub listen: SocketAddr,
    /// host:port where the group's replicas reach `listen`.
    pub advertise: String,
    /// The group's name and this learner's id in it.
    pub identity: ReplicaIdentity,
    /// This node's name: the volumes labelled with it are the agent's.
    pub node: String,
    /// The node's certificates for the group (mutual TLS both ways).
    pub tls: strata_trust::SiteTls,
}

/// The learner's listener and how it joins, until
/// [`TieringStack::serve_catalog`] takes them.
struct Learner {
    listener: tokio::net::TcpListener,
    group: Vec<String>,
    advertise: String,
}

/// What the tiering stack started.
pub struct TieringStack {
    pub catalog: Arc<CatalogNode>,
    pub endpoint: String,
    /// The agent, whose mover the CSI volume hooks withdraw volumes from.
    pub agent: Arc<Agent<Arc<CatalogNode>>>,
    /// The demo: the local lake, the demo volume directory and the policy name.
    pub demo: Option<Demo>,
    /// The tiering metrics, registered once.
    registry: prometheus_client::registry::Registry,
    /// For a learner: served and joined by [`TieringStack::serve_catalog`].
    learner: std::sync::Mutex<Option<Learner>>,
    tasks: std::sync::Mutex<Vec<JoinHandle<()>>>,
}

/// What `strata up` seeded.
pub struct Demo {
    pub lake: PathBuf,
    /// Set on the first start only (an empty catalog).
    pub seeded: Option<(PathBuf, String)>,
}

/// The demo policy: files of the demo volume not modified for a day move to
/// the lake every five minutes.
fn demo_policy(lake: &Path) -> String {
    format!(
        "name: demo\n\
         selector: {{volumes: [\"demo\"]}}\n\
         schedule: \"*/5 * * * *\"\n\
         lake: {{url: \"file://{}\"}}\n\
         rules:\n  - name: older-than-1d\n    modifiedBefore: 1d\n    action: move\n",
        lake.display()
    )
}

/// Opens the catalog (seeding the demo into an empty one if asked) and
/// builds the agent and the API; [`TieringStack::run`] starts them.
pub async fn open(options: StackOptions) -> anyhow::Result<TieringStack> {
    let StackOptions {
        data_dir,
        tick,
        mover,
        lake_options,
        demo,
        catalog,
        volume_roots,
    } = options;
    strata_tiering::lake::check_s3_options(lake_options.iter().cloned())
        .context("--lake-option")?;
    let data_dir = data_dir.as_path();
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("creating {}", data_dir.display()))?;
    let (catalog, learner, scope) = open_catalog(data_dir, catalog).await?;
    let store = std::fs::canonicalize(catalog.dir())
        .with_context(|| format!("resolving {}", catalog.dir().display()))?;
    let scope = scope.within(VolumeBounds::within(volume_roots).reserve(store));
    let catalog = Arc::new(catalog);
    let demo = if demo {
        Some(seed_demo(&catalog, data_dir).await?)
    } else {
        None
    };
    let mover = Mover::new(catalog.clone(), mover.scope(scope));
    let agent = Arc::new(Agent::new(
        mover,
        AgentOptions {
            tick,
            s3_options: lake_options,
        },
    ));
    let socket = data_dir.join("strata.sock");
    let endpoint = format!("unix://{}", socket.display());
    let mut registry = prometheus_client::registry::Registry::with_prefix("strata");
    agent.mover().metrics().register(&mut registry);
    CatalogCollector::register(catalog.clone(), &mut registry);
    Ok(TieringStack {
        catalog,
        endpoint,
        agent,
        demo,
        registry,
        learner: std::sync::Mutex::new(learner),
        tasks: std::sync::Mutex::new(Vec::new()),
    })
}

/// Opens the catalog replica under `data_dir`; for a learner also binds its
/// listener (a port in use fails before the store is touched).
async fn open_catalog(
    data_dir: &Path,
    placement: CatalogPlacement,
) -> anyhow::Result<(CatalogNode, Option<Learner>, VolumeScope)> {
    let learner = match placement {
        CatalogPlacement::Own => {
            let node = CatalogNode::open(data_dir, CatalogOptions::default())
                .await
                .with_context(|| format!("opening the catalog under {}", data_dir.display()))?;
            return Ok((node, None, VolumeScope::every_node()));
        }
        CatalogPlacement::Learner(l) => l,
    };
    let listener = tokio::net::TcpListener::bind(learner.listen)
        .await
        .with_context(|| format!("--catalog-listen {}", learner.listen))?;
    let identity = learner.identity.clone();
    let options = CatalogOptions {
        address: learner.advertise.clone(),
        identity: identity.clone(),
        tls: Some(learner.tls.clone()),
        ..CatalogOptions::default()
    };
    let node = CatalogNode::open_replica(data_dir, options, ReplicaStart::Join)
        .await
        .with_context(|| {
            format!(
                "opening the learner replica {} of {:?} under {}",
                identity.node_id,
                identity.cluster,
                data_dir.display()
            )
        })?;
    Ok((
        node,
        Some(Learner {
            listener,
            group: learner.group,
            advertise: learner.advertise,
        }),
        VolumeScope::of_node(learner.node),
    ))
}

/// The demo's lake directory, and on first start its volume and policy.
async fn seed_demo(catalog: &CatalogNode, data_dir: &Path) -> anyhow::Result<Demo> {
    let lake = data_dir.join("lake");
    std::fs::create_dir_all(&lake).with_context(|| format!("creating {}", lake.display()))?;
    let (volumes, policies) = catalog
        .read(|s| (s.volumes().count(), s.policies().count()))
        .await?;
    let mut seeded = None;
    if volumes == 0 && policies == 0 {
        let dir = data_dir.join("volumes").join("demo");
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        // As the agent's volume roots are: resolved.
        let dir =
            std::fs::canonicalize(&dir).with_context(|| format!("resolving {}", dir.display()))?;
        seed_samples(&dir)?;
        let spec = demo_policy(&lake);
        strata_tiering::policy::parse_policy(&spec)
            .map_err(|e| anyhow::anyhow!("the embedded demo policy: {e}"))?;
        for command in [
            Command::RegisterVolume(Volume {
                id: "demo".into(),
                path: dir.display().to_string(),
                labels: [("app".to_string(), "demo".to_string())].into(),
            }),
            Command::PutPolicy {
                name: "demo".into(),
                spec,
            },
        ] {
            catalog
                .propose(LogEntry {
                    by: None,
                    at: Timestamp::now(),
                    command,
                })
                .await?
                .map_err(|r| anyhow::anyhow!("seeding the catalog: {r}"))?;
        }
        seeded = Some((dir, "demo".to_string()));
    }
    Ok(Demo { lake, seeded })
}

/// A few sample files in the demo volume, last modified two days ago: old
/// enough for the demo policy (their ctime is now, so they still wait out
/// the settle window).
fn seed_samples(dir: &Path) -> anyhow::Result<()> {
    let two_days_ago = std::time::SystemTime::now() - Duration::from_secs(2 * 86_400);
    for n in 1..=5 {
        let path = dir.join(format!("sample-{n}.txt"));
        if path.exists() {
            continue;
        }
        let text = format!("strata demo sample {n}\n").repeat(64 * n);
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
        std::fs::File::options()
            .write(true)
            .open(&path)
            .and_then(|f| f.set_modified(two_days_ago))
            .with_context(|| format!("back-dating {}", path.display()))?;
    }
    Ok(())
}

impl TieringStack {
    /// Starts the API and the agent's loop; both stop when `shutdown` turns true.
    pub async fn run(&self, shutdown: watch::Receiver<bool>) -> anyhow::Result<()> {
        let (catalog, agent, endpoint) = (&self.catalog, &self.agent, &self.endpoint);
        let listener = Listener::bind(endpoint)
            .await
            .with_context(|| format!("binding the tiering API on {endpoint}"))?;
        let info_node = catalog.clone();
        let mut service =
            TieringService::new(catalog.clone(), agent.clone()).with_catalog_info(move || {
                let m = info_node.metrics();
                CatalogInfo {
                    role: Some(m.role.into()),
                    term: Some(m.term),
                    leader: m.leader.map(|l| l.to_string()),
                    applied_index: m.applied_index,
                }
            });
        if let Some(node) = agent.mover().options().scope.node() {
            service = service.with_node(node);
        }
        self.serve_catalog(shutdown.clone());
        let mut tasks = self.tasks.lock().unwrap_or_else(|e| e.into_inner());
        let mut stop = shutdown.clone();
        tasks.push(tokio::spawn(async move {
            let done = async move {
                let _ = stop.wait_for(|s| *s).await;
            };
            if let Err(e) = service.serve(listener, done).await {
                tracing::error!("tiering API: {e}");
            }
        }));
        let (a, mut stop) = (agent.clone(), shutdown);
        tasks.push(tokio::spawn(async move {
            a.run(async move {
                let _ = stop.wait_for(|s| *s).await;
            })
            .await;
        }));
        Ok(())
    }

    /// For a learner: serves its Raft RPCs (and the catalog API) and asks
    /// the group to add it, until `shutdown` turns true. Call it before
    /// anything waits on the catalog; [`TieringStack::run`] calls it if it
    /// was not (once is enough, later calls do nothing).
    pub fn serve_catalog(&self, shutdown: watch::Receiver<bool>) {
        let learner = self
            .learner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(learner) = learner {
            let started = self.serve_learner(learner, shutdown);
            self.tasks
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .extend(started);
        }
    }

    fn serve_learner(
        &self,
        learner: Learner,
        mut shutdown: watch::Receiver<bool>,
    ) -> [JoinHandle<()>; 2] {
        let node = self.catalog.clone();
        let mut stop = shutdown.clone();
        let served = tokio::spawn(async move {
            let done = async move {
                let _ = shutdown.wait_for(|s| *s).await;
            };
            if let Err(e) = serve_replica(node, learner.listener, done).await {
                tracing::error!("catalog learner: {e}");
            }
        });
        let node = self.catalog.clone();
        let joined = tokio::spawn(async move {
            let join = join_group(node, &learner.group, &learner.advertise, JoinAs::Learner);
            tokio::select! {
                Err(e) = join => tracing::error!("--catalog-join: {e}"),
                _ = stop.wait_for(|s| *s) => {}
                else => {}
            }
        });
        [served, joined]
    }

    /// The tiering metrics in OpenMetrics text.
    pub fn metrics_text(&self) -> String {
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    /// Waits for the API and the agent to stop (after shutdown turned
    /// true), then closes the catalog.
    pub async fn stopped(&self) -> anyhow::Result<()> {
        let tasks = std::mem::take(&mut *self.tasks.lock().unwrap_or_else(|e| e.into_inner()));
        for t in tasks {
            let _ = t.await;
        }
        self.catalog
            .shutdown()
            .await
            .context("closing the catalog")?;
        Ok(())
    }
}
