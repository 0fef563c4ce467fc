//! Pure validation of the snapshot requests (CreateSnapshot, DeleteSnapshot,
//! ListSnapshots, GetSnapshot) and of the VolumeSnapshotClass parameters.

use std::collections::HashMap;

use strata_proto::csi::v1 as csi;

use super::{non_empty, volume_id};
use crate::error::CsiError;
use crate::names;

/// VolumeSnapshotClass parameter: the copy-on-write space of a thick
/// snapshot, a percentage (`25%`) or a quantity (`512Mi`, `2G`, bytes) of the
/// origin. Thin snapshots need none and ignore it.
pub const PARAM_COW_SIZE: &str = "strata.io/cow-size";
/// Parameters the external-snapshotter adds with `--extra-create-metadata`.
pub const PARAM_VS_NAME: &str = "csi.storage.k8s.io/volumesnapshot/name";
/// VolumeSnapshot namespace parameter.
pub const PARAM_VS_NAMESPACE: &str = "csi.storage.k8s.io/volumesnapshot/namespace";

/// How much copy-on-write space a thick snapshot gets.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum CowSize {
    /// This percentage of the origin's size (0 < p ≤ 100).
    Percent(f64),
    /// This many bytes.
    Bytes(u64),
}

/// A thick snapshot's COW space when the class gives none: the whole origin,
/// so the snapshot can never overflow and turn invalid.
pub const DEFAULT_COW: CowSize = CowSize::Percent(100.0);

impl CowSize {
    /// Parse `25%`, `12.5%`, `512Mi`, `1G`, `1073741824` at `field`.
    pub fn parse(text: &str, field: &str) -> Result<Self, CsiError> {
        let t = text.trim();
        let bad = |why: &str| {
            CsiError::invalid(
                field,
                format!(
                    "{text:?} {why} (a percentage such as \"25%\" or a quantity such as \"512Mi\")"
                ),
            )
        };
        if let Some(p) = t.strip_suffix('%') {
            let p: f64 = p.trim().parse().map_err(|_| bad("is not a percentage"))?;
            if !(p.is_finite() && p > 0.0 && p <= 100.0) {
                return Err(bad("must be more than 0% and at most 100%"));
            }
            return Ok(CowSize::Percent(p));
        }
        let bytes = quantity(t).ok_or_else(|| bad("is not a size"))?;
        if bytes == 0 {
            return Err(bad("must be more than 0"));
        }
        Ok(CowSize::Bytes(bytes))
    }

    /// The COW bytes for an origin of `origin` bytes, rounded up to whole
    /// extents (at least one).
    pub fn bytes_for(&self, origin: u64, extent: u64) -> u64 {
        let extent = extent.max(1);
        let raw = match *self {
            CowSize::Percent(p) => (origin as f64 * p / 100.0).ceil() as u64,
            CowSize::Bytes(b) => b,
        };
        raw.max(1).div_ceil(extent).saturating_mul(extent)
    }
}

/// A Kubernetes quantity in bytes: digits (with an optional fraction) and
/// an optional suffix `k M G T P E` (powers of 1000) or `Ki Mi Gi Ti Pi Ei`.
pub fn quantity(text: &str) -> Option<u64> {
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, suffix) = text.split_at(split);
    let factor: u64 = match suffix {
        "" => 1,
        "k" => 1000,
        "M" => 1000_u64.pow(2),
        "G" => 1000_u64.pow(3),
        "T" => 1000_u64.pow(4),
        "P" => 1000_u64.pow(5),
        "E" => 1000_u64.pow(6),
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        "Ti" => 1 << 40,
        "Pi" => 1 << 50,
        "Ei" => 1 << 60,
        _ => return None,
    };
    if number.is_empty() || number.starts_with('.') || number.matches('.').count() > 1 {
        return None;
    }
    match number.split_once('.') {
        None => number.parse::<u64>().ok()?.checked_mul(factor),
        Some((whole, frac)) => {
            let v = format!("{whole}.{frac}").parse::<f64>().ok()? * factor as f64;
            (v.is_finite() && v < u64::MAX as f64).then(|| v.ceil() as u64)
        }
    }
}

/// Everything CreateSnapshot needs, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct SnapshotPlan {
    /// The CSI name.
    pub name: String,
    /// The snapshot's LV name (and snapshot id).
    pub lv_name: String,
    /// The volume to snapshot.
    pub source_volume: String,
    /// COW space for a thick source.
    pub cow: CowSize,
    /// VolumeSnapshot namespace, if given.
    pub vs_namespace: Option<String>,
    /// VolumeSnapshot name, if given.
    pub vs_name: Option<String>,
}

/// Check a CreateSnapshot request.
pub fn create_snapshot(req: &csi::CreateSnapshotRequest) -> Result<SnapshotPlan, CsiError> {
    let name = non_empty(&req.name, "name")?;
    if name
        .chars()
        .any(|c| c.is_control() && !matches!(c, '\t' | '\n' | '\r'))
    {
        return Err(CsiError::invalid("name", "contains control characters"));
    }
    if name.len() > 128 {
        return Err(CsiError::invalid("name", "longer than 128 bytes"));
    }
    let source = volume_id(&req.source_volume_id, "source_volume_id")?;
    if names::is_snapshot_id(source) {
        return Err(CsiError::NotFound(format!(
            "source_volume_id: {source:?} is a snapshot id; strata snapshots volumes, not snapshots"
        )));
    }
    let mut plan = SnapshotPlan {
        name: name.to_owned(),
        lv_name: names::snapshot_lv_name(name),
        source_volume: source.to_owned(),
        cow: DEFAULT_COW,
        vs_namespace: None,
        vs_name: None,
    };
    let params: &HashMap<String, String> = &req.parameters;
    let mut keys: Vec<&String> = params.keys().collect();
    keys.sort();
    for k in keys {
        let v = &params[k];
        let field = format!("parameters.{k}");
        match k.as_str() {
            PARAM_COW_SIZE => plan.cow = CowSize::parse(v, &field)?,
            PARAM_VS_NAME => plan.vs_name = Some(v.clone()),
            PARAM_VS_NAMESPACE => plan.vs_namespace = Some(v.clone()),
            _ if k.starts_with("csi.storage.k8s.io/") => {}
            _ => {
                return Err(CsiError::invalid(
                    field,
                    format!("unknown parameter (strata knows {PARAM_COW_SIZE})"),
                ));
            }
        }
    }
    Ok(plan)
}

/// A snapshot id as DeleteSnapshot, GetSnapshot and content sources receive
/// it: `NOT_FOUND` when strata cannot have issued it.
pub fn snapshot_id<'a>(id: &'a str, field: &str) -> Result<&'a str, CsiError> {
    let id = non_empty(id, field)?;
    if !names::is_snapshot_id(id) {
        return Err(CsiError::NotFound(format!(
            "{field}: {id:?} is not a strata snapshot id"
        )));
    }
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Code;

    #[test]
    fn cow_sizes() {
        let f = "parameters.strata.io/cow-size";
        assert_eq!(CowSize::parse("25%", f), Ok(CowSize::Percent(25.0)));
        assert_eq!(CowSize::parse(" 12.5% ", f), Ok(CowSize::Percent(12.5)));
        assert_eq!(CowSize::parse("512Mi", f), Ok(CowSize::Bytes(512 << 20)));
        assert_eq!(CowSize::parse("2G", f), Ok(CowSize::Bytes(2_000_000_000)));
        assert_eq!(CowSize::parse("1.5Gi", f), Ok(CowSize::Bytes(3 << 29)));
        assert_eq!(CowSize::parse("4096", f), Ok(CowSize::Bytes(4096)));
        for bad in [
            "0%", "101%", "x%", "-5%", "0", "12Q", "", "Mi", "1.2.3", ".5M", "nan%",
        ] {
            let e = CowSize::parse(bad, f).unwrap_err();
            assert_eq!(e.code(), Code::InvalidArgument, "{bad}");
            assert!(e.to_string().starts_with(f), "{e}");
        }
        let extent = 4 << 20;
        assert_eq!(
            CowSize::Percent(25.0).bytes_for(100 << 20, extent),
            28 << 20
        );
        assert_eq!(
            CowSize::Percent(100.0).bytes_for(64 << 20, extent),
            64 << 20
        );
        assert_eq!(CowSize::Bytes(1).bytes_for(64 << 20, extent), 4 << 20);
        assert_eq!(CowSize::Percent(1.0).bytes_for(0, extent), 4 << 20);
    }

    fn snap_req(name: &str, source: &str) -> csi::CreateSnapshotRequest {
        csi::CreateSnapshotRequest {
            name: name.into(),
            source_volume_id: source.into(),
            ..Default::default()
        }
    }

    #[test]
    fn create_snapshot_requests() {
        let mut r = snap_req("snapshot-1234", "pvc-1");
        r.parameters = HashMap::from([
            (PARAM_COW_SIZE.into(), "20%".into()),
            (PARAM_VS_NAME.into(), "nightly".into()),
            (PARAM_VS_NAMESPACE.into(), "line-3".into()),
            (
                "csi.storage.k8s.io/volumesnapshotcontent/name".into(),
                "c".into(),
            ),
        ]);
        let p = create_snapshot(&r).unwrap();
        assert_eq!(p.lv_name, "snap-1234");
        assert_eq!(p.source_volume, "pvc-1");
        assert_eq!(p.cow, CowSize::Percent(20.0));
        assert_eq!(p.vs_name.as_deref(), Some("nightly"));
        assert_eq!(
            create_snapshot(&snap_req("s", "pvc-1")).unwrap().cow,
            DEFAULT_COW
        );
        let cases = [
            (
                snap_req("", "pvc-1"),
                Code::InvalidArgument,
                "name: required",
            ),
            (
                snap_req("s", ""),
                Code::InvalidArgument,
                "source_volume_id: required",
            ),
            (
                snap_req("s", "a b"),
                Code::NotFound,
                "source_volume_id: \"a b\" is not a strata volume id",
            ),
            (
                snap_req("s", "snap-1"),
                Code::NotFound,
                "source_volume_id: \"snap-1\" is a snapshot id; strata snapshots volumes, not snapshots",
            ),
        ];
        for (req, code, msg) in cases {
            let e = create_snapshot(&req).unwrap_err();
            assert_eq!((e.code(), e.to_string().as_str()), (code, msg));
        }
        let mut unknown = snap_req("s", "pvc-1");
        unknown
            .parameters
            .insert("strata.io/cow".into(), "1".into());
        assert_eq!(
            create_snapshot(&unknown).unwrap_err().to_string(),
            "parameters.strata.io/cow: unknown parameter (strata knows strata.io/cow-size)"
        );
    }

    #[test]
    fn snapshot_ids() {
        assert_eq!(snapshot_id("snap-1", "snapshot_id"), Ok("snap-1"));
        assert_eq!(
            snapshot_id("pvc-1", "snapshot_id").unwrap_err().code(),
            Code::NotFound
        );
        assert_eq!(
            snapshot_id("", "snapshot_id").unwrap_err().code(),
            Code::InvalidArgument
        );
    }
}
