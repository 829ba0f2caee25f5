//! S2 and S4: 2x2 pooling with stride 2, over each map separately.
//!
//! Trainable subsampling (the paper's), for map c with coefficient w_c and bias b_c:
//!
//!   y = f(w_c (a + b + c + d) + b_c),
//!   dE/dw_c = sum over blocks dE/dy f'(.) (a + b + c + d),  dE/db_c = sum dE/dy f'(.),
//!   dE/da = dE/dy f'(.) w_c   (the same for b, c, d);
//!
//! average pooling y = (a + b + c + d) / 4 and max pooling y = max(a, b, c, d)
//! (the first maximum in row-major order takes the gradient) have no
//! parameters and no squashing after them.
//!
//! The backward kernels are fused with the slope of the activation that produced
//! the pooled values (the convolution below), so they write the gradient wrt that
//! convolution's pre-activation. In squared mode (`SQ`, the curvature pass) the
//! coefficient comes in squared and its curvature is the paper's per-connection
//! rule: a sum of the squared inputs, not the square of their sum.

use super::activation::{activate, apply_slope, slope, slope_v};
use super::arr;
use crate::model::{Activation, Pooling};
use crate::simd::Simd;

/// Pooling of a chunk (`S::W` lanes), squashed after subsampling.
///
/// # Shapes
/// `inp`: `[C][2 OS][2 OS][W]`; `out`: `[C][OS][OS][W]`.
#[inline(always)]
pub(crate) fn forward_chunk<S: Simd, const OS: usize>(
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

/// Backward of [`forward_chunk`] fused with the slope of the activation below:
/// writes `gpre` (gradient wrt the convolution's pre-activation) and accumulates
/// the subsampling parameters' gradients.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
pub(crate) fn backward_chunk<S: Simd, const OS: usize, const SQ: bool>(
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

/// Pooling of one image, squashed after subsampling.
///
/// Subsample: `out = f(coef[c] * (a + b + c + d) + bias[c])`; average: `(a+b+c+d)/4`;
/// max: the largest of the four.
///
/// # Shapes
/// `inp`: `[C][2 OS][2 OS]`; `out`: `[C][OS][OS]`.
#[inline(always)]
pub(crate) fn forward_one<S: Simd, const OS: usize>(
    s: S,
    inp: &[f32],
    out: &mut [f32],
    pooling: Pooling,
    coef: &[f32],
    bias: &[f32],
    act: Activation,
) {
    const L: usize = 1;
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
    if pooling == Pooling::Subsample {
        activate(s, act, out);
    }
}

/// Backward of [`forward_one`], fused with the slope of the activation that
/// produced its input: writes `gpre`, the gradient wrt the pre-activation of the
/// convolution below, and accumulates the subsampling parameters' gradients.
///
/// # Shapes
/// `inp` (the convolution's outputs) and `gpre`: `[C][2 OS][2 OS]`; `out` and
/// `gout` (gradient wrt the pooled outputs): `[C][OS][OS]`.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
pub(crate) fn backward_one<const OS: usize, const SQ: bool>(
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
    let tanh = act == Activation::ScaledTanh;
    match pooling {
        Pooling::Subsample if tanh => {
            return subsample_backward_one::<OS, SQ, true>(inp, out, gout, gpre, coef, gcoef, gbias)
        }
        Pooling::Subsample => {
            return subsample_backward_one::<OS, SQ, false>(
                inp, out, gout, gpre, coef, gcoef, gbias,
            )
        }
        Pooling::Average | Pooling::Max => {}
    }
    // Average and max pooling: no parameters.
    let average = pooling == Pooling::Average;
    let is = 2 * OS;
    let channels = out.len() / (OS * OS);
    for c in 0..channels {
        for y in 0..OS {
            let base = (c * is + 2 * y) * is;
            let orow = &out[(c * OS + y) * OS..][..OS];
            let grow = &gout[(c * OS + y) * OS..][..OS];
            for x in 0..OS {
                let at = [
                    base + 2 * x,
                    base + 2 * x + 1,
                    base + is + 2 * x,
                    base + is + 2 * x + 1,
                ];
                let src = at.map(|i| inp[i]);
                let (o, g) = (orow[x], grow[x]);
                let to = if average {
                    [g * if SQ { 0.0625 } else { 0.25 }; 4]
                } else {
                    // The first maximum in the block's row-major order takes the gradient.
                    let first = src.iter().position(|&v| v == o).unwrap_or(3);
                    let mut t = [0.0f32; 4];
                    t[first] = g;
                    t
                };
                for q in 0..4 {
                    gpre[at[q]] = to[q] * slope::<SQ>(act, src[q]);
                }
            }
        }
    }
}

/// [`backward_one`] for trainable subsampling, the activation chosen outside
/// the loops (`TANH`: scaled tanh, else ReLU): per output row, the block
/// gradients and the coefficient's and bias's sums first (in block order, as
/// [`backward_one`] adds them), then the two input rows' gradients in one loop
/// over 2 `OS` contiguous pixels, which vectorises. The same operations on
/// each value as [`backward_one`], so the same bits.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn subsample_backward_one<const OS: usize, const SQ: bool, const TANH: bool>(
    inp: &[f32],
    out: &[f32],
    gout: &[f32],
    gpre: &mut [f32],
    coef: &[f32],
    gcoef: &mut [f32],
    gbias: &mut [f32],
) {
    let act = if TANH {
        Activation::ScaledTanh
    } else {
        Activation::Relu
    };
    const { assert!(2 * OS <= 64) };
    let is = 2 * OS;
    let channels = out.len() / (OS * OS);
    for c in 0..channels {
        let (mut cacc, mut bacc) = (0.0f32, 0.0f32);
        let cf = coef[c];
        for y in 0..OS {
            let base = (c * is + 2 * y) * is;
            let r0: &[f32] = &inp[base..base + is];
            let r1: &[f32] = &inp[base + is..base + 2 * is];
            let orow = &out[(c * OS + y) * OS..][..OS];
            let grow = &gout[(c * OS + y) * OS..][..OS];
            // Each block's value, twice: the gradient of both its columns.
            let mut v2 = [0.0f32; 64];
            let v2 = &mut v2[..is];
            for x in 0..OS {
                let dp = grow[x] * slope::<SQ>(act, orow[x]);
                let (a, b, cc, d) = (r0[2 * x], r0[2 * x + 1], r1[2 * x], r1[2 * x + 1]);
                let sum = if SQ {
                    (a * a + b * b) + (cc * cc + d * d)
                } else {
                    (a + b) + (cc + d)
                };
                cacc += dp * sum;
                bacc += dp;
                let v = dp * cf;
                v2[2 * x] = v;
                v2[2 * x + 1] = v;
            }
            let (g0, g1) = gpre[base..base + 2 * is].split_at_mut(is);
            for i in 0..is {
                g0[i] = v2[i] * slope::<SQ>(act, r0[i]);
                g1[i] = v2[i] * slope::<SQ>(act, r1[i]);
            }
        }
        // (`0.0 +`: a zero sum is stored as +0, as an earlier sum over lanes did.)
        gcoef[c] += 0.0 + cacc;
        gbias[c] += 0.0 + bacc;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layers::testing::*;
    use crate::layers::SLACK;
    use crate::rng::Rng;

    const C: usize = 3;
    const OS: usize = 5;
    const N_IN: usize = C * 4 * OS * OS;
    const N_OUT: usize = C * OS * OS;

    /// The four inputs of output (c, y, x) in row-major order.
    fn block(c: usize, y: usize, x: usize) -> [usize; 4] {
        let at = |yy: usize, xx: usize| (c * 2 * OS + yy) * 2 * OS + xx;
        [
            at(2 * y, 2 * x),
            at(2 * y, 2 * x + 1),
            at(2 * y + 1, 2 * x),
            at(2 * y + 1, 2 * x + 1),
        ]
    }

    /// Pre-activation of each pooled output, from the definitions.
    fn pre_ref(inp: &[f32], pooling: Pooling, coef: &[f32], bias: &[f32]) -> Vec<f64> {
        let mut out = vec![0.0f64; N_OUT];
        for c in 0..C {
            for y in 0..OS {
                for x in 0..OS {
                    let v = block(c, y, x).map(|i| inp[i] as f64);
                    out[(c * OS + y) * OS + x] = match pooling {
                        Pooling::Subsample => {
                            coef[c] as f64 * v.iter().sum::<f64>() + bias[c] as f64
                        }
                        Pooling::Average => v.iter().sum::<f64>() / 4.0,
                        Pooling::Max => v.iter().cloned().fold(f64::MIN, f64::max),
                    };
                }
            }
        }
        out
    }

    fn f(pooling: Pooling, a: f64) -> f64 {
        if pooling == Pooling::Subsample {
            1.7159 * (2.0 / 3.0 * a).tanh()
        } else {
            a
        }
    }

    /// Forward pass against the definitions, and the backward pass against
    /// central differences (in f64) of the loss `sum g_out * pooled + the
    /// activation below` — the gradient wrt the pre-activation below, and
    /// the coefficient and bias gradients.
    /// The single-image subsampling backward for both activations, plain and
    /// squared (the curvature pass), against the rule written from the
    /// equations in f64: `dp = g f'(y)` (squared: `g f'(y)^2`), `dE/dw_c = sum
    /// dp (a + b + c + d)` (squared: `sum dp (a^2 + b^2 + c^2 + d^2)`), `dE/db_c
    /// = sum dp`, `dE/da = dp w_c f_in'(a)` (squared: `dp w_c^2 f_in'(a)^2`).
    #[test]
    fn single_image_subsampling_backward_matches_its_rule() {
        let mut rng = Rng::new(5);
        let fd = |act: Activation, y: f64| match act {
            Activation::ScaledTanh => 1.7159 * (2.0 / 3.0) - (2.0 / 3.0 / 1.7159) * y * y,
            Activation::Relu => f64::from(u8::from(y > 0.0)),
        };
        for act in [Activation::ScaledTanh, Activation::Relu] {
            for sq in [false, true] {
                let inp = values(&mut rng, N_IN);
                let out = values(&mut rng, N_OUT);
                let gout = values(&mut rng, N_OUT);
                let coef = values(&mut rng, C);
                let cf: Vec<f32> = coef.iter().map(|c| if sq { c * c } else { *c }).collect();
                let mut gpre = vec![0.0f32; N_IN];
                let (mut gc, mut gb) = (vec![0.0f32; C], vec![0.0f32; C]);
                let run = if sq {
                    backward_one::<OS, true>
                } else {
                    backward_one::<OS, false>
                };
                let pooling = Pooling::Subsample;
                let (inp, out, gout) = (&inp[..N_IN], &out[..N_OUT], &gout[..N_OUT]);
                run(
                    inp, out, gout, &mut gpre, pooling, &cf, &mut gc, &mut gb, act,
                );
                let p = |x: f64| if sq { x * x } else { x };
                let mut want_in = vec![0.0f64; N_IN];
                let (mut want_c, mut want_b) = (vec![0.0f64; C], vec![0.0f64; C]);
                for c in 0..C {
                    for y in 0..OS {
                        for x in 0..OS {
                            let o = (c * OS + y) * OS + x;
                            let dp = gout[o] as f64 * p(fd(act, out[o] as f64));
                            let ids = block(c, y, x);
                            want_c[c] += dp * ids.iter().map(|&i| p(inp[i] as f64)).sum::<f64>();
                            want_b[c] += dp;
                            for i in ids {
                                want_in[i] = dp * cf[c] as f64 * p(fd(act, inp[i] as f64));
                            }
                        }
                    }
                }
                close(&f64s(&gpre), &want_in, 1e-5, "input gradient");
                close(&f64s(&gc), &want_c, 1e-5, "coefficient gradient");
                close(&f64s(&gb), &want_b, 1e-5, "bias gradient");
            }
        }
    }

    #[test]
    fn forward_and_backward_match_the_definitions() {
        let s = Plain::new();
        let mut rng = Rng::new(11);
        let act = Activation::ScaledTanh;
        let (coef, bias) = (values(&mut rng, C), values(&mut rng, C));
        for pooling in [Pooling::Subsample, Pooling::Average, Pooling::Max] {
            // Pre-activations below; the pooling reads their tanh.
            let pres: Vec<Vec<f32>> = (0..W).map(|_| values(&mut rng, N_IN)).collect();
            let ins: Vec<Vec<f32>> = pres
                .iter()
                .map(|p| {
                    p.iter()
                        .map(|&a| crate::layers::activation::scaled_tanh(a))
                        .collect()
                })
                .collect();
            let gouts: Vec<Vec<f32>> = (0..W).map(|_| values(&mut rng, N_OUT)).collect();
            let loss = |pre: &[f64], cf: &[f32], bs: &[f32], g: &[f32]| -> f64 {
                let inp: Vec<f32> = pre
                    .iter()
                    .map(|&a| (1.7159 * (2.0 / 3.0 * a).tanh()) as f32)
                    .collect();
                let p = pre_ref(&inp, pooling, cf, bs);
                p.iter()
                    .zip(g)
                    .map(|(&a, &g)| f(pooling, a) * g as f64)
                    .sum()
            };
            let chunk_in = to_chunk(&ins, N_IN);
            let chunk_g = to_chunk(&gouts, N_OUT);
            let mut out_c = vec![0.0; N_OUT * W + SLACK];
            forward_chunk::<_, OS>(
                s,
                &chunk_in,
                &mut out_c[..N_OUT * W],
                pooling,
                &coef,
                &bias,
                act,
            );
            let mut gpre_c = vec![0.0; N_IN * W + SLACK];
            let (mut gc_c, mut gb_c) = (vec![0.0; C], vec![0.0; C]);
            backward_chunk::<_, OS, false>(
                s,
                &chunk_in[..N_IN * W],
                &out_c[..N_OUT * W],
                &chunk_g,
                &mut gpre_c[..N_IN * W],
                pooling,
                &coef,
                &mut gc_c,
                &mut gb_c,
                act,
            );
            let (mut want_c, mut want_b) = (vec![0.0f64; C], vec![0.0f64; C]);
            for l in 0..W {
                let want: Vec<f64> = pre_ref(&ins[l], pooling, &coef, &bias)
                    .iter()
                    .map(|&a| f(pooling, a))
                    .collect();
                close(&lane(&out_c, N_OUT, l), &want, 1e-5, "forward, chunk");
                let mut out1 = vec![0.0; N_OUT + SLACK];
                forward_one::<_, OS>(s, &ins[l], &mut out1[..N_OUT], pooling, &coef, &bias, act);
                close(&f64s(&out1[..N_OUT]), &want, 1e-5, "forward, one image");
                let mut gpre1 = vec![0.0; N_IN];
                let (mut gc1, mut gb1) = (vec![0.0; C], vec![0.0; C]);
                backward_one::<OS, false>(
                    &ins[l][..N_IN],
                    &out1[..N_OUT],
                    &gouts[l],
                    &mut gpre1,
                    pooling,
                    &coef,
                    &mut gc1,
                    &mut gb1,
                    act,
                );
                // Central differences wrt each pre-activation below.
                let pre = f64s(&pres[l][..N_IN]);
                let h = 1e-4;
                let fd: Vec<f64> = (0..N_IN)
                    .map(|i| {
                        let (mut up, mut dn) = (pre.clone(), pre.clone());
                        up[i] += h;
                        dn[i] -= h;
                        (loss(&up, &coef, &bias, &gouts[l]) - loss(&dn, &coef, &bias, &gouts[l]))
                            / (2.0 * h)
                    })
                    .collect();
                // Max pooling's differences are meaningless where two inputs of a
                // block are within the step of each other: those blocks are left out.
                let tied = |i: usize| {
                    let (c, yy, xx) = (i / (4 * OS * OS), i / (2 * OS) % (2 * OS), i % (2 * OS));
                    let v = block(c, yy / 2, xx / 2).map(|j| pre[j]);
                    pooling == Pooling::Max
                        && (0..4).any(|a| (0..a).any(|b| (v[a] - v[b]).abs() < 10.0 * h))
                };
                let keep = |v: Vec<f64>| -> Vec<f64> {
                    v.into_iter()
                        .enumerate()
                        .filter(|(i, _)| !tied(*i))
                        .map(|(_, x)| x)
                        .collect()
                };
                let fd_kept = keep(fd.clone());
                close(
                    &keep(f64s(&gpre1)),
                    &fd_kept,
                    2e-3,
                    "input gradient, one image",
                );
                close(
                    &keep(lane(&gpre_c, N_IN, l)),
                    &fd_kept,
                    2e-3,
                    "input gradient, chunk",
                );
                if pooling == Pooling::Subsample {
                    for c in 0..C {
                        let dc = |d: f32| {
                            let mut cf = coef.clone();
                            cf[c] += d;
                            loss(&pre, &cf, &bias, &gouts[l])
                        };
                        let db = |d: f32| {
                            let mut bs = bias.clone();
                            bs[c] += d;
                            loss(&pre, &coef, &bs, &gouts[l])
                        };
                        let hh = 1e-2f32;
                        want_c[c] += (dc(hh) - dc(-hh)) / (2.0 * hh as f64);
                        want_b[c] += (db(hh) - db(-hh)) / (2.0 * hh as f64);
                        let one_c = (dc(hh) - dc(-hh)) / (2.0 * hh as f64);
                        assert!((gc1[c] as f64 - one_c).abs() < 2e-2 * one_c.abs().max(1.0));
                    }
                }
            }
            if pooling == Pooling::Subsample {
                close(&f64s(&gc_c), &want_c, 2e-2, "coefficient gradient, chunk");
                close(&f64s(&gb_c), &want_b, 2e-2, "bias gradient, chunk");
            }
        }
    }
}
