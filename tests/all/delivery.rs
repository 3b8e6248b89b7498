//! Knative delivery semantics over real loopback HTTP: which failures are
//! retried and how often, backoff, per-attempt timeouts, the dead-letter sink
//! and its extensions, the reply hop retried on its own, remote steps and the
//! headers they see, and a soak test in which no event is lost.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use axum::response::IntoResponse;
use base64::Engine as _;
use stephost::app::builtin::{APPENDER, FAULTY};

use crate::support::{
    Host, Sink, ce_headers, echo_appending, post, sequence, sequence_with_delivery, wasm_step,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_failures_are_retried_exactly_as_knative_selective_retry() {
    let retried = [500u16, 503, 404, 408, 409, 429];
    let not_retried = [400u16, 401, 403, 422];
    let mut sinks = Vec::new();
    let mut manifest = String::new();
    for status in retried.iter().chain(&not_retried) {
        let sink = Sink::status(*status).await;
        manifest.push_str(&sequence_with_delivery(
            &format!("s{status}"),
            &[&sink.url],
            None,
            "{retry: 2}",
        ));
        sinks.push((*status, sink));
    }
    let plain = Sink::status(500).await;
    manifest.push_str(&sequence("nodelivery", &[&plain.url], None));
    let host = Host::start(&manifest, &[]).await;
    for (status, sink) in &sinks {
        let out = post(
            &format!("{}/sequences/s{status}", host.url),
            &ce_headers("r", "text/plain"),
            "x",
        )
        .await;
        assert_eq!(
            out.status,
            500,
            "{status}: the sender must retry: {}",
            out.text()
        );
        let expected = if retried.contains(status) { 3 } else { 1 };
        assert_eq!(
            sink.received().len(),
            expected,
            "status {status} with retry: 2"
        );
        assert_eq!(sink.received()[0].header("prefer"), "reply");
    }
    let out = post(
        &format!("{}/sequences/nodelivery", host.url),
        &ce_headers("r", "text/plain"),
        "x",
    )
    .await;
    assert_eq!(out.status, 500);
    assert_eq!(
        plain.received().len(),
        1,
        "no delivery spec: a single attempt"
    );
}

fn gaps(sink: &Sink) -> Vec<f64> {
    let got = sink.received();
    got.windows(2)
        .map(|w| (w[1].at - w[0].at).as_secs_f64())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backoff_waits_grow_linearly_or_exponentially() {
    let exp = Sink::status(500).await;
    let lin = Sink::status(500).await;
    let manifest = format!(
        "{}{}",
        sequence_with_delivery(
            "exp",
            &[&exp.url],
            None,
            "{retry: 3, backoffPolicy: exponential, backoffDelay: PT0.1S}"
        ),
        sequence_with_delivery(
            "lin",
            &[&lin.url],
            None,
            "{retry: 3, backoffPolicy: linear, backoffDelay: PT0.1S}"
        )
    );
    let host = Host::start(&manifest, &[]).await;
    for (name, sink, expected) in [
        ("exp", &exp, [0.1, 0.2, 0.4]),
        ("lin", &lin, [0.1, 0.2, 0.3]),
    ] {
        post(
            &format!("{}/sequences/{name}", host.url),
            &ce_headers("b", "text/plain"),
            "x",
        )
        .await;
        let gaps = gaps(sink);
        assert_eq!(gaps.len(), 3, "{name}: 4 attempts");
        for (gap, want) in gaps.iter().zip(expected) {
            assert!(
                (gap - want).abs() <= 0.05,
                "{name}: gaps {gaps:?}, want {expected:?} ± 50 ms"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_attempt_is_cut_at_the_delivery_timeout() {
    let slow = Sink::slow(
        Arc::new(|_, _| StatusCode::OK.into_response()),
        Duration::from_secs(2),
    )
    .await;
    let manifest =
        sequence_with_delivery("slow", &[&slow.url], None, "{retry: 2, timeout: PT0.3S}");
    let host = Host::start(&manifest, &[]).await;
    let started = Instant::now();
    let out = post(
        &format!("{}/sequences/slow", host.url),
        &ce_headers("t", "text/plain"),
        "x",
    )
    .await;
    let took = started.elapsed().as_secs_f64();
    assert_eq!(out.status, 500, "{}", out.text());
    assert!(out.text().contains("timed out"), "{}", out.text());
    assert_eq!(slow.received().len(), 3);
    for gap in gaps(&slow) {
        assert!(
            (gap - 0.3).abs() <= 0.1,
            "attempts should start ≈ 0.3 s apart: {gap}"
        );
    }
    assert!(took < 1.6, "three attempts of 0.3 s took {took} s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dead_letter_sink_gets_the_original_event_with_error_extensions() {
    let body_5k = "e".repeat(5 * 1024);
    let failing = {
        let body = body_5k.clone();
        Sink::with(Arc::new(move |_, _| {
            (StatusCode::UNPROCESSABLE_ENTITY, body.clone()).into_response()
        }))
        .await
    };
    let dls = Sink::accepting().await;
    let reply = Sink::accepting().await;
    let delivery = format!("{{retry: 3, deadLetterSink: {{uri: \"{}\"}}}}", dls.url);
    let manifest = format!(
        "{}{}",
        sequence_with_delivery("dl", &["first", &failing.url], Some(&reply.url), &delivery),
        wasm_step("first", APPENDER, &[("suffix", "-first")], "")
    );
    let host = Host::start(&manifest, &[]).await;
    let out = post(
        &format!("{}/sequences/dl", host.url),
        &ce_headers("dl-1", "text/plain"),
        "orig",
    )
    .await;
    assert_eq!(
        out.status,
        202,
        "dead-lettered events are acknowledged: {}",
        out.text()
    );
    assert_eq!(failing.received().len(), 1, "422 is not retried");
    assert!(reply.received().is_empty());
    let got = dls.received();
    assert_eq!(got.len(), 1);
    let dead = &got[0];
    // The original input of the failing hop: step 2's input, i.e. step 1's output.
    assert_eq!(&dead.body[..], b"orig-first");
    assert_eq!(dead.header("ce-id"), "dl-1");
    assert_eq!(dead.header("ce-knativeerrorcode"), "422");
    assert_eq!(
        dead.header("ce-knativeerrordest"),
        format!("{}/", failing.url)
    );
    let expected = base64::engine::general_purpose::STANDARD.encode(body_5k.as_bytes());
    assert_eq!(dead.header("ce-knativeerrordata"), &expected[..1024]);
    assert_eq!(
        dead.header("prefer"),
        "",
        "no Prefer: reply to a dead-letter sink"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fatal_wasm_failure_goes_straight_to_the_dead_letter_sink() {
    let dls = Sink::accepting().await;
    // Were it retried, linear backoff of 1 s would take 1 + 2 + 3 = 6 s.
    let delivery = format!(
        "{{retry: 3, backoffPolicy: linear, backoffDelay: PT1S, deadLetterSink: {{uri: \"{}\"}}}}",
        dls.url
    );
    let manifest = format!(
        "{}{}{}",
        sequence_with_delivery("fatal", &["faulty"], None, &delivery),
        sequence("nosink", &["faulty"], None),
        wasm_step("faulty", FAULTY, &[("mode", "fatal")], "")
    );
    let host = Host::start(&manifest, &[]).await;
    let started = Instant::now();
    let out = post(
        &format!("{}/sequences/fatal", host.url),
        &ce_headers("ft", "text/plain"),
        "x",
    )
    .await;
    assert_eq!(out.status, 202, "{}", out.text());
    assert!(
        started.elapsed() < Duration::from_millis(900),
        "a fatal error must not be retried"
    );
    let got = dls.received();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].header("ce-knativeerrorcode"), "422");
    assert!(
        got[0]
            .header("ce-knativeerrordest")
            .ends_with("/steps/faulty"),
        "{}",
        got[0].header("ce-knativeerrordest")
    );
    let data = base64::engine::general_purpose::STANDARD
        .decode(got[0].header("ce-knativeerrordata"))
        .expect("base64");
    assert!(String::from_utf8_lossy(&data).contains("asked to fail (fatal)"));
    // Without a sink the sender gets a 5xx and retries: nothing is lost.
    let out = post(
        &format!("{}/sequences/nosink", host.url),
        &ce_headers("ft2", "text/plain"),
        "x",
    )
    .await;
    assert_eq!(out.status, 500);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reply_is_retried_on_its_own_and_the_step_runs_once() {
    let step = Sink::with(echo_appending("-s")).await;
    let reply = Sink::with(Arc::new(|n, _| {
        if n == 0 {
            StatusCode::SERVICE_UNAVAILABLE
        } else {
            StatusCode::ACCEPTED
        }
        .into_response()
    }))
    .await;
    let manifest = sequence_with_delivery("r", &[&step.url], Some(&reply.url), "{retry: 1}");
    let host = Host::start(&manifest, &[]).await;
    let out = post(
        &format!("{}/sequences/r", host.url),
        &ce_headers("rr", "text/plain"),
        "x",
    )
    .await;
    assert_eq!(out.status, 202, "{}", out.text());
    assert_eq!(
        step.received().len(),
        1,
        "the step must not re-run because its reply failed"
    );
    let got = reply.received();
    assert_eq!(got.len(), 2, "the reply gets two attempts");
    assert_eq!(&got[1].body[..], b"x-s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wasm_and_remote_steps_mix_and_remote_steps_see_knative_headers() {
    let remote = Sink::with(echo_appending("-remote")).await;
    let reply = Sink::accepting().await;
    let manifest = format!(
        "{}{}{}",
        sequence("mixed", &["a", &remote.url, "b"], Some(&reply.url)),
        wasm_step("a", APPENDER, &[("suffix", "-a")], ""),
        wasm_step("b", APPENDER, &[("suffix", "-b")], "")
    );
    let host = Host::start(&manifest, &[]).await;
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let traceparent = format!("00-{trace}-00f067aa0ba902b7-01");
    let mut headers = ce_headers("mx", "text/plain");
    headers.extend([
        ("x-request-id", "req-42"),
        ("knative-custom", "k"),
        ("x-b3-traceid", "b3"),
        ("x-not-passed", "secret"),
        ("traceparent", traceparent.as_str()),
    ]);
    let out = post(&format!("{}/sequences/mixed", host.url), &headers, "x").await;
    assert_eq!(out.status, 202, "{}", out.text());
    assert_eq!(&reply.received()[0].body[..], b"x-a-remote-b");
    let seen = &remote.received()[0];
    assert_eq!(seen.header("prefer"), "reply");
    assert_eq!(seen.header("kn-namespace"), "default");
    assert_eq!(seen.header("x-request-id"), "req-42");
    assert_eq!(seen.header("knative-custom"), "k");
    assert_eq!(seen.header("x-b3-traceid"), "b3");
    assert_eq!(
        seen.header("x-not-passed"),
        "",
        "only pass-through headers travel"
    );
    assert_eq!(seen.header("ce-id"), "mx");
    assert_eq!(&seen.body[..], b"x-a");
    for hop in [seen, &reply.received()[0]] {
        let tp = hop.header("traceparent");
        assert!(
            tp.starts_with(&format!("00-{trace}-")),
            "trace id lost: {tp:?}"
        );
        assert!(
            !tp.contains("00f067aa0ba902b7"),
            "each hop gets its own parent id"
        );
    }
}

/// Soak: 10,000 events, the reply fails 30% of requests at random, `retry: 5`.
/// Every event id must reach the reply or the dead-letter sink; the sender
/// retries every 5xx and 429 with exponential backoff, as a Knative source
/// would. Duplicates are allowed (at-least-once) and reported.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soak_ten_thousand_events_with_a_flaky_reply_lose_nothing() {
    const EVENTS: usize = 10_000;
    const SENDERS: usize = 16;
    let seed = Arc::new(AtomicU64::new(0x9E37_79B9_7F4A_7C15));
    // xorshift64: deterministic pseudo-random failures.
    fn next(seed: &AtomicU64) -> u64 {
        let mut x = seed.load(Ordering::Relaxed);
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        seed.store(x, Ordering::Relaxed);
        x
    }
    let accepted: Arc<std::sync::Mutex<HashMap<String, usize>>> = Arc::default();
    let flaky = {
        let seed = seed.clone();
        let accepted = accepted.clone();
        Sink::with(Arc::new(move |_, req| {
            if next(&seed) % 100 < 30 {
                return StatusCode::INTERNAL_SERVER_ERROR.into_response();
            }
            *accepted
                .lock()
                .expect("lock")
                .entry(req.header("ce-id").to_string())
                .or_default() += 1;
            StatusCode::ACCEPTED.into_response()
        }))
        .await
    };
    // The dead-letter sink is flaky too (90%), so some events fail for good
    // and the sender's own retries are exercised.
    let dls_seed = Arc::new(AtomicU64::new(0x2545_F491_4F6C_DD1D));
    let dead_accepted: Arc<std::sync::Mutex<HashSet<String>>> = Arc::default();
    let dls = {
        let dead_accepted = dead_accepted.clone();
        Sink::with(Arc::new(move |_, req| {
            if !next(&dls_seed).is_multiple_of(10) {
                return StatusCode::SERVICE_UNAVAILABLE.into_response();
            }
            dead_accepted
                .lock()
                .expect("lock")
                .insert(req.header("ce-id").to_string());
            StatusCode::ACCEPTED.into_response()
        }))
        .await
    };
    let delivery = format!("{{retry: 5, deadLetterSink: {{uri: \"{}\"}}}}", dls.url);
    let manifest = format!(
        "{}{}",
        sequence_with_delivery("soak", &["a"], Some(&flaky.url), &delivery),
        wasm_step("a", APPENDER, &[("suffix", "-a")], "")
    );
    let host = Host::start(&manifest, &[]).await;
    let url = format!("{}/sequences/soak", host.url);
    let sender_retries = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for s in 0..SENDERS {
        let url = url.clone();
        let sender_retries = sender_retries.clone();
        tasks.push(tokio::spawn(async move {
            let mut failed = Vec::new();
            for i in (s..EVENTS).step_by(SENDERS) {
                let id = format!("soak-{i}");
                let mut tries = 0;
                loop {
                    let out = post(&url, &ce_headers(&id, "text/plain"), "x").await;
                    if out.status == 202 {
                        break;
                    }
                    tries += 1;
                    sender_retries.fetch_add(1, Ordering::Relaxed);
                    if tries == 10 {
                        failed.push(id.clone());
                        break;
                    }
                    // Exponential backoff from 10 ms, as a Knative sender
                    // does (delivery spec): a 500 (no dead-letter sink took
                    // the event) is no failure to retry in a tight loop.
                    tokio::time::sleep(Duration::from_millis(10 << tries)).await;
                }
            }
            failed
        }));
    }
    let mut unacknowledged = Vec::new();
    for t in tasks {
        unacknowledged.extend(t.await.expect("sender"));
    }
    assert!(
        unacknowledged.is_empty(),
        "never acknowledged: {unacknowledged:?}"
    );
    let delivered = accepted.lock().expect("lock").clone();
    let attempts = flaky.received().len();
    let dead = dead_accepted.lock().expect("lock").clone();
    let missing: Vec<usize> = (0..EVENTS)
        .filter(|i| {
            let id = format!("soak-{i}");
            !delivered.contains_key(&id) && !dead.contains(&id)
        })
        .collect();
    assert!(missing.is_empty(), "lost events: {missing:?}");
    let duplicates: usize = delivered.values().map(|n| n - 1).sum::<usize>()
        + dead.iter().filter(|id| delivered.contains_key(*id)).count();
    println!(
        "soak: {EVENTS} events, {attempts} reply attempts, {} delivered, {} dead-lettered, \
         {duplicates} duplicates, {} sender retries",
        delivered.len(),
        dead.len(),
        sender_retries.load(Ordering::Relaxed)
    );
}

/// Knative's subscription reconciler (`resolveDeadLetterSink`): a step whose
/// own `delivery` names no dead-letter sink falls back to the channel's,
/// while its retry settings stay its own (issue #21, item 3).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_delivery_without_a_sink_falls_back_to_the_channels_sink() {
    let channel_dls = Sink::accepting().await;
    let step_delivery = "{retry: 1, backoffPolicy: linear, backoffDelay: PT0.2S}";
    let manifest = format!(
        "{}{}",
        sequence_with_delivery("merged", &["faulty"], None, step_delivery).replace(
            "    kind: InMemoryChannel\n",
            &format!(
                "    kind: InMemoryChannel\n    spec:\n      delivery:\n        retry: 5\n        \
                 backoffPolicy: linear\n        backoffDelay: PT2S\n        deadLetterSink:\n          \
                 uri: \"{}\"\n",
                channel_dls.url
            ),
        ),
        wasm_step("faulty", FAULTY, &[("mode", "retryable")], "")
    );
    let host = Host::start(&manifest, &[]).await;
    let started = Instant::now();
    let out = post(
        &format!("{}/sequences/merged", host.url),
        &ce_headers("merge-1", "text/plain"),
        "x",
    )
    .await;
    // Dead-lettered to the channel's sink: delivered, so 202.
    assert_eq!(out.status, 202, "{}", out.text());
    let got = channel_dls.received();
    assert_eq!(
        got.len(),
        1,
        "the channel's dead-letter sink gets the event"
    );
    assert_eq!(got[0].header("ce-id"), "merge-1");
    assert!(
        got[0]
            .header("ce-knativeerrordest")
            .ends_with("/steps/faulty"),
        "{}",
        got[0].header("ce-knativeerrordest")
    );
    // The step's own retry (1 retry after 0.2 s) applied, not the channel's
    // (5 retries, 2 s apart: 30 s).
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "took {:?}: the channel's retry settings were used",
        started.elapsed()
    );
}

/// A remote step that sends its response head and then stalls mid-body is
/// cut off by `--remote-timeout` when its delivery sets no `timeout`: the
/// bound covers the whole exchange, not only the head (issue #21, item 2).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remote_body_that_stalls_is_cut_at_the_remote_timeout() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let stalled = tokio::spawn(async move {
        let mut held = Vec::new();
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            let mut buf = vec![0u8; 64 << 10];
            let _ = socket.read(&mut buf).await;
            // A 100-byte body is announced, 5 bytes are sent, then nothing.
            let _ = socket
                .write_all(
                    b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\nce-specversion: 1.0\r\n\
                      ce-id: r\r\nce-source: /s\r\nce-type: t\r\ncontent-length: 100\r\n\r\nhello",
                )
                .await;
            held.push(socket);
        }
    });
    let manifest = sequence("stall", &[&format!("http://{addr}/")], None);
    let host = Host::start(&manifest, &["--remote-timeout", "PT1S"]).await;
    let started = Instant::now();
    let out = post(
        &format!("{}/sequences/stall", host.url),
        &ce_headers("stall-1", "text/plain"),
        "x",
    )
    .await;
    let took = started.elapsed();
    assert_eq!(out.status, 500, "{}", out.text());
    assert!(
        out.text().contains("--remote-timeout"),
        "the error names the bound: {}",
        out.text()
    );
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(10),
        "cut after {took:?}, want about 1 s"
    );
    stalled.abort();
}

/// A deliberate difference from Knative (docs/delivery.md, "Each failure
/// stays in its hop"): with a dead-letter sink on the first step only, a
/// failure of the second step is not carried back to the first step's hop
/// (as InMemoryChannel's synchronous acknowledgement would do); the sender
/// gets the 5xx and retries the whole event, and the first step's sink
/// receives nothing (issue #21, item 8).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_later_steps_failure_stays_in_its_own_hop() {
    let first_dls = Sink::accepting().await;
    let manifest = format!(
        "---\napiVersion: flows.knative.dev/v1\nkind: Sequence\nmetadata:\n  name: two\nspec:\n  \
         steps:\n    - ref: {{apiVersion: serving.knative.dev/v1, kind: Service, name: first}}\n      \
         delivery: {{retry: 2, deadLetterSink: {{uri: \"{}\"}}}}\n    - ref: {{apiVersion: \
         serving.knative.dev/v1, kind: Service, name: faulty}}\n{}{}",
        first_dls.url,
        wasm_step("first", APPENDER, &[("suffix", "-first")], ""),
        wasm_step("faulty", FAULTY, &[("mode", "fatal")], "")
    );
    let host = Host::start(&manifest, &[]).await;
    let out = post(
        &format!("{}/sequences/two", host.url),
        &ce_headers("hop-1", "text/plain"),
        "x",
    )
    .await;
    assert_eq!(out.status, 500, "{}", out.text());
    assert!(out.text().contains("step 1 (faulty)"), "{}", out.text());
    assert!(
        first_dls.received().is_empty(),
        "the first step's sink is for the first step's failures only"
    );
}

/// A remote step answering 2xx with a `ce-specversion` Knative does not
/// know sent no event (sdk-go `ReadEncoding` finds no encoding): the chain
/// stops there, as a drop, instead of failing the event (issue #21, item 4).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_of_an_unknown_specversion_ends_the_chain_as_a_drop() {
    let step = Sink::with(Arc::new(|_, _| {
        (
            StatusCode::OK,
            [
                ("ce-specversion", "2.0"),
                ("ce-id", "r"),
                ("ce-source", "/s"),
                ("ce-type", "t"),
            ],
            "future",
        )
            .into_response()
    }))
    .await;
    let reply = Sink::accepting().await;
    let manifest = sequence("v2", &[&step.url], Some(&reply.url));
    let host = Host::start(&manifest, &[]).await;
    let out = post(
        &format!("{}/sequences/v2", host.url),
        &ce_headers("v2-1", "text/plain"),
        "x",
    )
    .await;
    assert_eq!(out.status, 202, "{}", out.text());
    assert_eq!(step.received().len(), 1);
    assert!(reply.received().is_empty(), "nothing goes on to the reply");
}

/// After a remote step, the pass-through headers of its *response* travel on
/// to the reply (and to the dead-letter sink when the reply fails), as
/// Knative forwards a subscriber's reply; `baggage` travels with the trace
/// context (issue #21, item 5).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reply_hop_carries_the_steps_response_headers() {
    let step = Sink::with(Arc::new(|_, req: &crate::support::Received| {
        let mut response = echo_appending("-s")(0, req);
        let headers = response.headers_mut();
        headers.insert("x-request-id", "from-step".parse().expect("value"));
        headers.insert("knative-hop", "step".parse().expect("value"));
        response
    }))
    .await;
    let reply = Sink::accepting().await;
    let refusing = Sink::with(Arc::new(|_, _| StatusCode::BAD_REQUEST.into_response())).await;
    let dls = Sink::accepting().await;
    let manifest = format!(
        "{}{}",
        sequence("ok", &[&step.url], Some(&reply.url)),
        sequence_with_delivery(
            "dl",
            &[&step.url],
            Some(&refusing.url),
            &format!("{{deadLetterSink: {{uri: \"{}\"}}}}", dls.url)
        )
    );
    let host = Host::start(&manifest, &[]).await;
    let mut headers = ce_headers("ph-1", "text/plain");
    headers.extend([
        ("x-request-id", "from-sender"),
        ("baggage", "tenant=a"),
        ("tracestate", "vendor=1"),
    ]);
    for sequence in ["ok", "dl"] {
        let out = post(&format!("{}/sequences/{sequence}", host.url), &headers, "x").await;
        assert_eq!(out.status, 202, "{sequence}: {}", out.text());
    }
    let to_step = step.received();
    assert_eq!(to_step[0].header("x-request-id"), "from-sender");
    assert_eq!(to_step[0].header("baggage"), "tenant=a");
    for (what, got) in [("reply", reply.received()), ("dead letter", dls.received())] {
        assert_eq!(got.len(), 1, "{what}");
        assert_eq!(got[0].header("x-request-id"), "from-step", "{what}");
        assert_eq!(got[0].header("knative-hop"), "step", "{what}");
        assert_eq!(got[0].header("baggage"), "tenant=a", "{what}");
        assert_eq!(got[0].header("tracestate"), "vendor=1", "{what}");
    }
}
