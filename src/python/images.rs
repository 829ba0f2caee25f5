//! Images from Python: numpy arrays borrowed as they are (uint8, float32,
//! float64, any strides), and the `Dataset` a training set is copied into once.

#![allow(unused_imports)]
use super::*;

/// Images of one of the accepted pixel types.
pub(super) enum Images<'a> {
    U8(ImageView<'a, u8>),
    F32(ImageView<'a, f32>),
    F64(ImageView<'a, f64>),
}

/// ImageArray numpy images of any accepted type.
pub(super) enum ImageArray<'py> {
    U8(PyReadonlyArray3<'py, u8>),
    F32(PyReadonlyArray3<'py, f32>),
    F64(PyReadonlyArray3<'py, f64>),
}

impl<'py> ImageArray<'py> {
    pub(super) fn extract(x: &Bound<'py, PyAny>) -> PyResult<Self> {
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
            return Ok(ImageArray::U8(a));
        }
        if let Ok(a) = x.extract::<PyReadonlyArray3<f32>>() {
            return Ok(ImageArray::F32(a));
        }
        if let Ok(a) = x.extract::<PyReadonlyArray3<f64>>() {
            return Ok(ImageArray::F64(a));
        }
        Err(PyTypeError::new_err(format!(
            "x must have dtype uint8, float32 or float64 in native byte order; got {}",
            arr.dtype()
        )))
    }

    pub(super) fn images(&self) -> PyResult<Images<'_>> {
        Ok(match self {
            ImageArray::U8(a) => Images::U8(ImageView::new(a.as_array())?),
            ImageArray::F32(a) => Images::F32(ImageView::new(a.as_array())?),
            ImageArray::F64(a) => Images::F64(ImageView::new(a.as_array())?),
        })
    }
}

impl Images<'_> {
    pub(super) fn len(&self) -> usize {
        match self {
            Images::U8(v) => v.n,
            Images::F32(v) => v.n,
            Images::F64(v) => v.n,
        }
    }
}

/// Training images and class indices (and optional float32 weights, one per
/// image, multiplying its loss), copied once (see `Network.train_epoch`).
#[pyclass(name = "Dataset", module = "lenet5._lenet5", frozen)]
pub(super) struct PyDataset {
    pub(super) inner: Arc<Dataset>,
}

#[pymethods]
impl PyDataset {
    /// `x`: the images, one array, or an iterable of arrays (chunks of the images
    /// in order, all of one size and of one kind, integer or float), so that a
    /// caller converting another dtype never holds a whole converted copy.
    #[new]
    #[pyo3(signature = (x, y, weights=None))]
    pub(super) fn new(
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
            let b = ImageArray::extract(&chunk)?;
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

    pub(super) fn __len__(&self) -> usize {
        self.inner.len()
    }

    /// Bytes of image data held.
    #[getter]
    pub(super) fn nbytes(&self) -> usize {
        self.inner.images.bytes()
    }
}
