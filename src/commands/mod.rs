//! The subcommands that work on the configured database: the operator's tools, one file
//! each (`enqueue`, `list`, `show`, `watch`, `retry` and `cancel` in `modify`,
//! `check-config`), and the daemon's own `run` and `migrate`, short enough to live here.
//!
//! Each command reads and writes through the [`Store`] and prints for a person; none holds
//! SQL. Errors are `anyhow` errors whose message says what to do; one the operator fixes by
//! changing the command, the input or the configuration carries a [`UsageError`], which
//! [`exit_code`] turns into exit status 2.

pub mod check_config;
pub mod enqueue;
pub mod list;
pub mod modify;
pub mod show;
pub mod watch;

use std::path::Path;

use crate::cli::{ConfiguredCommand, EXIT_CONFIG, EXIT_FAILURE};
use crate::config::{Settings, Token};
use crate::service;
use crate::store::Store;

/// A mistake in the command, its input or the configuration: fix it and run again
/// (exit status 2), as opposed to a failure of the work itself (exit status 1).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(String);

/// An error with this message, marked as the operator's to fix ([`UsageError`]).
pub fn usage(message: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(UsageError(message.into()))
}

/// Marks an existing error as the operator's to fix, keeping its whole message.
pub fn usage_from(err: anyhow::Error) -> anyhow::Error {
    usage(format!("{err:#}"))
}

/// The exit status for an error a command returned: [`EXIT_CONFIG`] when it is a
/// [`UsageError`], [`EXIT_FAILURE`] otherwise.
pub fn exit_code(err: &anyhow::Error) -> u8 {
    if err.chain().any(|cause| cause.is::<UsageError>()) {
        EXIT_CONFIG
    } else {
        EXIT_FAILURE
    }
}

/// Runs one command with the loaded configuration. `config_path` is the `--config` given,
/// for `check-config` to report.
///
/// # Errors
///
/// Whatever the command reports; see [`exit_code`] for the exit status it maps to.
pub async fn execute(
    command: ConfiguredCommand,
    settings: Settings,
    config_path: Option<&Path>,
) -> anyhow::Result<()> {
    match command {
        ConfiguredCommand::Run => run(settings).await,
        ConfiguredCommand::Migrate => migrate(&settings).await,
        ConfiguredCommand::Enqueue(args) => enqueue::run(&settings, args).await,
        ConfiguredCommand::List(args) => list::run(&settings, args).await,
        ConfiguredCommand::Show(args) => show::run(&settings, args).await,
        ConfiguredCommand::Watch(args) => watch::run(&settings, args).await,
        ConfiguredCommand::Retry(args) => modify::retry(&settings, args).await,
        ConfiguredCommand::Cancel(args) => modify::cancel(&settings, args).await,
        ConfiguredCommand::CheckConfig(args) => {
            check_config::run(&settings, config_path, args).await
        }
    }
}

/// `run`: the daemon, once it is sure it can write its database and has a token.
async fn run(settings: Settings) -> anyhow::Result<()> {
    let (token, source) = Token::discover(&settings.api).map_err(usage_from)?;
    tracing::info!(source = %source, "API token found");
    check_config::check_writable(&settings.database.path)?;
    let stop = service::Stop::new();
    service::stop_on_signals(stop.clone())?;
    service::run_until(settings, token, stop).await
}

/// `migrate`: create or upgrade the database, and say so.
async fn migrate(settings: &Settings) -> anyhow::Result<()> {
    check_config::check_writable(&settings.database.path)?;
    service::open_store(settings)
        .await?
        .checkpoint_and_close()
        .await;
    eprintln!(
        "database {} is up to date",
        settings.database.path.display()
    );
    Ok(())
}

/// Opens the database for an operator's command: it must exist already and be
/// cimg-importd's, since a typo in `database.path` would otherwise create an empty one no
/// daemon reads, or add the schema to an unrelated SQLite file.
async fn open_existing(settings: &Settings) -> anyhow::Result<Store> {
    let path = &settings.database.path;
    if !path.exists() {
        return Err(usage(format!(
            "the database `{}` does not exist: check `database.path` (or --config), or create \
             it with `cimg-importd migrate`",
            path.display()
        )));
    }
    let store = Store::open(&settings.database).await?;
    if !store.has_queue().await? {
        store.close().await;
        return Err(usage(format!(
            "`{}` is not a cimg-importd database (it has no import_requests table): check \
             `database.path` (or --config)",
            path.display()
        )));
    }
    store.migrate().await?;
    Ok(store)
}

/// `1 request`, `3 requests`.
fn count(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_errors_exit_two_and_others_exit_one() {
        let cases: &[(&str, anyhow::Error, u8)] = &[
            ("usage error", usage("bad flag"), EXIT_CONFIG),
            (
                "usage error under context",
                usage("bad line").context("in file x.csv"),
                EXIT_CONFIG,
            ),
            ("plain failure", anyhow::anyhow!("disk full"), EXIT_FAILURE),
        ];
        for (name, err, want) in cases {
            assert_eq!(exit_code(err), *want, "{name}");
        }
    }
}
