//! Where each member of the group is reached, as the membership this
//! replica knows says: for the network, whose peers follow a member that
//! moves.
//!
//! A member moved with `ChangeMembers::SetNodes` (a node agent's learner
//! restarted in a pod with another IP, `strata ctl members add` of a member
//! at a new address) keeps its replication stream and heartbeats, and with
//! them the network peer made for its old address: openraft rebuilds them
//! when the leader changes, not when a node's address does. So the network
//! keeps every member's address here, and a peer whose member moved connects
//! to the new address at its next call (the calls to the old one fail, and
//! openraft calls again).

use std::collections::BTreeMap;

use openraft::Raft;
use openraft::async_runtime::WatchReceiver;
use tokio::sync::watch;

use super::state_machine::StateMachineStore;
use super::types::{C, NodeId};

/// Every member's address, by id.
pub(crate) type Addresses = BTreeMap<NodeId, String>;

/// Keeps `addresses` what the membership `raft` knows says, until the
/// replica stops.
pub(crate) async fn follow_addresses(
    raft: Raft<C, StateMachineStore>,
    addresses: watch::Sender<Addresses>,
) {
    // The server metrics change with the membership (and elections) only.
    let mut server = raft.server_metrics();
    loop {
        let now: Addresses = server
            .borrow_watched()
            .membership_config
            .membership()
            .nodes()
            .map(|(id, node)| (*id, node.addr.clone()))
            .collect();
        addresses.send_if_modified(|known| {
            let changed = *known != now;
            if changed {
                *known = now;
            }
            changed
        });
        if server.changed().await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use openraft::BasicNode;
    use openraft::network::RaftNetworkFactory;

    use super::*;
    use crate::raft::GrpcNetwork;

    #[tokio::test]
    async fn a_peer_follows_its_member_to_a_new_address_and_only_forward() {
        let dir = tempfile::tempdir().unwrap();
        let id = strata_trust::Identity::new(strata_trust::Role::Replica, "").unwrap();
        let tls_dir = strata_trust::ensure_local_site(dir.path(), "test", &[id])
            .unwrap()
            .remove(0);
        let tls = strata_trust::SiteTls::load(&tls_dir).unwrap();
        let mut network = GrpcNetwork::new("c", std::time::Duration::from_secs(1), tls);
        let book = network.addresses();
        let at =
            |addr: &str| Addresses::from([(1, "10.0.0.1:7420".to_owned()), (5, addr.to_owned())]);
        // The book still has the address from before the one the peer is
        // made with (a membership seen by the core first): the peer keeps
        // the newer one.
        book.send_replace(at("10.0.0.5:7421"));
        let mut peer = network
            .new_client(5, &BasicNode::new("10.0.0.9:7421"))
            .await;
        peer.follow_move();
        assert_eq!(peer.address(), "10.0.0.9:7421");
        // The same membership reaching the book moves nothing.
        book.send_replace(at("10.0.0.9:7421"));
        peer.follow_move();
        assert_eq!(peer.address(), "10.0.0.9:7421");
        // A move after it: the peer goes to the new address.
        book.send_replace(at("10.0.0.7:7421"));
        peer.follow_move();
        assert_eq!(peer.address(), "10.0.0.7:7421");
        // Another member moving leaves this one where it is.
        let mut other = at("10.0.0.7:7421");
        other.insert(1, "10.0.0.2:7420".to_owned());
        book.send_replace(other);
        peer.follow_move();
        assert_eq!(peer.address(), "10.0.0.7:7421");
    }
}
