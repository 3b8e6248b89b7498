//! Step versions: a traffic split across named versions, tags that address a
//! version directly, `stephostversions` on every output, and a rollback by
//! changing the manifest while the host runs.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use futures::StreamExt;
use stephost::app::builtin::{APPENDER, DROPPER};

use crate::support::{Host, ce_headers, post, run_to_end, sequence, two_versions};

/// Step `a` with versions v1 (APPENDER) and v2 (APPENDER, `-same` suffix:
/// both append the same, so only `stephostversions` tells them apart), split
/// `p1`/`p2`, v2 tagged `canary`.
fn split(p1: u32, p2: u32) -> String {
    format!(
        "{}{}",
        sequence("s", &["a"], None),
        two_versions(
            "a",
            (APPENDER, APPENDER),
            (p1, p2),
            Some("canary"),
            "  config: {suffix: -same}\n"
        )
    )
}

async fn versions_of(host: &Host, n: usize, tag: Option<&str>) -> BTreeMap<String, usize> {
    let answers: Vec<String> = futures::stream::iter(0..n)
        .map(|i| async move {
            let mut headers = ce_headers("split", "text/plain");
            let id = format!("e-{i}");
            headers[1].1 = &id;
            if let Some(tag) = tag {
                headers.push(("stephost-step-tag", tag));
            }
            let out = post(&host.url, &headers, "x").await;
            assert_eq!(out.status, 200, "{}", out.text());
            assert_eq!(out.text(), "x-same");
            out.header("ce-stephostversions").to_string()
        })
        .buffer_unordered(8)
        .collect()
        .await;
    let mut counts = BTreeMap::new();
    for a in answers {
        *counts.entry(a).or_default() += 1;
    }
    counts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_90_10_split_over_2000_events_lands_within_3_points() {
    // Eight senders at most: within the default running places and queue
    // on any machine, so no event can be refused.
    let host = Host::start(&split(90, 10), &[]).await;
    let counts = versions_of(&host, 2000, None).await;
    let v1 = counts.get("a=v1").copied().unwrap_or(0);
    let v2 = counts.get("a=v2").copied().unwrap_or(0);
    assert_eq!(v1 + v2, 2000, "{counts:?}");
    let share = v2 as f64 / 20.0;
    println!("90/10 split over 2000 events: v1 {v1}, v2 {v2} ({share:.1}% to v2)");
    assert!((share - 10.0).abs() <= 3.0, "v2 got {share}% of events");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tag_addresses_its_version_and_an_unknown_tag_is_refused() {
    let host = Host::start(&split(100, 0), &[]).await;
    let counts = versions_of(&host, 50, Some("a=canary")).await;
    assert_eq!(counts.get("a=v2"), Some(&50), "{counts:?}");
    // Without the tag, v2 (0 %) gets nothing.
    let counts = versions_of(&host, 50, None).await;
    assert_eq!(counts.get("a=v1"), Some(&50), "{counts:?}");
    // The step endpoint honours tags too.
    let mut headers = ce_headers("tagged", "text/plain");
    headers.push(("stephost-step-tag", "a=canary"));
    let out = post(&format!("{}/steps/a", host.url), &headers, "x").await;
    assert_eq!(out.status, 200, "{}", out.text());
    assert_eq!(out.header("ce-stephostversions"), "a=v2");
    // A tag that does not exist is a clear 400, not a silent split.
    let mut headers = ce_headers("bad-tag", "text/plain");
    headers.push(("stephost-step-tag", "a=nightly"));
    let out = post(&host.url, &headers, "x").await;
    assert_eq!(out.status, 400, "{}", out.text());
    assert!(
        out.text()
            .contains("no version tagged \\\"nightly\\\" (tags: canary)"),
        "{}",
        out.text()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollback_by_manifest_change_and_the_extension_can_be_turned_off() {
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("m.yaml");
    std::fs::write(&path, split(0, 100)).expect("write");
    let host = Host::start_args(&[
        "--manifest",
        path.to_str().expect("utf-8"),
        "--watch-interval",
        "PT0.1S",
    ])
    .await;
    assert_eq!(versions_of(&host, 20, None).await.get("a=v2"), Some(&20));
    // Roll back: all traffic to v1 again.
    let tmp = dir.path().join("m.yaml.tmp");
    std::fs::write(&tmp, split(100, 0)).expect("write");
    std::fs::rename(&tmp, &path).expect("rename");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let counts = versions_of(&host, 10, None).await;
        if counts.get("a=v1") == Some(&10) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "rollback never went live: {counts:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let quiet = Host::start(&split(90, 10), &["--no-versions-extension"]).await;
    let out = post(&quiet.url, &ce_headers("q", "text/plain"), "x").await;
    assert_eq!(out.status, 200);
    assert_eq!(out.header("ce-stephostversions"), "");
}

#[test]
fn bad_version_and_traffic_declarations_are_refused() {
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("m.yaml");
    let cases = [
        (split(90, 20), "percentages sum to 110, not 100"),
        (
            split(90, 10).replace("- {version: v1,", "- {version: v9,"),
            "spec.traffic[0].version: no version \"v9\" in spec.versions (known: v1, v2)",
        ),
        (
            split(90, 10).replace("{name: v2,", "{name: v1,"),
            "spec.versions[1].name: version \"v1\" is listed twice",
        ),
        (
            split(90, 10).replace(
                "  versions:",
                &format!("  component: {DROPPER}\n  versions:"),
            ),
            "set either component (one version) or versions, not both",
        ),
    ];
    for (manifest, expected) in cases {
        std::fs::write(&path, &manifest).expect("write");
        let (code, stdout, stderr) = run_to_end(&["validate", path.to_str().expect("utf-8")]);
        assert_eq!(code, Some(1), "accepted:\n{manifest}\n{stdout}");
        assert!(stderr.contains(expected), "{expected:?} not in:\n{stderr}");
    }
}
