//! strata's scan against `find <dir> -printf '%s %T@\n'` on the same warm
//! tree (issue 3, "Performance"). Goal: ≤ 0.8 of find's time, peak RSS
//! ≤ 200 MiB.
//!
//! The tree (STRATA_SCAN_FILES files, default 1,000,000, 100 per directory,
//! 100 directories per parent) is built once and kept under
//! ${STRATA_BENCH_DIR:-/tmp/strata-scan-bench}.
//!
//! STRATA_SCAN_WORKERS and STRATA_SCAN_RECHECK (0 or 1) override the scan's
//! defaults.
//!
//! `cargo bench -p strata-tiering --bench scan`

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use strata_tiering::scan::{ScanOptions, scan};

const PER_DIR: usize = 100;
const ROUNDS: usize = 3;

fn main() {
    let files = env_number("STRATA_SCAN_FILES").unwrap_or(1_000_000);
    let base = std::env::var_os("STRATA_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/tmp/strata-scan-bench"));
    let tree = base.join(format!("tree-{files}"));
    build_tree(&tree, files);

    // Warm the dentry and inode caches.
    let warm = time_find(&tree);
    println!(
        "scan bench: {files} files in {}, warm-up find {warm:.2?}",
        tree.display()
    );

    // The tree was built by this process: start the peak from here.
    let _ = fs::write("/proc/self/clear_refs", "5");
    // Every file of the tree is older than the scan: no settle window needed.
    let mut options = ScanOptions::default().settle(Duration::ZERO);
    if let Some(workers) = env_number("STRATA_SCAN_WORKERS") {
        options = options.workers(workers);
    }
    if let Some(recheck) = env_number("STRATA_SCAN_RECHECK") {
        options = options.recheck(recheck != 0);
    }
    let (mut strata, mut find) = (Vec::new(), Vec::new());
    for round in 1..=ROUNDS {
        let f = time_find(&tree);
        let (s, count) = time_strata(&tree, &options);
        assert_eq!(count, files as u64, "strata saw {count} files");
        println!(
            "round {round}: strata {s:.3?}  find {f:.3?}  ratio {:.2}",
            ratio(s, f)
        );
        strata.push(s);
        find.push(f);
    }
    let (s, f) = (median(strata), median(find));
    println!(
        "scan {files} files: strata {s:.3?}, find {f:.3?} (medians of {ROUNDS}); ratio strata/find {:.2} (goal <= 0.80)",
        ratio(s, f)
    );
    println!(
        "strata peak RSS (VmHWM): {:.1} MiB (goal <= 200 MiB); workers {}, recheck {}",
        peak_rss_kib() as f64 / 1024.0,
        options.workers,
        options.recheck
    );
}

fn time_strata(tree: &Path, options: &ScanOptions) -> (Duration, u64) {
    let start = Instant::now();
    let mut scan = scan(tree, options).expect("scan");
    let mut count = 0u64;
    let mut bytes = 0u64;
    for facts in scan.by_ref() {
        count += 1;
        bytes += facts.size;
    }
    let stats = scan.finish().expect("scan finish");
    let elapsed = start.elapsed();
    assert_eq!((stats.files, stats.bytes, stats.errors), (count, bytes, 0));
    (elapsed, count)
}

fn time_find(tree: &Path) -> Duration {
    let start = Instant::now();
    let status = Command::new("find")
        .arg(tree)
        .args(["-printf", "%s %T@\\n"])
        .stdout(Stdio::null())
        .status()
        .expect("run find");
    assert!(status.success(), "find: {status}");
    start.elapsed()
}

/// `tree/d0042/d0007/f…`: leaves of PER_DIR files under two levels of
/// directories. A marker beside the tree, written last, says it is complete.
fn build_tree(tree: &Path, files: usize) {
    let marker = tree.with_extension("complete");
    if marker.exists() {
        return;
    }
    let _ = fs::remove_dir_all(tree);
    let leaves = files.div_ceil(PER_DIR);
    let fanout = (leaves as f64).sqrt().ceil().max(1.0) as usize;
    println!(
        "scan bench: building {files} files in {leaves} directories under {} …",
        tree.display()
    );
    let start = Instant::now();
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    std::thread::scope(|scope| {
        for t in 0..threads {
            scope.spawn(move || {
                for leaf in (t..leaves).step_by(threads) {
                    let dir = tree.join(format!("d{:04}/d{:04}", leaf / fanout, leaf % fanout));
                    fs::create_dir_all(&dir).expect("create tree");
                    let first = leaf * PER_DIR;
                    for i in first..(first + PER_DIR).min(files) {
                        fs::write(dir.join(format!("f{i:07}")), &b"0123456789abcdef"[..i % 17])
                            .expect("write tree");
                    }
                }
            });
        }
    });
    fs::write(&marker, b"").expect("write marker");
    println!("scan bench: built in {:.1?}", start.elapsed());
}

fn env_number(name: &str) -> Option<usize> {
    let value = std::env::var(name).ok()?;
    Some(
        value
            .parse()
            .unwrap_or_else(|_| panic!("{name}: expected a number, got {value:?}")),
    )
}

fn ratio(a: Duration, b: Duration) -> f64 {
    a.as_secs_f64() / b.as_secs_f64()
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn peak_rss_kib() -> u64 {
    let status = fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/self/status")
}
