//! What applying a command answers: applied, or refused with a typed reason.

use serde::{Deserialize, Serialize};

use super::types::{FileKey, FileState, Sha256};

/// What an accepted command did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Applied {
    /// The state changed.
    Changed,
    /// The command was already in effect (a replay or a retry): nothing changed.
    Unchanged,
}

/// Why a command was refused. A rejection never changes the state.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Rejected {
    /// The command belongs to another move of the file than the current one.
    #[error(
        "file {key}: the current move is {recorded:016x}, the command is about move {got:016x}"
    )]
    StaleMove {
        /// The file.
        key: FileKey,
        /// The current move's id.
        recorded: u64,
        /// The move the command names.
        got: u64,
    },
    /// A field of the command is malformed.
    #[error("{field}: {reason}")]
    Invalid {
        /// The command's field.
        field: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The command names a volume that is not registered.
    #[error("volume {volume}: not registered")]
    UnknownVolume {
        /// The volume id.
        volume: String,
    },
    /// The command names a file the catalog has no record of.
    #[error("file {key}: not in the catalog")]
    UnknownFile {
        /// The file.
        key: FileKey,
    },
    /// The command is about other content than the catalog records (a stale
    /// command about an older version, or new content for an archived file
    /// that must be abandoned first).
    #[error("file {key}: the catalog records content {recorded}, the command is about {got}")]
    ContentMismatch {
        /// The file.
        key: FileKey,
        /// The content in the catalog.
        recorded: Sha256,
        /// The content the command names.
        got: Sha256,
    },
    /// The lake reported a size other than the size that was hashed.
    #[error("file {key}: the lake reports {lake} bytes, {recorded} were hashed")]
    SizeMismatch {
        /// The file.
        key: FileKey,
        /// The size in the catalog.
        recorded: u64,
        /// The size read back from the lake.
        lake: u64,
    },
    /// Only an archived (verified, committed) file may be released.
    #[error("file {key}: is {state}, only an archived file may be released")]
    NotArchived {
        /// The file.
        key: FileKey,
        /// Its current state.
        state: FileState,
    },
    /// The file changed since it was hashed: its local bytes must stay.
    #[error("file {key}: changed since hashing ({field} was {recorded}, is {observed})")]
    ChangedSinceHashing {
        /// The file.
        key: FileKey,
        /// `size`, `mtime_ns`, `ino`, `dev` or `ctime_ns`.
        field: String,
        /// The value when hashed.
        recorded: String,
        /// The value the releaser observed.
        observed: String,
    },
    /// A failure was reported for a file with no move in flight.
    #[error("file {key}: is {state}, no move in flight")]
    NotInFlight {
        /// The file.
        key: FileKey,
        /// Its current state.
        state: FileState,
    },
    /// The proposer may not make this command (a node's certificate, about
    /// another node's volume, a policy or the group).
    #[error("{proposer} may not {what}: {reason}")]
    Forbidden {
        /// Who proposed it.
        proposer: String,
        /// What it asked for.
        what: String,
        /// Why that is not theirs to ask.
        reason: String,
    },
    /// The move cannot take this step from where it stands.
    #[error("file {key}: cannot go from {from} to {to}")]
    InvalidTransition {
        /// The file.
        key: FileKey,
        /// Its current state.
        from: FileState,
        /// The state the command asked for.
        to: FileState,
    },
}
