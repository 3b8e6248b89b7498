//! Unit tests of the CRD checks: real Knative documents pass, each kind of
//! violation is reported with its path.

use super::*;

fn check(yaml: &str) -> Vec<String> {
    let schemas = KnativeSchemas::load().expect("schemas");
    let doc: yaml_serde::Value = yaml_serde::from_str(yaml).expect("yaml");
    schemas
        .validate(&doc)
        .expect("known kind")
        .iter()
        .map(|v| v.to_string())
        .collect()
}

#[test]
fn the_seed_sequence_is_valid() {
    let seed = include_str!("../../../../manifests/seed-sequence.yaml");
    let doc = yaml_serde::Deserializer::from_str(seed)
        .map(|d| serde::Deserialize::deserialize(d).expect("yaml"))
        .find(|d: &yaml_serde::Value| d.get("kind").and_then(|k| k.as_str()) == Some("Sequence"))
        .expect("a Sequence");
    let schemas = KnativeSchemas::load().expect("schemas");
    assert_eq!(schemas.validate(&doc), Some(vec![]));
}

#[test]
fn every_violation_is_reported_with_its_path() {
    let errors = check(
        "apiVersion: flows.knative.dev/v1\nkind: Sequence\nmetadata: {name: s}\n\
         spec:\n  steps:\n    - ref: {kind: Service, name: 7, apiVersion: serving.knative.dev/v1}\n      \
         bogus: true\n  reply: {uri: 5}\n  extra: 1\n",
    );
    let joined = errors.join("\n");
    assert!(joined.contains("spec.steps[0].ref.name"), "{joined}");
    assert!(
        joined.contains("spec.steps[0]:") && joined.contains("bogus"),
        "{joined}"
    );
    assert!(joined.contains("spec.reply.uri"), "{joined}");
    assert!(
        joined.contains("spec:") && joined.contains("extra"),
        "{joined}"
    );
    assert_eq!(errors.len(), 4, "{joined}");
}

#[test]
fn a_service_with_a_typo_and_a_wrong_type_is_refused() {
    let errors = check(
        "apiVersion: serving.knative.dev/v1\nkind: Service\nmetadata: {name: s}\n\
         spec:\n  template:\n    spec:\n      containerConcurrency: lots\n      containers:\n        \
         - image: x\n          imagePolicy: Always\n",
    );
    let joined = errors.join("\n");
    assert!(
        joined.contains("spec.template.spec.containerConcurrency"),
        "{joined}"
    );
    assert!(joined.contains("imagePolicy"), "{joined}");
}

#[test]
fn metadata_needs_a_name() {
    let errors = check("apiVersion: eventing.knative.dev/v1\nkind: Broker\nmetadata: {}\n");
    assert!(
        errors
            .iter()
            .any(|e| e.contains("metadata") && e.contains("name")),
        "{errors:?}"
    );
}
