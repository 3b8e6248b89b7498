//! A failing or hostile guest fails its own event only: traps, endless
//! loops, memory exhaustion, stack overflow, host-side waits, oversized
//! outputs become errors within the step's limits, WASI denies what is not
//! granted, a step's overload is pushed back with 429, and the host keeps
//! serving with bounded memory.

use std::time::{Duration, Instant};

use stephost::app::builtin::{APPENDER, FAULTY};

use crate::support::{Host, ce_headers, post, sequence, wasm_step};

/// Sequence `bad` = one faulty step in `mode`; sequence `good` = one appender.
fn manifest(mode: &str, limits: &str) -> String {
    format!(
        "{}{}{}{}",
        sequence("bad", &["faulty"], None),
        sequence("good", &["appender"], None),
        wasm_step("faulty", FAULTY, &[("mode", mode)], limits),
        wasm_step("appender", APPENDER, &[("suffix", "-ok")], "")
    )
}

async fn healthy_sequence_still_works(host: &Host) {
    let ok = post(
        &format!("{}/sequences/good", host.url),
        &ce_headers("after", "text/plain"),
        "still",
    )
    .await;
    assert_eq!(ok.status, 200, "{}", ok.text());
    assert_eq!(ok.text(), "still-ok");
}

#[tokio::test]
async fn an_endless_loop_is_cut_at_the_step_timeout_with_500() {
    let host = Host::start(&manifest("loop", "{memory: 64Mi, timeout: PT1S}"), &[]).await;
    let started = Instant::now();
    let out = post(
        &format!("{}/sequences/bad", host.url),
        &ce_headers("loop-1", "text/plain"),
        "x",
    )
    .await;
    let took = started.elapsed();
    assert_eq!(out.status, 500, "{}", out.text());
    assert!(
        out.json()["error"]
            .as_str()
            .unwrap_or("")
            .contains("timed out"),
        "{}",
        out.text()
    );
    // Correctness bound, not a benchmark: the attempt must end at the
    // timeout (1 s), not run on; 3 s leaves room for a loaded machine.
    assert!(took < Duration::from_secs(3), "took {took:?}");
    assert!(
        took >= Duration::from_millis(900),
        "cut before its timeout: {took:?}"
    );
    healthy_sequence_still_works(&host).await;
}

#[tokio::test]
async fn a_looping_guest_does_not_block_other_events() {
    let host = Host::start(&manifest("loop", "{memory: 64Mi, timeout: PT3S}"), &[]).await;
    let bad_url = format!("{}/sequences/bad", host.url);
    let looping =
        tokio::spawn(async move { post(&bad_url, &ce_headers("l", "text/plain"), "x").await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    // While the guest spins on one core, other events keep flowing.
    healthy_sequence_still_works(&host).await;
    assert!(
        !looping.is_finished(),
        "the looping event should still be running"
    );
    assert_eq!(looping.await.expect("join").status, 500);
}

#[tokio::test]
async fn memory_exhaustion_fails_the_event_with_500_and_names_the_limit() {
    let host = Host::start(&manifest("oom", "{memory: 16Mi, timeout: PT10S}"), &[]).await;
    let out = post(
        &format!("{}/sequences/bad", host.url),
        &ce_headers("oom-1", "text/plain"),
        "x",
    )
    .await;
    assert_eq!(out.status, 500, "{}", out.text());
    let message = out.json()["error"].as_str().unwrap_or("").to_string();
    assert!(
        message.contains("memory limit of 16777216 bytes"),
        "{message}"
    );
    healthy_sequence_still_works(&host).await;
}

#[tokio::test]
async fn a_trap_is_a_500_without_a_wasm_backtrace_and_its_panic_is_logged() {
    let host = Host::start(&manifest("trap", ""), &[]).await;
    let out = post(
        &format!("{}/sequences/bad", host.url),
        &ce_headers("trap-1", "text/plain"),
        "x",
    )
    .await;
    assert_eq!(out.status, 500, "{}", out.text());
    let body = out.text();
    assert!(body.contains("trapped"), "{body}");
    assert!(!body.contains("wasm backtrace"), "backtrace leaked: {body}");
    healthy_sequence_still_works(&host).await;
    assert!(
        host.logs().contains("faulty: asked to trap"),
        "guest stderr not logged"
    );
}

#[tokio::test]
async fn step_errors_map_to_subscriber_statuses() {
    let host = Host::start(&manifest("none", ""), &[]).await;
    let url = format!("{}/steps/faulty", host.url);
    let mut headers = ce_headers("f-1", "text/plain");
    headers.push(("ce-fault", "fatal"));
    let fatal = post(&url, &headers, "x").await;
    assert_eq!(
        fatal.status,
        422,
        "fatal ≙ 4xx, not retried: {}",
        fatal.text()
    );
    headers.pop();
    headers.push(("ce-fault", "retryable"));
    let retryable = post(&url, &headers, "x").await;
    assert_eq!(
        retryable.status,
        500,
        "retryable ≙ 5xx: {}",
        retryable.text()
    );
    // Through the Sequence with no dead-letter sink: 500, as Knative's channel
    // ingress answers, so the event is never acknowledged and lost.
    let mut headers = ce_headers("f-2", "text/plain");
    headers.push(("ce-fault", "fatal"));
    let seq = post(&format!("{}/sequences/bad", host.url), &headers, "x").await;
    assert_eq!(seq.status, 500, "{}", seq.text());
    assert!(seq.text().contains("asked to fail (fatal)"));
    assert!(seq.text().contains("deadLetterSink"), "{}", seq.text());
}

/// The host's resident and peak memory in MiB, from /proc.
fn host_memory_mib(host: &Host) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{}/status", host.pid()))
        .expect("read /proc/PID/status");
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|kib| kib.parse::<u64>().ok())
            .map(|kib| kib / 1024)
            .unwrap_or_else(|| panic!("no {name} in /proc status"))
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// One event to sequence `bad` with extra `ce-*` headers; its status and error.
async fn bad_event(host: &Host, id: &str, extra: &[(&str, &str)]) -> (u16, String) {
    let mut headers = ce_headers(id, "text/plain");
    headers.extend_from_slice(extra);
    let out = post(&format!("{}/sequences/bad", host.url), &headers, "x").await;
    let error = if out.status >= 400 {
        out.json()["error"].as_str().unwrap_or("").to_string()
    } else {
        format!("an event with {} bytes of data", out.body.len())
    };
    (out.status, error)
}

#[tokio::test]
async fn deep_recursion_overflows_the_guest_stack_not_the_host() {
    let host = Host::start(&manifest("recurse", ""), &[]).await;
    let (status, error) = bad_event(&host, "deep-1", &[]).await;
    assert_eq!(status, 500, "{error}");
    assert!(error.contains("trapped"), "{error}");
    assert!(error.contains("call stack exhausted"), "{error}");
    healthy_sequence_still_works(&host).await;
}

#[tokio::test]
async fn a_guest_waiting_in_a_host_call_is_cut_at_its_timeout() {
    // A WASI sleep waits in the host, where the epoch deadline never fires:
    // the host's own timer must stop it.
    let host = Host::start(&manifest("sleep", "{timeout: PT1S}"), &[]).await;
    let started = Instant::now();
    let (status, error) = bad_event(&host, "sleep-1", &[]).await;
    let took = started.elapsed();
    assert_eq!(status, 500, "{error}");
    assert!(error.contains("timed out after 1s"), "{error}");
    // Correctness bound: cut at 1 s, not after the guest's 60 s sleep.
    assert!(took < Duration::from_secs(5), "took {took:?}");
    healthy_sequence_still_works(&host).await;
}

#[tokio::test]
async fn a_100_mb_output_is_refused_and_host_memory_stays_bounded() {
    // The guest may use 512 MiB, so it can build the 100 MB event; the host
    // refuses it against limits.maxOutput (default 4 MiB).
    let host = Host::start(&manifest("huge-output", "{memory: 512Mi}"), &[]).await;
    for i in 0..3 {
        let (status, error) = bad_event(&host, &format!("huge-{i}"), &[]).await;
        assert_eq!(status, 500, "{error}");
        assert!(
            error.contains("output is too large: 1000000")
                && error.contains("bytes, over the step's limits.maxOutput of 4194304 bytes"),
            "{error}"
        );
        // Not retryable (≙ 422): the Sequence says a dead-letter sink would keep it.
        assert!(error.contains("deadLetterSink"), "{error}");
    }
    // Per step: the same guest answers directly with 422.
    let mut headers = ce_headers("huge-direct", "text/plain");
    headers.push(("ce-fault", "huge-output"));
    headers.push(("ce-faultbytes", "5000000"));
    let direct = post(&format!("{}/steps/faulty", host.url), &headers, "x").await;
    assert_eq!(direct.status, 422, "{:.300}", direct.text());
    healthy_sequence_still_works(&host).await;
    let (rss, peak) = host_memory_mib(&host);
    eprintln!("host memory after three 100 MB outputs: RSS {rss} MiB, peak {peak} MiB");
    // Three 100 MB outputs: the host held at most one guest memory and one
    // copy of the output at a time (bound: 512 MiB guest + 100 MB + the host).
    assert!(peak < 900, "peak RSS {peak} MiB");
    assert!(rss < 600, "RSS after {rss} MiB");
}

#[tokio::test]
async fn a_smaller_max_output_is_enforced_and_a_fitting_output_passes() {
    let host = Host::start(&manifest("huge-output", "{maxOutput: 64Ki}"), &[]).await;
    let (status, error) = bad_event(&host, "fits", &[("ce-faultbytes", "60000")]).await;
    assert_eq!(status, 200, "{error}");
    assert_eq!(error, "an event with 60000 bytes of data");
    let (status, error) = bad_event(&host, "too-big", &[("ce-faultbytes", "70000")]).await;
    assert_eq!(status, 500, "{error}");
    assert!(error.contains("limits.maxOutput of 65536 bytes"), "{error}");
}

#[tokio::test]
async fn an_output_with_100000_extensions_is_refused() {
    let host = Host::start(&manifest("many-extensions", "{memory: 256Mi}"), &[]).await;
    let (status, error) = bad_event(&host, "ext-1", &[]).await;
    assert_eq!(status, 500, "{error}");
    assert!(
        error.contains("100000 extensions, at most 64 are allowed"),
        "{error}"
    );
    let (status, error) = bad_event(&host, "ext-2", &[("ce-faultcount", "10")]).await;
    assert_eq!(status, 200, "ten extensions are fine: {error}");
    healthy_sequence_still_works(&host).await;
    let (rss, _) = host_memory_mib(&host);
    assert!(rss < 600, "RSS after {rss} MiB");
}

#[tokio::test]
async fn wasi_denies_files_environment_sockets_and_lookups() {
    // A listener the guest will try to reach: it must never see a connection.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.set_nonblocking(true).expect("nonblocking");
    let port = listener.local_addr().expect("addr").port().to_string();
    let host = Host::start_with_env(
        &manifest("escape", ""),
        &[],
        &[("STEPHOST_SECRET", "do-not-leak")],
    )
    .await;
    let mut headers = ce_headers("escape-1", "text/plain");
    headers.push(("ce-faultport", &port));
    let out = post(&format!("{}/sequences/bad", host.url), &headers, "x").await;
    assert_eq!(
        out.status,
        200,
        "WASI denials are errors, not crashes: {}",
        out.text()
    );
    let report = out.json();
    for attempt in [
        "readEtcPasswd",
        "readRelative",
        "listRoot",
        "writeFile",
        "tcpConnect",
        "tcpListen",
        "udpBind",
        "nameLookup",
    ] {
        let seen = report[attempt].as_str().unwrap_or("");
        assert!(seen.starts_with("denied: "), "{attempt}: {seen}");
    }
    assert_eq!(report["environment"], serde_json::json!([]), "{report}");
    assert_eq!(report["arguments"], serde_json::json!([]), "{report}");
    assert!(!out.text().contains("do-not-leak"));
    assert!(
        listener.accept().is_err(),
        "the guest reached a loopback socket"
    );
    healthy_sequence_still_works(&host).await;
}

#[tokio::test]
async fn a_full_step_pushes_back_with_429_and_retry_after() {
    // One place, one waiter: the third concurrent event is refused at once.
    // The sleeping guests hold host-wide running places too (a Wasm step is
    // running, whatever it does): leave room beside them for the third event
    // and the healthy Sequence, so the step's own gate is what answers.
    let running = (std::thread::available_parallelism().map_or(1, |n| n.get()) + 2).to_string();
    let host = Host::start(
        &manifest("sleep", "{timeout: PT2S, concurrency: 1, maxQueue: 1}"),
        &["--max-running", &running],
    )
    .await;
    let url = format!("{}/sequences/bad", host.url);
    let mut running = Vec::new();
    for i in 0..2 {
        let url = url.clone();
        running.push(tokio::spawn(async move {
            post(&url, &ce_headers(&format!("slow-{i}"), "text/plain"), "x").await
        }));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let started = Instant::now();
    let refused = post(&url, &ce_headers("third", "text/plain"), "x").await;
    assert_eq!(refused.status, 429, "{}", refused.text());
    assert_eq!(refused.header("retry-after"), "1");
    let error = refused.json()["error"].as_str().unwrap_or("").to_string();
    assert!(
        error.contains("step \"faulty\" is overloaded: 1 calls running and 1 waiting"),
        "{error}"
    );
    // Refused at once, not after waiting for a place.
    assert!(started.elapsed() < Duration::from_secs(1));
    // Other steps are not limited by this one.
    healthy_sequence_still_works(&host).await;
    for event in running {
        let out = event.await.expect("join");
        assert_eq!(out.status, 500, "both admitted events ran (and timed out)");
    }
    let metrics = crate::support::get(&format!("{}/metrics", host.url))
        .await
        .expect("metrics")
        .text();
    assert!(
        metrics.contains(r#"stephost_events_total{sequence="bad",outcome="overloaded"} 1"#),
        "{metrics}"
    );
}

#[test]
fn a_trap_while_pre_initialising_refuses_the_step_with_the_guests_message() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (code, stderr) =
        crate::support::serve_expect_refusal(&manifest("preinit-trap", ""), dir.path());
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("pre-initialisation (wizer-initialize) failed"),
        "{stderr}"
    );
    assert!(
        stderr.contains("faulty: asked to trap while pre-initialising"),
        "the guest's panic message is shown: {stderr}"
    );
}

#[tokio::test]
async fn a_pre_initialised_guest_still_gets_a_fresh_instance_per_event() {
    // The faulty guest exports wizer-initialize (it is pre-initialised);
    // state from one event must not reach the next: a trap in one event and
    // a normal event after it, on the same step.
    let host = Host::start(&manifest("none", ""), &[]).await;
    assert!(
        host.logs().contains("pre-initialised"),
        "the step was not pre-initialised: {}",
        host.logs()
    );
    let (status, error) = bad_event(&host, "t-1", &[("ce-fault", "trap")]).await;
    assert_eq!(status, 500, "{error}");
    let (status, error) = bad_event(&host, "t-2", &[]).await;
    assert_eq!(status, 200, "{error}");
}

/// The snapshots in `<cache-dir>-preinit`: (file name, bytes).
fn snapshots(cache_dir: &std::path::Path) -> Vec<(String, Vec<u8>)> {
    let mut dir = cache_dir.as_os_str().to_owned();
    dir.push("-preinit");
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .map(|entries| {
            entries
                .flatten()
                .filter(|e| e.path().extension().is_some_and(|x| x == "wasm"))
                .map(|e| {
                    let bytes = std::fs::read(e.path()).expect("read snapshot");
                    (e.file_name().to_string_lossy().into_owned(), bytes)
                })
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

#[tokio::test]
async fn a_warm_start_reads_the_pre_initialisation_snapshot_from_the_cache() {
    let temp = tempfile::tempdir().expect("temp dir");
    let cache = temp.path().join("compiled");
    let args = ["--cache-dir", cache.to_str().expect("utf-8")];
    const RAN: &str = "wizer-initialize ran once";
    const READ: &str = "snapshot read from the cache";

    // First start: the initialiser runs, its snapshot is stored.
    let host = Host::start(&manifest("none", ""), &args).await;
    assert!(host.logs().contains(RAN), "{}", host.logs());
    drop(host);
    let stored = snapshots(&cache);
    assert!(
        !stored.is_empty(),
        "the pre-initialised steps' snapshots are stored"
    );

    // Second start: read back, not run again; the step behaves the same.
    let host = Host::start(&manifest("none", ""), &args).await;
    assert!(
        host.logs().contains(READ) && !host.logs().contains(RAN),
        "{}",
        host.logs()
    );
    assert_eq!(bad_event(&host, "w-1", &[]).await.0, 200);
    assert_eq!(
        bad_event(&host, "w-2", &[("ce-fault", "trap")]).await.0,
        500
    );
    assert_eq!(
        bad_event(&host, "w-3", &[]).await.0,
        200,
        "fresh instance after a trap"
    );
    drop(host);

    // Damaged snapshots are deleted and made afresh.
    let mut dir = cache.as_os_str().to_owned();
    dir.push("-preinit");
    for (name, _) in &stored {
        std::fs::write(std::path::Path::new(&dir).join(name), b"not a component")
            .expect("damage it");
    }
    let host = Host::start(&manifest("none", ""), &args).await;
    assert!(
        host.logs().contains("unusable: made afresh"),
        "{}",
        host.logs()
    );
    assert!(host.logs().contains(RAN), "{}", host.logs());
    assert_eq!(bad_event(&host, "w-4", &[]).await.0, 200);
    drop(host);
    assert_eq!(snapshots(&cache), stored, "the same snapshots, bit for bit");

    // Other limits for one step (its initialiser runs under them): another
    // snapshot for it.
    let host = Host::start(&manifest("none", "{memory: 96Mi}"), &args).await;
    assert!(host.logs().contains(RAN), "{}", host.logs());
    drop(host);
    assert_eq!(snapshots(&cache).len(), stored.len() + 1);
}

/// The compile cache's entries and their `.stats` files: (name, bytes).
fn cache_files(cache_dir: &std::path::Path) -> Vec<(String, Vec<u8>)> {
    let mut files = Vec::new();
    for engine_dir in std::fs::read_dir(cache_dir.join("modules")).expect("modules dir") {
        for entry in std::fs::read_dir(engine_dir.expect("entry").path()).expect("engine dir") {
            let path = entry.expect("entry").path();
            let name = path
                .file_name()
                .expect("name")
                .to_string_lossy()
                .into_owned();
            files.push((name, std::fs::read(&path).expect("read cache file")));
        }
    }
    files.sort();
    files
}

#[tokio::test]
async fn a_much_used_cache_entry_is_not_recompressed_behind_the_events() {
    // wasmtime's cache worker recompresses an entry at zstd level 20 once it
    // has been loaded 256 times: seconds to tens of seconds of a core taken
    // from serving. stephost switches that off; this marks every entry as
    // loaded 1000 times and checks the next start only counts the use.
    let temp = tempfile::tempdir().expect("temp dir");
    let cache = temp.path().join("compiled");
    let args = ["--cache-dir", cache.to_str().expect("utf-8")];
    let manifest = format!(
        "{}{}",
        sequence("s", &["a"], None),
        wasm_step("a", APPENDER, &[("suffix", "-a")], "")
    );
    drop(Host::start(&manifest, &args).await);
    let stats: Vec<String> = cache_files(&cache)
        .into_iter()
        .filter(|(name, _)| name.ends_with(".stats"))
        .map(|(name, _)| name)
        .collect();
    assert!(!stats.is_empty(), "the first start filled the cache");
    for name in &stats {
        let path = std::fs::read_dir(cache.join("modules"))
            .expect("modules dir")
            .map(|d| d.expect("entry").path().join(name))
            .find(|p| p.exists())
            .expect("stats file");
        std::fs::write(path, "usages = 1000\noptimized-compression = 3\n").expect("mark used");
    }
    let before = cache_files(&cache);

    let host = Host::start(&manifest, &args).await;
    let out = post(&host.url, &ce_headers("c-1", "text/plain"), "x").await;
    assert_eq!(out.text(), "x-a");
    // The worker counts the load (usages 1001) before it would recompress.
    let deadline = Instant::now() + Duration::from_secs(20);
    let counted = loop {
        let text: String = cache_files(&cache)
            .into_iter()
            .filter(|(name, _)| name.ends_with(".stats"))
            .map(|(_, bytes)| String::from_utf8_lossy(&bytes).into_owned())
            .collect();
        if text.contains("usages = 1001") || Instant::now() > deadline {
            break text;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(counted.contains("usages = 1001"), "{counted}");
    // Level 20 of this small entry takes well under a second when it runs.
    tokio::time::sleep(Duration::from_secs(2)).await;
    drop(host);
    let after = cache_files(&cache);
    // Each entry: its name, size and a hash of its bytes.
    let entries = |files: &[(String, Vec<u8>)]| -> Vec<(String, usize, u64)> {
        use std::hash::{Hash, Hasher};
        files
            .iter()
            .filter(|(name, _)| !name.ends_with(".stats"))
            .map(|(name, bytes)| {
                let mut hasher = std::collections::hash_map::DefaultHasher::new();
                bytes.hash(&mut hasher);
                (name.clone(), bytes.len(), hasher.finish())
            })
            .collect()
    };
    assert_eq!(entries(&after), entries(&before), "entries not rewritten");
    for (name, bytes) in after.iter().filter(|(n, _)| n.ends_with(".stats")) {
        let text = String::from_utf8_lossy(bytes);
        assert!(text.contains("optimized-compression = 3"), "{name}: {text}");
    }
}
