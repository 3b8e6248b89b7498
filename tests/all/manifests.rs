//! Manifests: the seed loads as written; every kind of bad manifest is
//! refused with an error that names the document and the field.

use stephost::app::builtin::APPENDER;

use crate::support::{run_to_end, sequence, serve_expect_refusal, wasm_step};

/// Run `stephost validate` on `manifest`; exit code and combined output.
fn validate(manifest: &str) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("m.yaml");
    std::fs::write(&path, manifest).expect("write");
    let (code, stdout, stderr) = run_to_end(&["validate", path.to_str().expect("utf-8")]);
    (code, format!("{stdout}{stderr}"))
}

fn assert_refused(manifest: &str, expected: &[&str]) {
    let (code, output) = validate(manifest);
    assert_ne!(code, Some(0), "accepted a bad manifest:\n{manifest}");
    for needle in expected {
        assert!(output.contains(needle), "error lacks {needle:?}:\n{output}");
    }
    assert!(!output.contains("panicked"), "{output}");
}

fn appenders(names: &[&str]) -> String {
    names
        .iter()
        .map(|n| wasm_step(n, APPENDER, &[("suffix", "-s")], ""))
        .collect()
}

#[test]
fn the_seed_sequence_loads_exactly_as_written() {
    let seed = include_str!("../../manifests/seed-sequence.yaml");
    let manifest = format!(
        "{seed}{}",
        appenders(&["content-filter-service", "sentiment-analysis-service"])
    );
    let (code, output) = validate(&manifest);
    assert_eq!(code, Some(0), "{output}");
    assert!(output.contains("ml-processing-pipeline"), "{output}");
    // And the shipped manifests validate too.
    let dir = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../manifests/default-sequence.yaml"
    );
    let (code, _, stderr) = run_to_end(&["validate", dir]);
    assert_eq!(code, Some(0), "{stderr}");
}

#[test]
fn unknown_fields_are_named_with_their_path() {
    let bad_step = wasm_step("one", APPENDER, &[], "").replace("spec:\n", "spec:\n  limitz: {}\n");
    assert_refused(
        &format!("{}{bad_step}", sequence("s", &["one"], None)),
        &["document 2", "WasmStep \"one\"", "limitz", "unknown field"],
    );
    let bad_seq =
        sequence("s", &["one"], None).replace("    - ref:\n", "    - colour: red\n      ref:\n");
    assert_refused(
        &format!("{bad_seq}{}", appenders(&["one"])),
        &["document 1", "Sequence \"s\"", "spec.steps[0]", "colour"],
    );
}

#[test]
fn wrong_types_and_bad_delivery_values_are_refused() {
    let with_delivery = |delivery: &str| {
        format!(
            "{}{}",
            sequence("s", &["one"], None).replace(
                "        name: one\n",
                &format!("        name: one\n      delivery: {delivery}\n")
            ),
            appenders(&["one"])
        )
    };
    assert_refused(
        &with_delivery("{retry: three}"),
        &["spec.steps[0].delivery.retry"],
    );
    assert_refused(&with_delivery("{retry: -1}"), &["retry", "must be >= 0"]);
    assert_refused(
        &with_delivery("{backoffPolicy: random}"),
        &["backoffPolicy", "linear"],
    );
    assert_refused(
        &with_delivery("{backoffDelay: 2s}"),
        &["backoffDelay", "ISO-8601"],
    );
    assert_refused(
        &with_delivery("{timeout: PT0S}"),
        &["timeout", "greater than zero"],
    );
    let limits = wasm_step("one", APPENDER, &[], "{memory: lots}");
    assert_refused(
        &format!("{}{limits}", sequence("s", &["one"], None)),
        &["spec.limits.memory", "lots"],
    );
}

#[test]
fn a_sequence_without_steps_is_refused() {
    let manifest =
        "apiVersion: flows.knative.dev/v1\nkind: Sequence\nmetadata: {name: empty}\nspec: {}\n";
    assert_refused(
        manifest,
        &["Sequence \"empty\"", "spec.steps", "at least one step"],
    );
}

#[test]
fn a_step_with_no_binding_and_no_address_is_refused() {
    let manifest = sequence("s", &["one"], None).replace("kind: Service", "kind: Function");
    assert_refused(&manifest, &["spec.steps[0]", "cannot resolve", "Function"]);
    let relative = "apiVersion: flows.knative.dev/v1\nkind: Sequence\nmetadata: {name: s}\nspec:\n  steps:\n    - uri: /only/a/path\n";
    assert_refused(relative, &["spec.steps[0].uri", "relative uri needs a ref"]);
}

#[test]
fn missing_and_wrong_components_are_refused() {
    let dir = tempfile::tempdir().expect("dir");
    let missing = format!(
        "{}{}",
        sequence("s", &["one"], None),
        wasm_step("one", "./nowhere.wasm", &[], "")
    );
    assert_refused(
        &missing,
        &["spec.component", "nowhere.wasm", "does not exist"],
    );

    let core = dir.path().join("core.wasm");
    std::fs::write(&core, b"\0asm\x01\0\0\0").expect("write");
    let not_component = format!(
        "{}{}",
        sequence("s", &["one"], None),
        wasm_step("one", core.to_str().expect("utf-8"), &[], "")
    );
    assert_refused(
        &not_component,
        &["spec.component", "not a valid WebAssembly component"],
    );

    // A valid component that exports nothing: the wrong world.
    let empty = dir.path().join("empty.wasm");
    std::fs::write(&empty, b"\0asm\x0d\0\x01\0").expect("write");
    let wrong_world = format!(
        "{}{}",
        sequence("s", &["one"], None),
        wasm_step("one", empty.to_str().expect("utf-8"), &[], "")
    );
    assert_refused(
        &wrong_world,
        &["does not implement the stephost step world"],
    );

    // `serve` refuses to start on the same manifest.
    let (code, stderr) = serve_expect_refusal(&wrong_world, dir.path());
    assert_ne!(code, Some(0));
    assert!(
        stderr.contains("does not implement the stephost step world"),
        "{stderr}"
    );
}

#[test]
fn yaml_errors_unknown_kinds_and_duplicates_are_refused() {
    assert_refused("spec: [unclosed", &["not valid YAML"]);
    assert_refused(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\n",
        &["document 1", "unsupported apps/v1 Deployment"],
    );
    let twice = format!("{}{}", appenders(&["one"]), appenders(&["one"]));
    assert_refused(&twice, &["two WasmStep documents are named \"one\""]);
    assert_refused(
        &format!(
            "{}{}",
            sequence("s", &["one"], None),
            wasm_step("one", "builtin:nope", &[], "")
        ),
        &["no built-in component \"nope\"", "content-filter"],
    );
}

/// A component that compiles but cannot even be instantiated under its step's
/// memory limit (the in-guest model variant holds 45 MB of data) is refused
/// before serving, not on its first event (here already when the host
/// pre-initialises it; a component without `wizer-initialize` is refused at
/// its check instantiation, "version ... cannot be instantiated").
#[test]
fn a_component_that_cannot_instantiate_under_its_limits_is_refused() {
    let manifest = wasm_step(
        "big",
        stephost::app::builtin::SENTIMENT_TRACT,
        &[],
        "{memory: 16Mi}",
    );
    assert_refused(
        &manifest,
        &["WasmStep \"big\"", "memory limit of 16777216 bytes"],
    );
}
