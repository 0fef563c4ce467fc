//! Names and tags: how a CSI volume name becomes an LV name, and how a volume's
//! Kubernetes identity is written into LV tags so a node can always find its own.

use sha2::{Digest, Sha256};

/// The tag that marks an LV as strata's.
pub const MARKER_TAG: &str = "strata.io";
/// Tag prefixes for the Kubernetes identity of a volume (`--extra-create-metadata`).
pub const TAG_PV: &str = "strata.io/pv=";
/// PVC namespace tag prefix.
pub const TAG_PVC_NAMESPACE: &str = "strata.io/pvc-namespace=";
/// PVC name tag prefix.
pub const TAG_PVC_NAME: &str = "strata.io/pvc=";
/// Device class tag prefix.
pub const TAG_CLASS: &str = "strata.io/class=";

/// Longest LV name strata creates (LVM allows 127, and keeps room for suffixes).
const MAX_DIRECT_NAME: usize = 100;

/// True for an RFC 1123 DNS label: lower-case alphanumerics and '-', 1–63 chars,
/// starting and ending with an alphanumeric.
pub fn is_dns_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

/// True for a name LVM accepts for a VG or LV: `[A-Za-z0-9+_.-]`, not starting
/// with '-', not `.`/`..`, at most 127 characters.
pub fn is_lvm_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 127
        && !s.starts_with('-')
        && s != "."
        && s != ".."
        && s.bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'_' | b'.' | b'-'))
}

/// The LV name (and CSI volume id) for a CSI volume name. Kubernetes names
/// (`pvc-<uuid>`) are used as they are; any other name is hashed, so the same
/// name always maps to the same LV and idempotency needs no other store.
pub fn lv_name_for(volume_name: &str) -> String {
    let direct = volume_name.len() <= MAX_DIRECT_NAME
        && is_lvm_name(volume_name)
        && volume_name
            .bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
        && !volume_name.starts_with("h-")
        && !volume_name.starts_with('-');
    if direct {
        volume_name.to_owned()
    } else {
        let digest = Sha256::digest(volume_name.as_bytes());
        let hex: String = digest.iter().take(16).map(|b| format!("{b:02x}")).collect();
        format!("h-{hex}")
    }
}

/// True when `s` may be a tag value: LVM's tag charset `[A-Za-z0-9_+.\-/=!:&#]`.
fn is_tag_safe(s: &str) -> bool {
    s.bytes()
        .all(|c| c.is_ascii_alphanumeric() || b"_+.-/=!:&#".contains(&c))
}

/// The Kubernetes identity of a volume, as recorded in its tags.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VolumeIdentity {
    /// Device class name.
    pub class: String,
    /// PersistentVolume name.
    pub pv: Option<String>,
    /// PVC namespace.
    pub pvc_namespace: Option<String>,
    /// PVC name.
    pub pvc_name: Option<String>,
}

impl VolumeIdentity {
    /// The LV tags for this identity, marker first. Values outside LVM's tag
    /// charset are left out (Kubernetes names never are).
    pub fn to_tags(&self) -> Vec<String> {
        let mut tags = vec![MARKER_TAG.to_owned()];
        let mut push = |prefix: &str, v: &Option<String>| {
            if let Some(v) = v.as_deref().filter(|v| !v.is_empty() && is_tag_safe(v)) {
                tags.push(format!("{prefix}{v}"));
            }
        };
        push(TAG_CLASS, &Some(self.class.clone()));
        push(TAG_PV, &self.pv);
        push(TAG_PVC_NAMESPACE, &self.pvc_namespace);
        push(TAG_PVC_NAME, &self.pvc_name);
        tags
    }

    /// Read the identity back from tags; `None` when the marker is missing.
    pub fn from_tags(tags: &[String]) -> Option<Self> {
        if !tags.iter().any(|t| t == MARKER_TAG) {
            return None;
        }
        let find = |prefix: &str| {
            tags.iter()
                .find_map(|t| t.strip_prefix(prefix))
                .map(str::to_owned)
        };
        Some(VolumeIdentity {
            class: find(TAG_CLASS).unwrap_or_default(),
            pv: find(TAG_PV),
            pvc_namespace: find(TAG_PVC_NAMESPACE),
            pvc_name: find(TAG_PVC_NAME),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubernetes_names_are_kept() {
        let n = "pvc-0b4c9a2e-5d1f-4c4e-9b7a-2f3d4e5f6a7b";
        assert_eq!(lv_name_for(n), n);
    }

    #[test]
    fn other_names_are_hashed_stably() {
        for n in [
            "Data Volume",
            "ünïcode",
            "h-abc",
            "UPPER",
            &"x".repeat(101),
            "-lead",
        ] {
            let a = lv_name_for(n);
            assert!(a.starts_with("h-") && a.len() == 34, "{n} -> {a}");
            assert!(is_lvm_name(&a));
            assert_eq!(a, lv_name_for(n));
        }
        assert_ne!(lv_name_for("a b"), lv_name_for("a c"));
    }

    #[test]
    fn lvm_and_dns_names() {
        assert!(is_lvm_name("vg0_fast.1+x"));
        assert!(
            !is_lvm_name("-x") && !is_lvm_name("a b") && !is_lvm_name("..") && !is_lvm_name("")
        );
        assert!(
            is_dns_label("fast-1")
                && !is_dns_label("Fast")
                && !is_dns_label("a-")
                && !is_dns_label("")
        );
    }

    #[test]
    fn tags_round_trip() {
        let id = VolumeIdentity {
            class: "fast".into(),
            pv: Some("pvc-1".into()),
            pvc_namespace: Some("line-3".into()),
            pvc_name: Some("images".into()),
        };
        let tags = id.to_tags();
        assert_eq!(tags[0], MARKER_TAG);
        assert_eq!(VolumeIdentity::from_tags(&tags), Some(id));
        assert_eq!(VolumeIdentity::from_tags(&["other".into()]), None);
    }

    #[test]
    fn unsafe_tag_values_are_dropped() {
        let id = VolumeIdentity {
            class: "c".into(),
            pv: Some("a b".into()),
            ..Default::default()
        };
        assert_eq!(
            id.to_tags(),
            vec![MARKER_TAG.to_string(), "strata.io/class=c".to_string()]
        );
    }
}
