//! Training at batch size 1 on two threads: the paper's per-pattern updates,
//! one image after another, shared between the calling thread and one pool
//! worker by layer rather than by image.
//!
//! One image is too little work to cut into chunks, and sharing out the
//! optimizer's step alone made it slower (the two halves of the weights moved
//! from one core's cache to the other's at every image: 88 us an image on two
//! threads against 77 us on one). Here each thread keeps its own layers for
//! the whole epoch, their weights, gradients, optimizer state and activations
//! in its own cache, and only 400 numbers cross between them each way:
//!
//! - the calling thread ("lower") owns C1, S2, C3 and S4 (the parameters
//!   before C5's in the flat vector): it runs their forward pass and sends
//!   S4's outputs;
//! - the helper ("upper") owns C5, F6 and the output: forward, loss and
//!   backward down to C5's input gradient, which it sends back, then the
//!   optimizer's step of its parameters while the caller runs the backward
//!   pass of the lower layers and their step.
//!
//! Both steps are computed into spare buffers and installed only if both are
//! finite (and the loss is), as one step of the whole network would be: every
//! parameter sees the same operations in the same order as on one thread, so
//! the weights keep their bits. The caller keeps the epoch's loop (poll,
//! observer, stop); the helper follows its messages.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::optim::Optimizer;
use super::team::spin_until;
use super::{fill_images, Control, Dataset, EpochStats};
use crate::distort::Distortion;
use crate::error::{LeNetError, Result};
use crate::model::{
    Layout, LowerBackward, LowerForward, TrainChunk, UpperTrain, UpperWeights, Workspace, C5_IN,
};
use crate::simd::dispatch;

/// How long the caller waits for the helper to start before it trains the
/// epoch on its own (the pool's threads may be busy with another call).
const START: Duration = Duration::from_millis(50);

/// A hand-over of one value at a time between two threads: the taker spins
/// (see [`spin_until`]), then sleeps until the value comes or the other side
/// has gone.
struct Slot<T> {
    /// The value, and whether the taker sleeps (only then is it woken: a
    /// wake-up is a system call).
    value: Mutex<(Option<T>, bool)>,
    ready: Condvar,
    full: AtomicBool,
}

impl<T> Slot<T> {
    fn new() -> Self {
        Slot {
            value: Mutex::new((None, false)),
            ready: Condvar::new(),
            full: AtomicBool::new(false),
        }
    }

    fn lock(&self) -> MutexGuard<'_, (Option<T>, bool)> {
        self.value.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn put(&self, v: T) {
        let mut slot = self.lock();
        slot.0 = Some(v);
        self.full.store(true, Ordering::Release);
        if slot.1 {
            self.ready.notify_one();
        }
    }

    /// The value, or None once `gone` is set with nothing to take.
    fn take(&self, gone: &AtomicBool) -> Option<T> {
        spin_until(|| self.full.load(Ordering::Acquire) || gone.load(Ordering::Acquire));
        let mut slot = self.lock();
        while slot.0.is_none() && !gone.load(Ordering::Acquire) {
            slot.1 = true;
            slot = self
                .ready
                .wait_timeout(slot, Duration::from_millis(5))
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        slot.1 = false;
        self.full.store(false, Ordering::Release);
        slot.0.take()
    }
}

/// From the caller to the helper (the arrays travel inline: no allocation per
/// image). Each says whether the step computed for
/// the previous image is to be installed first.
#[allow(clippy::large_enum_variant)]
enum Msg {
    Image {
        commit: bool,
        a4: [f32; C5_IN],
        label: u32,
        weight: Option<f32>,
    },
    /// Send a copy of the upper parameters.
    Snapshot { commit: bool },
    /// Give the state back and stop.
    Quit { commit: bool },
}

/// From the helper: C5's input gradient with the loss and whether the
/// prediction was right, or the upper parameters.
#[allow(clippy::large_enum_variant)]
enum Reply {
    Upper {
        g4: [f32; C5_IN],
        loss: f64,
        correct: usize,
    },
    Params(Vec<f32>),
}

/// What the helper owns for the epoch.
struct Upper {
    lay: Layout,
    params: Vec<f32>,
    opt: Optimizer,
    grad: Vec<f32>,
    ws: Workspace,
}

struct Shared {
    start: Mutex<Option<Upper>>,
    to_helper: Slot<Msg>,
    reply: Slot<Reply>,
    stepped: Slot<bool>,
    done: Slot<Upper>,
    /// Set when either side has left (normally or by a panic).
    caller_gone: AtomicBool,
    helper_gone: AtomicBool,
}

/// Sets a flag when dropped: the other side stops waiting.
struct Leave<'a>(&'a AtomicBool);

impl Drop for Leave<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Release);
    }
}

fn helper(sh: &Shared) {
    let _leave = Leave(&sh.helper_gone);
    let Some(mut up) = sh.start.lock().unwrap_or_else(|e| e.into_inner()).take() else {
        return;
    };
    // A panic here would abort the process from a pool thread: keep it, and
    // let the caller report it.
    let _ = catch_unwind(AssertUnwindSafe(|| loop {
        let Some(msg) = sh.to_helper.take(&sh.caller_gone) else {
            return;
        };
        let (Msg::Image { commit, .. } | Msg::Snapshot { commit } | Msg::Quit { commit }) = msg;
        if commit {
            up.opt.commit(&mut up.params);
        }
        match msg {
            Msg::Image {
                a4, label, weight, ..
            } => {
                up.ws.a4[..C5_IN].copy_from_slice(&a4);
                let weights = weight.map(|w| [w]);
                let (loss, correct) = dispatch(UpperTrain(TrainChunk {
                    lay: &up.lay,
                    p: &up.params,
                    ws: &mut up.ws,
                    labels: &[label],
                    weights: weights.as_ref().map(|w| &w[..]),
                    scale: 1.0,
                    grad: &mut up.grad,
                }));
                let mut g4 = [0.0; C5_IN];
                g4.copy_from_slice(&up.ws.g4[..C5_IN]);
                sh.reply.put(Reply::Upper { g4, loss, correct });
                dispatch(UpperWeights {
                    lay: &up.lay,
                    ws: &mut up.ws,
                    grad: &mut up.grad,
                });
                let n = up.params.len();
                let ok = up.opt.prepare(&up.params, &up.grad, n, None);
                sh.stepped.put(ok);
                // Ready for the next image, while the caller works on this one.
                up.grad.fill(0.0);
            }
            Msg::Snapshot { .. } => sh.reply.put(Reply::Params(up.params.clone())),
            Msg::Quit { .. } => {
                sh.done.put(up);
                return;
            }
        }
    }));
}

/// The helper can only have gone by a panic: a bug, reported as one.
fn lost() -> ! {
    panic!("the training thread of the upper layers stopped")
}

/// Why the epoch ended early.
enum End {
    Stopped,
    Diverged(String),
}

/// Runs the epoch `visit` (batch size 1) split between the calling thread and
/// one worker of `pool`; `Ok(None)` if no worker started within [`START`]
/// (nothing has changed then: train the epoch on one thread).
#[allow(clippy::too_many_arguments)]
pub(super) fn epoch(
    lay: &Layout,
    params: &mut [f32],
    opt: &mut Optimizer,
    data: &Dataset,
    visit: &[usize],
    pool: &rayon::ThreadPool,
    augment: Option<&Distortion>,
    distort_seed: u64,
    smoothing: f32,
    interval: Duration,
    observer: &mut dyn FnMut(usize, f64, &[f32]) -> Control,
    poll: &mut dyn FnMut() -> Control,
) -> Result<Option<EpochStats>> {
    let k = lay.c5_w;
    let np = params.len();
    let (mut lower_opt, upper_opt) = opt.split_at(k, np);
    let mut ws_up = Workspace::new(1, lay.cfg.n_classes);
    ws_up.smoothing = smoothing;
    let sh = Arc::new(Shared {
        start: Mutex::new(Some(Upper {
            lay: lay.clone(),
            params: params[k..].to_vec(),
            opt: upper_opt,
            grad: vec![0.0; np - k],
            ws: ws_up,
        })),
        to_helper: Slot::new(),
        reply: Slot::new(),
        stepped: Slot::new(),
        done: Slot::new(),
        caller_gone: AtomicBool::new(false),
        helper_gone: AtomicBool::new(false),
    });
    let theirs = sh.clone();
    pool.spawn(move || helper(&theirs));
    let waited = Instant::now();
    while sh.start.lock().unwrap_or_else(|e| e.into_inner()).is_some() {
        if waited.elapsed() > START {
            // Not started: take the state back (if it still is there).
            if sh
                .start
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take()
                .is_some()
            {
                return Ok(None);
            }
            break;
        }
        std::thread::yield_now();
    }
    let _leave = Leave(&sh.caller_gone);

    let mut lower = params[..k].to_vec();
    let mut grad = vec![0.0f32; k];
    let mut ws = Workspace::new(1, lay.cfg.n_classes);
    ws.smoothing = smoothing;
    let mut out = EpochStats::default();
    let mut last = Instant::now();
    let mut commit = false;
    let n = data.len();
    let mut end = None;
    for (b, &img) in visit.iter().enumerate() {
        fill_images(&mut ws.x, 1, &[img], data, augment, distort_seed, b);
        dispatch(LowerForward {
            lay,
            p: &lower,
            ws: &mut ws,
        });
        let mut a4 = [0.0; C5_IN];
        a4.copy_from_slice(&ws.a4[..C5_IN]);
        sh.to_helper.put(Msg::Image {
            commit,
            a4,
            label: data.labels[img],
            weight: data.weights.as_ref().map(|w| w[img]),
        });
        commit = false;
        grad.fill(0.0);
        let Some(Reply::Upper { g4, loss, correct }) = sh.reply.take(&sh.helper_gone) else {
            lost()
        };
        ws.g4[..C5_IN].copy_from_slice(&g4);
        dispatch(LowerBackward {
            lay,
            p: &lower,
            ws: &mut ws,
            grad: &mut grad,
        });
        let ok = loss.is_finite() && lower_opt.prepare(&lower, &grad, k, None);
        let Some(theirs_ok) = sh.stepped.take(&sh.helper_gone) else {
            lost()
        };
        if !loss.is_finite() {
            end = Some(End::Diverged(super::diverged_loss(b, loss)));
            break;
        }
        if !(ok && theirs_ok) {
            end = Some(End::Diverged(super::diverged_step(b)));
            break;
        }
        lower_opt.commit(&mut lower);
        commit = true;
        out.loss_sum += loss;
        out.correct += correct;
        out.samples += 1;
        out.batches += 1;
        let done = out.samples == n;
        if done || last.elapsed() >= interval {
            last = Instant::now();
            sh.to_helper.put(Msg::Snapshot { commit });
            commit = false;
            let Some(Reply::Params(upper)) = sh.reply.take(&sh.helper_gone) else {
                lost()
            };
            params[..k].copy_from_slice(&lower);
            params[k..].copy_from_slice(&upper);
            let mean = out.loss_sum / out.samples as f64;
            if observer(out.samples, mean, params) == Control::Stop && !done {
                end = Some(End::Stopped);
                break;
            }
        }
        if !done && poll() == Control::Stop {
            end = Some(End::Stopped);
            break;
        }
    }
    // Install the last step (or not) and take the helper's half back.
    sh.to_helper.put(Msg::Quit { commit });
    let Some(up) = sh.done.take(&sh.helper_gone) else {
        lost()
    };
    params[..k].copy_from_slice(&lower);
    params[k..].copy_from_slice(&up.params);
    *opt = Optimizer::join(lower_opt, up.opt, k);
    match end {
        None => Ok(Some(out)),
        Some(End::Stopped) => {
            out.stopped = true;
            Ok(Some(out))
        }
        Some(End::Diverged(msg)) => Err(LeNetError::Diverged(msg)),
    }
}
