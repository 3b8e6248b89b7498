//! Process lifecycle per the Knative Serving runtime contract: on SIGTERM the
//! host stops accepting connections, finishes every accepted event, and exits 0.

use std::time::Duration;

use crate::support::{Host, Sink, ce_headers, echo_appending, get, post, review_headers, sequence};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_in_flight_events_refuses_new_ones_and_exits_zero() {
    let slow = Sink::slow(echo_appending("-slow"), Duration::from_millis(800)).await;
    let reply = Sink::accepting().await;
    let mut host = Host::start(&sequence("s", &[&slow.url], Some(&reply.url)), &[]).await;
    let in_flight: Vec<_> = (0..4)
        .map(|i| {
            let url = host.url.clone();
            tokio::spawn(async move {
                post(&url, &ce_headers(&format!("drain-{i}"), "text/plain"), "x").await
            })
        })
        .collect();
    // All four are now waiting on the slow step.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(slow.received().len(), 4);
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &host.pid().to_string()])
        .status()
        .expect("kill");
    assert!(killed.success());
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert!(
        get(&format!("{}/healthz", host.url)).await.is_err(),
        "new connections must be refused while draining"
    );
    for task in in_flight {
        let out = task.await.expect("join");
        assert_eq!(
            out.status,
            202,
            "an accepted event must complete: {}",
            out.text()
        );
    }
    assert_eq!(
        reply.received().len(),
        4,
        "every accepted event reaches the reply"
    );
    let code = tokio::task::spawn_blocking(move || host.wait_exit(Duration::from_secs(10)))
        .await
        .expect("join");
    assert_eq!(code, Some(Some(0)), "exit 0 after draining");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn draining_is_bounded_by_the_drain_timeout() {
    // A step that takes 20 s: longer than the 1 s drain bound.
    let stuck = Sink::slow(echo_appending("-late"), Duration::from_secs(20)).await;
    let mut host = Host::start(
        &sequence("s", &[&stuck.url], None),
        &["--drain-timeout", "PT1S"],
    )
    .await;
    let url = host.url.clone();
    let pending =
        tokio::spawn(async move { post(&url, &ce_headers("stuck-1", "text/plain"), "x").await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(stuck.received().len(), 1);
    let signalled = std::time::Instant::now();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &host.pid().to_string()])
        .status()
        .expect("kill");
    assert!(killed.success());
    let (code, host) = tokio::task::spawn_blocking(move || {
        let code = host.wait_exit(Duration::from_secs(10));
        (code, host)
    })
    .await
    .expect("join");
    let took = signalled.elapsed();
    assert_eq!(code, Some(Some(0)), "exit 0 at the drain bound");
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(8),
        "exited after {took:?}, expected about the 1 s drain timeout"
    );
    pending.abort();
    assert!(host.logs().contains("drain timeout"), "{}", host.logs());
}

/// Knative tells the container its port in `$PORT`: with no `--port` the host
/// listens there and nowhere else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_port_comes_from_the_port_variable() {
    let port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("free port");
        probe.local_addr().expect("addr").port()
    };
    let mut child = std::process::Command::new(crate::support::STEPHOST)
        .args(["serve", "--host", "127.0.0.1"])
        .env("PORT", port.to_string())
        .env_remove("K_SINK")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn");
    let stdout = child.stdout.take().expect("stdout");
    let line = tokio::task::spawn_blocking(move || {
        use std::io::BufRead;
        let mut line = String::new();
        std::io::BufReader::new(stdout)
            .read_line(&mut line)
            .map(|_| line)
    })
    .await
    .expect("join")
    .expect("read");
    assert_eq!(
        line.trim(),
        format!("stephost listening on http://127.0.0.1:{port}")
    );
    let health = get(&format!("http://127.0.0.1:{port}/healthz")).await;
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(health.expect("reachable on $PORT").status, 200);
}

/// Overload: beyond `--max-in-flight` events in progress, an event waits at
/// most `--queue-timeout`, then gets 429 with `Retry-After` (Knative's
/// dispatcher retries 429) instead of queueing without bound; once the load
/// passes, events are admitted again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beyond_max_in_flight_events_get_429_with_retry_after() {
    let slow = Sink::slow(echo_appending("-slow"), Duration::from_millis(1500)).await;
    let host = Host::start(
        &sequence("s", &[&slow.url], None),
        &["--max-in-flight", "2", "--queue-timeout", "PT0.2S"],
    )
    .await;
    let busy: Vec<_> = (0..2)
        .map(|i| {
            let url = host.url.clone();
            tokio::spawn(async move {
                post(&url, &ce_headers(&format!("busy-{i}"), "text/plain"), "x").await
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = std::time::Instant::now();
    let refused = post(&host.url, &ce_headers("extra", "text/plain"), "x").await;
    let waited = started.elapsed();
    assert_eq!(refused.status, 429, "{}", refused.text());
    assert_eq!(refused.header("retry-after"), "1");
    assert!(
        refused.text().contains("--max-in-flight"),
        "{}",
        refused.text()
    );
    assert!(
        waited >= Duration::from_millis(150) && waited < Duration::from_millis(1200),
        "waited {waited:?} for admission, expected about the 0.2 s queue timeout"
    );
    for task in busy {
        assert_eq!(task.await.expect("join").status, 200);
    }
    let after = post(&host.url, &ce_headers("after", "text/plain"), "x").await;
    assert_eq!(after.status, 200, "{}", after.text());
}

/// Adaptive admission (the default): driven far past what the cores
/// complete, a CPU-bound Sequence (the default filter → sentiment) gets a
/// limit below `--max-in-flight`, and the excess is refused with 429 +
/// `Retry-After` at the door instead of every accepted event sharing the
/// cores with all the others; each event either succeeds or is refused, and
/// once the load passes, events are admitted again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adaptive_admission_sheds_a_cpu_bound_overload_with_429() {
    let host = Host::start_default(&[]).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(4);
    // 96 clients: more than a step's gate holds (limits.concurrency 16 +
    // maxQueue 64), so the steps shed too; those sheds did no work and must
    // not count as fast events (they once held the limit near the maximum).
    let clients: Vec<_> = (0..96)
        .map(|c| {
            let url = host.url.clone();
            tokio::spawn(async move {
                let mut statuses = Vec::new();
                for n in 0.. {
                    if std::time::Instant::now() >= deadline {
                        break;
                    }
                    let id = format!("load-{c}-{n}");
                    let out = post(
                        &url,
                        &review_headers(&id),
                        r#"{"reviewText":"A fine book"}"#,
                    )
                    .await;
                    if out.status == 429 {
                        assert_eq!(out.header("retry-after"), "1", "{}", out.text());
                        assert!(out.text().contains("limit"), "{}", out.text());
                    }
                    statuses.push(out.status);
                }
                statuses
            })
        })
        .collect();
    let mut statuses = Vec::new();
    for client in clients {
        statuses.extend(client.await.expect("join"));
    }
    let ok = statuses.iter().filter(|s| **s == 200).count();
    let refused = statuses.iter().filter(|s| **s == 429).count();
    assert_eq!(ok + refused, statuses.len(), "only 200 or 429");
    assert!(ok > 0 && refused > 0, "{ok} accepted, {refused} refused");
    let metrics = get(&format!("{}/metrics", host.url))
        .await
        .expect("metrics")
        .text();
    let limit: usize = metrics
        .lines()
        .find_map(|l| l.strip_prefix("stephost_admission_limit "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no stephost_admission_limit in\n{metrics}"));
    assert!(
        limit <= 16,
        "the limit stayed near --max-in-flight 256 (CPU-bound on few cores): {limit}"
    );
    let after = post(
        &host.url,
        &review_headers("after"),
        r#"{"reviewText":"Lovely"}"#,
    )
    .await;
    assert_eq!(after.status, 200, "{}", after.text());
}
