//! Which group, and which replica in it, a catalog store belongs to: written
//! once, when the store is created, and checked at every start, so a replica
//! started with the wrong id or on another cluster's data directory refuses
//! to start instead of joining with someone else's log.

use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::error::RaftCatalogError;
use super::types::{NodeId, SINGLE_NODE_ID};

/// The file in the store's directory that holds the identity.
const FILE: &str = "IDENTITY.json";

/// The cluster name every store had before identities were recorded (a
/// one-replica catalog, node 1).
pub const DEFAULT_CLUSTER: &str = "strata-catalog";

/// The replica id of a node agent's learner, from the node's name: the same
/// name gives the same id on every start. It lies from 2^32 up (clear of the
/// small ids given to `strata catalog` replicas) and below 2^53 (exact in
/// JSON numbers); two names share one only by a 1-in-2^52 chance.
pub fn node_replica_id(node: &str) -> NodeId {
    use sha2::Digest;
    const LOW: u64 = 1 << 32;
    const HIGH: u64 = 1 << 53;
    let digest = sha2::Sha256::digest(node.as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    LOW + u64::from_be_bytes(first) % (HIGH - LOW)
}

/// A replica's place in its group.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaIdentity {
    /// The group's name; every message between replicas carries it.
    pub cluster: String,
    /// This replica's id in the group (1 or more).
    pub node_id: NodeId,
}

impl Default for ReplicaIdentity {
    fn default() -> Self {
        Self {
            cluster: DEFAULT_CLUSTER.to_owned(),
            node_id: SINGLE_NODE_ID,
        }
    }
}

impl ReplicaIdentity {
    /// Checks the fields: a cluster name of 1–63 lowercase letters, digits
    /// and `-`, and a node id of 1 or more. The error names the field.
    pub fn validate(&self) -> Result<(), String> {
        let c = &self.cluster;
        if c.is_empty() || c.len() > 63 {
            return Err(format!(
                "cluster: must be 1 to 63 characters, got {}",
                c.len()
            ));
        }
        if let Some(bad) = c
            .chars()
            .find(|ch| !(ch.is_ascii_lowercase() || ch.is_ascii_digit() || *ch == '-'))
        {
            return Err(format!(
                "cluster: {c:?} has {bad:?}; use lowercase letters, digits and '-'"
            ));
        }
        if self.node_id == 0 {
            return Err("id: must be 1 or more (0 means \"no replica\")".to_owned());
        }
        Ok(())
    }
}

/// Whether a RocksDB store is in `dir` (its CURRENT file).
fn holds_rocksdb(dir: &Path) -> bool {
    dir.join("CURRENT").exists()
}

/// Whether `dir` holds no store yet: neither an identity nor a RocksDB
/// store (one from before identities were recorded).
pub(crate) fn is_fresh(dir: &Path) -> bool {
    !dir.join(FILE).exists() && !holds_rocksdb(dir)
}

/// Makes sure the store in `dir` belongs to `wanted`: records it when the
/// store is new, refuses when it belongs to another cluster or replica.
///
/// A store created before identities were recorded is the one-replica
/// catalog's: cluster [`DEFAULT_CLUSTER`], node 1.
pub(crate) fn claim(dir: &Path, wanted: &ReplicaIdentity) -> Result<(), RaftCatalogError> {
    wanted
        .validate()
        .map_err(|what| RaftCatalogError::Identity {
            dir: dir.to_owned(),
            what,
        })?;
    let path = dir.join(FILE);
    let found = match std::fs::read(&path) {
        Ok(bytes) => Some(
            serde_json::from_slice::<ReplicaIdentity>(&bytes).map_err(|e| {
                RaftCatalogError::Corrupt {
                    dir: dir.to_owned(),
                    what: format!("{FILE}: {e}"),
                }
            })?,
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            holds_rocksdb(dir).then(ReplicaIdentity::default)
        }
        Err(source) => {
            return Err(RaftCatalogError::Io {
                dir: dir.to_owned(),
                op: "read the replica identity",
                source,
            });
        }
    };
    match found {
        Some(found) if found != *wanted => Err(RaftCatalogError::Foreign {
            dir: dir.to_owned(),
            found_cluster: found.cluster,
            found_id: found.node_id,
            cluster: wanted.cluster.clone(),
            id: wanted.node_id,
        }),
        Some(_) if path.exists() => Ok(()),
        _ => write(dir, &path, wanted).map_err(|source| RaftCatalogError::Io {
            dir: dir.to_owned(),
            op: "record the replica identity",
            source,
        }),
    }
}

/// Writes the identity durably: a temporary file, fsynced, renamed over
/// the name, and the directory fsynced.
fn write(dir: &Path, path: &Path, identity: &ReplicaIdentity) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!("{FILE}.tmp"));
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(&serde_json::to_vec_pretty(identity).map_err(std::io::Error::other)?)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_replica_id_is_stable_and_clear_of_the_small_ids() {
        let a = node_replica_id("edge-node-1");
        assert_eq!(a, node_replica_id("edge-node-1"));
        assert_ne!(a, node_replica_id("edge-node-2"));
        for name in ["", "a", "edge-node-1", "line-3-cam-17"] {
            let id = node_replica_id(name);
            assert!((1 << 32..1 << 53).contains(&id), "{name}: {id}");
        }
    }

    fn id(cluster: &str, node_id: NodeId) -> ReplicaIdentity {
        ReplicaIdentity {
            cluster: cluster.into(),
            node_id,
        }
    }

    #[test]
    fn identity_is_recorded_once_and_checked_after() {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("catalog");
        claim(&store, &id("site-a", 2)).unwrap();
        claim(&store, &id("site-a", 2)).unwrap();
        let other = claim(&store, &id("site-b", 2)).unwrap_err().to_string();
        assert!(
            other.contains("\"site-a\"") && other.contains("\"site-b\""),
            "{other}"
        );
        let renumbered = claim(&store, &id("site-a", 3)).unwrap_err().to_string();
        assert!(renumbered.contains("replica 2"), "{renumbered}");
    }

    #[test]
    fn a_store_from_before_identities_is_the_single_replica() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("CURRENT"), b"MANIFEST-000001\n").unwrap();
        assert!(claim(dir.path(), &id("site-a", 1)).is_err());
        claim(dir.path(), &ReplicaIdentity::default()).unwrap();
        assert!(dir.path().join(FILE).exists());
    }

    #[test]
    fn bad_identities_name_the_field() {
        let dir = tempfile::tempdir().unwrap();
        for (bad, field) in [
            (id("", 1), "cluster:"),
            (id("Site_A", 1), "cluster:"),
            (id("site-a", 0), "id:"),
        ] {
            let e = claim(dir.path(), &bad).unwrap_err().to_string();
            assert!(e.contains(field), "{e}");
        }
        assert!(!dir.path().join(FILE).exists());
    }

    #[test]
    fn an_undecodable_identity_is_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(FILE), b"{not json").unwrap();
        let e = claim(dir.path(), &id("site-a", 1)).unwrap_err();
        assert!(matches!(e, RaftCatalogError::Corrupt { .. }), "{e}");
    }
}
