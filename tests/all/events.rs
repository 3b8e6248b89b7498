//! Bad events get a clear 4xx with a JSON error body; good ones are unharmed.

use stephost::app::builtin::APPENDER;

use crate::support::{Host, ce_headers, get, post, sequence, wasm_step};

/// A host serving Sequence `solo`: one appender step (suffix `-x`).
pub(crate) async fn host(extra: &[&str]) -> Host {
    let manifest = format!(
        "{}{}",
        sequence("solo", &["one"], None),
        wasm_step("one", APPENDER, &[("suffix", "-x")], "")
    );
    Host::start(&manifest, extra).await
}

fn error_of(out: &crate::support::Exchange) -> String {
    out.json()["error"].as_str().unwrap_or("").to_string()
}

#[tokio::test]
async fn missing_required_attributes_are_400_naming_the_attribute() {
    let host = host(&[]).await;
    for missing in ["ce-id", "ce-source", "ce-type"] {
        let headers: Vec<_> = ce_headers("m", "text/plain")
            .into_iter()
            .filter(|(k, _)| *k != missing)
            .collect();
        let out = post(&host.url, &headers, "x").await;
        assert_eq!(out.status, 400, "{missing}: {}", out.text());
        let attr = missing.trim_start_matches("ce-");
        assert!(error_of(&out).contains(attr), "{missing}: {}", out.text());
    }
    // Without ce-specversion it is not a CloudEvent at all.
    let headers: Vec<_> = ce_headers("m", "text/plain")
        .into_iter()
        .filter(|(k, _)| *k != "ce-specversion")
        .collect();
    let out = post(&host.url, &headers, "x").await;
    assert_eq!(out.status, 400);
    assert!(
        error_of(&out).contains("not a CloudEvent"),
        "{}",
        out.text()
    );
}

#[tokio::test]
async fn structured_mode_errors_are_400() {
    let host = host(&[]).await;
    let structured = [("content-type", "application/cloudevents+json")];
    let out = post(&host.url, &structured, "{not json").await;
    assert_eq!(out.status, 400, "{}", out.text());
    let out = post(
        &host.url,
        &structured,
        r#"{"specversion":"1.0","id":"1","type":"t"}"#,
    )
    .await;
    assert_eq!(out.status, 400, "{}", out.text());
    assert!(error_of(&out).contains("source"), "{}", out.text());
    let out = post(
        &host.url,
        &structured,
        r#"{"specversion":"1.0","id":"","source":"/s","type":"t"}"#,
    )
    .await;
    assert_eq!(out.status, 400, "empty id: {}", out.text());
}

#[tokio::test]
async fn batch_mode_and_unknown_spec_versions_are_400() {
    let host = host(&[]).await;
    let batch = post(
        &host.url,
        &[("content-type", "application/cloudevents-batch+json")],
        r#"[{"specversion":"1.0","id":"1","source":"/s","type":"t"}]"#,
    )
    .await;
    assert_eq!(batch.status, 400);
    assert!(error_of(&batch).contains("batch"), "{}", batch.text());
    let mut headers = ce_headers("v", "text/plain");
    headers[0] = ("ce-specversion", "2.0");
    let out = post(&host.url, &headers, "x").await;
    assert_eq!(out.status, 400);
    assert!(error_of(&out).contains("specversion"), "{}", out.text());
}

#[tokio::test]
async fn bodies_over_the_limit_are_413() {
    let host = host(&["--max-event-bytes", "1Ki"]).await;
    let out = post(
        &host.url,
        &ce_headers("big", "text/plain"),
        vec![b'a'; 2048],
    )
    .await;
    assert_eq!(out.status, 413, "{}", out.text());
    assert!(error_of(&out).contains("1024 bytes"), "{}", out.text());
    let ok = post(
        &host.url,
        &ce_headers("small", "text/plain"),
        vec![b'a'; 1000],
    )
    .await;
    assert_eq!(ok.status, 200, "{}", ok.text());
}

#[tokio::test]
async fn unknown_routes_names_and_methods_are_clear() {
    let host = host(&[]).await;
    let out = post(
        &format!("{}/sequences/nope", host.url),
        &ce_headers("n", "text/plain"),
        "x",
    )
    .await;
    assert_eq!(out.status, 404);
    assert!(error_of(&out).contains("no Sequence named \"nope\""));
    let out = post(
        &format!("{}/steps/nope", host.url),
        &ce_headers("n", "text/plain"),
        "x",
    )
    .await;
    assert_eq!(out.status, 404);
    assert!(error_of(&out).contains("no WasmStep named \"nope\""));
    let out = get(&host.url).await.expect("GET /");
    assert_eq!(out.status, 405);
    let health = get(&format!("{}/healthz", host.url))
        .await
        .expect("healthz");
    assert_eq!(health.status, 200);
}

#[tokio::test]
async fn unicode_attribute_values_survive_binary_mode_raw_or_percent_encoded() {
    // Structured mode carries any Unicode. By default binary-mode answers
    // carry it as raw UTF-8, as Knative's dispatcher writes it …
    let body = r#"{"specversion":"1.0","id":"u-1","source":"/s","type":"t","subject":"café ☕","note":"50% off \"now\"","datacontenttype":"text/plain","data":"hi"}"#;
    let raw = host(&[]).await;
    let out = post(
        &raw.url,
        &[("content-type", "application/cloudevents+json")],
        body,
    )
    .await;
    assert_eq!(out.status, 200, "{}", out.text());
    assert_eq!(out.headers["ce-subject"].as_bytes(), "café ☕".as_bytes());
    assert_eq!(out.header("ce-note"), r#"50% off "now""#);
    // … and with `--attribute-encoding percent` they percent-encode it
    // (CloudEvents HTTP binding §3.1.3.2); a binary event so encoded reads
    // back as the same text.
    let host = host(&["--attribute-encoding", "percent"]).await;
    let out = post(
        &host.url,
        &[("content-type", "application/cloudevents+json")],
        body,
    )
    .await;
    assert_eq!(out.status, 200, "{}", out.text());
    assert_eq!(out.header("ce-subject"), "caf%C3%A9%20%E2%98%95");
    assert_eq!(out.header("ce-note"), "50%25%20off%20%22now%22");
    // The encoded answer, sent back in binary mode, is the same event.
    let again = post(
        &host.url,
        &[
            ("ce-specversion", "1.0"),
            ("ce-id", "u-2"),
            ("ce-source", "/s"),
            ("ce-type", "t"),
            ("ce-subject", out.header("ce-subject")),
            ("ce-note", out.header("ce-note")),
            ("content-type", "text/plain"),
        ],
        "hi",
    )
    .await;
    assert_eq!(again.status, 200, "{}", again.text());
    assert_eq!(again.header("ce-subject"), "caf%C3%A9%20%E2%98%95");
    assert_eq!(again.header("ce-note"), "50%25%20off%20%22now%22");
    // More extensions than a step may emit are refused at the door, not
    // after the first step (structured mode has no header limit).
    let many: String = (0..65).map(|i| format!(r#","x{i}":"v""#)).collect();
    let crowded = post(
        &host.url,
        &[("content-type", "application/cloudevents+json")],
        format!(r#"{{"specversion":"1.0","id":"u-4","source":"/s","type":"t"{many}}}"#),
    )
    .await;
    assert_eq!(crowded.status, 400, "{}", crowded.text());
    assert!(error_of(&crowded).contains("65 extensions, at most 64 are allowed"));
    // The same attribute twice is ambiguous: refused.
    let twice = post(
        &host.url,
        &[
            ("ce-specversion", "1.0"),
            ("ce-id", "u-3"),
            ("ce-source", "/s"),
            ("ce-type", "t"),
            ("ce-note", "a"),
            ("ce-note", "b"),
        ],
        "hi",
    )
    .await;
    assert_eq!(twice.status, 400, "{}", twice.text());
    assert!(error_of(&twice).contains("ce-note appears more than once"));
}

/// Knative's dispatcher (sdk-go) writes binary-mode header values raw, so an
/// event whose subject or extension is non-ASCII arrives as raw UTF-8 once it
/// passed through a Broker. It must be read as that text, a literal `%`
/// included, not refused with a 400 no sender retries (issue #21, item 9).
#[tokio::test]
async fn raw_utf8_attribute_values_are_read_as_text() {
    let host = host(&[]).await;
    let raw = |text: &str| http::HeaderValue::from_bytes(text.as_bytes()).expect("obs-text");
    let request = http::Request::post(&host.url)
        .header("ce-specversion", "1.0")
        .header("ce-id", "raw-1")
        .header("ce-source", "/s")
        .header("ce-type", "t")
        .header("ce-subject", raw("café ☕"))
        .header("ce-note", raw("naïve 100% sûr"))
        .header("content-type", "text/plain")
        .body(http_body_util::Full::new(bytes::Bytes::from_static(b"hi")))
        .expect("request");
    let out = crate::support::send(request).await.expect("POST");
    assert_eq!(out.status, 200, "{}", out.text());
    // Answered as sent (raw, the default): the same text.
    assert_eq!(out.headers["ce-subject"].as_bytes(), "café ☕".as_bytes());
    assert_eq!(
        out.headers["ce-note"].as_bytes(),
        "naïve 100% sûr".as_bytes()
    );
    assert_eq!(out.text(), "hi-x");
}
