//! The squashing functions applied after a layer: the paper's scaled tanh
//!
//!   f(a) = A tanh(S a),  A = 1.7159, S = 2/3,
//!   f'(a) = A S (1 - tanh^2(S a)) = S A - (S / A) f(a)^2,
//!
//! (so the slope is computed from the output y = f(a), which the backward pass
//! keeps), and the rectifier f(a) = max(a, 0), f'(a) = [a > 0].
//!
//! tanh itself is a rational approximation (below), branch-free so that it
//! vectorises. Every function here is element-wise, so one function serves
//! chunks and single images: the vector versions run `S::W` values at a time
//! and finish any tail with the scalar twins.

use crate::model::Activation;
use crate::simd::Simd;

/// A of f(a) = A tanh(S a).
pub(crate) const TANH_A: f32 = 1.7159;

/// S of f(a) = A tanh(S a).
pub(crate) const TANH_S: f32 = 2.0 / 3.0;

/// Numerator and denominator of the rational approximation
/// tanh(x) ~ x P(x^2) / Q(x^2) on |x| <= [`TANH_CLAMP`], highest degree first
/// (fitted for this library by minimax on float32; relative error below 4e-7).
pub(crate) const TANH_P: [f32; 5] = [
    2.381_857_9e-8,
    3.760_344_4e-5,
    0.006_440_542_6,
    0.247_346_21,
    1.849_999_9,
];

pub(crate) const TANH_Q: [f32; 5] = [
    1.405_705_7e-6,
    0.000_603_149,
    0.047_778_197,
    0.864_012_9,
    1.85,
];

/// Inputs are clamped here; the approximation is 1 - 2^-24 at the clamp.
pub(crate) const TANH_CLAMP: f32 = 8.5;

/// tanh(u) by the rational approximation of [`tanh_v`]
/// (relative error below 4e-7), branch-free so that loops over it vectorise.
#[inline(always)]
pub(crate) fn tanh(u: f32) -> f32 {
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
pub(crate) fn scaled_tanh(a: f32) -> f32 {
    TANH_A * tanh(TANH_S * a)
}

/// Applies the activation in place, one value at a time.
#[inline(always)]
fn activate_scalar(act: Activation, v: &mut [f32]) {
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
pub(crate) fn slope<const SQ: bool>(act: Activation, y: f32) -> f32 {
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

/// tanh on a vector (see [`tanh`] for the scalar twin).
#[inline(always)]
pub(crate) fn tanh_v<S: Simd>(s: S, u: S::V) -> S::V {
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

/// The paper's squashing function on a vector (see [`scaled_tanh`]).
#[inline(always)]
fn scaled_tanh_v<S: Simd>(s: S, x: S::V) -> S::V {
    s.mul(s.splat(TANH_A), tanh_v(s, s.mul(s.splat(TANH_S), x)))
}

/// Applies the activation in place to `v` (any length; the tail runs scalar).
#[inline(always)]
pub(crate) fn activate<S: Simd>(s: S, act: Activation, v: &mut [f32]) {
    let full = v.len() / S::W * S::W;
    let (body, tail) = v.split_at_mut(full);
    match act {
        Activation::ScaledTanh => {
            for c in body.chunks_exact_mut(S::W) {
                s.store(scaled_tanh_v(s, s.load(c)), c);
            }
        }
        Activation::Relu => {
            let z = s.splat(0.0);
            for c in body.chunks_exact_mut(S::W) {
                s.store(s.max(s.load(c), z), c);
            }
        }
    }
    if tail.is_empty() {
        return;
    }
    if act == Activation::ScaledTanh && S::W <= TAIL_MAX {
        // The tail through the vector code too, so that a value's bits do not
        // depend on where the vectors end (that is, on the width).
        let mut buf = [0.0f32; TAIL_MAX];
        buf[..tail.len()].copy_from_slice(tail);
        let c = &mut buf[..S::W];
        s.store(scaled_tanh_v(s, s.load(c)), c);
        tail.copy_from_slice(&buf[..tail.len()]);
    } else {
        activate_scalar(act, tail);
    }
}

/// Widest vector whose tail [`activate`] runs as a vector.
const TAIL_MAX: usize = 16;

/// `g *= f'(y)` (squared when `SQ`) where `y` are the activation's outputs.
#[inline(always)]
pub(crate) fn apply_slope<S: Simd, const SQ: bool>(
    s: S,
    act: Activation,
    g: &mut [f32],
    y: &[f32],
) {
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
        *gv *= slope::<SQ>(act, *yv);
    }
}

/// f'(a) from the outputs y = f(a), on a vector.
#[inline(always)]
pub(crate) fn slope_v<S: Simd>(s: S, act: Activation, y: S::V) -> S::V {
    match act {
        Activation::ScaledTanh => s.sub(
            s.splat(TANH_S * TANH_A),
            s.mul(s.splat(TANH_S / TANH_A), s.mul(y, y)),
        ),
        Activation::Relu => s.select_lt(s.splat(0.0), y, s.splat(1.0), s.splat(0.0)),
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

#[cfg(test)]
mod vector_tests {
    use super::*;
    use crate::layers::testing::Plain;

    /// The vector activation and slope (any length: body and tail) against
    /// their definitions in f64.
    #[test]
    fn vector_activation_and_slope_match_the_definitions() {
        let s = Plain::new();
        for act in [Activation::ScaledTanh, Activation::Relu] {
            let x: Vec<f32> = (0..21).map(|i| i as f32 * 0.37 - 3.5).collect();
            let mut y = x.clone();
            activate(s, act, &mut y);
            let f = |a: f64| match act {
                Activation::ScaledTanh => 1.7159 * (2.0 / 3.0 * a).tanh(),
                Activation::Relu => a.max(0.0),
            };
            let df = |a: f64| match act {
                Activation::ScaledTanh => 1.7159 * 2.0 / 3.0 / (2.0 / 3.0 * a).cosh().powi(2),
                Activation::Relu => f64::from(u8::from(a > 0.0)),
            };
            for (a, v) in x.iter().zip(&y) {
                assert!(
                    (*v as f64 - f(*a as f64)).abs() < 2e-6,
                    "{act:?} f({a}) = {v}"
                );
            }
            for sq in [false, true] {
                let mut g = vec![2.0f32; x.len()];
                if sq {
                    apply_slope::<_, true>(s, act, &mut g, &y);
                } else {
                    apply_slope::<_, false>(s, act, &mut g, &y);
                }
                for (i, a) in x.iter().enumerate() {
                    let d = df(*a as f64);
                    let want = 2.0 * if sq { d * d } else { d };
                    assert!(
                        (g[i] as f64 - want).abs() < 1e-5,
                        "{act:?} slope at {a}: {} vs {want}",
                        g[i]
                    );
                }
            }
        }
    }
}
