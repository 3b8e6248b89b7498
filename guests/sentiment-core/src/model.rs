//! The sentiment model run in-process with tract (feature `tract`): the
//! native baseline of the benchmarks and the in-guest variant
//! (`guests/sentiment-tract`). The reference guest does not use this: the host
//! runs the model behind wasi:nn.

use std::sync::Arc;

use tract_onnx::prelude::*;
use tract_onnx::tract_hir::infer::{DimFact, GenericFactoid, ShapeFactoid};

use crate::Sentiment;

/// Why the model could not be loaded or run.
#[derive(Debug)]
pub struct ModelError(pub String);

impl std::fmt::Display for ModelError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ModelError {}

/// The optimised model, for batch 1 and any sequence length.
pub struct Model {
    plan: Arc<TypedRunnableModel>,
}

impl Model {
    /// Parse and optimise ONNX bytes (hundreds of ms natively: do it once).
    pub fn load(bytes: &[u8]) -> Result<Self, ModelError> {
        let err = |e: TractError| ModelError(format!("sentiment model: {e:#}"));
        let mut model = tract_onnx::onnx()
            .model_for_read(&mut &bytes[..])
            .map_err(err)?;
        // Batch 1, as the host's wasi-nn backend does (see host/src/nn.rs).
        for i in 0..model.inputs.len() {
            let fact = model.input_fact(i).map_err(err)?.clone();
            let mut dims: TVec<DimFact> = fact.shape.dims().cloned().collect();
            if let Some(first) = dims.first_mut() {
                *first = GenericFactoid::Only(1.into());
            }
            let fact = InferenceFact {
                shape: ShapeFactoid::closed(dims),
                ..fact
            };
            model.set_input_fact(i, fact).map_err(err)?;
        }
        let plan = model
            .into_optimized()
            .map_err(err)?
            .into_runnable()
            .map_err(err)?;
        Ok(Self { plan })
    }

    /// The model's answer on token ids from [`crate::encode`].
    pub fn run(&self, ids: &[i64]) -> Result<Sentiment, ModelError> {
        let err = |e: TractError| ModelError(format!("sentiment inference: {e:#}"));
        let n = ids.len();
        let input = Tensor::from_shape(&[1, n], ids).map_err(err)?;
        let mask = Tensor::from_shape(&[1, n], &vec![1i64; n]).map_err(err)?;
        let out = self
            .plan
            .run(tvec!(input.into_tvalue(), mask.into_tvalue()))
            .map_err(err)?;
        let logits = out[0].to_plain_array_view::<f32>().map_err(err)?;
        let v: Vec<f32> = logits.iter().copied().collect();
        match v.as_slice() {
            [a, b] => Ok(Sentiment::from_logits([*a, *b])),
            other => Err(ModelError(format!(
                "sentiment model: expected 2 logits, got {}",
                other.len()
            ))),
        }
    }
}
