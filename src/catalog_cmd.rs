//! `strata catalog`: one replica of the replicated catalog, serving the
//! Raft RPCs of its group and the client API on one address, and its Raft
//! state on `/metrics`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use strata_proto::strata::v1::catalog_raft_server::CatalogRaftServer;
use strata_proto::strata::v1::catalog_server::CatalogServer;
use strata_tiering::raft::{
    CatalogApi, CatalogCollector, CatalogNode, CatalogOptions, DEFAULT_CLUSTER, RemoteCatalog,
    ReplicaIdentity, ReplicaStart,
};
use strata_tiering::service::nodelay_incoming;
use tracing::{error, info};

#[derive(clap::Args, Debug)]
pub(crate) struct CatalogArgs {
    /// This replica's id in the group: 1 or more, unique in the group. It is
    /// recorded in the data directory, which then refuses any other id.
    #[arg(long, value_name = "N")]
    id: u64,
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
    /// voter at --advertise. A replica that is a member already asks nothing.
    #[arg(
        long,
        value_name = "HOST:PORT",
        env = "STRATA_JOIN",
        value_delimiter = ','
    )]
    join: Vec<String>,
    /// How often the leader sends heartbeats; a follower starts an election
    /// after 5 to 10 heartbeats without one.
    #[arg(long, value_name = "DURATION", default_value = "100ms", value_parser = humantime::parse_duration)]
    heartbeat: Duration,
    /// Take a snapshot (and compact the log) after this many entries.
    #[arg(long, value_name = "ENTRIES", default_value_t = CatalogOptions::default().snapshot_every)]
    snapshot_every: u64,
    /// Address for Prometheus metrics (`/metrics`); empty to disable.
    #[arg(long, value_name = "ADDR", default_value = "0.0.0.0:9809")]
    metrics_addr: String,
}

impl CatalogArgs {
    fn options(&self) -> anyhow::Result<CatalogOptions> {
        let address = match &self.advertise {
            Some(a) => a.clone(),
            None if self.listen.ip().is_unspecified() => bail!(
                "--advertise: required when --listen is {} (the other replicas need an address \
                 that reaches this one)",
                self.listen
            ),
            None => self.listen.to_string(),
        };
        if self.heartbeat.is_zero() {
            bail!("--heartbeat: must be more than 0");
        }
        Ok(CatalogOptions {
            address,
            identity: ReplicaIdentity {
                cluster: self.cluster.clone(),
                node_id: self.id,
            },
            heartbeat_interval: self.heartbeat,
            election_timeout: (self.heartbeat * 5, self.heartbeat * 10),
            snapshot_every: self.snapshot_every,
            ..CatalogOptions::default()
        })
    }
}

/// Runs the replica until SIGTERM or SIGINT, or until it stops on its own
/// (a storage error: then the process fails with the reason).
pub(crate) async fn run(args: CatalogArgs) -> anyhow::Result<()> {
    let options = args.options()?;
    let metrics_addr: Option<SocketAddr> =
        if args.metrics_addr.is_empty() {
            None
        } else {
            Some(args.metrics_addr.parse().with_context(|| {
                format!("--metrics-addr: {:?} is not host:port", args.metrics_addr)
            })?)
        };
    let start = if args.bootstrap {
        ReplicaStart::Bootstrap
    } else {
        ReplicaStart::Join
    };
    // Bind first: a port in use fails before the store is touched.
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("--listen {}", args.listen))?;
    let connect_timeout = options.connect_timeout;
    let address = options.address.clone();
    let node = CatalogNode::open_replica(&args.data_dir, options, start)
        .await
        .with_context(|| format!("catalog replica {} in {}", args.id, args.data_dir.display()))?;
    let node = Arc::new(node);
    info!(
        id = args.id,
        cluster = %args.cluster,
        %address,
        data_dir = %args.data_dir.display(),
        "catalog replica serving"
    );
    println!(
        "strata catalog: replica {} of {:?}, reached at {address}, data in {}",
        args.id,
        args.cluster,
        args.data_dir.display()
    );
    if let Some(addr) = metrics_addr {
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
            if let Err(e) = strata_csi::server::serve_openmetrics(addr, render).await {
                error!("{e}");
            }
        });
    }
    if !args.join.is_empty() {
        tokio::spawn(join(
            node.clone(),
            args.join.clone(),
            args.cluster.clone(),
            address.clone(),
        ));
    }
    let raft = CatalogRaftServer::new(node.raft_service()).max_decoding_message_size(usize::MAX);
    let api = CatalogServer::new(CatalogApi::new(node.clone(), connect_timeout))
        .max_decoding_message_size(usize::MAX);
    let served = tonic::transport::Server::builder()
        .add_service(raft)
        .add_service(api)
        .serve_with_incoming_shutdown(nodelay_incoming(listener), crate::shutdown_signal());
    let outcome = tokio::select! {
        r = served => r.context("serve the catalog"),
        why = node.stopped() => Err(anyhow::anyhow!("catalog replica {} stopped: {why}", args.id)),
    };
    if let Err(e) = node.shutdown().await {
        error!("catalog replica {}: {e}", args.id);
    }
    outcome?;
    info!("stopped");
    Ok(())
}

/// How long `--join` waits between attempts.
const JOIN_RETRY: Duration = Duration::from_secs(2);

/// Asks the group at `group` to add this replica, until it is a member or
/// the group refuses for a reason that retrying cannot change.
async fn join(node: Arc<CatalogNode>, group: Vec<String>, cluster: String, address: String) {
    let id = node.id();
    let client = match RemoteCatalog::new(&group, &cluster, Duration::from_secs(120)) {
        Ok(c) => c,
        Err(e) => {
            error!("--join: {e}");
            return;
        }
    };
    // A restarted member learns its membership from its store a moment
    // after it starts: give it that moment before asking.
    node.wait_for_membership(JOIN_RETRY).await;
    loop {
        if node.is_member() {
            info!(id, "catalog replica is a member of its group");
            return;
        }
        match client.add_member(id, &address, false).await {
            Ok(_) => {
                info!(id, %address, "joined the catalog group");
                return;
            }
            Err(s) if s.code() == tonic::Code::Unavailable => {
                tracing::warn!(
                    id,
                    "--join: the group cannot add this replica yet: {}",
                    s.message()
                );
            }
            Err(s) => {
                error!(
                    id,
                    "--join: the group refused this replica: {}",
                    s.message()
                );
                return;
            }
        }
        tokio::time::sleep(JOIN_RETRY).await;
    }
}
