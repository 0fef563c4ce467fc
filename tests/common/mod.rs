//! Shared harness for the black-box tests: a VG on a loop device, a real
//! `strata node` process, and CSI clients over its real unix socket; and
//! ([`real_apiserver`]) a real kube-apiserver with its etcd, where the
//! binaries are given.
#![allow(dead_code)]

pub mod real_apiserver;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use csi::volume_capability::{AccessMode, AccessType, BlockVolume, MountVolume, access_mode::Mode};
use hyper_util::rt::TokioIo;
use strata_proto::csi::v1 as csi;
use tonic::transport::{Channel, Endpoint, Uri};

/// Run a command, panicking with its output when it fails.
pub fn sh(program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .env("LVM_SUPPRESS_FD_WARNINGS", "1")
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// True inside the QEMU guest (real device-mapper): volumes are activated.
pub fn in_guest() -> bool {
    std::env::var_os("STRATA_GUEST").is_some()
}

/// The `lvm --config` text the tests and the node use: activation off on the host.
pub fn lvm_extra_config() -> Option<&'static str> {
    if in_guest() {
        None
    } else {
        Some("global{activation=0}")
    }
}

fn lvm_args<'a>(args: &[&'a str]) -> Vec<&'a str> {
    let mut v: Vec<&str> = args.to_vec();
    if let Some(c) = lvm_extra_config() {
        v.insert(1, "--config");
        v.insert(2, c);
    }
    v
}

/// Run an lvm command with the test's config.
pub fn lvm(args: &[&str]) -> String {
    sh("lvm", &lvm_args(args))
}

static SEQ: AtomicU32 = AtomicU32::new(0);

/// A unique short name for this test process.
pub fn unique(prefix: &str) -> String {
    format!(
        "{prefix}{}x{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::SeqCst)
    )
}

/// A VG on a sparse file behind a loop device, removed on drop.
pub struct TestVg {
    pub name: String,
    pub dir: tempfile::TempDir,
    pub loop_dev: String,
}

impl TestVg {
    /// A fresh VG of `size_mib` MiB. In the guest the backing file lives on the scratch disk.
    pub fn new(size_mib: u64) -> TestVg {
        Self::with_pv_args(size_mib, &[])
    }

    /// Like [`TestVg::new`], with extra `pvcreate` arguments (e.g. a larger
    /// `--metadatasize` for hundreds of tagged LVs).
    pub fn with_pv_args(size_mib: u64, pv_args: &[&str]) -> TestVg {
        let base = std::env::var("STRATA_SCRATCH")
            .map(PathBuf::from)
            .unwrap_or_else(|_| std::env::temp_dir());
        let dir = tempfile::tempdir_in(base).unwrap();
        let img = dir.path().join("pv.img");
        std::fs::File::create(&img)
            .unwrap()
            .set_len(size_mib << 20)
            .unwrap();
        let loop_dev = sh("losetup", &["-f", "--show", img.to_str().unwrap()])
            .trim()
            .to_owned();
        let name = unique("stvg");
        lvm(&[&["pvcreate", "-y"], pv_args, &[loop_dev.as_str()]].concat());
        lvm(&["vgcreate", "-y", &name, &loop_dev]);
        TestVg {
            name,
            dir,
            loop_dev,
        }
    }

    /// An unused loop device (no VG) for tests of VG creation.
    pub fn bare_device(dir: &Path, size_mib: u64) -> String {
        let img = dir.join(format!("{}.img", unique("bare")));
        std::fs::File::create(&img)
            .unwrap()
            .set_len(size_mib << 20)
            .unwrap();
        sh("losetup", &["-f", "--show", img.to_str().unwrap()])
            .trim()
            .to_owned()
    }

    /// LV names in this VG.
    pub fn lv_names(&self) -> Vec<String> {
        lvm(&["lvs", "--noheadings", "-o", "lv_name", &self.name])
            .lines()
            .map(|l| l.trim().to_owned())
            .filter(|l| !l.is_empty())
            .collect()
    }

    /// Tags of one LV.
    pub fn lv_tags(&self, lv: &str) -> Vec<String> {
        lvm(&[
            "lvs",
            "--noheadings",
            "-o",
            "lv_tags",
            &format!("{}/{lv}", self.name),
        ])
        .trim()
        .split(',')
        .map(str::to_owned)
        .collect()
    }

    /// Size of one LV in bytes.
    pub fn lv_size(&self, lv: &str) -> u64 {
        lvm(&[
            "lvs",
            "--noheadings",
            "--units",
            "b",
            "--nosuffix",
            "-o",
            "lv_size",
            &format!("{}/{lv}", self.name),
        ])
        .trim()
        .parse()
        .unwrap()
    }

    /// Free bytes of the VG.
    pub fn free(&self) -> u64 {
        lvm(&[
            "vgs",
            "--noheadings",
            "--units",
            "b",
            "--nosuffix",
            "-o",
            "vg_free",
            &self.name,
        ])
        .trim()
        .parse()
        .unwrap()
    }
}

impl Drop for TestVg {
    fn drop(&mut self) {
        let _ = Command::new("lvm")
            .args(lvm_args(&["vgchange", "-an", &self.name]))
            .output();
        let _ = Command::new("lvm")
            .args(lvm_args(&["vgremove", "-ff", "-y", &self.name]))
            .output();
        let _ = Command::new("lvm")
            .args(lvm_args(&["pvremove", "-ff", "-y", &self.loop_dev]))
            .output();
        let _ = Command::new("losetup")
            .args(["-d", &self.loop_dev])
            .output();
    }
}

/// A running `strata node`, killed on drop.
pub struct NodeProc {
    pub child: Child,
    pub socket: PathBuf,
    pub dir: tempfile::TempDir,
    pub node_id: String,
    pub log: PathBuf,
    /// The node's `--kubelet-dir`: the node calls' paths must lie beneath it.
    pub kubelet: PathBuf,
}

/// Where the tests make their work directories (the guest's scratch disk,
/// else /tmp), and so the `--kubelet-dir` a [`NodeProc`] gets unless the
/// test names its own: their staging and target paths lie beneath it.
pub fn scratch_root() -> PathBuf {
    std::env::var_os("STRATA_SCRATCH")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/tmp"))
}

/// Path of the strata binary under test.
pub fn strata_bin() -> PathBuf {
    std::env::var_os("STRATA_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_strata")))
}

/// Which LVM backends this build can test.
pub fn backends() -> Vec<&'static str> {
    if cfg!(feature = "lvm2cmd") {
        vec!["cli", "lvm2cmd"]
    } else {
        vec!["cli"]
    }
}

/// A config with the given device classes (TOML `[[device_class]]` blocks) and backend.
pub fn config(classes: &str, backend: &str) -> String {
    let extra = lvm_extra_config()
        .map(|c| format!("extra_config = \"{c}\"\n"))
        .unwrap_or_default();
    format!("max_volumes = 250\n{classes}\n[lvm]\nbackend = \"{backend}\"\n{extra}")
}

/// One thick class `fast` (default) on `vg` with `spare` bytes kept free.
pub fn thick_class(vg: &str, spare: u64) -> String {
    format!(
        "[[device_class]]\nname = \"fast\"\nvolume_group = \"{vg}\"\ntype = \"thick\"\nspare_bytes = {spare}\ndefault = true\n"
    )
}

impl NodeProc {
    /// Start `strata node` with `config_text` and wait until its socket answers.
    pub async fn start(config_text: &str) -> NodeProc {
        Self::start_with(config_text, &[]).await
    }

    /// Like [`NodeProc::start`], with more command-line arguments (metrics
    /// stay off unless they include `--metrics-addr`).
    pub async fn start_with(config_text: &str, extra: &[&str]) -> NodeProc {
        Self::start_as("edge-node-1", config_text, extra).await
    }

    /// Like [`NodeProc::start_with`], with these environment variables set.
    pub async fn start_with_env(
        config_text: &str,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> NodeProc {
        Self::start_full("edge-node-1", config_text, extra, env).await
    }

    /// Like [`NodeProc::start_with`], as the node named `node_id`.
    pub async fn start_as(node_id: &str, config_text: &str, extra: &[&str]) -> NodeProc {
        Self::start_full(node_id, config_text, extra, &[]).await
    }

    async fn start_full(
        node_id: &str,
        config_text: &str,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> NodeProc {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("node.toml");
        std::fs::write(&cfg, config_text).unwrap();
        let socket = dir.path().join("csi.sock");
        let log = dir.path().join("node.log");
        let node_id = node_id.to_owned();
        let kubelet = match extra.iter().position(|a| *a == "--kubelet-dir") {
            Some(i) => PathBuf::from(extra[i + 1]),
            None => scratch_root(),
        };
        let child = Command::new(strata_bin())
            .args(["node", "--config", cfg.to_str().unwrap()])
            .arg("--csi-endpoint")
            .arg(format!("unix://{}", socket.display()))
            .args(["--node-id", &node_id])
            .args(if extra.contains(&"--metrics-addr") {
                &[][..]
            } else {
                &["--metrics-addr", ""][..]
            })
            .args(if extra.contains(&"--kubelet-dir") {
                vec![]
            } else {
                vec!["--kubelet-dir".to_owned(), kubelet.display().to_string()]
            })
            .args(extra)
            .envs(env.iter().copied())
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start strata node");
        let mut node = NodeProc {
            child,
            socket,
            dir,
            node_id,
            log,
            kubelet,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        // Listening, not only bound: the socket file appears at bind(), and a
        // connect before listen() is refused.
        while std::os::unix::net::UnixStream::connect(&node.socket).is_err() {
            if let Ok(Some(status)) = node.child.try_wait() {
                panic!("strata node exited with {status}: {}", node.log_text());
            }
            assert!(
                Instant::now() < deadline,
                "socket never accepted a connection: {}",
                node.log_text()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        node
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// A channel to the node's socket.
    pub async fn channel(&self) -> Channel {
        connect(&self.socket).await
    }

    pub async fn clients(&self) -> Clients {
        let ch = self.channel().await;
        Clients {
            identity: csi::identity_client::IdentityClient::new(ch.clone()),
            controller: csi::controller_client::ControllerClient::new(ch.clone()),
            node: csi::node_client::NodeClient::new(ch),
        }
    }
}

impl Drop for NodeProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Connect to a unix socket with tonic.
pub async fn connect(socket: &Path) -> Channel {
    let path = socket.to_owned();
    Endpoint::try_from("http://[::]:50051")
        .unwrap()
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let path = path.clone();
            async move {
                Ok::<_, std::io::Error>(TokioIo::new(tokio::net::UnixStream::connect(path).await?))
            }
        }))
        .await
        .expect("connect to the CSI socket")
}

pub struct Clients {
    pub identity: csi::identity_client::IdentityClient<Channel>,
    pub controller: csi::controller_client::ControllerClient<Channel>,
    pub node: csi::node_client::NodeClient<Channel>,
}

pub fn mount_cap(fs: &str) -> csi::VolumeCapability {
    csi::VolumeCapability {
        access_mode: Some(AccessMode {
            mode: Mode::SingleNodeWriter as i32,
        }),
        access_type: Some(AccessType::Mount(MountVolume {
            fs_type: fs.into(),
            ..Default::default()
        })),
    }
}

pub fn block_cap() -> csi::VolumeCapability {
    csi::VolumeCapability {
        access_mode: Some(AccessMode {
            mode: Mode::SingleNodeWriter as i32,
        }),
        access_type: Some(AccessType::Block(BlockVolume {})),
    }
}

pub fn create_req(name: &str, bytes: i64, cap: csi::VolumeCapability) -> csi::CreateVolumeRequest {
    csi::CreateVolumeRequest {
        name: name.into(),
        capacity_range: Some(csi::CapacityRange {
            required_bytes: bytes,
            limit_bytes: 0,
        }),
        volume_capabilities: vec![cap],
        parameters: HashMap::from([
            ("csi.storage.k8s.io/pvc/name".into(), "data".into()),
            ("csi.storage.k8s.io/pvc/namespace".into(), "line-3".into()),
            ("csi.storage.k8s.io/pv/name".into(), name.into()),
        ]),
        ..Default::default()
    }
}

pub const MIB: i64 = 1 << 20;

/// A volume's staging and target paths under one work directory.
pub struct Paths {
    pub staging: PathBuf,
    pub target: PathBuf,
}

pub fn paths(base: &Path, name: &str) -> Paths {
    Paths {
        staging: base.join(format!("{name}-staging")),
        target: base.join(format!("{name}-pods/mount")),
    }
}

pub fn stage_req(id: &str, p: &Paths, cap: &csi::VolumeCapability) -> csi::NodeStageVolumeRequest {
    csi::NodeStageVolumeRequest {
        volume_id: id.into(),
        staging_target_path: p.staging.to_string_lossy().into(),
        volume_capability: Some(cap.clone()),
        ..Default::default()
    }
}

pub fn publish_req(
    id: &str,
    p: &Paths,
    cap: &csi::VolumeCapability,
    readonly: bool,
) -> csi::NodePublishVolumeRequest {
    csi::NodePublishVolumeRequest {
        volume_id: id.into(),
        staging_target_path: p.staging.to_string_lossy().into(),
        target_path: p.target.to_string_lossy().into(),
        volume_capability: Some(cap.clone()),
        readonly,
        ..Default::default()
    }
}

// ---- thin pools, snapshots and clones (tests/guest_snapshots.rs, tests/guest_thin.rs) ----

/// A thin class `thin` (default) on `vg`/`pool`, with extra TOML lines
/// (e.g. `pool_danger_percent = 80`).
pub fn thin_class(vg: &str, pool: &str, extra: &str) -> String {
    format!(
        "[[device_class]]\nname = \"thin\"\nvolume_group = \"{vg}\"\ntype = \"thin\"\nthin_pool = \"{pool}\"\ndefault = true\n{extra}\n"
    )
}

impl TestVg {
    /// A thin pool of `mib` MiB data (zeroing on), made with the lvm command.
    pub fn create_thin_pool(&self, name: &str, mib: u64) {
        lvm(&[
            "lvcreate",
            "--yes",
            "--type",
            "thin-pool",
            "-n",
            name,
            "-L",
            &format!("{mib}m"),
            "-Zy",
            &self.name,
        ]);
    }

    /// One report field of one LV, trimmed (`lv_attr`, `data_percent`, …).
    pub fn lv_field(&self, lv: &str, field: &str) -> String {
        lvm(&[
            "lvs",
            "--noheadings",
            "--units",
            "b",
            "--nosuffix",
            "-o",
            field,
            &format!("{}/{lv}", self.name),
        ])
        .trim()
        .to_owned()
    }
}

/// A CreateSnapshot request.
pub fn snapshot_req(
    name: &str,
    source: &str,
    params: &[(&str, &str)],
) -> csi::CreateSnapshotRequest {
    csi::CreateSnapshotRequest {
        source_volume_id: source.into(),
        name: name.into(),
        parameters: params
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        ..Default::default()
    }
}

/// A content source naming a snapshot.
pub fn from_snapshot(id: &str) -> csi::VolumeContentSource {
    csi::VolumeContentSource {
        r#type: Some(csi::volume_content_source::Type::Snapshot(
            csi::volume_content_source::SnapshotSource {
                snapshot_id: id.into(),
            },
        )),
    }
}

/// A content source naming a volume.
pub fn from_volume(id: &str) -> csi::VolumeContentSource {
    csi::VolumeContentSource {
        r#type: Some(csi::volume_content_source::Type::Volume(
            csi::volume_content_source::VolumeSource {
                volume_id: id.into(),
            },
        )),
    }
}

/// A CreateVolume request with a content source.
pub fn create_from_req(
    name: &str,
    bytes: i64,
    cap: csi::VolumeCapability,
    source: csi::VolumeContentSource,
) -> csi::CreateVolumeRequest {
    csi::CreateVolumeRequest {
        volume_content_source: Some(source),
        ..create_req(name, bytes, cap)
    }
}

/// The gRPC code and message of a failed call.
pub fn status_of<T: std::fmt::Debug>(r: Result<T, tonic::Status>) -> (tonic::Code, String) {
    let s = r.expect_err("expected an error");
    (s.code(), s.message().to_owned())
}

/// `strata ctl -o json` against the tiering API socket (`strata.sock`) in
/// `dir`: its output as JSON, or its error output.
pub fn ctl(dir: &Path, args: &[&str]) -> Result<serde_json::Value, String> {
    let endpoint = format!("unix://{}", dir.join("strata.sock").display());
    let out = Command::new(strata_bin())
        .args(["ctl", "--endpoint", &endpoint, "-o", "json"])
        .args(args)
        .output()
        .unwrap();
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    Ok(serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null))
}

/// `strata ctl files ls` against the API in `dir`.
pub fn files(dir: &Path) -> Vec<serde_json::Value> {
    ctl(dir, &["files", "ls"]).unwrap()["files"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// Lowercase hex SHA-256, as the catalog and `strata ctl` print it.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// `mib` MiB of random data at the start of `dev`, synced.
pub fn fill_random(dev: &str, mib: u64) {
    sh(
        "dd",
        &[
            "if=/dev/urandom",
            &format!("of={dev}"),
            "bs=1M",
            &format!("count={mib}"),
            "conv=fsync",
            "status=none",
        ],
    );
}

/// NodeUnpublishVolume then NodeUnstageVolume of `id`; both must succeed.
pub async fn unpublish_unstage(c: &mut Clients, id: &str, p: &Paths) {
    c.node
        .node_unpublish_volume(csi::NodeUnpublishVolumeRequest {
            volume_id: id.into(),
            target_path: p.target.to_string_lossy().into(),
        })
        .await
        .unwrap();
    c.node
        .node_unstage_volume(csi::NodeUnstageVolumeRequest {
            volume_id: id.into(),
            staging_target_path: p.staging.to_string_lossy().into(),
        })
        .await
        .unwrap();
}

/// DeleteVolume of `id`.
pub async fn delete_volume(c: &mut Clients, id: &str) -> Result<(), tonic::Status> {
    c.controller
        .delete_volume(csi::DeleteVolumeRequest {
            volume_id: id.into(),
            ..Default::default()
        })
        .await
        .map(drop)
}

/// The body of GET /metrics from `addr` while it answers; `None` in the
/// QEMU guest, whose loopback interface is down (the series are checked on
/// the host).
pub fn scrape_outside_guest(addr: &str) -> Option<String> {
    (!in_guest()).then(|| scrape(addr))
}

/// GET /metrics from `addr` (the body), or an empty string while it does
/// not answer.
pub fn scrape(addr: &str) -> String {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(addr) else {
        return String::new();
    };
    let _ = s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let mut text = String::new();
    let _ = s.read_to_string(&mut text);
    text.split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default()
}

/// A loopback TCP port free a moment ago (the caller binds it next).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The test site's certificates, made once per test binary: the CA and one
/// TLS directory per part (`strata certs` would make the same files).
pub struct TestSite {
    dir: tempfile::TempDir,
    /// The CA's directory (ca.crt, ca.key).
    pub ca: PathBuf,
    /// A replica certificate's directory.
    pub replica: PathBuf,
    /// An admin certificate's directory.
    pub admin: PathBuf,
    /// Node certificates' directories: edge-1 and edge-2.
    pub nodes: [PathBuf; 2],
    issuing: std::sync::Mutex<()>,
}

impl TestSite {
    /// The directory of a node certificate for `name`, issued on first use.
    pub fn node(&self, name: &str) -> PathBuf {
        let _one_at_a_time = self.issuing.lock().unwrap();
        let id = strata_trust::Identity::new(strata_trust::Role::Node, name).unwrap();
        strata_trust::ensure_local_site(self.dir.path(), "test", &[id])
            .unwrap()
            .remove(0)
    }
}

/// The test site ([`TestSite`]).
pub fn site() -> &'static TestSite {
    use strata_trust::{Identity, Role};
    static SITE: std::sync::OnceLock<TestSite> = std::sync::OnceLock::new();
    SITE.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let ids = [
            Identity::new(Role::Replica, "").unwrap(),
            Identity::new(Role::Admin, "test").unwrap(),
            Identity::new(Role::Node, "edge-1").unwrap(),
            Identity::new(Role::Node, "edge-2").unwrap(),
        ];
        let dirs = strata_trust::ensure_local_site(dir.path(), "test", &ids).unwrap();
        TestSite {
            ca: dir.path().join("ca"),
            replica: dirs[0].clone(),
            admin: dirs[1].clone(),
            nodes: [dirs[2].clone(), dirs[3].clone()],
            dir,
            issuing: std::sync::Mutex::new(()),
        }
    })
}

/// The TLS directory `dir` loaded.
pub fn tls(dir: &Path) -> strata_trust::SiteTls {
    strata_trust::SiteTls::load(dir).unwrap()
}

/// A tonic channel to `addr` over the site's mutual TLS, presenting the
/// certificate in `dir` and expecting a replica.
pub async fn tls_channel(addr: &str, dir: &Path) -> Channel {
    let connector = strata_trust::TlsConnector::new(
        &tls(dir),
        strata_trust::Expect::role(strata_trust::Role::Replica),
    )
    .unwrap();
    Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect_with_connector(connector)
        .await
        .unwrap()
}

/// A tonic channel to `addr` over TLS 1.3 that presents `cert`/`key` (PEM
/// files), or no certificate, and trusts any server: what a client the
/// catalog must refuse can do (strata's own connector never presents an
/// expired or foreign certificate).
pub async fn raw_tls_channel(addr: &str, cert_and_key: Option<(&Path, &Path)>) -> Channel {
    use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
    use std::sync::Arc;

    #[derive(Debug)]
    struct AnyServer(Arc<rustls::crypto::CryptoProvider>);
    impl ServerCertVerifier for AnyServer {
        fn verify_server_cert(
            &self,
            _: &CertificateDer<'_>,
            _: &[CertificateDer<'_>],
            _: &ServerName<'_>,
            _: &[u8],
            _: UnixTime,
        ) -> Result<ServerCertVerified, rustls::Error> {
            Ok(ServerCertVerified::assertion())
        }
        fn verify_tls12_signature(
            &self,
            _: &[u8],
            _: &CertificateDer<'_>,
            _: &rustls::DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            Err(rustls::Error::General("TLS 1.3 only".into()))
        }
        fn verify_tls13_signature(
            &self,
            m: &[u8],
            c: &CertificateDer<'_>,
            d: &rustls::DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls13_signature(
                m,
                c,
                d,
                &self.0.signature_verification_algorithms,
            )
        }
        fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
            self.0.signature_verification_algorithms.supported_schemes()
        }
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyServer(provider)));
    let mut config = match cert_and_key {
        Some((cert, key)) => builder
            .with_client_auth_cert(
                vec![CertificateDer::from_pem_file(cert).unwrap()],
                PrivateKeyDer::from_pem_file(key).unwrap(),
            )
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"h2".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let target = addr.to_owned();
    Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let (connector, target) = (connector.clone(), target.clone());
            async move {
                let tcp = tokio::net::TcpStream::connect(&target).await?;
                let tls = connector
                    .connect(ServerName::try_from("localhost").unwrap(), tcp)
                    .await?;
                Ok::<_, std::io::Error>(TokioIo::new(tls))
            }
        }))
        .await
        .unwrap()
}
