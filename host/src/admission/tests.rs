//! Unit tests of the door: places given back while away, the FIFO queue,
//! the burst queue and its cut, the floors of the flags.

use std::time::Duration;

use super::*;

/// A door whose burst bound is its queue bound (see the burst test).
fn door(
    max_in_flight: usize,
    max_running: usize,
    max_queue: usize,
    wait_ms: u64,
) -> Arc<Admission> {
    Arc::new(Admission::new(AdmissionLimits {
        max_in_flight,
        max_running,
        max_queue,
        max_burst: max_queue,
        queue_timeout: Duration::from_millis(wait_ms),
    }))
}

/// An event on its own task: admitted, it runs until `release` fires.
struct Holder {
    /// Ends the held event when sent (or dropped).
    release: tokio::sync::oneshot::Sender<()>,
    /// The event: how the door answered it.
    task: tokio::task::JoinHandle<Result<(), Overloaded>>,
}

impl Holder {
    /// Start one and wait until it runs (`queued`: until it waits).
    async fn start(door: &Arc<Admission>, queued: bool) -> Holder {
        let (release, released) = tokio::sync::oneshot::channel::<()>();
        let (running, waiting) = (door.running(), door.waiting());
        let admitted = door.enter().expect("in flight");
        let task = tokio::spawn(admitted.run(async move {
            let _ = released.await;
        }));
        while (door.running(), door.waiting()) == (running, waiting) {
            tokio::task::yield_now().await;
        }
        assert_eq!(door.waiting(), waiting + usize::from(queued));
        Holder { release, task }
    }

    /// Let it finish.
    async fn finish(self) {
        self.outcome().await.expect("it ran");
    }

    /// Let it finish, however its admission went.
    async fn outcome(self) -> Result<(), Overloaded> {
        let _ = self.release.send(());
        self.task.await.expect("joined")
    }
}

/// Run one event at once: Ok if it got a running place.
async fn try_run(door: &Arc<Admission>) -> Result<(), Overloaded> {
    door.enter()?.run(async {}).await
}

#[tokio::test]
async fn an_event_away_gives_its_running_place_to_the_next() {
    let door = door(8, 1, 0, 0);
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let (back_tx, back_rx) = tokio::sync::oneshot::channel::<()>();
    let probe = door.clone();
    let first = door.enter().expect("in flight");
    let remote = tokio::spawn(first.run(async move {
        away(async move { rx.await.expect("released") }).await;
        assert_eq!(probe.running(), 1, "back with its place");
        let _ = back_rx.await;
    }));
    // While the first event waits on its remote hop (it holds no place),
    // a second one runs.
    while door.in_flight.load(Ordering::Relaxed) == 0 || door.running() != 0 {
        tokio::task::yield_now().await;
    }
    tokio::task::yield_now().await;
    assert_eq!(door.running(), 0, "away");
    let second = Holder::start(&door, false).await;
    assert!(matches!(
        try_run(&door).await,
        Err(Overloaded::BurstFull { running: 1, .. })
    ));
    assert_eq!(door.in_flight.load(Ordering::Relaxed), 2);
    // The first comes back and waits for its place: never refused.
    tx.send(()).expect("send");
    tokio::task::yield_now().await;
    assert!(!remote.is_finished());
    second.finish().await;
    back_tx.send(()).expect("send");
    remote
        .await
        .expect("joined")
        .expect("the first event finished");
    assert_eq!(
        (door.running(), door.in_flight.load(Ordering::Relaxed)),
        (0, 0)
    );
}

#[tokio::test]
async fn nested_away_releases_and_retakes_the_place_once() {
    let door = door(8, 1, 0, 0);
    let probe = door.clone();
    door.enter()
        .expect("in flight")
        .run(async move {
            away(async {
                away(async {}).await;
                assert_eq!(probe.running(), 0, "still away after the inner wait");
            })
            .await;
            assert_eq!(probe.running(), 1, "the place is back");
        })
        .await
        .expect("ran");
    assert_eq!(door.running(), 0);
}

#[tokio::test]
async fn beyond_max_in_flight_is_refused_at_once() {
    let door = door(2, 2, 8, 5_000);
    let a = door.enter().expect("first");
    let b = door.enter().expect("second");
    let refused = door.enter().expect_err("third");
    assert_eq!(
        refused,
        Overloaded::InFlight {
            in_flight: 2,
            max_in_flight: 2
        }
    );
    drop((a, b));
    door.enter().expect("places came free");
}

#[tokio::test]
async fn the_queue_waits_in_order_and_refuses_beyond_its_length_at_once() {
    let door = door(16, 1, 2, 5_000);
    let first = Holder::start(&door, false).await;
    let (order_tx, mut order_rx) = tokio::sync::mpsc::unbounded_channel();
    let mut waiters = Vec::new();
    for n in 0..2 {
        let (admitted, order_tx) = (door.enter().expect("in flight"), order_tx.clone());
        waiters.push(tokio::spawn(admitted.run(async move {
            order_tx.send(n).expect("send");
        })));
        while door.waiting() < n + 1 {
            tokio::task::yield_now().await;
        }
    }
    let started = std::time::Instant::now();
    let refused = try_run(&door).await.expect_err("the queue is full");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "refused without the wait"
    );
    assert!(matches!(
        refused,
        Overloaded::BurstFull {
            waiting: 2,
            max_burst: 2,
            ..
        }
    ));
    first.finish().await;
    for w in waiters {
        w.await
            .expect("joined")
            .expect("a queued event gets a place");
    }
    assert_eq!(
        (order_rx.recv().await, order_rx.recv().await),
        (Some(0), Some(1))
    );
    assert_eq!(door.waiting(), 0);
}

#[tokio::test]
async fn a_full_burst_queue_cuts_the_queue_to_max_queue_until_places_come_free() {
    let door = Arc::new(Admission::new(AdmissionLimits {
        max_in_flight: 64,
        max_running: 1,
        max_queue: 1,
        max_burst: 3,
        queue_timeout: Duration::from_secs(5),
    }));
    let first = Holder::start(&door, false).await;
    // A burst: three wait (more than --max-queue) ...
    let waiters = [
        Holder::start(&door, true).await,
        Holder::start(&door, true).await,
        Holder::start(&door, true).await,
    ];
    // ... the fourth finds the queue full: refused, and the queue is cut
    // to one: two of the three waiting are refused too.
    assert!(matches!(
        try_run(&door).await,
        Err(Overloaded::BurstFull {
            waiting: 3,
            max_burst: 3,
            ..
        })
    ));
    while door.waiting() != 1 {
        tokio::task::yield_now().await;
    }
    // While overloaded, only --max-queue may wait.
    assert!(matches!(
        try_run(&door).await,
        Err(Overloaded::QueueFull {
            waiting: 1,
            max_queue: 1,
            ..
        })
    ));
    first.finish().await;
    let mut outcomes = Vec::new();
    for waiter in waiters {
        outcomes.push(waiter.outcome().await);
    }
    let cut = outcomes
        .iter()
        .filter(|o| matches!(o, Err(Overloaded::QueueFull { .. })))
        .count();
    assert_eq!((cut, outcomes.len() - cut), (2, 1), "{outcomes:?}");
    // Signs that the host keeps up lift the cut (one each, from the full
    // --max-burst: the last waiter drained the queue, then arrivals find
    // places free): then a burst queues again.
    for _ in 0..3 {
        try_run(&door).await.expect("a free place");
    }
    let holder = Holder::start(&door, false).await;
    let burst = [
        Holder::start(&door, true).await,
        Holder::start(&door, true).await,
    ];
    assert_eq!(door.waiting(), 2);
    holder.finish().await;
    for waiter in burst {
        waiter.finish().await;
    }
    assert_eq!((door.running(), door.waiting()), (0, 0));
}

#[tokio::test]
async fn a_waiter_is_refused_after_the_queue_timeout() {
    let door = door(16, 1, 4, 50);
    let _first = Holder::start(&door, false).await;
    match try_run(&door).await {
        Err(Overloaded::Waited {
            waited,
            running: 1,
            max_running: 1,
        }) => {
            assert!(waited >= Duration::from_millis(50), "{waited:?}")
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(door.waiting(), 0);
}

#[test]
fn the_running_limit_never_goes_below_the_workers() {
    let defaults = AdmissionLimits::defaults(2);
    assert_eq!(
        (defaults.max_running, defaults.max_queue, defaults.max_burst),
        (2, 2, 64)
    );
    assert_eq!(defaults.check(2), Ok(()));
    let low = AdmissionLimits {
        max_running: 1,
        ..defaults
    };
    assert_eq!(
        low.check(2),
        Err(LimitError::RunningBelowWorkers {
            given: 1,
            workers: 2
        })
    );
    let one_at_all = AdmissionLimits {
        max_in_flight: 1,
        ..low
    };
    assert_eq!(one_at_all.check(2), Ok(()), "an explicit --max-in-flight 1");
    let high = AdmissionLimits {
        max_running: 300,
        ..defaults
    };
    assert!(matches!(
        high.check(2),
        Err(LimitError::RunningAboveInFlight { .. })
    ));
    let short_burst = AdmissionLimits {
        max_burst: 1,
        ..defaults
    };
    assert_eq!(
        short_burst.check(2),
        Err(LimitError::BurstBelowQueue { burst: 1, queue: 2 })
    );
}
