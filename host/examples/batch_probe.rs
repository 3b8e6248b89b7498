//! The batching experiment of issue #22 (P5): would running concurrent
//! sentiment inferences as one batch (padded to the longest, attention mask
//! over the padding) make each cheaper? Optimises the model for batch 1, 2
//! and 4, runs the load generator's four reviews through each on one thread
//! for 5 s, and prints the time per event and how far each batch's logits are
//! from batch 1's. Figures and the verdict: bench/RESULTS.md.
//!
//! ```text
//! cargo run --release --example batch_probe
//! ```

// An example binary: nothing public to document.
#![allow(missing_docs)]
use std::time::Instant;
use stephost::registry::Builtins;
use tract_onnx::prelude::*;
use tract_onnx::tract_hir::infer::{DimFact, GenericFactoid, ShapeFactoid};

const TEXTS: [&str; 4] = [
    "I absolutely loved this book, the characters felt real and the ending was perfect.",
    "This was a waste of money. Boring plot and flat writing.",
    "Decent read, nothing special but it passed the time on a long flight.",
    "What a sh1t book, the author is an idiot.",
];

fn plan(bytes: &[u8], batch: usize) -> TractResult<Arc<TypedRunnableModel>> {
    let mut model = tract_onnx::onnx().model_for_read(&mut &bytes[..])?;
    for i in 0..model.inputs.len() {
        let fact = model.input_fact(i)?.clone();
        let mut dims: TVec<DimFact> = fact.shape.dims().cloned().collect();
        dims[0] = GenericFactoid::Only(batch.to_dim());
        model.set_input_fact(
            i,
            InferenceFact {
                shape: ShapeFactoid::closed(dims),
                ..fact
            },
        )?;
    }
    model.into_optimized()?.into_runnable()
}

fn main() -> anyhow::Result<()> {
    let bytes = stephost::app::builtin::EmbeddedGuests
        .model("sentiment")
        .unwrap();
    let ids: Vec<Vec<i64>> = TEXTS
        .iter()
        .map(|t| sentiment_core::encode(t, 128))
        .collect();
    println!("lens {:?}", ids.iter().map(|v| v.len()).collect::<Vec<_>>());
    let mut reference = vec![];
    for batch in [1usize, 2, 4] {
        let p = plan(bytes, batch)?;
        let run = |start: usize| -> TractResult<Vec<[f32; 2]>> {
            let rows: Vec<&Vec<i64>> = (0..batch).map(|k| &ids[(start + k) % 4]).collect();
            let n = rows.iter().map(|r| r.len()).max().unwrap();
            let mut input = vec![0i64; batch * n];
            let mut mask = vec![0i64; batch * n];
            for (k, r) in rows.iter().enumerate() {
                input[k * n..k * n + r.len()].copy_from_slice(r);
                for m in &mut mask[k * n..k * n + r.len()] {
                    *m = 1;
                }
            }
            let out = p.run(tvec!(
                Tensor::from_shape(&[batch, n], &input)?.into_tvalue(),
                Tensor::from_shape(&[batch, n], &mask)?.into_tvalue()
            ))?;
            let v: Vec<f32> = out[0]
                .to_plain_array_view::<f32>()?
                .iter()
                .copied()
                .collect();
            Ok(v.chunks(2).map(|c| [c[0], c[1]]).collect())
        };
        for s in 0..4 {
            run(s)?;
        }
        if batch == 1 {
            reference = (0..4).map(|s| run(s).unwrap()[0]).collect();
        }
        let got = run(0)?;
        let diffs: Vec<f32> = got
            .iter()
            .enumerate()
            .map(|(k, l)| {
                (l[0] - reference[k % 4][0])
                    .abs()
                    .max((l[1] - reference[k % 4][1]).abs())
            })
            .collect();
        let t = Instant::now();
        let mut events = 0;
        let mut s = 0;
        while t.elapsed().as_secs_f64() < 5.0 {
            run(s)?;
            s += 1;
            events += batch;
        }
        let per = t.elapsed().as_secs_f64() / events as f64;
        println!(
            "batch {batch}: {:.3} ms per event (one thread), max |logit diff| vs batch 1 {:?}",
            per * 1e3,
            diffs
        );
    }
    Ok(())
}
