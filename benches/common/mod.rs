//! What the host benchmarks share: where their data sets live, their size
//! knobs, and a line saying how busy the machine was. Each bench uses a part.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// `$STRATA_CACHE` as `scripts/cargo-env.sh` chooses it (it does not export
/// it): `$STRATA_CACHE_DIR` or `/var/cache/strata` when writable, else
/// `${XDG_CACHE_HOME:-$HOME/.cache}/strata`.
pub fn strata_cache() -> PathBuf {
    if let Some(c) = std::env::var_os("STRATA_CACHE") {
        return PathBuf::from(c);
    }
    let main = std::env::var_os("STRATA_CACHE_DIR")
        .map_or_else(|| PathBuf::from("/var/cache/strata"), PathBuf::from);
    if std::fs::create_dir_all(&main).is_ok() && writable(&main) {
        return main;
    }
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("."), PathBuf::from);
    std::env::var_os("XDG_CACHE_HOME")
        .map_or_else(|| home.join(".cache"), PathBuf::from)
        .join("strata")
}

fn writable(dir: &Path) -> bool {
    let probe = dir.join(format!(".strata-bench-probe-{}", std::process::id()));
    let ok = std::fs::write(&probe, b"").is_ok();
    let _ = std::fs::remove_file(&probe);
    ok
}

/// A whole number from the environment, or `default`; anything else stops
/// the benchmark naming the variable.
pub fn env_number(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(v) => v
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}: expected a whole number, got {v:?}")),
        Err(_) => default,
    }
}

/// Cores and load: the figures mean little on a busy machine.
pub fn machine() -> String {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let load = load
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ");
    format!("{cores} cores, load average {load}")
}
