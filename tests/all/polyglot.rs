//! Steps written in Python (componentize-py) and JavaScript (jco /
//! componentize-js) against the SDK's WIT run in one Sequence with a Rust
//! step (issue #23). `guests/build-polyglot.sh` builds them with their
//! toolchains from PyPI and npm (tests/run.sh runs it first).

use base64::Engine as _;

use crate::support::{Host, Sink, ce_headers, post, sequence, sequence_with_delivery, wasm_step};
use stephost::app::builtin;

/// The Python keyword tagger (`guests/py-tagger`).
const PY_TAGGER: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../guests/py-tagger/py-tagger.wasm"
);
/// The JavaScript keyword tagger (`guests/js-tagger`).
const JS_TAGGER: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../guests/js-tagger/js-tagger.wasm"
);

/// `path`, after checking that the build script has made it.
fn built(path: &'static str) -> &'static str {
    assert!(
        std::path::Path::new(path).is_file(),
        "{path} is missing: run guests/build-polyglot.sh (tests/run.sh does)"
    );
    path
}

/// Their limits as the docs recommend them: 32 MiB of linear memory (both
/// instantiate in 16 MiB; see docs/steps.md).
const LIMITS: &str = "{memory: 32Mi, timeout: PT5S}";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_and_javascript_steps_run_in_one_sequence_with_a_rust_step() {
    let mut manifest = wasm_step(
        "rust-appender",
        builtin::APPENDER,
        &[("suffix", " but it came broken")],
        "",
    );
    manifest.push_str(&wasm_step(
        "py-tagger",
        built(PY_TAGGER),
        &[("keywords", "love,broken,refund"), ("extension", "pytags")],
        LIMITS,
    ));
    manifest.push_str(&wasm_step(
        "js-tagger",
        built(JS_TAGGER),
        &[("keywords", "refund,broken"), ("extension", "jstags")],
        LIMITS,
    ));
    manifest.push_str(&sequence(
        "mixed",
        &["rust-appender", "py-tagger", "js-tagger"],
        None,
    ));
    let host = Host::start(&manifest, &[]).await;
    let url = format!("{}/sequences/mixed", host.url);

    let out = post(&url, &ce_headers("m-1", "text/plain"), "I love it").await;
    assert_eq!(out.status, 200, "{}", out.text());
    assert_eq!(out.text(), "I love it but it came broken");
    assert_eq!(out.header("ce-pytags"), "love,broken");
    assert_eq!(out.header("ce-jstags"), "broken");
    assert_eq!(out.header("ce-id"), "m-1");
    assert_eq!(out.header("content-type"), "text/plain");

    // Many at once: each event on fresh instances of all three, none mixed up.
    let sends = (0..48).map(|i| {
        let url = url.clone();
        async move {
            let id = format!("c-{i}");
            let text = if i % 2 == 0 { "refund" } else { "love" };
            let out = post(&url, &ce_headers(&id, "text/plain"), text).await;
            (i, out)
        }
    });
    for (i, out) in futures::future::join_all(sends).await {
        assert_eq!(out.status, 200, "event {i}: {}", out.text());
        assert_eq!(out.header("ce-id"), format!("c-{i}"));
        let (py, js) = if i % 2 == 0 {
            ("broken,refund", "refund,broken")
        } else {
            ("love,broken", "broken")
        };
        assert_eq!(out.header("ce-pytags"), py, "event {i}");
        assert_eq!(out.header("ce-jstags"), js, "event {i}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn their_fatal_errors_reach_the_dead_letter_sink_as_422() {
    let sink = Sink::accepting().await;
    let delivery = format!("{{deadLetterSink: {{uri: {}}}}}", sink.url);
    let mut manifest = String::new();
    for (name, path) in [("py-tagger", PY_TAGGER), ("js-tagger", JS_TAGGER)] {
        manifest.push_str(&wasm_step(name, built(path), &[], LIMITS));
        manifest.push_str(&sequence_with_delivery(
            &format!("{name}-only"),
            &[name],
            None,
            &delivery,
        ));
    }
    let host = Host::start(&manifest, &[]).await;
    for (i, name) in ["py-tagger", "js-tagger"].into_iter().enumerate() {
        let out = post(
            &format!("{}/sequences/{name}-only", host.url),
            &ce_headers("bad", "application/octet-stream"),
            &b"\xff\xfe"[..],
        )
        .await;
        assert_eq!(out.status, 202, "{name}: dead-lettered, so acknowledged");
        let received = sink.received();
        assert_eq!(received.len(), i + 1, "{name}: one dead letter");
        let letter = &received[i];
        assert_eq!(letter.header("ce-knativeerrorcode"), "422", "{name}");
        assert!(
            letter
                .header("ce-knativeerrordest")
                .ends_with(&format!("/steps/{name}")),
            "{name}: {}",
            letter.header("ce-knativeerrordest")
        );
        assert_eq!(&letter.body[..], b"\xff\xfe", "{name}: the input, as sent");
        let why = base64::engine::general_purpose::STANDARD
            .decode(letter.header("ce-knativeerrordata"))
            .expect("base64");
        let why = String::from_utf8_lossy(&why);
        assert!(
            why.contains("not UTF-8"),
            "{name}: the step's own message: {why}"
        );
    }
}
