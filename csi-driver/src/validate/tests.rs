use std::collections::HashMap;

use super::*;
use csi::volume_capability::{AccessMode, BlockVolume, MountVolume};
use tonic::Code;

fn cfg() -> NodeConfig {
    NodeConfig::parse(
        "[[device_class]]\nname='fast'\nvolume_group='vg1'\ntype='thick'\ndefault=true\n\
         [[device_class]]\nname='thin'\nvolume_group='vg1'\ntype='thin'\nthin_pool='pool'\n",
    )
    .unwrap()
}

fn mount(fs: &str, mode: Mode) -> csi::VolumeCapability {
    csi::VolumeCapability {
        access_mode: Some(AccessMode { mode: mode as i32 }),
        access_type: Some(AccessType::Mount(MountVolume {
            fs_type: fs.into(),
            ..Default::default()
        })),
    }
}

fn block(mode: Mode) -> csi::VolumeCapability {
    csi::VolumeCapability {
        access_mode: Some(AccessMode { mode: mode as i32 }),
        access_type: Some(AccessType::Block(BlockVolume {})),
    }
}

fn req(name: &str, caps: Vec<csi::VolumeCapability>) -> csi::CreateVolumeRequest {
    csi::CreateVolumeRequest {
        name: name.into(),
        volume_capabilities: caps,
        ..Default::default()
    }
}

fn fails(r: &csi::CreateVolumeRequest) -> (Code, String) {
    let e = create(r, &cfg(), "node-a").unwrap_err();
    (e.code(), e.to_string())
}

#[test]
fn a_plain_request_uses_the_default_class_and_ext4() {
    let p = create(
        &req("pvc-1", vec![mount("", Mode::SingleNodeWriter)]),
        &cfg(),
        "node-a",
    )
    .unwrap();
    assert_eq!(p.class.name, "fast");
    assert_eq!(
        p.access,
        Access::Mount {
            fs: FsType::Ext4,
            flags: vec![]
        }
    );
    assert_eq!(p.lv_name, "pvc-1");
}

#[test]
fn parameters_choose_class_fs_and_identity() {
    let mut r = req("pvc-2", vec![mount("", Mode::SingleNodeWriter)]);
    r.parameters = HashMap::from([
        (PARAM_DEVICE_CLASS.into(), "thin".into()),
        (PARAM_FSTYPE.into(), "xfs".into()),
        (PARAM_PVC_NAME.into(), "images".into()),
        (PARAM_PVC_NAMESPACE.into(), "line-3".into()),
        (PARAM_PV_NAME.into(), "pvc-2".into()),
        (
            "csi.storage.k8s.io/provisioner-secret-name".into(),
            "ignored".into(),
        ),
    ]);
    r.parameters
        .insert(PARAM_TIERING_POLICY.into(), "cold-images".into());
    let p = create(&r, &cfg(), "node-a").unwrap();
    assert_eq!(p.tiering_policy.as_deref(), Some("cold-images"));
    assert_eq!(p.class.name, "thin");
    assert_eq!(
        p.access,
        Access::Mount {
            fs: FsType::Xfs,
            flags: vec![]
        }
    );
    assert_eq!(p.identity.pvc_namespace.as_deref(), Some("line-3"));
    assert_eq!(p.identity.pvc_name.as_deref(), Some("images"));
}

#[test]
fn bad_requests_name_the_field() {
    let ok = || vec![mount("", Mode::SingleNodeWriter)];
    let cases: Vec<(csi::CreateVolumeRequest, Code, &str)> = vec![
        (req("", ok()), Code::InvalidArgument, "name: required"),
        (
            req("a\u{1}b", ok()),
            Code::InvalidArgument,
            "name: contains control characters",
        ),
        (
            req("v", vec![]),
            Code::InvalidArgument,
            "volume_capabilities: at least one capability is required",
        ),
        (
            req("v", vec![mount("", Mode::MultiNodeMultiWriter)]),
            Code::InvalidArgument,
            "volume_capabilities[0].access_mode.mode: MULTI_NODE_MULTI_WRITER is not supported",
        ),
        (
            req(
                "v",
                vec![csi::VolumeCapability {
                    access_mode: None,
                    access_type: None,
                }],
            ),
            Code::InvalidArgument,
            "volume_capabilities[0].access_mode: required",
        ),
        (
            req(
                "v",
                vec![csi::VolumeCapability {
                    access_mode: Some(AccessMode { mode: 1 }),
                    access_type: None,
                }],
            ),
            Code::InvalidArgument,
            "volume_capabilities[0].access_type: one of block or mount is required",
        ),
        (
            req("v", vec![mount("btrfs", Mode::SingleNodeWriter)]),
            Code::InvalidArgument,
            "volume_capabilities[0].mount.fs_type: filesystem \"btrfs\" is not supported",
        ),
        (
            req(
                "v",
                vec![
                    mount("", Mode::SingleNodeWriter),
                    block(Mode::SingleNodeWriter),
                ],
            ),
            Code::InvalidArgument,
            "volume_capabilities[1]: capabilities disagree",
        ),
    ];
    for (r, code, msg) in cases {
        let (c, m) = fails(&r);
        assert_eq!(c, code, "{m}");
        assert!(m.starts_with(msg), "{m:?} should start with {msg:?}");
    }
}

#[test]
fn bad_parameters_and_capacity() {
    let mut r = req("v", vec![mount("", Mode::SingleNodeWriter)]);
    r.parameters = HashMap::from([(PARAM_DEVICE_CLASS.into(), "slow".into())]);
    let (c, m) = fails(&r);
    assert_eq!(c, Code::InvalidArgument);
    assert_eq!(
        m,
        "parameters.strata.io/device-class: unknown device class \"slow\" on node node-a (known: fast, thin)"
    );

    r.parameters = HashMap::from([("strata.io/device-clas".into(), "fast".into())]);
    assert!(
        fails(&r)
            .1
            .starts_with("parameters.strata.io/device-clas: unknown parameter")
    );

    r.parameters.clear();
    r.capacity_range = Some(csi::CapacityRange {
        required_bytes: -1,
        limit_bytes: 0,
    });
    assert_eq!(
        fails(&r).1,
        "capacity_range.required_bytes: must not be negative"
    );
    r.capacity_range = Some(csi::CapacityRange {
        required_bytes: 10,
        limit_bytes: 5,
    });
    assert_eq!(
        fails(&r).1,
        "capacity_range: limit_bytes 5 is smaller than required_bytes 10"
    );

    r.capacity_range = None;
    r.volume_content_source = Some(csi::VolumeContentSource::default());
    assert_eq!(fails(&r).0, Code::InvalidArgument);
}

#[test]
fn topology_must_include_this_node() {
    let mut r = req("v", vec![mount("", Mode::SingleNodeWriter)]);
    let topo = |n: &str| csi::Topology {
        segments: HashMap::from([(TOPOLOGY_KEY.into(), n.into())]),
    };
    r.accessibility_requirements = Some(csi::TopologyRequirement {
        requisite: vec![topo("node-b"), topo("node-a")],
        preferred: vec![topo("node-a")],
    });
    assert!(create(&r, &cfg(), "node-a").is_ok());
    r.accessibility_requirements = Some(csi::TopologyRequirement {
        requisite: vec![topo("node-b")],
        preferred: vec![],
    });
    assert_eq!(fails(&r).0, Code::ResourceExhausted);
    r.accessibility_requirements = Some(csi::TopologyRequirement {
        requisite: vec![csi::Topology {
            segments: HashMap::from([("zone".into(), "z".into())]),
        }],
        preferred: vec![],
    });
    let (c, m) = fails(&r);
    assert_eq!(c, Code::InvalidArgument);
    assert!(
        m.starts_with("accessibility_requirements.requisite[0]: unknown topology key \"zone\""),
        "{m}"
    );
}

#[test]
fn sizes_round_to_extents_and_respect_limits() {
    const E: u64 = 4 << 20;
    let r = |req: u64, lim: u64| SizeRange {
        required: req,
        limit: lim,
    };
    let table = [
        // (range, fs minimum, expected)
        (r(0, 0), 0, Ok(DEFAULT_SIZE)),
        (r(1, 0), 0, Ok(E)),
        (r(E + 1, 0), 0, Ok(2 * E)),
        (r(10 << 20, 0), 32 << 20, Ok(32 << 20)),
        (r(0, 100 << 20), 0, Ok(100 << 20)),
        (r(0, 10 << 20), 0, Ok(12 << 20)),
        (r(1, 2 << 20), 0, Err(Code::OutOfRange)),
        (r(1 << 20, 200 << 20), 300 << 20, Err(Code::OutOfRange)),
        (r(1 << 20, 0), 300 << 20, Ok(300 << 20)),
    ];
    for (range, min, want) in table {
        let got = range.fit(min, E, "capacity_range").map_err(|e| e.code());
        // 10 MiB with a 10 MiB limit rounds up to 12 MiB > limit: out of range.
        let want = if range == r(0, 10 << 20) {
            Err(Code::OutOfRange)
        } else {
            want
        };
        assert_eq!(got, want, "{range:?} min {min}");
    }
    assert!(
        r(5, 10).admits(5) && r(5, 10).admits(10) && !r(5, 10).admits(11) && !r(5, 0).admits(4)
    );
}

#[test]
fn pages_and_tokens() {
    assert_eq!(page(0, "").unwrap(), (usize::MAX, None));
    assert_eq!(
        page(3, &next_token("pvc-1")).unwrap(),
        (3, Some("pvc-1".into()))
    );
    assert_eq!(page(-1, "").unwrap_err().code(), Code::InvalidArgument);
    assert_eq!(page(1, "garbage").unwrap_err().code(), Code::Aborted);
}

#[test]
fn paths_and_ids() {
    assert!(abs_path("/var/lib/kubelet/x", "target_path").is_ok());
    assert_eq!(
        abs_path("", "target_path").unwrap_err().to_string(),
        "target_path: required"
    );
    assert_eq!(
        abs_path("rel/x", "target_path").unwrap_err().code(),
        Code::InvalidArgument
    );
    assert_eq!(
        abs_path("/a/../etc", "target_path").unwrap_err().code(),
        Code::InvalidArgument
    );
    assert_eq!(
        volume_id("", "volume_id").unwrap_err().code(),
        Code::InvalidArgument
    );
    assert_eq!(
        volume_id("a/b", "volume_id").unwrap_err().code(),
        Code::NotFound
    );
}
