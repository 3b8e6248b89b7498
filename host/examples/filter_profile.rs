//! Runs the content filter's per-event path in a loop, for a profiler to
//! watch: `perf record -F 2000 -- target/release/examples/filter_profile
//! fresh 20000` (with `fresh`, `warm` or `native`; `all` interleaves the
//! three in rounds and compares their medians; an optional third argument
//! sets the bytes kept resident per freed slot). Prints the mean time per
//! event and the minor page faults the loop took, so a change to the guest
//! or the runtime settings can be judged by where its time goes, not only by
//! the criterion bench's medians. Guest functions are named in `perf report`
//! (the runtime writes /tmp/perf-<pid>.map).

#[path = "../benches/fixtures/content_filter.rs"]
mod fixture;

use std::time::Instant;

use stephost::runtime::{Runtime, RuntimeConfig};

use fixture::{REVIEW, content_filter, review_event};

/// Minor page faults of this process so far (getrusage via /proc).
fn minor_faults() -> u64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Field 10 (minflt), counted after the parenthesised command name.
    stat.rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().nth(7))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let mode = args.next().unwrap_or_else(|| "fresh".into());
    let n: u32 = args.next().and_then(|v| v.parse().ok()).unwrap_or(10_000);
    let keep_resident: Option<usize> = args.next().and_then(|v| v.parse().ok());
    let modes: Vec<&str> = match mode.as_str() {
        "all" => vec!["native", "warm", "fresh"],
        one @ ("native" | "warm" | "fresh") => vec![one],
        other => {
            eprintln!(
                "unknown mode {other:?}\nusage: filter_profile [all|native|warm|fresh] [EVENTS] [KEEP_RESIDENT_BYTES]"
            );
            std::process::exit(2);
        }
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio");
    let input = review_event();
    // Cached compilation keeps Cranelift out of the profile after a first run.
    let mut config = RuntimeConfig {
        perfmap: true,
        cache_dir: Some(std::env::temp_dir().join("stephost-filter-profile-cache")),
        ..RuntimeConfig::default()
    };
    if let Some(bytes) = keep_resident {
        config.keep_resident = bytes;
    }
    let runtime = Runtime::new(config).expect("runtime");
    let step = content_filter(&runtime);
    let native = content_filter_core::Model::load().expect("model");
    let warm = step.clone().with_warm_instances();
    let run = |mode: &str| match mode {
        "native" => {
            std::hint::black_box(native.score(REVIEW).expect("score"));
        }
        "warm" => {
            std::hint::black_box(rt.block_on(warm.handle(input.clone())).expect("ran"));
        }
        _fresh => {
            std::hint::black_box(rt.block_on(step.handle(input.clone())).expect("ran"));
        }
    };
    for mode in &modes {
        for _ in 0..100 {
            run(mode);
        }
    }
    // Rounds of `n` events per mode, interleaved, so a noisy neighbour
    // slows every mode alike; the median round is reported.
    let rounds = if modes.len() > 1 { 9 } else { 1 };
    let mut means: Vec<Vec<f64>> = vec![Vec::new(); modes.len()];
    let mut faults = vec![0u64; modes.len()];
    for _ in 0..rounds {
        for (i, mode) in modes.iter().enumerate() {
            let before = minor_faults();
            let started = Instant::now();
            for _ in 0..n {
                run(mode);
            }
            means[i].push(started.elapsed().as_secs_f64() * 1e6 / f64::from(n));
            faults[i] += minor_faults() - before;
        }
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let medians: Vec<f64> = means.iter_mut().map(median).collect();
    for (i, mode) in modes.iter().enumerate() {
        println!(
            "{mode}: {:.1} µs/event (median of {rounds} rounds of {n}), {:.1} minor faults/event, {:.2}x the first",
            medians[i],
            faults[i] as f64 / f64::from(n * rounds),
            medians[i] / medians[0]
        );
    }
}
