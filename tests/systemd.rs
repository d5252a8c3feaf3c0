//! What systemd sees of the real binary: readiness, status, a watchdog that stops when a
//! loop stops making progress, stopping, and journald-friendly log lines.

mod common;

use std::os::unix::net::UnixDatagram;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cimg_importd::simulator::{Faults, PerEndpoint, SimOptions};
use common::{signal, wait_for, World};

/// Every datagram received on a notify socket, with when it arrived.
#[derive(Clone, Default)]
struct Received(Arc<Mutex<Vec<(Instant, String)>>>);

impl Received {
    fn listen(socket: UnixDatagram) -> Received {
        let received = Received::default();
        let sink = received.clone();
        socket
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        std::thread::spawn(move || {
            let mut buffer = [0u8; 4096];
            loop {
                match socket.recv(&mut buffer) {
                    Ok(n) => {
                        let text = String::from_utf8_lossy(&buffer[..n]).into_owned();
                        sink.0.lock().unwrap().push((Instant::now(), text));
                    }
                    Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(err) if err.kind() == std::io::ErrorKind::TimedOut => {}
                    Err(_) => return,
                }
            }
        });
        received
    }

    fn lines(&self, prefix: &str) -> Vec<(Instant, String)> {
        let all = self.0.lock().unwrap();
        all.iter()
            .flat_map(|(at, text)| {
                text.lines()
                    .filter(|l| l.starts_with(prefix))
                    .map(|l| (*at, l.to_owned()))
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    fn pings_between(&self, from: Instant, to: Instant) -> usize {
        self.lines("WATCHDOG=1")
            .iter()
            .filter(|(at, _)| *at >= from && *at <= to)
            .count()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn watchdog_pings_stop_while_the_poll_loop_is_stuck_and_resume_after() {
    let mut world = World::new(SimOptions {
        job_duration: Duration::from_secs(60),
        ..SimOptions::default()
    })
    .await;
    world.settings.api.request_timeout = Duration::from_secs(8);
    world.settings.poll.max_interval = Duration::from_secs(1);
    let socket_path = world.dir.path().join("notify.sock");
    let received = Received::listen(UnixDatagram::bind(&socket_path).unwrap());
    world.insert("gz", "watched-copy", "bj").await;

    let mut child = world
        .binary()
        .arg("run")
        .env("NOTIFY_SOCKET", &socket_path)
        .env("WATCHDOG_USEC", "2000000")
        .env("JOURNAL_STREAM", "8:12345")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let ready = wait_for(Duration::from_secs(10), || async {
        !received.lines("READY=1").is_empty()
    })
    .await;
    assert!(ready, "no READY=1");
    let polling = wait_for(Duration::from_secs(10), || async {
        world.stats().calls.job_result >= 2
    })
    .await;
    assert!(polling, "the job is not being polled");
    let healthy_from = Instant::now();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        received.pings_between(healthy_from, Instant::now()) >= 2,
        "no pings while healthy"
    );

    // JobResult now hangs: the poll loop is stuck inside a call for up to 8 s.
    world.simulator.set_faults(Faults {
        hang: PerEndpoint {
            job_result: true,
            ..PerEndpoint::default()
        },
        ..Faults::default()
    });
    let hung_calls = world.stats().answers.job_result.hung;
    assert!(
        wait_for(Duration::from_secs(5), || async {
            world.stats().answers.job_result.hung > hung_calls
        })
        .await
    );
    let stuck_at = Instant::now();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let quiet_from = stuck_at + Duration::from_millis(1800);
    let pings_while_stuck = received.pings_between(quiet_from, Instant::now());
    assert_eq!(
        pings_while_stuck, 0,
        "the watchdog kept vouching for a stuck poll loop"
    );

    world.simulator.set_faults(Faults::default());
    let resumed = wait_for(Duration::from_secs(12), || async {
        received.pings_between(stuck_at + Duration::from_secs(5), Instant::now()) >= 1
    })
    .await;
    assert!(resumed, "pings did not resume once the call timed out");

    let statuses = received.lines("STATUS=");
    assert!(
        statuses.iter().any(|(_, s)| s.contains("tracking 1")),
        "status lines: {statuses:?}"
    );
    signal(&child, "TERM");
    let status = child.wait().unwrap();
    assert!(status.success());
    assert!(
        wait_for(Duration::from_secs(2), || async {
            !received.lines("STOPPING=1").is_empty()
        })
        .await
    );

    let mut stderr = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert!(stderr.contains("withholding watchdog pings"), "{stderr}");
    // journald takes each line's priority from its `<N>` prefix.
    let withholding = stderr
        .lines()
        .find(|line| line.contains("withholding watchdog pings"))
        .unwrap();
    assert!(withholding.starts_with("<3>"), "{withholding:?}");
    assert!(
        stderr.lines().any(|line| line.starts_with("<6>")),
        "{stderr}"
    );
    for line in stderr.lines() {
        let priority = line.strip_prefix('<').and_then(|rest| rest.split_once('>'));
        assert!(
            priority.is_some_and(|(digit, _)| ["3", "4", "6", "7"].contains(&digit)),
            "no syslog priority under journald: {line:?}"
        );
        let line = priority.map_or(line, |(_, rest)| rest);
        assert!(
            !line.contains('\u{1b}'),
            "colour codes under journald: {line:?}"
        );
        assert!(
            !line.starts_with(|c: char| c.is_ascii_digit()),
            "timestamp under journald: {line:?}"
        );
    }
}
