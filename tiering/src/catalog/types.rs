//! The records the catalog keeps: files, volumes, policies, runs.

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A point in time, in nanoseconds since the Unix epoch.
///
/// The catalog never reads a clock: every timestamp arrives inside a
/// [`LogEntry`](super::LogEntry), stamped by whoever proposed it, so that
/// applying the same log gives the same state on every replica.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Timestamp(pub u64);

impl Timestamp {
    /// The timestamp `nanos` nanoseconds after the Unix epoch.
    pub const fn from_unix_nanos(nanos: u64) -> Self {
        Self(nanos)
    }

    /// Nanoseconds since the Unix epoch.
    pub const fn unix_nanos(self) -> u64 {
        self.0
    }

    /// `t` as a timestamp: the epoch for times before it, the largest
    /// timestamp for times past the year 2554.
    pub fn from_system_time(t: SystemTime) -> Self {
        let ns = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        Self(u64::try_from(ns).unwrap_or(u64::MAX))
    }

    /// The current time as a timestamp.
    pub fn now() -> Self {
        Self::from_system_time(SystemTime::now())
    }

    /// This timestamp as a `SystemTime`.
    pub fn to_system_time(self) -> SystemTime {
        UNIX_EPOCH + Duration::from_nanos(self.0)
    }

    /// How long before `now` this timestamp lies; zero if it is not before.
    pub fn age_at(self, now: Timestamp) -> Duration {
        Duration::from_nanos(now.0.saturating_sub(self.0))
    }
}

/// A SHA-256 digest, serialised as 64 lowercase hex digits.
#[derive(Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Sha256(pub [u8; 32]);

impl Sha256 {
    /// Parses 64 hex digits (either case).
    pub fn from_hex(s: &str) -> Option<Self> {
        let bytes = s.as_bytes();
        if bytes.len() != 64 {
            return None;
        }
        let mut out = [0u8; 32];
        for (o, pair) in out.iter_mut().zip(bytes.chunks_exact(2)) {
            let hi = (pair[0] as char).to_digit(16)?;
            let lo = (pair[1] as char).to_digit(16)?;
            *o = (hi * 16 + lo) as u8;
        }
        Some(Self(out))
    }
}

impl fmt::Display for Sha256 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Sha256 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sha256({self})")
    }
}

// Hex in text formats (JSON, YAML), the 32 raw bytes in binary ones.
impl Serialize for Sha256 {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.collect_str(self)
        } else {
            self.0.serialize(s)
        }
    }
}

impl<'de> Deserialize<'de> for Sha256 {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        if !d.is_human_readable() {
            return <[u8; 32]>::deserialize(d).map(Sha256);
        }
        let s = String::deserialize(d)?;
        Sha256::from_hex(&s)
            .ok_or_else(|| serde::de::Error::custom("sha256: expected 64 hex digits"))
    }
}

/// Which file: a volume id and a path relative to the volume's root.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct FileKey {
    /// The id of the [`Volume`] the file lives on.
    pub volume: String,
    /// The path relative to the volume's root, `/`-separated, no leading `/`.
    pub path: String,
}

impl FileKey {
    /// A key for `path` on `volume`.
    pub fn new(volume: impl Into<String>, path: impl Into<String>) -> Self {
        Self {
            volume: volume.into(),
            path: path.into(),
        }
    }
}

impl fmt::Display for FileKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.volume, self.path)
    }
}

/// Where a file is in its move to the lake.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FileState {
    /// Chosen by a policy and hashed; the upload is pending (backlog).
    Intent,
    /// Uploaded to the lake, not yet verified (backlog).
    Uploaded,
    /// Verified in the lake (size and checksum read back); local bytes still present.
    Archived,
    /// Local bytes removed after the lake copy was verified and the file
    /// was found unchanged since hashing.
    Released,
    /// Brought back from the lake (or its release cancelled); not moved
    /// again until a policy finds it cold again.
    Recalled,
    /// The file changed before it was released: it is hot again and stays.
    Abandoned,
}

impl FileState {
    /// Every state, in declaration order.
    pub const ALL: [FileState; 6] = [
        FileState::Intent,
        FileState::Uploaded,
        FileState::Archived,
        FileState::Released,
        FileState::Recalled,
        FileState::Abandoned,
    ];

    /// Whether files in this state are waiting for the lake (the backlog).
    pub fn is_backlog(self) -> bool {
        matches!(self, FileState::Intent | FileState::Uploaded)
    }

    /// The lowercase name used in serialisation and messages.
    pub fn as_str(self) -> &'static str {
        match self {
            FileState::Intent => "intent",
            FileState::Uploaded => "uploaded",
            FileState::Archived => "archived",
            FileState::Released => "released",
            FileState::Recalled => "recalled",
            FileState::Abandoned => "abandoned",
        }
    }
}

impl fmt::Display for FileState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the catalog knows about one file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileRecord {
    /// Which file.
    pub key: FileKey,
    /// The id of the current move, chosen by the agent that recorded the
    /// intent; every later command of the move names it, so a command left
    /// over from an earlier move of the same file is refused.
    pub move_id: u64,
    /// Size in bytes when it was hashed.
    pub size: u64,
    /// Modification time (ns since the epoch) when it was hashed.
    pub mtime_ns: i64,
    /// Inode number when it was hashed.
    pub ino: u64,
    /// Device of the filesystem holding it when it was hashed (0 in records
    /// written before strata kept it: unknown).
    #[serde(default)]
    pub dev: u64,
    /// Status change time (ns since the epoch) when it was hashed (0 in
    /// records written before strata kept it: unknown).
    #[serde(default)]
    pub ctime_ns: i64,
    /// SHA-256 of the content that was hashed.
    pub sha256: Sha256,
    /// Owner and permission bits when it was hashed; a recall restores them.
    /// Absent in records written before strata kept them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<Ownership>,
    /// The object's key in the lake.
    pub lake_key: String,
    /// The lake the object was last verified in, as its URL without
    /// credentials, options or query (`s3://bucket/prefix`,
    /// `file:///srv/lake`): the lake a release is judged against and a
    /// recall reads from. Set by `MarkArchived`. `None` before the copy is
    /// verified, and in records archived before strata kept it: such a
    /// record is verified again in its policy's current lake before its
    /// local copy is released, and recalled from its policy's lake.
    #[serde(default)]
    pub lake: Option<String>,
    /// When the copy in [`FileRecord::lake`] was last verified (by the
    /// verifying agent's clock). `None` as for `lake`; an old verification
    /// is checked again in the lake before a release.
    #[serde(default)]
    pub verified_at: Option<Timestamp>,
    /// Where the move stands.
    pub state: FileState,
    /// The policy that chose the file.
    pub policy: String,
    /// The rule of that policy that matched.
    pub rule: String,
    /// Failed attempts in the current move.
    pub attempts: u32,
    /// The last failure's message, if the last attempt failed.
    pub last_error: Option<String>,
    /// Not before this time should the mover try again (set by the caller with back-off).
    pub next_attempt_at: Option<Timestamp>,
    /// When the current move's intent was committed: the backlog's age and drain order.
    pub intent_at: Timestamp,
    /// When the file was recalled, while it is [`FileState::Recalled`].
    pub recalled_at: Option<Timestamp>,
    /// When the record last changed.
    pub updated_at: Timestamp,
}

/// Who owned a file and its permission bits, as the file was hashed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ownership {
    /// Owning user id.
    pub uid: u32,
    /// Owning group id.
    pub gid: u32,
    /// Permission bits (`mode & 0o7777`: rwx for user, group, other, and
    /// setuid, setgid, sticky).
    pub mode: u32,
}

/// A released version whose path has since received new content: the lake
/// object is kept on record so that nothing moved is ever forgotten.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Superseded {
    /// The file the version belonged to.
    pub key: FileKey,
    /// The object's key in the lake.
    pub lake_key: String,
    /// The lake holding the object ([`FileRecord::lake`]; `None` for a
    /// version archived before strata kept it).
    #[serde(default)]
    pub lake: Option<String>,
    /// Its content hash.
    pub sha256: Sha256,
    /// Its size in bytes.
    pub size: u64,
    /// When a new intent for the same path replaced it.
    pub superseded_at: Timestamp,
}

/// A volume the tiering agents serve: a mounted directory with an id and labels.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Volume {
    /// Stable id (for CSI volumes, the PV name).
    pub id: String,
    /// The mount path on its node.
    pub path: String,
    /// Labels for policy selectors (PVC namespace and name, node, app …).
    pub labels: BTreeMap<String, String>,
}

/// What Kubernetes says about a CSI volume: the PersistentVolumeClaim bound
/// to it, written by the controller in `strata catalog` from the API server
/// (and kept while it is unreachable). Policies made from TieringPolicies
/// select volumes by it; the volume's own record stays the node's.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claim {
    /// The PersistentVolume's name: the CSI volume's id in the catalog.
    pub pv: String,
    /// The claim's namespace.
    pub namespace: String,
    /// The claim's name.
    pub name: String,
    /// The claim's labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// The claim's StorageClass, if it names one.
    #[serde(default)]
    pub storage_class: Option<String>,
    /// The TieringPolicy its StorageClass names (`strata.io/tiering-policy`,
    /// kept in the PV's volume attributes): the policy of that name in the
    /// claim's namespace applies to it.
    #[serde(default)]
    pub class_policy: Option<String>,
}

/// A stored tiering policy.
///
/// The catalog keeps the policy text opaque: the policy module validates it
/// before it is proposed, because a validator that changed between versions
/// of strata must never make two replicas disagree about the log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    /// The policy's name.
    pub name: String,
    /// The validated policy document (YAML or JSON), as submitted.
    pub spec: String,
    /// When it was last put.
    pub updated_at: Timestamp,
}

/// The summary of one scan run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunSummary {
    /// Unique id chosen by the runner (a retry reuses it).
    pub id: String,
    /// The policy that ran.
    pub policy: String,
    /// The volume scanned.
    pub volume: String,
    /// When the run started.
    pub started_at: Timestamp,
    /// When it ended.
    pub finished_at: Timestamp,
    /// Candidate files found.
    pub files: u64,
    /// Their total size in bytes.
    pub bytes: u64,
    /// Errors met.
    pub errors: u64,
    /// Files the scan held back because they changed within the settle
    /// window (or during the scan): they wait for a later run. 0 in runs
    /// recorded before strata kept it.
    #[serde(default)]
    pub settling_files: u64,
    /// Their total size in bytes.
    #[serde(default)]
    pub settling_bytes: u64,
    /// The settle window the run used ([`ScanOptions::settle`](crate::scan::ScanOptions::settle));
    /// `None` in runs recorded before strata kept it.
    #[serde(default)]
    pub settle: Option<Duration>,
    /// For a run started because the volume passed its policy's high
    /// watermark: the bytes it set out to free. `None` for scheduled and
    /// requested runs, and in runs recorded before strata kept it.
    #[serde(default)]
    pub free_goal: Option<u64>,
}
