//! The move of one file, decided from that file's record alone.
//!
//! Kept apart from [`State`](super::State) so that a store which does not
//! hold every record in memory (the RocksDB state machine) can read one
//! record, call [`decide`] and write the effect back, with the same rules.

use super::command::{Command, Intent};
use super::outcome::Rejected;
use super::types::{FileKey, FileRecord, FileState, Sha256, Superseded, Timestamp};
use super::validate::{
    MAX_ERROR_LEN, MAX_NAME_LEN, MAX_PATH_LEN, check_lake, check_name, check_path, invalid,
    truncate,
};

/// What an accepted file command does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct FileEffect {
    /// The record's new value.
    pub(crate) record: FileRecord,
    /// A released version replaced by new content: keep its object on record.
    pub(crate) superseded: Option<Superseded>,
    /// The record's lake object is current again: drop it from the superseded list.
    pub(crate) current_again: bool,
}

impl FileEffect {
    fn put(record: FileRecord) -> Option<Self> {
        Some(Self {
            record,
            superseded: None,
            current_again: false,
        })
    }
}

/// Decides a file command against the file's current record (`None` if the
/// catalog has none) as of `at`. `Ok(None)`: already in effect, nothing to
/// write. Commands that are not about a file also answer `Ok(None)`.
pub(crate) fn decide(
    current: Option<&FileRecord>,
    volume_registered: bool,
    cmd: &Command,
    at: Timestamp,
) -> Result<Option<FileEffect>, Rejected> {
    match cmd {
        Command::RecordIntent(i) => intent(current, volume_registered, i, at),
        Command::MarkUploaded {
            key,
            move_id,
            sha256,
        } => {
            let r = record_for(current, key, *move_id, sha256)?;
            match r.state {
                FileState::Intent => Ok(step(r, FileState::Uploaded, at)),
                FileState::Uploaded | FileState::Archived | FileState::Released => Ok(None),
                from => Err(transition(key, from, FileState::Uploaded)),
            }
        }
        Command::MarkArchived {
            key,
            move_id,
            sha256,
            size,
            lake,
            verified_at,
        } => {
            let r = record_for(current, key, *move_id, sha256)?;
            if r.size != *size {
                return Err(Rejected::SizeMismatch {
                    key: key.clone(),
                    recorded: r.size,
                    lake: *size,
                });
            }
            if let Some(l) = lake {
                check_lake("lake", l)?;
            }
            let bind = |e: Option<FileEffect>| {
                e.map(|mut e| {
                    e.record.lake = lake.clone();
                    e.record.verified_at = Some(verified_at.unwrap_or(at));
                    e
                })
            };
            match r.state {
                FileState::Uploaded => Ok(bind(step(r, FileState::Archived, at))),
                // A verification later than the one on record (in the
                // policy's lake of now, or after the recorded copy was
                // found missing): the record is bound to it, so the file
                // is released and recalled against the lake that holds it.
                // A retry, or a verification that took longer to commit,
                // changes nothing.
                // Only a command that says when it verified can be later
                // than another: one that does not (an old agent's) changes
                // nothing here.
                FileState::Archived
                    if lake.is_some()
                        && verified_at.is_some_and(|new| r.verified_at.is_none_or(|v| new > v)) =>
                {
                    Ok(bind(step(r, FileState::Archived, at)))
                }
                // Released: no local copy is left to put in another lake.
                FileState::Archived | FileState::Released => Ok(None),
                from => Err(transition(key, from, FileState::Archived)),
            }
        }
        Command::MarkReleased {
            key,
            move_id,
            sha256,
            size,
            mtime_ns,
            ino,
            dev,
            ctime_ns,
        } => {
            let r = record_for(current, key, *move_id, sha256)?;
            match r.state {
                FileState::Archived => {}
                FileState::Released => return Ok(None),
                state => {
                    return Err(Rejected::NotArchived {
                        key: key.clone(),
                        state,
                    });
                }
            }
            let changed = |field: &str, recorded: String, observed: String| {
                Err(Rejected::ChangedSinceHashing {
                    key: key.clone(),
                    field: field.to_owned(),
                    recorded,
                    observed,
                })
            };
            if r.size != *size {
                return changed("size", r.size.to_string(), size.to_string());
            }
            if r.mtime_ns != *mtime_ns {
                return changed("mtime_ns", r.mtime_ns.to_string(), mtime_ns.to_string());
            }
            if r.ino != *ino {
                return changed("ino", r.ino.to_string(), ino.to_string());
            }
            // Zero in the record: hashed before strata kept the field, so
            // there is nothing to compare with. A record that knows it
            // accepts only the same value (an agent that did not look sends
            // zero, and is refused).
            if r.dev != 0 && r.dev != *dev {
                return changed("dev", r.dev.to_string(), dev.to_string());
            }
            if r.ctime_ns != 0 && r.ctime_ns != *ctime_ns {
                return changed("ctime_ns", r.ctime_ns.to_string(), ctime_ns.to_string());
            }
            Ok(step(r, FileState::Released, at).map(|e| FileEffect {
                current_again: true,
                ..e
            }))
        }
        Command::MarkAbandoned {
            key,
            move_id,
            sha256,
        } => {
            let r = record_for(current, key, *move_id, sha256)?;
            match r.state {
                FileState::Intent | FileState::Uploaded | FileState::Archived => {
                    Ok(step(r, FileState::Abandoned, at))
                }
                FileState::Abandoned => Ok(None),
                from => Err(transition(key, from, FileState::Abandoned)),
            }
        }
        Command::RecordFailure {
            key,
            move_id,
            sha256,
            attempt,
            error,
            next_attempt_at,
        } => {
            if *attempt == 0 {
                return Err(invalid("attempt", "attempts are numbered from 1"));
            }
            let r = record_for(current, key, *move_id, sha256)?;
            if !matches!(
                r.state,
                FileState::Intent | FileState::Uploaded | FileState::Archived
            ) {
                return Err(Rejected::NotInFlight {
                    key: key.clone(),
                    state: r.state,
                });
            }
            if *attempt <= r.attempts {
                return Ok(None);
            }
            let mut r = r.clone();
            r.attempts = *attempt;
            r.last_error = Some(truncate(error, MAX_ERROR_LEN).to_owned());
            r.next_attempt_at = Some(*next_attempt_at);
            r.updated_at = at;
            Ok(FileEffect::put(r))
        }
        Command::MarkRecalled {
            key,
            move_id,
            sha256,
        } => {
            let r = record_for(current, key, *move_id, sha256)?;
            match r.state {
                FileState::Archived | FileState::Released => {
                    let mut e = step(r, FileState::Recalled, at);
                    if let Some(e) = &mut e {
                        e.record.recalled_at = Some(at);
                    }
                    Ok(e)
                }
                FileState::Recalled => Ok(None),
                from => Err(transition(key, from, FileState::Recalled)),
            }
        }
        Command::PutPolicy { .. }
        | Command::DeletePolicy { .. }
        | Command::RecordRun(_)
        | Command::RegisterVolume(_)
        | Command::RemoveVolume { .. }
        | Command::PutClaim(_)
        | Command::DeleteClaim { .. }
        | Command::RecordReplicaHeldLog { .. }
        | Command::ForgetReplica { .. } => Ok(None),
    }
}

fn intent(
    current: Option<&FileRecord>,
    volume_registered: bool,
    i: &Intent,
    at: Timestamp,
) -> Result<Option<FileEffect>, Rejected> {
    check_name("key.volume", &i.key.volume)?;
    check_path("key.path", &i.key.path)?;
    if i.lake_key.is_empty() || i.lake_key.len() > MAX_PATH_LEN {
        return Err(invalid("lake_key", "must be 1 to 4096 bytes"));
    }
    check_name("policy", &i.policy)?;
    if i.rule.len() > MAX_NAME_LEN {
        return Err(invalid("rule", "longer than 253 bytes"));
    }
    if !volume_registered {
        return Err(Rejected::UnknownVolume {
            volume: i.key.volume.clone(),
        });
    }
    let mut superseded = None;
    if let Some(r) = current {
        let mismatch = || Rejected::ContentMismatch {
            key: i.key.clone(),
            recorded: r.sha256,
            got: i.sha256,
        };
        // A retry (or replay) of the intent that started the current move.
        if r.move_id == i.move_id {
            return if r.sha256 == i.sha256 {
                Ok(None)
            } else {
                Err(mismatch())
            };
        }
        let same_content = r.sha256 == i.sha256 && r.size == i.size;
        let same_version = same_content
            && r.mtime_ns == i.mtime_ns
            && r.ino == i.ino
            && r.dev == i.dev
            && r.ctime_ns == i.ctime_ns
            && r.lake_key == i.lake_key;
        match r.state {
            // Already queued for this version (perhaps by another policy): the first one wins.
            FileState::Intent | FileState::Uploaded if same_version => return Ok(None),
            // The file changed before the upload finished: queue the new version instead.
            FileState::Intent | FileState::Uploaded => {}
            FileState::Archived | FileState::Released if same_content => return Ok(None),
            // Verified but not released: the releaser must see the change and abandon first.
            FileState::Archived => return Err(mismatch()),
            // New content at a released path: keep the old object on record.
            FileState::Released => {
                superseded = Some(Superseded {
                    key: r.key.clone(),
                    lake_key: r.lake_key.clone(),
                    lake: r.lake.clone(),
                    sha256: r.sha256,
                    size: r.size,
                    superseded_at: at,
                });
            }
            FileState::Recalled | FileState::Abandoned => {}
        }
    }
    let record = FileRecord {
        key: i.key.clone(),
        move_id: i.move_id,
        size: i.size,
        mtime_ns: i.mtime_ns,
        ino: i.ino,
        dev: i.dev,
        ctime_ns: i.ctime_ns,
        sha256: i.sha256,
        owner: i.owner,
        lake_key: i.lake_key.clone(),
        lake: None,
        verified_at: None,
        state: FileState::Intent,
        policy: i.policy.clone(),
        rule: i.rule.clone(),
        attempts: 0,
        last_error: None,
        next_attempt_at: None,
        intent_at: at,
        recalled_at: None,
        updated_at: at,
    };
    Ok(Some(FileEffect {
        record,
        superseded,
        current_again: false,
    }))
}

/// The record, if its current move is `move_id` about `sha256`.
fn record_for<'a>(
    current: Option<&'a FileRecord>,
    key: &FileKey,
    move_id: u64,
    sha256: &Sha256,
) -> Result<&'a FileRecord, Rejected> {
    let r = current.ok_or_else(|| Rejected::UnknownFile { key: key.clone() })?;
    if r.move_id != move_id {
        return Err(Rejected::StaleMove {
            key: key.clone(),
            recorded: r.move_id,
            got: move_id,
        });
    }
    if r.sha256 != *sha256 {
        return Err(Rejected::ContentMismatch {
            key: key.clone(),
            recorded: r.sha256,
            got: *sha256,
        });
    }
    Ok(r)
}

/// The record moved to `to`: a finished step clears the failure and the back-off.
fn step(r: &FileRecord, to: FileState, at: Timestamp) -> Option<FileEffect> {
    let mut r = r.clone();
    r.state = to;
    r.last_error = None;
    r.next_attempt_at = None;
    r.updated_at = at;
    FileEffect::put(r)
}

fn transition(key: &FileKey, from: FileState, to: FileState) -> Rejected {
    Rejected::InvalidTransition {
        key: key.clone(),
        from,
        to,
    }
}
