//! The catalog group over its tonic network: three replicas, each with its
//! own RocksDB stores and a real gRPC server on loopback, elect a leader and
//! replicate; the leader stops and the other two go on; a learner added
//! after the log was purged catches up from a streamed snapshot; a message
//! from another cluster is refused. (In-process replicas; the multi-process
//! tests with kill -9 and network-namespace partitions come with
//! `strata catalog`.)

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures::{Stream, StreamExt};
use openraft::async_runtime::WatchReceiver;
use openraft::network::{RPCOption, RaftNetworkFactory, RaftNetworkV2};
use openraft::raft::{AppendEntriesRequest, StreamAppendResult, VoteRequest};
use openraft::{BasicNode, Config, Raft, ServerState, SnapshotPolicy};
use strata_proto::strata::v1::catalog_raft_client::CatalogRaftClient;
use strata_proto::strata::v1::catalog_raft_server::{self, CatalogRaftServer};
use strata_proto::strata::v1::{RaftMessage, SnapshotChunk};
use strata_tiering::catalog::{Command, LogEntry, Timestamp, Volume};
use strata_tiering::raft::{
    CatalogTypeConfig, GrpcNetwork, RaftService, StateMachineStore, open_stores,
};
use strata_trust::{Expect, Identity, Role, SiteTls, TlsConnector};
use tempfile::TempDir;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tonic::transport::{Channel, Endpoint};

const CLUSTER: &str = "test-cluster";

type CatalogRaft = Raft<CatalogTypeConfig, StateMachineStore>;

/// The test site's certificates: a replica's and a node's, made once per
/// test binary under a temporary directory.
fn site() -> (&'static SiteTls, &'static SiteTls) {
    static SITE: std::sync::OnceLock<(TempDir, SiteTls, SiteTls)> = std::sync::OnceLock::new();
    let (_, replica, node) = SITE.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let ids = [
            Identity::new(Role::Replica, "").unwrap(),
            Identity::new(Role::Node, "edge-1").unwrap(),
        ];
        let dirs = strata_trust::ensure_local_site(dir.path(), "test", &ids).unwrap();
        let replica = SiteTls::load(&dirs[0]).unwrap();
        let node = SiteTls::load(&dirs[1]).unwrap();
        (dir, replica, node)
    });
    (replica, node)
}

fn replica_tls() -> SiteTls {
    site().0.clone()
}

/// Serves `router`'s services on `listener` over the site's mutual TLS.
async fn serve_tls(router: tonic::transport::server::Router, listener: TcpListener, tls: SiteTls) {
    router
        .serve_with_incoming(strata_trust::incoming(listener, tls).unwrap())
        .await
        .unwrap();
}

/// A client of a replica's Raft RPCs over the site's TLS, presenting `tls`.
async fn raft_client(addr: SocketAddr, tls: &SiteTls) -> CatalogRaftClient<Channel> {
    let connector = TlsConnector::new(tls, Expect::role(Role::Replica)).unwrap();
    let channel = Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect_with_connector(connector)
        .await
        .unwrap();
    CatalogRaftClient::new(channel)
}

struct Replica {
    id: u64,
    addr: SocketAddr,
    raft: CatalogRaft,
    server: JoinHandle<()>,
    _dir: TempDir,
}

fn config() -> Arc<Config> {
    Arc::new(
        Config {
            cluster_name: CLUSTER.into(),
            heartbeat_interval: 50,
            election_timeout_min: 200,
            election_timeout_max: 400,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(20),
            max_in_snapshot_log_to_keep: 0,
            purge_batch_size: 1,
            ..Config::default()
        }
        .validate()
        .unwrap(),
    )
}

async fn replica(id: u64) -> Replica {
    let dir = tempfile::tempdir().unwrap();
    let (log, sm) = open_stores(dir.path()).unwrap();
    let network = GrpcNetwork::new(CLUSTER, Duration::from_secs(1), replica_tls());
    let raft = Raft::new(id, config(), network, log, sm).await.unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let service = CatalogRaftServer::new(RaftService::new(raft.clone(), CLUSTER))
        .max_decoding_message_size(usize::MAX);
    let router = tonic::transport::Server::builder().add_service(service);
    let server = tokio::spawn(serve_tls(router, listener, replica_tls()));
    Replica {
        id,
        addr,
        raft,
        server,
        _dir: dir,
    }
}

fn members(rs: &[&Replica]) -> BTreeMap<u64, BasicNode> {
    rs.iter()
        .map(|r| (r.id, BasicNode::new(r.addr.to_string())))
        .collect()
}

fn volume(i: u64) -> LogEntry {
    LogEntry {
        by: None,
        at: Timestamp::from_unix_nanos(1_000 + i),
        command: Command::RegisterVolume(Volume {
            id: format!("vol-{i}"),
            path: format!("/data/{i}"),
            labels: BTreeMap::new(),
        }),
    }
}

/// The leader the given replicas agree on, within `within`.
async fn leader(rs: &[&Replica], within: Duration) -> u64 {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        for r in rs {
            let m = r.raft.metrics().borrow_watched().clone();
            if m.state == ServerState::Leader
                && rs
                    .iter()
                    .all(|o| o.raft.metrics().borrow_watched().current_leader == Some(r.id))
            {
                return r.id;
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no leader within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The volume ids a replica has applied.
async fn applied_volumes(r: &Replica) -> BTreeSet<String> {
    r.raft
        .with_state_machine(|sm: &mut StateMachineStore| {
            let ids = sm.read_applied(|s| s.volumes().map(|v| v.id.clone()).collect());
            Box::pin(async move { ids })
        })
        .await
        .unwrap()
}

/// Waits until the replica has applied everything up to `index`.
async fn applied(r: &Replica, index: u64) {
    r.raft
        .wait(Some(Duration::from_secs(20)))
        .applied_index_at_least(Some(index), "caught up")
        .await
        .unwrap_or_else(|e| panic!("replica {}: {e}", r.id));
}

/// Writes volumes `range` through `r`, retrying while a fresh leader has no
/// lease yet (what a client does on ForwardToLeader); the last index.
async fn write(r: &Replica, range: std::ops::Range<u64>) -> u64 {
    let mut last = 0;
    for i in range {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        let w = loop {
            match r.raft.client_write(volume(i)).await {
                Ok(w) => break w,
                Err(_) if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(e) => panic!(
                    "write {i} on {}: {e}\n{:#?}",
                    r.id,
                    r.raft.metrics().borrow_watched().clone()
                ),
            }
        };
        last = w.log_id.index;
    }
    last
}

/// Each replica has applied up to `index` and holds volumes 0..`count`.
async fn holds_all(rs: &[&Replica], index: u64, count: u64) {
    let want: BTreeSet<String> = (0..count).map(|i| format!("vol-{i}")).collect();
    for r in rs {
        applied(r, index).await;
        assert_eq!(applied_volumes(r).await, want, "replica {}", r.id);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raft_network_three_replicas_replicate_fail_over_and_snapshot() {
    let rs = [replica(1).await, replica(2).await, replica(3).await];
    let all: Vec<&Replica> = rs.iter().collect();
    rs[0].raft.initialize(members(&all)).await.unwrap();
    let first = leader(&all, Duration::from_secs(10)).await;
    let lead = rs.iter().find(|r| r.id == first).unwrap();

    // Every write acknowledged by the leader is applied on every replica.
    let last = write(lead, 0..50).await;
    holds_all(&all, last, 50).await;

    // The leader stops: the other two elect one of them and go on.
    lead.raft.shutdown().await.unwrap();
    lead.server.abort();
    let rest: Vec<&Replica> = rs.iter().filter(|r| r.id != first).collect();
    let second = leader(&rest, Duration::from_secs(10)).await;
    assert_ne!(second, first);
    let lead2 = rs.iter().find(|r| r.id == second).unwrap();
    let last = write(lead2, 50..80).await;
    holds_all(&rest, last, 80).await;

    // The log is purged behind a snapshot: a new learner can only catch up
    // from the snapshot, streamed over the network.
    lead2.raft.trigger().snapshot().await.unwrap();
    // openraft holds a purge back while a replication still reads the log,
    // and one to the stopped replica retries with back-off: on a loaded
    // machine (a CI run with other tests) that took more than 10 s once.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(40);
    while lead2
        .raft
        .metrics()
        .borrow_watched()
        .purged
        .is_none_or(|p| p.index < last)
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the leader's log was not purged"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let learner = replica(4).await;
    lead2
        .raft
        .add_learner(4, BasicNode::new(learner.addr.to_string()), true)
        .await
        .unwrap();
    holds_all(&[&learner], last, 80).await;
    let m = learner.raft.metrics().borrow_watched().clone();
    // Only a snapshot holds what the leader purged.
    assert!(
        m.snapshot.is_some_and(|s| s.index >= last),
        "the learner installed no snapshot up to {last}: {m:?}"
    );

    for r in rest.iter().copied().chain([&learner]) {
        r.raft.shutdown().await.unwrap();
        r.server.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raft_network_refuses_another_cluster() {
    let r = replica(1).await;
    let mut client = raft_client(r.addr, site().0).await;
    let status = client
        .vote(RaftMessage {
            cluster: "another-cluster".into(),
            json: b"{}".to_vec(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::FailedPrecondition, "{status}");
    assert!(status.message().contains("cluster"), "{status}");
    let status = client
        .vote(RaftMessage {
            cluster: CLUSTER.into(),
            json: b"not json".to_vec(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status}");
    assert!(status.message().starts_with("json:"), "{status}");
    r.raft.shutdown().await.unwrap();
    r.server.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raft_network_only_replicas_vote_replicate_or_install_snapshots() {
    let r = replica(1).await;
    let term_before = r.raft.metrics().borrow_watched().current_term;
    // A node's certificate, from this very site: refused on every Raft RPC.
    let mut client = raft_client(r.addr, site().1).await;
    let message = || RaftMessage {
        cluster: CLUSTER.into(),
        json: heartbeat_json(),
    };
    let refusals = [
        client.vote(message()).await.unwrap_err(),
        client.pre_vote(message()).await.unwrap_err(),
        client.append_entries(message()).await.unwrap_err(),
        client
            .stream_append(futures::stream::iter([message()]))
            .await
            .unwrap_err(),
        client
            .install_snapshot(futures::stream::iter([SnapshotChunk {
                cluster: CLUSTER.into(),
                ..SnapshotChunk::default()
            }]))
            .await
            .unwrap_err(),
    ];
    for status in refusals {
        assert_eq!(status.code(), tonic::Code::PermissionDenied, "{status}");
        assert!(
            status.message().contains("node edge-1") && status.message().contains("only replica"),
            "{status}"
        );
    }
    // No TLS at all: no call gets through.
    let plain = CatalogRaftClient::connect(format!("http://{}", r.addr)).await;
    if let Ok(mut plain) = plain {
        let status = plain.vote(message()).await.unwrap_err();
        assert_ne!(status.code(), tonic::Code::Ok, "{status}");
    }
    // A heartbeat from a "leader" of term 1 would have moved the term.
    assert_eq!(r.raft.metrics().borrow_watched().current_term, term_before);
    r.raft.shutdown().await.unwrap();
    r.server.abort();
}

/// A leader sends the log to a learner only if the learner's certificate
/// names the node its id comes from: a node certificate for another node
/// (a compromised node posing as a learner at an address it took over) is
/// refused before anything is sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raft_network_sends_the_log_only_to_the_learner_the_certificate_names() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    // A learner-like server holding edge-1's node certificate.
    let router = tonic::transport::Server::builder().add_service(CatalogRaftServer::new(Silent));
    let server = tokio::spawn(serve_tls(router, listener, site().1.clone()));
    let mut network = GrpcNetwork::new(CLUSTER, Duration::from_secs(1), replica_tls());
    let node = BasicNode::new(addr.to_string());
    let option = RPCOption::new(Duration::from_secs(2));
    let vote: VoteRequest<CatalogTypeConfig> =
        VoteRequest::new(openraft::impls::Vote::new(1, 1), None);

    // As learner 12345 (not edge-1's id): refused, saying what was expected.
    let mut other = network.new_client(12_345, &node).await;
    let e = other
        .vote(vote.clone(), option.clone())
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("node edge-1") && e.contains("node certificate of learner 12345"),
        "{e}"
    );

    // As edge-1's own learner id: the TLS handshake passes (the silent
    // server then never answers, so the call times out instead).
    let mut own = network
        .new_client(strata_tiering::raft::node_replica_id("edge-1"), &node)
        .await;
    let e = own.vote(vote, option).await.unwrap_err().to_string();
    assert!(!e.contains("certificate"), "{e}");
    server.abort();
}

/// An AppendEntries request of a leader of term 1 (replica 2) carrying
/// nothing: what a heartbeat looks like, as JSON on the wire.
fn heartbeat_json() -> Vec<u8> {
    let rpc = AppendEntriesRequest::<CatalogTypeConfig> {
        vote: openraft::impls::Vote::new_committed(1, 2),
        prev_log_id: None,
        leader_commit: None,
        entries: vec![],
    };
    serde_json::to_vec(&rpc).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raft_network_stream_append_answers_in_order_then_names_a_bad_message() {
    let r = replica(1).await;
    let mut client = raft_client(r.addr, site().0).await;
    for (cluster, json, code, starts) in [
        (
            "another-cluster",
            heartbeat_json(),
            tonic::Code::FailedPrecondition,
            "cluster:",
        ),
        (
            CLUSTER,
            b"not json".to_vec(),
            tonic::Code::InvalidArgument,
            "json:",
        ),
    ] {
        let good = RaftMessage {
            cluster: CLUSTER.into(),
            json: heartbeat_json(),
        };
        let bad = RaftMessage {
            cluster: cluster.into(),
            json,
        };
        // Two good requests, the bad one, and one more that must not be
        // answered: the stream ends at the bad one.
        let sent = vec![good.clone(), good.clone(), bad, good];
        let mut answers = client
            .stream_append(futures::stream::iter(sent))
            .await
            .unwrap()
            .into_inner();
        for n in 0..2 {
            let m = answers.next().await.unwrap().unwrap();
            assert_eq!(m.cluster, CLUSTER);
            let answer: StreamAppendResult<CatalogTypeConfig> =
                serde_json::from_slice(&m.json).unwrap();
            assert!(answer.is_ok(), "answer {n}: {answer:?}");
        }
        let status = answers.next().await.unwrap().unwrap_err();
        assert_eq!(status.code(), code, "{status}");
        assert!(status.message().starts_with(starts), "{status}");
        assert!(answers.next().await.is_none());
    }
    r.raft.shutdown().await.unwrap();
    r.server.abort();
}

/// A replica that takes every stream and never answers: a process hung
/// mid-write, as the leader's side sees it.
struct Silent;

type Answers = std::pin::Pin<Box<dyn Stream<Item = Result<RaftMessage, tonic::Status>> + Send>>;

#[tonic::async_trait]
impl catalog_raft_server::CatalogRaft for Silent {
    type StreamAppendStream = Answers;

    async fn stream_append(
        &self,
        _request: tonic::Request<tonic::Streaming<RaftMessage>>,
    ) -> Result<tonic::Response<Answers>, tonic::Status> {
        Ok(tonic::Response::new(Box::pin(futures::stream::pending())))
    }

    async fn append_entries(
        &self,
        _request: tonic::Request<RaftMessage>,
    ) -> Result<tonic::Response<RaftMessage>, tonic::Status> {
        futures::future::pending().await
    }

    async fn vote(
        &self,
        _request: tonic::Request<RaftMessage>,
    ) -> Result<tonic::Response<RaftMessage>, tonic::Status> {
        futures::future::pending().await
    }

    async fn pre_vote(
        &self,
        _request: tonic::Request<RaftMessage>,
    ) -> Result<tonic::Response<RaftMessage>, tonic::Status> {
        futures::future::pending().await
    }

    async fn install_snapshot(
        &self,
        _request: tonic::Request<tonic::Streaming<SnapshotChunk>>,
    ) -> Result<tonic::Response<RaftMessage>, tonic::Status> {
        futures::future::pending().await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raft_network_a_stream_to_a_silent_replica_fails_within_the_deadline() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = tonic::transport::Server::builder().add_service(CatalogRaftServer::new(Silent));
    let server = tokio::spawn(serve_tls(router, listener, replica_tls()));
    let mut network = GrpcNetwork::new(CLUSTER, Duration::from_secs(1), replica_tls());
    let mut peer = network
        .new_client(2, &BasicNode::new(addr.to_string()))
        .await;
    let deadline = Duration::from_millis(200);

    // Nothing sent: an idle stream is not a failure, however long it idles.
    let idle = futures::stream::pending::<AppendEntriesRequest<CatalogTypeConfig>>();
    let mut answers = peer
        .stream_append(idle, RPCOption::new(deadline))
        .await
        .unwrap();
    assert!(
        tokio::time::timeout(deadline * 4, answers.next())
            .await
            .is_err(),
        "an idle stream ended or failed"
    );
    drop(answers);

    // One request sent and never answered: the session fails, naming the
    // peer and the deadline, once the deadline has passed (not never).
    let rpc: AppendEntriesRequest<CatalogTypeConfig> =
        serde_json::from_slice(&heartbeat_json()).unwrap();
    let started = tokio::time::Instant::now();
    let mut answers = peer
        .stream_append(futures::stream::iter([rpc]), RPCOption::new(deadline))
        .await
        .unwrap();
    let failed = tokio::time::timeout(Duration::from_secs(5), answers.next())
        .await
        .expect("the session hung past its deadline")
        .unwrap()
        .unwrap_err();
    // openraft's soft deadline is the part of the RPC's time it leaves to
    // the network.
    let soft = RPCOption::new(deadline).soft_ttl();
    let waited = started.elapsed();
    assert!(waited >= soft, "failed after {waited:?}: {failed}");
    let msg = failed.to_string();
    assert!(
        msg.contains("catalog node 2") && msg.contains(&format!("no answer within {soft:?}")),
        "{msg}"
    );
    assert!(answers.next().await.is_none());
    server.abort();
}
