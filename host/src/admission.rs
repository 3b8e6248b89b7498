//! Admission of events into the host: at most `--max-in-flight` in
//! progress and, by default, fewer when the events' own latency says the host
//! is saturated, so under overload the excess is refused with 429 at the door
//! instead of queueing inside the host (where every accepted event would
//! share the cores with hundreds of others: bench/RESULTS.md, overload).
//!
//! The adaptive limit follows Envoy's adaptive-concurrency filter (itself
//! after Netflix's concurrency-limits "gradient"): measure the latency of
//! events when few are in flight (the *floor*), then after every window of
//! completed events either grow the limit by `√limit` (median within
//! `tolerance × floor`, and the window really used half the limit) or cut
//! it to `in flight × clamp(tolerance × floor / median, ¼, 1)`. An event's latency here is its local time: what it spent
//! waiting on remote hops and backoff is left out. While
//! the limit is held below the maximum, the floor is measured again every
//! [`PROBE_INTERVAL`] with the limit pinned to its minimum, so a sustained
//! overload cannot ratchet the floor (and the limit) upwards. Beyond the
//! limit, at most as many events again wait for a place (the bounded wait
//! queue); the rest are refused at once. Hand-written:
//! the crates that do this are Tower layers, and this host's admission is a
//! counter in its own handler (see the note in the README).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// How much slower than the floor the median event may get before the limit
/// shrinks. 1.5: on CPU-bound steps a limit of about the core count already
/// keeps every core busy, so tighter costs no throughput; the admission wait
/// (≤ one floor) plus 1.5 floors of service keeps accepted events near
/// twice the unloaded p99 (issue #9's target; bench/RESULTS.md, overload).
/// 1.25 measured lower but refused sustainable load.
pub const DEFAULT_TOLERANCE: f64 = 1.5;

/// The most one window may cut the limit: to a quarter, so an overload that
/// arrives at once is down to the cores within a few windows (≈ 0.3 s), while
/// one noisy window cannot close the door.
const MIN_GRADIENT: f64 = 0.25;
/// A window closes after at least this many completions (a median of fewer
/// is noise) ...
const WINDOW_EVENTS: usize = 16;
/// ... and at least this long (so a burst of fast events is one sample).
const WINDOW_TIME: Duration = Duration::from_millis(100);
/// How often the floor is measured again while the limit is below the maximum.
pub const PROBE_INTERVAL: Duration = Duration::from_secs(10);
/// No event waits longer than this for admission in adaptive mode, however
/// slow the floor: a floor of seconds (remote steps) must not hold senders.
const MAX_ADAPTIVE_WAIT: Duration = Duration::from_secs(1);

/// Refused: the host is at its limit and no place came free in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("overloaded: {in_flight} events in progress, limit {limit} (--max-in-flight {max})")]
pub struct Overloaded {
    /// Events in progress when the wait ended.
    pub in_flight: usize,
    /// The limit in force then.
    pub limit: usize,
    /// `--max-in-flight`.
    pub max: usize,
}

/// The host-wide door every event (Sequence run or step call) passes.
#[derive(Debug)]
pub struct Admission {
    /// `--max-in-flight`: the limit never exceeds it.
    max: usize,
    /// The limit never goes below this: the cores (or `max` if smaller), since
    /// fewer events than cores in flight would idle a core.
    min: usize,
    /// Events admitted and not yet finished.
    in_flight: AtomicUsize,
    /// The limit in force (`max` when fixed).
    limit: AtomicUsize,
    /// `--queue-timeout`: the longest wait for a place.
    queue_timeout: Duration,
    /// Events waiting for a place now. At most the limit wait (the bounded
    /// wait queue): an open-loop overload overflows it at once, and its
    /// excess is refused without a wait or a timer.
    waiting: AtomicUsize,
    /// Wakes a waiter when an event leaves or the limit grows.
    freed: tokio::sync::Notify,
    /// The latency controller; `None` = fixed limit.
    gradient: Option<Mutex<Gradient>>,
}

/// A place in the host, held while the event is in progress; gives it back
/// (and reports the event's latency, if it ran) when dropped.
#[derive(Debug)]
pub struct Admitted {
    /// The door this place belongs to.
    admission: Arc<Admission>,
    /// When the event was admitted: its latency is measured from here.
    since: Instant,
    /// The event's local latency, once [`Admitted::ran`] says it ran; an
    /// event refused before running (bad input) is no sample.
    sample: Option<Duration>,
}

impl Admitted {
    /// The event ran; `away` of its time went waiting elsewhere (remote
    /// hops, backoff: `sequence::timing_waits`) and is not this host's load.
    pub fn ran(&mut self, away: Duration) {
        self.sample = Some(self.since.elapsed().saturating_sub(away));
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        self.admission.leave(self.sample);
    }
}

impl Admission {
    /// A fixed limit of `max` events (the behaviour of `--admission fixed`).
    pub fn fixed(max: usize, queue_timeout: Duration) -> Self {
        Self::build(max, queue_timeout, None)
    }

    /// A limit that adapts to latency, between the cores and `max`.
    pub fn adaptive(max: usize, queue_timeout: Duration, tolerance: f64) -> Self {
        Self::build(max, queue_timeout, Some(tolerance))
    }

    fn build(max: usize, queue_timeout: Duration, tolerance: Option<f64>) -> Self {
        let max = max.max(1);
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let min = cores.min(max);
        let gradient = tolerance.map(|t| Mutex::new(Gradient::new(t, min, Instant::now())));
        // Adaptive starts open too: its first quiet window measures the floor.
        Self {
            max,
            min,
            in_flight: AtomicUsize::new(0),
            limit: AtomicUsize::new(max),
            waiting: AtomicUsize::new(0),
            queue_timeout,
            freed: tokio::sync::Notify::new(),
            gradient,
        }
    }

    /// The limit in force now (exported as `stephost_admission_limit`).
    pub fn limit(&self) -> usize {
        self.limit.load(Ordering::Relaxed)
    }

    /// Take a place, waiting for one at most `--queue-timeout` (in adaptive
    /// mode also at most one floor latency: a longer wait would itself break
    /// the latency the limit keeps; measured at 4× overload, same day: a wait
    /// of up to `--queue-timeout` gave accepted events 3.8× the steady p99,
    /// one floor 3.0×), and only if fewer than the limit are waiting
    /// already: a queue beyond that would only grow under overload.
    pub async fn enter(self: &Arc<Self>) -> Result<Admitted, Overloaded> {
        if let Some(place) = self.try_enter() {
            return Ok(place);
        }
        let Some(_queued) = self.queue() else {
            return Err(self.overloaded());
        };
        let deadline = tokio::time::Instant::now() + self.wait_bound();
        loop {
            let freed = self.freed.notified();
            tokio::pin!(freed);
            // Registered before the check, so a place freed in between wakes us.
            freed.as_mut().enable();
            if let Some(place) = self.try_enter() {
                return Ok(place);
            }
            if tokio::time::timeout_at(deadline, freed).await.is_err() {
                return Err(self.overloaded());
            }
        }
    }

    fn overloaded(&self) -> Overloaded {
        Overloaded {
            in_flight: self.in_flight.load(Ordering::Relaxed),
            limit: self.limit(),
            max: self.max,
        }
    }

    /// A place in the wait queue, if it has one free (fewer waiting than the
    /// limit); given back when dropped.
    fn queue(&self) -> Option<Queued<'_>> {
        let limit = self.limit();
        self.waiting
            .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |w| {
                (w < limit).then_some(w + 1)
            })
            .ok()
            .map(|_| Queued(&self.waiting))
    }

    fn wait_bound(&self) -> Duration {
        match &self.gradient {
            None => self.queue_timeout,
            Some(g) => {
                let floor = lock(g).floor.unwrap_or(MAX_ADAPTIVE_WAIT);
                self.queue_timeout.min(floor).min(MAX_ADAPTIVE_WAIT)
            }
        }
    }

    fn try_enter(self: &Arc<Self>) -> Option<Admitted> {
        let limit = self.limit();
        let mut now = self.in_flight.load(Ordering::Relaxed);
        loop {
            if now >= limit {
                return None;
            }
            match self.in_flight.compare_exchange_weak(
                now,
                now + 1,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => {
                    return Some(Admitted {
                        admission: self.clone(),
                        since: Instant::now(),
                        sample: None,
                    });
                }
                Err(actual) => now = actual,
            }
        }
    }

    fn leave(&self, sample: Option<Duration>) {
        let in_flight = self.in_flight.fetch_sub(1, Ordering::AcqRel);
        if let (Some(g), Some(latency)) = (&self.gradient, sample) {
            let limit = self.limit();
            let next = lock(g).record(latency, in_flight, limit, self.max, Instant::now());
            if let Some(next) = next {
                let next = next.clamp(self.min, self.max);
                self.limit.store(next, Ordering::Relaxed);
                if next > limit {
                    self.freed.notify_waiters();
                }
            }
        }
        self.freed.notify_one();
    }
}

/// A place in the wait queue (see [`Admission::enter`]).
struct Queued<'a>(&'a AtomicUsize);

impl Drop for Queued<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

fn lock(g: &Mutex<Gradient>) -> std::sync::MutexGuard<'_, Gradient> {
    g.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The latency controller: windows of completed events → a new limit.
#[derive(Debug)]
struct Gradient {
    /// See [`DEFAULT_TOLERANCE`].
    tolerance: f64,
    /// The lowest limit (the probe runs at it).
    min: usize,
    /// The median latency with few events in flight; `None` until measured.
    floor: Option<Duration>,
    /// Latencies of the open window.
    window: Vec<Duration>,
    /// When the open window started.
    window_start: Instant,
    /// The most events in flight seen in the open window.
    window_peak: usize,
    /// The open window is a probe: it measures the floor, taking a window
    /// with at most the minimum in flight (pinning the limit to the
    /// minimum until it gets one).
    probing: bool,
    /// The limit to go back to when the probe ends.
    resume: Option<usize>,
    /// When the limit last went below the maximum (probes are due from then).
    constrained_since: Option<Instant>,
}

impl Gradient {
    fn new(tolerance: f64, min: usize, now: Instant) -> Self {
        Self {
            tolerance,
            min,
            floor: None,
            window: Vec::with_capacity(4 * WINDOW_EVENTS),
            window_start: now,
            window_peak: 0,
            probing: true,
            resume: None,
            constrained_since: None,
        }
    }

    /// One event finished after `latency` with `in_flight` in progress
    /// (itself included); returns the new limit when a window closes.
    fn record(
        &mut self,
        latency: Duration,
        in_flight: usize,
        limit: usize,
        max: usize,
        now: Instant,
    ) -> Option<usize> {
        self.window.push(latency);
        self.window_peak = self.window_peak.max(in_flight);
        if self.window.len() < WINDOW_EVENTS || now - self.window_start < WINDOW_TIME {
            return None;
        }
        self.window.sort_unstable();
        let median = self.window[self.window.len() / 2];
        let peak = self.window_peak;
        self.window.clear();
        self.window_start = now;
        self.window_peak = 0;
        if self.probing {
            if peak > self.min {
                // Too busy to see the floor: hold the door at the minimum.
                self.resume.get_or_insert(limit);
                return Some(self.min);
            }
            self.probing = false;
            self.floor = Some(median);
            self.constrained_since = None;
            return Some(self.resume.take().unwrap_or(limit));
        }
        let floor = self.floor.unwrap_or(median).max(Duration::from_micros(1));
        let ratio = self.tolerance * floor.as_secs_f64() / median.as_secs_f64();
        let gradient = ratio.clamp(MIN_GRADIENT, 1.0);
        let next = if gradient >= 1.0 {
            let current = limit as f64;
            let grow = if peak * 2 >= limit {
                current.sqrt()
            } else {
                0.0
            };
            (current + grow).round() as usize
        } else {
            // Shrink from what was really in flight: a limit far above it
            // (the open door before an overload) binds nothing, and halving
            // it window by window would leave the queue in for seconds.
            let current = limit.min(peak.max(self.min)) as f64;
            (current * gradient).round() as usize
        };
        let next = next.clamp(self.min, max);
        if next < max {
            let since = *self.constrained_since.get_or_insert(now);
            if now - since >= PROBE_INTERVAL {
                // Measure the floor again from the next window.
                self.probing = true;
                self.resume = Some(next);
            }
        } else {
            self.constrained_since = None;
        }
        Some(next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feed `n` completions of `ms` each with `in_flight`, one per `step`.
    fn feed(
        g: &mut Gradient,
        now: &mut Instant,
        limit: &mut usize,
        (n, ms, in_flight): (usize, u64, usize),
    ) {
        for _ in 0..n {
            *now += Duration::from_millis(10);
            if let Some(next) = g.record(Duration::from_millis(ms), in_flight, *limit, 256, *now) {
                *limit = next;
            }
        }
    }

    #[test]
    fn the_limit_grows_at_the_floor_and_shrinks_when_latency_doubles() {
        let mut now = Instant::now();
        let mut g = Gradient::new(1.5, 2, now);
        let mut limit = 2;
        // The first quiet window measures a 10 ms floor.
        feed(&mut g, &mut now, &mut limit, (16, 10, 2));
        assert_eq!(g.floor, Some(Duration::from_millis(10)));
        // Busy at the floor's latency: the limit climbs.
        feed(&mut g, &mut now, &mut limit, (16 * 20, 10, 256));
        assert!(limit > 100, "limit {limit}");
        // Latency at 3× the floor: gradient 0.5 per window, down to the cores.
        feed(&mut g, &mut now, &mut limit, (16 * 10, 30, 256));
        assert_eq!(limit, 2);
    }

    #[test]
    fn an_overload_at_an_open_door_is_cut_from_what_is_in_flight() {
        let mut now = Instant::now();
        let mut g = Gradient::new(1.5, 2, now);
        let mut limit = 256;
        feed(&mut g, &mut now, &mut limit, (16, 10, 2));
        assert_eq!(limit, 256, "a quiet host keeps its door open");
        // 40 in flight at 20× the floor: one window cuts to a quarter of 40,
        // not of 256 (which would still admit everything).
        feed(&mut g, &mut now, &mut limit, (16, 200, 40));
        assert_eq!(limit, 10);
        feed(&mut g, &mut now, &mut limit, (16, 50, 10));
        assert_eq!(limit, 3);
    }

    #[test]
    fn the_floor_is_only_taken_with_at_most_the_cores_busy() {
        let mut now = Instant::now();
        let mut g = Gradient::new(1.5, 2, now);
        let mut limit = 256;
        // Four in flight on two cores: not the floor; the door is held at 2.
        feed(&mut g, &mut now, &mut limit, (16, 20, 4));
        assert_eq!((g.floor, limit), (None, 2));
        feed(&mut g, &mut now, &mut limit, (16, 10, 2));
        assert_eq!((g.floor, limit), (Some(Duration::from_millis(10)), 256));
    }

    #[test]
    fn an_idle_host_does_not_grow_its_limit() {
        let mut now = Instant::now();
        let mut g = Gradient::new(1.5, 2, now);
        let mut limit = 8;
        feed(&mut g, &mut now, &mut limit, (16, 10, 1));
        feed(&mut g, &mut now, &mut limit, (16 * 20, 10, 1));
        assert_eq!(limit, 8, "one event at a time never uses half of 8");
    }

    #[test]
    fn a_constrained_limit_probes_the_floor_again() {
        let mut now = Instant::now();
        let mut g = Gradient::new(1.5, 2, now);
        let mut limit = 2;
        feed(&mut g, &mut now, &mut limit, (16, 10, 2));
        // Overloaded at 20 ms for longer than the probe interval: the probe
        // pins the limit to the minimum while too many are in flight ...
        feed(&mut g, &mut now, &mut limit, (1100, 20, 16));
        assert!(g.probing);
        assert_eq!(limit, 2);
        // ... and measures the floor once they drained: 20 ms (slower work).
        feed(&mut g, &mut now, &mut limit, (32, 20, 2));
        assert!(!g.probing);
        assert_eq!(g.floor, Some(Duration::from_millis(20)));
    }

    #[tokio::test]
    async fn a_fixed_door_admits_max_then_refuses_after_the_wait() {
        let door = Arc::new(Admission::fixed(2, Duration::from_millis(20)));
        let a = door.enter().await.expect("first");
        let _b = door.enter().await.expect("second");
        let refused = door
            .enter()
            .await
            .expect_err("third must wait, then be refused");
        assert_eq!((refused.in_flight, refused.limit, refused.max), (2, 2, 2));
        drop(a);
        door.enter().await.expect("a place came free");
    }

    #[tokio::test]
    async fn the_wait_queue_holds_the_limit_and_refuses_beyond_it_at_once() {
        let door = Arc::new(Admission::fixed(2, Duration::from_secs(5)));
        let a = door.enter().await.expect("first");
        let b = door.enter().await.expect("second");
        let waiters: Vec<_> = (0..2)
            .map(|_| {
                let door = door.clone();
                tokio::spawn(async move { door.enter().await.map(|_| ()) })
            })
            .collect();
        while door.waiting.load(Ordering::Relaxed) < 2 {
            tokio::task::yield_now().await;
        }
        // Two in progress and two waiting: a fifth is refused without the
        // 5 s wait (a queue beyond one round only grows under overload).
        let started = Instant::now();
        let refused = door.enter().await.expect_err("the queue is full");
        assert!(started.elapsed() < Duration::from_secs(1));
        assert_eq!((refused.in_flight, refused.limit), (2, 2));
        drop((a, b));
        for w in waiters {
            w.await
                .expect("joined")
                .expect("a queued event gets a place");
        }
        assert_eq!(door.waiting.load(Ordering::Relaxed), 0);
    }

    #[tokio::test]
    async fn a_waiter_gets_the_place_an_event_leaves() {
        let door = Arc::new(Admission::fixed(1, Duration::from_secs(5)));
        let first = door.enter().await.expect("first");
        let waiter = tokio::spawn({
            let door = door.clone();
            async move { door.enter().await.map(|_| ()) }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        drop(first);
        waiter
            .await
            .expect("joined")
            .expect("admitted when the place came free");
    }
}
