//! systemd integration: `READY=1` once the database is migrated and start-up recovery is
//! done, a `STATUS=` line with the queue counts, `WATCHDOG=1` only while every loop is
//! making progress, and `STOPPING=1` on shutdown.
//!
//! Outside systemd (`NOTIFY_SOCKET` unset) all of this is silent and costs nothing.

use std::sync::Arc;
use std::time::Duration;

use sd_notify::NotifyState;
use tokio_util::sync::CancellationToken;

use crate::health::Health;
use crate::store::Store;

/// How often the status line is refreshed when no watchdog asks for more.
const STATUS_EVERY: Duration = Duration::from_secs(10);

/// Whether a service manager listens for notifications.
pub fn is_supervised() -> bool {
    std::env::var_os("NOTIFY_SOCKET").is_some()
}

/// Tells systemd the daemon is ready, with its first status line.
pub async fn ready(store: &Store, health: &Health) {
    let status = status_line(store, health).await;
    send(&[NotifyState::Ready, NotifyState::Status(&status)]);
}

/// Tells systemd the daemon is stopping.
pub fn stopping() {
    send(&[
        NotifyState::Stopping,
        NotifyState::Status("stopping: finishing calls in flight"),
    ]);
}

/// Refreshes the status line and, when systemd set a watchdog, pings it at a third of its
/// period while no loop is stalled for more than half of it. Returns on `stop`.
pub async fn supervise(store: Store, health: Arc<Health>, stop: CancellationToken) {
    if !is_supervised() {
        return;
    }
    let watchdog = sd_notify::watchdog_enabled();
    let tick = watchdog.map_or(STATUS_EVERY, |period| (period / 3).min(STATUS_EVERY));
    let mut ticker = tokio::time::interval(tick);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut withheld = false;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = ticker.tick() => {}
        }
        if let Some(period) = watchdog {
            match health.stalled(period / 2) {
                None => {
                    if withheld {
                        tracing::info!(
                            "every loop is making progress again; watchdog pings resumed"
                        );
                        withheld = false;
                    }
                    send(&[NotifyState::Watchdog]);
                }
                Some((name, busy)) => {
                    if !withheld {
                        tracing::error!(
                            "loop" = name,
                            busy_s = busy.as_secs(),
                            "a loop has made no progress; withholding watchdog pings so systemd \
                             restarts the daemon if it stays stuck"
                        );
                        withheld = true;
                    }
                }
            }
        }
        let status = status_line(&store, &health).await;
        send(&[NotifyState::Status(&status)]);
    }
}

async fn status_line(store: &Store, health: &Health) -> String {
    let paused = if health.is_paused() {
        "; submissions PAUSED (API refuses the account)"
    } else {
        ""
    };
    match store.open_counts().await {
        Ok(counts) => format!(
            "queued {}, submitting {}, tracking {}, in doubt {}{paused}",
            counts.queued, counts.submitting, counts.submitted, counts.in_doubt
        ),
        Err(err) => format!("cannot read the queue: {err:#}{paused}"),
    }
}

fn send(states: &[NotifyState<'_>]) {
    if let Err(err) = sd_notify::notify(states) {
        tracing::warn!(error = %err, "cannot notify systemd");
    }
}
