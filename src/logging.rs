//! Log output: human and coloured on a terminal, plain lines without colours or
//! timestamps when journald reads stderr (it stamps each line itself), or JSON.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use crate::config::{LogFormat, LogSettings};

/// Installs the global subscriber. `RUST_LOG`, when set, wins over `settings.level`.
///
/// # Errors
///
/// The level is not a valid filter.
pub fn init(settings: &LogSettings) -> anyhow::Result<()> {
    let level = &settings.level;
    let filter = match std::env::var("RUST_LOG") {
        Ok(from_env) if !from_env.trim().is_empty() => EnvFilter::try_new(from_env),
        _ => EnvFilter::try_new(level),
    }
    .map_err(|err| anyhow::anyhow!("invalid log filter `{level}` for `log.level`: {err}"))?;

    let terminal = std::io::stderr().is_terminal();
    let format = match settings.format {
        LogFormat::Auto if std::env::var_os("JOURNAL_STREAM").is_some() && !terminal => {
            LogFormat::Journal
        }
        LogFormat::Auto => LogFormat::Human,
        chosen => chosen,
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    match format {
        LogFormat::Json => builder.json().with_current_span(false).init(),
        LogFormat::Journal => builder.with_ansi(false).without_time().init(),
        _ => builder.with_ansi(terminal).init(),
    }
    Ok(())
}

/// Logging for commands that have no configuration of their own (`simulate`, `demo`).
///
/// # Errors
///
/// `RUST_LOG` is not a valid filter.
pub fn init_default() -> anyhow::Result<()> {
    init(&LogSettings::default())
}
