//! One full-batch pass for the tests: the gradient (or the diagonal
//! Gauss-Newton curvature) of the mean loss over a few images, every layer's
//! outputs and the class probabilities, with a chosen chunk width. The
//! Python test suite compares these with its float64 reference.

use crate::layers::dense::softmax_rows;
use crate::model::{wide_lanes, CurvatureChunk, Layout, TrainChunk, Workspace, IN};
use crate::simd::{dispatch, square};

/// What [`probe`] returns.
pub(crate) struct Probe {
    /// Gradient (or curvature) of the mean loss, flat layout.
    pub grad: Vec<f32>,
    /// Mean loss (0 for the curvature pass).
    pub loss: f64,
    /// Class probabilities, `[n][K]`.
    pub proba: Vec<f32>,
}

/// Runs `n` images (`pixel(i, y, x)`, network units, 32x32) through the
/// network in chunks of `lanes` (None: wide chunks, single images for the
/// rest); `each_chunk(ws, live, start)` sees every chunk's workspace after its
/// pass.
#[allow(clippy::too_many_arguments)]
pub(crate) fn probe(
    lay: &Layout,
    p: &[f32],
    n: usize,
    pixel: impl Fn(usize, usize, usize) -> f32,
    labels: &[u32],
    lanes: Option<usize>,
    curvature: bool,
    smoothing: f32,
    mut each_chunk: impl FnMut(&Workspace, usize, usize),
) -> Probe {
    let (k, np) = (lay.cfg.n_classes, lay.n_params_total());
    let mut grad = vec![0.0f32; np];
    let mut chunk_grad = vec![0.0f32; np];
    let mut proba = vec![0.0f32; n * k];
    let mut loss = 0.0f64;
    // Squared as `estimate_curvature` squares them.
    let p2: Vec<f32> = if curvature {
        p.iter().map(|&v| square(v)).collect()
    } else {
        Vec::new()
    };
    let mut start = 0;
    while start < n {
        let wide = if n - start >= wide_lanes() {
            wide_lanes()
        } else {
            1
        };
        let l = lanes.unwrap_or(wide);
        let live = l.min(n - start);
        let mut ws = Workspace::new(l, k);
        ws.smoothing = smoothing;
        ws.x.fill(0.0);
        for lane in 0..live {
            for y in 0..IN {
                for x in 0..IN {
                    ws.x[(y * IN + x) * l + lane] = pixel(start + lane, y, x);
                }
            }
        }
        chunk_grad.fill(0.0);
        let (labels, scale) = (&labels[start..start + live], 1.0 / n as f32);
        if curvature {
            dispatch(CurvatureChunk {
                lay,
                p,
                p2: &p2,
                ws: &mut ws,
                labels,
                scale,
                grad: &mut chunk_grad,
            });
        } else {
            let (ls, _) = dispatch(TrainChunk {
                lay,
                p,
                ws: &mut ws,
                labels,
                weights: None,
                scale,
                grad: &mut chunk_grad,
            });
            loss += ls;
        }
        for (g, c) in grad.iter_mut().zip(&chunk_grad) {
            *g += c;
        }
        softmax_rows(
            &ws,
            lay.is_rbf(),
            live,
            &mut proba[start * k..(start + live) * k],
        );
        each_chunk(&ws, live, start);
        start += live;
    }
    Probe {
        grad,
        loss: loss / n as f64,
        proba,
    }
}
