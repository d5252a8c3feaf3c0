//! The daemon under test: the release binary as a child process, configured through the
//! environment like a systemd unit would configure it, with a fresh database.
//!
//! A child process rather than the daemon in-process, so that its CPU time, wake-ups and
//! memory are its own and not mixed with the simulator's and the harness's.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

/// Any non-empty bearer token: the benchmark simulators accept every token.
const TOKEN: &str = "b3c1d0e5a9f84e7c8b6a5d4c3b2a1f0e9d8c7b6a5f4e3d2c1b0a9f8e7d6c5b4a";

/// How long a daemon may take to become ready before the run is abandoned.
const READY_LIMIT: Duration = Duration::from_secs(60);

/// How long a stopped daemon may take to exit before it is killed.
const STOP_LIMIT: Duration = Duration::from_secs(30);

/// Log lines kept to explain a failure.
const TAIL_LINES: usize = 40;

/// The release binary, built (or found up to date) once per run.
pub fn binary() -> anyhow::Result<&'static Path> {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    if let Some(path) = BINARY.get() {
        return Ok(path);
    }
    let exe = std::env::current_exe()?;
    // target/release/examples/bench -> target/release/cimg-importd
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .context("cannot find the target directory")?;
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml");
    let mut build = Command::new(cargo);
    // `cargo run` describes the package it runs in variables such as CARGO_MANIFEST_DIR.
    // Some build scripts of dependencies (ring's) rebuild when those change, so they are
    // left out here: with them, this build and the one `cargo build` makes from a shell
    // would undo each other and every run would recompile TLS and the daemon.
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        let set_by_cargo_run = name.starts_with("CARGO_PKG_")
            || name.starts_with("CARGO_MANIFEST_")
            || matches!(
                name.as_ref(),
                "CARGO_CRATE_NAME" | "CARGO_BIN_NAME" | "CARGO_PRIMARY_PACKAGE"
            );
        if set_by_cargo_run {
            build.env_remove(name.as_ref());
        }
    }
    let status = build
        .args(["build", "--release", "--quiet", "--bin", "cimg-importd"])
        .arg("--manifest-path")
        .arg(&manifest)
        .env(
            "CARGO_TARGET_DIR",
            dir.parent().context("no target directory")?,
        )
        .status()
        .context("cannot run cargo to build the daemon")?;
    if !status.success() {
        bail!("building the daemon failed: {status}");
    }
    let path = dir.join("cimg-importd");
    anyhow::ensure!(path.is_file(), "no daemon binary at {}", path.display());
    Ok(BINARY.get_or_init(|| path))
}

/// The command for the daemon binary with a database and an API, configured through the
/// environment, plus `overrides` such as `("POLL__BATCH_SIZE", "50")`.
pub fn command(db: &Path, base_url: &str, overrides: &[(&str, String)]) -> anyhow::Result<Command> {
    let dir = db.parent().context("database path has no directory")?;
    let config = dir.join("config.toml");
    std::fs::write(
        &config,
        "# defaults; the benchmark sets keys through the environment\n",
    )?;
    let mut command = match wrapper() {
        Some(mut words) => {
            let mut command = Command::new(words.remove(0));
            command.args(words).arg(binary()?);
            command
        }
        None => Command::new(binary()?),
    };
    command
        .arg("--config")
        .arg(&config)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("CIMG_IMPORTD_TOKEN", TOKEN)
        .env("CIMG_IMPORTD__DATABASE__PATH", db)
        .env("CIMG_IMPORTD__API__BASE_URL", base_url)
        .stdin(Stdio::null());
    for (key, value) in overrides {
        command.env(format!("CIMG_IMPORTD__{key}"), value);
    }
    Ok(command)
}

/// `BENCH_WRAP`, split into words: a command the daemon runs under, for profiling (for
/// example `valgrind --tool=callgrind`). Per-process figures are then the wrapper's.
fn wrapper() -> Option<Vec<String>> {
    let words: Vec<String> = std::env::var("BENCH_WRAP")
        .ok()?
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    (!words.is_empty()).then_some(words)
}

/// A running daemon.
pub struct Daemon {
    child: Child,
    /// Time from spawning to the daemon saying it is ready.
    pub ready_after: Duration,
    tail: Arc<Mutex<Vec<String>>>,
}

/// Whether a log line is the daemon saying it is ready: migrations applied, interrupted
/// submissions recovered, loops started.
fn is_ready_line(line: &str) -> bool {
    line.contains("cimg-importd running")
}

impl Daemon {
    /// Spawns `daemon run` and waits until it is ready.
    pub fn start(
        db: &Path,
        base_url: &str,
        overrides: &[(&str, String)],
    ) -> anyhow::Result<Daemon> {
        let mut command = command(db, base_url, overrides)?;
        command
            .arg("run")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let spawned = Instant::now();
        let mut child = command.spawn().context("cannot start the daemon")?;
        let stderr = child.stderr.take().context("no stderr")?;
        let tail = Arc::new(Mutex::new(Vec::new()));
        let (ready_tx, ready_rx) = mpsc::channel();
        let lines = Arc::clone(&tail);
        std::thread::spawn(move || read_log(stderr, &lines, ready_tx));
        let mut daemon = Daemon {
            child,
            ready_after: Duration::ZERO,
            tail,
        };
        match ready_rx.recv_timeout(READY_LIMIT) {
            Ok(at) => daemon.ready_after = at - spawned,
            Err(_) => {
                let log = daemon.log_tail();
                daemon.kill();
                bail!("the daemon did not become ready:\n{log}");
            }
        }
        Ok(daemon)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The last lines it logged.
    pub fn log_tail(&self) -> String {
        self.tail.lock().map(|t| t.join("\n")).unwrap_or_default()
    }

    /// Stops it with SIGTERM, as systemd would, and waits for it to exit.
    pub fn stop(mut self) -> anyhow::Result<()> {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + STOP_LIMIT;
        loop {
            if let Some(status) = self.child.try_wait()? {
                if !status.success() {
                    bail!("the daemon exited with {status}:\n{}", self.log_tail());
                }
                return Ok(());
            }
            if Instant::now() >= deadline {
                self.kill();
                bail!("the daemon did not stop within {STOP_LIMIT:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.kill();
        }
    }
}

fn read_log(stderr: impl std::io::Read, tail: &Mutex<Vec<String>>, ready: mpsc::Sender<Instant>) {
    let mut ready = Some(ready);
    for line in BufReader::new(stderr).lines() {
        let Ok(line) = line else { break };
        if ready.is_some() && is_ready_line(&line) {
            if let Some(tx) = ready.take() {
                let _ = tx.send(Instant::now());
            }
        }
        if let Ok(mut tail) = tail.lock() {
            if tail.len() == TAIL_LINES {
                tail.remove(0);
            }
            tail.push(line);
        }
    }
}
