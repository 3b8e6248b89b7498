//! A failing guest fails its own event only: traps, endless loops and memory
//! exhaustion become 5xx within the step's limits, and the host keeps serving.

use std::time::{Duration, Instant};

use stephost::builtin::{APPENDER, FAULTY};

use crate::support::{Host, ce_headers, post, sequence, wasm_step};

/// Sequence `bad` = one faulty step in `mode`; sequence `good` = one appender.
fn manifest(mode: &str, limits: &str) -> String {
    format!(
        "{}{}{}{}",
        sequence("bad", &["faulty"], None),
        sequence("good", &["appender"], None),
        wasm_step("faulty", FAULTY, &[("mode", mode)], limits),
        wasm_step("appender", APPENDER, &[("suffix", "-ok")], "")
    )
}

async fn healthy_sequence_still_works(host: &Host) {
    let ok = post(
        &format!("{}/sequences/good", host.url),
        &ce_headers("after", "text/plain"),
        "still",
    )
    .await;
    assert_eq!(ok.status, 200, "{}", ok.text());
    assert_eq!(ok.text(), "still-ok");
}

#[tokio::test]
async fn an_endless_loop_is_cut_at_the_step_timeout_with_500() {
    let host = Host::start(&manifest("loop", "{memory: 64Mi, timeout: PT1S}"), &[]).await;
    let started = Instant::now();
    let out = post(
        &format!("{}/sequences/bad", host.url),
        &ce_headers("loop-1", "text/plain"),
        "x",
    )
    .await;
    let took = started.elapsed();
    assert_eq!(out.status, 500, "{}", out.text());
    assert!(
        out.json()["error"]
            .as_str()
            .unwrap_or("")
            .contains("timed out"),
        "{}",
        out.text()
    );
    // Correctness bound, not a benchmark: the attempt must end at the
    // timeout (1 s), not run on; 3 s leaves room for a loaded machine.
    assert!(took < Duration::from_secs(3), "took {took:?}");
    assert!(
        took >= Duration::from_millis(900),
        "cut before its timeout: {took:?}"
    );
    healthy_sequence_still_works(&host).await;
}

#[tokio::test]
async fn a_looping_guest_does_not_block_other_events() {
    let host = Host::start(&manifest("loop", "{memory: 64Mi, timeout: PT3S}"), &[]).await;
    let bad_url = format!("{}/sequences/bad", host.url);
    let looping =
        tokio::spawn(async move { post(&bad_url, &ce_headers("l", "text/plain"), "x").await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    // While the guest spins on one core, other events keep flowing.
    healthy_sequence_still_works(&host).await;
    assert!(
        !looping.is_finished(),
        "the looping event should still be running"
    );
    assert_eq!(looping.await.expect("join").status, 500);
}

#[tokio::test]
async fn memory_exhaustion_fails_the_event_with_500_and_names_the_limit() {
    let host = Host::start(&manifest("oom", "{memory: 16Mi, timeout: PT10S}"), &[]).await;
    let out = post(
        &format!("{}/sequences/bad", host.url),
        &ce_headers("oom-1", "text/plain"),
        "x",
    )
    .await;
    assert_eq!(out.status, 500, "{}", out.text());
    let message = out.json()["error"].as_str().unwrap_or("").to_string();
    assert!(
        message.contains("memory limit of 16777216 bytes"),
        "{message}"
    );
    healthy_sequence_still_works(&host).await;
}

#[tokio::test]
async fn a_trap_is_a_500_without_a_wasm_backtrace_and_its_panic_is_logged() {
    let host = Host::start(&manifest("trap", ""), &[]).await;
    let out = post(
        &format!("{}/sequences/bad", host.url),
        &ce_headers("trap-1", "text/plain"),
        "x",
    )
    .await;
    assert_eq!(out.status, 500, "{}", out.text());
    let body = out.text();
    assert!(body.contains("trapped"), "{body}");
    assert!(!body.contains("wasm backtrace"), "backtrace leaked: {body}");
    healthy_sequence_still_works(&host).await;
    assert!(
        host.logs().contains("faulty: asked to trap"),
        "guest stderr not logged"
    );
}

#[tokio::test]
async fn step_errors_map_to_subscriber_statuses() {
    let host = Host::start(&manifest("none", ""), &[]).await;
    let url = format!("{}/steps/faulty", host.url);
    let mut headers = ce_headers("f-1", "text/plain");
    headers.push(("ce-fault", "fatal"));
    let fatal = post(&url, &headers, "x").await;
    assert_eq!(
        fatal.status,
        422,
        "fatal ≙ 4xx, not retried: {}",
        fatal.text()
    );
    headers.pop();
    headers.push(("ce-fault", "retryable"));
    let retryable = post(&url, &headers, "x").await;
    assert_eq!(
        retryable.status,
        500,
        "retryable ≙ 5xx: {}",
        retryable.text()
    );
    // Through the Sequence with no dead-letter sink: 500, as Knative's channel
    // ingress answers, so the event is never acknowledged and lost.
    let mut headers = ce_headers("f-2", "text/plain");
    headers.push(("ce-fault", "fatal"));
    let seq = post(&format!("{}/sequences/bad", host.url), &headers, "x").await;
    assert_eq!(seq.status, 500, "{}", seq.text());
    assert!(seq.text().contains("asked to fail (fatal)"));
    assert!(seq.text().contains("deadLetterSink"), "{}", seq.text());
}
