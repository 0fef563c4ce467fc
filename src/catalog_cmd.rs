//! `strata catalog`: one replica of the replicated catalog, serving the
//! Raft RPCs of its group and the client API on one address, and its Raft
//! state on `/metrics`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use strata_tiering::raft::{
    CatalogCollector, CatalogNode, CatalogOptions, DEFAULT_CLUSTER, JoinAs, ReplicaIdentity,
    ReplicaStart, check_member_address, join_group, refuse_lost_voter, serve_replica,
};
use tracing::{error, info};

#[derive(clap::Args, Debug)]
#[command(group = clap::ArgGroup::new("identity").required(true).args(["id", "id_from_hostname"]))]
pub(crate) struct CatalogArgs {
    /// This replica's id in the group: 1 or more, unique in the group. It is
    /// recorded in the data directory, which then refuses any other id.
    #[arg(long, value_name = "N")]
    id: Option<u64>,
    /// Take the id from the hostname instead: the number after its last '-'
    /// plus one (a StatefulSet's pod `strata-catalog-0` is replica 1).
    #[arg(long)]
    id_from_hostname: bool,
    /// The group's name (lowercase letters, digits, '-'). Recorded in the
    /// data directory; every message between replicas carries it.
    #[arg(long, value_name = "NAME", env = "STRATA_CLUSTER", default_value = DEFAULT_CLUSTER)]
    cluster: String,
    /// Where to serve the group's Raft RPCs and the client API.
    #[arg(long, value_name = "ADDR", default_value = "0.0.0.0:7420")]
    listen: SocketAddr,
    /// host:port where the other replicas and clients reach this one; by
    /// default --listen, which must then name a host (not 0.0.0.0).
    #[arg(long, value_name = "HOST:PORT", env = "STRATA_ADVERTISE")]
    advertise: Option<String>,
    /// Where the replica keeps its log, snapshots and identity.
    #[arg(long, value_name = "DIR", default_value = "./strata-catalog")]
    data_dir: PathBuf,
    /// If the data directory is new, start a new group with this replica as
    /// its only member. Without it a new replica waits until it is added
    /// (`--join`, or `strata ctl members add`). A data directory that already
    /// holds a group ignores this.
    #[arg(long, conflicts_with = "join")]
    bootstrap: bool,
    /// Replicas of the group to ask to add this one (host:port, comma-separated
    /// or repeated): if it is not a member yet, it asks until it is added as a
    /// voter at --advertise. A replica that is a member at --advertise
    /// already asks nothing; one the group has at another address asks to be
    /// moved to --advertise.
    #[arg(
        long,
        value_name = "HOST:PORT",
        env = "STRATA_JOIN",
        value_delimiter = ','
    )]
    join: Vec<String>,
    /// If the data directory is new, start the group with exactly these
    /// voters, ID=HOST:PORT comma-separated or repeated, this replica among
    /// them at its --advertise address. Give every one of them the same
    /// list; they elect a leader once a majority is up. A data directory
    /// that already holds a group ignores this.
    #[arg(
        long,
        value_name = "ID=HOST:PORT",
        env = "STRATA_INITIAL_MEMBERS",
        value_delimiter = ',',
        value_parser = parse_member,
        conflicts_with_all = ["bootstrap", "join"]
    )]
    initial_members: Vec<(u64, String)>,
    /// How often the leader sends heartbeats; a follower starts an election
    /// after 5 to 10 heartbeats without one.
    #[arg(long, value_name = "DURATION", default_value = "100ms", value_parser = humantime::parse_duration)]
    heartbeat: Duration,
    /// Take a snapshot (and compact the log) every this many entries; each
    /// replica at its own offset within the period (its place among the
    /// members), so that the replicas of a group take turns.
    #[arg(long, value_name = "ENTRIES", default_value_t = CatalogOptions::default().snapshot_every)]
    snapshot_every: u64,
    /// Address for Prometheus metrics (`/metrics`); empty to disable.
    #[arg(long, value_name = "ADDR", default_value = "0.0.0.0:9809")]
    metrics_addr: String,
    /// The replica's certificates: ca.crt (the site CA), and tls.crt and
    /// tls.key of a replica certificate (`strata certs issue --role
    /// replica`). The replica serves and connects only over mutual TLS with
    /// them, and re-reads them when they change.
    #[arg(
        long,
        value_name = "DIR",
        env = "STRATA_TLS_DIR",
        default_value = "/etc/strata/tls"
    )]
    tls_dir: PathBuf,
    /// Threads that run the replica's network and Raft work; 0 for one per
    /// core. With 1, the default, all of it runs on the main thread: a write
    /// is handed from task to task half a dozen times (connection, Raft core,
    /// replication stream, state machine), and on one thread no hand-off has
    /// to wake another thread, which costs more than the work handed over.
    /// The WAL syncs have their own thread, and snapshot builds and long log
    /// reads a blocking pool, whatever this is.
    #[arg(
        long,
        value_name = "N",
        env = "STRATA_CATALOG_WORKER_THREADS",
        default_value_t = 1
    )]
    worker_threads: usize,
    /// Run the Kubernetes controller (TieringPolicies, PersistentVolumeClaims
    /// and PersistentVolumes of driver strata.io into the catalog, status and
    /// events back) while this replica leads the group: `auto` runs it inside
    /// a pod (KUBERNETES_SERVICE_HOST is set) or with --kubeconfig, `on`
    /// always, `off` never.
    #[arg(
        long,
        value_name = "WHEN",
        env = "STRATA_KUBERNETES",
        default_value = "auto",
        value_parser = ["auto", "on", "off"]
    )]
    kubernetes: String,
    /// The API server to watch, from a kubeconfig file; by default the pod's
    /// own service account (in-cluster).
    #[arg(long, value_name = "FILE", env = "STRATA_KUBECONFIG")]
    kubeconfig: Option<PathBuf>,
}

impl CatalogArgs {
    /// The runtime this replica runs on (`--worker-threads`).
    pub(crate) fn runtime(&self) -> std::io::Result<tokio::runtime::Runtime> {
        let mut builder = match self.worker_threads {
            1 => tokio::runtime::Builder::new_current_thread(),
            n => {
                let mut builder = tokio::runtime::Builder::new_multi_thread();
                if n > 1 {
                    builder.worker_threads(n);
                }
                builder
            }
        };
        builder.enable_all().build()
    }

    /// `--id`, or the one `--id-from-hostname` names.
    fn id(&self) -> anyhow::Result<u64> {
        match self.id {
            Some(id) => Ok(id),
            None => id_from_hostname(&crate::hostname()),
        }
    }

    fn options(&self, tls: strata_trust::SiteTls) -> anyhow::Result<CatalogOptions> {
        let address = advertised(self.listen, self.advertise.as_deref(), "--advertise")?;
        if self.heartbeat.is_zero() {
            bail!("--heartbeat: must be more than 0");
        }
        Ok(CatalogOptions {
            address,
            identity: ReplicaIdentity {
                cluster: self.cluster.clone(),
                node_id: self.id()?,
            },
            heartbeat_interval: self.heartbeat,
            election_timeout: (self.heartbeat * 5, self.heartbeat * 10),
            snapshot_every: self.snapshot_every,
            tls: Some(tls),
            ..CatalogOptions::default()
        })
    }
}

/// `ID=HOST:PORT` of `--initial-members`.
fn parse_member(text: &str) -> Result<(u64, String), String> {
    let (id, addr) = text
        .split_once('=')
        .ok_or_else(|| format!("expected ID=HOST:PORT (e.g. 1=a:7420), got {text:?}"))?;
    let id: u64 = id
        .trim()
        .parse()
        .map_err(|_| format!("{text:?}: the id is not a number"))?;
    if id == 0 {
        return Err(format!("{text:?}: ids are 1 or more"));
    }
    let addr = addr.trim();
    check_member_address(addr).map_err(|why| format!("{text:?}: the address {why}"))?;
    Ok((id, addr.to_owned()))
}

/// The replica id of a StatefulSet pod: its ordinal (after the hostname's
/// last '-') plus one.
fn id_from_hostname(hostname: &str) -> anyhow::Result<u64> {
    hostname
        .rsplit_once('-')
        .and_then(|(_, n)| n.parse::<u64>().ok())
        .and_then(|n| n.checked_add(1))
        .with_context(|| {
            format!(
                "--id-from-hostname: the hostname {hostname:?} does not end in -<number> (a \
                 StatefulSet pod's does, e.g. strata-catalog-0)"
            )
        })
}

/// The address a replica listening on `listen` is reached at: `advertise`
/// (the flag `flag`), or `listen` if it names a host.
pub(crate) fn advertised(
    listen: SocketAddr,
    advertise: Option<&str>,
    flag: &str,
) -> anyhow::Result<String> {
    match advertise {
        Some(a) => Ok(a.to_owned()),
        None if listen.ip().is_unspecified() => bail!(
            "{flag}: required when listening on {listen} (the group's replicas need an address \
             that reaches this one)"
        ),
        None => Ok(listen.to_string()),
    }
}

/// Runs the replica until SIGTERM or SIGINT, or until it stops on its own
/// (a storage error: then the process fails with the reason).
pub(crate) async fn run(args: CatalogArgs) -> anyhow::Result<()> {
    let tls = crate::certs_cmd::load_tls(&args.tls_dir, "--tls-dir")?;
    if tls.identity().role != strata_trust::Role::Replica {
        bail!(
            "--tls-dir {}: the certificate is a {} certificate; a catalog replica needs a replica \
             certificate (`strata certs issue --role replica`)",
            args.tls_dir.display(),
            tls.identity()
        );
    }
    let options = args.options(tls.clone())?;
    let metrics_addr: Option<SocketAddr> =
        if args.metrics_addr.is_empty() {
            None
        } else {
            Some(args.metrics_addr.parse().with_context(|| {
                format!("--metrics-addr: {:?} is not host:port", args.metrics_addr)
            })?)
        };
    let id = options.identity.node_id;
    let start = if args.bootstrap {
        ReplicaStart::Bootstrap
    } else if !args.initial_members.is_empty() {
        let mut members = BTreeMap::new();
        for (member, addr) in &args.initial_members {
            if members.insert(*member, addr.clone()).is_some() {
                bail!("--initial-members: replica {member} is named twice");
            }
        }
        ReplicaStart::Members(members)
    } else {
        ReplicaStart::Join
    };
    // Bind first: a port in use fails before the store is touched.
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("--listen {}", args.listen))?;
    let metrics_listener = match metrics_addr {
        Some(addr) => Some(
            strata_csi::server::bind_metrics(addr)
                .await
                .context("--metrics-addr")?,
        ),
        None => None,
    };
    // A voter that lost its store must not come back as the voter it was.
    let group: Vec<String> = match &start {
        ReplicaStart::Members(members) => members
            .iter()
            .filter(|(member, _)| **member != id)
            .map(|(_, addr)| addr.clone())
            .collect(),
        ReplicaStart::Join => args.join.clone(),
        ReplicaStart::Bootstrap => Vec::new(),
    };
    refuse_lost_voter(&args.data_dir, &options.identity, &group, &tls)
        .await
        .with_context(|| format!("catalog replica {} in {}", id, args.data_dir.display()))?;
    let address = options.address.clone();
    let node = CatalogNode::open_replica(&args.data_dir, options, start)
        .await
        .with_context(|| format!("catalog replica {} in {}", id, args.data_dir.display()))?;
    let node = Arc::new(node);
    info!(
        id,
        cluster = %args.cluster,
        %address,
        data_dir = %args.data_dir.display(),
        worker_threads = %worker_threads(args.worker_threads),
        "catalog replica serving"
    );
    println!(
        "strata catalog: replica {} of {:?}, reached at {address}, data in {}",
        id,
        args.cluster,
        args.data_dir.display()
    );
    if let Some(listener) = metrics_listener {
        let mut registry = prometheus_client::registry::Registry::with_prefix("strata");
        CatalogCollector::register(node.clone(), &mut registry);
        let registry = Arc::new(registry);
        let render = move || {
            let registry = registry.clone();
            async move {
                let mut text = String::new();
                if let Err(e) = prometheus_client::encoding::text::encode(&mut text, &registry) {
                    text = format!("# encoding failed: {e}\n");
                }
                text
            }
        };
        tokio::spawn(async move {
            if let Err(e) = strata_csi::server::serve_openmetrics(listener, render).await {
                error!("{e}");
            }
        });
    }
    if let Some(client) = kubernetes_client(&args).await? {
        let leader = node.clone();
        let controller = strata_k8s::Controller::new(
            client,
            node.clone(),
            move || leader.metrics().is_leader,
            strata_k8s::ControllerOptions {
                instance: Some(crate::hostname()),
                ..Default::default()
            },
        );
        info!(
            "kubernetes controller: watching TieringPolicies, PersistentVolumeClaims and PersistentVolumes; it acts while this replica leads"
        );
        tokio::spawn(controller.run());
    }
    if !args.join.is_empty() {
        let (node, group, address) = (node.clone(), args.join.clone(), address.clone());
        tokio::spawn(async move {
            if let Err(e) = join_group(node, &group, &address, JoinAs::Voter).await {
                error!("--join: {e}");
            }
        });
    }
    let served = serve_replica(node.clone(), listener, crate::shutdown_signal());
    let outcome = tokio::select! {
        r = served => r.context("serve the catalog"),
        why = node.stopped() => Err(anyhow::anyhow!("catalog replica {} stopped: {why}", id)),
    };
    if let Err(e) = node.shutdown().await {
        error!("catalog replica {}: {e}", id);
    }
    outcome?;
    info!("stopped");
    Ok(())
}

/// The API server client `--kubernetes` and `--kubeconfig` ask for, if any.
async fn kubernetes_client(args: &CatalogArgs) -> anyhow::Result<Option<kube::Client>> {
    let in_cluster = std::env::var_os("KUBERNETES_SERVICE_HOST").is_some();
    let wanted = match args.kubernetes.as_str() {
        "on" => true,
        "off" => false,
        _ => in_cluster || args.kubeconfig.is_some(),
    };
    if !wanted {
        return Ok(None);
    }
    let config = match &args.kubeconfig {
        Some(path) => {
            let file = kube::config::Kubeconfig::read_from(path)
                .with_context(|| format!("--kubeconfig {}", path.display()))?;
            kube::Config::from_custom_kubeconfig(file, &kube::config::KubeConfigOptions::default())
                .await
                .with_context(|| format!("--kubeconfig {}", path.display()))?
        }
        None => kube::Config::incluster().context(
            "--kubernetes: no in-cluster service account (give --kubeconfig, or --kubernetes off)",
        )?,
    };
    Ok(Some(
        kube::Client::try_from(config).context("--kubernetes: the API server client")?,
    ))
}

/// `--worker-threads` as the log shows it.
fn worker_threads(n: usize) -> String {
    match n {
        0 => "one per core".to_owned(),
        n => n.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_statefulset_pod_is_its_ordinal_plus_one() {
        assert_eq!(id_from_hostname("strata-catalog-0").unwrap(), 1);
        assert_eq!(id_from_hostname("strata-catalog-12").unwrap(), 13);
        let e = id_from_hostname("edge-node").unwrap_err().to_string();
        assert!(
            e.contains("--id-from-hostname") && e.contains("edge-node"),
            "{e}"
        );
        assert!(id_from_hostname("catalog").is_err());
    }

    #[test]
    fn initial_members_are_id_equals_host_port() {
        assert_eq!(parse_member("2=b:7420").unwrap(), (2, "b:7420".to_owned()));
        for bad in ["b:7420", "x=b:7420", "0=b:7420", "2=b", "2=:7420", "2=b:0"] {
            assert!(parse_member(bad).is_err(), "{bad}");
        }
    }

    /// `strata catalog --id 1` with `extra` after it, parsed.
    fn catalog_args(extra: &[&str]) -> Result<CatalogArgs, clap::Error> {
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            args: CatalogArgs,
        }
        let argv = ["strata-catalog", "--id", "1"].iter().chain(extra);
        <Cli as clap::Parser>::try_parse_from(argv).map(|cli| cli.args)
    }

    #[test]
    fn worker_threads_choose_the_runtime() {
        use tokio::runtime::RuntimeFlavor;
        let runtime = |extra: &[&str]| catalog_args(extra).unwrap().runtime().unwrap();
        let one = runtime(&[]);
        assert_eq!(one.handle().runtime_flavor(), RuntimeFlavor::CurrentThread);
        let three = runtime(&["--worker-threads", "3"]);
        assert_eq!(three.handle().runtime_flavor(), RuntimeFlavor::MultiThread);
        assert_eq!(three.metrics().num_workers(), 3);
        let per_core = runtime(&["--worker-threads", "0"]);
        assert_eq!(
            per_core.handle().runtime_flavor(),
            RuntimeFlavor::MultiThread
        );
        let err = catalog_args(&["--worker-threads", "some"])
            .expect_err("a word is not a thread count")
            .to_string();
        assert!(err.contains("--worker-threads"), "{err}");
    }
}
