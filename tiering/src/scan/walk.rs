//! The workers of a scan: a shared bounded queue of open directories, each
//! read with `getdents64` and its entries `statx`ed relative to it.

use std::ffi::{CStr, OsString};
use std::mem::MaybeUninit;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crossbeam_channel::{Receiver, Sender, TrySendError, bounded};
use rustix::fd::OwnedFd;
use rustix::fs::{
    AtFlags, CWD, FileType, Mode, OFlags, RawDir, Statx, StatxFlags, StatxTimestamp, makedev,
    openat, statx,
};
use rustix::io::Errno;

use super::{FileFacts, Scan, ScanError, ScanOptions, ScanStats};

/// How many levels a worker descends by itself when the directory queue is
/// full; a directory nested deeper below a queued one is counted as an error.
/// Each level holds one open directory and one 32 KiB buffer.
pub const MAX_INLINE_DEPTH: usize = 1024;

/// Most files a worker batches into one message of the stream: one channel
/// operation (and at most one wake-up of the consumer) per batch, not per file.
const MAX_BATCH: usize = 256;

/// The `getdents64` buffer of one directory being read.
const DIRENT_BUF: usize = 32 * 1024;

/// Enough for [`MAX_INLINE_DEPTH`] nested calls of [`Worker::walk_dir`].
const WORKER_STACK: usize = 8 * 1024 * 1024;

/// Flags of every `statx` of an entry: never follow a symlink, and never ask a
/// network filesystem to revalidate (the mover re-checks before it releases).
const STAT_FLAGS: AtFlags = AtFlags::SYMLINK_NOFOLLOW.union(AtFlags::STATX_DONT_SYNC);

#[derive(Debug)]
enum Job {
    Dir(DirJob),
    /// Sent once per worker when the walk is over.
    Stop,
}

#[derive(Debug)]
struct DirJob {
    fd: OwnedFd,
    rel: PathBuf,
}

/// State shared by the workers and the [`super::Scan`] handle.
#[derive(Debug)]
pub(super) struct Shared {
    dirs_tx: Sender<Job>,
    dirs_rx: Receiver<Job>,
    /// Directories queued or being read; the walk is over when it drops to 0.
    pending: AtomicUsize,
    pub(super) cancelled: AtomicBool,
    files: AtomicU64,
    bytes: AtomicU64,
    dirs: AtomicU64,
    skipped_hot: AtomicU64,
    skipped_hot_bytes: AtomicU64,
    errors: AtomicU64,
    started: Instant,
    walk_time: OnceLock<Duration>,
    /// Scan start − settle window, as (seconds, nanoseconds) since the epoch.
    cutoff: (i64, u32),
    workers: usize,
    root_dev: u64,
    one_file_system: bool,
    recheck: bool,
}

impl Shared {
    pub(super) fn stats(&self) -> ScanStats {
        ScanStats {
            files: self.files.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
            dirs: self.dirs.load(Ordering::Relaxed),
            skipped_hot: self.skipped_hot.load(Ordering::Relaxed),
            skipped_hot_bytes: self.skipped_hot_bytes.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
            elapsed: self
                .walk_time
                .get()
                .copied()
                .unwrap_or_else(|| self.started.elapsed()),
        }
    }

    pub(super) fn is_done(&self) -> bool {
        self.walk_time.get().is_some()
    }

    fn cancelled(&self) -> bool {
        self.cancelled.load(Ordering::Relaxed)
    }
}

/// Opens the root, queues it and starts the workers.
pub(super) fn start(root: &Path, options: &ScanOptions) -> Result<Scan, ScanError> {
    let started = Instant::now();
    let cutoff = SystemTime::now()
        .checked_sub(options.settle)
        .unwrap_or(UNIX_EPOCH);
    let root_error = |errno: Errno| ScanError::Root {
        path: root.to_owned(),
        source: errno.into(),
    };
    let fd = openat(
        CWD,
        root,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(root_error)?;
    let st = statx(&fd, c"", AtFlags::EMPTY_PATH, StatxFlags::TYPE).map_err(root_error)?;

    let workers = options.workers;
    // The queue must hold one Stop per worker once it is empty.
    let (dirs_tx, dirs_rx) = bounded(options.dir_queue_capacity.max(workers));
    let (batch, batches) = batching(options.channel_capacity);
    let (files_tx, files_rx) = bounded(batches);
    let shared = Arc::new(Shared {
        dirs_tx,
        dirs_rx,
        pending: AtomicUsize::new(1),
        cancelled: AtomicBool::new(false),
        files: AtomicU64::new(0),
        bytes: AtomicU64::new(0),
        dirs: AtomicU64::new(1),
        skipped_hot: AtomicU64::new(0),
        skipped_hot_bytes: AtomicU64::new(0),
        errors: AtomicU64::new(0),
        started,
        walk_time: OnceLock::new(),
        cutoff: epoch_parts(cutoff),
        workers,
        root_dev: makedev(st.stx_dev_major, st.stx_dev_minor),
        one_file_system: options.one_file_system,
        recheck: options.recheck,
    });
    let root_job = Job::Dir(DirJob {
        fd,
        rel: PathBuf::new(),
    });
    if shared.dirs_tx.try_send(root_job).is_err() {
        unreachable!("a fresh queue of capacity >= 1 takes the root");
    }

    let mut handles = Vec::with_capacity(workers);
    for i in 0..workers {
        let worker = Worker {
            shared: Arc::clone(&shared),
            files: files_tx.clone(),
            batch: Vec::with_capacity(batch),
            batch_bytes: 0,
            batch_size: batch,
            bufs: Vec::new(),
            local: Local::default(),
        };
        let spawned = thread::Builder::new()
            .name(format!("strata-scan-{i}"))
            .stack_size(WORKER_STACK)
            .spawn(move || worker.run());
        match spawned {
            Ok(handle) => handles.push(handle),
            Err(err) => {
                // The workers already started drain the queue and stop.
                shared.cancelled.store(true, Ordering::Relaxed);
                return Err(ScanError::Spawn(err));
            }
        }
    }
    Ok(Scan {
        files: Some(files_rx),
        current: Vec::new().into_iter(),
        shared,
        workers: handles,
    })
}

/// Counters kept per worker and added to the shared ones after each
/// directory and before blocking on a full stream, so the hot path touches no
/// shared cache line.
#[derive(Default)]
struct Local {
    files: u64,
    bytes: u64,
    dirs: u64,
    skipped_hot: u64,
    skipped_hot_bytes: u64,
    errors: u64,
}

struct Worker {
    shared: Arc<Shared>,
    files: Sender<Vec<FileFacts>>,
    /// Files not sent yet, and the sum of their sizes.
    batch: Vec<FileFacts>,
    batch_bytes: u64,
    batch_size: usize,
    /// Buffers of directories already read, reused.
    bufs: Vec<Box<[MaybeUninit<u8>]>>,
    local: Local,
}

impl Worker {
    fn run(mut self) {
        while let Ok(Job::Dir(job)) = self.shared.dirs_rx.recv() {
            if !self.shared.cancelled() {
                self.walk_dir(&job.fd, &job.rel, 0);
            }
            drop(job);
            self.send_batch();
            self.flush();
            if self.shared.pending.fetch_sub(1, Ordering::AcqRel) == 1 {
                // Nothing queued, nothing being read: nobody can queue more.
                let _ = self.shared.walk_time.set(self.shared.started.elapsed());
                for _ in 0..self.shared.workers {
                    let _ = self.shared.dirs_tx.try_send(Job::Stop);
                }
            }
        }
    }

    fn flush(&mut self) {
        let local = std::mem::take(&mut self.local);
        let shared = &self.shared;
        for (counter, value) in [
            (&shared.files, local.files),
            (&shared.bytes, local.bytes),
            (&shared.dirs, local.dirs),
            (&shared.skipped_hot, local.skipped_hot),
            (&shared.skipped_hot_bytes, local.skipped_hot_bytes),
            (&shared.errors, local.errors),
        ] {
            if value != 0 {
                counter.fetch_add(value, Ordering::Relaxed);
            }
        }
    }

    fn walk_dir(&mut self, dir: &OwnedFd, rel: &Path, depth: usize) {
        let mut buf = self
            .bufs
            .pop()
            .unwrap_or_else(|| Box::new_uninit_slice(DIRENT_BUF));
        let mut entries = RawDir::new(dir, &mut buf[..]);
        while let Some(entry) = entries.next() {
            if self.shared.cancelled() {
                break;
            }
            let entry = match entry {
                Ok(entry) => entry,
                Err(err) => {
                    self.error(rel, None, &err);
                    break;
                }
            };
            let name = entry.file_name();
            if name == c"." || name == c".." {
                continue;
            }
            match entry.file_type() {
                // Unknown: the filesystem does not fill d_type; statx tells.
                FileType::RegularFile | FileType::Unknown => self.file(dir, rel, name, depth),
                FileType::Directory => self.subdir(dir, rel, name, depth),
                // Symlinks are not followed; fifos, sockets, devices hold no data.
                _ => {}
            }
        }
        self.bufs.push(buf);
        if depth > 0 {
            self.flush();
        }
    }

    fn file(&mut self, dir: &OwnedFd, rel: &Path, name: &CStr, depth: usize) {
        let Some(st) = self.stat(dir, rel, name) else {
            return;
        };
        match FileType::from_raw_mode(st.stx_mode.into()) {
            FileType::RegularFile => {}
            // Listed without a type, or replaced since the listing.
            FileType::Directory => return self.subdir(dir, rel, name, depth),
            _ => return,
        }
        if self.is_hot(&st) {
            return self.hot(&st);
        }
        if self.shared.recheck {
            let Some(again) = self.stat(dir, rel, name) else {
                return;
            };
            if !unchanged(&st, &again) {
                return self.hot(&again);
            }
        }
        self.batch_bytes += st.stx_size;
        self.batch.push(facts(child_path(rel, name), &st));
        if self.batch.len() >= self.batch_size {
            self.send_batch();
        }
    }

    fn send_batch(&mut self) {
        if self.batch.is_empty() {
            return;
        }
        let batch = std::mem::replace(&mut self.batch, Vec::with_capacity(self.batch_size));
        let (files, bytes) = (batch.len() as u64, std::mem::take(&mut self.batch_bytes));
        let sent = match self.files.try_send(batch) {
            Ok(()) => true,
            Err(TrySendError::Full(batch)) => {
                // About to wait for the consumer: make the counters exact.
                self.flush();
                self.files.send(batch).is_ok()
            }
            Err(TrySendError::Disconnected(_)) => false,
        };
        if sent {
            self.local.files += files;
            self.local.bytes += bytes;
        } else {
            // The consumer is gone: stop the walk.
            self.shared.cancelled.store(true, Ordering::Relaxed);
        }
    }

    fn subdir(&mut self, dir: &OwnedFd, rel: &Path, name: &CStr, depth: usize) {
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let child = match openat(dir, name, flags, Mode::empty()) {
            Ok(fd) => fd,
            Err(err) => return self.error(rel, Some(name), &err),
        };
        if self.shared.one_file_system {
            match statx(&child, c"", AtFlags::EMPTY_PATH, StatxFlags::TYPE) {
                Ok(st) if makedev(st.stx_dev_major, st.stx_dev_minor) == self.shared.root_dev => {}
                Ok(_) => return, // a nested mount: another volume's business
                Err(err) => return self.error(rel, Some(name), &err),
            }
        }
        self.local.dirs += 1;
        let job = DirJob {
            fd: child,
            rel: child_path(rel, name),
        };
        // Count it before it becomes visible, so `pending` cannot reach 0
        // while it waits in the queue.
        self.shared.pending.fetch_add(1, Ordering::AcqRel);
        let Err(refused) = self.shared.dirs_tx.try_send(Job::Dir(job)) else {
            return;
        };
        // The queue is full: read it here, depth first. This job still holds
        // `pending` above 0, so the decrement cannot end the walk.
        self.shared.pending.fetch_sub(1, Ordering::AcqRel);
        let Job::Dir(job) = refused.into_inner() else {
            return;
        };
        if depth >= MAX_INLINE_DEPTH {
            self.local.errors += 1;
            tracing::debug!(path = %job.rel.display(), "scan: directory nested too deep, skipped");
            return;
        }
        self.walk_dir(&job.fd, &job.rel, depth + 1);
    }

    fn stat(&mut self, dir: &OwnedFd, rel: &Path, name: &CStr) -> Option<Statx> {
        match statx(dir, name, STAT_FLAGS, StatxFlags::BASIC_STATS) {
            Ok(st) => Some(st),
            Err(err) => {
                self.error(rel, Some(name), &err);
                None
            }
        }
    }

    fn is_hot(&self, st: &Statx) -> bool {
        let cutoff = self.shared.cutoff;
        parts(&st.stx_mtime) > cutoff || parts(&st.stx_ctime) > cutoff
    }

    /// Counts a file held back as hot: a run tells how much waits for a later
    /// one, so a user who sees nothing moved learns why.
    fn hot(&mut self, st: &Statx) {
        self.local.skipped_hot += 1;
        self.local.skipped_hot_bytes += st.stx_size;
    }

    fn error(&mut self, rel: &Path, name: Option<&CStr>, err: &Errno) {
        self.local.errors += 1;
        let path = match name {
            Some(name) => child_path(rel, name),
            None => rel.to_owned(),
        };
        tracing::debug!(path = %path.display(), error = %err, "scan: entry skipped");
    }
}

/// Splits a stream of `capacity` files into (files per batch, batches in the
/// channel): never more than `capacity` files wait in the channel, and batches
/// stay small enough that a small capacity still streams.
fn batching(capacity: usize) -> (usize, usize) {
    let batch = (capacity / 16).clamp(1, MAX_BATCH);
    (batch, (capacity / batch).max(1))
}

/// `rel/name`, allocated once at its final size (`Path::join` reallocates).
fn child_path(rel: &Path, name: &CStr) -> PathBuf {
    let (rel, name) = (rel.as_os_str().as_bytes(), name.to_bytes());
    let mut path = Vec::with_capacity(rel.len() + 1 + name.len());
    if !rel.is_empty() {
        path.extend_from_slice(rel);
        path.push(b'/');
    }
    path.extend_from_slice(name);
    PathBuf::from(OsString::from_vec(path))
}

/// Whether two `statx` of one name describe the same, unmodified file.
fn unchanged(a: &Statx, b: &Statx) -> bool {
    a.stx_ino == b.stx_ino
        && a.stx_size == b.stx_size
        && parts(&a.stx_mtime) == parts(&b.stx_mtime)
        && parts(&a.stx_ctime) == parts(&b.stx_ctime)
}

fn facts(rel_path: PathBuf, st: &Statx) -> FileFacts {
    FileFacts {
        rel_path,
        size: st.stx_size,
        mtime: system_time(&st.stx_mtime),
        atime: system_time(&st.stx_atime),
        ctime: system_time(&st.stx_ctime),
        ino: st.stx_ino,
        dev: makedev(st.stx_dev_major, st.stx_dev_minor),
    }
}

fn parts(t: &StatxTimestamp) -> (i64, u32) {
    (t.tv_sec, t.tv_nsec)
}

fn epoch_parts(t: SystemTime) -> (i64, u32) {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => (
            i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
            d.subsec_nanos(),
        ),
        Err(before) => {
            let d = before.duration();
            let secs = -i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
            match d.subsec_nanos() {
                0 => (secs, 0),
                n => (secs - 1, 1_000_000_000 - n),
            }
        }
    }
}

fn system_time(t: &StatxTimestamp) -> SystemTime {
    let nanos = Duration::from_nanos(u64::from(t.tv_nsec));
    let secs = Duration::from_secs(t.tv_sec.unsigned_abs());
    if t.tv_sec >= 0 {
        UNIX_EPOCH + secs + nanos
    } else {
        UNIX_EPOCH - secs + nanos
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_never_hold_more_than_the_capacity() {
        for capacity in [1, 2, 15, 16, 17, 100, 4096, 4097, 1 << 20] {
            let (batch, batches) = batching(capacity);
            assert!(
                (1..=MAX_BATCH).contains(&batch) && batches >= 1,
                "{capacity}"
            );
            assert!(batch * batches <= capacity, "{capacity}");
            assert!(batch * batches > capacity / 2, "{capacity}");
        }
        assert_eq!(batching(4096), (256, 16));
    }

    #[test]
    fn epoch_parts_round_trips_before_and_after_the_epoch() {
        // StatxTimestamp is non_exhaustive: start from a real one.
        let mut ts = statx(CWD, c"/", AtFlags::empty(), StatxFlags::MTIME)
            .expect("statx /")
            .stx_mtime;
        for (secs, nsec) in [
            (0i64, 0u32),
            (1_700_000_000, 5),
            (-1, 999_999_999),
            (-10, 0),
        ] {
            ts.tv_sec = secs;
            ts.tv_nsec = nsec;
            assert_eq!(epoch_parts(system_time(&ts)), (secs, nsec));
        }
    }
}
