//! C5, F6 and the softmax output: fully connected layers (C5 is a 5x5
//! convolution over 5x5 maps, so a dense layer over S4's 400 values),
//!
//!   y_o = f(b_o + sum_i w_oi x_i),
//!   dE/dw_oi = sum over images d_o x_i,  dE/db_o = sum d_o,
//!   dE/dx_i = f_in'(x_i) sum_o w_oi d_o,
//!
//! with d_o the gradient wrt the pre-activation of unit o and f_in the
//! activation that produced x (none for C5's input, whose slope the pooling
//! below applies). In squared mode (`SQ`) the weights come in squared and the
//! inputs and slopes are squared: the diagonal Gauss-Newton curvature.
//!
//! The softmax output and its cross-entropy loss (with optional label
//! smoothing) close the file.

use super::activation::{activate, apply_slope, slope};
use super::{arr, lane_sum, lane_weight, sq};
use crate::model::{Activation, Workspace};
use crate::simd::{Math, Simd};

#[inline(always)]
fn dense_forward_block<S: Simd, const NI: usize, const OB: usize>(
    s: S,
    inp: &[f32],
    out: &mut [f32],
    w: &[f32],
    b: &[f32],
    o0: usize,
) {
    let mut acc = [s.splat(0.0); OB];
    for (r, a) in acc.iter_mut().enumerate() {
        *a = s.splat(b[o0 + r]);
    }
    // (Explicit loops rather than `array::from_fn`, which the compiler does not
    // always inline, leaving the arrays in memory.)
    let rows = &w[o0 * NI..(o0 + OB) * NI];
    for i in 0..NI {
        let x = s.load(&inp[i * S::W..]);
        for (r, a) in acc.iter_mut().enumerate() {
            *a = s.fma(s.splat(rows[r * NI + i]), x, *a);
        }
    }
    for (r, a) in acc.iter().enumerate() {
        s.store(*a, &mut out[(o0 + r) * S::W..]);
    }
}

/// Dense layer for a chunk: `out[o] = f(b[o] + sum_i w[o][i] inp[i])`.
///
/// # Shapes
/// `inp`: `[NI][W]`; `out`: `[NO][W]`; `w`: `[NO][NI]`.
#[inline(always)]
pub(crate) fn forward_chunk<S: Simd, const NI: usize>(
    s: S,
    inp: &[f32],
    out: &mut [f32],
    w: &[f32],
    b: &[f32],
    act: Option<Activation>,
) {
    let no = b.len();
    let mut o = 0;
    while o + 8 <= no {
        dense_forward_block::<S, NI, 8>(s, inp, out, w, b, o);
        o += 8;
    }
    while o < no {
        dense_forward_block::<S, NI, 1>(s, inp, out, w, b, o);
        o += 1;
    }
    if let Some(act) = act {
        activate(s, act, &mut out[..no * S::W]);
    }
}

/// Backward of [`forward_chunk`] (the equations of [`backward_one`]).
#[allow(clippy::too_many_arguments)]
#[inline(always)]
pub(crate) fn backward_chunk<S: Math, const NI: usize, const SQ: bool>(
    s: S,
    inp: &[f32],
    dpre: &[f32],
    w: &[f32],
    gw: &mut [f32],
    gb: &mut [f32],
    gin: Option<(&mut [f32], Option<Activation>)>,
    xt: &mut [f32],
) {
    let no = gb.len();
    for i in 0..NI {
        for l in 0..S::W {
            let v = inp[i * S::W + l];
            xt[l * NI + i] = if SQ { v * v } else { v };
        }
    }
    for (o, g) in gb.iter_mut().enumerate() {
        *g += s.hsum(s.load(&dpre[o * S::W..]));
    }
    // Both gradients are rank updates in register tiles ([`Rank`]); every
    // element keeps its order of summation (lanes 0..W for the weights,
    // starting from `gw`; outputs 0..no for the inputs, from zero).
    let w_ = S::W;
    let full = NI / w_ * w_;
    rank_update::<S, true>(s, (dpre, w_, 1), (xt, w_), NI, full, no, gw);
    for o in 0..no {
        let d = &dpre[o * w_..(o + 1) * w_];
        let gwr = &mut gw[o * NI..(o + 1) * NI];
        for i in full..NI {
            for (l, dl) in d.iter().enumerate() {
                gwr[i] = S::fma1(*dl, xt[l * NI + i], gwr[i]);
            }
        }
    }
    let Some((gin, in_act)) = gin else { return };
    // The input gradient, image by image in `xt` (`[W][NI]`, its inputs no
    // longer needed), then written back lane-interleaved.
    rank_update::<S, false>(s, (dpre, 1, w_), (w, no), NI, full, w_, xt);
    for i in 0..full {
        for l in 0..w_ {
            gin[i * w_ + l] = xt[l * NI + i];
        }
    }
    // The last `NI - full` inputs lane-interleaved straight away, eight at a
    // time, then one.
    let mut i = full;
    while i < NI {
        i += match NI - i {
            8.. => grad_x_cols::<S, NI, 8>(s, dpre, w, gin, i, no),
            _ => grad_x_cols::<S, NI, 1>(s, dpre, w, gin, i, no),
        };
    }
    if let Some(act) = in_act {
        apply_slope::<S, SQ>(s, act, &mut gin[..NI * w_], &inp[..NI * w_]);
    }
}

/// `gin[i] = sum_o w[o][i] dpre[o]` for the `IB` inputs from `i0` (returns
/// `IB`), lane vectors, outputs summed in order from zero.
#[inline(always)]
fn grad_x_cols<S: Simd, const NI: usize, const IB: usize>(
    s: S,
    dpre: &[f32],
    w: &[f32],
    gin: &mut [f32],
    i0: usize,
    no: usize,
) -> usize {
    let mut acc = [s.splat(0.0); IB];
    for o in 0..no {
        let d = s.load(&dpre[o * S::W..]);
        for (a, wv) in acc.iter_mut().zip(&w[o * NI + i0..o * NI + i0 + IB]) {
            *a = s.fma(d, s.splat(*wv), *a);
        }
    }
    for (r, a) in acc.iter().enumerate() {
        s.store(*a, &mut gin[(i0 + r) * S::W..]);
    }
    IB
}

/// [`Rank`] over `rows` rows of `dst`, `a` given as (values, row stride, k
/// stride) and `b` as (values, number of k).
#[inline(always)]
fn rank_update<S: Simd, const ACC: bool>(
    s: S,
    (a, a_r, a_k): (&[f32], usize, usize),
    (b, k_n): (&[f32], usize),
    n: usize,
    full: usize,
    rows: usize,
    dst: &mut [f32],
) {
    Rank {
        a,
        a_r,
        a_k,
        b,
        k_n,
        n,
        full,
    }
    .run::<S, ACC>(s, rows, dst);
}

/// A rank-`k_n` update, the shape shared by both gradients of a dense chunk:
/// `dst[r n + c] (+)= sum_k a[r a_r + k a_k] b[k n + c]` for every row `r`
/// and the first `full` columns `c`, the sum taken in order k = 0, 1, ... and
/// started from `dst` when accumulating, from zero otherwise.
struct Rank<'a> {
    a: &'a [f32],
    a_r: usize,
    a_k: usize,
    b: &'a [f32],
    k_n: usize,
    n: usize,
    full: usize,
}

impl Rank<'_> {
    /// All `rows` rows: four at a time, then one.
    #[inline(always)]
    fn run<S: Simd, const ACC: bool>(&self, s: S, rows: usize, dst: &mut [f32]) {
        let mut r = 0;
        while r + 4 <= rows {
            self.rows::<S, 4, ACC>(s, r, dst);
            r += 4;
        }
        while r < rows {
            self.rows::<S, 1, ACC>(s, r, dst);
            r += 1;
        }
    }

    /// Rows `r0..r0 + OB` across the columns: four vectors at a time, then
    /// two, then one.
    #[inline(always)]
    fn rows<S: Simd, const OB: usize, const ACC: bool>(&self, s: S, r0: usize, dst: &mut [f32]) {
        let mut c = 0;
        while c < self.full {
            c += S::W
                * match (self.full - c) / S::W {
                    4.. => self.tile::<S, OB, 4, ACC>(s, r0, c, dst),
                    2 | 3 => self.tile::<S, OB, 2, ACC>(s, r0, c, dst),
                    _ => self.tile::<S, OB, 1, ACC>(s, r0, c, dst),
                };
        }
    }

    /// One tile of `OB` rows by `VB` vectors (returns `VB`): each loaded vector
    /// feeds `OB` independent accumulators and each broadcast value `VB`, so
    /// the multiply-adds do not wait on one another.
    #[inline(always)]
    fn tile<S: Simd, const OB: usize, const VB: usize, const ACC: bool>(
        &self,
        s: S,
        r0: usize,
        c: usize,
        dst: &mut [f32],
    ) -> usize {
        let at = |r: usize, v: usize| (r0 + r) * self.n + c + v * S::W;
        let mut acc = [[s.splat(0.0); VB]; OB];
        if ACC {
            for (r, acc_r) in acc.iter_mut().enumerate() {
                for (v, a) in acc_r.iter_mut().enumerate() {
                    *a = s.load(&dst[at(r, v)..]);
                }
            }
        }
        let mut x = [s.splat(0.0); VB];
        for k in 0..self.k_n {
            for (v, xv) in x.iter_mut().enumerate() {
                *xv = s.load(&self.b[k * self.n + c + v * S::W..]);
            }
            for (r, acc_r) in acc.iter_mut().enumerate() {
                let d = s.splat(self.a[(r0 + r) * self.a_r + k * self.a_k]);
                for (a, xv) in acc_r.iter_mut().zip(&x) {
                    *a = s.fma(d, *xv, *a);
                }
            }
        }
        for (r, acc_r) in acc.iter().enumerate() {
            for (v, a) in acc_r.iter().enumerate() {
                s.store(*a, &mut dst[at(r, v)..]);
            }
        }
        VB
    }
}

/// Dense layer for one image, vectorised along the inputs (eight outputs at a time).
#[inline(always)]
pub(crate) fn forward_one<S: Math, const NI: usize>(
    s: S,
    inp: &[f32],
    out: &mut [f32],
    w: &[f32],
    b: &[f32],
    act: Option<Activation>,
) {
    let no = b.len();
    let mut o = 0;
    while o + 8 <= no {
        dense_one_rows::<S, NI, 8>(s, &inp[..NI], &w[o * NI..], &b[o..], &mut out[o..]);
        o += 8;
    }
    while o < no {
        dense_one_rows::<S, NI, 1>(s, &inp[..NI], &w[o * NI..], &b[o..], &mut out[o..]);
        o += 1;
    }
    if let Some(act) = act {
        activate(s, act, &mut out[..no]);
    }
}

/// The first `OB` outputs of [`forward_one`] from the rows of `w` in `rows`:
/// `OB` independent multiply-add chains along the inputs (a compile-time
/// count, so the accumulators stay in registers), each reduced across its
/// lanes and finished with the tail.
#[inline(always)]
fn dense_one_rows<S: Math, const NI: usize, const OB: usize>(
    s: S,
    x: &[f32],
    rows: &[f32],
    b: &[f32],
    out: &mut [f32],
) {
    let full = NI / S::W * S::W;
    let mut acc = [s.splat(0.0); OB];
    for i0 in (0..full).step_by(S::W) {
        let xv = s.load(&x[i0..]);
        for (r, a) in acc.iter_mut().enumerate() {
            *a = s.fma(s.load(&rows[r * NI + i0..]), xv, *a);
        }
    }
    for (r, a) in acc.iter().enumerate() {
        let row = &rows[r * NI..(r + 1) * NI];
        let mut t = s.hsum(*a);
        for i in full..NI {
            t = S::fma1(row[i], x[i], t);
        }
        out[r] = t + b[r];
    }
}

/// Floats per row of [`transpose`]'s layout for `no` outputs: `no` rounded
/// up to 16, so that any vector width tiles it.
pub(crate) const fn padded(no: usize) -> usize {
    no.div_ceil(16) * 16
}

/// The dense layer `w` (`[NO][ni]`), `b` (`[NO]`) laid out for
/// [`forward_one_t`]: `[1 + ni][padded(NO)]`, the biases in row 0 and input
/// `i`'s weights in row `1 + i`, zeros past `NO`.
pub(crate) fn transpose(w: &[f32], b: &[f32], ni: usize, dst: &mut [f32]) {
    let (no, np) = (b.len(), padded(b.len()));
    dst[..(1 + ni) * np].fill(0.0);
    dst[..no].copy_from_slice(b);
    for (o, row) in w[..no * ni].chunks_exact(ni).enumerate() {
        for (i, v) in row.iter().enumerate() {
            dst[(1 + i) * np + o] = *v;
        }
    }
}

/// Output vectors `v0..v0 + VB` of [`forward_one_t`]; returns `VB`.
#[inline(always)]
fn dense_t_block<S: Simd, const NI: usize, const VB: usize>(
    s: S,
    (t, v0): (&[f32], usize),
    inp: &[f32],
    (out, no): (&mut [f32], usize),
) -> usize {
    let np = padded(no);
    let c0 = v0 * S::W;
    let mut acc = [s.splat(0.0); VB];
    for (v, a) in acc.iter_mut().enumerate() {
        *a = s.load(&t[c0 + v * S::W..]);
    }
    for (i, x) in inp[..NI].iter().enumerate() {
        let xv = s.splat(*x);
        let row = &t[(1 + i) * np + c0..];
        for (v, a) in acc.iter_mut().enumerate() {
            *a = s.fma(xv, s.load(&row[v * S::W..]), *a);
        }
    }
    for (v, a) in acc.iter().enumerate() {
        let c = c0 + v * S::W;
        if c + S::W <= no {
            s.store(*a, &mut out[c..]);
        } else if c < no {
            let mut tmp = [0.0f32; 16];
            s.store(*a, &mut tmp);
            out[c..no].copy_from_slice(&tmp[..no - c]);
        }
    }
    VB
}

/// Dense layer for one image from [`transpose`]'s layout `t`, vectorised along
/// the outputs: `out[o] = f(b[o] + sum_i w[o][i] inp[i])`, each output summed
/// from its bias in input order, as [`forward_chunk`] sums each lane (so one
/// image gets the bits it gets in a chunk), with no reduction across lanes.
#[inline(always)]
pub(crate) fn forward_one_t<S: Math, const NI: usize>(
    s: S,
    inp: &[f32],
    out: &mut [f32],
    t: &[f32],
    no: usize,
    act: Option<Activation>,
) {
    let nv = padded(no) / S::W;
    let mut v = 0;
    // Blocks of eight vectors, then four, two, one: enough independent chains.
    while v < nv {
        v += match nv - v {
            8.. => dense_t_block::<S, NI, 8>(s, (t, v), inp, (out, no)),
            4..=7 => dense_t_block::<S, NI, 4>(s, (t, v), inp, (out, no)),
            2 | 3 => dense_t_block::<S, NI, 2>(s, (t, v), inp, (out, no)),
            _ => dense_t_block::<S, NI, 1>(s, (t, v), inp, (out, no)),
        };
    }
    if let Some(act) = act {
        activate(s, act, &mut out[..no]);
    }
}

/// Backward of [`forward_one`]: accumulates `gw[o][i] += sum_lane dpre[o] inp[i]`
/// (inputs squared when `SQ`) and `gb[o] += sum_lane dpre[o]`, and if `gin` is
/// given writes `gin[i] = slope(inp[i]) * sum_o w[o][i] dpre[o]` (`w` is the
/// squared weights when `SQ`; `in_act` is the activation that produced `inp`).
///
/// # Shapes
/// `inp`, `gin`: `[NI]`; `dpre`: `[NO]`; `w`, `gw`: `[NO][NI]`; `xt`: scratch of `NI`.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
pub(crate) fn backward_one<M: Math, const NI: usize, const SQ: bool>(
    inp: &[f32],
    dpre: &[f32],
    w: &[f32],
    gw: &mut [f32],
    gb: &mut [f32],
    gin: Option<(&mut [f32], Option<Activation>)>,
    xt: &mut [f32],
) {
    weight_grad_one::<M, NI, SQ>(inp, dpre, gw, gb, xt);
    if let Some((gin, in_act)) = gin {
        input_grad_one::<M, NI, SQ>(inp, &dpre[..gb.len()], w, gin, in_act);
    }
}

/// The parameter gradients of [`backward_one`] alone.
#[inline(always)]
pub(crate) fn weight_grad_one<M: Math, const NI: usize, const SQ: bool>(
    inp: &[f32],
    dpre: &[f32],
    gw: &mut [f32],
    gb: &mut [f32],
    xt: &mut [f32],
) {
    const L: usize = 1;
    let no = gb.len();
    // xt[lane][i] = inp[i][lane] (squared when SQ): rows of one sample.
    for i in 0..NI {
        for l in 0..L {
            xt[l * NI + i] = sq::<SQ>(inp[i * L + l]);
        }
    }
    for o in 0..no {
        let d: &[f32; L] = arr(&dpre[o * L..]);
        gb[o] += lane_sum(d);
        let gwr: &mut [f32; NI] = (&mut gw[o * NI..o * NI + NI]).try_into().unwrap();
        for l in 0..L {
            let xr: &[f32; NI] = arr(&xt[l * NI..]);
            let dv = d[l];
            for i in 0..NI {
                gwr[i] = M::fma1(dv, xr[i], gwr[i]);
            }
        }
    }
}

/// The input gradient of [`backward_one`] alone, over the `dpre.len()`
/// outputs.
#[inline(always)]
pub(crate) fn input_grad_one<M: Math, const NI: usize, const SQ: bool>(
    inp: &[f32],
    dpre: &[f32],
    w: &[f32],
    gin: &mut [f32],
    in_act: Option<Activation>,
) {
    const L: usize = 1;
    let g: &mut [f32; NI] = (&mut gin[..NI]).try_into().unwrap();
    *g = [0.0; NI];
    for (o, &dv) in dpre.iter().enumerate() {
        let wr: &[f32; NI] = arr(&w[o * NI..]);
        for i in 0..NI {
            g[i] = M::fma1(wr[i], dv, g[i]);
        }
    }
    if let Some(act) = in_act {
        for (g, x) in gin[..NI * L].iter_mut().zip(&inp[..NI * L]) {
            *g *= slope::<SQ>(act, *x);
        }
    }
}

/// Softmax cross-entropy of a chunk: writes the gradient (or, with `SQ`, the
/// diagonal of the Gauss-Newton matrix p(1-p)) of `scale * loss` wrt the logits
/// into `ws.gz`; returns the summed loss and the number of correct argmaxes.
pub(crate) fn softmax_loss<const SQ: bool>(
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
pub(crate) fn score(ws: &Workspace, rbf: bool, c: usize, lane: usize) -> f32 {
    let z = ws.z[c * ws.lanes + lane];
    if rbf {
        -z
    } else {
        z
    }
}

/// Softmax of each live lane's scores into rows of `out` (`[live][K]`).
pub(crate) fn softmax_rows(ws: &Workspace, rbf: bool, live: usize, out: &mut [f32]) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layers::testing::*;
    use crate::layers::SLACK;
    use crate::rng::Rng;

    const NI: usize = 20;
    const NO: usize = 13;

    /// `1.7159 tanh(2/3 (b_o + sum_i w_oi x_i))` in f64, straight from the equations.
    fn scaled_tanh_layer(w: &[f32], b: &[f32], x: &[f32]) -> Vec<f64> {
        (0..NO)
            .map(|o| {
                let a = b[o] as f64
                    + (0..NI)
                        .map(|i| w[o * NI + i] as f64 * x[i] as f64)
                        .sum::<f64>();
                1.7159 * (2.0 / 3.0 * a).tanh()
            })
            .collect()
    }

    /// Random weights, biases and `W` images' inputs, and the generator after them.
    fn random_layer(seed: u64) -> (Vec<f32>, Vec<f32>, Vec<Vec<f32>>, Rng) {
        let mut rng = Rng::new(seed);
        let (w, b) = (values(&mut rng, NO * NI), values(&mut rng, NO));
        let xs = (0..W).map(|_| values(&mut rng, NI)).collect();
        (w, b, xs, rng)
    }

    /// Forward and backward of a dense layer with tanh inputs, chunk and single
    /// image, against the equations in f64 (plain and squared mode).
    #[test]
    fn forward_and_backward_match_the_equations() {
        let (s, act) = (Plain::new(), Activation::ScaledTanh);
        let (w, b, xs, mut rng) = random_layer(5);
        let b = &b[..NO];
        let ds: Vec<Vec<f32>> = (0..W).map(|_| values(&mut rng, NO)).collect();
        let slope = |y: f64| 1.7159 * 2.0 / 3.0 - (2.0 / 3.0 / 1.7159) * y * y;
        let fwd = |x: &[f32]| scaled_tanh_layer(&w, b, x);
        for sq in [false, true] {
            let p = |v: f64| if sq { v * v } else { v };
            let wv: Vec<f32> = w.iter().map(|&v| if sq { v * v } else { v }).collect();
            let (mut want_w, mut want_b) = (vec![0.0f64; NO * NI], vec![0.0f64; NO]);
            let mut want_in = Vec::new();
            for l in 0..W {
                for o in 0..NO {
                    want_b[o] += ds[l][o] as f64;
                    for i in 0..NI {
                        want_w[o * NI + i] += ds[l][o] as f64 * p(xs[l][i] as f64);
                    }
                }
                want_in.push(
                    (0..NI)
                        .map(|i| {
                            let g: f64 = (0..NO)
                                .map(|o| wv[o * NI + i] as f64 * ds[l][o] as f64)
                                .sum();
                            g * p(slope(xs[l][i] as f64))
                        })
                        .collect::<Vec<f64>>(),
                );
            }
            let (mut gw, mut gb) = (vec![0.0; NO * NI], vec![0.0; NO]);
            let mut xt = vec![0.0; NI * W + SLACK];
            for l in 0..W {
                let mut out = vec![0.0; NO];
                forward_one::<_, NI>(s, &xs[l], &mut out, &w, b, Some(act));
                close(&f64s(&out), &fwd(&xs[l]), 1e-5, "forward, one image");
                let mut gin = vec![0.0; NI + SLACK];
                let mut xt1 = vec![0.0; NI];
                let g = Some((&mut gin[..], Some(act)));
                if sq {
                    backward_one::<Plain, NI, true>(
                        &xs[l], &ds[l], &wv, &mut gw, &mut gb, g, &mut xt1,
                    );
                } else {
                    backward_one::<Plain, NI, false>(
                        &xs[l], &ds[l], &wv, &mut gw, &mut gb, g, &mut xt1,
                    );
                }
                close(
                    &f64s(&gin[..NI]),
                    &want_in[l],
                    1e-5,
                    "input gradient, one image",
                );
            }
            close(
                &f64s(&gw),
                &want_w,
                1e-5,
                "weight gradient, one image at a time",
            );
            close(
                &f64s(&gb),
                &want_b,
                1e-5,
                "bias gradient, one image at a time",
            );
            let x = to_chunk(&xs, NI);
            let d = to_chunk(&ds, NO);
            let mut out = vec![0.0; NO * W];
            forward_chunk::<_, NI>(s, &x, &mut out, &w, b, Some(act));
            let (mut gw, mut gb) = (vec![0.0; NO * NI], vec![0.0; NO]);
            let mut gin = vec![0.0; NI * W];
            let g = Some((&mut gin[..], Some(act)));
            if sq {
                backward_chunk::<_, NI, true>(s, &x, &d, &wv, &mut gw, &mut gb, g, &mut xt);
            } else {
                backward_chunk::<_, NI, false>(s, &x, &d, &wv, &mut gw, &mut gb, g, &mut xt);
            }
            for l in 0..W {
                close(&lane(&out, NO, l), &fwd(&xs[l]), 1e-5, "forward, chunk");
                close(
                    &lane(&gin, NI, l),
                    &want_in[l],
                    1e-5,
                    "input gradient, chunk",
                );
            }
            close(&f64s(&gw), &want_w, 1e-5, "weight gradient, chunk");
            close(&f64s(&gb), &want_b, 1e-5, "bias gradient, chunk");
        }
    }

    /// One image from the transposed layout: the equations in f64, and the very
    /// bits a chunk gives each of its images (13 outputs: a partial last vector).
    #[test]
    fn one_image_from_transposed_weights_matches_the_equations_and_the_chunk() {
        let (s, act) = (Plain::new(), Activation::ScaledTanh);
        let (w, b, xs, _) = random_layer(6);
        let b = &b[..NO];
        let mut t = vec![f32::NAN; (1 + NI) * padded(NO)];
        transpose(&w, b, NI, &mut t);
        assert_eq!(
            t[2 * padded(NO) + 3],
            w[3 * NI + 1],
            "row 1 + i holds input i's weights"
        );
        let mut chunk = vec![0.0; NO * W];
        forward_chunk::<_, NI>(s, &to_chunk(&xs, NI), &mut chunk, &w, b, Some(act));
        for (l, x) in xs.iter().enumerate() {
            let mut out = vec![f32::NAN; NO + SLACK];
            forward_one_t::<_, NI>(s, x, &mut out, &t, NO, Some(act));
            assert!(
                out[NO..].iter().all(|v| v.is_nan()),
                "wrote past the outputs"
            );
            let want = scaled_tanh_layer(&w, b, x);
            close(&f64s(&out[..NO]), &want, 1e-5, "forward, transposed");
            let lane_bits: Vec<u32> = (0..NO).map(|o| chunk[o * W + l].to_bits()).collect();
            let bits: Vec<u32> = out[..NO].iter().map(|v| v.to_bits()).collect();
            assert_eq!(bits, lane_bits, "image {l}: not the chunk's bits");
        }
    }

    /// Softmax cross-entropy with label smoothing: loss and gradient against a
    /// direct f64 computation, a weight scaling both.
    #[test]
    fn softmax_loss_matches_its_definition() {
        let mut rng = Rng::new(9);
        let k = 4;
        let mut ws = Workspace::new(1, k);
        ws.smoothing = 0.1;
        let z: Vec<f32> = (0..k).map(|_| rng.uniform(-3.0, 3.0)).collect();
        ws.z[..k].copy_from_slice(&z);
        let label = 2usize;
        let (loss, correct) = softmax_loss::<false>(&mut ws, &[label as u32], Some(&[1.5]), 0.5);
        let m = z.iter().cloned().fold(f32::MIN, f32::max) as f64;
        let s: f64 = z.iter().map(|&v| (v as f64 - m).exp()).sum();
        let p: Vec<f64> = z.iter().map(|&v| (v as f64 - m).exp() / s).collect();
        let t: Vec<f64> = (0..k)
            .map(|c| if c == label { 0.9 + 0.025 } else { 0.025 })
            .collect();
        let want: f64 = -(0..k).map(|c| t[c] * p[c].ln()).sum::<f64>();
        assert!((loss - 1.5 * want).abs() < 1e-5, "{loss} vs {}", 1.5 * want);
        let argmax = (0..k).fold(0, |a, c| if z[c] > z[a] { c } else { a });
        assert_eq!(correct, usize::from(argmax == label));
        let gz: Vec<f64> = (0..k).map(|c| 0.75 * (p[c] - t[c])).collect();
        close(&f64s(&ws.gz[..k]), &gz, 1e-5, "gradient");
    }
}
