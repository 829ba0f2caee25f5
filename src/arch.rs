//! The shape of the network: its options, the paper's Table I, and where each
//! parameter tensor lives in the flat parameter vector.
//!
//! Geometry (LeNet-5, 1998): input 1x32x32; C1 6@28x28 (5x5 kernels); S2 6@14x14;
//! C3 16@10x10 (5x5 kernels over the S2 maps of Table I); S4 16@5x5; C5 120
//! (5x5 kernels over all 16 S4 maps, i.e. dense over 400 values); F6 84; output
//! one unit per class.
//!
//! Parameters are kept in one flat `Vec<f32>`. The layout follows PyTorch's
//! tensors (`[out][in][ky][kx]`, `[out][in]`) except for C3, whose kernels are
//! stored only for the connections that exist: one 5x5 kernel per connection,
//! connections ordered by C3 map, then by S2 map. So the vector has exactly as
//! many entries as the network has trainable parameters.

use crate::error::{LeNetError, Result};

/// Side of the network input.
pub const IN: usize = 32;
/// Kernel side of every convolution.
pub const K: usize = 5;
/// Taps of a kernel.
pub const KK: usize = K * K;
/// Maps and sides of each layer.
pub const C1_MAPS: usize = 6;
pub const C1_SIDE: usize = 28;
pub const S2_SIDE: usize = 14;
pub const C3_MAPS: usize = 16;
pub const C3_SIDE: usize = 10;
pub const S4_SIDE: usize = 5;
pub const C5_IN: usize = C3_MAPS * S4_SIDE * S4_SIDE;
pub const C5_UNITS: usize = 120;
pub const F6_UNITS: usize = 84;
/// The largest number of classes the softmax output supports.
pub const MAX_CLASSES: usize = 1 << 16;

/// Table I of the paper: `TABLE_I[s2_map][c3_map]` is true where C3 map
/// `c3_map` takes input from S2 map `s2_map`.
pub const TABLE_I: [[bool; C3_MAPS]; C1_MAPS] = {
    const X: bool = true;
    const O: bool = false;
    [
        [X, O, O, O, X, X, X, O, O, X, X, X, X, O, X, X],
        [X, X, O, O, O, X, X, X, O, O, X, X, X, X, O, X],
        [X, X, X, O, O, O, X, X, X, O, O, X, O, X, X, X],
        [O, X, X, X, O, O, X, X, X, X, O, O, X, O, X, X],
        [O, O, X, X, X, O, O, X, X, X, X, O, X, X, O, X],
        [O, O, O, X, X, X, O, O, X, X, X, X, O, X, X, X],
    ]
};

/// The squashing function (or rectifier) applied after a layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activation {
    /// f(a) = 1.7159 tanh(2a/3), the paper's choice.
    ScaledTanh,
    /// f(a) = max(a, 0).
    Relu,
}

/// What S2 and S4 do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pooling {
    /// The paper's trainable subsampling: f(coef * sum of the 2x2 block + bias).
    Subsample,
    /// Mean of the 2x2 block; no parameters, no squashing after it.
    Average,
    /// Max of the 2x2 block; no parameters, no squashing after it.
    Max,
}

/// Which S2 maps each C3 map sees.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum C3Connections {
    /// The paper's Table I (60 kernels).
    TableI,
    /// All six (96 kernels).
    Full,
}

/// How the first weights are drawn.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Init {
    /// Uniform in +-2.4/F, F the fan-in (the paper's rule), biases too.
    LeCun,
    /// Uniform in +-2.4/sqrt(F), biases too, but +-2.4/F for the subsampling
    /// coefficients: the paper's aim (the same spread of every unit's weighted
    /// sum) under the hypothesis that fits each weight (docs/paper.md).
    LeCunSqrt,
    /// Uniform in +-sqrt(6/F) (He), biases zero.
    He,
    /// Uniform in +-sqrt(6/(F_in+F_out)) (Glorot), biases zero.
    Glorot,
}

/// What the last layer computes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Output {
    /// A dense layer of logits, softmax.
    Softmax,
    /// The paper's Euclidean RBF units over F6, one per class:
    /// `y_i = sum_j (x_j - w_ij)^2`, with the `w_i` set from the digit bitmaps.
    Rbf,
}

/// The fixed ±1 vectors the RBF units compare F6 with, one per class.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Prototypes {
    /// Stylised 7x12 bitmaps of the digits (the paper's kind of prototype).
    Bitmaps,
    /// Distributed codes: rows of a Hadamard matrix of order 84, any two 42
    /// units apart, each half +1 (`rbf::codes`).
    Codes,
}

/// The training criterion.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Loss {
    /// Cross-entropy of the softmax (softmax output).
    CrossEntropy,
    /// The paper's Eq. 8: the penalty of the correct class (RBF output).
    Mle,
    /// The paper's Eq. 9: `y_D + log(exp(-j) + sum_i exp(-y_i))` (RBF output).
    Map { j: f32 },
}

impl Loss {
    /// Every loss name.
    pub const NAMES: &'static [&'static str] = &["ce", "mle", "map"];
    /// Parses the loss name; `j` is the MAP constant.
    pub fn parse(s: &str, j: f32) -> Result<Self> {
        match s {
            "ce" => Ok(Loss::CrossEntropy),
            "mle" => Ok(Loss::Mle),
            "map" if j.is_finite() => Ok(Loss::Map { j }),
            "map" => Err(LeNetError::value(format!(
                "map_j must be a finite number; got {j}"
            ))),
            other => Err(LeNetError::value(format!(
                "loss must be one of 'ce', 'mle', 'map'; got {other:?}"
            ))),
        }
    }

    /// The loss's name.
    pub fn name(self) -> &'static str {
        match self {
            Loss::CrossEntropy => "ce",
            Loss::Mle => "mle",
            Loss::Map { .. } => "map",
        }
    }
}

macro_rules! named_enum {
    ($ty:ty, $what:literal, $( $name:literal => $variant:expr ),+ $(,)?) => {
        impl $ty {
            /// Every name the option accepts, in the order of its variants.
            pub const NAMES: &'static [&'static str] = &[$( $name ),+];
            /// Parses the option's name as given from Python.
            pub fn parse(s: &str) -> Result<Self> {
                match s {
                    $( $name => Ok($variant), )+
                    other => Err(LeNetError::value(format!(
                        concat!($what, " must be one of {}; got {:?}"),
                        [$( concat!("'", $name, "'") ),+].join(", "),
                        other
                    ))),
                }
            }
            /// The option's name.
            pub fn name(self) -> &'static str {
                $( if self == $variant { return $name; } )+
                unreachable!()
            }
        }
    };
}

named_enum!(Activation, "activation", "tanh" => Activation::ScaledTanh, "relu" => Activation::Relu);
named_enum!(Pooling, "pooling", "sub" => Pooling::Subsample, "avg" => Pooling::Average, "max" => Pooling::Max);
named_enum!(C3Connections, "c3", "table" => C3Connections::TableI, "full" => C3Connections::Full);
named_enum!(
    Init,
    "init",
    "lecun" => Init::LeCun,
    "lecun_sqrt" => Init::LeCunSqrt,
    "he" => Init::He,
    "glorot" => Init::Glorot
);
named_enum!(Output, "output", "softmax" => Output::Softmax, "rbf" => Output::Rbf);
named_enum!(
    Prototypes,
    "rbf_prototypes",
    "bitmaps" => Prototypes::Bitmaps,
    "codes" => Prototypes::Codes
);

/// The options that fix the network's shape and computation.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ArchConfig {
    pub n_classes: usize,
    pub activation: Activation,
    pub pooling: Pooling,
    pub c3: C3Connections,
    pub output: Output,
    pub loss: Loss,
    /// RBF prototypes are trained too (otherwise they stay as drawn).
    pub rbf_trainable: bool,
    /// The RBF prototypes' starting (and, unless trained, fixed) values.
    pub prototypes: Prototypes,
}

impl Default for ArchConfig {
    fn default() -> Self {
        ArchConfig {
            n_classes: 10,
            activation: Activation::ScaledTanh,
            pooling: Pooling::Subsample,
            c3: C3Connections::TableI,
            output: Output::Softmax,
            loss: Loss::CrossEntropy,
            rbf_trainable: false,
            prototypes: Prototypes::Bitmaps,
        }
    }
}

/// A parameter tensor: its public name and shape, and where it sits in the
/// flat vector.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorSpec {
    pub name: &'static str,
    pub shape: Vec<usize>,
    pub offset: usize,
    /// Entries in the flat vector (for C3 with Table I, fewer than the shape's product).
    pub len: usize,
}

/// Offsets of every tensor in the flat parameter vector, plus C3's connection lists.
#[derive(Clone, Debug)]
pub struct Layout {
    pub cfg: ArchConfig,
    pub c1_w: usize,
    pub c1_b: usize,
    pub s2_w: usize,
    pub s2_b: usize,
    pub c3_w: usize,
    pub c3_b: usize,
    pub s4_w: usize,
    pub s4_b: usize,
    pub c5_w: usize,
    pub c5_b: usize,
    pub f6_w: usize,
    pub f6_b: usize,
    pub out_w: usize,
    pub out_b: usize,
    pub total: usize,
    /// S2 map of each C3 connection (connections ordered by C3 map, then S2 map).
    pub conn_in: Vec<usize>,
    /// C3 map of each connection.
    pub conn_out: Vec<usize>,
    /// Connections of C3 map `o` are `conn_start[o]..conn_start[o + 1]`.
    pub conn_start: Vec<usize>,
    /// Connections reading S2 map `c`, in increasing order.
    pub conns_of_input: Vec<Vec<usize>>,
    /// The connections again, ordered by S2 map (`conns_of_input` flattened): those
    /// of S2 map `c` are `tconn_start[c]..tconn_start[c + 1]`, ...
    pub tconn_start: Vec<usize>,
    /// ... each the connection `tconn_k[j]` from C3 map `tconn_out[j]`.
    pub tconn_k: Vec<usize>,
    pub tconn_out: Vec<usize>,
}

impl ArchConfig {
    /// Checks the values that a Python caller could get wrong.
    pub fn validate(&self) -> Result<()> {
        if self.n_classes < 2 || self.n_classes > MAX_CLASSES {
            return Err(LeNetError::value(format!(
                "n_classes must be between 2 and {MAX_CLASSES}; got {}",
                self.n_classes
            )));
        }
        match (self.output, self.loss) {
            (Output::Softmax, Loss::CrossEntropy) => {}
            (Output::Rbf, Loss::Mle | Loss::Map { .. }) => {}
            (o, l) => {
                return Err(LeNetError::value(format!(
                    "loss '{}' does not go with output '{}': use loss='ce' with output='softmax', and 'map' or 'mle' with output='rbf'",
                    l.name(),
                    o.name()
                )))
            }
        }
        if self.output == Output::Rbf && self.n_classes > crate::rbf::N_BITMAPS {
            return Err(LeNetError::value(format!(
                "output='rbf' has one prototype per digit, so at most {} classes; got {} classes (use output='softmax')",
                crate::rbf::N_BITMAPS,
                self.n_classes
            )));
        }
        Ok(())
    }

    /// Whether C3 map `o` reads S2 map `c`.
    pub fn connected(&self, c: usize, o: usize) -> bool {
        match self.c3 {
            C3Connections::TableI => TABLE_I[c][o],
            C3Connections::Full => true,
        }
    }

    /// Builds the parameter layout.
    pub fn layout(&self) -> Layout {
        let mut conn_in = Vec::new();
        let mut conn_out = Vec::new();
        let mut conn_start = vec![0];
        for o in 0..C3_MAPS {
            for c in 0..C1_MAPS {
                if self.connected(c, o) {
                    conn_in.push(c);
                    conn_out.push(o);
                }
            }
            conn_start.push(conn_in.len());
        }
        let mut conns_of_input = vec![Vec::new(); C1_MAPS];
        for (k, &c) in conn_in.iter().enumerate() {
            conns_of_input[c].push(k);
        }
        let tconn_k: Vec<usize> = conns_of_input.concat();
        let tconn_out = tconn_k.iter().map(|&k| conn_out[k]).collect();
        let mut tconn_start = vec![0];
        for ks in &conns_of_input {
            tconn_start.push(tconn_start.last().copied().unwrap_or(0) + ks.len());
        }
        let sub = self.pooling == Pooling::Subsample;
        let mut at = 0usize;
        let mut take = |n: usize| {
            let o = at;
            at += n;
            o
        };
        let c1_w = take(C1_MAPS * KK);
        let c1_b = take(C1_MAPS);
        let s2_w = take(if sub { C1_MAPS } else { 0 });
        let s2_b = take(if sub { C1_MAPS } else { 0 });
        let c3_w = take(conn_in.len() * KK);
        let c3_b = take(C3_MAPS);
        let s4_w = take(if sub { C3_MAPS } else { 0 });
        let s4_b = take(if sub { C3_MAPS } else { 0 });
        let c5_w = take(C5_UNITS * C5_IN);
        let c5_b = take(C5_UNITS);
        let f6_w = take(F6_UNITS * C5_UNITS);
        let f6_b = take(F6_UNITS);
        let out_w = take(self.n_classes * F6_UNITS);
        let out_b = take(if self.output == Output::Rbf {
            0
        } else {
            self.n_classes
        });
        Layout {
            cfg: *self,
            c1_w,
            c1_b,
            s2_w,
            s2_b,
            c3_w,
            c3_b,
            s4_w,
            s4_b,
            c5_w,
            c5_b,
            f6_w,
            f6_b,
            out_w,
            out_b,
            total: at,
            conn_in,
            conn_out,
            conn_start,
            conns_of_input,
            tconn_start,
            tconn_k,
            tconn_out,
        }
    }
}

impl Layout {
    /// Number of trainable parameters (fixed RBF prototypes excluded).
    pub fn n_params(&self) -> usize {
        self.total - self.frozen().len()
    }

    /// Length of the flat parameter vector (fixed RBF prototypes included).
    pub fn n_params_total(&self) -> usize {
        self.total
    }

    /// Entries of the flat vector that training never changes (the RBF
    /// prototypes, unless they are trainable).
    pub fn frozen(&self) -> std::ops::Range<usize> {
        if self.cfg.output == Output::Rbf && !self.cfg.rbf_trainable {
            self.out_w..self.out_b
        } else {
            self.out_w..self.out_w
        }
    }

    /// Whether the last layer is RBF (penalties: smaller is better).
    pub fn is_rbf(&self) -> bool {
        self.cfg.output == Output::Rbf
    }

    /// Number of C3 connections (kernels).
    pub fn n_conns(&self) -> usize {
        self.conn_in.len()
    }

    fn has_subsample(&self) -> bool {
        self.cfg.pooling == Pooling::Subsample
    }

    /// The public tensors in their canonical order.
    pub fn tensors(&self) -> Vec<TensorSpec> {
        let k = self.cfg.n_classes;
        let mut v = Vec::new();
        let mut push = |name, shape: Vec<usize>, offset, len| {
            v.push(TensorSpec {
                name,
                shape,
                offset,
                len,
            })
        };
        push("c1.weight", vec![C1_MAPS, 1, K, K], self.c1_w, C1_MAPS * KK);
        push("c1.bias", vec![C1_MAPS], self.c1_b, C1_MAPS);
        if self.has_subsample() {
            push("s2.weight", vec![C1_MAPS], self.s2_w, C1_MAPS);
            push("s2.bias", vec![C1_MAPS], self.s2_b, C1_MAPS);
        }
        push(
            "c3.weight",
            vec![C3_MAPS, C1_MAPS, K, K],
            self.c3_w,
            self.n_conns() * KK,
        );
        push("c3.bias", vec![C3_MAPS], self.c3_b, C3_MAPS);
        if self.has_subsample() {
            push("s4.weight", vec![C3_MAPS], self.s4_w, C3_MAPS);
            push("s4.bias", vec![C3_MAPS], self.s4_b, C3_MAPS);
        }
        push(
            "c5.weight",
            vec![C5_UNITS, C3_MAPS, K, K],
            self.c5_w,
            C5_UNITS * C5_IN,
        );
        push("c5.bias", vec![C5_UNITS], self.c5_b, C5_UNITS);
        push(
            "f6.weight",
            vec![F6_UNITS, C5_UNITS],
            self.f6_w,
            F6_UNITS * C5_UNITS,
        );
        push("f6.bias", vec![F6_UNITS], self.f6_b, F6_UNITS);
        push("output.weight", vec![k, F6_UNITS], self.out_w, k * F6_UNITS);
        if self.cfg.output != Output::Rbf {
            push("output.bias", vec![k], self.out_b, k);
        }
        v
    }

    /// Expands one tensor from the flat vector into its public (dense) layout.
    pub fn export(&self, spec: &TensorSpec, params: &[f32]) -> Vec<f32> {
        let src = &params[spec.offset..spec.offset + spec.len];
        if spec.name != "c3.weight" {
            return src.to_vec();
        }
        let mut dense = vec![0.0f32; C3_MAPS * C1_MAPS * KK];
        for (kc, (&c, &o)) in self.conn_in.iter().zip(&self.conn_out).enumerate() {
            let dst = (o * C1_MAPS + c) * KK;
            dense[dst..dst + KK].copy_from_slice(&src[kc * KK..(kc + 1) * KK]);
        }
        dense
    }

    /// Writes one tensor given in its public layout into the flat vector.
    /// For C3, entries outside the connection map must be exactly zero.
    pub fn import(&self, spec: &TensorSpec, dense: &[f32], params: &mut [f32]) -> Result<()> {
        let dst = &mut params[spec.offset..spec.offset + spec.len];
        if spec.name != "c3.weight" {
            dst.copy_from_slice(dense);
            return Ok(());
        }
        for o in 0..C3_MAPS {
            for c in 0..C1_MAPS {
                if !self.cfg.connected(c, o) {
                    let at = (o * C1_MAPS + c) * KK;
                    if dense[at..at + KK].iter().any(|&v| v != 0.0) {
                        return Err(LeNetError::value(format!(
                            "c3.weight[{o}, {c}] must be all zeros: C3 map {o} is not connected to S2 map {c} in Table I"
                        )));
                    }
                }
            }
        }
        for (kc, (&c, &o)) in self.conn_in.iter().zip(&self.conn_out).enumerate() {
            let src = (o * C1_MAPS + c) * KK;
            dst[kc * KK..(kc + 1) * KK].copy_from_slice(&dense[src..src + KK]);
        }
        Ok(())
    }

    /// Fan-in of the unit that each flat parameter feeds, and its fan-out
    /// (for Glorot), plus whether it is a bias.
    fn fans(&self) -> Vec<(usize, usize, bool)> {
        let mut f = vec![(1, 1, false); self.total];
        let mut set = |off: usize, len: usize, fin: usize, fout: usize, bias: bool| {
            for e in &mut f[off..off + len] {
                *e = (fin, fout, bias);
            }
        };
        set(self.c1_w, C1_MAPS * KK, KK, C1_MAPS * KK, false);
        set(self.c1_b, C1_MAPS, KK, C1_MAPS * KK, true);
        if self.has_subsample() {
            set(self.s2_w, C1_MAPS, 4, 1, false);
            set(self.s2_b, C1_MAPS, 4, 1, true);
            set(self.s4_w, C3_MAPS, 4, 1, false);
            set(self.s4_b, C3_MAPS, 4, 1, true);
        }
        for o in 0..C3_MAPS {
            let n_in = self.conn_start[o + 1] - self.conn_start[o];
            let fan_out = C3_MAPS * KK; // a rough count, for Glorot only
            set(
                self.c3_w + self.conn_start[o] * KK,
                n_in * KK,
                n_in * KK,
                fan_out,
                false,
            );
            set(self.c3_b + o, 1, n_in * KK, fan_out, true);
        }
        set(self.c5_w, C5_UNITS * C5_IN, C5_IN, C5_UNITS, false);
        set(self.c5_b, C5_UNITS, C5_IN, C5_UNITS, true);
        set(self.f6_w, F6_UNITS * C5_UNITS, C5_UNITS, F6_UNITS, false);
        set(self.f6_b, F6_UNITS, C5_UNITS, F6_UNITS, true);
        let k = self.cfg.n_classes;
        set(self.out_w, k * F6_UNITS, F6_UNITS, k, false);
        set(self.out_b, self.out_b_len(), F6_UNITS, k, true);
        f
    }

    fn out_b_len(&self) -> usize {
        self.total - self.out_b
    }

    /// Draws a fresh parameter vector.
    pub fn init_params(&self, init: Init, rng: &mut crate::rng::Rng) -> Vec<f32> {
        let fans = self.fans();
        let mut p = vec![0.0f32; self.total];
        let sub = |i: usize| {
            let s2 = self.s2_w..self.s2_w + C1_MAPS;
            let s4 = self.s4_w..self.s4_w + C3_MAPS;
            self.has_subsample() && (s2.contains(&i) || s4.contains(&i))
        };
        for (i, (v, &(fin, fout, bias))) in p.iter_mut().zip(&fans).enumerate() {
            let limit = match init {
                Init::LeCun => 2.4 / fin as f32,
                // The paper's aim (every weighted sum with the same spread) under its two
                // hypotheses: independent random weights give a sum whose spread grows as
                // sqrt(F), whatever the inputs; a subsampling coefficient is one weight
                // on four highly correlated inputs, a spread that grows as F.
                Init::LeCunSqrt if sub(i) => 2.4 / fin as f32,
                Init::LeCunSqrt => 2.4 / (fin as f32).sqrt(),
                Init::He => (6.0 / fin as f32).sqrt(),
                Init::Glorot => (6.0 / (fin + fout) as f32).sqrt(),
            };
            let paper_rule = matches!(init, Init::LeCun | Init::LeCunSqrt);
            *v = if !paper_rule && bias {
                0.0
            } else if !paper_rule && sub(i) {
                // A subsampling coefficient of 1/4 starts as a plain average.
                0.25
            } else {
                rng.uniform(-limit, limit)
            };
        }
        if self.is_rbf() {
            // Prototypes start as the stylised digit bitmaps or the codes (-1 / +1).
            let k = self.cfg.n_classes;
            let values = match self.cfg.prototypes {
                Prototypes::Bitmaps => crate::rbf::bitmaps(),
                Prototypes::Codes => crate::rbf::codes(),
            };
            p[self.out_w..self.out_w + k * F6_UNITS].copy_from_slice(&values[..k * F6_UNITS]);
        }
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paper_parameter_counts() {
        let l = ArchConfig::default().layout();
        assert_eq!(l.c1_b + C1_MAPS - l.c1_w, 156);
        assert_eq!(l.s2_b + C1_MAPS - l.s2_w, 12);
        assert_eq!(l.c3_b + C3_MAPS - l.c3_w, 1516);
        assert_eq!(l.s4_b + C3_MAPS - l.s4_w, 32);
        assert_eq!(l.c5_b + C5_UNITS - l.c5_w, 48120);
        assert_eq!(l.f6_b + F6_UNITS - l.f6_w, 10164);
        assert_eq!(l.out_b + 10 - l.out_w, 850);
        assert_eq!(l.n_params(), 60850);
    }

    #[test]
    fn table_one_rows() {
        // Maps 0-5 see 3 contiguous maps, 6-11 four contiguous, 12-14 four
        // non-contiguous, 15 all six (counted by hand from the paper).
        let counts: Vec<usize> = (0..16)
            .map(|o| (0..6).filter(|&c| TABLE_I[c][o]).count())
            .collect();
        assert_eq!(counts, [3, 3, 3, 3, 3, 3, 4, 4, 4, 4, 4, 4, 4, 4, 4, 6]);
        for o in 0..6 {
            for d in 0..3 {
                assert!(TABLE_I[(o + d) % 6][o]);
            }
        }
        for o in 6..12 {
            for d in 0..4 {
                assert!(TABLE_I[(o - 6 + d) % 6][o]);
            }
        }
        assert_eq!(ArchConfig::default().layout().n_conns(), 60);
    }

    #[test]
    fn export_import_roundtrip() {
        let l = ArchConfig::default().layout();
        let mut rng = crate::rng::Rng::new(1);
        let p = l.init_params(Init::LeCun, &mut rng);
        let mut q = vec![0.0; p.len()];
        for t in l.tensors() {
            let dense = l.export(&t, &p);
            assert_eq!(dense.len(), t.shape.iter().product::<usize>());
            l.import(&t, &dense, &mut q).unwrap();
        }
        assert_eq!(p, q);
    }

    #[test]
    fn lecun_init_bounds() {
        let l = ArchConfig::default().layout();
        let p = l.init_params(Init::LeCun, &mut crate::rng::Rng::new(5));
        assert!(p[l.c1_w..l.c1_b].iter().all(|v| v.abs() <= 2.4 / 25.0));
        assert!(p[l.c5_w..l.c5_b].iter().all(|v| v.abs() <= 2.4 / 400.0));
        // C3 map 15 has 6 inputs: fan-in 150.
        let s = l.c3_w + l.conn_start[15] * KK;
        assert!(p[s..s + 150].iter().all(|v| v.abs() <= 2.4 / 150.0));
    }
}
