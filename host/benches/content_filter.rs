//! The content filter's per-event cost: the scoring code native and
//! in-process (the physical limit) vs the `content-filter` step through the
//! host (CloudEvent → WIT → guest: normaliser + tract → WIT) on a fresh
//! instance per event of the pre-initialised component (the default: the
//! model is in the wizer snapshot), on warm reused instances, and on fresh
//! instances without pre-initialisation (the model is loaded every event).
//! Run: `cargo bench -p stephost --bench content_filter`.

// criterion's macros generate undocumented public functions.
#![allow(missing_docs)]

use std::hint::black_box;
use std::time::Duration;

use cloudevents::{EventBuilder, EventBuilderV10};
use criterion::{Criterion, criterion_group, criterion_main};
use stephost::builtin::{CONTENT_FILTER, EMBEDDED};
use stephost::event;
use stephost::runtime::{Runtime, RuntimeConfig, StepLimits};

/// A typical review: 30 tokens, one evasion.
const REVIEW: &str = "I bought this for my daughter and honestly the plot was sh1t, \
    the characters were flat and the ending made no sense at all, what a waste of money";

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio");
    let native = content_filter_core::Model::load().expect("model");
    let input = event::to_wit(
        &EventBuilderV10::new()
            .id("b")
            .source("/bench")
            .ty("new-review-comment")
            .data(
                "application/json",
                serde_json::json!({ "reviewText": REVIEW }),
            )
            .build()
            .expect("event"),
    );
    let runtime = Runtime::new(RuntimeConfig::default()).expect("runtime");
    let bytes = EMBEDDED
        .iter()
        .find(|(n, _)| *n == "content-filter")
        .map(|(_, b)| *b)
        .expect("embedded content-filter");
    let limits = StepLimits {
        timeout: Duration::from_secs(30),
        ..StepLimits::default()
    };
    let fresh = runtime
        .compile(CONTENT_FILTER, bytes, limits, vec![])
        .expect("compile");
    let warm = fresh.clone().with_warm_instances();
    let unprepared = Runtime::new(RuntimeConfig {
        preinit: false,
        ..RuntimeConfig::default()
    })
    .expect("runtime")
    .compile(CONTENT_FILTER, bytes, limits, vec![])
    .expect("compile");

    // The same, with 4 MiB of each freed memory slot kept resident
    // (--keep-resident 4Mi): fewer page faults for a guest with a big heap;
    // with PAGEMAP_SCAN (the default) only the pages touched are reset.
    let with_resident = |keep_resident: usize, pagemap_scan: bool| {
        Runtime::new(RuntimeConfig {
            keep_resident,
            pagemap_scan,
            ..RuntimeConfig::default()
        })
        .expect("runtime")
        .compile(CONTENT_FILTER, bytes, limits, vec![])
        .expect("compile")
    };
    let resident = with_resident(4 << 20, true);
    let resident_memset = with_resident(4 << 20, false);
    let resident_big = with_resident(32 << 20, true);
    let default_no_pagemap = with_resident(stephost::runtime::DEFAULT_KEEP_RESIDENT, false);
    let mut group = c.benchmark_group("content_filter");
    group.bench_function("native", |b| {
        b.iter(|| black_box(native.score(black_box(REVIEW)).expect("score")))
    });
    group.bench_function("host-fresh-instance-preinitialised", |b| {
        b.iter(|| black_box(rt.block_on(fresh.handle(input.clone())).expect("ran")))
    });
    group.bench_function("host-fresh-instance-preinitialised-no-pagemap", |b| {
        b.iter(|| {
            black_box(
                rt.block_on(default_no_pagemap.handle(input.clone()))
                    .expect("ran"),
            )
        })
    });
    group.bench_function("host-fresh-instance-preinitialised-4MiB-resident", |b| {
        b.iter(|| black_box(rt.block_on(resident.handle(input.clone())).expect("ran")))
    });
    group.bench_function("host-fresh-instance-preinitialised-32MiB-resident", |b| {
        b.iter(|| {
            black_box(
                rt.block_on(resident_big.handle(input.clone()))
                    .expect("ran"),
            )
        })
    });
    group.bench_function(
        "host-fresh-instance-preinitialised-4MiB-resident-no-pagemap",
        |b| {
            b.iter(|| {
                black_box(
                    rt.block_on(resident_memset.handle(input.clone()))
                        .expect("ran"),
                )
            })
        },
    );
    group.bench_function("host-warm-instance", |b| {
        b.iter(|| black_box(rt.block_on(warm.handle(input.clone())).expect("ran")))
    });
    group.sample_size(10);
    group.bench_function("host-fresh-instance-not-preinitialised", |b| {
        b.iter(|| black_box(rt.block_on(unprepared.handle(input.clone())).expect("ran")))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
