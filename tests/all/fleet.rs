//! One desired state for a whole Service (issue #20 item 3): three
//! `stephost serve` replicas on loopback watch the same manifest directory,
//! mounted the way the kubelet mounts a ConfigMap (`..data` symlink swapped
//! atomically), behind a round-robin sender under steady load. The manifest
//! switches both steps of a Sequence between two components pulled by digest
//! from a real registry, five times there and back: no event fails, no event
//! mixes the two configurations, and every replica reports the same
//! configuration digest within a measured time.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use stephost::app::builtin::{APPENDER, FAULTY};

use crate::oci::{OciRegistry, push};
use crate::support::{Host, ce_headers, get, post, sequence, wasm_step};

/// The manifest: Sequence `fleet` = s1 → s2, both running `component`.
fn manifest(component: &str) -> String {
    [
        sequence("fleet", &["s1", "s2"], None),
        wasm_step("s1", component, &[("suffix", "-a")], ""),
        wasm_step("s2", component, &[("suffix", "-a")], ""),
    ]
    .concat()
}

/// Publish `text` as the ConfigMap volume's new contents: a new timestamped
/// directory, then `..data` renamed over atomically, as the kubelet does.
fn publish(dir: &Path, generation: usize, text: &str) {
    let data = format!("..{generation:04}");
    std::fs::create_dir(dir.join(&data)).expect("mkdir");
    std::fs::write(dir.join(&data).join("pipeline.yaml"), text).expect("write");
    let tmp = dir.join("..data_tmp");
    std::os::unix::fs::symlink(&data, &tmp).expect("symlink");
    std::fs::rename(&tmp, dir.join("..data")).expect("swap ..data");
    let link = dir.join("pipeline.yaml");
    if !link.exists() {
        std::os::unix::fs::symlink("..data/pipeline.yaml", link).expect("symlink");
    }
}

async fn digest_of(host: &Host) -> String {
    let ready = get(&format!("{}/readyz", host.url))
        .await
        .expect("readyz")
        .json();
    ready["configDigest"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_converge_on_each_manifest_change_without_losing_an_event() {
    let registry = OciRegistry::plain();
    let insecure = ["--insecure-registry", registry.host.as_str()];
    let pin = |file: &str, tag: &str| {
        let target = format!("oci://{}/fleet/step:{tag}", registry.host);
        let (code, pinned, err) = push(Path::new(file), &target, &insecure, &[]);
        assert_eq!(code, Some(0), "{err}");
        pinned
    };
    // v1 appends (`in-a-a`), v2 passes through (`in`): an answer shows which
    // configuration ran each step.
    let v1 = pin(APPENDER, "v1");
    let v2 = pin(FAULTY, "v2");

    let dir = tempfile::tempdir().expect("temp dir");
    let volume = dir.path().join("volume");
    std::fs::create_dir(&volume).expect("mkdir");
    publish(&volume, 0, &manifest(&v1));
    let file = volume.join("pipeline.yaml");
    let cache = dir.path().join("node-cache");
    let mut args = vec![
        "--manifest",
        file.to_str().expect("utf-8"),
        "--cache-dir",
        cache.to_str().expect("utf-8"),
    ];
    args.extend(insecure);
    let mut replicas = Vec::new();
    for _ in 0..3 {
        replicas.push(Host::start_args(&args).await);
    }
    let urls: Vec<String> = replicas
        .iter()
        .map(|h| format!("{}/sequences/fleet", h.url))
        .collect();
    let d1 = digest_of(&replicas[0]).await;

    // Steady load: round robin over the replicas, four senders.
    let stop = Arc::new(AtomicBool::new(false));
    let answers: Arc<Mutex<Vec<(u16, String)>>> = Arc::default();
    let mut senders = Vec::new();
    for s in 0..4 {
        let (stop, answers, urls) = (stop.clone(), answers.clone(), urls.clone());
        senders.push(tokio::spawn(async move {
            let mut n = s;
            while !stop.load(Ordering::Relaxed) {
                let id = format!("e-{n}");
                let out = post(&urls[n % urls.len()], &ce_headers(&id, "text/plain"), "in").await;
                answers.lock().expect("lock").push((out.status, out.text()));
                n += 4;
            }
        }));
    }

    let mut convergence = Vec::new();
    let mut d2 = String::new();
    for generation in 1..=10 {
        let (component, expected) = if generation % 2 == 1 {
            (&v2, &d2)
        } else {
            (&v1, &d1)
        };
        tokio::time::sleep(Duration::from_millis(500)).await;
        let swapped = Instant::now();
        publish(&volume, generation, &manifest(component));
        let deadline = swapped + Duration::from_secs(60);
        let digests = loop {
            let mut digests = Vec::new();
            for replica in &replicas {
                digests.push(digest_of(replica).await);
            }
            let target = if expected.is_empty() {
                &digests[0]
            } else {
                expected
            };
            let before = if generation % 2 == 1 { &d1 } else { &d2 };
            if digests.iter().all(|d| d == target && d != before) {
                break digests;
            }
            assert!(
                Instant::now() < deadline,
                "replicas did not converge: {digests:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        convergence.push(swapped.elapsed());
        if d2.is_empty() {
            d2 = digests[0].clone();
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    for sender in senders {
        sender.await.expect("sender");
    }

    let answers = answers.lock().expect("lock").clone();
    let failed: Vec<_> = answers.iter().filter(|(s, _)| *s != 200).collect();
    assert!(
        failed.is_empty(),
        "{} of {} failed: {:?}",
        failed.len(),
        answers.len(),
        &failed[..failed.len().min(5)]
    );
    let old = answers.iter().filter(|(_, t)| t == "in-a-a").count();
    let new = answers.iter().filter(|(_, t)| t == "in").count();
    assert_eq!(
        old + new,
        answers.len(),
        "an event mixed the two configurations: {:?}",
        answers.iter().find(|(_, t)| t != "in-a-a" && t != "in")
    );
    assert!(
        old > 0 && new > 0,
        "both configurations answered ({old}, {new})"
    );
    assert_ne!(d1, d2);
    convergence.sort();
    println!(
        "fleet: {} events, 0 failed ({old} on v1, {new} on v2); 3 replicas converged after \
         each of 10 switches in median {:?}, max {:?} (--watch-interval PT1S)",
        answers.len(),
        convergence[convergence.len() / 2],
        convergence[convergence.len() - 1]
    );
}
