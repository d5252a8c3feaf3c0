//! Log output: human and coloured on a terminal, plain lines without colours or
//! timestamps when journald reads stderr (it stamps each line itself), or JSON.

use std::io::IsTerminal;

use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::{Format, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::EnvFilter;

use crate::config::{LogFormat, LogSettings};

/// Installs the global subscriber. `RUST_LOG`, when set, wins over `settings.level`.
///
/// # Errors
///
/// The level is not a valid filter.
pub fn init(settings: &LogSettings) -> anyhow::Result<()> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(from_env) if !from_env.trim().is_empty() => EnvFilter::try_new(&from_env)
            .map_err(|err| anyhow::anyhow!("invalid log filter `{from_env}` in RUST_LOG: {err}"))?,
        _ => {
            check_level(&settings.level)?;
            EnvFilter::try_new(&settings.level).map_err(|err| {
                anyhow::anyhow!(
                    "invalid log filter `{}` for `log.level`: {err}",
                    settings.level
                )
            })?
        }
    };

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
        .with_writer(|| QuietStderr)
        .with_target(false);
    match format {
        LogFormat::Json => builder.json().with_current_span(false).init(),
        LogFormat::Journal => builder
            .with_ansi(false)
            .event_format(JournalPriority(
                Format::default().with_target(false).without_time(),
            ))
            .init(),
        _ => builder.with_ansi(terminal).init(),
    }
    Ok(())
}

/// Plain lines, each led by the syslog priority of its level (`<3>` for an error, `<4>` a
/// warning, `<6>` information, `<7>` debugging), which journald reads off a service's stderr
/// and stores as the entry's priority, so that `journalctl -p warning` finds the warnings.
struct JournalPriority<F>(F);

impl<S, N, F> FormatEvent<S, N> for JournalPriority<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> std::fmt::Result {
        let priority = match *event.metadata().level() {
            Level::ERROR => 3,
            Level::WARN => 4,
            Level::INFO => 6,
            Level::DEBUG | Level::TRACE => 7,
        };
        write!(writer, "<{priority}>")?;
        self.0.format_event(ctx, writer, event)
    }
}

/// Checks `log.level`: a level (`error`, `warn`, `info`, `debug`, `trace`, `off`) or
/// directives such as `info,cimg_importd=debug` whose parts each name a level. A bare
/// word that is no level would silence every log line, so it is refused.
///
/// # Errors
///
/// A part that names no level, with the accepted forms.
pub fn check_level(level: &str) -> anyhow::Result<()> {
    const LEVELS: [&str; 6] = ["error", "warn", "info", "debug", "trace", "off"];
    for part in level.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let named = part.rsplit_once('=').map_or(part, |(_, level)| level);
        if !LEVELS.contains(&named.to_ascii_lowercase().as_str()) {
            anyhow::bail!(
                "invalid configuration: `log.level` `{level}` does not name a level: use one of \
                 error, warn, info, debug, trace, off, or e.g. `info,cimg_importd=debug`"
            );
        }
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

/// Stderr that never fails: when its reader is gone (a closed pipe, a dead `tee`), log
/// lines are dropped instead of failing the task that logged them.
struct QuietStderr;

impl std::io::Write for QuietStderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let _ = std::io::stderr().write_all(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        let _ = std::io::stderr().flush();
        Ok(())
    }
}
