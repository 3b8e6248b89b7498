//! The tract backend of wasi:nn: an ONNX model parsed and optimised once per host ([`load_onnx`]),
//! its inputs checked against the model's limits, one inference run, outputs turned into wasi:nn
//! tensors.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::bindings::wasi::nn::errors::ErrorCode;
use super::bindings::wasi::nn::tensor::TensorType;
use super::{ModelError, NnError, NnTensor};
use tract_onnx::prelude::{
    DatumType, Framework, InferenceFact, InferenceModel, InferenceModelExt, IntoRunnable, TVec,
    Tensor as TractTensor, TractError, TractResult, TypedRunnableModel,
};
use tract_onnx::tract_hir::infer::{DimFact, GenericFactoid, ShapeFactoid};

/// A model, optimised and ready: what a granted name resolves to.
#[derive(Clone)]
pub struct LoadedModel {
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
    pub(super) plan: Plan,
    /// (name, element type) of each input, in the graph's order.
    pub(super) inputs: Vec<(String, DatumType)>,
    /// Names of the outputs, in order.
    pub(super) outputs: Vec<String>,
    max_input_elements: usize,
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

    /// Check a guest tensor against the model's limits and input type, and
    /// turn it into a tract tensor. Nothing reaches tract unchecked.
    pub(super) fn convert(&self, index: usize, tensor: &NnTensor) -> Result<TractTensor, NnError> {
        let (name, want) = &self.inputs[index];
        let invalid = |m: String| NnError::new(ErrorCode::InvalidArgument, m);
        let elements = tensor
            .dimensions
            .iter()
            .try_fold(1usize, |acc, d| acc.checked_mul(*d as usize))
            .filter(|n| *n <= self.max_input_elements)
            .ok_or_else(|| {
                NnError::new(
                    ErrorCode::TooLarge,
                    format!(
                        "input tensor {name:?} of shape {:?} is too large: this model accepts at \
                         most {} elements per input",
                        tensor.dimensions, self.max_input_elements
                    ),
                )
            })?;
        let (dt, size) = match tensor.ty {
            TensorType::I64 => (DatumType::I64, 8),
            TensorType::I32 => (DatumType::I32, 4),
            TensorType::Fp32 => (DatumType::F32, 4),
            TensorType::Fp64 => (DatumType::F64, 8),
            TensorType::U8 => (DatumType::U8, 1),
            other => {
                return Err(NnError::new(
                    ErrorCode::UnsupportedOperation,
                    format!("tensor type {other:?} is not supported by the tract backend"),
                ));
            }
        };
        if dt != *want {
            return Err(invalid(format!(
                "input tensor {name:?} must be {want:?}, got {:?}",
                tensor.ty
            )));
        }
        if tensor.data.len() != elements * size {
            return Err(invalid(format!(
                "input tensor {name:?}: {} bytes of data for shape {:?} of {:?} (expected {})",
                tensor.data.len(),
                tensor.dimensions,
                tensor.ty,
                elements * size
            )));
        }
        let shape: Vec<usize> = tensor.dimensions.iter().map(|d| *d as usize).collect();
        let bytes = &tensor.data;
        let built = match dt {
            DatumType::I64 => {
                TractTensor::from_shape(&shape, &le::<8, i64>(bytes, i64::from_le_bytes))
            }
            DatumType::I32 => {
                TractTensor::from_shape(&shape, &le::<4, i32>(bytes, i32::from_le_bytes))
            }
            DatumType::F32 => {
                TractTensor::from_shape(&shape, &le::<4, f32>(bytes, f32::from_le_bytes))
            }
            DatumType::F64 => {
                TractTensor::from_shape(&shape, &le::<8, f64>(bytes, f64::from_le_bytes))
            }
            _ => TractTensor::from_shape(&shape, bytes.as_slice()),
        };
        built.map_err(|e| invalid(format!("input tensor {name:?}: {e:#}")))
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

/// Little-endian bytes (length already checked) as values.
fn le<const N: usize, T>(bytes: &[u8], from: fn([u8; N]) -> T) -> Vec<T> {
    bytes
        .chunks_exact(N)
        .map(|c| from(c.try_into().unwrap_or([0; N])))
        .collect()
}

/// A tract output as a wasi-nn tensor (little-endian bytes).
pub(super) fn to_wasi(value: &TractTensor) -> Result<NnTensor, NnError> {
    let ty = match value.datum_type() {
        DatumType::F32 => TensorType::Fp32,
        DatumType::F64 => TensorType::Fp64,
        DatumType::I64 => TensorType::I64,
        DatumType::I32 => TensorType::I32,
        DatumType::U8 => TensorType::U8,
        other => {
            return Err(NnError::new(
                ErrorCode::UnsupportedOperation,
                format!("the model returned a {other:?} tensor, which wasi-nn cannot carry"),
            ));
        }
    };
    let dimensions = value
        .shape()
        .iter()
        .map(|d| u32::try_from(*d))
        .collect::<Result<_, _>>()
        .map_err(|_| NnError::new(ErrorCode::RuntimeError, "output dimension exceeds u32"))?;
    // Plain-old-data types only (matched above): the bytes are the values,
    // little-endian on every host stephost builds for.
    let data = value.as_bytes().to_vec();
    Ok(NnTensor {
        dimensions,
        ty,
        data,
    })
}
