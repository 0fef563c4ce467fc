//! Who may propose what: checked as each entry is applied, against the
//! state the entry is applied to, so that every replica decides the same
//! and a proposal forwarded through any replica is judged by who made it.
//!
//! | proposer | may propose |
//! |---|---|
//! | none (a replica, the process holding the catalog) | anything |
//! | `Admin` | anything |
//! | `Node(n)` | file commands and runs on volumes labelled `strata.io/node: n`; registering a volume labelled `n` under an id no other node holds; removing its own volumes |
//!
//! A node may not touch policies, claims or the group's replicas.

use super::command::{Command, Proposer};
use super::outcome::Rejected;
use super::scope::NODE_LABEL;
use super::state::State;
use super::types::Claim;

/// Whether `by` may propose `cmd` on `state`.
pub(super) fn authorize(
    state: &State,
    by: Option<&Proposer>,
    cmd: &Command,
) -> Result<(), Rejected> {
    let Some(Proposer::Node(node)) = by else {
        return Ok(());
    };
    let forbid = |what: String, reason: String| Rejected::Forbidden {
        proposer: format!("node {node}"),
        what,
        reason,
    };
    // The node a registered volume is on, if any.
    let owner = |id: &str| {
        state
            .volumes
            .get(id)
            .map(|v| v.labels.get(NODE_LABEL).map(String::as_str))
    };
    let own_volume = |id: &str, what: String| match owner(id) {
        Some(Some(n)) if n == node => Ok(()),
        Some(Some(other)) => Err(forbid(what, format!("volume {id} is on node {other}"))),
        Some(None) => Err(forbid(
            what,
            format!("volume {id} is on no node (it has no {NODE_LABEL} label)"),
        )),
        None => Err(forbid(what, format!("volume {id} is not registered"))),
    };
    if let Some(key) = cmd.file_key() {
        return own_volume(&key.volume, format!("change the record of {key}"));
    }
    match cmd {
        Command::RecordRun(run) => own_volume(&run.volume, format!("record run {}", run.id)),
        Command::RegisterVolume(v) => {
            let what = format!("register volume {}", v.id);
            match v.labels.get(NODE_LABEL) {
                Some(n) if n == node => {}
                Some(other) => {
                    return Err(forbid(what, format!("it is labelled for node {other}")));
                }
                None => {
                    return Err(forbid(
                        what,
                        format!("a node registers only volumes labelled {NODE_LABEL}: {node}"),
                    ));
                }
            }
            match owner(&v.id) {
                None => Ok(()),
                Some(Some(n)) if n == node => Ok(()),
                Some(Some(other)) => Err(forbid(
                    what,
                    format!("the id is held by a volume on node {other}"),
                )),
                Some(None) => Err(forbid(
                    what,
                    "the id is held by a volume on no node".to_owned(),
                )),
            }
        }
        Command::RemoveVolume { id } => match owner(id) {
            // Nothing to remove: the same no-op for anyone.
            None => Ok(()),
            Some(_) => own_volume(id, format!("remove volume {id}")),
        },
        Command::PutPolicy { name, .. } | Command::DeletePolicy { name } => Err(forbid(
            format!("change policy {name}"),
            "policies are changed with an admin certificate".to_owned(),
        )),
        Command::PutClaim(Claim { pv, .. }) | Command::DeleteClaim { pv } => Err(forbid(
            format!("change the claim of volume {pv}"),
            "claims come from the Kubernetes API, through the catalog's replicas".to_owned(),
        )),
        Command::RecordReplicaHeldLog { id } | Command::ForgetReplica { id } => Err(forbid(
            format!("change what the catalog records of replica {id}"),
            "only the catalog's replicas do".to_owned(),
        )),
        // File commands were handled above.
        _ => Ok(()),
    }
}
