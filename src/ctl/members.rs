//! `strata ctl members`: the catalog group's replicas, over the client API
//! of `strata catalog` (`strata.v1.Catalog`), not the tiering API.

use serde::Serialize;
use strata_proto::strata::v1 as pb;
use strata_tiering::raft::RemoteCatalog;

use super::args::{MembersArgs, MembersCommand};
use super::format::Plain;
use super::{Failure, print};

/// `members` in `-o json`: `{"leader", "term", "committed_index",
/// "served_by", "members": [{"id", "address", "role", "matched_index",
/// "held_log"}]}`; `role` is `leader`, `voter` or `learner`; `leader` is null
/// when none is known; `matched_index` is null when the answering replica
/// does not know; `held_log` is whether the catalog records that a leader
/// saw the replica acknowledge the log as a voter (an empty store under its
/// id is then refused as lost data).
#[derive(Serialize)]
struct Doc {
    leader: Option<u64>,
    term: u64,
    committed_index: u64,
    served_by: u64,
    members: Vec<MemberDoc>,
}

#[derive(Serialize)]
struct MemberDoc {
    id: u64,
    address: String,
    role: &'static str,
    matched_index: Option<u64>,
    held_log: bool,
}

fn role(m: &pb::Member) -> &'static str {
    if m.leader {
        "leader"
    } else if m.voter {
        "voter"
    } else {
        "learner"
    }
}

fn doc(r: &pb::ListMembersResponse) -> Doc {
    Doc {
        leader: (r.leader_id != 0).then_some(r.leader_id),
        term: r.term,
        committed_index: r.committed_index,
        served_by: r.served_by,
        members: r
            .members
            .iter()
            .map(|m| MemberDoc {
                id: m.id,
                address: m.address.clone(),
                role: role(m),
                matched_index: m.matched_index,
                held_log: m.held_log,
            })
            .collect(),
    }
}

/// The human table: one row per replica, then the term and who answered.
pub(super) fn render(r: &pb::ListMembersResponse) -> String {
    let mut t =
        Plain::new(&["ID", "ADDRESS", "ROLE", "MATCHED", "BEHIND", "HELD LOG"]).right(&[0, 3, 4]);
    let leader_last = r
        .members
        .iter()
        .find(|m| m.leader)
        .and_then(|m| m.matched_index);
    for m in &r.members {
        let behind = match (leader_last, m.matched_index) {
            (Some(l), Some(have)) => l.saturating_sub(have).to_string(),
            _ => "-".to_owned(),
        };
        t.row(vec![
            m.id.to_string(),
            m.address.clone(),
            role(m).to_owned(),
            m.matched_index
                .map_or_else(|| "-".to_owned(), |i| i.to_string()),
            behind,
            if m.held_log { "yes" } else { "no" }.to_owned(),
        ]);
    }
    let leader = if r.leader_id == 0 {
        "none known".to_owned()
    } else {
        r.leader_id.to_string()
    };
    format!(
        "{}term {}, leader {leader}, committed index {} (as replica {} sees it)\n",
        t.render(),
        r.term,
        r.committed_index,
        r.served_by
    )
}

pub(super) async fn run(args: MembersArgs, json: bool) -> Result<(), Failure> {
    let tls = strata_trust::SiteTls::load(&args.tls_dir)
        .map_err(|e| Failure::new("members", format!("--tls-dir: {e}")))?;
    let catalog = RemoteCatalog::new(&args.catalog, &args.cluster, args.timeout, &tls)
        .map_err(|e| Failure::new("members", e))?;
    let (context, answer) = match args.command {
        MembersCommand::Ls { stale } => {
            let consistency = if stale {
                pb::ReadConsistency::Stale
            } else {
                pb::ReadConsistency::Linearizable
            };
            ("members ls".to_owned(), catalog.members(consistency).await)
        }
        MembersCommand::Add {
            id,
            address,
            learner,
        } => (
            format!("members add {id} {address}"),
            catalog.add_member(id, &address, learner).await,
        ),
        MembersCommand::Rm { id } => (format!("members rm {id}"), catalog.remove_member(id).await),
    };
    let answer = answer.map_err(|e| Failure::status(&context, &e))?;
    print(&if json {
        super::json::to_string(&doc(&answer))
    } else {
        render(&answer)
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(id: u64, voter: bool, leader: bool, matched: Option<u64>) -> pb::Member {
        pb::Member {
            id,
            address: format!("10.0.0.{id}:7420"),
            voter,
            leader,
            matched_index: matched,
            held_log: voter,
        }
    }

    #[test]
    fn table_shows_roles_and_how_far_behind() {
        let r = pb::ListMembersResponse {
            members: vec![
                member(1, true, true, Some(120)),
                member(2, true, false, Some(117)),
                member(3, false, false, None),
            ],
            leader_id: 1,
            term: 4,
            committed_index: 119,
            served_by: 2,
        };
        let text = render(&r);
        let rows: Vec<Vec<&str>> = text
            .lines()
            .map(|l| l.split_whitespace().collect())
            .collect();
        assert_eq!(rows[1], ["1", "10.0.0.1:7420", "leader", "120", "0", "yes"]);
        assert_eq!(rows[2], ["2", "10.0.0.2:7420", "voter", "117", "3", "yes"]);
        assert_eq!(rows[3], ["3", "10.0.0.3:7420", "learner", "-", "-", "no"]);
        assert!(text.contains("term 4, leader 1, committed index 119 (as replica 2"));
        let json = serde_json::to_value(doc(&r)).unwrap();
        assert_eq!(json["leader"], 1);
        assert_eq!(json["members"][2]["role"], "learner");
        assert!(json["members"][2]["matched_index"].is_null());
        assert_eq!(json["members"][0]["held_log"], true);
        assert_eq!(json["members"][2]["held_log"], false);
    }
}
