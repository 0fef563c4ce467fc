//! The CSI conformance suite's bodies, shared by the host group
//! (tests/csi_conformance.rs, activation off) and the real-kernel group
//! (tests/guest_csi_conformance.rs, with device-mapper).

use std::collections::HashMap;

use crate::common::*;
use strata_proto::csi::v1 as csi;
use tonic::Code;

async fn node_on(vg: &TestVg, spare: u64, backend: &str) -> NodeProc {
    NodeProc::start(&config(&thick_class(&vg.name, spare), backend)).await
}

/// The volume a CreateVolume that must succeed answers with.
async fn created(c: &mut Clients, req: csi::CreateVolumeRequest) -> csi::Volume {
    c.controller
        .create_volume(req)
        .await
        .expect("CreateVolume")
        .into_inner()
        .volume
        .expect("a volume")
}

fn code<T: std::fmt::Debug>(r: Result<T, tonic::Status>) -> (Code, String) {
    let s = r.expect_err("expected an error");
    (s.code(), s.message().to_owned())
}

#[tokio::test]
async fn identity_answers_to_the_spec() {
    let vg = TestVg::new(256);
    for backend in backends() {
        let node = node_on(&vg, 0, backend).await;
        let mut c = node.clients().await;
        let info = c
            .identity
            .get_plugin_info(csi::GetPluginInfoRequest {})
            .await
            .unwrap()
            .into_inner();
        assert_eq!(info.name, "strata.io");
        assert_eq!(info.vendor_version, env!("CARGO_PKG_VERSION"));
        assert_eq!(
            info.manifest.get("lvm-backend").map(String::as_str),
            Some(backend)
        );
        let caps = c
            .identity
            .get_plugin_capabilities(csi::GetPluginCapabilitiesRequest {})
            .await
            .unwrap()
            .into_inner();
        assert_eq!(caps.capabilities.len(), 3, "{caps:?}");
        let probe = c
            .identity
            .probe(csi::ProbeRequest {})
            .await
            .unwrap()
            .into_inner();
        assert_eq!(probe.ready, Some(true), "{}", node.log_text());
    }
    // GET_SNAPSHOT (alpha in CSI 1.12) is listed only when asked for; older
    // sidecars crash on it. GetSnapshot answers either way.
    let config_text = config(&thick_class(&vg.name, 0), "cli");
    for (extra, env, listed) in [
        (&[][..], None, false),
        (&["--advertise-get-snapshot"][..], None, true),
        (&[][..], Some("true"), true),
        (&[][..], Some("false"), false),
    ] {
        let node = match env {
            Some(v) => {
                NodeProc::start_with_env(
                    &config_text,
                    extra,
                    &[("STRATA_ADVERTISE_GET_SNAPSHOT", v)],
                )
                .await
            }
            None => NodeProc::start_with(&config_text, extra).await,
        };
        let mut c = node.clients().await;
        let caps: Vec<i32> = c
            .controller
            .controller_get_capabilities(csi::ControllerGetCapabilitiesRequest {})
            .await
            .unwrap()
            .into_inner()
            .capabilities
            .into_iter()
            .filter_map(|c| match c.r#type {
                Some(csi::controller_service_capability::Type::Rpc(r)) => Some(r.r#type),
                _ => None,
            })
            .collect();
        let get_snapshot = csi::controller_service_capability::rpc::Type::GetSnapshot as i32;
        assert_eq!(
            caps.contains(&get_snapshot),
            listed,
            "{extra:?} {env:?}: {caps:?}"
        );
        assert_eq!(caps.len(), if listed { 10 } else { 9 }, "{caps:?}");
        assert_eq!(
            code(
                c.controller
                    .get_snapshot(csi::GetSnapshotRequest {
                        snapshot_id: "snap-none".into(),
                        ..Default::default()
                    })
                    .await
            )
            .0,
            Code::NotFound,
            "GetSnapshot answers whatever is listed"
        );
    }
}

/// A VG made during a test (by hand or by the node) on a bare loop device;
/// removed, with the loop device, on drop.
struct HandMadeVg {
    name: String,
    dev: String,
}

impl Drop for HandMadeVg {
    fn drop(&mut self) {
        let _ = std::process::Command::new("lvm")
            .args(["vgremove", "-ff", "-y", &self.name])
            .output();
        let _ = std::process::Command::new("lvm")
            .args(["pvremove", "-y", &self.dev])
            .output();
        let _ = std::process::Command::new("losetup")
            .args(["-d", &self.dev])
            .output();
    }
}

#[tokio::test]
async fn a_class_without_its_volume_group_is_reported_and_probe_stays_ready() {
    let vg = TestVg::new(128);
    let missing = unique("missingvg");
    let classes = format!(
        "{}[[device_class]]\nname = \"edge\"\nvolume_group = \"{missing}\"\ntype = \"thick\"\n",
        thick_class(&vg.name, 0)
    );
    let metrics = format!("127.0.0.1:{}", free_port());
    let node = NodeProc::start_with(&config(&classes, "cli"), &["--metrics-addr", &metrics]).await;
    let mut c = node.clients().await;
    let probe = || async {
        let mut c = node.clients().await;
        c.identity
            .probe(csi::ProbeRequest {})
            .await
            .unwrap()
            .into_inner()
            .ready
    };
    // The plugin works: Probe is ready (no livenessprobe restart loop) ...
    for _ in 0..3 {
        assert_eq!(probe().await, Some(true), "{}", node.log_text());
    }
    // ... and the class is reported, once, naming the class, VG and reason.
    let not_ready = format!(
        "(volume group \"{missing}\") cannot take volumes: volume group \"{missing}\" not found on this node, and the class lists no devices to create it from"
    );
    // Quotes in the message, escaped or not.
    let log = node.log_text().replace("\\\"", "\"");
    assert_eq!(log.matches(&not_ready).count(), 1, "{not_ready} in {log}");
    if let Some(gauges) = scrape_outside_guest(&metrics) {
        for line in [
            "strata_csi_device_class_ready{node=\"edge-node-1\",device_class=\"edge\"} 0",
            "strata_csi_device_class_ready{node=\"edge-node-1\",device_class=\"fast\"} 1",
            "strata_node_ready{node=\"edge-node-1\"} 0",
        ] {
            assert!(gauges.contains(line), "{line} in {gauges}");
        }
    }
    let capacity = |class: &str| csi::GetCapacityRequest {
        parameters: HashMap::from([("strata.io/device-class".into(), class.into())]),
        ..Default::default()
    };
    let room = |r: Result<tonic::Response<csi::GetCapacityResponse>, tonic::Status>| {
        r.unwrap().into_inner().available_capacity
    };
    assert_eq!(room(c.controller.get_capacity(capacity("edge")).await), 0);
    assert!(room(c.controller.get_capacity(capacity("fast")).await) > 0);
    let mut req = create_req("pvc-edge", 8 * MIB, mount_cap("ext4"));
    req.parameters
        .insert("strata.io/device-class".into(), "edge".into());
    let (got, message) = code(c.controller.create_volume(req.clone()).await);
    assert_eq!(got, Code::ResourceExhausted, "{message}");
    assert_eq!(
        message,
        format!(
            "parameters.strata.io/device-class: device class \"edge\" cannot take volumes on node edge-node-1: volume group \"{missing}\" not found on this node, and the class lists no devices to create it from"
        )
    );

    // The VG appears (an operator made it): the class is ready, told once.
    let dir = tempfile::tempdir().unwrap();
    let made = HandMadeVg {
        dev: TestVg::bare_device(dir.path(), 64),
        name: missing.clone(),
    };
    lvm(&["pvcreate", "-y", &made.dev]);
    lvm(&["vgcreate", "-y", &made.name, &made.dev]);
    for _ in 0..2 {
        assert_eq!(probe().await, Some(true));
    }
    let ready = format!("(volume group \"{missing}\") is ready");
    let log = node.log_text().replace("\\\"", "\"");
    assert_eq!(log.matches(&ready).count(), 1, "{ready} in {log}");
    if let Some(gauges) = scrape_outside_guest(&metrics) {
        for line in [
            "strata_csi_device_class_ready{node=\"edge-node-1\",device_class=\"edge\"} 1",
            "strata_node_ready{node=\"edge-node-1\"} 1",
        ] {
            assert!(gauges.contains(line), "{line} in {gauges}");
        }
    }
    assert!(room(c.controller.get_capacity(capacity("edge")).await) > 0);
    c.controller.create_volume(req).await.unwrap();
    drop(node);
}

#[tokio::test]
async fn a_missing_volume_group_is_created_from_its_devices() {
    let dir = tempfile::tempdir().unwrap();
    let dev = TestVg::bare_device(dir.path(), 128);
    let vg_name = unique("newvg");
    let classes = format!(
        "[[device_class]]\nname = \"fast\"\nvolume_group = \"{vg_name}\"\ntype = \"thick\"\ndevices = [\"{dev}\"]\n"
    );
    let made = HandMadeVg {
        name: vg_name.clone(),
        dev: dev.clone(),
    };
    let node = NodeProc::start(&config(&classes, "cli")).await;
    let mut c = node.clients().await;
    let probe = c
        .identity
        .probe(csi::ProbeRequest {})
        .await
        .unwrap()
        .into_inner();
    let vgs = lvm(&[
        "vgs",
        "--noheadings",
        "-o",
        "vg_name,pv_name",
        "-S",
        &format!("vg_name={vg_name}"),
    ]);
    drop(node);
    drop(made);
    assert!(vgs.contains(&vg_name) && vgs.contains(&dev), "{vgs}");
    assert_eq!(probe.ready, Some(true));
}

#[tokio::test]
async fn create_is_idempotent_and_tags_the_volume() {
    let vg = TestVg::new(512);
    for backend in backends() {
        let node = node_on(&vg, 0, backend).await;
        let mut c = node.clients().await;
        let name = format!("pvc-{}", unique("a"));
        let req = create_req(&name, 50 * MIB, mount_cap("ext4"));
        let v1 = c
            .controller
            .create_volume(req.clone())
            .await
            .unwrap()
            .into_inner()
            .volume
            .unwrap();
        let v2 = c
            .controller
            .create_volume(req.clone())
            .await
            .unwrap()
            .into_inner()
            .volume
            .unwrap();
        assert_eq!(v1, v2);
        assert_eq!(v1.volume_id, name);
        // 50 MiB rounds up to whole 4 MiB extents.
        assert_eq!(v1.capacity_bytes, 52 * MIB);
        assert_eq!(vg.lv_size(&name), 52 << 20);
        assert_eq!(
            v1.accessible_topology[0]
                .segments
                .get("topology.strata.io/node"),
            Some(&node.node_id)
        );
        let tags = vg.lv_tags(&name);
        for t in [
            "strata.io",
            "strata.io/class=fast",
            "strata.io/pvc=data",
            "strata.io/pvc-namespace=line-3",
        ] {
            assert!(tags.iter().any(|x| x == t), "{t} missing from {tags:?}");
        }
        // Same name, incompatible size: ALREADY_EXISTS, nothing changed.
        let mut bigger = req.clone();
        bigger.capacity_range = Some(csi::CapacityRange {
            required_bytes: 100 * MIB,
            limit_bytes: 0,
        });
        let (code, msg) = code(c.controller.create_volume(bigger).await);
        assert_eq!(code, Code::AlreadyExists, "{msg}");
        assert!(msg.contains("capacity_range"), "{msg}");
        assert_eq!(vg.lv_size(&name), 52 << 20);
        // Delete twice: both OK.
        let del = csi::DeleteVolumeRequest {
            volume_id: name.clone(),
            ..Default::default()
        };
        c.controller.delete_volume(del.clone()).await.unwrap();
        c.controller.delete_volume(del).await.unwrap();
        assert!(!vg.lv_names().contains(&name));
    }
}

#[tokio::test]
async fn fifty_concurrent_creates_make_one_volume() {
    let vg = TestVg::new(512);
    let node = node_on(&vg, 0, "cli").await;
    let ch = node.channel().await;
    let name = format!("pvc-{}", unique("race"));
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let mut c = csi::controller_client::ControllerClient::new(ch.clone());
        let req = create_req(&name, 8 * MIB, mount_cap(""));
        tasks.push(tokio::spawn(async move {
            c.create_volume(req)
                .await
                .map(|r| r.into_inner().volume.unwrap().volume_id)
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap().unwrap(), name);
    }
    assert_eq!(vg.lv_names(), vec![name]);
}

#[tokio::test]
async fn capacity_errors_have_the_right_codes() {
    let vg = TestVg::new(256);
    let spare = 64u64 << 20;
    let node = node_on(&vg, spare, "cli").await;
    let mut c = node.clients().await;
    // Larger than the VG minus the spare.
    let free = vg.free();
    let (code_, msg) = code(
        c.controller
            .create_volume(create_req(
                "pvc-huge",
                (free - spare + (4 << 20)) as i64,
                mount_cap(""),
            ))
            .await,
    );
    assert_eq!(code_, Code::ResourceExhausted, "{msg}");
    assert!(
        msg.contains("device class \"fast\"") && msg.contains("spare"),
        "{msg}"
    );
    // Exactly what is left after the spare fits.
    let fits = c
        .controller
        .create_volume(create_req("pvc-fits", (free - spare) as i64, block_cap()))
        .await;
    assert!(fits.is_ok(), "{fits:?}");
    assert_eq!(vg.free(), spare);
    let mut bad = create_req("pvc-bad", 0, mount_cap(""));
    bad.capacity_range = Some(csi::CapacityRange {
        required_bytes: -5,
        limit_bytes: 0,
    });
    let (code_, msg) = code(c.controller.create_volume(bad.clone()).await);
    assert_eq!(
        (code_, msg.as_str()),
        (
            Code::InvalidArgument,
            "capacity_range.required_bytes: must not be negative"
        )
    );
    bad.capacity_range = Some(csi::CapacityRange {
        required_bytes: MIB,
        limit_bytes: 100 * MIB,
    });
    bad.volume_capabilities = vec![mount_cap("xfs")];
    let (code_, msg) = code(c.controller.create_volume(bad).await);
    assert_eq!(code_, Code::OutOfRange, "{msg}");
    assert!(msg.contains("filesystem minimum"), "{msg}");
    assert_eq!(
        vg.lv_names(),
        vec!["pvc-fits".to_string()],
        "failed requests left nothing behind"
    );
}

#[tokio::test]
async fn growth_past_the_volume_group_is_refused_out_of_range() {
    let vg = TestVg::new(128);
    let spare = 8u64 << 20;
    let metrics = format!("127.0.0.1:{}", free_port());
    let node = NodeProc::start_with(
        &config(&thick_class(&vg.name, spare), "cli"),
        &["--metrics-addr", &metrics],
    )
    .await;
    let mut c = node.clients().await;
    let v = created(&mut c, create_req("pvc-grow", 40 * MIB, block_cap())).await;
    let expand = |bytes: i64| csi::NodeExpandVolumeRequest {
        volume_id: v.volume_id.clone(),
        volume_path: "/unused".into(),
        capacity_range: Some(csi::CapacityRange {
            required_bytes: bytes,
            limit_bytes: 0,
        }),
        volume_capability: Some(block_cap()),
        ..Default::default()
    };
    // A PVC grown to 10 GiB on a node with far less: the resizer accepted
    // it (expansion is node-only), the node refuses it, saying why.
    let free = vg.free();
    let (got, message) = code(c.node.node_expand_volume(expand(10 << 30)).await);
    assert_eq!(got, Code::OutOfRange, "{message}");
    assert_eq!(
        message,
        format!(
            "capacity_range: volume pvc-grow cannot grow to 10737418240 bytes (it has {}, {} more asked): device class \"fast\" has {free} bytes free in volume group \"{}\" ({spare} of them kept spare); a volume cannot shrink: make room (delete volumes or snapshots on this node, or add a physical volume to the volume group with vgextend) or set the claim back to a size that fits",
            40 * MIB,
            (10i64 << 30) - 40 * MIB,
            vg.name
        )
    );
    assert_eq!(vg.lv_size("pvc-grow"), 40 << 20, "nothing grew");
    let counted = "strata_csi_expand_refused_total{node=\"edge-node-1\",device_class=\"fast\",reason=\"volume_group_full\"} 1";
    if let Some(text) = scrape_outside_guest(&metrics) {
        assert!(text.contains(counted), "{counted} in {text}");
    }
    // What fits (the free bytes less the spare) grows.
    let to = 40 * MIB + (free - spare) as i64;
    let grown = c
        .node
        .node_expand_volume(expand(to))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(grown.capacity_bytes, to);
    assert_eq!(vg.free(), spare);
}

#[tokio::test]
async fn bad_requests_are_rejected_before_anything_is_touched() {
    let vg = TestVg::new(256);
    let node = node_on(&vg, 0, "cli").await;
    let mut c = node.clients().await;
    let mut unknown_class = create_req("pvc-x", 8 * MIB, mount_cap(""));
    unknown_class
        .parameters
        .insert("strata.io/device-class".into(), "slow".into());
    let (code_, msg) = code(c.controller.create_volume(unknown_class).await);
    assert_eq!(code_, Code::InvalidArgument);
    assert_eq!(
        msg,
        "parameters.strata.io/device-class: unknown device class \"slow\" on node edge-node-1 (known: fast)"
    );
    let mut other_node = create_req("pvc-x", 8 * MIB, mount_cap(""));
    other_node.accessibility_requirements = Some(csi::TopologyRequirement {
        requisite: vec![csi::Topology {
            segments: HashMap::from([("topology.strata.io/node".into(), "edge-node-9".into())]),
        }],
        preferred: vec![],
    });
    assert_eq!(
        code(c.controller.create_volume(other_node).await).0,
        Code::ResourceExhausted
    );
    let multi = csi::VolumeCapability {
        access_mode: Some(csi::volume_capability::AccessMode {
            mode: csi::volume_capability::access_mode::Mode::MultiNodeMultiWriter as i32,
        }),
        ..mount_cap("")
    };
    assert_eq!(
        code(
            c.controller
                .create_volume(create_req("pvc-x", 8 * MIB, multi))
                .await
        )
        .0,
        Code::InvalidArgument
    );
    assert_eq!(
        code(
            c.controller
                .create_volume(create_req("", 8 * MIB, mount_cap("")))
                .await
        )
        .1,
        "name: required"
    );
    assert_eq!(
        code(
            c.controller
                .delete_volume(csi::DeleteVolumeRequest::default())
                .await
        ),
        (Code::InvalidArgument, "volume_id: required".to_string())
    );
    assert!(vg.lv_names().is_empty());
}

#[tokio::test]
async fn list_volumes_pages_with_tokens() {
    let vg = TestVg::new(512);
    let node = node_on(&vg, 0, "cli").await;
    let mut c = node.clients().await;
    let mut names: Vec<String> = (0..5).map(|i| format!("pvc-list-{i}")).collect();
    for n in &names {
        c.controller
            .create_volume(create_req(n, 4 * MIB, block_cap()))
            .await
            .unwrap();
    }
    // An LV without the strata marker is not listed.
    lvm(&[
        "lvcreate", "-y", "-Zn", "-Wn", "-n", "foreign", "-L", "4m", &vg.name,
    ]);
    let mut seen = Vec::new();
    let mut token = String::new();
    let mut pages = 0;
    loop {
        let r = c
            .controller
            .list_volumes(csi::ListVolumesRequest {
                max_entries: 2,
                starting_token: token.clone(),
            })
            .await
            .unwrap()
            .into_inner();
        pages += 1;
        assert!(r.entries.len() <= 2);
        for e in &r.entries {
            seen.push(e.volume.as_ref().unwrap().volume_id.clone());
            assert!(e.status.as_ref().unwrap().volume_condition.is_some());
        }
        if r.next_token.is_empty() {
            break;
        }
        token = r.next_token;
    }
    names.sort();
    assert_eq!(seen, names);
    assert_eq!(pages, 3);
    let (code_, _) = code(
        c.controller
            .list_volumes(csi::ListVolumesRequest {
                max_entries: 0,
                starting_token: "junk".into(),
            })
            .await,
    );
    assert_eq!(code_, Code::Aborted);
    let (code_, _) = code(
        c.controller
            .list_volumes(csi::ListVolumesRequest {
                max_entries: -1,
                starting_token: String::new(),
            })
            .await,
    );
    assert_eq!(code_, Code::InvalidArgument);
}

#[tokio::test]
async fn get_volume_validate_and_capacity() {
    let vg = TestVg::new(256);
    let spare = 32u64 << 20;
    let node = node_on(&vg, spare, "cli").await;
    let mut c = node.clients().await;
    let cap0 = c
        .controller
        .get_capacity(csi::GetCapacityRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(cap0.available_capacity as u64, vg.free() - spare);
    c.controller
        .create_volume(create_req("pvc-g", 40 * MIB, mount_cap("ext4")))
        .await
        .unwrap();
    let cap1 = c
        .controller
        .get_capacity(csi::GetCapacityRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(cap0.available_capacity - cap1.available_capacity, 40 * MIB);
    assert_eq!(cap1.maximum_volume_size, Some(cap1.available_capacity));
    let elsewhere = csi::GetCapacityRequest {
        accessible_topology: Some(csi::Topology {
            segments: HashMap::from([("topology.strata.io/node".into(), "x".into())]),
        }),
        ..Default::default()
    };
    assert_eq!(
        c.controller
            .get_capacity(elsewhere)
            .await
            .unwrap()
            .into_inner()
            .available_capacity,
        0
    );
    // A StorageClass naming a class this node lacks: nothing here (and OK,
    // or the capacity controller retries it forever and publishes nothing).
    let capacity_with = |params: &[(&str, &str)]| csi::GetCapacityRequest {
        parameters: params
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        ..Default::default()
    };
    let other_class = c
        .controller
        .get_capacity(capacity_with(&[("strata.io/device-class", "nope")]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (
            other_class.available_capacity,
            other_class.maximum_volume_size
        ),
        (0, None)
    );
    // The tiering policy is accepted and does not change what fits.
    let tiered = c
        .controller
        .get_capacity(capacity_with(&[(
            "strata.io/tiering-policy",
            "cold-images",
        )]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(tiered.available_capacity, cap1.available_capacity);
    // What CreateVolume refuses, GetCapacity refuses, naming the key.
    for (params, want) in [
        (
            [("strata.io/tiering", "x")],
            "parameters.strata.io/tiering: unknown parameter",
        ),
        (
            [("strata.io/tiering-policy", "Cold")],
            "parameters.strata.io/tiering-policy: \"Cold\" is not a TieringPolicy name",
        ),
    ] {
        let (got, message) = code(c.controller.get_capacity(capacity_with(&params)).await);
        assert_eq!(got, Code::InvalidArgument, "{message}");
        assert!(message.starts_with(want), "{message}");
        let mut req = create_req("pvc-refused", 40 * MIB, mount_cap("ext4"));
        req.parameters.extend(capacity_with(&params).parameters);
        let (got, create_message) = code(c.controller.create_volume(req).await);
        assert_eq!(
            (got, create_message),
            (Code::InvalidArgument, message),
            "one validator"
        );
    }
    // The policy goes back in the volume context, for the PV's volumeAttributes.
    let mut req = create_req("pvc-tiered", 40 * MIB, mount_cap("ext4"));
    req.parameters
        .extend(capacity_with(&[("strata.io/tiering-policy", "cold-images")]).parameters);
    let context = created(&mut c, req.clone()).await.volume_context;
    assert_eq!(
        context.get("strata.io/tiering-policy").map(String::as_str),
        Some("cold-images"),
        "{context:?}"
    );
    assert_eq!(
        created(&mut c, req).await.volume_context,
        context,
        "a retried create answers the same"
    );

    let got = c
        .controller
        .controller_get_volume(csi::ControllerGetVolumeRequest {
            volume_id: "pvc-g".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.volume.unwrap().capacity_bytes, 40 * MIB);
    assert!(got.status.unwrap().volume_condition.is_some());
    assert_eq!(
        code(
            c.controller
                .controller_get_volume(csi::ControllerGetVolumeRequest {
                    volume_id: "pvc-none".into()
                })
                .await
        )
        .0,
        Code::NotFound
    );

    let ok = c
        .controller
        .validate_volume_capabilities(csi::ValidateVolumeCapabilitiesRequest {
            volume_id: "pvc-g".into(),
            volume_capabilities: vec![mount_cap("ext4")],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(ok.confirmed.is_some());
    let multi = csi::VolumeCapability {
        access_mode: Some(csi::volume_capability::AccessMode {
            mode: csi::volume_capability::access_mode::Mode::MultiNodeReaderOnly as i32,
        }),
        ..mount_cap("ext4")
    };
    let no = c
        .controller
        .validate_volume_capabilities(csi::ValidateVolumeCapabilitiesRequest {
            volume_id: "pvc-g".into(),
            volume_capabilities: vec![multi],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(
        no.confirmed.is_none() && no.message.contains("MULTI_NODE_READER_ONLY"),
        "{no:?}"
    );
    assert_eq!(
        code(
            c.controller
                .validate_volume_capabilities(csi::ValidateVolumeCapabilitiesRequest {
                    volume_id: "pvc-none".into(),
                    volume_capabilities: vec![mount_cap("")],
                    ..Default::default()
                })
                .await
        )
        .0,
        Code::NotFound
    );
    let caps = c
        .controller
        .controller_get_capabilities(csi::ControllerGetCapabilitiesRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(caps.capabilities.len(), 9);
    assert_eq!(
        code(
            c.controller
                .create_snapshot(csi::CreateSnapshotRequest::default())
                .await
        ),
        (Code::InvalidArgument, "name: required".to_string())
    );
    assert_eq!(
        code(
            c.controller
                .controller_expand_volume(csi::ControllerExpandVolumeRequest::default())
                .await
        )
        .0,
        Code::Unimplemented
    );
}

#[tokio::test]
async fn node_calls_validate_every_field() {
    let vg = TestVg::new(128);
    let node = node_on(&vg, 0, "cli").await;
    let mut c = node.clients().await;
    let info = c
        .node
        .node_get_info(csi::NodeGetInfoRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(info.node_id, "edge-node-1");
    assert_eq!(info.max_volumes_per_node, 250);
    assert_eq!(
        info.accessible_topology
            .unwrap()
            .segments
            .get("topology.strata.io/node")
            .unwrap(),
        "edge-node-1"
    );
    let caps = c
        .node
        .node_get_capabilities(csi::NodeGetCapabilitiesRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(caps.capabilities.len(), 5);
    // Paths beneath the node's kubelet directory, as the kubelet hands out.
    let work = tempfile::tempdir_in(&node.kubelet).unwrap();
    let beneath = |rel: &str| work.path().join(rel).to_string_lossy().into_owned();

    let stage =
        |id: &str, path: &str, cap: Option<csi::VolumeCapability>| csi::NodeStageVolumeRequest {
            volume_id: id.into(),
            staging_target_path: path.into(),
            volume_capability: cap,
            ..Default::default()
        };
    let cases = [
        (
            stage("", "/s", Some(mount_cap(""))),
            Code::InvalidArgument,
            "volume_id: required",
        ),
        (
            stage("pvc-1", "", Some(mount_cap(""))),
            Code::InvalidArgument,
            "staging_target_path: required",
        ),
        (
            stage("pvc-1", "rel", Some(mount_cap(""))),
            Code::InvalidArgument,
            "staging_target_path: \"rel\" is not an absolute path",
        ),
        (
            stage("pvc-1", "/s", None),
            Code::InvalidArgument,
            "volume_capability: required",
        ),
        (
            stage("pvc-1", "/s", Some(mount_cap("ntfs"))),
            Code::InvalidArgument,
            "volume_capability.mount.fs_type: filesystem \"ntfs\" is not supported (ext4, xfs)",
        ),
        (
            stage("pvc-missing", &beneath("s"), Some(mount_cap(""))),
            Code::NotFound,
            "volume_id: volume \"pvc-missing\" does not exist on node edge-node-1",
        ),
    ];
    for (req, want_code, want_msg) in cases {
        let (got_code, got_msg) = code(c.node.node_stage_volume(req).await);
        assert_eq!((got_code, got_msg.as_str()), (want_code, want_msg));
    }
    let (got, msg) = code(
        c.node
            .node_publish_volume(csi::NodePublishVolumeRequest {
                volume_id: "pvc-1".into(),
                target_path: "/t".into(),
                volume_capability: Some(mount_cap("")),
                ..Default::default()
            })
            .await,
    );
    assert_eq!(
        (got, msg.as_str()),
        (Code::InvalidArgument, "staging_target_path: required")
    );
    let (got, msg) = code(
        c.node
            .node_expand_volume(csi::NodeExpandVolumeRequest {
                volume_id: "pvc-1".into(),
                volume_path: "/t".into(),
                ..Default::default()
            })
            .await,
    );
    assert_eq!(
        (got, msg.as_str()),
        (Code::InvalidArgument, "capacity_range: required")
    );
    let (got, _) = code(
        c.node
            .node_get_volume_stats(csi::NodeGetVolumeStatsRequest {
                volume_id: "pvc-missing".into(),
                volume_path: beneath("t"),
                ..Default::default()
            })
            .await,
    );
    assert_eq!(got, Code::NotFound);
    // Unstage and unpublish of something never staged are idempotent successes.
    c.node
        .node_unstage_volume(csi::NodeUnstageVolumeRequest {
            volume_id: "pvc-1".into(),
            staging_target_path: beneath("nonexistent/s"),
        })
        .await
        .unwrap();
    c.node
        .node_unpublish_volume(csi::NodeUnpublishVolumeRequest {
            volume_id: "pvc-1".into(),
            target_path: beneath("nonexistent/t"),
        })
        .await
        .unwrap();
}

/// A tmpfs mounted at a directory (if this host lets the test mount one),
/// unmounted on drop whatever the test's outcome.
struct TestTmpfs(Option<std::path::PathBuf>);

impl TestTmpfs {
    fn try_mount(dir: &std::path::Path) -> TestTmpfs {
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "strata-test", dir.to_str().unwrap()])
            .output()
            .is_ok_and(|o| o.status.success());
        TestTmpfs(ok.then(|| dir.to_owned()))
    }
}

impl Drop for TestTmpfs {
    fn drop(&mut self) {
        if let Some(dir) = &self.0 {
            let _ = std::process::Command::new("umount").arg(dir).output();
        }
    }
}

fn is_mount_point(dir: &std::path::Path) -> bool {
    let table = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let want = dir.to_str().unwrap();
    table.lines().any(|l| l.split(' ').nth(4) == Some(want))
}

#[tokio::test]
async fn node_calls_refuse_paths_outside_the_kubelet_dir_and_touch_nothing() {
    let vg = TestVg::new(128);
    let tmp = tempfile::tempdir().unwrap();
    let kubelet = tmp.path().join("kubelet");
    let outside = tmp.path().join("etc");
    std::fs::create_dir_all(kubelet.join("pods/uid-1")).unwrap();
    // What an attacker points the driver at: an empty directory and a file
    // (which an unpublish would remove) and a mount (which it would unmount).
    std::fs::create_dir_all(outside.join("empty")).unwrap();
    std::fs::write(outside.join("something"), "keep me").unwrap();
    std::fs::create_dir_all(outside.join("mnt")).unwrap();
    let tmpfs = TestTmpfs::try_mount(&outside.join("mnt"));
    if tmpfs.0.is_none() {
        eprintln!("no tmpfs mount here: the unmount case is not exercised");
    }
    // A symlink beneath the kubelet directory pointing outside it.
    std::os::unix::fs::symlink(&outside, kubelet.join("pods/uid-1/evil")).unwrap();
    let kubelet_arg = kubelet.to_str().unwrap().to_owned();
    let node = NodeProc::start_with(
        &config(&thick_class(&vg.name, 0), "cli"),
        &["--kubelet-dir", &kubelet_arg],
    )
    .await;
    let mut c = node.clients().await;
    let s = |p: std::path::PathBuf| p.to_string_lossy().into_owned();
    let k = kubelet.display().to_string();
    let cases = [
        (
            s(outside.join("something")),
            "is not beneath the kubelet directory",
        ),
        (
            s(outside.join("empty")),
            "is not beneath the kubelet directory",
        ),
        (
            s(outside.join("mnt")),
            "is not beneath the kubelet directory",
        ),
        (format!("{k}/pods/../../etc/empty"), "must not contain '..'"),
        (s(kubelet.join("pods/uid-1/evil/empty")), "a symlink"),
        (s(kubelet.join("pods/uid-1/evil/something")), "a symlink"),
        (s(kubelet.join("pods/uid-1/evil/mnt")), "a symlink"),
        (s(kubelet.join("pods/uid-1/evil")), "a symlink"),
        (k.clone(), "the kubelet directory itself"),
    ];
    for (path, why) in &cases {
        let (got, msg) = code(
            c.node
                .node_unpublish_volume(csi::NodeUnpublishVolumeRequest {
                    volume_id: "pvc-1".into(),
                    target_path: path.clone(),
                })
                .await,
        );
        assert_eq!(got, Code::InvalidArgument, "unpublish {path}: {msg}");
        assert!(
            msg.starts_with("target_path: ") && msg.contains(why),
            "unpublish {path}: {msg}"
        );
        let (got, msg) = code(
            c.node
                .node_unstage_volume(csi::NodeUnstageVolumeRequest {
                    volume_id: "pvc-1".into(),
                    staging_target_path: path.clone(),
                })
                .await,
        );
        assert_eq!(got, Code::InvalidArgument, "unstage {path}: {msg}");
        assert!(
            msg.starts_with("staging_target_path: ") && msg.contains(why),
            "unstage {path}: {msg}"
        );
    }
    // Stage, publish and stats name their fields too.
    let inside = s(kubelet.join("pods/uid-1/volumes/pvc-1/mount"));
    let bad = s(outside.join("empty"));
    let (got, msg) = code(
        c.node
            .node_stage_volume(csi::NodeStageVolumeRequest {
                volume_id: "pvc-1".into(),
                staging_target_path: bad.clone(),
                volume_capability: Some(mount_cap("")),
                ..Default::default()
            })
            .await,
    );
    assert_eq!(got, Code::InvalidArgument, "{msg}");
    assert!(msg.starts_with("staging_target_path: "), "{msg}");
    let (got, msg) = code(
        c.node
            .node_publish_volume(csi::NodePublishVolumeRequest {
                volume_id: "pvc-1".into(),
                staging_target_path: inside.clone(),
                target_path: bad.clone(),
                volume_capability: Some(mount_cap("")),
                ..Default::default()
            })
            .await,
    );
    assert_eq!(got, Code::InvalidArgument, "{msg}");
    assert!(msg.starts_with("target_path: "), "{msg}");
    let (got, msg) = code(
        c.node
            .node_get_volume_stats(csi::NodeGetVolumeStatsRequest {
                volume_id: "pvc-1".into(),
                volume_path: bad.clone(),
                ..Default::default()
            })
            .await,
    );
    assert_eq!(got, Code::InvalidArgument, "{msg}");
    assert!(msg.starts_with("volume_path: "), "{msg}");
    // Nothing outside was touched.
    assert!(outside.join("empty").is_dir());
    assert_eq!(
        std::fs::read_to_string(outside.join("something")).unwrap(),
        "keep me"
    );
    assert!(
        std::fs::symlink_metadata(kubelet.join("pods/uid-1/evil"))
            .unwrap()
            .file_type()
            .is_symlink()
    );
    if tmpfs.0.is_some() {
        assert!(
            is_mount_point(&std::fs::canonicalize(outside.join("mnt")).unwrap()),
            "the tmpfs outside the kubelet directory was unmounted"
        );
    }
    // A path beneath it is still served (nothing there: an idempotent success).
    c.node
        .node_unpublish_volume(csi::NodeUnpublishVolumeRequest {
            volume_id: "pvc-1".into(),
            target_path: inside,
        })
        .await
        .unwrap();
}

#[tokio::test]
async fn snapshot_calls_validate_and_find_nothing_of_others() {
    let vg = TestVg::new(128);
    let node = node_on(&vg, 0, "cli").await;
    let mut c = node.clients().await;
    c.controller
        .create_volume(create_req("pvc-snapsrc", 8 * MIB, block_cap()))
        .await
        .unwrap();
    let cases = [
        (
            snapshot_req("snapshot-1", "", &[]),
            Code::InvalidArgument,
            "source_volume_id: required",
        ),
        (
            snapshot_req("snapshot-1", "pvc-nothere", &[]),
            Code::NotFound,
            "source_volume_id: volume \"pvc-nothere\" does not exist on node edge-node-1",
        ),
        (
            snapshot_req(
                "snapshot-1",
                "pvc-snapsrc",
                &[("strata.io/cow-size", "150%")],
            ),
            Code::InvalidArgument,
            "parameters.strata.io/cow-size: \"150%\" must be more than 0% and at most 100% (a percentage such as \"25%\" or a quantity such as \"512Mi\")",
        ),
        (
            snapshot_req("snapshot-1", "pvc-snapsrc", &[("strata.io/color", "red")]),
            Code::InvalidArgument,
            "parameters.strata.io/color: unknown parameter (strata knows strata.io/cow-size)",
        ),
    ];
    for (req, want_code, want_msg) in cases {
        let (got_code, got_msg) = code(c.controller.create_snapshot(req).await);
        assert_eq!((got_code, got_msg.as_str()), (want_code, want_msg));
    }
    // Deleting what never existed (or was never strata's) succeeds; getting it does not.
    for id in ["snap-nothere", "not-a-snapshot"] {
        c.controller
            .delete_snapshot(csi::DeleteSnapshotRequest {
                snapshot_id: id.into(),
                ..Default::default()
            })
            .await
            .unwrap();
    }
    assert_eq!(
        code(
            c.controller
                .get_snapshot(csi::GetSnapshotRequest {
                    snapshot_id: "snap-nothere".into(),
                    ..Default::default()
                })
                .await
        )
        .0,
        Code::NotFound
    );
    let listed = c
        .controller
        .list_snapshots(csi::ListSnapshotsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(listed.entries.is_empty() && listed.next_token.is_empty());
    assert_eq!(
        code(
            c.controller
                .list_snapshots(csi::ListSnapshotsRequest {
                    starting_token: "junk".into(),
                    ..Default::default()
                })
                .await
        )
        .0,
        Code::Aborted
    );
    // Restores from a snapshot or volume that is not on this node: NOT_FOUND, saying why.
    for (source, field) in [
        (
            from_snapshot("snap-elsewhere"),
            "volume_content_source.snapshot.snapshot_id",
        ),
        (
            from_volume("pvc-elsewhere"),
            "volume_content_source.volume.volume_id",
        ),
    ] {
        let (got, msg) = code(
            c.controller
                .create_volume(create_from_req("pvc-restore", 8 * MIB, block_cap(), source))
                .await,
        );
        assert_eq!(got, Code::NotFound, "{msg}");
        assert!(
            msg.starts_with(field) && msg.contains("stay on the node"),
            "{msg}"
        );
    }
    let (got, msg) = code(
        c.controller
            .create_volume(create_from_req(
                "pvc-restore",
                8 * MIB,
                block_cap(),
                from_volume("snap-1"),
            ))
            .await,
    );
    assert_eq!(got, Code::NotFound, "{msg}");
    assert_eq!(vg.lv_names(), vec!["pvc-snapsrc".to_string()]);
}

#[tokio::test]
async fn thin_settings_are_checked_at_start() {
    let vg = TestVg::new(64);
    let bad = config(
        &thin_class(&vg.name, "pool0", "pool_danger_percent = 0"),
        "cli",
    );
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("node.toml");
    std::fs::write(&cfg, bad).unwrap();
    let out = std::process::Command::new(strata_bin())
        .args([
            "node",
            "--config",
            cfg.to_str().unwrap(),
            "--metrics-addr",
            "",
        ])
        .args([
            "--csi-endpoint",
            &format!("unix://{}/csi.sock", dir.path().display()),
        ])
        .args(["--node-id", "n"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("device_class[0].pool_danger_percent: 0 must be a percentage from 1 to 100"),
        "{err}"
    );
}
