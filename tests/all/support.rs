//! Test support: start the real `stephost` binary on a loopback port, record
//! what loopback sinks receive, and talk HTTP to both.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// The binary under test.
pub const STEPHOST: &str = env!("CARGO_BIN_EXE_stephost");

/// A running `stephost serve`; killed on drop.
pub struct Host {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    /// Where the host's stderr (its logs) goes.
    pub log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Host {
    /// Write `manifest` to a temp dir (component paths in it may be absolute)
    /// and serve it; waits until `/readyz` is 200.
    pub async fn start(manifest: &str, extra_args: &[&str]) -> Host {
        Self::start_with_env(manifest, extra_args, &[]).await
    }

    /// [`Host::start`] with extra environment variables.
    pub async fn start_with_env(manifest: &str, extra_args: &[&str], env: &[(&str, &str)]) -> Host {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("manifest.yaml");
        std::fs::write(&path, manifest).expect("write manifest");
        let mut args = vec!["--manifest", path.to_str().expect("utf-8 path")];
        args.extend_from_slice(extra_args);
        Self::spawn(dir, &args, env).await
    }

    /// Serve with these extra arguments only (e.g. a `--manifest` the test
    /// manages itself).
    pub async fn start_args(args: &[&str]) -> Host {
        Self::spawn(tempfile::tempdir().expect("temp dir"), args, &[]).await
    }

    /// [`Host::start_args`] with extra environment variables.
    pub async fn start_args_with_env(args: &[&str], env: &[(&str, &str)]) -> Host {
        Self::spawn(tempfile::tempdir().expect("temp dir"), args, env).await
    }

    /// Serve with no manifest: the built-in default Sequence.
    pub async fn start_default(env: &[(&str, &str)]) -> Host {
        Self::spawn(tempfile::tempdir().expect("temp dir"), &[], env).await
    }

    async fn spawn(dir: tempfile::TempDir, args: &[&str], env: &[(&str, &str)]) -> Host {
        let log = dir.path().join("stephost.log");
        let mut cmd = Command::new(STEPHOST);
        cmd.arg("serve")
            .args(["--host", "127.0.0.1", "--port", "0"])
            .args(args)
            .env_remove("K_SINK")
            .env_remove("K_CA_CERTS")
            .env_remove("PORT")
            .env("RUST_LOG", "info,stephost=debug")
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).expect("log file"));
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn stephost");
        let stdout = child.stdout.take().expect("stdout");
        let line = tokio::task::spawn_blocking(move || {
            let mut line = String::new();
            BufReader::new(stdout).read_line(&mut line).map(|_| line)
        })
        .await
        .expect("join")
        .expect("read stdout");
        let Some(url) = line.trim().strip_prefix("stephost listening on ") else {
            let _ = child.wait();
            panic!(
                "stephost did not start: {line:?}\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        };
        let host = Host {
            url: url.to_string(),
            child,
            log,
            _dir: dir,
        };
        host.wait_ready().await;
        host
    }

    async fn wait_ready(&self) {
        // Generous: a cold compile cache on a loaded 2-core machine.
        let deadline = Instant::now() + Duration::from_secs(300);
        loop {
            if let Ok(r) = get(&format!("{}/readyz", self.url)).await
                && r.status == 200
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "stephost not ready after 300 s:\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The host's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Wait (≤ `limit`) for the host to exit; its exit code, or `None` if it
    /// is still running.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<Option<i32>> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return Some(status.code());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// The host's logs so far.
    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Run `stephost ARGS` to completion (bounded): exit code and stderr.
pub fn run_to_end(args: &[&str]) -> (Option<i32>, String, String) {
    let output = Command::new(STEPHOST)
        .args(args)
        .env_remove("K_SINK")
        .env_remove("PORT")
        .stdin(Stdio::null())
        .output()
        .expect("run stephost");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Serve `stephost serve --manifest FILE --port 0` for a manifest expected to
/// be refused: returns exit code and stderr once the process ends (≤ 60 s).
pub fn serve_expect_refusal(manifest: &str, dir: &Path) -> (Option<i32>, String) {
    let path = dir.join("manifest.yaml");
    std::fs::write(&path, manifest).expect("write manifest");
    let mut child = Command::new(STEPHOST)
        .args(["serve", "--host", "127.0.0.1", "--port", "0", "--manifest"])
        .arg(&path)
        .env_remove("K_SINK")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            let mut stderr = String::new();
            use std::io::Read;
            child
                .stderr
                .take()
                .expect("stderr")
                .read_to_string(&mut stderr)
                .expect("read stderr");
            return (status.code(), stderr);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("stephost kept running with a bad manifest:\n{manifest}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// One HTTP exchange as seen by a client.
#[derive(Debug, Clone)]
pub struct Exchange {
    /// Status code.
    pub status: u16,
    /// Response headers.
    pub headers: HeaderMap,
    /// Response body.
    pub body: Bytes,
}

impl Exchange {
    /// A header as text ("" when absent).
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
}

/// POST with the given headers and body.
pub async fn post(url: &str, headers: &[(&str, &str)], body: impl Into<Bytes>) -> Exchange {
    let mut req = http::Request::post(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    send(req.body(Full::new(body.into())).expect("request"))
        .await
        .expect("POST")
}

/// Any method, headers and body.
pub async fn request(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> Exchange {
    let mut req = http::Request::builder().method(method).uri(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    send(req.body(Full::new(body.into())).expect("request"))
        .await
        .expect("request")
}

/// GET a URL.
pub async fn get(url: &str) -> Result<Exchange, String> {
    send(
        http::Request::get(url)
            .body(Full::new(Bytes::new()))
            .expect("request"),
    )
    .await
}

/// Send a request built by the caller (headers the helpers above cannot
/// express, such as raw UTF-8 values).
pub async fn send(req: http::Request<Full<Bytes>>) -> Result<Exchange, String> {
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let response = client.request(req).await.map_err(|e| e.to_string())?;
    let (parts, body) = response.into_parts();
    let body = body.collect().await.map_err(|e| e.to_string())?.to_bytes();
    Ok(Exchange {
        status: parts.status.as_u16(),
        headers: parts.headers,
        body,
    })
}

/// Binary-mode CloudEvent headers for a test event.
pub fn ce_headers<'a>(id: &'a str, content_type: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("ce-specversion", "1.0"),
        ("ce-id", id),
        ("ce-source", "/stephost/tests"),
        ("ce-type", "dev.stephost.test"),
        ("content-type", content_type),
    ]
}

/// [`ce_headers`] for a bookstore review: type `new-review-comment`, JSON.
pub fn review_headers(id: &str) -> Vec<(&str, &str)> {
    let mut headers = ce_headers(id, "application/json");
    for header in headers.iter_mut().filter(|(k, _)| *k == "ce-type") {
        header.1 = "new-review-comment";
    }
    headers
}

/// A request a sink received.
#[derive(Debug, Clone)]
pub struct Received {
    /// Request path.
    pub path: String,
    /// Request headers.
    pub headers: HeaderMap,
    /// Request body.
    pub body: Bytes,
    /// When it arrived.
    pub at: Instant,
}

impl Received {
    /// A header as text ("" when absent).
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
}

/// What a sink answers: a function of the request number (0-based) and request.
pub type Responder = Arc<dyn Fn(usize, &Received) -> Response + Send + Sync>;

/// An HTTP server on loopback that records every request.
pub struct Sink {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    received: Arc<Mutex<Vec<Received>>>,
    _server: tokio::task::JoinHandle<()>,
}

#[derive(Clone)]
struct SinkState {
    received: Arc<Mutex<Vec<Received>>>,
    responder: Responder,
    /// Wait this long before answering (a slow subscriber).
    delay: Duration,
}

impl Sink {
    /// A sink that answers 202 to everything.
    pub async fn accepting() -> Sink {
        Sink::with(Arc::new(|_, _| StatusCode::ACCEPTED.into_response())).await
    }

    /// A sink that answers every request with `status`.
    pub async fn status(status: u16) -> Sink {
        Sink::with(Arc::new(move |_, _| {
            StatusCode::from_u16(status)
                .expect("status")
                .into_response()
        }))
        .await
    }

    /// A sink with a custom responder.
    pub async fn with(responder: Responder) -> Sink {
        Sink::slow(responder, Duration::ZERO).await
    }

    /// A sink that waits `delay` before each answer.
    pub async fn slow(responder: Responder, delay: Duration) -> Sink {
        let (received, app, listener) = Self::parts(responder, delay).await;
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Sink {
            url,
            received,
            _server: server,
        }
    }

    /// A sink behind real TLS (`https://127.0.0.1:PORT`): every connection
    /// is a rustls handshake with `tls`'s certificate before HTTP.
    pub async fn tls(responder: Responder, tls: tokio_rustls::TlsAcceptor) -> Sink {
        let (received, app, listener) = Self::parts(responder, Duration::ZERO).await;
        let url = format!("https://{}", listener.local_addr().expect("addr"));
        let server = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (tls, app) = (tls.clone(), app.clone());
                tokio::spawn(async move {
                    // A client that does not trust us ends the handshake.
                    let Ok(stream) = tls.accept(tcp).await else {
                        return;
                    };
                    let service = hyper_util::service::TowerToHyperService::new(app);
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Sink {
            url,
            received,
            _server: server,
        }
    }

    async fn parts(
        responder: Responder,
        delay: Duration,
    ) -> (Arc<Mutex<Vec<Received>>>, Router, tokio::net::TcpListener) {
        let received = Arc::new(Mutex::new(Vec::new()));
        let state = SinkState {
            received: received.clone(),
            responder,
            delay,
        };
        let app = Router::new().fallback(record).with_state(state);
        let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .expect("bind sink");
        (received, app, listener)
    }

    /// Everything received so far.
    pub fn received(&self) -> Vec<Received> {
        self.received.lock().expect("lock").clone()
    }
}

async fn record(
    State(state): State<SinkState>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let request = Received {
        path: uri.path().to_string(),
        headers,
        body,
        at: Instant::now(),
    };
    let n = {
        let mut list = state.received.lock().expect("lock");
        list.push(request.clone());
        list.len() - 1
    };
    if !state.delay.is_zero() {
        tokio::time::sleep(state.delay).await;
    }
    (state.responder)(n, &request)
}

/// A responder that replies like Knative's appender: the same event (ce-*
/// headers copied) with `suffix` appended to its data, 200, binary mode.
pub fn echo_appending(suffix: &'static str) -> Responder {
    Arc::new(move |_, req: &Received| {
        let mut response = Response::new(axum::body::Body::from(
            [&req.body[..], suffix.as_bytes()].concat(),
        ));
        for (name, value) in &req.headers {
            if name.as_str().starts_with("ce-") || name == "content-type" {
                response.headers_mut().insert(name.clone(), value.clone());
            }
        }
        response
    })
}

/// A WasmStep document binding `name` to a built guest with config pairs.
pub fn wasm_step(name: &str, component: &str, config: &[(&str, &str)], limits: &str) -> String {
    let mut doc = format!(
        "---\napiVersion: stephost.dev/v1alpha1\nkind: WasmStep\nmetadata:\n  name: {name}\nspec:\n  component: {component}\n"
    );
    if !config.is_empty() {
        doc.push_str("  config:\n");
        for (k, v) in config {
            doc.push_str(&format!("    {k}: {v:?}\n"));
        }
    }
    if !limits.is_empty() {
        doc.push_str(&format!("  limits: {limits}\n"));
    }
    doc
}

/// A WasmStep `name` with versions v1 and v2 (components `v1`, `v2`) and
/// their traffic percents (v2 tagged `v2_tag` when given; the percents are
/// written as given, so a test can also declare a bad split), and `extra`
/// lines added to its spec (each `  key: value\n`).
pub fn two_versions(
    name: &str,
    (v1, v2): (&str, &str),
    (v1_percent, v2_percent): (u32, u32),
    v2_tag: Option<&str>,
    extra: &str,
) -> String {
    let tag = v2_tag.map(|t| format!(", tag: {t}")).unwrap_or_default();
    format!(
        "---
apiVersion: stephost.dev/v1alpha1
kind: WasmStep
metadata: {{name: {name}}}
spec:
  versions:
    - {{name: v1, component: {v1}}}
    - {{name: v2, component: {v2}}}
  traffic:
    - {{version: v1, percent: {v1_percent}}}
    - {{version: v2, percent: {v2_percent}{tag}}}
{extra}"
    )
}

/// A Sequence with a `delivery:` (flow-style YAML) on every step.
pub fn sequence_with_delivery(
    name: &str,
    steps: &[&str],
    reply: Option<&str>,
    delivery: &str,
) -> String {
    sequence(name, steps, reply)
        .replace(
            "    - uri:",
            &format!("    - delivery: {delivery}\n      uri:"),
        )
        .replace(
            "    - ref:",
            &format!("    - delivery: {delivery}\n      ref:"),
        )
}

/// A Sequence document whose steps are refs to Services named `steps`
/// (or `uri:` entries when a name starts with `http`), with an optional reply URI.
pub fn sequence(name: &str, steps: &[&str], reply: Option<&str>) -> String {
    let mut doc = format!(
        "---\napiVersion: flows.knative.dev/v1\nkind: Sequence\nmetadata:\n  name: {name}\nspec:\n  channelTemplate:\n    apiVersion: messaging.knative.dev/v1\n    kind: InMemoryChannel\n  steps:\n"
    );
    for step in steps {
        if step.starts_with("http") {
            doc.push_str(&format!("    - uri: {step}\n"));
        } else {
            doc.push_str(&format!(
                "    - ref:\n        apiVersion: serving.knative.dev/v1\n        kind: Service\n        name: {step}\n"
            ));
        }
    }
    if let Some(reply) = reply {
        doc.push_str(&format!("  reply:\n    uri: {reply}\n"));
    }
    doc
}
