//! The *native* baseline of `bench/perf.py` (issue #8, P5): the default
//! Sequence's logic — content filter, then sentiment — compiled natively and
//! called in-process, no Wasm and no HTTP: the physical limit of the design.
//! It runs the very code the guests run (`content-filter-core`, and
//! `sentiment-core`'s tokenizer with the same model on tract) with the guests'
//! default settings (threshold 0.5, 128 tokens, neutral band 0.1), and does
//! the same JSON work per event (parse the review, write the result fields).
//!
//! `--threads` workers (closed loop, like `loadgen --concurrency`) run for
//! `--seconds`; prints one JSON object with events/s and latency percentiles.
//!
//! ```text
//! cargo run --release --example native_pipeline -- --threads 2 --seconds 10
//! ```

// An example binary: nothing public to document.
#![allow(missing_docs)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use serde_json::{Map, Value};
use stephost::registry::Builtins;

#[derive(Parser)]
struct Args {
    /// Worker threads, each scoring one event at a time.
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// How long to run.
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
}

/// The texts `loadgen` cycles through by default (same order, same mix).
const TEXTS: [&str; 4] = [
    "I absolutely loved this book, the characters felt real and the ending was perfect.",
    "This was a waste of money. Boring plot and flat writing.",
    "Decent read, nothing special but it passed the time on a long flight.",
    "What a sh1t book, the author is an idiot.",
];

/// Both models, loaded once and shared by every worker, as the host shares them.
struct Pipeline {
    filter: content_filter_core::Model,
    sentiment: sentiment_core::Model,
}

impl Pipeline {
    /// One event's data through both steps; the final event's data.
    fn run(&self, data: &[u8]) -> anyhow::Result<Vec<u8>> {
        let mut fields: Map<String, Value> = serde_json::from_slice(data)?;
        let Some(Value::String(text)) = fields.get("reviewText").cloned() else {
            anyhow::bail!("no reviewText");
        };
        // content-filter (mode label, threshold 0.5)
        let score = self
            .filter
            .score(&text)
            .map_err(|e| anyhow::anyhow!("content filter: {e}"))?
            .value();
        let verdict = if score > 0.5 { "bad" } else { "good" };
        fields.insert("badWordResult".into(), verdict.into());
        fields.insert("offensiveScore".into(), serde_json::json!(score));
        let between = serde_json::to_vec(&fields)?;
        // sentiment (maxTokens 128, neutralBand 0.1)
        let mut fields: Map<String, Value> = serde_json::from_slice(&between)?;
        let Some(Value::String(text)) = fields.get("reviewText") else {
            anyhow::bail!("no reviewText");
        };
        let ids = sentiment_core::encode(text, 128);
        let sentiment = self.sentiment.run(&ids)?;
        fields.insert("sentimentResult".into(), sentiment.label(0.1).into());
        fields.insert("sentimentScore".into(), serde_json::json!(sentiment.score));
        Ok(serde_json::to_vec(&fields)?)
    }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let model = stephost::app::builtin::EmbeddedGuests
        .model("sentiment")
        .ok_or_else(|| anyhow::anyhow!("no embedded sentiment model"))?;
    let pipeline = Arc::new(Pipeline {
        filter: content_filter_core::Model::load()
            .map_err(|e| anyhow::anyhow!("content filter: {e}"))?,
        sentiment: sentiment_core::Model::load(model)?,
    });
    let bodies: Arc<Vec<Vec<u8>>> = Arc::new(
        TEXTS
            .iter()
            .map(|t| {
                serde_json::json!({ "reviewText": t })
                    .to_string()
                    .into_bytes()
            })
            .collect(),
    );
    // Warm up: first runs build tract's buffers and the regex's DFA.
    for body in bodies.iter() {
        pipeline.run(body)?;
    }
    let duration = Duration::from_secs_f64(args.seconds);
    let started = Instant::now();
    let workers: Vec<_> = (0..args.threads.max(1))
        .map(|w| {
            let (pipeline, bodies) = (pipeline.clone(), bodies.clone());
            std::thread::spawn(move || -> anyhow::Result<Vec<f64>> {
                let mut ms = Vec::new();
                let mut n = w;
                while started.elapsed() < duration {
                    let t = Instant::now();
                    std::hint::black_box(pipeline.run(&bodies[n % bodies.len()])?);
                    ms.push(t.elapsed().as_secs_f64() * 1000.0);
                    n += args.threads;
                }
                Ok(ms)
            })
        })
        .collect();
    let mut ms = Vec::new();
    for worker in workers {
        ms.extend(
            worker
                .join()
                .map_err(|_| anyhow::anyhow!("worker panicked"))??,
        );
    }
    let elapsed = started.elapsed().as_secs_f64();
    anyhow::ensure!(!ms.is_empty(), "no event finished within --seconds");
    ms.sort_by(f64::total_cmp);
    let pct = |p: f64| ms[((ms.len() as f64 * p).ceil() as usize).clamp(1, ms.len()) - 1];
    println!(
        "{}",
        serde_json::json!({
            "label": "native",
            "threads": args.threads,
            "seconds": elapsed,
            "accepted": ms.len(),
            "accepted_per_s": ms.len() as f64 / elapsed,
            "p50_ms": pct(0.50),
            "p99_ms": pct(0.99),
        })
    );
    Ok(())
}
