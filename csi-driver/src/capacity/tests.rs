use super::*;
use crate::error::CsiError;

const MIB: u64 = 1 << 20;

fn class(t: ClassType, spare: u64) -> DeviceClass {
    DeviceClass {
        name: "c".into(),
        volume_group: "vg".into(),
        class_type: t,
        thin_pool: (t == ClassType::Thin).then(|| "pool".to_string()),
        spare_bytes: spare,
        default: false,
        devices: vec![],
        overprovision_ratio: None,
        pool_danger_percent: None,
        pool_auto_extend_max_bytes: None,
    }
}

fn vg(free: u64) -> VgInfo {
    VgInfo {
        name: "vg".into(),
        size_bytes: 1 << 40,
        free_bytes: free,
        extent_bytes: 4 * MIB,
    }
}

fn pool(size: u64, data: f64, meta: f64) -> LvInfo {
    LvInfo {
        vg: "vg".into(),
        name: "pool".into(),
        size_bytes: size,
        tags: vec![],
        attr: "twi-a-tz--".into(),
        pool: None,
        path: String::new(),
        data_percent: Some(data),
        metadata_percent: Some(meta),
        created: None,
    }
}

fn thin(name: &str, size: u64) -> LvInfo {
    LvInfo {
        vg: "vg".into(),
        name: name.into(),
        size_bytes: size,
        tags: vec![],
        attr: "Vwi-a-tz--".into(),
        pool: Some("pool".into()),
        path: format!("/dev/vg/{name}"),
        data_percent: Some(10.0),
        metadata_percent: None,
        created: None,
    }
}

#[test]
fn thick_is_free_minus_spare() {
    assert_eq!(
        available(&class(ClassType::Thick, 100), &vg(1000), &[]),
        900
    );
    assert_eq!(available(&class(ClassType::Thick, 2000), &vg(1000), &[]), 0);
}

#[test]
fn thin_without_overprovisioning_promises_only_unpromised_data() {
    let c = class(ClassType::Thin, 0);
    // Empty pool of 1000 MiB, mark 90%: 900 MiB may be promised.
    assert_eq!(
        available(&c, &vg(0), &[pool(1000 * MIB, 0.0, 1.0)]),
        900 * MIB
    );
    // 600 MiB promised (thin volumes, snapshots included), 10% written:
    // the ratio's room (400 MiB) is the limit.
    let lvs = [
        pool(1000 * MIB, 10.0, 1.0),
        thin("a", 500 * MIB),
        thin("a-snap", 100 * MIB),
    ];
    assert_eq!(available(&c, &vg(0), &lvs), 400 * MIB);
    // The spare comes off the end.
    assert_eq!(
        available(&class(ClassType::Thin, 50 * MIB), &vg(0), &lvs),
        350 * MIB
    );
    assert_eq!(
        available(&c, &vg(5000), &[]),
        0,
        "missing pool offers nothing"
    );
}

#[test]
fn overprovisioning_is_bounded_by_data_and_metadata_below_the_mark() {
    let mut c = class(ClassType::Thin, 0);
    c.overprovision_ratio = Some(3.0);
    // 2500 MiB promised on 1000 MiB: the ratio leaves 500 MiB, but only
    // 900 − 700 = 200 MiB may still be written before the data reaches 90%.
    let lvs = [pool(1000 * MIB, 70.0, 5.0), thin("a", 2500 * MIB)];
    assert_eq!(available(&c, &vg(0), &lvs), 200 * MIB);
    // Metadata below the mark does not count bytes; at the mark it stops all.
    let lvs = [pool(1000 * MIB, 10.0, 85.0), thin("a", 100 * MIB)];
    assert_eq!(available(&c, &vg(0), &lvs), 800 * MIB);
    // Past the mark, by data or by metadata: nothing.
    for (d, m) in [(90.0, 1.0), (95.0, 1.0), (1.0, 92.0)] {
        let lvs = [pool(1000 * MIB, d, m)];
        assert_eq!(available(&c, &vg(0), &lvs), 0, "{d} {m}");
        assert!(pool_usage(&c, &lvs).unwrap().past_mark());
    }
    assert!(
        !pool_usage(&c, &[pool(1000 * MIB, 89.9, 89.9)])
            .unwrap()
            .past_mark()
    );
}

#[test]
fn auto_extension_counts_for_capacity_within_its_bounds() {
    let mut c = class(ClassType::Thin, 0);
    c.pool_auto_extend_max_bytes = Some(2000 * MIB);
    let lvs = [pool(1000 * MIB, 50.0, 1.0), thin("a", 800 * MIB)];
    // Without VG room the pool stays 1000 MiB: min(1000−800, 900−500) = 200.
    assert_eq!(available(&c, &vg(0), &lvs), 200 * MIB);
    // 4000 MiB of VG room, capped at 2000 MiB of pool: min(2000−800, 1800−500).
    assert_eq!(available_growing(&c, &vg(0), &lvs, 4000 * MIB), 1200 * MIB);
    // 600 MiB of VG room: the pool can reach 1600 MiB.
    assert_eq!(available_growing(&c, &vg(0), &lvs, 600 * MIB), 800 * MIB);
}

#[test]
fn the_plan_extends_the_pool_by_whole_extents_only_as_far_as_needed() {
    let mut c = class(ClassType::Thin, 0);
    let u = pool_usage(&c, &[pool(1000 * MIB, 50.0, 1.0)]).unwrap();
    assert_eq!(
        plan_thin(&c, &u, 0, 4 * MIB, 400 * MIB, true, "x"),
        Ok(PoolPlan::Fits)
    );
    let e = plan_thin(
        &c,
        &u,
        10_000 * MIB,
        4 * MIB,
        500 * MIB,
        true,
        "a 500 MiB volume",
    )
    .unwrap_err();
    let CsiError::ResourceExhausted(msg) = e else {
        panic!("{e:?}")
    };
    assert_eq!(
        msg,
        "capacity_range: device class \"c\": thin pool vg/pool (data 50.0%, metadata 1.0%, danger mark 90%) cannot take a 500 MiB volume: it can promise 400 more bytes (overprovision ratio 1, 0 bytes promised of 1048576000 bytes of data, 0 spare)"
            .replace("400 more", &format!("{} more", 400 * MIB))
    );
    c.pool_auto_extend_max_bytes = Some(4000 * MIB);
    // 500 MiB written; 500 MiB more must stay below 90%: 1000/0.9 = 1111.1 MiB → 1112 MiB.
    let plan = plan_thin(&c, &u, 10_000 * MIB, 4 * MIB, 500 * MIB, true, "x").unwrap();
    assert_eq!(plan, PoolPlan::Extend(1112 * MIB));
    let PoolPlan::Extend(to) = plan else {
        unreachable!()
    };
    let grown = PoolUsage {
        size_bytes: to,
        data_percent: 50.0 * 1000.0 / 1112.0,
        ..u.clone()
    };
    assert!(grown.room_at(to, true) >= 500 * MIB);
    // Beyond the limit: refused, and the message says what bounds it.
    let e = plan_thin(&c, &u, 10_000 * MIB, 4 * MIB, 4000 * MIB, true, "x").unwrap_err();
    assert!(
        e.to_string()
            .contains("pool_auto_extend_max_bytes 4194304000"),
        "{e}"
    );
    // Not enough VG room: refused.
    assert!(plan_thin(&c, &u, 8 * MIB, 4 * MIB, 500 * MIB, true, "x").is_err());
}

#[test]
fn read_only_snapshots_need_only_a_pool_below_its_mark() {
    let mut c = class(ClassType::Thin, 0);
    let full_promise = [pool(1000 * MIB, 10.0, 1.0), thin("a", 1000 * MIB)];
    let u = pool_usage(&c, &full_promise).unwrap();
    assert_eq!(u.room_at(u.size_bytes, true), 0);
    assert_eq!(
        plan_thin(&c, &u, 0, 4 * MIB, 0, false, "a snapshot"),
        Ok(PoolPlan::Fits)
    );
    let past = pool_usage(&c, &[pool(1000 * MIB, 91.0, 1.0)]).unwrap();
    let e = plan_thin(&c, &past, 0, 4 * MIB, 0, false, "a snapshot").unwrap_err();
    assert!(e.to_string().contains("past its danger mark"), "{e}");
    c.pool_auto_extend_max_bytes = Some(2000 * MIB);
    assert_eq!(
        plan_thin(&c, &past, 2000 * MIB, 4 * MIB, 0, false, "a snapshot"),
        Ok(PoolPlan::Extend(1012 * MIB))
    );
}

#[test]
fn volumes_on_a_pool_past_its_mark_have_a_problem() {
    let config = NodeConfig {
        device_classes: vec![class(ClassType::Thin, 0)],
        ..Default::default()
    };
    let v = thin("a", 100 * MIB);
    let ok = [pool(1000 * MIB, 50.0, 1.0), v.clone()];
    assert_eq!(pool_problem(&config, &v, &ok), None);
    let full = [pool(1000 * MIB, 95.0, 1.0), v.clone()];
    let p = pool_problem(&config, &v, &full).unwrap();
    assert!(
        p.starts_with(
            "thin pool vg/pool (data 95.0%, metadata 1.0%, danger mark 90%) is past its danger mark"
        ),
        "{p}"
    );
    let mut thick = v.clone();
    thick.pool = None;
    assert_eq!(pool_problem(&config, &thick, &full), None);
    assert_eq!(pools(&config, &full).len(), 1);
    assert_eq!(pools(&config, &full)[0].virtual_bytes, 100 * MIB);
}

#[test]
fn vg_room_keeps_the_thick_spare() {
    let mut thick = class(ClassType::Thick, 300);
    thick.name = "t".into();
    let thin = class(ClassType::Thin, 0);
    let config = NodeConfig {
        device_classes: vec![thick, thin.clone()],
        ..Default::default()
    };
    assert_eq!(vg_room_for_pools(&config, &thin, &vg(1000)), 700);
    assert_eq!(vg_room_for_pools(&config, &thin, &vg(100)), 0);
}
