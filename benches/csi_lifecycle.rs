//! CSI lifecycle benchmark, run inside the real-kernel guest:
//! CreateVolume → NodeStage → NodePublish → NodeUnpublish → NodeUnstage →
//! DeleteVolume for N volumes through strata's gRPC socket, against the raw
//! commands (lvcreate, mkfs.ext4, mount, mount --bind, umount, umount,
//! lvremove) run by a bash loop on the same VG in the same run. Prints p50 and
//! p99 per step and the overhead ratio strata/raw; then both LVM backends on
//! `lvs`-type reads and on create/remove. Ratios, never pass/fail.

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "common/latency.rs"]
mod latency;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::*;
use latency::{Samples, parse_raw, pct};
use strata_csi::lvm::{LvKind, Lvm, LvmOptions, NewLv, cli::CliRunner, tool::LvmTool};
use strata_proto::csi::v1 as csi;

const STEPS: [&str; 6] = [
    "create",
    "stage",
    "publish",
    "unpublish",
    "unstage",
    "delete",
];

async fn strata_run(vg: &TestVg, backend: &str, n: usize, work: &std::path::Path) -> Samples {
    let node = NodeProc::start(&config(&thick_class(&vg.name, 0), backend)).await;
    let mut c = node.clients().await;
    let mut s: Samples = BTreeMap::new();
    let cap = mount_cap("ext4");
    for i in 0..n {
        let name = format!("pvc-bench-{backend}-{i}");
        let p = paths(work, &name);
        let mut time = |step: &'static str, t: Instant| {
            s.entry(step)
                .or_default()
                .push(t.elapsed().as_secs_f64() * 1e3)
        };
        let t = Instant::now();
        let id = c
            .controller
            .create_volume(create_req(&name, 64 * MIB, cap.clone()))
            .await
            .unwrap()
            .into_inner()
            .volume
            .unwrap()
            .volume_id;
        time("create", t);
        let t = Instant::now();
        c.node
            .node_stage_volume(stage_req(&id, &p, &cap))
            .await
            .unwrap();
        time("stage", t);
        let t = Instant::now();
        c.node
            .node_publish_volume(publish_req(&id, &p, &cap, false))
            .await
            .unwrap();
        time("publish", t);
        let t = Instant::now();
        c.node
            .node_unpublish_volume(csi::NodeUnpublishVolumeRequest {
                volume_id: id.clone(),
                target_path: p.target.to_string_lossy().into(),
            })
            .await
            .unwrap();
        time("unpublish", t);
        let t = Instant::now();
        c.node
            .node_unstage_volume(csi::NodeUnstageVolumeRequest {
                volume_id: id.clone(),
                staging_target_path: p.staging.to_string_lossy().into(),
            })
            .await
            .unwrap();
        time("unstage", t);
        let t = Instant::now();
        c.controller
            .delete_volume(csi::DeleteVolumeRequest {
                volume_id: id,
                ..Default::default()
            })
            .await
            .unwrap();
        time("delete", t);
    }
    s
}

/// The same steps as a bash loop of raw commands, timed with bash's own clock.
fn raw_run(vg: &TestVg, n: usize, work: &std::path::Path) -> Samples {
    let script = format!(
        r#"set -e
ms() {{ local s=${{EPOCHREALTIME/./}}; echo "$1 $(( (s - T) ))"; }}
for i in $(seq 0 {last}); do
  d={work}/raw-$i-s; t={work}/raw-$i-t; mkdir -p $d $t
  T=${{EPOCHREALTIME/./}}; lvcreate -q -y -n raw$i -L 64m {vg} >/dev/null; ms create
  T=${{EPOCHREALTIME/./}}; mkfs.ext4 -q /dev/{vg}/raw$i && mount -t ext4 /dev/{vg}/raw$i $d; ms stage
  T=${{EPOCHREALTIME/./}}; mount --bind $d $t; ms publish
  T=${{EPOCHREALTIME/./}}; umount $t; ms unpublish
  T=${{EPOCHREALTIME/./}}; umount $d; ms unstage
  T=${{EPOCHREALTIME/./}}; lvremove -q -y {vg}/raw$i >/dev/null; ms delete
done
"#,
        last = n - 1,
        work = work.display(),
        vg = vg.name
    );
    parse_raw(&sh("bash", &["-c", &script]), &STEPS)
}

fn report(label: &str, strata: &mut Samples, raw: &mut Samples) {
    println!("\n== {label}: per-step latency in ms (p50 / p99), strata vs raw commands ==");
    println!(
        "{:<10} {:>10} {:>10} {:>10} {:>10} {:>9} {:>9}",
        "step", "strata50", "raw50", "strata99", "raw99", "ratio50", "ratio99"
    );
    let (mut ts, mut tr) = (0.0, 0.0);
    for step in STEPS {
        let (sv, rv) = (strata.get_mut(step).unwrap(), raw.get_mut(step).unwrap());
        let (s50, r50, s99, r99) = (pct(sv, 0.5), pct(rv, 0.5), pct(sv, 0.99), pct(rv, 0.99));
        ts += s50;
        tr += r50;
        println!(
            "{step:<10} {s50:>10.1} {r50:>10.1} {s99:>10.1} {r99:>10.1} {:>9.2} {:>9.2}",
            s50 / r50,
            s99 / r99
        );
    }
    println!(
        "{:<10} {ts:>10.1} {tr:>10.1} {:>10} {:>10} {:>9.2}",
        "sum of p50",
        "",
        "",
        ts / tr
    );
}

fn time_n(n: usize, mut f: impl FnMut(usize)) -> f64 {
    let t = Instant::now();
    for i in 0..n {
        f(i);
    }
    t.elapsed().as_secs_f64() * 1e3 / n as f64
}

fn backend_compare(vg: &TestVg) {
    let opts = LvmOptions::default();
    let mut backends: Vec<(&str, Box<dyn Lvm>)> = vec![(
        "cli",
        Box::new(LvmTool::new(CliRunner::new(&opts), opts.clone())),
    )];
    #[cfg(feature = "lvm2cmd")]
    backends.push((
        "lvm2cmd",
        Box::new(LvmTool::new(
            strata_csi::lvm::lib2cmd::LibRunner::new().unwrap(),
            opts.clone(),
        )),
    ));
    let vgs = vec![vg.name.clone()];
    println!("\n== LVM backends: mean ms per call ==");
    println!(
        "{:<10} {:>10} {:>10} {:>16}",
        "backend", "vgs", "lvs", "create+remove"
    );
    let mut rows = Vec::new();
    for (name, lvm) in &backends {
        let reads_vg = time_n(30, |_| drop(lvm.vgs(&vgs).unwrap()));
        let reads_lv = time_n(30, |_| drop(lvm.lvs(&vgs).unwrap()));
        let cr = time_n(15, |i| {
            let lv = format!("cmp-{name}-{i}");
            lvm.create_lv(&NewLv {
                vg: vg.name.clone(),
                name: lv.clone(),
                size_bytes: 8 << 20,
                kind: LvKind::Thick,
                tags: vec!["strata.io".into()],
            })
            .unwrap();
            lvm.remove_lv(&vg.name, &lv).unwrap();
        });
        println!("{name:<10} {reads_vg:>10.2} {reads_lv:>10.2} {cr:>16.2}");
        rows.push((reads_vg, reads_lv, cr));
    }
    if rows.len() == 2 {
        println!(
            "ratio lvm2cmd/cli: vgs {:.2}, lvs {:.2}, create+remove {:.2}",
            rows[1].0 / rows[0].0,
            rows[1].1 / rows[0].1,
            rows[1].2 / rows[0].2
        );
    }
}

#[tokio::main]
async fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        // `cargo test --benches` runs bench targets without --bench: nothing to measure there.
        return;
    }
    let n: usize = std::env::var("STRATA_BENCH_VOLUMES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    let vg = TestVg::new(2048);
    let work =
        tempfile::tempdir_in(std::env::var("STRATA_SCRATCH").unwrap_or("/tmp".into())).unwrap();
    println!(
        "csi_lifecycle: {n} volumes of 64 MiB ext4 per run, VG {} on {}",
        vg.name, vg.loop_dev
    );
    let t = Instant::now();
    // Interleave: raw, strata(cli), raw, strata(lvm2cmd) so drift hits both sides.
    let mut raw1 = raw_run(&vg, n, work.path());
    let mut cli = strata_run(&vg, "cli", n, work.path()).await;
    report("strata (cli backend)", &mut cli, &mut raw1);
    #[cfg(feature = "lvm2cmd")]
    {
        let mut raw2 = raw_run(&vg, n, work.path());
        let mut lib = strata_run(&vg, "lvm2cmd", n, work.path()).await;
        report("strata (lvm2cmd backend)", &mut lib, &mut raw2);
    }
    backend_compare(&vg);
    println!(
        "\ncsi_lifecycle done in {:.0?}",
        Duration::from_secs(t.elapsed().as_secs())
    );
}
