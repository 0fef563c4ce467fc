//! LVM access: one [`Lvm`] trait, two backends that run the very same `lvm`
//! command lines and differ only in how a command is executed.
//!
//! - [`cli::CliRunner`] spawns the `lvm` binary (optionally behind a prefix such
//!   as `nsenter --mount=/proc/1/ns/mnt --`), the portable path;
//! - `lib2cmd::LibRunner` (feature `lvm2cmd`) calls `lvm2_run` from Debian's
//!   liblvm2cmd in-process, confined to one dedicated thread.
//!
//! [`tool::LvmTool`] builds the arguments, asks for JSON reports
//! (`--reportformat json --units b --nosuffix`, command log inside the JSON)
//! and parses them ([`report`]); it implements [`Lvm`] over any [`Runner`].
//! Every call blocks: callers in async code use `spawn_blocking`.

use std::path::PathBuf;

pub mod cli;
mod diagnose;
#[cfg(feature = "lvm2cmd")]
pub mod lib2cmd;
pub mod report;
pub mod tool;

/// A volume group as LVM reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VgInfo {
    /// VG name.
    pub name: String,
    /// Total size in bytes.
    pub size_bytes: u64,
    /// Unallocated bytes.
    pub free_bytes: u64,
    /// Physical extent size in bytes; every LV size is a multiple of it.
    pub extent_bytes: u64,
}

/// A logical volume (including thin pools) as LVM reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct LvInfo {
    /// VG that holds the LV.
    pub vg: String,
    /// LV name.
    pub name: String,
    /// Size in bytes (virtual size for thin volumes).
    pub size_bytes: u64,
    /// LV tags, in the order LVM reports them.
    pub tags: Vec<String>,
    /// The `lv_attr` string (e.g. `-wi-a-----`).
    pub attr: String,
    /// Thin pool of a thin volume.
    pub pool: Option<String>,
    /// Device path (`/dev/<vg>/<lv>`).
    pub path: String,
    /// Data usage in percent (thin pools and thin volumes).
    pub data_percent: Option<f64>,
    /// Metadata usage in percent (thin pools).
    pub metadata_percent: Option<f64>,
    /// When LVM created the LV (`lv_time`, whole seconds); `None` when the
    /// report gives no time (reports read from older captures).
    pub created: Option<std::time::SystemTime>,
}

impl LvInfo {
    /// True when the LV is active (device node present): the fifth `lv_attr` character is `a`.
    pub fn is_active(&self) -> bool {
        self.attr.chars().nth(4) == Some('a')
    }

    /// True for a thin pool (`lv_attr` starts with `t`).
    pub fn is_thin_pool(&self) -> bool {
        self.attr.starts_with('t')
    }
}

/// How a new LV gets its extents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LvKind {
    /// Fully allocated from the VG.
    Thick,
    /// Thin volume in the named pool of the same VG.
    Thin {
        /// Thin pool LV name.
        pool: String,
    },
}

/// A request to create an LV.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewLv {
    /// VG to create it in.
    pub vg: String,
    /// LV name (already validated for LVM's naming rules).
    pub name: String,
    /// Size in bytes; the caller rounds it to extents.
    pub size_bytes: u64,
    /// Thick or thin.
    pub kind: LvKind,
    /// Tags to attach at creation (LVM's tag charset only).
    pub tags: Vec<String>,
}

/// A request to create a snapshot LV of `origin` (same VG).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewSnapshot {
    /// VG of the origin and the snapshot.
    pub vg: String,
    /// The LV to snapshot (a thin LV, or a thick LV for a COW snapshot).
    pub origin: String,
    /// Name of the new LV.
    pub name: String,
    /// `None`: a thin snapshot (the origin must be thin). `Some(bytes)`: a
    /// copy-on-write snapshot with that much exception store.
    pub cow_bytes: Option<u64>,
    /// Writable (a clone or restore) or read-only (a snapshot). A writable
    /// thin snapshot is activated like any volume; a read-only one keeps
    /// LVM's activation-skip flag and stays inactive until asked (`-K`).
    pub writable: bool,
    /// Tags to attach at creation.
    pub tags: Vec<String>,
}

/// What an LVM call can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LvmError {
    /// The `lvm` program could not be started (or the library could not be initialised).
    #[error("could not run lvm ({backend}): {source}")]
    Spawn {
        /// Backend name.
        backend: &'static str,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// The VG does not exist.
    #[error("volume group {0:?} not found")]
    VgNotFound(String),
    /// The LV does not exist.
    #[error("logical volume {vg}/{name} not found")]
    LvNotFound {
        /// VG name.
        vg: String,
        /// LV name.
        name: String,
    },
    /// The VG (or thin pool) has too little free space.
    #[error("not enough free space in {vg}: {message}")]
    InsufficientSpace {
        /// VG name.
        vg: String,
        /// LVM's own words.
        message: String,
    },
    /// LVM ran and reported failure.
    #[error("lvm {command} failed (exit {code}): {message}")]
    Failed {
        /// The lvm subcommand and its object (never secrets: lvm takes none).
        command: String,
        /// Exit code (lvm2_run's return code for the library backend).
        code: i32,
        /// Error lines LVM printed.
        message: String,
    },
    /// An argument cannot be passed to LVM (it holds whitespace, is empty, or
    /// is not UTF-8): the library backend joins arguments with spaces.
    #[error("invalid lvm argument {argument:?}: {reason}")]
    InvalidArgument {
        /// The offending argument.
        argument: String,
        /// Why it is rejected.
        reason: &'static str,
    },
    /// LVM's JSON report could not be understood.
    #[error("unreadable lvm report from {command}: {reason}")]
    Report {
        /// The lvm subcommand.
        command: String,
        /// What was wrong.
        reason: String,
    },
}

/// The operations strata needs from LVM. Implemented once by [`tool::LvmTool`]
/// over any [`Runner`]; every implementation passes the same conformance suite.
pub trait Lvm: Send + Sync + 'static {
    /// Backend name for logs and metrics (`cli` or `lvm2cmd`).
    fn backend(&self) -> &'static str;
    /// The named VGs that exist (missing ones are simply absent from the result).
    fn vgs(&self, names: &[String]) -> Result<Vec<VgInfo>, LvmError>;
    /// All LVs (thin pools included) of the named VGs.
    fn lvs(&self, vgs: &[String]) -> Result<Vec<LvInfo>, LvmError>;
    /// The named VGs that exist and all their LVs, in as few LVM calls as the
    /// backend can (one report when every VG holds an LV).
    fn inventory(&self, vgs: &[String]) -> Result<(Vec<VgInfo>, Vec<LvInfo>), LvmError> {
        Ok((self.vgs(vgs)?, self.lvs(vgs)?))
    }
    /// `pvcreate` each device, then `vgcreate`.
    fn create_vg(&self, vg: &str, devices: &[PathBuf]) -> Result<(), LvmError>;
    /// Create (and, unless activation is disabled, activate) an LV.
    fn create_lv(&self, new: &NewLv) -> Result<LvInfo, LvmError>;
    /// Create a thin pool of `size_bytes` (data; LVM sizes the metadata LV)
    /// with zeroing of newly provisioned blocks, so a thin volume never reads
    /// another volume's old data. Needs device-mapper: with activation
    /// disabled LVM refuses ("Can't create thin-pool without using
    /// device-mapper kernel driver").
    fn create_thin_pool(&self, vg: &str, name: &str, size_bytes: u64) -> Result<LvInfo, LvmError>;
    /// Grow an LV to `size_bytes` (no filesystem resize: that is the caller's job).
    /// An LV that is already at least that large is left as it is and returned,
    /// so a retried expansion succeeds.
    fn extend_lv(&self, vg: &str, name: &str, size_bytes: u64) -> Result<LvInfo, LvmError>;
    /// Remove an LV (`lvremove -y`); the LV must not be mounted.
    fn remove_lv(&self, vg: &str, name: &str) -> Result<(), LvmError>;
    /// Activate or deactivate an LV (`lvchange -ay -K` / `-an`).
    fn set_active(&self, vg: &str, name: &str, active: bool) -> Result<(), LvmError>;
    /// Create a snapshot LV (`lvcreate -s`), see [`NewSnapshot`].
    fn create_snapshot(&self, new: &NewSnapshot) -> Result<LvInfo, LvmError>;
    /// Add and remove tags of an LV in one `lvchange`; returns the LV after.
    fn change_tags(
        &self,
        vg: &str,
        name: &str,
        add: &[String],
        remove: &[String],
    ) -> Result<LvInfo, LvmError>;
}

/// The result of one `lvm` command.
#[derive(Debug, Clone, Default)]
pub struct RunOutput {
    /// Exit code: 0 on success (the library backend maps lvm2_run's 1 to 0).
    pub code: i32,
    /// Report output (JSON when a report was asked for).
    pub stdout: String,
    /// Error lines.
    pub stderr: String,
}

/// Executes one `lvm` command line, given as its arguments after `lvm`
/// (e.g. `["lvs", "--reportformat", "json", …]`). Arguments never contain
/// whitespace, so the library backend can join them with spaces.
pub trait Runner: Send + Sync + 'static {
    /// Backend name (`cli` or `lvm2cmd`).
    fn name(&self) -> &'static str;
    /// Run the command and collect its output.
    fn run(&self, args: &[String]) -> Result<RunOutput, LvmError>;
}

/// Where the `lvm` program lives and how to reach the host's namespaces.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize)]
pub struct LvmOptions {
    /// Words put before `lvm` (e.g. `["nsenter", "--target", "1", "--mount", "--"]`); CLI backend only.
    #[serde(default)]
    pub command_prefix: Vec<String>,
    /// Extra `--config` text added to every command, e.g. `global{activation=0}`
    /// to manage metadata on a host without device-mapper. No whitespace.
    #[serde(default)]
    pub extra_config: Option<String>,
    /// Path of the `lvm` binary; `lvm` from `PATH` when absent.
    #[serde(default)]
    pub lvm_path: Option<PathBuf>,
}
