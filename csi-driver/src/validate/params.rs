//! The StorageClass parameters: one check for every call that carries them.
//!
//! CreateVolume and GetCapacity receive the same map (the external-provisioner
//! passes a StorageClass's `parameters` to both), so they go through the one
//! [`StorageClassParams::parse`]: a key one of them refuses, the other refuses
//! too, with the same message. What each call then does with the values is
//! its own business (GetCapacity ignores the tiering policy; a device class
//! this node lacks is an error for CreateVolume and 0 bytes for GetCapacity).

use std::collections::HashMap;

use super::{
    Access, FsType, PARAM_DEVICE_CLASS, PARAM_FSTYPE, PARAM_PV_NAME, PARAM_PVC_NAME,
    PARAM_PVC_NAMESPACE, non_empty,
};
use crate::error::CsiError;
use crate::names;

/// StorageClass parameter naming the TieringPolicy (in the PVC's namespace)
/// that applies to the volume. Returned under the same key in the volume
/// context, so it lands in the PersistentVolume's `spec.csi.volumeAttributes`.
pub const PARAM_TIERING_POLICY: &str = "strata.io/tiering-policy";

/// The longest Kubernetes object name (a DNS-1123 subdomain).
const MAX_OBJECT_NAME: usize = 253;

/// Prefix of the keys the external-provisioner adds or consumes itself
/// (`csi.storage.k8s.io/fstype`, secrets, `--extra-create-metadata`).
const PROVISIONER_PREFIX: &str = "csi.storage.k8s.io/";

/// What a StorageClass's parameters say, checked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StorageClassParams {
    /// `strata.io/device-class`; `None`: the node's default class.
    pub device_class: Option<String>,
    /// `csi.storage.k8s.io/fstype`, when the provisioner leaves it in.
    pub fstype: Option<FsType>,
    /// `strata.io/tiering-policy`: a TieringPolicy name.
    pub tiering_policy: Option<String>,
    /// The PVC's name (`--extra-create-metadata`).
    pub pvc_name: Option<String>,
    /// The PVC's namespace (`--extra-create-metadata`).
    pub pvc_namespace: Option<String>,
    /// The PersistentVolume's name (`--extra-create-metadata`).
    pub pv_name: Option<String>,
}

impl StorageClassParams {
    /// Check every key of `p`: strata's own, and those under
    /// `csi.storage.k8s.io/` (the provisioner's: kept where strata uses
    /// them, ignored otherwise). Any other key is `INVALID_ARGUMENT` naming
    /// it, and so is a bad value, naming its key.
    pub fn parse(p: &HashMap<String, String>) -> Result<Self, CsiError> {
        let mut out = StorageClassParams::default();
        let mut keys: Vec<&String> = p.keys().collect();
        keys.sort();
        for k in keys {
            let v = &p[k];
            let field = format!("parameters.{k}");
            match k.as_str() {
                PARAM_DEVICE_CLASS => out.device_class = Some(non_empty(v, &field)?.to_owned()),
                PARAM_TIERING_POLICY => out.tiering_policy = Some(tiering_policy(v, &field)?),
                PARAM_FSTYPE => out.fstype = Some(FsType::parse(v, &field)?),
                PARAM_PVC_NAME => out.pvc_name = Some(v.clone()),
                PARAM_PVC_NAMESPACE => out.pvc_namespace = Some(v.clone()),
                PARAM_PV_NAME => out.pv_name = Some(v.clone()),
                _ if k.starts_with(PROVISIONER_PREFIX) => {}
                _ => {
                    return Err(CsiError::invalid(
                        field,
                        format!(
                            "unknown parameter (strata knows {PARAM_DEVICE_CLASS}, {PARAM_TIERING_POLICY} and {PARAM_FSTYPE})"
                        ),
                    ));
                }
            }
        }
        Ok(out)
    }

    /// The access of a volume with capabilities `access` under these
    /// parameters: a `csi.storage.k8s.io/fstype` parameter gives the
    /// filesystem of a mount capability that names none (`fs_named`: false),
    /// and contradicts one that names another (`INVALID_ARGUMENT`).
    pub fn access(&self, access: Access, fs_named: bool) -> Result<Access, CsiError> {
        match (access, self.fstype) {
            (Access::Mount { fs, .. }, Some(p)) if p != fs && fs_named => Err(CsiError::invalid(
                format!("parameters.{PARAM_FSTYPE}"),
                format!(
                    "{} disagrees with the capability's fs_type {}",
                    p.as_str(),
                    fs.as_str()
                ),
            )),
            (Access::Mount { flags, .. }, Some(p)) => Ok(Access::Mount { fs: p, flags }),
            (a, _) => Ok(a),
        }
    }
}

/// A TieringPolicy name: a DNS-1123 subdomain, like every Kubernetes object name.
fn tiering_policy(v: &str, field: &str) -> Result<String, CsiError> {
    let v = non_empty(v, field)?;
    if v.len() > MAX_OBJECT_NAME {
        return Err(CsiError::invalid(
            field,
            format!(
                "{} characters: a TieringPolicy name has at most {MAX_OBJECT_NAME}",
                v.len()
            ),
        ));
    }
    if !names::is_dns_subdomain(v) {
        return Err(CsiError::invalid(
            field,
            format!(
                "{v:?} is not a TieringPolicy name: a DNS-1123 subdomain (lower-case letters, digits, '-' and '.', each dot-separated part starting and ending with a letter or digit)"
            ),
        ));
    }
    Ok(v.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Code;

    fn parse(pairs: &[(&str, &str)]) -> Result<StorageClassParams, CsiError> {
        StorageClassParams::parse(
            &pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        )
    }

    #[test]
    fn known_keys_are_read_and_provisioner_keys_pass() {
        let p = parse(&[
            (PARAM_DEVICE_CLASS, "fast"),
            (PARAM_TIERING_POLICY, "cold-images.v2"),
            (PARAM_FSTYPE, "xfs"),
            (PARAM_PVC_NAMESPACE, "line-3"),
            ("csi.storage.k8s.io/provisioner-secret-name", "s"),
        ])
        .unwrap();
        assert_eq!(p.device_class.as_deref(), Some("fast"));
        assert_eq!(p.tiering_policy.as_deref(), Some("cold-images.v2"));
        assert_eq!(p.fstype, Some(FsType::Xfs));
        assert_eq!(p.pvc_namespace.as_deref(), Some("line-3"));
        assert_eq!(parse(&[]).unwrap(), StorageClassParams::default());
    }

    #[test]
    fn unknown_keys_and_bad_values_name_the_key() {
        let long = "a".repeat(254);
        let cases: Vec<(Vec<(&str, &str)>, &str)> = vec![
            (
                vec![("strata.io/tiering", "x")],
                "parameters.strata.io/tiering: unknown parameter",
            ),
            (
                vec![("volumeGroup", "x")],
                "parameters.volumeGroup: unknown parameter",
            ),
            (
                vec![(PARAM_DEVICE_CLASS, "")],
                "parameters.strata.io/device-class: required",
            ),
            (
                vec![(PARAM_TIERING_POLICY, "")],
                "parameters.strata.io/tiering-policy: required",
            ),
            (
                vec![(PARAM_TIERING_POLICY, "Cold_Images")],
                "parameters.strata.io/tiering-policy: \"Cold_Images\" is not a TieringPolicy name",
            ),
            (
                vec![(PARAM_TIERING_POLICY, "a..b")],
                "parameters.strata.io/tiering-policy: \"a..b\" is not",
            ),
            (
                vec![(PARAM_TIERING_POLICY, "-cold")],
                "parameters.strata.io/tiering-policy: \"-cold\" is not",
            ),
            (
                vec![(PARAM_TIERING_POLICY, &long)],
                "parameters.strata.io/tiering-policy: 254 characters: a TieringPolicy name has at most 253",
            ),
            (
                vec![(PARAM_FSTYPE, "btrfs")],
                "parameters.csi.storage.k8s.io/fstype: filesystem \"btrfs\" is not supported",
            ),
        ];
        for (pairs, want) in cases {
            let e = parse(&pairs).unwrap_err();
            assert_eq!(e.code(), Code::InvalidArgument, "{pairs:?}");
            assert!(e.to_string().starts_with(want), "{pairs:?}: {e}");
        }
        let longest = "a".repeat(253);
        assert_eq!(
            parse(&[(PARAM_TIERING_POLICY, &longest)])
                .unwrap()
                .tiering_policy
                .map(|p| p.len()),
            Some(253)
        );
    }

    #[test]
    fn the_fstype_parameter_fills_in_or_contradicts_the_capability() {
        let xfs = parse(&[(PARAM_FSTYPE, "xfs")]).unwrap();
        let ext4 = Access::Mount {
            fs: FsType::Ext4,
            flags: vec!["noatime".into()],
        };
        assert_eq!(
            xfs.access(ext4.clone(), false).unwrap(),
            Access::Mount {
                fs: FsType::Xfs,
                flags: vec!["noatime".into()]
            }
        );
        let e = xfs.access(ext4.clone(), true).unwrap_err();
        assert!(
            e.to_string()
                .contains("xfs disagrees with the capability's fs_type ext4"),
            "{e}"
        );
        assert_eq!(xfs.access(Access::Block, true).unwrap(), Access::Block);
        assert_eq!(
            StorageClassParams::default()
                .access(ext4.clone(), true)
                .unwrap(),
            ext4
        );
    }
}
