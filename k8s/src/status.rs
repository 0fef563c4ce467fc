//! A TieringPolicy's `status` from its verdict and the catalog's facts:
//! pure, the time passed in. A condition keeps its `lastTransitionTime`
//! while its status stays the same, as Kubernetes conditions do.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp as JiffTimestamp;
use strata_tiering::catalog::Timestamp;

use crate::crd::condition_types::{DEGRADED, LAKE_UNREACHABLE, READY, SPACE_PRESSURE};
use crate::facts::{PolicyFacts, UNREACHABLE_AFTER_ATTEMPTS};
use crate::reconcile::Verdict;
use crate::{LastRun, TieringPolicyStatus};

/// Longest message a condition carries (errors can be long).
const MAX_MESSAGE: usize = 1024;

/// The status of a TieringPolicy at `generation`, named `catalog_name` in
/// the catalog, whose verdict is `verdict` and whose catalog facts (if the
/// catalog has the policy) are `facts`; `previous` is the status it has now.
pub fn status(
    generation: Option<i64>,
    catalog_name: &str,
    verdict: &Verdict,
    facts: Option<&PolicyFacts>,
    previous: Option<&TieringPolicyStatus>,
    now: Timestamp,
) -> TieringPolicyStatus {
    let in_force = facts.and_then(|f| f.generation_in_catalog);
    let (ready, ready_reason, ready_message) = match verdict {
        Verdict::Valid(_) if in_force == generation => (
            true,
            "InCatalog",
            format!(
                "policy {catalog_name} is in the catalog and selects {} volume(s)",
                facts.map_or(0, |f| f.volumes)
            ),
        ),
        Verdict::Valid(_) => (
            false,
            "Pending",
            format!("policy {catalog_name} is being written to the catalog"),
        ),
        Verdict::Invalid(errors) => (false, "InvalidSpec", errors.join("; ")),
        Verdict::Suspended => (
            false,
            "Suspended",
            "spec.suspend is true: no runs start and nothing is drained for it".to_owned(),
        ),
        Verdict::NameTaken(name) => (
            false,
            "NameTaken",
            format!(
                "the catalog has an operator's policy named {name} (strata ctl policy apply); remove it or rename this TieringPolicy"
            ),
        ),
    };
    let old_in_force = matches!(verdict, Verdict::Invalid(_)) && in_force.is_some();
    let f = facts.cloned().unwrap_or_default();
    let degraded = if old_in_force {
        (
            true,
            "OldVersionInForce",
            format!(
                "generation {} is invalid; generation {} stays in force",
                generation.unwrap_or_default(),
                in_force.unwrap_or_default()
            ),
        )
    } else if f.failing_files > 0 {
        (
            true,
            "FilesFailing",
            format!(
                "{} waiting file(s) failed their last attempt",
                f.failing_files
            ),
        )
    } else {
        (false, "AsExpected", "no waiting file has failed".to_owned())
    };
    let lake = match &f.oldest_failure {
        Some((attempts, error)) if *attempts >= UNREACHABLE_AFTER_ATTEMPTS => (
            true,
            "UploadsFailing",
            format!(
                "the oldest of {} waiting file(s) failed {attempts} attempts in a row: {error}",
                f.backlog_files
            ),
        ),
        _ if f.backlog_files == 0 => (
            false,
            "NothingWaiting",
            "no file waits for the lake".to_owned(),
        ),
        _ => (
            false,
            "UploadsProceeding",
            format!(
                "{} file(s) wait; the oldest has not kept failing",
                f.backlog_files
            ),
        ),
    };
    let pressure = match f.pressure.first() {
        Some(run) => (
            true,
            "HighWatermark",
            format!(
                "volume {} passed its high watermark: its last run ({}) set out to free {} bytes and found {} bytes to move",
                run.volume,
                rfc3339(run.finished_at),
                run.free_goal.unwrap_or_default(),
                run.bytes
            ),
        ),
        None => (
            false,
            "BelowHighWatermark",
            "no selected volume's last run was started by a high watermark".to_owned(),
        ),
    };
    let old = previous
        .map(|p| p.conditions.as_slice())
        .unwrap_or_default();
    let conditions = [
        (READY, ready, ready_reason, ready_message),
        (DEGRADED, degraded.0, degraded.1, degraded.2),
        (LAKE_UNREACHABLE, lake.0, lake.1, lake.2),
        (SPACE_PRESSURE, pressure.0, pressure.1, pressure.2),
    ]
    .into_iter()
    .map(|(kind, on, reason, message)| condition(old, kind, on, reason, &message, generation, now))
    .collect();
    TieringPolicyStatus {
        observed_generation: generation,
        conditions,
        catalog_policy: facts.map(|_| catalog_name.to_owned()),
        volumes: f.volumes,
        last_run: f.last_run.as_ref().map(|r| LastRun {
            volume: r.volume.clone(),
            finished_at: rfc3339(r.finished_at),
            files: r.files,
            bytes: r.bytes,
            errors: r.errors,
        }),
        files_moved: f.moved.0,
        bytes_moved: f.moved.1,
        backlog_files: f.backlog_files,
        backlog_bytes: f.backlog_bytes,
        recalled_files: f.recalled,
        oldest_pending_seconds: f.oldest_pending.map(|d| d.as_secs()),
    }
}

fn condition(
    previous: &[Condition],
    kind: &str,
    on: bool,
    reason: &str,
    message: &str,
    generation: Option<i64>,
    now: Timestamp,
) -> Condition {
    let status = if on { "True" } else { "False" };
    let since = previous
        .iter()
        .find(|c| c.type_ == kind && c.status == status)
        .map_or_else(|| time(now), |c| c.last_transition_time.clone());
    Condition {
        type_: kind.to_owned(),
        status: status.to_owned(),
        reason: reason.to_owned(),
        message: truncate(message),
        observed_generation: generation,
        last_transition_time: since,
    }
}

fn truncate(s: &str) -> String {
    if s.len() <= MAX_MESSAGE {
        return s.to_owned();
    }
    format!("{}…", &s[..s.floor_char_boundary(MAX_MESSAGE)])
}

fn time(t: Timestamp) -> Time {
    let nanos = i128::from(t.unix_nanos());
    Time(JiffTimestamp::from_nanosecond(nanos).unwrap_or(JiffTimestamp::UNIX_EPOCH))
}

/// RFC 3339, whole seconds, UTC.
pub(crate) fn rfc3339(t: Timestamp) -> String {
    let secs = (t.unix_nanos() / 1_000_000_000) as i64;
    JiffTimestamp::from_second(secs)
        .unwrap_or(JiffTimestamp::UNIX_EPOCH)
        .to_string()
}
