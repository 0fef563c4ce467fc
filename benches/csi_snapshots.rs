//! Snapshot benchmark, run inside the real-kernel guest
//! (`scripts/real-kernel bench csi_snapshots`). Ratios and absolute numbers,
//! never pass/fail.
//!
//! 1. CreateSnapshot → CreateVolume from it (restore) → DeleteVolume →
//!    DeleteSnapshot through strata's gRPC socket, for a thin and a thick
//!    class on both LVM backends, against a bash loop of the commands strata
//!    issues (csi-driver/src/lvm/tool.rs, src/snapshots/) on the same VG in
//!    the same run, with the same tags:
//!    - thin: `lvcreate -s -ky -p r` (snapshot), `lvcreate -s -kn -p rw` of the
//!      snapshot (restore), `lvremove`;
//!    - thick: `lvcreate -s -L <origin size> -p r` (snapshot), `lvcreate -L
//!      -Wy -Zy` + `dd conv=fsync` of the snapshot into it (restore; strata
//!      copies the same bytes and fsyncs), `lvremove`.
//!
//!    What strata does on top: an `lvs` report before each change and one
//!    after, and for a thick restore the `filling` tag removed once the copy
//!    is synced.
//! 2. GetCapacity latency with 0, 100, … `STRATA_BENCH_VOLUMES` volumes on
//!    the node (half thin, half thick, made by raw `lvcreate` with strata's
//!    tags: through CreateVolume they would take far longer under TCG), and
//!    the LVM commands per request from the node's own
//!    `strata_lvm_command_duration_seconds_count`: one report per request is
//!    the most there should be, whatever the number of volumes.
//!
//! Knobs (the defaults took 18 minutes in the TCG guest on a busy 2-core
//! host, 9 of them making the 500 volumes): `STRATA_BENCH_ITERATIONS`
//! (snapshot rounds per class and backend after one warm-up round, default 5;
//! 0: GetCapacity only), `STRATA_BENCH_SNAPSHOT_MIB` (source volume size,
//! default 16), `STRATA_BENCH_VOLUMES` (most volumes for GetCapacity, default
//! 500), `STRATA_BENCH_CAPACITY_REQUESTS` (GetCapacity requests per class and
//! point, default 10).

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "common/mod.rs"]
mod knobs;
#[path = "common/latency.rs"]
mod latency;

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::time::{Duration, Instant, SystemTime};

use common::*;
use latency::{Samples, parse_raw, pct};
use strata_csi::names::{SnapshotIdentity, TAG_SOURCE, VolumeIdentity};
use strata_proto::csi::v1 as csi;

const STEPS: [&str; 3] = ["snapshot", "restore", "delete-snapshot"];
const POOL: &str = "pool";
const CLASS_PARAM: &str = "strata.io/device-class";

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Thin,
    Thick,
}

impl Kind {
    fn class(self) -> &'static str {
        match self {
            Kind::Thin => "thin",
            Kind::Thick => "thick",
        }
    }
}

/// A VG like [`TestVg::new`] with a larger metadata area: hundreds of
/// tagged LVs outgrow LVM's default 1 MiB.
fn bench_vg(size_mib: u64) -> TestVg {
    TestVg::with_pv_args(size_mib, &["--metadatasize", "16m"])
}

/// Both classes on one VG; thick is the default. The thin pool may promise
/// ten times its size, so hundreds of small volumes leave it room.
fn classes(vg: &str) -> String {
    format!(
        "[[device_class]]\nname = \"thick\"\nvolume_group = \"{vg}\"\ntype = \"thick\"\ndefault = true\n\
         [[device_class]]\nname = \"thin\"\nvolume_group = \"{vg}\"\ntype = \"thin\"\nthin_pool = \"{POOL}\"\noverprovision_ratio = 10\n"
    )
}

fn with_class(mut req: csi::CreateVolumeRequest, kind: Kind) -> csi::CreateVolumeRequest {
    req.parameters
        .insert(CLASS_PARAM.into(), kind.class().into());
    req
}

async fn strata_run(vg: &TestVg, kind: Kind, backend: &str, n: usize, mib: u64) -> Samples {
    let node = NodeProc::start_with(
        &config(&classes(&vg.name), backend),
        &["--orphan-scan-interval", "0s"],
    )
    .await;
    let mut c = node.clients().await;
    let bytes = (mib as i64) * MIB;
    let src = c
        .controller
        .create_volume(with_class(
            create_req(
                &format!("src-{}-{backend}", kind.class()),
                bytes,
                block_cap(),
            ),
            kind,
        ))
        .await
        .unwrap()
        .into_inner()
        .volume
        .unwrap()
        .volume_id;
    fill_random(&format!("/dev/{}/{src}", vg.name), mib);
    let mut s: Samples = BTreeMap::new();
    // Round 0 warms the node (and the LVM library) up and is not counted.
    for i in 0..=n {
        let mut time = |step: &'static str, t: Instant| {
            if i > 0 {
                s.entry(step)
                    .or_default()
                    .push(t.elapsed().as_secs_f64() * 1e3)
            }
        };
        let t = Instant::now();
        let snap = c
            .controller
            .create_snapshot(snapshot_req(
                &format!("snapshot-{}-{backend}-{i}", kind.class()),
                &src,
                &[],
            ))
            .await
            .unwrap()
            .into_inner()
            .snapshot
            .unwrap()
            .snapshot_id;
        time("snapshot", t);
        let t = Instant::now();
        let restored = c
            .controller
            .create_volume(with_class(
                create_from_req(
                    &format!("restored-{}-{backend}-{i}", kind.class()),
                    bytes,
                    block_cap(),
                    from_snapshot(&snap),
                ),
                kind,
            ))
            .await
            .unwrap()
            .into_inner()
            .volume
            .unwrap()
            .volume_id;
        time("restore", t);
        c.controller
            .delete_volume(csi::DeleteVolumeRequest {
                volume_id: restored,
                ..Default::default()
            })
            .await
            .unwrap();
        let t = Instant::now();
        c.controller
            .delete_snapshot(csi::DeleteSnapshotRequest {
                snapshot_id: snap,
                ..Default::default()
            })
            .await
            .unwrap();
        time("delete-snapshot", t);
    }
    c.controller
        .delete_volume(csi::DeleteVolumeRequest {
            volume_id: src,
            ..Default::default()
        })
        .await
        .unwrap();
    s
}

/// `--addtag 'a' --addtag 'b' …`
fn addtags(tags: &[String]) -> String {
    tags.iter()
        .map(|t| format!("--addtag '{t}'"))
        .collect::<Vec<_>>()
        .join(" ")
}

fn volume_tags(kind: Kind, name: &str) -> Vec<String> {
    VolumeIdentity {
        class: kind.class().into(),
        pv: Some(name.into()),
        pvc_namespace: Some("bench".into()),
        pvc_name: Some(name.into()),
    }
    .to_tags()
}

/// The same rounds as a bash loop of the raw commands, timed with bash's clock.
fn raw_run(vg: &TestVg, kind: Kind, n: usize, mib: u64) -> Samples {
    let v = &vg.name;
    let src = format!("rawsrc-{}", kind.class());
    let snap_tags = addtags(
        &SnapshotIdentity {
            class: kind.class().into(),
            source_volume: src.clone(),
            created: SystemTime::now(),
            size_bytes: mib << 20,
            vs_namespace: Some("bench".into()),
            vs_name: Some("snapshot".into()),
        }
        .to_tags(),
    );
    let mut restored_tags = volume_tags(kind, "restored");
    restored_tags.push(format!("{TAG_SOURCE}snapshot"));
    let restored_tags = addtags(&restored_tags);
    let src_tags = addtags(&volume_tags(kind, &src));
    let (make_src, snapshot, restore) = match kind {
        Kind::Thin => (
            format!("lvcreate -q -y -n {src} -V {mib}m --thin -Wy {src_tags} {v}/{POOL}"),
            format!("lvcreate -q -y -s -n rs$i -ky -p r {snap_tags} {v}/{src}"),
            format!("lvcreate -q -y -s -n rr$i -kn -p rw {restored_tags} {v}/rs$i"),
        ),
        Kind::Thick => (
            format!("lvcreate -q -y -n {src} -L {mib}m -Wy -Zy {src_tags} {v}"),
            format!("lvcreate -q -y -s -n rs$i -L {mib}m -p r {snap_tags} {v}/{src}"),
            format!(
                "lvcreate -q -y -n rr$i -L {mib}m -Wy -Zy {restored_tags} {v} >/dev/null && \
                 dd if=/dev/{v}/rs$i of=/dev/{v}/rr$i bs=4M count={count} conv=fsync status=none",
                count = mib.div_ceil(4)
            ),
        ),
    };
    let script = format!(
        r#"set -e
# round 0 warms the caches up and is not counted
ms() {{ local s=${{EPOCHREALTIME/./}}; [ "$i" -eq 0 ] || echo "$1 $(( (s - T) ))"; }}
{make_src} >/dev/null
dd if=/dev/urandom of=/dev/{v}/{src} bs=1M count={mib} conv=fsync status=none
for i in $(seq 0 {last}); do
  T=${{EPOCHREALTIME/./}}; {snapshot} >/dev/null; ms snapshot
  T=${{EPOCHREALTIME/./}}; {restore} >/dev/null; ms restore
  lvremove -q -y {v}/rr$i >/dev/null
  T=${{EPOCHREALTIME/./}}; lvremove -q -y {v}/rs$i >/dev/null; ms delete-snapshot
done
lvremove -q -y {v}/{src} >/dev/null
"#,
        last = n,
    );
    parse_raw(&sh("bash", &["-c", &script]), &STEPS)
}

fn report(label: &str, strata: &mut Samples, raw: &mut Samples) {
    println!("\n== {label}: ms per step (p50 / p99), strata vs raw commands ==");
    println!(
        "{:<16} {:>9} {:>9} {:>9} {:>9} {:>8} {:>8}",
        "step", "strata50", "raw50", "strata99", "raw99", "ratio50", "ratio99"
    );
    for step in STEPS {
        let (sv, rv) = (strata.get_mut(step).unwrap(), raw.get_mut(step).unwrap());
        let (s50, r50, s99, r99) = (pct(sv, 0.5), pct(rv, 0.5), pct(sv, 0.99), pct(rv, 0.99));
        println!(
            "{step:<16} {s50:>9.1} {r50:>9.1} {s99:>9.1} {r99:>9.1} {:>8.2} {:>8.2}",
            s50 / r50,
            s99 / r99
        );
    }
}

// ---- GetCapacity ---------------------------------------------------------------------

/// LVM commands run so far by the node, by operation (`lvs`, `vgs`, …).
fn lvm_counts(addr: &str) -> BTreeMap<String, f64> {
    let text = scrape(addr);
    let mut m = BTreeMap::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("strata_lvm_command_duration_seconds_count{") else {
            continue;
        };
        let (labels, value) = rest.rsplit_once("} ").unwrap();
        let op = labels
            .split(',')
            .find_map(|l| l.strip_prefix("operation=\""))
            .unwrap()
            .trim_end_matches('"');
        *m.entry(op.to_owned()).or_default() += value.trim().parse::<f64>().unwrap();
    }
    m
}

fn minus(a: &BTreeMap<String, f64>, b: &BTreeMap<String, f64>) -> BTreeMap<String, f64> {
    a.iter()
        .map(|(k, v)| (k.clone(), v - b.get(k).copied().unwrap_or(0.0)))
        .filter(|(_, v)| *v != 0.0)
        .collect()
}

/// A scrape refreshes the node's inventory when its cached report is older
/// than this ([`strata_csi::inventory::MAX_AGE`]); waiting it out makes every
/// counting scrape refresh exactly once.
fn past_inventory_age() -> Duration {
    strata_csi::inventory::MAX_AGE + Duration::from_millis(300)
}

fn capacity_req(kind: Kind) -> csi::GetCapacityRequest {
    csi::GetCapacityRequest {
        volume_capabilities: vec![block_cap()],
        parameters: HashMap::from([(CLASS_PARAM.into(), kind.class().into())]),
        accessible_topology: None,
    }
}

struct CapacityRow {
    volumes: usize,
    backend: &'static str,
    kind: Kind,
    p50: f64,
    p99: f64,
    per_request: BTreeMap<String, f64>,
    available_mib: i64,
}

/// GetCapacity `requests` times per class on one node, and the LVM
/// commands per request. Counting: scrape, the requests, wait until the
/// inventory is stale, scrape (one refresh); the refresh alone is measured
/// at the end (wait, scrape) and taken off.
async fn capacity_point(
    vg: &TestVg,
    volumes: usize,
    backend: &'static str,
    requests: usize,
    rows: &mut Vec<CapacityRow>,
) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let node = NodeProc::start_with(
        &config(&classes(&vg.name), backend),
        &["--orphan-scan-interval", "0s", "--metrics-addr", &addr],
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while scrape(&addr).is_empty() {
        assert!(
            Instant::now() < deadline,
            "metrics never answered on {addr}: {}",
            node.log_text()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut c = node.clients().await;
    let mut windows = Vec::new();
    let mut before = lvm_counts(&addr);
    for kind in [Kind::Thin, Kind::Thick] {
        let t0 = Instant::now();
        let mut ms = Vec::with_capacity(requests);
        let mut available = 0;
        for _ in 0..requests {
            let t = Instant::now();
            available = c
                .controller
                .get_capacity(capacity_req(kind))
                .await
                .unwrap()
                .into_inner()
                .available_capacity;
            ms.push(t.elapsed().as_secs_f64() * 1e3);
        }
        tokio::time::sleep(past_inventory_age().saturating_sub(t0.elapsed())).await;
        let after = lvm_counts(&addr);
        windows.push((kind, ms, minus(&after, &before), available));
        before = after;
    }
    tokio::time::sleep(past_inventory_age()).await;
    let refresh = minus(&lvm_counts(&addr), &before);
    for (kind, mut ms, delta, available) in windows {
        let per_request = delta
            .iter()
            .map(|(op, n)| {
                let r = refresh.get(op).copied().unwrap_or(0.0);
                (op.clone(), (n - r) / requests as f64)
            })
            .filter(|(_, v)| *v != 0.0)
            .collect();
        rows.push(CapacityRow {
            volumes,
            backend,
            kind,
            p50: pct(&mut ms, 0.5),
            p99: pct(&mut ms, 0.99),
            per_request,
            available_mib: available / MIB,
        });
    }
}

/// Raw `lvcreate`s with strata's tags until the VG holds `to` volumes, half
/// thin (4 MiB virtual) and half thick (4 MiB), all active. One `lvm` shell
/// reads them all from its stdin: under TCG the start of an `lvm` process
/// per volume would dominate.
fn populate(vg: &TestVg, from: usize, to: usize) -> Duration {
    let mut script = String::new();
    for i in from..to {
        let name = format!("pvc-pop-{i}");
        let (kind, how) = if i % 2 == 0 {
            (Kind::Thin, format!("-V 4m --thin -Wy {}/{POOL}", vg.name))
        } else {
            (Kind::Thick, format!("-L 4m -Wy -Zy {}", vg.name))
        };
        let tags: Vec<String> = volume_tags(kind, &name)
            .iter()
            .map(|t| format!("--addtag {t}"))
            .collect();
        script.push_str(&format!(
            "lvcreate -q -y -n {name} {} {how}\n",
            tags.join(" ")
        ));
    }
    let t = Instant::now();
    let mut child = std::process::Command::new("lvm")
        .env("LVM_SUPPRESS_FD_WARNINGS", "1")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("start the lvm shell");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(script.as_bytes())
        .unwrap();
    assert!(child.wait().unwrap().success(), "the lvm shell failed");
    let took = t.elapsed();
    let made = vg
        .lv_names()
        .iter()
        .filter(|n| n.starts_with("pvc-pop-"))
        .count();
    assert_eq!(made, to, "the lvm shell made {made} volumes, {to} wanted");
    took
}

fn capacity_report(rows: &[CapacityRow], requests: usize) {
    println!(
        "\n== GetCapacity: ms per request (p50 / p99 of {requests}) and LVM commands per request (expected: ≤ 1) =="
    );
    println!(
        "{:>7} {:<8} {:<6} {:>8} {:>8} {:>11} {:>14}  by operation",
        "volumes", "backend", "class", "p50", "p99", "lvm/request", "available MiB"
    );
    for r in rows {
        let total: f64 = r.per_request.values().sum();
        let ops = r
            .per_request
            .iter()
            .map(|(op, n)| format!("{op} {n:.2}"))
            .collect::<Vec<_>>()
            .join(", ");
        println!(
            "{:>7} {:<8} {:<6} {:>8.1} {:>8.1} {:>11.2} {:>14}  {}{}",
            r.volumes,
            r.backend,
            r.kind.class(),
            r.p50,
            r.p99,
            total,
            r.available_mib,
            if ops.is_empty() { "-" } else { &ops },
            if total <= 1.0 + 1e-9 {
                ""
            } else {
                "  <- more than 1"
            }
        );
    }
}

#[tokio::main]
async fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        // `cargo test --benches` runs bench targets without --bench: nothing to measure there.
        return;
    }
    let iterations = knobs::env_number("STRATA_BENCH_ITERATIONS", 5) as usize;
    let mib = knobs::env_number("STRATA_BENCH_SNAPSHOT_MIB", 16);
    let most = knobs::env_number("STRATA_BENCH_VOLUMES", 500) as usize;
    let requests = knobs::env_number("STRATA_BENCH_CAPACITY_REQUESTS", 10) as usize;
    assert!(requests > 0 && mib > 0);
    if in_guest() {
        // The guest boots without networking: the metrics port needs loopback.
        let _ = std::process::Command::new("ip")
            .args(["link", "set", "lo", "up"])
            .status();
    }
    let t = Instant::now();
    let vg = bench_vg(4096);
    vg.create_thin_pool(POOL, 1024);
    let backends = backends();
    println!(
        "csi_snapshots: VG {} on {} (4 GiB, thin pool {POOL} 1 GiB); {}",
        vg.name,
        vg.loop_dev,
        knobs::machine()
    );
    println!(
        "snapshots: {iterations} rounds (after one warm-up round) per class and backend of snapshot → restore → delete restored volume → delete snapshot, {mib} MiB block volume filled with random data; backends: {}",
        backends.join(", ")
    );
    // STRATA_BENCH_ITERATIONS=0: GetCapacity only.
    for kind in [Kind::Thin, Kind::Thick]
        .into_iter()
        .filter(|_| iterations > 0)
    {
        // raw, each backend, raw again: each backend is compared with both
        // raw runs pooled, and the two raw runs with each other (drift).
        let first = raw_run(&vg, kind, iterations, mib);
        let mut runs = Vec::new();
        for backend in &backends {
            runs.push((
                backend,
                strata_run(&vg, kind, backend, iterations, mib).await,
            ));
        }
        let second = raw_run(&vg, kind, iterations, mib);
        let mut raw = first.clone();
        for (step, v) in &second {
            raw.entry(step).or_default().extend(v);
        }
        for (backend, mut s) in runs {
            report(
                &format!("{} class, strata ({backend} backend)", kind.class()),
                &mut s,
                &mut raw,
            );
        }
        let drift = STEPS
            .iter()
            .map(|step| {
                let a = pct(&mut first[*step].clone(), 0.5);
                let b = pct(&mut second[*step].clone(), 0.5);
                format!("{step} {:.2}", b / a)
            })
            .collect::<Vec<_>>()
            .join(", ");
        println!(
            "raw p50, second raw run / first ({}; both pooled above): {drift}",
            kind.class()
        );
    }

    let mut points: Vec<usize> = [0, 100, 500].into_iter().filter(|p| *p < most).collect();
    points.push(most);
    println!(
        "\nGetCapacity: volumes on the node {points:?} (half thin 4 MiB virtual, half thick 4 MiB; made by raw lvcreate with strata's tags in one lvm shell, active), {requests} requests per class per point"
    );
    let mut rows = Vec::new();
    let mut have = 0;
    for p in points {
        if p > have {
            let took = populate(&vg, have, p);
            println!(
                "  made volumes {have}..{p} in {:.1}s ({:.0} ms each)",
                took.as_secs_f64(),
                took.as_secs_f64() * 1e3 / (p - have) as f64
            );
            have = p;
        }
        for backend in &backends {
            capacity_point(&vg, p, backend, requests, &mut rows).await;
        }
    }
    capacity_report(&rows, requests);
    println!(
        "\ncsi_snapshots done in {:.0?}; {}",
        Duration::from_secs(t.elapsed().as_secs()),
        knobs::machine()
    );
}
