//! Recall: moved files come back from the lake into their volume, checked,
//! durable, with their recorded mtime, never over a file that is there.
//!
//! Everything is done beneath the volume's root descriptor
//! ([`super::anchored`]): missing directories are made one component at a
//! time, the download goes to a file created `O_EXCL | O_NOFOLLOW` in its
//! directory, owner, mode and mtime are set through that file's descriptor
//! and the rename into place is relative to the directory's. A directory
//! swapped for a symlink fails the recall of the files beneath it and
//! leaves the symlink's target alone.

use std::ffi::{OsStr, OsString};
use std::fs::{File, FileTimes};
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

use super::anchored::{Dir, VolumeRoot};
use super::clock::from_nanos;
use super::error::MoverError;
use super::hash::{Hashed, hash_file};
use super::local::{Stamp, Temp, temp_name};
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
    let recs = matched;
    let opened = tokio::task::spawn_blocking(move || {
        let root = VolumeRoot::open(&root)?;
        let here = recs
            .into_iter()
            .map(|r| {
                let here = local_state(&root, &r);
                (r, here)
            })
            .collect::<Vec<_>>();
        Ok::<_, io::Error>((Arc::new(root), here))
    })
    .await
    .map_err(|e| MoverError::Task(e.to_string()))?;
    let (root, classified) = opened.map_err(|source| MoverError::VolumeRoot {
        volume: volume.to_owned(),
        source,
    })?;

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

fn local_state(root: &VolumeRoot, rec: &FileRecord) -> io::Result<Local> {
    let rel = Path::new(&rec.key.path);
    let Some(m) = root.lstat(rel)? else {
        return Ok(Local::Missing);
    };
    if !m.is_file() {
        return Ok(Local::Other);
    }
    let stamp = Stamp::of(&m);
    if rec.state == FileState::Archived && Stamp::of_record(rec).differs(&stamp).is_none() {
        return Ok(Local::Same);
    }
    if stamp.size != rec.size {
        return Ok(Local::Other);
    }
    Ok(match hash_file(root, rel, &stamp)? {
        Hashed::Done { sha256, .. } if sha256 == rec.sha256.0 => Local::Same,
        _ => Local::Other,
    })
}

async fn recall_one<C: CatalogClient>(
    inner: &Inner<C>,
    root: &Arc<VolumeRoot>,
    rec: &FileRecord,
) -> Result<Done, CatalogError> {
    let entry = match lake_of(inner, rec) {
        Ok(e) => e,
        Err(why) => return Ok(Done::Failed(why)),
    };
    let (root, rel, move_id) = (root.clone(), PathBuf::from(&rec.key.path), rec.move_id);
    let prepared = tokio::task::spawn_blocking(move || {
        let (dir, name) = root.mkdirs(&rel)?;
        let tmp = temp_name(&name, Temp::Recall, move_id);
        // A recall of this move that stopped half way left it.
        if let Err(e) = dir.unlink(&tmp)
            && e.kind() != io::ErrorKind::NotFound
        {
            return Err(e);
        }
        // Root's until its owner and mode are restored.
        let file = dir.create_new(&tmp, 0o600)?;
        Ok::<_, io::Error>((dir, name, tmp, file))
    })
    .await
    .map_err(io::Error::other)
    .and_then(|r| r);
    let (dir, name, tmp, file) = match prepared {
        Ok(p) => p,
        Err(e) => return Ok(Done::Failed(e.to_string())),
    };
    // Streamed to the temporary file, hashed and size-checked, fsynced.
    let file = match entry
        .lake
        .download_into(
            &rec.lake_key,
            file,
            &dir.shown(&tmp),
            rec.size,
            rec.sha256.0,
        )
        .await
    {
        Ok(f) => f,
        Err(e) => {
            if e.is_transient() {
                entry.set_up(false, &inner.metrics);
            }
            let _ = dir.unlink(&tmp);
            return Ok(Done::Failed(match e {
                LakeError::NotFound { .. } => {
                    format!("object {} missing in the lake", rec.lake_key)
                }
                e => e.to_string(),
            }));
        }
    };
    let mtime = from_nanos(rec.mtime_ns);
    let owner = rec.owner;
    let placed = tokio::task::spawn_blocking(move || place(&dir, &name, &tmp, file, mtime, owner))
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

/// The lake to read `rec`'s object from, with the configuration
/// (credentials) of a loaded policy that names it: the lake the record was
/// verified in, whatever its policy names now. A record archived before
/// strata kept its lake is read from its policy's lake, the only one
/// strata knew of then.
fn lake_of<C: CatalogClient>(
    inner: &Inner<C>,
    rec: &FileRecord,
) -> Result<Arc<super::shared::PolicyEntry>, String> {
    match &rec.lake {
        Some(lake) => inner.entry_for_lake(lake, &rec.policy).ok_or_else(|| {
            format!(
                "archived in lake {lake}, and no loaded policy names that lake (load one with it to recall the file)"
            )
        }),
        None => inner.entry(&rec.policy).ok_or_else(|| {
            format!(
                "policy {} is not loaded (its lake is unknown)",
                rec.policy
            )
        }),
    }
}

/// Owner first (a change of owner clears setuid and setgid), then the
/// permission bits, both through the descriptor. A process that may not
/// give files away (no `CAP_CHOWN`) keeps the file as its own and says so:
/// the content matters more than its owner.
fn restore_owner(f: &File, dest: &Path, o: Ownership) -> io::Result<()> {
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

/// Gives the downloaded file `tmp` (open as `file`) its recorded owner,
/// permission bits and mtime, makes that durable, and renames it to `name`
/// in `dir` unless a file appeared there meanwhile (false). A record from
/// before strata kept owners gets mode 0644.
fn place(
    dir: &Dir,
    name: &OsStr,
    tmp: &OsString,
    file: File,
    mtime: std::time::SystemTime,
    owner: Option<Ownership>,
) -> io::Result<bool> {
    let finish = || -> io::Result<()> {
        match owner {
            Some(o) => restore_owner(&file, &dir.shown(name), o)?,
            None => file.set_permissions(std::fs::Permissions::from_mode(0o644))?,
        }
        file.set_times(FileTimes::new().set_modified(mtime))?;
        file.sync_all()
    };
    if let Err(e) = finish() {
        let _ = dir.unlink(tmp);
        return Err(e);
    }
    drop(file);
    match dir.rename_noreplace(tmp, name) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            dir.unlink(tmp)?;
            return Ok(false);
        }
        Err(e) => {
            let _ = dir.unlink(tmp);
            return Err(e);
        }
    }
    dir.sync()?;
    Ok(true)
}
