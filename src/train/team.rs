//! A team for the short parallel loops of training: the calling thread and
//! `threads - 1` of the pool's workers, kept for one epoch, that wait for the
//! next loop by spinning rather than by going back to sleep in the pool.
//!
//! Why: a batch of 64 images is two parallel loops (its chunks, then the
//! optimizer's step) of well under a millisecond each, and handing a loop to
//! rayon workers that have gone to sleep, then waking the calling thread when
//! they are done, cost 40 to 100 us a loop on the 2-core virtual machines this
//! was measured on (an empty `pool.install` of four tasks: 10 us when called
//! back to back, 90 us after a pause of 200 us; wake-ups through the
//! hypervisor are slow). That was a sixth of a batch at 2 threads: two threads
//! trained only 1.65x as fast as one at batch 64. In a team the calling thread
//! works on the loop too and a helper that spins sees a new loop within a
//! microsecond.
//!
//! A loop hands out its indices one at a time from a shared counter, so the
//! work balances itself; what each index computes does not depend on which
//! thread runs it (every chunk has its own buffers, summed in chunk order
//! afterwards), so the bits are those of a loop on one thread.
//!
//! A helper spins for at most [`SPIN`] after a loop (giving its core away
//! between checks after the first 50 us, see [`spin_until`]), then sleeps on a condition
//! variable until the next one, so a team costs nothing while the caller is busy
//! elsewhere (a progress callback in Python, say). Helpers that never got a
//! worker (the pool's threads busy with another call) are simply not waited
//! for: the caller and whichever helpers did join share each loop. A panic in
//! a loop's body, on any thread, is carried to the caller once every thread
//! has left the loop.

#![allow(unsafe_code)]

use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// How long a helper spins for the next loop before it sleeps.
pub const SPIN: Duration = Duration::from_millis(2);

/// How long a waiting thread spins before it starts to give its core away
/// between checks.
const PURE_SPIN: Duration = Duration::from_micros(50);

/// Waits up to [`SPIN`] for `done()`, without sleeping: for [`PURE_SPIN`] by
/// spinning alone, then yielding the core to any other runnable thread between
/// checks. The yield matters when the machine runs more threads than it has
/// cores (another process, two fits at once): a thread that only spun would
/// hold the core that the thread it waits for needs, and each hand-over would
/// cost a time slice (training at batch size 1 ran 8x slower so, beside a test
/// run on both cores). True if `done()` became true.
pub(super) fn spin_until(mut done: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    let mut spins = 0u32;
    let mut yielding = false;
    loop {
        if done() {
            return true;
        }
        if yielding {
            std::thread::yield_now();
        } else {
            std::hint::spin_loop();
        }
        spins = spins.wrapping_add(1);
        if yielding || spins.is_multiple_of(64) {
            let t = start.elapsed();
            if t > SPIN {
                return false;
            }
            yielding = t > PURE_SPIN;
        }
    }
}

/// A loop's body with its lifetime erased (see [`Team::run`] for why that is sound).
#[derive(Clone, Copy)]
struct Job(*const (dyn Fn(usize) + Sync));

// SAFETY: the body behind the pointer is `Sync`, so calling it from several
// threads at once is allowed; the pointer only travels to the helpers.
unsafe impl Send for Job {}

type Panic = Box<dyn std::any::Any + Send>;

struct State {
    /// Helpers that have joined: the ones each new loop waits for.
    members: usize,
    job: Option<Job>,
    panic: Option<Panic>,
}

struct Shared {
    state: Mutex<State>,
    wake: Condvar,
    /// Counts the loops started; helpers watch it for the next.
    generation: AtomicU64,
    /// The next index to hand out, and the current loop's length.
    next: AtomicUsize,
    len: AtomicUsize,
    /// Helpers of the current loop not yet done with it.
    busy: AtomicUsize,
    quit: AtomicBool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs indices from the shared counter until none are left; the first
    /// panic is kept.
    fn work(&self, body: &(dyn Fn(usize) + Sync)) -> Option<Panic> {
        let len = self.len.load(Ordering::Acquire);
        catch_unwind(AssertUnwindSafe(|| loop {
            let i = self.next.fetch_add(1, Ordering::Relaxed);
            if i >= len {
                break;
            }
            body(i);
        }))
        .err()
    }

    fn helper(&self) {
        let mut seen = {
            let mut st = self.lock();
            st.members += 1;
            self.generation.load(Ordering::Acquire)
        };
        loop {
            let waiting = || {
                self.generation.load(Ordering::Acquire) == seen
                    && !self.quit.load(Ordering::Acquire)
            };
            if !spin_until(|| !waiting()) {
                let mut st = self.lock();
                while waiting() {
                    st = self.wake.wait(st).unwrap_or_else(|e| e.into_inner());
                }
            }
            if self.quit.load(Ordering::Acquire) {
                return;
            }
            let job = {
                let st = self.lock();
                seen = self.generation.load(Ordering::Acquire);
                st.job
            };
            if let Some(Job(body)) = job {
                // SAFETY: this helper was counted in `busy` when the loop
                // started (it had joined before the generation changed, and the
                // caller reads `members` under the same lock as it bumps the
                // generation), and `Team::run` does not return before `busy` is
                // back to zero, so the body is still alive here.
                let panic = self.work(unsafe { &*body });
                if let Some(p) = panic {
                    self.lock().panic.get_or_insert(p);
                }
            }
            self.busy.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

/// The calling thread and the helpers that joined (see the module's notes).
pub struct Team {
    shared: Arc<Shared>,
}

impl Team {
    /// Starts `helpers` helper tasks on `pool` (none for a pool of one thread).
    pub fn new(pool: &rayon::ThreadPool, helpers: usize) -> Self {
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                members: 0,
                job: None,
                panic: None,
            }),
            wake: Condvar::new(),
            generation: AtomicU64::new(0),
            next: AtomicUsize::new(0),
            len: AtomicUsize::new(0),
            busy: AtomicUsize::new(0),
            quit: AtomicBool::new(false),
        });
        for _ in 0..helpers {
            let s = shared.clone();
            pool.spawn(move || s.helper());
        }
        Team { shared }
    }

    /// Calls `body(i)` for every `i` in `0..len`, each exactly once, on the
    /// calling thread and the helpers, and returns when all calls have
    /// returned. A panic in `body` is resumed here after that.
    pub fn run(&self, len: usize, body: &(dyn Fn(usize) + Sync)) {
        let s = &*self.shared;
        if len == 0 {
            return;
        }
        {
            let mut st = s.lock();
            // SAFETY (of the erasure): the pointer is used only by helpers
            // counted in `busy`, and this function waits for `busy` to reach
            // zero before it returns or unwinds, so no helper uses it after
            // `body`'s lifetime ends.
            let erased: *const (dyn Fn(usize) + Sync + '_) = body;
            st.job = Some(Job(unsafe {
                std::mem::transmute::<
                    *const (dyn Fn(usize) + Sync + '_),
                    *const (dyn Fn(usize) + Sync + 'static),
                >(erased)
            }));
            s.len.store(len, Ordering::Relaxed);
            s.next.store(0, Ordering::Relaxed);
            s.busy.store(st.members, Ordering::Relaxed);
            s.generation.fetch_add(1, Ordering::AcqRel);
            if st.members > 0 {
                s.wake.notify_all();
            }
        }
        let mine = s.work(body);
        let done = || s.busy.load(Ordering::Acquire) == 0;
        if !spin_until(done) {
            while !done() {
                std::thread::yield_now();
            }
        }
        let theirs = {
            let mut st = s.lock();
            st.job = None;
            st.panic.take()
        };
        if let Some(p) = mine.or(theirs) {
            resume_unwind(p);
        }
    }

    /// [`Team::run`] over the items of `items`, each borrowed mutably by the
    /// one call that gets its index.
    pub fn for_each_mut<T: Send>(&self, items: &mut [T], body: &(dyn Fn(usize, &mut T) + Sync)) {
        struct Base<T>(*mut T);
        // SAFETY: the items are `Send`, and each is reached from one call only.
        unsafe impl<T: Send> Sync for Base<T> {}
        let base = Base(items.as_mut_ptr());
        let base = &base;
        self.run(items.len(), &|i| {
            // SAFETY: `run` calls each index of `0..items.len()` exactly once,
            // so no two calls hold the same item, and `items` is borrowed
            // mutably for as long as `run` lasts.
            let item = unsafe { &mut *base.0.add(i) };
            body(i, item);
        });
    }
}

impl Drop for Team {
    /// Sends the helpers back to the pool (a helper that has not started yet
    /// returns as soon as it does).
    fn drop(&mut self) {
        let _st = self.shared.lock();
        self.shared.quit.store(true, Ordering::Release);
        self.shared.wake.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(threads: usize) -> rayon::ThreadPool {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap()
    }

    #[test]
    fn every_index_runs_once_over_many_loops() {
        let pool = pool(3);
        let team = Team::new(&pool, 2);
        for len in [0, 1, 2, 5, 64, 1000] {
            for round in 0..50 {
                let mut hits = vec![0u32; len];
                team.for_each_mut(&mut hits, &|i, h| *h += 1 + (i % 3) as u32);
                let want: Vec<u32> = (0..len).map(|i| 1 + (i % 3) as u32).collect();
                assert_eq!(hits, want, "len {len} round {round}");
            }
            // A pause long enough for the helpers to sleep, then another loop.
            std::thread::sleep(SPIN * 2);
        }
    }

    #[test]
    fn helpers_that_never_start_are_not_waited_for() {
        // One worker, kept busy until the loops are done: the helper never joins.
        let pool = pool(1);
        let release = Arc::new(AtomicBool::new(false));
        let r = release.clone();
        pool.spawn(move || {
            while !r.load(Ordering::Acquire) {
                std::thread::sleep(Duration::from_millis(1));
            }
        });
        let team = Team::new(&pool, 1);
        let sum = AtomicUsize::new(0);
        team.run(100, &|i| {
            sum.fetch_add(i, Ordering::Relaxed);
        });
        assert_eq!(sum.load(Ordering::Relaxed), 4950);
        drop(team);
        release.store(true, Ordering::Release);
    }

    #[test]
    fn a_panic_reaches_the_caller_after_the_loop() {
        let pool = pool(2);
        let team = Team::new(&pool, 1);
        let done = AtomicUsize::new(0);
        let r = catch_unwind(AssertUnwindSafe(|| {
            team.run(200, &|i| {
                if i == 7 {
                    panic!("index 7");
                }
                done.fetch_add(1, Ordering::Relaxed);
            })
        }));
        assert!(r.is_err());
        // The team still works after a panic.
        let sum = AtomicUsize::new(0);
        team.run(10, &|i| {
            sum.fetch_add(i, Ordering::Relaxed);
        });
        assert_eq!(sum.load(Ordering::Relaxed), 45);
    }
}
