//! `strata catalog` as a group of real processes talking gRPC on loopback:
//! a leader killed with SIGKILL under a continuous write load, a full
//! restart, membership grown and shrunk under load, a data directory of
//! another cluster refused, bad requests answered with the right codes; and
//! in network namespaces of the test's own (root, iproute2), a leader cut off
//! by taking its link down.
//!
//! Every write is a `RegisterVolume` of `vol-<n>`; "nothing lost" is checked
//! entry by entry on every replica, from its own applied state.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use strata_proto::strata::v1 as pb;
use strata_proto::strata::v1::catalog_client::CatalogClient;
use strata_tiering::catalog::{
    Command as CatalogCommand, LogEntry, Proposer, Rejected, State, Timestamp, Volume,
};
use strata_tiering::raft::RemoteCatalog;
use tempfile::TempDir;
use tonic::Code;

use common::{free_port, strata_bin};

const CLUSTER: &str = "test-site";

/// One `strata catalog` process (restartable on the same port and data
/// directory), killed on drop.
struct Replica {
    id: u64,
    addr: String,
    dir: PathBuf,
    log: PathBuf,
    child: Option<Child>,
    /// The network namespace it runs in (`ip netns exec`), if not the test's.
    netns: Option<String>,
    /// `--join` this address.
    join: Option<String>,
    /// `--initial-members` this list.
    initial: Option<String>,
    /// Run in a UTS namespace of its own with this hostname, and take the
    /// id from it (`--id-from-hostname`).
    hostname: Option<String>,
    /// `--metrics-addr` (none by default).
    metrics: Option<String>,
}

impl Replica {
    fn new(root: &Path, id: u64) -> Replica {
        Replica {
            id,
            addr: format!("127.0.0.1:{}", free_port()),
            dir: root.join(format!("replica-{id}")),
            log: root.join(format!("replica-{id}.log")),
            child: None,
            netns: None,
            join: None,
            initial: None,
            hostname: None,
            metrics: None,
        }
    }

    fn command(&self, cluster: &str, id: u64, bootstrap: bool) -> Command {
        let mut c = match &self.netns {
            // Listening on every address of its namespace: its own loopback
            // too, where the test asks it while it is cut off.
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(strata_bin());
                c.args([
                    "catalog",
                    "--listen",
                    "0.0.0.0:7420",
                    "--advertise",
                    &self.addr,
                ]);
                c
            }
            None => match &self.hostname {
                Some(h) => {
                    let mut c = Command::new("unshare");
                    c.args(["--uts", "sh", "-c", r#"hostname "$0" && exec "$@""#, h])
                        .arg(strata_bin())
                        .args(["catalog", "--listen", &self.addr, "--id-from-hostname"]);
                    c
                }
                None => {
                    let mut c = Command::new(strata_bin());
                    c.args(["catalog", "--listen", &self.addr]);
                    c
                }
            },
        };
        if self.hostname.is_none() {
            c.args(["--id", &id.to_string()]);
        }
        c.args(["--cluster", cluster])
            .arg("--tls-dir")
            .arg(&common::site().replica)
            .arg("--data-dir")
            .arg(&self.dir)
            .args(["--metrics-addr", self.metrics.as_deref().unwrap_or("")])
            .args(["--heartbeat", "50ms"])
            .args(["--snapshot-every", "200"])
            .env("RUST_LOG", "info,openraft=warn");
        if bootstrap {
            c.arg("--bootstrap");
        }
        if let Some(j) = &self.join {
            c.args(["--join", j]);
        }
        if let Some(m) = &self.initial {
            c.args(["--initial-members", m]);
        }
        c
    }

    /// Starts the process and waits until it accepts connections.
    async fn start(&mut self, bootstrap: bool) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = self
            .command(CLUSTER, self.id, bootstrap)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start strata catalog");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(&self.addr).is_err() {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                panic!(
                    "replica {} exited with {status}: {}",
                    self.id,
                    self.log_text()
                );
            }
            assert!(
                Instant::now() < deadline,
                "replica {} never listened",
                self.id
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn client(&self) -> RemoteCatalog {
        self.client_within(Duration::from_secs(30))
    }

    fn client_within(&self, timeout: Duration) -> RemoteCatalog {
        RemoteCatalog::new(
            std::slice::from_ref(&self.addr),
            CLUSTER,
            timeout,
            &admin_tls(),
        )
        .unwrap()
    }

    async fn raw(&self) -> CatalogClient<tonic::transport::Channel> {
        CatalogClient::new(common::tls_channel(&self.addr, &common::site().admin).await)
    }

    /// What this replica has applied (no leader asked).
    async fn applied(&self) -> Option<(u64, State)> {
        let answer = self.client().read_state(pb::ReadConsistency::Stale).await;
        answer.ok().map(|r| (r.applied_index, r.state))
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// An admin's certificates, as `strata ctl` would use them.
fn admin_tls() -> strata_trust::SiteTls {
    common::tls(&common::site().admin)
}

fn volume(n: u64) -> LogEntry {
    LogEntry {
        by: None,
        at: Timestamp::from_unix_nanos(1_000_000 + n),
        command: CatalogCommand::RegisterVolume(Volume {
            id: format!("vol-{n}"),
            path: format!("/data/{n}"),
            labels: Default::default(),
        }),
    }
}

/// A client writing `vol-0`, `vol-1`, … through any replica, retrying a
/// write until it is acknowledged; records what was acknowledged.
struct Writer {
    acked: Arc<Mutex<Vec<u64>>>,
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Writer {
    fn start(addrs: Vec<String>) -> Writer {
        let acked = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (a, s) = (acked.clone(), stop.clone());
        let task = tokio::spawn(async move {
            let catalog =
                RemoteCatalog::new(&addrs, CLUSTER, Duration::from_secs(2), &admin_tls()).unwrap();
            let mut n = 0;
            while !s.load(Ordering::Relaxed) {
                match catalog.propose_indexed(&volume(n)).await {
                    Ok((Ok(_), _)) => {
                        a.lock().unwrap().push(n);
                        n += 1;
                    }
                    Ok((Err(rejected), _)) => panic!("vol-{n} rejected: {rejected:?}"),
                    // No leader yet: the same entry again (idempotent).
                    Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
                }
            }
        });
        Writer { acked, stop, task }
    }

    fn acked(&self) -> Vec<u64> {
        self.acked.lock().unwrap().clone()
    }

    async fn wait_for(&self, more_than: usize, within: Duration) {
        let deadline = Instant::now() + within;
        while self.acked.lock().unwrap().len() <= more_than {
            assert!(
                Instant::now() < deadline,
                "writes stalled at {}",
                self.acked.lock().unwrap().len()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn stop(self) -> Vec<u64> {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.unwrap();
        self.acked.lock().unwrap().clone()
    }
}

/// The leader as the given replicas report it, once one is known.
async fn leader(rs: &[&Replica], within: Duration) -> u64 {
    let deadline = Instant::now() + within;
    loop {
        for r in rs {
            let asked = r.client_within(Duration::from_secs(2));
            if let Ok(m) = asked.members(pb::ReadConsistency::Linearizable).await
                && m.leader_id != 0
            {
                return m.leader_id;
            }
        }
        assert!(Instant::now() < deadline, "no leader within {within:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until every replica has applied the same index, at least `min`,
/// and returns each one's state.
async fn converged(rs: &[&Replica], min: u64) -> Vec<State> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut seen = Vec::new();
        for r in rs {
            seen.push(r.applied().await);
        }
        let indexes: BTreeSet<Option<u64>> =
            seen.iter().map(|s| s.as_ref().map(|(i, _)| *i)).collect();
        if indexes.len() == 1
            && let Some(Some(i)) = indexes.first()
            && *i >= min
        {
            return seen.into_iter().map(|s| s.unwrap().1).collect();
        }
        assert!(
            Instant::now() < deadline,
            "replicas did not converge: applied {indexes:?}, need ≥ {min}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The group's commit as a linearizable read sees it through any of `rs`,
/// then every one of `rs`'s state once all have applied that far.
async fn settled(rs: &[&Replica]) -> Vec<State> {
    converged(rs, commit_index(rs).await).await
}

/// The group's commit index, as a linearizable read through any of `rs`
/// sees it.
async fn commit_index(rs: &[&Replica]) -> u64 {
    let all: Vec<String> = rs.iter().map(|r| r.addr.clone()).collect();
    RemoteCatalog::new(&all, CLUSTER, Duration::from_secs(30), &admin_tls())
        .unwrap()
        .read_state(pb::ReadConsistency::Linearizable)
        .await
        .unwrap()
        .applied_index
}

/// While writes go on: the group's commit as a linearizable read sees it
/// through any of `rs`, then each of `rs`'s state once it has applied that
/// far (each at its own index; under load they are seldom all equal at the
/// moment they are asked).
async fn reached(rs: &[&Replica]) -> Vec<State> {
    let last = commit_index(rs).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut states = Vec::new();
    for r in rs {
        loop {
            match r.applied().await {
                Some((i, state)) if i >= last => {
                    states.push(state);
                    break;
                }
                seen => assert!(
                    Instant::now() < deadline,
                    "replica {} applied {:?}, need ≥ {last}",
                    r.id,
                    seen.map(|(i, _)| i)
                ),
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    states
}

/// Checks that `state` holds every acknowledged write, entry by entry.
fn assert_has_all(who: u64, state: &State, acked: &[u64]) {
    let volumes: BTreeSet<(String, String)> = state
        .volumes()
        .map(|v| (v.id.clone(), v.path.clone()))
        .collect();
    for n in acked {
        assert!(
            volumes.contains(&(format!("vol-{n}"), format!("/data/{n}"))),
            "replica {who} lost acknowledged write vol-{n} ({} volumes)",
            volumes.len()
        );
    }
}

/// Starts replica 1 with --bootstrap and the others joining, and adds them.
async fn group(root: &Path, n: u64) -> Vec<Replica> {
    let mut rs: Vec<Replica> = (1..=n).map(|id| Replica::new(root, id)).collect();
    rs[0].start(true).await;
    for r in &mut rs[1..] {
        r.start(false).await;
    }
    let first = rs[0].client();
    for r in &rs[1..] {
        first.add_member(r.id, &r.addr, false).await.unwrap();
    }
    rs
}

/// The members as `r` answers them, once `done` says so (or a panic after
/// `within`).
async fn members_until(
    r: &Replica,
    within: Duration,
    done: impl Fn(&pb::ListMembersResponse) -> bool,
) -> pb::ListMembersResponse {
    let deadline = Instant::now() + within;
    loop {
        let m = r
            .client()
            .members(pb::ReadConsistency::Linearizable)
            .await
            .unwrap();
        if done(&m) {
            return m;
        }
        assert!(
            Instant::now() < deadline,
            "members never as expected: {m:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The `--initial-members` list of `rs` (id=host:port,…).
fn initial_members(rs: &[Replica]) -> String {
    rs.iter()
        .map(|r| format!("{}={}", r.id, r.addr))
        .collect::<Vec<_>>()
        .join(",")
}

fn addrs(rs: &[Replica]) -> Vec<String> {
    rs.iter().map(|r| r.addr.clone()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_leader_is_replaced_and_loses_no_acknowledged_write() {
    let root = TempDir::new().unwrap();
    let mut rs = group(root.path(), 3).await;
    let writer = Writer::start(addrs(&rs));
    writer.wait_for(100, Duration::from_secs(60)).await;

    let old = leader(&rs.iter().collect::<Vec<_>>(), Duration::from_secs(10)).await;
    let before = writer.acked();
    let killed_at = Instant::now();
    rs.iter_mut().find(|r| r.id == old).unwrap().kill9();
    let survivors: Vec<&Replica> = rs.iter().filter(|r| r.id != old).collect();
    let new = leader(&survivors, Duration::from_secs(10)).await;
    assert_ne!(new, old, "the killed replica cannot lead");
    // A write after the kill is committed by the new leader.
    writer
        .wait_for(before.len() + 50, Duration::from_secs(30))
        .await;
    println!(
        "leader {old} killed; replica {new} leads and 50 more writes committed {:?} after the kill",
        killed_at.elapsed()
    );

    // The killed replica comes back and catches up.
    rs.iter_mut()
        .find(|r| r.id == old)
        .unwrap()
        .start(false)
        .await;
    let acked = writer.stop().await;
    assert!(acked.starts_with(&before));
    let states = settled(&rs.iter().collect::<Vec<_>>()).await;
    for (r, s) in rs.iter().zip(&states) {
        assert_has_all(r.id, s, &acked);
        assert_eq!(s, &states[0], "replica {} differs from replica 1", r.id);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_restart_keeps_every_replica_identical() {
    let root = TempDir::new().unwrap();
    let mut rs = group(root.path(), 3).await;
    let catalog =
        RemoteCatalog::new(&addrs(&rs), CLUSTER, Duration::from_secs(10), &admin_tls()).unwrap();
    for n in 0..300 {
        commit(&catalog, n).await;
    }
    let before = catalog
        .read_state(pb::ReadConsistency::Linearizable)
        .await
        .unwrap();
    for r in &mut rs {
        r.kill9();
    }
    for r in &mut rs {
        r.start(false).await;
    }
    leader(&rs.iter().collect::<Vec<_>>(), Duration::from_secs(20)).await;
    // A linearizable read is answered by the replica asked, follower or
    // leader, and sees every write acknowledged before the restart.
    for r in &rs {
        let read = r
            .client()
            .read_state(pb::ReadConsistency::Linearizable)
            .await
            .unwrap();
        assert_eq!(read.served_by, r.id, "read through replica {}", r.id);
        assert!(read.applied_index >= before.applied_index);
        assert_has_all(r.id, &read.state, &(0..300).collect::<Vec<_>>());
    }
    let states = converged(&rs.iter().collect::<Vec<_>>(), before.applied_index).await;
    for (r, s) in rs.iter().zip(&states) {
        assert_has_all(r.id, s, &(0..300).collect::<Vec<_>>());
        assert_eq!(
            s.volumes().collect::<Vec<_>>(),
            before.state.volumes().collect::<Vec<_>>(),
            "replica {} after the restart",
            r.id
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn membership_grows_to_five_and_shrinks_to_one_under_load() {
    let root = TempDir::new().unwrap();
    let mut rs = group(root.path(), 1).await;
    for id in 2..=5 {
        let mut r = Replica::new(root.path(), id);
        r.start(false).await;
        rs.push(r);
    }
    let writer = Writer::start(vec![rs[0].addr.clone()]);
    writer.wait_for(20, Duration::from_secs(30)).await;
    let admin = rs[0].client();
    for r in &rs[1..] {
        let m = admin.add_member(r.id, &r.addr, false).await.unwrap();
        assert!(m.members.iter().any(|m| m.id == r.id && m.voter));
        writer
            .wait_for(writer.acked().len() + 20, Duration::from_secs(30))
            .await;
    }
    let five = admin
        .members(pb::ReadConsistency::Linearizable)
        .await
        .unwrap();
    assert_eq!(five.members.iter().filter(|m| m.voter).count(), 5);
    // Down to three, then back to one, one replica at a time; whichever
    // leads may be removed (it steps down once the change is committed).
    // Replica 1, which the writer talks to, stays.
    for (id, left) in [(5, 4), (4, 3), (3, 2), (2, 1)] {
        let m = admin.remove_member(id).await.unwrap();
        assert!(m.members.iter().all(|m| m.id != id), "{m:?}");
        writer
            .wait_for(writer.acked().len() + 20, Duration::from_secs(30))
            .await;
        let now = admin
            .members(pb::ReadConsistency::Linearizable)
            .await
            .unwrap();
        assert_eq!(now.members.len(), left, "{now:?}");
        if left == 3 {
            // Acknowledged before the read that `reached` starts with, so
            // all of them are at or below the index it waits for.
            let acked = writer.acked();
            let three: Vec<&Replica> = rs.iter().filter(|r| r.id <= 3).collect();
            for (r, s) in three.iter().zip(&reached(&three).await) {
                assert_has_all(r.id, s, &acked);
            }
        }
    }
    let acked = writer.stop().await;
    let one = settled(&[&rs[0]]).await;
    assert_has_all(1, &one[0], &acked);
    let now = admin
        .members(pb::ReadConsistency::Linearizable)
        .await
        .unwrap();
    let ids: Vec<(u64, bool)> = now.members.iter().map(|m| (m.id, m.voter)).collect();
    assert_eq!(ids, [(1, true)]);
    assert_eq!(now.leader_id, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_dir_of_another_cluster_or_replica_refuses_to_start() {
    let root = TempDir::new().unwrap();
    let mut r = Replica::new(root.path(), 1);
    r.start(true).await;
    commit(&r.client(), 1).await;
    r.kill9();
    for (cluster, id, says) in [
        (
            "other-site",
            1,
            "belongs to cluster \"test-site\" as replica 1",
        ),
        (
            CLUSTER,
            2,
            "as replica 1, but this replica was started as replica 2",
        ),
        ("Bad_Name", 1, "cluster:"),
    ] {
        let out = r.command(cluster, id, false).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{cluster}/{id} started: {stderr}");
        assert!(stderr.contains(says), "{cluster}/{id}: {stderr}");
    }
    // The right identity still starts, with the data intact.
    r.start(false).await;
    leader(&[&r], Duration::from_secs(10)).await;
    let state = r.applied().await.unwrap().1;
    assert_has_all(1, &state, &[1]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_metrics_port_in_use_fails_the_start_naming_the_flag() {
    let root = TempDir::new().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mut r = Replica::new(root.path(), 1);
    r.metrics = Some(taken.local_addr().unwrap().to_string());
    let out = exits_within(r.command(CLUSTER, 1, true), Duration::from_secs(30))
        .expect("strata catalog kept running with its metrics port taken");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("--metrics-addr") && stderr.contains("in use"),
        "{stderr}"
    );
    // Refused before the store was made.
    assert!(!r.dir.join("catalog").exists(), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_the_right_code_and_name_the_field() {
    let root = TempDir::new().unwrap();
    let mut rs = [Replica::new(root.path(), 1)];
    let metrics = format!("127.0.0.1:{}", free_port());
    rs[0].metrics = Some(metrics.clone());
    rs[0].start(true).await;
    // Its Raft state on /metrics, under the same names as strata node's.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = common::scrape(&metrics);
        if text.contains("strata_catalog_is_leader 1")
            && text.contains("strata_catalog_leader_id 1")
        {
            break;
        }
        assert!(Instant::now() < deadline, "metrics:\n{text}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut c = rs[0].raw().await;
    let e = c
        .propose(pb::ProposeRequest {
            entry_json: b"{\"at\": 1".to_vec(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().starts_with("entry_json: "), "{e:?}");
    // Timed like any proposal, answered before the answer left.
    let text = common::scrape(&metrics);
    assert!(
        text.contains("strata_catalog_propose_duration_seconds_count 1")
            && text.contains("strata_catalog_role{role=\"leader\"} 1"),
        "metrics:\n{text}"
    );
    let e = c
        .read(pb::ReadRequest {
            cluster: "other-site".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    assert!(e.message().starts_with("cluster: "), "{e:?}");
    for (address, why) in [
        ("nohost", "not host:port"),
        ("h:0", "port"),
        ("h:x", "port"),
    ] {
        let e = c
            .add_member(pb::AddMemberRequest {
                id: 7,
                address: address.into(),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{address}");
        assert!(
            e.message().starts_with("address: ") && e.message().contains(why),
            "{e:?}"
        );
    }
    let e = c
        .remove_member(pb::RemoveMemberRequest {
            id: 9,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    assert!(
        e.message().starts_with("id: replica 9 is not a member"),
        "{e:?}"
    );
    // Moving the replica asked to an address it is not served at is refused,
    // not done silently.
    let e = c
        .add_member(pb::AddMemberRequest {
            id: 1,
            address: "127.0.0.1:1".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
    assert!(
        e.message()
            .starts_with("address: replica 1 is this one, reached at "),
        "{e:?}"
    );

    // strata ctl members ls, as an operator sees it.
    let out = Command::new(strata_bin())
        .args([
            "ctl",
            "members",
            "ls",
            "-o",
            "json",
            "--catalog",
            &rs[0].addr,
        ])
        .env("STRATA_TLS_DIR", &common::site().admin)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["leader"], 1);
    assert_eq!(doc["members"][0]["role"], "leader");
    assert_eq!(doc["members"][0]["address"], rs[0].addr.as_str());
    let out = Command::new(strata_bin())
        .args(["ctl", "members", "rm", "9", "--catalog", &rs[0].addr])
        .env("STRATA_TLS_DIR", &common::site().admin)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).starts_with("strata ctl: members rm 9: 127.0.0.1:"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Three network namespaces on one bridge in the test's own namespace: each
/// replica gets an address of its own, and a link taken down is a real cut.
/// Removed (namespaces, veths, bridge) on drop.
struct Net {
    tag: String,
    n: u64,
}

fn ip(args: &[&str]) {
    let out = Command::new("ip")
        .args(args)
        .output()
        .expect("run ip (iproute2)");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Net {
    fn new(n: u64) -> Net {
        // Interface names are at most 15 bytes: a short tag per test run.
        let tag = format!("{:x}", std::process::id() % 0xfffff);
        let net = Net { tag, n };
        let br = net.bridge();
        ip(&["link", "add", &br, "type", "bridge"]);
        ip(&[
            "addr",
            "add",
            &format!("{}.254/24", net.prefix()),
            "dev",
            &br,
        ]);
        ip(&["link", "set", &br, "up"]);
        for i in 1..=n {
            let ns = net.ns(i);
            ip(&["netns", "add", &ns]);
            ip(&["-n", &ns, "link", "set", "lo", "up"]);
            ip(&[
                "link",
                "add",
                &net.veth(i),
                "type",
                "veth",
                "peer",
                "name",
                "eth0",
                "netns",
                &ns,
            ]);
            ip(&["link", "set", &net.veth(i), "master", &br, "up"]);
            ip(&[
                "-n",
                &ns,
                "addr",
                "add",
                &format!("{}/24", net.addr(i)),
                "dev",
                "eth0",
            ]);
            ip(&["-n", &ns, "link", "set", "eth0", "up"]);
        }
        net
    }

    fn prefix(&self) -> String {
        let k = u32::from_str_radix(&self.tag, 16).unwrap_or(0) % 250;
        format!("10.213.{k}")
    }

    fn bridge(&self) -> String {
        format!("stbr{}", self.tag)
    }

    fn ns(&self, i: u64) -> String {
        format!("strata-{}-{i}", self.tag)
    }

    fn veth(&self, i: u64) -> String {
        format!("stv{}x{i}", self.tag)
    }

    fn addr(&self, i: u64) -> String {
        format!("{}.{i}", self.prefix())
    }

    /// Cuts replica `i` off from everyone, or connects it again.
    fn link(&self, i: u64, up: bool) {
        ip(&["link", "set", &self.veth(i), if up { "up" } else { "down" }]);
    }

    /// Runs `f` on a thread inside replica `i`'s namespace (its sockets are
    /// that namespace's: `127.0.0.1` is the replica's own loopback).
    fn inside<T: Send + 'static>(&self, i: u64, f: impl FnOnce() -> T + Send + 'static) -> T {
        use std::os::fd::AsRawFd;
        let path = format!("/var/run/netns/{}", self.ns(i));
        std::thread::spawn(move || {
            let ns = std::fs::File::open(&path).unwrap();
            // SAFETY: setns only changes this thread's network namespace.
            let rc = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(rc, 0, "setns {path}: {}", std::io::Error::last_os_error());
            f()
        })
        .join()
        .unwrap()
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for i in 1..=self.n {
            let _ = Command::new("ip")
                .args(["link", "del", &self.veth(i)])
                .output();
            let _ = Command::new("ip")
                .args(["netns", "del", &self.ns(i)])
                .output();
        }
        let _ = Command::new("ip")
            .args(["link", "del", &self.bridge()])
            .output();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitioned_leader_cannot_commit_and_the_majority_goes_on() {
    let net = Net::new(3);
    let root = TempDir::new().unwrap();
    let mut rs: Vec<Replica> = (1..=3)
        .map(|id| {
            let mut r = Replica::new(root.path(), id);
            r.addr = format!("{}:7420", net.addr(id));
            r
        })
        .collect();
    for (i, r) in rs.iter_mut().enumerate() {
        r.netns = Some(net.ns(i as u64 + 1));
        r.start(i == 0).await;
    }
    let first = rs[0].client();
    for r in &rs[1..] {
        first.add_member(r.id, &r.addr, false).await.unwrap();
    }
    let old = leader(&rs.iter().collect::<Vec<_>>(), Duration::from_secs(10)).await;
    let others: Vec<String> = rs
        .iter()
        .filter(|r| r.id != old)
        .map(|r| r.addr.clone())
        .collect();
    let writer = Writer::start(others);
    writer.wait_for(50, Duration::from_secs(30)).await;

    net.link(old, false);
    let cut_at = Instant::now();
    let majority: Vec<&Replica> = rs.iter().filter(|r| r.id != old).collect();
    let deadline = Instant::now() + Duration::from_secs(20);
    let new = loop {
        let l = leader(&majority, Duration::from_secs(20)).await;
        if l != old {
            break l;
        }
        assert!(
            Instant::now() < deadline,
            "the majority kept following {old}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let acked_at_cut = writer.acked().len();
    writer
        .wait_for(acked_at_cut + 50, Duration::from_secs(30))
        .await;
    println!(
        "leader {old} cut off; replica {new} leads and the majority committed 50 more writes {:?} after the cut",
        cut_at.elapsed()
    );

    // The old leader, asked on its own loopback, cannot commit.
    let orphan = volume(999_999);
    let tried = net.inside(old, move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(async move {
                let alone = RemoteCatalog::new(
                    &["127.0.0.1:7420".to_owned()],
                    CLUSTER,
                    Duration::from_secs(3),
                    &admin_tls(),
                )
                .unwrap();
                alone.propose_indexed(&orphan).await
            })
    });
    assert!(tried.is_err(), "the cut-off leader committed: {tried:?}");

    net.link(old, true);
    let acked = writer.stop().await;
    let states = settled(&rs.iter().collect::<Vec<_>>()).await;
    for (r, s) in rs.iter().zip(&states) {
        assert_has_all(r.id, s, &acked);
        assert!(
            s.volumes().all(|v| v.id != "vol-999999"),
            "replica {} applied the write the cut-off leader could not commit",
            r.id
        );
        assert_eq!(s, &states[0], "replica {} differs after healing", r.id);
    }
}

/// Regular files under `dir`, recursively.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(files_under(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mover_on_three_replicas_loses_nothing_when_the_leader_is_killed() {
    use sha2::{Digest, Sha256};
    use strata_tiering::catalog::{FileFilter, FileState};
    use strata_tiering::lake::{Lake, LakeConfig};
    use strata_tiering::mover::{Mover, MoverOptions};
    use strata_tiering::policy::parse_policy;
    use strata_tiering::scan::ScanOptions;

    let root = TempDir::new().unwrap();
    let mut rs = group(root.path(), 3).await;

    // 400 cold files of 16 KiB, each with its own content.
    let vol_dir = root.path().join("vol");
    let mut originals = std::collections::BTreeMap::new();
    let old = std::time::SystemTime::now() - Duration::from_secs(30 * 86_400);
    for i in 0..400u32 {
        let rel = format!("d{}/f{i:03}.dat", i % 8);
        let data: Vec<u8> = (0..16 * 1024u32)
            .map(|k| (k.wrapping_mul(31) ^ i.wrapping_mul(7919)) as u8)
            .collect();
        let p = vol_dir.join(&rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, &data).unwrap();
        std::fs::File::options()
            .write(true)
            .open(&p)
            .unwrap()
            .set_times(std::fs::FileTimes::new().set_modified(old))
            .unwrap();
        originals.insert(rel, data);
    }
    let volume = Volume {
        id: "line-3".into(),
        path: vol_dir.display().to_string(),
        labels: Default::default(),
    };
    let lake_dir = root.path().join("lake");
    let lake_url = format!("file://{}", lake_dir.display());
    let lake =
        Lake::open(&LakeConfig::parse(&lake_url, Vec::<(String, String)>::new()).unwrap()).unwrap();
    let policy = parse_policy(&format!(
        "name: cold\nlake: {{url: \"{lake_url}\"}}\nrules:\n  - name: old\n    include: [\"**\"]\n    modifiedBefore: 7d\n    action: move\n"
    ))
    .unwrap();

    let catalog =
        RemoteCatalog::new(&addrs(&rs), CLUSTER, Duration::from_secs(20), &admin_tls()).unwrap();
    let mover = Arc::new(Mover::new(
        catalog,
        MoverOptions::default()
            .scan(ScanOptions::default().settle(Duration::ZERO))
            .concurrency(8),
    ));
    mover.add_policy(policy, lake);
    let run = {
        let (mover, volume) = (mover.clone(), volume.clone());
        tokio::spawn(async move { mover.run_policy("cold", &volume).await })
    };

    // Kill the leader once some files are through and the run is under way.
    let watcher =
        RemoteCatalog::new(&addrs(&rs), CLUSTER, Duration::from_secs(20), &admin_tls()).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let released = watcher
            .read_state(pb::ReadConsistency::Stale)
            .await
            .map(|r| {
                r.state
                    .files(&FileFilter::default(), None, usize::MAX)
                    .items
                    .iter()
                    .filter(|f| f.state == FileState::Released)
                    .count()
            })
            .unwrap_or(0);
        if released >= 40 {
            break;
        }
        assert!(Instant::now() < deadline, "the run never got going");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let old_leader = leader(&rs.iter().collect::<Vec<_>>(), Duration::from_secs(10)).await;
    rs.iter_mut().find(|r| r.id == old_leader).unwrap().kill9();
    let first = run.await.unwrap();
    println!("run with the leader {old_leader} killed: {first:?}");
    // The client rode over the election: the run itself did not fail.
    let first = first.expect("the run fails when the leader is killed");
    assert_eq!(first.errors, 0, "{first:?}");
    // An intent whose answer was lost and that was sent again still counts
    // as this run's intent, not as a file found already queued.
    assert_eq!(
        (first.intents, first.already_archived),
        (400, 0),
        "{first:?}"
    );
    // Whatever the run left (a step that found no leader) goes now.
    let drained = mover.drain(std::time::SystemTime::now()).await.unwrap();
    println!("drain after: {drained:?}");
    let again = mover.run_policy("cold", &volume).await.unwrap();
    println!("second run: {again:?}");

    rs.iter_mut()
        .find(|r| r.id == old_leader)
        .unwrap()
        .start(false)
        .await;
    let states = settled(&rs.iter().collect::<Vec<_>>()).await;
    for (r, s) in rs.iter().zip(&states) {
        assert_eq!(s, &states[0], "replica {} differs", r.id);
    }
    let files = states[0]
        .files(&FileFilter::default(), None, usize::MAX)
        .items;
    let objects = files_under(&lake_dir);
    let mut keys = BTreeSet::new();
    for (rel, data) in &originals {
        let local = std::fs::read(vol_dir.join(rel)).ok();
        let record = files.iter().find(|f| f.key.path == *rel);
        match (local, record) {
            (Some(bytes), _) => assert!(bytes == *data, "{rel}: changed locally"),
            (None, Some(f)) => {
                assert_eq!(
                    f.state,
                    FileState::Released,
                    "{rel}: gone but {:?}",
                    f.state
                );
                let object = std::fs::read(lake_dir.join(&f.lake_key))
                    .unwrap_or_else(|e| panic!("{rel}: gone locally, object {}: {e}", f.lake_key));
                assert!(object == *data, "{rel}: the lake holds other bytes");
                assert_eq!(
                    f.sha256.0.as_slice(),
                    Sha256::digest(data).as_slice(),
                    "{rel}: recorded hash"
                );
                assert!(keys.insert(f.lake_key.clone()), "{rel}: key shared");
            }
            (None, None) => panic!("{rel}: neither local nor recorded"),
        }
    }
    assert_eq!(
        keys.len(),
        originals.len(),
        "every cold file moved in the end"
    );
    // Moved once: one object per file, none left over from a second upload.
    assert_eq!(
        objects.len(),
        keys.len(),
        "objects in the lake: {objects:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_started_with_join_add_themselves() {
    let root = TempDir::new().unwrap();
    let mut rs: Vec<Replica> = (1..=3).map(|id| Replica::new(root.path(), id)).collect();
    rs[0].start(true).await;
    let seed = rs[0].addr.clone();
    for r in &mut rs[1..] {
        r.join = Some(seed.clone());
        r.start(false).await;
    }
    let m = members_until(&rs[0], Duration::from_secs(30), |m| {
        m.members.iter().filter(|m| m.voter).count() == 3
    })
    .await;
    let voters: Vec<(u64, String)> = m
        .members
        .iter()
        .map(|m| (m.id, m.address.clone()))
        .collect();
    let want: Vec<(u64, String)> = rs.iter().map(|r| (r.id, r.addr.clone())).collect();
    assert_eq!(voters, want);
    // A member restarted with --join asks nothing and serves at once.
    rs[2].kill9();
    rs[2].start(false).await;
    let catalog =
        RemoteCatalog::new(&addrs(&rs), CLUSTER, Duration::from_secs(10), &admin_tls()).unwrap();
    commit(&catalog, 7).await;
    settled(&rs.iter().collect::<Vec<_>>()).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !rs[2].log_text().contains("is a member of its group") {
        assert!(Instant::now() < deadline, "{}", rs[2].log_text());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Restarted with --join at another address (another loopback address,
    // another port), it asks to be moved: the leader records the new
    // address, says so, and the log reaches the voter there.
    rs[2].kill9();
    let old = std::mem::replace(&mut rs[2].addr, format!("127.0.0.2:{}", free_port()));
    rs[2].start(false).await;
    let new = rs[2].addr.clone();
    let m = members_until(&rs[0], Duration::from_secs(30), |m| {
        m.members.iter().any(|m| m.id == 3 && m.address == new)
    })
    .await;
    assert!(m.members.iter().all(|m| m.voter), "{m:?}");
    // The leader logs the move once the change is committed: a moment
    // after the members' view shows it.
    let moved = format!("catalog: member 3 moved: {old} → {new}");
    eventually(
        || rs[..2].iter().any(|r| r.log_text().contains(&moved)),
        || {
            format!(
                "no replica logged {moved:?}:\n{}\n{}",
                rs[0].log_text(),
                rs[1].log_text()
            )
        },
    )
    .await;
    let catalog = RemoteCatalog::new(
        &addrs(&rs[..2]),
        CLUSTER,
        Duration::from_secs(10),
        &admin_tls(),
    )
    .unwrap();
    commit(&catalog, 8).await;
    applied_volume(&rs[2], "vol-8", Duration::from_secs(30)).await;
}

/// Waits up to 10 s for `seen()`: for a log line written just after the
/// state a test waited for. Fails with `why()`.
async fn eventually(seen: impl Fn() -> bool, why: impl Fn() -> String) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !seen() {
        assert!(Instant::now() < deadline, "{}", why());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until replica `r` has applied the registration of `volume` (asked
/// at `r`'s address, answered from its own state).
async fn applied_volume(r: &Replica, volume: &str, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        if let Some((_, state)) = r.applied().await
            && state.volume(volume).is_some()
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "replica {} at {} never applied {volume}: {}",
            r.id,
            r.addr,
            r.log_text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Cold files of a volume directory: `n` files of 8 KiB, each its own
/// content, modified 30 days ago; their contents by relative path.
fn cold_files(dir: &Path, prefix: &str, n: u32) -> std::collections::BTreeMap<String, Vec<u8>> {
    let old = std::time::SystemTime::now() - Duration::from_secs(30 * 86_400);
    let mut made = std::collections::BTreeMap::new();
    for i in 0..n {
        let rel = format!("{prefix}-{i:02}.dat");
        let data: Vec<u8> = format!("{prefix} {i} ")
            .bytes()
            .cycle()
            .take(8 * 1024)
            .collect();
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join(&rel), &data).unwrap();
        std::fs::File::options()
            .write(true)
            .open(dir.join(&rel))
            .unwrap()
            .set_modified(old)
            .unwrap();
        made.insert(rel, data);
    }
    made
}

/// A `strata node` whose tiering agent keeps a learner of the group,
/// served (and reached) at `listen`.
async fn agent(
    name: &str,
    dir: &Path,
    group: &str,
    config: &str,
    listen: &str,
) -> common::NodeProc {
    let tls = common::site().node(name);
    common::NodeProc::start_as(
        name,
        config,
        &[
            "--catalog-tls-dir",
            tls.to_str().unwrap(),
            "--tiering-dir",
            dir.to_str().unwrap(),
            // Their volumes are made beside the agents' directories.
            "--volume-root",
            dir.parent().unwrap().to_str().unwrap(),
            "--catalog-join",
            group,
            "--catalog-listen",
            listen,
            "--cluster",
            CLUSTER,
            // Runs only when asked.
            "--tick",
            "1h",
            "--settle",
            "0s",
            "--orphan-scan-interval",
            "0s",
        ],
    )
    .await
}

/// Commits the write `vol-<n>` (its answer must be an accepted change).
async fn commit(catalog: &RemoteCatalog, n: u64) {
    catalog
        .propose_indexed(&volume(n))
        .await
        .unwrap()
        .0
        .unwrap();
}

/// The group's state, read through `r` (linearizable).
async fn linearizable_state(r: &Replica) -> State {
    r.client()
        .read_state(pb::ReadConsistency::Linearizable)
        .await
        .unwrap()
        .state
}

/// Files the group's state records on `volume`, by state name.
fn recorded(state: &State, volume: &str) -> std::collections::BTreeMap<String, usize> {
    use strata_tiering::catalog::FileFilter;
    let filter = FileFilter {
        volume: Some(volume.to_owned()),
        ..FileFilter::default()
    };
    let mut by_state = std::collections::BTreeMap::new();
    for r in state.files(&filter, None, usize::MAX).items {
        *by_state.entry(format!("{:?}", r.state)).or_insert(0) += 1;
    }
    by_state
}

/// Two node agents (`strata node --catalog-join`) on a three-replica group:
/// each keeps a learner replica (added by itself, not a voter), registers
/// its volume in the shared catalog with its node's label, and moves only
/// its own volume's files; a recall of the other node's volume is refused.
/// With the group's leader killed, an agent's next run still commits
/// through the new leader; a restarted agent rejoins with its store without
/// being added again, and its recall brings the bytes back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_agents_keep_learners_and_move_only_their_own_volumes() {
    use strata_tiering::catalog::NODE_LABEL;
    use strata_tiering::raft::node_replica_id;

    let root = TempDir::new().unwrap();
    let mut rs = group(root.path(), 3).await;
    let join = addrs(&rs).join(",");
    let vg = common::TestVg::new(64);
    let config = common::config(&common::thick_class(&vg.name, 0), "cli");
    let (dir_a, dir_b) = (root.path().join("agent-a"), root.path().join("agent-b"));
    let listen_a = format!("127.0.0.1:{}", free_port());
    let mut a = agent("edge-a", &dir_a, &join, &config, &listen_a).await;
    let listen_b = format!("127.0.0.1:{}", free_port());
    let b = agent("edge-b", &dir_b, &join, &config, &listen_b).await;

    // Both agents add themselves as learners.
    let (id_a, id_b) = (node_replica_id("edge-a"), node_replica_id("edge-b"));
    let m = members_until(&rs[0], Duration::from_secs(60), |m| {
        let learners: BTreeSet<u64> = m
            .members
            .iter()
            .filter(|m| !m.voter)
            .map(|m| m.id)
            .collect();
        learners == BTreeSet::from([id_a, id_b])
    })
    .await;
    assert_eq!(
        m.members.len(),
        5,
        "{m:?}\n{}\n{}",
        a.log_text(),
        b.log_text()
    );

    // One volume per node, one policy for both, through either agent.
    let (vol_a, vol_b) = (root.path().join("vol-a"), root.path().join("vol-b"));
    let mut files_a = cold_files(&vol_a, "a", 20);
    let files_b = cold_files(&vol_b, "b", 20);
    common::ctl(&dir_a, &["volume", "add", "vol-a", vol_a.to_str().unwrap()]).unwrap();
    common::ctl(&dir_b, &["volume", "add", "vol-b", vol_b.to_str().unwrap()]).unwrap();
    // An agent adds volumes of its own node only.
    let refused = common::ctl(
        &dir_a,
        &[
            "volume",
            "add",
            "vol-x",
            vol_b.to_str().unwrap(),
            "--label",
            "strata.io/node=edge-b",
        ],
    )
    .unwrap_err();
    assert!(
        refused.contains("labels") && refused.contains("edge-a"),
        "{refused}"
    );
    let lake = root.path().join("lake");
    std::fs::create_dir_all(&lake).unwrap();
    let policy = root.path().join("policy.yaml");
    std::fs::write(
        &policy,
        format!(
            "name: cold\nselector: {{volumes: [\"vol-*\"]}}\nlake: {{url: \"file://{}\"}}\n\
             rules:\n  - name: old\n    modifiedBefore: 7d\n    action: move\n",
            lake.display()
        ),
    )
    .unwrap();
    // A node agent may not change policies: only an admin may.
    let refused =
        common::ctl(&dir_b, &["policy", "apply", "-f", policy.to_str().unwrap()]).unwrap_err();
    assert!(
        refused.contains("node edge-b may not change policy cold"),
        "{refused}"
    );
    // An admin stores it straight in the group.
    let out = Command::new(strata_bin())
        .args(["ctl", "policy", "apply", "-f", policy.to_str().unwrap()])
        .args(["--catalog", &rs[0].addr, "--cluster", CLUSTER])
        .env("STRATA_TLS_DIR", &common::site().admin)
        .output()
        .unwrap();
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("policy cold stored"),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // A proposal passed on by a follower keeps its proposer: edge-a's
    // certificate, at a replica that does not lead, still may not take
    // edge-b's volume, even writing an admin's name into the entry.
    let l = leader(&[&rs[0], &rs[1], &rs[2]], Duration::from_secs(10)).await;
    let follower = rs.iter().find(|r| r.id != l).unwrap();
    let as_a = RemoteCatalog::new(
        std::slice::from_ref(&follower.addr),
        CLUSTER,
        Duration::from_secs(20),
        &common::tls(&common::site().node("edge-a")),
    )
    .unwrap();
    let mut grab = LogEntry {
        by: Some(Proposer::Admin("ops".into())),
        at: Timestamp::now(),
        command: CatalogCommand::RegisterVolume(Volume {
            id: "vol-b".into(),
            path: vol_b.display().to_string(),
            labels: [(NODE_LABEL.to_owned(), "edge-a".to_owned())].into(),
        }),
    };
    match as_a.propose_indexed(&grab).await.unwrap().0 {
        Err(Rejected::Forbidden { proposer, .. }) => assert_eq!(proposer, "node edge-a"),
        other => panic!("edge-a took edge-b's volume through a follower: {other:?}"),
    }
    grab.by = None;
    assert!(matches!(
        as_a.propose_indexed(&grab).await.unwrap().0,
        Err(Rejected::Forbidden { .. })
    ));

    // Agent A's run moves vol-a only; vol-b is B's.
    let run = common::ctl(&dir_a, &["run", "now"]).unwrap();
    let state = linearizable_state(&rs[1]).await;
    assert_eq!(
        state
            .volume("vol-a")
            .unwrap()
            .labels
            .get(NODE_LABEL)
            .map(String::as_str),
        Some("edge-a")
    );
    assert_eq!(
        state
            .volume("vol-b")
            .unwrap()
            .labels
            .get(NODE_LABEL)
            .map(String::as_str),
        Some("edge-b")
    );
    assert_eq!(
        recorded(&state, "vol-a").get("Released"),
        Some(&20),
        "{:?}\nrun: {run}\nfiles: {:?}\nagent a: {}",
        recorded(&state, "vol-a"),
        common::files(&dir_a),
        a.log_text()
    );
    assert!(
        recorded(&state, "vol-b").is_empty(),
        "A touched B's volume: {:?}",
        recorded(&state, "vol-b")
    );
    for rel in files_a.keys() {
        assert!(
            !vol_a.join(rel).exists(),
            "{rel} still local after its move"
        );
    }
    for (rel, data) in &files_b {
        assert_eq!(&std::fs::read(vol_b.join(rel)).unwrap(), data, "{rel}");
    }
    let status = common::ctl(&dir_a, &["status"]).unwrap();
    assert_eq!(status["catalog"]["role"], "learner", "{status}");
    let refused = common::ctl(&dir_a, &["recall", "vol-b", "*.dat"]).unwrap_err();
    assert!(refused.contains("on node edge-b"), "{refused}");

    // B moves its own.
    let run = common::ctl(&dir_b, &["run", "now"]).unwrap();
    let state = linearizable_state(&rs[0]).await;
    assert_eq!(
        recorded(&state, "vol-b").get("Released"),
        Some(&20),
        "{:?}\nrun: {run}\nfiles: {:?}\nagent b: {}",
        recorded(&state, "vol-b"),
        common::files(&dir_b),
        b.log_text()
    );

    // The group's leader dies; A's next run commits through the new one.
    let l = leader(&[&rs[0], &rs[1], &rs[2]], Duration::from_secs(10)).await;
    let killed = rs.iter().position(|r| r.id == l).unwrap();
    rs[killed].kill9();
    files_a.extend(cold_files(&vol_a, "a-late", 5));
    common::ctl(&dir_a, &["run", "now"]).unwrap();
    let alive = rs.iter().find(|r| r.child.is_some()).unwrap();
    let state = linearizable_state(alive).await;
    assert_eq!(
        recorded(&state, "vol-a").get("Released"),
        Some(&25),
        "{:?}",
        recorded(&state, "vol-a")
    );

    // A restarts on its store: no second membership entry, and its recall
    // brings every byte back.
    drop(a);
    a = agent("edge-a", &dir_a, &join, &config, &listen_a).await;
    common::ctl(&dir_a, &["recall", "vol-a", "*.dat"]).unwrap();
    for (rel, data) in &files_a {
        assert_eq!(
            &std::fs::read(vol_a.join(rel)).unwrap(),
            data,
            "{rel} after recall"
        );
    }
    let m = alive
        .client()
        .members(pb::ReadConsistency::Linearizable)
        .await
        .unwrap();
    assert_eq!(m.members.len(), 5, "{m:?}");
    assert!(
        a.log_text().contains("is a member of its group"),
        "{}",
        a.log_text()
    );
}

/// A node agent restarted in a pod with a new IP: its learner, at another
/// loopback address, asks the group to move it; the leader records the new
/// address and says so, and a write made after the restart reaches the
/// learner there. Another node's certificate cannot move it (nor can this
/// node move a replica, or an admin put a voter at the learner's address).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_learner_restarted_at_another_address_is_moved_and_gets_the_log() {
    use strata_tiering::raft::node_replica_id;

    let root = TempDir::new().unwrap();
    let rs = group(root.path(), 3).await;
    let join = addrs(&rs).join(",");
    let vg = common::TestVg::new(64);
    let config = common::config(&common::thick_class(&vg.name, 0), "cli");
    let dir = root.path().join("agent-a");
    let id = node_replica_id("edge-a");
    let first = format!("127.0.0.1:{}", free_port());
    let a = agent("edge-a", &dir, &join, &config, &first).await;
    members_until(&rs[0], Duration::from_secs(60), |m| {
        m.members.iter().any(|m| m.id == id && m.address == first)
    })
    .await;
    let catalog =
        RemoteCatalog::new(&addrs(&rs), CLUSTER, Duration::from_secs(10), &admin_tls()).unwrap();
    // Commits a write; then waits until the learner at `addr` (edge-a's
    // node certificate answering) has applied it, by its own state.
    let reaches_learner = |n: u64, addr: String| {
        let catalog = &catalog;
        async move {
            let (answer, index) = catalog.propose_indexed(&volume(n)).await.unwrap();
            answer.unwrap();
            let edge_a = strata_trust::Expect::matching("edge-a's learner", |who| {
                who.role == strata_trust::Role::Node && who.name == "edge-a"
            });
            let connector = strata_trust::TlsConnector::new(&admin_tls(), edge_a).unwrap();
            let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
                .unwrap()
                .connect_with_connector_lazy(connector);
            let mut learner = CatalogClient::new(channel);
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                let read = learner
                    .read(pb::ReadRequest {
                        cluster: CLUSTER.into(),
                        consistency: pb::ReadConsistency::Stale.into(),
                        forwarded: false,
                    })
                    .await
                    .map(|r| r.into_inner().applied_index);
                if matches!(read, Ok(applied) if applied >= index) {
                    return;
                }
                assert!(
                    Instant::now() < deadline,
                    "the learner at {addr} never applied index {index} (vol-{n}): {read:?}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    reaches_learner(1, first.clone()).await;

    // The pod comes back with another IP, on the same store.
    drop(a);
    let second = format!("127.0.0.2:{}", free_port());
    let a = agent("edge-a", &dir, &join, &config, &second).await;
    let m = members_until(&rs[0], Duration::from_secs(30), |m| {
        m.members.iter().any(|m| m.id == id && m.address == second)
    })
    .await;
    assert_eq!(m.members.len(), 4, "{m:?}");
    assert!(m.members.iter().any(|m| m.id == id && !m.voter), "{m:?}");
    let moved = format!("catalog: member {id} moved: {first} → {second}");
    eventually(
        || rs.iter().any(|r| r.log_text().contains(&moved)),
        || format!("no replica logged {moved:?}; agent: {}", a.log_text()),
    )
    .await;
    eventually(
        || {
            a.log_text()
                .contains("the catalog group reaches this replica at its new address")
        },
        || a.log_text(),
    )
    .await;
    // A write made after the restart reaches it at the new address.
    reaches_learner(2, second.clone()).await;

    // Another node's certificate cannot move edge-a's learner, nor can
    // edge-a's move a replica.
    let as_node = |name: &str| {
        RemoteCatalog::new(
            &addrs(&rs),
            CLUSTER,
            Duration::from_secs(20),
            &common::tls(&common::site().node(name)),
        )
        .unwrap()
    };
    let s = as_node("edge-b")
        .add_member(id, "127.0.0.3:7421", true)
        .await
        .unwrap_err();
    assert_eq!(s.code(), Code::PermissionDenied, "{s}");
    assert!(s.message().contains("node edge-b"), "{s}");
    let s = as_node("edge-a")
        .add_member(2, "127.0.0.3:7421", true)
        .await
        .unwrap_err();
    assert_eq!(s.code(), Code::PermissionDenied, "{s}");
    // An admin may move members, but no voter to where the learner is.
    let s = catalog.add_member(3, &second, false).await.unwrap_err();
    assert_eq!(s.code(), Code::FailedPrecondition, "{s}");
    assert!(
        s.message().contains(&format!(
            "address: {second} is where replica {id} is reached"
        )),
        "{s}"
    );
    let m = rs[1]
        .client()
        .members(pb::ReadConsistency::Linearizable)
        .await
        .unwrap();
    let at: Vec<(u64, &str)> = m
        .members
        .iter()
        .map(|m| (m.id, m.address.as_str()))
        .collect();
    assert!(at.contains(&(id, second.as_str())), "{at:?}");
    assert!(at.contains(&(3, rs[2].addr.as_str())), "{at:?}");
}

/// A group started the way a StatefulSet starts it: every replica at once
/// with the same `--initial-members` (one of them taking its id from its
/// hostname, `strata-catalog-2` → 3, in a UTS namespace of its own). They
/// elect a leader and commit; a restarted replica does not initialize
/// again; a replica the list leaves out refuses to start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_started_with_the_same_initial_members_form_one_group() {
    let root = TempDir::new().unwrap();
    let mut rs: Vec<Replica> = (1..=3).map(|id| Replica::new(root.path(), id)).collect();
    let list = initial_members(&rs);
    rs[2].hostname = Some("strata-catalog-2".to_owned());
    for r in &mut rs {
        r.initial = Some(list.clone());
        r.start(false).await;
    }
    let m = members_until(&rs[1], Duration::from_secs(30), |m| m.leader_id != 0).await;
    let voters: Vec<(u64, String)> = m
        .members
        .iter()
        .filter(|m| m.voter)
        .map(|m| (m.id, m.address.clone()))
        .collect();
    let want: Vec<(u64, String)> = rs.iter().map(|r| (r.id, r.addr.clone())).collect();
    assert_eq!(voters, want, "{m:?}");
    let catalog =
        RemoteCatalog::new(&addrs(&rs), CLUSTER, Duration::from_secs(30), &admin_tls()).unwrap();
    for n in 0..50 {
        commit(&catalog, n).await;
    }
    let acked: Vec<u64> = (0..50).collect();
    for (r, state) in rs.iter().zip(settled(&rs.iter().collect::<Vec<_>>()).await) {
        assert_has_all(r.id, &state, &acked);
    }

    // Restarted with the same list: its store has the group, it rejoins.
    rs[0].kill9();
    rs[0].start(false).await;
    commit(&catalog, 50).await;
    settled(&rs.iter().collect::<Vec<_>>()).await;
    assert!(
        !rs[0]
            .log_text()
            .split("catalog replica serving")
            .nth(1)
            .unwrap_or("")
            .contains("initializing"),
        "a restarted replica initialized again: {}",
        rs[0].log_text()
    );

    // A replica the list leaves out.
    let mut stray = Replica::new(root.path(), 4);
    stray.initial = Some(list.clone());
    let out = stray
        .command(CLUSTER, 4, false)
        .output()
        .expect("run strata catalog");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("initial members: has no replica 4"), "{err}");
}

/// A voter whose store was lost (a new disk) is refused when it comes back
/// empty under its old id, since it forgot its vote and the log it
/// acknowledged; the same empty start is let in on a replica's first start
/// (it joins late, no leader has heard from it), and after the lost one is
/// removed it is added afresh with --join and catches up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_voter_that_lost_its_store_is_refused_until_removed_and_added_again() {
    let root = TempDir::new().unwrap();
    let mut rs: Vec<Replica> = (1..=3).map(|id| Replica::new(root.path(), id)).collect();
    let list = initial_members(&rs);
    for r in &mut rs {
        r.initial = Some(list.clone());
    }
    // Replicas 1 and 2 form the group and commit; 3 starts later, for the
    // first time, on an empty store: it is let in and catches up.
    rs[0].start(false).await;
    rs[1].start(false).await;
    let catalog = RemoteCatalog::new(
        &addrs(&rs[..2]),
        CLUSTER,
        Duration::from_secs(30),
        &admin_tls(),
    )
    .unwrap();
    for n in 0..20 {
        commit(&catalog, n).await;
    }
    rs[2].start(false).await;
    let states = settled(&rs.iter().collect::<Vec<_>>()).await;
    assert_has_all(3, &states[2], &(0..20).collect::<Vec<_>>());
    members_until(&rs[0], Duration::from_secs(10), |m| {
        m.members
            .iter()
            .any(|m| m.id == 3 && m.voter && m.matched_index.is_some())
    })
    .await;

    // Its store is lost; started again on an empty one, it is refused.
    rs[2].kill9();
    std::fs::remove_dir_all(&rs[2].dir).unwrap();
    let out = exits_within(rs[2].command(CLUSTER, 3, false), Duration::from_secs(30))
        .unwrap_or_else(|| panic!("replica 3 started on an empty store instead of refusing"));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("lost its data") && err.contains("strata ctl members rm 3"),
        "{err}"
    );
    assert!(
        !rs[2].dir.join("catalog").join("CURRENT").exists(),
        "a refused replica must not have created a store"
    );
    // The other two go on committing.
    for n in 20..25 {
        commit(&catalog, n).await;
    }

    // Removed, then started with --join, it is added afresh and catches up.
    catalog.remove_member(3).await.unwrap();
    rs[2].initial = None;
    rs[2].join = Some(rs[0].addr.clone());
    rs[2].start(false).await;
    members_until(&rs[0], Duration::from_secs(30), |m| {
        m.members.iter().any(|m| m.id == 3 && m.voter)
    })
    .await;
    let states = settled(&rs.iter().collect::<Vec<_>>()).await;
    for (r, s) in rs.iter().zip(&states) {
        assert_has_all(r.id, s, &(0..25).collect::<Vec<_>>());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_that_lost_its_store_is_refused_by_the_next_leader() {
    let root = TempDir::new().unwrap();
    let mut rs: Vec<Replica> = (1..=3).map(|id| Replica::new(root.path(), id)).collect();
    let list = initial_members(&rs);
    for r in &mut rs {
        r.initial = Some(list.clone());
        r.start(false).await;
    }
    let catalog =
        RemoteCatalog::new(&addrs(&rs), CLUSTER, Duration::from_secs(30), &admin_tls()).unwrap();
    for n in 0..10 {
        commit(&catalog, n).await;
    }
    // The leader records in the catalog every voter it saw hold the log.
    members_until(&rs[0], Duration::from_secs(15), |m| {
        m.members.len() == 3 && m.members.iter().all(|m| m.held_log)
    })
    .await;

    // The leader goes, with its store. The next leader never heard from it
    // (it has not answered this leader once), but the catalog remembers.
    let first = leader(&rs.iter().collect::<Vec<_>>(), Duration::from_secs(10)).await;
    let gone = rs.iter().position(|r| r.id == first).unwrap();
    rs[gone].kill9();
    std::fs::remove_dir_all(&rs[gone].dir).unwrap();
    let rest: Vec<&Replica> = rs.iter().filter(|r| r.id != first).collect();
    let second = leader(&rest, Duration::from_secs(10)).await;
    assert_ne!(second, first);
    let seen = members_until(rest[0], Duration::from_secs(10), |m| m.leader_id == second).await;
    let former = seen.members.iter().find(|m| m.id == first).unwrap();
    assert!(
        former.held_log && former.matched_index.is_none(),
        "the new leader should know only from the catalog: {former:?}"
    );

    let out = exits_within(
        rs[gone].command(CLUSTER, first, false),
        Duration::from_secs(30),
    )
    .unwrap_or_else(|| panic!("replica {first} started on an empty store instead of refusing"));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("lost its data") && err.contains(&format!("strata ctl members rm {first}")),
        "{err}"
    );
    assert!(!rs[gone].dir.join("catalog").join("CURRENT").exists());
    // The two left go on committing.
    for n in 10..15 {
        commit(&catalog, n).await;
    }

    // Removed, it is forgotten: an empty store under its id may join afresh.
    catalog.remove_member(first).await.unwrap();
    members_until(rest[0], Duration::from_secs(10), |m| {
        m.members.iter().all(|m| m.id != first)
    })
    .await;
    let state = catalog
        .read_state(pb::ReadConsistency::Linearizable)
        .await
        .unwrap()
        .state;
    assert!(!state.replica_held_log(first));
}

/// Runs `cmd` to its end and answers its output, or kills it and answers
/// None if it is still running after `within`.
fn exits_within(mut cmd: Command, within: Duration) -> Option<std::process::Output> {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run strata catalog");
    let deadline = Instant::now() + within;
    while child.try_wait().expect("wait for strata catalog").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Some(
        child
            .wait_with_output()
            .expect("read strata catalog's output"),
    )
}
