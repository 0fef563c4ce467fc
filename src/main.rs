//! `strata`: the one binary. This file only wires the command line to the crates.

mod catalog_cmd;
mod certs_cmd;
mod csi_volumes;
mod ctl;
mod node_gc;
mod tiering_stack;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use strata_csi::kubelet_dir::KubeletDir;
use strata_csi::server::{self, ExtraMetrics};
use strata_csi::{Driver, NodeConfig};
use strata_tiering::mover::MoverOptions;
use strata_tiering::raft::{DEFAULT_CLUSTER, ReplicaIdentity, node_replica_id};
use strata_tiering::scan::ScanOptions;
use strata_tiering::site_zone::{SiteZone, ZoneEnvironment};
use tracing::{error, info, warn};

use crate::csi_volumes::CsiVolumes;
use crate::node_gc::OrphanArgs;
use crate::tiering_stack::{CatalogPlacement, LearnerOptions, StackOptions, TieringStack};

/// mimalloc instead of glibc's malloc: a mover handling many small files
/// allocates and frees a buffer, a request and its headers per file, and in
/// a profile of the upload bench glibc's malloc and free took ≈ 11 % of the
/// mover's CPU.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Edge storage for Kubernetes sites whose link to the cloud comes and goes.
#[derive(Parser, Debug)]
#[command(name = "strata", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the node plugin: CSI Identity, Controller and Node for this node's LVM volumes.
    Node(Box<NodeArgs>),
    /// Try strata in one command: the node plugin on a volume group on a sparse
    /// file, and tiering (catalog, local-directory lake, demo volume and
    /// policy, the API for `strata ctl`), all under the data directory.
    Up(UpArgs),
    /// Run one replica of the replicated catalog (a Raft group of 1, 3 or 5
    /// replicas): its Raft RPCs and the client API on --listen, metrics on
    /// --metrics-addr.
    Catalog(catalog_cmd::CatalogArgs),
    /// Operate tiering: status, policies, volumes, files, recall, runs,
    /// catalog members.
    Ctl(ctl::CtlArgs),
    /// Make the site CA and the certificates its parts present to the
    /// catalog (replica, node, admin).
    Certs(certs_cmd::CertsArgs),
    /// Print the TieringPolicy CustomResourceDefinition (YAML) that
    /// deploy/base/crd-tieringpolicy.yaml carries: `strata crd | kubectl apply -f -`.
    Crd,
}

#[derive(clap::Args, Debug)]
struct UpArgs {
    /// Where strata keeps its state (the sparse PV file, the CSI socket, the
    /// catalog, the lake directory, the tiering API socket). The CSI node
    /// calls take staging and target paths beneath its `kubelet/` only.
    #[arg(long, value_name = "DIR", default_value = "./strata-data")]
    data_dir: PathBuf,
    #[command(flatten)]
    tiering: TieringArgs,
    /// Size of the sparse file behind the demo volume group, in GiB.
    #[arg(long, value_name = "GIB", default_value_t = 10)]
    size_gib: u64,
    /// Name of the demo volume group.
    #[arg(long, default_value = "strata-up")]
    volume_group: String,
    /// Address for Prometheus metrics (`/metrics`).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:9808")]
    metrics_addr: String,
}

/// How the tiering agent works (`strata up`, `strata node --tiering-dir`).
#[derive(clap::Args, Debug)]
struct TieringArgs {
    /// How often the tiering agent checks schedules and watermarks and
    /// drains the backlog (e.g. 10s, 1m).
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = humantime::parse_duration)]
    tick: std::time::Duration,
    /// How long a file must be left alone (mtime and ctime) before tiering
    /// considers it (e.g. 60s; 0s for demos and tests).
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = humantime::parse_duration)]
    settle: std::time::Duration,
    /// The site's name: `{site}` in the policies' key templates.
    #[arg(long, env = "STRATA_SITE", default_value = "")]
    site: String,
    /// The site's time zone, an IANA name like Europe/Berlin: every
    /// policy's cron schedule and bandwidth timetable is read on its clocks,
    /// daylight saving time included. Unset (or empty): the TZ variable,
    /// else the zone /etc/localtime links to, else UTC; the start-up log
    /// says which.
    #[arg(
        long,
        value_name = "ZONE",
        env = "STRATA_SITE_TIMEZONE",
        value_parser = parse_site_timezone
    )]
    site_timezone: Option<String>,
    /// An option for every s3:// lake, KEY=VALUE; repeat the flag, or
    /// separate with commas in the variable. Keys: endpoint, region,
    /// path_style, allow_http, multipart_threshold, part_size,
    /// part_concurrency, verify_read_back, connect_timeout, request_timeout,
    /// max_retries, retry_timeout. Credentials come from each policy.
    #[arg(
        long = "lake-option",
        value_name = "KEY=VALUE",
        env = "STRATA_LAKE_OPTIONS",
        value_delimiter = ',',
        value_parser = parse_lake_option
    )]
    lake_options: Vec<(String, String)>,
    /// Files one drain of a policy moves at once (upload, verification,
    /// release). A file waiting for its batched confirmation does not
    /// count. Raise it for a lake far away (each upload waits a round trip),
    /// lower it to spare a small lake.
    #[arg(
        long,
        value_name = "N",
        env = "STRATA_UPLOAD_CONCURRENCY",
        default_value_t = MoverOptions::default().concurrency,
        value_parser = parse_concurrency
    )]
    upload_concurrency: usize,
    /// Files a run hashes at once (SHA-256 and MD5 of each candidate).
    #[arg(
        long,
        value_name = "N",
        env = "STRATA_HASH_CONCURRENCY",
        default_value_t = MoverOptions::default().hash_concurrency,
        value_parser = parse_concurrency
    )]
    hash_concurrency: usize,
    /// Files a recall downloads at once.
    #[arg(
        long,
        value_name = "N",
        env = "STRATA_RECALL_CONCURRENCY",
        default_value_t = MoverOptions::default().recall_concurrency,
        value_parser = parse_concurrency
    )]
    recall_concurrency: usize,
    /// How long fresh uploads to an S3 lake wait for each other, so that one
    /// listing of their directory confirms them all (size and ETag) instead
    /// of a HEAD each; at most 10s. 0s verifies every file on its own.
    #[arg(
        long,
        value_name = "DURATION",
        env = "STRATA_CONFIRM_WINDOW",
        default_value_t = MoverOptions::default().confirm_window.into(),
        value_parser = parse_confirm_window
    )]
    confirm_window: humantime::Duration,
    /// An archived file whose lake copy was verified longer ago than this
    /// gets a fresh look (a HEAD: size and SHA-256) just before its local
    /// copy is released; a missing or different object means no release,
    /// and the file is uploaded again. 0s looks before every release of an
    /// earlier verification.
    #[arg(
        long,
        value_name = "DURATION",
        env = "STRATA_REVERIFY_AFTER",
        default_value_t = MoverOptions::default().reverify_after.into(),
        value_parser = parse_reverify_after
    )]
    reverify_after: humantime::Duration,
    /// A directory beneath which the tiering agent may work on volumes,
    /// besides its own (`strata node`: where the kubelet stages CSI volumes,
    /// <kubelet-dir>/plugins/kubernetes.io/csi; `strata up`: <data-dir>/volumes);
    /// repeat the flag, or separate with commas in the variable. Resolved at
    /// start (it must exist). A volume registered anywhere else is refused.
    #[arg(
        long = "volume-root",
        value_name = "DIR",
        env = "STRATA_VOLUME_ROOTS",
        value_delimiter = ','
    )]
    volume_roots: Vec<PathBuf>,
}

/// `--site-timezone`: an IANA zone name, or empty for none.
fn parse_site_timezone(text: &str) -> Result<String, String> {
    let name = text.trim();
    if !name.is_empty() {
        SiteZone::named(name).map_err(|e| e.reason())?;
    }
    Ok(name.to_owned())
}

fn parse_reverify_after(text: &str) -> Result<humantime::Duration, String> {
    text.trim()
        .parse()
        .map_err(|e| format!("expected a duration like 1h, 15m or 0s ({e})"))
}

/// Where, beneath the kubelet directory, the kubelet stages CSI volumes
/// (`strata.io/<hash>/globalmount`, `pv/<pv>/globalmount`): the node agent's
/// own volume root.
const KUBELET_CSI_DIR: &str = "plugins/kubernetes.io/csi";

/// The most a `--*-concurrency` flag accepts.
const MAX_CONCURRENCY: usize = 1024;

/// A `--*-concurrency` flag: a whole number from 1 to [`MAX_CONCURRENCY`]
/// (clap names the flag in its error).
fn parse_concurrency(text: &str) -> Result<usize, String> {
    match text.trim().parse::<usize>() {
        Ok(n) if (1..=MAX_CONCURRENCY).contains(&n) => Ok(n),
        Ok(n) => Err(format!(
            "{n} is out of range: expected 1 to {MAX_CONCURRENCY}"
        )),
        Err(_) => Err(format!(
            "expected a whole number from 1 to {MAX_CONCURRENCY}"
        )),
    }
}

/// The longest `--confirm-window`: every fresh upload waits this long
/// before it is verified and recorded.
const MAX_CONFIRM_WINDOW: Duration = Duration::from_secs(10);

fn parse_confirm_window(text: &str) -> Result<humantime::Duration, String> {
    let window: humantime::Duration = text
        .trim()
        .parse()
        .map_err(|e| format!("expected a duration like 200ms or 0s ({e})"))?;
    if *window > MAX_CONFIRM_WINDOW {
        return Err(format!(
            "{window} is too long: at most {}, since every fresh upload waits \
             that long before it is verified",
            humantime::format_duration(MAX_CONFIRM_WINDOW)
        ));
    }
    Ok(window)
}

impl TieringArgs {
    /// The agent's volume roots: `own` (the command's own, already
    /// resolved) and each `--volume-root`, resolved.
    fn volume_roots(&self, own: PathBuf) -> anyhow::Result<Vec<PathBuf>> {
        let mut roots = vec![own];
        for r in &self.volume_roots {
            let resolved = std::fs::canonicalize(r)
                .ok()
                .filter(|p| p.is_dir())
                .with_context(|| format!("--volume-root {}: not a directory", r.display()))?;
            roots.push(resolved);
        }
        Ok(roots)
    }

    /// The site's time zone: --site-timezone, else the one `env` holds.
    fn site_zone(&self, env: &ZoneEnvironment) -> anyhow::Result<SiteZone> {
        let named = self.site_timezone.as_deref().filter(|n| !n.is_empty());
        SiteZone::resolve(named, env).context("the site's time zone")
    }

    /// The mover's options these flags set, in the site's time `zone`.
    fn mover_options(&self, zone: SiteZone) -> MoverOptions {
        MoverOptions::default()
            .site(self.site.clone())
            .site_zone(zone)
            .scan(ScanOptions::default().settle(self.settle))
            .concurrency(self.upload_concurrency)
            .hash_concurrency(self.hash_concurrency)
            .recall_concurrency(self.recall_concurrency)
            .confirm_window(*self.confirm_window)
            .reverify_after(*self.reverify_after)
    }
}

fn parse_lake_option(text: &str) -> Result<(String, String), String> {
    let (k, v) = text.split_once('=').ok_or_else(|| {
        format!("expected KEY=VALUE (e.g. endpoint=https://s3.example), got {text:?}")
    })?;
    // The keys and values are checked together at start (some depend on
    // each other: an http:// endpoint needs allow_http=true).
    Ok((k.trim().to_owned(), v.trim().to_owned()))
}

#[derive(clap::Args, Debug)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
struct NodeArgs {
    #[command(subcommand)]
    command: Option<NodeCommand>,
    /// Node configuration file (TOML: device classes, LVM backend).
    #[arg(long, value_name = "FILE", required = true)]
    config: Option<PathBuf>,
    /// CSI endpoint to serve on.
    #[arg(
        long,
        value_name = "unix:///PATH",
        default_value = "unix:///csi/csi.sock",
        env = "CSI_ENDPOINT"
    )]
    csi_endpoint: String,
    /// This node's id; the Kubernetes node name.
    #[arg(long, env = "KUBE_NODE_NAME", required = true)]
    node_id: Option<String>,
    /// Address for Prometheus metrics (`/metrics`); empty to disable.
    #[arg(long, value_name = "ADDR", default_value = "0.0.0.0:9808")]
    metrics_addr: String,
    /// Run the tiering agent for this node's staged filesystem volumes, with
    /// its one-replica catalog and the tiering API socket (`strata.sock`)
    /// in this directory. Unset: the node serves CSI only.
    #[arg(long, value_name = "DIR", env = "STRATA_TIERING_DIR")]
    tiering_dir: Option<PathBuf>,
    #[command(flatten)]
    tiering: TieringArgs,
    #[command(flatten)]
    catalog: CatalogJoinArgs,
    /// How often the node looks for orphans (strata LVs no PersistentVolume
    /// names, mounts of LVs that are gone, leftover kubelet directories) and
    /// reports them in the log and in strata_orphans; it never removes
    /// anything (`strata node gc --apply` does). 0s: no scan.
    #[arg(long, value_name = "DURATION", default_value = "10m", value_parser = humantime::parse_duration)]
    orphan_scan_interval: std::time::Duration,
    #[command(flatten)]
    orphans: OrphanArgs,
    /// List the GET_SNAPSHOT controller capability (alpha in CSI 1.12).
    /// Only with sidecars that know it: external-provisioner v5.3.0 or later,
    /// csi-snapshotter v8.3.0 or later and csi-resizer v1.14.0 or later
    /// (earlier ones can crash at start on it). GetSnapshot answers either way.
    #[arg(long, env = "STRATA_ADVERTISE_GET_SNAPSHOT")]
    advertise_get_snapshot: bool,
}

/// How a node agent uses the replicated catalog (`strata node --catalog-join`).
#[derive(clap::Args, Debug)]
struct CatalogJoinArgs {
    /// Keep a learner replica of the replicated catalog in --tiering-dir
    /// instead of a one-replica catalog of the node's own: these are
    /// `strata catalog` replicas to ask to add it (host:port,
    /// comma-separated or repeated). The agent reads from its learner, sends
    /// its writes to the group's leader, and works only on the volumes of
    /// this node (--node-id).
    #[arg(
        long,
        value_name = "HOST:PORT",
        env = "STRATA_CATALOG_JOIN",
        value_delimiter = ',',
        requires = "tiering_dir"
    )]
    catalog_join: Vec<String>,
    /// Where the learner serves the group's Raft RPCs (the leader sends it
    /// the log) and the catalog API.
    #[arg(long, value_name = "ADDR", default_value = "0.0.0.0:7421")]
    catalog_listen: SocketAddr,
    /// host:port where the group's replicas reach this learner; by default
    /// --catalog-listen, which must then name a host (not 0.0.0.0).
    #[arg(long, value_name = "HOST:PORT", env = "STRATA_CATALOG_ADVERTISE")]
    catalog_advertise: Option<String>,
    /// The learner's id in the group; by default derived from --node-id
    /// (the same on every start, 2^32 or more: clear of the replicas' ids).
    #[arg(long, value_name = "N")]
    catalog_id: Option<u64>,
    /// The group's name, as its replicas were started with.
    #[arg(long, value_name = "NAME", env = "STRATA_CLUSTER", default_value = DEFAULT_CLUSTER)]
    cluster: String,
    /// The node's certificates for the catalog group (ca.crt, and tls.crt
    /// and tls.key of a node certificate for --node-id: `strata certs issue
    /// --role node --name NODE`). The learner serves and connects only over
    /// mutual TLS with them; they are re-read when they change.
    #[arg(
        long,
        value_name = "DIR",
        env = "STRATA_TLS_DIR",
        default_value = "/etc/strata/tls"
    )]
    catalog_tls_dir: PathBuf,
}

impl CatalogJoinArgs {
    /// Where the node's catalog lives: its own, or a learner of the group.
    fn placement(&self, node_id: &str) -> anyhow::Result<CatalogPlacement> {
        if self.catalog_join.is_empty() {
            return Ok(CatalogPlacement::Own);
        }
        let advertise = catalog_cmd::advertised(
            self.catalog_listen,
            self.catalog_advertise.as_deref(),
            "--catalog-advertise",
        )?;
        let id = self.catalog_id.unwrap_or_else(|| node_replica_id(node_id));
        let tls = certs_cmd::load_tls(&self.catalog_tls_dir, "--catalog-tls-dir")?;
        let me = tls.identity();
        if me.role != strata_trust::Role::Node || me.name != node_id {
            anyhow::bail!(
                "--catalog-tls-dir {}: the certificate is a {me} certificate; this node agent \
                 needs a node certificate for {node_id:?} (`strata certs issue --role node \
                 --name {node_id}`)",
                self.catalog_tls_dir.display()
            );
        }
        Ok(CatalogPlacement::Learner(LearnerOptions {
            tls,
            group: self.catalog_join.clone(),
            listen: self.catalog_listen,
            advertise,
            identity: ReplicaIdentity {
                cluster: self.cluster.clone(),
                node_id: id,
            },
            node: node_id.to_owned(),
        }))
    }
}

#[derive(Subcommand, Debug)]
enum NodeCommand {
    /// List this node's orphans (strata LVs no PersistentVolume names, mounts
    /// of LVs that are gone, leftover kubelet directories); remove them only
    /// with --apply.
    Gc(node_gc::GcArgs),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,openraft=warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    // A catalog replica picks its own runtime (--worker-threads); the other
    // commands run on one thread per core.
    let runtime = || {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
    };
    match cli.command {
        Command::Node(args) => runtime()?.block_on(run_node(*args)),
        Command::Up(args) => runtime()?.block_on(run_up(args)),
        Command::Catalog(args) => args.runtime()?.block_on(catalog_cmd::run(args)),
        Command::Ctl(args) => std::process::exit(runtime()?.block_on(ctl::run(args))),
        Command::Certs(args) => certs_cmd::run(args),
        Command::Crd => {
            print!("{}", strata_k8s::crd_yaml());
            Ok(())
        }
    }
}

async fn run_up(args: UpArgs) -> anyhow::Result<()> {
    // Before anything is made: a zone that cannot be settled stops the start.
    let zone = args
        .tiering
        .site_zone(&ZoneEnvironment::of_this_process())?;
    let data_dir = std::path::absolute(&args.data_dir)
        .with_context(|| format!("--data-dir {}", args.data_dir.display()))?;
    let dm = strata_csi::loopvg::device_mapper_available();
    let extra = if dm {
        None
    } else {
        Some("\"global{activation=0}\"")
    };
    let config_text = format!(
        "[[device_class]]\nname = \"local\"\nvolume_group = \"{}\"\ntype = \"thick\"\ndefault = true\n[lvm]\n{}",
        args.volume_group,
        extra
            .map(|e| format!("extra_config = {e}\n"))
            .unwrap_or_default()
    );
    let config = NodeConfig::parse(&config_text)?;
    let lvm = server::open_lvm(&config)?;
    let pv_file = data_dir.join("lvm").join("pv.img");
    let (l, f, vg, size) = (
        lvm.clone(),
        pv_file.clone(),
        args.volume_group.clone(),
        args.size_gib << 30,
    );
    let loop_dev =
        tokio::task::spawn_blocking(move || strata_csi::loopvg::ensure(l.as_ref(), &f, size, &vg))
            .await?
            .with_context(|| {
                format!(
                    "preparing volume group {} on {}",
                    args.volume_group,
                    pv_file.display()
                )
            })?;
    let socket = data_dir.join("csi.sock");
    let kubelet = data_dir.join("kubelet");
    std::fs::create_dir_all(&kubelet).with_context(|| format!("creating {}", kubelet.display()))?;
    let kubelet_dir = KubeletDir::resolve(&kubelet)
        .with_context(|| format!("resolving {}", kubelet.display()))?;
    let volumes = data_dir.join("volumes");
    std::fs::create_dir_all(&volumes).with_context(|| format!("creating {}", volumes.display()))?;
    let volumes = std::fs::canonicalize(&volumes)
        .with_context(|| format!("resolving {}", volumes.display()))?;
    let volume_roots = args.tiering.volume_roots(volumes)?;
    let tiering = tiering_stack::open(StackOptions {
        data_dir: data_dir.clone(),
        tick: args.tiering.tick,
        mover: args.tiering.mover_options(zone.clone()),
        lake_options: args.tiering.lake_options,
        demo: true,
        catalog: CatalogPlacement::Own,
        volume_roots,
    })
    .await?;
    // The site's CA and certificates, for when the catalog goes beyond this
    // process (`strata catalog --tls-dir`, `strata ctl --tls-dir`).
    let tls_dir = data_dir.join("tls");
    let tls_ids = [
        (strata_trust::Role::Admin, "up"),
        (strata_trust::Role::Replica, ""),
    ]
    .map(|(role, name)| strata_trust::Identity::new(role, name).expect("a valid built-in name"));
    strata_trust::ensure_local_site(&tls_dir, "strata-up", &tls_ids)
        .with_context(|| format!("making the site's certificates in {}", tls_dir.display()))?;
    let exe = std::env::current_exe()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| "strata".to_owned());
    println!("strata {} up", env!("CARGO_PKG_VERSION"));
    println!("  data dir       {}", data_dir.display());
    println!("  binary         {exe}");
    println!(
        "  volume group   {} on {} ({} GiB sparse file {})",
        args.volume_group,
        loop_dev,
        args.size_gib,
        pv_file.display()
    );
    println!("  device class   local (thick, default)");
    println!("  CSI endpoint   unix://{}", socket.display());
    println!(
        "  CSI paths      beneath {} (staging and target paths of the node calls)",
        kubelet_dir.path().display()
    );
    println!(
        "  catalog        {} (one replica)",
        tiering.catalog.dir().display()
    );
    if let Some(demo) = &tiering.demo {
        println!("  lake           file://{}", demo.lake.display());
        if let Some((dir, policy)) = &demo.seeded {
            println!(
                "  demo volume    demo at {} (policy {policy}: files unmodified for 1d move to the lake;",
                dir.display()
            );
            println!(
                "                 its sample files were written with an mtime two days back and move once \
                 the {} settle window has passed)",
                humantime::format_duration(args.tiering.settle)
            );
        }
    }
    println!(
        "  certificates   {} (site CA in ca/, admin/ and replica/ for --tls-dir)",
        tls_dir.display()
    );
    println!("  time zone      {zone} (policy schedules and bandwidth windows)");
    println!("  tiering API    {}", tiering.endpoint);
    println!(
        "  try            {exe} ctl --endpoint {} status",
        tiering.endpoint
    );
    println!("  metrics        http://{}/metrics", args.metrics_addr);
    if !dm {
        println!(
            "  note           this kernel has no device-mapper: volumes are created in LVM metadata only"
        );
        println!("                 (activation, mkfs and mount need a kernel with dm_mod)");
    }
    println!(
        "Stop with Ctrl-C; the volume group and its volumes stay in {}.",
        data_dir.display()
    );
    serve(
        Driver::new(config, hostname(), lvm).with_kubelet_dir(kubelet_dir),
        &format!("unix://{}", socket.display()),
        &args.metrics_addr,
        Some(Arc::new(tiering)),
        None,
    )
    .await
}

pub(crate) fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "localhost".into())
}

async fn run_node(args: NodeArgs) -> anyhow::Result<()> {
    if let Some(NodeCommand::Gc(gc)) = args.command {
        return node_gc::run(gc).await;
    }
    let node_id = args.node_id.clone().unwrap_or_default();
    if node_id.is_empty() {
        anyhow::bail!("--node-id: required (or set KUBE_NODE_NAME)");
    }
    let config_path = args.config.clone().context("--config: required")?;
    let config = NodeConfig::load(&config_path)
        .with_context(|| format!("--config {}", config_path.display()))?;
    let lvm = server::open_lvm(&config)?;
    let kubelet_dir = KubeletDir::resolve(&args.orphans.kubelet_dir)
        .with_context(|| format!("--kubelet-dir {}", args.orphans.kubelet_dir.display()))?;
    let tiering = match &args.tiering_dir {
        Some(dir) => {
            // The kubelet makes its CSI directory (it need not exist yet).
            let volume_roots = args
                .tiering
                .volume_roots(kubelet_dir.path().join(KUBELET_CSI_DIR))?;
            let zone = args
                .tiering
                .site_zone(&ZoneEnvironment::of_this_process())?;
            let stack = tiering_stack::open(StackOptions {
                data_dir: std::path::absolute(dir)
                    .with_context(|| format!("--tiering-dir {}", dir.display()))?,
                tick: args.tiering.tick,
                mover: args.tiering.mover_options(zone.clone()),
                lake_options: args.tiering.lake_options,
                demo: false,
                catalog: args.catalog.placement(&node_id)?,
                volume_roots,
            })
            .await
            .with_context(|| format!("--tiering-dir {}", dir.display()))?;
            info!(
                catalog = %stack.catalog.dir().display(),
                api = %stack.endpoint,
                site_timezone = %zone,
                "tiering agent on"
            );
            Some(Arc::new(stack))
        }
        None => None,
    };
    let driver = Driver::new(config, node_id, lvm)
        .with_kubelet_dir(kubelet_dir)
        .advertise_get_snapshot(args.advertise_get_snapshot);
    // A device class changing state is an Event on the Node, when there is
    // an API to post it to (in-cluster, or KUBECONFIG).
    if let Some(events) = strata_csi::node_events::KubeNodeEvents::try_default().await {
        driver.set_class_events(Arc::new(events));
    }
    let orphan_scan = if args.orphan_scan_interval.is_zero() {
        None
    } else {
        Some(OrphanScan {
            owners: node_gc::volume_owners(&args.orphans).await,
            interval: args.orphan_scan_interval,
            args: args.orphans,
        })
    };
    serve(
        driver,
        &args.csi_endpoint,
        &args.metrics_addr,
        tiering,
        orphan_scan,
    )
    .await
}

/// The node's periodic orphan scan.
struct OrphanScan {
    owners: Arc<dyn strata_csi::owners::VolumeOwners>,
    interval: std::time::Duration,
    args: OrphanArgs,
}

/// How often the node re-reads what it has staged, in case a hook's
/// catalog write failed.
const RECONCILE_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

/// How long the node plugin waits at start for the first reconcile (a
/// learner joining its group takes a second or two).
const FIRST_RECONCILE: std::time::Duration = std::time::Duration::from_secs(10);

/// Serve the node plugin until SIGTERM or Ctrl-C.
async fn serve(
    driver: Driver,
    endpoint: &str,
    metrics_addr: &str,
    tiering: Option<Arc<TieringStack>>,
    orphan_scan: Option<OrphanScan>,
) -> anyhow::Result<()> {
    let socket = server::socket_path(endpoint)?;
    let metrics_addr: Option<SocketAddr> = if metrics_addr.is_empty() {
        None
    } else {
        Some(
            metrics_addr
                .parse()
                .with_context(|| format!("--metrics-addr: {metrics_addr:?} is not host:port"))?,
        )
    };
    // Bound first: a port in use fails the start, not a background task.
    let metrics_listener = match metrics_addr {
        Some(addr) => Some(server::bind_metrics(addr).await.context("--metrics-addr")?),
        None => None,
    };
    let driver = Arc::new(driver);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut extra_metrics: Option<ExtraMetrics> = None;
    if let Some(stack) = &tiering {
        let volumes = CsiVolumes::new(stack.agent.clone(), driver.node_id.clone());
        driver.set_volume_users(volumes.clone());
        // A learner of the replicated catalog answers only once it is
        // served and added to its group.
        stack.serve_catalog(stop_rx.clone());
        // Before the agent starts: a volume that was unmounted while the
        // node was down must not be worked on through its empty mount point.
        // A catalog that does not answer (the group is not up yet) holds up
        // the node plugin only so long; the reconcile loop goes on trying.
        match tokio::time::timeout(FIRST_RECONCILE, volumes.reconcile(&driver)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => warn!("tiering volumes: {e:#}"),
            Err(_) => warn!(
                "tiering volumes: the catalog did not answer within {FIRST_RECONCILE:?}; \
                 reconciling again in the background"
            ),
        }
        tokio::spawn(volumes.keep_in_step(driver.clone(), RECONCILE_EVERY, stop_rx.clone()));
        stack.run(stop_rx.clone()).await?;
        let s = stack.clone();
        extra_metrics = Some(Arc::new(move || s.metrics_text()));
    }
    let d = driver.clone();
    // Logs each device class that cannot take volumes (and sets the gauges);
    // the plugin serves either way.
    let checked = tokio::task::spawn_blocking(move || {
        d.ensure_volume_groups();
        d.check_device_classes()
    })
    .await?;
    if let Err(e) = checked {
        warn!("cannot check the device classes: {e}");
    }
    if let Some(scan) = orphan_scan {
        let scanner = strata_csi::orphans::Scanner {
            driver: driver.clone(),
            owners: scan.owners,
            kubelet_dir: scan.args.kubelet_dir,
            settle: scan.args.orphan_settle,
            filling_grace: *scan.args.filling_grace,
        };
        tokio::spawn(strata_csi::orphans::watch(
            scanner,
            scan.interval,
            stop_rx.clone(),
        ));
    }
    if let Some(listener) = metrics_listener {
        let d = driver.clone();
        tokio::spawn(async move {
            if let Err(e) = server::serve_metrics(d, listener, extra_metrics).await {
                error!("{e}");
            }
        });
    }
    let served = server::serve_csi(driver, &socket, shutdown_signal()).await;
    let _ = stop_tx.send(true);
    if let Some(stack) = tiering {
        stack.stopped().await?;
    }
    served?;
    info!("stopped");
    Ok(())
}

pub(crate) async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = term.recv() => {},
        _ = tokio::signal::ctrl_c() => {},
    }
    info!("shutting down");
}

#[cfg(test)]
mod tiering_flag_tests {
    //! The tiering flags of `strata up` and `strata node` reach the mover's
    //! options, and bad values are refused with the flag named.

    use std::time::Duration;

    use clap::Parser;
    use strata_tiering::mover::MoverOptions;
    use strata_tiering::site_zone::{SiteZone, ZoneEnvironment, ZoneSource};

    use super::{Cli, Command, TieringArgs};

    fn up(args: &[&str]) -> Result<MoverOptions, clap::Error> {
        let line = ["strata", "up"].iter().chain(args).copied();
        match Cli::try_parse_from(line)?.command {
            Command::Up(up) => Ok(up.tiering.mover_options(SiteZone::default())),
            other => panic!("not up: {other:?}"),
        }
    }

    #[test]
    fn defaults_are_the_movers() {
        let got = up(&[]).unwrap();
        let want = MoverOptions::default();
        assert_eq!(got.concurrency, want.concurrency);
        assert_eq!(got.hash_concurrency, want.hash_concurrency);
        assert_eq!(got.recall_concurrency, want.recall_concurrency);
        assert_eq!(got.confirm_window, want.confirm_window);
        assert_eq!(got.reverify_after, Duration::from_secs(3600));
    }

    #[test]
    fn flags_set_the_movers_options() {
        let got = up(&[
            "--upload-concurrency",
            "64",
            "--hash-concurrency=2",
            "--recall-concurrency",
            "8",
            "--confirm-window",
            "0s",
            "--site",
            "plant-7",
            "--settle",
            "5s",
            "--reverify-after",
            "15m",
        ])
        .unwrap();
        assert_eq!(got.concurrency, 64);
        assert_eq!(got.hash_concurrency, 2);
        assert_eq!(got.recall_concurrency, 8);
        assert_eq!(got.confirm_window, Duration::ZERO);
        assert_eq!(got.site, "plant-7");
        assert_eq!(got.scan.settle, Duration::from_secs(5));
        assert_eq!(got.reverify_after, Duration::from_secs(900));
    }

    fn tiering(args: &[&str]) -> Result<TieringArgs, clap::Error> {
        let line = ["strata", "up"].iter().chain(args).copied();
        match Cli::try_parse_from(line)?.command {
            Command::Up(up) => Ok(up.tiering),
            other => panic!("not up: {other:?}"),
        }
    }

    #[test]
    fn site_timezone_is_named_or_found_and_reaches_the_mover() {
        let tmp = tempfile::tempdir().unwrap();
        let localtime = tmp.path().join("localtime");
        std::os::unix::fs::symlink("/usr/share/zoneinfo/America/Chicago", &localtime).unwrap();
        let env = |tz: Option<&str>| ZoneEnvironment {
            tz: tz.map(str::to_owned),
            localtime: localtime.clone(),
        };
        let named = tiering(&["--site-timezone", "Europe/Berlin"]).unwrap();
        let zone = named.site_zone(&env(Some("Asia/Tokyo"))).unwrap();
        assert_eq!(
            (zone.name(), zone.source()),
            ("Europe/Berlin", &ZoneSource::Named)
        );
        assert_eq!(named.mover_options(zone.clone()).site_zone, zone);
        // Unset, or set empty (a ConfigMap value left blank): TZ, then
        // /etc/localtime.
        for args in [&[][..], &["--site-timezone", ""]] {
            let t = tiering(args).unwrap();
            let zone = t.site_zone(&env(Some("Asia/Tokyo"))).unwrap();
            assert_eq!(
                (zone.name(), zone.source()),
                ("Asia/Tokyo", &ZoneSource::TzVariable)
            );
            let zone = t.site_zone(&env(None)).unwrap();
            assert_eq!(zone.name(), "America/Chicago");
        }
        // A TZ that names no zone stops the start, saying so.
        let e = tiering(&[])
            .unwrap()
            .site_zone(&env(Some("CET-1CEST")))
            .unwrap_err();
        let e = format!("{e:#}");
        assert!(
            e.contains("TZ \"CET-1CEST\": not an IANA time zone name"),
            "{e}"
        );
        // And without a flag or an environment: UTC.
        let zone = tiering(&[])
            .unwrap()
            .site_zone(&ZoneEnvironment {
                tz: None,
                localtime: tmp.path().join("none"),
            })
            .unwrap();
        assert_eq!(zone, SiteZone::default());
    }

    #[test]
    fn volume_roots_are_resolved_and_a_missing_one_is_named() {
        let tmp = tempfile::tempdir().unwrap();
        let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
        std::fs::create_dir(&a).unwrap();
        std::fs::create_dir(&b).unwrap();
        let joined = format!("{},{}", a.display(), b.display());
        let Command::Up(args) = Cli::try_parse_from(["strata", "up", "--volume-root", &joined])
            .unwrap()
            .command
        else {
            panic!("not up")
        };
        let own = std::path::PathBuf::from("/own");
        let roots = args.tiering.volume_roots(own.clone()).unwrap();
        let real = |p: &std::path::Path| std::fs::canonicalize(p).unwrap();
        assert_eq!(roots, [own.clone(), real(&a), real(&b)]);
        let missing = tmp.path().join("missing");
        let Command::Up(args) =
            Cli::try_parse_from(["strata", "up", "--volume-root", missing.to_str().unwrap()])
                .unwrap()
                .command
        else {
            panic!("not up")
        };
        let e = args.tiering.volume_roots(own).unwrap_err().to_string();
        assert_eq!(
            e,
            format!("--volume-root {}: not a directory", missing.display())
        );
    }

    #[test]
    fn bad_values_name_the_flag_and_the_reason() {
        for (args, flag, reason) in [
            (
                &["--upload-concurrency", "0"][..],
                "--upload-concurrency",
                "out of range",
            ),
            (
                &["--reverify-after", "soon"],
                "--reverify-after",
                "a duration like 1h",
            ),
            (
                &["--hash-concurrency", "many"],
                "--hash-concurrency",
                "whole number",
            ),
            (
                &["--recall-concurrency", "2000"],
                "--recall-concurrency",
                "1 to 1024",
            ),
            (
                &["--confirm-window", "1m"],
                "--confirm-window",
                "at most 10s",
            ),
            (
                &["--confirm-window", "soon"],
                "--confirm-window",
                "like 200ms",
            ),
            (
                &["--site-timezone", "Europe/Berln"],
                "--site-timezone",
                "'Europe/Berln' for '--site-timezone <ZONE>': not an IANA time zone name",
            ),
            (
                &["--site-timezone", "+02:00"],
                "--site-timezone",
                "not an IANA time zone name (like Europe/Berlin",
            ),
        ] {
            let err = up(args).unwrap_err().to_string();
            assert!(
                err.contains(flag) && err.contains(reason),
                "{args:?}: {err}"
            );
        }
    }
}

#[cfg(test)]
mod deploy_tests {
    //! The strata containers of deploy/ start with arguments and environment
    //! this build accepts (flag names, value formats, conflicts).

    use clap::{CommandFactory, Parser};
    use serde::Deserialize;

    use super::Cli;

    /// The command line of every `strata` container in the YAML documents
    /// of `file`, its environment turned into the flags that read it.
    fn command_lines(file: &str) -> Vec<Vec<String>> {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(file);
        let text = std::fs::read_to_string(&path).unwrap();
        let mut lines = Vec::new();
        for doc in serde_yaml_ng::Deserializer::from_str(&text) {
            let doc = serde_yaml_ng::Value::deserialize(doc).unwrap();
            let containers = &doc["spec"]["template"]["spec"]["containers"];
            for c in containers.as_sequence().into_iter().flatten() {
                let image = c["image"].as_str().unwrap_or_default();
                if !image.contains("/strata:") {
                    continue;
                }
                let mut line: Vec<String> = vec!["strata".into()];
                line.extend(
                    c["args"]
                        .as_sequence()
                        .into_iter()
                        .flatten()
                        .map(|a| a.as_str().unwrap().to_owned()),
                );
                line.extend(env_as_flags(&line[1], &env_of(c)));
                lines.push(line);
            }
        }
        assert!(!lines.is_empty(), "no strata container in {file}");
        lines
    }

    /// A container's environment variables that have a plain value.
    fn env_of(container: &serde_yaml_ng::Value) -> Vec<(String, String)> {
        container["env"]
            .as_sequence()
            .into_iter()
            .flatten()
            .filter_map(|e| {
                Some((
                    e["name"].as_str()?.to_owned(),
                    e["value"].as_str()?.to_owned(),
                ))
            })
            .collect()
    }

    /// `--flag=value` for each variable a flag of `subcommand` reads
    /// (`$(POD_NAME)` and the like stand in for what the kubelet fills in).
    fn env_as_flags(subcommand: &str, env: &[(String, String)]) -> Vec<String> {
        let cli = Cli::command();
        let sub = cli.find_subcommand(subcommand).unwrap();
        let mut flags = Vec::new();
        for (name, value) in env {
            let value = value
                .replace("$(POD_NAME)", "strata-catalog-0")
                .replace("$(POD_IP)", "10.0.0.7");
            if let Some(arg) = sub
                .get_arguments()
                .find(|a| a.get_env().is_some_and(|e| e == name.as_str()))
            {
                flags.push(format!("--{}={value}", arg.get_long().unwrap()));
            }
        }
        flags
    }

    #[test]
    fn the_deployed_command_lines_parse() {
        for file in [
            "deploy/base/node-daemonset.yaml",
            "deploy/base/resizer-deployment.yaml",
            "deploy/replicated-catalog/statefulset.yaml",
        ] {
            for line in command_lines(file) {
                if let Err(e) = Cli::try_parse_from(&line) {
                    panic!("{file}: {line:?}: {e}");
                }
            }
        }
    }

    #[test]
    fn the_node_agent_patch_makes_a_learner() {
        let mut line = command_lines("deploy/base/node-daemonset.yaml").remove(0);
        let patch = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("deploy/replicated-catalog/node-agent-learner.yaml"),
        )
        .unwrap();
        let doc: serde_yaml_ng::Value = serde_yaml_ng::from_str(&patch).unwrap();
        let env = env_of(&doc["spec"]["template"]["spec"]["containers"][0]);
        line.extend(env_as_flags("node", &env));
        let cli = Cli::try_parse_from(&line).unwrap_or_else(|e| panic!("{line:?}: {e}"));
        let super::Command::Node(node) = cli.command else {
            panic!("{line:?}")
        };
        assert_eq!(node.catalog.catalog_join.len(), 3, "{line:?}");
        // The node's certificate (the deployed directory is checked by
        // the_node_agent_patch_mounts_the_nodes_certificate): one for this
        // node starts it, another node's is refused.
        let tmp = tempfile::tempdir().unwrap();
        let ids = ["edge-1", "edge-2"]
            .map(|n| strata_trust::Identity::new(strata_trust::Role::Node, n).unwrap());
        let dirs = strata_trust::ensure_local_site(tmp.path(), "test", &ids).unwrap();
        let mut catalog = node.catalog;
        catalog.catalog_tls_dir = dirs[1].clone();
        let e = catalog.placement("edge-1").err().unwrap().to_string();
        assert!(e.contains("node edge-2") && e.contains("\"edge-1\""), "{e}");
        catalog.catalog_tls_dir = dirs[0].clone();
        let placement = catalog.placement("edge-1").unwrap();
        let crate::tiering_stack::CatalogPlacement::Learner(l) = placement else {
            panic!("not a learner: {line:?}")
        };
        assert_eq!(l.advertise, "10.0.0.7:7421");
        assert_eq!(l.identity.cluster, "strata-catalog");
    }

    /// The first YAML document of `file` that has a pod template.
    fn workload(file: &str) -> serde_yaml_ng::Value {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(file);
        let text = std::fs::read_to_string(&path).unwrap();
        serde_yaml_ng::Deserializer::from_str(&text)
            .map(|d| serde_yaml_ng::Value::deserialize(d).unwrap())
            .find(|d| !d["spec"]["template"]["spec"].is_null())
            .unwrap_or_else(|| panic!("no pod template in {file}"))
    }

    /// The directory a parsed command line reads certificates from (the flag
    /// `id` of `subcommand`: its value, its variable, or its default).
    fn tls_dir(line: &[String], subcommand: &str, id: &str) -> String {
        let matches = Cli::command()
            .try_get_matches_from(line)
            .unwrap_or_else(|e| panic!("{line:?}: {e}"));
        let sub = matches.subcommand_matches(subcommand).unwrap();
        let dir: &std::path::PathBuf = sub.get_one(id).unwrap();
        dir.to_str().unwrap().to_owned()
    }

    /// Checks that `dir` is mounted read-only in `container` from a volume of
    /// `pod` that `is_source` accepts, and that no other mount of the
    /// container is a directory above it (the runtime cannot create a mount
    /// point inside a read-only volume such as a ConfigMap).
    fn assert_mounted(
        what: &str,
        dir: &str,
        container: &serde_yaml_ng::Value,
        volumes: &[serde_yaml_ng::Value],
        is_source: impl Fn(&serde_yaml_ng::Value) -> bool,
    ) {
        let mounts: Vec<_> = container["volumeMounts"]
            .as_sequence()
            .into_iter()
            .flatten()
            .collect();
        let mount = mounts
            .iter()
            .find(|m| m["mountPath"].as_str() == Some(dir))
            .unwrap_or_else(|| panic!("{what}: nothing is mounted at the TLS directory {dir}"));
        assert_eq!(mount["readOnly"].as_bool(), Some(true), "{what}: {dir}");
        let name = mount["name"].as_str().unwrap();
        let volume = volumes
            .iter()
            .find(|v| v["name"].as_str() == Some(name))
            .unwrap_or_else(|| panic!("{what}: no volume {name}"));
        assert!(is_source(volume), "{what}: volume {name}: {volume:?}");
        for m in &mounts {
            let p = m["mountPath"].as_str().unwrap();
            assert!(
                !dir.starts_with(&format!("{}/", p.trim_end_matches('/'))),
                "{what}: {p} is mounted above the TLS directory {dir}"
            );
        }
    }

    #[test]
    fn the_catalog_replicas_mount_their_certificate_secret() {
        let file = "deploy/replicated-catalog/statefulset.yaml";
        let line = command_lines(file).remove(0);
        let dir = tls_dir(&line, "catalog", "tls_dir");
        let pod = &workload(file)["spec"]["template"]["spec"];
        let container = &pod["containers"][0];
        let volumes = pod["volumes"].as_sequence().unwrap();
        assert_mounted(file, &dir, container, volumes, |v| {
            v["secret"]["secretName"].as_str() == Some("strata-catalog-tls")
        });
        // No API access, not root.
        assert_eq!(pod["automountServiceAccountToken"].as_bool(), Some(false));
        assert_eq!(pod["securityContext"]["runAsNonRoot"].as_bool(), Some(true));
    }

    #[test]
    fn the_node_agent_patch_mounts_the_nodes_certificate() {
        let base = workload("deploy/base/node-daemonset.yaml");
        let patch = workload("deploy/replicated-catalog/node-agent-learner.yaml");
        let mut line = command_lines("deploy/base/node-daemonset.yaml").remove(0);
        let patched = &patch["spec"]["template"]["spec"];
        line.extend(env_as_flags("node", &env_of(&patched["containers"][0])));
        let dir = tls_dir(&line, "node", "catalog_tls_dir");
        // The strata container as the patch leaves it: its mounts and the
        // patch's, the pod's volumes and the patch's.
        let mut container = base["spec"]["template"]["spec"]["containers"][0].clone();
        let mut mounts = container["volumeMounts"].as_sequence().unwrap().clone();
        mounts.extend(
            patched["containers"][0]["volumeMounts"]
                .as_sequence()
                .unwrap()
                .iter()
                .cloned(),
        );
        container["volumeMounts"] = serde_yaml_ng::Value::Sequence(mounts);
        let mut volumes = base["spec"]["template"]["spec"]["volumes"]
            .as_sequence()
            .unwrap()
            .clone();
        volumes.extend(patched["volumes"].as_sequence().unwrap().iter().cloned());
        assert_mounted("the patched strata-node", &dir, &container, &volumes, |v| {
            v["hostPath"]["path"].as_str() == Some(dir.as_str())
                && v["hostPath"]["type"].as_str() == Some("Directory")
        });
    }
}
