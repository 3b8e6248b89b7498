//! The Knative deployment files: every file in `manifests/` passes
//! `stephost validate` (its stephost documents as `serve` reads them, its
//! Knative documents against the real CRD schemas), broken Knative documents
//! are refused with every violation and its path, and the ConfigMap a cluster
//! mounts is what the host serves, end to end.

use crate::support::{Host, Sink, post, review_headers, run_to_end};

fn manifests_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../manifests")
}

#[test]
fn every_file_in_manifests_validates() {
    let mut files: Vec<String> = std::fs::read_dir(manifests_dir())
        .expect("manifests/")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .map(|p| p.display().to_string())
        .collect();
    files.sort();
    assert!(files.len() >= 6, "{files:?}");
    let mut args = vec!["validate"];
    args.extend(files.iter().map(String::as_str));
    let (code, stdout, stderr) = run_to_end(&args);
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    for file in &files {
        assert!(
            stdout
                .lines()
                .any(|l| l.starts_with(file.as_str()) && l.contains(": ok: ")),
            "{file} not reported ok:\n{stdout}"
        );
    }
    for (file, kinds) in [
        ("service.yaml", "1 document(s) match"),
        ("broker-trigger.yaml", "2 document(s) match"),
        ("configmap.yaml", "2 WasmStep(s)"),
    ] {
        assert!(
            stdout
                .lines()
                .any(|l| l.contains(file) && l.contains(kinds)),
            "{file}: expected {kinds:?}:\n{stdout}"
        );
    }
}

#[test]
fn broken_knative_documents_are_refused_with_every_violation_and_its_path() {
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("broken.yaml");
    std::fs::write(
        &path,
        r#"apiVersion: serving.knative.dev/v1
kind: Service
metadata: {name: stephost}
spec:
  template:
    spec:
      containerConcurrency: "sixteen"
      containers:
        - image: registry.example.com/stephost:0.1.0
          imagePolicy: Always
---
apiVersion: flows.knative.dev/v1
kind: Sequence
metadata: {name: broken}
spec:
  stepz:
    - ref: {apiVersion: serving.knative.dev/v1, kind: Service, name: a}
  reply: {uri: 42}
---
apiVersion: eventing.knative.dev/v1
kind: Trigger
metadata: {name: t}
spec:
  broker: default
  delivery: {retry: three}
"#,
    )
    .expect("write");
    let (code, stdout, stderr) = run_to_end(&["validate", path.to_str().expect("utf-8")]);
    assert_eq!(code, Some(1), "{stdout}\n{stderr}");
    for expected in [
        "document 1 (Service \"stephost\"): spec.template.spec.containerConcurrency",
        "document 1 (Service \"stephost\"): spec.template.spec.containers[0]",
        "imagePolicy",
        "document 2 (Sequence \"broken\"): spec:",
        "stepz",
        "document 2 (Sequence \"broken\"): spec.reply.uri",
        "document 3 (Trigger \"t\"): spec.delivery.retry",
        "schema violation(s)",
    ] {
        assert!(
            stderr.contains(expected),
            "missing {expected:?} in:\n{stderr}"
        );
    }

    // A Sequence without steps passes the CRD schema (Knative's webhook
    // refuses it); stephost's own check reports it.
    std::fs::write(
        &path,
        "apiVersion: flows.knative.dev/v1\nkind: Sequence\nmetadata: {name: empty}\nspec: {}\n",
    )
    .expect("write");
    let (code, _, stderr) = run_to_end(&["validate", path.to_str().expect("utf-8")]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("steps"), "{stderr}");

    // A kind stephost neither runs nor has a schema for.
    std::fs::write(
        &path,
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\n",
    )
    .expect("write");
    let (code, _, stderr) = run_to_end(&["validate", path.to_str().expect("utf-8")]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("unsupported apps/v1 Deployment"),
        "{stderr}"
    );
}

#[test]
fn alternatives_collide_only_when_validated_together() {
    let dir = manifests_dir();
    let a = dir.join("configmap.yaml").display().to_string();
    let b = dir.join("default-sequence.yaml").display().to_string();
    let (code, _, stderr) = run_to_end(&["validate", "--together", &a, &b]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("two Sequence documents are named \"ml-processing-pipeline\""),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_configmap_a_cluster_mounts_is_what_the_host_serves() {
    // The Sequence replies to Broker `default`: point the broker ingress at a sink.
    let broker = Sink::accepting().await;
    let text = std::fs::read_to_string(manifests_dir().join("configmap.yaml")).expect("read");
    let host = Host::start(&text, &["--broker-ingress", &broker.url]).await;
    let headers = review_headers("cm-1");
    let out = post(
        &host.url,
        &headers,
        r#"{"reviewText": "I absolutely loved this book"}"#,
    )
    .await;
    assert_eq!(out.status, 202, "{}", out.text());
    let got = broker.received();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].path, "/default/default", "the Broker's ingress path");
    assert_eq!(got[0].header("ce-type"), "moderated-comment");
    assert_eq!(got[0].header("ce-sentimentresult"), "positive");
    assert_eq!(got[0].header("ce-badwordfilter"), "good");
}

/// A channel other than InMemoryChannel is accepted but runs with
/// InMemoryChannel's semantics: `validate` (and every configuration build)
/// says so; a `ref.address`, which only the cluster can resolve, is refused
/// with what to write instead (issue #21, item 7).
#[test]
fn other_channel_kinds_warn_and_ref_addresses_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("kafka.yaml");
    std::fs::write(
        &path,
        "apiVersion: flows.knative.dev/v1\nkind: Sequence\nmetadata: {name: k}\nspec:\n  \
         channelTemplate: {apiVersion: messaging.knative.dev/v1beta1, kind: KafkaChannel}\n  \
         steps:\n    - uri: http://127.0.0.1:9/\n",
    )
    .expect("write");
    let (code, stdout, stderr) = run_to_end(&["validate", path.to_str().expect("utf-8")]);
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    assert!(
        stderr.contains("spec.channelTemplate: messaging.knative.dev/v1beta1 KafkaChannel")
            && stderr.contains("InMemoryChannel semantics"),
        "{stderr}"
    );

    let path = dir.path().join("address.yaml");
    std::fs::write(
        &path,
        "apiVersion: flows.knative.dev/v1\nkind: Sequence\nmetadata: {name: a}\nspec:\n  \
         steps:\n    - ref: {apiVersion: serving.knative.dev/v1, kind: Service, name: s, \
         address: internal}\n",
    )
    .expect("write");
    // `validate` refuses it by the CRD schema already; `serve` reads
    // stephost's own parser, which must not drop the field silently.
    let (code, _, stderr) = run_to_end(&[
        "serve",
        "--port",
        "0",
        "--host",
        "127.0.0.1",
        "--manifest",
        path.to_str().expect("utf-8"),
    ]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("spec.steps[0]") && stderr.contains("ref.address \"internal\""),
        "{stderr}"
    );
}
