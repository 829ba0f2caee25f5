//! # lenet5
//!
//! LeNet-5 as described by LeCun, Bottou, Bengio and Haffner (1998), with a
//! Rust core and a Python front.
//!
//! Tensors inside the core are `f32`. Activations of a chunk of images are laid
//! out `[channel][y][x][lane]` (see [`layers`]); parameters are one flat vector
//! whose layout [`Layout`] describes, with the public tensors in PyTorch's
//! `[out][in][ky][kx]` order.
//!
//! The Rust API is [`Network`] with its [`Config`] and [`TrainOptions`].
//!
//! Folders (docs/architecture.md has the whole map):
//! - [`layers`]: one file per layer, with its equations, forward and gradients;
//! - [`model`]: options, parameter layout, initialisation, the network pass;
//! - [`train`]: mini-batch training, curvature estimates and batched inference
//!   over a thread pool, and the optimizers;
//! - [`io`]: model files (safetensors), IDX data files, atomic writes;
//! - [`simd`]: the instruction-set dispatch and vector types (unsafe, as is
//!   `train::team`, the epoch's team of threads, and nothing else);
//! - `python` (feature `python`): the binding, the only code that knows Python.

// Without the binding, the parts that only Python reaches are unused.
#![cfg_attr(not(feature = "python"), allow(dead_code))]

pub(crate) mod data;
pub(crate) mod distort;
pub mod error;
pub mod io;
pub(crate) mod layers;
pub(crate) mod model;
mod network;
pub mod profile;
pub(crate) mod rng;
pub(crate) mod simd;
pub(crate) mod train;

#[cfg(feature = "python")]
mod python;

pub use error::{LeNetError, Result};
pub use model::{
    Activation, C3Connections, Config, Init, Layout, Loss, Output, Pooling, Prototypes, TensorSpec,
    MAX_CLASSES, TABLE_I,
};
pub use network::{Network, TrainOptions};
pub use train::EpochStats;
