//! The tract backend of wasi:nn: an ONNX model parsed and optimised once per
//! host ([`load_onnx`]), with the names and types of its inputs and outputs
//! and its input limit. Nothing here knows wasi:nn's types (`resources.rs`
//! converts tensors).

use std::sync::Arc;
use std::time::{Duration, Instant};

use thiserror::Error;
use tract_onnx::prelude::{
    DatumType, Framework, InferenceFact, InferenceModel, InferenceModelExt, IntoRunnable, TVec,
    TractError, TractResult, TypedRunnableModel,
};
use tract_onnx::tract_hir::infer::{DimFact, GenericFactoid, ShapeFactoid};

/// Why a model could not be loaded at start.
#[derive(Debug, Error)]
pub enum ModelError {
    /// tract could not parse or optimise the graph.
    #[error("{origin}: not a model tract can run: {message}")]
    Tract {
        /// Where the model came from (path or builtin name).
        origin: String,
        /// tract's reason.
        message: String,
    },
}

/// A model, optimised and ready: what a granted name resolves to.
#[derive(Clone)]
pub struct LoadedModel {
    /// The optimised model, shared by every step granted it.
    pub(super) graph: Arc<TractGraph>,
    /// How long parsing and optimising took (reported at start).
    pub load_time: Duration,
}

/// Parse and optimise an ONNX model with tract. CPU-heavy (hundreds of ms for
/// a transformer): call it off the async reactor.
pub fn load_onnx(
    origin: &str,
    bytes: &[u8],
    max_input_elements: usize,
) -> Result<LoadedModel, ModelError> {
    let started = Instant::now();
    let graph =
        TractGraph::load(bytes, max_input_elements).map_err(|message| ModelError::Tract {
            origin: origin.to_string(),
            message,
        })?;
    Ok(LoadedModel {
        graph: Arc::new(graph),
        load_time: started.elapsed(),
    })
}

pub(super) type Plan = Arc<TypedRunnableModel>;

/// One optimised model: tract's plan plus what inputs it takes.
pub(super) struct TractGraph {
    /// tract's runnable plan, shared by concurrent inferences.
    pub(super) plan: Plan,
    /// (name, element type) of each input, in the graph's order.
    pub(super) inputs: Vec<(String, DatumType)>,
    /// Names of the outputs, in order.
    pub(super) outputs: Vec<String>,
    /// Most elements one input tensor may have.
    pub(super) max_input_elements: usize,
}

impl TractGraph {
    pub(super) fn load(bytes: &[u8], max_input_elements: usize) -> Result<Self, String> {
        let err = |e: TractError| format!("{e:#}");
        // tract can panic on malformed graphs: a bad model is an error, not a crash.
        let typed = std::panic::catch_unwind(|| {
            tract_onnx::onnx()
                .model_for_read(&mut &bytes[..])
                .and_then(batch_of_one)
                .and_then(|m| m.into_optimized())
        })
        .map_err(|_| "tract panicked while loading the model".to_string())?
        .map_err(err)?;
        let inputs = typed
            .input_outlets()
            .map_err(err)?
            .iter()
            .map(|o| {
                let fact = typed.outlet_fact(*o).map_err(err)?;
                Ok((typed.node(o.node).name.clone(), fact.datum_type))
            })
            .collect::<Result<Vec<_>, String>>()?;
        let outputs = typed
            .output_outlets()
            .map_err(err)?
            .iter()
            .map(|o| {
                typed
                    .outlet_label(*o)
                    .map(str::to_string)
                    .unwrap_or_else(|| typed.node(o.node).name.clone())
            })
            .collect();
        let plan = typed.into_runnable().map_err(err)?;
        Ok(Self {
            plan,
            inputs,
            outputs,
            max_input_elements,
        })
    }

    pub(super) fn input_names(&self) -> String {
        self.inputs
            .iter()
            .map(|(n, t)| format!("{n} ({t:?})"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Fix a symbolic leading (batch) dimension of every input to 1: a step runs
/// one event at a time, and tract optimises further (and some graphs, like a
/// BERT encoder's flatten of batch × sequence, only analyse at all) with one
/// symbol fewer. Other dimensions stay symbolic (e.g. the sequence).
fn batch_of_one(mut model: InferenceModel) -> TractResult<InferenceModel> {
    for i in 0..model.inputs.len() {
        let fact = model.input_fact(i)?.clone();
        if fact.shape.is_open() {
            continue;
        }
        let mut dims: TVec<DimFact> = fact.shape.dims().cloned().collect();
        let symbolic = match dims.first() {
            Some(GenericFactoid::Only(d)) => d.to_i64().is_err(),
            Some(GenericFactoid::Any) => true,
            None => false,
        };
        if symbolic {
            dims[0] = GenericFactoid::Only(1.into());
            let fact = InferenceFact {
                shape: ShapeFactoid::closed(dims),
                ..fact
            };
            model.set_input_fact(i, fact)?;
        }
    }
    Ok(model)
}
