//! `Network`: a network's parameters, its optimizer state and its thread
//! pool, with training, curvature and inference entry points.

#![allow(unused_imports)]
use super::*;

/// Threads for `n_jobs`: 0 or -1 means every core; more threads than cores
/// never help (the work is split into the same chunks either way), so larger
/// values are capped at the core count.
pub(super) fn n_threads(n_jobs: i64) -> PyResult<usize> {
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
pub(super) struct PoolCache {
    pub(super) pool: Option<(usize, u32, Arc<rayon::ThreadPool>)>,
}

impl PoolCache {
    pub(super) fn get(&mut self, threads: usize) -> PyResult<Arc<rayon::ThreadPool>> {
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
pub(super) struct TrainState {
    pub(super) opt: Option<Optimizer>,
    pub(super) rng: Rng,
}

/// The LeNet-5 network and its training state (native part of `lenet5.LeNet5`).
#[pyclass(name = "Network", module = "lenet5._lenet5", frozen)]
pub(super) struct PyNetwork {
    pub(super) layout: Layout,
    pub(super) init: arch::Init,
    pub(super) seed: u64,
    pub(super) params: RwLock<Arc<Vec<f32>>>,
    pub(super) train: Mutex<TrainState>,
    /// Shared with the copies made by `copy`, so that they reuse its threads.
    pub(super) pools: Arc<Mutex<PoolCache>>,
    /// The parameter snapshot last used for a small batch, and its upper layers'
    /// weights transposed for one-image inference ([`upper_transposed`]). The
    /// snapshot is held, so `Arc::ptr_eq` cannot match a newer one by address.
    pub(super) upper_t: UpperCache,
}

type UpperCache = Mutex<Option<(Arc<Vec<f32>>, Arc<Vec<f32>>)>>;

impl PyNetwork {
    pub(super) fn snapshot(&self) -> PyResult<Arc<Vec<f32>>> {
        Ok(self.params.read().map_err(lock_err)?.clone())
    }

    /// [`upper_transposed`] of the snapshot `p`, made once per snapshot.
    pub(super) fn upper_t(&self, p: &Arc<Vec<f32>>) -> PyResult<Arc<Vec<f32>>> {
        let mut cache = self.upper_t.lock().map_err(lock_err)?;
        if let Some((key, t)) = cache.as_ref() {
            if Arc::ptr_eq(key, p) {
                return Ok(t.clone());
            }
        }
        let t = Arc::new(upper_transposed(&self.layout, p));
        *cache = Some((p.clone(), t.clone()));
        Ok(t)
    }

    pub(super) fn publish(&self, p: Vec<f32>) {
        if let Ok(mut g) = self.params.write() {
            *g = Arc::new(p);
        }
    }

    pub(super) fn pool(&self, n_jobs: i64) -> PyResult<Arc<rayon::ThreadPool>> {
        let t = n_threads(n_jobs)?;
        self.pools.lock().map_err(lock_err)?.get(t)
    }

    pub(super) fn k(&self) -> usize {
        self.layout.cfg.n_classes
    }
}

pub(super) fn parse_label(
    n: usize,
    k: Option<usize>,
    y: &PyReadonlyArray1<'_, i64>,
) -> PyResult<Vec<u32>> {
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
    pub(super) fn new(
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
            upper_t: UpperCache::default(),
        })
    }

    /// An independent copy: weights, optimizer state and shuffling generator
    /// (training the copy leaves this network as it is). RuntimeError while this
    /// network is being trained.
    pub(super) fn copy(&self) -> PyResult<Self> {
        let train = lock_train(&self.train)?.clone();
        Ok(PyNetwork {
            layout: self.layout.clone(),
            init: self.init,
            seed: self.seed,
            params: RwLock::new(Arc::new(self.snapshot()?.as_ref().clone())),
            train: Mutex::new(train),
            pools: self.pools.clone(),
            upper_t: UpperCache::default(),
        })
    }

    /// Number of classes of the output layer.
    #[getter]
    pub(super) fn n_classes(&self) -> usize {
        self.k()
    }

    /// Number of trainable parameters.
    #[getter]
    pub(super) fn n_params(&self) -> usize {
        self.layout.n_params()
    }

    /// The constructor's keyword values, as a dict.
    pub(super) fn config<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
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
    pub(super) fn get_weights<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let p = self.snapshot()?;
        self.tensors_dict(py, &p)
    }

    /// Replaces all weights at once from a dict name -> array (float32 or
    /// float64, exact shapes, finite values). Nothing changes if any entry is wrong.
    /// Values too small for a normal float32 (below 1.2e-38 in magnitude) are
    /// stored as zeros of their sign: the kernels never see a subnormal number
    /// (see `simd`).
    pub(super) fn set_weights(&self, weights: &Bound<'_, PyDict>) -> PyResult<()> {
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
    pub(super) fn predict_proba<'py>(
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
    pub(super) fn decision_function<'py>(
        &self,
        py: Python<'py>,
        x: &Bound<'py, PyAny>,
        n_jobs: i64,
    ) -> PyResult<Bound<'py, PyArray2<f32>>> {
        self.class_rows(py, x, n_jobs, true)
    }

    /// Index of the most probable class, (n,) int64.
    #[pyo3(signature = (x, n_jobs=0))]
    pub(super) fn predict<'py>(
        &self,
        py: Python<'py>,
        x: &Bound<'py, PyAny>,
        n_jobs: i64,
    ) -> PyResult<Bound<'py, PyArray1<i64>>> {
        let b = ImageArray::extract(x)?;
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
    pub(super) fn activations<'py>(
        &self,
        py: Python<'py>,
        x: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let b = ImageArray::extract(x)?;
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
                crate::model::pass::run_forward(lay, &p, &mut ws);
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
    pub(super) fn reset_optimizer(
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
    pub(super) fn set_learning_rate(&self, learning_rate: f64) -> PyResult<()> {
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
    pub(super) fn train_epoch<'py>(
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
    pub(super) fn estimate_curvature(
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
    pub(super) fn curvature<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyDict>>> {
        let st = lock_train(&self.train)?;
        match st.opt.as_ref() {
            Some(o) if !o.h.is_empty() => Ok(Some(self.tensors_dict(py, &o.h)?)),
            _ => Ok(None),
        }
    }

    /// The SDLM per-parameter step sizes `lr / (mu + h_kk)` (dict), or None.
    pub(super) fn step_sizes<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyDict>>> {
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
    pub(super) fn train_state<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyDict>>> {
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
    pub(super) fn set_train_state(
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

    pub(super) fn __repr__(&self) -> String {
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
pub(super) fn lock_train(m: &Mutex<TrainState>) -> PyResult<std::sync::MutexGuard<'_, TrainState>> {
    match m.try_lock() {
        Ok(g) => Ok(g),
        Err(std::sync::TryLockError::Poisoned(e)) => Ok(e.into_inner()),
        Err(std::sync::TryLockError::WouldBlock) => Err(busy()),
    }
}

impl PyNetwork {
    pub(super) fn tensors_dict<'py>(
        &self,
        py: Python<'py>,
        flat: &[f32],
    ) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        for t in self.layout.tensors() {
            let arr = self.layout.export(&t, flat).into_pyarray(py);
            d.set_item(t.name, arr.reshape(t.shape.clone())?)?;
        }
        Ok(d)
    }

    pub(super) fn check_labels(&self, data: &PyDataset) -> PyResult<()> {
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
    pub(super) fn class_rows<'py>(
        &self,
        py: Python<'py>,
        x: &Bound<'py, PyAny>,
        n_jobs: i64,
        scores: bool,
    ) -> PyResult<Bound<'py, PyArray2<f32>>> {
        let b = ImageArray::extract(x)?;
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

    pub(super) fn run_infer(
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
        // Fewer than one chunk runs image by image, from transposed upper weights.
        let upper_t = if n < wide {
            Some(self.upper_t(&p)?)
        } else {
            None
        };
        let t = upper_t.as_deref().map(Vec::as_slice);
        // Fewer than one chunk never polls: no need to look at the thread.
        let signals = (n >= wide).then(Signals::new);
        let run = || -> crate::Result<()> {
            let pool = pool.as_deref();
            let poll = &mut || signals.as_ref().map_or(Control::Continue, Signals::poll);
            match imgs {
                Images::U8(v) => train::infer(lay, &p, v, t, pool, out, poll),
                Images::F32(v) => train::infer(lay, &p, v, t, pool, out, poll),
                Images::F64(v) => train::infer(lay, &p, v, t, pool, out, poll),
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

pub(super) fn fill_one<T: Pixel>(
    v: &ImageView<'_, T>,
    i: usize,
    ws: &mut Workspace,
) -> crate::Result<()> {
    v.check(i)?;
    v.write_lane(i, &mut ws.x, 0, 1);
    Ok(())
}

pub(super) fn layer_shapes(k: usize) -> Vec<(&'static str, Vec<usize>)> {
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
pub(super) fn alloc_layers(
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
pub(super) fn collect_layers(
    ws: &Workspace,
    lanes: usize,
    live: usize,
    start: usize,
    outs: &mut [Vec<f32>],
) {
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

pub(super) fn layers_to_dict<'py>(
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
