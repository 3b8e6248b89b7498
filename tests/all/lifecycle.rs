//! Process lifecycle per the Knative Serving runtime contract: on SIGTERM the
//! host stops accepting connections, finishes every accepted event, and exits 0.

use std::time::Duration;

use crate::support::{Host, Sink, ce_headers, echo_appending, get, post, sequence};

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
