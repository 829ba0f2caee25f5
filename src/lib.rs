//! # lenet5
//!
//! LeNet-5 as described by LeCun, Bottou, Bengio and Haffner (1998), with a
//! Rust core and a Python front.
//!
//! Tensors inside the core are `f32`. Activations of a chunk of images are laid
//! out `[channel][y][x][lane]` (see [`kernels`]); parameters are one flat vector
//! whose layout [`arch::Layout`] describes, with the public tensors in PyTorch's
//! `[out][in][ky][kx]` order.
//!
//! Modules:
//! - [`arch`]: options, Table I, parameter layout and initialisation;
//! - [`kernels`]: convolution, pooling, dense layers and activations;
//! - [`net`]: one chunk through the network, forward and backward;
//! - [`train`]: mini-batch training and batched inference over a thread pool;
//! - [`optim`]: SGD with momentum, Adam;
//! - [`data`]: pixel mapping and image views;
//! - [`io`]: model files (safetensors), IDX files, atomic writes;
//! - [`simd`]: run-time choice of instruction set; [`rng`]: seeded RNG;
//! - `python` (feature `python`): the only module that knows about Python.

pub mod arch;
pub mod data;
pub mod distort;
pub mod error;
pub mod io;
pub mod kernels;
pub mod net;
pub mod optim;
pub mod profile;
pub mod rbf;
pub mod rng;
pub mod simd;
pub mod train;
pub mod wide;

#[cfg(feature = "python")]
mod python;

pub use error::{LeNetError, Result};
