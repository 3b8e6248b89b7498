//! Steps in three languages, per event: a fresh instance of the component,
//! `handle`, drop — the Rust `appender`, and the keyword taggers in Python
//! (componentize-py) and JavaScript (jco / componentize-js). Each also with
//! `--keep-resident 32Mi` (a freed slot keeps the pages an instance dirtied,
//! up to 32 MiB, instead of 4 MiB) and with `reuseInstances: true` (a warm
//! instance per event instead of a fresh one). Before timing,
//! prints each component's size, its Cranelift compile time and the smallest
//! `limits.memory` it instantiates in, so one run gives every figure of
//! docs/steps.md "Steps in Python and JavaScript".
//!
//! Run: `guests/build-polyglot.sh && cargo bench -p stephost --bench polyglot`.

// criterion's macros generate undocumented public functions.
#![allow(missing_docs)]

use std::hint::black_box;
use std::time::Instant;

use cloudevents::{EventBuilder, EventBuilderV10};
use criterion::{Criterion, criterion_group, criterion_main};
use stephost::app::builtin::APPENDER;
use stephost::runtime::guest_event as event;
use stephost::runtime::{Runtime, RuntimeConfig, WitEvent};
use stephost::step_limits::StepLimits;

/// A step's settings, as (key, value).
type Settings = &'static [(&'static str, &'static str)];

/// (name, component, settings) of the three steps.
const STEPS: [(&str, &str, Settings); 3] = [
    ("rust-appender", APPENDER, &[("suffix", "!")]),
    (
        "python-tagger",
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../guests/py-tagger/py-tagger.wasm"
        ),
        &[("keywords", "love,broken,refund")],
    ),
    (
        "js-tagger",
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../guests/js-tagger/js-tagger.wasm"
        ),
        &[("keywords", "love,broken,refund")],
    ),
];

/// The smallest whole MiB of linear memory `bytes` instantiates and handles
/// `input` in (bisection over 1..=64 MiB; each probe compiles from the
/// runtime's compile cache).
fn smallest_memory(
    rt: &tokio::runtime::Runtime,
    runtime: &Runtime,
    bytes: &[u8],
    input: &WitEvent,
) -> u64 {
    let works = |mib: u64| {
        let limits = StepLimits {
            memory: mib << 20,
            ..StepLimits::default()
        };
        runtime
            .compile("probe", bytes, limits, vec![])
            .ok()
            .and_then(|step| rt.block_on(step.handle(input.clone())).ok())
            .is_some()
    };
    let (mut lo, mut hi) = (0, 64);
    while hi - lo > 1 {
        let mid = (lo + hi) / 2;
        if works(mid) { hi = mid } else { lo = mid }
    }
    hi
}

/// Settings as the runtime takes them.
fn step_config(settings: &[(&str, &str)]) -> Vec<(String, String)> {
    settings
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let input = event::to_wit(
        &EventBuilderV10::new()
            .id("bench-1")
            .source("/bench")
            .ty("dev.stephost.bench")
            .data("text/plain", "I love it but it came broken")
            .build()
            .expect("event"),
    );
    // A fresh compile cache: the first compile of each step is Cranelift's
    // (timed), the memory probes then load it from the cache.
    let cache = tempfile::tempdir().expect("temp dir");
    let runtime = Runtime::new(RuntimeConfig {
        cache_dir: Some(cache.path().to_path_buf()),
        ..RuntimeConfig::default()
    })
    .expect("runtime");
    let roomy = Runtime::new(RuntimeConfig {
        cache_dir: Some(cache.path().to_path_buf()),
        keep_resident: 32 << 20,
        ..RuntimeConfig::default()
    })
    .expect("runtime");
    let mut group = c.benchmark_group("polyglot");
    for (name, path, settings) in STEPS {
        let bytes = std::fs::read(path)
            .unwrap_or_else(|e| panic!("{path}: {e} (build it with guests/build-polyglot.sh)"));
        let started = Instant::now();
        let step = runtime
            .compile(path, &bytes, StepLimits::default(), step_config(settings))
            .expect("compile");
        let compile = started.elapsed();
        let memory = smallest_memory(&rt, &runtime, &bytes, &input);
        println!(
            "polyglot/{name}: component {:.2} MB, compile {:.2} s, smallest limits.memory {memory} MiB",
            bytes.len() as f64 / 1e6,
            compile.as_secs_f64()
        );
        let variants = [
            ("fresh", step.clone()),
            (
                "fresh-keep-32m",
                roomy
                    .compile(path, &bytes, StepLimits::default(), step_config(settings))
                    .expect("compile"),
            ),
            ("reused", step.with_warm_instances()),
        ];
        for (variant, step) in variants {
            group.bench_function(format!("{name}/{variant}"), |b| {
                b.iter(|| {
                    let out = rt.block_on(step.handle(input.clone()));
                    black_box(out).expect("step ran");
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
