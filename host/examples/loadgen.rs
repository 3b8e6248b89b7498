//! Load generator for stephost's benchmarks (`bench/overload.sh`, `bench/`):
//! CloudEvents over HTTP/1.1 keep-alive, either *closed loop* (N clients,
//! each sends its next event when the last is answered) or *open loop* (a
//! fixed rate, each event sent at its scheduled time whatever the server
//! does, latency measured from that time, so a slow server cannot hide its
//! queueing: no coordinated omission).
//!
//! Prints one JSON object: counts per status, accepted (2xx) throughput and
//! latency percentiles of accepted events. Hand-written instead of oha/wrk
//! because the overload measurement needs the p99 of *accepted* events
//! apart from the 429s, and an open loop at an exact rate.
//!
//! ```text
//! cargo run --release --example loadgen -- --url http://127.0.0.1:8080/ \
//!     --rate 400 --seconds 10
//! ```

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Parser;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

#[derive(Parser)]
struct Args {
    /// Where to POST the events.
    #[arg(long)]
    url: String,
    /// Open loop: events per second.
    #[arg(long, conflicts_with = "concurrency")]
    rate: Option<f64>,
    /// Closed loop: clients sending one event at a time.
    #[arg(long)]
    concurrency: Option<usize>,
    /// How long to send.
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// Review texts to cycle through, one per line (default: four built in).
    #[arg(long)]
    texts: Option<std::path::PathBuf>,
    /// `text/plain` sends each text as it is (for text steps such as the
    /// appender); otherwise it is wrapped as `{"reviewText": ...}` JSON.
    #[arg(long, default_value = "application/json")]
    content_type: String,
    /// A label copied into the output.
    #[arg(long, default_value = "")]
    label: String,
}

const TEXTS: [&str; 4] = [
    "I absolutely loved this book, the characters felt real and the ending was perfect.",
    "This was a waste of money. Boring plot and flat writing.",
    "Decent read, nothing special but it passed the time on a long flight.",
    "What a sh1t book, the author is an idiot.",
];

#[derive(Default)]
struct Tally {
    statuses: BTreeMap<String, u64>,
    accepted_ms: Vec<f64>,
    sent: u64,
}

fn main() {
    let args = Args::parse();
    let texts: Vec<String> = match &args.texts {
        Some(path) => std::fs::read_to_string(path)
            .expect("read --texts")
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(str::to_string)
            .collect(),
        None => TEXTS.iter().map(|t| t.to_string()).collect(),
    };
    let bodies: Arc<Vec<Bytes>> = Arc::new(
        texts
            .iter()
            .map(|t| match args.content_type.as_str() {
                "text/plain" => Bytes::from(t.clone()),
                _ => Bytes::from(serde_json::json!({ "reviewText": t }).to_string()),
            })
            .collect(),
    );
    let content_type: &'static str = match args.content_type.as_str() {
        "text/plain" => "text/plain",
        _ => "application/json",
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("tokio");
    let tally = Arc::new(Mutex::new(Tally::default()));
    let duration = Duration::from_secs_f64(args.seconds);
    let started = Instant::now();
    runtime.block_on(async {
        let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(4096)
            .build_http();
        let url: hyper::Uri = args.url.parse().expect("--url");
        let mut tasks = tokio::task::JoinSet::new();
        match (args.rate, args.concurrency) {
            (Some(rate), _) => {
                let interval = Duration::from_secs_f64(1.0 / rate);
                let mut next = tokio::time::Instant::now();
                let end = next + duration;
                let mut n: u64 = 0;
                while next < end {
                    tokio::time::sleep_until(next).await;
                    let (client, url, bodies, tally) =
                        (client.clone(), url.clone(), bodies.clone(), tally.clone());
                    let scheduled = next.into_std();
                    tasks.spawn(async move {
                        let event = (&bodies[..], n, content_type);
                        send(&client, &url, event, scheduled, &tally).await;
                    });
                    n += 1;
                    next += interval;
                    // Reap finished tasks so the set does not grow with the run.
                    while tasks.try_join_next().is_some() {}
                }
            }
            (None, concurrency) => {
                let clients = concurrency.unwrap_or(1).max(1);
                for c in 0..clients {
                    let (client, url, bodies, tally) =
                        (client.clone(), url.clone(), bodies.clone(), tally.clone());
                    tasks.spawn(async move {
                        let mut n = c as u64;
                        while started.elapsed() < duration {
                            let event = (&bodies[..], n, content_type);
                            send(&client, &url, event, Instant::now(), &tally).await;
                            n += clients as u64;
                        }
                    });
                }
            }
        }
        while tasks.join_next().await.is_some() {}
    });
    let elapsed = started.elapsed().as_secs_f64();
    let tally = tally.lock().expect("tally");
    let mut ms = tally.accepted_ms.clone();
    ms.sort_by(f64::total_cmp);
    let pct = |p: f64| {
        if ms.is_empty() {
            f64::NAN
        } else {
            ms[((ms.len() as f64 * p).ceil() as usize).clamp(1, ms.len()) - 1]
        }
    };
    let report = serde_json::json!({
        "label": args.label,
        "mode": if args.rate.is_some() { "open" } else { "closed" },
        "rate": args.rate,
        "concurrency": args.concurrency,
        "seconds": elapsed,
        "sent": tally.sent,
        "statuses": tally.statuses,
        "accepted": ms.len(),
        "accepted_per_s": ms.len() as f64 / elapsed,
        "p50_ms": pct(0.50),
        "p99_ms": pct(0.99),
        "max_ms": ms.last().copied().unwrap_or(f64::NAN),
    });
    println!("{report}");
}

/// Send event `n` (its data cycles through `bodies`, all of `content_type`);
/// record its status, and its latency from `scheduled` if 2xx.
async fn send(
    client: &Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>,
    url: &hyper::Uri,
    (bodies, n, content_type): (&[Bytes], u64, &str),
    scheduled: Instant,
    tally: &Mutex<Tally>,
) {
    let request = hyper::Request::post(url.clone())
        .header("content-type", content_type)
        .header("ce-specversion", "1.0")
        .header("ce-id", format!("load-{n}"))
        .header("ce-source", "/loadgen")
        .header("ce-type", "com.example.review")
        .body(Full::new(bodies[n as usize % bodies.len()].clone()))
        .expect("request");
    let status = match client.request(request).await {
        Ok(response) => {
            let status = response.status();
            // Read the whole answer: the event counts as done when it is.
            let _ = response.into_body().collect().await;
            status.as_u16().to_string()
        }
        Err(e) => format!(
            "error: {}",
            e.to_string().chars().take(60).collect::<String>()
        ),
    };
    let took = scheduled.elapsed().as_secs_f64() * 1000.0;
    let mut tally = tally.lock().expect("tally");
    tally.sent += 1;
    if status.starts_with('2') {
        tally.accepted_ms.push(took);
    }
    *tally.statuses.entry(status).or_default() += 1;
}
