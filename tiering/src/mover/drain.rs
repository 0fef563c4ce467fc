//! Draining: the due backlog oldest first, many files at once, then the
//! releases that archived files still wait for. Works from the catalog alone,
//! so it resumes whatever a crash or an unreachable lake left behind.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio::task::{JoinError, JoinSet};
use tracing::Instrument;

use crate::catalog::{
    CatalogClient, CatalogError, FileFilter, FileKey, FileRecord, FileState, Timestamp,
};
use crate::policy::Action;

use super::DrainReport;
use super::error::MoverError;
use super::gate::Hold;
use super::rebind;
use super::shared::{Inner, PolicyEntry};
use super::step;

/// Records fetched from the catalog per read.
const PAGE: usize = 256;

/// New intents arriving while a run's drain goes on.
#[derive(Default)]
pub(crate) struct Feed {
    notify: Notify,
    closed: AtomicBool,
}

impl Feed {
    /// A new intent is in the catalog.
    pub(crate) fn push(&self) {
        self.notify.notify_one();
    }

    /// No more intents will come.
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        self.notify.notify_one();
    }

    fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }
}

/// Drains the due backlog as of `now` (of one policy, or of every loaded
/// one), taking new intents from `feed` until it closes; then retries the
/// releases of archived files; then refreshes the backlog gauges.
pub(crate) async fn drain<C: CatalogClient>(
    inner: &Arc<Inner<C>>,
    policy: Option<&str>,
    now: Timestamp,
    feed: Option<&Feed>,
) -> Result<DrainReport, MoverError> {
    let mut report = backlog(inner, policy, now, feed).await?;
    report.merge(&archived(inner, policy, now).await?);
    inner.refresh_backlog().await?;
    Ok(report)
}

type Task = (String, Result<DrainReport, CatalogError>);

/// Tasks per slot a pool keeps at most, those waiting for a batched
/// confirmation included.
const TASKS_PER_SLOT: usize = 64;

/// One of the mover's `concurrency` slots, held by a file's task while it
/// works; let go while the file waits for a batched confirmation of its
/// upload, so the next files upload meanwhile.
pub(crate) struct Slot {
    permit: Option<OwnedSemaphorePermit>,
    slots: Arc<Semaphore>,
}

impl Slot {
    /// Lets the slot go.
    pub(crate) fn release(&mut self) {
        self.permit = None;
    }

    /// Takes a slot again (waiting for one), unless it is still held.
    pub(crate) async fn take(&mut self) {
        if self.permit.is_none() {
            let permit = self.slots.clone().acquire_owned().await;
            self.permit = Some(permit.expect("a pool's semaphore is never closed"));
        }
    }
}

/// Tasks in flight, at most `concurrency` of them holding a [`Slot`], and
/// what they reported.
struct Pool {
    set: JoinSet<Task>,
    slots: Arc<Semaphore>,
    max_tasks: usize,
    report: DrainReport,
    /// Policies whose lake failed transiently in this pass.
    down: BTreeSet<String>,
    error: Option<CatalogError>,
}

impl Pool {
    fn new(concurrency: usize) -> Self {
        let concurrency = concurrency.max(1);
        Self {
            set: JoinSet::new(),
            slots: Arc::new(Semaphore::new(concurrency)),
            max_tasks: concurrency * TASKS_PER_SLOT,
            report: DrainReport::default(),
            down: BTreeSet::new(),
            error: None,
        }
    }

    /// Waits for a free slot (taking in what finished meanwhile), then
    /// starts `task` with it.
    async fn spawn<F>(&mut self, task: impl FnOnce(Slot) -> F)
    where
        F: Future<Output = Task> + Send + 'static,
    {
        while self.set.len() >= self.max_tasks {
            self.join_one().await;
        }
        let permit = loop {
            tokio::select! {
                biased;
                Some(done) = self.set.join_next() => self.absorb(done),
                permit = self.slots.clone().acquire_owned() => {
                    break permit.expect("a pool's semaphore is never closed");
                }
            }
        };
        let slot = Slot {
            permit: Some(permit),
            slots: self.slots.clone(),
        };
        self.set.spawn(task(slot));
    }

    /// Waits for one task; false if none is running.
    async fn join_one(&mut self) -> bool {
        match self.set.join_next().await {
            Some(done) => {
                self.absorb(done);
                true
            }
            None => false,
        }
    }

    fn absorb(&mut self, done: Result<Task, JoinError>) {
        match done {
            Ok((policy, Ok(r))) => {
                if r.lake_down {
                    self.down.insert(policy);
                }
                self.report.merge(&r);
            }
            Ok((_, Err(e))) => {
                self.error.get_or_insert(e);
            }
            Err(e) => {
                tracing::error!(error = %e, "mover task failed");
                self.report.failed += 1;
            }
        }
    }

    async fn finish(mut self) -> Result<DrainReport, MoverError> {
        while self.join_one().await {}
        match self.error {
            Some(e) => Err(e.into()),
            None => Ok(self.report),
        }
    }
}

/// One file's move as a pool task, started with its slot.
fn advance_task<C: CatalogClient>(
    inner: Arc<Inner<C>>,
    entry: Arc<PolicyEntry>,
    rec: FileRecord,
    root: PathBuf,
    hold: Hold,
    mut slot: Slot,
) -> impl Future<Output = Task> + Send + 'static {
    let span = tracing::info_span!("move", volume = %rec.key.volume, path = %rec.key.path, policy = %rec.policy);
    async move {
        let r = step::advance(&inner, &entry, rec, &root, &mut slot).await;
        drop((hold, slot));
        (entry.name().to_owned(), r)
    }
    .instrument(span)
}

async fn backlog<C: CatalogClient>(
    inner: &Arc<Inner<C>>,
    policy: Option<&str>,
    now: Timestamp,
    feed: Option<&Feed>,
) -> Result<DrainReport, MoverError> {
    let mut pool = Pool::new(inner.options.concurrency);
    // Everything up to the cursor was dispatched (or passed over) in this
    // pass; entries that fail stay in the backlog behind it until the next pass.
    let mut cursor: Option<(Timestamp, FileKey)> = None;
    let mut probed = BTreeSet::new();
    let mut skipped = 0u64;
    let mut deferred = 0u64;
    // The backlog is ordered by intent time, and intents proposed at once
    // may commit out of that order (more so through a leader elsewhere): an
    // intent of the feeding run can turn up behind the cursor. Once the feed
    // has closed, every one of its intents is committed, so one more sweep
    // from the start finds those (what it passes over was counted already).
    let mut swept = feed.is_none();
    let mut sweeping = false;
    while pool.error.is_none() {
        let closed_before = feed.is_none_or(Feed::is_closed);
        let after = cursor.clone();
        let scope = inner.options.scope.clone();
        let page = inner
            .catalog
            .read(move |s| {
                s.due_backlog(now)
                    .filter(|r| scope.owns(s.volume(&r.key.volume)))
                    .skip_while(|r| {
                        after
                            .as_ref()
                            .is_some_and(|(at, k)| (r.intent_at, &r.key) <= (*at, k))
                    })
                    .take(PAGE)
                    .map(|r| (r.clone(), s.volume(&r.key.volume).map(|v| v.path.clone())))
                    .collect::<Vec<_>>()
            })
            .await;
        let page = match page {
            Ok(p) => p,
            Err(e) => {
                pool.error.get_or_insert(e);
                break;
            }
        };
        if page.is_empty() {
            if pool.set.is_empty() && closed_before {
                if swept {
                    break;
                }
                (swept, sweeping, cursor) = (true, true, None);
                continue;
            }
            // Wait for a file to finish (a lake may have come back or gone)
            // or for a new intent.
            tokio::select! {
                _ = pool.join_one(), if !pool.set.is_empty() => {}
                _ = async { if let Some(f) = feed { f.notify.notified().await } }, if feed.is_some() => {}
            }
            continue;
        }
        for (rec, root) in page {
            cursor = Some((rec.intent_at, rec.key.clone()));
            if policy.is_some_and(|p| p != rec.policy) {
                continue;
            }
            let (Some(entry), Some(root)) = (inner.entry(&rec.policy), root) else {
                skipped += u64::from(!sweeping);
                continue;
            };
            if pool.down.contains(&rec.policy) {
                deferred += u64::from(!sweeping);
                continue;
            }
            if !entry.is_up() {
                // Down since an earlier pass: one cheap probe before any upload.
                let first = probed.insert(rec.policy.clone());
                let back = first && probe(inner, &entry).await;
                if !back {
                    pool.down.insert(rec.policy.clone());
                    deferred += u64::from(!sweeping);
                    continue;
                }
            }
            let Some(hold) = inner.gate.hold(&rec.key.volume) else {
                skipped += u64::from(!sweeping);
                continue;
            };
            let (inner, root) = (inner.clone(), PathBuf::from(root));
            pool.spawn(move |slot| advance_task(inner, entry, rec, root, hold, slot))
                .await;
            if pool.error.is_some() {
                break;
            }
        }
    }
    let mut report = pool.finish().await?;
    report.skipped += skipped;
    report.deferred += deferred;
    Ok(report)
}

async fn probe<C: CatalogClient>(inner: &Inner<C>, entry: &PolicyEntry) -> bool {
    match entry.lake.reachable().await {
        Ok(()) => {
            entry.set_up(true, &inner.metrics);
            true
        }
        Err(e) => {
            tracing::debug!(policy = entry.name(), error = %e, "lake still unreachable");
            entry.set_up(false, &inner.metrics);
            false
        }
    }
}

/// Releases the archived files of `move` rules that are still local (a
/// crash, a file that was open, a release that failed), each once its copy
/// is known to be in its policy's lake now ([`rebind`]); one whose upload
/// to that lake failed waits out its back-off.
async fn archived<C: CatalogClient>(
    inner: &Arc<Inner<C>>,
    policy: Option<&str>,
    now: Timestamp,
) -> Result<DrainReport, MoverError> {
    let mut pool = Pool::new(inner.options.concurrency);
    let mut after: Option<FileKey> = None;
    loop {
        let from = after.take();
        let scope = inner.options.scope.clone();
        let (items, next) = inner
            .catalog
            .read(move |s| {
                let filter = FileFilter {
                    state: Some(FileState::Archived),
                    ..FileFilter::default()
                };
                let page = s.files(&filter, from.as_ref(), PAGE);
                let items = page
                    .items
                    .into_iter()
                    .filter(|r| scope.owns(s.volume(&r.key.volume)))
                    .map(|r| (r.clone(), s.volume(&r.key.volume).map(|v| v.path.clone())))
                    .collect::<Vec<_>>();
                (items, page.next)
            })
            .await?;
        for (rec, root) in items {
            if policy.is_some_and(|p| p != rec.policy) {
                continue;
            }
            let (Some(entry), Some(root)) = (inner.entry(&rec.policy), root) else {
                continue;
            };
            if entry.action_of(&rec.rule) != Some(Action::Move)
                || rec.next_attempt_at.is_some_and(|at| at > now)
            {
                continue;
            }
            let Some(hold) = inner.gate.hold(&rec.key.volume) else {
                continue;
            };
            let inner = inner.clone();
            let span = tracing::info_span!("release", volume = %rec.key.volume, path = %rec.key.path, policy = %rec.policy);
            let task = move |slot: Slot| {
                async move {
                    let mut t = DrainReport::default();
                    let root = PathBuf::from(root);
                    let r = rebind::release_archived(&inner, &entry, rec, &root, &mut t).await;
                    drop((hold, slot));
                    (entry.name().to_owned(), r.map(|()| t))
                }
                .instrument(span)
            };
            pool.spawn(task).await;
            if pool.error.is_some() {
                return pool.finish().await;
            }
        }
        match next {
            Some(n) => after = Some(n),
            None => break,
        }
    }
    pool.finish().await
}
