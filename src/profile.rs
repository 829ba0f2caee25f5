//! Optional per-stage timing of the forward and backward passes (wide chunks and
//! single images), for benchmarks: off by default (one relaxed atomic load per
//! stage), switched on by [`enable`], read per thread by [`take`].

use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

/// The timed stages, in the order they run.
pub const STAGES: [&str; 18] = [
    "C1 conv",
    "C1 tanh",
    "S2",
    "C3 conv",
    "C3 tanh",
    "S4",
    "C5",
    "F6",
    "output",
    "loss",
    "output back",
    "F6 back",
    "C5 back",
    "S4 back",
    "C3 kernel grad",
    "C3 input grad",
    "S2 back",
    "C1 kernel grad",
];

static ON: AtomicBool = AtomicBool::new(false);

thread_local! {
    static CLOCK: RefCell<(Option<Instant>, [f64; STAGES.len()])> =
        const { RefCell::new((None, [0.0; STAGES.len()])) };
}

/// Switches timing on or off for all threads.
pub fn enable(on: bool) {
    ON.store(on, Ordering::Relaxed);
}

/// Starts timing a chunk on this thread.
#[inline]
pub fn start() {
    if ON.load(Ordering::Relaxed) {
        CLOCK.with(|c| c.borrow_mut().0 = Some(Instant::now()));
    }
}

/// Charges the time since the last mark to `stage`.
#[inline]
pub fn lap(stage: usize) {
    if ON.load(Ordering::Relaxed) {
        CLOCK.with(|c| {
            let mut c = c.borrow_mut();
            let now = Instant::now();
            if let Some(t) = c.0 {
                c.1[stage] += (now - t).as_secs_f64();
            }
            c.0 = Some(now);
        });
    }
}

/// Seconds per stage accumulated on this thread; resets them.
pub fn take() -> [f64; STAGES.len()] {
    CLOCK.with(|c| std::mem::replace(&mut c.borrow_mut().1, [0.0; STAGES.len()]))
}
