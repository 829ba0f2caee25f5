//! The options that fix the network's shape and computation, and its geometry.
//!
//! Geometry (LeNet-5, 1998): input 1x32x32; C1 6@28x28 (5x5 kernels); S2 6@14x14;
//! C3 16@10x10 (5x5 kernels over the S2 maps of Table I); S4 16@5x5; C5 120
//! (5x5 kernels over all 16 S4 maps, i.e. dense over 400 values); F6 84; output
//! one unit per class.

use crate::error::{LeNetError, Result};
use crate::layers::rbf::N_BITMAPS;

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
pub struct Config {
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

impl Default for Config {
    fn default() -> Self {
        Config {
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

impl Config {
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
        if self.output == Output::Rbf && self.n_classes > N_BITMAPS {
            return Err(LeNetError::value(format!(
                "output='rbf' has one prototype per digit, so at most {} classes; got {} classes (use output='softmax')",
                N_BITMAPS,
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
}
