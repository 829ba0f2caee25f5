//! Explicitly vectorised kernels.
//!
//! For chunks of eight images (`L = 8`) one vector holds one pixel of the eight
//! images, so every operation of every layer is a whole-vector operation with a
//! broadcast weight; the kernels keep blocks of outputs in registers while they
//! walk the kernel taps. For single images (`L = 1`) the convolutions run along
//! rows (eight neighbouring pixels per vector); rows are padded, so buffers of
//! single-image workspaces carry [`SLACK`] floats at their end.
//!
//! The equations are written out on each kernel. The order of the sums differs
//! between the chunk and single-image versions (the single-image kernel gradients
//! reduce along rows, and the single-image input gradient of C3 runs as a valid
//! convolution of the zero-padded gradient), so one image's results may differ in
//! the last bits between the two; each is checked against the float64 reference.

use crate::arch::{Activation, Pooling, KK};
use crate::kernels::{TANH_A, TANH_S};
use crate::simd::{Math, Simd};

/// Extra floats at the end of single-image buffers, read or written by the
/// row-vectorised kernels past the last valid pixel.
pub const SLACK: usize = 32;

/// Numerator and denominator of the rational approximation
/// tanh(x) ~ x P(x^2) / Q(x^2) on |x| <= [`TANH_CLAMP`], highest degree first
/// (fitted for this library by minimax on float32; relative error below 4e-7).
pub const TANH_P: [f32; 5] = [
    2.381_857_9e-8,
    3.760_344_4e-5,
    0.006_440_542_6,
    0.247_346_21,
    1.849_999_9,
];
pub const TANH_Q: [f32; 5] = [
    1.405_705_7e-6,
    0.000_603_149,
    0.047_778_197,
    0.864_012_9,
    1.85,
];
/// Inputs are clamped here; the approximation is 1 - 2^-24 at the clamp.
pub const TANH_CLAMP: f32 = 8.5;

/// tanh on a vector (see [`crate::kernels::tanh`] for the scalar twin).
#[inline(always)]
pub fn tanh_v<S: Simd>(s: S, u: S::V) -> S::V {
    let a = s.min(s.abs(u), s.splat(TANH_CLAMP));
    let t = s.mul(a, a);
    let mut p = s.splat(TANH_P[0]);
    let mut q = s.splat(TANH_Q[0]);
    for i in 1..5 {
        p = s.fma(p, t, s.splat(TANH_P[i]));
        q = s.fma(q, t, s.splat(TANH_Q[i]));
    }
    let y = s.min(s.mul(s.div(p, q), a), s.splat(1.0));
    s.copysign(y, u)
}

/// Applies the activation in place to `v` (any length; the tail runs scalar).
#[inline(always)]
pub fn activate<S: Simd>(s: S, act: Activation, v: &mut [f32]) {
    let full = v.len() / S::W * S::W;
    let (body, tail) = v.split_at_mut(full);
    match act {
        Activation::ScaledTanh => {
            let (ka, ks) = (s.splat(TANH_A), s.splat(TANH_S));
            for c in body.chunks_exact_mut(S::W) {
                let x = s.load(c);
                s.store(s.mul(ka, tanh_v(s, s.mul(ks, x))), c);
            }
        }
        Activation::Relu => {
            let z = s.splat(0.0);
            for c in body.chunks_exact_mut(S::W) {
                s.store(s.max(s.load(c), z), c);
            }
        }
    }
    crate::kernels::activate(act, tail);
}

/// `g *= f'(y)` (squared when `SQ`) where `y` are the activation's outputs.
#[inline(always)]
pub fn apply_slope<S: Simd, const SQ: bool>(s: S, act: Activation, g: &mut [f32], y: &[f32]) {
    let full = g.len() / S::W * S::W;
    let (gb, gt) = g.split_at_mut(full);
    match act {
        Activation::ScaledTanh => {
            let (c0, c1) = (s.splat(TANH_S * TANH_A), s.splat(TANH_S / TANH_A));
            for (gc, yc) in gb.chunks_exact_mut(S::W).zip(y.chunks_exact(S::W)) {
                let yv = s.load(yc);
                let mut d = s.sub(c0, s.mul(c1, s.mul(yv, yv)));
                if SQ {
                    d = s.mul(d, d);
                }
                s.store(s.mul(s.load(gc), d), gc);
            }
        }
        Activation::Relu => {
            let (z, one) = (s.splat(0.0), s.splat(1.0));
            for (gc, yc) in gb.chunks_exact_mut(S::W).zip(y.chunks_exact(S::W)) {
                let d = s.select_lt(z, s.load(yc), one, z);
                s.store(s.mul(s.load(gc), d), gc);
            }
        }
    }
    for (gv, yv) in gt.iter_mut().zip(&y[full..]) {
        *gv *= crate::kernels::slope::<SQ>(act, *yv);
    }
}

/// Convolution (5x5, connection list) for chunks of eight images, before the
/// activation. `PX` output pixels are kept in registers; it must divide `OW`.
///
/// # Shapes
/// `inp`: `[C][IW][IW][8]`; `out`: `[O][OW][OW][8]`; `w`: `[n_conn][5][5]`.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
pub fn conv_forward_w<S: Simd, const IW: usize, const OW: usize, const PX: usize>(
    s: S,
    inp: &[f32],
    out: &mut [f32],
    w: &[f32],
    b: &[f32],
    conn_start: &[usize],
    conn_in: &[usize],
) {
    let irow = IW * S::W;
    let iplane = IW * irow;
    let orow = OW * S::W;
    let oplane = OW * orow;
    for o in 0..conn_start.len() - 1 {
        for y in 0..OW {
            for x0 in (0..OW).step_by(PX) {
                let mut acc = [s.splat(b[o]); PX];
                for k in conn_start[o]..conn_start[o + 1] {
                    let c = conn_in[k];
                    let wk = &w[k * KK..(k + 1) * KK];
                    for ky in 0..5 {
                        let at = c * iplane + (y + ky) * irow + x0 * S::W;
                        let row = &inp[at..at + (PX + 4) * S::W];
                        for kx in 0..5 {
                            let wv = s.splat(wk[ky * 5 + kx]);
                            for (px, a) in acc.iter_mut().enumerate() {
                                *a = s.fma(wv, s.load(&row[(px + kx) * S::W..]), *a);
                            }
                        }
                    }
                }
                let dst = &mut out[o * oplane + y * orow + x0 * S::W..];
                for (px, a) in acc.iter().enumerate() {
                    s.store(*a, &mut dst[px * S::W..]);
                }
            }
        }
    }
}

/// Kernel gradients for kernel rows `ky0..ky0 + NKY`, walking each output row
/// `XB` pixels at a time so that the `XB` gradient vectors and the `XB + 4`
/// input vectors they meet stay in registers (each input vector feeds up to
/// five taps).
#[inline(always)]
fn conv_grad_w_rows<
    S: Simd,
    const IW: usize,
    const OW: usize,
    const NKY: usize,
    const XB: usize,
    const SQ: bool,
>(
    s: S,
    inp_c: &[f32],
    dpre_o: &[f32],
    gw: &mut [f32],
    ky0: usize,
) {
    let irow = IW * S::W;
    let orow = OW * S::W;
    let mut acc = [[s.splat(0.0); 5]; NKY];
    if XB == 1 {
        // One pixel at a time (best where the rows are short, as in C3).
        for y in 0..OW {
            let drow = &dpre_o[y * orow..(y + 1) * orow];
            for x in 0..OW {
                let d = s.load(&drow[x * S::W..]);
                for (r, acc_r) in acc.iter_mut().enumerate() {
                    let at = (y + ky0 + r) * irow + x * S::W;
                    let irw = &inp_c[at..at + 5 * S::W];
                    for (kx, a) in acc_r.iter_mut().enumerate() {
                        let mut iv = s.load(&irw[kx * S::W..]);
                        if SQ {
                            iv = s.mul(iv, iv);
                        }
                        *a = s.fma(d, iv, *a);
                    }
                }
            }
        }
    }
    for y in (0..OW).filter(|_| XB > 1) {
        let drow = &dpre_o[y * orow..(y + 1) * orow];
        for x0 in (0..OW).step_by(XB) {
            let d: [S::V; XB] = std::array::from_fn(|j| s.load(&drow[(x0 + j) * S::W..]));
            for (r, acc_r) in acc.iter_mut().enumerate() {
                let at = (y + ky0 + r) * irow + x0 * S::W;
                let irw = &inp_c[at..at + (XB + 4) * S::W];
                for (kx, a) in acc_r.iter_mut().enumerate() {
                    for (j, dj) in d.iter().enumerate() {
                        let mut iv = s.load(&irw[(j + kx) * S::W..]);
                        if SQ {
                            iv = s.mul(iv, iv);
                        }
                        *a = s.fma(*dj, iv, *a);
                    }
                }
            }
        }
    }
    for (r, acc_r) in acc.iter().enumerate() {
        for (kx, a) in acc_r.iter().enumerate() {
            gw[(ky0 + r) * 5 + kx] += s.hsum(*a);
        }
    }
}

/// Kernel and bias gradients of [`conv_forward_w`], accumulated.
///
/// # Shapes
/// `dpre`: `[O][OW][OW][8]`, gradient wrt the pre-activation outputs.
#[inline(always)]
pub fn conv_grad_w_w<
    S: Simd,
    const IW: usize,
    const OW: usize,
    const XB: usize,
    const ROWS3: bool,
    const SQ: bool,
>(
    s: S,
    inp: &[f32],
    dpre: &[f32],
    gw: &mut [f32],
    gb: &mut [f32],
    conn_start: &[usize],
    conn_in: &[usize],
) {
    let iplane = IW * IW * S::W;
    let oplane = OW * OW * S::W;
    for o in 0..conn_start.len() - 1 {
        let dpre_o = &dpre[o * oplane..(o + 1) * oplane];
        let mut bacc = s.splat(0.0);
        for px in dpre_o.chunks_exact(S::W) {
            bacc = s.add(bacc, s.load(px));
        }
        gb[o] += s.hsum(bacc);
        for k in conn_start[o]..conn_start[o + 1] {
            let inp_c = &inp[conn_in[k] * iplane..(conn_in[k] + 1) * iplane];
            let gwk = &mut gw[k * KK..(k + 1) * KK];
            // Kernel rows in groups of 3 + 2 or 2 + 2 + 1 (whichever keeps the
            // accumulators in registers for this layer's block width).
            if ROWS3 {
                conv_grad_w_rows::<S, IW, OW, 3, XB, SQ>(s, inp_c, dpre_o, gwk, 0);
                conv_grad_w_rows::<S, IW, OW, 2, XB, SQ>(s, inp_c, dpre_o, gwk, 3);
            } else {
                conv_grad_w_rows::<S, IW, OW, 2, XB, SQ>(s, inp_c, dpre_o, gwk, 0);
                conv_grad_w_rows::<S, IW, OW, 2, XB, SQ>(s, inp_c, dpre_o, gwk, 2);
                conv_grad_w_rows::<S, IW, OW, 1, XB, SQ>(s, inp_c, dpre_o, gwk, 4);
            }
        }
    }
}

/// Input gradient of [`conv_forward_w`], written into `gin` (`[C][IW][IW][8]`).
#[inline(always)]
pub fn conv_grad_x_w<S: Simd, const IW: usize, const OW: usize>(
    s: S,
    dpre: &[f32],
    w: &[f32],
    gin: &mut [f32],
    conns_of_input: &[Vec<usize>],
    conn_out: &[usize],
) {
    let orow = OW * S::W;
    let oplane = OW * orow;
    for (c, conns) in conns_of_input.iter().enumerate() {
        for yy in 0..IW {
            let mut acc = [s.splat(0.0); IW];
            for &k in conns {
                let dpre_o = &dpre[conn_out[k] * oplane..(conn_out[k] + 1) * oplane];
                let wk = &w[k * KK..(k + 1) * KK];
                for ky in 0..5 {
                    if yy < ky || yy - ky >= OW {
                        continue;
                    }
                    let drow = &dpre_o[(yy - ky) * orow..(yy - ky + 1) * orow];
                    for kx in 0..5 {
                        let wv = s.splat(wk[ky * 5 + kx]);
                        for x in 0..OW {
                            acc[x + kx] = s.fma(wv, s.load(&drow[x * S::W..]), acc[x + kx]);
                        }
                    }
                }
            }
            let dst = &mut gin[(c * IW + yy) * IW * S::W..];
            for (x, a) in acc.iter().enumerate() {
                s.store(*a, &mut dst[x * S::W..]);
            }
        }
    }
}

/// 2x2 pooling, stride 2, eight images (see [`crate::kernels::pool_forward`]).
#[inline(always)]
pub fn pool_forward_w<S: Simd, const OS: usize>(
    s: S,
    inp: &[f32],
    out: &mut [f32],
    pooling: Pooling,
    coef: &[f32],
    bias: &[f32],
    act: Activation,
) {
    let is = 2 * OS;
    let irow = is * S::W;
    let channels = out.len() / (OS * OS * S::W);
    let q = s.splat(0.25);
    for c in 0..channels {
        let (cf, bs) = match pooling {
            Pooling::Subsample => (s.splat(coef[c]), s.splat(bias[c])),
            _ => (s.splat(0.0), s.splat(0.0)),
        };
        let plane = &inp[c * is * irow..(c + 1) * is * irow];
        let oplane = &mut out[c * OS * OS * S::W..(c + 1) * OS * OS * S::W];
        for y in 0..OS {
            let r0 = &plane[2 * y * irow..(2 * y + 1) * irow];
            let r1 = &plane[(2 * y + 1) * irow..(2 * y + 2) * irow];
            let orow = &mut oplane[y * OS * S::W..(y + 1) * OS * S::W];
            // One loop per kind so that the choice is made outside the loop.
            macro_rules! each {
                (|$a:ident, $b:ident, $c:ident, $d:ident| $e:expr) => {
                    for x in 0..OS {
                        let $a = s.load(&r0[2 * x * S::W..]);
                        let $b = s.load(&r0[(2 * x + 1) * S::W..]);
                        let $c = s.load(&r1[2 * x * S::W..]);
                        let $d = s.load(&r1[(2 * x + 1) * S::W..]);
                        s.store($e, &mut orow[x * S::W..]);
                    }
                };
            }
            match pooling {
                Pooling::Subsample => {
                    each!(|a, b, cc, d| s.fma(cf, s.add(s.add(a, b), s.add(cc, d)), bs))
                }
                Pooling::Average => each!(|a, b, cc, d| s.mul(s.add(s.add(a, b), s.add(cc, d)), q)),
                Pooling::Max => each!(|a, b, cc, d| s.max(s.max(a, b), s.max(cc, d))),
            }
        }
    }
    if pooling == Pooling::Subsample {
        activate(s, act, out);
    }
}

/// Backward of [`pool_forward_w`] fused with the slope of the activation below:
/// writes `gpre` (gradient wrt the convolution's pre-activation) and accumulates
/// the subsampling parameters' gradients (see [`crate::kernels::pool_backward`]).
#[allow(clippy::too_many_arguments)]
#[inline(always)]
pub fn pool_backward_w<S: Simd, const OS: usize, const SQ: bool>(
    s: S,
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
    let irow = is * S::W;
    let channels = out.len() / (OS * OS * S::W);
    let z = s.splat(0.0);
    for c in 0..channels {
        let mut cacc = z;
        let mut bacc = z;
        let cf = if pooling == Pooling::Subsample {
            coef[c]
        } else {
            0.0
        };
        // In squared mode the caller passes squared parameters already.
        let cf = s.splat(cf);
        for y in 0..OS {
            for x in 0..OS {
                let o_at = ((c * OS + y) * OS + x) * S::W;
                let at = (c * is + 2 * y) * irow + 2 * x * S::W;
                let pos = [at, at + S::W, at + irow, at + irow + S::W];
                let g = s.load(&gout[o_at..]);
                let v = match pooling {
                    Pooling::Subsample => {
                        let ov = s.load(&out[o_at..]);
                        let mut sl = slope_v(s, act, ov);
                        if SQ {
                            sl = s.mul(sl, sl);
                        }
                        let dp = s.mul(g, sl);
                        let (a, b, cc, d) = (
                            s.load(&inp[pos[0]..]),
                            s.load(&inp[pos[1]..]),
                            s.load(&inp[pos[2]..]),
                            s.load(&inp[pos[3]..]),
                        );
                        // Curvature: the paper's per-connection rule (a sum of the
                        // squared inputs, not the squared block sum).
                        let sum = if SQ {
                            s.fma(a, a, s.fma(b, b, s.fma(cc, cc, s.mul(d, d))))
                        } else {
                            s.add(s.add(a, b), s.add(cc, d))
                        };
                        cacc = s.fma(dp, sum, cacc);
                        bacc = s.add(bacc, dp);
                        [s.mul(dp, cf); 4]
                    }
                    Pooling::Average => [s.mul(g, s.splat(if SQ { 0.0625 } else { 0.25 })); 4],
                    Pooling::Max => {
                        // The first maximum in row-major order takes the gradient.
                        let m = s.load(&out[o_at..]);
                        let mut rest = g;
                        let mut to = [z; 4];
                        for (q, p) in pos.iter().enumerate().take(3) {
                            let v = s.load(&inp[*p..]);
                            to[q] = s.select_eq(v, m, rest, z);
                            rest = s.select_eq(v, m, z, rest);
                        }
                        to[3] = rest;
                        to
                    }
                };
                for (q, p) in pos.iter().enumerate() {
                    s.store(v[q], &mut gpre[*p..]);
                }
            }
        }
        if pooling == Pooling::Subsample {
            gcoef[c] += s.hsum(cacc);
            gbias[c] += s.hsum(bacc);
        }
    }
    apply_slope::<S, SQ>(s, act, gpre, inp);
}

#[inline(always)]
fn slope_v<S: Simd>(s: S, act: Activation, y: S::V) -> S::V {
    match act {
        Activation::ScaledTanh => s.sub(
            s.splat(TANH_S * TANH_A),
            s.mul(s.splat(TANH_S / TANH_A), s.mul(y, y)),
        ),
        Activation::Relu => s.select_lt(s.splat(0.0), y, s.splat(1.0), s.splat(0.0)),
    }
}

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
    let rows: [&[f32]; OB] = std::array::from_fn(|r| &w[(o0 + r) * NI..(o0 + r + 1) * NI]);
    for i in 0..NI {
        let x = s.load(&inp[i * S::W..]);
        for (a, row) in acc.iter_mut().zip(&rows) {
            *a = s.fma(s.splat(row[i]), x, *a);
        }
    }
    for (r, a) in acc.iter().enumerate() {
        s.store(*a, &mut out[(o0 + r) * S::W..]);
    }
}

/// Dense layer for eight images: `out[o] = f(b[o] + sum_i w[o][i] inp[i])`.
///
/// # Shapes
/// `inp`: `[NI][8]`; `out`: `[NO][8]`; `w`: `[NO][NI]`.
#[inline(always)]
pub fn dense_forward_w<S: Simd, const NI: usize>(
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

/// Backward of a dense layer for eight images (see
/// [`crate::kernels::dense_backward`]).
#[allow(clippy::too_many_arguments)]
#[inline(always)]
pub fn dense_backward_w<S: Math, const NI: usize, const SQ: bool>(
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
    let full = NI / S::W * S::W;
    for o in 0..no {
        let d = &dpre[o * S::W..(o + 1) * S::W];
        gb[o] += s.hsum(s.load(d));
        let gwr = &mut gw[o * NI..(o + 1) * NI];
        for i0 in (0..full).step_by(S::W) {
            let mut acc = s.load(&gwr[i0..]);
            for (l, dl) in d.iter().enumerate() {
                acc = s.fma(s.splat(*dl), s.load(&xt[l * NI + i0..]), acc);
            }
            s.store(acc, &mut gwr[i0..]);
        }
        for i in full..NI {
            for (l, dl) in d.iter().enumerate() {
                gwr[i] = S::fma1(*dl, xt[l * NI + i], gwr[i]);
            }
        }
    }
    let Some((gin, in_act)) = gin else { return };
    let mut i0 = 0;
    while i0 + 8 <= NI {
        dense_grad_x_block::<S, NI, 8>(s, dpre, w, gin, i0, no);
        i0 += 8;
    }
    while i0 < NI {
        dense_grad_x_block::<S, NI, 1>(s, dpre, w, gin, i0, no);
        i0 += 1;
    }
    if let Some(act) = in_act {
        apply_slope::<S, SQ>(s, act, &mut gin[..NI * S::W], &inp[..NI * S::W]);
    }
}

#[inline(always)]
fn dense_grad_x_block<S: Simd, const NI: usize, const IB: usize>(
    s: S,
    dpre: &[f32],
    w: &[f32],
    gin: &mut [f32],
    i0: usize,
    no: usize,
) {
    let mut acc = [s.splat(0.0); IB];
    for o in 0..no {
        let d = s.load(&dpre[o * S::W..]);
        let wr = &w[o * NI + i0..o * NI + i0 + IB];
        for (a, wv) in acc.iter_mut().zip(wr) {
            *a = s.fma(s.splat(*wv), d, *a);
        }
    }
    for (r, a) in acc.iter().enumerate() {
        s.store(*a, &mut gin[(i0 + r) * S::W..]);
    }
}

/// Convolution of one image, vectorised along rows, before the activation.
/// `ceil(OW / W)` vectors cover a row (at most `NV`); `RB` rows are computed
/// together and must divide `OW`. Reads and writes past the end of a row;
/// buffers carry [`SLACK`].
#[allow(clippy::too_many_arguments)]
#[inline(always)]
pub fn conv_forward_1<
    S: Simd,
    const IW: usize,
    const OW: usize,
    const NV: usize,
    const RB: usize,
>(
    s: S,
    inp: &[f32],
    out: &mut [f32],
    w: &[f32],
    b: &[f32],
    conn_start: &[usize],
    conn_in: &[usize],
) {
    let iplane = IW * IW;
    let oplane = OW * OW;
    for o in 0..conn_start.len() - 1 {
        for y0 in (0..OW).step_by(RB) {
            let nv = OW.div_ceil(S::W);
            debug_assert!(nv <= NV);
            let mut acc = [[s.splat(b[o]); NV]; RB];
            for k in conn_start[o]..conn_start[o + 1] {
                let c = conn_in[k];
                let wk = &w[k * KK..(k + 1) * KK];
                for ky in 0..5 {
                    for (r, acc_r) in acc.iter_mut().enumerate() {
                        let at = c * iplane + (y0 + r + ky) * IW;
                        let row = &inp[at..at + 4 + nv * S::W];
                        for kx in 0..5 {
                            let wv = s.splat(wk[ky * 5 + kx]);
                            for (v, a) in acc_r.iter_mut().enumerate().take(nv) {
                                *a = s.fma(wv, s.load(&row[kx + v * S::W..]), *a);
                            }
                        }
                    }
                }
            }
            // Rows in increasing order: each row's overhang is overwritten by the next.
            for (r, acc_r) in acc.iter().enumerate() {
                let dst = &mut out[o * oplane + (y0 + r) * OW..];
                for (v, a) in acc_r.iter().enumerate().take(nv) {
                    s.store(*a, &mut dst[v * S::W..]);
                }
            }
        }
    }
}

/// `0, 1, 2, ...`: lane numbers, for masks.
const IOTA: [f32; 16] = [
    0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 11.0, 12.0, 13.0, 14.0, 15.0,
];

/// Kernel and bias gradients of [`conv_forward_1`] (one image), accumulated into
/// `gw`, `gb`, vectorised along the output rows: `ceil(OW / W)` vectors a row (at
/// most `NV`), the lanes of the last one beyond the row masked to zero.
///
/// `gw[k][ky][kx] += sum_{y,x} dpre[o_k][y][x] inp[c_k][y+ky][x+kx]` (inputs squared
/// when `SQ`), `gb[o] += sum dpre[o]`. Reads past the end of an input row (those
/// products are masked); buffers carry [`SLACK`].
///
/// # Shapes
/// `inp`: `[C][IW][IW]`; `dpre`: `[O][OW][OW]`.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
pub fn conv_grad_w_1<S: Simd, const IW: usize, const OW: usize, const NV: usize, const SQ: bool>(
    s: S,
    inp: &[f32],
    dpre: &[f32],
    gw: &mut [f32],
    gb: &mut [f32],
    conn_start: &[usize],
    conn_in: &[usize],
) {
    let iplane = IW * IW;
    let oplane = OW * OW;
    let nv = OW.div_ceil(S::W);
    debug_assert!(nv <= NV);
    let zero = s.splat(0.0);
    let inside = s.splat((OW - (nv - 1) * S::W) as f32);
    let iota = s.load(&IOTA);
    for o in 0..conn_start.len() - 1 {
        let d_o = &dpre[o * oplane..][..oplane + S::W];
        // The rows of dpre as vectors, the lanes past each row's end zero.
        let mut dv = [[zero; NV]; OW];
        let mut bias = zero;
        for (y, dy) in dv.iter_mut().enumerate() {
            for (v, d) in dy.iter_mut().enumerate().take(nv) {
                let x = s.load(&d_o[y * OW + v * S::W..]);
                *d = if v + 1 == nv {
                    s.select_lt(iota, inside, x, zero)
                } else {
                    x
                };
                bias = s.add(bias, *d);
            }
        }
        gb[o] += s.hsum(bias);
        for k in conn_start[o]..conn_start[o + 1] {
            let inp_c = &inp[conn_in[k] * iplane..];
            let gwk = &mut gw[k * KK..][..KK];
            conv_grad_w_1_rows::<S, IW, OW, NV, 2, SQ>(s, inp_c, &dv, nv, gwk, 0);
            conv_grad_w_1_rows::<S, IW, OW, NV, 2, SQ>(s, inp_c, &dv, nv, gwk, 2);
            conv_grad_w_1_rows::<S, IW, OW, NV, 1, SQ>(s, inp_c, &dv, nv, gwk, 4);
        }
    }
}

/// Kernel rows `ky0..ky0 + NKY` of [`conv_grad_w_1`].
#[inline(always)]
fn conv_grad_w_1_rows<
    S: Simd,
    const IW: usize,
    const OW: usize,
    const NV: usize,
    const NKY: usize,
    const SQ: bool,
>(
    s: S,
    inp_c: &[f32],
    dv: &[[S::V; NV]; OW],
    nv: usize,
    gw: &mut [f32],
    ky0: usize,
) {
    let mut acc = [[s.splat(0.0); 5]; NKY];
    for (y, dy) in dv.iter().enumerate() {
        for (v, d) in dy.iter().enumerate().take(nv) {
            for (r, acc_r) in acc.iter_mut().enumerate() {
                let row = &inp_c[(y + ky0 + r) * IW + v * S::W..][..4 + S::W];
                for (kx, a) in acc_r.iter_mut().enumerate() {
                    let mut iv = s.load(&row[kx..]);
                    if SQ {
                        iv = s.mul(iv, iv);
                    }
                    *a = s.fma(*d, iv, *a);
                }
            }
        }
    }
    for (r, acc_r) in acc.iter().enumerate() {
        for (kx, a) in acc_r.iter().enumerate() {
            gw[(ky0 + r) * 5 + kx] += s.hsum(*a);
        }
    }
}

/// Dense layer for one image, vectorised along the inputs (four outputs at a time).
#[inline(always)]
pub fn dense_forward_1<S: Math, const NI: usize>(
    s: S,
    inp: &[f32],
    out: &mut [f32],
    w: &[f32],
    b: &[f32],
    act: Option<Activation>,
) {
    let no = b.len();
    let full = NI / S::W * S::W;
    let x = &inp[..NI];
    let mut o = 0;
    while o < no {
        let ob = (no - o).min(4);
        let mut acc = [s.splat(0.0); 4];
        for i0 in (0..full).step_by(S::W) {
            let xv = s.load(&x[i0..]);
            for (r, a) in acc.iter_mut().enumerate().take(ob) {
                *a = s.fma(s.load(&w[(o + r) * NI + i0..]), xv, *a);
            }
        }
        for (r, a) in acc.iter().enumerate().take(ob) {
            let row = &w[(o + r) * NI..(o + r + 1) * NI];
            let mut t = s.hsum(*a);
            for i in full..NI {
                t = S::fma1(row[i], x[i], t);
            }
            out[o + r] = t + b[o + r];
        }
        o += ob;
    }
    if let Some(act) = act {
        activate(s, act, &mut out[..no]);
    }
}
