//! Running a replica of the group: serving its RPCs on a TCP listener, and
//! asking the group to take it in (`strata catalog --join`, a node agent's
//! learner).

use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use strata_proto::strata::v1::ReadConsistency;
use strata_proto::strata::v1::catalog_raft_server::CatalogRaftServer;
use strata_proto::strata::v1::catalog_server::CatalogServer;
use strata_trust::SiteTls;
use tonic::Code;

use super::api::CatalogApi;
use super::error::RaftCatalogError;
use super::identity::ReplicaIdentity;
use super::node::CatalogNode;
use super::remote::RemoteCatalog;

/// Serves the replica's Raft RPCs and the client API on `listener`, over
/// mutual TLS with the replica's certificates, until `shutdown` completes.
/// Every call is authorized by the role of the caller's certificate.
pub async fn serve_replica(
    node: Arc<CatalogNode>,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()>,
) -> Result<(), RaftCatalogError> {
    let tls = node.tls().cloned().ok_or_else(|| {
        RaftCatalogError::Serve(
            "a replica is served only over mutual TLS: it needs the site's certificates \
             (--tls-dir)"
                .to_owned(),
        )
    })?;
    let incoming = strata_trust::incoming(listener, tls)
        .map_err(|e| RaftCatalogError::Serve(format!("TLS: {e}")))?;
    let raft = CatalogRaftServer::new(node.raft_service())
        .max_decoding_message_size(super::limits::RAFT_MESSAGE)
        .max_encoding_message_size(super::limits::RAFT_MESSAGE);
    let api = CatalogServer::new(CatalogApi::new(node))
        .max_decoding_message_size(super::limits::API_REQUEST)
        .max_encoding_message_size(super::limits::STATE_READ);
    tonic::transport::Server::builder()
        .add_service(raft)
        .add_service(api)
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await
        .map_err(|e| RaftCatalogError::Serve(e.to_string()))
}

/// How long a fresh replica asks its group whether it was a voter before.
const LOST_DATA_CHECK: Duration = Duration::from_secs(3);

/// Refuses to start a voter on an empty store (`data_dir` holds no catalog
/// yet) if the group at `group` already counts it as a voter that held the
/// log (its leader saw it acknowledge, or the catalog records that an
/// earlier leader did): then it lost its data, and starting it as the same
/// voter could lose committed writes ([`RaftCatalogError::LostData`]).
///
/// A first start looks the same from here except that no leader has heard
/// from this replica, so it passes; so does any start when no leader
/// answers within a few seconds (a group starting all at once), a start on
/// an existing store, and a replica the group does not count as a voter.
/// The record is committed within about a second of the first
/// acknowledgement: a replica lost before that, under a leader that then
/// changed, passes too.
pub async fn refuse_lost_voter(
    data_dir: &Path,
    identity: &ReplicaIdentity,
    group: &[String],
    tls: &SiteTls,
) -> Result<(), RaftCatalogError> {
    let dir = data_dir.join("catalog");
    if group.is_empty() || !super::identity::is_fresh(&dir) {
        return Ok(());
    }
    let id = identity.node_id;
    let client = RemoteCatalog::new(group, &identity.cluster, LOST_DATA_CHECK, tls)
        .map_err(RaftCatalogError::Options)?;
    let members = match client.members(ReadConsistency::Linearizable).await {
        Ok(m) => m,
        Err(s) => {
            tracing::info!(
                id,
                "fresh catalog store; no leader answered whether this replica was a voter \
                 before ({}): starting",
                s.message()
            );
            return Ok(());
        }
    };
    let held = members
        .members
        .iter()
        .find(|m| m.id == id && m.voter && (m.held_log || m.matched_index.is_some()));
    match held {
        Some(m) => Err(RaftCatalogError::LostData {
            dir,
            id,
            leader: members.served_by,
            matched: m.matched_index,
        }),
        None => Ok(()),
    }
}

/// How a replica joins its group.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JoinAs {
    /// A voter: one of the replicas whose majority commits.
    Voter,
    /// A learner: it receives the log and serves reads, but never votes or
    /// leads (a node agent's replica).
    Learner,
}

/// How long [`join_group`] waits between attempts.
const JOIN_RETRY: Duration = Duration::from_secs(2);

/// Asks the replicas at `group` to add `node` (reached at `address`) until
/// it is a member, or the group refuses for a reason that retrying cannot
/// change (then the reason). A replica that is a member at `address`
/// already (it restarted) asks nothing; one the membership has at another
/// address (restarted where it is reached otherwise: a pod's new IP) asks
/// the group to move it to `address`, so that the leader sends it the log
/// there.
pub async fn join_group(
    node: Arc<CatalogNode>,
    group: &[String],
    address: &str,
    role: JoinAs,
) -> Result<(), String> {
    let id = node.id();
    let tls = node
        .tls()
        .ok_or("joining a group needs the site's TLS certificates (--tls-dir)")?;
    let client = RemoteCatalog::new(group, node.cluster(), Duration::from_secs(120), tls)?;
    // A restarted member learns its membership from its store a moment
    // after it starts: give it that moment before asking.
    node.wait_for_membership(JOIN_RETRY).await;
    let mut moving = None;
    loop {
        match node.member_address() {
            Some(known) if known == address => {
                tracing::info!(id, "catalog replica is a member of its group");
                return Ok(());
            }
            Some(known) if moving.as_ref() != Some(&known) => {
                tracing::info!(
                    id,
                    "catalog replica: the group reaches it at {known}; asking it to use {address}"
                );
                moving = Some(known);
            }
            _ => {}
        }
        match client
            .add_member(id, address, role == JoinAs::Learner)
            .await
        {
            Ok(_) if moving.is_some() => {
                tracing::info!(
                    id,
                    %address,
                    "the catalog group reaches this replica at its new address"
                );
                return Ok(());
            }
            Ok(_) => {
                tracing::info!(id, %address, ?role, "joined the catalog group");
                return Ok(());
            }
            Err(s) if matches!(s.code(), Code::Unavailable | Code::Unknown) => {
                tracing::warn!(
                    id,
                    "joining: the group cannot add this replica yet: {}",
                    s.message()
                );
            }
            Err(s) => return Err(format!("the group refused replica {id}: {}", s.message())),
        }
        tokio::time::sleep(JOIN_RETRY).await;
    }
}
