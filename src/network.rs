//! The Rust API: a LeNet-5 built, trained and run from Rust, without Python.
//!
//! ```
//! use _lenet5::{Config, Init, Network, TrainOptions};
//!
//! // 64 blank 28x28 images of class 0 and 64 with a bar of ink, of class 1.
//! let mut images = vec![0u8; 128 * 28 * 28];
//! for i in 64..128 {
//!     for y in 4..24 {
//!         images[i * 784 + y * 28 + 14] = 255;
//!     }
//! }
//! let labels: Vec<u32> = (0..128).map(|i| (i >= 64) as u32).collect();
//! let config = Config { n_classes: 2, ..Config::default() };
//! let mut net = Network::new(config, Init::He, 0).unwrap();
//! let options = TrainOptions { epochs: 10, batch_size: 8, ..TrainOptions::default() };
//! net.fit(&images, 28, &labels, &options).unwrap();
//! let predicted = net.predict(&images, 28).unwrap();
//! assert_eq!(predicted, labels);
//! ```

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use crate::data::{ImageStore, ImageView};
use crate::error::{LeNetError, Result};
use crate::io::{self, Tensor};
use crate::model::{Config, Init, Layout, TensorSpec};
use crate::rng::Rng;
use crate::train::optim::{OptimKind, Optimizer};
use crate::train::{self, Control, Dataset, EpochStats, InferOut, Order};

/// A network: its options and its parameters.
#[derive(Clone, Debug)]
pub struct Network {
    layout: Layout,
    params: Vec<f32>,
}

/// How [`Network::fit`] trains: plain mini-batch SGD with momentum (the
/// Python estimator offers every optimizer, schedule and option).
#[derive(Clone, Debug, PartialEq)]
pub struct TrainOptions {
    pub epochs: usize,
    pub batch_size: usize,
    pub learning_rate: f32,
    pub momentum: f32,
    pub weight_decay: f32,
    /// Seeds the shuffling of every epoch.
    pub seed: u64,
    /// Worker threads (0: one per core).
    pub threads: usize,
}

impl Default for TrainOptions {
    fn default() -> Self {
        TrainOptions {
            epochs: 10,
            batch_size: 32,
            learning_rate: 0.05,
            momentum: 0.9,
            weight_decay: 0.0,
            seed: 0,
            threads: 0,
        }
    }
}

fn pool(threads: usize) -> Result<rayon::ThreadPool> {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .map_err(|e| LeNetError::value(format!("cannot start the worker threads: {e}")))
}

/// `n` images of `side`x`side` pixels (28 or 32), uint8, in one slice.
fn view(images: &[u8], side: usize) -> Result<ImageView<'_, u8>> {
    let per = side * side;
    if per == 0 || !images.len().is_multiple_of(per) {
        return Err(LeNetError::value(format!(
            "images must hold whole {side}x{side} images; got {} bytes",
            images.len()
        )));
    }
    ImageView::contiguous(images, images.len() / per, side)
}

impl Network {
    /// A network with freshly drawn parameters.
    pub fn new(config: Config, init: Init, seed: u64) -> Result<Self> {
        config.validate()?;
        let layout = config.layout();
        let params = layout.init_params(init, &mut Rng::new(seed));
        Ok(Network { layout, params })
    }

    /// The network's options.
    pub fn config(&self) -> &Config {
        &self.layout.cfg
    }

    /// Number of trainable parameters.
    pub fn n_params(&self) -> usize {
        self.layout.n_params()
    }

    /// The parameter tensors, by name, in PyTorch's layout.
    pub fn tensors(&self) -> Vec<(TensorSpec, Vec<f32>)> {
        let lay = &self.layout;
        lay.tensors()
            .into_iter()
            .map(|t| {
                let v = lay.export(&t, &self.params);
                (t, v)
            })
            .collect()
    }

    /// Trains on `images` (uint8, `side` 28 or 32) with their classes; returns
    /// each epoch's figures.
    pub fn fit(
        &mut self,
        images: &[u8],
        side: usize,
        labels: &[u32],
        options: &TrainOptions,
    ) -> Result<Vec<EpochStats>> {
        let k = self.layout.cfg.n_classes;
        if let Some(&bad) = labels.iter().find(|&&c| c as usize >= k) {
            return Err(LeNetError::value(format!(
                "labels must be class indices below {k}; got {bad}"
            )));
        }
        let view = view(images, side)?;
        let mut store = ImageStore::with_capacity(view.n, side, true)?;
        store.push_view(&view)?;
        let data = Dataset::new(store, labels.to_vec())?;
        let kind = OptimKind::Sgd {
            momentum: options.momentum,
            nesterov: false,
        };
        let n = self.layout.n_params_total();
        let mut opt = Optimizer::new(kind, options.learning_rate, options.weight_decay, n)?;
        let pool = pool(options.threads)?;
        let mut rng = Rng::new(options.seed);
        let mut params = self.params.clone();
        let mut stats = Vec::with_capacity(options.epochs);
        for _ in 0..options.epochs {
            stats.push(train::train_epoch(
                &self.layout,
                &mut params,
                &mut opt,
                &mut rng,
                &data,
                options.batch_size,
                &pool,
                None,
                0.0,
                Order::Shuffled,
                Duration::MAX,
                &mut |_, _, _| Control::Continue,
                &mut || Control::Continue,
            )?);
        }
        self.params = params;
        Ok(stats)
    }

    /// Class probabilities of `images` (uint8, `side` 28 or 32), `[n][K]`.
    pub fn predict_proba(&self, images: &[u8], side: usize) -> Result<Vec<f32>> {
        let view = view(images, side)?;
        let k = self.layout.cfg.n_classes;
        let what = "the probabilities";
        let mut out = train::try_alloc(train::check_output(view.n, k, 4, what)?, what)?;
        self.infer(&view, InferOut::Proba(&mut out))?;
        Ok(out)
    }

    /// The most likely class of each image.
    pub fn predict(&self, images: &[u8], side: usize) -> Result<Vec<u32>> {
        let view = view(images, side)?;
        let mut out = vec![0i64; view.n];
        self.infer(&view, InferOut::Argmax(&mut out))?;
        Ok(out.into_iter().map(|c| c as u32).collect())
    }

    /// Runs the network on every image of `view` over a pool of one thread per core.
    fn infer(&self, view: &ImageView<'_, u8>, out: InferOut<'_>) -> Result<()> {
        let pool = pool(0)?;
        let mut poll = || Control::Continue;
        train::infer(
            &self.layout,
            &self.params,
            view,
            None,
            Some(&pool),
            out,
            &mut poll,
        )
    }

    /// Writes the parameter tensors as a safetensors file (atomically: a
    /// temporary file renamed into place). The Python `LeNet5.load` needs the
    /// estimator's metadata as well; [`Network::load`] reads these files.
    pub fn save(&self, path: &Path) -> Result<()> {
        let tensors: Vec<Tensor> = self
            .tensors()
            .into_iter()
            .map(|(t, data)| Tensor {
                name: t.name.to_string(),
                shape: t.shape,
                data,
            })
            .collect();
        let bytes = io::encode(&tensors, &BTreeMap::new())?;
        io::write_file_atomic(path, &bytes)
    }

    /// Reads the parameter tensors of a network of these options from a
    /// safetensors file (as [`Network::save`] writes, or `LeNet5.save`).
    pub fn load(config: Config, path: &Path) -> Result<Self> {
        config.validate()?;
        let layout = config.layout();
        let (tensors, _) = io::read_file(path)?;
        let mut params = vec![0.0f32; layout.n_params_total()];
        for spec in layout.tensors() {
            let t = tensors
                .iter()
                .find(|t| t.name == spec.name)
                .ok_or_else(|| {
                    LeNetError::value(format!("the model file has no tensor {:?}", spec.name))
                })?;
            if t.shape != spec.shape {
                return Err(LeNetError::value(format!(
                    "tensor {:?} must have shape {:?}; got {:?}",
                    spec.name, spec.shape, t.shape
                )));
            }
            layout.import(&spec, &t.data, &mut params)?;
        }
        Ok(Network { layout, params })
    }
}
