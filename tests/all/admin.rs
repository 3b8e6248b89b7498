//! The admin API: off without a token, 401 without the right one; upload a
//! version, shift traffic to it, roll back — live, while events keep
//! succeeding — and a bad upload changes nothing.

use stephost::app::builtin::{APPENDER, DROPPER, FAULTY};

use crate::support::{Host, ce_headers, post, request, sequence, two_versions, wasm_step};

const TOKEN: &str = "s3cret-admin-token";

fn manifest() -> String {
    format!(
        "{}{}",
        sequence("s", &["a"], None),
        wasm_step("a", APPENDER, &[("suffix", "-a")], "")
    )
}

async fn admin(
    host: &Host,
    method: &str,
    path: &str,
    body: impl Into<bytes::Bytes>,
) -> crate::support::Exchange {
    let auth = format!("Bearer {TOKEN}");
    request(
        method,
        &format!("{}{path}", host.url),
        &[("authorization", &auth)],
        body,
    )
    .await
}

/// Upload the built guest at `path` as version `version` of step `a`.
async fn upload(host: &Host, version: &str, path: &str) -> crate::support::Exchange {
    let bytes = std::fs::read(path).expect("built guest");
    admin(
        host,
        "PUT",
        &format!("/admin/steps/a/versions/{version}"),
        bytes,
    )
    .await
}

async fn send(host: &Host, id: &str) -> (u16, String, String) {
    let out = post(&host.url, &ce_headers(id, "text/plain"), "x").await;
    (
        out.status,
        out.text(),
        out.header("ce-stephostversions").to_string(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_token_there_is_no_admin_api_and_a_wrong_token_is_401() {
    let off = Host::start(&manifest(), &[]).await;
    let out = request(
        "GET",
        &format!("{}/admin/steps", off.url),
        &[("authorization", "Bearer x")],
        "",
    )
    .await;
    assert_eq!(out.status, 404, "{}", out.text());

    let on = Host::start_with_env(&manifest(), &[], &[("STEPHOST_ADMIN_TOKEN", TOKEN)]).await;
    for auth in [
        None,
        Some("Bearer wrong"),
        Some("Bearer s3cret-admin-toke"),
        Some(TOKEN),
    ] {
        let headers: Vec<(&str, &str)> = auth.iter().map(|a| ("authorization", *a)).collect();
        let out = request("GET", &format!("{}/admin/steps", on.url), &headers, "").await;
        assert_eq!(out.status, 401, "{auth:?}: {}", out.text());
    }
    let out = admin(&on, "GET", "/admin/steps", "").await;
    assert_eq!(out.status, 200, "{}", out.text());
    let steps = out.json();
    assert_eq!(steps["steps"][0]["name"], "a");
    assert_eq!(steps["steps"][0]["versions"][0]["name"], "default");
    assert!(
        steps["steps"][0]["versions"][0]["digest"]
            .as_str()
            .unwrap_or("")
            .starts_with("sha256:"),
        "{steps}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_shift_and_roll_back_live_and_bad_uploads_change_nothing() {
    let host = Host::start_with_env(&manifest(), &[], &[("STEPHOST_ADMIN_TOKEN", TOKEN)]).await;
    assert_eq!(
        send(&host, "e0").await,
        (200, "x-a".into(), "a=default".into())
    );

    // Bad uploads: not a component; a component of the wrong world.
    let out = admin(&host, "PUT", "/admin/steps/a/versions/v2", "not wasm").await;
    assert_eq!(out.status, 422, "{}", out.text());
    assert!(
        out.text().contains("not a valid WebAssembly component"),
        "{}",
        out.text()
    );
    let core_module = b"\0asm\x01\0\0\0".to_vec();
    let out = admin(&host, "PUT", "/admin/steps/a/versions/v2", core_module).await;
    assert_eq!(out.status, 422, "{}", out.text());
    let out = admin(
        &host,
        "PUT",
        "/admin/steps/nope/versions/v2",
        std::fs::read(DROPPER).expect("dropper"),
    )
    .await;
    assert_eq!(out.status, 404, "{}", out.text());
    assert_eq!(send(&host, "e1").await.2, "a=default", "nothing changed");

    // Upload v2 (the dropper): added with no traffic.
    let out = upload(&host, "v2", DROPPER).await;
    assert_eq!(out.status, 200, "{}", out.text());
    assert_eq!(out.json()["versions"][1]["name"], "v2");
    assert_eq!(send(&host, "e2").await.2, "a=default");

    // A split that does not sum to 100 is refused.
    let out = admin(
        &host,
        "PUT",
        "/admin/steps/a/traffic",
        r#"{"traffic":[{"version":"default","percent":50},{"version":"v2","percent":40}]}"#,
    )
    .await;
    assert_eq!(out.status, 400, "{}", out.text());
    assert!(
        out.text().contains("percentages sum to 90"),
        "{}",
        out.text()
    );

    // All traffic to v2: events are dropped by the new version (202).
    let out = admin(&host, "PUT", "/admin/steps/a/traffic",
        r#"{"traffic":[{"version":"default","percent":0},{"version":"v2","percent":100,"tag":"next"}]}"#).await;
    assert_eq!(out.status, 200, "{}", out.text());
    for i in 0..10 {
        let out = post(&host.url, &ce_headers(&format!("d{i}"), "text/plain"), "x").await;
        assert_eq!(out.status, 202, "v2 drops: {}", out.text());
    }
    // Roll back: the previous split, events appended again.
    let out = admin(&host, "POST", "/admin/steps/a/rollback", "").await;
    assert_eq!(out.status, 200, "{}", out.text());
    assert_eq!(
        send(&host, "e3").await,
        (200, "x-a".into(), "a=default".into())
    );

    let listed = admin(&host, "GET", "/admin/steps", "").await.json();
    let before = listed["steps"][0]["versions"][1].clone();
    assert_eq!(before["events"], 10, "{listed}");
    assert_eq!(
        listed["steps"][0]["previousTraffic"][1]["tag"], "next",
        "{listed}"
    );

    // Replace v2 in place with another build: a new digest, counts from zero.
    let out = upload(&host, "v2", FAULTY).await;
    assert_eq!(out.status, 200, "{}", out.text());
    let listed = admin(&host, "GET", "/admin/steps", "").await.json();
    let after = &listed["steps"][0]["versions"][1];
    assert_ne!(after["digest"], before["digest"], "{listed}");
    assert_eq!(after["events"], 0, "{listed}");
    assert!(
        listed["steps"][0]["versions"][0]["events"]
            .as_u64()
            .unwrap_or(0)
            >= 3,
        "{listed}"
    );
}

/// A step's `smokeEvent` gates every new version: at start/validate, and on
/// an admin upload (the `faulty` guest traps on it, the appender passes).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_that_fails_the_smoke_event_never_goes_live() {
    let smoke = "  smokeEvent: {specversion: \"1.0\", id: smoke-1, source: /smoke, type: smoke, \
                 fault: trap, datacontenttype: text/plain, data: hi}\n";
    let good = manifest() + smoke;
    let host = Host::start_with_env(&good, &[], &[("STEPHOST_ADMIN_TOKEN", TOKEN)]).await;
    let out = upload(&host, "v2", FAULTY).await;
    assert_eq!(out.status, 422, "{}", out.text());
    assert!(
        out.text().contains("failed the step's smoke event"),
        "{}",
        out.text()
    );
    let listed = admin(&host, "GET", "/admin/steps", "").await.json();
    assert_eq!(
        listed["steps"][0]["versions"].as_array().map(Vec::len),
        Some(1),
        "{listed}"
    );
    let out = upload(&host, "v2", DROPPER).await;
    assert_eq!(out.status, 200, "{}", out.text());
    assert_eq!(
        send(&host, "after").await,
        (200, "x-a".into(), "a=default".into())
    );

    // The same gate in a manifest: refused before serving.
    let bad = format!(
        "{}{}{smoke}",
        sequence("s", &["a"], None),
        wasm_step("a", FAULTY, &[], "")
    );
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("m.yaml");
    std::fs::write(&path, bad).expect("write");
    let (code, _, stderr) =
        crate::support::run_to_end(&["validate", path.to_str().expect("utf-8")]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("spec.smokeEvent: version \"default\" failed its smoke event"),
        "{stderr}"
    );
}

/// `spec.rollback`: shifting traffic to a version that fails more than the
/// policy allows is undone by the host on its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_version_is_rolled_back_automatically() {
    let manifest = format!(
        "{}{}",
        sequence("s", &["a"], None),
        two_versions(
            "a",
            (APPENDER, FAULTY),
            (100, 0),
            None,
            "  config: {suffix: -a, mode: retryable}\n  \
             rollback: {maxErrorRate: 0.5, window: PT60S, minEvents: 5}\n"
        )
    );
    let host = Host::start_with_env(&manifest, &[], &[("STEPHOST_ADMIN_TOKEN", TOKEN)]).await;
    let out = admin(
        &host,
        "PUT",
        "/admin/steps/a/traffic",
        r#"{"traffic":[{"version":"v1","percent":0},{"version":"v2","percent":100}]}"#,
    )
    .await;
    assert_eq!(out.status, 200, "{}", out.text());
    // v2 fails every event (retryable → 500 without a dead-letter sink).
    let mut failures = 0;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let (status, body, versions) = send(&host, "auto").await;
        if status == 200 {
            assert_eq!((body.as_str(), versions.as_str()), ("x-a", "a=v1"));
            break;
        }
        failures += 1;
        assert!(
            std::time::Instant::now() < deadline,
            "never rolled back after {failures} failures"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(failures >= 5, "rolled back before minEvents: {failures}");
    let listed = admin(&host, "GET", "/admin/steps", "").await.json();
    assert_eq!(listed["steps"][0]["traffic"][0]["percent"], 100, "{listed}");
    assert_eq!(
        listed["steps"][0]["traffic"][0]["version"], "v1",
        "{listed}"
    );
    let metrics = crate::support::get(&format!("{}/metrics", host.url))
        .await
        .expect("metrics")
        .text();
    assert!(
        metrics.contains("stephost_auto_rollbacks_total{step=\"a\"} 1"),
        "{metrics}"
    );
    assert!(
        host.logs().contains("automatic rollback"),
        "{}",
        host.logs()
    );
}
