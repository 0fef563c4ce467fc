//! Which of a catalog's volumes one agent works on. A catalog of its own
//! (`strata up`, a node with a one-replica catalog) holds only the node's
//! volumes; the replicated catalog holds every node's, and each node's
//! agent must scan, upload, release and recall only the files on its own
//! disks. Either way only volumes within the agent's bounds (its volume
//! roots, clear of the catalog's own data: [`crate::bounds`]).

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use super::types::Volume;
use crate::bounds::{OutOfBounds, VolumeBounds};

/// The label naming the node a volume is on: set by `strata node` for the
/// CSI volumes it stages, and by a node agent's API for `strata ctl volume
/// add`.
pub const NODE_LABEL: &str = "strata.io/node";

/// The label naming a CSI volume's PersistentVolume (set by `strata node`):
/// its claim in the catalog is found by it.
pub const PV_LABEL: &str = "strata.io/pv";

/// The volumes an agent works on. The default: every registered volume,
/// wherever it is.
///
/// Clones share what the agent found on disk ([`VolumeScope::refuse`]), so
/// the mover's drains and recalls skip a volume the agent refused.
#[derive(Clone, Debug, Default)]
pub struct VolumeScope {
    /// `None`: every registered volume (a catalog that is this node's
    /// alone); `Some(node)`: the volumes labelled [`NODE_LABEL`] with this
    /// node's name (a catalog shared by many nodes; a volume without the
    /// label belongs to no node).
    node: Option<String>,
    bounds: VolumeBounds,
    /// Volume id → (the path it was refused at, why): what the lexical
    /// checks cannot see (a symlink on the way, a catalog store on disk).
    refused: Arc<RwLock<BTreeMap<String, (String, OutOfBounds)>>>,
}

/// Scopes are equal when they take the same volumes by configuration
/// (node and bounds); what the agent found on disk is not configuration.
impl PartialEq for VolumeScope {
    fn eq(&self, other: &Self) -> bool {
        self.node == other.node && self.bounds == other.bounds
    }
}

impl Eq for VolumeScope {}

impl VolumeScope {
    /// Every registered volume (within the bounds).
    pub fn every_node() -> Self {
        Self::default()
    }

    /// The volumes labelled with `node` (within the bounds).
    pub fn of_node(node: impl Into<String>) -> Self {
        Self {
            node: Some(node.into()),
            ..Self::default()
        }
    }

    /// Only volumes within `bounds`.
    pub fn within(mut self, bounds: VolumeBounds) -> Self {
        self.bounds = bounds;
        self
    }

    /// Where the agent may work.
    pub fn bounds(&self) -> &VolumeBounds {
        &self.bounds
    }

    /// Whether this scope takes every volume of the catalog, wherever it is.
    pub fn is_everything(&self) -> bool {
        *self == Self::default() && self.read_refused().is_empty()
    }

    fn read_refused(
        &self,
    ) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, (String, OutOfBounds)>> {
        self.refused.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write_refused(
        &self,
    ) -> std::sync::RwLockWriteGuard<'_, BTreeMap<String, (String, OutOfBounds)>> {
        self.refused.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Records that `volume`, at its current path, is not to be worked on;
    /// answers whether that is news (not refused so, before).
    pub fn refuse(&self, volume: &Volume, why: OutOfBounds) -> bool {
        let entry = (volume.path.clone(), why);
        self.write_refused()
            .insert(volume.id.clone(), entry.clone())
            != Some(entry)
    }

    /// Forgets a refusal (the volume passes again, or is gone); answers
    /// whether there was one.
    pub fn clear_refusal(&self, id: &str) -> bool {
        self.write_refused().remove(id).is_some()
    }

    /// The refused volumes: id, path, why.
    pub fn refused(&self) -> Vec<(String, String, OutOfBounds)> {
        self.read_refused()
            .iter()
            .map(|(id, (path, why))| (id.clone(), path.clone(), why.clone()))
            .collect()
    }

    /// Whether the volume is this agent's node's (its labels, not its path).
    pub fn is_this_nodes(&self, volume: &Volume) -> bool {
        match &self.node {
            None => true,
            Some(node) => volume.labels.get(NODE_LABEL) == Some(node),
        }
    }

    /// Whether the agent works on `volume`: its node's, within the bounds
    /// (the lexical checks; the agent checks the disk when it picks volumes).
    pub fn includes(&self, volume: &Volume) -> bool {
        self.is_this_nodes(volume)
            && self.bounds.check(&volume.path).is_ok()
            && self
                .read_refused()
                .get(&volume.id)
                .is_none_or(|(path, _)| *path != volume.path)
    }

    /// Whether the agent works on the files of a volume that is registered
    /// as `volume` (`None`: no longer registered; only a catalog of the
    /// node's own can say those files were this node's, and without a path
    /// the files cannot be reached anyway).
    pub fn owns(&self, volume: Option<&Volume>) -> bool {
        match volume {
            Some(v) => self.includes(v),
            None => self.node.is_none(),
        }
    }

    /// The node the agent works for, if it is one of many.
    pub fn node(&self) -> Option<&str> {
        self.node.as_deref()
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
        let scope = VolumeScope::of_node("edge-1");
        let all = VolumeScope::every_node();
        assert!(scope.includes(&volume(Some("edge-1"))));
        assert!(!scope.includes(&volume(Some("edge-2"))));
        assert!(!scope.includes(&volume(None)));
        assert!(all.includes(&volume(None)));
        assert!(all.includes(&volume(Some("edge-2"))));
        assert!(!scope.owns(None));
        assert!(all.owns(None));
        assert!(all.is_everything() && !scope.is_everything());
    }

    #[test]
    fn a_bounded_scope_takes_only_volumes_beneath_its_roots() {
        let bounds =
            VolumeBounds::within(vec!["/srv".into()]).reserve("/srv/strata/catalog".into());
        let scope = VolumeScope::every_node().within(bounds);
        let at = |path: &str| Volume {
            path: path.into(),
            ..volume(None)
        };
        assert!(scope.includes(&at("/srv/cams")));
        assert!(!scope.includes(&at("/etc")));
        assert!(!scope.includes(&at("/srv/strata")));
        assert!(!scope.owns(Some(&at("/etc"))));
        assert!(!scope.is_everything());
        // What the agent refuses on disk, every clone skips, at that path.
        let clone = scope.clone();
        let why = OutOfBounds::Symlink {
            path: "/srv/cams".into(),
            link: "/srv/cams".into(),
        };
        assert!(scope.refuse(&at("/srv/cams"), why.clone()));
        assert!(!scope.refuse(&at("/srv/cams"), why));
        assert!(!clone.includes(&at("/srv/cams")));
        assert!(clone.includes(&Volume {
            id: "w".into(),
            ..at("/srv/cams")
        }));
        assert!(clone.clear_refusal("v"));
        assert!(clone.includes(&at("/srv/cams")));
    }
}
