//! Tests of the fault switches, the control endpoints and the stats counters.

use std::io::ErrorKind;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::client::Client;
use super::{cimg, client, import_one, job_result, job_uuid, list, start, ORIGIN_UUID};
use crate::simulator::{
    Faults, PerEndpoint, Simulator, Stats, FAULTS_PATH, IMPORT_PATH, JOB_RESULT_PATH, LIST_PATH,
    STATS_PATH,
};

/// One request per endpoint, as (endpoint, method, target, body).
fn endpoint_calls() -> [(&'static str, &'static str, String, Option<String>); 3] {
    [
        (
            "import",
            "POST",
            IMPORT_PATH.to_string(),
            Some(json!({"regionId": "gz", "cimg": [cimg("faulty")]}).to_string()),
        ),
        (
            "job_result",
            "GET",
            format!("{JOB_RESULT_PATH}?regionId=gz&jobUuids={ORIGIN_UUID}"),
            None,
        ),
        (
            "list",
            "POST",
            LIST_PATH.to_string(),
            Some(json!({"regionId": "gz", "start": 0, "limit": 10}).to_string()),
        ),
    ]
}

/// A per-endpoint value that is `on` for `endpoint` only.
fn only<T: Copy + Default>(endpoint: &str, on: T) -> PerEndpoint<T> {
    let mut values = PerEndpoint::<T>::default();
    match endpoint {
        "import" => values.import = on,
        "job_result" => values.job_result = on,
        _ => values.list = on,
    }
    values
}

/// The answer counts of one endpoint.
fn answers_of(stats: &Stats, endpoint: &str) -> crate::simulator::AnswerCounts {
    match endpoint {
        "import" => stats.answers.import,
        "job_result" => stats.answers.job_result,
        _ => stats.answers.list,
    }
}

#[tokio::test]
async fn html_502_replaces_answers_of_the_chosen_endpoint_only() {
    let sim = start().await;
    for (endpoint, method, target, body) in endpoint_calls() {
        sim.set_faults(Faults {
            html_502: only(endpoint, 1.0),
            ..Faults::default()
        });
        for (other, other_method, other_target, other_body) in endpoint_calls() {
            let reply = client(&sim)
                .send(other_method, &other_target, other_body.as_deref())
                .await;
            let expected = if other == endpoint { 502 } else { 200 };
            assert_eq!(reply.status, expected, "{other} with html_502.{endpoint}");
        }
        let reply = client(&sim).send(method, &target, body.as_deref()).await;
        assert_eq!(reply.status, 502, "{endpoint}");
        assert!(reply
            .header("content-type")
            .is_some_and(|c| c.starts_with("text/html")));
        assert!(
            reply.text().contains("<h1>502 Bad Gateway</h1>"),
            "{}",
            reply.text()
        );
        assert_eq!(answers_of(&sim.stats(), endpoint).html502, 2, "{endpoint}");
    }
    assert_eq!(
        sim.stats().imports_of("gz", "faulty"),
        2,
        "only the unfaulted imports count"
    );
}

#[tokio::test]
async fn errno2_replaces_answers_and_creates_nothing() {
    let sim = start().await;
    for (endpoint, method, target, body) in endpoint_calls() {
        sim.set_faults(Faults {
            errno2: only(endpoint, 1.0),
            ..Faults::default()
        });
        let reply = client(&sim).send(method, &target, body.as_deref()).await;
        assert_eq!(reply.status, 200, "{endpoint}");
        let envelope = reply.json();
        assert_eq!(envelope["errno"], 2, "{endpoint}: {envelope}");
        assert_eq!(envelope["errmsg"], "系统错误，请稍后再试");
        assert_eq!(answers_of(&sim.stats(), endpoint).errno, 1, "{endpoint}");
    }
    assert_eq!(sim.stats().total_imports(), 0);
}

#[tokio::test]
async fn rate_limit_answers_429_with_retry_after_on_every_endpoint() {
    let sim = start().await;
    sim.set_faults(Faults {
        rate_limit: 1.0,
        retry_after_secs: 7,
        ..Faults::default()
    });
    for (endpoint, method, target, body) in endpoint_calls() {
        let reply = client(&sim).send(method, &target, body.as_deref()).await;
        assert_eq!(reply.status, 429, "{endpoint}");
        assert_eq!(reply.header("retry-after"), Some("7"), "{endpoint}");
        assert_eq!(
            answers_of(&sim.stats(), endpoint).rate_limited,
            1,
            "{endpoint}"
        );
    }
    assert_eq!(sim.stats().total_imports(), 0);
}

#[tokio::test]
async fn reject_token_answers_errno_4_even_with_the_right_token() {
    let sim = start().await;
    sim.set_faults(Faults {
        reject_token: true,
        ..Faults::default()
    });
    for (endpoint, method, target, body) in endpoint_calls() {
        let envelope = client(&sim)
            .send(method, &target, body.as_deref())
            .await
            .json();
        assert_eq!(envelope["errno"], 4, "{endpoint}: {envelope}");
    }
    assert_eq!(sim.stats().total_imports(), 0);
}

#[tokio::test]
async fn drop_after_import_closes_without_answer_but_creates_and_counts_the_import() {
    let sim = start().await;
    sim.set_faults(Faults {
        drop_after_import: 1.0,
        ..Faults::default()
    });
    let body = json!({"regionId": "gz", "cimg": [cimg("dropped-one")]}).to_string();
    let received = client(&sim).raw("POST", IMPORT_PATH, Some(&body)).await;
    match received {
        Ok(bytes) => assert!(
            bytes.is_empty(),
            "no answer bytes: {:?}",
            String::from_utf8_lossy(&bytes)
        ),
        Err(err) => assert_eq!(err.kind(), ErrorKind::ConnectionReset, "{err}"),
    }
    let stats = sim.stats();
    assert_eq!(stats.imports_of("gz", "dropped-one"), 1);
    assert_eq!(stats.answers.import.dropped, 1);
    assert_eq!(stats.answers.import.ok, 0);
    let found = list(
        &sim,
        &json!({"regionId": "gz", "start": 0, "limit": 10,
        "condition": {"names": ["dropped-one"]}}),
    )
    .await;
    assert_eq!(found["data"]["count"], 1, "the image exists: {found}");
    assert_eq!(found["data"]["items"][0]["status"], "Importing");
}

#[tokio::test]
async fn omit_jobs_leaves_known_jobs_out_of_job_result() {
    let sim = start().await;
    let a = job_uuid(&import_one(&sim, "gz", "a").await);
    let b = job_uuid(&import_one(&sim, "gz", "b").await);
    let cases = [
        ("share 1 leaves every job out", 1.0, 0),
        ("share 0 leaves none out", 0.0, 2),
    ];
    for (case, share, returned) in cases {
        sim.set_faults(Faults {
            omit_jobs: share,
            ..Faults::default()
        });
        let envelope = job_result(&sim, "gz", &[&a, &b]).await;
        assert_eq!(envelope["errno"], 0, "{case}");
        assert_eq!(
            envelope["data"].as_array().map(Vec::len),
            Some(returned),
            "{case}"
        );
    }
    let log: Vec<(u64, u64)> = sim
        .stats()
        .job_result_calls
        .iter()
        .map(|c| (c.asked, c.returned))
        .collect();
    assert_eq!(log, [(2, 0), (2, 2)]);
}

#[tokio::test]
async fn hang_never_answers_the_chosen_endpoint_until_shutdown() {
    let sim = start().await;
    for (endpoint, method, target, body) in endpoint_calls() {
        sim.set_faults(Faults {
            hang: only(endpoint, true),
            ..Faults::default()
        });
        let hanging = client(&sim);
        let call = hanging.raw(method, &target, body.as_deref());
        let waited = tokio::time::timeout(Duration::from_millis(200), call).await;
        assert!(waited.is_err(), "{endpoint} answered: {waited:?}");
        assert_eq!(answers_of(&sim.stats(), endpoint).hung, 1, "{endpoint}");
        if endpoint == "import" {
            assert_eq!(
                sim.stats().total_imports(),
                0,
                "a hung import creates nothing"
            );
        }
        let (other, other_method, other_target, other_body) =
            &endpoint_calls()[usize::from(endpoint == "import")];
        let reply = client(&sim)
            .send(other_method, other_target, other_body.as_deref())
            .await;
        assert_eq!(
            reply.status, 200,
            "{other} still answers while {endpoint} hangs"
        );
    }
    let addr = sim.local_addr();
    let (_, method, target, body) = endpoint_calls()[2].clone();
    let hung = tokio::spawn(async move {
        Client::new(addr, super::TOKEN)
            .raw(method, &target, body.as_deref())
            .await
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    tokio::time::timeout(Duration::from_secs(2), sim.shutdown())
        .await
        .expect("shutdown ends");
    let received = hung.await.expect("client task");
    assert!(
        received.map_or(true, |bytes| bytes.is_empty()),
        "the hung call got no answer"
    );
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "the listener is gone"
    );
}

#[tokio::test]
async fn latency_delays_every_api_answer() {
    let sim = start().await;
    sim.set_faults(Faults {
        latency_ms: 150,
        ..Faults::default()
    });
    for (endpoint, method, target, body) in endpoint_calls() {
        let begun = Instant::now();
        let reply = client(&sim).send(method, &target, body.as_deref()).await;
        assert_eq!(reply.status, 200, "{endpoint}");
        assert!(
            begun.elapsed() >= Duration::from_millis(150),
            "{endpoint} was not delayed"
        );
    }
}

#[tokio::test]
async fn faults_endpoint_reads_and_replaces_the_whole_set() {
    let sim = start().await;
    sim.set_faults(Faults {
        reject_token: true,
        rate_limit: 0.5,
        ..Faults::default()
    });
    let control = Client::with_authorization(sim.local_addr(), None);
    let read = control.get(FAULTS_PATH).await.json();
    assert_eq!(
        (read["reject_token"].as_bool(), read["rate_limit"].as_f64()),
        (Some(true), Some(0.5))
    );

    let reply = control
        .put(
            FAULTS_PATH,
            r#"{"omit_jobs": 0.25, "html_502": {"list": 1.0}}"#,
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let expected = Faults {
        omit_jobs: 0.25,
        html_502: PerEndpoint {
            list: 1.0,
            ..PerEndpoint::default()
        },
        ..Faults::default()
    };
    assert_eq!(sim.faults(), expected, "missing fields took their defaults");
    let read: Faults =
        serde_json::from_value(control.get(FAULTS_PATH).await.json()).expect("faults");
    assert_eq!(read, expected);

    let refused = [
        ("share above 1", r#"{"omit_jobs": 1.5}"#, "omit_jobs"),
        (
            "negative share",
            r#"{"errno2": {"import": -0.1}}"#,
            "errno2.import",
        ),
        ("unknown field", r#"{"omit_job": 0.5}"#, "omit_job"),
        ("not json", "nope", "invalid faults"),
    ];
    for (case, body, mentions) in refused {
        let reply = control.put(FAULTS_PATH, body).await;
        assert_eq!(reply.status, 400, "{case}");
        assert!(reply.text().contains(mentions), "{case}: {}", reply.text());
        assert_eq!(sim.faults(), expected, "{case} changed nothing");
    }
    sim.set_faults(Faults {
        drop_after_import: 2.0,
        omit_jobs: f64::NAN,
        ..Faults::default()
    });
    assert_eq!(
        (sim.faults().drop_after_import, sim.faults().omit_jobs),
        (1.0, 0.0),
        "clamped"
    );
}

#[tokio::test]
async fn stats_count_calls_answers_imports_and_job_result_calls() {
    let sim = start().await;
    let first = job_uuid(&import_one(&sim, "gz", "twice").await);
    import_one(&sim, "gz", "twice").await;
    import_one(&sim, "bj", "twice").await;
    let bad = client(&sim).post(IMPORT_PATH, "{}").await.json();
    assert_eq!(bad["errno"], 1);
    job_result(&sim, "gz", &[&first, "unknown", &first]).await;
    list(&sim, &json!({"regionId": "gz", "start": 0, "limit": 5})).await;
    let control = Client::with_authorization(sim.local_addr(), None);
    let raw: Value = control.get(STATS_PATH).await.json();
    for key in ["calls", "answers", "imports", "job_result_calls"] {
        assert!(raw.get(key).is_some(), "stats JSON has {key}: {raw}");
    }
    let stats: Stats = serde_json::from_value(raw).expect("stats deserialize");
    assert_eq!(
        stats,
        sim.stats(),
        "HTTP and Rust views agree; control calls are not counted"
    );
    assert_eq!(
        (stats.calls.import, stats.calls.job_result, stats.calls.list),
        (4, 1, 1)
    );
    assert_eq!(
        (stats.answers.import.ok, stats.answers.import.errno),
        (3, 1)
    );
    assert_eq!(stats.answers.job_result.ok + stats.answers.list.ok, 2);
    assert_eq!(stats.imports_of("gz", "twice"), 2);
    assert_eq!(stats.imports_of("bj", "twice"), 1);
    assert_eq!(stats.imports_of("gz", "never"), 0);
    assert_eq!(stats.max_imports_per_name(), 2);
    let call = &stats.job_result_calls[0];
    assert_eq!(
        (call.region.as_str(), call.asked, call.returned),
        ("gz", 3, 1)
    );
    assert!(
        call.at_ms > 1_600_000_000_000,
        "at_ms is wall-clock milliseconds"
    );
}

#[tokio::test]
async fn start_refuses_non_loopback_addresses_and_bad_shares() {
    let outside = std::net::SocketAddr::from(([0, 0, 0, 0], 0));
    let err = Simulator::start(outside, Default::default())
        .await
        .expect_err("refused");
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    let opts = crate::simulator::SimOptions {
        faults: Faults {
            rate_limit: 3.0,
            ..Faults::default()
        },
        ..Default::default()
    };
    let err = Simulator::start(super::any_port(), opts)
        .await
        .expect_err("refused");
    assert!(err.to_string().contains("rate_limit"), "{err}");
}
