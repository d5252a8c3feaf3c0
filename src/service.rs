//! The daemon's supervisor: opens and migrates the database, recovers what a crash left
//! behind, runs the submitter and the poller, and stops them cleanly on a signal.

use std::future::Future;
use std::path::Path;
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
    create_group_writable(&settings.database.path)?;
    let store = Store::open(&settings.database).await?;
    store.migrate().await?;
    Ok(store)
}

/// Creates a missing database file with mode 0660 less the umask. SQLite would create it
/// 0644 less the umask, and gives its `-wal` and `-shm` files the database's mode, so
/// operators in the service's group could then never write any of them.
fn create_group_writable(path: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;

    if path.exists() {
        return Ok(());
    }
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o660)
        .open(path)
        .map(drop)
        .or_else(|err| match err.kind() {
            std::io::ErrorKind::AlreadyExists => Ok(()),
            _ => Err(anyhow::anyhow!(
                "cannot create the database `{}`: {err}",
                path.display()
            )),
        })
}

/// How a running daemon is asked to stop: gracefully first, then, if asked again, at once.
#[derive(Debug, Clone, Default)]
pub struct Stop {
    graceful: CancellationToken,
    now: CancellationToken,
}

impl Stop {
    /// A stop nobody has asked for yet.
    pub fn new() -> Stop {
        Stop::default()
    }

    /// Stop claiming work; let calls in flight finish within the grace.
    pub fn request(&self) {
        self.graceful.cancel();
    }

    /// Stop without waiting for calls in flight (their requests are reconciled at the
    /// next start).
    pub fn hurry(&self) {
        self.graceful.cancel();
        self.now.cancel();
    }
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
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let stop = Stop::new();
    let asked = stop.clone();
    let watcher = tokio::spawn(async move {
        shutdown.await;
        asked.request();
    });
    let result = run_until(settings, token, stop).await;
    watcher.abort();
    result
}

/// [`run`], stopped through a [`Stop`], which can also cut the grace short.
///
/// # Errors
///
/// Start-up failed: the database, its lock or the API client could not be set up.
pub async fn run_until(settings: Settings, token: Token, asked: Stop) -> anyhow::Result<()> {
    let settings = Arc::new(settings);
    let _instance = lock_instance(&settings.database.path)?;
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
        _ = asked.graceful.cancelled() => tracing::info!("stopping: finishing calls in flight"),
        Some(ended) = tasks.join_next() => {
            tracing::error!(result = ?ended, "a worker loop ended on its own; stopping");
        }
    }
    notify::stopping();
    stop.cancel();
    let grace = settings.service.shutdown_grace;
    let drain = tokio::time::timeout(grace, async { while tasks.join_next().await.is_some() {} });
    let drained = tokio::select! {
        drained = drain => drained.is_ok(),
        _ = asked.now.cancelled() => false,
    };
    if !drained {
        tracing::warn!(
            grace_s = grace.as_secs(),
            "stopped before work in flight finished; a request left submitting is reconciled \
             at the next start"
        );
        tasks.abort_all();
    }
    let _ = supervisor.await;
    let _ = retention.await;
    store.checkpoint_and_close().await;
    tracing::info!("stopped");
    Ok(())
}

/// Turns signals into stops: the first SIGTERM or SIGINT asks for a graceful stop, a
/// second one for an immediate stop. SIGHUP is logged and ignored, so a closed terminal
/// does not kill the daemon mid-call. Installs the handlers at once, so a stop asked for
/// during start-up is not lost.
///
/// # Errors
///
/// The signal handlers cannot be installed (no tokio runtime, or the OS refused).
pub fn stop_on_signals(stop: Stop) -> std::io::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};

    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut hangup = signal(SignalKind::hangup())?;
    tokio::spawn(async move {
        let mut asked = false;
        loop {
            let name = tokio::select! {
                _ = terminate.recv() => "SIGTERM",
                _ = interrupt.recv() => "SIGINT",
                _ = hangup.recv() => {
                    tracing::info!(
                        signal = "SIGHUP",
                        "ignored: restart the daemon to apply configuration changes"
                    );
                    continue;
                }
            };
            if asked {
                tracing::warn!(signal = name, "asked again: stopping without waiting");
                stop.hurry();
            } else {
                tracing::info!(signal = name, "stop requested");
                stop.request();
                asked = true;
            }
        }
    });
    Ok(())
}

/// Holds `<database>.lock` for as long as the daemon runs: a second daemon on the same
/// database would take the first one's calls in flight for a crash's leftovers.
fn lock_instance(database: &Path) -> anyhow::Result<std::fs::File> {
    let path = {
        let mut name = database.as_os_str().to_owned();
        name.push(".lock");
        std::path::PathBuf::from(name)
    };
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|err| anyhow::anyhow!("cannot open the lock file `{}`: {err}", path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => anyhow::bail!(
            "another cimg-importd is already running on `{}` (it holds `{}`): stop it first",
            database.display(),
            path.display()
        ),
        Err(std::fs::TryLockError::Error(err)) => {
            anyhow::bail!("cannot lock `{}`: {err}", path.display())
        }
    }
}
