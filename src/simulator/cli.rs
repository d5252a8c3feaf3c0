//! Command-line face of the simulator (`cimg-importd simulate ...`): options and the
//! run-until-signalled loop used by the demo, manual testing and benchmarks.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;

use super::faults::{is_share, Faults, PerEndpoint};
use super::{SimOptions, Simulator};

/// Text for the `about` of the command that runs the simulator: what it is and how jobs end.
pub const SIMULATE_ABOUT: &str = "\
Run a loopback simulator of the DiDi Cloud OpenAPI (ImportCIMG, JobResult, ListCIMG).

Job outcome rules (image name, case-insensitive):
  - contains \"fail\":  progress climbs to 60 and stops there; at the end of the job duration
                      the job fails (done, not success) with the result: simulated copy
                      failure: image name contains \"fail\". The image stays listed (Error).
  - contains \"stuck\": the job never ends; progress climbs to 99 and stays there.
  - anything else:    the job succeeds at the end of its duration (progress 100).
Source uuid 00000000000000000000000000000000 answers errno 41026 (source image not found).

Fault shares (SHARE) are probabilities from 0.0 (never) to 1.0 (always), rolled on every
call. Control endpoints (no token): GET /_sim/stats, GET /_sim/faults, PUT /_sim/faults
(JSON body, replaces the whole set; missing fields take their defaults), for example:
  curl -X PUT http://127.0.0.1:8780/_sim/faults -d '{\"latency_ms\": 200,
    \"html_502\": {\"job_result\": 0.3}, \"errno2\": {\"import\": 0.1}, \"rate_limit\": 0.0,
    \"retry_after_secs\": 2, \"reject_token\": false, \"drop_after_import\": 0.1,
    \"omit_jobs\": 0.1, \"hang\": {\"list\": false}}'";

/// Long help of `--job-duration`, repeating the outcome rules where an operator looks.
const JOB_DURATION_HELP: &str = "\
How long each import job runs before it ends (humantime: 300ms, 20s, 5m).

Outcome at the end, by image name (case-insensitive): a name containing \"fail\" fails (progress
stops at 60), a name containing \"stuck\" never ends (progress stops at 99), any other name
succeeds (progress 100).";

/// Options of the simulator command. Shares are probabilities from 0.0 (never) to 1.0
/// (always), rolled independently on every call.
#[derive(Debug, Clone, PartialEq, clap::Args)]
pub struct SimulateArgs {
    /// Address to listen on; must be a loopback address (127.0.0.1 or ::1). Port 0 picks a
    /// free port.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8780")]
    pub listen: SocketAddr,

    /// Bearer token that API calls must carry; without it any non-empty bearer token is
    /// accepted. Any other token gets errno 4.
    #[arg(
        long,
        value_name = "TOKEN",
        env = "CIMG_SIM_TOKEN",
        hide_env_values = true
    )]
    pub token: Option<String>,

    /// How long each import job runs before it ends (humantime: 300ms, 20s, 5m).
    #[arg(
        long,
        value_name = "DURATION",
        default_value = "20s",
        value_parser = humantime::parse_duration,
        long_help = JOB_DURATION_HELP
    )]
    pub job_duration: Duration,

    /// Adds a random extra between 0 and this to each job's duration (humantime; 0s = none).
    #[arg(
        long,
        value_name = "DURATION",
        default_value = "0s",
        value_parser = humantime::parse_duration
    )]
    pub job_spread: Duration,

    /// Delay added before every API answer (humantime, e.g. 250ms).
    #[arg(
        long,
        value_name = "DURATION",
        default_value = "0s",
        value_parser = humantime::parse_duration,
        help_heading = "Faults"
    )]
    pub latency: Duration,

    /// Share of ImportCIMG calls answered HTTP 502 with an HTML page; nothing is created.
    #[arg(
        long = "html-502-import",
        value_name = "SHARE",
        default_value_t = 0.0,
        value_parser = parse_share,
        help_heading = "Faults"
    )]
    pub html_502_import: f64,

    /// Share of JobResult calls answered HTTP 502 with an HTML page.
    #[arg(
        long = "html-502-job-result",
        value_name = "SHARE",
        default_value_t = 0.0,
        value_parser = parse_share,
        help_heading = "Faults"
    )]
    pub html_502_job_result: f64,

    /// Share of ListCIMG calls answered HTTP 502 with an HTML page.
    #[arg(
        long = "html-502-list",
        value_name = "SHARE",
        default_value_t = 0.0,
        value_parser = parse_share,
        help_heading = "Faults"
    )]
    pub html_502_list: f64,

    /// Share of ImportCIMG calls answered errno 2 (system error); nothing is created.
    #[arg(
        long = "errno2-import",
        value_name = "SHARE",
        default_value_t = 0.0,
        value_parser = parse_share,
        help_heading = "Faults"
    )]
    pub errno2_import: f64,

    /// Share of JobResult calls answered errno 2 (system error).
    #[arg(
        long = "errno2-job-result",
        value_name = "SHARE",
        default_value_t = 0.0,
        value_parser = parse_share,
        help_heading = "Faults"
    )]
    pub errno2_job_result: f64,

    /// Share of ListCIMG calls answered errno 2 (system error).
    #[arg(
        long = "errno2-list",
        value_name = "SHARE",
        default_value_t = 0.0,
        value_parser = parse_share,
        help_heading = "Faults"
    )]
    pub errno2_list: f64,

    /// Share of all API calls answered HTTP 429 with a Retry-After header.
    #[arg(
        long,
        value_name = "SHARE",
        default_value_t = 0.0,
        value_parser = parse_share,
        help_heading = "Faults"
    )]
    pub rate_limit: f64,

    /// Seconds announced in the Retry-After header of 429 answers.
    #[arg(
        long,
        value_name = "SECS",
        default_value_t = 1,
        help_heading = "Faults"
    )]
    pub retry_after: u64,

    /// Answer every API call errno 4 (authentication failed), whatever the token.
    #[arg(long, help_heading = "Faults")]
    pub reject_token: bool,

    /// Share of ImportCIMG calls that create the job and image, then close the connection
    /// without sending any answer.
    #[arg(
        long,
        value_name = "SHARE",
        default_value_t = 0.0,
        value_parser = parse_share,
        help_heading = "Faults"
    )]
    pub drop_after_import: f64,

    /// Share of known jobs left out of each JobResult answer (rolled per job per call).
    #[arg(
        long,
        value_name = "SHARE",
        default_value_t = 0.0,
        value_parser = parse_share,
        help_heading = "Faults"
    )]
    pub omit_jobs: f64,

    /// Read ImportCIMG requests but never answer them.
    #[arg(long, help_heading = "Faults")]
    pub hang_import: bool,

    /// Read JobResult requests but never answer them.
    #[arg(long, help_heading = "Faults")]
    pub hang_job_result: bool,

    /// Read ListCIMG requests but never answer them.
    #[arg(long, help_heading = "Faults")]
    pub hang_list: bool,
}

/// Parses a share: a number from 0.0 to 1.0.
fn parse_share(text: &str) -> Result<f64, String> {
    let value: f64 = text.trim().parse().map_err(|_| {
        format!("expected a share between 0.0 and 1.0 (such as 0.25), got {text:?}")
    })?;
    if is_share(value) {
        Ok(value)
    } else {
        Err(format!(
            "a share must be between 0.0 and 1.0 (such as 0.25), got {value}"
        ))
    }
}

impl SimulateArgs {
    /// The fault switches these options ask for.
    pub fn faults(&self) -> Faults {
        Faults {
            latency_ms: u64::try_from(self.latency.as_millis()).unwrap_or(u64::MAX),
            html_502: PerEndpoint {
                import: self.html_502_import,
                job_result: self.html_502_job_result,
                list: self.html_502_list,
            },
            errno2: PerEndpoint {
                import: self.errno2_import,
                job_result: self.errno2_job_result,
                list: self.errno2_list,
            },
            rate_limit: self.rate_limit,
            retry_after_secs: self.retry_after,
            reject_token: self.reject_token,
            drop_after_import: self.drop_after_import,
            omit_jobs: self.omit_jobs,
            hang: PerEndpoint {
                import: self.hang_import,
                job_result: self.hang_job_result,
                list: self.hang_list,
            },
        }
    }

    /// Checks every share (an error names the option) and builds the simulator options.
    pub fn options(&self) -> anyhow::Result<SimOptions> {
        let shares = [
            ("--html-502-import", self.html_502_import),
            ("--html-502-job-result", self.html_502_job_result),
            ("--html-502-list", self.html_502_list),
            ("--errno2-import", self.errno2_import),
            ("--errno2-job-result", self.errno2_job_result),
            ("--errno2-list", self.errno2_list),
            ("--rate-limit", self.rate_limit),
            ("--drop-after-import", self.drop_after_import),
            ("--omit-jobs", self.omit_jobs),
        ];
        if let Some((option, value)) = shares.iter().find(|(_, value)| !is_share(*value)) {
            anyhow::bail!("{option} must be a share between 0.0 and 1.0, got {value}");
        }
        Ok(SimOptions {
            token: self.token.clone().filter(|token| !token.is_empty()),
            job_duration: self.job_duration,
            job_spread: self.job_spread,
            faults: self.faults(),
        })
    }
}

/// Starts the simulator, logs "simulator listening" with its address, serves until SIGINT or
/// SIGTERM, then shuts it down.
pub async fn run(args: SimulateArgs) -> anyhow::Result<()> {
    let opts = args.options()?;
    let token_required = opts.token.is_some();
    let sim = Simulator::start(args.listen, opts)
        .await
        .with_context(|| format!("cannot start the simulator on {}", args.listen))?;
    tracing::info!(
        addr = %sim.local_addr(),
        token_required,
        job_duration = %humantime::format_duration(args.job_duration),
        job_spread = %humantime::format_duration(args.job_spread),
        faults = ?sim.faults(),
        "simulator listening"
    );
    let signalled = wait_for_signal().await;
    tracing::info!("simulator shutting down");
    sim.shutdown().await;
    tracing::info!("simulator stopped");
    signalled
}

/// Returns on SIGINT or SIGTERM.
#[cfg(unix)]
async fn wait_for_signal() -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?;
    tokio::select! {
        result = tokio::signal::ctrl_c() => result.context("cannot listen for SIGINT"),
        _ = term.recv() => Ok(()),
    }
}

/// Returns on Ctrl-C.
#[cfg(not(unix))]
async fn wait_for_signal() -> anyhow::Result<()> {
    tokio::signal::ctrl_c()
        .await
        .context("cannot listen for Ctrl-C")
}
