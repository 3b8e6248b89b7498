//! The reference sentiment step through the real host: the guest tokenises in
//! the sandbox, the host runs the MiniLM model with tract behind wasi-nn. Its
//! logits must equal onnxruntime's on the MR dev split; grants and tensor
//! limits must hold; and it must answer in the default Sequence.

use futures::StreamExt;

use crate::support::{Host, Sink, ce_headers, post, review_headers, wasm_step};

/// `label<TAB>p_positive<TAB>logit0<TAB>logit1<TAB>sentence`: onnxruntime 1.32
/// on the same model file (tokenizer truncation 128).
const REFERENCE: &str = include_str!("../fixtures/sentiment/mr-dev-1060-ref.tsv");

/// The model file in the repository (the host also embeds it as
/// `builtin:sentiment`; loading it from a path here covers file grants).
fn model_path() -> String {
    format!(
        "{}/../guests/sentiment/model/model.onnx",
        env!("CARGO_MANIFEST_DIR")
    )
}

/// A WasmStep running the sentiment guest with `models` YAML (flow style).
fn sentiment_step(name: &str, config: &[(&str, &str)], models: Option<&str>) -> String {
    let mut doc = wasm_step(name, stephost::app::builtin::SENTIMENT, config, "");
    if let Some(models) = models {
        doc.push_str(&format!("  models: {models}\n"));
    }
    doc
}

async fn classify(host: &Host, step: &str, id: &str, text: &str) -> crate::support::Exchange {
    let body = serde_json::json!({ "reviewText": text }).to_string();
    post(
        &format!("{}/steps/{step}", host.url),
        &ce_headers(id, "application/json"),
        body,
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logits_on_the_1060_mr_dev_sentences_equal_the_reference() {
    let models = format!("{{sentiment: {:?}}}", model_path());
    let host = Host::start(
        &sentiment_step("sentiment", &[("includeLogits", "true")], Some(&models)),
        &[],
    )
    .await;
    let rows: Vec<(u8, f64, [f64; 2], &str)> = REFERENCE
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.splitn(5, '\t').collect();
            let n = |s: &str| s.parse::<f64>().expect("number");
            (
                f[0].parse().expect("label"),
                n(f[1]),
                [n(f[2]), n(f[3])],
                f[4],
            )
        })
        .collect();
    assert_eq!(rows.len(), 1060);
    // Four in flight: both cores busy, as under real traffic.
    let answers: Vec<(usize, serde_json::Value, String)> =
        futures::stream::iter(rows.iter().enumerate())
            .map(|(i, row)| {
                let host = &host;
                async move {
                    let out = classify(host, "sentiment", &format!("mr-{i}"), row.3).await;
                    assert_eq!(out.status, 200, "{}: {}", row.3, out.text());
                    let result = out.header("ce-sentimentresult").to_string();
                    (i, out.json(), result)
                }
            })
            .buffer_unordered(4)
            .collect()
            .await;
    let (mut max_delta, mut disagree, mut correct, mut ref_correct) = (0f64, 0, 0, 0);
    for (i, data, result) in answers {
        let (label, p_ref, logits_ref, text) = rows[i];
        let logits = [
            data["sentimentLogits"][0].as_f64().expect("logit 0"),
            data["sentimentLogits"][1].as_f64().expect("logit 1"),
        ];
        let p = data["sentimentScore"].as_f64().expect("sentimentScore");
        max_delta = max_delta
            .max((logits[0] - logits_ref[0]).abs())
            .max((logits[1] - logits_ref[1]).abs());
        assert!((p - p_ref).abs() < 1e-3, "{text:?}: p {p} vs {p_ref}");
        let (ours, theirs) = (logits[1] > logits[0], logits_ref[1] > logits_ref[0]);
        if ours != theirs {
            disagree += 1;
        }
        correct += usize::from(ours == (label == 1));
        ref_correct += usize::from(theirs == (label == 1));
        // The event's label follows the score and the default 0.1 band.
        let want = if (p - 0.5).abs() <= 0.05 {
            "neutral"
        } else if p > 0.5 {
            "positive"
        } else {
            "negative"
        };
        assert_eq!(result, want, "{text:?}: p {p}");
        assert_eq!(data["sentimentResult"], want);
        assert_eq!(data["reviewText"], text);
    }
    let accuracy = correct as f64 / 1060.0;
    println!(
        "sentiment on mr-dev-1060 through the host: max |Δlogit| vs onnxruntime = {max_delta:.2e}, \
         {disagree} decisions differ, accuracy {accuracy:.4} (reference {:.4})",
        ref_correct as f64 / 1060.0
    );
    assert!(max_delta <= 1e-3, "max |Δlogit| {max_delta}");
    assert_eq!(disagree, 0);
    assert_eq!(correct, ref_correct);
    assert_eq!(format!("{accuracy:.4}"), "0.8085");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_sequence_moderates_reviews_end_to_end() {
    let sink = Sink::accepting().await;
    let host = Host::start_default(&[("K_SINK", &sink.url)]).await;
    let headers = review_headers("review-1");
    let out = post(
        &host.url,
        &headers,
        r#"{"reviewText": "I absolutely loved this book"}"#,
    )
    .await;
    assert_eq!(out.status, 202, "{}", out.text());
    let hateful = post(
        &host.url,
        &ce_headers("review-2", "application/json"),
        r#"{"reviewText": "This is the worst fucking book, written by a worthless moron. I hate every stupid page of this shit"}"#,
    )
    .await;
    assert_eq!(hateful.status, 202, "{}", hateful.text());
    let got = sink.received();
    assert_eq!(got.len(), 2);
    let find = |id: &str| {
        got.iter()
            .find(|r| r.header("ce-id") == id)
            .unwrap_or_else(|| panic!("{id} not delivered"))
    };
    let good = find("review-1");
    assert_eq!(good.header("ce-type"), "moderated-comment");
    assert_eq!(good.header("ce-source"), "sentiment-analysis");
    assert_eq!(good.header("ce-sentimentresult"), "positive");
    assert_eq!(good.header("ce-badwordfilter"), "good");
    let data: serde_json::Value = serde_json::from_slice(&good.body).expect("json");
    assert_eq!(data["reviewText"], "I absolutely loved this book");
    assert_eq!(data["sentimentResult"], "positive");
    assert_eq!(data["badWordResult"], "good");
    assert!(data["sentimentScore"].as_f64().expect("score") > 0.9);

    let bad = find("review-2");
    assert_eq!(bad.header("ce-type"), "moderated-comment");
    assert_eq!(bad.header("ce-sentimentresult"), "negative");
    assert_eq!(bad.header("ce-badwordfilter"), "bad");
    let data: serde_json::Value = serde_json::from_slice(&bad.body).expect("json");
    assert!(data["sentimentScore"].as_f64().expect("score") < 0.1);

    // text/plain is accepted as the review text.
    let plain = post(
        &host.url,
        &ce_headers("review-3", "text/plain"),
        "A tedious, joyless slog.",
    )
    .await;
    assert_eq!(plain.status, 202, "{}", plain.text());
    let got = sink.received();
    let last = got
        .iter()
        .find(|r| r.header("ce-id") == "review-3")
        .expect("review-3");
    assert_eq!(last.header("ce-sentimentresult"), "negative");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_data_is_a_clear_cannot_retry_error() {
    let host = Host::start(
        &sentiment_step("sentiment", &[], Some("{sentiment: builtin:sentiment}")),
        &[],
    )
    .await;
    let out = post(
        &format!("{}/steps/sentiment", host.url),
        &ce_headers("bad-json", "application/json"),
        r#"{"reviewText": 5}"#,
    )
    .await;
    assert_eq!(out.status, 422, "{}", out.text());
    assert!(out.text().contains("reviewText"), "{}", out.text());
    let out = post(
        &format!("{}/steps/sentiment", host.url),
        &ce_headers("bytes", "application/octet-stream"),
        vec![0xffu8, 0x00, 0x12],
    )
    .await;
    assert_eq!(out.status, 422, "{}", out.text());
    assert!(out.text().contains("JSON object"), "{}", out.text());
    let out = classify(&host, "sentiment", "ok", "Warm and wise.").await;
    assert_eq!(out.status, 200, "{}", out.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_not_granted_the_model_cannot_load_it() {
    // Same component twice on one host: only `granted` may load the model.
    let manifest = format!(
        "{}{}",
        sentiment_step("granted", &[], Some("{sentiment: builtin:sentiment}")),
        sentiment_step("ungranted", &[], None),
    );
    let host = Host::start(&manifest, &[]).await;
    let out = classify(&host, "ungranted", "u-1", "A fine book.").await;
    assert_eq!(out.status, 422, "{}", out.text());
    let text = out.text();
    assert!(
        text.contains("loading model \\\"sentiment\\\"") && text.contains("NotFound"),
        "{text}"
    );
    // A name the granted step was not given is refused the same way.
    let other = sentiment_step(
        "other-name",
        &[("model", "secret")],
        Some("{sentiment: builtin:sentiment}"),
    );
    let host2 = Host::start(&other, &[]).await;
    let out = classify(&host2, "other-name", "o-1", "A fine book.").await;
    assert_eq!(out.status, 422, "{}", out.text());
    assert!(out.text().contains("NotFound"), "{}", out.text());
    // The granted step on the same host works.
    let out = classify(&host, "granted", "g-1", "A fine book.").await;
    assert_eq!(out.status, 200, "{}", out.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_input_tensors_are_refused_before_inference() {
    let step = sentiment_step(
        "small",
        &[("maxTokens", "512")],
        Some("{sentiment: {source: builtin:sentiment, maxInputElements: 64}}"),
    );
    let host = Host::start(&step, &[]).await;
    let long = "a long review that keeps going ".repeat(40);
    let out = classify(&host, "small", "big-1", &long).await;
    assert_eq!(out.status, 422, "{}", out.text());
    let text = out.text();
    assert!(
        text.contains("too large") && text.contains("at most 64 elements"),
        "{text}"
    );
    let out = classify(&host, "small", "small-1", "Short and sweet.").await;
    assert_eq!(out.status, 200, "{}", out.text());
    assert_eq!(out.header("ce-sentimentresult"), "positive");
}

/// CPU seconds the host's `stephost-nn-*` threads (the every-core inference
/// pool) have used, and how many such threads there are.
fn spread_pool_cpu(pid: u32) -> (usize, f64) {
    let ticks = 100.0; // USER_HZ on Linux
    let (mut threads, mut cpu) = (0, 0.0);
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).expect("tasks") {
        let dir = task.expect("task").path();
        let comm = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
        if !comm.starts_with("stephost-nn-") {
            continue;
        }
        threads += 1;
        let stat = std::fs::read_to_string(dir.join("stat")).unwrap_or_default();
        // Fields after the ")" that ends the name: utime and stime are 12th and 13th.
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map_or("", |(_, r)| r)
            .split_whitespace()
            .collect();
        let n = |i: usize| {
            fields
                .get(i)
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        cpu += (n(11) + n(12)) / ticks;
    }
    (threads, cpu)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lone_inference_spread_over_the_cores_gives_the_same_logits() {
    if std::thread::available_parallelism().map_or(1, |n| n.get()) < 2 {
        println!("one core: nothing to spread over");
        return;
    }
    let models = format!("{{sentiment: {:?}}}", model_path());
    let manifest = sentiment_step("sentiment", &[("includeLogits", "true")], Some(&models));
    let spread = Host::start(&manifest, &[]).await;
    let single = Host::start(&manifest, &["--no-spread-inference"]).await;
    let sentences: Vec<&str> = REFERENCE
        .lines()
        .take(40)
        .map(|l| l.splitn(5, '\t').nth(4).expect("sentence"))
        .collect();
    // One at a time: each inference is alone on the host.
    for (i, text) in sentences.iter().enumerate() {
        let a = classify(&spread, "sentiment", &format!("s-{i}"), text).await;
        let b = classify(&single, "sentiment", &format!("s-{i}"), text).await;
        assert_eq!(a.status, 200, "{}", a.text());
        assert_eq!(b.status, 200, "{}", b.text());
        assert_eq!(
            a.json()["sentimentLogits"],
            b.json()["sentimentLogits"],
            "{text:?}: spread and single-core logits must be bit-identical"
        );
    }
    let (threads, cpu) = spread_pool_cpu(spread.pid());
    assert_eq!(
        threads,
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    assert!(cpu > 0.0, "the every-core pool ran the lone inferences");
    assert_eq!(
        spread_pool_cpu(single.pid()).0,
        0,
        "no pool when spreading is off"
    );
}
