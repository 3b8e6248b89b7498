//! Hot reload: the manifest `serve` was given is watched; a change (as a
//! Kubernetes ConfigMap makes it: an atomic symlink swap) is compiled and
//! swapped in while events keep flowing, and a broken change is refused
//! while the old configuration keeps serving.

use std::path::Path;
use std::time::{Duration, Instant};

use stephost::app::builtin::{APPENDER, SENTIMENT};

use crate::support::{Host, ce_headers, get, post, request, sequence, wasm_step};

/// The manifest of an appender step `a` in Sequence `s`, adding `suffix`.
fn manifest(suffix: &str) -> String {
    format!(
        "{}{}",
        sequence("s", &["a"], None),
        wasm_step("a", APPENDER, &[("suffix", suffix)], "")
    )
}

/// Two steps that both change with every flip (`-A1-A2` ↔ `-B1-B2`): an
/// event that saw a half-applied change would answer `x-A1-B2` or `x-B1-A2`.
fn two_steps(side: &str) -> String {
    format!(
        "{}{}{}",
        sequence("s", &["a", "b"], None),
        wasm_step("a", APPENDER, &[("suffix", &format!("-{side}1"))], ""),
        wasm_step("b", APPENDER, &[("suffix", &format!("-{side}2"))], "")
    )
}

/// Publish `text` as a ConfigMap volume does: write a new data directory,
/// then atomically re-point the `..data` symlink at it.
fn publish(dir: &Path, generation: u32, text: &str) {
    let data = dir.join(format!("..gen{generation}"));
    std::fs::create_dir_all(&data).expect("data dir");
    std::fs::write(data.join("pipeline.yaml"), text).expect("write");
    let tmp = dir.join("..data_tmp");
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(format!("..gen{generation}"), &tmp).expect("symlink");
    std::fs::rename(&tmp, dir.join("..data")).expect("atomic swap");
}

async fn answer(host: &Host, id: &str) -> (u16, String) {
    let out = post(&host.url, &ce_headers(id, "text/plain"), "x").await;
    (out.status, out.text())
}

/// Send events until the answer is `want` (or 20 s pass): every answer on
/// the way must be a success with the old or the new suffix.
async fn until_answer(host: &Host, old: &str, want: &str) -> Duration {
    let started = Instant::now();
    let mut n = 0;
    loop {
        n += 1;
        let (status, body) = answer(host, &format!("poll-{n}")).await;
        assert_eq!(status, 200, "{body}");
        if body == want {
            return started.elapsed();
        }
        assert_eq!(
            body, old,
            "an event saw neither the old nor the new configuration"
        );
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "change never went live"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configmap_style_change_goes_live_and_a_broken_one_is_refused() {
    let dir = tempfile::tempdir().expect("tmp");
    publish(dir.path(), 1, &manifest("-v1"));
    std::os::unix::fs::symlink("..data/pipeline.yaml", dir.path().join("pipeline.yaml"))
        .expect("symlink");
    let path = dir.path().join("pipeline.yaml");
    let host = Host::start_args(&[
        "--manifest",
        path.to_str().expect("utf-8"),
        "--watch-interval",
        "PT0.2S",
    ])
    .await;
    assert_eq!(answer(&host, "first").await, (200, "x-v1".to_string()));

    publish(dir.path(), 2, &manifest("-v2"));
    let took = until_answer(&host, "x-v1", "x-v2").await;
    println!("file change → live in {took:?} (0.2 s polling)");

    // Broken: a component file that is not a component.
    let bogus = dir.path().join("bogus.wasm");
    std::fs::write(&bogus, b"not wasm").expect("write");
    let broken = format!(
        "{}{}",
        sequence("s", &["a"], None),
        wasm_step("a", bogus.to_str().expect("utf-8"), &[], "")
    );
    publish(dir.path(), 3, &broken);
    let deadline = Instant::now() + Duration::from_secs(20);
    let detail = loop {
        let ready = get(&format!("{}/readyz", host.url)).await.expect("readyz");
        assert_eq!(ready.status, 200, "still serving the old configuration");
        let detail = ready.json()["lastReloadError"]
            .as_str()
            .unwrap_or("")
            .to_string();
        if !detail.is_empty() {
            break detail;
        }
        assert!(
            Instant::now() < deadline,
            "the broken change was never reported"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        detail.contains("not a valid WebAssembly component"),
        "{detail}"
    );
    assert_eq!(
        answer(&host, "after-broken").await,
        (200, "x-v2".to_string())
    );
    let metrics = get(&format!("{}/metrics", host.url))
        .await
        .expect("metrics")
        .text();
    assert!(
        metrics.contains("stephost_manifest_reloads_total{outcome=\"failed\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("stephost_manifest_reloads_total{outcome=\"applied\"} 1"),
        "{metrics}"
    );

    // Fixed again: goes live, and the error is cleared.
    publish(dir.path(), 4, &manifest("-v3"));
    until_answer(&host, "x-v2", "x-v3").await;
    let ready = get(&format!("{}/readyz", host.url)).await.expect("readyz");
    assert!(
        ready.json()["lastReloadError"].is_null(),
        "{}",
        ready.text()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_in_flight_during_swaps_all_succeed_on_one_configuration() {
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("m.yaml");
    std::fs::write(&path, two_steps("A")).expect("write");
    let host = Host::start_args(&[
        "--manifest",
        path.to_str().expect("utf-8"),
        "--watch-interval",
        "PT0.05S",
    ])
    .await;
    // Four senders keep events flowing until the file has flipped 10 times,
    // each flip waited for until it is live.
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let url = host.url.clone();
    let senders: Vec<_> = (0..4)
        .map(|s| {
            let url = url.clone();
            let done = done.clone();
            tokio::spawn(async move {
                let mut seen = Vec::new();
                let mut i = 0;
                while !done.load(std::sync::atomic::Ordering::Relaxed) {
                    i += 1;
                    let out =
                        post(&url, &ce_headers(&format!("f-{s}-{i}"), "text/plain"), "x").await;
                    assert_eq!(out.status, 200, "{}", out.text());
                    seen.push(out.text());
                }
                seen
            })
        })
        .collect();
    let mut current = "x-A1-A2";
    for flip in 0..10 {
        let (side, want) = if flip % 2 == 0 {
            ("B", "x-B1-B2")
        } else {
            ("A", "x-A1-A2")
        };
        let tmp = dir.path().join("m.yaml.tmp");
        std::fs::write(&tmp, two_steps(side)).expect("write");
        std::fs::rename(&tmp, &path).expect("rename");
        until_answer(&host, current, want).await;
        current = want;
    }
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut answers = Vec::new();
    for sender in senders {
        answers.extend(sender.await.expect("join"));
    }
    let a = answers.iter().filter(|b| *b == "x-A1-A2").count();
    let b = answers.iter().filter(|b| *b == "x-B1-B2").count();
    println!(
        "{} events during 10 live swaps of a two-step Sequence: {a} on A, {b} on B",
        answers.len()
    );
    assert_eq!(
        a + b,
        answers.len(),
        "every event ran on exactly one configuration"
    );
    assert!(a > 0 && b > 0, "events flowed on both sides of the swaps");
}

/// `bytes` with a custom section (id 0) named `name` appended: the same
/// component under a new digest, so nothing is served from a compile cache.
fn with_custom_section(mut bytes: Vec<u8>, name: &str, payload: &[u8]) -> Vec<u8> {
    fn leb128(mut n: usize, out: &mut Vec<u8>) {
        loop {
            let byte = (n & 0x7f) as u8;
            n >>= 7;
            out.push(if n == 0 { byte } else { byte | 0x80 });
            if n == 0 {
                return;
            }
        }
    }
    let mut body = Vec::new();
    leb128(name.len(), &mut body);
    body.extend_from_slice(name.as_bytes());
    body.extend_from_slice(payload);
    bytes.push(0);
    leb128(body.len(), &mut bytes);
    bytes.extend_from_slice(&body);
    bytes
}

/// A manifest change that lands while an admin upload compiles is kept: the
/// files stay the source of truth. (The upload read the live configuration,
/// compiled for seconds, then stored what it derived from the old one, so
/// the reload was silently undone.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_during_an_admin_upload_is_kept() {
    const TOKEN: &str = "reload-race-token";
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("pipeline.yaml");
    std::fs::write(&path, manifest("-A")).expect("write");
    let host = Host::start_args_with_env(
        &[
            "--manifest",
            path.to_str().expect("utf-8"),
            "--watch-interval",
            "PT0.05S",
        ],
        &[("STEPHOST_ADMIN_TOKEN", TOKEN)],
    )
    .await;
    assert_eq!(answer(&host, "before").await, (200, "x-A".to_string()));
    // A component that takes seconds to compile, never compiled before.
    let nonce = format!("{:?}", std::time::SystemTime::now());
    let big = with_custom_section(
        std::fs::read(SENTIMENT).expect("built guest"),
        "reload-race",
        nonce.as_bytes(),
    );
    let upload = {
        let url = format!("{}/admin/steps/a/versions/slow", host.url);
        let auth = format!("Bearer {TOKEN}");
        tokio::spawn(async move { request("PUT", &url, &[("authorization", &auth)], big).await })
    };
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert!(
        !upload.is_finished(),
        "the upload should still be compiling"
    );
    std::fs::write(&path, manifest("-B")).expect("write");
    let uploaded = upload.await.expect("join");
    assert_eq!(uploaded.status, 200, "{}", uploaded.text());
    until_answer(&host, "x-A", "x-B").await;
    // Settled, and it stays so: the manifest's change is not undone. (Had the
    // reload landed before the upload read the configuration, the upload
    // would rightly add its version on top of it; either way `-B` stays.)
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(answer(&host, "after").await, (200, "x-B".to_string()));
}
