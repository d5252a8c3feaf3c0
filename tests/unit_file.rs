//! The systemd unit as shipped: hardened to an exposure of 1.5 or less by
//! `systemd-analyze security`, and clean under `systemd-analyze verify`.
//!
//! These need systemd's tools. Where `systemd-analyze` is missing they say so and pass,
//! except under CI (`CI` set), whose script installs the tools and where a missing tool
//! is a failure.

use std::path::Path;
use std::process::Command;

const UNIT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/systemd/cimg-importd.service");

/// Whether `systemd-analyze` can run here; panics under CI when it cannot.
fn have_systemd_analyze() -> bool {
    let found = Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        assert!(
            std::env::var_os("CI").is_none(),
            "systemd-analyze is missing: install systemd's tools"
        );
        eprintln!("systemd-analyze not found: unit checks skipped (install the `systemd` package)");
    }
    found
}

#[test]
fn unit_exposure_is_at_most_one_and_a_half() {
    if !have_systemd_analyze() {
        return;
    }
    let output = Command::new("systemd-analyze")
        .args(["security", "--offline=yes", UNIT])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    let line = text
        .lines()
        .find(|l| l.contains("Overall exposure level"))
        .unwrap_or_else(|| panic!("no verdict in:\n{text}"));
    let score: f64 = line
        .split(':')
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("cannot read the score in `{line}`"));
    eprintln!("{}", line.trim());
    assert!(score <= 1.5, "exposure {score} is above 1.5:\n{text}");
}

#[test]
fn unit_verifies_cleanly_with_the_built_binary() {
    if !have_systemd_analyze() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let unit = std::fs::read_to_string(UNIT).unwrap();
    let binary = env!("CARGO_BIN_EXE_cimg-importd");
    assert!(Path::new(binary).exists());
    let patched: String = unit
        .lines()
        .map(|line| {
            if line.starts_with("ExecStart=") {
                format!("ExecStart={binary} run")
            } else {
                line.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    let copy = dir.path().join("cimg-importd.service");
    std::fs::write(&copy, patched + "\n").unwrap();
    let output = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&copy)
        .output()
        .unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success() && said.trim().is_empty(),
        "systemd-analyze verify said:\n{said}"
    );
}
