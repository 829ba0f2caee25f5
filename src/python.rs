//! The Python binding: the only module that uses pyo3 or numpy.
//!
//! `Network` owns the parameters behind an `RwLock<Arc<..>>`: `predict` takes a
//! snapshot and runs without the GIL, while `train_epoch` trains on a private
//! copy and publishes it at every progress point, so a concurrent `predict`
//! sees the model before or after an update, never a torn mix. A second
//! concurrent `train_epoch` gets a RuntimeError.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::thread::ThreadId;
use std::time::{Duration, Instant};

use numpy::ndarray::{ArrayView3, ArrayViewD};
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

use crate::arch::{self, ArchConfig, Layout};
use crate::data::{ImageStore, ImageView, Pixel, BACKGROUND, INK_RANGE};
use crate::distort::{image_rng, Distortion};
use crate::error::LeNetError;
use crate::io::idx::{self, IdxData};
use crate::net::{wide_lanes, CurvatureChunk, TrainChunk, Workspace};
use crate::optim::{OptimKind, Optimizer};
use crate::rng::Rng;
use crate::simd::{dispatch, flush_all, isa, square};
use crate::train::{self, Control, Dataset, InferOut, Order};

impl From<LeNetError> for PyErr {
    fn from(e: LeNetError) -> PyErr {
        match e {
            LeNetError::Value(m) => PyValueError::new_err(m),
            LeNetError::Type(m) => PyTypeError::new_err(m),
            LeNetError::Io {
                context,
                path,
                source,
            } => os_error(&context, path, &source),
            LeNetError::Diverged(m) => PyFloatingPointError::new_err(m),
            LeNetError::Interrupted => PyKeyboardInterrupt::new_err("training interrupted"),
            LeNetError::Memory(m) => PyMemoryError::new_err(m),
        }
    }
}

/// An `OSError` as Python's own file functions raise it: `OSError(errno,
/// strerror, filename)`, which Python turns into `FileNotFoundError`,
/// `PermissionError`, `IsADirectoryError`, ... by the error number.
fn os_error(context: &str, path: Option<std::path::PathBuf>, source: &std::io::Error) -> PyErr {
    use std::io::ErrorKind;
    // Unix error numbers (the same on Linux and macOS, and in Windows' C library).
    let from_kind = match source.kind() {
        ErrorKind::NotFound => 2,
        ErrorKind::PermissionDenied => 13,
        ErrorKind::AlreadyExists => 17,
        ErrorKind::NotADirectory => 20,
        ErrorKind::IsADirectory => 21,
        ErrorKind::InvalidInput => 22,
        ErrorKind::FileTooLarge => 27,
        ErrorKind::StorageFull => 28,
        ErrorKind::ReadOnlyFilesystem => 30,
        _ => 5,
    };
    let raw = if cfg!(unix) {
        source.raw_os_error()
    } else {
        None
    };
    let errno = raw.unwrap_or(from_kind);
    let mut reason = source.to_string();
    if let Some(code) = raw {
        // std adds " (os error N)"; the number is OSError.errno already.
        let tail = format!(" (os error {code})");
        if let Some(cut) = reason.strip_suffix(&tail) {
            reason = cut.to_string();
        }
    }
    let strerror = format!("{context}: {reason}");
    match path {
        Some(p) => PyOSError::new_err((errno, strerror, p.into_os_string())),
        None => PyOSError::new_err((errno, strerror)),
    }
}

/// The thread Python runs its signal handlers on, when known (recorded at import).
static MAIN_THREAD: OnceLock<ThreadId> = OnceLock::new();

/// Seconds between two checks for signals inside a long native loop.
const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// Ctrl-C inside long native loops. The core calls [`Signals::poll`] on the
/// calling thread between units of work (a wave of chunks, a batch, a few
/// hundred images); at most every [`POLL_INTERVAL`] it re-attaches to Python and
/// runs the signal handlers, and keeps the first error (KeyboardInterrupt) to
/// raise once the loop has stopped. Off Python's main thread no handler can run,
/// so it does nothing there and the loop never waits for the GIL.
struct Signals {
    active: bool,
    last: Mutex<Instant>,
    pending: Mutex<Option<PyErr>>,
}

impl Signals {
    fn new() -> Self {
        let here = std::thread::current().id();
        Signals {
            active: MAIN_THREAD.get().is_none_or(|m| *m == here),
            last: Mutex::new(Instant::now()),
            pending: Mutex::new(None),
        }
    }

    fn poll(&self) -> Control {
        if !self.active {
            return Control::Continue;
        }
        if self.pending.lock().map_or(true, |p| p.is_some()) {
            return Control::Stop;
        }
        if let Ok(mut last) = self.last.lock() {
            if last.elapsed() < POLL_INTERVAL {
                return Control::Continue;
            }
            *last = Instant::now();
        }
        Python::attach(|py| match py.check_signals() {
            Ok(()) => Control::Continue,
            Err(e) => {
                self.keep(e);
                Control::Stop
            }
        })
    }

    /// Keeps `e` to raise later, unless an error is already kept.
    fn keep(&self, e: PyErr) {
        if let Ok(mut p) = self.pending.lock() {
            p.get_or_insert(e);
        }
    }

    fn take(&self) -> Option<PyErr> {
        self.pending.lock().ok().and_then(|mut p| p.take())
    }

    /// The result of a loop that `poll` may have stopped: the kept error first.
    fn finish<T>(&self, r: crate::Result<T>) -> PyResult<T> {
        match (self.take(), r) {
            (Some(e), _) => Err(e),
            (None, Err(LeNetError::Interrupted)) => {
                Err(PyKeyboardInterrupt::new_err("interrupted"))
            }
            (None, r) => Ok(r?),
        }
    }
}

/// Images of one of the accepted pixel types.
enum Images<'a> {
    U8(ImageView<'a, u8>),
    F32(ImageView<'a, f32>),
    F64(ImageView<'a, f64>),
}

/// Borrowed numpy images of any accepted type.
enum Borrowed<'py> {
    U8(PyReadonlyArray3<'py, u8>),
    F32(PyReadonlyArray3<'py, f32>),
    F64(PyReadonlyArray3<'py, f64>),
}

impl<'py> Borrowed<'py> {
    fn extract(x: &Bound<'py, PyAny>) -> PyResult<Self> {
        let Ok(arr) = x.cast::<PyUntypedArray>() else {
            return Err(PyTypeError::new_err(format!(
                "x must be a numpy.ndarray; got {}",
                x.get_type().name()?
            )));
        };
        if arr.ndim() != 3 {
            return Err(PyValueError::new_err(format!(
                "x must be a 3-D array (n, 28, 28) or (n, 32, 32); got shape {:?}",
                arr.shape()
            )));
        }
        if let Ok(a) = x.extract::<PyReadonlyArray3<u8>>() {
            return Ok(Borrowed::U8(a));
        }
        if let Ok(a) = x.extract::<PyReadonlyArray3<f32>>() {
            return Ok(Borrowed::F32(a));
        }
        if let Ok(a) = x.extract::<PyReadonlyArray3<f64>>() {
            return Ok(Borrowed::F64(a));
        }
        Err(PyTypeError::new_err(format!(
            "x must have dtype uint8, float32 or float64 in native byte order; got {}",
            arr.dtype()
        )))
    }

    fn images(&self) -> PyResult<Images<'_>> {
        Ok(match self {
            Borrowed::U8(a) => Images::U8(ImageView::new(a.as_array())?),
            Borrowed::F32(a) => Images::F32(ImageView::new(a.as_array())?),
            Borrowed::F64(a) => Images::F64(ImageView::new(a.as_array())?),
        })
    }
}

impl Images<'_> {
    fn len(&self) -> usize {
        match self {
            Images::U8(v) => v.n,
            Images::F32(v) => v.n,
            Images::F64(v) => v.n,
        }
    }
}

/// Threads for `n_jobs`: 0 or -1 means every core; more threads than cores
/// never help (the work is split into the same chunks either way), so larger
/// values are capped at the core count.
fn n_threads(n_jobs: i64) -> PyResult<usize> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    match n_jobs {
        0 | -1 => Ok(cores),
        n if n > 0 => Ok((n as usize).min(cores)),
        n => Err(PyValueError::new_err(format!(
            "n_jobs must be a positive integer, or 0 / -1 for all cores; got {n}"
        ))),
    }
}

/// A thread pool private to one model, rebuilt after a fork.
#[derive(Default)]
struct PoolCache {
    pool: Option<(usize, u32, Arc<rayon::ThreadPool>)>,
}

impl PoolCache {
    fn get(&mut self, threads: usize) -> PyResult<Arc<rayon::ThreadPool>> {
        let pid = std::process::id();
        if let Some((t, p, pool)) = &self.pool {
            if *t == threads && *p == pid {
                return Ok(pool.clone());
            }
        }
        if let Some((_, p, old)) = self.pool.take() {
            if p != pid {
                // Forked: the old pool's threads do not exist in this process;
                // never touch it again.
                std::mem::forget(old);
            }
        }
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("lenet5-{i}"))
            .build()
            .map_err(|e| PyRuntimeError::new_err(format!("cannot start threads: {e}")))?;
        let pool = Arc::new(pool);
        self.pool = Some((threads, pid, pool.clone()));
        Ok(pool)
    }
}

#[derive(Clone)]
struct TrainState {
    opt: Option<Optimizer>,
    rng: Rng,
}

/// The LeNet-5 network and its training state (native part of `lenet5.LeNet5`).
#[pyclass(name = "Network", module = "lenet5._lenet5", frozen)]
struct PyNetwork {
    layout: Layout,
    init: arch::Init,
    seed: u64,
    params: RwLock<Arc<Vec<f32>>>,
    train: Mutex<TrainState>,
    /// Shared with the copies made by `copy`, so that they reuse its threads.
    pools: Arc<Mutex<PoolCache>>,
}

fn lock_err<T>(_: T) -> PyErr {
    PyRuntimeError::new_err("internal lock poisoned")
}

impl PyNetwork {
    fn snapshot(&self) -> PyResult<Arc<Vec<f32>>> {
        Ok(self.params.read().map_err(lock_err)?.clone())
    }

    fn publish(&self, p: Vec<f32>) {
        if let Ok(mut g) = self.params.write() {
            *g = Arc::new(p);
        }
    }

    fn pool(&self, n_jobs: i64) -> PyResult<Arc<rayon::ThreadPool>> {
        let t = n_threads(n_jobs)?;
        self.pools.lock().map_err(lock_err)?.get(t)
    }

    fn k(&self) -> usize {
        self.layout.cfg.n_classes
    }
}

fn parse_label(n: usize, k: Option<usize>, y: &PyReadonlyArray1<'_, i64>) -> PyResult<Vec<u32>> {
    let y = y.as_array();
    if y.len() != n {
        return Err(PyValueError::new_err(format!(
            "x and y must have the same number of samples; got {n} images and {} labels",
            y.len()
        )));
    }
    let mut out = Vec::new();
    out.try_reserve_exact(train::check_output(n, 1, 4, "the class indices")?)
        .map_err(|_| {
            PyMemoryError::new_err(format!(
                "cannot allocate {} MiB for the class indices",
                n >> 18
            ))
        })?;
    for (i, &v) in y.iter().enumerate() {
        let bad = v < 0 || v > u32::MAX as i64 || k.is_some_and(|k| v as usize >= k);
        if bad {
            return Err(PyValueError::new_err(format!(
                "class indices must be in [0, {}); label {i} is {v}",
                k.map_or("2^32".to_string(), |k| k.to_string())
            )));
        }
        out.push(v as u32);
    }
    Ok(out)
}

#[pymethods]
impl PyNetwork {
    #[new]
    #[pyo3(signature = (n_classes, *, activation="tanh", pooling="sub", c3="table", output="softmax", init="lecun", seed=0, loss=None, map_j=0.1, rbf_trainable=false, rbf_prototypes="bitmaps"))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        n_classes: i64,
        activation: &str,
        pooling: &str,
        c3: &str,
        output: &str,
        init: &str,
        seed: u64,
        loss: Option<&str>,
        map_j: f64,
        rbf_trainable: bool,
        rbf_prototypes: &str,
    ) -> PyResult<Self> {
        if n_classes < 2 || n_classes > arch::MAX_CLASSES as i64 {
            return Err(PyValueError::new_err(format!(
                "n_classes must be between 2 and {}; got {n_classes}",
                arch::MAX_CLASSES
            )));
        }
        let cfg = ArchConfig {
            n_classes: n_classes as usize,
            activation: arch::Activation::parse(activation)?,
            pooling: arch::Pooling::parse(pooling)?,
            c3: arch::C3Connections::parse(c3)?,
            output: arch::Output::parse(output)?,
            loss: arch::Loss::parse(
                loss.unwrap_or(if output == "rbf" { "map" } else { "ce" }),
                map_j as f32,
            )?,
            rbf_trainable,
            prototypes: arch::Prototypes::parse(rbf_prototypes)?,
        };
        cfg.validate()?;
        let init = arch::Init::parse(init)?;
        let layout = cfg.layout();
        let mut rng = Rng::new(seed);
        let params = layout.init_params(init, &mut rng);
        Ok(PyNetwork {
            layout,
            init,
            seed,
            params: RwLock::new(Arc::new(params)),
            train: Mutex::new(TrainState {
                opt: None,
                rng: Rng::new(seed ^ 0x005E_ED0F_5A4D_u64),
            }),
            pools: Arc::new(Mutex::new(PoolCache::default())),
        })
    }

    /// An independent copy: weights, optimizer state and shuffling generator
    /// (training the copy leaves this network as it is). RuntimeError while this
    /// network is being trained.
    fn copy(&self) -> PyResult<Self> {
        let train = lock_train(&self.train)?.clone();
        Ok(PyNetwork {
            layout: self.layout.clone(),
            init: self.init,
            seed: self.seed,
            params: RwLock::new(Arc::new(self.snapshot()?.as_ref().clone())),
            train: Mutex::new(train),
            pools: self.pools.clone(),
        })
    }

    /// Number of classes of the output layer.
    #[getter]
    fn n_classes(&self) -> usize {
        self.k()
    }

    /// Number of trainable parameters.
    #[getter]
    fn n_params(&self) -> usize {
        self.layout.n_params()
    }

    /// The constructor's keyword values, as a dict.
    fn config<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let c = &self.layout.cfg;
        let d = PyDict::new(py);
        d.set_item("n_classes", c.n_classes)?;
        d.set_item("activation", c.activation.name())?;
        d.set_item("pooling", c.pooling.name())?;
        d.set_item("c3", c.c3.name())?;
        d.set_item("output", c.output.name())?;
        d.set_item("init", self.init.name())?;
        d.set_item("seed", self.seed)?;
        d.set_item("loss", c.loss.name())?;
        if let arch::Loss::Map { j } = c.loss {
            // The shortest decimal that reads back as the stored f32 (0.1, not 0.100000001).
            let j: f64 = j.to_string().parse().unwrap_or(f64::from(j));
            d.set_item("map_j", j)?;
        }
        d.set_item("rbf_trainable", c.rbf_trainable)?;
        d.set_item("rbf_prototypes", c.prototypes.name())?;
        Ok(d)
    }

    /// Copies of the weights, name -> float32 array (PyTorch state_dict layout).
    fn get_weights<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let p = self.snapshot()?;
        self.tensors_dict(py, &p)
    }

    /// Replaces all weights at once from a dict name -> array (float32 or
    /// float64, exact shapes, finite values). Nothing changes if any entry is wrong.
    /// Values too small for a normal float32 (below 1.2e-38 in magnitude) are
    /// stored as zeros of their sign: the kernels never see a subnormal number
    /// (see `simd`).
    fn set_weights(&self, weights: &Bound<'_, PyDict>) -> PyResult<()> {
        let specs = self.layout.tensors();
        let mut given: HashMap<String, Bound<'_, PyAny>> = HashMap::new();
        for (k, v) in weights.iter() {
            let name: String = k.extract().map_err(|_| {
                PyTypeError::new_err(format!(
                    "weight names must be str; got {}",
                    k.repr().map(|r| r.to_string()).unwrap_or_default()
                ))
            })?;
            given.insert(name, v);
        }
        let expected: Vec<&str> = specs.iter().map(|s| s.name).collect();
        let missing: Vec<&str> = expected
            .iter()
            .copied()
            .filter(|n| !given.contains_key(*n))
            .collect();
        let mut extra: Vec<&String> = given
            .keys()
            .filter(|n| !expected.contains(&n.as_str()))
            .collect();
        extra.sort();
        if !missing.is_empty() || !extra.is_empty() {
            return Err(PyValueError::new_err(format!(
                "set_weights needs exactly the keys {expected:?}; missing {missing:?}, unexpected {extra:?}"
            )));
        }
        let mut p = self.snapshot()?.as_ref().clone();
        for s in &specs {
            let v = &given[s.name];
            let mut dense: Vec<f32> = if let Ok(a) = v.extract::<PyReadonlyArrayDyn<f32>>() {
                check_shape(s.name, &s.shape, a.shape())?;
                a.as_array().iter().copied().collect()
            } else if let Ok(a) = v.extract::<PyReadonlyArrayDyn<f64>>() {
                check_shape(s.name, &s.shape, a.shape())?;
                a.as_array().iter().map(|&x| x as f32).collect()
            } else {
                let what = match v.cast::<PyUntypedArray>() {
                    Ok(a) => format!("an array of dtype {}", a.dtype()),
                    Err(_) => v.get_type().name()?.to_string(),
                };
                return Err(PyTypeError::new_err(format!(
                    "{} must be a float32 or float64 numpy array in native byte order; got {what}",
                    s.name
                )));
            };
            if let Some(i) = dense.iter().position(|x| !x.is_finite()) {
                return Err(PyValueError::new_err(format!(
                    "{} must hold finite float32 values; element {i} is not (NaN, infinity, or too large for float32)",
                    s.name
                )));
            }
            flush_all(&mut dense);
            self.layout.import(s, &dense, &mut p)?;
        }
        self.publish(p);
        Ok(())
    }

    /// Class probabilities, (n, n_classes) float32.
    #[pyo3(signature = (x, n_jobs=0))]
    fn predict_proba<'py>(
        &self,
        py: Python<'py>,
        x: &Bound<'py, PyAny>,
        n_jobs: i64,
    ) -> PyResult<Bound<'py, PyArray2<f32>>> {
        self.class_rows(py, x, n_jobs, false)
    }

    /// Class scores before the softmax, (n, n_classes) float32: the logits, or
    /// minus the RBF penalties (``predict_proba`` is their softmax).
    #[pyo3(signature = (x, n_jobs=0))]
    fn decision_function<'py>(
        &self,
        py: Python<'py>,
        x: &Bound<'py, PyAny>,
        n_jobs: i64,
    ) -> PyResult<Bound<'py, PyArray2<f32>>> {
        self.class_rows(py, x, n_jobs, true)
    }

    /// Index of the most probable class, (n,) int64.
    #[pyo3(signature = (x, n_jobs=0))]
    fn predict<'py>(
        &self,
        py: Python<'py>,
        x: &Bound<'py, PyAny>,
        n_jobs: i64,
    ) -> PyResult<Bound<'py, PyArray1<i64>>> {
        let b = Borrowed::extract(x)?;
        let imgs = b.images()?;
        let n = train::check_output(imgs.len(), 1, 8, "the predicted classes")?;
        let mut out: Vec<i64> = Vec::new();
        out.try_reserve_exact(n).map_err(|_| {
            PyMemoryError::new_err(format!(
                "cannot allocate {} MiB for the predicted classes",
                n >> 17
            ))
        })?;
        out.resize(n, 0);
        self.run_infer(py, &imgs, n_jobs, InferOut::Argmax(&mut out))?;
        Ok(PyArray1::from_vec(py, out))
    }

    /// Every layer's outputs for the images `x`: dict layer name -> array.
    fn activations<'py>(
        &self,
        py: Python<'py>,
        x: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let b = Borrowed::extract(x)?;
        let imgs = b.images()?;
        let n = imgs.len();
        let p = self.snapshot()?;
        let lay = &self.layout;
        let layers = layer_shapes(self.k());
        let mut outs = alloc_layers(n, &layers, "the layer outputs")?;
        let signals = Signals::new();
        let r = py.detach(|| -> crate::Result<()> {
            let mut ws = Workspace::new(1, lay.cfg.n_classes);
            for i in 0..n {
                match &imgs {
                    Images::U8(v) => fill_one(v, i, &mut ws)?,
                    Images::F32(v) => fill_one(v, i, &mut ws)?,
                    Images::F64(v) => fill_one(v, i, &mut ws)?,
                }
                crate::net::forward(lay, &p, &mut ws);
                collect_layers(&ws, 1, 1, i, &mut outs);
                if (i + 1) % train::POLL_IMAGES == 0 && signals.poll() == Control::Stop {
                    return Err(LeNetError::Interrupted);
                }
            }
            Ok(())
        });
        signals.finish(r)?;
        layers_to_dict(py, n, &layers, outs)
    }

    /// Forgets the optimizer state and seeds the shuffling generator.
    #[pyo3(signature = (optimizer="sgd", learning_rate=0.01, momentum=0.9, weight_decay=0.0, nesterov=false, beta1=0.9, beta2=0.999, epsilon=1e-8, seed=0, mu=0.02))]
    #[allow(clippy::too_many_arguments)]
    fn reset_optimizer(
        &self,
        optimizer: &str,
        learning_rate: f64,
        momentum: f64,
        weight_decay: f64,
        nesterov: bool,
        beta1: f64,
        beta2: f64,
        epsilon: f64,
        seed: u64,
        mu: f64,
    ) -> PyResult<()> {
        let kind = match optimizer {
            "sdlm" => OptimKind::Sdlm { mu: mu as f32 },
            "sgd" => OptimKind::Sgd {
                momentum: momentum as f32,
                nesterov,
            },
            "adam" | "adamw" => OptimKind::Adam {
                beta1: beta1 as f32,
                beta2: beta2 as f32,
                epsilon: epsilon as f32,
                decoupled: optimizer == "adamw",
            },
            other => {
                return Err(PyValueError::new_err(format!(
                    "optimizer must be one of 'sgd', 'adam', 'adamw', 'sdlm'; got {other:?}"
                )))
            }
        };
        let mut opt = Optimizer::new(
            kind,
            f32_rate(learning_rate)?,
            weight_decay as f32,
            self.layout.n_params_total(),
        )?;
        opt.frozen = self.layout.frozen();
        let mut st = lock_train(&self.train)?;
        st.opt = Some(opt);
        st.rng = Rng::new(seed);
        Ok(())
    }

    /// Sets the learning rate, keeping the optimizer state.
    fn set_learning_rate(&self, learning_rate: f64) -> PyResult<()> {
        let rate = f32_rate(learning_rate)?;
        let mut st = lock_train(&self.train)?;
        match st.opt.as_mut() {
            Some(o) => o.learning_rate = rate,
            None => return Err(PyRuntimeError::new_err("call reset_optimizer first")),
        }
        Ok(())
    }

    /// One pass over `data` (shuffled), releasing the GIL. See the module docs.
    ///
    /// `augment`: None, or a dict of distortion strengths (keys translate,
    /// scale, squeeze, shear; missing keys take their defaults).
    /// `label_smoothing`: in [0, 1), softmax output only.
    #[pyo3(signature = (data, batch_size, n_jobs=0, callback=None, interval=0.2, augment=None, label_smoothing=0.0, order_seed=None, shuffle=true))]
    #[allow(clippy::too_many_arguments)]
    fn train_epoch<'py>(
        &self,
        py: Python<'py>,
        data: PyRef<'py, PyDataset>,
        batch_size: i64,
        n_jobs: i64,
        callback: Option<Py<PyAny>>,
        interval: f64,
        augment: Option<&Bound<'py, PyDict>>,
        label_smoothing: f64,
        order_seed: Option<u64>,
        shuffle: bool,
    ) -> PyResult<Bound<'py, PyDict>> {
        let augment = augment.map(parse_distortion).transpose()?;
        check_smoothing(label_smoothing, self.layout.is_rbf())?;
        if batch_size < 1 {
            return Err(PyValueError::new_err(format!(
                "batch_size must be a positive integer; got {batch_size}"
            )));
        }
        if !(interval.is_finite() && (0.0..=1e6).contains(&interval)) {
            return Err(PyValueError::new_err(format!(
                "interval must be a number of seconds in [0, 1e6]; got {interval}"
            )));
        }
        self.check_labels(&data)?;
        let pool = self.pool(n_jobs)?;
        let mut guard = lock_train(&self.train)?;
        let st = &mut *guard;
        if st.opt.is_none() {
            st.opt = Some(Optimizer::new(
                OptimKind::Sgd {
                    momentum: 0.9,
                    nesterov: false,
                },
                0.01,
                0.0,
                self.layout.n_params_total(),
            )?);
            if let Some(o) = st.opt.as_mut() {
                o.frozen = self.layout.frozen();
            }
        }
        let opt = st.opt.as_mut().expect("set above");
        let rng = &mut st.rng;
        let dataset = data.inner.clone();
        let mut p: Vec<f32> = self.snapshot()?.as_ref().clone();
        let signals = Signals::new();
        let lay = &self.layout;
        let result = py.detach(|| {
            train::train_epoch(
                lay,
                &mut p,
                opt,
                rng,
                &dataset,
                batch_size as usize,
                &pool,
                augment.as_ref(),
                label_smoothing as f32,
                match (shuffle, order_seed) {
                    (false, _) => Order::Data,
                    (true, None) => Order::Shuffled,
                    (true, Some(seed)) => Order::Seeded(seed),
                },
                Duration::from_secs_f64(interval),
                &mut |done, loss, params| {
                    self.publish(params.to_vec());
                    Python::attach(|py| {
                        if let Err(e) = py.check_signals() {
                            signals.keep(e);
                            return Control::Stop;
                        }
                        if let Some(cb) = &callback {
                            if let Err(e) = cb.call1(py, (done, loss)) {
                                signals.keep(e);
                                return Control::Stop;
                            }
                        }
                        Control::Continue
                    })
                },
                &mut || signals.poll(),
            )
        });
        self.publish(p);
        let s = signals.finish(result)?;
        let d = PyDict::new(py);
        let n = s.samples.max(1) as f64;
        d.set_item("loss", s.loss_sum / n)?;
        d.set_item("accuracy", s.correct as f64 / n)?;
        d.set_item("samples", s.samples)?;
        d.set_item("batches", s.batches)?;
        Ok(d)
    }

    /// Re-estimates the SDLM curvature `h_kk` on `n_samples` images of `data`
    /// (drawn with the optimizer's generator). Needs optimizer "sdlm".
    #[pyo3(signature = (data, n_samples=500, n_jobs=0))]
    fn estimate_curvature(
        &self,
        py: Python<'_>,
        data: PyRef<'_, PyDataset>,
        n_samples: i64,
        n_jobs: i64,
    ) -> PyResult<()> {
        if n_samples < 1 {
            return Err(PyValueError::new_err(format!(
                "n_samples must be a positive integer; got {n_samples}"
            )));
        }
        self.check_labels(&data)?;
        let pool = self.pool(n_jobs)?;
        let mut guard = lock_train(&self.train)?;
        let st = &mut *guard;
        let Some(opt) = st.opt.as_mut() else {
            return Err(PyRuntimeError::new_err(
                "call reset_optimizer('sdlm', ...) first",
            ));
        };
        if !matches!(opt.kind, OptimKind::Sdlm { .. }) {
            return Err(PyRuntimeError::new_err(
                "the curvature is only used by optimizer 'sdlm'",
            ));
        }
        let p = self.snapshot()?;
        let lay = &self.layout;
        let dataset = data.inner.clone();
        // Drawn from a copy of the generator: an interrupted estimate changes nothing.
        let mut rng = st.rng.clone();
        let signals = Signals::new();
        let h = py.detach(|| {
            train::estimate_curvature(
                lay,
                &p,
                &dataset,
                n_samples as usize,
                &mut rng,
                &pool,
                &mut || signals.poll(),
            )
        });
        opt.h = signals.finish(h)?;
        st.rng = rng;
        Ok(())
    }

    /// The SDLM curvature estimates `h_kk` (dict name -> array), or None.
    fn curvature<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyDict>>> {
        let st = lock_train(&self.train)?;
        match st.opt.as_ref() {
            Some(o) if !o.h.is_empty() => Ok(Some(self.tensors_dict(py, &o.h)?)),
            _ => Ok(None),
        }
    }

    /// The SDLM per-parameter step sizes `lr / (mu + h_kk)` (dict), or None.
    fn step_sizes<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyDict>>> {
        let st = lock_train(&self.train)?;
        match st.opt.as_ref() {
            Some(o) if !o.h.is_empty() => Ok(Some(self.tensors_dict(py, &o.step_sizes())?)),
            _ => Ok(None),
        }
    }

    /// The training state that `reset_optimizer` starts and training advances, for
    /// saving: None before `reset_optimizer`, else a dict with `step` (updates
    /// taken), `rng` (the four 64-bit words of the shuffling/distortion stream),
    /// `learning_rate` (the last one set) and the flat float32 buffers `m`
    /// (momentum or first moment), `v` (second moment), `h` (SDLM curvature), each
    /// empty when the rule keeps none.
    fn train_state<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyDict>>> {
        let st = lock_train(&self.train)?;
        let Some(o) = st.opt.as_ref() else {
            return Ok(None);
        };
        let d = PyDict::new(py);
        d.set_item("step", o.t)?;
        d.set_item("rng", st.rng.state().to_vec())?;
        d.set_item("learning_rate", f64::from(o.learning_rate))?;
        d.set_item("m", PyArray1::from_slice(py, &o.m))?;
        d.set_item("v", PyArray1::from_slice(py, &o.v))?;
        d.set_item("h", PyArray1::from_slice(py, &o.h))?;
        Ok(Some(d))
    }

    /// Restores `train_state`'s values into the optimizer `reset_optimizer` set up
    /// (the buffers must have the lengths that optimizer keeps; finite values, `v`
    /// and `h` not negative; a learning rate > 0; an `rng` state not all zero).
    /// Nothing changes if any of them is wrong (ValueError).
    #[pyo3(signature = (step, rng, learning_rate, m, v, h))]
    fn set_train_state(
        &self,
        step: u64,
        rng: [u64; 4],
        learning_rate: f64,
        m: PyReadonlyArray1<'_, f32>,
        v: PyReadonlyArray1<'_, f32>,
        h: PyReadonlyArray1<'_, f32>,
    ) -> PyResult<()> {
        let mut st = lock_train(&self.train)?;
        let Some(o) = st.opt.as_ref() else {
            return Err(PyRuntimeError::new_err("call reset_optimizer first"));
        };
        if step >= 1 << 62 {
            return Err(PyValueError::new_err(format!(
                "the optimizer's step count must be below 2**62; got {step}"
            )));
        }
        if rng == [0; 4] {
            return Err(PyValueError::new_err(
                "the random stream's state must not be all zeros",
            ));
        }
        if !(learning_rate.is_finite()
            && learning_rate > 0.0
            && learning_rate <= f64::from(f32::MAX))
        {
            return Err(PyValueError::new_err(format!(
                "the learning rate must be a positive float32 number; got {learning_rate}"
            )));
        }
        let mut buffers = Vec::with_capacity(3);
        for (name, given, want, signed) in [
            ("m", &m, o.m.len(), true),
            ("v", &v, o.v.len(), false),
            ("h", &h, o.h.len(), false),
        ] {
            let a = given.as_array();
            if a.len() != want {
                return Err(PyValueError::new_err(format!(
                    "the optimizer state {name} must hold {want} values for this optimizer and network; got {}",
                    a.len()
                )));
            }
            let mut dense: Vec<f32> = a.iter().copied().collect();
            if let Some(i) = dense
                .iter()
                .position(|x| !x.is_finite() || (!signed && *x < 0.0))
            {
                let want = if signed { "finite" } else { "finite and >= 0" };
                return Err(PyValueError::new_err(format!(
                    "the optimizer state {name} must hold {want} values; element {i} is {}",
                    dense[i]
                )));
            }
            flush_all(&mut dense);
            buffers.push(dense);
        }
        let h = buffers.pop().unwrap_or_default();
        let v = buffers.pop().unwrap_or_default();
        let m = buffers.pop().unwrap_or_default();
        let st = &mut *st;
        let o = st.opt.as_mut().expect("checked above");
        o.t = step;
        o.learning_rate = learning_rate as f32;
        o.m = m;
        o.v = v;
        o.h = h;
        st.rng = Rng::from_state(rng);
        Ok(())
    }

    fn __repr__(&self) -> String {
        let c = &self.layout.cfg;
        format!(
            "Network(n_classes={}, activation='{}', pooling='{}', c3='{}', output='{}', init='{}')",
            c.n_classes,
            c.activation.name(),
            c.pooling.name(),
            c.c3.name(),
            c.output.name(),
            self.init.name()
        )
    }
}

/// The training state, or a RuntimeError if another thread is training. A
/// lock poisoned by an earlier failure is taken over: the state it guards is
/// only replaced whole, never left half-written.
fn lock_train(m: &Mutex<TrainState>) -> PyResult<std::sync::MutexGuard<'_, TrainState>> {
    match m.try_lock() {
        Ok(g) => Ok(g),
        Err(std::sync::TryLockError::Poisoned(e)) => Ok(e.into_inner()),
        Err(std::sync::TryLockError::WouldBlock) => Err(busy()),
    }
}

fn busy() -> PyErr {
    PyRuntimeError::new_err(
        "this model is being trained in another thread; wait for that fit to finish",
    )
}

impl PyNetwork {
    fn tensors_dict<'py>(&self, py: Python<'py>, flat: &[f32]) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        for t in self.layout.tensors() {
            let arr = self.layout.export(&t, flat).into_pyarray(py);
            d.set_item(t.name, arr.reshape(t.shape.clone())?)?;
        }
        Ok(d)
    }

    fn check_labels(&self, data: &PyDataset) -> PyResult<()> {
        let k = self.k();
        if let Some(&m) = data.inner.labels.iter().max() {
            if m as usize >= k {
                return Err(PyValueError::new_err(format!(
                    "the data set has class index {m} but the network has {k} classes"
                )));
            }
        }
        Ok(())
    }

    /// One row per image of `x`: the class scores, or their softmax.
    fn class_rows<'py>(
        &self,
        py: Python<'py>,
        x: &Bound<'py, PyAny>,
        n_jobs: i64,
        scores: bool,
    ) -> PyResult<Bound<'py, PyArray2<f32>>> {
        let b = Borrowed::extract(x)?;
        let imgs = b.images()?;
        let n = imgs.len();
        let k = self.k();
        let what = if scores {
            "the class scores"
        } else {
            "the probabilities"
        };
        let len = train::check_output(n, k, 4, what)?;
        let mut out = train::try_alloc(len, what)?;
        let target = if scores {
            InferOut::Scores(&mut out)
        } else {
            InferOut::Proba(&mut out)
        };
        self.run_infer(py, &imgs, n_jobs, target)?;
        PyArray1::from_vec(py, out).reshape([n, k])
    }

    fn run_infer(
        &self,
        py: Python<'_>,
        imgs: &Images<'_>,
        n_jobs: i64,
        out: InferOut<'_>,
    ) -> PyResult<()> {
        let p = self.snapshot()?;
        let n = imgs.len();
        let wide = wide_lanes();
        let pool = if n >= 2 * wide {
            Some(self.pool(n_jobs)?)
        } else {
            None
        };
        let lay = &self.layout;
        // Fewer than one chunk never polls: no need to look at the thread.
        let signals = (n >= wide).then(Signals::new);
        let run = || -> crate::Result<()> {
            let pool = pool.as_deref();
            let poll = &mut || signals.as_ref().map_or(Control::Continue, Signals::poll);
            match imgs {
                Images::U8(v) => train::infer(lay, &p, v, pool, out, poll),
                Images::F32(v) => train::infer(lay, &p, v, pool, out, poll),
                Images::F64(v) => train::infer(lay, &p, v, pool, out, poll),
            }
        };
        match &signals {
            None => Ok(run()?),
            Some(s) => {
                let r = py.detach(run);
                s.finish(r)
            }
        }
    }
}

/// A learning rate as the optimizer keeps it: a positive float32 that is
/// neither subnormal nor rounded to 0 or infinity (1e-50 would silently become 0).
fn f32_rate(v: f64) -> PyResult<f32> {
    let r = v as f32;
    if !(v > 0.0 && r.is_normal()) {
        return Err(PyValueError::new_err(format!(
            "learning_rate must be a positive number that float32 holds, from {:e} to {:e}; got {v:e}",
            f32::MIN_POSITIVE,
            f32::MAX
        )));
    }
    Ok(r)
}

/// Label smoothing must be in [0, 1), and applies to the softmax output only.
fn check_smoothing(v: f64, rbf: bool) -> PyResult<()> {
    if !(v.is_finite() && (0.0..1.0).contains(&v)) {
        return Err(PyValueError::new_err(format!(
            "label_smoothing must be a finite number in [0, 1); got {v}"
        )));
    }
    if rbf && v > 0.0 {
        return Err(PyValueError::new_err(format!(
            "label_smoothing applies to the cross-entropy of output='softmax'; got {v} with output='rbf'"
        )));
    }
    Ok(())
}

fn check_shape(name: &str, want: &[usize], got: &[usize]) -> PyResult<()> {
    if want != got {
        return Err(PyValueError::new_err(format!(
            "{name} must have shape {want:?}; got {got:?}"
        )));
    }
    Ok(())
}

fn fill_one<T: Pixel>(v: &ImageView<'_, T>, i: usize, ws: &mut Workspace) -> crate::Result<()> {
    v.check(i)?;
    v.write_lane(i, &mut ws.x, 0, 1);
    Ok(())
}

fn layer_shapes(k: usize) -> Vec<(&'static str, Vec<usize>)> {
    use arch::*;
    vec![
        ("c1", vec![C1_MAPS, C1_SIDE, C1_SIDE]),
        ("s2", vec![C1_MAPS, S2_SIDE, S2_SIDE]),
        ("c3", vec![C3_MAPS, C3_SIDE, C3_SIDE]),
        ("s4", vec![C3_MAPS, S4_SIDE, S4_SIDE]),
        ("c5", vec![C5_UNITS]),
        ("f6", vec![F6_UNITS]),
        ("output", vec![k]),
    ]
}

/// Zeroed per-layer outputs for `n` images, after checking that all of them
/// together fit in memory (see [`train::check_output`]).
fn alloc_layers(
    n: usize,
    layers: &[(&'static str, Vec<usize>)],
    what: &str,
) -> PyResult<Vec<Vec<f32>>> {
    let per: usize = layers
        .iter()
        .map(|(_, s)| s.iter().product::<usize>())
        .sum();
    train::check_output(n, per, 4, what)?;
    layers
        .iter()
        .map(|(_, s)| Ok(train::try_alloc(n * s.iter().product::<usize>(), what)?))
        .collect()
}

/// Copies the live lanes of every layer of a workspace into per-image rows.
fn collect_layers(ws: &Workspace, lanes: usize, live: usize, start: usize, outs: &mut [Vec<f32>]) {
    let bufs = [&ws.a1, &ws.a2, &ws.a3, &ws.a4, &ws.a5, &ws.a6, &ws.z];
    for ((buf, out), (_, shape)) in bufs
        .iter()
        .zip(outs.iter_mut())
        .zip(layer_shapes(ws.n_classes))
    {
        let per: usize = shape.iter().product();
        for lane in 0..live {
            let dst = &mut out[(start + lane) * per..(start + lane + 1) * per];
            for (j, d) in dst.iter_mut().enumerate() {
                *d = buf[j * lanes + lane];
            }
        }
    }
}

fn layers_to_dict<'py>(
    py: Python<'py>,
    n: usize,
    layers: &[(&'static str, Vec<usize>)],
    outs: Vec<Vec<f32>>,
) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    for ((name, shape), v) in layers.iter().zip(outs) {
        let mut full = vec![n];
        full.extend(shape);
        d.set_item(*name, v.into_pyarray(py).reshape(full)?)?;
    }
    Ok(d)
}

/// Training images and class indices (and optional float32 weights, one per
/// image, multiplying its loss), copied once (see `Network.train_epoch`).
#[pyclass(name = "Dataset", module = "lenet5._lenet5", frozen)]
struct PyDataset {
    inner: Arc<Dataset>,
}

#[pymethods]
impl PyDataset {
    /// `x`: the images, one array, or an iterable of arrays (chunks of the images
    /// in order, all of one size and of one kind, integer or float), so that a
    /// caller converting another dtype never holds a whole converted copy.
    #[new]
    #[pyo3(signature = (x, y, weights=None))]
    fn new(
        py: Python<'_>,
        x: &Bound<'_, PyAny>,
        y: &Bound<'_, PyAny>,
        weights: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        let y: PyReadonlyArray1<i64> = y.extract().map_err(|_| {
            PyTypeError::new_err("y must be a 1-D int64 numpy array of class indices")
        })?;
        // One array, or chunks pulled one at a time from an iterable.
        let single = x.cast::<PyUntypedArray>().is_ok();
        let mut chunks = if single { None } else { Some(x.try_iter()?) };
        let mut next = || -> PyResult<Option<Bound<'_, PyAny>>> {
            match chunks.as_mut() {
                None => Ok(None),
                Some(it) => it.next().transpose(),
            }
        };
        let mut first = single.then(|| x.clone());
        let mut store: Option<ImageStore> = None;
        let mut count = 0usize;
        while let Some(chunk) = match first.take() {
            Some(c) => Some(c),
            None => next()?,
        } {
            let b = Borrowed::extract(&chunk)?;
            let imgs = b.images()?;
            let (to_u8, side) = match &imgs {
                Images::U8(v) => (true, v.side),
                Images::F32(v) => (false, v.side),
                Images::F64(v) => (false, v.side),
            };
            let s = match store.as_mut() {
                Some(s) => {
                    if matches!(s, ImageStore::U8 { .. }) != to_u8 {
                        return Err(PyTypeError::new_err(
                            "the chunks of x must all be uint8 or all be float",
                        ));
                    }
                    s
                }
                None => store.insert(ImageStore::with_capacity(y.len(), side, to_u8)?),
            };
            count += imgs.len();
            py.detach(|| match &imgs {
                Images::U8(v) => s.push_view(v),
                Images::F32(v) => s.push_view(v),
                Images::F64(v) => s.push_view(v),
            })?;
        }
        let labels = parse_label(count, None, &y)?;
        let store = match store {
            Some(s) => s,
            None => ImageStore::with_capacity(0, 28, true)?,
        };
        let mut dataset = Dataset::new(store, labels)?;
        if let Some(w) = weights {
            let w: PyReadonlyArray1<f32> = w.extract().map_err(|_| {
                PyTypeError::new_err("weights must be a 1-D float32 numpy array, one per sample")
            })?;
            dataset = dataset.with_weights(w.as_array().iter().copied().collect())?;
        }
        Ok(PyDataset {
            inner: Arc::new(dataset),
        })
    }

    fn __len__(&self) -> usize {
        self.inner.len()
    }

    /// Bytes of image data held.
    #[getter]
    fn nbytes(&self) -> usize {
        self.inner.images.bytes()
    }
}

/// Reads an IDX file (gzipped or not) into a numpy array.
#[pyfunction]
fn load_idx<'py>(py: Python<'py>, path: std::path::PathBuf) -> PyResult<Bound<'py, PyAny>> {
    let idx = py.detach(|| idx::read_idx_file(&path))?;
    let shape = idx.shape.clone();
    Ok(match idx.data {
        IdxData::U8(v) => v.into_pyarray(py).reshape(shape)?.into_any(),
        IdxData::I8(v) => v.into_pyarray(py).reshape(shape)?.into_any(),
        IdxData::I16(v) => v.into_pyarray(py).reshape(shape)?.into_any(),
        IdxData::I32(v) => v.into_pyarray(py).reshape(shape)?.into_any(),
        IdxData::F32(v) => v.into_pyarray(py).reshape(shape)?.into_any(),
        IdxData::F64(v) => v.into_pyarray(py).reshape(shape)?.into_any(),
    })
}

/// Reads the header of an IDX file: (dtype name, shape), checked against the
/// file's size, without reading the elements.
#[pyfunction]
fn idx_header(py: Python<'_>, path: std::path::PathBuf) -> PyResult<(&'static str, Vec<usize>)> {
    let (dtype, shape) = py.detach(|| idx::read_idx_header_file(&path))?;
    Ok((dtype.name(), shape))
}

/// Test hook: forward, loss and gradients for inputs already in network units.
///
/// `x` float32 (n, 32, 32), `y` int64 (n,). `lanes` = 1 or the wide width (8 or
/// 16) forces the chunk width (default: wide chunks, single images for the rest).
/// With `curvature=True`, "grads" holds the diagonal Gauss-Newton estimate
/// averaged over the samples instead of the gradient.
#[pyfunction]
#[pyo3(signature = (network, x, y, lanes=None, curvature=false, label_smoothing=0.0))]
fn _forward_backward<'py>(
    py: Python<'py>,
    network: &PyNetwork,
    x: PyReadonlyArray3<'py, f32>,
    y: PyReadonlyArray1<'py, i64>,
    lanes: Option<usize>,
    curvature: bool,
    label_smoothing: f64,
) -> PyResult<Bound<'py, PyDict>> {
    check_smoothing(label_smoothing, network.layout.is_rbf())?;
    let xv: ArrayView3<f32> = x.as_array();
    let (n, h, w) = xv.dim();
    if (h, w) != (32, 32) || n == 0 {
        return Err(PyValueError::new_err(format!(
            "x must be (n>0, 32, 32); got {:?}",
            xv.dim()
        )));
    }
    if let Some(l) = lanes {
        if l != 1 && l != wide_lanes() {
            return Err(PyValueError::new_err(format!(
                "lanes must be 1 or {}; got {l}",
                wide_lanes()
            )));
        }
    }
    let lay = &network.layout;
    let k = lay.cfg.n_classes;
    let labels = parse_label(n, Some(k), &y)?;
    let p = network.snapshot()?;
    let np = lay.n_params_total();
    let layers = layer_shapes(k);
    let mut outs = alloc_layers(n, &layers, "the layer outputs")?;
    train::check_output(n, k, 4, "the probabilities")?;
    let mut grad = vec![0.0f32; np];
    let mut loss = 0.0f64;
    let mut chunk_grad = vec![0.0f32; np];
    let p2: Vec<f32> = if curvature {
        // As `train::estimate_curvature` does.
        p.iter().map(|&v| square(v)).collect()
    } else {
        Vec::new()
    };
    let mut start = 0;
    while start < n {
        let l = lanes.unwrap_or(if n - start >= wide_lanes() {
            wide_lanes()
        } else {
            1
        });
        let live = l.min(n - start);
        let mut ws = Workspace::new(l, k);
        ws.smoothing = label_smoothing as f32;
        ws.x.fill(0.0);
        for lane in 0..live {
            for yy in 0..32 {
                for xx in 0..32 {
                    ws.x[(yy * 32 + xx) * l + lane] = xv[[start + lane, yy, xx]];
                }
            }
        }
        chunk_grad.fill(0.0);
        if curvature {
            dispatch(CurvatureChunk {
                lay,
                p: &p,
                p2: &p2,
                ws: &mut ws,
                labels: &labels[start..start + live],
                scale: 1.0 / n as f32,
                grad: &mut chunk_grad,
            });
        } else {
            let (ls, _) = dispatch(TrainChunk {
                lay,
                p: &p,
                ws: &mut ws,
                labels: &labels[start..start + live],
                weights: None,
                scale: 1.0 / n as f32,
                grad: &mut chunk_grad,
            });
            loss += ls;
        }
        for (g, c) in grad.iter_mut().zip(&chunk_grad) {
            *g += c;
        }
        collect_layers(&ws, l, live, start, &mut outs);
        start += live;
    }
    let d = layers_to_dict(py, n, &layers, outs)?;
    // Probabilities from the logits.
    let zi = d.get_item("output")?.expect("set above");
    let z: PyReadonlyArrayDyn<f32> = zi.extract()?;
    let zv: ArrayViewD<f32> = z.as_array();
    let mut proba = vec![0.0f32; n * k];
    let sign = if lay.is_rbf() { -1.0 } else { 1.0 };
    for i in 0..n {
        let row: Vec<f32> = (0..k).map(|c| sign * zv[[i, c]]).collect();
        let m = row.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
        let s: f32 = row.iter().map(|v| (v - m).exp()).sum();
        for c in 0..k {
            proba[i * k + c] = (row[c] - m).exp() / s;
        }
    }
    d.set_item("proba", PyArray1::from_vec(py, proba).reshape([n, k])?)?;
    d.set_item("loss", loss / n as f64)?;
    let g = PyDict::new(py);
    for t in lay.tensors() {
        g.set_item(
            t.name,
            lay.export(&t, &grad)
                .into_pyarray(py)
                .reshape(t.shape.clone())?,
        )?;
    }
    d.set_item("grads", g)?;
    Ok(d)
}

fn parse_distortion(d: &Bound<'_, PyDict>) -> PyResult<Distortion> {
    let mut out = Distortion::default();
    for (k, v) in d.iter() {
        let key: String = k.extract()?;
        let val: f64 = v.extract().map_err(|_| {
            PyTypeError::new_err(format!(
                "distortion {key} must be a number; got {}",
                v.get_type()
                    .name()
                    .map(|n| n.to_string())
                    .unwrap_or_default()
            ))
        })?;
        let slot = match key.as_str() {
            "translate" => &mut out.translate,
            "scale" => &mut out.scale,
            "squeeze" => &mut out.squeeze,
            "shear" => &mut out.shear,
            other => {
                return Err(PyValueError::new_err(format!(
                    "unknown distortion {other:?}; expected translate, scale, squeeze, shear"
                )))
            }
        };
        *slot = val as f32;
    }
    out.validate()?;
    Ok(out)
}

/// Randomly distorted copies of images `x` ((n, 28, 28) or (n, 32, 32), uint8 or
/// floats in [0, 1]): float32 (n, 32, 32) in [0, 1], image i distorted by the
/// generator of (seed, i). Strengths as in `Network.train_epoch(augment=...)`.
#[pyfunction]
#[pyo3(signature = (x, seed=0, translate=2.0, scale=0.1, squeeze=0.1, shear=0.2))]
fn distort<'py>(
    py: Python<'py>,
    x: &Bound<'py, PyAny>,
    seed: u64,
    translate: f64,
    scale: f64,
    squeeze: f64,
    shear: f64,
) -> PyResult<Bound<'py, PyAny>> {
    let d = Distortion {
        translate: translate as f32,
        scale: scale as f32,
        squeeze: squeeze as f32,
        shear: shear as f32,
    };
    d.validate()?;
    let b = Borrowed::extract(x)?;
    let imgs = b.images()?;
    let n = imgs.len();
    let len = train::check_output(n, 1024, 4, "the distorted images")?;
    let mut out = train::try_alloc(len, "the distorted images")?;
    let signals = Signals::new();
    let r = py.detach(|| -> crate::Result<()> {
        let mut tmp = [0.0f32; 1024];
        for (i, dst) in out.chunks_mut(1024).enumerate() {
            if i > 0 && i % train::POLL_IMAGES == 0 && signals.poll() == Control::Stop {
                return Err(LeNetError::Interrupted);
            }
            match &imgs {
                Images::U8(v) => v.write_lane(i, &mut tmp, 0, 1),
                Images::F32(v) => {
                    v.check(i)?;
                    v.write_lane(i, &mut tmp, 0, 1)
                }
                Images::F64(v) => {
                    v.check(i)?;
                    v.write_lane(i, &mut tmp, 0, 1)
                }
            }
            d.draw(&mut image_rng(seed, i as u64))
                .apply(&tmp, dst, 0, 1);
            for v in dst.iter_mut() {
                *v = ((*v - BACKGROUND) / INK_RANGE).clamp(0.0, 1.0);
            }
        }
        Ok(())
    });
    signals.finish(r)?;
    Ok(PyArray1::from_vec(py, out).reshape([n, 32, 32])?.into_any())
}

/// Writes float32 tensors and string metadata to a safetensors file, atomically
/// (a temporary file in the same folder, flushed, synced, then renamed).
#[pyfunction]
fn save_safetensors(
    py: Python<'_>,
    path: std::path::PathBuf,
    tensors: &Bound<'_, PyDict>,
    metadata: BTreeMap<String, String>,
) -> PyResult<()> {
    let mut list = Vec::with_capacity(tensors.len());
    for (k, v) in tensors.iter() {
        let name: String = k
            .extract()
            .map_err(|_| PyTypeError::new_err("tensor names must be str"))?;
        let a: PyReadonlyArrayDyn<f32> = v.extract().map_err(|_| {
            PyTypeError::new_err(format!(
                "tensor {name:?} must be a float32 numpy array in native byte order"
            ))
        })?;
        let view = a.as_array();
        list.push(crate::io::Tensor {
            name,
            shape: view.shape().to_vec(),
            data: view.iter().copied().collect(),
        });
    }
    py.detach(|| {
        let bytes = crate::io::encode(&list, &metadata)?;
        crate::io::write_file_atomic(&path, &bytes)
    })?;
    Ok(())
}

/// Writes `data` to `path` atomically, as model files are written (see
/// `io::atomic`): a locked temporary file in the same folder, fsynced, then
/// renamed over `path`; removed on any error; stale ones of killed writes to
/// `path` are removed first. OSError (errno, filename) saying "cannot write
/// <what>" when it fails.
#[pyfunction]
#[pyo3(signature = (path, data, what = "file"))]
fn write_atomic(py: Python<'_>, path: std::path::PathBuf, data: &[u8], what: &str) -> PyResult<()> {
    let context = format!("cannot write {what}");
    py.detach(|| crate::io::write_atomic(&path, data, &context))?;
    Ok(())
}

/// Reads a safetensors file written by `save_safetensors`, checking everything:
/// returns (dict name -> float32 array, dict of metadata). ValueError for any
/// malformed content, OSError when the file cannot be read.
#[pyfunction]
fn load_safetensors<'py>(
    py: Python<'py>,
    path: std::path::PathBuf,
) -> PyResult<(Bound<'py, PyDict>, BTreeMap<String, String>)> {
    let (tensors, metadata) = py.detach(|| crate::io::read_file(&path))?;
    let d = PyDict::new(py);
    for t in tensors {
        d.set_item(&t.name, t.data.into_pyarray(py).reshape(t.shape)?)?;
    }
    Ok((d, metadata))
}

/// The RBF prototypes: stylised 7x12 digit bitmaps, (10, 84) float32 of -1/+1.
#[pyfunction]
fn rbf_bitmaps(py: Python<'_>) -> PyResult<Bound<'_, PyArray2<f32>>> {
    PyArray1::from_vec(py, crate::rbf::bitmaps()).reshape([crate::rbf::N_BITMAPS, arch::F6_UNITS])
}

/// The RBF prototypes of `rbf_prototypes="codes"`: rows of a Hadamard matrix of
/// order 84, (10, 84) float32 of -1/+1.
#[pyfunction]
fn rbf_codes(py: Python<'_>) -> PyResult<Bound<'_, PyArray2<f32>>> {
    PyArray1::from_vec(py, crate::rbf::codes()).reshape([crate::rbf::N_BITMAPS, arch::F6_UNITS])
}

/// Checks that an output of `n` items of `item_bytes` bytes each fits in this
/// machine's memory, before it is allocated: ValueError saying how much it would
/// need otherwise. `what` names the output in the message.
#[pyfunction]
fn check_output_size(n: usize, item_bytes: usize, what: &str) -> PyResult<()> {
    train::check_output(n, item_bytes, 1, what)?;
    Ok(())
}

/// Name of the instruction set the kernels run with: "avx512", "avx2" or
/// "scalar", the values `LENET5_ISA` takes.
#[pyfunction]
fn _isa() -> &'static str {
    isa().name()
}

/// The native core's set-up on this machine: the kernel path and why it was
/// chosen, the CPU, the threads `n_jobs=-1` uses.
#[pyfunction]
fn native_info(py: Python<'_>) -> PyResult<Bound<'_, PyDict>> {
    let c = crate::simd::choice();
    let signature = crate::simd::cpu_signature();
    let available: Vec<&str> = c.available.iter().map(|i| i.name()).collect();
    let d = PyDict::new(py);
    d.set_item("version", env!("CARGO_PKG_VERSION"))?;
    d.set_item("isa", c.isa.name())?;
    d.set_item("lanes", c.isa.lanes())?;
    d.set_item("reason", c.reason)?;
    let requested = (!c.requested.is_empty()).then_some(c.requested.as_str());
    d.set_item("requested", requested)?;
    d.set_item("available", available)?;
    d.set_item("cpu", crate::simd::cpu_name())?;
    d.set_item("cpu_family", signature.map(|s| s.0))?;
    d.set_item("cpu_model", signature.map(|s| s.1))?;
    d.set_item("cpu_stepping", signature.map(|s| s.2))?;
    d.set_item("threads", n_threads(-1)?)?;
    d.set_item("arch", std::env::consts::ARCH)?;
    Ok(d)
}

/// The core's constants, defined once in Rust, for the Python side: the
/// squashing function, the pixel mapping, the class limits, Table I and the
/// names every architecture option accepts.
fn add_constants(m: &Bound<'_, PyModule>) -> PyResult<()> {
    use arch::*;
    m.add("TANH_A", crate::kernels::TANH_A)?;
    m.add("TANH_S", crate::kernels::TANH_S)?;
    m.add("BACKGROUND", BACKGROUND)?;
    m.add("INK_RANGE", INK_RANGE)?;
    m.add("MAX_CLASSES", MAX_CLASSES)?;
    m.add("RBF_UNITS", crate::rbf::N_BITMAPS)?;
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
    m.add_function(wrap_pyfunction!(load_safetensors, m)?)?;
    Ok(())
}
