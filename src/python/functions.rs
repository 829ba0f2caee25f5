//! Module functions: IDX and model files, distortions, the RBF prototypes,
//! the test hook and what the module knows about the machine.

#![allow(unused_imports)]
use super::*;

/// Reads an IDX file (gzipped or not) into a numpy array.
#[pyfunction]
pub(super) fn load_idx<'py>(
    py: Python<'py>,
    path: std::path::PathBuf,
) -> PyResult<Bound<'py, PyAny>> {
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
pub(super) fn idx_header(
    py: Python<'_>,
    path: std::path::PathBuf,
) -> PyResult<(&'static str, Vec<usize>)> {
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
pub(super) fn _forward_backward<'py>(
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
    let layers = layer_shapes(k);
    let mut outs = alloc_layers(n, &layers, "the layer outputs")?;
    train::check_output(n, k, 4, "the probabilities")?;
    let pixel = |i: usize, y: usize, x: usize| xv[[i, y, x]];
    let smoothing = label_smoothing as f32;
    let r = train::probe::probe(
        lay,
        &p,
        n,
        pixel,
        &labels,
        lanes,
        curvature,
        smoothing,
        |ws, live, start| collect_layers(ws, ws.lanes, live, start, &mut outs),
    );
    let (grad, loss, proba) = (r.grad, r.loss, r.proba);
    let d = layers_to_dict(py, n, &layers, outs)?;
    d.set_item("proba", PyArray1::from_vec(py, proba).reshape([n, k])?)?;
    d.set_item("loss", loss)?;
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

pub(super) fn parse_distortion(d: &Bound<'_, PyDict>) -> PyResult<Distortion> {
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
pub(super) fn distort<'py>(
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
    let b = ImageArray::extract(x)?;
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
pub(super) fn save_safetensors(
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
pub(super) fn write_atomic(
    py: Python<'_>,
    path: std::path::PathBuf,
    data: &[u8],
    what: &str,
) -> PyResult<()> {
    let context = format!("cannot write {what}");
    py.detach(|| crate::io::write_atomic(&path, data, &context))?;
    Ok(())
}

/// Reads a safetensors file written by `save_safetensors`, checking everything:
/// returns (dict name -> float32 array, dict of metadata). ValueError for any
/// malformed content, OSError when the file cannot be read.
#[pyfunction]
pub(super) fn load_safetensors<'py>(
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
pub(super) fn rbf_bitmaps(py: Python<'_>) -> PyResult<Bound<'_, PyArray2<f32>>> {
    PyArray1::from_vec(py, crate::layers::rbf::bitmaps())
        .reshape([crate::layers::rbf::N_BITMAPS, arch::F6_UNITS])
}

/// The RBF prototypes of `rbf_prototypes="codes"`: rows of a Hadamard matrix of
/// order 84, (10, 84) float32 of -1/+1.
#[pyfunction]
pub(super) fn rbf_codes(py: Python<'_>) -> PyResult<Bound<'_, PyArray2<f32>>> {
    PyArray1::from_vec(py, crate::layers::rbf::codes())
        .reshape([crate::layers::rbf::N_BITMAPS, arch::F6_UNITS])
}

/// Checks that an output of `n` items of `item_bytes` bytes each fits in this
/// machine's memory, before it is allocated: ValueError saying how much it would
/// need otherwise. `what` names the output in the message.
#[pyfunction]
pub(super) fn check_output_size(n: usize, item_bytes: usize, what: &str) -> PyResult<()> {
    train::check_output(n, item_bytes, 1, what)?;
    Ok(())
}

/// Name of the instruction set the kernels run with: "avx512", "avx2" or
/// "scalar", the values `LENET5_ISA` takes.
#[pyfunction]
pub(super) fn _isa() -> &'static str {
    isa().name()
}

/// The native core's set-up on this machine: the kernel path and why it was
/// chosen, the CPU, the threads `n_jobs=-1` uses.
#[pyfunction]
pub(super) fn native_info(py: Python<'_>) -> PyResult<Bound<'_, PyDict>> {
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

/// How many images of `x` (3-D, uint8 0..255 or floats in [0, 1]) have more
/// than half of their border pixels bright (at least half the full intensity):
/// the count behind `InvertedInputWarning`, in one pass over the borders.
#[pyfunction]
pub(super) fn bright_borders(x: &Bound<'_, PyAny>) -> PyResult<usize> {
    fn count<T: Copy>(a: ArrayView3<'_, T>, bright: impl Fn(T) -> bool) -> usize {
        let (h, w) = (a.shape()[1], a.shape()[2]);
        if h == 0 || w == 0 {
            return 0;
        }
        let ring = if h == 1 || w == 1 {
            h * w
        } else {
            2 * (h + w) - 4
        };
        a.outer_iter()
            .filter(|img| {
                let mut n = 0;
                for x in 0..w {
                    n += bright(img[[0, x]]) as usize;
                    if h > 1 {
                        n += bright(img[[h - 1, x]]) as usize;
                    }
                }
                for y in 1..h.saturating_sub(1) {
                    n += bright(img[[y, 0]]) as usize;
                    if w > 1 {
                        n += bright(img[[y, w - 1]]) as usize;
                    }
                }
                n * 2 > ring
            })
            .count()
    }
    Ok(match ImageArray::extract(x)? {
        ImageArray::U8(a) => count(a.as_array(), |v| v >= 128),
        ImageArray::F32(a) => count(a.as_array(), |v| v >= 0.5),
        ImageArray::F64(a) => count(a.as_array(), |v| v >= 0.5),
    })
}
