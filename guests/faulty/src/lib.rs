//! `faulty`: fails on purpose, so tests can prove that a failing guest fails
//! only its own event and that failures map to Knative's delivery rules.
//!
//! The fault comes from the event's `fault` extension, else the `mode`
//! setting; with neither the event is forwarded unchanged.
//! - `retryable`: a retryable step error (≙ 5xx, retried)
//! - `fatal`: a fatal step error (≙ 4xx, straight to the dead-letter sink)
//! - `trap`: a panic, which traps the instance
//! - `loop`: an endless loop, stopped by the step's timeout
//! - `oom`: allocates until the step's memory limit traps it

use stephost_guest::{Event, Step, StepError, config, export_step};

struct Faulty;

impl Step for Faulty {
    fn handle(event: Event) -> Result<Option<Event>, StepError> {
        let mode = event
            .extension("fault")
            .map(str::to_string)
            .or_else(|| config("mode"));
        match mode.as_deref() {
            None | Some("none") => Ok(Some(event)),
            Some("retryable") => Err(StepError::retryable("faulty: asked to fail (retryable)")),
            Some("fatal") => Err(StepError::fatal("faulty: asked to fail (fatal)")),
            Some("trap") => panic!("faulty: asked to trap"),
            Some("loop") => spin_forever(),
            Some("oom") => exhaust_memory(),
            Some(other) => Err(StepError::fatal(format!(
                "faulty: unknown fault mode {other:?}"
            ))),
        }
    }
}

/// Loops without end; `black_box` keeps the optimiser from removing it.
fn spin_forever() -> ! {
    let mut n: u64 = 0;
    loop {
        n = std::hint::black_box(n.wrapping_add(1));
    }
}

/// Grows the heap 1 MiB at a time, touching every page, until a grow fails.
fn exhaust_memory() -> ! {
    let mut hoard: Vec<Vec<u8>> = Vec::new();
    loop {
        hoard.push(vec![1u8; 1 << 20]);
        std::hint::black_box(&hoard);
    }
}

export_step!(Faulty);
