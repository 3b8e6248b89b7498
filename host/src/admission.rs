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

mod limits;
#[cfg(test)]
mod tests;

pub use limits::{
    AdmissionLimits, DEFAULT_MAX_BURST, DEFAULT_MAX_IN_FLIGHT, DEFAULT_QUEUE_TIMEOUT, LimitError,
    Overloaded, workers,
};

use std::cell::RefCell;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

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
