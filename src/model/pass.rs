//! The network pass, written once: forward, loss, backward and the curvature
//! pass walk the layers in the order of the paper's Fig. 2,
//!
//!   input 32x32 -> C1 -> S2 -> C3 -> S4 -> C5 -> F6 -> output (softmax or RBF),
//!
//! over a [`Width`], so chunks of `S::W` images and single images run the same
//! code and differ only in the kernels they call.
//!
//! A [`Workspace`] holds every activation and gradient of one chunk (layout
//! `[channel][y][x][lane]`, see [`crate::layers`]). The parameter vector is only
//! read, so any number of chunks can run at once, each on its own workspace,
//! writing its gradients into its own buffer.

use super::aligned::Aligned;
use super::config::*;
use super::layout::Layout;
use crate::layers::dense::{self, softmax_loss};
use crate::layers::{rbf, Chunk, One, Width, SLACK};
use crate::profile;
use crate::simd::{dispatch, Math, SimdTask};

/// Images in a wide chunk: the vector width of the instruction set in use
/// (8 with AVX2, 16 with AVX-512).
pub fn wide_lanes() -> usize {
    crate::simd::isa().lanes()
}

/// Side of [`Workspace::gpad`]'s planes: C3's outputs padded by 4 on every side.
const C3_PAD: usize = C3_SIDE + 8;

/// Activations and gradients of one chunk.
#[derive(Clone, Debug)]
pub struct Workspace {
    pub lanes: usize,
    pub n_classes: usize,
    /// Network input `[32][32][L]`.
    pub x: Aligned,
    pub a1: Aligned,
    pub a2: Aligned,
    pub a3: Aligned,
    pub a4: Aligned,
    pub a5: Aligned,
    pub a6: Aligned,
    /// Outputs of the last layer (logits) `[K][L]`.
    pub z: Aligned,
    pub(crate) g1: Aligned,
    pub(crate) g2: Aligned,
    pub(crate) g3: Aligned,
    pub(crate) g4: Aligned,
    pub(crate) g5: Aligned,
    pub(crate) g6: Aligned,
    pub(crate) gz: Aligned,
    pub(crate) xt: Aligned,
    /// Single images: the C3 gradient zero-padded by 4 on every side, and the
    /// flipped C3 kernels in S2-map order, for the C3 input gradient.
    pub(crate) gpad: Aligned,
    pub(crate) wflip: Aligned,
    /// Label smoothing of the cross-entropy loss: the target of the true class is
    /// `1 - smoothing + smoothing / K`, of every other `smoothing / K` (0: one-hot).
    pub smoothing: f32,
}

impl Workspace {
    /// A workspace for chunks of `lanes` images (1 or [`wide_lanes`]).
    pub fn new(lanes: usize, n_classes: usize) -> Self {
        assert!(lanes == 1 || lanes == 8 || lanes == 16);
        let v = |n: usize| Aligned::zeroed(n * lanes + SLACK);
        Workspace {
            lanes,
            n_classes,
            x: v(IN * IN),
            a1: v(C1_MAPS * C1_SIDE * C1_SIDE),
            a2: v(C1_MAPS * S2_SIDE * S2_SIDE),
            a3: v(C3_MAPS * C3_SIDE * C3_SIDE),
            a4: v(C5_IN),
            a5: v(C5_UNITS),
            a6: v(F6_UNITS),
            z: v(n_classes),
            g1: v(C1_MAPS * C1_SIDE * C1_SIDE),
            g2: v(C1_MAPS * S2_SIDE * S2_SIDE),
            g3: v(C3_MAPS * C3_SIDE * C3_SIDE),
            g4: v(C5_IN),
            g5: v(C5_UNITS),
            g6: v(F6_UNITS),
            gz: v(n_classes),
            xt: v(C5_IN),
            gpad: if lanes == 1 {
                Aligned::zeroed(C3_MAPS * C3_PAD * C3_PAD + SLACK)
            } else {
                Aligned::zeroed(0)
            },
            wflip: if lanes == 1 {
                Aligned::zeroed(C3_MAPS * C1_MAPS * KK)
            } else {
                Aligned::zeroed(0)
            },
            smoothing: 0.0,
        }
    }
}

/// Forward pass of the chunk in `ws.x`: every layer's outputs into `ws`.
#[inline(always)]
fn forward<W: Width>(w: W, lay: &Layout, p: &[f32], ws: &mut Workspace) {
    forward_lower(w, lay, p, ws);
    forward_upper(w, lay, &p[lay.c5_w..], ws);
}

/// The forward pass from `ws.x` to S4's outputs (`ws.a4`): the layers whose
/// parameters come before C5's in the flat vector.
#[inline(always)]
fn forward_lower<W: Width>(w: W, lay: &Layout, p: &[f32], ws: &mut Workspace) {
    profile::start();
    let cfg = &lay.cfg;
    let act = cfg.activation;
    let l = w.lanes();
    let (n1, n3) = (
        C1_MAPS * C1_SIDE * C1_SIDE * l,
        C3_MAPS * C3_SIDE * C3_SIDE * l,
    );
    let (n2, n4) = (C1_MAPS * S2_SIDE * S2_SIDE * l, C5_IN * l);
    let (c1w, c1b) = (&p[lay.c1_w..lay.c1_b], &p[lay.c1_b..lay.s2_w]);
    w.conv_forward::<IN, C1_SIDE>(&ws.x, &mut ws.a1, c1w, c1b, &lay.c1);
    profile::lap(0);
    w.activate(act, &mut ws.a1[..n1]);
    profile::lap(1);
    let (s2w, s2b) = (&p[lay.s2_w..lay.s2_b], &p[lay.s2_b..lay.c3_w]);
    w.pool_forward::<S2_SIDE>(&ws.a1, &mut ws.a2[..n2], cfg.pooling, s2w, s2b, act);
    profile::lap(2);
    let (c3w, c3b) = (&p[lay.c3_w..lay.c3_b], &p[lay.c3_b..lay.s4_w]);
    w.conv_forward::<S2_SIDE, C3_SIDE>(&ws.a2, &mut ws.a3, c3w, c3b, &lay.c3);
    profile::lap(3);
    w.activate(act, &mut ws.a3[..n3]);
    profile::lap(4);
    let (s4w, s4b) = (&p[lay.s4_w..lay.s4_b], &p[lay.s4_b..lay.c5_w]);
    w.pool_forward::<S4_SIDE>(&ws.a3, &mut ws.a4[..n4], cfg.pooling, s4w, s4b, act);
    profile::lap(5);
}

/// The forward pass from S4's outputs (`ws.a4`) to the last layer's
/// (`ws.z`); `p` is the parameter vector from C5's weights on.
#[inline(always)]
fn forward_upper<W: Width>(w: W, lay: &Layout, p: &[f32], ws: &mut Workspace) {
    let act = lay.cfg.activation;
    let at = |i: usize| i - lay.c5_w;
    let (c5w, c5b) = (
        &p[at(lay.c5_w)..at(lay.c5_b)],
        &p[at(lay.c5_b)..at(lay.f6_w)],
    );
    w.dense_forward::<C5_IN>(&ws.a4, &mut ws.a5, c5w, c5b, Some(act));
    profile::lap(6);
    let (f6w, f6b) = (
        &p[at(lay.f6_w)..at(lay.f6_b)],
        &p[at(lay.f6_b)..at(lay.out_w)],
    );
    w.dense_forward::<C5_UNITS>(&ws.a5, &mut ws.a6, f6w, f6b, Some(act));
    profile::lap(7);
    forward_output(w, lay, &p[at(lay.out_w)..], ws);
}

/// The output layer's forward pass from F6's outputs (`ws.a6`) to `ws.z`; `p`
/// is the parameter vector from the output layer's weights on.
#[inline(always)]
fn forward_output<W: Width>(w: W, lay: &Layout, p: &[f32], ws: &mut Workspace) {
    let at = |i: usize| i - lay.out_w;
    let (ow, ob) = (
        &p[at(lay.out_w)..at(lay.out_b)],
        &p[at(lay.out_b)..at(lay.total)],
    );
    if lay.is_rbf() {
        rbf::forward(&ws.a6, &mut ws.z, ow, lay.cfg.n_classes, w.lanes());
    } else {
        w.dense_forward::<F6_UNITS>(&ws.a6, &mut ws.z, ow, ob, None);
    }
    profile::lap(8);
}

/// Floats of C5's part of [`upper_transposed`] (F6's follows).
const C5_T: usize = (1 + C5_IN) * dense::padded(C5_UNITS);

/// C5's and F6's weights and biases in [`dense::transpose`]'s layout, one
/// after the other, for [`Forward::upper_t`].
pub fn upper_transposed(lay: &Layout, p: &[f32]) -> Vec<f32> {
    let c5 = C5_T;
    let mut t = vec![0.0; c5 + (1 + C5_UNITS) * dense::padded(F6_UNITS)];
    let (c5w, c5b) = (&p[lay.c5_w..lay.c5_b], &p[lay.c5_b..lay.f6_w]);
    dense::transpose(c5w, c5b, C5_IN, &mut t[..c5]);
    let (f6w, f6b) = (&p[lay.f6_w..lay.f6_b], &p[lay.f6_b..lay.out_w]);
    dense::transpose(f6w, f6b, C5_UNITS, &mut t[c5..]);
    t
}

/// [`forward_upper`] for one image from [`upper_transposed`]'s `t`: C5 and F6
/// vectorised along their outputs, with the bits a chunk gives them.
#[inline(always)]
fn forward_upper_t<M: Math>(m: M, lay: &Layout, p: &[f32], t: &[f32], ws: &mut Workspace) {
    let act = Some(lay.cfg.activation);
    dense::forward_one_t::<M, C5_IN>(m, &ws.a4, &mut ws.a5, &t[..C5_T], C5_UNITS, act);
    profile::lap(6);
    dense::forward_one_t::<M, C5_UNITS>(m, &ws.a5, &mut ws.a6, &t[C5_T..], F6_UNITS, act);
    profile::lap(7);
    forward_output(One(m), lay, &p[lay.out_w..], ws);
}

/// Backward pass after [`forward`] and the loss: `ws.gz` holds the gradient
/// wrt the last layer's outputs (with `SQ`, its curvature; for RBF outputs
/// `ws.g6` then holds the loss's curvature wrt F6's outputs, see
/// [`rbf::top_curvature`]). Accumulates the parameter gradients into `grad`
/// (flat layout). `wv` is the parameter vector (its square with `SQ`).
#[inline(always)]
fn backward<W: Width, const SQ: bool>(
    w: W,
    lay: &Layout,
    wv: &[f32],
    ws: &mut Workspace,
    grad: &mut [f32],
) {
    let (lower, upper) = grad.split_at_mut(lay.c5_w);
    backward_upper::<W, SQ>(w, lay, &wv[lay.c5_w..], ws, upper);
    backward_lower::<W, SQ>(w, lay, wv, ws, lower);
}

/// The backward pass of the output and F6, to C5's output gradient
/// (`ws.g5`); `wv` and `grad` as in [`backward_upper`].
#[inline(always)]
fn backward_top<W: Width, const SQ: bool>(
    w: W,
    lay: &Layout,
    wv: &[f32],
    ws: &mut Workspace,
    grad: &mut [f32],
) {
    let cfg = &lay.cfg;
    let act = cfg.activation;
    let k = cfg.n_classes;
    let l = w.lanes();
    let n6 = F6_UNITS * l;
    let at = |i: usize| i - lay.c5_w;
    // Output -> F6's pre-activation (ws.g6).
    let (out_w, rest) = grad[at(lay.out_w)..].split_at_mut(k * F6_UNITS);
    let ow = &wv[at(lay.out_w)..at(lay.out_b)];
    if lay.is_rbf() {
        if !SQ {
            let gw = cfg.rbf_trainable.then_some(out_w);
            rbf::backward(&ws.a6, &ws.gz, ow, k, l, &mut ws.g6, gw);
        }
        w.apply_slope::<SQ>(act, &mut ws.g6[..n6], &ws.a6[..n6]);
    } else {
        let (a6, gz, ob) = (&ws.a6, &ws.gz, &mut rest[..k]);
        let g6 = Some((&mut ws.g6[..], Some(act)));
        w.dense_backward::<F6_UNITS, SQ>(a6, gz, ow, out_w, ob, g6, &mut ws.xt);
    }
    profile::lap(10);
    let (gw, rest) = grad[at(lay.f6_w)..].split_at_mut(F6_UNITS * C5_UNITS);
    let (f6w, gb) = (&wv[at(lay.f6_w)..at(lay.f6_b)], &mut rest[..F6_UNITS]);
    let g5 = Some((&mut ws.g5[..], Some(act)));
    w.dense_backward::<C5_UNITS, SQ>(&ws.a5, &ws.g6, f6w, gw, gb, g5, &mut ws.xt);
    profile::lap(11);
}

/// The backward pass from the last layer down to C5's input gradient
/// (`ws.g4`); `wv` and `grad` are the parameters and gradients from C5's
/// weights on.
#[inline(always)]
fn backward_upper<W: Width, const SQ: bool>(
    w: W,
    lay: &Layout,
    wv: &[f32],
    ws: &mut Workspace,
    grad: &mut [f32],
) {
    backward_top::<W, SQ>(w, lay, wv, ws, grad);
    let at = |i: usize| i - lay.c5_w;
    // C5's input is S4's output, whose slope S4's backward applies.
    let (gw, rest) = grad[at(lay.c5_w)..].split_at_mut(C5_UNITS * C5_IN);
    let (c5w, gb) = (&wv[at(lay.c5_w)..at(lay.c5_b)], &mut rest[..C5_UNITS]);
    let g4 = Some((&mut ws.g4[..], None));
    w.dense_backward::<C5_IN, SQ>(&ws.a4, &ws.g5, c5w, gw, gb, g4, &mut ws.xt);
    profile::lap(12);
}

/// The backward pass from C5's input gradient (`ws.g4`) down to C1: the
/// gradients of the parameters before C5's (`wv` and `grad` from the start of
/// the flat vector, at least to C5's weights).
#[inline(always)]
fn backward_lower<W: Width, const SQ: bool>(
    w: W,
    lay: &Layout,
    wv: &[f32],
    ws: &mut Workspace,
    grad: &mut [f32],
) {
    let cfg = &lay.cfg;
    let act = cfg.activation;
    let l = w.lanes();
    let (n1, n3) = (
        C1_MAPS * C1_SIDE * C1_SIDE * l,
        C3_MAPS * C3_SIDE * C3_SIDE * l,
    );
    let (n2, n4) = (C1_MAPS * S2_SIDE * S2_SIDE * l, C5_IN * l);
    let (gs4, gb4) = grad[lay.s4_w..lay.c5_w].split_at_mut(lay.s4_b - lay.s4_w);
    let (s4w, a3, a4, g3) = (
        &wv[lay.s4_w..lay.s4_b],
        &ws.a3[..n3],
        &ws.a4[..n4],
        &mut ws.g3[..n3],
    );
    w.pool_backward::<S4_SIDE, SQ>(a3, a4, &ws.g4, g3, cfg.pooling, s4w, gs4, gb4, act);
    profile::lap(13);
    let (gw, gb) = grad[lay.c3_w..lay.s4_w].split_at_mut(lay.c3_b - lay.c3_w);
    w.conv_kernel_grad::<S2_SIDE, C3_SIDE, SQ>(&ws.a2, &ws.g3, gw, gb, &lay.c3);
    profile::lap(14);
    let (c3w, pad, flipped) = (&wv[lay.c3_w..lay.c3_b], &mut ws.gpad, &mut ws.wflip);
    w.conv_input_grad::<S2_SIDE, C3_SIDE, C3_PAD>(&ws.g3, c3w, &mut ws.g2, &lay.c3, pad, flipped);
    profile::lap(15);
    let (gs2, gb2) = grad[lay.s2_w..lay.c3_w].split_at_mut(lay.s2_b - lay.s2_w);
    let (s2w, a1, a2, g1) = (
        &wv[lay.s2_w..lay.s2_b],
        &ws.a1[..n1],
        &ws.a2[..n2],
        &mut ws.g1[..n1],
    );
    w.pool_backward::<S2_SIDE, SQ>(a1, a2, &ws.g2, g1, cfg.pooling, s2w, gs2, gb2, act);
    profile::lap(16);
    let (gw, gb) = grad[lay.c1_w..lay.s2_w].split_at_mut(lay.c1_b - lay.c1_w);
    w.conv_kernel_grad::<IN, C1_SIDE, SQ>(&ws.x, &ws.g1, gw, gb, &lay.c1);
    profile::lap(17);
}

/// The loss of a chunk: writes the gradient (or, with `SQ`, the diagonal
/// curvature) of `scale * loss` wrt the last layer's outputs into `ws.gz`;
/// returns the summed loss and the number of correct predictions.
///
/// `weights` (one per label, or None for all 1) multiplies each image's loss
/// and its gradient: the loss of the chunk is `scale * sum_i w_i E_i`.
fn loss_grad<const SQ: bool>(
    lay: &Layout,
    ws: &mut Workspace,
    labels: &[u32],
    weights: Option<&[f32]>,
    scale: f32,
) -> (f64, usize) {
    match lay.cfg.loss {
        Loss::CrossEntropy => softmax_loss::<SQ>(ws, labels, weights, scale),
        Loss::Mle => rbf::loss::<SQ>(ws, labels, weights, scale, None),
        Loss::Map { j } => rbf::loss::<SQ>(ws, labels, weights, scale, Some(j)),
    }
}

/// Implements [`SimdTask`] for a pass over a workspace by its `run_width`:
/// single images when the workspace is one lane wide, chunks otherwise.
/// A single image runs in 8-wide vectors, except for the passes named `wide`:
/// the forward kernels of one image lay C1's and C3's outputs flat and feed
/// several maps from each input vector, which 16-wide vectors run faster (one
/// image's forward pass 20.2 -> 15.3 us on Intel family 6 model 167), while
/// the backward kernels walk 10- and 28-pixel rows, which fill 8-wide vectors
/// better. The lower layers' single-image kernels (convolutions, pooling, the
/// activation) sum in the same order at any width, so batch size 1 on two
/// threads, whose lower forward pass runs 16-wide, keeps the bits of one thread,
/// which runs it 8-wide.
macro_rules! width_task {
    ($task:ident, $out:ty) => {
        width_task!($task, $out, true);
    };
    ($task:ident, $out:ty, wide) => {
        width_task!($task, $out, false);
    };
    ($task:ident, $out:ty, $narrow:literal) => {
        impl SimdTask for $task<'_> {
            fn narrow(&self) -> bool {
                $narrow && self.ws.lanes == 1
            }
            type Output = $out;
            #[inline(always)]
            fn run<M: Math>(self, m: M) -> $out {
                if self.ws.lanes == 1 {
                    self.run_width(One(m))
                } else {
                    self.run_width(Chunk(m))
                }
            }
        }
    };
}

/// Task: forward pass of the chunk in `ws.x`.
pub struct Forward<'a> {
    pub lay: &'a Layout,
    pub p: &'a [f32],
    pub ws: &'a mut Workspace,
    /// [`upper_transposed`] of `p`, if the caller keeps it: a single image then
    /// runs C5 and F6 along their outputs (no sum across lanes, no scalar tail).
    pub upper_t: Option<&'a [f32]>,
}

// One image runs 16-wide where the CPU has it (see `width_task`).
impl SimdTask for Forward<'_> {
    type Output = ();
    #[inline(always)]
    fn run<M: Math>(self, m: M) {
        let Forward {
            lay,
            p,
            ws,
            upper_t,
        } = self;
        match (ws.lanes, upper_t) {
            (1, Some(t)) => {
                forward_lower(One(m), lay, p, ws);
                forward_upper_t(m, lay, p, t, ws);
            }
            (1, None) => forward(One(m), lay, p, ws),
            _ => forward(Chunk(m), lay, p, ws),
        }
    }
}

/// Task: forward, loss and backward of one chunk, gradients (of the loss
/// times `scale`) accumulated into `grad`. `weights` (one per label, None
/// for all 1) scales each image's loss and gradient.
pub struct TrainChunk<'a> {
    pub lay: &'a Layout,
    pub p: &'a [f32],
    pub ws: &'a mut Workspace,
    pub labels: &'a [u32],
    pub weights: Option<&'a [f32]>,
    pub scale: f32,
    pub grad: &'a mut [f32],
}

impl TrainChunk<'_> {
    #[inline(always)]
    fn run_width<W: Width>(self, w: W) -> (f64, usize) {
        let TrainChunk {
            lay,
            p,
            ws,
            labels,
            weights,
            scale,
            grad,
        } = self;
        forward(w, lay, p, ws);
        let r = loss_grad::<false>(lay, ws, labels, weights, scale);
        profile::lap(9);
        backward::<W, false>(w, lay, p, ws, grad);
        r
    }
}

width_task!(TrainChunk, (f64, usize));

/// Task (training one image on two threads, see `train::pipeline`): the
/// forward pass of `ws.x` to S4's outputs; `p` holds the parameters before
/// C5's (the start of the flat vector).
pub struct LowerForward<'a> {
    pub lay: &'a Layout,
    pub p: &'a [f32],
    pub ws: &'a mut Workspace,
}

impl LowerForward<'_> {
    #[inline(always)]
    fn run_width<W: Width>(self, w: W) {
        forward_lower(w, self.lay, self.p, self.ws)
    }
}

width_task!(LowerForward, (), wide);

/// Task (the other half of [`LowerForward`] and [`LowerBackward`]): from
/// S4's outputs in `ws.a4`, the forward pass of C5 and up, the loss, and the
/// backward pass down to C5's input gradient in `ws.g4` (single images; C5's
/// own gradients are left to [`UpperWeights`]); `p` and `grad` are the
/// parameters and gradients from C5's weights on. Returns what [`TrainChunk`]
/// returns, whose fields it takes.
pub struct UpperTrain<'a>(pub TrainChunk<'a>);

impl SimdTask for UpperTrain<'_> {
    fn narrow(&self) -> bool {
        true
    }
    type Output = (f64, usize);
    #[inline(always)]
    fn run<M: Math>(self, m: M) -> (f64, usize) {
        let TrainChunk {
            lay,
            p,
            ws,
            labels,
            weights,
            scale,
            grad,
        } = self.0;
        assert_eq!(ws.lanes, 1, "UpperTrain takes single images");
        let w = One(m);
        forward_upper(w, lay, p, ws);
        let r = loss_grad::<false>(lay, ws, labels, weights, scale);
        profile::lap(9);
        backward_top::<_, false>(w, lay, p, ws, grad);
        let at = |i: usize| i - lay.c5_w;
        let c5w = &p[at(lay.c5_w)..at(lay.c5_b)];
        dense::input_grad_one::<M, C5_IN, false>(&ws.a4, &ws.g5[..C5_UNITS], c5w, &mut ws.g4, None);
        r
    }
}

/// Task: the C5 parameter gradients that [`UpperTrain`] leaves out, from the
/// same workspace, into the same `grad`.
pub struct UpperWeights<'a> {
    pub lay: &'a Layout,
    pub ws: &'a mut Workspace,
    pub grad: &'a mut [f32],
}

impl SimdTask for UpperWeights<'_> {
    fn narrow(&self) -> bool {
        true
    }
    type Output = ();
    #[inline(always)]
    fn run<M: Math>(self, _: M) {
        let UpperWeights { lay, ws, grad } = self;
        let at = |i: usize| i - lay.c5_w;
        let (gw, rest) = grad[at(lay.c5_w)..].split_at_mut(C5_UNITS * C5_IN);
        let gb = &mut rest[..C5_UNITS];
        dense::weight_grad_one::<M, C5_IN, false>(&ws.a4, &ws.g5, gw, gb, &mut ws.xt);
    }
}

/// Task: the backward pass from C5's input gradient in `ws.g4` down to C1,
/// after [`LowerForward`] on the same workspace; `p` and `grad` as there.
pub struct LowerBackward<'a> {
    pub lay: &'a Layout,
    pub p: &'a [f32],
    pub ws: &'a mut Workspace,
    pub grad: &'a mut [f32],
}

impl LowerBackward<'_> {
    #[inline(always)]
    fn run_width<W: Width>(self, w: W) {
        backward_lower::<W, false>(w, self.lay, self.p, self.ws, self.grad)
    }
}

width_task!(LowerBackward, ());

/// Task: the diagonal Gauss-Newton estimate of one chunk (`p2` holds the
/// squared parameters), accumulated into `grad`.
pub struct CurvatureChunk<'a> {
    pub lay: &'a Layout,
    pub p: &'a [f32],
    pub p2: &'a [f32],
    pub ws: &'a mut Workspace,
    pub labels: &'a [u32],
    pub scale: f32,
    pub grad: &'a mut [f32],
}

impl CurvatureChunk<'_> {
    #[inline(always)]
    fn run_width<W: Width>(self, w: W) {
        let CurvatureChunk {
            lay,
            p,
            p2,
            ws,
            labels,
            scale,
            grad,
        } = self;
        forward(w, lay, p, ws);
        loss_grad::<true>(lay, ws, labels, None, scale);
        if lay.is_rbf() {
            let (trainable, protos) = (lay.cfg.rbf_trainable, &p[lay.out_w..lay.out_b]);
            let gp = &mut grad[lay.out_w..lay.out_b];
            rbf::top_curvature(trainable, protos, ws, labels, scale, gp);
        }
        profile::lap(9);
        backward::<W, true>(w, lay, p2, ws, grad);
    }
}

width_task!(CurvatureChunk, ());

/// Runs the forward pass of the chunk in `ws.x`.
pub fn run_forward(lay: &Layout, p: &[f32], ws: &mut Workspace) {
    dispatch(Forward {
        lay,
        p,
        ws,
        upper_t: None,
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    /// The gradient and loss of one chunk of `lanes` random images with these weights.
    fn chunk(lanes: usize, weights: Option<&[f32]>) -> (Vec<f32>, f64) {
        let lay = Config::default().layout();
        let mut rng = Rng::new(7);
        let p = lay.init_params(Init::LeCun, &mut rng);
        let mut ws = Workspace::new(lanes, 10);
        for v in ws.x.iter_mut().take(IN * IN * lanes) {
            *v = rng.uniform(-0.1, 1.175);
        }
        let labels: Vec<u32> = (0..lanes as u32).map(|i| i % 10).collect();
        let mut grad = vec![0.0f32; lay.n_params_total()];
        let (loss, _) = dispatch(TrainChunk {
            lay: &lay,
            p: &p,
            ws: &mut ws,
            labels: &labels,
            weights,
            scale: 0.5,
            grad: &mut grad,
        });
        (grad, loss)
    }

    #[test]
    fn weights_of_one_change_nothing() {
        for lanes in [1, wide_lanes()] {
            let ones = vec![1.0f32; lanes];
            assert_eq!(chunk(lanes, None), chunk(lanes, Some(&ones)));
        }
    }

    #[test]
    fn a_weight_scales_the_loss_and_the_gradient() {
        // A power of two scales every product and sum of the backward pass exactly.
        let (g1, l1) = chunk(1, None);
        let (g2, l2) = chunk(1, Some(&[2.0]));
        assert_eq!(l2, 2.0 * l1);
        assert!(g1.iter().zip(&g2).all(|(a, b)| 2.0 * a == *b));
        assert!(g1.iter().any(|&a| a != 0.0));
        let (g0, l0) = chunk(1, Some(&[0.0]));
        assert_eq!(l0, 0.0);
        assert!(g0.iter().all(|&a| a == 0.0));
    }

    /// The pass written once gives the same gradients for a chunk as for its
    /// images one at a time (to rounding: the sums run in another order), for
    /// the paper's network and a modern one, and the same curvature.
    #[test]
    fn chunks_and_single_images_agree() {
        let configs = [
            Config {
                output: Output::Rbf,
                loss: Loss::Map { j: 0.1 },
                ..Config::default()
            },
            Config {
                activation: Activation::Relu,
                pooling: Pooling::Max,
                c3: C3Connections::Full,
                ..Config::default()
            },
        ];
        for cfg in configs {
            let lay = cfg.layout();
            let mut rng = Rng::new(2);
            let p = lay.init_params(Init::LeCun, &mut rng);
            let p2: Vec<f32> = p.iter().map(|v| v * v).collect();
            let lanes = wide_lanes();
            let images: Vec<Vec<f32>> = (0..lanes)
                .map(|_| (0..IN * IN).map(|_| rng.uniform(-0.1, 1.175)).collect())
                .collect();
            let labels: Vec<u32> = (0..lanes as u32).map(|i| i % 10).collect();
            let run = |chunk: &[usize], curvature: bool, grad: &mut Vec<f32>| {
                let mut ws = Workspace::new(if chunk.len() == 1 { 1 } else { lanes }, 10);
                let l = ws.lanes;
                for (lane, &i) in chunk.iter().enumerate() {
                    for (j, v) in images[i].iter().enumerate() {
                        ws.x[j * l + lane] = *v;
                    }
                }
                let labels: Vec<u32> = chunk.iter().map(|&i| labels[i]).collect();
                if curvature {
                    dispatch(CurvatureChunk {
                        lay: &lay,
                        p: &p,
                        p2: &p2,
                        ws: &mut ws,
                        labels: &labels,
                        scale: 1.0,
                        grad,
                    });
                } else {
                    dispatch(TrainChunk {
                        lay: &lay,
                        p: &p,
                        ws: &mut ws,
                        labels: &labels,
                        weights: None,
                        scale: 1.0,
                        grad,
                    });
                }
            };
            for curvature in [false, true] {
                let mut whole = vec![0.0f32; lay.n_params_total()];
                run(&(0..lanes).collect::<Vec<_>>(), curvature, &mut whole);
                let mut ones = vec![0.0f32; lay.n_params_total()];
                for i in 0..lanes {
                    run(&[i], curvature, &mut ones);
                }
                let scale = whole.iter().fold(1e-30f32, |m, v| m.max(v.abs()));
                for (i, (a, b)) in whole.iter().zip(&ones).enumerate() {
                    assert!(
                        (a - b).abs() <= 1e-4 * scale,
                        "{cfg:?} {curvature} [{i}]: {a} vs {b}"
                    );
                }
                assert!(whole.iter().any(|&v| v != 0.0));
            }
        }
    }
}
