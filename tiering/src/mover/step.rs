//! The upload–verify–release pipeline of one file: carries a record from
//! where the catalog says it stands to its next resting state, one committed
//! step at a time.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use crate::catalog::{CatalogClient, CatalogError, Command, FileRecord, FileState, Rejected};
use crate::lake::{LakeError, Opener, SentObject, UploadOutcome, VerifiedBy, VersionCheck};
use crate::metrics::FailureReason;
use crate::policy::Action;

use super::DrainReport;
use super::anchored::{VolumeRoot, is_symlink};
use super::clock;
use super::drain::Slot;
use super::local::Stamp;
use super::pause::{PausePoint, pause};
use super::rebind;
use super::release::{Release, release};
use super::shared::{Inner, PolicyEntry};

/// Whether the pipeline goes on with the next step.
pub(super) enum Flow {
    Continue,
    Stop,
}

/// One file's move, from its record onwards: upload (`Intent`), verify
/// (`Uploaded`), release (`Archived`, action `move`). Per-file failures are
/// recorded in the catalog and counted; only a catalog that does not answer
/// is an error.
pub(crate) async fn advance<C: CatalogClient>(
    inner: &Inner<C>,
    entry: &PolicyEntry,
    mut rec: FileRecord,
    root: &Path,
    slot: &mut Slot,
) -> Result<DrainReport, CatalogError> {
    let mut t = DrainReport::default();
    let local = Local::new(root, &rec.key.path);
    // The MD5 of what this call uploaded, if anything: lets verification
    // settle for the lake's own digest instead of reading the object back.
    let mut sent_md5 = None;
    let mut listed = false;
    let mut verified_here = false;
    if rec.state == FileState::Intent {
        if let Flow::Stop = upload(inner, entry, &rec, &local, &mut sent_md5, &mut t).await? {
            return Ok(t);
        }
        rec.state = FileState::Uploaded;
        if let Some(md5) = sent_md5.filter(|_| entry.confirmer.lists()) {
            // Wait for a listing of the directory without holding a slot.
            slot.release();
            let sent = SentObject {
                key: rec.lake_key.clone(),
                size: rec.size,
                md5,
            };
            listed = entry.confirmer.confirm(sent).await;
            slot.take().await;
        }
    }
    if rec.state == FileState::Uploaded {
        if let Flow::Stop = verify(inner, entry, &mut rec, &local, sent_md5, listed, &mut t).await?
        {
            return Ok(t);
        }
        rec.state = FileState::Archived;
        verified_here = true;
    }
    if rec.state == FileState::Archived && entry.action_of(&rec.rule) == Some(Action::Move) {
        if verified_here {
            // Verified just now, in the policy's lake: nothing to look at again.
            release_step(inner, entry, &rec, root, &mut t).await?;
        } else {
            rebind::release_archived(inner, entry, rec, root, &mut t).await?;
        }
    }
    Ok(t)
}

async fn upload<C: CatalogClient>(
    inner: &Inner<C>,
    entry: &PolicyEntry,
    rec: &FileRecord,
    local: &Local,
    sent_md5: &mut Option<[u8; 16]>,
    t: &mut DrainReport,
) -> Result<Flow, CatalogError> {
    if let Flow::Stop = put(inner, entry, rec, local, sent_md5, t).await? {
        return Ok(Flow::Stop);
    }
    pause(PausePoint::AfterUpload).await;
    let cmd = Command::MarkUploaded {
        key: rec.key.clone(),
        move_id: rec.move_id,
        sha256: rec.sha256,
    };
    if let Err(r) = inner.propose(cmd).await? {
        return Ok(stale(t, rec, &r));
    }
    pause(PausePoint::AfterMarkUploaded).await;
    Ok(Flow::Continue)
}

/// The conditional upload itself; a file that changed is abandoned.
/// `sent_md5` learns the MD5 of the bytes sent by a single-request upload.
async fn put<C: CatalogClient>(
    inner: &Inner<C>,
    entry: &PolicyEntry,
    rec: &FileRecord,
    local: &Local,
    sent_md5: &mut Option<[u8; 16]>,
    t: &mut DrainReport,
) -> Result<Flow, CatalogError> {
    *sent_md5 = None;
    // A touch or a rewrite since hashing makes the file hot again: only the
    // recorded version is sent, as the open file's fstat says.
    let recorded = Stamp::of_record(rec);
    let check: VersionCheck = Arc::new(move |m| match Stamp::of(m).differs(&recorded) {
        None => Ok(()),
        Some((field, now, then)) => Err(format!("{field} is {now}, recorded {then}")),
    });
    let result = entry
        .lake
        .upload_from(
            &local.shown,
            local.opener(),
            &rec.lake_key,
            rec.sha256.0,
            rec.size,
            Some(check),
        )
        .await;
    match result {
        Ok(UploadOutcome::AlreadyPresent) => {
            entry.set_up(true, &inner.metrics);
            t.already_present += 1;
            Ok(Flow::Continue)
        }
        Ok(outcome) => {
            if let UploadOutcome::Uploaded { sent_md5: md5, .. } = outcome {
                *sent_md5 = md5;
            }
            entry.set_up(true, &inner.metrics);
            inner.metrics.uploaded(entry.name(), rec.size);
            t.uploaded += 1;
            t.uploaded_bytes += rec.size;
            Ok(Flow::Continue)
        }
        Err(LakeError::SourceChanged { reason, .. }) => {
            abandon(
                inner,
                entry,
                rec,
                t,
                &format!("changed before or during upload: {reason}"),
            )
            .await
        }
        Err(LakeError::LocalIo { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            abandon(inner, entry, rec, t, "removed before upload").await
        }
        Err(LakeError::LocalIo { source, .. }) if is_symlink(&source) => {
            abandon(inner, entry, rec, t, &source.to_string()).await
        }
        Err(e) => fail(inner, entry, rec, t, e).await,
    }
}

/// Verifies the object in the policy's lake (uploading it again if it is
/// missing or other bytes), then records `MarkArchived` bound to that lake;
/// `rec` learns the lake and the verification's time.
pub(super) async fn verify<C: CatalogClient>(
    inner: &Inner<C>,
    entry: &PolicyEntry,
    rec: &mut FileRecord,
    local: &Local,
    mut sent_md5: Option<[u8; 16]>,
    listed: bool,
    t: &mut DrainReport,
) -> Result<Flow, CatalogError> {
    let lake = &entry.lake;
    let mut result = if listed {
        Ok(VerifiedBy::Listing)
    } else {
        lake.verify(&rec.lake_key, rec.size, rec.sha256.0, sent_md5)
            .await
    };
    if let Err(LakeError::NotFound { .. }) = result {
        // The object vanished after its upload was recorded (a lake that lost
        // data, a bucket emptied by hand): upload it again, idempotently.
        tracing::warn!(key = %rec.key, lake_key = rec.lake_key, "uploaded object missing; uploading again");
        if let Flow::Stop = put(inner, entry, rec, local, &mut sent_md5, t).await? {
            return Ok(Flow::Stop);
        }
        result = lake
            .verify(&rec.lake_key, rec.size, rec.sha256.0, sent_md5)
            .await;
    }
    if let Err(LakeError::Mismatch { .. }) = &result {
        // Other bytes under this version's own key (a torn write, a lake
        // that altered the object): the key is this file version's alone
        // (volume, path and content hash), so the object is garbage. Replace
        // it once per attempt; a lake that keeps altering it keeps failing,
        // and nothing is ever released on its word.
        inner.metrics.verified(false);
        tracing::warn!(key = %rec.key, lake_key = rec.lake_key, "object in the lake does not match; replacing it");
        result = match lake.delete(&rec.lake_key).await {
            Ok(()) => {
                if let Flow::Stop = put(inner, entry, rec, local, &mut sent_md5, t).await? {
                    return Ok(Flow::Stop);
                }
                lake.verify(&rec.lake_key, rec.size, rec.sha256.0, sent_md5)
                    .await
            }
            Err(e) => Err(e),
        };
    }
    match result {
        Ok(by) => {
            entry.set_up(true, &inner.metrics);
            inner.metrics.verified(true);
            inner.metrics.verified_by(by);
        }
        Err(e) => {
            if matches!(e, LakeError::Mismatch { .. } | LakeError::NotFound { .. }) {
                inner.metrics.verified(false);
            }
            return fail(inner, entry, rec, t, e).await;
        }
    }
    let verified_at = clock::now();
    pause(PausePoint::AfterVerify).await;
    let lake = lake.location().to_owned();
    let cmd = Command::MarkArchived {
        key: rec.key.clone(),
        move_id: rec.move_id,
        sha256: rec.sha256,
        size: rec.size,
        lake: Some(lake.clone()),
        verified_at: Some(verified_at),
    };
    if let Err(r) = inner.propose(cmd).await? {
        return Ok(stale(t, rec, &r));
    }
    rec.lake = Some(lake);
    rec.verified_at = Some(verified_at);
    t.archived += 1;
    pause(PausePoint::AfterMarkArchived).await;
    Ok(Flow::Continue)
}

/// Frees the local bytes of an archived file if it is still the version
/// hashed and nobody has it open; a changed file is abandoned (it stays).
pub(crate) async fn release_step<C: CatalogClient>(
    inner: &Inner<C>,
    entry: &PolicyEntry,
    rec: &FileRecord,
    root: &Path,
    t: &mut DrainReport,
) -> Result<(), CatalogError> {
    let recorded = Stamp::of_record(rec);
    let (move_id, lease) = (rec.move_id, inner.options.lease);
    let local = Local::new(root, &rec.key.path);
    let shown = local.shown.display().to_string();
    let outcome = tokio::task::spawn_blocking(move || {
        let root = VolumeRoot::open(&local.root)?;
        release(&root, &local.rel, &recorded, move_id, lease)
    })
    .await
    .map_err(std::io::Error::other)
    .and_then(|r| r);
    let removed = match outcome {
        Ok(Release::Busy) => {
            tracing::debug!(path = shown, "release: file is open; kept for now");
            t.busy += 1;
            return Ok(());
        }
        Ok(Release::Blocked(why)) => {
            // Nothing was removed; the record stays archived until someone
            // looks at what is in the way.
            tracing::error!(path = shown, why, "release refused");
            t.failed += 1;
            return Ok(());
        }
        Ok(Release::Changed {
            field,
            recorded,
            observed,
        }) => {
            let why = format!("changed since hashing ({field} was {recorded}, is {observed})");
            abandon(inner, entry, rec, t, &why).await?;
            return Ok(());
        }
        Err(e) => {
            // Nothing was removed; the record stays archived and a later drain retries.
            tracing::warn!(path = shown, error = %e, "release failed");
            t.failed += 1;
            return Ok(());
        }
        Ok(Release::Removed) => true,
        Ok(Release::Gone) => false,
    };
    pause(PausePoint::AfterUnlink).await;
    let cmd = Command::MarkReleased {
        key: rec.key.clone(),
        move_id: rec.move_id,
        sha256: rec.sha256,
        size: recorded.size,
        mtime_ns: recorded.mtime_ns,
        ino: recorded.ino,
        dev: recorded.dev,
        ctime_ns: recorded.ctime_ns,
    };
    if let Err(r) = inner.propose(cmd).await? {
        stale(t, rec, &r);
        return Ok(());
    }
    t.released += 1;
    let freed = if removed { rec.size } else { 0 };
    t.released_bytes += freed;
    inner.metrics.released(entry.name(), freed);
    pause(PausePoint::AfterMarkReleased).await;
    Ok(())
}

/// A file of a volume as the pipeline names it: its volume's root (opened
/// anew on the blocking thread of each step) and its path beneath it.
pub(super) struct Local {
    root: PathBuf,
    rel: PathBuf,
    shown: PathBuf,
}

impl Local {
    pub(super) fn new(root: &Path, rel: &str) -> Self {
        Self {
            root: root.to_owned(),
            rel: PathBuf::from(rel),
            shown: root.join(rel),
        }
    }

    /// Opens the file for an upload beneath the root descriptor.
    fn opener(&self) -> Opener {
        let (root, rel) = (self.root.clone(), self.rel.clone());
        Arc::new(move || VolumeRoot::open(&root)?.open_read(&rel))
    }
}

async fn abandon<C: CatalogClient>(
    inner: &Inner<C>,
    entry: &PolicyEntry,
    rec: &FileRecord,
    t: &mut DrainReport,
    why: &str,
) -> Result<Flow, CatalogError> {
    let cmd = Command::MarkAbandoned {
        key: rec.key.clone(),
        move_id: rec.move_id,
        sha256: rec.sha256,
    };
    match inner.propose(cmd).await? {
        Ok(_) => {
            tracing::info!(key = %rec.key, why, "move abandoned: the file is hot again and stays");
            inner.metrics.abandoned(entry.name());
            t.abandoned += 1;
        }
        Err(r) => {
            stale(t, rec, &r);
        }
    }
    Ok(Flow::Stop)
}

/// Records a failed step with its back-off; a transient failure marks the lake down.
pub(super) async fn fail<C: CatalogClient>(
    inner: &Inner<C>,
    entry: &PolicyEntry,
    rec: &FileRecord,
    t: &mut DrainReport,
    err: LakeError,
) -> Result<Flow, CatalogError> {
    let transient = err.is_transient();
    inner
        .metrics
        .upload_failed(entry.name(), reason(&err, transient));
    if transient {
        entry.set_up(false, &inner.metrics);
        t.lake_down = true;
    }
    let attempt = rec.attempts.saturating_add(1);
    let delay = inner.options.backoff.delay(attempt, clock::random_u64());
    tracing::warn!(key = %rec.key, attempt, retry_in = ?delay, error = %err, "move step failed");
    let cmd = Command::RecordFailure {
        key: rec.key.clone(),
        move_id: rec.move_id,
        sha256: rec.sha256,
        attempt,
        error: err.to_string(),
        next_attempt_at: clock::timestamp(SystemTime::now() + delay),
    };
    match inner.propose(cmd).await? {
        Ok(_) => t.failed += 1,
        Err(r) => {
            stale(t, rec, &r);
        }
    }
    Ok(Flow::Stop)
}

fn reason(err: &LakeError, transient: bool) -> FailureReason {
    match err {
        _ if transient => FailureReason::Unreachable,
        LakeError::Conflict { .. } => FailureReason::Conflict,
        LakeError::Mismatch { .. } | LakeError::NotFound { .. } => FailureReason::Mismatch,
        LakeError::LocalIo { .. } | LakeError::SourceChanged { .. } => FailureReason::LocalIo,
        _ => FailureReason::Refused,
    }
}

/// The record moved on without us (another agent, a newer version): drop this move.
fn stale(t: &mut DrainReport, rec: &FileRecord, r: &Rejected) -> Flow {
    tracing::info!(key = %rec.key, reason = %r, "catalog refused a step: the record moved on");
    t.stale += 1;
    Flow::Stop
}
