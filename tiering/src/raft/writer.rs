//! The log's one writer: a dedicated thread that applies write batches in
//! the order they were submitted and makes them durable with group commit.
//!
//! openraft requires every log write (vote, append, truncate, purge) to be
//! applied in order, appended entries to be readable when `append` returns,
//! and the IO-flushed callback to fire only once they are on disk. So each
//! batch is written to RocksDB (memtable + WAL, no fsync) and the submitter
//! is told at once that it is visible; the callbacks of appended batches
//! wait until the thread has drained its queue and synced the WAL once
//! (`flush_wal(true)`): one fsync covers every batch written since the last
//! one. A vote is written with `sync` and is on disk before `save_vote`
//! returns.
//!
//! Appends and the committed index are the exceptions to "written by the
//! thread": the log store writes them itself (no sync), and for appends only
//! asks the thread to call back after its next sync
//! ([`LogWriter::sync_later`]). Every other write was awaited before, so the
//! order still holds.
//!
//! The syncs run on this thread, never on the async workers.

use std::io;
use std::sync::Arc;
use std::sync::mpsc;

use openraft::storage::IOFlushed;
use rocksdb::{WriteBatch, WriteOptions};
use tokio::sync::oneshot;

use super::store::Store;
use super::types::C;

/// When the submitter of a batch may rely on it.
pub(crate) enum Durability {
    /// Visible to readers when `write` returns; durable with the next sync.
    Visible,
    /// On disk when `write` returns.
    Synced,
    /// Visible when `write` returns; `flushed` is called once it is on disk.
    Flushed(IOFlushed<C>),
}

struct Job {
    op: &'static str,
    batch: WriteBatch,
    durability: Durability,
    written: oneshot::Sender<io::Result<()>>,
}

/// The handle to the writer thread; dropping it ends the thread and waits
/// for it, so that the thread's handle on the database is gone when the log
/// store is (RocksDB must be closed before the process exits).
pub(crate) struct LogWriter {
    tx: Option<mpsc::Sender<Job>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for LogWriter {
    fn drop(&mut self) {
        // The thread is idle or finishing a batch: it ends as soon as it
        // sees the channel closed.
        drop(self.tx.take());
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            tracing::error!("catalog log writer thread panicked");
        }
    }
}

impl LogWriter {
    /// Starts the writer thread for `store`.
    pub(crate) fn spawn(store: Arc<Store>) -> io::Result<LogWriter> {
        let (tx, rx) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("catalog-log-writer".into())
            .spawn(move || run(&store, &rx))?;
        Ok(LogWriter {
            tx: Some(tx),
            thread: Some(thread),
        })
    }

    /// Writes `batch` after every batch submitted before it; returns once it
    /// is visible (or synced, for [`Durability::Synced`]).
    pub(crate) async fn write(
        &self,
        op: &'static str,
        batch: WriteBatch,
        durability: Durability,
    ) -> io::Result<()> {
        let (written, rx) = oneshot::channel();
        self.send(Job {
            op,
            batch,
            durability,
            written,
        })?;
        rx.await
            .map_err(|_| io::Error::other(format!("catalog log writer stopped during {op}")))?
    }

    /// Calls `flushed` once everything written to the store so far (on any
    /// thread) is on disk, with the next WAL sync; returns at once.
    pub(crate) fn sync_later(&self, op: &'static str, flushed: IOFlushed<C>) {
        let (written, _) = oneshot::channel();
        // A writer that has stopped answers the callback itself.
        let _ = self.send(Job {
            op,
            batch: WriteBatch::default(),
            durability: Durability::Flushed(flushed),
            written,
        });
    }

    /// Hands `job` to the thread; if it has stopped, fails the job's
    /// callback (if any) and answers why.
    fn send(&self, job: Job) -> io::Result<()> {
        let sent = match &self.tx {
            Some(tx) => tx.send(job),
            None => Err(mpsc::SendError(job)),
        };
        let Err(mpsc::SendError(job)) = sent else {
            return Ok(());
        };
        let op = job.op;
        let err = || io::Error::other(format!("catalog log writer stopped before {op}"));
        if let Durability::Flushed(cb) = job.durability {
            cb.io_completed(Err(err()));
        }
        Err(err())
    }
}

fn run(store: &Store, rx: &mpsc::Receiver<Job>) {
    let plain = WriteOptions::default();
    let mut sync = WriteOptions::default();
    sync.set_sync(true);
    while let Ok(first) = rx.recv() {
        // Callbacks waiting for the next fsync.
        let mut waiting: Vec<(&'static str, IOFlushed<C>)> = Vec::new();
        let mut next = Some(first);
        while let Some(job) = next {
            let opts = match job.durability {
                Durability::Synced => &sync,
                _ => &plain,
            };
            let res = if job.batch.is_empty() {
                Ok(())
            } else {
                store.db().write_opt(job.batch, opts)
            };
            if let Durability::Flushed(cb) = job.durability {
                match &res {
                    Ok(()) => waiting.push((job.op, cb)),
                    Err(e) => cb.io_completed(Err(store.rocks(job.op, e.clone()))),
                }
            }
            // The submitter may have given up (its task was cancelled): the
            // write stands regardless.
            let _ = job.written.send(res.map_err(|e| store.rocks(job.op, e)));
            next = rx.try_recv().ok();
        }
        if waiting.is_empty() {
            continue;
        }
        let synced = store.db().flush_wal(true);
        for (op, cb) in waiting {
            cb.io_completed(
                synced
                    .clone()
                    .map_err(|e| store.rocks(&format!("sync the WAL after {op}"), e)),
            );
        }
    }
}
