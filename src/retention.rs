//! Retention: removes finished requests, with their jobs and history, once they are older
//! than `retention.finished_after`. Off by default. Works in small batches, each its own
//! short transaction, so an operator's `sqlite3` never waits long behind it.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::config::RetentionSettings;
use crate::health::Beat;
use crate::store::Store;

/// Pause between two batches, leaving the write lock to others.
const BETWEEN_BATCHES: Duration = Duration::from_millis(20);

/// Prunes every `settings.interval` until `stop`; returns at once when retention is off.
pub async fn run(
    store: Store,
    settings: RetentionSettings,
    beat: std::sync::Arc<Beat>,
    stop: CancellationToken,
) {
    let Some(age) = settings.finished_after else {
        return;
    };
    loop {
        let pruned = {
            let _working = beat.working();
            prune(&store, age, settings.batch_size, &stop).await
        };
        match pruned {
            Ok(0) => tracing::debug!("no finished request old enough to remove"),
            Ok(removed) => tracing::info!(
                removed,
                older_than = %humantime::format_duration(age),
                "removed old finished requests with their jobs and history"
            ),
            Err(err) => tracing::error!(
                error = format!("{err:#}"),
                "cannot remove old finished requests"
            ),
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(settings.interval) => {}
        }
    }
}

/// Removes finished requests last changed more than `age` ago, `batch` at a time.
///
/// # Errors
///
/// The database cannot be written.
pub async fn prune(
    store: &Store,
    age: Duration,
    batch: usize,
    stop: &CancellationToken,
) -> anyhow::Result<u64> {
    let mut removed = 0;
    loop {
        let this_batch = store.remove_finished(age, batch).await?;
        removed += this_batch;
        if this_batch < batch as u64 || stop.is_cancelled() {
            return Ok(removed);
        }
        tokio::time::sleep(BETWEEN_BATCHES).await;
    }
}
