//! The command line: `stephost serve` and `stephost validate`, every flag
//! with its environment variable and default (clap). Documented for users
//! in docs/reference.md.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::scaffold::Lang;

// `stephost` and its subcommand (the about line is set explicitly below).
#[derive(Parser)]
#[command(
    name = "stephost",
    version,
    about = "Runs Knative Sequence steps as WebAssembly components"
)]
pub(crate) struct Cli {
    // What to do.
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Subcommand)]
// Parsed once at start: the size of a variant does not matter.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Command {
    /// Serve Sequences over HTTP (CloudEvents in, the chain, the reply out).
    Serve(ServeArgs),
    /// Check manifests (and compile their components) without serving:
    /// stephost documents as `serve` reads them, Knative documents and
    /// ConfigMaps against their real schemas (every violation, with its path).
    Validate {
        /// Manifest files (multi-document YAML). Each is checked on its own
        /// (they may be alternatives, like the files in manifests/).
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Check the files as one set, as `serve --manifest A --manifest B`
        /// merges them (names unique across files, refs across files).
        #[arg(long)]
        together: bool,
        #[command(flatten)]
        engine: EngineArgs,
        #[command(flatten)]
        resolve: ResolveArgs,
        #[command(flatten)]
        registry: RegistryArgs,
    },
    /// Start a new step: a project (Rust on the guest SDK, Python for
    /// componentize-py, or JavaScript for jco) with a native unit test, a
    /// manifest binding it in a one-step Sequence, and a README.
    New {
        /// The step's name (its crate name and WasmStep metadata.name).
        name: String,
        /// Where to create the project directory NAME.
        #[arg(long, default_value = ".")]
        dir: PathBuf,
        /// The step's language.
        #[arg(long, value_enum, default_value_t = Lang::Rust)]
        lang: Lang,
        /// Rust: depend on a local checkout of the SDK (guests/sdk) instead of
        /// the published crate.
        #[arg(long, value_name = "PATH")]
        sdk_path: Option<PathBuf>,
    },
    /// Publish a component to an OCI registry as a Wasm artifact (after
    /// checking it implements the step world) and print the digest
    /// reference to write in a manifest.
    Push {
        /// The component (.wasm).
        file: PathBuf,
        /// Where: oci://REGISTRY/REPOSITORY:TAG.
        target: String,
        #[command(flatten)]
        engine: EngineArgs,
        #[command(flatten)]
        registry: RegistryArgs,
    },
}

#[derive(clap::Args)]
pub(crate) struct ServeArgs {
    /// Manifest file(s); without any, the built-in default Sequence is served.
    #[arg(long = "manifest", short = 'm')]
    pub(crate) manifests: Vec<PathBuf>,
    /// Port to listen on (Knative sets $PORT).
    #[arg(long, env = "PORT", default_value_t = 8080)]
    pub(crate) port: u16,
    /// Address to listen on.
    #[arg(long, default_value = "0.0.0.0")]
    pub(crate) host: std::net::IpAddr,
    /// Largest event body accepted, e.g. 4Mi (413 beyond).
    #[arg(long, default_value = "4Mi")]
    pub(crate) max_event_bytes: String,
    /// After SIGTERM, how long (ISO-8601) accepted events may take to finish
    /// before the process exits anyway. Below Kubernetes' default 30 s grace
    /// period, so the host exits on its own instead of being killed.
    #[arg(long, default_value = "PT25S")]
    pub(crate) drain_timeout: String,
    /// The longest (ISO-8601) one call to a remote step, reply or dead-letter
    /// sink may take, response body included, when its `delivery` sets no
    /// `timeout`: Knative Serving's default revision timeout.
    #[arg(long, default_value = "PT300S")]
    pub(crate) remote_timeout: String,
    /// CA certificates trusted by every https hop besides the system roots
    /// (SSL_CERT_FILE/SSL_CERT_DIR honoured): a PEM file, or a directory whose
    /// *.pem/*.crt files (one subdirectory deep) are read. Repeatable. The
    /// default is where Knative mounts its trust-bundle ConfigMaps; a path
    /// that does not exist adds nothing.
    #[arg(long, value_name = "PATH", default_value = stephost::tls::KNATIVE_TRUST_BUNDLE_DIR)]
    pub(crate) trust_bundle: Vec<PathBuf>,
    /// How text attributes (id, type, subject, extensions) travel in
    /// binary-mode headers: `raw` UTF-8 as Knative's dispatcher and the
    /// CloudEvents SDKs write and read them, or `percent`-encoded as the
    /// CloudEvents HTTP binding says (§3.1.3.2).
    #[arg(long, value_enum, default_value = "raw")]
    pub(crate) attribute_encoding: AttributeEncoding,
    /// How often (ISO-8601) the --manifest files are re-read; a change is
    /// compiled and swapped in live (PT0S: never). No effect on the built-in
    /// default manifest.
    #[arg(long, default_value = "PT1S")]
    pub(crate) watch_interval: String,
    /// Do not add the `stephostversions` extension (which version of each
    /// Wasm step handled the event) to output events.
    #[arg(long)]
    pub(crate) no_versions_extension: bool,
    /// Benchmark floor, not for serving: answer every event posted to a
    /// Sequence with itself (200) once it passed admission and was parsed,
    /// running no step: what the host costs without its steps (HTTP,
    /// CloudEvents conversion, admission, metrics; bench/perf.sh P2).
    #[arg(long)]
    pub(crate) bare_answer: bool,
    /// Events (Sequence runs and step calls) in progress at once, those
    /// waiting on remote steps, sinks or backoff included: a memory bound
    /// (each holds its body); beyond, 429 + Retry-After at once.
    #[arg(long, default_value_t = stephost::admission::DEFAULT_MAX_IN_FLIGHT)]
    pub(crate) max_in_flight: usize,
    /// Events using this host's cores at once (Wasm steps, inference,
    /// parsing); an event waiting on a remote step, a sink, backoff or its
    /// sender gives its place back meanwhile. At least the CPUs, unless
    /// --max-in-flight is lower [default: the CPUs, what the host runs at
    /// the same instant].
    #[arg(long)]
    pub(crate) max_running: Option<usize>,
    /// Arrivals that may wait for a running place while the host is
    /// overloaded (an arrival lately found --max-burst waiting); beyond,
    /// 429 + Retry-After at once [default: --max-running].
    #[arg(long)]
    pub(crate) max_queue: Option<usize>,
    /// Arrivals that may wait for a running place before the host counts
    /// itself overloaded (the next one is refused and the queue is cut to
    /// --max-queue) [default: 64, at least --max-running].
    #[arg(long)]
    pub(crate) max_burst: Option<usize>,
    /// How long (ISO-8601) an arrival may wait for a running place before a
    /// 429 (the queue's length bounds the wait under load; this bounds it
    /// when running events are stuck).
    #[arg(long, default_value = "PT10S")]
    pub(crate) queue_timeout: String,
    /// How long (ISO-8601) a client may take to send a request's head (also
    /// how long an idle keep-alive connection stays open), and then its
    /// body: 408 or a closed connection beyond (slowloris clients).
    #[arg(long, default_value = "PT30S")]
    pub(crate) read_timeout: String,
    /// Largest request head (request line + headers), e.g. 64Ki: 431 beyond.
    #[arg(long, default_value = "64Ki")]
    pub(crate) max_header_bytes: String,
    /// Client connections open at once; more wait in the accept backlog.
    #[arg(long, default_value_t = stephost::server::DEFAULT_MAX_CONNECTIONS)]
    pub(crate) max_connections: usize,
    /// Largest component the admin API accepts (PUT .../versions/...) and
    /// an `oci://` pull may bring.
    #[arg(long, default_value = "128Mi")]
    pub(crate) max_component_bytes: String,
    /// Log format: text or json.
    #[arg(long, default_value = "text", value_parser = ["text", "json"])]
    pub(crate) log_format: String,
    // How components are compiled and run.
    #[command(flatten)]
    pub(crate) engine: EngineArgs,
    // How refs to Knative objects become URLs.
    #[command(flatten)]
    pub(crate) resolve: ResolveArgs,
    // How `oci://` components are pulled.
    #[command(flatten)]
    pub(crate) registry: RegistryArgs,
}

#[derive(clap::Args, Clone)]
pub(crate) struct RegistryArgs {
    /// A registry (`host:port`) reached over plain HTTP instead of HTTPS, as
    /// containerd's insecure registries; repeatable. None by default.
    #[arg(long = "insecure-registry", value_name = "HOST[:PORT]")]
    pub(crate) insecure_registry: Vec<String>,
    /// CA certificates (a PEM file) trusted for registries besides the system
    /// roots and the trust bundles; repeatable.
    #[arg(long = "registry-ca", value_name = "PEM")]
    pub(crate) registry_ca: Vec<PathBuf>,
    /// Registry credentials: a Docker config.json, or the .dockerconfigjson
    /// of an imagePullSecret mounted as a volume [default:
    /// $DOCKER_CONFIG/config.json when it exists; else anonymous].
    #[arg(long = "registry-auth", value_name = "FILE")]
    pub(crate) registry_auth: Option<PathBuf>,
}

#[derive(clap::Args, Clone)]
pub(crate) struct EngineArgs {
    /// Allocate instances on demand instead of from the pooling allocator.
    #[arg(long)]
    pub(crate) no_pooling: bool,
    /// Bytes of each freed instance memory kept resident (reset in place
    /// instead of madvise) [default: 4Mi where the kernel has PAGEMAP_SCAN,
    /// which resets only touched pages; else 64Ki, since a memset of unused
    /// bytes costs small steps per event].
    #[arg(long)]
    pub(crate) keep_resident: Option<String>,
    /// Do not pre-initialise components that export `wizer-initialize`:
    /// each instance then does its own initialisation.
    #[arg(long)]
    pub(crate) no_preinit: bool,
    /// Reset freed instance memory with memset over every page (up to
    /// --keep-resident) instead of only the pages the instance touched
    /// (Linux PAGEMAP_SCAN, used when the kernel has it).
    #[arg(long)]
    pub(crate) no_pagemap_scan: bool,
    /// Write /tmp/perf-<pid>.map naming the guests' compiled functions, so
    /// `perf record` and `perf report` can profile inside steps.
    #[arg(long)]
    pub(crate) perfmap: bool,
    /// Largest memory any step may be given, e.g. 512Mi.
    #[arg(long, default_value = "512Mi")]
    pub(crate) max_step_memory: String,
    /// Instances that may run at once across all steps (pool size).
    #[arg(long, default_value_t = 128)]
    pub(crate) max_instances: u32,
    /// Threads running wasi:nn inferences (host-side model runs), host-wide;
    /// more inferences wait in a queue [default: the number of CPUs].
    #[arg(long)]
    pub(crate) inference_threads: Option<usize>,
    /// Run every inference on one core, also when the host is otherwise
    /// idle (by default a lone inference uses every core).
    #[arg(long)]
    pub(crate) no_spread_inference: bool,
    /// Compile cache directory [default: $XDG_CACHE_HOME/stephost, else
    /// $HOME/.cache/stephost, else /tmp/stephost-cache].
    #[arg(long, env = "STEPHOST_CACHE_DIR")]
    pub(crate) cache_dir: Option<PathBuf>,
    /// Compile every component from scratch; no compile cache.
    #[arg(long)]
    pub(crate) no_cache: bool,
}

#[derive(clap::Args, Clone)]
pub(crate) struct ResolveArgs {
    /// Cluster domain for refs resolved as Knative does.
    #[arg(long, default_value = "cluster.local")]
    pub(crate) cluster_domain: String,
    /// Namespace of Sequences and refs that name none.
    #[arg(long, env = "STEPHOST_NAMESPACE", default_value = "default")]
    pub(crate) namespace: String,
    /// Broker ingress base URL [default: http://broker-ingress.knative-eventing.svc.<cluster-domain>].
    #[arg(long)]
    pub(crate) broker_ingress: Option<url::Url>,
}

/// `--attribute-encoding` values.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub(crate) enum AttributeEncoding {
    /// UTF-8 as it is, nothing decoded (Knative, sdk-go, the JS and Python SDKs).
    Raw,
    /// Percent-encoded out, decoded in (CloudEvents HTTP binding §3.1.3.2).
    Percent,
}

impl From<AttributeEncoding> for stephost::event::TextEncoding {
    fn from(value: AttributeEncoding) -> Self {
        match value {
            AttributeEncoding::Raw => Self::Raw,
            AttributeEncoding::Percent => Self::Percent,
        }
    }
}
