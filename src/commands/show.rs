//! `cimg-importd show ID`: one request's stored fields, every job the API returned for it,
//! and its whole timeline from `request_history`.

use serde_json::json;

use super::open_existing;
use crate::config::Settings;
use crate::report;

/// Options of `cimg-importd show`.
#[derive(Debug, Clone, clap::Args)]
#[command(after_help = "\
Examples:
  cimg-importd show 42
  cimg-importd show 42 --json | jq .history

--json prints one object: \"request\" (every column of import_requests), \"jobs\" (every
row of jobs for it, oldest first) and \"history\" (its request_history rows, in order).
An unknown id exits with status 1.")]
pub struct ShowArgs {
    /// The request's id, as `list` shows it.
    #[arg(value_name = "ID")]
    pub id: i64,

    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Prints one request.
///
/// # Errors
///
/// No request has the id, or the database does not exist or cannot be read.
pub async fn run(settings: &Settings, args: ShowArgs) -> anyhow::Result<()> {
    let store = open_existing(settings).await?;
    let Some(request) = store.request(args.id).await? else {
        anyhow::bail!(
            "no request has id {}: `cimg-importd list` shows the ids there are",
            args.id
        );
    };
    let jobs = store.jobs_of(args.id).await?;
    let history = store.history(args.id).await?;
    store.close().await;

    if args.json {
        let history: Vec<serde_json::Value> = history.iter().map(report::history_json).collect();
        let whole = json!({ "request": request, "jobs": jobs, "history": history });
        println!("{whole}");
        return Ok(());
    }
    print!("{}", report::request_fields(&request));
    if !jobs.is_empty() {
        println!("\njobs");
        print!("{}", report::jobs_table(&jobs));
    }
    println!("\nhistory");
    print!("{}", report::history_table(&history));
    Ok(())
}
