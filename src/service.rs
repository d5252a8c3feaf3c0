//! The daemon's supervisor: opens and migrates the database, recovers what a crash left
//! behind, runs the submitter and the poller, and stops them cleanly on a signal.

use std::future::Future;
use std::sync::Arc;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::api::ApiClient;
use crate::config::{Settings, Token};
use crate::health::Health;
use crate::poller::Poller;
use crate::reconciler::Reconciler;
use crate::store::Store;
use crate::submitter::Submitter;
use crate::{metrics, notify, retention};

/// Opens the database named in `settings` and brings its schema up to date.
///
/// # Errors
///
/// The database cannot be opened or migrated.
pub async fn open_store(settings: &Settings) -> anyhow::Result<Store> {
    if let Some(dir) = settings
        .database
        .path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
    {
        if !dir.is_dir() {
            anyhow::bail!(
                "the database directory `{}` does not exist: create it or set `database.path`",
                dir.display()
            );
        }
    }
    let store = Store::open(&settings.database).await?;
    store.migrate().await?;
    Ok(store)
}

/// Runs the daemon until `shutdown` completes, then stops claiming work, gives calls in
/// flight up to `service.shutdown_grace` to finish and be recorded, and returns.
///
/// # Errors
///
/// Start-up failed: the database or the API client could not be set up.
pub async fn run(
    settings: Settings,
    token: Token,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let settings = Arc::new(settings);
    let store = open_store(&settings).await?;
    let interrupted = store.recover_interrupted().await?;
    if !interrupted.is_empty() {
        tracing::warn!(
            requests = ?interrupted,
            "requests were being submitted when the daemon last stopped; they are in_doubt \
             until ListCIMG shows whether their image was created"
        );
    }
    let api = ApiClient::new(&settings.api, &token)?;

    let jobs_added = Arc::new(Notify::new());
    let health = Arc::new(Health::new(&[
        "submitter",
        "poller",
        "reconciler",
        "retention",
    ]));
    let stop = CancellationToken::new();
    let submitter = Submitter::new(
        store.clone(),
        api.clone(),
        settings.clone(),
        jobs_added.clone(),
        health.clone(),
    );
    let reconciler = Reconciler::new(
        store.clone(),
        api.clone(),
        settings.clone(),
        jobs_added.clone(),
        &health,
    );
    let poller = Poller::new(
        store.clone(),
        api,
        settings.poll.clone(),
        jobs_added,
        &health,
    );
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(submitter.run(stop.child_token()));
    tasks.spawn(poller.run(stop.child_token()));
    tasks.spawn(reconciler.run(stop.child_token()));
    let retention = retention::run(
        store.clone(),
        settings.retention.clone(),
        health.beat("retention"),
        stop.child_token(),
    );
    let retention = tokio::spawn(retention);
    if let Some(listen) = settings.metrics.listen {
        metrics::serve(listen, store.clone(), health.clone(), stop.child_token()).await?;
    }
    let supervisor = tokio::spawn(notify::supervise(
        store.clone(),
        health.clone(),
        stop.child_token(),
    ));
    notify::ready(&store, &health).await;
    tracing::info!(
        database = %settings.database.path.display(),
        api = %settings.api.base_url,
        "cimg-importd running"
    );

    tokio::select! {
        _ = shutdown => tracing::info!("stopping: finishing calls in flight"),
        Some(ended) = tasks.join_next() => {
            tracing::error!(result = ?ended, "a worker loop ended on its own; stopping");
        }
    }
    notify::stopping();
    stop.cancel();
    let grace = settings.service.shutdown_grace;
    let drained =
        tokio::time::timeout(grace, async { while tasks.join_next().await.is_some() {} }).await;
    if drained.is_err() {
        tracing::warn!(
            grace_s = grace.as_secs(),
            "calls still in flight after the shutdown grace; their requests stay submitting \
             and are reconciled at the next start"
        );
        tasks.abort_all();
    }
    let _ = supervisor.await;
    let _ = retention.await;
    store.close().await;
    tracing::info!("stopped");
    Ok(())
}

/// Listens for SIGINT and SIGTERM from now on; the future completes on the first of
/// them. Call it before start-up work, so a stop asked for during start-up is not lost.
///
/// # Errors
///
/// The signal handlers cannot be installed (no tokio runtime, or the OS refused).
pub fn shutdown_signal() -> std::io::Result<impl Future<Output = ()>> {
    use tokio::signal::unix::{signal, SignalKind};

    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = terminate.recv() => tracing::info!(signal = "SIGTERM", "stop requested"),
            _ = interrupt.recv() => tracing::info!(signal = "SIGINT", "stop requested"),
        }
    })
}
