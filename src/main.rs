use std::process::ExitCode;

use clap::Parser;

use cimg_importd::cli::{Cli, Command, EXIT_CONFIG, EXIT_FAILURE};
use cimg_importd::config::{Settings, Token};
use cimg_importd::{demo, logging, service, simulator};

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
        Command::Run | Command::Migrate => {
            let (settings, token) = match configure(&cli) {
                Ok(configured) => configured,
                Err(err) => return fail(EXIT_CONFIG, &err),
            };
            runtime.block_on(async {
                match token {
                    Some(token) => {
                        let stop = service::Stop::new();
                        service::stop_on_signals(stop.clone())?;
                        service::run_until(settings, token, stop).await
                    }
                    None => {
                        let store = service::open_store(&settings).await?;
                        store.close().await;
                        eprintln!(
                            "database {} is up to date",
                            settings.database.path.display()
                        );
                        Ok(())
                    }
                }
            })
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
        Err(err) => fail(EXIT_FAILURE, &err),
    }
}

/// Loads the configuration and starts logging; finds the token only for `run`.
fn configure(cli: &Cli) -> anyhow::Result<(Settings, Option<Token>)> {
    let settings = Settings::load(cli.config.as_deref())?;
    logging::init(&settings.log)?;
    let token = match cli.command {
        Command::Run => {
            let (token, source) = Token::discover(&settings.api)?;
            tracing::info!(source = %source, "API token found");
            Some(token)
        }
        _ => None,
    };
    Ok((settings, token))
}

fn fail(code: u8, err: &anyhow::Error) -> ExitCode {
    eprintln!("cimg-importd: {err:#}");
    ExitCode::from(code)
}
