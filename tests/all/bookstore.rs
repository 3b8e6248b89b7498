//! The reference steps as drop-ins for Knative's bookstore sample functions
//! (issue #21 items 11–15): the bad-word filter's and the sentiment
//! function's attributes and data fields, their defaults without
//! `reviewText`, content types read as the CloudEvents SDKs read them, and
//! `data` handed on byte for byte (host) or member for member (guests).

use crate::support::{Exchange, Host, ce_headers, post, wasm_step};
use stephost::app::builtin;

/// One host with the two reference steps and a passthrough (`faulty` with
/// no fault asked).
async fn bookstore_host() -> Host {
    let mut manifest = wasm_step("cf", builtin::CONTENT_FILTER, &[], "");
    manifest.push_str(&wasm_step("sentiment", builtin::SENTIMENT, &[], ""));
    manifest.push_str("  models: {sentiment: builtin:sentiment}\n");
    manifest.push_str(&wasm_step("pass", builtin::FAULTY, &[], ""));
    Host::start(&manifest, &[]).await
}

async fn to_step(host: &Host, step: &str, id: &str, content_type: &str, body: &str) -> Exchange {
    post(
        &format!("{}/steps/{step}", host.url),
        &ce_headers(id, content_type),
        body.to_string(),
    )
    .await
}

async fn structured(host: &Host, step: &str, data: &str) -> Exchange {
    let body = format!(
        r#"{{"specversion":"1.0","id":"s","source":"/t","type":"t","datacontenttype":"application/json","data":{data}}}"#
    );
    post(
        &format!("{}/steps/{step}", host.url),
        &[("content-type", "application/cloudevents+json")],
        body,
    )
    .await
}

const DATA: &str =
    r#"{"z": 1, "reviewText": "a lovely book", "a": 98765432109876543210987, "m": [1.0, 1e2]}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_is_handed_on_byte_for_byte_and_member_for_member() {
    let host = bookstore_host().await;
    // Item 11, host: structured-mode `data` reaches the step and the next
    // hop exactly as written (before: keys sorted, 9.876543210987654e+22).
    let out = structured(&host, "pass", DATA).await;
    assert_eq!(out.status, 200, "{}", out.text());
    assert_eq!(out.text(), DATA);
    let out = to_step(&host, "pass", "b", "application/json", DATA).await;
    assert_eq!(out.text(), DATA, "binary mode too");

    // Item 11, guests: the members a step does not touch keep their order
    // and exact numbers (serde_json's `arbitrary_precision` spells an
    // exponent `1e+2`: the same number, exactly); its own members follow.
    let kept = r#"{"z":1,"reviewText":"a lovely book","a":98765432109876543210987,"m":[1.0,1e+2],"#;
    for out in [
        structured(&host, "cf", DATA).await,
        to_step(&host, "cf", "c", "application/json", DATA).await,
    ] {
        assert_eq!(out.status, 200, "{}", out.text());
        let text = out.text();
        assert!(
            text.starts_with(&format!(
                r#"{kept}"badWordResult":"good","offensiveScore":"#
            )),
            "{text}"
        );
    }
    let out = structured(&host, "sentiment", DATA).await;
    assert_eq!(out.status, 200, "{}", out.text());
    let text = out.text();
    assert!(
        text.starts_with(&format!(
            r#"{kept}"badWordResult":"","sentimentResult":"positive","#
        )),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_content_filter_answers_as_the_samples_bad_word_filter() {
    let host = bookstore_host().await;
    // Item 12: the sample's attributes.
    let out = to_step(
        &host,
        "cf",
        "1",
        "application/json",
        r#"{"reviewText":"nice"}"#,
    )
    .await;
    assert_eq!(out.status, 200, "{}", out.text());
    assert_eq!(out.header("ce-type"), "new-review-comment");
    assert_eq!(out.header("ce-source"), "book-review-broker");
    assert_eq!(out.header("content-type"), "application/json");
    assert_eq!(out.header("ce-badwordfilter"), "good");
    assert_eq!(out.header("ce-id"), "1", "the id stays");
    // Item 14: no reviewText → the sample's default, an empty review.
    let out = to_step(&host, "cf", "2", "application/json", r#"{"title":"x"}"#).await;
    assert_eq!(out.status, 200, "{}", out.text());
    let json = out.json();
    assert_eq!(json["reviewText"], "");
    assert_eq!(json["badWordResult"], "good");
    assert_eq!(json["title"], "x");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sentiment_step_answers_as_the_samples_sentiment_function() {
    let host = bookstore_host().await;
    // Item 13: with no filter before it, the verdict is carried empty.
    let out = to_step(
        &host,
        "sentiment",
        "1",
        "application/json",
        r#"{"reviewText":"I loved it"}"#,
    )
    .await;
    assert_eq!(out.status, 200, "{}", out.text());
    assert_eq!(out.header("ce-type"), "moderated-comment");
    assert_eq!(out.header("ce-source"), "sentiment-analysis");
    assert!(
        out.headers.contains_key("ce-badwordfilter"),
        "{:?}",
        out.headers
    );
    assert_eq!(out.header("ce-badwordfilter"), "");
    assert_eq!(out.header("ce-sentimentresult"), "positive");
    assert_eq!(out.json()["badWordResult"], "");
    // The data's verdict, when the extension is missing, fills both.
    let out = to_step(
        &host,
        "sentiment",
        "2",
        "application/json",
        r#"{"reviewText":"I loved it","badWordResult":"good"}"#,
    )
    .await;
    assert_eq!(out.header("ce-badwordfilter"), "good");
    // Item 14: no reviewText → an empty review, neutral, 200.
    let out = to_step(&host, "sentiment", "3", "application/json", "{}").await;
    assert_eq!(out.status, 200, "{}", out.text());
    assert_eq!(out.header("ce-sentimentresult"), "neutral");
    let json = out.json();
    assert_eq!(json["reviewText"], "");
    assert_eq!(json["sentimentResult"], "neutral");
    assert_eq!(json["badWordResult"], "");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn content_types_are_read_as_the_cloudevents_sdks_read_them() {
    let host = bookstore_host().await;
    let review = r#"{"reviewText":"What a wonderful story"}"#;
    // Item 15: both steps read alike. A body that is a JSON object is the
    // review whatever the content type says (the Python and JavaScript SDKs
    // parse any body as JSON first); text/* that is not JSON is the review
    // text itself; anything else is a 422 naming what was expected.
    for step in ["cf", "sentiment"] {
        for content_type in [
            "application/x-www-form-urlencoded",
            "application/octet-stream",
            "application/xml",
            "text/plain",
        ] {
            let out = to_step(&host, step, "j", content_type, review).await;
            assert_eq!(out.status, 200, "{step} {content_type}: {}", out.text());
            assert_eq!(out.json()["reviewText"], "What a wonderful story");
        }
        for content_type in ["text/plain", "text/markdown; charset=utf-8"] {
            let out = to_step(&host, step, "t", content_type, "What a wonderful story").await;
            assert_eq!(out.status, 200, "{step} {content_type}: {}", out.text());
            assert_eq!(out.json()["reviewText"], "What a wonderful story");
        }
        for (content_type, body) in [
            ("application/xml", "<review>What a wonderful story</review>"),
            (
                "application/x-www-form-urlencoded",
                "reviewText=What+a+story",
            ),
            ("application/json", "[1, 2]"),
        ] {
            let out = to_step(&host, step, "x", content_type, body).await;
            assert_eq!(out.status, 422, "{step} {content_type}: {}", out.text());
            assert!(out.text().contains("JSON object"), "{}", out.text());
        }
    }
}
