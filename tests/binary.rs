//! The real binary, as systemd and operators run it: `migrate`, then `run` stopped by
//! SIGTERM, against the simulator over loopback and a real SQLite file.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use cimg_importd::simulator::{SimOptions, Simulator};
use common::{operator_pool, wait_for, ORIGIN_UUID, TOKEN};

const BIN: &str = env!("CARGO_BIN_EXE_cimg-importd");

fn daemon_command(db: &std::path::Path, base_url: &str) -> Command {
    let mut command = Command::new(BIN);
    command
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("CIMG_IMPORTD__DATABASE__PATH", db)
        .env("CIMG_IMPORTD__API__BASE_URL", base_url)
        .env("CIMG_IMPORTD__POLL__INITIAL_INTERVAL", "1s")
        .env("CIMG_IMPORTD__POLL__MAX_INTERVAL", "1s")
        .env("CIMG_IMPORTD_TOKEN", TOKEN)
        .stdin(Stdio::null());
    command
}

#[tokio::test]
async fn migrate_creates_a_database_an_operator_can_queue_into() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("imports.db");
    let output = daemon_command(&db, "http://127.0.0.1:9")
        .arg("migrate")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );

    let operator = operator_pool(&db).await;
    sqlx::query("INSERT INTO import_requests (region_id, name, origin_image_uuid, origin_region_id) VALUES ('gz', 'x', ?, 'bj')")
        .bind(ORIGIN_UUID)
        .execute(&operator)
        .await
        .unwrap();
    let (state, attempts): (String, i64) =
        sqlx::query_as("SELECT state, attempts FROM request_status")
            .fetch_one(&operator)
            .await
            .unwrap();
    assert_eq!((state.as_str(), attempts), ("queued", 0));

    let again = daemon_command(&db, "http://127.0.0.1:9")
        .arg("migrate")
        .output()
        .unwrap();
    assert!(again.status.success(), "migrating twice is harmless");
}

#[tokio::test]
async fn run_imports_and_exits_zero_on_sigterm() {
    let simulator = Simulator::start(
        "127.0.0.1:0".parse().unwrap(),
        SimOptions {
            token: Some(TOKEN.into()),
            job_duration: Duration::from_millis(800),
            ..SimOptions::default()
        },
    )
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("imports.db");
    assert!(daemon_command(&db, &simulator.base_url())
        .arg("migrate")
        .status()
        .unwrap()
        .success());
    let operator = operator_pool(&db).await;
    sqlx::query("INSERT INTO import_requests (region_id, name, origin_image_uuid, origin_region_id) VALUES ('gz', 'from-the-binary', ?, 'bj')")
        .bind(ORIGIN_UUID)
        .execute(&operator)
        .await
        .unwrap();

    let mut child = daemon_command(&db, &simulator.base_url())
        .arg("run")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let ended = wait_for(Duration::from_secs(15), || async {
        let state: String = sqlx::query_scalar("SELECT state FROM import_requests")
            .fetch_one(&operator)
            .await
            .unwrap();
        state == "succeeded"
    })
    .await;

    let pid = child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let status = child.wait().unwrap();
    let mut stderr = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert!(ended, "request did not succeed; daemon said:\n{stderr}");
    assert!(
        status.success(),
        "exit status {status:?}; daemon said:\n{stderr}"
    );
    assert!(!stderr.contains(TOKEN), "the token must never be logged");
    assert_eq!(simulator.stats().imports_of("gz", "from-the-binary"), 1);
}

#[test]
fn configuration_errors_exit_with_status_two_and_name_the_key() {
    let output = Command::new(BIN)
        .env_clear()
        .env("CIMG_IMPORTD__POLL__MAX_INTERVAL", "every 5 minutes")
        .env("CIMG_IMPORTD_TOKEN", TOKEN)
        .arg("migrate")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("max_interval") && stderr.contains("every 5 minutes"),
        "{stderr}"
    );
}

#[test]
fn under_the_units_umask_the_database_and_its_wal_files_are_group_writable() {
    use std::os::unix::fs::PermissionsExt;

    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("imports.db");
    let status = Command::new("sh")
        .arg("-c")
        .arg(format!("umask 0007; exec '{BIN}' migrate"))
        .env_clear()
        .env("CIMG_IMPORTD__DATABASE__PATH", &db)
        .status()
        .unwrap();
    assert!(status.success());
    // A writer that keeps the WAL open, as the daemon does, so -wal and -shm exist.
    let keep = daemon_holding_the_database(&db);
    for suffix in ["", "-wal", "-shm"] {
        let path = format!("{}{suffix}", db.display());
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o660, "{path} is {mode:o}");
    }
    drop(keep);
}

/// The daemon, under the unit's umask, holding the database open in WAL mode so that
/// `-wal` and `-shm` exist while it runs.
fn daemon_holding_the_database(db: &std::path::Path) -> KillOnDrop {
    let child = Command::new("sh")
        .arg("-c")
        .arg(format!("umask 0007; exec '{BIN}' run"))
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("CIMG_IMPORTD__DATABASE__PATH", db)
        .env("CIMG_IMPORTD__API__BASE_URL", "http://127.0.0.1:9")
        .env("CIMG_IMPORTD_TOKEN", TOKEN)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    KillOnDrop(child)
}

struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
