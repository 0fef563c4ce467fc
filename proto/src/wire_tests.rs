//! Wire-compatibility checks: the field numbers, wire types and enum values
//! that the Kubernetes sidecars and the kubelet depend on, as CSI v1.12.0
//! defines them. Each test reads the raw protobuf bytes rather than trusting
//! the generated code to agree with itself.

use std::collections::HashMap;

use prost::Message;

use crate::csi::v1 as csi;

const VARINT: u8 = 0;
const LEN: u8 = 2;

/// One top-level record of an encoded message.
#[derive(Debug)]
struct Record<'a> {
    field: u32,
    wire_type: u8,
    /// Payload of a length-delimited record; empty for the other types.
    payload: &'a [u8],
}

fn read_varint(buf: &mut &[u8]) -> u64 {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let (&byte, rest) = buf.split_first().expect("truncated varint");
        *buf = rest;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return value;
        }
    }
    panic!("varint longer than 10 bytes");
}

/// Splits an encoded message into its top-level records, in wire order.
fn records(mut buf: &[u8]) -> Vec<Record<'_>> {
    let mut out = Vec::new();
    while !buf.is_empty() {
        let key = read_varint(&mut buf);
        let field = u32::try_from(key >> 3).expect("field number fits u32");
        let wire_type = u8::try_from(key & 7).expect("3 bits");
        let payload: &[u8] = match wire_type {
            VARINT => {
                read_varint(&mut buf);
                &[]
            }
            1 => {
                buf = &buf[8..];
                &[]
            }
            LEN => {
                let len = usize::try_from(read_varint(&mut buf)).expect("length fits usize");
                let (payload, rest) = buf.split_at(len);
                buf = rest;
                payload
            }
            5 => {
                buf = &buf[4..];
                &[]
            }
            other => panic!("unexpected wire type {other}"),
        };
        out.push(Record {
            field,
            wire_type,
            payload,
        });
    }
    out
}

/// The (field number, wire type) pairs of an encoded message, sorted.
fn tags(buf: &[u8]) -> Vec<(u32, u8)> {
    let mut tags: Vec<_> = records(buf)
        .iter()
        .map(|r| (r.field, r.wire_type))
        .collect();
    tags.sort_unstable();
    tags.dedup();
    tags
}

/// The payload of the only length-delimited record with this field number.
fn payload(buf: &[u8], field: u32) -> &[u8] {
    let found: Vec<_> = records(buf)
        .into_iter()
        .filter(|r| r.field == field && r.wire_type == LEN)
        .collect();
    assert_eq!(found.len(), 1, "field {field} in {buf:?}");
    found[0].payload
}

fn map(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn mount_capability() -> csi::VolumeCapability {
    csi::VolumeCapability {
        access_type: Some(csi::volume_capability::AccessType::Mount(
            csi::volume_capability::MountVolume {
                fs_type: "ext4".into(),
                mount_flags: vec!["noatime".into()],
                volume_mount_group: "2000".into(),
            },
        )),
        access_mode: Some(csi::volume_capability::AccessMode {
            mode: csi::volume_capability::access_mode::Mode::SingleNodeWriter.into(),
        }),
    }
}

#[test]
fn create_volume_request_fields() {
    let req = csi::CreateVolumeRequest {
        name: "pvc-0f6c".into(),
        capacity_range: Some(csi::CapacityRange {
            required_bytes: 1 << 30,
            limit_bytes: 0,
        }),
        volume_capabilities: vec![mount_capability()],
        parameters: map(&[("strata.io/thin", "true")]),
        secrets: map(&[("k", "v")]),
        accessibility_requirements: Some(csi::TopologyRequirement {
            requisite: vec![csi::Topology {
                segments: map(&[("topology.strata.io/node", "edge-01")]),
            }],
            preferred: vec![],
        }),
        mutable_parameters: map(&[("iops", "100")]),
        ..Default::default()
    };
    let buf = req.encode_to_vec();
    assert_eq!(
        tags(&buf),
        [
            (1, LEN),
            (2, LEN),
            (3, LEN),
            (4, LEN),
            (5, LEN),
            (7, LEN),
            (8, LEN)
        ]
    );
    // The name is the first record: key 0x0a is field 1, length-delimited.
    assert_eq!(buf[0], 0x0a);
    assert_eq!(&buf[2..2 + 8], b"pvc-0f6c");
    // A map entry is a nested message: key = 1, value = 2.
    assert_eq!(tags(payload(&buf, 4)), [(1, LEN), (2, LEN)]);
    // TopologyRequirement.requisite = 1, Topology.segments = 1.
    let requirement = payload(&buf, 7);
    assert_eq!(tags(requirement), [(1, LEN)]);
    assert_eq!(
        tags(payload(payload(requirement, 1), 1)),
        [(1, LEN), (2, LEN)]
    );
    // CapacityRange.required_bytes = 1 (varint).
    assert_eq!(tags(payload(&buf, 2)), [(1, VARINT)]);
}

#[test]
fn volume_capability_fields() {
    let buf = mount_capability().encode_to_vec();
    // oneof access_type: block = 1, mount = 2; access_mode = 3.
    assert_eq!(tags(&buf), [(2, LEN), (3, LEN)]);
    // MountVolume: fs_type = 1, mount_flags = 2, volume_mount_group = 3.
    assert_eq!(tags(payload(&buf, 2)), [(1, LEN), (2, LEN), (3, LEN)]);
    // AccessMode.mode = 1, SINGLE_NODE_WRITER = 1.
    assert_eq!(payload(&buf, 3), [0x08, 0x01]);

    let block = csi::VolumeCapability {
        access_type: Some(csi::volume_capability::AccessType::Block(
            csi::volume_capability::BlockVolume {},
        )),
        access_mode: None,
    };
    assert_eq!(block.encode_to_vec(), [0x0a, 0x00]);

    use csi::volume_capability::access_mode::Mode;
    assert_eq!(Mode::MultiNodeMultiWriter as i32, 5);
    assert_eq!(Mode::SingleNodeSingleWriter as i32, 6);
    assert_eq!(Mode::SingleNodeMultiWriter as i32, 7);
}

#[test]
fn node_stage_volume_request_fields() {
    let req = csi::NodeStageVolumeRequest {
        volume_id: "vg0/pvc-0f6c".into(),
        publish_context: map(&[("p", "1")]),
        staging_target_path: "/var/lib/kubelet/plugins/kubernetes.io/csi/strata.io/x/globalmount"
            .into(),
        volume_capability: Some(mount_capability()),
        secrets: map(&[("k", "v")]),
        volume_context: map(&[("c", "1")]),
    };
    let buf = req.encode_to_vec();
    assert_eq!(
        tags(&buf),
        [(1, LEN), (2, LEN), (3, LEN), (4, LEN), (5, LEN), (6, LEN)]
    );

    // What a kubelet sends: field 1 volume_id, field 3 staging_target_path.
    let wire = [0x0a, 0x01, b'v', 0x1a, 0x02, b'/', b's'];
    let decoded = csi::NodeStageVolumeRequest::decode(&wire[..]).expect("decodes");
    assert_eq!(decoded.volume_id, "v");
    assert_eq!(decoded.staging_target_path, "/s");
}

#[test]
fn node_publish_volume_request_fields() {
    let req = csi::NodePublishVolumeRequest {
        volume_id: "v".into(),
        publish_context: map(&[("p", "1")]),
        staging_target_path: "/stage".into(),
        target_path: "/pods/x/volumes/y/mount".into(),
        volume_capability: Some(mount_capability()),
        readonly: true,
        secrets: map(&[("k", "v")]),
        volume_context: map(&[("csi.storage.k8s.io/ephemeral", "false")]),
    };
    let buf = req.encode_to_vec();
    assert_eq!(
        tags(&buf),
        [
            (1, LEN),
            (2, LEN),
            (3, LEN),
            (4, LEN),
            (5, LEN),
            (6, VARINT),
            (7, LEN),
            (8, LEN)
        ]
    );

    // The unpublish and unstage requests carry the path as field 2.
    let unstage = csi::NodeUnstageVolumeRequest::decode(&[0x12, 0x01, b'/'][..]).expect("decodes");
    assert_eq!(unstage.staging_target_path, "/");
    let unpublish =
        csi::NodeUnpublishVolumeRequest::decode(&[0x12, 0x01, b'/'][..]).expect("decodes");
    assert_eq!(unpublish.target_path, "/");
}

#[test]
fn node_expand_volume_request_fields() {
    let req = csi::NodeExpandVolumeRequest {
        volume_id: "v".into(),
        volume_path: "/pods/x/volumes/y/mount".into(),
        capacity_range: Some(csi::CapacityRange {
            required_bytes: 2 << 30,
            limit_bytes: 0,
        }),
        staging_target_path: "/stage".into(),
        volume_capability: Some(mount_capability()),
        secrets: map(&[("k", "v")]),
    };
    let buf = req.encode_to_vec();
    assert_eq!(
        tags(&buf),
        [(1, LEN), (2, LEN), (3, LEN), (4, LEN), (5, LEN), (6, LEN)]
    );
    // capacity_range is field 3.
    let range = csi::CapacityRange::decode(payload(&buf, 3)).expect("decodes");
    assert_eq!(range.required_bytes, 2 << 30);

    let resp = csi::NodeExpandVolumeResponse { capacity_bytes: 1 };
    assert_eq!(resp.encode_to_vec(), [0x08, 0x01]);
}

#[test]
fn node_get_volume_stats_response_fields() {
    let resp = csi::NodeGetVolumeStatsResponse {
        usage: vec![csi::VolumeUsage {
            available: 1,
            total: 2,
            used: 1,
            unit: csi::volume_usage::Unit::Bytes.into(),
        }],
        volume_condition: Some(csi::VolumeCondition {
            abnormal: true,
            message: "thin pool 95% full".into(),
        }),
    };
    let buf = resp.encode_to_vec();
    assert_eq!(tags(&buf), [(1, LEN), (2, LEN)]);
    // VolumeUsage: available 1, total 2, used 3, unit 4 (BYTES = 1).
    let usage = payload(&buf, 1);
    assert_eq!(
        tags(usage),
        [(1, VARINT), (2, VARINT), (3, VARINT), (4, VARINT)]
    );
    assert_eq!(&usage[usage.len() - 2..], [0x20, 0x01]);
    // VolumeCondition: abnormal 1, message 2.
    assert_eq!(tags(payload(&buf, 2)), [(1, VARINT), (2, LEN)]);
    assert_eq!(csi::volume_usage::Unit::Inodes as i32, 2);

    // NodeGetVolumeStatsRequest: volume_id 1, volume_path 2, staging_target_path 3.
    let req = csi::NodeGetVolumeStatsRequest::decode(&[0x12, 0x01, b'p', 0x1a, 0x01, b's'][..])
        .expect("decodes");
    assert_eq!(
        (req.volume_path.as_str(), req.staging_target_path.as_str()),
        ("p", "s")
    );
}

#[test]
fn node_get_info_response_fields() {
    let resp = csi::NodeGetInfoResponse {
        node_id: "edge-01".into(),
        max_volumes_per_node: 64,
        accessible_topology: Some(csi::Topology {
            segments: map(&[("topology.strata.io/node", "edge-01")]),
        }),
    };
    let buf = resp.encode_to_vec();
    // node_id 1, max_volumes_per_node 2 (int64 varint), accessible_topology 3.
    assert_eq!(tags(&buf), [(1, LEN), (2, VARINT), (3, LEN)]);
}

#[test]
fn controller_get_volume_response_status_is_field_2() {
    let resp = csi::ControllerGetVolumeResponse {
        volume: Some(csi::Volume {
            capacity_bytes: 1 << 30,
            volume_id: "v".into(),
            ..Default::default()
        }),
        status: Some(csi::controller_get_volume_response::VolumeStatus {
            published_node_ids: vec!["edge-01".into()],
            volume_condition: Some(csi::VolumeCondition {
                abnormal: false,
                message: "ok".into(),
            }),
        }),
    };
    let buf = resp.encode_to_vec();
    assert_eq!(tags(&buf), [(1, LEN), (2, LEN)]);
    // VolumeStatus: published_node_ids 1, volume_condition 2.
    assert_eq!(tags(payload(&buf, 2)), [(1, LEN), (2, LEN)]);
    // Volume: capacity_bytes 1, volume_id 2.
    assert_eq!(tags(payload(&buf, 1)), [(1, VARINT), (2, LEN)]);
}

#[test]
fn get_capacity_response_wrappers() {
    let resp = csi::GetCapacityResponse {
        available_capacity: 10,
        maximum_volume_size: Some(5),
        minimum_volume_size: Some(1),
    };
    let buf = resp.encode_to_vec();
    // Int64Value wrappers are messages on the wire: fields 2 and 3.
    assert_eq!(tags(&buf), [(1, VARINT), (2, LEN), (3, LEN)]);
    assert_eq!(payload(&buf, 2), [0x08, 0x05]);

    // ProbeResponse.ready is a BoolValue at field 1.
    let probe = csi::ProbeResponse { ready: Some(true) };
    assert_eq!(probe.encode_to_vec(), [0x0a, 0x02, 0x08, 0x01]);
}

#[test]
fn capability_enum_values() {
    use csi::controller_service_capability::rpc::Type as Controller;
    use csi::node_service_capability::rpc::Type as Node;
    use csi::plugin_capability::service::Type as Plugin;

    assert_eq!(Plugin::ControllerService as i32, 1);
    assert_eq!(Plugin::VolumeAccessibilityConstraints as i32, 2);
    assert_eq!(Plugin::GroupControllerService as i32, 3);
    assert_eq!(Plugin::SnapshotMetadataService as i32, 4);

    assert_eq!(Controller::CreateDeleteVolume as i32, 1);
    assert_eq!(Controller::GetCapacity as i32, 4);
    assert_eq!(Controller::CreateDeleteSnapshot as i32, 5);
    assert_eq!(Controller::CloneVolume as i32, 7);
    assert_eq!(Controller::ExpandVolume as i32, 9);
    assert_eq!(Controller::GetVolume as i32, 12);
    assert_eq!(Controller::ModifyVolume as i32, 14);
    assert_eq!(Controller::GetSnapshot as i32, 15);

    assert_eq!(Node::StageUnstageVolume as i32, 1);
    assert_eq!(Node::GetVolumeStats as i32, 2);
    assert_eq!(Node::ExpandVolume as i32, 3);
    assert_eq!(Node::VolumeCondition as i32, 4);
    assert_eq!(Node::SingleNodeMultiWriter as i32, 5);
    assert_eq!(Node::VolumeMountGroup as i32, 6);

    // NodeServiceCapability: oneof type { RPC rpc = 1 }, RPC.type = 1.
    let cap = csi::NodeServiceCapability {
        r#type: Some(csi::node_service_capability::Type::Rpc(
            csi::node_service_capability::Rpc {
                r#type: Node::VolumeMountGroup.into(),
            },
        )),
    };
    assert_eq!(cap.encode_to_vec(), [0x0a, 0x02, 0x08, 0x06]);

    assert_eq!(csi::BlockMetadataType::VariableLength as i32, 2);
}

#[test]
fn snapshot_fields() {
    let snap = csi::Snapshot {
        size_bytes: 1,
        snapshot_id: "s".into(),
        source_volume_id: "v".into(),
        creation_time: Some(prost_types::Timestamp {
            seconds: 1,
            nanos: 0,
        }),
        ready_to_use: true,
        group_snapshot_id: "g".into(),
    };
    assert_eq!(
        tags(&snap.encode_to_vec()),
        [
            (1, VARINT),
            (2, LEN),
            (3, LEN),
            (4, LEN),
            (5, VARINT),
            (6, LEN)
        ]
    );
    let req = csi::GetSnapshotRequest {
        snapshot_id: "s".into(),
        secrets: map(&[("k", "v")]),
    };
    assert_eq!(tags(&req.encode_to_vec()), [(1, LEN), (2, LEN)]);
}

#[test]
fn grpc_service_names() {
    use tonic::server::NamedService;

    type Identity = csi::identity_server::IdentityServer<()>;
    type Controller = csi::controller_server::ControllerServer<()>;
    type GroupController = csi::group_controller_server::GroupControllerServer<()>;
    type SnapshotMetadata = csi::snapshot_metadata_server::SnapshotMetadataServer<()>;
    type Node = csi::node_server::NodeServer<()>;

    assert_eq!(<Identity as NamedService>::NAME, "csi.v1.Identity");
    assert_eq!(<Controller as NamedService>::NAME, "csi.v1.Controller");
    assert_eq!(
        <GroupController as NamedService>::NAME,
        "csi.v1.GroupController"
    );
    assert_eq!(
        <SnapshotMetadata as NamedService>::NAME,
        "csi.v1.SnapshotMetadata"
    );
    assert_eq!(<Node as NamedService>::NAME, "csi.v1.Node");
}

#[test]
fn spec_version() {
    assert_eq!(crate::CSI_SPEC_VERSION, "1.12.0");
}
