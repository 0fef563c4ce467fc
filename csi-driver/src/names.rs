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

/// The tag that marks an LV as a strata snapshot (never a volume).
pub const SNAPSHOT_MARKER_TAG: &str = "strata.io/snapshot";
/// Snapshot tag prefix: the id of the volume the snapshot was cut from.
pub const TAG_SOURCE: &str = "strata.io/source=";
/// Snapshot tag prefix: creation time, `<unix seconds>.<nanoseconds>`.
pub const TAG_CREATED: &str = "strata.io/created=";
/// Snapshot tag prefix: the source volume's size in bytes when the snapshot was cut.
pub const TAG_SIZE: &str = "strata.io/size=";
/// Snapshot tag prefixes: the VolumeSnapshot it was made for (`--extra-create-metadata`).
pub const TAG_VS_NAMESPACE: &str = "strata.io/vs-namespace=";
/// VolumeSnapshot name tag prefix.
pub const TAG_VS_NAME: &str = "strata.io/vs=";
/// Volume tag prefix: restored from this snapshot id.
pub const TAG_FROM_SNAPSHOT: &str = "strata.io/from-snapshot=";
/// Volume tag prefix: cloned from this volume id.
pub const TAG_FROM_VOLUME: &str = "strata.io/from-volume=";
/// Volume tag: its content is still being copied in; removed when the copy
/// is complete and synced, so a crashed copy is redone, never handed out.
pub const TAG_FILLING: &str = "strata.io/filling";
/// Tag of an LV strata made for the duration of one request (the point-in-time
/// source of a thick clone) and removes at its end.
pub const TAG_TEMPORARY: &str = "strata.io/temporary";

/// Suffix of a thick clone's temporary snapshot of its source: the clone
/// `<lv>` copies from `<lv>.src` (in the source's VG), the request's point in time.
const CLONE_SOURCE_SUFFIX: &str = ".src";

/// The name of the temporary snapshot a thick clone named `lv` copies from.
pub fn clone_source_name(lv: &str) -> String {
    format!("{lv}{CLONE_SOURCE_SUFFIX}")
}

/// The clone a temporary snapshot named `name` was made for, if the name is
/// one [`clone_source_name`] makes.
pub fn clone_of_source(name: &str) -> Option<&str> {
    name.strip_suffix(CLONE_SOURCE_SUFFIX)
        .filter(|lv| !lv.is_empty())
}

/// Longest LV name strata creates (LVM allows 127, and keeps room for suffixes).
const MAX_DIRECT_NAME: usize = 100;
/// Prefix of every snapshot LV name (and snapshot id).
pub const SNAPSHOT_PREFIX: &str = "snap-";

/// True for an RFC 1123 DNS label: lower-case alphanumerics and '-', 1–63 chars,
/// starting and ending with an alphanumeric.
pub fn is_dns_label(s: &str) -> bool {
    s.len() <= 63 && is_label_shape(s)
}

/// True for an RFC 1123 DNS subdomain, the shape of most Kubernetes object
/// names: dot-separated labels (without their 63-character limit), at most
/// 253 characters in all.
pub fn is_dns_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(is_label_shape)
}

/// Lower-case alphanumerics and '-', at least one, starting and ending with
/// an alphanumeric.
fn is_label_shape(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
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
        && !volume_name.starts_with('-')
        && !reserved_prefix(volume_name);
    if direct {
        volume_name.to_owned()
    } else {
        format!("h-{}", hex_digest(volume_name))
    }
}

/// Names LVM refuses ("Names starting \"snapshot\" are reserved", the same
/// for "pvmove") and the prefix of strata's snapshot ids: never used as they are.
fn reserved_prefix(name: &str) -> bool {
    ["snapshot", "pvmove", SNAPSHOT_PREFIX]
        .iter()
        .any(|p| name.starts_with(p))
}

fn hex_digest(name: &str) -> String {
    let digest = Sha256::digest(name.as_bytes());
    digest.iter().take(16).map(|b| format!("{b:02x}")).collect()
}

/// The LV name (and CSI snapshot id) for a CSI snapshot name. The
/// external-snapshotter's names (`snapshot-<uuid>`) cannot be LV names as
/// they are (LVM reserves the prefix): they become `snap-<uuid>`. Any other
/// name is hashed to `snap-h-<32 hex>`. Never collides with a volume id,
/// which [`lv_name_for`] never starts with `snap-`.
pub fn snapshot_lv_name(snapshot_name: &str) -> String {
    let direct = snapshot_name.strip_prefix("snapshot-").filter(|rest| {
        !rest.is_empty()
            && rest.len() + SNAPSHOT_PREFIX.len() <= MAX_DIRECT_NAME
            && !rest.starts_with("h-")
            && !rest.starts_with('-')
            && rest
                .bytes()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
    });
    match direct {
        Some(rest) => format!("{SNAPSHOT_PREFIX}{rest}"),
        None => format!("{SNAPSHOT_PREFIX}h-{}", hex_digest(snapshot_name)),
    }
}

/// True when `id` has the shape of a snapshot id strata issues.
pub fn is_snapshot_id(id: &str) -> bool {
    id.starts_with(SNAPSHOT_PREFIX) && is_lvm_name(id)
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

/// What a snapshot's tags record: enough for ListSnapshots and restores
/// without any other store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotIdentity {
    /// Device class of the source volume (and so of the snapshot).
    pub class: String,
    /// Id of the volume the snapshot was cut from.
    pub source_volume: String,
    /// When it was cut.
    pub created: std::time::SystemTime,
    /// Size of the source volume at that moment: the snapshot's content size.
    pub size_bytes: u64,
    /// VolumeSnapshot namespace, when the snapshotter passed it.
    pub vs_namespace: Option<String>,
    /// VolumeSnapshot name, when the snapshotter passed it.
    pub vs_name: Option<String>,
}

impl SnapshotIdentity {
    /// The LV tags, snapshot marker first.
    pub fn to_tags(&self) -> Vec<String> {
        let since = self
            .created
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let mut tags = vec![
            SNAPSHOT_MARKER_TAG.to_owned(),
            format!("{TAG_CLASS}{}", self.class),
            format!("{TAG_SOURCE}{}", self.source_volume),
            format!(
                "{TAG_CREATED}{}.{:09}",
                since.as_secs(),
                since.subsec_nanos()
            ),
            format!("{TAG_SIZE}{}", self.size_bytes),
        ];
        for (prefix, v) in [
            (TAG_VS_NAMESPACE, &self.vs_namespace),
            (TAG_VS_NAME, &self.vs_name),
        ] {
            if let Some(v) = v.as_deref().filter(|v| !v.is_empty() && is_tag_safe(v)) {
                tags.push(format!("{prefix}{v}"));
            }
        }
        tags
    }

    /// Read a snapshot's identity back; `None` unless the snapshot marker and
    /// every required tag are there and well formed.
    pub fn from_tags(tags: &[String]) -> Option<Self> {
        if !tags.iter().any(|t| t == SNAPSHOT_MARKER_TAG) {
            return None;
        }
        let find = |prefix: &str| tags.iter().find_map(|t| t.strip_prefix(prefix));
        let (secs, nanos) = find(TAG_CREATED)?.split_once('.')?;
        let created = std::time::UNIX_EPOCH
            + std::time::Duration::new(secs.parse().ok()?, nanos.parse().ok()?);
        Some(SnapshotIdentity {
            class: find(TAG_CLASS)?.to_owned(),
            source_volume: find(TAG_SOURCE)?.to_owned(),
            created,
            size_bytes: find(TAG_SIZE)?.parse().ok()?,
            vs_namespace: find(TAG_VS_NAMESPACE).map(str::to_owned),
            vs_name: find(TAG_VS_NAME).map(str::to_owned),
        })
    }
}

/// Where a volume's first content came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContentSource {
    /// Restored from this snapshot id.
    Snapshot(String),
    /// Cloned from this volume id.
    Volume(String),
}

impl ContentSource {
    /// The volume tag that records the source.
    pub fn to_tag(&self) -> String {
        match self {
            ContentSource::Snapshot(id) => format!("{TAG_FROM_SNAPSHOT}{id}"),
            ContentSource::Volume(id) => format!("{TAG_FROM_VOLUME}{id}"),
        }
    }

    /// The source a volume's tags record, if any.
    pub fn from_tags(tags: &[String]) -> Option<Self> {
        tags.iter().find_map(|t| {
            t.strip_prefix(TAG_FROM_SNAPSHOT)
                .map(|id| ContentSource::Snapshot(id.to_owned()))
                .or_else(|| {
                    t.strip_prefix(TAG_FROM_VOLUME)
                        .map(|id| ContentSource::Volume(id.to_owned()))
                })
        })
    }

    /// The id of the snapshot or volume.
    pub fn id(&self) -> &str {
        match self {
            ContentSource::Snapshot(id) | ContentSource::Volume(id) => id,
        }
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
    fn a_clone_and_its_temporary_source_name_each_other() {
        assert_eq!(clone_source_name("pvc-1"), "pvc-1.src");
        assert_eq!(clone_of_source("pvc-1.src"), Some("pvc-1"));
        assert_eq!(
            clone_of_source(&clone_source_name("h-ab.c")),
            Some("h-ab.c")
        );
        assert_eq!(clone_of_source("pvc-1"), None);
        assert_eq!(clone_of_source(".src"), None);
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
                && !is_dns_label(&"a".repeat(64))
        );
        assert!(
            is_dns_subdomain("cold-images")
                && is_dns_subdomain("cold.images-2")
                && is_dns_subdomain(&format!("{}.b", "a".repeat(70)))
                && is_dns_subdomain(&"a".repeat(253))
        );
        for bad in ["", ".", "a.", ".a", "a..b", "a-.b", "A", "a_b", "a/b"] {
            assert!(!is_dns_subdomain(bad), "{bad:?}");
        }
        assert!(!is_dns_subdomain(&"a".repeat(254)));
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

    #[test]
    fn reserved_prefixes_are_hashed() {
        for n in ["snapshot-1", "pvmove0", "snap-abc"] {
            assert!(lv_name_for(n).starts_with("h-"), "{n}");
        }
        assert_eq!(lv_name_for("snappy"), "snappy");
    }

    #[test]
    fn snapshot_names() {
        let uid = "snapshot-0b4c9a2e-5d1f-4c4e-9b7a-2f3d4e5f6a7b";
        assert_eq!(
            snapshot_lv_name(uid),
            "snap-0b4c9a2e-5d1f-4c4e-9b7a-2f3d4e5f6a7b"
        );
        for n in [
            "my snap",
            "snapshot-h-1",
            "snapshot-",
            "pvc-1",
            "snapshot-A",
            "snap-x",
        ] {
            let id = snapshot_lv_name(n);
            assert!(id.starts_with("snap-h-") && id.len() == 39, "{n} -> {id}");
            assert!(is_snapshot_id(&id) && is_lvm_name(&id));
            assert_eq!(id, snapshot_lv_name(n));
        }
        assert!(!is_snapshot_id("pvc-1") && !is_snapshot_id("snap-a b"));
        assert!(!lv_name_for("snap-1").starts_with(SNAPSHOT_PREFIX));
    }

    #[test]
    fn snapshot_tags_round_trip() {
        let id = SnapshotIdentity {
            class: "thin".into(),
            source_volume: "pvc-1".into(),
            created: std::time::UNIX_EPOCH + std::time::Duration::new(1_700_000_000, 42),
            size_bytes: 64 << 20,
            vs_namespace: Some("line-3".into()),
            vs_name: Some("nightly".into()),
        };
        let tags = id.to_tags();
        assert_eq!(tags[0], SNAPSHOT_MARKER_TAG);
        assert!(tags.contains(&"strata.io/created=1700000000.000000042".to_string()));
        assert!(tags.iter().all(|t| is_tag_safe(t)), "{tags:?}");
        assert_eq!(SnapshotIdentity::from_tags(&tags), Some(id.clone()));
        // A snapshot is never mistaken for a volume, nor a volume for a snapshot.
        assert_eq!(VolumeIdentity::from_tags(&tags), None);
        let volume = VolumeIdentity {
            class: "thin".into(),
            ..Default::default()
        };
        assert_eq!(SnapshotIdentity::from_tags(&volume.to_tags()), None);
        let mut broken = tags.clone();
        broken.retain(|t| !t.starts_with(TAG_SIZE));
        assert_eq!(SnapshotIdentity::from_tags(&broken), None);
        let unsafe_name = SnapshotIdentity {
            vs_name: Some("a b".into()),
            ..id
        };
        assert!(
            !unsafe_name
                .to_tags()
                .iter()
                .any(|t| t.starts_with(TAG_VS_NAME))
        );
    }

    #[test]
    fn content_source_tags_round_trip() {
        for s in [
            ContentSource::Snapshot("snap-1".into()),
            ContentSource::Volume("pvc-2".into()),
        ] {
            let tags = vec![MARKER_TAG.to_owned(), s.to_tag()];
            assert_eq!(ContentSource::from_tags(&tags), Some(s.clone()));
            assert!(is_tag_safe(&s.to_tag()));
        }
        assert_eq!(ContentSource::from_tags(&[MARKER_TAG.to_owned()]), None);
    }
}
