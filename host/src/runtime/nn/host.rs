//! The wasi:nn host calls (tensor, graph, inference, errors) on [`NnView`]: every failure becomes
//! a wasi-nn `error` resource with a message, inference runs on the [`InferencePool`] while the
//! guest waits asynchronously.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use tract_onnx::prelude::{TValue, TVec, Tensor as TractTensor};
use wasmtime::component::Resource;

use super::resources::bindings::{
    self,
    wasi::nn::errors::ErrorCode,
    wasi::nn::graph::{ExecutionTarget, GraphEncoding},
    wasi::nn::tensor::TensorType,
};
use super::tract::TractGraph;
use super::*;

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
        let values = match graph_inputs(&graph, &owned) {
            Ok(values) => values,
            Err(e) => return self.nn_fail(e),
        };
        let pool = self.nn.models.pool.clone();
        let outputs = match infer(&pool, self.nn.deadline, &graph, values).await {
            Ok(outputs) => outputs,
            Err(e) => return self.nn_fail(e),
        };
        let mut named = Vec::with_capacity(outputs.len());
        for (i, value) in outputs.iter().enumerate() {
            let tensor = match NnTensor::from_tract(value) {
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

/// Run `graph` on `values` on the inference `pool`, within the event's
/// `deadline`; a tract error or panic is a `runtime-error`.
async fn infer(
    pool: &InferencePool,
    deadline: Option<std::time::Instant>,
    graph: &TractGraph,
    values: TVec<TValue>,
) -> Result<TVec<TValue>, NnError> {
    let plan = graph.plan.clone();
    let job = pool.run(move || std::panic::catch_unwind(AssertUnwindSafe(|| plan.run(values))));
    let outcome = match deadline {
        Some(deadline) => tokio::time::timeout_at(deadline.into(), job)
            .await
            .map_err(|_| {
                NnError::new(
                    ErrorCode::Timeout,
                    "inference did not finish before the step's timeout",
                )
            })?,
        None => job.await,
    };
    match outcome {
        Ok(Ok(Ok(outputs))) => Ok(outputs),
        Ok(Ok(Err(e))) => Err(NnError::new(
            ErrorCode::RuntimeError,
            format!("inference failed: {e:#}"),
        )),
        Ok(Err(_)) => Err(NnError::new(
            ErrorCode::RuntimeError,
            "inference failed: tract panicked on these inputs",
        )),
        Err(message) => Err(NnError::new(ErrorCode::RuntimeError, message)),
    }
}

/// The guest's named input tensors in `graph`'s input order, each checked
/// (by name, or by index as a name; none unknown, twice or missing).
fn graph_inputs(
    graph: &TractGraph,
    inputs: &[(String, NnTensor)],
) -> Result<TVec<TValue>, NnError> {
    let invalid = |message: String| NnError::new(ErrorCode::InvalidArgument, message);
    let mut slots: Vec<Option<TractTensor>> = vec![None; graph.inputs.len()];
    for (name, tensor) in inputs {
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
            return Err(invalid(format!(
                "unknown input tensor {name:?}; this model takes {known}"
            )));
        };
        if slots[index].is_some() {
            return Err(invalid(format!("input tensor {name:?} given twice")));
        }
        slots[index] = Some(tensor.to_tract(graph, index)?);
    }
    let missing: Vec<&str> = slots
        .iter()
        .zip(&graph.inputs)
        .filter(|(t, _)| t.is_none())
        .map(|(_, (n, _))| n.as_str())
        .collect();
    if !missing.is_empty() {
        return Err(invalid(format!(
            "missing input tensor(s): {}",
            missing.join(", ")
        )));
    }
    Ok(slots.into_iter().flatten().map(TValue::from).collect())
}
