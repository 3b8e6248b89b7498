//! The host's wasi:nn surface against a guest that misuses it (`nn-probe`):
//! raw model bytes are refused unless the manifest allows them, names are
//! limited to the grant, wrong inputs are wasi-nn errors with a message, and a
//! guest hoarding host tensor memory is stopped — each time the next event is
//! served normally.

use stephost::app::builtin;

use crate::support::{Host, ce_headers, post, wasm_step};

/// A real ONNX graph small enough to send as event data: the content
/// filter's 0.4 MB sparse model.
const SMALL_ONNX: &[u8] =
    include_bytes!("../../guests/content-filter/model/profanity_linear_sparse.onnx");

fn probe(name: &str, extra: &str) -> String {
    wasm_step(
        name,
        builtin::NN_PROBE,
        &[],
        "{memory: 64Mi, timeout: PT10S}",
    ) + "  models: {sentiment: builtin:sentiment}\n"
        + extra
}

async fn act(
    host: &Host,
    step: &str,
    action: &str,
    content_type: &str,
    body: Vec<u8>,
) -> crate::support::Exchange {
    let mut headers = ce_headers("probe", content_type);
    headers.push(("ce-action", action));
    post(&format!("{}/steps/{step}", host.url), &headers, body).await
}

/// After every refusal the same host still answers a normal request.
async fn still_serves(host: &Host, step: &str) {
    let out = act(host, step, "load-name", "text/plain", b"sentiment".to_vec()).await;
    assert_eq!(out.status, 200, "{}", out.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loading_model_bytes_is_refused_unless_the_manifest_allows_it() {
    let manifest = probe("locked", "") + &probe("open", "  allowModelLoad: true\n");
    let host = Host::start(&manifest, &[]).await;
    let out = act(
        &host,
        "locked",
        "load-bytes",
        "application/octet-stream",
        SMALL_ONNX.to_vec(),
    )
    .await;
    assert_eq!(out.status, 422, "{}", out.text());
    assert!(
        out.text().contains("Security") && out.text().contains("may not load model bytes"),
        "{}",
        out.text()
    );
    still_serves(&host, "locked").await;

    let out = act(
        &host,
        "open",
        "load-bytes",
        "application/octet-stream",
        SMALL_ONNX.to_vec(),
    )
    .await;
    assert_eq!(out.status, 200, "{}", out.text());
    assert_eq!(out.text(), "loaded");
    let out = act(
        &host,
        "open",
        "load-bytes",
        "application/octet-stream",
        b"not onnx".to_vec(),
    )
    .await;
    assert_eq!(out.status, 422, "{}", out.text());
    assert!(
        out.text().contains("not a model tract can run"),
        "{}",
        out.text()
    );
    still_serves(&host, "open").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_granted_names_load_and_wrong_inputs_are_errors_not_traps() {
    let host = Host::start(&probe("p", ""), &[]).await;
    let out = act(
        &host,
        "p",
        "load-name",
        "text/plain",
        b"../../etc/passwd".to_vec(),
    )
    .await;
    assert_eq!(out.status, 422, "{}", out.text());
    assert!(
        out.text().contains("NotFound") && out.text().contains("granted: sentiment"),
        "{}",
        out.text()
    );
    let out = act(&host, "p", "wrong-type", "text/plain", Vec::new()).await;
    assert_eq!(out.status, 422, "{}", out.text());
    assert!(
        out.text().contains("InvalidArgument") && out.text().contains("must be I64"),
        "{}",
        out.text()
    );
    still_serves(&host, "p").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guest_hoarding_host_tensor_memory_is_stopped_at_its_memory_limit() {
    let host = Host::start(&probe("p", ""), &[]).await;
    let out = act(&host, "p", "hoard", "text/plain", Vec::new()).await;
    assert_eq!(out.status, 500, "{}", out.text());
    assert!(
        out.text().contains("host memory") && out.text().contains("67108864"),
        "{}",
        out.text()
    );
    still_serves(&host, "p").await;
}
