//! The command line: what each subcommand is for, as `--help` shows it.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::commands::check_config::{CheckConfigArgs, CHECK_CONFIG_ABOUT};
use crate::commands::enqueue::{EnqueueArgs, ENQUEUE_ABOUT};
use crate::commands::list::ListArgs;
use crate::commands::modify::{ModifyArgs, CANCEL_ABOUT, RETRY_ABOUT};
use crate::commands::show::ShowArgs;
use crate::commands::watch::{WatchArgs, WATCH_ABOUT};
use crate::demo::DemoArgs;
use crate::simulator::{SimulateArgs, SIMULATE_ABOUT};

/// Exit status for success.
pub const EXIT_OK: u8 = 0;
/// Exit status when the work failed (API, database, runtime).
pub const EXIT_FAILURE: u8 = 1;
/// Exit status for a usage or configuration error: fix the command or the file.
pub const EXIT_CONFIG: u8 = 2;

/// Copies DiDi Cloud custom images across regions from a SQLite queue and tracks each
/// import to its end.
///
/// Queue a request with one INSERT into the `import_requests` table, or with `enqueue`; see
/// where everything is with `list` (or `SELECT * FROM request_status`), follow the requests
/// in flight with `watch`, and read one request's story with `show ID` (or
/// `SELECT * FROM request_history WHERE request_id = N`).
///
/// Exit status: 0 success, 1 the work failed, 2 a usage or configuration error.
#[derive(Debug, Parser)]
#[command(name = "cimg-importd", version, propagate_version = true)]
pub struct Cli {
    /// Configuration file (TOML). Default: /etc/cimg-importd/config.toml if it exists,
    /// else built-in defaults. Environment variables CIMG_IMPORTD__SECTION__KEY override it.
    #[arg(
        long,
        short = 'c',
        global = true,
        value_name = "PATH",
        env = "CIMG_IMPORTD_CONFIG"
    )]
    pub config: Option<PathBuf>,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// The commands that read the configuration (`--config`, `CIMG_IMPORTD__…`).
    #[command(flatten)]
    Configured(ConfiguredCommand),
    /// Serve a loopback simulator of the ImportCIMG, JobResult and ListCIMG endpoints, for
    /// trying the daemon without a cloud account.
    #[command(long_about = SIMULATE_ABOUT)]
    Simulate(SimulateArgs),
    /// Show the whole path on a fresh database: start a simulator, queue six requests with
    /// plain SQL, run the daemon until all have ended, print the tables.
    Demo(DemoArgs),
}

/// The subcommands that load the configuration and work on its database; `main` loads
/// the settings once and hands them to [`crate::commands::execute`].
#[derive(Debug, Subcommand)]
pub enum ConfiguredCommand {
    /// Run the daemon: submit queued requests, poll their jobs, record their history.
    /// Stops cleanly on SIGINT or SIGTERM.
    Run,
    /// Create or upgrade the database, then exit, so rows can be queued before the first
    /// start.
    Migrate,
    /// Queue one request from options, or many from a CSV or JSON-lines file, checked
    /// exactly as the daemon checks them.
    #[command(long_about = ENQUEUE_ABOUT)]
    Enqueue(EnqueueArgs),
    /// List requests and where they are now (the `request_status` view), newest first.
    List(ListArgs),
    /// Show one request: its fields, its jobs and its whole history.
    Show(ShowArgs),
    /// Follow the requests in flight live, one progress bar each, until none is left or
    /// Ctrl-C.
    #[command(long_about = WATCH_ABOUT)]
    Watch(WatchArgs),
    /// Put a failed, rejected or in-doubt request back in the queue, attempts reset.
    #[command(long_about = RETRY_ABOUT)]
    Retry(ModifyArgs),
    /// Withdraw a request that is still queued, before it is sent.
    #[command(long_about = CANCEL_ABOUT)]
    Cancel(ModifyArgs),
    /// Check the configuration, the API token, the database and, with --api, the API
    /// itself; say what to fix.
    #[command(long_about = CHECK_CONFIG_ABOUT)]
    CheckConfig(CheckConfigArgs),
}
