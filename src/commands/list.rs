//! `cimg-importd list`: the `request_status` view as an aligned table, newest first, or as
//! one JSON array for scripts.

use clap::builder::PossibleValuesParser;

use super::open_existing;
use crate::config::Settings;
use crate::report;
use crate::store::operator::StatusFilter;
use crate::store::RequestState;

/// Options of `cimg-importd list`.
#[derive(Debug, Clone, clap::Args)]
#[command(after_help = "\
Examples:
  cimg-importd list
  cimg-importd list --state failed --region gz
  cimg-importd list --json --limit 500 | jq '.[] | select(.state == \"in_doubt\") | .id'

--json prints one JSON array of objects keyed like the request_status view: id, state,
region_id, name, origin_region_id, job_uuid, resource_uuid, progress, attempts,
last_error, created_at, updated_at (null where the view has NULL).")]
pub struct ListArgs {
    /// Only requests in this state.
    #[arg(
        long,
        value_name = "STATE",
        value_parser = PossibleValuesParser::new(RequestState::ALL.map(RequestState::as_str))
    )]
    pub state: Option<String>,

    /// Only requests whose target region is this one, e.g. gz.
    #[arg(long, value_name = "REGION")]
    pub region: Option<String>,

    /// Show at most this many requests, the newest.
    #[arg(
        long,
        value_name = "N",
        default_value_t = 50,
        value_parser = clap::value_parser!(u32).range(1..)
    )]
    pub limit: u32,

    /// Print one JSON array instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Prints the requests `args` selects.
///
/// # Errors
///
/// The database does not exist or cannot be read.
pub async fn run(settings: &Settings, args: ListArgs) -> anyhow::Result<()> {
    let store = open_existing(settings).await?;
    let filter = StatusFilter {
        state: args.state,
        region_id: args.region,
        limit: args.limit,
    };
    let rows = store.list_status(&filter).await?;
    store.close().await;

    if args.json {
        let array: Vec<serde_json::Value> = rows.iter().map(report::status_json).collect();
        println!("{}", serde_json::Value::Array(array));
        return Ok(());
    }
    if rows.is_empty() {
        eprintln!("no requests match");
        return Ok(());
    }
    print!("{}", report::status_table(&rows));
    if rows.len() == filter.limit as usize {
        eprintln!("(the newest {} shown; --limit N shows more)", filter.limit);
    }
    Ok(())
}
