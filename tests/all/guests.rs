//! One test per guest in `guests/`, each through the host's step endpoint
//! (`POST /steps/{name}`), which answers like a Knative subscriber.

use crate::support::{Host, ce_headers, post, wasm_step};
use stephost::app::builtin;

async fn host_for(name: &str, component: &str, config: &[(&str, &str)]) -> Host {
    Host::start(&wasm_step(name, component, config, ""), &[]).await
}

#[tokio::test]
pub async fn appender() {
    let host = host_for(
        "a",
        builtin::APPENDER,
        &[("suffix", "-x"), ("type", "appended")],
    )
    .await;
    let out = post(
        &format!("{}/steps/a", host.url),
        &ce_headers("1", "text/plain"),
        "in",
    )
    .await;
    assert_eq!(out.status, 200, "{}", out.text());
    assert_eq!(out.text(), "in-x");
    assert_eq!(out.header("ce-type"), "appended");
    assert_eq!(out.header("ce-id"), "1", "the appender clones its input");
}

#[tokio::test]
pub async fn dropper() {
    let host = host_for("d", builtin::DROPPER, &[]).await;
    let out = post(
        &format!("{}/steps/d", host.url),
        &ce_headers("1", "text/plain"),
        "in",
    )
    .await;
    assert_eq!(out.status, 202);
    assert!(out.body.is_empty(), "a drop has no body");
}

#[tokio::test]
pub async fn faulty() {
    let host = host_for("f", builtin::FAULTY, &[]).await;
    let url = format!("{}/steps/f", host.url);
    let out = post(&url, &ce_headers("1", "text/plain"), "pass").await;
    assert_eq!(out.status, 200, "no fault asked: forwarded unchanged");
    assert_eq!(out.text(), "pass");
    let mut headers = ce_headers("2", "text/plain");
    headers.push(("ce-fault", "bogus"));
    let out = post(&url, &headers, "x").await;
    assert_eq!(out.status, 422);
    assert!(out.text().contains("unknown fault mode"), "{}", out.text());
}

#[tokio::test]
pub async fn content_filter() {
    let host = host_for("cf", "builtin:content-filter", &[]).await;
    let url = format!("{}/steps/cf", host.url);
    let out = post(
        &url,
        &ce_headers("1", "application/json"),
        r#"{"reviewText":"what a shit book"}"#,
    )
    .await;
    assert_eq!(out.status, 200, "{}", out.text());
    assert_eq!(out.header("ce-badwordfilter"), "bad");
    assert_eq!(out.json()["badWordResult"], "bad");
    let out = post(
        &url,
        &ce_headers("2", "application/json"),
        r#"{"reviewText":"a lovely book"}"#,
    )
    .await;
    assert_eq!(out.header("ce-badwordfilter"), "good");
    let out = post(
        &url,
        &ce_headers("3", "application/xml"),
        "<review>no JSON</review>",
    )
    .await;
    assert_eq!(
        out.status,
        422,
        "data that is neither a JSON object nor text cannot be retried: {}",
        out.text()
    );
    let drop_host = host_for("cf", "builtin:content-filter", &[("mode", "drop")]).await;
    let out = post(
        &format!("{}/steps/cf", drop_host.url),
        &ce_headers("4", "application/json"),
        r#"{"reviewText":"what a shit book"}"#,
    )
    .await;
    assert_eq!(out.status, 202, "drop mode drops bad reviews");
}

#[tokio::test]
pub async fn sentiment() {
    let step =
        wasm_step("s", "builtin:sentiment", &[], "") + "  models: {sentiment: builtin:sentiment}\n";
    let host = Host::start(&step, &[]).await;
    let mut headers = ce_headers("1", "application/json");
    headers.push(("ce-badwordfilter", "good"));
    let out = post(
        &format!("{}/steps/s", host.url),
        &headers,
        r#"{"reviewText":"I loved it, wonderful"}"#,
    )
    .await;
    assert_eq!(out.status, 200, "{}", out.text());
    assert_eq!(out.header("ce-type"), "moderated-comment");
    assert_eq!(out.header("ce-sentimentresult"), "positive");
    assert_eq!(
        out.header("ce-badwordfilter"),
        "good",
        "input extensions are kept"
    );
    assert_eq!(out.json()["reviewText"], "I loved it, wonderful");
}

#[tokio::test]
pub async fn nn_probe() {
    let step = wasm_step("p", builtin::NN_PROBE, &[("action", "load-name")], "")
        + "  models: {sentiment: builtin:sentiment}\n";
    let host = Host::start(&step, &[]).await;
    let out = post(
        &format!("{}/steps/p", host.url),
        &ce_headers("1", "text/plain"),
        "sentiment",
    )
    .await;
    assert_eq!(out.status, 200, "{}", out.text());
    assert_eq!(out.text(), "loaded sentiment");
}

/// The in-guest variant (tract and the model inside the sandbox) answers like
/// the reference guest and the reference logits: only where inference runs
/// differs. Warm instances: loading the model in the guest takes seconds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
pub async fn sentiment_tract() {
    let step = wasm_step(
        "t",
        builtin::SENTIMENT_TRACT,
        &[("includeLogits", "true")],
        "{memory: 512Mi, timeout: PT120S}",
    ) + "  reuseInstances: true\n";
    let host = Host::start(&step, &[]).await;
    let reference = include_str!("../fixtures/sentiment/mr-dev-1060-ref.tsv");
    for line in reference.lines().take(3) {
        let f: Vec<&str> = line.splitn(5, '\t').collect();
        let want = [f[2].parse::<f64>().unwrap(), f[3].parse::<f64>().unwrap()];
        let out = post(
            &format!("{}/steps/t", host.url),
            &ce_headers("t", "text/plain"),
            f[4].to_string(),
        )
        .await;
        assert_eq!(out.status, 200, "{}", out.text());
        let data = out.json();
        for (i, w) in want.iter().enumerate() {
            let got = data["sentimentLogits"][i].as_f64().expect("logit");
            assert!((got - w).abs() < 1e-3, "{}: logit {i} {got} vs {w}", f[4]);
        }
        assert_eq!(out.header("ce-type"), "moderated-comment");
    }
}

#[tokio::test]
pub async fn wit_next() {
    // Built against stephost:step@0.2.0: refused at load, both versions named.
    let dir = tempfile::tempdir().expect("temp dir");
    let (code, text) = crate::support::serve_expect_refusal(
        &wasm_step("next", builtin::WIT_NEXT, &[], ""),
        dir.path(),
    );
    assert_ne!(code, Some(0), "{text}");
    assert!(
        text.contains("built against stephost:step@0.2.0")
            && text.contains("this host implements stephost:step@0.1.0"),
        "{text}"
    );
    // Its WIT is the SDK's with only the version changed.
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../guests");
    let sdk = std::fs::read_to_string(format!("{root}/sdk/wit/step.wit")).expect("sdk wit");
    let next = std::fs::read_to_string(format!("{root}/wit-next/wit/step.wit")).expect("next");
    assert_eq!(
        sdk.replace("stephost:step@0.1.0;", "stephost:step@0.2.0;"),
        next
    );
    assert!(sdk.contains(&format!(
        "package stephost:step@{};",
        stephost::runtime::STEP_WIT_VERSION
    )));
}
