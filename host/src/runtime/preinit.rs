//! Pre-initialisation of step components with wasmtime-wizer: a component
//! that exports `wizer-initialize` (the `step-preinit` world) is instantiated
//! once at load, that function runs, and the instance's memories and globals
//! are snapshotted into a new component. Every fresh instance of the snapshot
//! then starts with the work done (a model parsed and optimised, tables
//! built) at the cost of a copy-on-write memory image, instead of redoing it
//! per event.
//!
//! wasmtime-wizer is used without its `wasmtime` feature (which would turn on
//! wasmtime's GC, threads and WAVE support for the whole host): the few
//! calls it needs to read the instance's state are made here, through the
//! host's own engine, linker and limits.

use wasmtime::Store;
use wasmtime::component::{Component, Instance, Linker, WasmList};
use wasmtime_wizer::{ComponentInstanceState, Wizer};

/// The export a pre-initialisable component provides (wizer's default name).
pub const INIT_FUNC: &str = "wizer-initialize";

/// Whether `component` asks to be pre-initialised.
pub fn wants_preinit(component: &Component) -> bool {
    component.get_export_index(None, INIT_FUNC).is_some()
}

/// Run `bytes`' `wizer-initialize` in a store from `new_store` (made after
/// the instrumented component is compiled, so its deadline covers only the
/// guest's work) and return the snapshot: a new component whose instances
/// start in the state the function left. CPU-heavy (two compilations,
/// cached by the engine's compile cache): call it off the async reactor.
pub fn preinitialize<T: Send + 'static>(
    linker: &Linker<T>,
    bytes: &[u8],
    new_store: impl FnOnce() -> Store<T>,
) -> wasmtime::Result<Vec<u8>> {
    let mut wizer = Wizer::new();
    // Keep the export: wizer 48 removes it from the core module but not
    // from the component's lift of it, which leaves an invalid component.
    // The host never calls it on a snapshot.
    wizer.keep_init_func(true);
    let (context, instrumented) = wizer.instrument_component(bytes)?;
    let component = Component::new(linker.engine(), &instrumented)?;
    let mut store = new_store();
    let store = &mut store;
    futures::executor::block_on(async {
        let instance = linker.instantiate_async(&mut *store, &component).await?;
        let init = instance.get_typed_func::<(), ()>(&mut *store, INIT_FUNC)?;
        init.call_async(&mut *store, ()).await?;
        let mut state = Snapshotting { store, instance };
        wizer.snapshot_component(&context, &mut state).await
    })
}

/// What wizer needs to read an initialised instance: calls to the accessor
/// functions its instrumentation exported.
struct Snapshotting<'a, T: 'static> {
    /// The store the component was instantiated in.
    store: &'a mut Store<T>,
    /// The instance whose state is snapshotted.
    instance: Instance,
}

impl<T: Send + 'static> Snapshotting<'_, T> {
    /// Call `instance#func` (an export wizer added) and hand its result to `use_it`.
    async fn call<R, U>(
        &mut self,
        instance: &str,
        func: &str,
        use_it: impl FnOnce(&Store<T>, R) -> U,
    ) -> U
    where
        R: wasmtime::component::Lift + wasmtime::component::ComponentType + Send + Sync + 'static,
    {
        // Wizer instrumented these exports itself: their absence or failure is
        // a bug in wizer, not in the guest, so it panics as wizer's own does.
        let outer = self
            .instance
            .get_export_index(&mut *self.store, None, instance)
            .unwrap_or_else(|| panic!("wizer's instrumentation has no export {instance}"));
        let inner = self
            .instance
            .get_export_index(&mut *self.store, Some(&outer), func)
            .unwrap_or_else(|| panic!("wizer's instrumentation has no export {instance}#{func}"));
        let typed = self
            .instance
            .get_typed_func::<(), (R,)>(&mut *self.store, inner)
            .unwrap_or_else(|e| panic!("wizer's accessor {instance}#{func}: {e}"));
        let (value,) = typed
            .call_async(&mut *self.store, ())
            .await
            .unwrap_or_else(|e| panic!("wizer's accessor {instance}#{func} failed: {e}"));
        use_it(self.store, value)
    }
}

impl<T: Send + 'static> ComponentInstanceState for Snapshotting<'_, T> {
    async fn call_func_ret_list_u8(
        &mut self,
        instance: &str,
        func: &str,
        contents: impl FnOnce(&[u8]) + Send,
    ) {
        self.call(instance, func, |store, list: WasmList<u8>| {
            contents(list.as_le_slice(store))
        })
        .await
    }

    async fn call_func_ret_s32(&mut self, instance: &str, func: &str) -> i32 {
        self.call(instance, func, |_, v: i32| v).await
    }

    async fn call_func_ret_s64(&mut self, instance: &str, func: &str) -> i64 {
        self.call(instance, func, |_, v: i64| v).await
    }

    async fn call_func_ret_f32(&mut self, instance: &str, func: &str) -> u32 {
        self.call(instance, func, |_, v: f32| v.to_bits()).await
    }

    async fn call_func_ret_f64(&mut self, instance: &str, func: &str) -> u64 {
        self.call(instance, func, |_, v: f64| v.to_bits()).await
    }
}
