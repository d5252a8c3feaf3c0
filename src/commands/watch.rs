//! `cimg-importd watch`: the requests in flight, live. On a terminal, one progress bar per
//! request, redrawn from the database every second; elsewhere (a pipe, a log file), one
//! plain line each time a request changes. It ends on Ctrl-C, or by itself once nothing
//! is in flight.
//!
//! It only reads what the daemon recorded: progress is the job's progress as of the last
//! JobResult answer, so a bar moves at the poller's pace (`poll.*_interval`), not every
//! second.

use std::collections::{HashMap, HashSet};
use std::io::IsTerminal;
use std::time::{Duration, SystemTime};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio::time::MissedTickBehavior;

use super::{open_existing, usage};
use crate::config::Settings;
use crate::store::operator::InFlight;
use crate::store::Store;

/// `watch --help`.
pub const WATCH_ABOUT: &str = "\
Follow the requests in flight (queued, submitting, submitted, in_doubt) live, from the
database: one progress bar each with its id, region, name, state and the time since it
was queued. Progress is what the daemon last recorded from JobResult, so bars move at the
poller's pace. A request that ends leaves a line saying how it ended.

Stops on Ctrl-C, or by itself once nothing is in flight (at once if nothing is). When
standard output is not a terminal it prints plain lines instead of bars: one when it
starts following a request and one each time a request's state or progress changes,
each line starting with a UTC timestamp.

Examples:
  cimg-importd watch
  cimg-importd watch > watch.log";

/// Widest `#id region name` label on a bar; longer names are cut.
const LABEL_WIDTH: usize = 40;

/// Options of `cimg-importd watch`.
#[derive(Debug, Clone, clap::Args)]
pub struct WatchArgs {
    /// Time between two reads of the database.
    #[arg(
        long,
        value_name = "DURATION",
        default_value = "1s",
        value_parser = humantime::parse_duration
    )]
    pub interval: Duration,
}

/// Follows the requests in flight until none is left or Ctrl-C.
///
/// # Errors
///
/// A zero interval, or the database does not exist or cannot be read.
pub async fn run(settings: &Settings, args: WatchArgs) -> anyhow::Result<()> {
    if args.interval.is_zero() {
        return Err(usage(
            "--interval must be longer than zero, e.g. `1s` or `500ms`",
        ));
    }
    let store = open_existing(settings).await?;
    let mut view: Box<dyn View> = if std::io::stdout().is_terminal() {
        Box::new(Bars::new())
    } else {
        Box::new(Lines::default())
    };
    let result = follow(&store, view.as_mut(), args.interval).await;
    store.close().await;
    result
}

async fn follow(store: &Store, view: &mut dyn View, interval: Duration) -> anyhow::Result<()> {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let interrupt = tokio::signal::ctrl_c();
    tokio::pin!(interrupt);
    let mut previous: Vec<InFlight> = Vec::new();
    loop {
        tokio::select! {
            _ = &mut interrupt => return Ok(()),
            _ = ticker.tick() => {}
        }
        let current = store.in_flight().await?;
        let still: HashSet<i64> = current.iter().map(|request| request.id).collect();
        for gone in previous
            .iter()
            .filter(|request| !still.contains(&request.id))
        {
            let outcome = match store.request(gone.id).await? {
                Some(record) => ended_line(gone, &record.state, record.reason.as_deref()),
                None => ended_line(gone, "deleted", None),
            };
            view.ended(gone.id, &outcome);
        }
        for request in &current {
            view.show(request);
        }
        if current.is_empty() {
            let first = previous.is_empty();
            view.note(if first {
                "nothing in flight"
            } else {
                "nothing left in flight"
            });
            return Ok(());
        }
        previous = current;
    }
}

/// Where `watch` shows what it reads.
trait View {
    /// A request still in flight, as read in this round.
    fn show(&mut self, request: &InFlight);
    /// A request that left flight, and the line saying how it ended.
    fn ended(&mut self, id: i64, outcome: &str);
    /// A line of its own.
    fn note(&mut self, text: &str);
}

/// Progress bars on a terminal, one per request.
struct Bars {
    multi: MultiProgress,
    bars: HashMap<i64, ProgressBar>,
    style: ProgressStyle,
}

impl Bars {
    fn new() -> Bars {
        let template = format!("{{prefix:{LABEL_WIDTH}!}} [{{bar:30}}] {{pos:>3}}% {{wide_msg}}");
        let style = ProgressStyle::with_template(&template)
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
        Bars {
            multi: MultiProgress::with_draw_target(ProgressDrawTarget::stdout()),
            bars: HashMap::new(),
            style,
        }
    }
}

impl View for Bars {
    fn show(&mut self, request: &InFlight) {
        let bar = self.bars.entry(request.id).or_insert_with(|| {
            // Added first, so that it never draws on its own (to stderr) before the group
            // draws it.
            let bar = self.multi.add(ProgressBar::new(100));
            bar.set_style(self.style.clone());
            bar.set_prefix(label(request));
            bar
        });
        bar.set_position(percent(request));
        bar.set_message(status(request));
    }

    fn ended(&mut self, id: i64, outcome: &str) {
        if let Some(bar) = self.bars.remove(&id) {
            bar.finish_and_clear();
            self.multi.remove(&bar);
        }
        self.note(outcome);
    }

    fn note(&mut self, text: &str) {
        // Printing above the bars fails only when stdout is gone; then there is no one to
        // tell.
        let _ = self.multi.println(text);
    }
}

/// Plain lines for a pipe or a file: one per change.
#[derive(Default)]
struct Lines {
    printed: HashMap<i64, String>,
}

impl View for Lines {
    fn show(&mut self, request: &InFlight) {
        let key = change_key(request);
        if self.printed.get(&request.id) != Some(&key) {
            self.note(&plain_line(request));
            self.printed.insert(request.id, key);
        }
    }

    fn ended(&mut self, id: i64, outcome: &str) {
        self.printed.remove(&id);
        self.note(outcome);
    }

    fn note(&mut self, text: &str) {
        let stamp = humantime::format_rfc3339_seconds(SystemTime::now());
        println!("{stamp} {text}");
    }
}

fn label(request: &InFlight) -> String {
    format!("#{} {} {}", request.id, request.region_id, request.name)
}

fn percent(request: &InFlight) -> u64 {
    request.progress.unwrap_or(0.0).clamp(0.0, 100.0).round() as u64
}

/// What a request is doing, for a bar's message: state, age, and why it waits if it does.
fn status(request: &InFlight) -> String {
    let mut text = format!(
        "{}  {} since queued",
        request.state,
        elapsed(request.elapsed)
    );
    if let Some(due) = request.due_in {
        text.push_str(&format!(", next attempt in {}", elapsed(due)));
    }
    if request.state != "submitted" {
        if let Some(reason) = &request.reason {
            text.push_str(": ");
            text.push_str(reason);
        }
    }
    text
}

/// One request as a plain line.
fn plain_line(request: &InFlight) -> String {
    let progress = match request.progress {
        Some(_) => format!(" {}%", percent(request)),
        None => String::new(),
    };
    format!("{}{progress} {}", label(request), status(request))
}

/// How a request that left flight ended, with the reason when it did not succeed. Its age
/// is as last seen, up to one refresh ago.
fn ended_line(last_seen: &InFlight, state: &str, reason: Option<&str>) -> String {
    let mut line = format!(
        "{} {state} after about {}",
        label(last_seen),
        elapsed(last_seen.elapsed)
    );
    if let Some(reason) = reason.filter(|_| state != "succeeded") {
        line.push_str(": ");
        line.push_str(reason);
    }
    line
}

/// What must change for a plain line to be printed again: not the elapsed time.
fn change_key(request: &InFlight) -> String {
    format!(
        "{}|{}|{}|{}",
        request.state,
        percent(request),
        request.due_in.is_some(),
        request.reason.as_deref().unwrap_or_default()
    )
}

/// A short age: `45s`, `3m 05s`, `2h 03m`, `3d 04h`.
fn elapsed(duration: Duration) -> String {
    let seconds = duration.as_secs();
    match seconds {
        0..=59 => format!("{seconds}s"),
        60..=3599 => format!("{}m {:02}s", seconds / 60, seconds % 60),
        3600..=86_399 => format!("{}h {:02}m", seconds / 3600, seconds % 3600 / 60),
        _ => format!("{}d {:02}h", seconds / 86_400, seconds % 86_400 / 3600),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(state: &str, progress: Option<f64>) -> InFlight {
        InFlight {
            id: 7,
            state: state.into(),
            region_id: "gz".into(),
            name: "web-2026-12".into(),
            progress,
            elapsed: Duration::from_secs(125),
            due_in: None,
            reason: None,
        }
    }

    #[test]
    fn ages_are_short_and_fixed_width_after_the_first_unit() {
        let cases = [
            ("seconds", 45, "45s"),
            ("minutes", 185, "3m 05s"),
            ("hours", 7380, "2h 03m"),
            ("days", 273_600, "3d 04h"),
        ];
        for (name, seconds, want) in cases {
            assert_eq!(elapsed(Duration::from_secs(seconds)), want, "{name}");
        }
    }

    #[test]
    fn plain_lines_say_state_progress_age_and_why_it_waits() {
        let mut retrying = request("queued", None);
        retrying.due_in = Some(Duration::from_secs(30));
        retrying.reason = Some("HTTP 503".into());
        let mut doubt = request("in_doubt", None);
        doubt.reason = Some("no answer".into());
        let cases = [
            (
                "running job",
                request("submitted", Some(42.4)),
                "#7 gz web-2026-12 42% submitted  2m 05s since queued",
            ),
            (
                "fresh in queue",
                request("queued", None),
                "#7 gz web-2026-12 queued  2m 05s since queued",
            ),
            (
                "waiting to retry",
                retrying,
                "#7 gz web-2026-12 queued  2m 05s since queued, next attempt in 30s: HTTP 503",
            ),
            (
                "in doubt",
                doubt,
                "#7 gz web-2026-12 in_doubt  2m 05s since queued: no answer",
            ),
        ];
        for (name, request, want) in cases {
            assert_eq!(plain_line(&request), want, "{name}");
        }
    }

    #[test]
    fn ended_lines_give_the_reason_unless_it_succeeded() {
        let last = request("submitted", Some(60.0));
        let cases = [
            (
                "success",
                "succeeded",
                None,
                "#7 gz web-2026-12 succeeded after about 2m 05s",
            ),
            (
                "failure",
                "failed",
                Some("job failed: disk"),
                "#7 gz web-2026-12 failed after about 2m 05s: job failed: disk",
            ),
            (
                "cancelled",
                "cancelled",
                Some("by bob"),
                "#7 gz web-2026-12 cancelled after about 2m 05s: by bob",
            ),
        ];
        for (name, state, reason, want) in cases {
            assert_eq!(ended_line(&last, state, reason), want, "{name}");
        }
    }

    #[test]
    fn only_a_change_of_state_or_progress_prints_a_new_line() {
        let before = request("submitted", Some(10.0));
        let cases = [
            ("older", request("submitted", Some(10.2)), false),
            ("progressed", request("submitted", Some(11.0)), true),
            ("other state", request("in_doubt", Some(10.0)), true),
        ];
        for (name, mut after, printed) in cases {
            after.elapsed += Duration::from_secs(60);
            let changed = change_key(&before) != change_key(&after);
            assert_eq!(changed, printed, "{name}");
        }
    }
}
