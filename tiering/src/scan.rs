//! The scanner: a parallel walk of one volume root that streams the facts of
//! its settled regular files to the mover, in bounded memory.
//!
//! [`scan`] opens the root and starts `workers` threads of its own (never
//! tokio's: the walk is one blocking syscall after another; an async caller
//! consumes the stream from `spawn_blocking` or a dedicated thread). Each
//! worker reads a directory with `getdents64` and `statx`es its entries
//! relative to the directory's descriptor, so no path is resolved twice and a
//! directory swapped for a symlink mid-walk is never followed.
//!
//! # What is reported
//! Only regular files. Symlinks are not followed (neither to files nor to
//! directories, so a symlink loop costs nothing); fifos, sockets and devices
//! are skipped without being counted. With [`ScanOptions::one_file_system`]
//! (the default) a directory on another filesystem (a nested mount) is not
//! entered. An entry that fails (permission denied, vanished between the
//! listing and the `statx`, too deep) is counted in [`ScanStats::errors`],
//! logged at debug level, and the walk goes on: one bad entry never aborts a
//! scan.
//!
//! # Files being written
//! A file whose mtime or ctime is later than *scan start − settle window*
//! ([`ScanOptions::settle`], 60 s by default) is skipped and counted in
//! [`ScanStats::skipped_hot`] (its size in [`ScanStats::skipped_hot_bytes`]):
//! it is being written, or was a moment ago. Any
//! change made after the scan started (a write, a truncate, a rename over it)
//! bumps the ctime past the cutoff, so a file modified *during* the walk is
//! caught by the same rule: the one `statx` per file taken right after the
//! listing already tells a file changed during the walk. [`ScanOptions::recheck`]
//! adds a second `statx` just before a file is sent and skips it if size,
//! mtime, ctime or inode differ from the first; it only matters with a settle
//! window shorter than the kernel's timestamp granularity (a few ms), and
//! costs a syscall per file, so it is off by default.
//!
//! A file held open for writing but idle for longer than the window looks
//! settled and *is* reported. That is safe: the mover hashes it, and before
//! releasing local bytes re-checks that size, mtime, ctime and inode still match what
//! it hashed (DESIGN.md, "file unchanged since hashing"); a late write makes it
//! hot again and it stays local.
//!
//! # Memory bound
//! Nothing in the scanner grows with the number of files:
//! - the file stream is a bounded channel of at most
//!   [`ScanOptions::channel_capacity`] files, sent in batches (of
//!   capacity/16, at most 256, files); workers block when the consumer is
//!   slower than the walk, each holding at most one batch being filled;
//! - directories waiting to be read sit in a bounded queue of
//!   [`ScanOptions::dir_queue_capacity`] open descriptors; when it is full a
//!   worker reads the subdirectory itself, depth first, holding one open
//!   directory and one 32 KiB `getdents` buffer per level it descends (at most
//!   [`MAX_INLINE_DEPTH`] levels; deeper directories are counted as errors).
//!
//! So the scanner holds at most `channel_capacity + (workers + 1) × batch`
//! [`FileFacts`] (the channel, a batch per worker, the consumer's batch), plus
//! `dir_queue_capacity + workers × depth` open directories and
//! `workers × depth × 32 KiB` of buffers, whatever the size of the volume.

mod walk;

#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use crossbeam_channel::Receiver;

pub use walk::MAX_INLINE_DEPTH;

/// What the scanner knows of one settled regular file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileFacts {
    /// Path relative to the volume root (no leading `/`).
    pub rel_path: PathBuf,
    /// Size in bytes.
    pub size: u64,
    /// Last modification of the content.
    pub mtime: SystemTime,
    /// Last access (as precise as the mount's `atime` options allow).
    pub atime: SystemTime,
    /// Last change of content or metadata.
    pub ctime: SystemTime,
    /// Inode number.
    pub ino: u64,
    /// Device of the filesystem holding the file.
    pub dev: u64,
}

/// How to walk a volume. [`ScanOptions::default`] fits a production scan.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ScanOptions {
    /// Worker threads. Default: `std::thread::available_parallelism()`.
    pub workers: usize,
    /// Files whose mtime or ctime is later than scan start minus this window
    /// are skipped as hot. Default: 60 s.
    pub settle: Duration,
    /// Capacity of the [`FileFacts`] stream: at most this many files wait
    /// for the consumer (sent in batches of up to 256). Default: 4096.
    pub channel_capacity: usize,
    /// Capacity of the queue of directories waiting for a worker; each entry
    /// holds an open descriptor. Default: 256 (raised to `workers` if lower).
    pub dir_queue_capacity: usize,
    /// Do not enter directories on another filesystem than the root's.
    /// Default: true.
    pub one_file_system: bool,
    /// `statx` each settled file a second time just before sending it and
    /// skip it as hot if it changed (see the module docs). Default: false.
    pub recheck: bool,
}

impl Default for ScanOptions {
    fn default() -> Self {
        Self {
            workers: std::thread::available_parallelism().map_or(2, |n| n.get()),
            settle: Duration::from_secs(60),
            channel_capacity: 4096,
            dir_queue_capacity: 256,
            one_file_system: true,
            recheck: false,
        }
    }
}

impl ScanOptions {
    /// Sets [`ScanOptions::workers`].
    pub fn workers(mut self, workers: usize) -> Self {
        self.workers = workers;
        self
    }

    /// Sets [`ScanOptions::settle`].
    pub fn settle(mut self, settle: Duration) -> Self {
        self.settle = settle;
        self
    }

    /// Sets [`ScanOptions::channel_capacity`].
    pub fn channel_capacity(mut self, capacity: usize) -> Self {
        self.channel_capacity = capacity;
        self
    }

    /// Sets [`ScanOptions::dir_queue_capacity`].
    pub fn dir_queue_capacity(mut self, capacity: usize) -> Self {
        self.dir_queue_capacity = capacity;
        self
    }

    /// Sets [`ScanOptions::one_file_system`].
    pub fn one_file_system(mut self, yes: bool) -> Self {
        self.one_file_system = yes;
        self
    }

    /// Sets [`ScanOptions::recheck`].
    pub fn recheck(mut self, yes: bool) -> Self {
        self.recheck = yes;
        self
    }
}

/// Counters of one scan, live ([`Scan::stats`]) or final ([`Scan::finish`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ScanStats {
    /// Regular files reported (sent on the stream).
    pub files: u64,
    /// Sum of the sizes of the reported files.
    pub bytes: u64,
    /// Directories read, the root included.
    pub dirs: u64,
    /// Files skipped because they were written within the settle window or
    /// changed during the scan.
    pub skipped_hot: u64,
    /// Sum of the sizes of the files in [`ScanStats::skipped_hot`] (as
    /// `statx` saw them).
    pub skipped_hot_bytes: u64,
    /// Entries that could not be read (permission, vanished, too deep).
    pub errors: u64,
    /// Time from the start of the scan to the end of the walk (or until now
    /// while it runs).
    pub elapsed: Duration,
}

/// Why a scan could not start or finish. Errors on single entries are not
/// here: they are counted in [`ScanStats::errors`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ScanError {
    /// The volume root cannot be opened as a directory.
    #[error("scan root {path}: {source}")]
    Root {
        /// The root given to [`scan`].
        path: PathBuf,
        /// Why it failed.
        #[source]
        source: std::io::Error,
    },
    /// An option is out of range.
    #[error("scan options: {field}: {reason}")]
    Options {
        /// The field of [`ScanOptions`].
        field: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A worker thread could not be started.
    #[error("scan worker: cannot start thread: {0}")]
    Spawn(#[source] std::io::Error),
    /// A worker thread panicked; the stream may have been incomplete.
    #[error("scan worker panicked")]
    WorkerPanicked,
}

/// A running scan: an iterator over the [`FileFacts`] of settled regular
/// files, in no particular order.
///
/// Iterating blocks until the walk produces the next file; consume it on a
/// blocking thread. Dropping the scan (or calling [`Scan::finish`] before the
/// iterator is exhausted) stops the walk.
#[derive(Debug)]
pub struct Scan {
    files: Option<Receiver<Vec<FileFacts>>>,
    current: std::vec::IntoIter<FileFacts>,
    shared: Arc<walk::Shared>,
    workers: Vec<JoinHandle<()>>,
}

/// Starts a scan of the directory `root` (a volume's mount point).
///
/// Fails only if `root` cannot be opened as a directory, an option is out of
/// range, or no thread can be started; everything below the root is
/// best-effort and counted.
pub fn scan(root: &Path, options: &ScanOptions) -> Result<Scan, ScanError> {
    if options.workers == 0 {
        return Err(ScanError::Options {
            field: "workers",
            reason: "must be at least 1",
        });
    }
    if options.channel_capacity == 0 {
        return Err(ScanError::Options {
            field: "channel_capacity",
            reason: "must be at least 1",
        });
    }
    walk::start(root, options)
}

impl Scan {
    /// The counters so far.
    pub fn stats(&self) -> ScanStats {
        self.shared.stats()
    }

    /// Waits for the workers and returns the final counters. Called before the
    /// iterator is exhausted, it stops the walk first (the counters then cover
    /// what was walked).
    pub fn finish(mut self) -> Result<ScanStats, ScanError> {
        self.stop_and_join()?;
        Ok(self.shared.stats())
    }

    fn stop_and_join(&mut self) -> Result<(), ScanError> {
        // Dropping the receiver makes a worker blocked on a full stream
        // return at once; the flag stops the others at their next entry.
        drop(self.files.take());
        if !self.shared.is_done() {
            self.shared.cancelled.store(true, Ordering::Relaxed);
        }
        let mut panicked = false;
        for worker in self.workers.drain(..) {
            panicked |= worker.join().is_err();
        }
        if panicked {
            Err(ScanError::WorkerPanicked)
        } else {
            Ok(())
        }
    }
}

impl Iterator for Scan {
    type Item = FileFacts;

    fn next(&mut self) -> Option<FileFacts> {
        loop {
            if let Some(facts) = self.current.next() {
                return Some(facts);
            }
            self.current = self.files.as_ref()?.recv().ok()?.into_iter();
        }
    }
}

impl Drop for Scan {
    fn drop(&mut self) {
        let _ = self.stop_and_join();
    }
}
