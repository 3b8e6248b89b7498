//! Per-step admission ([`StepGate`]): at most `limits.concurrency` calls of
//! one step at once and `limits.maxQueue` waiting, so one slow step cannot
//! take every sandbox from the others.

use std::sync::Arc;

/// Per-step admission (`limits.concurrency`, `limits.maxQueue`): a step that
/// is slow or stuck holds at most `concurrency` sandboxes, at most
/// `max_queue` calls wait for them, and the rest are pushed back at once
/// (429) instead of queueing without bound.
#[derive(Debug)]
pub struct StepGate {
    /// One permit per call that may run at once (`limits.concurrency`).
    places: Arc<tokio::sync::Semaphore>,
    /// Calls waiting for a permit now, to refuse beyond `limits.maxQueue`.
    waiting: std::sync::atomic::AtomicUsize,
    /// `limits.concurrency`, for the refusal message.
    concurrency: usize,
    /// `limits.maxQueue`.
    max_queue: usize,
}

/// The step's places and its queue are all taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GateFull {
    /// `limits.concurrency`.
    pub concurrency: usize,
    /// `limits.maxQueue`.
    pub max_queue: usize,
}

impl StepGate {
    /// A gate with `concurrency` places (at least 1) and `max_queue` waiters.
    pub fn new(concurrency: usize, max_queue: usize) -> Self {
        let concurrency = concurrency.max(1);
        Self {
            places: Arc::new(tokio::sync::Semaphore::new(concurrency)),
            waiting: std::sync::atomic::AtomicUsize::new(0),
            concurrency,
            max_queue,
        }
    }

    /// Take a place, waiting in the queue if there is room in it.
    pub async fn enter(&self) -> Result<tokio::sync::OwnedSemaphorePermit, GateFull> {
        use std::sync::atomic::Ordering::SeqCst;
        if let Ok(place) = self.places.clone().try_acquire_owned() {
            return Ok(place);
        }
        let full = GateFull {
            concurrency: self.concurrency,
            max_queue: self.max_queue,
        };
        if self.waiting.fetch_add(1, SeqCst) >= self.max_queue {
            self.waiting.fetch_sub(1, SeqCst);
            return Err(full);
        }
        // Leaves the queue however the wait ends (also when cancelled).
        struct Waiting<'a>(&'a std::sync::atomic::AtomicUsize);
        impl Drop for Waiting<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
            }
        }
        let _waiting = Waiting(&self.waiting);
        self.places.clone().acquire_owned().await.map_err(|_| full)
    }
}
