//! Mini-batch training and batched inference over a thread pool.
//!
//! The optimizers are in [`optim`].
//!
//! A batch is cut into chunks of [`wide_lanes`] images (single images when the batch
//! is smaller than that). Each chunk runs forward and backward on its own
//! workspace and writes its gradient into its own buffer; the buffers are then
//! summed in chunk order. The chunks are the same whatever the number of
//! threads, so a seed gives bit-identical weights with 1 thread or many. With
//! more than one thread, an epoch's parallel loops (the chunks of a wave, the
//! sums, the optimizer's step) run on a [`Team`]: the calling thread and the
//! pool's other workers, which spin between the loops of a batch instead of
//! being woken for each. The team gets at most [`wave_chunks`] chunks at a
//! time (one wave): a larger batch runs as several waves into the same buffers,
//! each added to a running sum in chunk order, so memory stays bounded and the
//! sum keeps its bits. Between waves a `poll` callback can stop the work
//! (Ctrl-C).

use std::sync::Mutex;
use std::time::{Duration, Instant};

use rayon::prelude::*;

pub(crate) mod optim;
mod pipeline;
pub(crate) mod probe;
pub(crate) mod team;

use crate::data::{fill_chunk, ImageStore, ImageView, Pixel};
use crate::distort::{image_rng, Distortion};
use crate::error::{LeNetError, Result};
use crate::layers::dense::{score, softmax_rows};
use crate::model::{wide_lanes, CurvatureChunk, Forward, Layout, TrainChunk, Workspace, IN};
use crate::rng::Rng;
use crate::simd::{dispatch, flush_all, square, MAX_LANES};
use optim::Optimizer;
use team::Team;

/// Training images with their class indices, and optionally a weight per image.
#[derive(Clone, Debug)]
pub struct Dataset {
    pub images: ImageStore,
    pub labels: Vec<u32>,
    /// Multiplies each image's loss and gradient (None: all 1).
    pub weights: Option<Vec<f32>>,
}

impl Dataset {
    pub fn new(images: ImageStore, labels: Vec<u32>) -> Result<Self> {
        if images.len() != labels.len() {
            return Err(LeNetError::value(format!(
                "x and y must have the same number of samples; got {} images and {} labels",
                images.len(),
                labels.len()
            )));
        }
        if images.is_empty() {
            return Err(LeNetError::value("the training set is empty (0 samples)"));
        }
        Ok(Dataset {
            images,
            labels,
            weights: None,
        })
    }

    /// Gives every image a weight (finite, non-negative, one per image) that
    /// multiplies its loss and its gradient in [`train_epoch`].
    pub fn with_weights(mut self, weights: Vec<f32>) -> Result<Self> {
        if weights.len() != self.len() {
            return Err(LeNetError::value(format!(
                "sample_weight must have one weight per sample; got {} weights for {} samples",
                weights.len(),
                self.len()
            )));
        }
        if let Some(w) = weights.iter().find(|w| !(w.is_finite() && **w >= 0.0)) {
            return Err(LeNetError::value(format!(
                "sample weights must be finite and non-negative; got {w}"
            )));
        }
        self.weights = Some(weights);
        Ok(self)
    }

    pub fn len(&self) -> usize {
        self.labels.len()
    }
}

/// Figures of one epoch (or of the part of it that ran).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct EpochStats {
    pub loss_sum: f64,
    pub correct: usize,
    pub samples: usize,
    pub batches: usize,
    /// The observer stopped the epoch early.
    pub stopped: bool,
}

/// What an observer tells the trainer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Control {
    Continue,
    Stop,
}

/// Per-thread workspaces, one per pool thread plus one for the caller.
struct Workspaces {
    slots: Vec<Mutex<Workspace>>,
}

impl Workspaces {
    fn new(threads: usize, lanes: usize, k: usize) -> Self {
        Workspaces {
            slots: (0..threads + 1)
                .map(|_| Mutex::new(Workspace::new(lanes, k)))
                .collect(),
        }
    }

    fn with<R>(&self, f: impl FnOnce(&mut Workspace) -> R) -> R {
        let i = rayon::current_thread_index()
            .map_or(self.slots.len() - 1, |i| i.min(self.slots.len() - 2));
        let mut ws = self.slots[i].lock().unwrap_or_else(|e| e.into_inner());
        f(&mut ws)
    }
}

/// The labels of a chunk's images, without an allocation: the first `n` entries.
fn chunk_labels(data: &Dataset, part: &[usize]) -> ([u32; MAX_LANES], usize) {
    debug_assert!(
        part.len() <= MAX_LANES,
        "a chunk holds at most MAX_LANES images"
    );
    let mut lab = [0u32; MAX_LANES];
    for (l, &i) in lab.iter_mut().zip(part) {
        *l = data.labels[i];
    }
    (lab, part.len().min(MAX_LANES))
}

/// The weights of a chunk's images (the first `n` entries), None without weights.
fn chunk_weights(data: &Dataset, part: &[usize]) -> Option<[f32; MAX_LANES]> {
    data.weights.as_ref().map(|w| {
        let mut out = [0.0f32; MAX_LANES];
        for (o, &i) in out.iter_mut().zip(part) {
            *o = w[i];
        }
        out
    })
}

/// The order in which an epoch visits the training images.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Order {
    /// Shuffled by the training stream, afresh every epoch.
    Shuffled,
    /// Shuffled by this seed: the same order in every epoch (the paper's
    /// "constant random order").
    Seeded(u64),
    /// The order of the data set.
    Data,
}

/// Chunks handed to the pool at once: a small multiple of the threads (at least
/// [`MIN_WAVE`]). A batch or a curvature sample of more chunks runs as several
/// waves, each reusing the same gradient buffers, so memory does not grow with the
/// batch size; between waves the caller's `poll` can stop the work.
pub fn wave_chunks(threads: usize) -> usize {
    threads.saturating_mul(WAVE_PER_THREAD).max(MIN_WAVE)
}

/// Chunks per thread in one wave (see [`wave_chunks`]).
pub const WAVE_PER_THREAD: usize = 4;
/// Fewest chunks in one wave: a batch of 256 images runs as one wave.
pub const MIN_WAVE: usize = 16;

/// Adds the `chunks` gradient buffers of `grads` (each `acc.len()` long) to
/// `acc` in buffer order; with `first`, the first buffer is copied instead of
/// added. Each parameter sees the same additions in the same order as
/// [`Optimizer::step`]'s own sum over the buffers, so the result has the same
/// bits however the chunks were grouped into waves.
fn accumulate(acc: &mut [f32], grads: &[f32], chunks: usize, first: bool, team: Option<&Team>) {
    let np = acc.len();
    let add = |(r, a): (usize, &mut [f32])| {
        let lo = r * ACC_RANGE;
        let len = a.len();
        for c in 0..chunks {
            let g = &grads[c * np + lo..c * np + lo + len];
            if first && c == 0 {
                a.copy_from_slice(g);
            } else {
                for (x, y) in a.iter_mut().zip(g) {
                    *x += y;
                }
            }
        }
    };
    match team {
        Some(team) => {
            let mut ranges: Vec<&mut [f32]> = acc.chunks_mut(ACC_RANGE).collect();
            team.for_each_mut(&mut ranges, &|r, a| add((r, a)));
        }
        None => acc.chunks_mut(ACC_RANGE).enumerate().for_each(add),
    }
}

/// Parameters per task when waves are summed in parallel.
const ACC_RANGE: usize = 4096;

/// Writes the images `part` of the data set into the chunk input `x`
/// (`lanes` wide), distorted by `augment` if given; `first` is the position in
/// the epoch of the first of them (it seeds each image's distortion).
fn fill_images(
    x: &mut [f32],
    lanes: usize,
    part: &[usize],
    data: &Dataset,
    augment: Option<&Distortion>,
    distort_seed: u64,
    first: usize,
) {
    let Some(d) = augment else {
        data.images.write_chunk(part, x, lanes);
        return;
    };
    let mut tmp = [0.0f32; IN * IN];
    fill_chunk(x, lanes, part, |i, dst, lane| {
        data.images.write_lane(i, &mut tmp, 0, 1);
        let pos = (first + lane) as u64;
        d.draw(&mut image_rng(distort_seed, pos))
            .apply(&tmp, dst, lane, lanes);
    });
}

fn diverged_loss(b: usize, loss: f64) -> String {
    format!(
        "training diverged at batch {b} of this epoch: the loss is {loss}; the weights are kept from the last finite batch (try a smaller learning_rate)"
    )
}

fn diverged_step(b: usize) -> String {
    format!(
        "training diverged at batch {b} of this epoch: a gradient or weight is not finite; the weights are kept from the last finite batch (try a smaller learning_rate)"
    )
}

/// Runs one epoch of mini-batch training.
///
/// `observer(samples_done, mean_loss_so_far, params)` is called at most every
/// `interval` and after the last batch; returning [`Control::Stop`] ends the
/// epoch after the current batch. `poll()` is called on the calling thread
/// between waves of chunks (see [`wave_chunks`]) and after every batch; returning
/// [`Control::Stop`] ends the epoch at once, abandoning a batch in progress, so
/// `params` holds the last completed batch's values. Either way the returned
/// stats have `stopped` set. A non-finite loss or gradient stops with
/// [`LeNetError::Diverged`] before the update, so `params` keeps its last finite
/// values. `order` says in which order the images come.
///
/// # Errors
///
/// [`LeNetError::Memory`] when the gradient buffers cannot be reserved (they hold
/// at most [`wave_chunks`] chunks' gradients, whatever the batch size).
#[allow(clippy::too_many_arguments)]
pub fn train_epoch(
    lay: &Layout,
    params: &mut Vec<f32>,
    opt: &mut Optimizer,
    rng: &mut Rng,
    data: &Dataset,
    batch_size: usize,
    pool: &rayon::ThreadPool,
    augment: Option<&Distortion>,
    smoothing: f32,
    order: Order,
    interval: Duration,
    observer: &mut dyn FnMut(usize, f64, &[f32]) -> Control,
    poll: &mut dyn FnMut() -> Control,
) -> Result<EpochStats> {
    if batch_size == 0 {
        return Err(LeNetError::value(
            "batch_size must be a positive integer; got 0",
        ));
    }
    let n = data.len();
    let np = lay.n_params_total();
    let bs = batch_size.min(n);
    let wide = wide_lanes();
    let lanes = if bs < wide { 1 } else { wide };
    let threads = pool.current_num_threads();
    let max_chunks = bs.div_ceil(lanes);
    let wave = wave_chunks(threads).min(max_chunks);
    let mut visit: Vec<usize> = (0..n).collect();
    match order {
        Order::Shuffled => rng.shuffle(&mut visit),
        Order::Seeded(seed) => Rng::new(seed).shuffle(&mut visit),
        Order::Data => {}
    }
    let distort_seed = rng.next_u64();
    if bs == 1 && threads > 1 && n > 1 {
        // One image a batch: the layers shared between two threads instead.
        let done = pipeline::epoch(
            lay,
            params,
            opt,
            data,
            &visit,
            pool,
            augment,
            distort_seed,
            smoothing,
            interval,
            observer,
            poll,
        )?;
        if let Some(stats) = done {
            return Ok(stats);
        }
    }
    let mut grads = try_alloc(buffer_len(wave, np)?, "gradient buffers")?;
    // The running sum of a batch that takes more than one wave.
    let mut acc = if max_chunks > wave {
        try_alloc(np, "the gradient sum")?
    } else {
        Vec::new()
    };
    let mut stats = vec![(0.0f64, 0usize); wave];
    let wss = Workspaces::new(threads, lanes, lay.cfg.n_classes);
    // The pool's other threads, for this epoch's loops (see `team`).
    let team = (threads > 1).then(|| Team::new(pool, threads - 1));
    let team = team.as_ref();

    let mut out = EpochStats::default();
    let mut last = Instant::now();
    for (b, idx) in visit.chunks(bs).enumerate() {
        let nch = idx.len().div_ceil(lanes);
        let scale = 1.0 / idx.len() as f32;
        let p: &[f32] = params;
        let mut batch_loss = 0.0f64;
        let mut batch_correct = 0usize;
        let mut c0 = 0;
        while c0 < nch {
            let wn = wave.min(nch - c0);
            let work = |(wi, (g, st)): (usize, (&mut [f32], &mut (f64, usize)))| {
                let ci = c0 + wi;
                let part = &idx[ci * lanes..((ci + 1) * lanes).min(idx.len())];
                let (lab, nl) = chunk_labels(data, part);
                let labels = &lab[..nl];
                let wts = chunk_weights(data, part);
                let weights = wts.as_ref().map(|w| &w[..nl]);
                g.fill(0.0);
                let first = b * bs + ci * lanes;
                *st = wss.with(|ws| {
                    ws.smoothing = smoothing;
                    fill_images(&mut ws.x, lanes, part, data, augment, distort_seed, first);
                    dispatch(TrainChunk {
                        lay,
                        p,
                        ws,
                        labels,
                        weights,
                        scale,
                        grad: g,
                    })
                });
            };
            match team {
                Some(team) if wn > 1 => {
                    let mut jobs: Vec<(&mut [f32], &mut (f64, usize))> = grads[..wn * np]
                        .chunks_mut(np)
                        .zip(stats[..wn].iter_mut())
                        .collect();
                    team.for_each_mut(&mut jobs, &|wi, job| work((wi, (&mut *job.0, &mut *job.1))));
                }
                // Nothing to share out: run here.
                _ => grads[..wn * np]
                    .chunks_mut(np)
                    .zip(stats[..wn].iter_mut())
                    .enumerate()
                    .for_each(work),
            }
            for s in &stats[..wn] {
                batch_loss += s.0;
                batch_correct += s.1;
            }
            if wn < nch {
                accumulate(&mut acc, &grads[..wn * np], wn, c0 == 0, team);
            }
            c0 += wn;
            if c0 < nch && poll() == Control::Stop {
                out.stopped = true;
                return Ok(out);
            }
        }
        if !batch_loss.is_finite() {
            return Err(LeNetError::Diverged(diverged_loss(b, batch_loss)));
        }
        let summed: &[f32] = if nch > wave { &acc } else { &grads[..nch * np] };
        // One chunk's gradient (batch size 1): the step stays on this thread.
        // Shared out, half the weights would move to the other core's cache
        // and back for every image (measured: 88 us an image at 2 threads
        // against 77 us on one).
        let ok = opt.step(params, summed, np, team.filter(|_| nch > 1));
        if !ok {
            return Err(LeNetError::Diverged(diverged_step(b)));
        }
        out.loss_sum += batch_loss;
        out.correct += batch_correct;
        out.samples += idx.len();
        out.batches += 1;
        let done = out.samples == n;
        if done || last.elapsed() >= interval {
            last = Instant::now();
            let mean = out.loss_sum / out.samples as f64;
            if observer(out.samples, mean, params) == Control::Stop && !done {
                out.stopped = true;
                return Ok(out);
            }
        }
        if !done && poll() == Control::Stop {
            out.stopped = true;
            return Ok(out);
        }
    }
    Ok(out)
}

/// Estimates the diagonal Gauss-Newton curvature `h_kk` of the loss, averaged
/// over `n_samples` training images drawn without replacement (all if fewer),
/// as the SDLM optimizer uses it (re-estimated before each pass in the paper).
///
/// The chunks run in waves (see [`wave_chunks`]) whose buffers are summed in
/// chunk order, so memory does not grow with `n_samples`; `poll()` is called
/// between waves on the calling thread.
///
/// # Errors
///
/// [`LeNetError::Interrupted`] when `poll` returned [`Control::Stop`];
/// [`LeNetError::Memory`] when the buffers cannot be reserved.
pub fn estimate_curvature(
    lay: &Layout,
    params: &[f32],
    data: &Dataset,
    n_samples: usize,
    rng: &mut Rng,
    pool: &rayon::ThreadPool,
    poll: &mut dyn FnMut() -> Control,
) -> Result<Vec<f32>> {
    let n = data.len();
    let m = n_samples.clamp(1, n);
    let mut order: Vec<usize> = (0..n).collect();
    // Partial Fisher-Yates: the first m entries are a uniform sample.
    for i in 0..m {
        let j = i + rng.below((n - i) as u64) as usize;
        order.swap(i, j);
    }
    let idx = &order[..m];
    let np = lay.n_params_total();
    let wide = wide_lanes();
    let lanes = if m < wide { 1 } else { wide };
    let nch = m.div_ceil(lanes);
    let threads = pool.current_num_threads();
    let wave = wave_chunks(threads).min(nch);
    // Squares of weights below 1.1e-19 would be subnormal (see `simd`).
    let p2: Vec<f32> = params.iter().map(|&v| square(v)).collect();
    let mut grads = try_alloc(buffer_len(wave, np)?, "curvature buffers")?;
    let mut h = try_alloc(np, "the curvature")?;
    let wss = Workspaces::new(threads, lanes, lay.cfg.n_classes);
    let scale = 1.0 / m as f32;
    let team = (threads > 1).then(|| Team::new(pool, threads - 1));
    let team = team.as_ref();
    let mut c0 = 0;
    while c0 < nch {
        let wn = wave.min(nch - c0);
        let work = |wi: usize, g: &mut [f32]| {
            let ci = c0 + wi;
            let part = &idx[ci * lanes..((ci + 1) * lanes).min(m)];
            let (lab, nl) = chunk_labels(data, part);
            let labels = &lab[..nl];
            g.fill(0.0);
            wss.with(|ws| {
                data.images.write_chunk(part, &mut ws.x, lanes);
                dispatch(CurvatureChunk {
                    lay,
                    p: params,
                    p2: &p2,
                    ws,
                    labels,
                    scale,
                    grad: g,
                })
            });
        };
        match team {
            Some(team) if wn > 1 => {
                let mut bufs: Vec<&mut [f32]> = grads[..wn * np].chunks_mut(np).collect();
                team.for_each_mut(&mut bufs, &|wi, g| work(wi, g));
            }
            _ => grads[..wn * np]
                .chunks_mut(np)
                .enumerate()
                .for_each(|(wi, g)| work(wi, g)),
        }
        accumulate(&mut h, &grads[..wn * np], wn, false, team);
        c0 += wn;
        if c0 < nch && poll() == Control::Stop {
            return Err(LeNetError::Interrupted);
        }
    }
    // The optimizer keeps `h` for a whole pass: no subnormals in it.
    flush_all(&mut h);
    Ok(h)
}

/// `chunks * np` floats, or a value error when the product overflows.
fn buffer_len(chunks: usize, np: usize) -> Result<usize> {
    chunks
        .checked_mul(np)
        .ok_or_else(|| LeNetError::value(format!("{chunks} buffers of {np} floats overflow")))
}

/// Reserves a zeroed buffer, reporting failure instead of aborting.
pub fn try_alloc(n: usize, what: &str) -> Result<Vec<f32>> {
    let mut v: Vec<f32> = Vec::new();
    v.try_reserve_exact(n).map_err(|_| {
        LeNetError::Memory(format!(
            "cannot allocate {} MiB for {what}",
            n.saturating_mul(4) >> 20
        ))
    })?;
    v.resize(n, 0.0);
    Ok(v)
}

/// The most memory one output may take: the machine's physical memory (Linux:
/// `MemTotal` in /proc/meminfo), or 64 GiB where that cannot be read. An output
/// larger than this cannot be held, and on a system that overcommits memory
/// the attempt would end the process rather than fail.
pub fn memory_limit() -> u64 {
    static LIMIT: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *LIMIT.get_or_init(|| {
        std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|s| {
                let line = s.lines().find(|l| l.starts_with("MemTotal:"))?;
                let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
                kib.checked_mul(1024)
            })
            .unwrap_or(64 << 30)
    })
}

/// Checks, before anything is allocated, that an output of `n` items of
/// `per_item` elements of `elem_bytes` bytes each fits in [`memory_limit`];
/// returns the number of elements.
///
/// # Errors
///
/// [`LeNetError::Value`] saying how much memory the output would need (also
/// when that number does not fit in 64 bits).
pub fn check_output(n: usize, per_item: usize, elem_bytes: usize, what: &str) -> Result<usize> {
    let elements = n.checked_mul(per_item);
    let bytes = elements.and_then(|e| e.checked_mul(elem_bytes));
    let limit = memory_limit();
    match (elements, bytes) {
        (Some(e), Some(b)) if b as u64 <= limit => Ok(e),
        (_, b) => {
            let need = match b {
                Some(b) => format!("{} ({b} bytes)", human_bytes(b as f64)),
                None => format!(
                    "{} ({n} x {per_item} x {elem_bytes} bytes, more than 2^64)",
                    human_bytes(n as f64 * per_item as f64 * elem_bytes as f64)
                ),
            };
            Err(LeNetError::value(format!(
                "{what} for {n} images would need {need} of memory, more than this machine's {}; pass the images in smaller batches",
                human_bytes(limit as f64)
            )))
        }
    }
}

/// A byte count for messages: "1.5 GiB".
fn human_bytes(b: f64) -> String {
    let units = [
        "bytes", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB", "ZiB", "YiB",
    ];
    let mut v = b;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < units.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{b} bytes")
    } else {
        format!("{v:.1} {}", units[u])
    }
}

/// What [`infer`] writes per image.
pub enum InferOut<'a> {
    /// Class probabilities, `[n][K]`.
    Proba(&'a mut [f32]),
    /// Index of the largest logit, `[n]`.
    Argmax(&'a mut [i64]),
    /// Class scores, `[n][K]`: the logits, or minus the RBF penalties.
    Scores(&'a mut [f32]),
}

/// Runs the network on every image of `view` (validated first), writing into `out`.
/// Work is split into chunks of [`wide_lanes`] images over the pool, handed out
/// [`INFER_WAVE_FACTOR`] x [`wave_chunks`] at a time; `poll()` is called on the calling thread between
/// two such waves. Fewer than two chunks run on the calling thread. `upper_t`,
/// [`crate::model::upper_transposed`] of `params` if the caller keeps it, serves
/// batches of fewer than [`wide_lanes`] images, which run one image at a time.
///
/// # Errors
///
/// [`LeNetError::Value`] for an invalid pixel; [`LeNetError::Interrupted`] when
/// `poll` returned [`Control::Stop`].
pub fn infer<T: Pixel>(
    lay: &Layout,
    params: &[f32],
    view: &ImageView<'_, T>,
    upper_t: Option<&[f32]>,
    pool: Option<&rayon::ThreadPool>,
    out: InferOut<'_>,
    poll: &mut dyn FnMut() -> Control,
) -> Result<()> {
    let n = view.n;
    let k = lay.cfg.n_classes;
    let run = |start: usize,
               live: usize,
               ws: &mut Workspace,
               proba: Option<&mut [f32]>,
               arg: Option<&mut [i64]>,
               scores: Option<&mut [f32]>|
     -> Result<()> {
        for i in start..start + live {
            view.check(i)?;
        }
        let mut idx = [0usize; MAX_LANES];
        for (lane, slot) in idx.iter_mut().enumerate().take(live) {
            *slot = start + lane;
        }
        let lanes = ws.lanes;
        view.write_chunk(&idx[..live], &mut ws.x, lanes);
        dispatch(Forward {
            lay,
            p: params,
            ws,
            upper_t,
        });
        let rbf = lay.is_rbf();
        if let Some(pr) = proba {
            softmax_rows(ws, rbf, live, pr);
        }
        if let Some(sc) = scores {
            for (lane, row) in sc.chunks_mut(k).enumerate().take(live) {
                for (c, v) in row.iter_mut().enumerate() {
                    *v = score(ws, rbf, c, lane);
                }
            }
        }
        if let Some(a) = arg {
            for (lane, dst) in a.iter_mut().enumerate().take(live) {
                let mut best = 0;
                for c in 1..k {
                    if score(ws, rbf, c, lane) > score(ws, rbf, best, lane) {
                        best = c;
                    }
                }
                *dst = best as i64;
            }
        }
        Ok(())
    };
    let wide = wide_lanes();
    if n < wide || pool.is_none() {
        // The single-image workspace is kept per thread between calls: allocating
        // and zeroing its buffers took an eighth of a one-image predict. Every value
        // a forward pass keeps is written before it is read, so a reused one gives
        // the same bits as a new one.
        let mut single = SINGLE
            .with(|s| s.borrow_mut().take())
            .filter(|w| w.n_classes == k)
            .unwrap_or_else(|| Workspace::new(1, k));
        let mut wide_ws = (n >= wide).then(|| Workspace::new(wide, k));
        let mut out = out;
        let mut i = 0;
        let mut since_poll = 0;
        while i < n {
            // With at least one full chunk, the rest also runs as a (partly
            // filled) wide chunk, so that an image's result does not depend on
            // its position in the batch.
            let (ws, live) = match wide_ws.as_mut() {
                Some(w) => (w, wide.min(n - i)),
                None => (&mut single, 1),
            };
            match &mut out {
                InferOut::Proba(p) => {
                    run(i, live, ws, Some(&mut p[i * k..(i + live) * k]), None, None)?
                }
                InferOut::Argmax(a) => run(i, live, ws, None, Some(&mut a[i..i + live]), None)?,
                InferOut::Scores(s) => {
                    run(i, live, ws, None, None, Some(&mut s[i * k..(i + live) * k]))?
                }
            }
            i += live;
            since_poll += live;
            if since_poll >= POLL_IMAGES && i < n {
                since_poll = 0;
                if poll() == Control::Stop {
                    return Err(LeNetError::Interrupted);
                }
            }
        }
        SINGLE.with(|s| *s.borrow_mut() = Some(single));
        return Ok(());
    }
    let pool = pool.expect("checked above");
    let threads = pool.current_num_threads();
    let wss = Workspaces::new(threads, wide, k);
    // Images per hand-over to the pool: inference keeps no gradient buffers, so its
    // waves can be larger (fewer hand-overs and idle tails), still only milliseconds.
    let block = wave_chunks(threads) * INFER_WAVE_FACTOR * wide;
    let mut out = out;
    let mut start = 0;
    while start < n {
        let end = (start + block).min(n);
        let first = start / wide;
        pool.install(|| match &mut out {
            InferOut::Proba(p) => p[start * k..end * k]
                .par_chunks_mut(wide * k)
                .enumerate()
                .try_for_each(|(ci, rows)| {
                    let live = rows.len() / k;
                    wss.with(|ws| run((first + ci) * wide, live, ws, Some(rows), None, None))
                }),
            InferOut::Scores(s) => s[start * k..end * k]
                .par_chunks_mut(wide * k)
                .enumerate()
                .try_for_each(|(ci, rows)| {
                    let live = rows.len() / k;
                    wss.with(|ws| run((first + ci) * wide, live, ws, None, None, Some(rows)))
                }),
            InferOut::Argmax(a) => {
                a[start..end]
                    .par_chunks_mut(wide)
                    .enumerate()
                    .try_for_each(|(ci, rows)| {
                        let live = rows.len();
                        wss.with(|ws| run((first + ci) * wide, live, ws, None, Some(rows), None))
                    })
            }
        })?;
        start = end;
        if start < n && poll() == Control::Stop {
            return Err(LeNetError::Interrupted);
        }
    }
    Ok(())
}

thread_local! {
    /// The single-image workspace [`infer`] last used on this thread.
    static SINGLE: std::cell::RefCell<Option<Workspace>> = const { std::cell::RefCell::new(None) };
}

/// How many times [`wave_chunks`] chunks one wave of [`infer`] holds.
pub const INFER_WAVE_FACTOR: usize = 8;

/// Images between two calls of `poll` where images are processed one at a time.
pub const POLL_IMAGES: usize = 256;

#[cfg(test)]
mod tests {
    use super::optim::OptimKind;
    use super::*;
    use crate::model::{Config as ArchConfig, Init, Loss, Output};

    fn data(n: usize) -> Dataset {
        let mut rng = Rng::new(7);
        let pixels: Vec<u8> = (0..n * 28 * 28).map(|_| rng.below(256) as u8).collect();
        let view = ImageView::contiguous(&pixels, n, 28).unwrap();
        let labels = (0..n).map(|i| (i % 10) as u32).collect();
        Dataset::new(ImageStore::from_view(&view, true).unwrap(), labels).unwrap()
    }

    fn pool(threads: usize) -> rayon::ThreadPool {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap()
    }

    /// One epoch on `data`; the poll stops after `stop_after` polls (never with None).
    fn epoch(
        data: &Dataset,
        batch: usize,
        threads: usize,
        stop_after: Option<usize>,
    ) -> (Vec<f32>, EpochStats) {
        let lay = ArchConfig::default().layout();
        let mut params = lay.init_params(Init::LeCun, &mut Rng::new(1));
        let kind = OptimKind::Sgd {
            momentum: 0.9,
            nesterov: false,
        };
        let mut opt = Optimizer::new(kind, 0.01, 0.0, lay.n_params_total()).unwrap();
        let mut polls = 0;
        let stats = train_epoch(
            &lay,
            &mut params,
            &mut opt,
            &mut Rng::new(2),
            data,
            batch,
            &pool(threads),
            None,
            0.0,
            Order::Shuffled,
            Duration::from_secs(1000),
            &mut |_, _, _| Control::Continue,
            &mut || {
                polls += 1;
                match stop_after {
                    Some(s) if polls > s => Control::Stop,
                    _ => Control::Continue,
                }
            },
        )
        .unwrap();
        (params, stats)
    }

    /// A batch of many waves gives the bits of one wave: with 8 threads a wave holds
    /// all 32 chunks of a 512-image batch (wide chunks of 16; of 8: 64 chunks, two
    /// waves against four), with 1 thread it takes several waves.
    #[test]
    fn waves_keep_the_bits_of_one_sum() {
        let d = data(1024);
        let (one, s1) = epoch(&d, 512, 1, None);
        let (many, s8) = epoch(&d, 512, 8, None);
        assert_eq!(one, many);
        assert_eq!(s1, s8);
        assert!(512usize.div_ceil(wide_lanes()) > wave_chunks(1));
    }

    /// A poll that says stop within a batch abandons that batch: the parameters are
    /// those of the last completed batch.
    #[test]
    fn a_stop_within_a_batch_keeps_the_last_completed_batch() {
        let d = data(1024);
        let lay = ArchConfig::default().layout();
        let initial = lay.init_params(Init::LeCun, &mut Rng::new(1));
        let (p, s) = epoch(&d, 1024, 1, Some(0));
        assert!(s.stopped);
        assert_eq!(s.batches, 0);
        assert_eq!(p, initial);
    }

    /// Batch size 1 on two threads (the layers shared between them, see
    /// `pipeline`) against one thread: the same parameters, optimizer state and
    /// figures, bit for bit, for a softmax network with momentum and for an RBF
    /// network (frozen prototypes after C5's split) with SDLM, sample weights
    /// and distortions; stopped by the poll, by the observer, and diverged.
    #[test]
    fn batch_size_one_on_two_threads_keeps_the_bits_of_one() {
        let mut d = data(96);
        let rbf = ArchConfig {
            output: Output::Rbf,
            loss: Loss::Map { j: 0.1 },
            ..ArchConfig::default()
        };
        let sgd = OptimKind::Sgd {
            momentum: 0.9,
            nesterov: true,
        };
        let sdlm = OptimKind::Sdlm { mu: 0.02 };
        let distort = Distortion::default();
        // (config, rule, rate, weights, distortion, poll stop, observer stop)
        type Case<'a> = (
            ArchConfig,
            OptimKind,
            f32,
            bool,
            Option<&'a Distortion>,
            Option<usize>,
            Option<usize>,
        );
        let cases: [Case<'_>; 6] = [
            (ArchConfig::default(), sgd, 0.01, false, None, None, None),
            (rbf, sdlm, 0.0005, true, Some(&distort), None, None),
            (
                ArchConfig::default(),
                sgd,
                0.01,
                false,
                None,
                Some(40),
                None,
            ),
            (rbf, sdlm, 0.0005, false, None, None, Some(3)),
            // Steps too big: the weights overflow and training stops diverged.
            (ArchConfig::default(), sgd, 1e30, false, None, None, None),
            (rbf, sdlm, 1e30, true, None, None, None),
        ];
        for (ci, (cfg, kind, lr, weighted, augment, stop_poll, stop_obs)) in
            cases.into_iter().enumerate()
        {
            d.weights = weighted.then(|| (0..96).map(|i| (i % 3) as f32 * 0.5).collect());
            let run = |threads: usize| {
                let lay = cfg.layout();
                let mut params = lay.init_params(Init::LeCun, &mut Rng::new(1));
                let mut opt = Optimizer::new(kind, lr, 0.0, lay.n_params_total()).unwrap();
                opt.frozen = lay.frozen();
                if let OptimKind::Sdlm { .. } = kind {
                    opt.h = (0..params.len()).map(|i| (i % 7) as f32 * 0.01).collect();
                }
                let (mut polls, mut seen) = (0, Vec::new());
                let r = train_epoch(
                    &lay,
                    &mut params,
                    &mut opt,
                    &mut Rng::new(2),
                    &d,
                    1,
                    &pool(threads),
                    augment,
                    0.0,
                    Order::Shuffled,
                    Duration::ZERO,
                    &mut |n, loss, p| {
                        seen.push((
                            n,
                            loss.to_bits(),
                            p.iter().fold(0u32, |a, v| a.wrapping_add(v.to_bits())),
                        ));
                        match stop_obs {
                            Some(s) if seen.len() >= s => Control::Stop,
                            _ => Control::Continue,
                        }
                    },
                    &mut || {
                        polls += 1;
                        match stop_poll {
                            Some(s) if polls > s => Control::Stop,
                            _ => Control::Continue,
                        }
                    },
                );
                let r = r.map_err(|e| e.to_string());
                (r, params, opt.m.clone(), opt.t, seen)
            };
            let (one, two) = (run(1), run(2));
            assert_eq!(one.0, two.0, "case {ci}");
            assert_eq!(one.1, two.1, "case {ci}");
            assert_eq!((&one.2, one.3), (&two.2, two.3), "case {ci}");
            assert_eq!(one.4, two.4, "case {ci}");
            match ci {
                0 | 1 => assert_eq!(one.0.as_ref().unwrap().samples, 96),
                2 => assert!(one.0.as_ref().unwrap().stopped),
                3 => assert_eq!(one.0.as_ref().unwrap().samples, 3),
                _ => assert!(one.0.as_ref().unwrap_err().contains("diverged")),
            }
        }
    }

    #[test]
    fn output_sizes_are_checked_before_allocation() {
        assert!(check_output(1000, 10, 4, "x").is_ok());
        let e = check_output(usize::MAX / 2, 1024, 4, "the distorted images").unwrap_err();
        assert!(e.to_string().contains("more than 2^64"), "{e}");
        let e = check_output(1 << 40, 1024, 4, "the probabilities").unwrap_err();
        assert!(e.to_string().contains("would need 4.0 PiB"), "{e}");
    }
}
