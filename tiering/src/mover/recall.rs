//! Recall: moved files come back from the lake into their volume, checked,
//! durable, with their recorded mtime, never over a file that is there.

use std::fs::{FileTimes, OpenOptions};
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures::StreamExt;
use globset::GlobBuilder;

use crate::catalog::{
    CatalogClient, CatalogError, Command, FileFilter, FileKey, FileRecord, FileState, NODE_LABEL,
    Ownership,
};
use crate::lake::LakeError;

use super::clock::from_nanos;
use super::error::MoverError;
use super::hash::{Hashed, hash_file};
use super::local::{Stamp, Temp, fsync_dir, lstat, parent, rename_noreplace, temp_path};
use super::pause::{PausePoint, pause};
use super::shared::Inner;

/// How far a recall has come: files and bytes done of the total to download.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RecallProgress {
    /// Files finished (recalled, or failed).
    pub files_done: u64,
    /// Files to download.
    pub files_total: u64,
    /// Bytes of the finished files.
    pub bytes_done: u64,
    /// Bytes to download.
    pub bytes_total: u64,
}

/// What a recall did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RecallReport {
    /// Moved files (released or archived) whose path matched.
    pub matched: u64,
    /// Files downloaded, put in place and recorded `Recalled`.
    pub recalled: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Files already local with the archived content (a release not yet
    /// done, or a recall that stopped after its rename): recorded `Recalled`.
    pub already_local: u64,
    /// Paths now holding other content: left alone, nothing overwritten.
    pub conflicts: u64,
    /// Files that could not be recalled (the lake, a missing policy, local I/O).
    pub failed: u64,
    /// The first few failures, `path: reason`.
    pub errors: Vec<String>,
}

/// Most failures kept in [`RecallReport::errors`].
const MAX_ERRORS: usize = 20;

/// Where a matched file stands locally.
enum Local {
    Missing,
    /// The archived content is there already.
    Same,
    /// Something else is at the path.
    Other,
}

enum Done {
    Recalled(u64),
    Conflict,
    Failed(String),
}

pub(crate) async fn recall<C: CatalogClient>(
    inner: &Arc<Inner<C>>,
    volume: &str,
    glob: &str,
    mut progress: impl FnMut(RecallProgress),
) -> Result<RecallReport, MoverError> {
    let matcher = GlobBuilder::new(glob)
        .literal_separator(true)
        .backslash_escape(true)
        .build()
        .map_err(|e| MoverError::InvalidGlob(format!("{glob:?}: {}", e.kind())))?
        .compile_matcher();
    let _hold = inner
        .gate
        .hold(volume)
        .ok_or_else(|| MoverError::Withdrawn(volume.to_owned()))?;
    let id = volume.to_owned();
    let registered = inner
        .catalog
        .read(move |s| s.volume(&id).cloned())
        .await?
        .ok_or_else(|| MoverError::UnknownVolume(volume.to_owned()))?;
    if !inner.options.scope.includes(&registered) {
        return Err(MoverError::OtherNode {
            volume: volume.to_owned(),
            node: registered
                .labels
                .get(NODE_LABEL)
                .cloned()
                .unwrap_or_else(|| "?".to_owned()),
        });
    }
    let root = registered.path;
    let root = PathBuf::from(root);

    // The moved files of the volume whose path matches.
    let mut matched = Vec::new();
    let mut after: Option<FileKey> = None;
    loop {
        let (filter, from) = (
            FileFilter {
                volume: Some(volume.to_owned()),
                ..FileFilter::default()
            },
            after.take(),
        );
        let (items, next) = inner
            .catalog
            .read(move |s| {
                let page = s.files(&filter, from.as_ref(), 1024);
                let items: Vec<FileRecord> = page
                    .items
                    .into_iter()
                    .filter(|r| matches!(r.state, FileState::Released | FileState::Archived))
                    .cloned()
                    .collect();
                (items, page.next)
            })
            .await?;
        matched.extend(items.into_iter().filter(|r| matcher.is_match(&r.key.path)));
        match next {
            Some(n) => after = Some(n),
            None => break,
        }
    }

    let mut report = RecallReport {
        matched: matched.len() as u64,
        ..RecallReport::default()
    };
    let (dir, recs) = (root.clone(), matched);
    let classified = tokio::task::spawn_blocking(move || {
        recs.into_iter()
            .map(|r| {
                let here = local_state(&dir.join(&r.key.path), &r);
                (r, here)
            })
            .collect::<Vec<_>>()
    })
    .await
    .map_err(|e| MoverError::Task(e.to_string()))?;

    let mut downloads = Vec::new();
    for (rec, here) in classified {
        match here {
            Ok(Local::Missing) => downloads.push(rec),
            Ok(Local::Same) => {
                let cmd = Command::MarkRecalled {
                    key: rec.key.clone(),
                    move_id: rec.move_id,
                    sha256: rec.sha256,
                };
                match inner.propose(cmd).await? {
                    Ok(_) => report.already_local += 1,
                    Err(r) => note(&mut report, &rec, &r.to_string()),
                }
            }
            Ok(Local::Other) => {
                tracing::warn!(key = %rec.key, "recall: another file is at the path; left alone");
                report.conflicts += 1;
            }
            Err(e) => note(&mut report, &rec, &e.to_string()),
        }
    }

    let mut p = RecallProgress {
        files_total: downloads.len() as u64,
        bytes_total: downloads.iter().map(|r| r.size).sum(),
        ..RecallProgress::default()
    };
    progress(p);
    let mut done = futures::stream::iter(downloads.into_iter().map(|rec| {
        let root = root.clone();
        async move {
            let r = recall_one(inner, &root, &rec).await;
            (rec, r)
        }
    }))
    .buffer_unordered(inner.options.recall_concurrency);
    while let Some((rec, r)) = done.next().await {
        match r? {
            Done::Recalled(bytes) => {
                report.recalled += 1;
                report.bytes += bytes;
            }
            Done::Conflict => report.conflicts += 1,
            Done::Failed(why) => note(&mut report, &rec, &why),
        }
        p.files_done += 1;
        p.bytes_done += rec.size;
        progress(p);
    }
    Ok(report)
}

fn note(report: &mut RecallReport, rec: &FileRecord, why: &str) {
    tracing::warn!(key = %rec.key, why, "recall failed");
    report.failed += 1;
    if report.errors.len() < MAX_ERRORS {
        report.errors.push(format!("{}: {why}", rec.key.path));
    }
}

fn local_state(path: &Path, rec: &FileRecord) -> io::Result<Local> {
    let Some(m) = lstat(path)? else {
        return Ok(Local::Missing);
    };
    if !m.is_file() {
        return Ok(Local::Other);
    }
    let stamp = Stamp::of(&m);
    if rec.state == FileState::Archived && stamp == Stamp::of_record(rec) {
        return Ok(Local::Same);
    }
    if stamp.size != rec.size {
        return Ok(Local::Other);
    }
    Ok(match hash_file(path, &stamp)? {
        Hashed::Done { sha256, .. } if sha256 == rec.sha256.0 => Local::Same,
        _ => Local::Other,
    })
}

async fn recall_one<C: CatalogClient>(
    inner: &Inner<C>,
    root: &Path,
    rec: &FileRecord,
) -> Result<Done, CatalogError> {
    let Some(entry) = inner.entry(&rec.policy) else {
        return Ok(Done::Failed(format!(
            "policy {} is not loaded (its lake is unknown)",
            rec.policy
        )));
    };
    let local = root.join(&rec.key.path);
    let tmp = temp_path(&local, Temp::Recall, rec.move_id);
    let prepared = {
        let tmp = tmp.clone();
        tokio::task::spawn_blocking(move || {
            std::fs::create_dir_all(parent(&tmp))?;
            // A recall of this move that stopped half way left it.
            match std::fs::remove_file(&tmp) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
                _ => Ok(()),
            }
        })
        .await
        .map_err(io::Error::other)
        .and_then(|r| r)
    };
    if let Err(e) = prepared {
        return Ok(Done::Failed(e.to_string()));
    }
    // Streamed to a temporary file, hashed and size-checked, fsynced.
    if let Err(e) = entry
        .lake
        .download(&rec.lake_key, &tmp, rec.size, rec.sha256.0)
        .await
    {
        if e.is_transient() {
            entry.set_up(false, &inner.metrics);
        }
        let _ = std::fs::remove_file(&tmp);
        return Ok(Done::Failed(match e {
            LakeError::NotFound { .. } => format!("object {} missing in the lake", rec.lake_key),
            e => e.to_string(),
        }));
    }
    let mtime = from_nanos(rec.mtime_ns);
    let owner = rec.owner;
    let placed = tokio::task::spawn_blocking(move || place(&tmp, &local, mtime, owner))
        .await
        .map_err(io::Error::other)
        .and_then(|r| r);
    match placed {
        Ok(true) => {}
        Ok(false) => return Ok(Done::Conflict),
        Err(e) => return Ok(Done::Failed(e.to_string())),
    }
    pause(PausePoint::AfterRename).await;
    let cmd = Command::MarkRecalled {
        key: rec.key.clone(),
        move_id: rec.move_id,
        sha256: rec.sha256,
    };
    Ok(match inner.propose(cmd).await? {
        Ok(_) => {
            inner.metrics.recalled(rec.size);
            Done::Recalled(rec.size)
        }
        Err(r) => Done::Failed(r.to_string()),
    })
}

/// Owner first (a change of owner clears setuid and setgid), then the
/// permission bits. A process that may not give files away (no
/// `CAP_CHOWN`) keeps the file as its own and says so: the content matters
/// more than its owner.
fn restore_owner(f: &std::fs::File, dest: &Path, o: Ownership) -> io::Result<()> {
    match std::os::unix::fs::fchown(f, Some(o.uid), Some(o.gid)) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EPERM) => {
            tracing::warn!(
                path = %dest.display(),
                uid = o.uid,
                gid = o.gid,
                "recall: may not restore the file's owner (needs CAP_CHOWN); it stays this process's"
            );
        }
        Err(e) => return Err(e),
    }
    f.set_permissions(std::fs::Permissions::from_mode(o.mode))
}

/// Gives the downloaded file its recorded owner, permission bits and mtime,
/// makes that durable, and renames it into place unless a file appeared
/// there meanwhile (false).
fn place(
    tmp: &Path,
    dest: &Path,
    mtime: std::time::SystemTime,
    owner: Option<Ownership>,
) -> io::Result<bool> {
    let f = OpenOptions::new().write(true).open(tmp)?;
    if let Some(o) = owner {
        restore_owner(&f, dest, o)?;
    }
    f.set_times(FileTimes::new().set_modified(mtime))?;
    f.sync_all()?;
    drop(f);
    match rename_noreplace(tmp, dest) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            std::fs::remove_file(tmp)?;
            return Ok(false);
        }
        Err(e) => {
            let _ = std::fs::remove_file(tmp);
            return Err(e);
        }
    }
    fsync_dir(parent(dest))?;
    Ok(true)
}
