//! The numerical kernels written once for any lane count `L`: activations,
//! pooling, dense layers and the RBF output. (The convolutions exist only as the
//! explicitly vectorised kernels of [`crate::wide`], for chunks and single images.)
//!
//! # Layout
//! A chunk of `L` images is processed at once. Every activation is stored as
//! `[channel][y][x][lane]` (lanes innermost), so that one output row of a map is a
//! contiguous run of `width * L` floats and so is the input window it reads for
//! each kernel column. Every inner loop is then a fixed-length, contiguous
//! multiply-add that the compiler turns into vector code; with `L = 8` a vector
//! is one pixel of eight images, with `L = 1` (single images) it runs along a row.
//!
//! # Determinism
//! Every sum is taken in a fixed order that depends only on the data layout,
//! never on threads; the sum over a chunk's lanes is done last, lane 0 first.
//!
//! # Squared mode
//! The backward kernels take a `SQ` flag. With `SQ = true` they propagate the
//! diagonal Gauss-Newton second derivatives instead of first derivatives: the
//! caller passes squared weights, and the kernels square the inputs and the
//! activation slopes (LeCun et al. 1998, Appendix C).

use crate::arch::{Activation, Pooling};
use crate::simd::Math;

/// A of f(a) = A tanh(S a).
pub const TANH_A: f32 = 1.7159;
/// S of f(a) = A tanh(S a).
pub const TANH_S: f32 = 2.0 / 3.0;

/// tanh(u) by the rational approximation of [`crate::wide::tanh_v`]
/// (relative error below 4e-7), branch-free so that loops over it vectorise.
#[inline(always)]
pub fn tanh(u: f32) -> f32 {
    use crate::wide::{TANH_CLAMP, TANH_P, TANH_Q};
    let a = u.abs().min(TANH_CLAMP);
    let t = a * a;
    let mut p = TANH_P[0];
    let mut q = TANH_Q[0];
    for i in 1..5 {
        p = p * t + TANH_P[i];
        q = q * t + TANH_Q[i];
    }
    (p / q * a).min(1.0).copysign(u)
}

/// The paper's squashing function f(a) = 1.7159 tanh(2a/3).
#[inline(always)]
pub fn scaled_tanh(a: f32) -> f32 {
    TANH_A * tanh(TANH_S * a)
}

/// Applies the activation in place.
#[inline(always)]
pub fn activate(act: Activation, v: &mut [f32]) {
    match act {
        Activation::ScaledTanh => {
            for x in v.iter_mut() {
                *x = scaled_tanh(*x);
            }
        }
        Activation::Relu => {
            for x in v.iter_mut() {
                *x = if *x > 0.0 { *x } else { 0.0 };
            }
        }
    }
}

/// f'(a) written in terms of the output y = f(a) (squared when `SQ`).
#[inline(always)]
pub fn slope<const SQ: bool>(act: Activation, y: f32) -> f32 {
    let d = match act {
        // f' = A S (1 - tanh^2) = S A - (S / A) y^2
        Activation::ScaledTanh => TANH_S * TANH_A - (TANH_S / TANH_A) * (y * y),
        Activation::Relu => {
            if y > 0.0 {
                1.0
            } else {
                0.0
            }
        }
    };
    if SQ {
        d * d
    } else {
        d
    }
}

#[inline(always)]
fn sq<const SQ: bool>(v: f32) -> f32 {
    if SQ {
        v * v
    } else {
        v
    }
}

/// Sum of a lane vector, lane 0 first.
#[inline(always)]
fn lane_sum<const L: usize>(v: &[f32; L]) -> f32 {
    let mut s = 0.0;
    for x in v {
        s += *x;
    }
    s
}

#[inline(always)]
fn arr<const N: usize>(s: &[f32]) -> &[f32; N] {
    s[..N].try_into().unwrap()
}

/// 2x2 pooling with stride 2 (S2, S4).
///
/// Subsample: `out = f(coef[c] * (a + b + c + d) + bias[c])`; average: `(a+b+c+d)/4`;
/// max: the largest of the four.
///
/// # Shapes
/// `inp`: `[C][2 OS][2 OS][L]`; `out`: `[C][OS][OS][L]`.
#[inline(always)]
pub fn pool_forward<const L: usize, const OS: usize>(
    inp: &[f32],
    out: &mut [f32],
    pooling: Pooling,
    coef: &[f32],
    bias: &[f32],
    act: Option<Activation>,
) {
    let is = 2 * OS;
    let irow = is * L;
    let channels = out.len() / (OS * OS * L);
    for c in 0..channels {
        let (cf, bs) = match pooling {
            Pooling::Subsample => (coef[c], bias[c]),
            _ => (0.0, 0.0),
        };
        for y in 0..OS {
            let r0 = &inp[(c * is + 2 * y) * irow..][..irow];
            let r1 = &inp[(c * is + 2 * y + 1) * irow..][..irow];
            let orow = &mut out[(c * OS + y) * OS * L..][..OS * L];
            // One loop per kind, so that the choice is made outside the loop.
            macro_rules! each {
                (|$a:ident, $b:ident, $c:ident, $d:ident| $e:expr) => {
                    for x in 0..OS {
                        let ra: &[f32; L] = arr(&r0[2 * x * L..]);
                        let rb: &[f32; L] = arr(&r0[(2 * x + 1) * L..]);
                        let rc: &[f32; L] = arr(&r1[2 * x * L..]);
                        let rd: &[f32; L] = arr(&r1[(2 * x + 1) * L..]);
                        let o = &mut orow[x * L..(x + 1) * L];
                        for l in 0..L {
                            let ($a, $b, $c, $d) = (ra[l], rb[l], rc[l], rd[l]);
                            o[l] = $e;
                        }
                    }
                };
            }
            match pooling {
                Pooling::Subsample => each!(|a, b, cc, d| cf * ((a + b) + (cc + d)) + bs),
                Pooling::Average => each!(|a, b, cc, d| ((a + b) + (cc + d)) * 0.25),
                Pooling::Max => each!(|a, b, cc, d| a.max(b).max(cc.max(d))),
            }
        }
    }
    if let (Pooling::Subsample, Some(act)) = (pooling, act) {
        activate(act, out);
    }
}

/// Backward of [`pool_forward`], fused with the slope of the activation that
/// produced its input: writes `gpre`, the gradient wrt the pre-activation of the
/// convolution below, and accumulates the subsampling parameters' gradients.
///
/// # Shapes
/// `inp` (the convolution's outputs) and `gpre`: `[C][2 OS][2 OS][L]`; `out` and
/// `gout` (gradient wrt the pooled outputs): `[C][OS][OS][L]`.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
pub fn pool_backward<const L: usize, const OS: usize, const SQ: bool>(
    inp: &[f32],
    out: &[f32],
    gout: &[f32],
    gpre: &mut [f32],
    pooling: Pooling,
    coef: &[f32],
    gcoef: &mut [f32],
    gbias: &mut [f32],
    act: Activation,
) {
    let is = 2 * OS;
    let irow = is * L;
    let channels = out.len() / (OS * OS * L);
    for c in 0..channels {
        let mut cacc = [0.0f32; L];
        let mut bacc = [0.0f32; L];
        let cf = if pooling == Pooling::Subsample {
            coef[c]
        } else {
            0.0
        };
        for y in 0..OS {
            let base = (c * is + 2 * y) * irow;
            let orow = &out[(c * OS + y) * OS * L..][..OS * L];
            let grow = &gout[(c * OS + y) * OS * L..][..OS * L];
            for x in 0..OS {
                let at = [
                    base + 2 * x * L,
                    base + (2 * x + 1) * L,
                    base + irow + 2 * x * L,
                    base + irow + (2 * x + 1) * L,
                ];
                let a: &[f32; L] = arr(&inp[at[0]..]);
                let b: &[f32; L] = arr(&inp[at[1]..]);
                let cc: &[f32; L] = arr(&inp[at[2]..]);
                let d: &[f32; L] = arr(&inp[at[3]..]);
                let o: &[f32; L] = arr(&orow[x * L..]);
                let g: &[f32; L] = arr(&grow[x * L..]);
                let mut to = [[0.0f32; L]; 4];
                for l in 0..L {
                    match pooling {
                        Pooling::Subsample => {
                            let dp = g[l] * slope::<SQ>(act, o[l]);
                            // Curvature: the paper's per-connection rule, one term
                            // per connection that shares the coefficient (squared
                            // inputs, not the squared block sum).
                            let sum = if SQ {
                                (a[l] * a[l] + b[l] * b[l]) + (cc[l] * cc[l] + d[l] * d[l])
                            } else {
                                (a[l] + b[l]) + (cc[l] + d[l])
                            };
                            cacc[l] += dp * sum;
                            bacc[l] += dp;
                            let v = dp * cf; // `coef` is already squared in squared mode
                            to[0][l] = v;
                            to[1][l] = v;
                            to[2][l] = v;
                            to[3][l] = v;
                        }
                        Pooling::Average => {
                            let v = g[l] * if SQ { 0.0625 } else { 0.25 };
                            to[0][l] = v;
                            to[1][l] = v;
                            to[2][l] = v;
                            to[3][l] = v;
                        }
                        Pooling::Max => {
                            // The first maximum in the block's row-major order takes the gradient.
                            let m = o[l];
                            let ia = a[l] == m;
                            let ib = !ia && b[l] == m;
                            let ic = !ia && !ib && cc[l] == m;
                            let id = !ia && !ib && !ic;
                            to[0][l] = if ia { g[l] } else { 0.0 };
                            to[1][l] = if ib { g[l] } else { 0.0 };
                            to[2][l] = if ic { g[l] } else { 0.0 };
                            to[3][l] = if id { g[l] } else { 0.0 };
                        }
                    }
                }
                let src = [a, b, cc, d];
                for q in 0..4 {
                    let dst = &mut gpre[at[q]..at[q] + L];
                    for l in 0..L {
                        dst[l] = to[q][l] * slope::<SQ>(act, src[q][l]);
                    }
                }
            }
        }
        if pooling == Pooling::Subsample {
            gcoef[c] += lane_sum(&cacc);
            gbias[c] += lane_sum(&bacc);
        }
    }
}

/// Dense layer: `out[o] = f(b[o] + sum_i w[o][i] inp[i])` (no activation if `act` is None).
///
/// # Shapes
/// `inp`: `[NI][L]`; `out`: `[NO][L]`; `w`: `[NO][NI]`.
#[inline(always)]
pub fn dense_forward<M: Math, const L: usize, const NI: usize>(
    inp: &[f32],
    out: &mut [f32],
    w: &[f32],
    b: &[f32],
    act: Option<Activation>,
) {
    let no = b.len();
    if L == 1 {
        // Dot products with eight running partial sums (vectorisable without
        // reassociating), summed in a fixed order.
        let x: &[f32; NI] = arr(inp);
        for o in 0..no {
            let wr: &[f32; NI] = arr(&w[o * NI..]);
            let mut part = [0.0f32; 8];
            let full = NI / 8 * 8;
            for i in (0..full).step_by(8) {
                for j in 0..8 {
                    part[j] = M::fma1(wr[i + j], x[i + j], part[j]);
                }
            }
            let mut s = b[o];
            for i in full..NI {
                s = M::fma1(wr[i], x[i], s);
            }
            for p in part {
                s += p;
            }
            out[o] = s;
        }
    } else {
        let mut o = 0;
        while o + 4 <= no {
            dense_forward_block::<M, L, NI, 4>(inp, out, w, b, o);
            o += 4;
        }
        while o < no {
            dense_forward_block::<M, L, NI, 1>(inp, out, w, b, o);
            o += 1;
        }
    }
    if let Some(act) = act {
        activate(act, &mut out[..no * L]);
    }
}

#[inline(always)]
fn dense_forward_block<M: Math, const L: usize, const NI: usize, const OB: usize>(
    inp: &[f32],
    out: &mut [f32],
    w: &[f32],
    b: &[f32],
    o0: usize,
) {
    let mut acc = [[0.0f32; L]; OB];
    for (r, a) in acc.iter_mut().enumerate() {
        *a = [b[o0 + r]; L];
    }
    for i in 0..NI {
        let x: &[f32; L] = arr(&inp[i * L..]);
        for (r, a) in acc.iter_mut().enumerate() {
            let wv = w[(o0 + r) * NI + i];
            for l in 0..L {
                a[l] = M::fma1(wv, x[l], a[l]);
            }
        }
    }
    for (r, a) in acc.iter().enumerate() {
        out[(o0 + r) * L..(o0 + r + 1) * L].copy_from_slice(a);
    }
}

/// Backward of a dense layer: accumulates `gw[o][i] += sum_lane dpre[o] inp[i]`
/// (inputs squared when `SQ`) and `gb[o] += sum_lane dpre[o]`, and if `gin` is
/// given writes `gin[i] = slope(inp[i]) * sum_o w[o][i] dpre[o]` (`w` is the
/// squared weights when `SQ`; `in_act` is the activation that produced `inp`).
///
/// # Shapes
/// `inp`, `gin`: `[NI][L]`; `dpre`: `[NO][L]`; `w`, `gw`: `[NO][NI]`; `xt`: scratch of `NI * L`.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
pub fn dense_backward<M: Math, const L: usize, const NI: usize, const SQ: bool>(
    inp: &[f32],
    dpre: &[f32],
    w: &[f32],
    gw: &mut [f32],
    gb: &mut [f32],
    gin: Option<(&mut [f32], Option<Activation>)>,
    xt: &mut [f32],
) {
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
    let Some((gin, in_act)) = gin else { return };
    if L == 1 {
        let g: &mut [f32; NI] = (&mut gin[..NI]).try_into().unwrap();
        *g = [0.0; NI];
        for o in 0..no {
            let wr: &[f32; NI] = arr(&w[o * NI..]);
            let dv = dpre[o];
            for i in 0..NI {
                g[i] = M::fma1(wr[i], dv, g[i]);
            }
        }
    } else {
        // Four inputs at a time so each weight row is read in short contiguous runs.
        debug_assert_eq!(NI % 4, 0);
        for i0 in (0..NI).step_by(4) {
            let mut acc = [[0.0f32; L]; 4];
            for o in 0..no {
                let d: &[f32; L] = arr(&dpre[o * L..]);
                let wr: &[f32; 4] = arr(&w[o * NI + i0..]);
                for r in 0..4 {
                    for l in 0..L {
                        acc[r][l] = M::fma1(wr[r], d[l], acc[r][l]);
                    }
                }
            }
            for (r, a) in acc.iter().enumerate() {
                gin[(i0 + r) * L..(i0 + r + 1) * L].copy_from_slice(a);
            }
        }
    }
    if let Some(act) = in_act {
        for (g, x) in gin[..NI * L].iter_mut().zip(&inp[..NI * L]) {
            *g *= slope::<SQ>(act, *x);
        }
    }
}

/// RBF output: `y[i] = sum_j (x[j] - w[i][j])^2` for each lane.
///
/// # Shapes
/// `inp`: `[84][L]`; `out`: `[K][L]`; `w`: `[K][84]`.
#[inline(always)]
pub fn rbf_forward(inp: &[f32], out: &mut [f32], w: &[f32], k: usize, lanes: usize) {
    let ni = w.len() / k;
    for i in 0..k {
        let wr = &w[i * ni..(i + 1) * ni];
        let o = &mut out[i * lanes..(i + 1) * lanes];
        o.fill(0.0);
        for (j, wv) in wr.iter().enumerate() {
            let x = &inp[j * lanes..(j + 1) * lanes];
            for (ol, xl) in o.iter_mut().zip(x) {
                let d = *xl - *wv;
                *ol += d * d;
            }
        }
    }
}

/// Backward of [`rbf_forward`]: writes `gin[j] = sum_i gy[i] 2 (x[j] - w[i][j])`
/// and, if `gw` is given, accumulates `gw[i][j] += sum_lanes -2 gy[i] (x[j] - w[i][j])`.
#[inline(always)]
pub fn rbf_backward(
    inp: &[f32],
    gy: &[f32],
    w: &[f32],
    k: usize,
    lanes: usize,
    gin: &mut [f32],
    gw: Option<&mut [f32]>,
) {
    let ni = w.len() / k;
    gin[..ni * lanes].fill(0.0);
    for i in 0..k {
        let wr = &w[i * ni..(i + 1) * ni];
        let g = &gy[i * lanes..(i + 1) * lanes];
        for (j, wv) in wr.iter().enumerate() {
            let x = &inp[j * lanes..(j + 1) * lanes];
            let gi = &mut gin[j * lanes..(j + 1) * lanes];
            for ((gl, xl), yl) in gi.iter_mut().zip(x).zip(g) {
                *gl += 2.0 * *yl * (*xl - *wv);
            }
        }
    }
    if let Some(gw) = gw {
        for i in 0..k {
            let g = &gy[i * lanes..(i + 1) * lanes];
            for j in 0..ni {
                let x = &inp[j * lanes..(j + 1) * lanes];
                let wv = w[i * ni + j];
                let mut s = 0.0f32;
                for (xl, yl) in x.iter().zip(g) {
                    s += -2.0 * *yl * (*xl - wv);
                }
                gw[i * ni + j] += s;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tanh_matches_f64() {
        let mut worst = 0.0f64;
        for i in -20000..=20000 {
            let u = i as f32 * 0.0007;
            let t = tanh(u) as f64;
            let r = (u as f64).tanh();
            let err = (t - r).abs() / r.abs().max(1e-30);
            if u != 0.0 {
                worst = worst.max(err);
            }
        }
        assert!(worst < 6e-7, "worst relative error {worst}");
        assert_eq!(tanh(0.0), 0.0);
        assert!(tanh(100.0) <= 1.0 && tanh(100.0) > 0.999_999_9);
        assert_eq!(tanh(-100.0), -tanh(100.0));
    }

    #[test]
    fn scaled_tanh_of_one_is_about_one() {
        assert!((scaled_tanh(1.0) - 1.0).abs() < 1e-3);
        assert!((scaled_tanh(-1.0) + 1.0).abs() < 1e-3);
    }

    #[test]
    fn slope_matches_finite_difference() {
        for &a in &[-3.0f32, -1.0, -0.2, 0.0, 0.4, 1.3, 2.5] {
            let h = 1e-3f64;
            let f = |x: f64| 1.7159 * (2.0 / 3.0 * x).tanh();
            let fd = (f(a as f64 + h) - f(a as f64 - h)) / (2.0 * h);
            let y = scaled_tanh(a);
            let s = slope::<false>(Activation::ScaledTanh, y) as f64;
            assert!((s - fd).abs() < 1e-5, "a={a}: {s} vs {fd}");
        }
    }
}
