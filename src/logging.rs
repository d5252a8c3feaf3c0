//! Log output: human and coloured on a terminal, plain lines without colours or
//! timestamps when journald reads stderr (it stamps each line itself).

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber. `RUST_LOG`, when set, wins over `level`.
///
/// # Errors
///
/// `level` is not a valid filter.
pub fn init(level: &str) -> anyhow::Result<()> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(from_env) if !from_env.trim().is_empty() => EnvFilter::try_new(from_env),
        _ => EnvFilter::try_new(level),
    }
    .map_err(|err| anyhow::anyhow!("invalid log filter `{level}` for `log.level`: {err}"))?;

    let terminal = std::io::stderr().is_terminal();
    let journald = std::env::var_os("JOURNAL_STREAM").is_some();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(terminal)
        .with_target(false);
    if journald && !terminal {
        builder.without_time().init();
    } else {
        builder.init();
    }
    Ok(())
}
