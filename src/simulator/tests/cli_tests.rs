//! Tests of the command-line options: defaults, fault options, share validation and help.

use std::time::Duration;

use clap::{CommandFactory, Parser};

use crate::simulator::{run, Faults, PerEndpoint, SimulateArgs, SIMULATE_ABOUT};

/// A command wrapping the simulator options, as the daemon's CLI does.
#[derive(Debug, Parser)]
#[command(name = "simulate", about = SIMULATE_ABOUT)]
struct Cli {
    #[command(flatten)]
    args: SimulateArgs,
}

fn parse(args: &[&str]) -> Result<SimulateArgs, clap::Error> {
    Cli::try_parse_from(std::iter::once("simulate").chain(args.iter().copied())).map(|c| c.args)
}

#[test]
fn defaults_are_the_documented_ones() {
    let args = parse(&["--token", "t"]).expect("parses");
    assert_eq!(args.listen.to_string(), "127.0.0.1:8780");
    assert_eq!(args.job_duration, Duration::from_secs(20));
    assert_eq!(args.job_spread, Duration::ZERO);
    let opts = args.options().expect("valid");
    assert_eq!(opts.faults, Faults::default());
    assert_eq!(opts.token.as_deref(), Some("t"));
}

#[test]
fn every_fault_option_reaches_the_faults() {
    let args = parse(&[
        "--listen=127.0.0.1:0",
        "--job-duration=300ms",
        "--job-spread=1s",
        "--latency=250ms",
        "--html-502-import=0.1",
        "--html-502-job-result=0.2",
        "--html-502-list=0.3",
        "--errno2-import=0.4",
        "--errno2-job-result=0.5",
        "--errno2-list=0.6",
        "--rate-limit=0.7",
        "--retry-after=9",
        "--reject-token",
        "--drop-after-import=0.8",
        "--omit-jobs=0.9",
        "--hang-import",
        "--hang-job-result",
        "--hang-list",
    ])
    .expect("parses");
    let expected = Faults {
        latency_ms: 250,
        html_502: PerEndpoint {
            import: 0.1,
            job_result: 0.2,
            list: 0.3,
        },
        errno2: PerEndpoint {
            import: 0.4,
            job_result: 0.5,
            list: 0.6,
        },
        rate_limit: 0.7,
        retry_after_secs: 9,
        reject_token: true,
        drop_after_import: 0.8,
        omit_jobs: 0.9,
        hang: PerEndpoint {
            import: true,
            job_result: true,
            list: true,
        },
    };
    let opts = args.options().expect("valid");
    assert_eq!(opts.faults, expected);
    assert_eq!(
        (opts.job_duration, opts.job_spread),
        (Duration::from_millis(300), Duration::from_secs(1))
    );
}

#[test]
fn out_of_range_shares_are_refused_naming_the_option() {
    let cases = [
        ("above one", "--html-502-import", "1.5"),
        ("negative", "--rate-limit", "-0.1"),
        ("not a number", "--omit-jobs", "abc"),
        ("nan", "--drop-after-import", "NaN"),
        ("errno2 share", "--errno2-list", "2"),
    ];
    for (case, option, value) in cases {
        let err = parse(&[&format!("{option}={value}")]).expect_err(case);
        assert!(err.to_string().contains(option), "{case}: {err}");
    }
}

#[tokio::test]
async fn run_refuses_out_of_range_shares_set_in_code() {
    let mut args = parse(&["--listen=127.0.0.1:0"]).expect("parses");
    args.omit_jobs = 1.5;
    let err = run(args).await.expect_err("refused");
    assert!(err.to_string().contains("--omit-jobs"), "{err}");
}

#[tokio::test]
async fn run_refuses_a_non_loopback_listen_address() {
    let args = parse(&["--listen=0.0.0.0:0"]).expect("parses");
    let err = run(args).await.expect_err("refused");
    assert!(format!("{err:#}").contains("loopback"), "{err:#}");
}

#[test]
fn help_explains_outcome_rules_and_faults() {
    let help = Cli::command().render_long_help().to_string();
    for needle in [
        "\"fail\"",
        "\"stuck\"",
        "progress",
        "--job-duration",
        "--drop-after-import",
        "Retry-After",
        "/_sim/faults",
        "CIMG_SIM_TOKEN",
    ] {
        assert!(help.contains(needle), "help mentions {needle}:\n{help}");
    }
    Cli::command().debug_assert();
}
