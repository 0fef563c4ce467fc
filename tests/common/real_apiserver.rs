//! A real kube-apiserver, with the etcd under it, for tests that need what
//! only the API server itself does: admission by the CRD's schema (enums,
//! patterns, CEL rules), server-side apply, watches, RBAC.
//!
//! It runs only where `KUBE_APISERVER_BIN` and `ETCD_BIN` name the two
//! binaries (envtest's convention of pointing tests at binaries, under these
//! names). Elsewhere [`RealApiServer::start`] prints [`NOT_RUN`] and returns
//! `None`, and the test returns having checked nothing: it passes, and its
//! output says it did not run (`cargo nextest run --no-capture` shows it).
//!
//! ```ignore
//! let dir = tempfile::tempdir().unwrap();
//! let Some(server) = RealApiServer::start(dir.path()).await else {
//!     return;
//! };
//! let client = server.client().await;
//! // or: strata catalog --kubeconfig server.kubeconfig_path() ...
//! ```
//!
//! What it starts, all on loopback, all under the caller's directory:
//! - etcd on two free ports (client, peer), its data in `etcd/`;
//! - kube-apiserver on a free secure port of 127.0.0.1 with a self-signed
//!   serving certificate it makes itself in `certs/`, one user
//!   (`strata-test-admin`, group `system:masters`: allowed everything)
//!   authenticated by a static bearer token, RBAC authorization, and a
//!   service-account signing key made here;
//! - `kubeconfig`: that server (TLS not verified: the certificate is the
//!   API server's own throwaway one) and that token.
//!
//! Their output goes to `etcd.log` and `kube-apiserver.log` in the same
//! directory; a start that fails panics with the end of them. Drop kills
//! both (the API server first) and waits for them.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// What [`RealApiServer::start`] prints when the binaries are not given.
pub const NOT_RUN: &str =
    "KUBE_APISERVER_BIN/ETCD_BIN not set: the real-API-server test did not run";

/// How long the API server may take to answer `/readyz` with `ok`.
const READY_WITHIN: Duration = Duration::from_secs(120);

/// The user the token authenticates, in group `system:masters`.
pub const ADMIN_USER: &str = "strata-test-admin";

/// A running etcd and kube-apiserver; both stopped on drop.
pub struct RealApiServer {
    dir: PathBuf,
    url: String,
    kubeconfig: PathBuf,
    /// Started processes, stopped in reverse order on drop.
    procs: Vec<(&'static str, Child)>,
}

impl RealApiServer {
    /// Starts etcd and kube-apiserver under `dir` (which must outlive the
    /// server) and waits until the API server is ready. `None`, after
    /// printing [`NOT_RUN`], unless both `KUBE_APISERVER_BIN` and `ETCD_BIN`
    /// are set. Panics, with the end of both logs, when either does not
    /// start.
    pub async fn start(dir: &Path) -> Option<RealApiServer> {
        let (Some(apiserver_bin), Some(etcd_bin)) = (
            std::env::var_os("KUBE_APISERVER_BIN"),
            std::env::var_os("ETCD_BIN"),
        ) else {
            println!("{NOT_RUN}");
            return None;
        };
        for (var, bin) in [
            ("KUBE_APISERVER_BIN", &apiserver_bin),
            ("ETCD_BIN", &etcd_bin),
        ] {
            assert!(
                Path::new(bin).is_file(),
                "{var}={} is not a file",
                Path::new(bin).display()
            );
        }

        let etcd_port = super::free_port();
        let peer_port = super::free_port();
        let port = super::free_port();
        let mut server = RealApiServer {
            dir: dir.to_owned(),
            url: format!("https://127.0.0.1:{port}"),
            kubeconfig: dir.join("kubeconfig"),
            procs: Vec::new(),
        };

        // etcd: one member, plain HTTP on loopback.
        let etcd_url = format!("http://127.0.0.1:{etcd_port}");
        let peer_url = format!("http://127.0.0.1:{peer_port}");
        let etcd = Command::new(&etcd_bin)
            .arg("--name=strata-test")
            .arg(format!("--data-dir={}", dir.join("etcd").display()))
            .arg(format!("--listen-client-urls={etcd_url}"))
            .arg(format!("--advertise-client-urls={etcd_url}"))
            .arg(format!("--listen-peer-urls={peer_url}"))
            .arg(format!("--initial-advertise-peer-urls={peer_url}"))
            .arg(format!("--initial-cluster=strata-test={peer_url}"))
            .stdin(Stdio::null())
            .stdout(server.log_file("etcd.log"))
            .stderr(server.log_file("etcd.log"))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", Path::new(&etcd_bin).display()));
        server.procs.push(("etcd", etcd));
        server
            .wait_until("etcd listens", Duration::from_secs(30), || async move {
                std::net::TcpStream::connect(("127.0.0.1", etcd_port)).is_ok()
            })
            .await;

        // The service-account signing key (ECDSA P-256, PKCS#8): the API
        // server reads the public half from the same file.
        let sa_dir = dir.join("service-account");
        strata_trust::init_ca(&sa_dir, "kube-apiserver", Duration::from_secs(86_400))
            .expect("service-account key");
        let sa_key = sa_dir.join(strata_trust::CA_KEY);

        let token = format!(
            "{:x}{:x}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        );
        let tokens = dir.join("tokens.csv");
        std::fs::write(
            &tokens,
            format!("{token},{ADMIN_USER},{ADMIN_USER},\"system:masters\"\n"),
        )
        .unwrap();

        let apiserver = Command::new(&apiserver_bin)
            .arg(format!("--etcd-servers={etcd_url}"))
            .arg("--bind-address=127.0.0.1")
            .arg("--advertise-address=127.0.0.1")
            .arg(format!("--secure-port={port}"))
            .arg(format!("--cert-dir={}", dir.join("certs").display()))
            .arg(format!("--token-auth-file={}", tokens.display()))
            .arg("--authorization-mode=RBAC")
            .arg("--service-account-issuer=https://kubernetes.default.svc.cluster.local")
            .arg(format!("--service-account-key-file={}", sa_key.display()))
            .arg(format!(
                "--service-account-signing-key-file={}",
                sa_key.display()
            ))
            .arg("--service-cluster-ip-range=10.0.0.0/24")
            // No controller-manager makes the namespaces' `default` service
            // accounts: pods need not name one.
            .arg("--disable-admission-plugins=ServiceAccount")
            .arg("--allow-privileged=true")
            .stdin(Stdio::null())
            .stdout(server.log_file("kube-apiserver.log"))
            .stderr(server.log_file("kube-apiserver.log"))
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start {}: {e}", Path::new(&apiserver_bin).display())
            });
        server.procs.push(("kube-apiserver", apiserver));

        let kubeconfig = serde_json::json!({
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{
                "name": "real-apiserver",
                "cluster": { "server": server.url, "insecure-skip-tls-verify": true },
            }],
            "users": [{ "name": ADMIN_USER, "user": { "token": token } }],
            "contexts": [{
                "name": "real-apiserver",
                "context": { "cluster": "real-apiserver", "user": ADMIN_USER, "namespace": "default" },
            }],
            "current-context": "real-apiserver",
        });
        // JSON is YAML: kubectl and kube-rs read it as a kubeconfig.
        std::fs::write(
            &server.kubeconfig,
            serde_json::to_string_pretty(&kubeconfig).unwrap(),
        )
        .unwrap();

        let client = server.client().await;
        server
            .wait_until(
                "kube-apiserver answers /readyz with ok",
                READY_WITHIN,
                || {
                    let client = client.clone();
                    async move {
                        let req = http::Request::get("/readyz").body(Vec::new()).unwrap();
                        let answer =
                            tokio::time::timeout(Duration::from_secs(5), client.request_text(req));
                        matches!(answer.await, Ok(Ok(text)) if text.trim() == "ok")
                    }
                },
            )
            .await;
        Some(server)
    }

    /// The kubeconfig file: the server, its token, context `real-apiserver`
    /// (namespace `default`). For a `strata catalog --kubeconfig`.
    pub fn kubeconfig_path(&self) -> &Path {
        &self.kubeconfig
    }

    /// `https://127.0.0.1:<port>`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// A client as the admin user, made from [`Self::kubeconfig_path`]
    /// the way `strata catalog --kubeconfig` makes its own. Needs a tokio
    /// runtime.
    pub async fn client(&self) -> kube::Client {
        let file = kube::config::Kubeconfig::read_from(&self.kubeconfig).unwrap();
        let config =
            kube::Config::from_custom_kubeconfig(file, &kube::config::KubeConfigOptions::default())
                .await
                .unwrap();
        kube::Client::try_from(config).unwrap()
    }

    /// The end of both processes' logs, for a failure message.
    pub fn logs(&self) -> String {
        let mut out = String::new();
        for name in ["etcd.log", "kube-apiserver.log"] {
            let text = std::fs::read_to_string(self.dir.join(name)).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            let tail = &lines[lines.len().saturating_sub(40)..];
            out.push_str(&format!("--- {name} (last {} lines)\n", tail.len()));
            for l in tail {
                out.push_str(l);
                out.push('\n');
            }
        }
        out
    }

    fn log_file(&self, name: &str) -> File {
        File::options()
            .create(true)
            .append(true)
            .open(self.dir.join(name))
            .unwrap()
    }

    /// Polls `ready` every 200 ms until it holds; panics with the logs when
    /// a process exits first or `within` passes.
    async fn wait_until<F, Fut>(&mut self, what: &str, within: Duration, mut ready: F)
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let start = Instant::now();
        loop {
            if ready().await {
                return;
            }
            let exited = self.procs.iter_mut().find_map(|(name, child)| {
                child
                    .try_wait()
                    .ok()
                    .flatten()
                    .map(|status| (*name, status))
            });
            if let Some((name, status)) = exited {
                panic!("{name} exited ({status}) before {what}\n{}", self.logs());
            }
            if start.elapsed() > within {
                panic!("no {what} within {within:?}\n{}", self.logs());
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

impl Drop for RealApiServer {
    fn drop(&mut self) {
        while let Some((_, mut child)) = self.procs.pop() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
