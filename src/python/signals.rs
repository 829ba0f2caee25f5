//! Ctrl-C inside long native loops: the signal handlers run on Python's main
//! thread between units of native work.

#![allow(unused_imports)]
use super::*;

/// The thread Python runs its signal handlers on, when known (recorded at import).
pub(super) static MAIN_THREAD: OnceLock<ThreadId> = OnceLock::new();

/// Seconds between two checks for signals inside a long native loop.
pub(super) const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// Ctrl-C inside long native loops. The core calls [`Signals::poll`] on the
/// calling thread between units of work (a wave of chunks, a batch, a few
/// hundred images); at most every [`POLL_INTERVAL`] it re-attaches to Python and
/// runs the signal handlers, and keeps the first error (KeyboardInterrupt) to
/// raise once the loop has stopped. Off Python's main thread no handler can run,
/// so it does nothing there and the loop never waits for the GIL.
pub(super) struct Signals {
    pub(super) active: bool,
    pub(super) last: Mutex<Instant>,
    pub(super) pending: Mutex<Option<PyErr>>,
}

impl Signals {
    pub(super) fn new() -> Self {
        let here = std::thread::current().id();
        Signals {
            active: MAIN_THREAD.get().is_none_or(|m| *m == here),
            last: Mutex::new(Instant::now()),
            pending: Mutex::new(None),
        }
    }

    pub(super) fn poll(&self) -> Control {
        if !self.active {
            return Control::Continue;
        }
        if self.pending.lock().map_or(true, |p| p.is_some()) {
            return Control::Stop;
        }
        if let Ok(mut last) = self.last.lock() {
            if last.elapsed() < POLL_INTERVAL {
                return Control::Continue;
            }
            *last = Instant::now();
        }
        Python::attach(|py| match py.check_signals() {
            Ok(()) => Control::Continue,
            Err(e) => {
                self.keep(e);
                Control::Stop
            }
        })
    }

    /// Keeps `e` to raise later, unless an error is already kept.
    pub(super) fn keep(&self, e: PyErr) {
        if let Ok(mut p) = self.pending.lock() {
            p.get_or_insert(e);
        }
    }

    pub(super) fn take(&self) -> Option<PyErr> {
        self.pending.lock().ok().and_then(|mut p| p.take())
    }

    /// The result of a loop that `poll` may have stopped: the kept error first.
    pub(super) fn finish<T>(&self, r: crate::Result<T>) -> PyResult<T> {
        match (self.take(), r) {
            (Some(e), _) => Err(e),
            (None, Err(LeNetError::Interrupted)) => {
                Err(PyKeyboardInterrupt::new_err("interrupted"))
            }
            (None, r) => Ok(r?),
        }
    }
}
