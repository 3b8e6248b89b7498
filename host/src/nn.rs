//! Host-side inference for steps: the standard `wasi:nn` WIT
//! (`wasi:nn@0.2.0-rc-2024-10-28`, the version wasmtime-wasi-nn 48 ships),
//! implemented over tract, with models preloaded by name per step.
//!
//! A model is parsed and optimised once per host ([`load_onnx`], off the async
//! threads) and shared by every instance of every step granted it. A step sees
//! only its own grants ([`StepModels`]); `load` of raw bytes is refused unless
//! its manifest allows it. Inputs are checked against the model's limits
//! before tract sees them; inference runs on tokio's blocking threads, at most
//! [`InferencePool`] at once, while the calling guest waits asynchronously;
//! every failure is a wasi-nn `error` with a message, never a trap.
//!
//! Why not wasmtime-wasi-nn's backend traits: they work with tract (tried),
//! but its `error.data` carries only the backend error's top line ("Failed
//! while accessing backend"), so a step could not tell its user *why*
//! (too large, wrong type, not granted), and its host calls are synchronous,
//! so every inference would block a tokio worker. The WIT is small enough to
//! implement directly. As in wasmtime's own wasi-nn, the host side sits on a
//! view type ([`NnView`]) the embedder hands out of its store, never on the
//! embedder's store type, so this module imports nothing of the runtime.

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use thiserror::Error;
use tokio::sync::Semaphore;
use tract_onnx::prelude::{
    DatumType, Framework, InferenceFact, InferenceModel, InferenceModelExt, IntoRunnable, TValue,
    TVec, Tensor as TractTensor, TractError, TractResult, TypedRunnableModel,
};
use tract_onnx::tract_hir::infer::{DimFact, GenericFactoid, ShapeFactoid};
use wasmtime::component::Resource;

use wasmtime::component::{HasData, ResourceTable};

pub(crate) mod bindings {
    //! Host bindings generated from the vendored `wit/deps/wasi-nn`.
    #![allow(missing_docs)]
    wasmtime::component::bindgen!({
        path: "../wit",
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
use bindings::wasi::nn::graph::{ExecutionTarget, GraphEncoding};
use bindings::wasi::nn::tensor::TensorType;

/// Default cap on the elements of one input tensor: 1 Mi elements (8 MiB of
/// i64) is far above a 512-token sequence yet stops a guest from making the
/// host allocate without bound. A model's manifest entry can lower it.
pub const DEFAULT_MAX_INPUT_ELEMENTS: usize = 1 << 20;

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

/// Bounds how many inferences run at once, host-wide: each takes a core for
/// milliseconds, so more at once than there are cores only adds latency and
/// memory. Waiting guests wait asynchronously; they hold no thread.
pub struct InferencePool {
    permits: Arc<Semaphore>,
}

impl InferencePool {
    /// A pool running at most `threads` inferences at once (at least one).
    pub fn new(threads: usize) -> Arc<Self> {
        Arc::new(Self {
            permits: Arc::new(Semaphore::new(threads.max(1))),
        })
    }

    /// Run CPU-heavy `job` on a blocking thread once a slot is free. The slot
    /// stays taken until the job ends, even if the caller stops waiting.
    async fn run<R: Send + 'static>(
        &self,
        job: impl FnOnce() -> R + Send + 'static,
    ) -> Result<R, String> {
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| "the host is shutting down".to_string())?;
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            job()
        })
        .await
        .map_err(|_| "inference thread failed".to_string())
    }
}

/// A model, optimised and ready: what a granted name resolves to.
#[derive(Clone)]
pub struct LoadedModel {
    graph: Arc<TractGraph>,
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

/// The models one step is granted, by name — all `load-by-name` can see —
/// and whether it may `load` bytes of its own.
#[derive(Clone)]
pub struct StepModels {
    graphs: Arc<HashMap<String, Arc<TractGraph>>>,
    allow_load: bool,
    pool: Arc<InferencePool>,
}

impl StepModels {
    /// Grant `models` by name on `pool`; `allow_load` additionally lets the
    /// step load ONNX bytes itself (optimised per call: costly, off by default).
    pub fn new(
        models: HashMap<String, LoadedModel>,
        allow_load: bool,
        pool: Arc<InferencePool>,
    ) -> Self {
        Self {
            graphs: Arc::new(models.into_iter().map(|(k, m)| (k, m.graph)).collect()),
            allow_load,
            pool,
        }
    }

    /// No grants at all: every wasi:nn load fails with `not-found`/`security`.
    pub fn none(pool: Arc<InferencePool>) -> Self {
        Self::new(HashMap::new(), false, pool)
    }

    /// The granted names, sorted, for logs and errors.
    pub fn names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.graphs.keys().map(String::as_str).collect();
        names.sort_unstable();
        names
    }
}

/// A graph handle held by a guest.
pub struct NnGraph(Arc<TractGraph>);

/// A guest's execution context on a graph.
pub struct NnContext(Arc<TractGraph>);

/// A tensor held by the host for a guest (inputs before `compute`, outputs after).
pub struct NnTensor {
    dimensions: Vec<u32>,
    ty: TensorType,
    data: Vec<u8>,
}

/// A wasi-nn error resource: a code the guest can branch on and a message
/// that says what to fix.
#[derive(Debug)]
pub struct NnError {
    code: ErrorCode,
    message: String,
}

impl NnError {
    fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

type Plan = Arc<TypedRunnableModel>;

/// One optimised model: tract's plan plus what inputs it takes.
struct TractGraph {
    plan: Plan,
    /// (name, element type) of each input, in the graph's order.
    inputs: Vec<(String, DatumType)>,
    /// Names of the outputs, in order.
    outputs: Vec<String>,
    max_input_elements: usize,
}

impl TractGraph {
    fn load(bytes: &[u8], max_input_elements: usize) -> Result<Self, String> {
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

    fn input_names(&self) -> String {
        self.inputs
            .iter()
            .map(|(n, t)| format!("{n} ({t:?})"))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Check a guest tensor against the model's limits and input type, and
    /// turn it into a tract tensor. Nothing reaches tract unchecked.
    fn convert(&self, index: usize, tensor: &NnTensor) -> Result<TractTensor, NnError> {
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
fn to_wasi(value: &TractTensor) -> Result<NnTensor, NnError> {
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

/// The wasi:nn state of one store: its grant, the host bytes its tensors
/// hold (capped), and the event's deadline.
pub struct NnState {
    models: StepModels,
    tensor_bytes: usize,
    max_tensor_bytes: usize,
    deadline: Option<Instant>,
}

impl NnState {
    /// State for one store; tensors it creates may hold at most
    /// `max_tensor_bytes` of host memory at once (the step's memory limit:
    /// a guest never needs more host tensor bytes than its own memory).
    pub fn new(models: StepModels, max_tensor_bytes: usize) -> Self {
        Self {
            models,
            tensor_bytes: 0,
            max_tensor_bytes,
            deadline: None,
        }
    }

    /// The event's deadline: inference still running then fails with `timeout`.
    pub fn set_deadline(&mut self, deadline: Instant) {
        self.deadline = Some(deadline);
    }
}

type NnResult<T> = wasmtime::Result<Result<T, Resource<NnError>>>;

impl NnView<'_> {
    fn nn_fail<T>(&mut self, error: NnError) -> NnResult<T> {
        tracing::debug!(code = ?error.code, message = %error.message, "wasi-nn error");
        Ok(Err(self.table.push(error)?))
    }

    fn account(&mut self, bytes: usize) -> wasmtime::Result<()> {
        let total = self.nn.tensor_bytes.saturating_add(bytes);
        if total > self.nn.max_tensor_bytes {
            // The tensor constructor has no error case in the WIT: a guest
            // hoarding host memory beyond its own limit is stopped here.
            wasmtime::bail!(
                "wasi-nn tensors of this instance would hold {total} bytes of host memory, \
                 over the step's limit of {} bytes",
                self.nn.max_tensor_bytes
            );
        }
        self.nn.tensor_bytes = total;
        Ok(())
    }

    fn push_tensor(&mut self, tensor: NnTensor) -> wasmtime::Result<Resource<NnTensor>> {
        self.account(tensor.data.len())?;
        Ok(self.table.push(tensor)?)
    }

    fn graph_handle(&mut self, graph: Arc<TractGraph>) -> NnResult<Resource<NnGraph>> {
        Ok(Ok(self.table.push(NnGraph(graph))?))
    }
}

impl bindings::wasi::nn::tensor::Host for NnView<'_> {}

impl bindings::wasi::nn::tensor::HostTensor for NnView<'_> {
    fn new(
        &mut self,
        dimensions: Vec<u32>,
        ty: TensorType,
        data: Vec<u8>,
    ) -> wasmtime::Result<Resource<NnTensor>> {
        self.push_tensor(NnTensor {
            dimensions,
            ty,
            data,
        })
    }

    fn dimensions(&mut self, tensor: Resource<NnTensor>) -> wasmtime::Result<Vec<u32>> {
        Ok(self.table.get(&tensor)?.dimensions.clone())
    }

    fn ty(&mut self, tensor: Resource<NnTensor>) -> wasmtime::Result<TensorType> {
        Ok(self.table.get(&tensor)?.ty)
    }

    fn data(&mut self, tensor: Resource<NnTensor>) -> wasmtime::Result<Vec<u8>> {
        Ok(self.table.get(&tensor)?.data.clone())
    }

    fn drop(&mut self, tensor: Resource<NnTensor>) -> wasmtime::Result<()> {
        let tensor = self.table.delete(tensor)?;
        self.nn.tensor_bytes = self.nn.tensor_bytes.saturating_sub(tensor.data.len());
        Ok(())
    }
}

impl bindings::wasi::nn::graph::Host for NnView<'_> {
    async fn load(
        &mut self,
        builders: Vec<Vec<u8>>,
        encoding: GraphEncoding,
        _target: ExecutionTarget,
    ) -> NnResult<Resource<NnGraph>> {
        if !self.nn.models.allow_load {
            return self.nn_fail(NnError::new(
                ErrorCode::Security,
                "this step may not load model bytes: use load-by-name with a model its \
                 WasmStep grants in spec.models (or set spec.allowModelLoad: true)",
            ));
        }
        if encoding != GraphEncoding::Onnx {
            return self.nn_fail(NnError::new(
                ErrorCode::InvalidEncoding,
                format!("the tract backend loads onnx graphs only, not {encoding:?}"),
            ));
        }
        let bytes = match <[Vec<u8>; 1]>::try_from(builders) {
            Ok([bytes]) if !bytes.is_empty() => bytes,
            _ => {
                return self.nn_fail(NnError::new(
                    ErrorCode::InvalidArgument,
                    "load takes exactly one non-empty onnx graph builder",
                ));
            }
        };
        // Optimising a graph is inference-sized work: same pool, same bound.
        let pool = self.nn.models.pool.clone();
        let loaded = pool
            .run(move || TractGraph::load(&bytes, DEFAULT_MAX_INPUT_ELEMENTS))
            .await;
        match loaded {
            Ok(Ok(graph)) => self.graph_handle(Arc::new(graph)),
            Ok(Err(message)) | Err(message) => self.nn_fail(NnError::new(
                ErrorCode::InvalidArgument,
                format!("not a model tract can run: {message}"),
            )),
        }
    }

    fn load_by_name(&mut self, name: String) -> NnResult<Resource<NnGraph>> {
        match self.nn.models.graphs.get(&name).cloned() {
            Some(graph) => self.graph_handle(graph),
            None => {
                let granted = self.nn.models.names().join(", ");
                self.nn_fail(NnError::new(
                    ErrorCode::NotFound,
                    format!(
                        "no model {name:?} is granted to this step (granted: {}); grant it in \
                         the WasmStep's spec.models",
                        if granted.is_empty() { "none" } else { &granted }
                    ),
                ))
            }
        }
    }
}

impl bindings::wasi::nn::graph::HostGraph for NnView<'_> {
    fn init_execution_context(
        &mut self,
        graph: Resource<NnGraph>,
    ) -> NnResult<Resource<NnContext>> {
        let graph = self.table.get(&graph)?.0.clone();
        Ok(Ok(self.table.push(NnContext(graph))?))
    }

    fn drop(&mut self, graph: Resource<NnGraph>) -> wasmtime::Result<()> {
        self.table.delete(graph)?;
        Ok(())
    }
}

impl bindings::wasi::nn::inference::Host for NnView<'_> {}

impl bindings::wasi::nn::inference::HostGraphExecutionContext for NnView<'_> {
    async fn compute(
        &mut self,
        context: Resource<NnContext>,
        inputs: Vec<(String, Resource<NnTensor>)>,
    ) -> NnResult<Vec<(String, Resource<NnTensor>)>> {
        let graph = self.table.get(&context)?.0.clone();
        // The inputs are owned handles: the host takes them (and their bytes).
        let mut owned = Vec::with_capacity(inputs.len());
        for (name, tensor) in inputs {
            let tensor = self.table.delete(tensor)?;
            self.nn.tensor_bytes = self.nn.tensor_bytes.saturating_sub(tensor.data.len());
            owned.push((name, tensor));
        }
        // Match each named input to the graph's, checking it on the way.
        let mut slots: Vec<Option<TractTensor>> = vec![None; graph.inputs.len()];
        for (name, tensor) in &owned {
            let index = graph
                .inputs
                .iter()
                .position(|(n, _)| n == name)
                .or_else(|| {
                    name.parse::<usize>()
                        .ok()
                        .filter(|i| *i < graph.inputs.len())
                });
            let Some(index) = index else {
                let known = graph.input_names();
                return self.nn_fail(NnError::new(
                    ErrorCode::InvalidArgument,
                    format!("unknown input tensor {name:?}; this model takes {known}"),
                ));
            };
            if slots[index].is_some() {
                return self.nn_fail(NnError::new(
                    ErrorCode::InvalidArgument,
                    format!("input tensor {name:?} given twice"),
                ));
            }
            let converted = graph.convert(index, tensor);
            match converted {
                Ok(t) => slots[index] = Some(t),
                Err(e) => return self.nn_fail(e),
            }
        }
        let missing: Vec<&str> = slots
            .iter()
            .zip(&graph.inputs)
            .filter(|(t, _)| t.is_none())
            .map(|(_, (n, _))| n.as_str())
            .collect();
        if !missing.is_empty() {
            let message = format!("missing input tensor(s): {}", missing.join(", "));
            return self.nn_fail(NnError::new(ErrorCode::InvalidArgument, message));
        }
        let values: TVec<TValue> = slots.into_iter().flatten().map(TValue::from).collect();
        let plan = graph.plan.clone();
        let job = self
            .nn
            .models
            .pool
            .run(move || std::panic::catch_unwind(AssertUnwindSafe(|| plan.run(values))));
        let outcome = match self.nn.deadline {
            Some(deadline) => match tokio::time::timeout_at(deadline.into(), job).await {
                Ok(outcome) => outcome,
                Err(_) => {
                    return self.nn_fail(NnError::new(
                        ErrorCode::Timeout,
                        "inference did not finish before the step's timeout",
                    ));
                }
            },
            None => job.await,
        };
        let outputs = match outcome {
            Ok(Ok(Ok(outputs))) => outputs,
            Ok(Ok(Err(e))) => {
                return self.nn_fail(NnError::new(
                    ErrorCode::RuntimeError,
                    format!("inference failed: {e:#}"),
                ));
            }
            Ok(Err(_)) => {
                return self.nn_fail(NnError::new(
                    ErrorCode::RuntimeError,
                    "inference failed: tract panicked on these inputs",
                ));
            }
            Err(message) => return self.nn_fail(NnError::new(ErrorCode::RuntimeError, message)),
        };
        let mut named = Vec::with_capacity(outputs.len());
        for (i, value) in outputs.iter().enumerate() {
            let tensor = match to_wasi(value) {
                Ok(t) => t,
                Err(e) => return self.nn_fail(e),
            };
            let name = graph
                .outputs
                .get(i)
                .cloned()
                .unwrap_or_else(|| i.to_string());
            named.push((name, self.push_tensor(tensor)?));
        }
        Ok(Ok(named))
    }

    fn drop(&mut self, context: Resource<NnContext>) -> wasmtime::Result<()> {
        self.table.delete(context)?;
        Ok(())
    }
}

impl bindings::wasi::nn::errors::Host for NnView<'_> {}

impl bindings::wasi::nn::errors::HostError for NnView<'_> {
    fn code(&mut self, error: Resource<NnError>) -> wasmtime::Result<ErrorCode> {
        Ok(self.table.get(&error)?.code)
    }

    fn data(&mut self, error: Resource<NnError>) -> wasmtime::Result<String> {
        Ok(self.table.get(&error)?.message.clone())
    }

    fn drop(&mut self, error: Resource<NnError>) -> wasmtime::Result<()> {
        self.table.delete(error)?;
        Ok(())
    }
}

/// What the wasi:nn host needs of a store: its resource table and its
/// [`NnState`]. The embedder hands it out of its own store type (as
/// wasmtime's `WasiNnView` does), so this module knows nothing of the
/// runtime's store and imports nothing from it.
pub struct NnView<'a> {
    /// The store's resource table (tensors, graphs, contexts, errors).
    pub table: &'a mut ResourceTable,
    /// The store's wasi:nn state.
    pub nn: &'a mut NnState,
}

/// The [`HasData`] marker that lets the generated bindings hand out an
/// [`NnView`] borrowed from the store.
struct HasNnView;

impl HasData for HasNnView {
    type Data<'a> = NnView<'a>;
}

/// Add the wasi:nn interfaces to a linker whose store data gives an
/// [`NnView`] through `view`.
pub fn add_to_linker<T: Send + 'static>(
    linker: &mut wasmtime::component::Linker<T>,
    view: fn(&mut T) -> NnView<'_>,
) -> wasmtime::Result<()> {
    bindings::Ml::add_to_linker::<T, HasNnView>(linker, view)
}
