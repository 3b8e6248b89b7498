//! The registry side of the binary: the `oci://` client built from the
//! `--registry-*` flags, and `stephost push`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use stephost::oci::{DockerAuth, OciSettings, Puller};
use stephost::runtime::Runtime;
use stephost::step_limits::StepLimits;
use stephost::tls::{BaseTrust, KNATIVE_TRUST_BUNDLE_DIR};

use crate::flags::{EngineArgs, RegistryArgs};

/// The registry client: trust = `base` (system roots + trust bundles) +
/// `--registry-ca`,
/// the credentials file, the cache beside the compile cache's directory
/// (`<cache-dir>-oci`: wasmtime's cache cleaner deletes what it does not
/// know inside its own).
pub(crate) fn puller(
    args: &RegistryArgs,
    base: &BaseTrust,
    cache_dir: &Path,
    max_bytes: usize,
) -> Result<Arc<Puller>> {
    for ca in &args.registry_ca {
        if !ca.is_file() {
            anyhow::bail!("--registry-ca {}: no such file", ca.display());
        }
    }
    let trust = base
        .with_files(&args.registry_ca)
        .context("--registry-ca")?;
    let auth = DockerAuth::load(args.registry_auth.as_deref())?;
    Ok(Arc::new(Puller::new(OciSettings {
        trust: Some(trust),
        insecure: args.insecure_registry.clone(),
        auth,
        cache_dir: oci_cache_dir(cache_dir),
        max_bytes,
    })))
}

/// `stephost push FILE oci://…`.
pub(crate) fn push(
    file: &Path,
    target: &str,
    engine: &EngineArgs,
    args: &RegistryArgs,
) -> Result<()> {
    let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    // The same check a host makes before it serves a component.
    let mut config = crate::runtime_config(engine)?;
    config.preinit = false;
    let runtime = Runtime::new(config)?;
    let origin = file.display().to_string();
    runtime
        .compile(&origin, &bytes, StepLimits::default(), Vec::new())
        .with_context(|| format!("{origin} is not a step component"))?;
    let (imports, exports) = runtime.interface_names(&origin, &bytes)?;
    let cache = engine
        .cache_dir
        .clone()
        .unwrap_or_else(crate::default_cache_dir);
    let puller = puller(args, &knative_trust()?, &cache, usize::MAX)?;
    let tokio = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let pinned = tokio.block_on(stephost::oci::push(
        &puller, bytes, target, imports, exports,
    ))?;
    println!("{pinned}");
    Ok(())
}

/// `<cache-dir>-oci`.
pub(crate) fn oci_cache_dir(cache_dir: &Path) -> PathBuf {
    let mut name = cache_dir.file_name().unwrap_or_default().to_os_string();
    name.push("-oci");
    cache_dir.with_file_name(name)
}

/// The system roots plus Knative's trust bundles (for `validate` and `push`,
/// which have no `--trust-bundle`).
pub(crate) fn knative_trust() -> Result<BaseTrust> {
    BaseTrust::load(&[PathBuf::from(KNATIVE_TRUST_BUNDLE_DIR)]).context(KNATIVE_TRUST_BUNDLE_DIR)
}
