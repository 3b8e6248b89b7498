//! The wasi:nn WIT bindings and the host-side resources they name: graphs
//! and execution contexts (a shared optimised model), tensors (bytes the host
//! holds for a guest, checked before tract sees them, and tract's outputs as
//! wasi:nn tensors) and errors (a code and a message that says what to fix).

use std::sync::Arc;

use tract_onnx::prelude::{DatumType, Tensor as TractTensor};

use super::tract::TractGraph;

pub(crate) mod bindings {
    //! Host bindings generated from the vendored `guests/sdk/wit/deps/wasi-nn`.
    #![allow(missing_docs)]
    wasmtime::component::bindgen!({
        path: "../guests/sdk/wit",
        world: "wasi:nn/ml",
        imports: {
            "wasi:nn/inference.[method]graph-execution-context.compute": async | trappable,
            "wasi:nn/graph.load": async | trappable,
            default: trappable,
        },
        with: {
            "wasi:nn/graph.graph": super::NnGraph,
            "wasi:nn/tensor.tensor": super::NnTensor,
            "wasi:nn/inference.graph-execution-context": super::NnContext,
            "wasi:nn/errors.error": super::NnError,
        },
    });
}

use bindings::wasi::nn::errors::ErrorCode;
use bindings::wasi::nn::tensor::TensorType;

/// A graph handle held by a guest.
pub struct NnGraph(pub(super) Arc<TractGraph>);

/// A guest's execution context on a graph.
pub struct NnContext(pub(super) Arc<TractGraph>);

/// A tensor held by the host for a guest (inputs before `compute`, outputs after).
pub struct NnTensor {
    /// Shape, outermost first.
    pub(super) dimensions: Vec<u32>,
    /// Element type.
    pub(super) ty: TensorType,
    /// Elements as little-endian bytes (counted against the store's tensor budget).
    pub(super) data: Vec<u8>,
}

impl NnTensor {
    /// Check this guest tensor against `graph`'s limits and the type of its
    /// input `index`, and turn it into a tract tensor. Nothing reaches tract unchecked.
    pub(super) fn to_tract(
        &self,
        graph: &TractGraph,
        index: usize,
    ) -> Result<TractTensor, NnError> {
        let tensor = self;
        let (name, want) = &graph.inputs[index];
        let invalid = |m: String| NnError::new(ErrorCode::InvalidArgument, m);
        let elements = tensor
            .dimensions
            .iter()
            .try_fold(1usize, |acc, d| acc.checked_mul(*d as usize))
            .filter(|n| *n <= graph.max_input_elements)
            .ok_or_else(|| {
                NnError::new(
                    ErrorCode::TooLarge,
                    format!(
                        "input tensor {name:?} of shape {:?} is too large: this model accepts at \
                         most {} elements per input",
                        tensor.dimensions, graph.max_input_elements
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

    /// A tract output as a wasi-nn tensor (little-endian bytes).
    pub(super) fn from_tract(value: &TractTensor) -> Result<NnTensor, NnError> {
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
}

/// Little-endian bytes (length already checked) as values.
fn le<const N: usize, T>(bytes: &[u8], from: fn([u8; N]) -> T) -> Vec<T> {
    bytes
        .chunks_exact(N)
        .map(|c| from(c.try_into().unwrap_or([0; N])))
        .collect()
}

/// A wasi-nn error resource: a code the guest can branch on and a message
/// that says what to fix.
#[derive(Debug)]
pub struct NnError {
    /// What a guest can branch on.
    pub(super) code: ErrorCode,
    /// What to fix, for the step's user.
    pub(super) message: String,
}

impl NnError {
    pub(super) fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}
