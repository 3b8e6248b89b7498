//! The content filter's per-event cost: the scoring code native and
//! in-process (the physical limit) vs the `content-filter` step through the
//! host (CloudEvent → WIT → guest: normaliser + tract → WIT) on a fresh
//! instance per event of the pre-initialised component (the default: the
//! model is in the wizer snapshot), on warm reused instances, and on fresh
//! instances without pre-initialisation (the model is loaded every event).
//! Run: `cargo bench -p stephost --bench content_filter`.

// criterion's macros generate undocumented public functions.
#![allow(missing_docs)]

#[path = "fixtures/content_filter.rs"]
mod fixture;

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use stephost::runtime::{Runtime, RuntimeConfig};

use fixture::{REVIEW, content_filter, review_event};

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio");
    let native = content_filter_core::Model::load().expect("model");
    let input = review_event();
    let runtime = Runtime::new(RuntimeConfig::default()).expect("runtime");
    let fresh = content_filter(&runtime);
    let warm = fresh.clone().with_warm_instances();
    let unprepared = content_filter(
        &Runtime::new(RuntimeConfig {
            preinit: false,
            ..RuntimeConfig::default()
        })
        .expect("runtime"),
    );

    // The same, with 4 MiB of each freed memory slot kept resident
    // (--keep-resident 4Mi): fewer page faults for a guest with a big heap;
    // with PAGEMAP_SCAN (the default) only the pages touched are reset.
    let with_resident = |keep_resident: usize, pagemap_scan: bool| {
        content_filter(
            &Runtime::new(RuntimeConfig {
                keep_resident,
                pagemap_scan,
                ..RuntimeConfig::default()
            })
            .expect("runtime"),
        )
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
