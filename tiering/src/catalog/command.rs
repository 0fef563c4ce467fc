//! The log entry payload: what a client asks the catalog to record.
//!
//! Commands use serde's default (externally tagged) enum representation and
//! no `flatten`/`skip_serializing_if`, so they round-trip through
//! self-describing formats (JSON) and compact binary ones alike.

use serde::{Deserialize, Serialize};

use super::types::{Claim, FileKey, Ownership, RunSummary, Sha256, Timestamp, Volume};

/// One entry of the replicated log: a command and the time it was proposed.
///
/// The timestamp is chosen once, by the proposer, and replicated with the
/// command; [`State::apply_entry`](super::State::apply_entry) never reads a clock.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogEntry {
    /// When the command was proposed.
    pub at: Timestamp,
    /// What to record.
    pub command: Command,
    /// Who proposed it, as the replica that took the proposal authenticated
    /// them (never what a client says of itself): `None` for the catalog's
    /// own parts, a replica or the process that holds the catalog. Applying
    /// the entry checks that the proposer may make the command
    /// ([`Proposer`]). Entries written before strata recorded it have none.
    #[serde(default)]
    pub by: Option<Proposer>,
}

/// Who proposed a log entry, when it was not one of the catalog's own
/// replicas: the role and name of the certificate the proposal came with.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Proposer {
    /// A node agent: it may propose only commands about the volumes
    /// labelled with its node (`strata.io/node`), and no policy or
    /// membership command.
    Node(String),
    /// An operator: any command.
    Admin(String),
}

impl std::fmt::Display for Proposer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Proposer::Node(n) => write!(f, "node {n}"),
            Proposer::Admin(n) if n.is_empty() => f.write_str("admin"),
            Proposer::Admin(n) => write!(f, "admin {n}"),
        }
    }
}

/// A policy chose a file and the agent hashed it: start (or restart) its move.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Intent {
    /// Which file.
    pub key: FileKey,
    /// A fresh id for this move (random, chosen by the agent); a retry of the
    /// same intent reuses it.
    pub move_id: u64,
    /// Size in bytes, as hashed.
    pub size: u64,
    /// Modification time (ns since the epoch), as hashed.
    pub mtime_ns: i64,
    /// Inode number, as hashed.
    pub ino: u64,
    /// Device of the filesystem holding the file, as hashed (0 in entries
    /// written before strata kept it: unknown, not compared).
    #[serde(default)]
    pub dev: u64,
    /// Status change time (ns since the epoch), from the same `fstat` as
    /// the hash: a rewrite in place that restores the mtime still moves it
    /// (0 in entries written before strata kept it: unknown, not compared).
    #[serde(default)]
    pub ctime_ns: i64,
    /// SHA-256 of the content.
    pub sha256: Sha256,
    /// Owner and permission bits, as hashed (absent in entries written
    /// before strata kept them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<Ownership>,
    /// Where the object goes in the lake (derived from volume, path and hash).
    pub lake_key: String,
    /// The policy that chose it.
    pub policy: String,
    /// The rule that matched.
    pub rule: String,
}

/// A change to the catalog. Every file command names the move (`move_id`)
/// and the content (`sha256`) it is about, so a stale command about an
/// earlier move or an older version of the file is rejected instead of
/// moving the newer one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// Record that a file is to be moved (enters the backlog).
    RecordIntent(Intent),
    /// The upload finished (not yet verified).
    MarkUploaded {
        /// Which file.
        key: FileKey,
        /// The move, as recorded by its intent.
        move_id: u64,
        /// The content that was uploaded.
        sha256: Sha256,
    },
    /// The lake copy was read back and verified: size and checksum as the
    /// lake reports them, and the lake they were read from. For a record
    /// already archived, a later verification binds it to its lake (the
    /// policy's lake changed, or the recorded copy went missing).
    MarkArchived {
        /// Which file.
        key: FileKey,
        /// The move, as recorded by its intent.
        move_id: u64,
        /// Checksum read back from the lake.
        sha256: Sha256,
        /// Size read back from the lake.
        size: u64,
        /// The lake it was verified in: its URL without credentials,
        /// options or query (`s3://bucket/prefix`, `file:///srv/lake`).
        /// `None` in entries written before strata kept it.
        #[serde(default)]
        lake: Option<String>,
        /// When it was verified (the verifying agent's clock). Chosen once
        /// and carried in the command, so a retry of the same verification
        /// changes nothing and only a later one counts. `None` in entries
        /// written before strata kept it (the entry's time stands in).
        #[serde(default)]
        verified_at: Option<Timestamp>,
    },
    /// The local bytes were removed. The caller states what it checked just
    /// before removing: the file was unchanged since hashing.
    MarkReleased {
        /// Which file.
        key: FileKey,
        /// The move, as recorded by its intent.
        move_id: u64,
        /// The archived content.
        sha256: Sha256,
        /// Size observed before release.
        size: u64,
        /// Modification time observed before release.
        mtime_ns: i64,
        /// Inode observed before release.
        ino: u64,
        /// Device observed before release (0 from an agent that did not
        /// look: refused for a record that knows its device).
        #[serde(default)]
        dev: u64,
        /// Status change time observed before release (0 from an agent
        /// that did not look: refused for a record that knows its ctime).
        #[serde(default)]
        ctime_ns: i64,
    },
    /// The file changed before it was released: it is hot again.
    MarkAbandoned {
        /// Which file.
        key: FileKey,
        /// The move, as recorded by its intent.
        move_id: u64,
        /// The content whose move is abandoned.
        sha256: Sha256,
    },
    /// A step of the move failed; the caller chose when to try again.
    RecordFailure {
        /// Which file.
        key: FileKey,
        /// The move, as recorded by its intent.
        move_id: u64,
        /// The content being moved.
        sha256: Sha256,
        /// Which attempt failed (1 for the first). Carrying the number rather
        /// than "add one" makes a replayed failure harmless.
        attempt: u32,
        /// What went wrong.
        error: String,
        /// Not before this time should the mover retry (back-off with jitter, chosen by the caller).
        next_attempt_at: Timestamp,
    },
    /// The file was brought back from the lake (or its release cancelled).
    MarkRecalled {
        /// Which file.
        key: FileKey,
        /// The move, as recorded by its intent.
        move_id: u64,
        /// The content recalled.
        sha256: Sha256,
    },
    /// Store (or replace) a policy, already validated by the policy module.
    PutPolicy {
        /// The policy's name.
        name: String,
        /// The validated document.
        spec: String,
    },
    /// Remove a policy.
    DeletePolicy {
        /// The policy's name.
        name: String,
    },
    /// Record (or update) the summary of a scan run.
    RecordRun(RunSummary),
    /// Register (or update) a volume.
    RegisterVolume(Volume),
    /// Forget a volume (its file records stay: they say what went where).
    RemoveVolume {
        /// The volume's id.
        id: String,
    },
    /// Record (or update) what Kubernetes says of a CSI volume's claim.
    PutClaim(Claim),
    /// The volume's claim is gone from Kubernetes.
    DeleteClaim {
        /// The PersistentVolume's name.
        pv: String,
    },
    /// A leader saw catalog replica `id`, a voter, acknowledge the log: from
    /// now on every leader knows that an empty store under that id is lost
    /// data, not a first start.
    RecordReplicaHeldLog {
        /// The replica's id in the catalog group.
        id: u64,
    },
    /// Replica `id` was removed from the group: a later empty store under
    /// that id may join afresh.
    ForgetReplica {
        /// The replica's id in the catalog group.
        id: u64,
    },
}

impl Command {
    /// The file this command is about, if it is a file command.
    pub fn file_key(&self) -> Option<&FileKey> {
        match self {
            Command::RecordIntent(i) => Some(&i.key),
            Command::MarkUploaded { key, .. }
            | Command::MarkArchived { key, .. }
            | Command::MarkReleased { key, .. }
            | Command::MarkAbandoned { key, .. }
            | Command::RecordFailure { key, .. }
            | Command::MarkRecalled { key, .. } => Some(key),
            _ => None,
        }
    }
}
