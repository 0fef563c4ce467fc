//! Which volumes a policy applies to.

use std::collections::BTreeMap;

use globset::GlobSet;

use crate::mover::{LABEL_PVC_NAME, LABEL_PVC_NAMESPACE};

/// A validated volume selector: id globs and required labels.
#[derive(Debug, Clone)]
pub struct VolumeSelector {
    pub(crate) volumes: GlobSet,
    pub(crate) labels: BTreeMap<String, String>,
}

impl Default for VolumeSelector {
    /// Selects every volume.
    fn default() -> Self {
        Self {
            volumes: GlobSet::empty(),
            labels: BTreeMap::new(),
        }
    }
}

impl VolumeSelector {
    /// Whether the volume matches: its id, or for a PVC's volume
    /// `<namespace>/<pvc>`, matches one of the globs (or none are given),
    /// and it carries every selector label with the same value.
    pub fn selects(&self, volume_id: &str, labels: &BTreeMap<String, String>) -> bool {
        let pvc = || {
            let ns = labels.get(LABEL_PVC_NAMESPACE)?;
            let name = labels.get(LABEL_PVC_NAME)?;
            Some(format!("{ns}/{name}"))
        };
        (self.volumes.is_empty()
            || self.volumes.is_match(volume_id)
            || pvc().is_some_and(|p| self.volumes.is_match(p)))
            && self
                .labels
                .iter()
                .all(|(k, v)| labels.get(k).is_some_and(|have| have == v))
    }
}
