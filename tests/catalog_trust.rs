//! Who may talk to a `strata catalog` replica, tried as an attacker on the
//! cluster network would: a real replica process serving mutual TLS on
//! loopback, and clients without a certificate, with another site's, with
//! an expired one, with a node's certificate doing what only the node's
//! own agent or an admin may, and with a message of 1 GiB.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use strata_proto::strata::v1 as pb;
use strata_proto::strata::v1::catalog_client::CatalogClient;
use strata_tiering::catalog::{
    Applied, CatalogClient as _, Command as Cmd, FileKey, FileState, Intent, LogEntry, NODE_LABEL,
    Proposer, Rejected, Sha256, Timestamp, Volume,
};
use strata_tiering::raft::{RemoteCatalog, node_replica_id};
use strata_trust::{Identity, IssueRequest, Role};
use tempfile::TempDir;
use tonic::Code;

use common::{free_port, site, strata_bin, tls};

const CLUSTER: &str = "trust-site";

/// One bootstrapped `strata catalog` replica, killed on drop.
struct Replica {
    addr: String,
    child: Child,
    log: PathBuf,
    _dir: TempDir,
}

impl Replica {
    async fn start() -> Replica {
        let dir = TempDir::new().unwrap();
        let addr = format!("127.0.0.1:{}", free_port());
        let log = dir.path().join("replica.log");
        let child = Command::new(strata_bin())
            .args(["catalog", "--id", "1", "--bootstrap", "--cluster", CLUSTER])
            .args(["--listen", &addr, "--metrics-addr", ""])
            .arg("--tls-dir")
            .arg(&site().replica)
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .env("RUST_LOG", "info,openraft=warn")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let mut r = Replica {
            addr,
            child,
            log,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(&r.addr).is_err() {
            if let Ok(Some(status)) = r.child.try_wait() {
                panic!("replica exited with {status}: {}", r.log_text());
            }
            assert!(
                Instant::now() < deadline,
                "never listened: {}",
                r.log_text()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        r
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// A client presenting the certificate in `dir`.
    fn as_(&self, dir: &Path) -> RemoteCatalog {
        RemoteCatalog::new(
            std::slice::from_ref(&self.addr),
            CLUSTER,
            Duration::from_secs(20),
            &tls(dir),
        )
        .unwrap()
    }

    /// The replica's resident memory, in bytes.
    fn rss(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let kb: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap();
        kb * 1024
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn entry(command: Cmd) -> LogEntry {
    LogEntry {
        at: Timestamp::now(),
        command,
        by: None,
    }
}

fn on_node(id: &str, node: &str) -> Cmd {
    Cmd::RegisterVolume(Volume {
        id: id.into(),
        path: format!("/var/lib/kubelet/pods/x/{id}"),
        labels: BTreeMap::from([(NODE_LABEL.into(), node.into())]),
    })
}

fn intent(volume: &str, path: &str) -> Intent {
    Intent {
        key: FileKey::new(volume, path),
        move_id: 7,
        size: 10,
        mtime_ns: 1,
        ino: 2,
        dev: 3,
        ctime_ns: 1,
        sha256: Sha256([1; 32]),
        owner: None,
        lake_key: format!("{volume}/{path}"),
        policy: "p".into(),
        rule: "r".into(),
    }
}

/// A read with the channel's certificate, or the status it was refused with.
async fn read_with(channel: tonic::transport::Channel) -> Result<(), tonic::Status> {
    CatalogClient::new(channel)
        .read(pb::ReadRequest {
            cluster: CLUSTER.into(),
            consistency: pb::ReadConsistency::Stale.into(),
            forwarded: false,
        })
        .await
        .map(|_| ())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_without_a_valid_certificate_are_refused_saying_why() {
    let r = Replica::start().await;
    // The site's admin may read.
    r.as_(&site().admin)
        .read_state(pb::ReadConsistency::Linearizable)
        .await
        .unwrap();

    // No certificate.
    let s = read_with(common::raw_tls_channel(&r.addr, None).await)
        .await
        .unwrap_err();
    assert_eq!(s.code(), Code::Unauthenticated, "{s}");
    assert!(s.message().contains("no client certificate"), "{s}");

    // Another site's CA, with a perfectly good admin certificate of its own.
    let other = TempDir::new().unwrap();
    let foreign = strata_trust::ensure_local_site(
        other.path(),
        "other",
        &[Identity::new(Role::Admin, "mallory").unwrap()],
    )
    .unwrap()
    .remove(0);
    let chan = common::raw_tls_channel(
        &r.addr,
        Some((&foreign.join("tls.crt"), &foreign.join("tls.key"))),
    )
    .await;
    let s = read_with(chan).await.unwrap_err();
    assert_eq!(s.code(), Code::Unauthenticated, "{s}");
    assert!(s.message().contains("not by this site's CA"), "{s}");

    // This site's CA, expired an hour ago.
    let now = SystemTime::now();
    let mut req = IssueRequest::new(Identity::new(Role::Admin, "old").unwrap(), Duration::ZERO);
    req.not_before = now - Duration::from_secs(7200);
    req.not_after = now - Duration::from_secs(3600);
    let expired = other.path().join("expired");
    strata_trust::issue(&site().ca, &req, &expired).unwrap();
    let chan = common::raw_tls_channel(
        &r.addr,
        Some((&expired.join("tls.crt"), &expired.join("tls.key"))),
    )
    .await;
    let s = read_with(chan).await.unwrap_err();
    assert_eq!(s.code(), Code::Unauthenticated, "{s}");
    assert!(s.message().contains("expired at"), "{s}");

    // Plain HTTP/2, no TLS at all: nothing is answered.
    if let Ok(plain) = tonic::transport::Endpoint::from_shared(format!("http://{}", r.addr))
        .unwrap()
        .connect()
        .await
    {
        let s = read_with(plain).await.unwrap_err();
        assert_ne!(s.code(), Code::Ok);
    }
    // And the replica said why, in its log.
    let log = r.log_text();
    assert!(log.contains("refusing the calls of a TLS client"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_certificate_acts_only_for_its_own_node() {
    let r = Replica::start().await;
    let admin = r.as_(&site().admin);
    let edge1 = r.as_(&site().nodes[0]);
    let edge2 = r.as_(&site().nodes[1]);
    for v in [on_node("vol-1", "edge-1"), on_node("vol-2", "edge-2")] {
        admin.propose(entry(v)).await.unwrap().unwrap();
    }
    // edge-2's agent starts a move of one of its files.
    let key = FileKey::new("vol-2", "frame-0001.png");
    let i = intent("vol-2", "frame-0001.png");
    assert_eq!(
        edge2
            .propose(entry(Cmd::RecordIntent(i.clone())))
            .await
            .unwrap(),
        Ok(Applied::Changed)
    );
    // edge-1 tries to mark it uploaded and archived (which would make
    // edge-2's agent delete the local file), even claiming to be an admin.
    for by in [None, Some(Proposer::Admin("ops".into()))] {
        let mut forged = entry(Cmd::MarkUploaded {
            key: key.clone(),
            move_id: i.move_id,
            sha256: i.sha256,
        });
        forged.by = by;
        match edge1.propose(forged).await.unwrap() {
            Err(Rejected::Forbidden { proposer, .. }) => assert_eq!(proposer, "node edge-1"),
            other => panic!("edge-1 changed edge-2's file: {other:?}"),
        }
    }
    let state = admin
        .read_state(pb::ReadConsistency::Linearizable)
        .await
        .unwrap()
        .state;
    assert_eq!(state.file(&key).unwrap().state, FileState::Intent);

    // Nor take over edge-2's volume id, nor register a volume outside its node.
    for cmd in [on_node("vol-2", "edge-1"), on_node("vol-3", "edge-2")] {
        assert!(
            matches!(
                edge1.propose(entry(cmd)).await.unwrap(),
                Err(Rejected::Forbidden { .. })
            ),
            "a node registered what is not its own"
        );
    }
    // Nor change a policy.
    let spec = "name: p\nselector: {volumes: [vol-1]}\nlake: {url: \"file:///tmp/x\"}\n\
                rules:\n  - name: all\n    modifiedBefore: 0s\n    action: move\n";
    let put = Cmd::PutPolicy {
        name: "p".into(),
        spec: spec.into(),
    };
    assert!(matches!(
        edge1.propose(entry(put.clone())).await.unwrap(),
        Err(Rejected::Forbidden { .. })
    ));
    assert_eq!(
        admin.propose(entry(put)).await.unwrap(),
        Ok(Applied::Changed)
    );

    // Nor change the group: no voter, no learner but its own, no removal.
    let s = edge1.add_member(2, "127.0.0.1:1", false).await.unwrap_err();
    assert_eq!(s.code(), Code::PermissionDenied, "{s}");
    assert!(s.message().contains("never a voter"), "{s}");
    let s = edge1.add_member(99, "127.0.0.1:1", true).await.unwrap_err();
    assert_eq!(s.code(), Code::PermissionDenied, "{s}");
    assert!(
        s.message().contains(&node_replica_id("edge-1").to_string()),
        "{s}"
    );
    let s = edge1.remove_member(1).await.unwrap_err();
    assert_eq!(s.code(), Code::PermissionDenied, "{s}");
    let members = admin
        .members(pb::ReadConsistency::Linearizable)
        .await
        .unwrap();
    assert_eq!(members.members.len(), 1, "{members:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_1_gib_message_is_refused_and_the_replica_stays_small() {
    let r = Replica::start().await;
    let before = r.rss();
    let channel = common::tls_channel(&r.addr, &site().admin).await;
    let mut client = CatalogClient::new(channel).max_encoding_message_size(usize::MAX);
    let huge = pb::ProposeRequest {
        cluster: CLUSTER.into(),
        entry_json: vec![b' '; 1 << 30],
        forwarded: false,
    };
    let s = client.propose(huge).await.unwrap_err();
    assert!(
        matches!(
            s.code(),
            Code::OutOfRange
                | Code::ResourceExhausted
                | Code::Unknown
                | Code::Internal
                | Code::Cancelled
        ),
        "{s}"
    );
    let after = r.rss();
    assert!(
        after < before + (64 << 20),
        "the replica grew from {before} to {after} bytes for a refused message"
    );
    // And it still serves.
    r.as_(&site().admin)
        .read_state(pb::ReadConsistency::Linearizable)
        .await
        .unwrap();
}
