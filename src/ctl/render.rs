//! The human form of each answer: what `strata ctl` prints by default.
//! Pure functions of the answer and the local clock, so they are tested
//! without a server.

use std::fmt::Write as _;
use std::time::SystemTime;

use strata_proto::strata::v1 as pb;

use super::format::{Plain, ago, bytes, cut, duration, labels, or_dash, std_duration, system_time};
use super::json::{change_name, lake_name, state_name};
use super::settling::settling;

fn time(t: Option<&prost_types::Timestamp>) -> Option<SystemTime> {
    t.map(system_time)
}

fn backlog_cell(b: Option<&pb::Backlog>) -> String {
    match b {
        Some(b) if b.files > 0 => format!("{} files, {}", b.files, bytes(b.bytes)),
        _ => "-".to_owned(),
    }
}

pub(super) fn volumes(vs: &[pb::Volume]) -> String {
    if vs.is_empty() {
        return "no volumes (add one: strata ctl volume add ID PATH)\n".to_owned();
    }
    let mut t = Plain::new(&["ID", "PATH", "LABELS", "BACKLOG"]);
    for v in vs {
        t.row(vec![
            v.id.clone(),
            v.path.clone(),
            labels(v.labels.iter()),
            backlog_cell(v.backlog.as_ref()),
        ]);
    }
    let mut out = t.render();
    for v in vs.iter().filter(|v| !v.refused.is_empty()) {
        let _ = writeln!(out, "REFUSED {}: {}", v.id, v.refused);
    }
    out
}

pub(super) fn policies(ps: &[pb::Policy], now: SystemTime) -> String {
    if ps.is_empty() {
        return "no policies (add one: strata ctl policy apply -f FILE)\n".to_owned();
    }
    let mut t = Plain::new(&["NAME", "SCHEDULE", "LAKE", "RULES", "UPDATED"]);
    for p in ps {
        t.row(vec![
            p.name.clone(),
            or_dash(&p.schedule),
            or_dash(&p.lake_url),
            if p.rules.is_empty() {
                "-".to_owned()
            } else {
                p.rules.join(",")
            },
            ago(time(p.updated_at.as_ref()), now),
        ]);
    }
    t.render()
}

pub(super) fn runs(rs: &[pb::Run], now: SystemTime) -> String {
    if rs.is_empty() {
        return "no runs\n".to_owned();
    }
    let mut t = Plain::new(&[
        "POLICY", "VOLUME", "FINISHED", "TOOK", "FILES", "BYTES", "ERRORS",
    ])
    .right(&[4, 5, 6]);
    for r in rs {
        let (start, end) = (time(r.started_at.as_ref()), time(r.finished_at.as_ref()));
        let took = match (start, end) {
            (Some(s), Some(e)) => duration(e.duration_since(s).unwrap_or_default()),
            _ => "-".to_owned(),
        };
        t.row(vec![
            r.policy.clone(),
            r.volume.clone(),
            ago(end, now),
            took,
            r.files.to_string(),
            bytes(r.bytes),
            r.errors.to_string(),
        ]);
    }
    t.render()
}

/// The answer to `run now`: the runs, then what the settle window held
/// back, so a run that moved nothing because every file was changed a
/// moment ago says so.
pub(super) fn run_now(rs: &[pb::Run], now: SystemTime) -> String {
    let mut out = runs(rs, now);
    let held = settling(rs);
    if held.files == 0 {
        return out;
    }
    let (files, were, wait) = if held.files == 1 {
        ("file", "was", "waits")
    } else {
        ("files", "were", "wait")
    };
    let when = match held.window {
        Some(w) => format!(
            "less than {} ago (the settle window, --settle)",
            duration(w)
        ),
        // A run recorded before the agent reported its window.
        None => "within the settle window (--settle)".to_owned(),
    };
    let _ = writeln!(
        out,
        "{} {files} ({}) {were} changed {when} and {wait} for a later run",
        held.files,
        bytes(held.bytes),
    );
    out
}

pub(super) fn files(fs: &[pb::File], now: SystemTime) -> String {
    if fs.is_empty() {
        return "no files match\n".to_owned();
    }
    let mut t =
        Plain::new(&["VOLUME", "PATH", "STATE", "SIZE", "UPDATED", "LAST ERROR"]).right(&[3]);
    for f in fs {
        let error = match (&f.last_error, f.attempts) {
            (Some(e), n) => format!("{} (attempt {n})", cut(e, 60)),
            (None, _) => "-".to_owned(),
        };
        t.row(vec![
            f.volume.clone(),
            f.path.clone(),
            state_name(f.state()).to_owned(),
            bytes(f.size),
            ago(time(f.updated_at.as_ref()), now),
            error,
        ]);
    }
    t.render()
}

pub(super) fn change(kind: &str, name: &str, change: pb::Change) -> String {
    format!("{kind} {name} {}\n", change_name(change))
}

fn plural(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

pub(super) fn recall_result(volume: &str, glob: &str, r: &pb::RecallResult) -> String {
    if r.matched == 0 && r.files == 0 && r.failed == 0 {
        return format!("no moved files on volume {volume} match {glob}\n");
    }
    let mut out = format!(
        "recalled {} ({}) to volume {volume}",
        plural(r.files, "file", "files"),
        bytes(r.bytes)
    );
    if r.already_local > 0 {
        let _ = write!(out, "; {} already local", r.already_local);
    }
    if r.conflicts > 0 {
        let _ = write!(
            out,
            "; {} left alone (the path holds other content)",
            plural(r.conflicts, "file", "files")
        );
    }
    let failed = r.failed.max(r.failures.len() as u64);
    if failed == 0 {
        out.push('\n');
        return out;
    }
    let _ = writeln!(out, "; {failed} failed:");
    for f in &r.failures {
        let _ = writeln!(out, "  {}: {}", f.path, f.error);
    }
    let unlisted = failed - r.failures.len() as u64;
    if unlisted > 0 {
        let _ = writeln!(out, "  … and {unlisted} more");
    }
    out
}

/// The one screen of `strata ctl status`.
pub(super) fn status(s: &pb::StatusResponse, now: SystemTime) -> String {
    let mut out = String::new();
    let c = s.catalog.clone().unwrap_or_default();
    let mut catalog = c.role.clone().unwrap_or_else(|| "single".to_owned());
    let mut details = Vec::new();
    if let Some(t) = c.term {
        details.push(format!("term {t}"));
    }
    if let Some(l) = &c.leader {
        details.push(format!("leader {l}"));
    }
    if let Some(i) = c.applied_index {
        details.push(format!("applied {i}"));
    }
    if !details.is_empty() {
        let _ = write!(catalog, " ({})", details.join(", "));
    }
    let b = s.backlog.unwrap_or_default();
    let mut backlog = format!(
        "{} {}, {}",
        b.files,
        if b.files == 1 { "file" } else { "files" },
        bytes(b.bytes)
    );
    if let Some(age) = &b.oldest_age {
        let _ = write!(backlog, ", oldest waiting {}", duration(std_duration(age)));
    }
    let lake = match s.lake() {
        pb::LakeReachability::Down if b.files > 0 => {
            "down (the backlog waits; nothing local is removed)"
        }
        pb::LakeReachability::Unknown => "unknown (not tried yet)",
        l => lake_name(l),
    };
    let _ = writeln!(out, "catalog   {catalog}");
    let _ = writeln!(out, "lake      {lake}");
    let _ = writeln!(out, "backlog   {backlog}");
    if let Some(z) = &s.site_timezone {
        // The zone schedules and bandwidth windows are read in.
        let _ = writeln!(out, "timezone  {} (from {})", z.name, z.source);
    }

    out.push_str("\nFILES\n");
    let mut t = Plain::new(&["STATE", "FILES", "BYTES"]).right(&[1, 2]);
    for count in &s.counts {
        t.row(vec![
            state_name(count.state()).to_owned(),
            count.files.to_string(),
            bytes(count.bytes),
        ]);
    }
    out.push_str(&t.render());
    out.push_str("\nVOLUMES\n");
    out.push_str(&volumes(&s.volumes));
    out.push_str("\nPOLICIES\n");
    out.push_str(&policies(&s.policies, now));
    out.push_str("\nLAST RUNS\n");
    out.push_str(&runs(&s.last_runs, now));
    out
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;

    const NOW: u64 = 1_767_323_045;

    fn now() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(NOW)
    }

    fn ts(secs_ago: u64) -> Option<prost_types::Timestamp> {
        Some(prost_types::Timestamp {
            seconds: (NOW - secs_ago) as i64,
            nanos: 0,
        })
    }

    fn volume() -> pb::Volume {
        pb::Volume {
            id: "line-3".into(),
            path: "/srv/line-3".into(),
            labels: [("app".to_owned(), "inspection".to_owned())].into(),
            backlog: Some(pb::Backlog {
                files: 2,
                bytes: 3 << 20,
                oldest_age: Some(prost_types::Duration {
                    seconds: 7500,
                    nanos: 0,
                }),
            }),
            refused: String::new(),
        }
    }

    fn policy() -> pb::Policy {
        pb::Policy {
            name: "cold-images".into(),
            spec: "name: cold-images\n".into(),
            updated_at: ts(3 * 3600),
            schedule: "0 * * * *".into(),
            lake_url: "s3://lake/site-a".into(),
            rules: vec!["old-jpgs".into(), "old-pngs".into()],
        }
    }

    fn run() -> pb::Run {
        pb::Run {
            id: "r1".into(),
            policy: "cold-images".into(),
            volume: "line-3".into(),
            started_at: ts(600 + 75),
            finished_at: ts(600),
            files: 12,
            bytes: 1536,
            errors: 0,
            settling_files: 0,
            settling_bytes: 0,
            settle: Some(prost_types::Duration {
                seconds: 60,
                nanos: 0,
            }),
        }
    }

    #[test]
    fn volume_table() {
        let empty = pb::Volume {
            id: "scratch".into(),
            path: "/tmp/s".into(),
            ..Default::default()
        };
        assert_eq!(
            volumes(&[volume(), empty]),
            "ID        PATH          LABELS           BACKLOG\n\
             line-3    /srv/line-3   app=inspection   2 files, 3.0 MiB\n\
             scratch   /tmp/s        -                -\n"
        );
        assert_eq!(
            volumes(&[]),
            "no volumes (add one: strata ctl volume add ID PATH)\n"
        );
        let refused = pb::Volume {
            id: "keys".into(),
            path: "/etc".into(),
            refused: "/etc: not beneath a volume root of this node (/srv)".into(),
            ..Default::default()
        };
        assert_eq!(
            volumes(&[refused]),
            "ID     PATH   LABELS   BACKLOG\n\
             keys   /etc   -        -\n\
             REFUSED keys: /etc: not beneath a volume root of this node (/srv)\n"
        );
    }

    #[test]
    fn policy_table() {
        assert_eq!(
            policies(&[policy()], now()),
            "NAME          SCHEDULE    LAKE               RULES               UPDATED\n\
             cold-images   0 * * * *   s3://lake/site-a   old-jpgs,old-pngs   3h ago\n"
        );
    }

    #[test]
    fn run_table() {
        assert_eq!(
            runs(&[run()], now()),
            "POLICY        VOLUME   FINISHED   TOOK    FILES     BYTES   ERRORS\n\
             cold-images   line-3   10m ago    1m15s      12   1.5 KiB        0\n"
        );
    }

    #[test]
    fn run_now_says_what_the_settle_window_held_back() {
        let table = runs(&[run()], now());
        assert_eq!(
            run_now(&[run()], now()),
            table,
            "nothing held back: no line"
        );
        let held = pb::Run {
            settling_files: 3,
            settling_bytes: 1_258_291,
            ..run()
        };
        assert_eq!(
            run_now(std::slice::from_ref(&held), now()),
            format!(
                "{table}3 files (1.2 MiB) were changed less than 1m ago (the settle window, \
                 --settle) and wait for a later run\n"
            )
        );
        let one = pb::Run {
            settling_files: 1,
            settling_bytes: 12,
            settle: None,
            ..run()
        };
        assert_eq!(
            run_now(&[one], now()),
            format!(
                "{table}1 file (12 B) was changed within the settle window (--settle) \
                 and waits for a later run\n"
            )
        );
    }

    #[test]
    fn file_table() {
        let f = pb::File {
            volume: "line-3".into(),
            path: "img/a.jpg".into(),
            state: pb::FileState::Intent.into(),
            size: 2048,
            attempts: 3,
            last_error: Some("lake: connection refused".into()),
            updated_at: ts(30),
            ..Default::default()
        };
        let g = pb::File {
            volume: "line-3".into(),
            path: "img/b.jpg".into(),
            state: pb::FileState::Released.into(),
            size: 10,
            updated_at: ts(86_400 * 2),
            ..Default::default()
        };
        assert_eq!(
            files(&[f, g], now()),
            "VOLUME   PATH        STATE         SIZE   UPDATED   LAST ERROR\n\
             line-3   img/a.jpg   intent     2.0 KiB   30s ago   lake: connection refused (attempt 3)\n\
             line-3   img/b.jpg   released      10 B   2d ago    -\n"
        );
    }

    #[test]
    fn changes_and_recalls() {
        assert_eq!(
            change("policy", "cold-images", pb::Change::Created),
            "policy cold-images created\n"
        );
        let ok = pb::RecallResult {
            matched: 1,
            files: 1,
            bytes: 10,
            ..Default::default()
        };
        assert_eq!(
            recall_result("line-3", "*.jpg", &ok),
            "recalled 1 file (10 B) to volume line-3\n"
        );
        let partial = pb::RecallResult {
            matched: 8,
            files: 3,
            bytes: 4096,
            already_local: 2,
            conflicts: 1,
            failed: 2,
            failures: vec![pb::RecallFailure {
                path: "b.jpg".into(),
                error: "checksum mismatch".into(),
            }],
        };
        assert_eq!(
            recall_result("line-3", "*.jpg", &partial),
            "recalled 3 files (4.0 KiB) to volume line-3; 2 already local; \
             1 file left alone (the path holds other content); 2 failed:\n  \
             b.jpg: checksum mismatch\n  … and 1 more\n"
        );
        assert_eq!(
            recall_result("line-3", "*.png", &pb::RecallResult::default()),
            "no moved files on volume line-3 match *.png\n"
        );
    }

    #[test]
    fn status_screen() {
        let s = pb::StatusResponse {
            volumes: vec![volume()],
            policies: vec![policy()],
            backlog: volume().backlog,
            lake: pb::LakeReachability::Down.into(),
            last_runs: vec![run()],
            counts: vec![
                pb::StateCount {
                    state: pb::FileState::Intent.into(),
                    files: 2,
                    bytes: 3 << 20,
                },
                pb::StateCount {
                    state: pb::FileState::Released.into(),
                    files: 40,
                    bytes: 5 << 30,
                },
            ],
            catalog: Some(pb::CatalogInfo {
                role: Some("leader".into()),
                term: Some(2),
                leader: Some("node-1".into()),
                applied_index: Some(118),
            }),
            now: ts(0),
            site_timezone: Some(pb::SiteTimeZone {
                name: "Europe/Berlin".into(),
                source: "TZ".into(),
            }),
        };
        assert_eq!(
            status(&s, now()),
            "\
catalog   leader (term 2, leader node-1, applied 118)
lake      down (the backlog waits; nothing local is removed)
backlog   2 files, 3.0 MiB, oldest waiting 2h5m
timezone  Europe/Berlin (from TZ)

FILES
STATE      FILES     BYTES
intent         2   3.0 MiB
released      40   5.0 GiB

VOLUMES
ID       PATH          LABELS           BACKLOG
line-3   /srv/line-3   app=inspection   2 files, 3.0 MiB

POLICIES
NAME          SCHEDULE    LAKE               RULES               UPDATED
cold-images   0 * * * *   s3://lake/site-a   old-jpgs,old-pngs   3h ago

LAST RUNS
POLICY        VOLUME   FINISHED   TOOK    FILES     BYTES   ERRORS
cold-images   line-3   10m ago    1m15s      12   1.5 KiB        0
"
        );
    }

    #[test]
    fn status_of_a_fresh_single_catalog() {
        let s = pb::StatusResponse {
            backlog: Some(pb::Backlog::default()),
            catalog: Some(pb::CatalogInfo {
                applied_index: Some(3),
                ..Default::default()
            }),
            ..Default::default()
        };
        let out = status(&s, now());
        assert!(out.starts_with(
            "catalog   single (applied 3)\nlake      unknown (not tried yet)\nbacklog   0 files, 0 B\n\nFILES"
        ));
        assert!(out.ends_with("\nLAST RUNS\nno runs\n"), "{out}");
    }
}
