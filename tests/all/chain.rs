//! Chaining per the Knative Sequence: each step's output feeds the next, a
//! drop stops the chain, the final event reaches the reply exactly once.

use std::time::Duration;

use stephost::app::builtin::{APPENDER, DROPPER};

use crate::support::{Host, Sink, ce_headers, post, sequence, wasm_step};

fn seed_with_appenders() -> String {
    let seed = include_str!("../../manifests/seed-sequence.yaml");
    format!(
        "{seed}{}{}",
        wasm_step(
            "content-filter-service",
            APPENDER,
            &[("suffix", "-step1")],
            ""
        ),
        wasm_step(
            "sentiment-analysis-service",
            APPENDER,
            &[("suffix", "-step2")],
            ""
        )
    )
}

#[tokio::test]
async fn seed_sequence_appends_each_step_and_replies_once_to_the_broker() {
    let broker = Sink::accepting().await;
    let host = Host::start(&seed_with_appenders(), &["--broker-ingress", &broker.url]).await;
    let sent = post(&host.url, &ce_headers("seed-1", "text/plain"), "hello").await;
    assert_eq!(sent.status, 202, "{}", sent.text());
    assert!(sent.body.is_empty());
    // 202 is only sent after the reply accepted the event: nothing to wait for,
    // but give a stray duplicate time to show up before counting.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let got = broker.received();
    assert_eq!(
        got.len(),
        1,
        "the reply must receive the event exactly once"
    );
    let reply = &got[0];
    // Broker ref `default` in namespace `default` → broker ingress /default/default.
    assert_eq!(reply.path, "/default/default");
    assert_eq!(&reply.body[..], b"hello-step1-step2");
    assert_eq!(reply.header("ce-id"), "seed-1");
    assert_eq!(reply.header("ce-specversion"), "1.0");
    assert_eq!(reply.header("content-type"), "text/plain");
    assert_eq!(reply.header("kn-namespace"), "default");
    assert_eq!(
        reply.header("prefer"),
        "",
        "Prefer: reply goes to subscribers only"
    );
}

#[tokio::test]
async fn a_drop_in_the_middle_stops_the_chain_and_acks_202() {
    let step3 = Sink::accepting().await;
    let reply = Sink::accepting().await;
    let manifest = format!(
        "{}{}{}",
        sequence(
            "dropping",
            &["first", "dropper", &step3.url],
            Some(&reply.url)
        ),
        wasm_step("first", APPENDER, &[("suffix", "-1")], ""),
        wasm_step("dropper", DROPPER, &[], "")
    );
    let host = Host::start(&manifest, &[]).await;
    let sent = post(&host.url, &ce_headers("drop-1", "text/plain"), "x").await;
    assert_eq!(sent.status, 202, "{}", sent.text());
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(step3.received().is_empty(), "step 3 must never be called");
    assert!(reply.received().is_empty(), "nothing may reach the reply");
}

#[tokio::test]
async fn without_a_reply_the_final_event_comes_back_with_200_in_binary_mode() {
    let manifest = format!(
        "{}{}",
        sequence("solo", &["one"], None),
        wasm_step("one", APPENDER, &[("suffix", "-one")], "")
    );
    let host = Host::start(&manifest, &[]).await;
    let out = post(&host.url, &ce_headers("r-1", "text/plain"), "hi").await;
    assert_eq!(out.status, 200, "{}", out.text());
    assert_eq!(out.text(), "hi-one");
    assert_eq!(out.header("ce-id"), "r-1");
    assert_eq!(out.header("ce-source"), "/stephost/tests");
    // Named route runs the same Sequence.
    let named = post(
        &format!("{}/sequences/solo", host.url),
        &ce_headers("r-2", "text/plain"),
        "yo",
    )
    .await;
    assert_eq!(named.text(), "yo-one");
}

#[tokio::test]
async fn structured_mode_input_is_read_and_answered_in_binary_mode() {
    let manifest = format!(
        "{}{}",
        sequence("solo", &["one"], None),
        wasm_step("one", APPENDER, &[("suffix", "-s")], "")
    );
    let host = Host::start(&manifest, &[]).await;
    let event = serde_json::json!({
        "specversion": "1.0", "id": "st-1", "source": "/structured", "type": "t",
        "datacontenttype": "text/plain", "data": "abc", "myext": "kept"
    });
    let out = post(
        &host.url,
        &[("content-type", "application/cloudevents+json")],
        event.to_string(),
    )
    .await;
    assert_eq!(out.status, 200, "{}", out.text());
    assert_eq!(out.text(), "abc-s");
    assert_eq!(out.header("ce-id"), "st-1");
    assert_eq!(out.header("ce-myext"), "kept");
}

#[tokio::test]
async fn cloudevents_0_3_passes_through_without_upgrade() {
    let manifest = format!(
        "{}{}",
        sequence("solo", &["one"], None),
        wasm_step("one", APPENDER, &[("suffix", "!")], "")
    );
    let host = Host::start(&manifest, &[]).await;
    let out = post(
        &host.url,
        &[
            ("ce-specversion", "0.3"),
            ("ce-id", "old"),
            ("ce-source", "/v03"),
            ("ce-type", "t"),
            ("content-type", "text/plain"),
        ],
        "v03",
    )
    .await;
    assert_eq!(out.status, 200, "{}", out.text());
    assert_eq!(out.header("ce-specversion"), "0.3");
    assert_eq!(out.text(), "v03!");
}

#[tokio::test]
async fn the_default_sequence_runs_with_no_manifest_and_uses_k_sink() {
    let sink = Sink::accepting().await;
    let host = Host::start_default(&[("K_SINK", &sink.url)]).await;
    let out = post(
        &host.url,
        &ce_headers("d-1", "application/json"),
        r#"{"reviewText":"I absolutely loved this book"}"#,
    )
    .await;
    assert_eq!(out.status, 202, "{}", out.text());
    let got = sink.received();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].header("ce-type"), "moderated-comment");
    assert_eq!(got[0].header("ce-badwordfilter"), "good");
    assert_eq!(got[0].header("ce-sentimentresult"), "positive");
}

/// A real CloudEvents client: the Python SDK from PyPI sends one event in
/// binary mode and one in structured mode.
#[tokio::test]
async fn python_cloudevents_sdk_binary_and_structured_events_are_accepted() {
    let manifest = format!(
        "{}{}",
        sequence("solo", &["one"], None),
        wasm_step("one", APPENDER, &[("suffix", "-py")], "")
    );
    let host = Host::start(&manifest, &[]).await;
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tests/python/send_events.py"
    );
    let url = host.url.clone();
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new(std::env::var("PYTHON").unwrap_or_else(|_| "python3".into()))
            .arg(script)
            .arg(&url)
            .output()
    })
    .await
    .expect("join")
    .expect("run python3");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the Python SDK client failed (pip install cloudevents):\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("binary 200 py-binary hello-py"), "{stdout}");
    assert!(
        stdout.contains("structured 200 py-structured hello-py"),
        "{stdout}"
    );
}

#[tokio::test]
async fn k_ce_overrides_are_applied_to_events_sent_to_k_sink() {
    let sink = Sink::accepting().await;
    let manifest = format!(
        "{}{}",
        sequence("solo", &["one"], None),
        wasm_step("one", APPENDER, &[("suffix", "-o")], "")
    );
    let host = Host::start_with_env(
        &manifest,
        &[],
        &[
            ("K_SINK", &sink.url),
            (
                "K_CE_OVERRIDES",
                r#"{"extensions":{"team":"books","priority":2}}"#,
            ),
        ],
    )
    .await;
    let out = post(&host.url, &ce_headers("o-1", "text/plain"), "x").await;
    assert_eq!(out.status, 202, "{}", out.text());
    let got = sink.received();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].header("ce-team"), "books");
    assert_eq!(got[0].header("ce-priority"), "2");
    assert_eq!(&got[0].body[..], b"x-o");
}

#[test]
fn a_malformed_k_ce_overrides_is_refused_at_start() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("m.yaml");
    std::fs::write(&path, sequence("s", &["http://127.0.0.1:9/"], None)).expect("write");
    let out = std::process::Command::new(crate::support::STEPHOST)
        .args(["serve", "--port", "0", "--manifest"])
        .arg(&path)
        .env("K_CE_OVERRIDES", "{not json")
        .output()
        .expect("run");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("K_CE_OVERRIDES"));
}
