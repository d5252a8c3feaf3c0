//! Configuration: built-in defaults, then the TOML file, then environment variables.
//!
//! Every key has a default here and is documented in `config.example.toml`; a test keeps
//! the two in step. Environment variables are named `CIMG_IMPORTD__<SECTION>__<KEY>`
//! (double underscores, so keys such as `batch_size` keep their own underscore). Unknown
//! keys and unreadable values are errors that name the key.
//!
//! The API token is deliberately not a configuration key: it is read from a file, the
//! systemd credential directory or one environment variable (see [`Token::discover`]), so
//! that it never sits in a world-readable TOML file.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use serde::Deserialize;

/// Where the daemon looks for its configuration when `--config` is not given.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/cimg-importd/config.toml";

/// Prefix of the environment variables that override configuration keys.
pub const ENV_PREFIX: &str = "CIMG_IMPORTD";

/// Environment variable holding the API token when neither a token file nor a systemd
/// credential is available.
pub const TOKEN_ENV: &str = "CIMG_IMPORTD_TOKEN";

/// The whole configuration, as read from defaults, file and environment.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// Where the queue and history live.
    pub database: DatabaseSettings,
    /// How to reach the ImportCIMG API.
    pub api: ApiSettings,
    /// How queued rows are picked up and submitted.
    pub queue: QueueSettings,
    /// How running jobs are polled.
    pub poll: PollSettings,
    /// How requests whose submission has an unknown outcome are settled.
    pub reconcile: ReconcileSettings,
    /// How the daemon starts and stops.
    pub service: ServiceSettings,
    /// The optional Prometheus endpoint.
    pub metrics: MetricsSettings,
    /// Removal of old finished requests.
    pub retention: RetentionSettings,
    /// What the daemon logs.
    pub log: LogSettings,
}

/// `[reconcile]`: settling `in_doubt` requests through ListCIMG.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ReconcileSettings {
    /// How often an `in_doubt` request is looked up again while it stays in doubt.
    /// Default 30 s.
    #[serde(with = "duration")]
    pub interval: Duration,
    /// How long after its latest attempt a request must be before "no image of that name"
    /// is taken to mean nothing was created, and it is queued again. Default 2 min.
    #[serde(with = "duration")]
    pub grace: Duration,
}

impl Default for ReconcileSettings {
    fn default() -> Self {
        ReconcileSettings {
            interval: Duration::from_secs(30),
            grace: Duration::from_secs(120),
        }
    }
}

/// `[metrics]`
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsSettings {
    /// Address of the Prometheus endpoint (`GET /metrics`), such as `127.0.0.1:9187`.
    /// Default none: no endpoint.
    pub listen: Option<std::net::SocketAddr>,
}

/// `[retention]`
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionSettings {
    /// Finished requests (succeeded, failed, rejected, cancelled) last changed longer ago
    /// than this are removed with their jobs and history. Default none: keep everything.
    #[serde(with = "duration::optional")]
    pub finished_after: Option<Duration>,
    /// How often old requests are looked for. Default 1 h.
    #[serde(with = "duration")]
    pub interval: Duration,
    /// Requests removed per transaction, so the write lock is never held for long.
    /// Default 500.
    pub batch_size: usize,
}

impl Default for RetentionSettings {
    fn default() -> Self {
        RetentionSettings {
            finished_after: None,
            interval: Duration::from_secs(3600),
            batch_size: 500,
        }
    }
}

/// `[service]`
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ServiceSettings {
    /// On SIGTERM, how long calls already in flight may take to finish and be recorded.
    /// Kept below systemd's default stop timeout (90 s). Default 20 s.
    #[serde(with = "duration")]
    pub shutdown_grace: Duration,
}

impl Default for ServiceSettings {
    fn default() -> Self {
        ServiceSettings {
            shutdown_grace: Duration::from_secs(20),
        }
    }
}

/// `[database]`
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseSettings {
    /// SQLite file; created with its directory's permissions if missing.
    /// Default `/var/lib/cimg-importd/imports.db`.
    pub path: PathBuf,
    /// How long a statement waits for another writer (an operator's `sqlite3`) before it
    /// gives up and is retried. Default 5 s.
    #[serde(with = "duration")]
    pub busy_timeout: Duration,
}

/// `[api]`
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ApiSettings {
    /// Base URL of the OpenAPI. Default `https://open.didiyunapi.com`.
    pub base_url: String,
    /// File holding the bearer token. Default none: then `$CREDENTIALS_DIRECTORY/token`,
    /// then the `CIMG_IMPORTD_TOKEN` environment variable.
    pub token_file: Option<PathBuf>,
    /// Time allowed to open a connection. Default 10 s.
    #[serde(with = "duration")]
    pub connect_timeout: Duration,
    /// Time allowed for a whole call, from sending to the last byte of the answer.
    /// Default 30 s.
    #[serde(with = "duration")]
    pub request_timeout: Duration,
    /// How each errno is handled; see [`ErrnoSettings`].
    pub errno: ErrnoSettings,
}

/// `[api.errno]`: which API error codes mean what. A code in none of the lists is treated
/// as transient, but only up to `queue.max_attempts`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ErrnoSettings {
    /// Worth retrying later with backoff. Default `[2, 3, 40000]`.
    pub transient: Vec<i64>,
    /// Fatal for the whole account (bad token, arrears, no permission): submissions pause
    /// instead of spending attempts. Default `[4, 1000011, 1100020, 10000001]`.
    pub account_wide: Vec<i64>,
    /// The request itself is wrong; retrying it unchanged cannot help.
    /// Default `[1, 13, 41026]`.
    pub permanent: Vec<i64>,
}

/// `[queue]`
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct QueueSettings {
    /// How often the queue is checked for new rows. A row inserted by another process is
    /// picked up within this time. Default 1 s.
    #[serde(with = "duration")]
    pub scan_interval: Duration,
    /// Most ImportCIMG calls in flight at once. Default 8.
    pub concurrency: usize,
    /// Attempts before a request that keeps failing transiently is marked `failed`.
    /// Default 6.
    pub max_attempts: u32,
    /// Wait before the first retry; doubles with each attempt, with jitter. Default 10 s.
    #[serde(with = "duration")]
    pub retry_initial: Duration,
    /// Longest wait between two attempts. Default 10 min.
    #[serde(with = "duration")]
    pub retry_max: Duration,
    /// While the account is refused (bad token, arrears), how often one request is tried
    /// to see whether it has cleared. Default 1 min.
    #[serde(with = "duration")]
    pub pause_probe_interval: Duration,
    /// Region ids a request may name. Default empty: any id of `a-z`, `0-9` and `-`.
    pub allowed_regions: Vec<String>,
}

/// `[poll]`
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PollSettings {
    /// Wait before a new job is first checked; the interval then doubles as the job
    /// ages. Default 10 s.
    #[serde(with = "duration")]
    pub initial_interval: Duration,
    /// Longest wait between two checks of one job. Default 5 min.
    #[serde(with = "duration")]
    pub max_interval: Duration,
    /// Most job uuids in one JobResult call. Default 100.
    pub batch_size: usize,
    /// Most JobResult calls in flight at once. Default 4.
    pub concurrency: usize,
    /// A job still running after this long is marked overdue (history, log) and polled at
    /// `max_interval`; it is never taken for a success. Default 2 days.
    #[serde(with = "duration")]
    pub overdue_after: Duration,
}

/// `[log]`
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LogSettings {
    /// A `tracing` filter such as `info` or `cimg_importd=debug`; `RUST_LOG`, when set,
    /// wins. Default `info`.
    pub level: String,
    /// How lines are written to stderr. Default `auto`.
    pub format: LogFormat,
}

/// `log.format`.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// `journal` when stderr is journald's (systemd sets `JOURNAL_STREAM`), else `human`.
    #[default]
    Auto,
    /// Timestamps, and colours on a terminal.
    Human,
    /// No timestamps (journald adds its own) and no colours.
    Journal,
    /// One JSON object per line, for log shippers.
    Json,
}

impl Default for DatabaseSettings {
    fn default() -> Self {
        DatabaseSettings {
            path: PathBuf::from("/var/lib/cimg-importd/imports.db"),
            busy_timeout: Duration::from_secs(5),
        }
    }
}

impl Default for ApiSettings {
    fn default() -> Self {
        ApiSettings {
            base_url: "https://open.didiyunapi.com".to_owned(),
            token_file: None,
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            errno: ErrnoSettings::default(),
        }
    }
}

impl Default for ErrnoSettings {
    fn default() -> Self {
        ErrnoSettings {
            transient: vec![2, 3, 40000],
            account_wide: vec![4, 1_000_011, 1_100_020, 10_000_001],
            permanent: vec![1, 13, 41026],
        }
    }
}

impl Default for QueueSettings {
    fn default() -> Self {
        QueueSettings {
            scan_interval: Duration::from_secs(1),
            concurrency: 8,
            max_attempts: 6,
            retry_initial: Duration::from_secs(10),
            retry_max: Duration::from_secs(600),
            pause_probe_interval: Duration::from_secs(60),
            allowed_regions: Vec::new(),
        }
    }
}

impl Default for PollSettings {
    fn default() -> Self {
        PollSettings {
            initial_interval: Duration::from_secs(10),
            max_interval: Duration::from_secs(300),
            batch_size: 100,
            concurrency: 4,
            overdue_after: Duration::from_secs(2 * 24 * 3600),
        }
    }
}

impl Default for LogSettings {
    fn default() -> Self {
        LogSettings {
            level: "info".to_owned(),
            format: LogFormat::Auto,
        }
    }
}

impl Settings {
    /// Loads defaults, then `path` (or [`DEFAULT_CONFIG_PATH`] if it exists), then the
    /// `CIMG_IMPORTD__…` environment variables.
    ///
    /// # Errors
    ///
    /// An explicitly named file that is missing, a file that is not valid TOML, an unknown
    /// key, a value of the wrong type or a value that breaks a rule of [`Settings::check`].
    pub fn load(path: Option<&Path>) -> anyhow::Result<Settings> {
        Self::load_from(path, std::env::vars())
    }

    /// [`Settings::load`] with the environment given explicitly, for tests.
    pub fn load_from(
        path: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> anyhow::Result<Settings> {
        let mut builder = config::Config::builder();
        match path {
            Some(path) => {
                let text = read_config_file(path)?;
                builder =
                    builder.add_source(config::File::from_str(&text, config::FileFormat::Toml));
            }
            None => {
                let default = Path::new(DEFAULT_CONFIG_PATH);
                if default.is_file() {
                    builder = builder.add_source(config::File::from(default));
                }
            }
        }

        let env: config::Map<String, String> = env
            .into_iter()
            .filter(|(key, _)| key.starts_with(&format!("{ENV_PREFIX}__")))
            .collect();
        let environment = config::Environment::with_prefix(ENV_PREFIX)
            .prefix_separator("__")
            .separator("__")
            .list_separator(",")
            .with_list_parse_key("api.errno.transient")
            .with_list_parse_key("api.errno.account_wide")
            .with_list_parse_key("api.errno.permanent")
            .with_list_parse_key("queue.allowed_regions")
            .try_parsing(true)
            .source(Some(env));

        let settings: Settings = builder
            .add_source(environment)
            .build()
            .and_then(|config| config.try_deserialize())
            .map_err(|err| {
                anyhow::anyhow!(
                    "invalid configuration: {err} (from the file or a {ENV_PREFIX}__… \
                     environment variable)"
                )
            })?;
        settings.check()?;
        Ok(settings)
    }

    /// Rules that the types alone do not enforce.
    ///
    /// # Errors
    ///
    /// The first broken rule, naming its key.
    pub fn check(&self) -> anyhow::Result<()> {
        let positive = [
            ("queue.concurrency", self.queue.concurrency),
            ("queue.max_attempts", self.queue.max_attempts as usize),
            ("poll.batch_size", self.poll.batch_size),
            ("poll.concurrency", self.poll.concurrency),
            ("retention.batch_size", self.retention.batch_size),
        ];
        for (key, value) in positive {
            if value == 0 {
                bail!("invalid configuration: `{key}` must be at least 1");
            }
        }
        let nonzero = [
            ("queue.scan_interval", self.queue.scan_interval),
            ("queue.retry_initial", self.queue.retry_initial),
            (
                "queue.pause_probe_interval",
                self.queue.pause_probe_interval,
            ),
            ("poll.initial_interval", self.poll.initial_interval),
            ("api.connect_timeout", self.api.connect_timeout),
            ("api.request_timeout", self.api.request_timeout),
        ];
        for (key, value) in nonzero {
            if value.is_zero() {
                bail!("invalid configuration: `{key}` must be longer than zero");
            }
        }
        if let Some(age) = self.retention.finished_after {
            if age < Duration::from_secs(3600) {
                bail!(
                    "invalid configuration: `retention.finished_after` ({}) is under an hour: \
                     finished requests would vanish before anyone reads them; use e.g. \
                     \"180days\", or \"off\"",
                    humantime::format_duration(age)
                );
            }
        }
        if self.poll.max_interval < self.poll.initial_interval {
            bail!(
                "invalid configuration: `poll.max_interval` ({}) is shorter than \
                 `poll.initial_interval` ({})",
                humantime::format_duration(self.poll.max_interval),
                humantime::format_duration(self.poll.initial_interval)
            );
        }
        if self.queue.retry_max < self.queue.retry_initial {
            bail!("invalid configuration: `queue.retry_max` is shorter than `queue.retry_initial`");
        }
        let url = url::Url::parse(&self.api.base_url).with_context(|| {
            format!(
                "invalid configuration: `api.base_url` `{}` is not a URL",
                self.api.base_url
            )
        })?;
        if !matches!(url.scheme(), "https" | "http") {
            bail!(
                "invalid configuration: `api.base_url` `{}` must start with https:// (or \
                 http:// for a local simulator)",
                self.api.base_url
            );
        }
        self.check_lists()
    }

    /// Rules for the lists: region ids that could ever match, errno codes in one list only,
    /// and a log level that names a level.
    fn check_lists(&self) -> anyhow::Result<()> {
        for region in &self.queue.allowed_regions {
            let plausible = !region.is_empty()
                && region
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
            if !plausible {
                bail!(
                    "invalid configuration: `queue.allowed_regions` entry `{region}` is not a \
                     region id: use lower-case ids such as \"gz\", \"bj\""
                );
            }
        }
        let errno = &self.api.errno;
        let lists = [
            ("transient", &errno.transient),
            ("account_wide", &errno.account_wide),
            ("permanent", &errno.permanent),
        ];
        for (i, (name, list)) in lists.iter().enumerate() {
            for (other, other_list) in &lists[i + 1..] {
                if let Some(code) = list.iter().find(|code| other_list.contains(code)) {
                    bail!(
                        "invalid configuration: errno {code} is in both `api.errno.{name}` and \
                         `api.errno.{other}`: keep it in one"
                    );
                }
            }
        }
        crate::logging::check_level(&self.log.level)
    }
}

/// Reads a configuration file named on the command line, saying exactly what is wrong
/// when it cannot.
fn read_config_file(path: &Path) -> anyhow::Result<String> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(text),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => bail!(
            "configuration file `{}` not found: check the --config path",
            path.display()
        ),
        Err(err) if err.kind() == std::io::ErrorKind::PermissionDenied => bail!(
            "configuration file `{}` is not readable by this user: make it readable (e.g. mode \
             0644) or run as its owner",
            path.display()
        ),
        Err(err) => bail!("cannot read configuration file `{}`: {err}", path.display()),
    }
}

/// The API bearer token. It grants full access to the account, so it is never logged,
/// never stored in the database and never shown by `Debug`.
#[derive(Clone)]
pub struct Token(String);

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

/// Where a token was found, for messages that must not show the token itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSource {
    /// `api.token_file`.
    File(PathBuf),
    /// `$CREDENTIALS_DIRECTORY/token`, as passed by systemd's `LoadCredential=`.
    Credential(PathBuf),
    /// The `CIMG_IMPORTD_TOKEN` environment variable.
    Environment,
    /// Given directly by the caller (the demo).
    Given,
}

impl fmt::Display for TokenSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TokenSource::File(path) => write!(f, "file {}", path.display()),
            TokenSource::Credential(path) => write!(f, "systemd credential {}", path.display()),
            TokenSource::Environment => write!(f, "environment variable {TOKEN_ENV}"),
            TokenSource::Given => f.write_str("command line"),
        }
    }
}

impl Token {
    /// Wraps a token that is already known.
    ///
    /// # Errors
    ///
    /// An empty token or one with inner whitespace.
    pub fn new(value: &str) -> anyhow::Result<Token> {
        let value = value.trim();
        if value.is_empty() {
            bail!("the API token is empty");
        }
        if value.chars().any(char::is_whitespace) {
            bail!("the API token contains whitespace: expected one line such as 64 hex characters");
        }
        Ok(Token(value.to_owned()))
    }

    /// The secret itself, for the `Authorization` header only.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Finds the token: `api.token_file`, else `$CREDENTIALS_DIRECTORY/token`, else
    /// `CIMG_IMPORTD_TOKEN`.
    ///
    /// # Errors
    ///
    /// No source has a token, or the chosen source cannot be read or holds no token.
    pub fn discover(api: &ApiSettings) -> anyhow::Result<(Token, TokenSource)> {
        if let Some(path) = &api.token_file {
            return Ok((read_token_file(path)?, TokenSource::File(path.clone())));
        }
        if let Some(dir) = std::env::var_os("CREDENTIALS_DIRECTORY") {
            let path = Path::new(&dir).join("token");
            if path.exists() {
                return Ok((read_token_file(&path)?, TokenSource::Credential(path)));
            }
        }
        if let Ok(value) = std::env::var(TOKEN_ENV) {
            let token = Token::new(&value).with_context(|| format!("in {TOKEN_ENV}"))?;
            return Ok((token, TokenSource::Environment));
        }
        bail!(
            "no API token found: set `api.token_file`, pass a `token` credential with \
             systemd's LoadCredential=, or set {TOKEN_ENV}"
        )
    }
}

fn read_token_file(path: &Path) -> anyhow::Result<Token> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the API token file `{}`", path.display()))?;
    Token::new(&text).with_context(|| format!("in the API token file `{}`", path.display()))
}

/// Serde helpers for durations written like `"10s"`, `"5m"` or `"1h 30m"`.
pub mod duration {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer};

    /// Reads a human-written duration.
    ///
    /// # Errors
    ///
    /// A value that is not a string in humantime's format.
    pub fn deserialize<'de, D: Deserializer<'de>>(de: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(de)?;
        parse::<D>(&text)
    }

    fn parse<'de, D: Deserializer<'de>>(text: &str) -> Result<Duration, D::Error> {
        humantime::parse_duration(text).map_err(|err| {
            serde::de::Error::custom(format!(
                "invalid duration `{text}` ({err}): expected e.g. `500ms`, `10s`, `5m`, `2h`"
            ))
        })
    }

    /// The same for a duration that may be left out, or written `"off"`.
    pub mod optional {
        use std::time::Duration;

        use serde::{Deserialize, Deserializer};

        /// Reads an optional human-written duration; `"off"` or `""` is none.
        ///
        /// # Errors
        ///
        /// A value that is neither `"off"` nor a duration.
        pub fn deserialize<'de, D: Deserializer<'de>>(de: D) -> Result<Option<Duration>, D::Error> {
            let text = Option::<String>::deserialize(de)?;
            match text.as_deref().map(str::trim) {
                None | Some("") | Some("off") => Ok(None),
                Some(text) => super::parse::<D>(text).map(Some),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn load_toml(text: &str) -> anyhow::Result<Settings> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        std::fs::write(&path, text).unwrap();
        Settings::load_from(Some(&path), Vec::new())
    }

    #[test]
    fn example_file_documents_exactly_the_defaults() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config.example.toml");
        let loaded = Settings::load_from(Some(&path), Vec::new()).unwrap();
        assert_eq!(loaded, Settings::default());
    }

    #[test]
    fn environment_sets_keys_that_contain_underscores() {
        let loaded = Settings::load_from(
            None,
            env(&[
                ("CIMG_IMPORTD__POLL__BATCH_SIZE", "50"),
                ("CIMG_IMPORTD__POLL__MAX_INTERVAL", "2m"),
                ("CIMG_IMPORTD__DATABASE__PATH", "/tmp/x.db"),
                ("CIMG_IMPORTD__API__ERRNO__TRANSIENT", "2,3,77"),
            ]),
        )
        .unwrap();
        assert_eq!(loaded.poll.batch_size, 50);
        assert_eq!(loaded.poll.max_interval, Duration::from_secs(120));
        assert_eq!(loaded.database.path, PathBuf::from("/tmp/x.db"));
        assert_eq!(loaded.api.errno.transient, vec![2, 3, 77]);
    }

    #[test]
    fn environment_wins_over_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        std::fs::write(&path, "[poll]\nbatch_size = 20\n").unwrap();
        let loaded = Settings::load_from(
            Some(&path),
            env(&[("CIMG_IMPORTD__POLL__BATCH_SIZE", "30")]),
        )
        .unwrap();
        assert_eq!(loaded.poll.batch_size, 30);
    }

    #[test]
    fn bad_input_is_an_error_naming_the_key() {
        let cases: &[(&str, &str, &[&str])] = &[
            ("unknown key", "[poll]\nbatch_sise = 5\n", &["batch_sise"]),
            (
                "unknown section",
                "[polling]\nbatch_size = 5\n",
                &["polling"],
            ),
            (
                "bad duration",
                "[poll]\nmax_interval = \"every 5 minutes\"\n",
                &["every 5 minutes", "max_interval"],
            ),
            (
                "wrong type",
                "[poll]\nbatch_size = \"many\"\n",
                &["batch_size"],
            ),
            (
                "zero batch",
                "[poll]\nbatch_size = 0\n",
                &["poll.batch_size"],
            ),
            (
                "ftp url",
                "[api]\nbase_url = \"ftp://127.0.0.1:1\"\n",
                &["must start with https://"],
            ),
            (
                "odd allowed region",
                "[queue]\nallowed_regions = [\"GZ\"]\n",
                &["`GZ` is not a region id"],
            ),
            (
                "errno twice",
                "[api.errno]\ntransient = [2, 4]\n",
                &["errno 4 is in both"],
            ),
            (
                "level that names no level",
                "[log]\nlevel = \"loud\"\n",
                &["does not name a level"],
            ),
            (
                "bad url",
                "[api]\nbase_url = \"not a url\"\n",
                &["api.base_url"],
            ),
        ];
        for (name, text, needles) in cases {
            let err = format!("{:#}", load_toml(text).expect_err(name));
            for needle in *needles {
                assert!(
                    err.contains(needle),
                    "{name}: `{err}` does not mention `{needle}`"
                );
            }
        }
    }

    #[test]
    fn bad_environment_value_names_the_key() {
        let err = Settings::load_from(None, env(&[("CIMG_IMPORTD__QUEUE__SCAN_INTERVAL", "soon")]))
            .unwrap_err();
        let text = format!("{err:#}");
        assert!(text.contains("scan_interval"), "{text}");
    }

    #[test]
    fn missing_named_file_is_an_error() {
        let err = Settings::load_from(Some(Path::new("/nonexistent/c.toml")), Vec::new());
        assert!(format!("{:#}", err.unwrap_err()).contains("/nonexistent/c.toml"));
    }

    #[test]
    fn token_debug_never_shows_the_secret() {
        let token = Token::new("  abcdef0123  \n").unwrap();
        assert_eq!(token.expose(), "abcdef0123");
        assert!(!format!("{token:?}").contains("abcdef"));
    }

    #[test]
    fn token_file_is_read_and_trimmed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "feedbeef\n").unwrap();
        let api = ApiSettings {
            token_file: Some(path.clone()),
            ..ApiSettings::default()
        };
        let (token, source) = Token::discover(&api).unwrap();
        assert_eq!(token.expose(), "feedbeef");
        assert_eq!(source, TokenSource::File(path));
    }

    #[test]
    fn empty_token_file_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "\n").unwrap();
        let api = ApiSettings {
            token_file: Some(path),
            ..ApiSettings::default()
        };
        let err = format!("{:#}", Token::discover(&api).unwrap_err());
        assert!(err.contains("token file") && err.contains("empty"), "{err}");
    }
}
