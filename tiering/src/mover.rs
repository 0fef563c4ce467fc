//! The mover: carries out the invariant of a move (DESIGN.md) for every file
//! a policy finds cold, resumes whatever a crash or an unreachable lake left
//! half done, and brings files back on request (recall).
//!
//! ```text
//! scan → policy → hash (stat before and after) → RecordIntent
//!      → upload (conditional) → MarkUploaded → verify (size + SHA-256 read back)
//!      → MarkArchived → [move: unchanged since hashing and not open?]
//!      → remove the local file → MarkReleased
//! ```
//!
//! Generic over [`CatalogClient`]: every step is proposed to the catalog
//! before the next begins, and the next step is chosen from the file's record
//! alone, so a mover restarted on the same catalog carries on where the last
//! one stopped:
//!
//! | crash after | the record says | a restarted mover |
//! |---|---|---|
//! | the intent | `Intent` | uploads (oldest first) |
//! | the upload | `Intent` | uploads again: the conditional put finds the same object (`AlreadyPresent`) |
//! | `MarkUploaded` | `Uploaded` | verifies (re-uploads if the object vanished) |
//! | the verification | `Uploaded` | verifies again |
//! | `MarkArchived` | `Archived` | releases (action `move`), after the same checks |
//! | the unlink | `Archived`, no file at the path | records `Released` |
//! | the rename aside | `Archived`, the file under its aside name | puts it back and abandons the move (the rename moved its ctime, so it cannot be shown unchanged); it moves again on a later run |
//! | `MarkArchived`, then the policy's lake changed | `Archived` in the old lake | uploads to the new lake and verifies there, `MarkArchived` binds the record to it, then releases |
//! | the upload to the new lake | `Archived` in the old lake | the same again: the conditional put finds its object |
//! | `MarkArchived` long ago (`reverify_after`) | `Archived`, an old verification | looks at the object again (HEAD); gone or different: uploads it again, commits the fresh verification, releases on a later drain |
//! | `MarkReleased` | `Released` | nothing |
//! | a recall's rename | `Released`, the file back in place | a later recall (or scan) finds the same content and records `Recalled` |
//!
//! No local byte is removed before its lake copy is verified and
//! `Archived` is committed, in the lake the file's policy names now (the
//! record names the lake it was verified in), with a fresh look at the
//! object if that verification is older than
//! [`MoverOptions::reverify_after`]; and only if the file's device, inode, size, mtime
//! and ctime still match what was hashed (a rewrite in place that puts the
//! mtime back still moves the ctime) and (where the filesystem grants leases)
//! nobody has it open. Removal is a rename to a private name
//! (`.<name>.strata-release.<move>`) first, so a file renamed over the path at
//! that very moment is never the one deleted; a file under that name that
//! strata did not put there is kept and reported, never deleted.
//!
//! # Inside a volume
//! Volumes are written by pods; the mover runs as root. Every file operation
//! on a volume is anchored at the volume root's descriptor and never follows
//! a symlink (`openat2` with `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS`,
//! `mkdirat` one component at a time, `O_EXCL | O_NOFOLLOW` temporary files,
//! renames and unlinks relative to a directory descriptor, owner, mode and
//! times set through the file's descriptor), and a path from the catalog
//! with `..`, `.`, an empty component, a NUL or a leading `/` is refused
//! before any syscall. A directory swapped for a symlink fails the step on
//! the files beneath it; the symlink's target is never touched.
//!
//! # Lake down
//! A transient lake error records a failure with exponential back-off and
//! jitter (`next_attempt_at`) and marks the policy's lake down: no more
//! uploads are started for it in that pass, nothing is removed, the backlog
//! stays in the catalog. The next [`Mover::drain`] probes the lake once and,
//! when it answers, drains the due backlog oldest first.
//!
//! # Bandwidth
//! All uploads of one policy share one token bucket paced by the policy's
//! limit at the current weekday and hour in the site's time zone
//! ([`MoverOptions::site_zone`], [`Policy::bandwidth_at`]).
//!
//! # Test hooks: pause points
//! When the environment variable [`PAUSE_ENV`] (`STRATA_TEST_PAUSE_AT`,
//! read once per process) names a [`PausePoint`], the task reaching that
//! point prints `strata: paused at <point>` to stderr and never continues, so
//! a crash test can `kill -9` the process exactly between two steps. The
//! points are `after-intent`, `after-upload`, `after-mark-uploaded`,
//! `after-verify`, `after-mark-archived`, `after-unlink`,
//! `after-mark-released` and, in a recall, `after-rename`. Never set it in
//! production.

mod anchored;
mod backoff;
mod clock;
mod confirm;
mod drain;
mod error;
mod gate;
mod hash;
mod local;
mod oldest;
mod pause;
mod plan;
mod rebind;
mod recall;
mod release;
mod run;
mod shared;
mod step;
mod throttle;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

pub use backoff::Backoff;
pub use error::MoverError;
pub use pause::{PAUSE_ENV, PausePoint};
pub use recall::{RecallProgress, RecallReport};

use crate::catalog::{BacklogSummary, CatalogClient, Volume, VolumeScope};
use crate::lake::Lake;
use crate::metrics::TieringMetrics;
use crate::policy::Policy;
use crate::scan::ScanOptions;
use crate::site_zone::SiteZone;

/// The volume label holding the PVC's namespace (`{namespace}` in key templates).
pub const LABEL_PVC_NAMESPACE: &str = "strata.io/pvc-namespace";
/// The volume label holding the PVC's name (`{pvc}` in key templates).
pub const LABEL_PVC_NAME: &str = "strata.io/pvc";

/// How the mover works. [`MoverOptions::default`] fits a production node.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct MoverOptions {
    /// The site's name (`{site}` in key templates). Default: empty.
    pub site: String,
    /// Files moving at once (uploads, verifications, releases). Default: 32
    /// (small files: a request costs the lake more than it costs us). A
    /// file waiting for a batched confirmation (`confirm_window`) does not
    /// count.
    pub concurrency: usize,
    /// How long fresh single-request uploads to an S3 lake wait for others,
    /// so that one listing of their directory confirms them all (size and
    /// ETag = MD5 of the bytes sent) instead of a HEAD each. A directory with
    /// fewer than [`crate::lake::MIN_LISTED`] fresh files in a batch, or a
    /// file the listing does not show as sent, is verified on its own.
    /// Zero verifies every file on its own. Default: 200 ms.
    pub confirm_window: Duration,
    /// Files hashed at once during a run. Default: 4.
    pub hash_concurrency: usize,
    /// Files downloaded at once during a recall. Default: 4.
    pub recall_concurrency: usize,
    /// Wait before retrying a failed step.
    pub backoff: Backoff,
    /// How volumes are walked.
    pub scan: ScanOptions,
    /// Before a release, take a write lease (`F_SETLEASE`) on the file, which
    /// the kernel grants only if nobody else has it open; a file that is open
    /// stays until a later drain. Where leases are not supported (some network
    /// and FUSE filesystems, or a process without `CAP_LEASE` that does not own
    /// the file) the release relies on the device/inode/size/mtime/ctime
    /// check alone.
    /// Default: true.
    pub lease: bool,
    /// The volumes this mover works on: all of the catalog's (default), or,
    /// when many nodes share the catalog, those of one node.
    pub scope: VolumeScope,
    /// An archive verified longer ago than this is looked at again in the
    /// lake (one HEAD: size and stored SHA-256; read back where the lake
    /// keeps no metadata) just before its local copy is released: a lake
    /// whose lifecycle rules (or a hand) removed it since gets it again
    /// before anything is released. Zero looks again before every release.
    /// Default: 1 h.
    pub reverify_after: Duration,
    /// The site's time zone: the bandwidth timetables' weekdays and hours
    /// are read on its clocks. Default: UTC.
    pub site_zone: SiteZone,
}

/// [`MoverOptions::reverify_after`] by default.
pub const DEFAULT_REVERIFY_AFTER: Duration = Duration::from_secs(3600);

impl Default for MoverOptions {
    fn default() -> Self {
        Self {
            site: String::new(),
            concurrency: 32,
            confirm_window: confirm::WINDOW,
            hash_concurrency: 4,
            recall_concurrency: 4,
            backoff: Backoff::default(),
            scan: ScanOptions::default(),
            lease: true,
            scope: VolumeScope::default(),
            reverify_after: DEFAULT_REVERIFY_AFTER,
            site_zone: SiteZone::default(),
        }
    }
}

impl MoverOptions {
    /// Sets [`MoverOptions::site`].
    pub fn site(mut self, site: impl Into<String>) -> Self {
        self.site = site.into();
        self
    }

    /// Sets [`MoverOptions::concurrency`] (at least 1).
    pub fn concurrency(mut self, n: usize) -> Self {
        self.concurrency = n.max(1);
        self
    }

    /// Sets [`MoverOptions::confirm_window`].
    pub fn confirm_window(mut self, window: Duration) -> Self {
        self.confirm_window = window;
        self
    }

    /// Sets [`MoverOptions::hash_concurrency`] (at least 1).
    pub fn hash_concurrency(mut self, n: usize) -> Self {
        self.hash_concurrency = n.max(1);
        self
    }

    /// Sets [`MoverOptions::recall_concurrency`] (at least 1).
    pub fn recall_concurrency(mut self, n: usize) -> Self {
        self.recall_concurrency = n.max(1);
        self
    }

    /// Sets [`MoverOptions::backoff`].
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// Sets [`MoverOptions::scan`].
    pub fn scan(mut self, scan: ScanOptions) -> Self {
        self.scan = scan;
        self
    }

    /// Sets [`MoverOptions::lease`].
    pub fn lease(mut self, yes: bool) -> Self {
        self.lease = yes;
        self
    }

    /// Sets [`MoverOptions::scope`].
    pub fn scope(mut self, scope: VolumeScope) -> Self {
        self.scope = scope;
        self
    }

    /// Sets [`MoverOptions::reverify_after`].
    pub fn reverify_after(mut self, age: Duration) -> Self {
        self.reverify_after = age;
        self
    }

    /// Sets [`MoverOptions::site_zone`].
    pub fn site_zone(mut self, zone: SiteZone) -> Self {
        self.site_zone = zone;
        self
    }
}

/// What a run is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunGoal {
    /// Every file a rule of the policy picks (a scheduled or requested run).
    Everything,
    /// The volume is past its high watermark: of the files the policy's
    /// `move` rules pick, the least recently used (by the later of mtime and
    /// atime) whose sizes add up to this many bytes, oldest first. Rules
    /// still decide what may move at all: hot data never moves to make room.
    FreeBytes(u64),
}

/// What one [`Mover::drain`] (or the drain part of a run) did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct DrainReport {
    /// Objects written to the lake.
    pub uploaded: u64,
    /// Uploads that found the same object already in the lake.
    pub already_present: u64,
    /// Bytes written to the lake.
    pub uploaded_bytes: u64,
    /// Files verified in the lake and recorded `Archived`.
    pub archived: u64,
    /// Files whose local bytes were removed and recorded `Released`.
    pub released: u64,
    /// Bytes freed locally.
    pub released_bytes: u64,
    /// Moves abandoned because the file changed (it stays local).
    pub abandoned: u64,
    /// Archived files not released because someone has them open; a later drain retries.
    pub busy: u64,
    /// Steps that failed and were recorded with a back-off.
    pub failed: u64,
    /// Backlog entries not attempted because their lake is down.
    pub deferred: u64,
    /// Entries skipped because their policy is not loaded in this mover, or
    /// their volume is not registered.
    pub skipped: u64,
    /// Commands the catalog refused because the record had moved on
    /// (another agent, a newer version of the file).
    pub stale: u64,
    /// Whether some lake failed transiently during the pass.
    pub lake_down: bool,
}

impl DrainReport {
    fn merge(&mut self, o: &DrainReport) {
        self.uploaded += o.uploaded;
        self.already_present += o.already_present;
        self.uploaded_bytes += o.uploaded_bytes;
        self.archived += o.archived;
        self.released += o.released;
        self.released_bytes += o.released_bytes;
        self.abandoned += o.abandoned;
        self.busy += o.busy;
        self.failed += o.failed;
        self.deferred += o.deferred;
        self.skipped += o.skipped;
        self.stale += o.stale;
        self.lake_down |= o.lake_down;
    }
}

/// What one [`Mover::run_policy`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RunReport {
    /// The id of the run's [`RunSummary`](crate::catalog::RunSummary) in the catalog.
    pub run_id: String,
    /// Settled regular files the scan reported.
    pub scanned: u64,
    /// Files skipped by the scan as being written (changed within the
    /// settle window or during the scan).
    pub scan_hot: u64,
    /// Their bytes.
    pub scan_hot_bytes: u64,
    /// Entries the scan could not read.
    pub scan_errors: u64,
    /// Files a rule of the policy matched.
    pub candidates: u64,
    /// Their bytes.
    pub candidate_bytes: u64,
    /// Candidates already in the backlog, unchanged.
    pub in_backlog: u64,
    /// Candidates already archived (or released), unchanged.
    pub already_archived: u64,
    /// Recalled candidates that are not cold again since their recall.
    pub recalled_not_cold: u64,
    /// Candidates that changed between the scan and the end of hashing.
    pub changed: u64,
    /// Intents recorded by this run.
    pub intents: u64,
    /// Files whose move failed to start (unreadable, a path the catalog refuses).
    pub errors: u64,
    /// The uploads, verifications and releases of the run.
    pub drain: DrainReport,
    /// Wall time of the run.
    pub elapsed: Duration,
}

/// The tiering engine of one node. Cheap to clone (shared state).
pub struct Mover<C> {
    inner: Arc<shared::Inner<C>>,
}

impl<C> Clone for Mover<C> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

impl<C> std::fmt::Debug for Mover<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mover")
            .field("options", &self.inner.options)
            .finish_non_exhaustive()
    }
}

impl<C: CatalogClient> Mover<C> {
    /// A mover writing to `catalog`, with no policy loaded yet.
    pub fn new(catalog: C, options: MoverOptions) -> Self {
        Self {
            inner: Arc::new(shared::Inner::new(catalog, options)),
        }
    }

    /// The metrics this mover updates; register them with
    /// [`TieringMetrics::register`].
    pub fn metrics(&self) -> &TieringMetrics {
        &self.inner.metrics
    }

    /// The catalog.
    pub fn catalog(&self) -> &C {
        &self.inner.catalog
    }

    /// How this mover works.
    pub fn options(&self) -> &MoverOptions {
        &self.inner.options
    }

    /// Loads (or replaces) a policy and the lake its files go to. The lake's
    /// uploads are paced by the policy's bandwidth limit from now on.
    pub fn add_policy(&self, policy: Policy, lake: Lake) {
        self.inner.add_policy(policy, lake);
    }

    /// Unloads a policy: its backlog waits until it is loaded again.
    pub fn remove_policy(&self, name: &str) {
        self.inner.remove_policy(name);
    }

    /// Whether the policy's lake answered last time it was asked (`None`: no
    /// such policy loaded).
    pub fn lake_up(&self, policy: &str) -> Option<bool> {
        self.inner.entry(policy).map(|e| e.is_up())
    }

    /// Runs `policy` over `volume`: registers the volume in the catalog (a
    /// no-op when unchanged), scans it, hashes the cold files and records
    /// their intents, while uploading the policy's due backlog oldest first;
    /// then retries releases left pending, and records the run's summary.
    pub async fn run_policy(&self, policy: &str, volume: &Volume) -> Result<RunReport, MoverError> {
        run::run_policy(&self.inner, policy, volume, RunGoal::Everything).await
    }

    /// Like [`Mover::run_policy`], for a [`RunGoal`]: a volume past its
    /// high watermark moves only the least recently used files its `move`
    /// rules pick, until `bytes` would be freed.
    pub async fn run_policy_for(
        &self,
        policy: &str,
        volume: &Volume,
        goal: RunGoal,
    ) -> Result<RunReport, MoverError> {
        run::run_policy(&self.inner, policy, volume, goal).await
    }

    /// Stops work on a volume that is about to be unmounted: no new scan,
    /// upload, release or recall starts on it, and this waits up to `wait`
    /// for the running ones to finish. True when nothing holds the volume
    /// any more. Its records stay in the catalog; [`Mover::readmit_volume`]
    /// undoes this.
    pub async fn withdraw_volume(&self, id: &str, wait: Duration) -> bool {
        self.inner.gate.withdraw(id, wait).await
    }

    /// Lets work start on a withdrawn volume again (it was mounted again).
    pub fn readmit_volume(&self, id: &str) {
        self.inner.gate.readmit(id);
    }

    /// Resumes every loaded policy's work as of `now`: the due backlog
    /// (oldest first; probing a lake that was down first), then the releases
    /// of archived files that are still local.
    pub async fn drain(&self, now: SystemTime) -> Result<DrainReport, MoverError> {
        drain::drain(&self.inner, None, clock::timestamp(now), None).await
    }

    /// Drains every `every` (and refreshes the backlog metrics) until the
    /// future is dropped: the backlog empties by itself once the lake answers.
    pub async fn drain_forever(&self, every: Duration) {
        loop {
            if let Err(e) = self.drain(SystemTime::now()).await {
                tracing::warn!(error = %e, "mover: drain failed");
            }
            tokio::time::sleep(every).await;
        }
    }

    /// Brings back the moved files of `volume` whose path matches `glob`
    /// (policy glob syntax): read from the lake each was verified in (with
    /// the configuration of a loaded policy naming that lake; a file whose
    /// lake no loaded policy names fails, naming the lake), downloaded beside the file, checked (size and
    /// SHA-256), fsynced, given their recorded mtime, renamed into place (never
    /// over an existing file), then recorded `Recalled`. `progress` is called
    /// once with the totals and after every file.
    pub async fn recall(
        &self,
        volume: &str,
        glob: &str,
        progress: impl FnMut(RecallProgress),
    ) -> Result<RecallReport, MoverError> {
        recall::recall(&self.inner, volume, glob, progress).await
    }

    /// Reads the backlog summary from the catalog and sets the backlog gauges.
    pub async fn refresh_metrics(&self) -> Result<BacklogSummary, MoverError> {
        self.inner.refresh_backlog().await
    }
}
