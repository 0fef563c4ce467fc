//! The catalog: the record of every move (which file went where, in which
//! state), the policies, the registered volumes and the scan runs.
//!
//! This module is the deterministic core only: plain data and pure
//! functions, no clock, no disk, no network (the openraft habit). The Raft
//! layer (openraft over RocksDB) will carry [`LogEntry`] values in its log and
//! call [`State::apply_entry`] on every replica; because the timestamp travels
//! inside the entry and every map is a `BTreeMap`, all replicas end in the
//! same state, and [`State::to_snapshot`] produces the same bytes on each.
//!
//! The move of one file is the chain of [`FileState`]s
//! `Intent → Uploaded → Archived → Released`, with `Recalled` (brought back)
//! and `Abandoned` (changed before release, hot again) beside it. Every
//! illegal step is a typed [`Rejected`] result that leaves the state
//! untouched.
//!
//! | command | accepted from | to | already done (no-op) |
//! |---|---|---|---|
//! | `RecordIntent` | none, `Recalled`, `Abandoned`; `Intent`/`Uploaded` of other content; `Released` of other content (old object kept in [`State::superseded`]) | `Intent` | same move id; `Intent`/`Uploaded` of the same version; `Archived`/`Released` of the same content |
//! | `MarkUploaded` | `Intent` | `Uploaded` | `Uploaded`, `Archived`, `Released` |
//! | `MarkArchived` (size and checksum as read back from the lake, the lake's URL, when verified) | `Uploaded`; `Archived` with an older verification (or none on record) | `Archived`, bound to that lake and verification | `Archived` verified as late or later, or by a command naming no lake or no time; `Released` |
//! | `MarkReleased` (size, mtime, inode, device, ctime as checked before removal) | `Archived`, only if unchanged since hashing | `Released` | `Released` |
//! | `MarkAbandoned` | `Intent`, `Uploaded`, `Archived` | `Abandoned` | `Abandoned` |
//! | `MarkRecalled` | `Archived`, `Released` | `Recalled` | `Recalled` |
//! | `RecordFailure` (attempt number) | `Intent`, `Uploaded`, `Archived` | same state | an attempt number already recorded |
//!
//! A record is bound to the lake its copy was verified in
//! ([`FileRecord::lake`], a URL without credentials): the mover releases a
//! file only against that lake, and only when it is the lake the file's
//! policy names now. When a policy's lake changes, an archived file that is
//! still local is uploaded to the new lake and verified there, and
//! `MarkArchived` from `Archived` binds its record to the new lake (the
//! local bytes stay throughout, and the old copy stays on record until the
//! new one is committed). The same step records a fresh verification after
//! the recorded copy was found missing. Because the verification time
//! travels in the command, a retry is a no-op and a late, older
//! verification never takes the record back.
//!
//! Every file command after the intent names the move (`move_id`, chosen by
//! the agent that recorded the intent) and the content (`sha256`): a command
//! left over from an earlier move or about an older version is refused
//! (`StaleMove`, `ContentMismatch`), never applied to the newer one.
//!
//! Idempotency comes at two levels. A command that is already in effect is
//! [`Applied::Unchanged`], so a client retrying a proposal whose answer was
//! lost changes nothing; a late retry of a step of a move that has since
//! gone on is a no-op or refused. And [`State::apply_indexed`]
//! skips log positions already applied, so a log (or any tail of it) applied
//! again after a crash ends in the same state as applying it once; the
//! position is part of the snapshot.

mod authorize;
mod client;
mod command;
mod outcome;
mod query;
mod scope;
mod snapshot;
mod state;
#[cfg(test)]
mod tests;
mod transition;
mod types;
mod validate;

pub use client::{CatalogClient, CatalogError, MemoryCatalog};
pub use command::{Command, Intent, LogEntry, Proposer};
pub use outcome::{Applied, Rejected};
pub use query::{BacklogSummary, FileFilter, Page};
pub use scope::{NODE_LABEL, PV_LABEL, VolumeScope};
pub use snapshot::SnapshotError;
pub use state::State;
pub use types::{
    Claim, FileKey, FileRecord, FileState, Ownership, Policy, RunSummary, Sha256, Superseded,
    Timestamp, Volume,
};
pub(crate) use validate::{check_label_key, check_label_value, is_dns_label};
