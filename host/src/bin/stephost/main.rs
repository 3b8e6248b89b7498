//! The `stephost` binary: flags only. It turns `serve`, `validate`, `push` and `new`
//! flags into the library's settings and calls [`stephost::app::serve`];
//! all behaviour lives in the library.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

mod flags;
mod oci;
mod scaffold;

use anyhow::{Context, Result, bail};
use clap::Parser;
use stephost::admission::{Admission, AdmissionLimits};
use stephost::app::builtin::{DEFAULT_MANIFEST, Sources};
use stephost::app::{self, ServeConfig};
use stephost::manifest::schema::{self, KnativeSchemas};
use stephost::manifest::{Manifest, parse_duration, parse_quantity};
use stephost::registry::{Address, Registry, Resolver};
use stephost::runtime::{Runtime, RuntimeConfig};
use stephost::sequence::Transport;
use stephost::server::{self, AppState, DEFAULT_MAX_COMPONENT_BYTES, DEFAULT_MAX_EVENT_BYTES};
use stephost::tls::{BaseTrust, CaCerts};

use flags::{Cli, Command, EngineArgs, RegistryArgs, ResolveArgs, ServeArgs};

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => serve(args),
        Command::New {
            name,
            dir,
            lang,
            sdk_path,
        } => {
            let sdk = match sdk_path {
                Some(path) => scaffold::Sdk::Path(path),
                None => scaffold::Sdk::Version(env!("CARGO_PKG_VERSION").to_string()),
            };
            let created = scaffold::new_step(&name, &dir, lang, &sdk)?;
            println!("created {} (see its README.md)", created.display());
            Ok(())
        }
        Command::Push {
            file,
            target,
            engine,
            registry,
        } => oci::push(&file, &target, &engine, &registry),
        Command::Validate {
            files,
            together,
            engine,
            resolve,
            registry,
        } => {
            if together || files.len() == 1 {
                validate(files, engine, resolve, &registry)
            } else {
                let mut failed = 0;
                for file in &files {
                    let one = vec![file.clone()];
                    if let Err(e) = validate(one, engine.clone(), resolve.clone(), &registry) {
                        eprintln!("{}: {e:#}", file.display());
                        failed += 1;
                    }
                }
                match failed {
                    0 => Ok(()),
                    n => bail!("{n} of {} file(s) failed validation", files.len()),
                }
            }
        }
    }
}

pub(crate) fn runtime_config(args: &EngineArgs) -> Result<RuntimeConfig> {
    let max_memory = parse_quantity(&yaml_serde::Value::String(args.max_step_memory.clone()))
        .map_err(anyhow::Error::msg)
        .context("--max-step-memory")?;
    if args.max_instances == 0 {
        bail!("--max-instances must be at least 1");
    }
    if args.inference_threads == Some(0) {
        bail!("--inference-threads must be at least 1");
    }
    let defaults = RuntimeConfig::default();
    let keep_resident = match &args.keep_resident {
        Some(given) => {
            let bytes = parse_quantity(&yaml_serde::Value::String(given.clone()))
                .map_err(anyhow::Error::msg)
                .context("--keep-resident")?;
            if bytes > max_memory {
                bail!("--keep-resident must not exceed --max-step-memory");
            }
            usize::try_from(bytes).unwrap_or(defaults.keep_resident)
        }
        None if args.no_pagemap_scan => stephost::runtime::DEFAULT_KEEP_RESIDENT,
        None => defaults.keep_resident,
    };
    Ok(RuntimeConfig {
        keep_resident,
        inference_threads: args.inference_threads.unwrap_or(defaults.inference_threads),
        spread_inference: !args.no_spread_inference,
        pooling: !args.no_pooling,
        preinit: !args.no_preinit,
        pagemap_scan: !args.no_pagemap_scan,
        perfmap: args.perfmap,
        max_memory,
        max_instances: args.max_instances,
        cache_dir: (!args.no_cache)
            .then(|| args.cache_dir.clone().unwrap_or_else(default_cache_dir)),
    })
}

/// Where compiled components are cached when `--cache-dir` is not given.
pub(crate) fn default_cache_dir() -> PathBuf {
    let var = |name: &str| {
        std::env::var_os(name)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    var("XDG_CACHE_HOME")
        .or_else(|| var("HOME").map(|home| home.join(".cache")))
        .map(|base| base.join("stephost"))
        .unwrap_or_else(|| PathBuf::from("/tmp/stephost-cache"))
}

/// The HTTP(S) clients of remote hops: system roots plus the trust bundles.
fn transport(trust: BaseTrust) -> Result<Transport> {
    tracing::debug!(
        system = trust.system,
        bundled = trust.bundled,
        "CA certificates trusted by https hops"
    );
    Ok(Transport::new(trust)?)
}

fn resolver(args: &ResolveArgs) -> Result<Resolver> {
    let k_sink = match std::env::var("K_SINK") {
        Ok(sink) if !sink.is_empty() => Some(Address {
            url: url::Url::parse(&sink).with_context(|| format!("K_SINK={sink:?} is not a URL"))?,
            // SinkBinding sets K_CA_CERTS when the sink's address has CACerts.
            ca_certs: match std::env::var("K_CA_CERTS") {
                Ok(pem) if !pem.trim().is_empty() => Some(Arc::new(
                    CaCerts::parse(&pem).context("K_CA_CERTS (the CA certificates of K_SINK)")?,
                )),
                _ => None,
            },
        }),
        _ => None,
    };
    Ok(Resolver {
        cluster_domain: args.cluster_domain.clone(),
        broker_ingress: args.broker_ingress.clone(),
        namespace: args.namespace.clone(),
        k_sink,
        k_ce_overrides: ce_overrides()?,
    })
}

/// `K_CE_OVERRIDES` (SinkBinding): `{"extensions": {"name": "value", ...}}`;
/// unset or empty = none.
fn ce_overrides() -> Result<Vec<(String, String)>> {
    let Ok(text) = std::env::var("K_CE_OVERRIDES") else {
        return Ok(Vec::new());
    };
    if text.trim().is_empty() {
        return Ok(Vec::new());
    }
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Overrides {
        #[serde(default)]
        extensions: std::collections::BTreeMap<String, serde_json::Value>,
    }
    let parsed: Overrides = serde_json::from_str(&text)
        .with_context(|| format!("K_CE_OVERRIDES={text:?} is not {{\"extensions\": {{...}}}}"))?;
    parsed
        .extensions
        .into_iter()
        .map(|(name, value)| {
            if name.is_empty()
                || !name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
            {
                bail!(
                    "K_CE_OVERRIDES: extension name {name:?} is not lower-case letters and digits"
                );
            }
            let value = match value {
                serde_json::Value::String(s) => s,
                other => other.to_string(),
            };
            Ok((name, value))
        })
        .collect()
}

fn load_manifest(files: &[PathBuf]) -> Result<Manifest> {
    if files.is_empty() {
        return Manifest::parse(
            DEFAULT_MANIFEST,
            "<built-in default manifest>",
            ".".as_ref(),
        )
        .context("the built-in default manifest is invalid");
    }
    Ok(Manifest::load(files)?)
}

fn validate(
    files: Vec<PathBuf>,
    engine: EngineArgs,
    resolve: ResolveArgs,
    registry_args: &RegistryArgs,
) -> Result<()> {
    init_logging("text");
    let (manifest, schema_checked) = if files.is_empty() {
        (load_manifest(&files)?, 0)
    } else {
        let schemas = KnativeSchemas::load().context("loading the vendored Knative CRDs")?;
        let checked = schema::check_files(&files, &schemas)?;
        if !checked.violations.is_empty() {
            for (at, violation) in &checked.violations {
                eprintln!("{at}: {violation}");
            }
            bail!(
                "{} schema violation(s) in {} file(s)",
                checked.violations.len(),
                files.len()
            );
        }
        (checked.manifest, checked.schema_checked)
    };
    let runtime = Runtime::new(runtime_config(&engine)?)?;
    let cache = engine.cache_dir.clone().unwrap_or_else(default_cache_dir);
    let sources = Sources {
        oci: Some(oci::puller(
            registry_args,
            &oci::knative_trust()?,
            &cache,
            DEFAULT_MAX_COMPONENT_BYTES,
        )?),
    };
    let registry = Registry::build(&manifest, &runtime, &resolver(&resolve)?, &sources)?;
    let names: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
    println!(
        "{}: ok: {} Sequence(s) [{}], {} WasmStep(s) [{}]; {schema_checked} document(s) match their Knative/Kubernetes schema",
        names.join(" + "),
        registry.sequences.len(),
        registry
            .sequences
            .keys()
            .cloned()
            .collect::<Vec<_>>()
            .join(", "),
        registry.steps.len(),
        registry
            .steps
            .keys()
            .cloned()
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(())
}

/// The admission door from the flags (see `stephost::admission`).
fn admission(args: &ServeArgs, queue_timeout: std::time::Duration) -> Result<Admission> {
    let limits = AdmissionLimits::from_flags(
        stephost::admission::workers(),
        args.max_in_flight,
        args.max_running,
        args.max_queue,
        args.max_burst,
        queue_timeout,
    )?;
    tracing::info!(
        max_in_flight = limits.max_in_flight,
        max_running = limits.max_running,
        max_queue = limits.max_queue,
        max_burst = limits.max_burst,
        queue_timeout_ms = queue_timeout.as_millis() as u64,
        "admission"
    );
    Ok(Admission::new(limits))
}

fn serve(args: ServeArgs) -> Result<()> {
    init_logging(&args.log_format);
    let max_event_bytes = parse_quantity(&yaml_serde::Value::String(args.max_event_bytes.clone()))
        .map_err(anyhow::Error::msg)
        .context("--max-event-bytes")?;
    let max_event_bytes = usize::try_from(max_event_bytes).unwrap_or(DEFAULT_MAX_EVENT_BYTES);
    let drain_timeout = parse_duration(&args.drain_timeout)
        .map_err(anyhow::Error::msg)
        .context("--drain-timeout")?;
    let remote_timeout = parse_duration(&args.remote_timeout)
        .map_err(anyhow::Error::msg)
        .context("--remote-timeout")?;
    if remote_timeout.is_zero() {
        bail!("--remote-timeout must be greater than zero");
    }
    let max_component_bytes =
        parse_quantity(&yaml_serde::Value::String(args.max_component_bytes.clone()))
            .map_err(anyhow::Error::msg)
            .context("--max-component-bytes")?;
    let max_component_bytes = usize::try_from(max_component_bytes).unwrap_or(usize::MAX);
    let queue_timeout = parse_duration(&args.queue_timeout)
        .map_err(anyhow::Error::msg)
        .context("--queue-timeout")?;
    let admission = admission(&args, queue_timeout)?;
    let read_timeout = parse_duration(&args.read_timeout)
        .map_err(anyhow::Error::msg)
        .context("--read-timeout")?;
    if read_timeout.is_zero() {
        bail!("--read-timeout must be greater than zero");
    }
    let max_header_bytes =
        parse_quantity(&yaml_serde::Value::String(args.max_header_bytes.clone()))
            .map_err(anyhow::Error::msg)
            .context("--max-header-bytes")?;
    if max_header_bytes < 8192 {
        bail!("--max-header-bytes must be at least 8Ki (hyper's smallest read buffer)");
    }
    if args.max_connections == 0 {
        bail!("--max-connections must be at least 1");
    }
    let connection_limits = server::ConnectionLimits {
        read_timeout,
        max_header_bytes: usize::try_from(max_header_bytes).unwrap_or(usize::MAX),
        max_connections: args.max_connections,
    };
    let watch_interval = parse_duration(&args.watch_interval)
        .map_err(anyhow::Error::msg)
        .context("--watch-interval")?;
    let tokio = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    // The OTLP exporter spawns its sender task: build the state inside the runtime.
    let _inside = tokio.enter();
    let runtime = Arc::new(Runtime::new(runtime_config(&args.engine)?)?);
    // Read once: the hops' trust, and the registries' on top of it.
    let trust = BaseTrust::load(&args.trust_bundle).context("--trust-bundle")?;
    let config = ServeConfig {
        manifest: load_manifest(&args.manifests)?,
        watched: args.manifests.clone(),
        watch_interval,
        resolver: resolver(&args.resolve)?,
        sources: Sources {
            oci: Some(oci::puller(
                &args.registry,
                &trust,
                &args
                    .engine
                    .cache_dir
                    .clone()
                    .unwrap_or_else(default_cache_dir),
                max_component_bytes,
            )?),
        },
        state: AppState::new(max_event_bytes, runtime, transport(trust)?)
            .with_versions_extension(!args.no_versions_extension)
            .with_bare_answer(args.bare_answer)
            .with_otlp(stephost::otlp::Exporter::from_env())
            .with_admission(admission)
            .with_read_timeout(read_timeout)
            .with_remote_timeout(remote_timeout)
            .with_text_encoding(args.attribute_encoding.into())
            .with_admin_token(
                std::env::var("STEPHOST_ADMIN_TOKEN").ok(),
                max_component_bytes,
            ),
        addr: SocketAddr::new(args.host, args.port),
        drain_timeout,
        connection_limits,
    };
    tokio.block_on(app::serve(config))?;
    Ok(())
}

fn init_logging(format: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colours only on a terminal: a log collector would store the escape codes.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    // try_init: `validate` of several files calls this once per file.
    let _ = if format == "json" {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}
