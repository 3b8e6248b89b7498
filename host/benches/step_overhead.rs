//! P1: per-event host overhead of a trivial Wasm step — fresh store +
//! instantiate + `handle` + drop — with the pooling allocator on and off.
//!
//! `dropper` measures the pure overhead (no output event); `appender` adds the
//! CloudEvent ⇄ WIT conversion and one data copy each way.
//! Run: `cargo bench -p stephost --bench step_overhead`.

// criterion's macros generate undocumented public functions.
#![allow(missing_docs)]

use std::hint::black_box;

use cloudevents::{EventBuilder, EventBuilderV10};
use criterion::{Criterion, criterion_group, criterion_main};
use stephost::app::builtin::{APPENDER, DROPPER};
use stephost::runtime::guest_event as event;
use stephost::runtime::{DEFAULT_KEEP_RESIDENT, Runtime, RuntimeConfig};
use stephost::step_limits::StepLimits;

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
            .data("text/plain", "hello")
            .build()
            .expect("event"),
    );
    let mut group = c.benchmark_group("step_overhead");
    // (name, pooling allocator, bytes kept resident per freed slot, PAGEMAP_SCAN)
    let variants = [
        ("pooling", true, DEFAULT_KEEP_RESIDENT, true),
        ("pooling-no-pagemap", true, DEFAULT_KEEP_RESIDENT, false),
        ("pooling-keep-1m", true, 1 << 20, true),
        ("pooling-keep-1m-no-pagemap", true, 1 << 20, false),
        ("pooling-keep-0", true, 0, false),
        ("on-demand", false, 0, false),
    ];
    for (allocator, pooling, keep_resident, pagemap_scan) in variants {
        let runtime = Runtime::new(RuntimeConfig {
            pooling,
            keep_resident,
            pagemap_scan,
            ..RuntimeConfig::default()
        })
        .expect("runtime");
        for (guest, path) in [("dropper", DROPPER), ("appender", APPENDER)] {
            let bytes = std::fs::read(path).expect("test guest built by build.rs");
            let step = runtime
                .compile(
                    path,
                    &bytes,
                    StepLimits::default(),
                    vec![("suffix".into(), "-b".into())],
                )
                .expect("compile");
            group.bench_function(format!("{guest}/{allocator}"), |b| {
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
