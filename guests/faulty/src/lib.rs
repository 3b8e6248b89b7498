//! `faulty`: fails on purpose, so tests can prove that a failing guest fails
//! only its own event and that failures map to Knative's delivery rules.
//!
//! The fault comes from the event's `fault` extension, else the `mode`
//! setting; with neither the event is forwarded unchanged.
//! - `retryable`: a retryable step error (≙ 5xx, retried)
//! - `fatal`: a fatal step error (≙ 4xx, straight to the dead-letter sink)
//! - `trap`: a panic, which traps the instance
//! - `loop`: an endless loop, stopped by the step's timeout
//! - `oom`: allocates until the step's memory limit traps it
//! - `recurse`: recurses without end until the wasm stack overflows
//! - `sleep`: sleeps 60 s in a WASI call (host-side wait, not guest code)
//! - `huge-output`: returns an event with `faultbytes` (default 100 MB) of data
//! - `many-extensions`: returns an event with `faultcount` (default 100,000)
//!   extensions
//! - `preinit-trap` (as `mode` only): panics in `preinitialize`, when the
//!   host pre-initialises the component at load
//! - `escape`: tries what WASI does not grant (files, environment, sockets,
//!   name lookup, arguments) and returns what each attempt saw as JSON data

use stephost_guest::{Event, Step, StepError, config, export_step};

struct Faulty;

impl Step for Faulty {
    fn preinitialize() {
        if config("mode").as_deref() == Some("preinit-trap") {
            panic!("faulty: asked to trap while pre-initialising");
        }
    }

    fn handle(event: Event) -> Result<Option<Event>, StepError> {
        let mode = event
            .extension("fault")
            .map(str::to_string)
            .or_else(|| config("mode"));
        match mode.as_deref() {
            None | Some("none") => Ok(Some(event)),
            Some("retryable") => Err(StepError::retryable("faulty: asked to fail (retryable)")),
            Some("fatal") => Err(StepError::fatal("faulty: asked to fail (fatal)")),
            Some("trap") => panic!("faulty: asked to trap"),
            Some("loop") => spin_forever(),
            Some("oom") => exhaust_memory(),
            Some("recurse") => {
                let depth = recurse(0);
                let mut out = event;
                out.set_extension("depth", depth.to_string());
                Ok(Some(out))
            }
            Some("sleep") => {
                std::thread::sleep(std::time::Duration::from_secs(60));
                Ok(Some(event))
            }
            Some("huge-output") => {
                let bytes = number(&event, "faultbytes", 100_000_000);
                let mut out = event;
                out.data = Some(vec![b'x'; bytes]);
                out.datacontenttype = Some("application/octet-stream".into());
                Ok(Some(out))
            }
            Some("many-extensions") => {
                let count = number(&event, "faultcount", 100_000);
                let mut out = event;
                out.extensions
                    .extend((0..count).map(|i| (format!("x{i}"), "v".to_string())));
                Ok(Some(out))
            }
            Some("escape") => {
                let mut out = event;
                let report = escape_attempts(out.extension("faultport"));
                out.set_data_json(&report)?;
                Ok(Some(out))
            }
            Some(other) => Err(StepError::fatal(format!(
                "faulty: unknown fault mode {other:?}"
            ))),
        }
    }
}

/// A numeric setting from the event's extension `name`, else `default`.
fn number(event: &Event, name: &str, default: usize) -> usize {
    event
        .extension(name)
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Recurses until the wasm call stack overflows. Only scalars, so the
/// frames live on wasm's own stack (which the host bounds), not on the
/// guest's shadow stack in linear memory; the work after the call keeps the
/// optimiser from turning it into a loop.
fn recurse(depth: u64) -> u64 {
    if std::hint::black_box(depth) == u64::MAX {
        return depth;
    }
    std::hint::black_box(recurse(depth + 1)).wrapping_mul(3) ^ depth
}

/// Tries each thing a step is not granted and records what happened:
/// `"denied: <error>"`, or what it got when something was allowed.
fn escape_attempts(port: Option<&str>) -> serde_json::Value {
    use std::io::Read as _;
    let outcome = |r: std::io::Result<String>| match r {
        Ok(got) => format!("allowed: {got}"),
        Err(e) => format!("denied: {e}"),
    };
    let read = |path: &str| {
        outcome(std::fs::File::open(path).and_then(|mut f| {
            let mut text = String::new();
            f.read_to_string(&mut text).map(|_| text)
        }))
    };
    let port = port.unwrap_or("80");
    serde_json::json!({
        "readEtcPasswd": read("/etc/passwd"),
        "readRelative": read("Cargo.toml"),
        "listRoot": outcome(std::fs::read_dir("/").map(|d| format!("{} entries", d.count()))),
        "writeFile": outcome(std::fs::write("/tmp/stephost-escape", b"x").map(|()| "written".into())),
        "environment": std::env::vars().map(|(k, _)| k).collect::<Vec<_>>(),
        "arguments": std::env::args().collect::<Vec<_>>(),
        "tcpConnect": outcome(
            std::net::TcpStream::connect(format!("127.0.0.1:{port}")).map(|_| "connected".into())
        ),
        "tcpListen": outcome(std::net::TcpListener::bind("127.0.0.1:0").map(|_| "listening".into())),
        "udpBind": outcome(std::net::UdpSocket::bind("127.0.0.1:0").map(|_| "bound".into())),
        "nameLookup": outcome(
            std::net::ToSocketAddrs::to_socket_addrs(&("localhost", 80))
                .map(|a| format!("{} addresses", a.count()))
        ),
    })
}

/// Loops without end; `black_box` keeps the optimiser from removing it.
fn spin_forever() -> ! {
    let mut n: u64 = 0;
    loop {
        n = std::hint::black_box(n.wrapping_add(1));
    }
}

/// Grows the heap 1 MiB at a time, touching every page, until a grow fails.
fn exhaust_memory() -> ! {
    let mut hoard: Vec<Vec<u8>> = Vec::new();
    loop {
        hoard.push(vec![1u8; 1 << 20]);
        std::hint::black_box(&hoard);
    }
}

export_step!(Faulty);
