//! Which volumes the mover may touch. A volume about to be unmounted is
//! withdrawn: no new task starts on it, and whoever withdrew it can wait
//! until the tasks that hold it (a scan, an upload reading a file, a
//! release, a recall) have finished and closed their files.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::Notify;

#[derive(Default)]
struct State {
    holds: HashMap<String, usize>,
    withdrawn: HashSet<String>,
}

/// The holds on volumes of one mover.
#[derive(Default)]
pub(crate) struct VolumeGate {
    state: Mutex<State>,
    released: Notify,
}

/// A task's hold on a volume; dropping it lets a withdrawal finish.
pub(crate) struct Hold {
    gate: Arc<VolumeGate>,
    volume: String,
}

impl Drop for Hold {
    fn drop(&mut self) {
        let mut s = self.gate.lock();
        if let Some(n) = s.holds.get_mut(&self.volume) {
            *n -= 1;
            if *n == 0 {
                s.holds.remove(&self.volume);
            }
        }
        drop(s);
        self.gate.released.notify_waiters();
    }
}

impl VolumeGate {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A hold on `volume`, or `None` when it is withdrawn.
    pub(crate) fn hold(self: &Arc<Self>, volume: &str) -> Option<Hold> {
        let mut s = self.lock();
        if s.withdrawn.contains(volume) {
            return None;
        }
        *s.holds.entry(volume.to_owned()).or_default() += 1;
        Some(Hold {
            gate: self.clone(),
            volume: volume.to_owned(),
        })
    }

    pub(crate) fn is_withdrawn(&self, volume: &str) -> bool {
        self.lock().withdrawn.contains(volume)
    }

    /// Withdraws `volume` and waits up to `wait` for its holds to go; true
    /// when none is left.
    pub(crate) async fn withdraw(&self, volume: &str, wait: Duration) -> bool {
        self.lock().withdrawn.insert(volume.to_owned());
        let idle = async {
            loop {
                let released = self.released.notified();
                tokio::pin!(released);
                released.as_mut().enable();
                if !self.lock().holds.contains_key(volume) {
                    return;
                }
                released.await;
            }
        };
        tokio::time::timeout(wait, idle).await.is_ok()
    }

    /// Lets tasks hold `volume` again.
    pub(crate) fn readmit(&self, volume: &str) {
        self.lock().withdrawn.remove(volume);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_withdrawal_waits_for_the_holds_and_refuses_new_ones() {
        let gate = Arc::new(VolumeGate::default());
        let a = gate.hold("a").unwrap();
        let other = gate.hold("b").unwrap();
        assert!(!gate.withdraw("a", Duration::from_millis(50)).await);
        assert!(gate.hold("a").is_none(), "withdrawn: no new hold");
        let g = gate.clone();
        let waiter = tokio::spawn(async move { g.withdraw("a", Duration::from_secs(10)).await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiter.is_finished());
        drop(a);
        assert!(waiter.await.unwrap(), "the last hold went");
        assert!(gate.hold("b").is_some(), "other volumes are untouched");
        drop(other);
        gate.readmit("a");
        assert!(gate.hold("a").is_some());
    }
}
