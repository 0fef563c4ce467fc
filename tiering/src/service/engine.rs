//! What the service asks of the tiering engine (the mover): run policies now,
//! recall files, say whether the lake answers. The catalog answers the rest.

use std::collections::BTreeMap;
use std::future::Future;

use tokio::sync::watch;

use crate::catalog::{CatalogError, Rejected, RunSummary};
use crate::site_zone::SiteZone;

/// The engine's actions, as the service needs them.
///
/// The mover implements it; tests implement it with a stand-in that records
/// its calls. Implementations record their own changes in the catalog
/// (runs, recalled files): the service only relays the answers.
pub trait Engine: Send + Sync + 'static {
    /// Runs the policies (all, or the one named) over the volumes (all they
    /// select, or the one named) now, and answers the summaries of the runs
    /// once they are done. The service has checked that a named policy and
    /// volume exist.
    fn run_now(
        &self,
        request: RunRequest,
    ) -> impl Future<Output = Result<Vec<RunSummary>, EngineError>> + Send;

    /// Brings the moved files of `request.volume` that match `request.glob`
    /// back from the lake, reporting progress on `progress` as it goes.
    ///
    /// The service keeps the future running to its end even when the client
    /// has gone, so a recall never stops halfway because a terminal closed.
    fn recall(
        &self,
        request: RecallRequest,
        progress: Progress,
    ) -> impl Future<Output = Result<RecallOutcome, EngineError>> + Send;

    /// Whether the lake answered the last attempt to reach it; `None` before
    /// the first attempt.
    fn lake_up(&self) -> Option<bool>;

    /// The registered volumes the engine does not work on (outside its
    /// volume roots, the catalog's own data, a symlink on the way), by id,
    /// each with the reason. None by default.
    fn refused(&self) -> BTreeMap<String, String> {
        BTreeMap::new()
    }

    /// Whether the engine would work on a volume at `path` (absolute,
    /// normalised); the reason, naming the volume roots, when not. Anywhere
    /// by default.
    fn check_volume_path(&self, path: &str) -> Result<(), String> {
        let _ = path;
        Ok(())
    }

    /// The zone whose clocks the engine reads schedules and bandwidth
    /// timetables on, if it has one. None by default.
    fn site_zone(&self) -> Option<&SiteZone> {
        None
    }
}

/// Which policies to run now.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RunRequest {
    /// Only this policy; every policy when `None`.
    pub policy: Option<String>,
    /// Only this volume; every volume the policies select when `None`.
    pub volume: Option<String>,
}

/// Which files to bring back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecallRequest {
    /// The volume's id (registered: the service checked).
    pub volume: String,
    /// A glob over paths relative to the volume root, already checked to
    /// compile with strata's glob rules (`*` within a segment, `**` across).
    pub glob: String,
}

/// How far a recall has come.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecallProgress {
    /// Files brought back so far.
    pub files_done: u64,
    /// Files the recall will bring back in all.
    pub files_total: u64,
    /// Bytes brought back so far.
    pub bytes_done: u64,
    /// Bytes the recall will bring back in all.
    pub bytes_total: u64,
    /// The file being brought back now, if any.
    pub current: Option<String>,
}

/// The end of a recall.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecallOutcome {
    /// Moved files whose path matched the glob.
    pub matched: u64,
    /// Files brought back.
    pub files: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Matched files whose content was local already (recorded as recalled).
    pub already_local: u64,
    /// Paths that now hold other content: left alone, nothing overwritten.
    pub conflicts: u64,
    /// Files that could not be brought back.
    pub failed: u64,
    /// The first of those failures, and why (may hold fewer than `failed`).
    pub failures: Vec<RecallFailure>,
}

/// A file a recall could not bring back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecallFailure {
    /// Relative to the volume root.
    pub path: String,
    /// Why.
    pub error: String,
}

/// Where an engine reports a recall's progress.
///
/// Reports never block and never fail: a reader that lags sees only the
/// latest report, and reports with no reader are dropped.
#[derive(Clone, Debug)]
pub struct Progress(watch::Sender<RecallProgress>);

impl Progress {
    /// A progress reporter nobody watches yet (see [`Progress::subscribe`]).
    pub fn new() -> Self {
        Self(watch::Sender::new(RecallProgress::default()))
    }

    /// Replaces the progress with `progress`.
    pub fn report(&self, progress: RecallProgress) {
        self.0.send_replace(progress);
    }

    /// Changes the progress in place (`|p| p.files_done += 1`).
    pub fn update(&self, change: impl FnOnce(&mut RecallProgress)) {
        self.0.send_modify(change);
    }

    /// The latest progress reported.
    pub fn current(&self) -> RecallProgress {
        self.0.borrow().clone()
    }

    /// A receiver that sees every later report (or the latest of a burst).
    pub fn subscribe(&self) -> watch::Receiver<RecallProgress> {
        self.0.subscribe()
    }
}

impl Default for Progress {
    fn default() -> Self {
        Self::new()
    }
}

/// Why the engine could not do what was asked. The service maps each kind
/// to its gRPC status code.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    /// A field of the request is unusable (`INVALID_ARGUMENT`).
    #[error("{field}: {reason}")]
    Invalid {
        /// The request's field.
        field: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Something the request names does not exist (`NOT_FOUND`).
    #[error("{0}")]
    NotFound(String),
    /// The engine cannot do this now, e.g. the same run is already going
    /// (`FAILED_PRECONDITION`).
    #[error("{0}")]
    Busy(String),
    /// The lake does not answer (`UNAVAILABLE`): try again later.
    #[error("lake unavailable: {0}")]
    LakeUnavailable(String),
    /// The catalog could not answer.
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    /// The catalog refused a change.
    #[error(transparent)]
    Rejected(#[from] Rejected),
    /// Anything else (`INTERNAL`).
    #[error("{0}")]
    Internal(String),
}
