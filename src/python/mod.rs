//! The Python binding: the only module that uses pyo3 or numpy.
//!
//! `Network` owns the parameters behind an `RwLock<Arc<..>>`: `predict` takes a
//! snapshot and runs without the GIL, while `train_epoch` trains on a private
//! copy and publishes it at every progress point, so a concurrent `predict`
//! sees the model before or after an update, never a torn mix. A second
//! concurrent `train_epoch` gets a RuntimeError.

//! The Python binding: the only module that uses pyo3 or numpy.
//!
//! `Network` owns the parameters behind an `RwLock<Arc<..>>`: `predict` takes a
//! snapshot and runs without the GIL, while `train_epoch` trains on a private
//! copy and publishes it at every progress point, so a concurrent `predict`
//! sees the model before or after an update, never a torn mix. A second
//! concurrent `train_epoch` gets a RuntimeError.

use crate::data::{ImageStore, ImageView, Pixel, BACKGROUND, INK_RANGE};
use crate::distort::{image_rng, Distortion};
use crate::error::LeNetError;
use crate::io::idx::{self, IdxData};
use crate::model::{self as arch, Config as ArchConfig, Layout};
use crate::model::{upper_transposed, wide_lanes, Workspace};
use crate::rng::Rng;
use crate::simd::{flush_all, isa};
use crate::train::optim::{OptimKind, Optimizer};
use crate::train::{self, Control, Dataset, InferOut, Order};
use numpy::ndarray::ArrayView3;
use numpy::{
    IntoPyArray, PyArray1, PyArray2, PyArrayMethods, PyReadonlyArray1, PyReadonlyArray3,
    PyReadonlyArrayDyn, PyUntypedArray, PyUntypedArrayMethods,
};
use pyo3::exceptions::{
    PyFloatingPointError, PyKeyboardInterrupt, PyMemoryError, PyOSError, PyRuntimeError,
    PyTypeError, PyValueError,
};
use pyo3::prelude::*;
use pyo3::types::PyDict;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::thread::ThreadId;
use std::time::{Duration, Instant};

mod errors;
mod functions;
mod images;
mod network;
mod signals;

use errors::*;
use functions::*;
use images::*;
use network::*;
use signals::*;

/// The core's constants, defined once in Rust, for the Python side: the
/// squashing function, the pixel mapping, the class limits, Table I and the
/// names every architecture option accepts.
fn add_constants(m: &Bound<'_, PyModule>) -> PyResult<()> {
    use arch::*;
    m.add("TANH_A", crate::layers::activation::TANH_A)?;
    m.add("TANH_S", crate::layers::activation::TANH_S)?;
    m.add("BACKGROUND", BACKGROUND)?;
    m.add("INK_RANGE", INK_RANGE)?;
    m.add("MAX_CLASSES", MAX_CLASSES)?;
    m.add("RBF_UNITS", crate::layers::rbf::N_BITMAPS)?;
    let table: Vec<String> = TABLE_I
        .iter()
        .map(|row| row.iter().map(|&c| if c { 'X' } else { '.' }).collect())
        .collect();
    m.add("TABLE_I", pyo3::types::PyTuple::new(m.py(), table)?)?;
    let options = PyDict::new(m.py());
    let lists: [(&str, &[&str]); 7] = [
        ("activation", Activation::NAMES),
        ("pooling", Pooling::NAMES),
        ("c3", C3Connections::NAMES),
        ("output", Output::NAMES),
        ("init", Init::NAMES),
        ("rbf_prototypes", Prototypes::NAMES),
        ("loss", Loss::NAMES),
    ];
    for (key, names) in lists {
        options.set_item(key, pyo3::types::PyTuple::new(m.py(), names)?)?;
    }
    m.add("OPTIONS", options)?;
    Ok(())
}

#[pymodule(gil_used = false)]
fn _lenet5(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    // Python runs signal handlers on its main thread only; note which one that
    // is when the module is imported there (see `Signals`).
    let threading = m.py().import("threading")?;
    if threading
        .call_method0("current_thread")?
        .is(&threading.call_method0("main_thread")?)
    {
        let _ = MAIN_THREAD.set(std::thread::current().id());
    }
    add_constants(m)?;
    m.add_function(wrap_pyfunction!(check_output_size, m)?)?;
    m.add_class::<PyNetwork>()?;
    m.add_class::<PyDataset>()?;
    m.add_function(wrap_pyfunction!(load_idx, m)?)?;
    m.add_function(wrap_pyfunction!(idx_header, m)?)?;
    m.add_function(wrap_pyfunction!(_forward_backward, m)?)?;
    m.add_function(wrap_pyfunction!(_isa, m)?)?;
    m.add_function(wrap_pyfunction!(native_info, m)?)?;
    m.add_function(wrap_pyfunction!(rbf_bitmaps, m)?)?;
    m.add_function(wrap_pyfunction!(rbf_codes, m)?)?;
    m.add_function(wrap_pyfunction!(distort, m)?)?;
    m.add_function(wrap_pyfunction!(save_safetensors, m)?)?;
    m.add_function(wrap_pyfunction!(write_atomic, m)?)?;
    m.add_function(wrap_pyfunction!(bright_borders, m)?)?;
    m.add_function(wrap_pyfunction!(load_safetensors, m)?)?;
    Ok(())
}
