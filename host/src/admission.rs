//! Admission of events into the host: the door every event (Sequence run or
//! step call) passes, which refuses with 429 + `Retry-After` only what this
//! host cannot run.
//!
//! Three bounds, each with its own job:
//! - **running** (`--max-running`): events using this host's cores at once —
//!   parsing, Wasm steps, inference (waiting for an inference thread too:
//!   those are this host's cores), encoding. An event that waits on
//!   something outside — a remote step, the reply or dead-letter sink, retry
//!   backoff, the sender's request body — gives its running place back for
//!   that time ([`away`]) and takes one again afterwards (waiting, never
//!   refused: it was admitted). So waiting elsewhere never makes the host
//!   look busy, and CPU-bound work queues at the door instead of sharing the
//!   cores with hundreds of others. A returning event waits behind at most
//!   one arrival (arrivals pass a turnstile one at a time): work in progress
//!   finishes before new work starts;
//! - **queue** (`--max-burst`, `--max-queue`, `--queue-timeout`): arrivals
//!   that find every running place taken wait, first come first served, for
//!   one to come free. Up to `--max-burst` may wait: a closed population of
//!   senders (a dispatcher's connections, a queue-proxy's concurrency) and
//!   the clumps of senders below capacity queue without refusal. An arrival
//!   that finds `--max-burst` waiting means arrivals outpace the host (real
//!   overload): it is refused, the queue is cut to `--max-queue` at once
//!   (the waiters beyond it are refused too) and held there while refusals
//!   go on, so an accepted event waits about one round of the running ones
//!   instead of a whole burst queue. Arrivals that find places free again
//!   lift the cut. One that waits longer than the timeout is refused then;
//! - **in flight** (`--max-in-flight`): events in progress at all, away ones
//!   included; a memory bound (each holds its body), refused at once beyond.
//!   An event takes this place first ([`Admission::enter`]), reads its body,
//!   and only then asks for a running place ([`Admitted::run`]).
//!
//! The limits are fixed: there is no latency signal to misread. The running
//! limit never goes below what the host runs at the same instant (one event
//! per async worker thread, i.e. per core): see [`AdmissionLimits::check`]. Hand-written: the crates that do this are
//! Tower layers, and this door also has to follow an event into the
//! dispatcher to release its place while the event is away.

use std::cell::RefCell;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Events in progress at once by default (`--max-in-flight`). Each holds at
/// most `--max-event-bytes` of body plus its instances; 256 bounds the bodies
/// held at 256 × 4 MiB in the worst case. Events waiting on remote steps count
/// here only, so this is also how many remote exchanges one host keeps open.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 256;

/// How long an arrival may wait for a running place by default
/// (`--queue-timeout`). Under load the queue's length already bounds the wait
/// to about one round of the running events; this bounds it when running
/// events are stuck (a step hanging until its own timeout), and stays below
/// the 60 s `timeoutSeconds` of `manifests/service.yaml`, so a sender hears
/// 429 rather than a gateway timeout.
pub const DEFAULT_QUEUE_TIMEOUT: Duration = Duration::from_secs(10);

/// Arrivals that may wait by default before the host counts itself
/// overloaded (`--max-burst`): the 64 connections a dispatcher in front of
/// this host was tested with (test
/// `admission::a_dispatcher_of_remote_steps_refuses_nothing_at_16_and_64_connections`,
/// where each of three step hosts sees its share of them) queue without
/// refusal, and so do the clumps in which senders arrive below capacity
/// (bench/RESULTS.md, overload: a queue of one round refused 1 to 4 events of
/// a 15 s phase at 80 % load).
pub const DEFAULT_MAX_BURST: usize = 64;

/// The door's bounds (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AdmissionLimits {
    /// `--max-in-flight`: events in progress, away ones included.
    pub max_in_flight: usize,
    /// `--max-running`: events using this host's cores at once.
    pub max_running: usize,
    /// `--max-queue`: arrivals waiting for a running place while the host
    /// is overloaded (after an arrival found `max_burst` waiting).
    pub max_queue: usize,
    /// `--max-burst`: arrivals waiting for a running place until one finds
    /// the queue full, which cuts the queue to `max_queue`.
    pub max_burst: usize,
    /// `--queue-timeout`: the longest an arrival waits for a running place.
    pub queue_timeout: Duration,
}

/// The async worker threads of this process (tokio's default: one per core,
/// as the CPU quota of a container counts them): what the host runs at the
/// same instant, and so the floor and default of the running limit.
pub fn workers() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// A `--max-*` flag below what the host must be able to run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimitError {
    /// The running limit would leave workers idle while events wait.
    #[error(
        "--max-running {given} is below the {workers} events this host runs at once \
         (one per async worker thread): events would wait while a core idles"
    )]
    RunningBelowWorkers {
        /// The flag's value.
        given: usize,
        /// The async worker threads.
        workers: usize,
    },
    /// A burst queue shorter than the overload one would refuse bursts that
    /// sustained overload is allowed.
    #[error("--max-burst {burst} is below --max-queue {queue}")]
    BurstBelowQueue {
        /// `--max-burst`.
        burst: usize,
        /// `--max-queue`.
        queue: usize,
    },
    /// More running places than events in progress can never be used.
    #[error("--max-running {running} is above --max-in-flight {in_flight}")]
    RunningAboveInFlight {
        /// `--max-running`.
        running: usize,
        /// `--max-in-flight`.
        in_flight: usize,
    },
}

impl AdmissionLimits {
    /// The defaults: running = the `workers` (one event per core: fewer
    /// idles a core; more only shares the cores, stretching every accepted
    /// event, and an inference thread is a core too), an overload queue as
    /// long again (an accepted event then waits about one round of the
    /// running ones), a burst queue of [`DEFAULT_MAX_BURST`],
    /// [`DEFAULT_MAX_IN_FLIGHT`] and [`DEFAULT_QUEUE_TIMEOUT`].
    /// bench/RESULTS.md (overload) compares these with longer queues and
    /// more running places.
    pub fn defaults(workers: usize) -> Self {
        let max_running = workers.clamp(1, DEFAULT_MAX_IN_FLIGHT);
        Self {
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
            max_running,
            max_queue: max_running,
            max_burst: DEFAULT_MAX_BURST.max(max_running),
            queue_timeout: DEFAULT_QUEUE_TIMEOUT,
        }
    }

    /// Refuse limits below the floor: a running limit under the worker
    /// threads, unless `--max-in-flight` itself is that low (then the
    /// operator bounded events in progress on purpose). Guarded by test
    /// `admission::a_dispatcher_of_remote_steps_refuses_nothing_at_16_and_64_connections`.
    pub fn check(&self, workers: usize) -> Result<(), LimitError> {
        if self.max_running < workers && self.max_running < self.max_in_flight {
            return Err(LimitError::RunningBelowWorkers {
                given: self.max_running,
                workers,
            });
        }
        if self.max_running > self.max_in_flight {
            return Err(LimitError::RunningAboveInFlight {
                running: self.max_running,
                in_flight: self.max_in_flight,
            });
        }
        if self.max_burst < self.max_queue {
            return Err(LimitError::BurstBelowQueue {
                burst: self.max_burst,
                queue: self.max_queue,
            });
        }
        Ok(())
    }
}

/// Refused: the host cannot take this event now; the sender should retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Overloaded {
    /// `--max-in-flight` events are in progress (with their bodies).
    #[error("overloaded: {in_flight} events in progress (--max-in-flight {max_in_flight})")]
    InFlight {
        /// Events in progress.
        in_flight: usize,
        /// `--max-in-flight`.
        max_in_flight: usize,
    },
    /// Every running place is taken and `--max-burst` wait: arrivals outpace
    /// the host.
    #[error(
        "overloaded: {running} events running and {waiting} waiting to run \
         (--max-running {max_running}, --max-burst {max_burst})"
    )]
    BurstFull {
        /// Events holding a running place.
        running: usize,
        /// Arrivals waiting for one.
        waiting: usize,
        /// `--max-running`.
        max_running: usize,
        /// `--max-burst`.
        max_burst: usize,
    },
    /// The host is overloaded (an arrival lately found `--max-burst`
    /// waiting) and `--max-queue` wait; also what a waiter beyond
    /// `--max-queue` hears when the queue is cut.
    #[error(
        "overloaded: {running} events running and {waiting} waiting to run; arrivals \
         outpace the host, so the queue is cut (--max-running {max_running}, \
         --max-queue {max_queue})"
    )]
    QueueFull {
        /// Events holding a running place.
        running: usize,
        /// Arrivals waiting for one.
        waiting: usize,
        /// `--max-running`.
        max_running: usize,
        /// `--max-queue`.
        max_queue: usize,
    },
    /// No running place came free within `--queue-timeout`.
    #[error(
        "overloaded: no place to run came free within {waited:?} \
         ({running} events running, --max-running {max_running}, --queue-timeout)"
    )]
    Waited {
        /// How long the event waited.
        waited: Duration,
        /// Events holding a running place when the wait ended.
        running: usize,
        /// `--max-running`.
        max_running: usize,
    },
}

/// The host-wide door every event passes.
#[derive(Debug)]
pub struct Admission {
    /// The bounds, fixed at start.
    limits: AdmissionLimits,
    /// Events admitted and not yet finished, away ones included.
    in_flight: AtomicUsize,
    /// Arrivals waiting for a running place now (at most `max_burst`).
    waiting: AtomicUsize,
    /// Above zero while the host is overloaded: set to `max_burst` by every
    /// refusal for a full queue, lowered by one by every arrival that finds a
    /// place free and nobody waiting and every wait that drains the queue.
    /// Slack, not a reset on the first sign: senders arrive in clumps, so
    /// even under overload a place is sometimes free for a moment.
    pressure: AtomicUsize,
    /// Waiters still to refuse after the queue was cut to `max_queue`.
    to_cut: AtomicUsize,
    /// Wakes the waiters when the queue is cut.
    cut: tokio::sync::Notify,
    /// The running places. Tokio's semaphore hands a freed place to the
    /// longest waiter before any newcomer can take it (FIFO).
    running: Arc<Semaphore>,
    /// Arrivals queue here (FIFO, tokio's mutex is fair) and wait on
    /// `running` one at a time, so an event coming back from being away
    /// waits behind at most one arrival, not the whole queue.
    turnstile: tokio::sync::Mutex<()>,
}

/// An event admitted in flight: holds that place for as long as it lives;
/// [`Admitted::run`] takes a running place for its work.
#[derive(Debug)]
pub struct Admitted {
    /// Given back when the event ends.
    in_flight: InFlight,
}

/// An event's running place, released while it is away.
#[derive(Debug)]
struct Running {
    /// Where to take a place again after being away.
    places: Arc<Semaphore>,
    /// The place, `None` while away.
    permit: Option<OwnedSemaphorePermit>,
}

/// One in-flight place, given back when dropped.
#[derive(Debug)]
struct InFlight(Arc<Admission>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

tokio::task_local! {
    /// The running place of the event this task serves (see [`away`]).
    static CURRENT: RefCell<Running>;
}

impl Admitted {
    /// Take a running place (at once, after a wait in the queue, or 429),
    /// then run the event's work holding it; inside `work`, [`away`] gives
    /// the place back while the event waits elsewhere.
    pub async fn run<F: Future>(self, work: F) -> Result<F::Output, Overloaded> {
        let door = self.in_flight.0.clone();
        let permit = door.take_running_place().await?;
        let running = Running {
            places: door.running.clone(),
            permit: Some(permit),
        };
        Ok(CURRENT.scope(RefCell::new(running), work).await)
    }
}

/// Await `f`, which waits on something outside this host's cores (a remote
/// hop, backoff), without holding a running place; take one again afterwards
/// (waiting for it behind at most one arrival; an admitted event is never
/// refused). Outside an admitted event's work, or nested inside another
/// `away`, it just awaits `f`.
pub async fn away<F: Future>(f: F) -> F::Output {
    let released = CURRENT
        .try_with(|running| {
            let mut running = running.borrow_mut();
            running.permit.take().map(|_| running.places.clone())
        })
        .ok()
        .flatten();
    let output = f.await;
    if let Some(places) = released {
        // Closed only if the host is being torn down: run on without a place.
        let permit = places.acquire_owned().await.ok();
        let _ = CURRENT.try_with(|running| running.borrow_mut().permit = permit);
    }
    output
}

impl Admission {
    /// A door with these bounds (see [`AdmissionLimits::check`]).
    pub fn new(limits: AdmissionLimits) -> Self {
        let max_running = limits.max_running.max(1);
        Self {
            limits: AdmissionLimits {
                max_running,
                max_in_flight: limits.max_in_flight.max(max_running),
                max_burst: limits.max_burst.max(limits.max_queue),
                ..limits
            },
            in_flight: AtomicUsize::new(0),
            waiting: AtomicUsize::new(0),
            pressure: AtomicUsize::new(0),
            to_cut: AtomicUsize::new(0),
            cut: tokio::sync::Notify::new(),
            running: Arc::new(Semaphore::new(max_running)),
            turnstile: tokio::sync::Mutex::new(()),
        }
    }

    /// The bounds in force.
    pub fn limits(&self) -> AdmissionLimits {
        self.limits
    }

    /// Events holding a running place now (`stephost_events_running`).
    pub fn running(&self) -> usize {
        self.limits.max_running - self.running.available_permits()
    }

    /// Arrivals waiting for a running place now (`stephost_admission_waiting`).
    pub fn waiting(&self) -> usize {
        self.waiting.load(Ordering::Relaxed)
    }

    /// Admit an event in flight (its body may now be read), or refuse it
    /// at once beyond `--max-in-flight`.
    pub fn enter(self: &Arc<Self>) -> Result<Admitted, Overloaded> {
        let max = self.limits.max_in_flight;
        self.in_flight
            .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |n| {
                (n < max).then_some(n + 1)
            })
            .map(|_| Admitted {
                in_flight: InFlight(self.clone()),
            })
            .map_err(|in_flight| Overloaded::InFlight {
                in_flight,
                max_in_flight: max,
            })
    }

    /// A running place at once if one is free and nobody queues, else a
    /// wait in the queue if it has room: up to `max_burst` waiting, or
    /// `max_queue` while the host is overloaded.
    async fn take_running_place(&self) -> Result<OwnedSemaphorePermit, Overloaded> {
        if self.waiting.load(Ordering::Acquire) == 0
            && let Ok(permit) = self.running.clone().try_acquire_owned()
        {
            self.relieve();
            return Ok(permit);
        }
        let overloaded = self.pressure.load(Ordering::Relaxed) > 0;
        let bound = match overloaded {
            true => self.limits.max_queue,
            false => self.limits.max_burst,
        };
        let queued = self
            .waiting
            .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |w| {
                (w < bound).then_some(w + 1)
            });
        if let Err(waiting) = queued {
            return Err(self.refuse_full(waiting, overloaded));
        }
        let queued = Queued(&self.waiting);
        let started = tokio::time::Instant::now();
        let acquire = async {
            let _turn = self.turnstile.lock().await;
            self.running.clone().acquire_owned().await
        };
        tokio::pin!(acquire);
        let waited = tokio::time::timeout(self.limits.queue_timeout, async {
            loop {
                let cut = self.cut.notified();
                tokio::select! {
                    permit = &mut acquire => return permit.ok(),
                    () = cut => {
                        let leave = self.to_cut.fetch_update(
                            Ordering::AcqRel,
                            Ordering::Relaxed,
                            |n| n.checked_sub(1),
                        );
                        if leave.is_ok() {
                            return None;
                        }
                    }
                }
            }
        })
        .await;
        drop(queued);
        match waited {
            Ok(Some(permit)) => {
                if self.waiting.load(Ordering::Acquire) == 0 {
                    // The queue drained: one sign that arrivals no longer
                    // outpace the host.
                    self.relieve();
                }
                Ok(permit)
            }
            Ok(None) => Err(Overloaded::QueueFull {
                running: self.running(),
                waiting: self.waiting(),
                max_running: self.limits.max_running,
                max_queue: self.limits.max_queue,
            }),
            // Timed out.
            Err(_) => Err(Overloaded::Waited {
                waited: started.elapsed(),
                running: self.running(),
                max_running: self.limits.max_running,
            }),
        }
    }

    /// One sign that the host keeps up (a place found free, the queue
    /// drained): lowers the pressure by one.
    fn relieve(&self) {
        let _ = self
            .pressure
            .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |p| {
                Some(p.saturating_sub(1))
            });
    }

    /// Refuse an arrival that found the queue full; the first refusal of an
    /// overload cuts the queue to `max_queue`.
    fn refuse_full(&self, waiting: usize, overloaded: bool) -> Overloaded {
        let was = self
            .pressure
            .swap(self.limits.max_burst.max(1), Ordering::AcqRel);
        let beyond = waiting.saturating_sub(self.limits.max_queue);
        if was == 0 && beyond > 0 {
            self.to_cut.store(beyond, Ordering::Release);
            self.cut.notify_waiters();
        }
        let (running, max_running) = (self.running(), self.limits.max_running);
        match overloaded {
            true => Overloaded::QueueFull {
                running,
                waiting,
                max_running,
                max_queue: self.limits.max_queue,
            },
            false => Overloaded::BurstFull {
                running,
                waiting,
                max_running,
                max_burst: self.limits.max_burst,
            },
        }
    }
}

/// A place in the wait queue, given back when dropped (however the wait ends,
/// also when the request is cancelled).
struct Queued<'a>(&'a AtomicUsize);

impl Drop for Queued<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
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
        release: tokio::sync::oneshot::Sender<()>,
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
}
