//! The door's bounds and answers: the flags' defaults and floors
//! ([`AdmissionLimits`]), and what a refused event is told ([`Overloaded`]).

use std::time::Duration;

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
    /// No event could ever be admitted.
    #[error("--max-in-flight must be at least 1")]
    NoInFlight,
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
        Self::filled(
            workers,
            DEFAULT_MAX_IN_FLIGHT,
            None,
            None,
            None,
            DEFAULT_QUEUE_TIMEOUT,
        )
    }

    /// The limits an operator's flags ask for (`None` = flag not given),
    /// checked against the floors. What is not given follows what is: the
    /// running places are the CPUs but at most `--max-in-flight`, the queue
    /// is the running places, the burst queue at least [`DEFAULT_MAX_BURST`]
    /// and at least both.
    pub fn from_flags(
        workers: usize,
        max_in_flight: usize,
        max_running: Option<usize>,
        max_queue: Option<usize>,
        max_burst: Option<usize>,
        queue_timeout: Duration,
    ) -> Result<Self, LimitError> {
        if max_in_flight == 0 {
            return Err(LimitError::NoInFlight);
        }
        let limits = Self::filled(
            workers,
            max_in_flight,
            max_running,
            max_queue,
            max_burst,
            queue_timeout,
        );
        limits.check(workers)?;
        Ok(limits)
    }

    /// Fill in what is not given (see [`AdmissionLimits::from_flags`]).
    fn filled(
        workers: usize,
        max_in_flight: usize,
        max_running: Option<usize>,
        max_queue: Option<usize>,
        max_burst: Option<usize>,
        queue_timeout: Duration,
    ) -> Self {
        let max_running = max_running.unwrap_or(workers.clamp(1, max_in_flight.max(1)));
        let max_queue = max_queue.unwrap_or(max_running);
        Self {
            max_in_flight,
            max_running,
            max_queue,
            max_burst: max_burst.unwrap_or(DEFAULT_MAX_BURST.max(max_running).max(max_queue)),
            queue_timeout,
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
