//! Mini-batch training and batched inference over a thread pool.
//!
//! A batch is cut into chunks of [`wide_lanes`] images (single images when the batch
//! is smaller than that). Each chunk runs forward and backward on its own
//! workspace and writes its gradient into its own buffer; the buffers are then
//! summed in chunk order. The chunks are the same whatever the number of
//! threads, so a seed gives bit-identical weights with 1 thread or many.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use rayon::prelude::*;

use crate::arch::{Layout, IN};
use crate::data::{fill_chunk, ImageStore, ImageView, Pixel};
use crate::distort::{image_rng, Distortion};
use crate::error::{LeNetError, Result};
use crate::net::{score, softmax_rows, wide_lanes, CurvatureChunk, Forward, TrainChunk, Workspace};
use crate::optim::Optimizer;
use crate::rng::Rng;
use crate::simd::{dispatch, flush_all, square, MAX_LANES};

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

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
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

/// Runs one epoch of mini-batch training.
///
/// `observer(samples_done, mean_loss_so_far, params)` is called at most every
/// `interval` and after the last batch; returning [`Control::Stop`] ends the
/// epoch after the current batch. A non-finite loss or gradient stops with
/// [`LeNetError::Diverged`] before the update, so `params` keeps its last finite
/// values. `order` says in which order the images come.
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
    let max_chunks = bs.div_ceil(lanes);
    let mut grads = try_alloc(max_chunks * np, "gradient buffers")?;
    let mut stats = vec![(0.0f64, 0usize); max_chunks];
    let wss = Workspaces::new(pool.current_num_threads(), lanes, lay.cfg.n_classes);
    let mut visit: Vec<usize> = (0..n).collect();
    match order {
        Order::Shuffled => rng.shuffle(&mut visit),
        Order::Seeded(seed) => Rng::new(seed).shuffle(&mut visit),
        Order::Data => {}
    }
    let distort_seed = rng.next_u64();

    let mut out = EpochStats::default();
    let mut last = Instant::now();
    for (b, idx) in visit.chunks(bs).enumerate() {
        let nch = idx.len().div_ceil(lanes);
        let scale = 1.0 / idx.len() as f32;
        let p: &[f32] = params;
        let work = |(ci, (g, st)): (usize, (&mut [f32], &mut (f64, usize)))| {
            let part = &idx[ci * lanes..((ci + 1) * lanes).min(idx.len())];
            let (lab, nl) = chunk_labels(data, part);
            let labels = &lab[..nl];
            let wts = chunk_weights(data, part);
            let weights = wts.as_ref().map(|w| &w[..nl]);
            g.fill(0.0);
            let first = b * bs + ci * lanes;
            *st = wss.with(|ws| {
                ws.smoothing = smoothing;
                let mut tmp = [0.0f32; IN * IN];
                fill_chunk(&mut ws.x, lanes, part, |i, dst, lane| match augment {
                    None => data.images.write_lane(i, dst, lane, lanes),
                    Some(d) => {
                        data.images.write_lane(i, &mut tmp, 0, 1);
                        let pos = (first + lane) as u64;
                        d.draw(&mut image_rng(distort_seed, pos))
                            .apply(&tmp, dst, lane, lanes);
                    }
                });
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
        if nch == 1 || pool.current_num_threads() == 1 {
            // Nothing to share out: run here, without a hand-over to the pool.
            grads[..nch * np]
                .chunks_mut(np)
                .zip(stats[..nch].iter_mut())
                .enumerate()
                .for_each(work);
        } else {
            pool.install(|| {
                grads[..nch * np]
                    .par_chunks_mut(np)
                    .zip(stats[..nch].par_iter_mut())
                    .enumerate()
                    .for_each(work);
            });
        }
        let batch_loss: f64 = stats[..nch].iter().map(|s| s.0).sum();
        if !batch_loss.is_finite() {
            return Err(LeNetError::Diverged(format!(
                "training diverged at batch {b} of this epoch: the loss is {batch_loss}; the weights are kept from the last finite batch (try a smaller learning_rate)"
            )));
        }
        // One thread, or one chunk's gradient (a sum of nothing): update on this
        // thread; the hand-over to the pool would cost more than it saves.
        let step_pool = (pool.current_num_threads() > 1 && nch > 1).then_some(pool);
        let ok = opt.step(params, &grads[..nch * np], np, step_pool);
        if !ok {
            return Err(LeNetError::Diverged(format!(
                "training diverged at batch {b} of this epoch: a gradient or weight is not finite; the weights are kept from the last finite batch (try a smaller learning_rate)"
            )));
        }
        out.loss_sum += batch_loss;
        out.correct += stats[..nch].iter().map(|s| s.1).sum::<usize>();
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
    }
    Ok(out)
}

/// Estimates the diagonal Gauss-Newton curvature `h_kk` of the loss, averaged
/// over `n_samples` training images drawn without replacement (all if fewer),
/// as the SDLM optimizer uses it (re-estimated before each pass in the paper).
pub fn estimate_curvature(
    lay: &Layout,
    params: &[f32],
    data: &Dataset,
    n_samples: usize,
    rng: &mut Rng,
    pool: &rayon::ThreadPool,
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
    // Squares of weights below 1.1e-19 would be subnormal (see `simd`).
    let p2: Vec<f32> = params.iter().map(|&v| square(v)).collect();
    let mut grads = try_alloc(nch * np, "curvature buffers")?;
    let wss = Workspaces::new(pool.current_num_threads(), lanes, lay.cfg.n_classes);
    let scale = 1.0 / m as f32;
    pool.install(|| {
        grads.par_chunks_mut(np).enumerate().for_each(|(ci, g)| {
            let part = &idx[ci * lanes..((ci + 1) * lanes).min(m)];
            let (lab, nl) = chunk_labels(data, part);
            let labels = &lab[..nl];
            wss.with(|ws| {
                fill_chunk(&mut ws.x, lanes, part, |i, dst, lane| {
                    data.images.write_lane(i, dst, lane, lanes)
                });
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
        });
    });
    let mut h = vec![0.0f32; np];
    for g in grads.chunks(np) {
        for (a, b) in h.iter_mut().zip(g) {
            *a += b;
        }
    }
    // The optimizer keeps `h` for a whole pass: no subnormals in it.
    flush_all(&mut h);
    Ok(h)
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
/// Work is split into chunks of [`wide_lanes`] images over the pool; fewer
/// than that run on the calling thread, one at a time.
pub fn infer<T: Pixel>(
    lay: &Layout,
    params: &[f32],
    view: &ImageView<'_, T>,
    pool: Option<&rayon::ThreadPool>,
    out: InferOut<'_>,
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
        let idx: Vec<usize> = (start..start + live).collect();
        let lanes = ws.lanes;
        fill_chunk(&mut ws.x, lanes, &idx, |i, dst, lane| {
            view.write_lane(i, dst, lane, lanes)
        });
        dispatch(Forward { lay, p: params, ws });
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
        let mut single = Workspace::new(1, k);
        let mut wide_ws = (n >= wide).then(|| Workspace::new(wide, k));
        let mut out = out;
        let mut i = 0;
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
        }
        return Ok(());
    }
    let pool = pool.unwrap();
    let wss = Workspaces::new(pool.current_num_threads(), wide, k);
    pool.install(|| match out {
        InferOut::Proba(p) => p
            .par_chunks_mut(wide * k)
            .enumerate()
            .try_for_each(|(ci, rows)| {
                let live = rows.len() / k;
                wss.with(|ws| run(ci * wide, live, ws, Some(rows), None, None))
            }),
        InferOut::Scores(s) => s
            .par_chunks_mut(wide * k)
            .enumerate()
            .try_for_each(|(ci, rows)| {
                let live = rows.len() / k;
                wss.with(|ws| run(ci * wide, live, ws, None, None, Some(rows)))
            }),
        InferOut::Argmax(a) => a
            .par_chunks_mut(wide)
            .enumerate()
            .try_for_each(|(ci, rows)| {
                let live = rows.len();
                wss.with(|ws| run(ci * wide, live, ws, None, Some(rows), None))
            }),
    })
}
