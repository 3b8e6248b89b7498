//! `/metrics`: valid OpenMetrics text (parsed by the Prometheus Python
//! client's parser) whose counters move as events flow.

use std::io::Write;
use std::process::{Command, Stdio};

use stephost::app::builtin::{APPENDER, DROPPER};

use crate::support::{Host, ce_headers, get, post, sequence, wasm_step};

/// Parse with the real parser; the samples as `name{labels} value` lines.
fn parse(text: &str) -> String {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tests/python/parse_metrics.py"
    );
    let mut child = Command::new(std::env::var("PYTHON").unwrap_or_else(|_| "python3".into()))
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("parser");
    assert!(
        out.status.success(),
        "not valid OpenMetrics ({}):\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_parse_and_count_events_steps_and_outcomes() {
    let manifest = format!(
        "{}{}{}{}",
        sequence("solo", &["a"], None),
        sequence("drops", &["a", "d"], None),
        wasm_step("a", APPENDER, &[("suffix", "-m")], ""),
        wasm_step("d", DROPPER, &[], "")
    );
    let host = Host::start(&manifest, &[]).await;
    for i in 0..3 {
        let out = post(
            &format!("{}/sequences/solo", host.url),
            &ce_headers(&format!("m{i}"), "text/plain"),
            "x",
        )
        .await;
        assert_eq!(out.status, 200);
    }
    let out = post(
        &format!("{}/sequences/drops", host.url),
        &ce_headers("md", "text/plain"),
        "x",
    )
    .await;
    assert_eq!(out.status, 202);
    let bad = post(
        &format!("{}/sequences/solo", host.url),
        &[("content-type", "text/plain")],
        "x",
    )
    .await;
    assert_eq!(bad.status, 400);

    let metrics = get(&format!("{}/metrics", host.url))
        .await
        .expect("GET /metrics");
    assert_eq!(metrics.status, 200);
    assert!(
        metrics
            .header("content-type")
            .starts_with("application/openmetrics-text")
    );
    let samples = parse(&metrics.text());
    for expected in [
        r#"stephost_events_total{outcome="returned",sequence="solo"} 3"#,
        r#"stephost_events_total{outcome="dropped",sequence="drops"} 1"#,
        r#"stephost_events_total{outcome="rejected",sequence="solo"} 1"#,
        r#"stephost_step_events_total{outcome="forwarded",step="a",version="default"} 4"#,
        r#"stephost_step_events_total{outcome="dropped",step="d",version="default"} 1"#,
        r#"stephost_step_duration_seconds_count{step="a",version="default"} 4"#,
        r#"stephost_events_in_flight{} 0"#,
    ] {
        assert!(
            samples.lines().any(|l| l == expected),
            "missing {expected}:\n{samples}"
        );
    }
    // Every event instantiated its steps: the sandbox's per-event price.
    let instantiations: f64 = samples
        .lines()
        .find_map(|l| l.strip_prefix("stephost_step_instantiate_seconds_count{} "))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    assert!(
        instantiations >= 5.0,
        "instantiations {instantiations}:\n{samples}"
    );
}

/// With `OTEL_EXPORTER_OTLP_ENDPOINT` set, each step call is exported as an
/// OTLP/HTTP JSON span in the caller's trace, child of its span.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn step_spans_are_exported_over_otlp_in_the_callers_trace() {
    let collector = crate::support::Sink::accepting().await;
    let manifest = format!(
        "{}{}{}",
        sequence("traced", &["a", "b"], None),
        wasm_step("a", APPENDER, &[("suffix", "-a")], ""),
        wasm_step("b", APPENDER, &[("suffix", "-b")], ""),
    );
    let host = Host::start_with_env(
        &manifest,
        &[],
        &[(
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            collector.url.trim_end_matches('/'),
        )],
    )
    .await;
    let trace = "0af7651916cd43dd8448eb211c80319c";
    let mut headers = ce_headers("t-1", "text/plain");
    let traceparent = format!("00-{trace}-b7ad6b7169203331-01");
    headers.push(("traceparent", &traceparent));
    let out = post(&host.url, &headers, "x").await;
    assert_eq!(out.status, 200, "{}", out.text());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let spans: Vec<serde_json::Value> = loop {
        let spans: Vec<serde_json::Value> = collector
            .received()
            .iter()
            .filter(|r| r.path == "/v1/traces")
            .flat_map(|r| {
                let body: serde_json::Value = serde_json::from_slice(&r.body).expect("OTLP JSON");
                body["resourceSpans"][0]["scopeSpans"][0]["spans"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
            })
            .collect();
        if spans.len() >= 2 {
            break spans;
        }
        assert!(std::time::Instant::now() < deadline, "no spans exported");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    let names: Vec<&str> = spans.iter().filter_map(|s| s["name"].as_str()).collect();
    assert!(
        names.contains(&"step a") && names.contains(&"step b"),
        "{names:?}"
    );
    for span in &spans {
        assert_eq!(span["traceId"], trace, "{span}");
        assert_eq!(span["parentSpanId"], "b7ad6b7169203331", "{span}");
        assert_eq!(span["spanId"].as_str().map(str::len), Some(16), "{span}");
    }
}

/// `--perfmap`: the map `perf` reads names the guests' compiled functions,
/// so a profile of the host shows where inside a step the time goes
/// (without it, anonymous JIT addresses). Without the flag, no map.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn perfmap_names_guest_functions_for_perf() {
    let manifest = format!(
        "{}{}",
        sequence("solo", &["a"], None),
        wasm_step("a", APPENDER, &[("suffix", "-p")], "")
    );
    let map_of = |host: &Host| std::path::PathBuf::from(format!("/tmp/perf-{}.map", host.pid()));
    let profiled = Host::start(&manifest, &["--perfmap"]).await;
    let out = post(
        &format!("{}/sequences/solo", profiled.url),
        &ce_headers("p1", "text/plain"),
        "x",
    )
    .await;
    assert_eq!(out.status, 200);
    let map = map_of(&profiled);
    let text = std::fs::read_to_string(&map).unwrap_or_default();
    let _ = std::fs::remove_file(&map);
    // perf's format: `ADDRESS SIZE NAME` per line; wasmtime names a guest
    // function `wasm[N]::function[M]::<its symbol>`.
    let guest = text
        .lines()
        .filter(|l| l.split(' ').count() >= 3 && l.contains("::function["))
        .collect::<Vec<_>>();
    assert!(
        guest.iter().any(|l| l.contains("appender")),
        "no appender function among {} guest entries of {}",
        guest.len(),
        map.display()
    );

    let plain = Host::start(&manifest, &[]).await;
    assert!(
        !map_of(&plain).exists(),
        "a host without --perfmap wrote a map"
    );
}

/// `--bare-answer` (the benchmark floor of bench/perf.sh P2): an event is
/// answered with itself, byte for byte, through admission and parsing, and
/// no step runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bare_answer_returns_the_event_without_running_a_step() {
    let manifest = format!(
        "{}{}",
        sequence("solo", &["a"], None),
        wasm_step("a", APPENDER, &[("suffix", "-m")], "")
    );
    let host = Host::start(&manifest, &["--bare-answer"]).await;
    let mut headers = ce_headers("bare-1", "text/plain");
    headers.push(("ce-myext", "kept"));
    let out = post(&host.url, &headers, "untouched").await;
    assert_eq!(out.status, 200, "{}", out.text());
    assert_eq!(out.text(), "untouched");
    assert_eq!(out.header("ce-id"), "bare-1");
    assert_eq!(out.header("ce-myext"), "kept");
    assert_eq!(out.header("ce-stephostversions"), "");
    // Still a CloudEvents endpoint: a request that is not an event is refused.
    let bad = post(&host.url, &[("content-type", "text/plain")], "x").await;
    assert_eq!(bad.status, 400);
    let samples = parse(&get(&format!("{}/metrics", host.url)).await.unwrap().text());
    assert!(
        samples
            .lines()
            .any(|l| l == r#"stephost_events_total{outcome="returned",sequence="solo"} 1"#),
        "{samples}"
    );
    assert!(
        !samples.contains("stephost_step_events_total{"),
        "a step ran:\n{samples}"
    );
    assert!(
        host.logs().contains("--bare-answer"),
        "no warning: {}",
        host.logs()
    );
}
