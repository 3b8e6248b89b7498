//! The *http-chain* baseline of `bench/perf.py` (issue #8): a Sequence run
//! the Knative way, every step its own HTTP service and every hop a round trip
//! through a channel. Knative's InMemoryChannel dispatcher receives an event
//! on channel *i* (an HTTP POST), POSTs it to subscriber *i* in binary mode
//! with `Prefer: reply`, and POSTs the reply to channel *i + 1* — which is the
//! dispatcher itself again, over the network (Knative data plane: "Sequence"
//! wires step *i*'s reply to the next step's channel). This dispatcher does
//! exactly that on loopback, synchronously: the sender's request on channel 0
//! is answered only when the whole chain is done, with the last step's event
//! (200) — as stephost answers a Sequence without a `reply` — or 202 when a
//! step returned no event (the chain stops), or 502 when a step failed (one
//! attempt, as a Sequence without `delivery`).
//!
//! Hand-written instead of running Knative's own dispatcher: that needs a
//! cluster (no Kubernetes here). It forwards the CloudEvent as a binding
//! message (headers and body copied, not decoded), as the Go dispatcher does.
//!
//! ```text
//! cargo run --release --example chain_dispatcher -- --port 9000 \
//!     --step http://127.0.0.1:9001/steps/a --step http://127.0.0.1:9002/steps/b
//! ```

// An example binary: nothing public to document.
#![allow(missing_docs)]

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use clap::Parser;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};

#[derive(Parser)]
struct Args {
    /// Port to listen on (127.0.0.1).
    #[arg(long)]
    port: u16,
    /// The subscriber URL of each step, in order.
    #[arg(long = "step", required = true)]
    steps: Vec<String>,
}

/// The largest event body forwarded (the host's own default `--max-body`).
const MAX_BODY: usize = 4 << 20;

/// What every connection's handler shares.
struct Chain {
    /// Subscriber URL per channel index.
    steps: Vec<hyper::Uri>,
    /// `http://127.0.0.1:{port}`: where the next channel is reached.
    own: String,
    /// One pooled keep-alive client for subscribers and channels alike.
    client: Client<HttpConnector, Full<Bytes>>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let steps = args
        .steps
        .iter()
        .map(|s| s.parse())
        .collect::<Result<Vec<hyper::Uri>, _>>()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(serve(args.port, steps))
}

/// Accept connections until the process is killed.
async fn serve(port: u16, steps: Vec<hyper::Uri>) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    let chain = Arc::new(Chain {
        steps,
        own: format!("http://127.0.0.1:{port}"),
        client: Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(1024)
            .build_http(),
    });
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        let chain = chain.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                let chain = chain.clone();
                async move { Ok::<_, Infallible>(chain.channel(request).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

impl Chain {
    /// One channel: `/` is channel 0, `/channels/{i}` channel `i`.
    async fn channel(&self, request: Request<Incoming>) -> Response<Full<Bytes>> {
        let path = request.uri().path();
        let index = match path.strip_prefix("/channels/") {
            None if path == "/" => Some(0),
            Some(i) => i.parse::<usize>().ok().filter(|i| *i < self.steps.len()),
            None => None,
        };
        let Some(index) = index else {
            return answer(StatusCode::NOT_FOUND, format!("no channel at {path}"));
        };
        let (parts, body) = request.into_parts();
        let body = match Limited::new(body, MAX_BODY).collect().await {
            Ok(b) => b.to_bytes(),
            Err(e) => return answer(StatusCode::BAD_REQUEST, format!("body: {e}")),
        };
        // Deliver to the subscriber, then hand its reply to the next channel.
        let reply = match self
            .post(self.steps[index].clone(), &parts.headers, body, true)
            .await
        {
            Ok(r) => r,
            Err(e) => return answer(StatusCode::BAD_GATEWAY, format!("step {index}: {e}")),
        };
        if !reply.status().is_success() {
            return answer(
                StatusCode::BAD_GATEWAY,
                format!("step {index} answered {}", reply.status()),
            );
        }
        if !carries_event(reply.headers()) {
            return answer(StatusCode::ACCEPTED, String::new());
        }
        let (parts, body) = reply.into_parts();
        if index + 1 == self.steps.len() {
            let mut done = Response::new(Full::new(body));
            *done.headers_mut() = forwarded(&parts.headers);
            return done;
        }
        let next = format!("{}/channels/{}", self.own, index + 1);
        match self
            .post(next.parse().expect("own URL"), &parts.headers, body, false)
            .await
        {
            Ok(r) => {
                let (parts, body) = r.into_parts();
                let mut out = Response::new(Full::new(body));
                *out.status_mut() = parts.status;
                *out.headers_mut() = forwarded(&parts.headers);
                out
            }
            Err(e) => answer(
                StatusCode::BAD_GATEWAY,
                format!("channel {}: {e}", index + 1),
            ),
        }
    }

    /// POST an event (as received: binding headers + body) and read the answer.
    async fn post(
        &self,
        to: hyper::Uri,
        headers: &http::HeaderMap,
        body: Bytes,
        subscriber: bool,
    ) -> anyhow::Result<Response<Bytes>> {
        let mut request = Request::post(to).body(Full::new(body))?;
        *request.headers_mut() = forwarded(headers);
        if subscriber {
            request
                .headers_mut()
                .insert("prefer", http::HeaderValue::from_static("reply"));
        }
        let response = self.client.request(request).await?;
        let (parts, body) = response.into_parts();
        let body = Limited::new(body, MAX_BODY)
            .collect()
            .await
            .map_err(|e| anyhow::anyhow!("reply body: {e}"))?
            .to_bytes();
        Ok(Response::from_parts(parts, body))
    }
}

/// The headers a dispatcher forwards: the event's binding headers and
/// trace context (Knative's pass-through list, trimmed to what applies here).
fn forwarded(headers: &http::HeaderMap) -> http::HeaderMap {
    headers
        .iter()
        .filter(|(name, _)| {
            let n = name.as_str();
            n.starts_with("ce-") || n == "content-type" || n == "traceparent"
        })
        .map(|(n, v)| (n.clone(), v.clone()))
        .collect()
}

/// Whether a 2xx answer holds an event: binary mode (`ce-id`) or structured.
fn carries_event(headers: &http::HeaderMap) -> bool {
    headers.contains_key("ce-id")
        || headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/cloudevents+json"))
}

fn answer(status: StatusCode, message: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(message)));
    *response.status_mut() = status;
    response
}
