//! What the daemon's loops are doing, for the watchdog, the status line and metrics.
//!
//! Each long-running loop holds a [`Beat`] and marks every unit of work with
//! [`Beat::working`]. A loop waiting for work is healthy however long it waits; a loop
//! that has been inside one unit of work for too long (a hung database, a wedged call) is
//! stalled, and the watchdog stops vouching for the process.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

/// The loops' shared state.
#[derive(Debug)]
pub struct Health {
    epoch: Instant,
    beats: Vec<Arc<Beat>>,
    paused: AtomicBool,
}

/// One loop's activity: when its current unit of work started, if it is in one.
#[derive(Debug)]
pub struct Beat {
    name: &'static str,
    epoch: Instant,
    /// Milliseconds from `epoch` to the start of the current unit of work, plus one;
    /// zero while the loop waits.
    busy_since: AtomicU64,
}

/// Marks a unit of work; the loop counts as waiting again when it is dropped.
#[must_use = "the unit of work ends when the guard is dropped"]
pub struct Working<'a>(&'a Beat);

impl Health {
    /// Health of loops with these names.
    pub fn new(names: &[&'static str]) -> Health {
        let epoch = Instant::now();
        let beats = names
            .iter()
            .map(|name| {
                Arc::new(Beat {
                    name,
                    epoch,
                    busy_since: AtomicU64::new(0),
                })
            })
            .collect();
        Health {
            epoch,
            beats,
            paused: AtomicBool::new(false),
        }
    }

    /// The beat of the loop named `name`.
    ///
    /// # Panics
    ///
    /// No loop of that name was given to [`Health::new`]: a programming error.
    pub fn beat(&self, name: &str) -> Arc<Beat> {
        self.beats
            .iter()
            .find(|beat| beat.name == name)
            .cloned()
            .unwrap_or_else(|| panic!("no loop named `{name}`"))
    }

    /// The first loop that has been inside one unit of work for longer than `limit`,
    /// with how long.
    pub fn stalled(&self, limit: Duration) -> Option<(&'static str, Duration)> {
        let now = self.epoch.elapsed();
        self.beats.iter().find_map(|beat| {
            let since = beat.busy_since.load(Ordering::Relaxed);
            if since == 0 {
                return None;
            }
            let busy = now.saturating_sub(Duration::from_millis(since - 1));
            (busy > limit).then_some((beat.name, busy))
        })
    }

    /// Records whether submissions are paused because the API refuses the account.
    pub fn set_paused(&self, paused: bool) {
        self.paused.store(paused, Ordering::Relaxed);
    }

    /// Whether submissions are paused because the API refuses the account.
    pub fn is_paused(&self) -> bool {
        self.paused.load(Ordering::Relaxed)
    }
}

impl Beat {
    /// Marks the start of a unit of work, until the guard is dropped.
    pub fn working(&self) -> Working<'_> {
        let since = self.epoch.elapsed().as_millis() as u64 + 1;
        self.busy_since.store(since, Ordering::Relaxed);
        Working(self)
    }
}

impl Drop for Working<'_> {
    fn drop(&mut self) {
        self.0.busy_since.store(0, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_loop_is_stalled_only_while_inside_a_long_unit_of_work() {
        let health = Health::new(&["poller", "submitter"]);
        let poller = health.beat("poller");
        let limit = Duration::from_secs(10);

        tokio::time::advance(Duration::from_secs(60)).await;
        assert_eq!(health.stalled(limit), None, "waiting for work is healthy");

        let work = poller.working();
        tokio::time::advance(Duration::from_secs(5)).await;
        assert_eq!(health.stalled(limit), None, "short work is healthy");
        tokio::time::advance(Duration::from_secs(6)).await;
        let (name, busy) = health.stalled(limit).expect("stalled");
        assert_eq!(name, "poller");
        assert!(busy >= Duration::from_secs(11));

        drop(work);
        assert_eq!(health.stalled(limit), None, "finishing the work clears it");
    }
}
