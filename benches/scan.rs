//! Scan benchmark (issue 3, "Performance"): strata's scanner against
//! `find <tree> -printf '%s %T@\n'` on the same warm tree of 1,000,000 files.
//! Goal: at most 0.8 of find's time, peak RSS at most 200 MiB. Prints the
//! figures and ratios, never asserts them.
//!
//! The tree (three levels of directories, about 100 small files with varied
//! mtimes per leaf) is built once under `$STRATA_CACHE/bench/scan-tree-<N>`
//! and reused while its `.complete` marker exists. One `find` warms the
//! caches; then each round runs `find` (its output piped and read to the end)
//! and strata's scan, each in its own process: this binary re-executed with
//! `STRATA_BENCH_SCAN_CHILD=<tree>`, which consumes the scan the way the mover
//! does (every file through a policy whose rule matches every file) and
//! reports its files and its peak RSS (`VmHWM`). Times are medians of wall
//! time, taken from the parent around each process; each process's CPU time
//! (user + system, from `getrusage`) is printed beside it, as the machine may
//! be busy with other work.
//!
//! ```text
//! source scripts/cargo-env.sh && cargo bench --bench scan
//! STRATA_BENCH_SCAN_FILES=100000 STRATA_BENCH_SCAN_ROUNDS=5 cargo bench --bench scan
//! ```

#[path = "common/mod.rs"]
mod common;

use common::{env_number, machine, strata_cache};
use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use strata_tiering::policy::{FileFacts, parse_policy};
use strata_tiering::scan::{ScanOptions, scan};

const CHILD_ENV: &str = "STRATA_BENCH_SCAN_CHILD";
const PER_DIR: usize = 100;
const POLICY: &str = r#"
name: bench-all
lake: {url: "file:///var/empty/strata-bench-lake"}
rules:
  - {name: every-file, include: ["**"], modifiedBefore: 1h, action: move}
"#;

fn main() {
    if let Some(tree) = std::env::var_os(CHILD_ENV) {
        return child(Path::new(&tree));
    }
    let files = env_number("STRATA_BENCH_SCAN_FILES", 1_000_000) as usize;
    let rounds = (env_number("STRATA_BENCH_SCAN_ROUNDS", 3) as usize).max(1);
    let tree = strata_cache()
        .join("bench")
        .join(format!("scan-tree-{files}"));
    build_tree(&tree, files);

    let (warm, _, lines) = run_find(&tree);
    println!(
        "scan: {files} files under {}; warm-up find {:.2} s ({lines} lines); {}",
        tree.display(),
        warm.as_secs_f64(),
        machine()
    );
    let (mut strata, mut find, mut peak_kib) = (Vec::new(), Vec::new(), 0);
    let (mut strata_cpu, mut find_cpu) = (Vec::new(), Vec::new());
    for round in 1..=rounds {
        let (f, f_cpu, _) = run_find(&tree);
        let (s, s_cpu, seen, candidates, hwm) = run_strata(&tree);
        assert_eq!(
            (seen, candidates),
            (files as u64, files as u64),
            "strata's scan saw {seen} files, {candidates} candidates"
        );
        println!(
            "  round {round}: strata {:.3} s (cpu {:.3} s), find {:.3} s (cpu {:.3} s), ratio {:.2}, peak RSS {:.1} MiB",
            s.as_secs_f64(),
            s_cpu.as_secs_f64(),
            f.as_secs_f64(),
            f_cpu.as_secs_f64(),
            ratio(s, f),
            mib(hwm)
        );
        strata.push(s);
        find.push(f);
        strata_cpu.push(s_cpu);
        find_cpu.push(f_cpu);
        peak_kib = peak_kib.max(hwm);
    }
    let (s, f) = (median(strata), median(find));
    println!(
        "scan: strata {:.3} s, find {:.3} s, ratio {:.2} (goal <= 0.80; medians of {rounds})",
        s.as_secs_f64(),
        f.as_secs_f64(),
        ratio(s, f)
    );
    let (s_cpu, f_cpu) = (median(strata_cpu), median(find_cpu));
    println!(
        "scan: cpu time strata {:.3} s, find {:.3} s, ratio {:.2} (user + system, all threads)",
        s_cpu.as_secs_f64(),
        f_cpu.as_secs_f64(),
        ratio(s_cpu, f_cpu)
    );
    println!(
        "scan: peak RSS {:.1} MiB (goal <= 200; the strata process, max over rounds)",
        mib(peak_kib)
    );
}

/// The child: one scan with default options, consumed as the mover does;
/// prints `<files> <candidates> <VmHWM KiB>`.
fn child(tree: &Path) {
    let policy = parse_policy(POLICY).expect("bench policy");
    let now = SystemTime::now();
    // A fresh tree's ctimes are minutes old: no settle window, or it is all hot.
    let options = ScanOptions::default().settle(Duration::ZERO);
    let mut walk = scan(tree, &options).expect("start the scan");
    let (mut seen, mut candidates) = (0u64, 0u64);
    for file in &mut walk {
        seen += 1;
        if file.rel_path.to_str().is_none() {
            continue; // the mover skips (and counts) non-UTF-8 paths
        }
        let facts = FileFacts {
            path: &file.rel_path,
            size: file.size,
            modified: file.mtime,
            accessed: file.atime,
        };
        if policy.evaluate(&facts, now).is_some() {
            candidates += 1;
        }
    }
    let stats = walk.finish().expect("finish the scan");
    assert_eq!((stats.files, stats.errors), (seen, 0), "scan stats");
    println!("{seen} {candidates} {}", vm_hwm_kib());
}

/// Runs the child; returns its wall and CPU time, files seen, candidates and
/// VmHWM (KiB).
fn run_strata(tree: &Path) -> (Duration, Duration, u64, u64, u64) {
    let exe = std::env::current_exe().expect("this bench's path");
    let cpu = children_cpu();
    let start = Instant::now();
    let out = Command::new(exe)
        .env(CHILD_ENV, tree)
        .stderr(Stdio::inherit())
        .output()
        .expect("run the scan child");
    let elapsed = start.elapsed();
    let cpu = children_cpu() - cpu;
    assert!(out.status.success(), "scan child: {}", out.status);
    let text = String::from_utf8_lossy(&out.stdout);
    let n: Vec<u64> = text
        .split_whitespace()
        .map(|v| v.parse().expect("scan child output"))
        .collect();
    let [seen, candidates, hwm] = n[..] else {
        panic!("scan child printed {text:?}");
    };
    (elapsed, cpu, seen, candidates, hwm)
}

/// Runs find with its output piped and read to the end; returns its wall and
/// CPU time and the lines it printed.
fn run_find(tree: &Path) -> (Duration, Duration, usize) {
    let cpu = children_cpu();
    let start = Instant::now();
    let mut find = Command::new("find")
        .arg(tree)
        .args(["-printf", "%s %T@\\n"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("run find");
    let mut stdout = find.stdout.take().expect("find's stdout");
    let (mut buf, mut lines) = (vec![0u8; 64 * 1024], 0);
    loop {
        match stdout.read(&mut buf).expect("read find's output") {
            0 => break,
            n => lines += buf[..n].iter().filter(|&&b| b == b'\n').count(),
        }
    }
    let status = find.wait().expect("wait for find");
    let elapsed = start.elapsed();
    let cpu = children_cpu() - cpu;
    assert!(status.success(), "find: {status}");
    (elapsed, cpu, lines)
}

/// `tree/aNN/bNN/cNN/fNNNNNNN`: `PER_DIR` files per leaf, the same fan-out
/// at each of the three levels. Files hold 0 to 16 bytes and were modified
/// between 1 and 366 days ago. The marker beside the tree, written last,
/// says it is complete.
fn build_tree(tree: &Path, files: usize) {
    let marker = tree.with_extension("complete");
    if marker.exists() {
        return;
    }
    if tree.exists() {
        fs::remove_dir_all(tree).expect("remove an incomplete tree");
    }
    let leaves = files.div_ceil(PER_DIR);
    let fanout = (1..).find(|f| f * f * f >= leaves).expect("a fan-out");
    println!(
        "scan: building {files} files in {leaves} directories under {} ...",
        tree.display()
    );
    let start = Instant::now();
    let now = SystemTime::now();
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    std::thread::scope(|scope| {
        for t in 0..threads {
            scope.spawn(move || {
                for leaf in (t..leaves).step_by(threads) {
                    let (a, b, c) = (
                        leaf / fanout / fanout,
                        leaf / fanout % fanout,
                        leaf % fanout,
                    );
                    let dir = tree.join(format!("a{a:02}/b{b:02}/c{c:02}"));
                    fs::create_dir_all(&dir).expect("create the tree");
                    for i in leaf * PER_DIR..((leaf + 1) * PER_DIR).min(files) {
                        let mut f = File::create(dir.join(format!("f{i:07}"))).expect("create");
                        f.write_all(&b"0123456789abcdef"[..i % 17]).expect("write");
                        let age = 86_400 + (i as u64 * 7_919) % (365 * 86_400);
                        f.set_modified(now - Duration::from_secs(age))
                            .expect("set mtime");
                    }
                }
            });
        }
    });
    File::create(&marker).expect("write the marker");
    println!("scan: built in {:.1} s", start.elapsed().as_secs_f64());
}

/// User + system time of the children waited for so far.
fn children_cpu() -> Duration {
    // SAFETY: getrusage only writes the struct it is given.
    let usage = unsafe {
        let mut usage = std::mem::zeroed::<libc::rusage>();
        assert_eq!(libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage), 0);
        usage
    };
    let time = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    time(usage.ru_utime) + time(usage.ru_stime)
}

fn vm_hwm_kib() -> u64 {
    let status = fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/self/status")
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn ratio(a: Duration, b: Duration) -> f64 {
    a.as_secs_f64() / b.as_secs_f64()
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}
