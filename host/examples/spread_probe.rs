//! The threshold experiment of issue #22 (P3 at 1 client): how much faster is
//! one sentiment inference on a short review (15–18 tokens) spread over two
//! cores with tract's multithreaded executor, at tract's default threading
//! thresholds and at smaller ones? Prints ms per inference, one core against
//! two, for each (panel, element) threshold pair, each measured 3 s, twice.
//! Figures and the choice: bench/RESULTS.md; the host's values:
//! `runtime/nn/mod.rs`.
//!
//! ```text
//! cargo run --release --example spread_probe
//! ```

// An example binary: nothing public to document.
#![allow(missing_docs)]
use std::time::Instant;
use stephost::registry::Builtins;
use tract_linalg::multithread::{Executor, multithread_tract_scope};

fn main() -> anyhow::Result<()> {
    let bytes = stephost::app::builtin::EmbeddedGuests
        .model("sentiment")
        .unwrap();
    let model = sentiment_core::Model::load(bytes)?;
    let texts = [
        "I absolutely loved this book, the characters felt real and the ending was perfect.",
        "This was a waste of money. Boring plot and flat writing.",
    ];
    let ids: Vec<Vec<i64>> = texts
        .iter()
        .map(|t| sentiment_core::encode(t, 128))
        .collect();
    let exec = Executor::multithread_with_name(2, "probe");
    for (panel, elem) in [
        (64usize, 32768usize),
        (16, 4096),
        (8, 2048),
        (32, 4096),
        (64, 32768),
        (16, 4096),
        (8, 2048),
        (32, 4096),
    ] {
        tract_linalg::multithread::set_threading_panel_threshold(panel);
        {
            tract_linalg::multithread::set_threading_element_threshold(elem);
            for mode in ["single", "spread"] {
                let run = || -> anyhow::Result<f64> {
                    let t = Instant::now();
                    let mut n = 0;
                    while t.elapsed().as_secs_f64() < 3.0 {
                        match mode {
                            "single" => {
                                model.run(&ids[n % 2])?;
                            }
                            _ => {
                                let Executor::MultiThread(pool) = &exec else {
                                    unreachable!()
                                };
                                let e = exec.clone();
                                let m = &model;
                                let i = &ids[n % 2];
                                pool.install(|| multithread_tract_scope(e, || m.run(i)))?;
                            }
                        }
                        n += 1;
                    }
                    Ok(t.elapsed().as_secs_f64() / n as f64 * 1e3)
                };
                run()?;
                println!("panel {panel} elem {elem} {mode}: {:.3} ms", run()?);
            }
        }
    }
    Ok(())
}
