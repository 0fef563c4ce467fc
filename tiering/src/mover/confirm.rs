//! Batched confirmation of fresh uploads: files whose single-request upload
//! just finished wait here a moment, so that one listing of their directory
//! confirms many of them ([`Lake::confirm_uploads`]) instead of a HEAD each.
//! A file waiting here holds no upload slot; one the listing leaves
//! unconfirmed is verified on its own afterwards.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, oneshot};

use crate::lake::{Lake, SentObject};

/// How long the first file of a batch waits for others to join it, by
/// default ([`super::MoverOptions::confirm_window`]).
pub(crate) const WINDOW: Duration = Duration::from_millis(200);

/// A batch this large is listed at once, without waiting out the window.
const FULL: usize = 2048;

/// The fresh uploads of one lake waiting for a listing.
pub(crate) struct Confirmer {
    lake: Lake,
    window: Duration,
    queue: Mutex<Queue>,
    full: Notify,
}

#[derive(Default)]
struct Queue {
    waiting: Vec<(SentObject, oneshot::Sender<bool>)>,
    /// Whether a task is already collecting the current batch.
    collecting: bool,
}

impl Confirmer {
    pub(crate) fn new(lake: Lake, window: Duration) -> Self {
        Self {
            lake,
            window,
            queue: Mutex::default(),
            full: Notify::new(),
        }
    }

    /// Whether fresh uploads are confirmed by listing at all: otherwise
    /// every file goes straight to its own verification.
    pub(crate) fn lists(&self) -> bool {
        !self.window.is_zero() && self.lake.lists()
    }

    /// Waits for the batch `sent` joins to be listed: true if the listing
    /// showed the object with its size and MD5. False is no verdict (see
    /// [`Lake::confirm_uploads`]).
    pub(crate) async fn confirm(self: &Arc<Self>, sent: SentObject) -> bool {
        let (tx, rx) = oneshot::channel();
        let (start, full) = {
            let mut q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
            q.waiting.push((sent, tx));
            let start = !std::mem::replace(&mut q.collecting, true);
            (start, q.waiting.len() >= FULL)
        };
        if start {
            tokio::spawn(self.clone().collect());
        } else if full {
            self.full.notify_one();
        }
        rx.await.unwrap_or(false)
    }

    /// Collects one batch for the window (or until it is full), then lists.
    async fn collect(self: Arc<Self>) {
        tokio::select! {
            _ = tokio::time::sleep(self.window) => {}
            _ = self.full.notified() => {}
        }
        let batch = {
            let mut q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
            q.collecting = false;
            std::mem::take(&mut q.waiting)
        };
        let (sent, answers): (Vec<_>, Vec<_>) = batch.into_iter().unzip();
        let confirmed = self.lake.confirm_uploads(&sent).await;
        for (answer, ok) in answers.into_iter().zip(confirmed) {
            // A waiter that went away (its run was cancelled) needs no answer.
            let _ = answer.send(ok);
        }
    }
}
