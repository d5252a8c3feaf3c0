//! The operator's commands, run as the real binary against a real SQLite file in a
//! temporary directory: what they print, what they change, and their exit status.

mod common;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use cimg_importd::simulator::{SimOptions, Simulator};
use common::{operator_pool, ORIGIN_UUID, TOKEN};
use serde_json::Value;
use sqlx::SqlitePool;

const BIN: &str = env!("CARGO_BIN_EXE_cimg-importd");

/// One test's directory and database, and the binary pointed at them.
struct Sandbox {
    dir: tempfile::TempDir,
    db: PathBuf,
}

/// What one run of the binary did.
#[derive(Debug)]
struct Ran {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl From<Output> for Ran {
    fn from(output: Output) -> Ran {
        Ran {
            code: output.status.code(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }
}

impl Sandbox {
    fn new() -> Sandbox {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("imports.db");
        Sandbox { dir, db }
    }

    /// The binary with a clean environment: only PATH, the database and an operator name.
    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(BIN);
        command
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("USER", "alice")
            .env("CIMG_IMPORTD__DATABASE__PATH", &self.db)
            .args(args)
            .stdin(Stdio::null());
        command
    }

    fn run(&self, args: &[&str]) -> Ran {
        // enqueue queues only into an existing database, as an operator's would be.
        if args.first() == Some(&"enqueue") && !self.db.exists() {
            assert_eq!(
                self.command(&["migrate"]).output().unwrap().status.code(),
                Some(0)
            );
        }
        self.command(args).output().unwrap().into()
    }

    /// Queues one request from options; returns its id.
    fn enqueue(&self, region: &str, name: &str, origin_region: &str) -> i64 {
        let ran = self.run(&[
            "enqueue",
            "--region",
            region,
            "--name",
            name,
            "--origin-image",
            ORIGIN_UUID,
            "--origin-region",
            origin_region,
        ]);
        assert_eq!(ran.code, Some(0), "{ran:?}");
        ids_in(&ran.stdout)[0]
    }

    fn write(&self, name: &str, text: &str) -> String {
        let path = self.dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.to_string_lossy().into_owned()
    }

    /// An operator's connection; the database must exist.
    async fn pool(&self) -> SqlitePool {
        operator_pool(&self.db).await
    }

    /// An operator's connection to a freshly migrated database.
    async fn pool_after_migrate(&self) -> SqlitePool {
        assert_eq!(self.run(&["migrate"]).code, Some(0));
        self.pool().await
    }
}

/// The ids in `queued request N…` lines.
fn ids_in(stdout: &str) -> Vec<i64> {
    stdout
        .lines()
        .filter_map(|line| line.strip_prefix("queued request "))
        .map(|rest| {
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            digits.parse().unwrap()
        })
        .collect()
}

async fn count(pool: &SqlitePool) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM import_requests")
        .fetch_one(pool)
        .await
        .unwrap()
}

async fn set_state(pool: &SqlitePool, id: i64, state: &str) {
    sqlx::query("UPDATE import_requests SET state = ?, attempts = 2 WHERE id = ?")
        .bind(state)
        .bind(id)
        .execute(pool)
        .await
        .unwrap();
}

async fn last_event(pool: &SqlitePool, id: i64) -> (String, String, String) {
    sqlx::query_as(
        "SELECT kind, state, detail FROM request_history WHERE request_id = ?
         ORDER BY event_id DESC LIMIT 1",
    )
    .bind(id)
    .fetch_one(pool)
    .await
    .unwrap()
}

fn csv_line(region: &str, name: &str, uuid: &str, origin: &str) -> String {
    format!("{region},{name},{uuid},{origin}\n")
}

/// One line of a JSON-lines file.
fn json_request(region: &str, name: &str, uuid: &str, origin: &str) -> Value {
    serde_json::json!({
        "region_id": region,
        "name": name,
        "origin_image_uuid": uuid,
        "origin_region_id": origin,
    })
}

#[tokio::test]
async fn enqueue_single_request_prints_its_id_and_queues_it() {
    let sandbox = Sandbox::new();
    let id = sandbox.enqueue("gz", "web-2026-12", "bj");

    let pool = sandbox.pool().await;
    let row: (String, String, String, String) = sqlx::query_as(
        "SELECT state, region_id, name, origin_region_id FROM import_requests WHERE id = ?",
    )
    .bind(id)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(
        row,
        (
            "queued".into(),
            "gz".into(),
            "web-2026-12".into(),
            "bj".into()
        )
    );
}

#[tokio::test]
async fn enqueue_files_queue_every_request_in_order() {
    let sandbox = Sandbox::new();
    let csv = format!(
        "region_id,name,origin_image_uuid,origin_region_id,description\n\
         gz,from-csv-1,{ORIGIN_UUID},bj,first\n\
         bj,from-csv-2,{ORIGIN_UUID},gz,\n"
    );
    let mut second = json_request("bj", "from-jsonl-2", ORIGIN_UUID, "gz");
    second["description"] = "second".into();
    let jsonl = format!(
        "{}\n\n{second}\n",
        json_request("gz", "from-jsonl-1", ORIGIN_UUID, "bj")
    );
    let cases = [
        (
            "csv",
            sandbox.write("batch.csv", &csv),
            ["from-csv-1", "from-csv-2"],
        ),
        (
            "json lines",
            sandbox.write("batch.jsonl", &jsonl),
            ["from-jsonl-1", "from-jsonl-2"],
        ),
    ];
    let pool = sandbox.pool_after_migrate().await;
    for (name, path, names) in cases {
        let ran = sandbox.run(&["enqueue", "--file", &path]);
        assert_eq!(ran.code, Some(0), "{name}: {ran:?}");
        let ids = ids_in(&ran.stdout);
        assert_eq!(ids.len(), 2, "{name}: {}", ran.stdout);
        for (id, want) in ids.iter().zip(names) {
            let stored: String =
                sqlx::query_scalar("SELECT name FROM import_requests WHERE id = ?")
                    .bind(id)
                    .fetch_one(&pool)
                    .await
                    .unwrap();
            assert_eq!(stored, want, "{name}");
        }
    }
    let description: Option<String> =
        sqlx::query_scalar("SELECT description FROM import_requests WHERE name = 'from-csv-2'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(
        description, None,
        "an empty CSV description is stored as NULL"
    );
}

#[tokio::test]
async fn enqueue_bad_file_names_the_line_exits_two_and_queues_nothing() {
    let sandbox = Sandbox::new();
    sandbox.enqueue("gz", "already-there", "bj");
    let csv = format!(
        "region_id,name,origin_image_uuid,origin_region_id\n{}{}{}",
        csv_line("gz", "good", ORIGIN_UUID, "bj"),
        csv_line("gz", "good-too", ORIGIN_UUID, "bj"),
        csv_line("gz", "same-region", ORIGIN_UUID, "gz"),
    );
    let jsonl = format!(
        "{}\n{}\n",
        json_request("gz", "good", ORIGIN_UUID, "bj"),
        json_request("gz", "short-uuid", "4a48", "bj")
    );
    let cases = [
        (
            "csv, bad fourth line",
            sandbox.write("bad.csv", &csv),
            "line 4",
        ),
        (
            "json lines, bad second line",
            sandbox.write("bad.jsonl", &jsonl),
            "line 2",
        ),
        (
            "csv with an unknown column",
            sandbox.write("header.csv", "region,name\ngz,x\n"),
            "line 1",
        ),
    ];
    let pool = sandbox.pool().await;
    for (name, path, line) in cases {
        let ran = sandbox.run(&["enqueue", "--file", &path]);
        assert_eq!(ran.code, Some(2), "{name}: {ran:?}");
        assert!(ran.stderr.contains(line), "{name}: {}", ran.stderr);
        assert!(
            ran.stderr.contains("nothing was queued"),
            "{name}: {}",
            ran.stderr
        );
        assert_eq!(
            count(&pool).await,
            1,
            "{name}: nothing of the file is queued"
        );
    }
}

#[tokio::test]
async fn enqueue_invalid_options_exit_two_and_queue_nothing() {
    let sandbox = Sandbox::new();
    sandbox.enqueue("gz", "first", "bj");
    let cases: &[(&str, &[&str], &str)] = &[
        (
            "same region twice",
            &[
                "--region",
                "gz",
                "--name",
                "x",
                "--origin-image",
                ORIGIN_UUID,
                "--origin-region",
                "gz",
            ],
            "both `gz`",
        ),
        (
            "malformed uuid",
            &[
                "--region",
                "gz",
                "--name",
                "x",
                "--origin-image",
                "nope",
                "--origin-region",
                "bj",
            ],
            "32 hex",
        ),
        (
            "options missing",
            &["--region", "gz", "--name", "x"],
            "--origin-image",
        ),
        (
            "file and options",
            &["--file", "x.csv", "--region", "gz"],
            "cannot be used",
        ),
        ("unknown extension", &["--file", "requests.txt"], "--format"),
    ];
    let pool = sandbox.pool().await;
    for (name, args, needle) in cases {
        let mut all = vec!["enqueue"];
        all.extend_from_slice(args);
        let ran = sandbox.run(&all);
        assert_eq!(ran.code, Some(2), "{name}: {ran:?}");
        assert!(ran.stderr.contains(needle), "{name}: {}", ran.stderr);
    }
    assert_eq!(count(&pool).await, 1);
}

#[tokio::test]
async fn list_filters_by_state_and_region_newest_first() {
    let sandbox = Sandbox::new();
    let gz_old = sandbox.enqueue("gz", "gz-old", "bj");
    let bj = sandbox.enqueue("bj", "bj-only", "gz");
    let gz_new = sandbox.enqueue("gz", "gz-new", "bj");
    set_state(&sandbox.pool().await, gz_old, "failed").await;

    let table = sandbox.run(&["list"]);
    assert_eq!(table.code, Some(0), "{table:?}");
    let names: Vec<&str> = table
        .stdout
        .lines()
        .skip(2)
        .map(|line| line.split_whitespace().nth(3).unwrap())
        .collect();
    assert_eq!(names, ["gz-new", "bj-only", "gz-old"]);

    let cases: &[(&str, &[&str], Vec<i64>)] = &[
        ("everything", &[], vec![gz_new, bj, gz_old]),
        ("by state", &["--state", "failed"], vec![gz_old]),
        ("by region", &["--region", "gz"], vec![gz_new, gz_old]),
        (
            "both",
            &["--state", "queued", "--region", "gz"],
            vec![gz_new],
        ),
        ("limited", &["--limit", "2"], vec![gz_new, bj]),
        ("nothing matches", &["--region", "hk"], vec![]),
    ];
    for (name, filters, want) in cases {
        let mut args = vec!["list", "--json"];
        args.extend_from_slice(filters);
        let ran = sandbox.run(&args);
        assert_eq!(ran.code, Some(0), "{name}: {ran:?}");
        let parsed: Value = serde_json::from_str(&ran.stdout).expect("one JSON array");
        let ids: Vec<i64> = parsed
            .as_array()
            .unwrap()
            .iter()
            .map(|row| row["id"].as_i64().unwrap())
            .collect();
        assert_eq!(&ids, want, "{name}");
    }
    let row: Value =
        serde_json::from_str(&sandbox.run(&["list", "--json", "--limit", "1"]).stdout).unwrap();
    assert_eq!(row[0]["state"], "queued");
    assert_eq!(row[0]["region_id"], "gz");
    assert!(row[0]["job_uuid"].is_null());
}

#[tokio::test]
async fn reads_do_not_wait_for_another_connections_open_snapshot() {
    let sandbox = Sandbox::new();
    let id = sandbox.enqueue("gz", "first", "bj");
    // Another connection (the daemon, or an operator's sqlite3) holds a read snapshot
    // while newer writes sit in the WAL: a reader that tried to fold the WAL back into the
    // database file at exit would wait for it for the whole busy timeout.
    let pool = sandbox.pool().await;
    let mut reader = pool.acquire().await.unwrap();
    sqlx::query("BEGIN").execute(&mut *reader).await.unwrap();
    let _: i64 = sqlx::query_scalar("SELECT count(*) FROM import_requests")
        .fetch_one(&mut *reader)
        .await
        .unwrap();
    sandbox.enqueue("gz", "second", "bj");
    let id = id.to_string();
    for args in [vec!["list"], vec!["show", id.as_str()]] {
        let started = Instant::now();
        let ran: Ran = sandbox
            .command(&args)
            .env("CIMG_IMPORTD__DATABASE__BUSY_TIMEOUT", "30s")
            .output()
            .unwrap()
            .into();
        assert_eq!(ran.code, Some(0), "{args:?}: {ran:?}");
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "{args:?} waited {:?} for the other connection",
            started.elapsed()
        );
    }
    sqlx::query("COMMIT").execute(&mut *reader).await.unwrap();
}

#[test]
fn enqueue_refuses_a_database_that_does_not_exist() {
    let sandbox = Sandbox::new();
    let ran = sandbox
        .command(&[
            "enqueue",
            "--region",
            "gz",
            "--name",
            "n",
            "--origin-image",
            ORIGIN_UUID,
            "--origin-region",
            "bj",
        ])
        .output()
        .unwrap();
    assert_eq!(ran.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&ran.stderr).contains("does not exist"));
    assert!(
        !sandbox.db.exists(),
        "a typo in the path must not create a database no daemon reads"
    );
}

#[test]
fn list_refuses_an_unknown_state_and_a_missing_database_with_status_two() {
    let sandbox = Sandbox::new();
    let missing = sandbox.run(&["list"]);
    assert_eq!(missing.code, Some(2), "{missing:?}");
    assert!(
        missing.stderr.contains("does not exist"),
        "{}",
        missing.stderr
    );
    assert!(!sandbox.db.exists(), "reading must not create a database");

    sandbox.enqueue("gz", "x", "bj");
    let bad_state = sandbox.run(&["list", "--state", "done"]);
    assert_eq!(bad_state.code, Some(2), "{bad_state:?}");
    assert!(
        bad_state.stderr.contains("succeeded"),
        "lists the states: {}",
        bad_state.stderr
    );
}

#[tokio::test]
async fn show_prints_the_request_its_jobs_and_its_history() {
    let sandbox = Sandbox::new();
    let id = sandbox.enqueue("gz", "shown", "bj");
    let pool = sandbox.pool().await;
    set_state(&pool, id, "submitted").await;
    sqlx::query(
        "INSERT INTO jobs (request_id, region_id, job_uuid, progress, next_check_at)
         VALUES (?, 'gz', 'job-one', 42, '2026-01-01T00:00:00.000Z')",
    )
    .bind(id)
    .execute(&pool)
    .await
    .unwrap();

    let text = sandbox.run(&["show", &id.to_string()]);
    assert_eq!(text.code, Some(0), "{text:?}");
    for needle in [
        "shown",
        "submitted",
        ORIGIN_UUID,
        "job-one",
        "42%",
        "history",
        "queued",
    ] {
        assert!(
            text.stdout.contains(needle),
            "`{needle}` missing:\n{}",
            text.stdout
        );
    }

    let json = sandbox.run(&["show", &id.to_string(), "--json"]);
    let parsed: Value = serde_json::from_str(&json.stdout).expect("one JSON object");
    assert_eq!(parsed["request"]["name"], "shown");
    assert_eq!(parsed["request"]["origin_image_uuid"], ORIGIN_UUID);
    assert_eq!(parsed["jobs"][0]["job_uuid"], "job-one");
    assert_eq!(parsed["history"][0]["kind"], "queued");
}

#[test]
fn show_unknown_id_exits_one_and_says_how_to_find_ids() {
    let sandbox = Sandbox::new();
    sandbox.enqueue("gz", "x", "bj");
    let ran = sandbox.run(&["show", "999"]);
    assert_eq!(ran.code, Some(1), "{ran:?}");
    assert!(
        ran.stderr.contains("no request has id 999"),
        "{}",
        ran.stderr
    );
    assert!(ran.stderr.contains("cimg-importd list"), "{}", ran.stderr);
}

#[test]
fn watch_exits_at_once_when_nothing_is_in_flight() {
    let sandbox = Sandbox::new();
    assert_eq!(sandbox.run(&["migrate"]).code, Some(0));
    let started = Instant::now();
    let ran = sandbox.run(&["watch"]);
    assert_eq!(ran.code, Some(0), "{ran:?}");
    assert!(ran.stdout.contains("nothing in flight"), "{}", ran.stdout);
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[tokio::test]
async fn watch_without_a_terminal_prints_changes_and_exits_when_all_have_ended() {
    let sandbox = Sandbox::new();
    let id = sandbox.enqueue("gz", "watched", "bj");
    let pool = sandbox.pool().await;
    set_state(&pool, id, "submitted").await;
    sqlx::query(
        "INSERT INTO jobs (request_id, region_id, job_uuid, progress, next_check_at)
         VALUES (?, 'gz', 'job-w', 42, '2026-01-01T00:00:00.000Z')",
    )
    .bind(id)
    .execute(&pool)
    .await
    .unwrap();

    let mut child = sandbox
        .command(&["watch", "--interval", "200ms"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = line_channel(child.stdout.take().unwrap());
    let first = lines
        .recv_timeout(Duration::from_secs(10))
        .expect("a first line");
    assert!(
        first.contains(&format!("#{id} gz watched 42% submitted")),
        "plain line, not a bar: {first}"
    );

    sqlx::query("UPDATE import_requests SET state = 'succeeded' WHERE id = ?")
        .bind(id)
        .execute(&pool)
        .await
        .unwrap();
    let status = wait_exit(&mut child, Duration::from_secs(10));
    let rest: Vec<String> = lines.try_iter().collect();
    assert!(status.success(), "exit {status:?}; printed {rest:?}");
    assert!(
        rest.iter()
            .any(|line| line.contains(&format!("#{id} gz watched succeeded"))),
        "{rest:?}"
    );
    assert!(
        rest.iter()
            .any(|line| line.contains("nothing left in flight")),
        "{rest:?}"
    );
    assert_eq!(
        rest.iter().filter(|line| line.contains("42%")).count(),
        0,
        "unchanged: no repeat"
    );
}

fn line_channel(stdout: std::process::ChildStdout) -> mpsc::Receiver<String> {
    let (send, receive) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if send.send(line).is_err() {
                break;
            }
        }
    });
    receive
}

fn wait_exit(child: &mut std::process::Child, limit: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            // Give the reader thread a moment to pass on the last lines.
            std::thread::sleep(Duration::from_millis(100));
            return status;
        }
        if Instant::now() > deadline {
            child.kill().unwrap();
            panic!("still running after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test]
async fn retry_requeues_from_failed_rejected_and_in_doubt_and_records_who() {
    let sandbox = Sandbox::new();
    let pool = sandbox.pool_after_migrate().await;
    for state in ["failed", "rejected", "in_doubt"] {
        let id = sandbox.enqueue("gz", &format!("from-{state}"), "bj");
        set_state(&pool, id, state).await;

        let ran = sandbox.run(&["retry", &id.to_string()]);
        assert_eq!(ran.code, Some(0), "{state}: {ran:?}");

        let (now, attempts): (String, i64) =
            sqlx::query_as("SELECT state, attempts FROM import_requests WHERE id = ?")
                .bind(id)
                .fetch_one(&pool)
                .await
                .unwrap();
        assert_eq!((now.as_str(), attempts), ("queued", 0), "{state}");
        let (kind, after, detail) = last_event(&pool, id).await;
        assert_eq!(
            (kind.as_str(), after.as_str()),
            ("retried", "queued"),
            "{state}"
        );
        assert!(
            detail.contains("by alice via cimg-importd retry"),
            "{state}: {detail}"
        );
        assert!(
            detail.contains(&format!("was {state}")),
            "{state}: {detail}"
        );
    }
}

#[tokio::test]
async fn cancel_withdraws_a_queued_request_and_records_who() {
    let sandbox = Sandbox::new();
    let id = sandbox.enqueue("gz", "withdrawn", "bj");
    let ran = sandbox.run(&["cancel", &id.to_string()]);
    assert_eq!(ran.code, Some(0), "{ran:?}");

    let pool = sandbox.pool().await;
    let (kind, state, detail) = last_event(&pool, id).await;
    assert_eq!((kind.as_str(), state.as_str()), ("cancelled", "cancelled"));
    assert!(
        detail.contains("by alice via cimg-importd cancel"),
        "{detail}"
    );
}

#[tokio::test]
async fn refused_changes_exit_one_naming_the_state_and_change_nothing() {
    let sandbox = Sandbox::new();
    let pool = sandbox.pool_after_migrate().await;
    let cases = [
        ("retry", "queued", "only from failed, rejected or in_doubt"),
        (
            "retry",
            "submitted",
            "only from failed, rejected or in_doubt",
        ),
        (
            "retry",
            "succeeded",
            "only from failed, rejected or in_doubt",
        ),
        ("cancel", "submitting", "only from queued"),
        ("cancel", "in_doubt", "only from queued"),
        ("cancel", "failed", "only from queued"),
    ];
    for (command, state, allowed) in cases {
        let id = sandbox.enqueue("gz", "refused", "bj");
        set_state(&pool, id, state).await;
        let events_before = last_event(&pool, id).await;

        let ran = sandbox.run(&[command, &id.to_string()]);
        let case = format!("{command} from {state}");
        assert_eq!(ran.code, Some(1), "{case}: {ran:?}");
        assert!(
            ran.stderr.contains(&format!("it is {state}")),
            "{case}: {}",
            ran.stderr
        );
        assert!(ran.stderr.contains(allowed), "{case}: {}", ran.stderr);
        let now: String = sqlx::query_scalar("SELECT state FROM import_requests WHERE id = ?")
            .bind(id)
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(now, state, "{case}");
        assert_eq!(
            last_event(&pool, id).await,
            events_before,
            "{case}: no event"
        );
    }
    for command in ["retry", "cancel"] {
        let ran = sandbox.run(&[command, "4242"]);
        assert_eq!(ran.code, Some(1), "{command} unknown id: {ran:?}");
        assert!(
            ran.stderr.contains("no request has id 4242"),
            "{}",
            ran.stderr
        );
    }
}

#[tokio::test]
async fn retry_refuses_a_rejected_row_that_is_still_not_valid() {
    let sandbox = Sandbox::new();
    let id = sandbox.enqueue("gz", "will-break", "bj");
    let pool = sandbox.pool().await;
    sqlx::query("UPDATE import_requests SET state = 'rejected', name = '' WHERE id = ?")
        .bind(id)
        .execute(&pool)
        .await
        .unwrap();
    let ran = sandbox.run(&["retry", &id.to_string()]);
    assert_eq!(ran.code, Some(1), "{ran:?}");
    assert!(ran.stderr.contains("`name` is empty"), "{}", ran.stderr);
    assert!(ran.stderr.contains("correct the row"), "{}", ran.stderr);
}

#[test]
fn check_config_passes_with_a_token_and_a_writable_database() {
    let sandbox = Sandbox::new();
    let ran: Ran = sandbox
        .command(&["check-config"])
        .env("CIMG_IMPORTD_TOKEN", TOKEN)
        .output()
        .unwrap()
        .into();
    assert_eq!(ran.code, Some(0), "{ran:?}");
    assert!(
        ran.stdout
            .contains("environment variable CIMG_IMPORTD_TOKEN"),
        "{}",
        ran.stdout
    );
    assert!(
        ran.stdout.contains("is writable and up to date"),
        "{}",
        ran.stdout
    );
    assert!(
        !ran.stdout.contains(TOKEN) && !ran.stderr.contains(TOKEN),
        "never the token"
    );
    assert!(sandbox.db.exists(), "the database is created");
}

#[test]
fn check_config_exits_two_for_a_bad_key_or_a_missing_token() {
    let sandbox = Sandbox::new();
    let config = sandbox.write("config.toml", "[poll]\nbatch_sise = 5\n");
    let bad_key: Ran = sandbox
        .command(&["check-config", "--config", &config])
        .env("CIMG_IMPORTD_TOKEN", TOKEN)
        .output()
        .unwrap()
        .into();
    assert_eq!(bad_key.code, Some(2), "{bad_key:?}");
    assert!(bad_key.stderr.contains("batch_sise"), "{}", bad_key.stderr);

    let no_token = sandbox.run(&["check-config"]);
    assert_eq!(no_token.code, Some(2), "{no_token:?}");
    assert!(
        no_token.stdout.contains("api token      FAILED"),
        "{}",
        no_token.stdout
    );
    assert!(
        no_token.stdout.contains("CIMG_IMPORTD_TOKEN"),
        "says where to put it"
    );
    assert!(
        no_token.stdout.contains("database       ok"),
        "other checks still run"
    );
}

async fn simulator() -> Simulator {
    Simulator::start(
        "127.0.0.1:0".parse().unwrap(),
        SimOptions {
            token: Some(TOKEN.into()),
            ..SimOptions::default()
        },
    )
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_config_api_lists_images_against_the_simulator() {
    let simulator = simulator().await;
    let sandbox = Sandbox::new();
    let ran: Ran = sandbox
        .command(&["check-config", "--api", "--region", "gz"])
        .env("CIMG_IMPORTD__API__BASE_URL", simulator.base_url())
        .env("CIMG_IMPORTD_TOKEN", TOKEN)
        .output()
        .unwrap()
        .into();
    assert_eq!(ran.code, Some(0), "{ran:?}");
    assert!(
        ran.stdout.contains("answered ListCIMG in gz"),
        "{}",
        ran.stdout
    );
    assert!(ran.stdout.contains("requestId"), "{}", ran.stdout);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_config_api_with_a_wrong_token_exits_one_showing_errno_4() {
    let simulator = simulator().await;
    let sandbox = Sandbox::new();
    let ran: Ran = sandbox
        .command(&["check-config", "--api"])
        .env("CIMG_IMPORTD__API__BASE_URL", simulator.base_url())
        .env("CIMG_IMPORTD_TOKEN", "not-the-right-token")
        .output()
        .unwrap()
        .into();
    assert_eq!(ran.code, Some(1), "{ran:?}");
    assert!(ran.stdout.contains("errno 4"), "{}", ran.stdout);
    assert!(ran.stdout.contains("requestId"), "{}", ran.stdout);
    assert!(ran.stdout.contains("check the token"), "{}", ran.stdout);
}

#[test]
fn every_subcommand_explains_itself() {
    let sandbox = Sandbox::new();
    let cases = [
        ("enqueue", "--origin-image"),
        ("list", "--state"),
        ("show", "ID"),
        ("watch", "Ctrl-C"),
        ("retry", "in_doubt"),
        ("cancel", "queued"),
        ("check-config", "--api"),
    ];
    for (command, needle) in cases {
        let ran = sandbox.run(&[command, "--help"]);
        assert_eq!(ran.code, Some(0), "{command}: {ran:?}");
        assert!(
            ran.stdout.contains(needle),
            "{command} --help lacks {needle}"
        );
        assert!(ran.stdout.contains("--config"), "{command} takes --config");
    }
}
