//! Which of a catalog's volumes one agent works on. A catalog of its own
//! (`strata up`, a node with a one-replica catalog) holds only the node's
//! volumes; the replicated catalog holds every node's, and each node's
//! agent must scan, upload, release and recall only the files on its own
//! disks.

use super::types::Volume;

/// The label naming the node a volume is on: set by `strata node` for the
/// CSI volumes it stages, and by a node agent's API for `strata ctl volume
/// add`.
pub const NODE_LABEL: &str = "strata.io/node";

/// The volumes an agent works on.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum VolumeScope {
    /// Every registered volume (a catalog that is this node's alone).
    #[default]
    All,
    /// The volumes labelled [`NODE_LABEL`] with this node's name (a catalog
    /// shared by many nodes); a volume without the label belongs to no node.
    Node(String),
}

impl VolumeScope {
    /// Whether the agent works on `volume`.
    pub fn includes(&self, volume: &Volume) -> bool {
        match self {
            VolumeScope::All => true,
            VolumeScope::Node(node) => volume.labels.get(NODE_LABEL) == Some(node),
        }
    }

    /// Whether the agent works on the files of a volume that is registered
    /// as `volume` (`None`: no longer registered; only a catalog of the
    /// node's own can say those files were this node's).
    pub fn owns(&self, volume: Option<&Volume>) -> bool {
        match self {
            VolumeScope::All => true,
            VolumeScope::Node(_) => volume.is_some_and(|v| self.includes(v)),
        }
    }

    /// The node the agent works for, if it is one of many.
    pub fn node(&self) -> Option<&str> {
        match self {
            VolumeScope::All => None,
            VolumeScope::Node(node) => Some(node),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn volume(node: Option<&str>) -> Volume {
        Volume {
            id: "v".into(),
            path: "/v".into(),
            labels: node
                .map(|n| (NODE_LABEL.to_owned(), n.to_owned()))
                .into_iter()
                .collect(),
        }
    }

    #[test]
    fn a_node_scope_takes_only_the_volumes_labelled_with_its_node() {
        let scope = VolumeScope::Node("edge-1".into());
        assert!(scope.includes(&volume(Some("edge-1"))));
        assert!(!scope.includes(&volume(Some("edge-2"))));
        assert!(!scope.includes(&volume(None)));
        assert!(VolumeScope::All.includes(&volume(None)));
        assert!(VolumeScope::All.includes(&volume(Some("edge-2"))));
        assert!(!scope.owns(None));
        assert!(VolumeScope::All.owns(None));
    }
}
