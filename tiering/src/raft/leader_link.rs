//! The way from a replica that does not lead to the one that does: a gRPC
//! channel per leader address, made once and reused, for the requests a
//! replica forwards (its clients' writes, its own reads' read index, its
//! own proposals when it is a node agent's learner).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use openraft::Raft;
use openraft::async_runtime::WatchReceiver;
use strata_proto::strata::v1::catalog_client::CatalogClient as CatalogGrpcClient;
use strata_trust::{Expect, Role, SiteTls, TlsConnector};
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};

use super::state_machine::StateMachineStore;
use super::types::{C, NodeId};

/// How often an idle connection to the leader is pinged.
const KEEPALIVE: Duration = Duration::from_secs(1);

/// Channels to the leaders a replica has known, by address.
#[derive(Debug)]
pub(crate) struct LeaderLink {
    connect_timeout: Duration,
    /// The site's certificates; without them (a one-member group) there is
    /// never a leader elsewhere to reach.
    tls: Option<SiteTls>,
    channels: Mutex<HashMap<String, Channel>>,
}

impl LeaderLink {
    pub(crate) fn new(connect_timeout: Duration, tls: Option<SiteTls>) -> Self {
        Self {
            connect_timeout,
            tls,
            channels: Mutex::default(),
        }
    }

    /// A client of the leader (`hint`, else the one `raft` knows), unless
    /// this replica (`me`) leads or the request was `forwarded` to it
    /// already (one hop only: two replicas with different ideas of the
    /// leader cannot bounce a request between them).
    pub(crate) fn client(
        &self,
        raft: &Raft<C, StateMachineStore>,
        me: NodeId,
        forwarded: bool,
        hint: Option<NodeId>,
    ) -> Result<CatalogGrpcClient<Channel>, Status> {
        // The leader, and its address from the membership, in one look.
        let (leader, addr) = {
            let rx = raft.metrics();
            let m = rx.borrow_watched();
            let leader = hint.or(m.current_leader);
            let addr = leader.and_then(|l| {
                m.membership_config
                    .membership()
                    .get_node(&l)
                    .map(|n| n.addr.clone())
            });
            (leader, addr)
        };
        let leader = match leader {
            Some(l) if l != me && !forwarded => l,
            Some(l) if l != me => {
                return Err(Status::unavailable(format!(
                    "catalog replica {me} is not the leader either (it knows {l}); retry"
                )));
            }
            _ => {
                return Err(Status::unavailable(format!(
                    "catalog replica {me}: no leader known (an election is under way, or this \
                     replica is cut off from the majority)"
                )));
            }
        };
        let Some(addr) = addr else {
            return Err(Status::unavailable(format!(
                "catalog replica {me}: the leader {leader} is not in its membership yet"
            )));
        };
        let channel = self.channel(&addr)?;
        Ok(CatalogGrpcClient::new(channel)
            .max_decoding_message_size(super::limits::STATE_READ)
            .max_encoding_message_size(super::limits::API_REQUEST))
    }

    /// The answer of a call forwarded to the leader, as this replica `me`
    /// passes it on: a call whose connection broke (the leader was killed
    /// or cut off) decided nothing known, so it becomes UNAVAILABLE, which
    /// clients retry.
    pub(crate) fn answer<T>(me: NodeId, answer: Result<T, Status>) -> Result<T, Status> {
        match answer {
            Err(s) if matches!(s.code(), Code::Cancelled | Code::Unknown) => {
                Err(Status::unavailable(format!(
                    "catalog replica {me}: the call forwarded to the leader broke: {}; retry",
                    s.message()
                )))
            }
            answer => answer,
        }
    }

    fn channel(&self, addr: &str) -> Result<Channel, Status> {
        let mut channels = self.channels.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = channels.get(addr) {
            return Ok(c.clone());
        }
        let Some(tls) = &self.tls else {
            return Err(Status::unavailable(format!(
                "leader {addr}: this replica has no TLS certificates to reach it with"
            )));
        };
        // The leader is a voter: only a replica certificate will do.
        let connector = TlsConnector::new(tls, Expect::role(Role::Replica))
            .map_err(|e| Status::internal(format!("TLS: {e}")))?;
        let channel = Endpoint::from_shared(format!("http://{addr}"))
            .map_err(|e| Status::internal(format!("leader address {addr:?}: {e}")))?
            .connect_timeout(self.connect_timeout)
            .tcp_nodelay(true)
            // A leader cut off by the network sends no reset: the pings
            // find the dead connection, and the forwarded call fails.
            .http2_keep_alive_interval(KEEPALIVE)
            .keep_alive_timeout(KEEPALIVE * 2)
            .keep_alive_while_idle(true)
            .connect_with_connector_lazy(connector);
        channels.insert(addr.to_owned(), channel.clone());
        Ok(channel)
    }
}
