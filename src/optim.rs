//! Optimizers: mini-batch SGD with momentum (optionally Nesterov) and weight
//! decay, and Adam. They follow PyTorch's update rules:
//!
//! SGD: `g += wd p; v = mu v + g; p -= lr (nesterov ? g + mu v : v)`.
//! Adam: `g += wd p; m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2;
//! p -= lr (m / (1-b1^t)) / (sqrt(v / (1-b2^t)) + eps)`.
//! AdamW (decoupled weight decay): the same without `g += wd p`, and
//! `p -= lr wd p` (from the old `p`) besides.
//!
//! SDLM (stochastic diagonal Levenberg-Marquardt, the paper's Appendix C):
//! `p -= lr / (mu + h) g` with `h` the diagonal Gauss-Newton estimate of each
//! parameter's second derivative, re-estimated by the caller (see
//! [`crate::train::estimate_curvature`]).
//!
//! A step takes the per-chunk gradient buffers, sums them in chunk order
//! (deterministic) and updates each parameter, range by range over fixed ranges:
//! in parallel on a pool, or on the calling thread (the same bits either way).

use rayon::prelude::*;

use crate::error::{LeNetError, Result};

/// Which update rule.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum OptimKind {
    Sgd {
        momentum: f32,
        nesterov: bool,
    },
    Adam {
        beta1: f32,
        beta2: f32,
        epsilon: f32,
        /// AdamW: weight decay applied to the weights directly, not via the moments.
        decoupled: bool,
    },
    Sdlm {
        mu: f32,
    },
}

/// An optimizer and its state.
#[derive(Clone, Debug)]
pub struct Optimizer {
    pub kind: OptimKind,
    pub learning_rate: f32,
    pub weight_decay: f32,
    /// Momentum buffer (SGD) or first moment (Adam).
    pub m: Vec<f32>,
    /// Second moment (Adam).
    pub v: Vec<f32>,
    /// Steps taken.
    pub t: u64,
    /// Curvature estimates `h_kk` (SDLM).
    pub h: Vec<f32>,
    /// Entries never updated (fixed RBF prototypes).
    pub frozen: std::ops::Range<usize>,
    /// Buffers the next step writes into before swapping them in.
    spare_p: Vec<f32>,
    spare_m: Vec<f32>,
    spare_v: Vec<f32>,
}

const RANGE: usize = 4096;

fn check(name: &str, v: f32, ok: bool, want: &str) -> Result<()> {
    if !v.is_finite() || !ok {
        return Err(LeNetError::value(format!("{name} must be {want}; got {v}")));
    }
    Ok(())
}

impl Optimizer {
    /// A fresh optimizer for `n` parameters.
    pub fn new(kind: OptimKind, learning_rate: f32, weight_decay: f32, n: usize) -> Result<Self> {
        check(
            "learning_rate",
            learning_rate,
            learning_rate > 0.0,
            "a positive number",
        )?;
        check(
            "weight_decay",
            weight_decay,
            weight_decay >= 0.0,
            "a number >= 0",
        )?;
        match kind {
            OptimKind::Sgd { momentum, .. } => check(
                "momentum",
                momentum,
                (0.0..1.0).contains(&momentum),
                "in [0, 1)",
            )?,
            OptimKind::Adam {
                beta1,
                beta2,
                epsilon,
                ..
            } => {
                check("beta1", beta1, (0.0..1.0).contains(&beta1), "in [0, 1)")?;
                check("beta2", beta2, (0.0..1.0).contains(&beta2), "in [0, 1)")?;
                check("epsilon", epsilon, epsilon > 0.0, "a positive number")?;
            }
            OptimKind::Sdlm { mu } => check("mu", mu, mu > 0.0, "a positive number")?,
        }
        // Only the state the rule keeps is allocated.
        let size = |used: bool| if used { n } else { 0 };
        let m = size(!matches!(kind, OptimKind::Sdlm { .. }));
        let v = size(matches!(kind, OptimKind::Adam { .. }));
        let h = size(matches!(kind, OptimKind::Sdlm { .. }));
        Ok(Optimizer {
            kind,
            learning_rate,
            weight_decay,
            m: vec![0.0; m],
            v: vec![0.0; v],
            t: 0,
            h: vec![0.0; h],
            frozen: 0..0,
            spare_p: Vec::new(),
            spare_m: Vec::new(),
            spare_v: Vec::new(),
        })
    }

    /// The per-parameter step sizes `lr / (mu + h)` of SDLM (empty otherwise).
    pub fn step_sizes(&self) -> Vec<f32> {
        match self.kind {
            OptimKind::Sdlm { mu } => self
                .h
                .iter()
                .map(|h| self.learning_rate / (mu + h))
                .collect(),
            _ => Vec::new(),
        }
    }

    /// Sums the chunk gradients (`grads` holds `grads.len() / n` buffers of `n`,
    /// summed in buffer order) and updates `params`. Returns false, leaving
    /// `params` and the state untouched, if any new parameter or optimizer state
    /// would not be finite.
    ///
    /// The new values are written to spare buffers (only the state the rule
    /// keeps: SDLM none, SGD the momentum, Adam both moments), range by range
    /// with the update rule chosen outside each range's loop so the loop
    /// vectorises, and swapped in only if all are finite. With `pool`, the
    /// ranges run in parallel on it; without, on the calling thread (cheaper for
    /// one thread: no hand-over per step, which matters at batch size 1). Each
    /// parameter's update depends only on its own entries, so both give the same
    /// bits.
    pub fn step(
        &mut self,
        params: &mut Vec<f32>,
        grads: &[f32],
        n: usize,
        pool: Option<&rayon::ThreadPool>,
    ) -> bool {
        let chunks = grads.len() / n;
        let t = self.t + 1;
        let (keeps_m, keeps_v) = match self.kind {
            OptimKind::Sgd { .. } => (true, false),
            OptimKind::Adam { .. } => (true, true),
            OptimKind::Sdlm { .. } => (false, false),
        };
        self.spare_p.resize(n, 0.0);
        self.spare_m.resize(if keeps_m { n } else { 0 }, 0.0);
        self.spare_v.resize(if keeps_v { n } else { 0 }, 0.0);
        let rule = Rule {
            kind: self.kind,
            lr: self.learning_rate,
            wd: self.weight_decay,
            t,
            frozen: self.frozen.clone(),
        };
        let old = State {
            p: params,
            m: &self.m,
            v: &self.v,
            h: &self.h,
        };
        let mut ms = self.spare_m.chunks_mut(RANGE);
        let mut vs = self.spare_v.chunks_mut(RANGE);
        let mut ranges: Vec<Range<'_>> = self
            .spare_p
            .chunks_mut(RANGE)
            .enumerate()
            .map(|(r, p)| Range {
                lo: r * RANGE,
                p,
                m: ms.next().unwrap_or_default(),
                v: vs.next().unwrap_or_default(),
            })
            .collect();
        let run = |r: &mut Range<'_>| rule.update(r, &old, grads, n, chunks);
        let finite = match pool {
            Some(pool) => pool.install(|| {
                ranges
                    .par_iter_mut()
                    .map(run)
                    .reduce(|| true, |a, b| a && b)
            }),
            None => ranges.iter_mut().all(run),
        };
        if !finite {
            return false;
        }
        std::mem::swap(params, &mut self.spare_p);
        if keeps_m {
            std::mem::swap(&mut self.m, &mut self.spare_m);
        }
        if keeps_v {
            std::mem::swap(&mut self.v, &mut self.spare_v);
        }
        self.t = t;
        true
    }
}

/// What one step applies to every range.
struct Rule {
    kind: OptimKind,
    lr: f32,
    wd: f32,
    t: u64,
    frozen: std::ops::Range<usize>,
}

/// The values before the step (`m`, `v`, `h` of full length where the rule
/// keeps them).
struct State<'a> {
    p: &'a [f32],
    m: &'a [f32],
    v: &'a [f32],
    h: &'a [f32],
}

/// One range of the new values: parameters from `lo`, and the new state where
/// the rule keeps it (empty otherwise).
struct Range<'a> {
    lo: usize,
    p: &'a mut [f32],
    m: &'a mut [f32],
    v: &'a mut [f32],
}

impl Rule {
    /// Writes the range's new values; true if they are all finite.
    fn update(
        &self,
        out: &mut Range<'_>,
        old: &State<'_>,
        grads: &[f32],
        n: usize,
        chunks: usize,
    ) -> bool {
        let (lo, len) = (out.lo, out.p.len());
        let p0 = &old.p[lo..lo + len];
        let mut g = [0.0f32; RANGE];
        let g = &mut g[..len];
        g.copy_from_slice(&grads[lo..lo + len]);
        for c in 1..chunks {
            for (gi, x) in g.iter_mut().zip(&grads[c * n + lo..c * n + lo + len]) {
                *gi += x;
            }
        }
        let decoupled = matches!(
            self.kind,
            OptimKind::Adam {
                decoupled: true,
                ..
            }
        );
        if self.wd != 0.0 && !decoupled {
            for (gi, p) in g.iter_mut().zip(p0) {
                *gi += self.wd * p;
            }
        }
        let (lr, pn) = (self.lr, &mut *out.p);
        match self.kind {
            OptimKind::Sgd { momentum, nesterov } => {
                let (m0, mn) = (&old.m[lo..lo + len], &mut *out.m);
                for j in 0..len {
                    let m = momentum * m0[j] + g[j];
                    let d = if nesterov { g[j] + momentum * m } else { m };
                    pn[j] = p0[j] - lr * d;
                    mn[j] = m;
                }
            }
            OptimKind::Adam {
                beta1,
                beta2,
                epsilon,
                decoupled,
            } => {
                let ti = self.t.min(i32::MAX as u64) as i32;
                let c1 = 1.0 - beta1.powi(ti);
                let c2 = 1.0 - beta2.powi(ti);
                let decay = if decoupled { lr * self.wd } else { 0.0 };
                let (m0, mn) = (&old.m[lo..lo + len], &mut *out.m);
                let (v0, vn) = (&old.v[lo..lo + len], &mut *out.v);
                for j in 0..len {
                    let m = beta1 * m0[j] + (1.0 - beta1) * g[j];
                    let v = beta2 * v0[j] + (1.0 - beta2) * g[j] * g[j];
                    pn[j] = p0[j] - decay * p0[j] - lr * (m / c1) / ((v / c2).sqrt() + epsilon);
                    mn[j] = m;
                    vn[j] = v;
                }
            }
            OptimKind::Sdlm { mu } => {
                let h = &old.h[lo..lo + len];
                for j in 0..len {
                    pn[j] = p0[j] - lr / (mu + h[j]) * g[j];
                }
            }
        }
        // Entries that never train keep their values (and their state).
        let (a, b) = (self.frozen.start.max(lo), self.frozen.end.min(lo + len));
        if a < b {
            let r = a - lo..b - lo;
            pn[r.clone()].copy_from_slice(&p0[r.clone()]);
            if !out.m.is_empty() {
                out.m[r.clone()].copy_from_slice(&old.m[a..b]);
            }
            if !out.v.is_empty() {
                out.v[r].copy_from_slice(&old.v[a..b]);
            }
        }
        // Without short-circuits, so the check vectorises.
        [&*out.p, &*out.m, &*out.v].iter().fold(true, |ok, s| {
            ok & s.iter().fold(true, |a, x| a & x.is_finite())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sgd_momentum_matches_hand_computation() {
        let kind = OptimKind::Sgd {
            momentum: 0.5,
            nesterov: false,
        };
        let mut o = Optimizer::new(kind, 0.1, 0.0, 2).unwrap();
        let mut p = vec![1.0f32, 2.0];
        // two chunks: gradients sum to [1, -2]
        let g = vec![0.5f32, -1.0, 0.5, -1.0];
        assert!(o.step(&mut p, &g, 2, None));
        assert_eq!(p, vec![0.9, 2.2]);
        assert!(o.step(&mut p, &g, 2, None));
        // v = 0.5 * 1 + 1 = 1.5 -> p = 0.9 - 0.15
        assert!((p[0] - 0.75).abs() < 1e-6);
    }

    #[test]
    fn non_finite_gradient_changes_nothing() {
        let kind = OptimKind::Adam {
            beta1: 0.9,
            beta2: 0.999,
            epsilon: 1e-8,
            decoupled: false,
        };
        let mut o = Optimizer::new(kind, 0.1, 0.0, 2).unwrap();
        let mut p = vec![1.0f32, 2.0];
        assert!(!o.step(&mut p, &[f32::NAN, 0.0], 2, None));
        assert_eq!(p, vec![1.0, 2.0]);
        assert_eq!(o.t, 0);
    }

    #[test]
    fn sdlm_step_divides_by_curvature() {
        let mut o = Optimizer::new(OptimKind::Sdlm { mu: 0.02 }, 0.001, 0.0, 2).unwrap();
        o.h = vec![0.08, 0.0];
        let mut p = vec![1.0f32, 1.0];
        o.step(&mut p, &[1.0, 1.0], 2, None);
        assert!((p[0] - (1.0 - 0.001 / 0.1)).abs() < 1e-7);
        assert!((p[1] - (1.0 - 0.001 / 0.02)).abs() < 1e-7);
    }

    #[test]
    fn frozen_entries_do_not_move() {
        let kind = OptimKind::Sgd {
            momentum: 0.0,
            nesterov: false,
        };
        let mut o = Optimizer::new(kind, 0.1, 0.0, 3).unwrap();
        o.frozen = 1..2;
        let mut p = vec![1.0f32; 3];
        o.step(&mut p, &[1.0, 1.0, 1.0], 3, None);
        assert_eq!(p, vec![0.9, 1.0, 0.9]);
    }

    #[test]
    fn adamw_decays_the_weights_outside_the_moments() {
        let kind = OptimKind::Adam {
            beta1: 0.9,
            beta2: 0.999,
            epsilon: 1e-8,
            decoupled: true,
        };
        let mut o = Optimizer::new(kind, 0.01, 0.5, 1).unwrap();
        let mut p = vec![2.0f32];
        // zero gradient: the moments stay 0, only the decay moves p
        assert!(o.step(&mut p, &[0.0], 1, None));
        assert!((p[0] - (2.0 - 0.01 * 0.5 * 2.0)).abs() < 1e-7);
        assert_eq!(o.m, vec![0.0]);
    }

    #[test]
    fn adam_first_step_is_lr_sized() {
        let kind = OptimKind::Adam {
            beta1: 0.9,
            beta2: 0.999,
            epsilon: 1e-8,
            decoupled: false,
        };
        let mut o = Optimizer::new(kind, 0.01, 0.0, 1).unwrap();
        let mut p = vec![0.0f32];
        o.step(&mut p, &[3.0], 1, None);
        assert!((p[0] + 0.01).abs() < 1e-6);
    }
}
