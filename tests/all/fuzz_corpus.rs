//! The fuzz harnesses (`fuzz/src/lib.rs`, run under libFuzzer by
//! `scripts/fuzz.sh`) over the committed seed corpus and every past crash
//! (`fuzz/regressions/<target>/`): seconds, in every test run, so the
//! harnesses keep compiling and a fixed crash stays fixed.

#[path = "../../fuzz/src/lib.rs"]
#[allow(dead_code)]
mod harness;

use std::path::Path;

/// A harness: one input, panics on a finding.
type Harness = fn(&[u8]);

fn run_dir(target: &str, check: Harness) -> usize {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
    let mut count = 0;
    for dir in [
        root.join("seeds").join(target),
        root.join("regressions").join(target),
    ] {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries {
            let path = entry.expect("dir entry").path();
            let data = std::fs::read(&path).expect("read corpus file");
            let outcome = std::panic::catch_unwind(|| check(&data));
            assert!(outcome.is_ok(), "{target}: {} fails", path.display());
            count += 1;
        }
    }
    count
}

#[test]
fn every_seed_and_past_crash_passes_its_harness() {
    let targets: [(&str, Harness); 4] = [
        ("cloudevent_binary", harness::cloudevent_binary),
        ("cloudevent_structured", harness::cloudevent_structured),
        ("manifest", harness::manifest),
        ("normaliser", harness::normaliser),
    ];
    for (target, check) in targets {
        let n = run_dir(target, check);
        assert!(n >= 2, "{target}: only {n} corpus files");
    }
}
