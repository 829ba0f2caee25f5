//! One chunk of images through the network: forward, loss, backward.
//!
//! A [`Workspace`] holds every activation and gradient of one chunk of `lanes`
//! images (layout `[channel][y][x][lane]`, see [`crate::kernels`]). The parameter
//! vector is only read, so any number of chunks can run at once, each on its own
//! workspace, writing its gradients into its own buffer.

use crate::arch::*;
use crate::kernels::*;
use crate::profile;
use crate::simd::{dispatch, Math, SimdTask};
use crate::wide;

/// Images in a wide chunk: the vector width of the instruction set in use
/// (8 with AVX2, 16 with AVX-512).
pub fn wide_lanes() -> usize {
    crate::simd::isa().lanes()
}

/// Activations and gradients of one chunk.
#[derive(Clone, Debug)]
pub struct Workspace {
    pub lanes: usize,
    pub n_classes: usize,
    /// Network input `[32][32][L]`.
    pub x: Vec<f32>,
    pub a1: Vec<f32>,
    pub a2: Vec<f32>,
    pub a3: Vec<f32>,
    pub a4: Vec<f32>,
    pub a5: Vec<f32>,
    pub a6: Vec<f32>,
    /// Outputs of the last layer (logits) `[K][L]`.
    pub z: Vec<f32>,
    g1: Vec<f32>,
    g2: Vec<f32>,
    g3: Vec<f32>,
    g4: Vec<f32>,
    g5: Vec<f32>,
    g6: Vec<f32>,
    gz: Vec<f32>,
    xt: Vec<f32>,
    /// Single images: the C3 gradient zero-padded by 4 on every side, and the
    /// flipped C3 kernels in S2-map order, for the C3 input gradient.
    gpad: Vec<f32>,
    wflip: Vec<f32>,
    /// Label smoothing of the cross-entropy loss: the target of the true class is
    /// `1 - smoothing + smoothing / K`, of every other `smoothing / K` (0: one-hot).
    pub smoothing: f32,
}

/// Side of [`Workspace::gpad`]'s planes.
const C3_PAD: usize = C3_SIDE + 8;

impl Workspace {
    /// A workspace for chunks of `lanes` images (1 or [`wide_lanes`]).
    pub fn new(lanes: usize, n_classes: usize) -> Self {
        assert!(lanes == 1 || lanes == 8 || lanes == 16);
        let v = |n: usize| vec![0.0f32; n * lanes + crate::wide::SLACK];
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
                vec![0.0; C3_MAPS * C3_PAD * C3_PAD + crate::wide::SLACK]
            } else {
                Vec::new()
            },
            wflip: if lanes == 1 {
                vec![0.0; C3_MAPS * C1_MAPS * KK]
            } else {
                Vec::new()
            },
            smoothing: 0.0,
        }
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        4 * (self.x.len()
            + 2 * (self.a1.len()
                + self.a2.len()
                + self.a3.len()
                + self.a4.len()
                + self.a5.len()
                + self.a6.len()
                + self.z.len())
            + self.xt.len()
            + self.gpad.len()
            + self.wflip.len())
    }
}

const C1_START: [usize; C1_MAPS + 1] = [0, 1, 2, 3, 4, 5, 6];
const C1_IN: [usize; C1_MAPS] = [0; C1_MAPS];

/// Forward pass of a chunk of eight; `ws.x` must hold the inputs.
#[inline(always)]
fn forward_w<S: Math>(s: S, lay: &Layout, p: &[f32], ws: &mut Workspace) {
    profile::start();
    let cfg = &lay.cfg;
    let act = cfg.activation;
    let c1w = &p[lay.c1_w..lay.c1_b];
    let c1b = &p[lay.c1_b..lay.c1_b + C1_MAPS];
    wide::conv_forward_w::<S, IN, C1_SIDE, 7>(s, &ws.x, &mut ws.a1, c1w, c1b, &C1_START, &C1_IN);
    profile::lap(0);
    wide::activate(s, act, &mut ws.a1);
    profile::lap(1);
    let (s2w, s2b) = (&p[lay.s2_w..lay.s2_b], &p[lay.s2_b..lay.c3_w]);
    let n2 = C1_MAPS * S2_SIDE * S2_SIDE * S::W;
    wide::pool_forward_w::<S, S2_SIDE>(s, &ws.a1, &mut ws.a2[..n2], cfg.pooling, s2w, s2b, act);
    profile::lap(2);
    let c3w = &p[lay.c3_w..lay.c3_b];
    let c3b = &p[lay.c3_b..lay.c3_b + C3_MAPS];
    wide::conv_forward_w::<S, S2_SIDE, C3_SIDE, 10>(
        s,
        &ws.a2,
        &mut ws.a3,
        c3w,
        c3b,
        &lay.conn_start,
        &lay.conn_in,
    );
    profile::lap(3);
    wide::activate(s, act, &mut ws.a3);
    profile::lap(4);
    let (s4w, s4b) = (&p[lay.s4_w..lay.s4_b], &p[lay.s4_b..lay.c5_w]);
    wide::pool_forward_w::<S, S4_SIDE>(
        s,
        &ws.a3,
        &mut ws.a4[..C5_IN * S::W],
        cfg.pooling,
        s4w,
        s4b,
        act,
    );
    profile::lap(5);
    let (c5w, c5b) = (&p[lay.c5_w..lay.c5_b], &p[lay.c5_b..lay.f6_w]);
    wide::dense_forward_w::<S, C5_IN>(s, &ws.a4, &mut ws.a5, c5w, c5b, Some(act));
    profile::lap(6);
    let (f6w, f6b) = (&p[lay.f6_w..lay.f6_b], &p[lay.f6_b..lay.out_w]);
    wide::dense_forward_w::<S, C5_UNITS>(s, &ws.a5, &mut ws.a6, f6w, f6b, Some(act));
    profile::lap(7);
    output_forward(s, lay, p, ws);
    profile::lap(8);
}

/// Forward pass of one image; `ws.x` must hold the input.
#[inline(always)]
fn forward_1<S: Math>(s: S, lay: &Layout, p: &[f32], ws: &mut Workspace) {
    profile::start();
    let cfg = &lay.cfg;
    let act = cfg.activation;
    let c1w = &p[lay.c1_w..lay.c1_b];
    let c1b = &p[lay.c1_b..lay.c1_b + C1_MAPS];
    wide::conv_forward_1::<S, IN, C1_SIDE, 4, 2>(s, &ws.x, &mut ws.a1, c1w, c1b, &C1_START, &C1_IN);
    profile::lap(0);
    let n1 = C1_MAPS * C1_SIDE * C1_SIDE;
    wide::activate(s, act, &mut ws.a1[..n1]);
    profile::lap(1);
    let (s2w, s2b) = (&p[lay.s2_w..lay.s2_b], &p[lay.s2_b..lay.c3_w]);
    let n2 = C1_MAPS * S2_SIDE * S2_SIDE;
    pool_forward::<1, S2_SIDE>(&ws.a1, &mut ws.a2[..n2], cfg.pooling, s2w, s2b, None);
    if cfg.pooling == Pooling::Subsample {
        wide::activate(s, act, &mut ws.a2[..n2]);
    }
    profile::lap(2);
    let c3w = &p[lay.c3_w..lay.c3_b];
    let c3b = &p[lay.c3_b..lay.c3_b + C3_MAPS];
    wide::conv_forward_1::<S, S2_SIDE, C3_SIDE, 2, 5>(
        s,
        &ws.a2,
        &mut ws.a3,
        c3w,
        c3b,
        &lay.conn_start,
        &lay.conn_in,
    );
    profile::lap(3);
    let n3 = C3_MAPS * C3_SIDE * C3_SIDE;
    wide::activate(s, act, &mut ws.a3[..n3]);
    profile::lap(4);
    let (s4w, s4b) = (&p[lay.s4_w..lay.s4_b], &p[lay.s4_b..lay.c5_w]);
    pool_forward::<1, S4_SIDE>(&ws.a3, &mut ws.a4[..C5_IN], cfg.pooling, s4w, s4b, None);
    if cfg.pooling == Pooling::Subsample {
        wide::activate(s, act, &mut ws.a4[..C5_IN]);
    }
    profile::lap(5);
    let (c5w, c5b) = (&p[lay.c5_w..lay.c5_b], &p[lay.c5_b..lay.f6_w]);
    wide::dense_forward_1::<S, C5_IN>(s, &ws.a4, &mut ws.a5, c5w, c5b, Some(act));
    profile::lap(6);
    let (f6w, f6b) = (&p[lay.f6_w..lay.f6_b], &p[lay.f6_b..lay.out_w]);
    wide::dense_forward_1::<S, C5_UNITS>(s, &ws.a5, &mut ws.a6, f6w, f6b, Some(act));
    profile::lap(7);
    output_forward(s, lay, p, ws);
    profile::lap(8);
}

/// The last layer: dense logits or RBF penalties.
#[inline(always)]
fn output_forward<S: Math>(s: S, lay: &Layout, p: &[f32], ws: &mut Workspace) {
    let (ow, ob) = (&p[lay.out_w..lay.out_b], &p[lay.out_b..lay.total]);
    let k = lay.cfg.n_classes;
    if lay.is_rbf() {
        rbf_forward(&ws.a6, &mut ws.z, ow, k, ws.lanes);
    } else if ws.lanes == 1 {
        wide::dense_forward_1::<S, F6_UNITS>(s, &ws.a6, &mut ws.z, ow, ob, None);
    } else {
        wide::dense_forward_w::<S, F6_UNITS>(s, &ws.a6, &mut ws.z, ow, ob, None);
    }
}

/// Backward of the last layer for RBF outputs: gradient (or curvature) wrt
/// F6's pre-activation into `ws.g6`, prototype gradients into `grad`.
#[inline(always)]
fn rbf_output_backward<S: Math, const SQ: bool>(
    s: S,
    lay: &Layout,
    wv: &[f32],
    ws: &mut Workspace,
    grad: &mut [f32],
) {
    let k = lay.cfg.n_classes;
    let lanes = ws.lanes;
    let n6 = F6_UNITS * lanes;
    // With SQ, ws.g6 already holds the loss's curvature wrt F6's outputs
    // (rbf_top_curvature), and the prototypes' is in `grad`.
    if !SQ {
        let gw = lay
            .cfg
            .rbf_trainable
            .then(|| &mut grad[lay.out_w..lay.out_b]);
        rbf_backward(
            &ws.a6,
            &ws.gz,
            &wv[lay.out_w..lay.out_b],
            k,
            lanes,
            &mut ws.g6,
            gw,
        );
    }
    // Element-wise, so one call serves any lane count.
    wide::apply_slope::<S, SQ>(s, lay.cfg.activation, &mut ws.g6[..n6], &ws.a6[..n6]);
}

/// Forward pass of a chunk of either width.
#[inline(always)]
fn forward_any<S: Math>(s: S, lay: &Layout, p: &[f32], ws: &mut Workspace) {
    if ws.lanes == 1 {
        forward_1(s, lay, p, ws)
    } else {
        forward_w(s, lay, p, ws)
    }
}

/// Backward pass of a chunk of eight (see [`backward_1`]).
#[inline(always)]
fn backward_w<S: Math, const SQ: bool>(
    s: S,
    lay: &Layout,
    wv: &[f32],
    ws: &mut Workspace,
    grad: &mut [f32],
) {
    let cfg = &lay.cfg;
    let act = cfg.activation;
    let k = cfg.n_classes;
    if lay.is_rbf() {
        rbf_output_backward::<S, SQ>(s, lay, wv, ws, grad);
    }
    let w = ws;
    profile::lap(10);
    if !lay.is_rbf() {
        let (gw, rest) = grad[lay.out_w..].split_at_mut(k * F6_UNITS);
        wide::dense_backward_w::<S, F6_UNITS, SQ>(
            s,
            &w.a6,
            &w.gz,
            &wv[lay.out_w..lay.out_b],
            gw,
            &mut rest[..k],
            Some((&mut w.g6, Some(act))),
            &mut w.xt,
        );
    }
    {
        profile::lap(10);
        let (gw, rest) = grad[lay.f6_w..].split_at_mut(F6_UNITS * C5_UNITS);
        wide::dense_backward_w::<S, C5_UNITS, SQ>(
            s,
            &w.a5,
            &w.g6,
            &wv[lay.f6_w..lay.f6_b],
            gw,
            &mut rest[..F6_UNITS],
            Some((&mut w.g5, Some(act))),
            &mut w.xt,
        );
    }
    {
        profile::lap(11);
        let (gw, rest) = grad[lay.c5_w..].split_at_mut(C5_UNITS * C5_IN);
        wide::dense_backward_w::<S, C5_IN, SQ>(
            s,
            &w.a4,
            &w.g5,
            &wv[lay.c5_w..lay.c5_b],
            gw,
            &mut rest[..C5_UNITS],
            Some((&mut w.g4, None)),
            &mut w.xt,
        );
    }
    {
        profile::lap(12);
        let (gs4, gb4) = grad[lay.s4_w..lay.c5_w].split_at_mut(lay.s4_b - lay.s4_w);
        let n3 = C3_MAPS * C3_SIDE * C3_SIDE * S::W;
        wide::pool_backward_w::<S, S4_SIDE, SQ>(
            s,
            &w.a3[..n3],
            &w.a4[..C5_IN * S::W],
            &w.g4,
            &mut w.g3[..n3],
            cfg.pooling,
            &wv[lay.s4_w..lay.s4_b],
            gs4,
            gb4,
            act,
        );
    }
    {
        profile::lap(13);
        let (gw, gb) = grad[lay.c3_w..lay.s4_w].split_at_mut(lay.c3_b - lay.c3_w);
        wide::conv_grad_w_w::<S, S2_SIDE, C3_SIDE, 1, false, SQ>(
            s,
            &w.a2,
            &w.g3,
            gw,
            gb,
            &lay.conn_start,
            &lay.conn_in,
        );
        profile::lap(14);
        wide::conv_grad_x_w::<S, S2_SIDE, C3_SIDE>(
            s,
            &w.g3,
            &wv[lay.c3_w..lay.c3_b],
            &mut w.g2,
            &lay.conns_of_input,
            &lay.conn_out,
        );
    }
    {
        profile::lap(15);
        let (gs2, gb2) = grad[lay.s2_w..lay.c3_w].split_at_mut(lay.s2_b - lay.s2_w);
        let n1 = C1_MAPS * C1_SIDE * C1_SIDE * S::W;
        let n2 = C1_MAPS * S2_SIDE * S2_SIDE * S::W;
        wide::pool_backward_w::<S, S2_SIDE, SQ>(
            s,
            &w.a1[..n1],
            &w.a2[..n2],
            &w.g2,
            &mut w.g1[..n1],
            cfg.pooling,
            &wv[lay.s2_w..lay.s2_b],
            gs2,
            gb2,
            act,
        );
    }
    {
        profile::lap(16);
        let (gw, gb) = grad[lay.c1_w..lay.s2_w].split_at_mut(lay.c1_b - lay.c1_w);
        wide::conv_grad_w_w::<S, IN, C1_SIDE, 7, true, SQ>(
            s, &w.x, &w.g1, gw, gb, &C1_START, &C1_IN,
        );
    }
    profile::lap(17);
}

/// Backward pass of one image (a workspace of one lane) after the forward pass:
/// `ws.gz` must hold the gradient wrt the logits. Accumulates parameter gradients
/// into `grad` (flat layout). `wv` is the parameter vector (or its square, with `SQ`).
#[inline(always)]
fn backward_1<M: Math, const SQ: bool>(
    m: M,
    lay: &Layout,
    wv: &[f32],
    ws: &mut Workspace,
    grad: &mut [f32],
) {
    let cfg = &lay.cfg;
    let act = cfg.activation;
    let k = cfg.n_classes;
    if lay.is_rbf() {
        rbf_output_backward::<M, SQ>(m, lay, wv, ws, grad);
    }
    let w = ws;
    profile::lap(10);
    // Output layer: logits gradient -> F6 pre-activation gradient.
    if !lay.is_rbf() {
        let (gw, rest) = grad[lay.out_w..].split_at_mut(k * F6_UNITS);
        dense_backward::<M, 1, F6_UNITS, SQ>(
            &w.a6,
            &w.gz,
            &wv[lay.out_w..lay.out_b],
            gw,
            &mut rest[..k],
            Some((&mut w.g6, Some(act))),
            &mut w.xt,
        );
    }
    profile::lap(10);
    {
        let (gw, rest) = grad[lay.f6_w..].split_at_mut(F6_UNITS * C5_UNITS);
        dense_backward::<M, 1, C5_UNITS, SQ>(
            &w.a5,
            &w.g6,
            &wv[lay.f6_w..lay.f6_b],
            gw,
            &mut rest[..F6_UNITS],
            Some((&mut w.g5, Some(act))),
            &mut w.xt,
        );
    }
    profile::lap(11);
    {
        // C5's input is S4's output; its slope is handled by the S4 backward.
        let (gw, rest) = grad[lay.c5_w..].split_at_mut(C5_UNITS * C5_IN);
        dense_backward::<M, 1, C5_IN, SQ>(
            &w.a4,
            &w.g5,
            &wv[lay.c5_w..lay.c5_b],
            gw,
            &mut rest[..C5_UNITS],
            Some((&mut w.g4, None)),
            &mut w.xt,
        );
    }
    profile::lap(12);
    {
        let (gs4, gb4) = grad[lay.s4_w..lay.c5_w].split_at_mut(lay.s4_b - lay.s4_w);
        let n3 = C3_MAPS * C3_SIDE * C3_SIDE;
        pool_backward::<1, S4_SIDE, SQ>(
            &w.a3[..n3],
            &w.a4[..C5_IN],
            &w.g4,
            &mut w.g3[..n3],
            cfg.pooling,
            &wv[lay.s4_w..lay.s4_b],
            gs4,
            gb4,
            act,
        );
    }
    profile::lap(13);
    {
        let (gw, gb) = grad[lay.c3_w..lay.s4_w].split_at_mut(lay.c3_b - lay.c3_w);
        wide::conv_grad_w_1::<M, S2_SIDE, C3_SIDE, 2, SQ>(
            m,
            &w.a2,
            &w.g3,
            gw,
            gb,
            &lay.conn_start,
            &lay.conn_in,
        );
        profile::lap(14);
        // The input gradient is the full correlation of the C3 gradient with the
        // kernels: a valid convolution of the zero-padded gradient with the flipped
        // kernels, run by the forward kernel with the connections transposed.
        for o in 0..C3_MAPS {
            for y in 0..C3_SIDE {
                let at = o * C3_PAD * C3_PAD + (y + 4) * C3_PAD + 4;
                w.gpad[at..at + C3_SIDE]
                    .copy_from_slice(&w.g3[(o * C3_SIDE + y) * C3_SIDE..][..C3_SIDE]);
            }
        }
        let c3w = &wv[lay.c3_w..lay.c3_b];
        for (j, &k) in lay.tconn_k.iter().enumerate() {
            let (src, dst) = (&c3w[k * KK..][..KK], &mut w.wflip[j * KK..][..KK]);
            for (d, v) in dst.iter_mut().zip(src.iter().rev()) {
                *d = *v;
            }
        }
        wide::conv_forward_1::<M, C3_PAD, S2_SIDE, 2, 2>(
            m,
            &w.gpad,
            &mut w.g2,
            &w.wflip,
            &[0.0; C1_MAPS],
            &lay.tconn_start,
            &lay.tconn_out,
        );
    }
    profile::lap(15);
    {
        let (gs2, gb2) = grad[lay.s2_w..lay.c3_w].split_at_mut(lay.s2_b - lay.s2_w);
        let n1 = C1_MAPS * C1_SIDE * C1_SIDE;
        let n2 = C1_MAPS * S2_SIDE * S2_SIDE;
        pool_backward::<1, S2_SIDE, SQ>(
            &w.a1[..n1],
            &w.a2[..n2],
            &w.g2,
            &mut w.g1[..n1],
            cfg.pooling,
            &wv[lay.s2_w..lay.s2_b],
            gs2,
            gb2,
            act,
        );
    }
    profile::lap(16);
    {
        let (gw, gb) = grad[lay.c1_w..lay.s2_w].split_at_mut(lay.c1_b - lay.c1_w);
        let x = if SQ {
            // The input enters the weight gradients squared.
            w.x.iter_mut().for_each(|v| *v *= *v);
            &w.x
        } else {
            &w.x
        };
        wide::conv_grad_w_1::<M, IN, C1_SIDE, 4, false>(m, x, &w.g1, gw, gb, &C1_START, &C1_IN);
    }
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
        Loss::CrossEntropy => softmax_ce::<SQ>(ws, labels, weights, scale),
        Loss::Mle => rbf_loss::<SQ>(ws, labels, weights, scale, None),
        Loss::Map { j } => rbf_loss::<SQ>(ws, labels, weights, scale, Some(j)),
    }
}

/// The weight of lane `lane` (1 without weights).
#[inline]
fn lane_weight(weights: Option<&[f32]>, lane: usize) -> f32 {
    weights.map_or(1.0, |w| w[lane])
}

/// The paper's losses on RBF penalties `y` (Eq. 8, and Eq. 9 when `map_j` is
/// given): `E = y_D [+ log(exp(-j) + sum_i exp(-y_i))]`. The gradient wrt
/// `y_i` is `[i == D] - q_i` with `q_i = exp(-y_i) / (exp(-j) + sum_k exp(-y_k))`
/// (no `q` term for MLE). With `SQ` it writes `scale * q_i` instead (zero for
/// MLE), for [`rbf_top_curvature`].
fn rbf_loss<const SQ: bool>(
    ws: &mut Workspace,
    labels: &[u32],
    weights: Option<&[f32]>,
    scale: f32,
    map_j: Option<f32>,
) -> (f64, usize) {
    let l_n = ws.lanes;
    let k = ws.n_classes;
    ws.gz.fill(0.0);
    let mut loss = 0.0f64;
    let mut correct = 0;
    for (lane, &y) in labels.iter().enumerate() {
        let y = y as usize;
        let pen = |c: usize| ws.z[c * l_n + lane] as f64;
        let arg = (0..k).fold(0, |b, c| if pen(c) < pen(b) { c } else { b });
        correct += usize::from(arg == y);
        let mut e = pen(y);
        // k <= 10 for RBF outputs (checked when the network is built).
        let mut q_buf = [0.0f64; crate::rbf::N_BITMAPS];
        let q = &mut q_buf[..k];
        if let Some(j) = map_j {
            // log(exp(-j) + sum exp(-y_i)) computed around its largest term.
            let m = (0..k).map(|c| -pen(c)).fold(-(j as f64), f64::max);
            let mut s = (-(j as f64) - m).exp();
            for (c, qc) in q.iter_mut().enumerate() {
                *qc = (-pen(c) - m).exp();
                s += *qc;
            }
            q.iter_mut().for_each(|v| *v /= s);
            e += m + s.ln();
        }
        let w = lane_weight(weights, lane);
        let scale = scale * w;
        loss += if w == 1.0 { e } else { w as f64 * e };
        for (c, qc) in q.iter().enumerate() {
            let t = if c == y { 1.0 } else { 0.0 };
            ws.gz[c * l_n + lane] = if SQ {
                scale * *qc as f32
            } else {
                scale * (t - qc) as f32
            };
        }
    }
    (loss, correct)
}

/// The curvature pass's top for RBF outputs: the loss's own second derivative
/// wrt each F6 output `x_j` into `ws.g6` (the Gauss-Newton approximation drops
/// the network's nonlinearity, not the loss's, and with fixed prototypes the
/// RBF units belong to the loss). `ws.gz` holds `scale * q_i`, the posteriors
/// of the MAP loss (zero for MLE), and `protos` the prototypes `w_ij`. With
/// `d_ij = x_j - w_ij`, per image
///
///   d2E/dx_j^2 = 2 (1 - sum_i q_i) + 4 (sum_i q_i d_ij^2 - (sum_i q_i d_ij)^2),
///
/// never negative (`1 - sum q` is the rubbish class's posterior, the rest a
/// variance under `q`); 2 for MLE. A trainable prototype gets its own second
/// derivative `2 ([i = D] - q_i) + 4 q_i (1 - q_i) d_ij^2` where that is
/// positive, summed into `grad` (flat layout).
fn rbf_top_curvature(
    lay: &Layout,
    protos: &[f32],
    ws: &mut Workspace,
    labels: &[u32],
    scale: f32,
    grad: &mut [f32],
) {
    let lanes = ws.lanes;
    let k = ws.n_classes;
    ws.g6[..F6_UNITS * lanes].fill(0.0);
    if scale == 0.0 {
        return;
    }
    for (l, &label) in labels.iter().enumerate() {
        let g = |i: usize| ws.gz[i * lanes + l];
        let qsum: f32 = (0..k).map(g).sum();
        for j in 0..F6_UNITS {
            let x = ws.a6[j * lanes + l];
            let (mut m1, mut m2) = (0.0f32, 0.0f32);
            for i in 0..k {
                let d = x - protos[i * F6_UNITS + j];
                m1 += g(i) * d;
                m2 += g(i) * d * d;
            }
            let c = 2.0 * (scale - qsum) + 4.0 * (m2 - m1 * m1 / scale);
            ws.g6[j * lanes + l] = c.max(0.0);
            if lay.cfg.rbf_trainable {
                for i in 0..k {
                    let d = x - protos[i * F6_UNITS + j];
                    let t = if i == label as usize { scale } else { 0.0 };
                    let v = 2.0 * (t - g(i)) + 4.0 * g(i) * (1.0 - g(i) / scale) * d * d;
                    grad[lay.out_w + i * F6_UNITS + j] += v.max(0.0);
                }
            }
        }
    }
}

/// Softmax cross-entropy of a chunk: writes the gradient (or, with `SQ`, the
/// diagonal of the Gauss-Newton matrix p(1-p)) of `scale * loss` wrt the logits
/// into `ws.gz`; returns the summed loss and the number of correct argmaxes.
fn softmax_ce<const SQ: bool>(
    ws: &mut Workspace,
    labels: &[u32],
    weights: Option<&[f32]>,
    scale: f32,
) -> (f64, usize) {
    let l_n = ws.lanes;
    let k = ws.n_classes;
    ws.gz.fill(0.0);
    let mut loss = 0.0f64;
    let mut correct = 0;
    for (lane, &y) in labels.iter().enumerate() {
        let y = y as usize;
        let z = |c: usize| ws.z[c * l_n + lane];
        let mut m = f32::NEG_INFINITY;
        let mut arg = 0;
        for c in 0..k {
            if z(c) > m {
                m = z(c);
                arg = c;
            }
        }
        correct += usize::from(arg == y);
        let mut s = 0.0f32;
        let mut zsum = 0.0f32;
        for c in 0..k {
            s += (z(c) - m).exp();
            zsum += z(c) - m;
        }
        // -sum_c t_c log p_c with the targets t of the smoothing (one-hot without)
        let (eps, share) = (ws.smoothing, ws.smoothing / k as f32);
        let e = (s.ln() - (1.0 - eps) * (z(y) - m) - share * zsum) as f64;
        let w = lane_weight(weights, lane);
        let scale = scale * w;
        loss += if w == 1.0 { e } else { w as f64 * e };
        for c in 0..k {
            let p = (z(c) - m).exp() / s;
            let t = if c == y { 1.0 - eps + share } else { share };
            ws.gz[c * l_n + lane] = if SQ {
                scale * p * (1.0 - p)
            } else {
                scale * (p - t)
            };
        }
    }
    (loss, correct)
}

/// Class scores of a lane: logits, or minus the RBF penalties.
#[inline]
pub fn score(ws: &Workspace, rbf: bool, c: usize, lane: usize) -> f32 {
    let z = ws.z[c * ws.lanes + lane];
    if rbf {
        -z
    } else {
        z
    }
}

/// Softmax of each live lane's scores into rows of `out` (`[live][K]`).
pub fn softmax_rows(ws: &Workspace, rbf: bool, live: usize, out: &mut [f32]) {
    let k = ws.n_classes;
    for lane in 0..live {
        let row = &mut out[lane * k..(lane + 1) * k];
        let mut m = f32::NEG_INFINITY;
        for (c, r) in row.iter_mut().enumerate() {
            *r = score(ws, rbf, c, lane);
            m = m.max(*r);
        }
        let mut s = 0.0f32;
        for r in row.iter_mut() {
            *r = (*r - m).exp();
            s += *r;
        }
        for r in row.iter_mut() {
            *r /= s;
        }
    }
}

/// Task: forward pass of the chunk in `ws.x`.
pub struct Forward<'a> {
    pub lay: &'a Layout,
    pub p: &'a [f32],
    pub ws: &'a mut Workspace,
}

impl SimdTask for Forward<'_> {
    fn narrow(&self) -> bool {
        self.ws.lanes == 1
    }
    type Output = ();
    #[inline(always)]
    fn run<M: Math>(self, m: M) {
        forward_any(m, self.lay, self.p, self.ws)
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

impl SimdTask for TrainChunk<'_> {
    fn narrow(&self) -> bool {
        self.ws.lanes == 1
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
        } = self;
        forward_any(m, lay, p, ws);
        let r = loss_grad::<false>(lay, ws, labels, weights, scale);
        profile::lap(9);
        if ws.lanes == 1 {
            backward_1::<M, false>(m, lay, p, ws, grad);
        } else {
            backward_w::<M, false>(m, lay, p, ws, grad);
        }
        r
    }
}

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

impl SimdTask for CurvatureChunk<'_> {
    fn narrow(&self) -> bool {
        self.ws.lanes == 1
    }
    type Output = ();
    #[inline(always)]
    fn run<M: Math>(self, m: M) {
        let CurvatureChunk {
            lay,
            p,
            p2,
            ws,
            labels,
            scale,
            grad,
        } = self;
        forward_any(m, lay, p, ws);
        loss_grad::<true>(lay, ws, labels, None, scale);
        if lay.is_rbf() {
            rbf_top_curvature(lay, &p[lay.out_w..lay.out_b], ws, labels, scale, grad);
        }
        profile::lap(9);
        if ws.lanes == 1 {
            backward_1::<M, true>(m, lay, p2, ws, grad);
        } else {
            backward_w::<M, true>(m, lay, p2, ws, grad);
        }
    }
}

/// Runs the forward pass of the chunk in `ws.x`.
pub fn forward(lay: &Layout, p: &[f32], ws: &mut Workspace) {
    dispatch(Forward { lay, p, ws });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    /// The gradient and loss of one chunk of `lanes` random images with these weights.
    fn chunk(lanes: usize, weights: Option<&[f32]>) -> (Vec<f32>, f64) {
        let lay = ArchConfig::default().layout();
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
}
