//! The layers of LeNet-5, one file each, every file with the layer's equations,
//! its forward pass and every gradient it needs, for both kinds of chunk:
//!
//! - [`activation`]: the scaled tanh and ReLU, with their slopes;
//! - [`conv`]: C1 and C3 (convolutions over a connection list, Table I for C3);
//! - [`pool`]: S2 and S4 (trainable subsampling, average, max);
//! - [`dense`]: C5, F6 and the softmax output with its cross-entropy;
//! - [`rbf`]: the paper's Euclidean RBF output, its prototypes and its losses.
//!
//! # Layout
//! A chunk of `L` images goes through the network at once. Every activation is
//! stored `[channel][y][x][lane]` (lanes innermost).
//!
//! - A **chunk** (`L = S::W`, 8 lanes with AVX2, 16 with AVX-512): one vector is
//!   one pixel of `L` images, so every operation of every layer is a
//!   whole-vector operation with a broadcast weight. Kernels named `*_chunk`.
//! - A **single image** (`L = 1`): the vectors run along rows. Rows are padded,
//!   so single-image buffers carry [`SLACK`] floats at their end. Kernels named
//!   `*_one`.
//!
//! [`Width`] names the kernels of each kind ([`Chunk`], [`One`]) under one set of
//! methods, so the network pass ([`crate::model`]) is written once.
//!
//! # Determinism
//! Every sum is taken in a fixed order that depends only on the data layout,
//! never on threads; a sum over a chunk's lanes runs lane 0 first.
//!
//! # Squared mode
//! The backward kernels take a `SQ` flag. With `SQ = true` they propagate the
//! diagonal Gauss-Newton second derivatives instead of first derivatives: the
//! caller passes squared weights, and the kernels square the inputs and the
//! activation slopes (LeCun et al. 1998, Appendix C).

pub(crate) mod activation;
pub(crate) mod conv;
pub(crate) mod dense;
pub(crate) mod pool;
pub(crate) mod rbf;

use crate::model::{Activation, Pooling};
use crate::simd::Math;
use conv::Connections;

/// Extra floats at the end of single-image buffers, read or written by the
/// row-vectorised kernels past the last valid pixel.
pub(crate) const SLACK: usize = 32;

/// `v`, or `v * v` in squared mode.
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

/// The first `N` values of `s` as an array (so loops over them have a fixed length).
#[inline(always)]
fn arr<const N: usize>(s: &[f32]) -> &[f32; N] {
    s[..N].try_into().unwrap()
}

/// The weight of lane `lane` of a chunk's loss (1 without weights).
#[inline]
fn lane_weight(weights: Option<&[f32]>, lane: usize) -> f32 {
    weights.map_or(1.0, |w| w[lane])
}

/// The kernels of one kind of chunk. Shapes are those of the layer files with
/// `L = self.lanes()`; `IW`/`OW` are input/output sides, `OS` a pooled side, `NI`
/// a dense layer's inputs.
pub(crate) trait Width: Copy {
    /// The instruction set's token.
    type S: Math;
    fn s(self) -> Self::S;
    /// Images in a chunk of this kind.
    fn lanes(self) -> usize;

    /// The activation in place (element-wise: the same for both kinds).
    #[inline(always)]
    fn activate(self, act: Activation, v: &mut [f32]) {
        activation::activate(self.s(), act, v)
    }

    /// `g *= f'(y)` (squared with `SQ`), element-wise.
    #[inline(always)]
    fn apply_slope<const SQ: bool>(self, act: Activation, g: &mut [f32], y: &[f32]) {
        activation::apply_slope::<Self::S, SQ>(self.s(), act, g, y)
    }

    fn conv_forward<const IW: usize, const OW: usize>(
        self,
        inp: &[f32],
        out: &mut [f32],
        w: &[f32],
        b: &[f32],
        conns: &Connections,
    );

    #[allow(clippy::too_many_arguments)]
    fn conv_kernel_grad<const IW: usize, const OW: usize, const SQ: bool>(
        self,
        inp: &[f32],
        dpre: &[f32],
        gw: &mut [f32],
        gb: &mut [f32],
        conns: &Connections,
    );

    /// The input gradient; `pad` and `flipped` are the single-image scratch
    /// buffers of [`conv::input_grad_one`] (unused by chunks).
    #[allow(clippy::too_many_arguments)]
    fn conv_input_grad<const IW: usize, const OW: usize, const PAD: usize>(
        self,
        dpre: &[f32],
        w: &[f32],
        gin: &mut [f32],
        conns: &Connections,
        pad: &mut [f32],
        flipped: &mut [f32],
    );

    #[allow(clippy::too_many_arguments)]
    fn pool_forward<const OS: usize>(
        self,
        inp: &[f32],
        out: &mut [f32],
        pooling: Pooling,
        coef: &[f32],
        bias: &[f32],
        act: Activation,
    );

    #[allow(clippy::too_many_arguments)]
    fn pool_backward<const OS: usize, const SQ: bool>(
        self,
        inp: &[f32],
        out: &[f32],
        gout: &[f32],
        gpre: &mut [f32],
        pooling: Pooling,
        coef: &[f32],
        gcoef: &mut [f32],
        gbias: &mut [f32],
        act: Activation,
    );

    fn dense_forward<const NI: usize>(
        self,
        inp: &[f32],
        out: &mut [f32],
        w: &[f32],
        b: &[f32],
        act: Option<Activation>,
    );

    #[allow(clippy::too_many_arguments)]
    fn dense_backward<const NI: usize, const SQ: bool>(
        self,
        inp: &[f32],
        dpre: &[f32],
        w: &[f32],
        gw: &mut [f32],
        gb: &mut [f32],
        gin: Option<(&mut [f32], Option<Activation>)>,
        xt: &mut [f32],
    );
}

/// A chunk of `S::W` images.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Chunk<S>(pub S);

/// One image.
#[derive(Clone, Copy, Debug)]
pub(crate) struct One<S>(pub S);

impl<S: Math> Width for Chunk<S> {
    type S = S;
    #[inline(always)]
    fn s(self) -> S {
        self.0
    }
    #[inline(always)]
    fn lanes(self) -> usize {
        S::W
    }
    #[inline(always)]
    fn conv_forward<const IW: usize, const OW: usize>(
        self,
        inp: &[f32],
        out: &mut [f32],
        w: &[f32],
        b: &[f32],
        conns: &Connections,
    ) {
        conv::forward_chunk::<S, IW, OW>(self.0, inp, out, w, b, conns)
    }
    #[inline(always)]
    fn conv_kernel_grad<const IW: usize, const OW: usize, const SQ: bool>(
        self,
        inp: &[f32],
        dpre: &[f32],
        gw: &mut [f32],
        gb: &mut [f32],
        conns: &Connections,
    ) {
        conv::kernel_grad_chunk::<S, IW, OW, SQ>(self.0, inp, dpre, gw, gb, conns)
    }
    #[inline(always)]
    fn conv_input_grad<const IW: usize, const OW: usize, const PAD: usize>(
        self,
        dpre: &[f32],
        w: &[f32],
        gin: &mut [f32],
        conns: &Connections,
        _pad: &mut [f32],
        _flipped: &mut [f32],
    ) {
        conv::input_grad_chunk::<S, IW, OW>(self.0, dpre, w, gin, conns)
    }
    #[inline(always)]
    fn pool_forward<const OS: usize>(
        self,
        inp: &[f32],
        out: &mut [f32],
        pooling: Pooling,
        coef: &[f32],
        bias: &[f32],
        act: Activation,
    ) {
        pool::forward_chunk::<S, OS>(self.0, inp, out, pooling, coef, bias, act)
    }
    #[inline(always)]
    fn pool_backward<const OS: usize, const SQ: bool>(
        self,
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
        pool::backward_chunk::<S, OS, SQ>(
            self.0, inp, out, gout, gpre, pooling, coef, gcoef, gbias, act,
        )
    }
    #[inline(always)]
    fn dense_forward<const NI: usize>(
        self,
        inp: &[f32],
        out: &mut [f32],
        w: &[f32],
        b: &[f32],
        act: Option<Activation>,
    ) {
        dense::forward_chunk::<S, NI>(self.0, inp, out, w, b, act)
    }
    #[inline(always)]
    fn dense_backward<const NI: usize, const SQ: bool>(
        self,
        inp: &[f32],
        dpre: &[f32],
        w: &[f32],
        gw: &mut [f32],
        gb: &mut [f32],
        gin: Option<(&mut [f32], Option<Activation>)>,
        xt: &mut [f32],
    ) {
        dense::backward_chunk::<S, NI, SQ>(self.0, inp, dpre, w, gw, gb, gin, xt)
    }
}

impl<S: Math> Width for One<S> {
    type S = S;
    #[inline(always)]
    fn s(self) -> S {
        self.0
    }
    #[inline(always)]
    fn lanes(self) -> usize {
        1
    }
    #[inline(always)]
    fn conv_forward<const IW: usize, const OW: usize>(
        self,
        inp: &[f32],
        out: &mut [f32],
        w: &[f32],
        b: &[f32],
        conns: &Connections,
    ) {
        conv::forward_one::<S, IW, OW>(self.0, inp, out, w, b, conns)
    }
    #[inline(always)]
    fn conv_kernel_grad<const IW: usize, const OW: usize, const SQ: bool>(
        self,
        inp: &[f32],
        dpre: &[f32],
        gw: &mut [f32],
        gb: &mut [f32],
        conns: &Connections,
    ) {
        conv::kernel_grad_one::<S, IW, OW, SQ>(self.0, inp, dpre, gw, gb, conns)
    }
    #[inline(always)]
    fn conv_input_grad<const IW: usize, const OW: usize, const PAD: usize>(
        self,
        dpre: &[f32],
        w: &[f32],
        gin: &mut [f32],
        conns: &Connections,
        pad: &mut [f32],
        flipped: &mut [f32],
    ) {
        conv::input_grad_one::<S, IW, OW, PAD>(self.0, dpre, w, gin, conns, pad, flipped)
    }
    #[inline(always)]
    fn pool_forward<const OS: usize>(
        self,
        inp: &[f32],
        out: &mut [f32],
        pooling: Pooling,
        coef: &[f32],
        bias: &[f32],
        act: Activation,
    ) {
        pool::forward_one::<S, OS>(self.0, inp, out, pooling, coef, bias, act)
    }
    #[inline(always)]
    fn pool_backward<const OS: usize, const SQ: bool>(
        self,
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
        pool::backward_one::<OS, SQ>(inp, out, gout, gpre, pooling, coef, gcoef, gbias, act)
    }
    #[inline(always)]
    fn dense_forward<const NI: usize>(
        self,
        inp: &[f32],
        out: &mut [f32],
        w: &[f32],
        b: &[f32],
        act: Option<Activation>,
    ) {
        dense::forward_one::<S, NI>(self.0, inp, out, w, b, act)
    }
    #[inline(always)]
    fn dense_backward<const NI: usize, const SQ: bool>(
        self,
        inp: &[f32],
        dpre: &[f32],
        w: &[f32],
        gw: &mut [f32],
        gb: &mut [f32],
        gin: Option<(&mut [f32], Option<Activation>)>,
        xt: &mut [f32],
    ) {
        dense::backward_one::<S, NI, SQ>(inp, dpre, w, gw, gb, gin, xt)
    }
}

/// Helpers for the layers' tests: the plain kernels (8 lanes), random values,
/// and conversions between one image's `[c][y][x]` and a chunk's
/// `[c][y][x][lane]`.
#[cfg(test)]
pub(crate) mod testing {
    use crate::rng::Rng;
    pub(crate) use crate::simd::Plain;

    pub(crate) const W: usize = 8;

    /// `n` values uniform in [-1, 1] (plus [`super::SLACK`] zeros).
    pub(crate) fn values(rng: &mut Rng, n: usize) -> Vec<f32> {
        let mut v: Vec<f32> = (0..n).map(|_| rng.uniform(-1.0, 1.0)).collect();
        v.resize(n + super::SLACK, 0.0);
        v
    }

    /// Interleaves `W` images of `n` values each into a chunk.
    pub(crate) fn to_chunk(images: &[Vec<f32>], n: usize) -> Vec<f32> {
        let mut out = vec![0.0; n * W + super::SLACK];
        for (lane, img) in images.iter().enumerate() {
            for i in 0..n {
                out[i * W + lane] = img[i];
            }
        }
        out
    }

    /// Lane `lane` of a chunk of `n` values per image.
    pub(crate) fn lane(chunk: &[f32], n: usize, lane: usize) -> Vec<f64> {
        (0..n).map(|i| chunk[i * W + lane] as f64).collect()
    }

    /// Asserts `got` is within `tol` (relative to the largest `want`) of `want`.
    pub(crate) fn close(got: &[f64], want: &[f64], tol: f64, what: &str) {
        assert_eq!(got.len(), want.len(), "{what}: lengths");
        let scale = want.iter().fold(1e-30f64, |m, v| m.max(v.abs()));
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            assert!((g - w).abs() <= tol * scale, "{what}[{i}]: {g} vs {w}");
        }
    }

    pub(crate) fn f64s(v: &[f32]) -> Vec<f64> {
        v.iter().map(|&x| x as f64).collect()
    }
}
