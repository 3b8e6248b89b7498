//! The reference content filter through the real host: the same scores as
//! alt-profanity-check on real comments, evasions caught, innocent words
//! passed, and its place in the default Sequence.

use crate::support::{Host, Sink, ce_headers, post, wasm_step};

const DEV: &str = include_str!("../fixtures/content-filter/offensive-dev-2000.tsv");
const REFERENCE: &str = include_str!("../fixtures/content-filter/reference-scores.txt");

async fn filter(config: &[(&str, &str)]) -> Host {
    let step = wasm_step("cf", "builtin:content-filter", config, "")
        .replace("spec:\n", "spec:\n  reuseInstances: true\n");
    Host::start(&step, &[]).await
}

async fn score(host: &Host, text: &str) -> (f64, String) {
    let body = serde_json::json!({ "reviewText": text }).to_string();
    let out = post(
        &format!("{}/steps/cf", host.url),
        &ce_headers("cf", "application/json"),
        body,
    )
    .await;
    assert_eq!(out.status, 200, "{text:?}: {}", out.text());
    let data = out.json();
    let p = data["offensiveScore"].as_f64().expect("offensiveScore");
    assert_eq!(
        out.header("ce-badwordfilter"),
        data["badWordResult"].as_str().unwrap_or("")
    );
    (p, out.header("ce-badwordfilter").to_string())
}

fn precision_recall(labels: &[bool], predicted: &[bool]) -> (f64, f64) {
    let tp = labels
        .iter()
        .zip(predicted)
        .filter(|(l, p)| **l && **p)
        .count() as f64;
    let fp = labels
        .iter()
        .zip(predicted)
        .filter(|(l, p)| !**l && **p)
        .count() as f64;
    let fn_ = labels
        .iter()
        .zip(predicted)
        .filter(|(l, p)| **l && !**p)
        .count() as f64;
    (tp / (tp + fp), tp / (tp + fn_))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scores_on_2000_real_comments_equal_alt_profanity_check() {
    let raw = filter(&[("normalize", "false")]).await;
    let normalized = filter(&[]).await;
    let rows: Vec<(bool, &str)> = DEV
        .lines()
        .map(|l| {
            let (label, text) = l.split_once('\t').expect("label<TAB>text");
            (label == "1", text)
        })
        .collect();
    let reference: Vec<f64> = REFERENCE
        .lines()
        .map(|l| l.parse().expect("float"))
        .collect();
    assert_eq!(rows.len(), 2000);
    assert_eq!(reference.len(), rows.len());
    let (mut max_delta, mut flipped) = (0f64, 0);
    let (mut raw_pred, mut norm_pred, mut ref_pred) = (Vec::new(), Vec::new(), Vec::new());
    for ((_, text), want) in rows.iter().zip(&reference) {
        let (got, verdict) = score(&raw, text).await;
        max_delta = max_delta.max((got - want).abs());
        if (got > 0.5) != (*want > 0.5) {
            flipped += 1;
        }
        assert_eq!(verdict == "bad", got > 0.5);
        raw_pred.push(got > 0.5);
        ref_pred.push(*want > 0.5);
        norm_pred.push(score(&normalized, text).await.0 > 0.5);
    }
    let labels: Vec<bool> = rows.iter().map(|(l, _)| *l).collect();
    let (rp, rr) = precision_recall(&labels, &ref_pred);
    let (gp, gr) = precision_recall(&labels, &raw_pred);
    let (np, nr) = precision_recall(&labels, &norm_pred);
    println!(
        "content-filter on offensive-dev-2000: max |Δ| vs alt-profanity-check 1.9.1 = {max_delta:.2e}, {flipped} decisions flipped"
    );
    println!("  alt-profanity-check (Python): precision {rp:.4} recall {rr:.4}");
    println!("  guest, raw model:             precision {gp:.4} recall {gr:.4}");
    println!("  guest, with normaliser:       precision {np:.4} recall {nr:.4}");
    assert!(max_delta <= 1e-5, "max |Δ| {max_delta}");
    assert_eq!(flipped, 0);
}

/// Evasions that alt-profanity-check alone misses: each must score bad.
const EVASIONS: &[&str] = &[
    "you are a piece of sh1t",
    "what a $h!t book",
    "f*ck this author",
    "this is sh*t",
    "s.h.i.t writing",
    "f u c k this book",
    "b-i-t-c-h please",
    "shiiiiiit story",
    "fuuuuuck off",
    "ｆｕｃｋ this",
    "fuсk this (Cyrillic с)",
    "ѕhit plot (Cyrillic ѕ)",
    "f\u{200B}u\u{200B}c\u{200B}k you",
    "fùçk the publisher",
    "what an @ssh0le",
    "a b1tch of a book",
];

/// Innocent words that contain a bad one (the Scunthorpe problem).
const INNOCENT: &[&str] = &[
    "I grew up in Scunthorpe",
    "A thorough assessment of the war",
    "The cockpit scenes are gripping",
    "Shiitake mushrooms feature in chapter two",
    "Set in Penistone, Yorkshire",
    "It cost $5 in 2019 and 4 of us read it",
    "Class of 1999, an assiduous and classic analysis",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evasions_are_caught_and_the_scunthorpe_set_passes() {
    let host = filter(&[]).await;
    let plain = filter(&[("normalize", "false")]).await;
    let mut missed_by_original = 0;
    for text in EVASIONS {
        let (p, verdict) = score(&host, text).await;
        assert_eq!(verdict, "bad", "evasion not caught: {text:?} scored {p}");
        if score(&plain, text).await.1 == "good" {
            missed_by_original += 1;
        }
    }
    for text in INNOCENT {
        let (p, verdict) = score(&host, text).await;
        assert_eq!(
            verdict, "good",
            "innocent text flagged: {text:?} scored {p}"
        );
    }
    println!(
        "evasions: {} of {} caught (alt-profanity-check alone misses {missed_by_original})",
        EVASIONS.len(),
        EVASIONS.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_the_default_sequence_offensive_reviews_are_labelled_or_dropped() {
    let sink = Sink::accepting().await;
    let host = Host::start_default(&[("K_SINK", &sink.url)]).await;
    let out = post(
        &host.url,
        &ce_headers("bad-1", "application/json"),
        r#"{"reviewText":"This book is sh1t, the author is a f*cking idiot"}"#,
    )
    .await;
    assert_eq!(out.status, 202, "{}", out.text());
    let got = sink.received();
    assert_eq!(got[0].header("ce-badwordfilter"), "bad");
    let data: serde_json::Value = serde_json::from_slice(&got[0].body).expect("json");
    assert_eq!(data["badWordResult"], "bad");
    assert!(data["offensiveScore"].as_f64().unwrap_or(0.0) > 0.5);

    // drop mode: the chain stops, the sender is acknowledged.
    let seq =
        include_str!("../../manifests/default-sequence.yaml").replace("mode: label", "mode: drop");
    let drop_sink = Sink::accepting().await;
    let dropping = Host::start_with_env(&seq, &[], &[("K_SINK", &drop_sink.url)]).await;
    let out = post(
        &dropping.url,
        &ce_headers("bad-2", "application/json"),
        r#"{"reviewText":"what a load of shit"}"#,
    )
    .await;
    assert_eq!(out.status, 202);
    assert!(
        drop_sink.received().is_empty(),
        "a dropped event must not reach the reply"
    );
    let out = post(
        &dropping.url,
        &ce_headers("good-1", "application/json"),
        r#"{"reviewText":"a charming, well written story"}"#,
    )
    .await;
    assert_eq!(out.status, 202);
    assert_eq!(drop_sink.received().len(), 1);
}
