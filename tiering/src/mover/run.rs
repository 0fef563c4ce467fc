//! A run of one policy over one volume: the scan streams settled files, the
//! policy picks the cold ones, the catalog says which need a move, those are
//! hashed and their intents recorded, while the drain uploads the policy's
//! backlog oldest first (new intents join at its tail).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use futures::StreamExt;
use tokio::sync::mpsc;
use tracing::Instrument;

use crate::catalog::{
    Applied, CatalogClient, CatalogError, Command, FileKey, FileRecord, FileState, Intent,
    RunSummary, Sha256, Volume,
};
use crate::policy::{Action, FileFacts};
use crate::scan::{self, FileFacts as Seen, ScanError, ScanOptions, ScanStats};

use super::anchored::VolumeRoot;
use super::clock::{self, nanos};
use super::drain::{self, Feed};
use super::error::MoverError;
use super::hash::{Hashed, hash_file};
use super::local::{Stamp, is_temp_name};
use super::oldest::OldestFirst;
use super::pause::{PausePoint, pause};
use super::plan::{self, Plan, Skip};
use super::shared::{Inner, PolicyEntry};
use super::{RunGoal, RunReport};

/// Files per message from the scan thread, and per catalog read.
const BATCH: usize = 256;

pub(crate) async fn run_policy<C: CatalogClient>(
    inner: &Arc<Inner<C>>,
    policy: &str,
    volume: &Volume,
    goal: RunGoal,
) -> Result<RunReport, MoverError> {
    let started = Instant::now();
    let started_at = clock::now();
    let entry = inner
        .entry(policy)
        .ok_or_else(|| MoverError::UnknownPolicy(policy.to_owned()))?;
    let of = volume.clone();
    let claim = inner
        .catalog
        .read(move |s| s.claim_of(&of).cloned())
        .await?;
    if !entry
        .policy
        .selects_volume(&volume.id, &volume.labels, claim.as_ref())
    {
        return Err(MoverError::NotSelected {
            policy: policy.to_owned(),
            volume: volume.id.clone(),
        });
    }
    // One hold for the walk thread, one for the intake (hashing): a
    // withdrawal waits for both to let go of the volume's files.
    let withdrawn = || MoverError::Withdrawn(volume.id.clone());
    let hold = inner.gate.hold(&volume.id).ok_or_else(withdrawn)?;
    let walk_hold = inner.gate.hold(&volume.id).ok_or_else(withdrawn)?;
    inner
        .propose(Command::RegisterVolume(volume.clone()))
        .await??;
    let run_id = format!("run-{:016x}", clock::random_u64());
    let span = tracing::info_span!("run", policy, volume = %volume.id, run = %run_id);
    let mut report = RunReport {
        run_id,
        ..RunReport::default()
    };
    async move {
        let (tx, rx) = mpsc::channel(4);
        let root = PathBuf::from(&volume.path);
        let options = inner.options.scan.clone();
        let walker = tokio::task::spawn_blocking(move || {
            let stats = walk(&root, &options, tx);
            drop(walk_hold);
            stats
        });
        let feed = Feed::default();
        let intake = async {
            let r = intake(inner, &entry, volume, rx, &feed, &mut report, goal).await;
            feed.close();
            // The walk and the hashing are done with the volume's files.
            drop(hold);
            r
        };
        let drained = drain::drain(inner, Some(policy), started_at, Some(&feed));
        let (taken, drained) = tokio::join!(intake, drained);
        let stats = walker
            .await
            .map_err(|e| MoverError::Task(e.to_string()))??;
        taken?;
        report.drain = drained?;
        report.scanned = stats.files;
        report.scan_hot = stats.skipped_hot;
        report.scan_hot_bytes = stats.skipped_hot_bytes;
        report.scan_errors = stats.errors;
        inner
            .metrics
            .scanned(policy, stats.files, report.candidates, stats.elapsed);
        let summary = RunSummary {
            id: report.run_id.clone(),
            policy: policy.to_owned(),
            volume: volume.id.clone(),
            started_at,
            finished_at: clock::now(),
            files: report.candidates,
            bytes: report.candidate_bytes,
            errors: report.scan_errors + report.errors,
            settling_files: report.scan_hot,
            settling_bytes: report.scan_hot_bytes,
            settle: Some(inner.options.scan.settle),
            free_goal: match goal {
                RunGoal::FreeBytes(n) => Some(n),
                RunGoal::Everything => None,
            },
        };
        if let Err(r) = inner.propose(Command::RecordRun(summary)).await? {
            tracing::warn!(reason = %r, "run summary refused");
        }
        report.elapsed = started.elapsed();
        tracing::info!(?report, "run finished");
        Ok(report)
    }
    .instrument(span)
    .await
}

/// The scan thread: walks the volume and sends its files in batches.
fn walk(
    root: &Path,
    options: &ScanOptions,
    tx: mpsc::Sender<Vec<Seen>>,
) -> Result<ScanStats, ScanError> {
    let mut walk = scan::scan(root, options)?;
    let mut batch = Vec::with_capacity(BATCH);
    for facts in &mut walk {
        batch.push(facts);
        if batch.len() == BATCH && tx.blocking_send(std::mem::take(&mut batch)).is_err() {
            break;
        }
    }
    if !batch.is_empty() {
        let _ = tx.blocking_send(batch);
    }
    walk.finish()
}

/// What a policy judges of a scanned file.
fn facts(s: &Seen) -> FileFacts<'_> {
    FileFacts {
        path: &s.rel_path,
        size: s.size,
        modified: s.mtime,
        accessed: s.atime,
    }
}

/// A candidate that needs hashing.
struct Job {
    path: String,
    seen: Stamp,
    rule: String,
    record: Option<FileRecord>,
    abandon_first: bool,
}

/// What starting one move came to.
enum Started {
    Intent,
    /// Already queued or archived in this version (found only once hashed).
    Unchanged,
    /// The released content is back at its path: recorded as recalled.
    Recalled,
    /// Changed since the scan or during hashing, or gone.
    Changed,
    Error,
}

async fn intake<C: CatalogClient>(
    inner: &Arc<Inner<C>>,
    entry: &Arc<PolicyEntry>,
    volume: &Volume,
    mut rx: mpsc::Receiver<Vec<Seen>>,
    feed: &Feed,
    report: &mut RunReport,
    goal: RunGoal,
) -> Result<(), MoverError> {
    let now = SystemTime::now();
    let policy = &entry.policy;
    let mut oldest = match goal {
        RunGoal::Everything => None,
        RunGoal::FreeBytes(need) => Some(OldestFirst::new(need)),
    };
    while let Some(batch) = rx.recv().await {
        if inner.gate.is_withdrawn(&volume.id) {
            tracing::info!("volume is being unmounted; the scan stops here");
            break;
        }
        // Which files does a rule match?
        let mut candidates = Vec::new();
        for seen in batch {
            let Some(path) = seen.rel_path.to_str() else {
                tracing::warn!(path = %seen.rel_path.display(), "path is not UTF-8; not moved");
                report.errors += 1;
                continue;
            };
            let name = path.rsplit('/').next().unwrap_or(path);
            if is_temp_name(name) {
                continue;
            }
            let Some(d) = policy.evaluate(&facts(&seen), now) else {
                continue;
            };
            match oldest.as_mut() {
                // Space pressure: only moves free space, least recently used first.
                Some(pick) if d.action == Action::Move => {
                    let last_use = seen.mtime.max(seen.atime);
                    pick.offer(
                        last_use,
                        seen.size,
                        (path.to_owned(), d.rule.to_owned(), seen),
                    );
                }
                Some(_) => {}
                None => candidates.push((path.to_owned(), d.rule.to_owned(), seen)),
            }
        }
        start_candidates(inner, entry, volume, candidates, feed, report, now).await?;
    }
    if let Some(pick) = oldest {
        let (picked, enough) = pick.finish();
        if !enough {
            tracing::warn!(
                files = picked.len(),
                "the policy's move rules do not pick enough files to reach the low watermark"
            );
        }
        let mut picked = picked.into_iter();
        loop {
            let chunk: Vec<_> = picked.by_ref().take(BATCH).collect();
            if chunk.is_empty() {
                break;
            }
            start_candidates(inner, entry, volume, chunk, feed, report, now).await?;
        }
    }
    Ok(())
}

/// Records the intents of the candidates that need a move (hashing them a
/// few at a time), in the order given.
async fn start_candidates<C: CatalogClient>(
    inner: &Arc<Inner<C>>,
    entry: &Arc<PolicyEntry>,
    volume: &Volume,
    candidates: Vec<(String, String, Seen)>,
    feed: &Feed,
    report: &mut RunReport,
    now: SystemTime,
) -> Result<(), MoverError> {
    let policy = &entry.policy;
    if candidates.is_empty() {
        return Ok(());
    }
    report.candidates += candidates.len() as u64;
    report.candidate_bytes += candidates.iter().map(|(_, _, s)| s.size).sum::<u64>();
    {
        // Their records, in one read.
        let keys: Vec<FileKey> = candidates
            .iter()
            .map(|(p, _, _)| FileKey::new(volume.id.clone(), p.clone()))
            .collect();
        let records = inner
            .catalog
            .read(move |s| keys.iter().map(|k| s.file(k).cloned()).collect::<Vec<_>>())
            .await?;
        let mut jobs = Vec::new();
        for ((path, rule, seen), record) in candidates.into_iter().zip(records) {
            let stamp = Stamp {
                size: seen.size,
                mtime_ns: nanos(seen.mtime),
                ino: seen.ino,
                dev: seen.dev,
                ctime_ns: nanos(seen.ctime),
            };
            let cold_since = |at| {
                policy
                    .evaluate(&plan::since(&facts(&seen), at), now)
                    .is_some()
            };
            let abandon_first = match plan::plan(record.as_ref(), &stamp, cold_since) {
                Plan::Skip(Skip::InBacklog) => {
                    report.in_backlog += 1;
                    continue;
                }
                Plan::Skip(Skip::Archived) => {
                    report.already_archived += 1;
                    continue;
                }
                Plan::Skip(Skip::NotColdSinceRecall) => {
                    report.recalled_not_cold += 1;
                    continue;
                }
                Plan::Hash => false,
                Plan::AbandonThenHash => true,
            };
            jobs.push(Job {
                path,
                seen: stamp,
                rule,
                record,
                abandon_first,
            });
        }
        // Hash and record, a few groups at once.
        let mut started = futures::stream::iter(
            hash_groups(jobs)
                .into_iter()
                .map(|group| start_group(inner, entry, volume, group, feed)),
        )
        .buffer_unordered(inner.options.hash_concurrency);
        while let Some(outcomes) = started.next().await {
            for s in outcomes? {
                match s {
                    Started::Intent => report.intents += 1,
                    Started::Unchanged | Started::Recalled => report.already_archived += 1,
                    Started::Changed => report.changed += 1,
                    Started::Error => report.errors += 1,
                }
            }
        }
    }
    Ok(())
}

/// Files below this size are hashed several to one blocking call.
const SMALL_FILE: u64 = 256 * 1024;
/// At most this many files, or this many bytes, per group of small files.
const GROUP_FILES: usize = 16;
const GROUP_BYTES: u64 = 1024 * 1024;

/// Splits the jobs, in order, into groups hashed by one blocking call each:
/// runs of small files up to [`GROUP_FILES`] / [`GROUP_BYTES`], a larger
/// file alone. One thread hand-off per group instead of per file is what a
/// volume of many small files gains.
fn hash_groups(jobs: Vec<Job>) -> Vec<Vec<Job>> {
    let mut groups: Vec<Vec<Job>> = Vec::new();
    let mut bytes = 0u64;
    for job in jobs {
        let size = job.seen.size;
        // A larger file is always alone in its group, so the group's first
        // file says whether it takes small ones.
        let fits = size < SMALL_FILE
            && groups.last().is_some_and(|g| {
                g.len() < GROUP_FILES && g[0].seen.size < SMALL_FILE && bytes + size <= GROUP_BYTES
            });
        if fits {
            bytes += size;
            groups.last_mut().expect("a group").push(job);
        } else {
            bytes = size;
            groups.push(vec![job]);
        }
    }
    groups
}

/// Starts the moves of one group: abandons the archived versions that
/// changed, hashes the group's files in one blocking call, records intents.
async fn start_group<C: CatalogClient>(
    inner: &Inner<C>,
    entry: &PolicyEntry,
    volume: &Volume,
    group: Vec<Job>,
    feed: &Feed,
) -> Result<Vec<Started>, CatalogError> {
    for job in group.iter().filter(|j| j.abandon_first) {
        abandon_archived(inner, entry, volume, job).await?;
    }
    let root = PathBuf::from(&volume.path);
    let files: Vec<(String, Stamp)> = group.iter().map(|j| (j.path.clone(), j.seen)).collect();
    let hashed = tokio::task::spawn_blocking(move || match VolumeRoot::open(&root) {
        Ok(root) => files
            .iter()
            .map(|(path, seen)| hash_file(&root, Path::new(path), seen))
            .collect::<Vec<_>>(),
        Err(e) => files
            .iter()
            .map(|_| Err(std::io::Error::new(e.kind(), e.to_string())))
            .collect(),
    })
    .await;
    let hashed = match hashed {
        Ok(h) => h,
        Err(e) => {
            tracing::error!(error = %e, files = group.len(), "hashing task failed; not moved");
            return Ok(group.iter().map(|_| Started::Error).collect());
        }
    };
    let mut outcomes = Vec::with_capacity(group.len());
    for (job, hashed) in group.into_iter().zip(hashed) {
        outcomes.push(record_intent(inner, entry, volume, job, hashed, feed).await?);
    }
    Ok(outcomes)
}

/// Changed since it was archived: that move must end before a new one can
/// start (the catalog refuses an intent over an archived version).
async fn abandon_archived<C: CatalogClient>(
    inner: &Inner<C>,
    entry: &PolicyEntry,
    volume: &Volume,
    job: &Job,
) -> Result<(), CatalogError> {
    let Some(r) = &job.record else {
        return Ok(());
    };
    let cmd = Command::MarkAbandoned {
        key: FileKey::new(volume.id.clone(), job.path.clone()),
        move_id: r.move_id,
        sha256: r.sha256,
    };
    if let Ok(Applied::Changed) = inner.propose(cmd).await? {
        inner.metrics.abandoned(entry.name());
    }
    Ok(())
}

/// Records the intent of one hashed file (or what hashing found instead).
async fn record_intent<C: CatalogClient>(
    inner: &Inner<C>,
    entry: &PolicyEntry,
    volume: &Volume,
    job: Job,
    hashed: std::io::Result<Hashed>,
    feed: &Feed,
) -> Result<Started, CatalogError> {
    let key = FileKey::new(volume.id.clone(), job.path.clone());
    let (stamp, sha256, owner) = match hashed {
        Ok(Hashed::Done {
            stamp,
            sha256,
            owner,
        }) => (stamp, Sha256(sha256), owner),
        Ok(Hashed::Changed(why)) => {
            tracing::debug!(%key, why, "changed; not moved this time");
            return Ok(Started::Changed);
        }
        Ok(Hashed::Gone) => return Ok(Started::Changed),
        Err(e) => {
            tracing::warn!(%key, error = %e, "cannot hash; not moved");
            return Ok(Started::Error);
        }
    };
    if let Some(r) = &job.record
        && r.state == FileState::Released
        && r.sha256 == sha256
    {
        // The released content is back at its path (a recall that stopped
        // after its rename, or a restore by hand): record that it is local.
        let cmd = Command::MarkRecalled {
            key,
            move_id: r.move_id,
            sha256,
        };
        return Ok(match inner.propose(cmd).await? {
            Ok(_) => Started::Recalled,
            Err(_) => Started::Unchanged,
        });
    }
    let lake_key = plan::lake_key(
        entry.policy.key_template(),
        &inner.options.site,
        &volume.id,
        &volume.labels,
        &job.path,
        &sha256,
    );
    let move_id = clock::random_u64();
    let intent = Intent {
        key: key.clone(),
        move_id,
        size: stamp.size,
        mtime_ns: stamp.mtime_ns,
        ino: stamp.ino,
        dev: stamp.dev,
        ctime_ns: stamp.ctime_ns,
        sha256,
        owner: Some(owner),
        lake_key,
        policy: entry.name().to_owned(),
        rule: job.rule,
    };
    match inner.propose(Command::RecordIntent(intent)).await? {
        Ok(Applied::Changed) => {
            pause(PausePoint::AfterIntent).await;
            feed.push();
            Ok(Started::Intent)
        }
        Ok(Applied::Unchanged) => {
            // A proposal sent again after its answer was lost (a leader
            // change) finds its own first attempt committed: the record then
            // carries this move id, and the intent is this run's.
            let ours = inner
                .catalog
                .read(move |s| s.file(&key).is_some_and(|r| r.move_id == move_id))
                .await?;
            if ours {
                feed.push();
                Ok(Started::Intent)
            } else {
                Ok(Started::Unchanged)
            }
        }
        Err(r) => {
            tracing::warn!(%key, reason = %r, "intent refused");
            Ok(Started::Error)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(size: u64) -> Job {
        Job {
            path: format!("f{size}"),
            seen: Stamp {
                size,
                mtime_ns: 0,
                ino: 0,
                dev: 0,
                ctime_ns: 0,
            },
            rule: "r".into(),
            record: None,
            abandon_first: false,
        }
    }

    #[test]
    fn mover_hash_groups_bundle_small_files_only() {
        let sizes = |groups: &[Vec<Job>]| -> Vec<Vec<u64>> {
            groups
                .iter()
                .map(|g| g.iter().map(|j| j.seen.size).collect())
                .collect()
        };
        // 20 small files: 16, then 4.
        let g = hash_groups((0..20).map(|_| job(1000)).collect());
        assert_eq!(
            g.iter().map(Vec::len).collect::<Vec<_>>(),
            vec![GROUP_FILES, 4]
        );
        // A large file stands alone and ends the run before it.
        let g = hash_groups(vec![job(1), job(SMALL_FILE), job(2), job(3)]);
        assert_eq!(sizes(&g), vec![vec![1], vec![SMALL_FILE], vec![2, 3]]);
        // The byte bound: four files of 255 KiB, then a fifth starts a group.
        let s = SMALL_FILE - 1024;
        let g = hash_groups((0..5).map(|_| job(s)).collect());
        assert_eq!(sizes(&g), vec![vec![s; 4], vec![s]]);
        // Order is kept; nothing is lost.
        assert_eq!(hash_groups(Vec::new()).len(), 0);
    }
}
