//! The sentiment step's per-event cost on one typical review (31 tokens):
//! native tract in-process (the physical limit), the reference step through
//! the host (guest tokenises, wasi:nn → tract in the host), and the in-guest
//! variant (tract + model inside the sandbox, `+simd128`, warm instance).
//! Also: model load/optimise time (host start), the in-guest model load, and
//! guest instantiate time (a fresh instance that fails on bad data right away).
//! Run: `cargo bench -p stephost --bench sentiment` (or `bench/sentiment.sh`,
//! which adds peak RSS of a real host after 1,000 events).

// criterion's macros generate undocumented public functions.
#![allow(missing_docs)]

use std::collections::HashMap;
use std::hint::black_box;
use std::time::{Duration, Instant};

use cloudevents::{EventBuilder, EventBuilderV10};
use criterion::{Criterion, criterion_group, criterion_main};
use stephost::app::builtin::{EmbeddedGuests, SENTIMENT_TRACT};
use stephost::registry::Builtins;
use stephost::runtime::guest_event as event;
use stephost::runtime::nn::{DEFAULT_MAX_INPUT_ELEMENTS, InferencePool, StepModels, load_onnx};
use stephost::runtime::{Runtime, RuntimeConfig};
use stephost::step_limits::StepLimits;

/// A typical review: 31 tokens with [CLS]/[SEP].
const REVIEW: &str = "I bought this for my daughter and honestly the plot was thin, \
    the characters were flat and the ending made no sense at all";

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn wit_event(data: serde_json::Value) -> stephost::runtime::WitEvent {
    event::to_wit(
        &EventBuilderV10::new()
            .id("b")
            .source("/bench")
            .ty("new-review-comment")
            .data("application/json", data)
            .build()
            .expect("event"),
    )
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio");
    let model_bytes = EmbeddedGuests.model("sentiment").expect("embedded model");
    let ids = sentiment_core::encode(REVIEW, 128);
    println!("review: {} tokens", ids.len());

    // Model load + optimise, as the host does at start (3 runs, median).
    let loads: Vec<Duration> = (0..3)
        .map(|_| {
            let t = Instant::now();
            black_box(load_onnx("bench", model_bytes, DEFAULT_MAX_INPUT_ELEMENTS).expect("load"));
            t.elapsed()
        })
        .collect();
    println!(
        "host model load + optimise (median of 3): {:?}",
        median(loads)
    );

    let native = sentiment_core::Model::load(model_bytes).expect("native model");
    let runtime = Runtime::new(RuntimeConfig::default()).expect("runtime");
    let limits = StepLimits {
        memory: 512 << 20,
        timeout: Duration::from_secs(120),
        ..StepLimits::default()
    };
    let sentiment_bytes = EmbeddedGuests.get("sentiment").expect("embedded sentiment");
    let loaded = load_onnx("bench", model_bytes, 512).expect("load");
    let pool: std::sync::Arc<InferencePool> = runtime.inference_pool();
    let models = StepModels::new(
        HashMap::from([("sentiment".to_string(), loaded)]),
        false,
        pool,
    );
    let step = runtime
        .compile("builtin:sentiment", sentiment_bytes, limits, vec![])
        .expect("compile sentiment")
        .with_models(models);
    let input = wit_event(serde_json::json!({ "reviewText": REVIEW }));
    let bad = wit_event(serde_json::json!({ "title": "no review text" }));

    let tract_bytes = std::fs::read(SENTIMENT_TRACT).expect("sentiment-tract component");
    let in_guest = runtime
        .compile(SENTIMENT_TRACT, &tract_bytes, limits, vec![])
        .expect("compile sentiment-tract")
        .with_warm_instances();
    let t = Instant::now();
    rt.block_on(in_guest.handle(input.clone()))
        .expect("in-guest first event");
    println!(
        "in-guest: first event (instantiate + model parse/optimise inside the sandbox): {:?}",
        t.elapsed()
    );

    let mut group = c.benchmark_group("sentiment");
    group.sample_size(30);
    group.measurement_time(Duration::from_secs(8));
    group.bench_function("native-tract-in-process", |b| {
        b.iter(|| {
            let ids = sentiment_core::encode(black_box(REVIEW), 128);
            black_box(native.run(&ids).expect("run"))
        })
    });
    group.bench_function("host-wasi-nn-fresh-instance", |b| {
        b.iter(|| black_box(rt.block_on(step.handle(input.clone())).expect("ran")))
    });
    group.bench_function("in-guest-tract-simd-warm-instance", |b| {
        b.iter(|| black_box(rt.block_on(in_guest.handle(input.clone())).expect("ran")))
    });
    group.sample_size(100);
    group.measurement_time(Duration::from_secs(3));
    group.bench_function("guest-instantiate-bad-data", |b| {
        b.iter(|| black_box(rt.block_on(step.handle(bad.clone())).is_err()))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
