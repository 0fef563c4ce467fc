//! Replicated catalog benchmark (issue 4, "Performance"): a three-replica
//! strata catalog against a three-member etcd, side by side in one run, on
//! this machine and its disk. Prints figures and ratios, never asserts them.
//!
//! Both groups run as real processes on loopback, with their data under
//! `$STRATA_CACHE/bench` (on disk) and the same durability: etcd fsyncs its
//! WAL before it acknowledges (its default), strata's replicas fsync every
//! appended entry and vote before they acknowledge. Each write is one record
//! of 256 bytes: for etcd a `Put` of a 256-byte value (`/etcdserverpb.KV/Put`,
//! etcd's own gRPC API), for strata a `Propose` whose log entry (JSON, as the
//! log stores it) is 256 bytes (a `RegisterVolume` with a padded path). Every
//! write goes to the group's leader, from 1, 16 and 64 clients at once (each
//! client one write at a time; in flight at once is the groups' batching).
//! The two sides of a row take turns in slices, so a burst of other I/O on
//! the disk weighs on both alike.
//!
//! Goal (issue 4, with TLS on both sides since issue 21): strata ≥ 1.0×
//! etcd's committed writes per second, and a p99 latency ≤ 1.5× etcd's.
//!
//! strata's replicas speak only mutual TLS 1.3 (among themselves and to
//! clients). etcd runs twice: with peer and client TLS and client
//! certificates (`--peer-*`, `--cert-file`, `--client-cert-auth`; its
//! certificate made by the same `strata_trust::issue` as strata's), which
//! the goal is judged against, and in plain text, so the rows show what TLS
//! costs (etcd's TLS against its plain rate, and strata against both).
//!
//! ```text
//! apt-get install etcd-server etcd-client     # etcd 3.4 in Debian 12
//! source scripts/cargo-env.sh && cargo bench --bench catalog_group
//! ```
//!
//! Before the first row both groups take unmeasured writes, so that strata's
//! replicas are measured in their steady state: a replica writes its log's
//! WAL over recycled files once it has filled two (about 64 MiB of log), and
//! a fresh store is slower until then (each sync of a growing file also
//! writes its inode). The warm-up prints how many writes it took and each
//! replica's count of reused WAL files; etcd gets as many writes.
//!
//! `STRATA_BENCH_GROUP_WRITES` sets the writes per slice (default 1000),
//! `STRATA_BENCH_GROUP_CLIENTS` the rows' client counts (default `1,16,64`;
//! the goal is judged at all three),
//! `STRATA_BENCH_GROUP_WARMUP` the warm-up's writes at most (default
//! 500,000; 0 measures fresh stores),
//! `STRATA_BENCH_GROUP_REPLICAS` the members of each group (default 3; 1
//! shows the cost of one replica without replication); `ETCD_BIN` another
//! etcd; `STRATA_BIN` another strata binary (default: this build's).

#[path = "common/mod.rs"]
mod common;
#[path = "../tests/common/mod.rs"]
mod harness;
#[path = "common/latency.rs"]
#[allow(dead_code)]
mod latency;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{env_number, machine, strata_cache};
use harness::free_port;
use latency::pct;
use strata_proto::strata::v1 as pb;
use strata_tiering::catalog::{Command as CatalogCommand, LogEntry, Timestamp, Volume};
use strata_tiering::raft::RemoteCatalog;
use tonic::transport::Channel;

const RECORD: usize = 256;
const CLIENTS: [usize; 3] = [1, 16, 64];
const SLICES: usize = 4;
const GOAL_THROUGHPUT: f64 = 1.0;
const GOAL_P99: f64 = 1.5;
/// Unmeasured writes to each group before the first row, at most: strata's
/// go on until each replica's RocksDB has started a WAL file by writing over
/// a recycled one, as a replica that has run for a while does (a fresh
/// store's first WAL files are new, and grow with each write), and etcd
/// gets as many.
const DEFAULT_WARMUP: u64 = 500_000;
const WARMUP_CHUNK: u64 = 20_000;
const WARMUP_CLIENTS: usize = 64;
const WARMUP_KEYS: Keys = Keys::Cycle(64);

/// The client counts of the rows: `STRATA_BENCH_GROUP_CLIENTS` (a
/// comma-separated list), else [`CLIENTS`].
fn clients_wanted() -> Vec<usize> {
    let Ok(list) = std::env::var("STRATA_BENCH_GROUP_CLIENTS") else {
        return CLIENTS.to_vec();
    };
    list.split(',')
        .map(|c| match c.trim().parse::<usize>() {
            Ok(n) if n > 0 => n,
            _ => {
                panic!("STRATA_BENCH_GROUP_CLIENTS: expected client counts like 1,16,64, got {c:?}")
            }
        })
        .collect()
}

/// Processes killed (and their data removed) on drop.
struct Procs {
    children: Vec<Child>,
    dir: PathBuf,
}

impl Drop for Procs {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn wait_listening(addr: &str, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(addr).is_err() {
        assert!(Instant::now() < deadline, "{what} never listened on {addr}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// etcd's `Put` and its answer, as etcd's rpc.proto defines them (the fields
/// used here; prost skips the rest of the answer). The `etcd-client` crate
/// would need protoc to build; this is the one call the bench makes.
#[derive(Clone, PartialEq, prost::Message)]
struct PutRequest {
    #[prost(bytes = "vec", tag = "1")]
    key: Vec<u8>,
    #[prost(bytes = "vec", tag = "2")]
    value: Vec<u8>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct PutResponse {}

async fn etcd_put(channel: Channel, key: Vec<u8>, value: Vec<u8>) -> Result<(), tonic::Status> {
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready()
        .await
        .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    let path = http::uri::PathAndQuery::from_static("/etcdserverpb.KV/Put");
    let codec = tonic_prost::ProstCodec::<PutRequest, PutResponse>::default();
    grpc.unary(tonic::Request::new(PutRequest { key, value }), path, codec)
        .await
        .map(|_| ())
}

/// etcd's certificates for its TLS group: a server-and-client certificate
/// of the bench site for 127.0.0.1 (etcd checks its peers' IP addresses),
/// and the site's CA.
struct EtcdTls {
    dir: PathBuf,
}

impl EtcdTls {
    /// etcd's flags for peer and client TLS, both with client certificates.
    fn flags(&self) -> Vec<String> {
        let f = |name: &str| self.dir.join(name).display().to_string();
        [
            ("--cert-file", f("tls.crt")),
            ("--key-file", f("tls.key")),
            ("--trusted-ca-file", f("ca.crt")),
            ("--peer-cert-file", f("tls.crt")),
            ("--peer-key-file", f("tls.key")),
            ("--peer-trusted-ca-file", f("ca.crt")),
        ]
        .into_iter()
        .flat_map(|(k, v)| [k.to_owned(), v])
        .chain([
            "--client-cert-auth".into(),
            "--peer-client-cert-auth".into(),
        ])
        .collect()
    }

    /// etcdctl's flags to talk to it.
    fn ctl_flags(&self) -> Vec<String> {
        let f = |name: &str| self.dir.join(name).display().to_string();
        vec![
            format!("--cacert={}", f("ca.crt")),
            format!("--cert={}", f("tls.crt")),
            format!("--key={}", f("tls.key")),
        ]
    }
}

/// A three-member etcd (with peer and client TLS if `tls`); answers its
/// processes and the leader's client address.
fn start_etcd(root: &Path, replicas: u64, tls: Option<&EtcdTls>) -> (Procs, String) {
    let bin = std::env::var("ETCD_BIN").unwrap_or_else(|_| "etcd".into());
    let (name, scheme) = if tls.is_some() {
        ("etcd-tls", "https")
    } else {
        ("etcd", "http")
    };
    let dir = root.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    let peers: Vec<(u16, u16)> = (0..replicas).map(|_| (free_port(), free_port())).collect();
    let cluster = peers
        .iter()
        .enumerate()
        .map(|(i, (_, p))| format!("e{i}={scheme}://127.0.0.1:{p}"))
        .collect::<Vec<_>>()
        .join(",");
    let mut procs = Procs {
        children: Vec::new(),
        dir: dir.clone(),
    };
    for (i, (client, peer)) in peers.iter().enumerate() {
        let log = std::fs::File::create(dir.join(format!("e{i}.log"))).unwrap();
        let child = Command::new(&bin)
            .args(["--name", &format!("e{i}")])
            .arg("--data-dir")
            .arg(dir.join(format!("e{i}")))
            .args([
                "--listen-client-urls",
                &format!("{scheme}://127.0.0.1:{client}"),
            ])
            .args([
                "--advertise-client-urls",
                &format!("{scheme}://127.0.0.1:{client}"),
            ])
            .args([
                "--listen-peer-urls",
                &format!("{scheme}://127.0.0.1:{peer}"),
            ])
            .args([
                "--initial-advertise-peer-urls",
                &format!("{scheme}://127.0.0.1:{peer}"),
            ])
            .args(tls.map(EtcdTls::flags).unwrap_or_default())
            .args(["--initial-cluster", &cluster])
            .args([
                "--initial-cluster-state",
                "new",
                "--initial-cluster-token",
                "bench",
            ])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("start {bin} (apt-get install etcd-server): {e}"));
        procs.children.push(child);
    }
    let endpoints: Vec<String> = peers
        .iter()
        .map(|(c, _)| format!("127.0.0.1:{c}"))
        .collect();
    for e in &endpoints {
        wait_listening(e, "etcd");
    }
    // The leader, from `etcdctl endpoint status` (it names each member's
    // leader by member id).
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let urls: Vec<String> = endpoints
            .iter()
            .map(|e| format!("{scheme}://{e}"))
            .collect();
        let out = Command::new("etcdctl")
            .env("ETCDCTL_API", "3")
            .args(tls.map(EtcdTls::ctl_flags).unwrap_or_default())
            .args([
                "--endpoints",
                &urls.join(","),
                "endpoint",
                "status",
                "-w",
                "json",
            ])
            .output()
            .expect("run etcdctl (apt-get install etcd-client)");
        if out.status.success()
            && let Ok(v) = serde_json::from_slice::<serde_json::Value>(&out.stdout)
            && let Some(leader) = v.as_array().and_then(|members| {
                members.iter().find_map(|m| {
                    let h = &m["Status"]["header"];
                    (h["member_id"] == m["Status"]["leader"] && h["member_id"] != 0).then(|| {
                        let url = m["Endpoint"].as_str().unwrap();
                        url.split_once("://").map_or(url, |(_, a)| a).to_owned()
                    })
                })
            })
        {
            return (procs, leader);
        }
        assert!(Instant::now() < deadline, "etcd elected no leader");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A three-replica strata catalog; answers its processes and the leader's
/// address.
/// The bench site's certificates under `root`: a replica's directory and
/// an admin's, loaded (the replicas talk, and are talked to, over mutual
/// TLS only).
fn site(root: &Path) -> (std::path::PathBuf, strata_trust::SiteTls) {
    use strata_trust::{Identity, Role};
    let ids = [
        Identity::new(Role::Replica, "").unwrap(),
        Identity::new(Role::Admin, "bench").unwrap(),
    ];
    let dirs = strata_trust::ensure_local_site(&root.join("site"), "bench", &ids).unwrap();
    let admin = strata_trust::SiteTls::load(&dirs[1]).unwrap();
    (dirs[0].clone(), admin)
}

/// etcd's certificate from the same CA (`strata certs issue` with
/// `--ip 127.0.0.1`): the same tool, the same key type, for both groups.
fn etcd_tls(root: &Path) -> EtcdTls {
    use strata_trust::{Identity, IssueRequest, Role};
    site(root);
    let dir = root.join("site").join("etcd");
    if !dir.join("tls.key").exists() {
        let mut req = IssueRequest::new(
            Identity::new(Role::Replica, "etcd").unwrap(),
            Duration::from_secs(86_400),
        );
        req.ips = vec![std::net::IpAddr::from([127, 0, 0, 1])];
        strata_trust::issue(&root.join("site").join("ca"), &req, &dir).unwrap();
    }
    EtcdTls { dir }
}

/// A channel to etcd at `addr` over mutual TLS with the bench admin's
/// certificate (etcd's certificate is of the same CA).
async fn etcd_tls_channel(root: &Path, addr: &str) -> Channel {
    let connector = strata_trust::TlsConnector::new(
        &site(root).1,
        strata_trust::Expect::role(strata_trust::Role::Replica),
    )
    .unwrap();
    tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .tcp_nodelay(true)
        .connect_with_connector(connector)
        .await
        .unwrap()
}

async fn start_strata(root: &Path, replicas: u64) -> (Procs, String) {
    let bin = harness::strata_bin();
    let dir = root.join("strata");
    std::fs::create_dir_all(&dir).unwrap();
    let (replica_tls, admin_tls) = site(root);
    let mut procs = Procs {
        children: Vec::new(),
        dir: dir.clone(),
    };
    let addrs: Vec<String> = (0..replicas)
        .map(|_| format!("127.0.0.1:{}", free_port()))
        .collect();
    for (i, addr) in addrs.iter().enumerate() {
        let id = i as u64 + 1;
        let log = std::fs::File::create(dir.join(format!("r{id}.log"))).unwrap();
        let mut c = Command::new(&bin);
        c.args(["catalog", "--id", &id.to_string(), "--cluster", "bench"])
            .args(["--listen", addr, "--metrics-addr", ""])
            .arg("--tls-dir")
            .arg(&replica_tls)
            .arg("--data-dir")
            .arg(dir.join(format!("r{id}")))
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(log);
        if id == 1 {
            c.arg("--bootstrap");
        }
        procs
            .children
            .push(c.spawn().expect("start strata catalog"));
        wait_listening(addr, "strata catalog");
    }
    let admin =
        RemoteCatalog::new(&addrs[..1], "bench", Duration::from_secs(60), &admin_tls).unwrap();
    for (i, addr) in addrs.iter().enumerate().skip(1) {
        admin.add_member(i as u64 + 1, addr, false).await.unwrap();
    }
    let members = admin
        .members(pb::ReadConsistency::Linearizable)
        .await
        .unwrap();
    let leader = members
        .members
        .iter()
        .find(|m| m.leader)
        .expect("a leader")
        .address
        .clone();
    (procs, leader)
}

/// A `RegisterVolume` whose JSON is exactly `RECORD` bytes.
fn record(n: u64) -> LogEntry {
    let entry = |path: String| LogEntry {
        by: None,
        at: Timestamp::from_unix_nanos(1_000_000_000 + n),
        command: CatalogCommand::RegisterVolume(Volume {
            id: format!("vol-{n}"),
            path,
            labels: Default::default(),
        }),
    };
    let bare = serde_json::to_vec(&entry("/".into())).unwrap().len();
    let path = format!("/{}", "p".repeat(RECORD.saturating_sub(bare)));
    let e = entry(path);
    debug_assert_eq!(serde_json::to_vec(&e).unwrap().len(), RECORD);
    e
}

#[derive(Default)]
struct Side {
    writes: u64,
    elapsed: Duration,
    latencies: Vec<f64>,
}

impl Side {
    fn per_s(&self) -> f64 {
        self.writes as f64 / self.elapsed.as_secs_f64()
    }

    fn p99(&mut self) -> f64 {
        pct(&mut self.latencies, 0.99)
    }

    fn p50(&mut self) -> f64 {
        pct(&mut self.latencies, 0.50)
    }
}

/// `writes` writes from `clients` clients, each one at a time; `write(n)`
/// performs write number `n`.
async fn run<F, Fut>(side: &mut Side, writes: u64, clients: usize, first: u64, write: F)
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let write = Arc::new(write);
    let next = Arc::new(std::sync::atomic::AtomicU64::new(first));
    let end = first + writes;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (write, next) = (write.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            loop {
                let n = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if n >= end {
                    return lat;
                }
                let t = Instant::now();
                write(n).await;
                lat.push(t.elapsed().as_secs_f64() * 1e3);
            }
        }));
    }
    for t in tasks {
        side.latencies.extend(t.await.unwrap());
    }
    side.elapsed += started.elapsed();
    side.writes += writes;
}

/// The groups' clients: strata (always mutual TLS), etcd with peer and
/// client TLS, and etcd in plain text (for the cost of TLS).
struct Groups {
    strata: Arc<RemoteCatalog>,
    etcd: Channel,
    etcd_plain: Channel,
    value: Arc<Vec<u8>>,
}

/// Which record or key write `n` writes.
#[derive(Clone, Copy)]
enum Keys {
    /// A new one each write (volume `vol-n`, key `bench/n`).
    Distinct,
    /// One of this many, over and over: the warm-up grows neither group's
    /// state (strata's snapshots are of its state).
    Cycle(u64),
}

impl Keys {
    fn of(self, n: u64) -> u64 {
        match self {
            Keys::Distinct => n,
            Keys::Cycle(m) => n % m,
        }
    }
}

impl Groups {
    /// Writes `first..first + writes` to strata, as in [`run`].
    async fn strata(&self, side: &mut Side, writes: u64, clients: usize, first: u64, keys: Keys) {
        let c = self.strata.clone();
        run(side, writes, clients, first, move |k| {
            let c = c.clone();
            async move {
                let (answer, _) = c.propose_indexed(&record(keys.of(k))).await.unwrap();
                answer.unwrap();
            }
        })
        .await;
    }

    /// Writes `first..first + writes` to etcd (with TLS, or `plain`), as
    /// in [`run`].
    async fn etcd(
        &self,
        plain: bool,
        side: &mut Side,
        writes: u64,
        clients: usize,
        first: u64,
        keys: Keys,
    ) {
        let ch = if plain { &self.etcd_plain } else { &self.etcd };
        let (ch, v) = (ch.clone(), self.value.clone());
        run(side, writes, clients, first, move |k| {
            let (ch, v) = (ch.clone(), v.clone());
            async move {
                let key = format!("bench/{:010}", keys.of(k));
                etcd_put(ch, key.into_bytes(), v.to_vec()).await.unwrap();
            }
        })
        .await;
    }
}

/// How many times each strata replica's RocksDB has started a WAL file by
/// writing over a recycled one (from its info logs).
fn wal_files_reused(dir: &Path, replicas: u64) -> Vec<usize> {
    fn count(dir: &Path) -> usize {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return 0;
        };
        entries
            .flatten()
            .map(|e| {
                let path = e.path();
                if path.is_dir() {
                    count(&path)
                } else if e.file_name().to_string_lossy().starts_with("LOG") {
                    std::fs::read_to_string(&path)
                        .map(|log| log.matches("from recycle list").count())
                        .unwrap_or(0)
                } else {
                    0
                }
            })
            .sum()
    }
    (1..=replicas)
        .map(|id| count(&dir.join(format!("r{id}"))))
        .collect()
}

fn main() {
    let writes = env_number("STRATA_BENCH_GROUP_WRITES", 1000);
    let warmup = env_number("STRATA_BENCH_GROUP_WARMUP", DEFAULT_WARMUP);
    let replicas = env_number("STRATA_BENCH_GROUP_REPLICAS", 3).max(1);
    let clients_wanted = clients_wanted();
    let root = strata_cache()
        .join("bench")
        .join(format!("catalog-group-{}", std::process::id()));
    std::fs::create_dir_all(&root).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let (_etcd, etcd_leader) = start_etcd(&root, replicas, Some(&etcd_tls(&root)));
        let (_etcd_plain, etcd_plain_leader) = start_etcd(&root, replicas, None);
        let (_strata, strata_leader) = start_strata(&root, replicas).await;
        let etcd_version = Command::new(std::env::var("ETCD_BIN").unwrap_or_else(|_| "etcd".into()))
            .arg("--version")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).lines().next().unwrap_or("").to_owned())
            .unwrap_or_default();
        println!(
            "{replicas} replicas each on loopback, data on disk under {}; {}; {etcd_version}",
            root.display(),
            machine()
        );
        println!(
            "{} writes of {RECORD} bytes per slice, {SLICES} slices per side and row, to the leader",
            writes
        );
        println!(
            "strata: mutual TLS 1.3 between replicas and to clients (it has no plain-text \
             listener); etcd: peer and client TLS with client certificates (--peer-* and \
             --cert-file flags, certificates from `strata certs`), and a second etcd group in \
             plain text for the cost of TLS"
        );
        let etcd = etcd_tls_channel(&root, &etcd_leader).await;
        let etcd_plain = Channel::from_shared(format!("http://{etcd_plain_leader}"))
            .unwrap()
            .tcp_nodelay(true)
            .connect()
            .await
            .unwrap();
        let groups = Groups {
            strata: Arc::new(
                RemoteCatalog::new(
                    &[strata_leader],
                    "bench",
                    Duration::from_secs(30),
                    &site(&root).1,
                )
                .unwrap(),
            ),
            etcd,
            etcd_plain,
            value: Arc::new(vec![b'v'; RECORD]),
        };
        let mut n = 0;
        if warmup > 0 {
            // strata first, in chunks, until each replica writes over a
            // recycled WAL file; then as many writes to etcd.
            let mut unmeasured = Side::default();
            let mut warmed = 0;
            while warmed < warmup
                && wal_files_reused(&root.join("strata"), replicas).contains(&0)
            {
                let chunk = WARMUP_CHUNK.min(warmup - warmed);
                groups
                    .strata(&mut unmeasured, chunk, WARMUP_CLIENTS, n, WARMUP_KEYS)
                    .await;
                n += chunk;
                warmed += chunk;
            }
            for plain in [false, true] {
                groups
                    .etcd(plain, &mut unmeasured, warmed, WARMUP_CLIENTS, n, WARMUP_KEYS)
                    .await;
                n += warmed;
            }
            println!(
                "warm-up (not measured): {warmed} writes to each of the three groups from {WARMUP_CLIENTS} clients; \
                 strata WAL files reused, per replica: {:?}",
                wal_files_reused(&root.join("strata"), replicas)
            );
        }
        println!(
            "\n{:>7}  {:>12} {:>9} {:>9}  {:>12} {:>9} {:>9}  {:>9} {:>9}  {:>12} {:>9}  {:>9} {:>11}",
            "clients",
            "strata w/s",
            "p50 ms",
            "p99 ms",
            "etcd w/s",
            "p50 ms",
            "p99 ms",
            "w/s ×",
            "p99 ×",
            "etcd-plain",
            "p99 ms",
            "w/s × pl.",
            "etcd TLS ×"
        );
        let mut met = true;
        for clients in clients_wanted.iter().copied() {
            let (mut s, mut e, mut p) = (Side::default(), Side::default(), Side::default());
            for slice in 0..SLICES {
                // Turn the order each slice.
                for turn in 0..3 {
                    match (slice + turn) % 3 {
                        0 => groups.strata(&mut s, writes, clients, n, Keys::Distinct).await,
                        1 => {
                            groups
                                .etcd(false, &mut e, writes, clients, n, Keys::Distinct)
                                .await
                        }
                        _ => {
                            groups
                                .etcd(true, &mut p, writes, clients, n, Keys::Distinct)
                                .await
                        }
                    }
                    n += writes;
                }
            }
            let ratio = s.per_s() / e.per_s();
            let (sp99, ep99, pp99) = (s.p99(), e.p99(), p.p99());
            let p99_ratio = sp99 / ep99;
            met &= ratio >= GOAL_THROUGHPUT && p99_ratio <= GOAL_P99;
            println!(
                "{clients:>7}  {:>12.0} {:>9.2} {sp99:>9.2}  {:>12.0} {:>9.2} {ep99:>9.2}  {ratio:>9.2} {p99_ratio:>9.2}  {:>12.0} {pp99:>9.2}  {:>9.2} {:>11.2}",
                s.per_s(),
                s.p50(),
                e.per_s(),
                e.p50(),
                p.per_s(),
                s.per_s() / p.per_s(),
                e.per_s() / p.per_s(),
            );
        }
        let judged = if clients_wanted[..] == CLIENTS[..] {
            if met { "met" } else { "MISSED" }
        } else if met {
            "met at these client counts (not all the goal's)"
        } else {
            "MISSED"
        };
        println!(
            "\ngoal (both with TLS): strata ≥ {GOAL_THROUGHPUT}× etcd's writes/s and p99 ≤ {GOAL_P99}× etcd's at every client count: {judged}"
        );
    });
    let _ = std::fs::remove_dir_all(&root);
}
