use std::path::Path;
use std::process::ExitCode;

use clap::Parser;

use cimg_importd::cli::{Cli, Command, EXIT_CONFIG, EXIT_FAILURE};
use cimg_importd::config::Settings;
use cimg_importd::{commands, demo, logging, simulator};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(err) => {
            return fail(
                EXIT_FAILURE,
                &anyhow::anyhow!("cannot start the runtime: {err}"),
            )
        }
    };
    let result = match cli.command {
        Command::Configured(command) => {
            let settings = match configure(cli.config.as_deref()) {
                Ok(settings) => settings,
                Err(err) => return fail(EXIT_CONFIG, &err),
            };
            runtime.block_on(commands::execute(command, settings, cli.config.as_deref()))
        }
        Command::Simulate(args) => {
            if let Err(err) = logging::init_default() {
                return fail(EXIT_CONFIG, &err);
            }
            runtime.block_on(simulator::run(args))
        }
        Command::Demo(args) => {
            if let Err(err) = logging::init_default() {
                return fail(EXIT_CONFIG, &err);
            }
            runtime.block_on(demo::run(args))
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => fail(commands::exit_code(&err), &err),
    }
}

/// Loads the configuration and starts logging at its level.
fn configure(path: Option<&Path>) -> anyhow::Result<Settings> {
    let settings = Settings::load(path)?;
    logging::init(&settings.log)?;
    Ok(settings)
}

fn fail(code: u8, err: &anyhow::Error) -> ExitCode {
    eprintln!("cimg-importd: {err:#}");
    ExitCode::from(code)
}
