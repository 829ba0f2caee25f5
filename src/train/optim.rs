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
//! in parallel on a [`Team`], or on the calling thread (the same bits either way).
//!
//! Floors: no step computes or stores a subnormal number (they are slow on x86,
//! see [`crate::simd`]; flush-to-zero would hide them, but Rust code may not
//! turn it on). Each stored value (weight, momentum, moment) and each summed
//! gradient below a floor is taken as a zero of its sign, the floor being the
//! smallest magnitude whose products with the rule's coefficients (weight
//! decay, betas, learning rate) are still normal, at most [`MAX_FLOOR`]. So a
//! weight that decays towards zero ends at zero rather than in the subnormal
//! range (where it would stay, slowing every kernel that reads it), and a
//! gradient of 1e-30 counts as none. The floors depend only on the
//! hyperparameters: the same on every thread.

use std::sync::atomic::{AtomicBool, Ordering};

use super::team::Team;
use crate::error::{LeNetError, Result};
use crate::simd::{dispatch, zero_below, Math, SimdTask, NORMAL};

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

/// The largest floor, whatever the hyperparameters: magnitudes below it may be
/// taken as zeros (a weight or gradient of 1e-15, next to inputs and weights of
/// order 1, is far below the rounding of any float32 result it takes part in).
pub const MAX_FLOOR: f32 = 1e-15;

/// Bits of the smallest magnitude `x` whose product with `c` (or with any
/// larger coefficient) is normal, with a factor 2 of margin for the rounding
/// of the floor itself; [`NORMAL`] for `c == 0` (no product).
fn floor_for(c: f64) -> u32 {
    floor_bits(if c > 0.0 {
        2.0 * f64::from(f32::MIN_POSITIVE) / c
    } else {
        0.0
    })
}

fn floor_bits(t: f64) -> u32 {
    let t = t.clamp(f64::from(f32::MIN_POSITIVE), f64::from(MAX_FLOOR));
    (t as f32).to_bits()
}

/// A step count from which `1 - beta^t` is exactly 1 in float32 (`beta^t`
/// below 2^-40, and still normal): Adam's bias corrections stop there rather
/// than let `beta^t` go subnormal (after 830 steps for 0.9). The same bits as
/// the plain power for every `t`.
fn settled(beta: f32) -> i32 {
    let t = (40.0 / -f64::from(beta).log2()).ceil();
    if t.is_finite() {
        t.clamp(1.0, f64::from(i32::MAX)) as i32
    } else {
        i32::MAX
    }
}

/// The floors of one step (bits of magnitudes, for [`zero_below`]).
#[derive(Clone, Copy, Debug)]
struct Floors {
    /// Weights: `wd * p` (or AdamW's `lr * wd * p`) stays normal.
    p: u32,
    /// Momentum / first moment: `momentum * m` or `beta1 * m`, and the step
    /// `lr * m` (Adam: `lr * m / (sqrt(v) + eps)` for `sqrt(v)` up to 16).
    m: u32,
    /// Second moment: `beta2 * v`.
    v: u32,
    /// Summed gradient: `lr * g` (SGD), `(1 - beta1) * g` and
    /// `(1 - beta2) * g * g` (Adam), `lr / mu * g` (SDLM).
    g: u32,
}

impl Floors {
    fn new(kind: OptimKind, lr: f32, wd: f32) -> Self {
        let (lr, wd) = (f64::from(lr), f64::from(wd));
        let decoupled = matches!(
            kind,
            OptimKind::Adam {
                decoupled: true,
                ..
            }
        );
        let p = floor_for(if decoupled { lr * wd } else { wd });
        match kind {
            OptimKind::Sgd { momentum, .. } => Floors {
                p,
                m: floor_for(f64::from(momentum)).max(floor_for(lr)),
                v: NORMAL,
                g: floor_for(lr),
            },
            OptimKind::Adam { beta1, beta2, .. } => {
                let (b1, b2) = (f64::from(beta1), f64::from(beta2));
                // (1 - beta2) * g * g is evaluated as ((1 - beta2) * g) * g.
                let square = 2.0 * (f64::from(f32::MIN_POSITIVE) / (1.0 - b2)).sqrt();
                Floors {
                    p,
                    m: floor_for(b1).max(floor_for(lr / 16.0)),
                    v: floor_for(b2),
                    g: floor_for(1.0 - b1).max(floor_bits(square)),
                }
            }
            // The step `lr / (mu + h) * g`, at its largest rate `lr / mu` (a
            // parameter of large curvature `h` may still make a subnormal step
            // from a gradient just above this floor: rare, and never stored).
            OptimKind::Sdlm { mu } => Floors {
                p,
                m: NORMAL,
                v: NORMAL,
                g: floor_for(lr / f64::from(mu)),
            },
        }
    }
}

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

    /// The optimizer of parameters `..k` and that of `k..n`, each with its
    /// part of the state (and of the frozen entries), as if each had been
    /// made for its part alone: the update of every parameter depends on its
    /// own entries only, so the two step to the same bits as the whole.
    pub fn split_at(&self, k: usize, n: usize) -> (Optimizer, Optimizer) {
        let part = |r: std::ops::Range<usize>| {
            let cut = |v: &[f32]| {
                if v.is_empty() {
                    Vec::new()
                } else {
                    v[r.clone()].to_vec()
                }
            };
            let f = &self.frozen;
            Optimizer {
                kind: self.kind,
                learning_rate: self.learning_rate,
                weight_decay: self.weight_decay,
                m: cut(&self.m),
                v: cut(&self.v),
                t: self.t,
                h: cut(&self.h),
                frozen: f.start.clamp(r.start, r.end) - r.start
                    ..f.end.clamp(r.start, r.end) - r.start,
                spare_p: Vec::new(),
                spare_m: Vec::new(),
                spare_v: Vec::new(),
            }
        };
        (part(0..k), part(k..n))
    }

    /// Undoes [`Optimizer::split_at`]`(k, n)`.
    pub fn join(mut lower: Optimizer, mut upper: Optimizer, k: usize) -> Optimizer {
        for (a, b) in [
            (&mut lower.m, &mut upper.m),
            (&mut lower.v, &mut upper.v),
            (&mut lower.h, &mut upper.h),
        ] {
            a.append(b);
        }
        let (lf, uf) = (lower.frozen.clone(), upper.frozen.clone());
        lower.frozen = match (lf.is_empty(), uf.is_empty()) {
            (_, true) => lf,
            (true, false) => uf.start + k..uf.end + k,
            (false, false) => lf.start..uf.end + k,
        };
        lower
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
    /// vectorises, and swapped in only if all are finite. With `team`, the
    /// ranges are shared out among its threads; without, they run on the
    /// calling thread. Each parameter's update depends only on its own entries,
    /// so both give the same bits.
    pub fn step(
        &mut self,
        params: &mut Vec<f32>,
        grads: &[f32],
        n: usize,
        team: Option<&Team>,
    ) -> bool {
        let finite = self.prepare(params, grads, n, team);
        if finite {
            self.commit(params);
        }
        finite
    }

    /// The first half of [`Optimizer::step`]: computes the new values into the
    /// spare buffers and says whether they are all finite, changing nothing
    /// else; [`Optimizer::commit`] then installs them.
    pub fn prepare(
        &mut self,
        params: &[f32],
        grads: &[f32],
        n: usize,
        team: Option<&Team>,
    ) -> bool {
        let chunks = grads.len() / n;
        let t = self.t + 1;
        let (keeps_m, keeps_v) = self.keeps();
        self.spare_p.resize(n, 0.0);
        self.spare_m.resize(if keeps_m { n } else { 0 }, 0.0);
        self.spare_v.resize(if keeps_v { n } else { 0 }, 0.0);
        let rule = Rule {
            kind: self.kind,
            lr: self.learning_rate,
            wd: self.weight_decay,
            t,
            frozen: self.frozen.clone(),
            floors: Floors::new(self.kind, self.learning_rate, self.weight_decay),
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
        let run = |r: &mut Range<'_>| {
            dispatch(Update {
                rule: &rule,
                out: r,
                old: &old,
                grads,
                n,
                chunks,
            })
        };
        match team {
            Some(team) if ranges.len() > 1 => {
                let finite = AtomicBool::new(true);
                team.for_each_mut(&mut ranges, &|_, r| {
                    if !run(r) {
                        finite.store(false, Ordering::Relaxed);
                    }
                });
                finite.into_inner()
            }
            _ => ranges.iter_mut().all(run),
        }
    }

    /// Installs the values [`Optimizer::prepare`] computed (call it only after
    /// a `prepare` that returned true, with the same `params`).
    pub fn commit(&mut self, params: &mut Vec<f32>) {
        let (keeps_m, keeps_v) = self.keeps();
        std::mem::swap(params, &mut self.spare_p);
        if keeps_m {
            std::mem::swap(&mut self.m, &mut self.spare_m);
        }
        if keeps_v {
            std::mem::swap(&mut self.v, &mut self.spare_v);
        }
        self.t += 1;
    }

    /// Whether the rule keeps a first and a second moment.
    fn keeps(&self) -> (bool, bool) {
        match self.kind {
            OptimKind::Sgd { .. } => (true, false),
            OptimKind::Adam { .. } => (true, true),
            OptimKind::Sdlm { .. } => (false, false),
        }
    }
}

/// What one step applies to every range.
struct Rule {
    kind: OptimKind,
    lr: f32,
    wd: f32,
    t: u64,
    frozen: std::ops::Range<usize>,
    floors: Floors,
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

/// One range's update as a task, so that its loops are compiled (and
/// vectorised, 8 or 16 lanes rather than SSE2's 4) for the instruction set
/// [`dispatch`] picks: this pays for the floors at batch size 1, where the step
/// runs once per image. Every operation is a plain IEEE one (Rust never fuses a
/// multiply and an add by itself), so every path gives the same bits.
struct Update<'a, 'r> {
    rule: &'a Rule,
    out: &'a mut Range<'r>,
    old: &'a State<'a>,
    grads: &'a [f32],
    n: usize,
    chunks: usize,
}

impl SimdTask for Update<'_, '_> {
    type Output = bool;
    #[inline(always)]
    fn run<M: Math>(self, _: M) -> bool {
        self.rule
            .update(self.out, self.old, self.grads, self.n, self.chunks)
    }
}

impl Rule {
    /// Writes the range's new values; true if they are all finite.
    ///
    /// One pass per range: the summed gradient (read from the one buffer
    /// directly when there is one chunk, the case of batch size 1; otherwise
    /// summed on the stack in buffer order), the weight decay, the rule and the
    /// finiteness of what it stores, each parameter's operations in the same
    /// order whichever way the gradient is read.
    #[inline(always)]
    fn update(
        &self,
        out: &mut Range<'_>,
        old: &State<'_>,
        grads: &[f32],
        n: usize,
        chunks: usize,
    ) -> bool {
        let (lo, len) = (out.lo, out.p.len());
        let mut sum: [f32; RANGE];
        let g: &[f32] = if chunks == 1 {
            &grads[lo..lo + len]
        } else {
            sum = [0.0; RANGE];
            let s = &mut sum[..len];
            s.copy_from_slice(&grads[lo..lo + len]);
            for c in 1..chunks {
                for (gi, x) in s.iter_mut().zip(&grads[c * n + lo..c * n + lo + len]) {
                    *gi += x;
                }
            }
            s
        };
        let decoupled = matches!(
            self.kind,
            OptimKind::Adam {
                decoupled: true,
                ..
            }
        );
        let finite = if self.wd != 0.0 && !decoupled {
            self.apply::<true>(out, old, g)
        } else {
            self.apply::<false>(out, old, g)
        };
        // Entries that never train keep their values (and their state).
        let (a, b) = (self.frozen.start.max(lo), self.frozen.end.min(lo + len));
        if a < b {
            let r = a - lo..b - lo;
            out.p[r.clone()].copy_from_slice(&old.p[a..b]);
            if !out.m.is_empty() {
                out.m[r.clone()].copy_from_slice(&old.m[a..b]);
            }
            if !out.v.is_empty() {
                out.v[r].copy_from_slice(&old.v[a..b]);
            }
            if !finite {
                // A non-finite value may have been computed for a frozen
                // entry only, and replaced: look at what is stored.
                return [&*out.p, &*out.m, &*out.v].iter().fold(true, |ok, s| {
                    ok & s.iter().fold(true, |a, x| a & x.is_finite())
                });
            }
        }
        finite
    }

    /// The rule over one range, with `g` the summed gradient and, with
    /// `DECAY`, `wd * p` added to it first; true if every value it stores is
    /// finite. Finiteness is folded as the largest magnitude's bits (an
    /// integer maximum per vector: a fold of booleans would pack lanes on
    /// every iteration), finite when below the bits of infinity.
    #[inline(always)]
    fn apply<const DECAY: bool>(&self, out: &mut Range<'_>, old: &State<'_>, g: &[f32]) -> bool {
        let (lo, len) = (out.lo, out.p.len());
        let p0 = &old.p[lo..lo + len];
        let g = &g[..len];
        let wd = self.wd;
        let grad = |j: usize| if DECAY { g[j] + wd * p0[j] } else { g[j] };
        let f = self.floors;
        let (lr, pn) = (self.lr, &mut out.p[..len]);
        let mut worst = 0u32;
        let mag = |x: f32| x.to_bits() & 0x7fff_ffff;
        match self.kind {
            OptimKind::Sgd { momentum, nesterov } => {
                let (m0, mn) = (&old.m[lo..lo + len], &mut out.m[..len]);
                for j in 0..len {
                    let g = zero_below(grad(j), f.g);
                    let m = momentum * m0[j] + g;
                    let d = if nesterov { g + momentum * m } else { m };
                    let p = zero_below(p0[j] - lr * d, f.p);
                    let m = zero_below(m, f.m);
                    worst = worst.max(mag(p)).max(mag(m));
                    pn[j] = p;
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
                let c1 = 1.0 - beta1.powi(ti.min(settled(beta1)));
                let c2 = 1.0 - beta2.powi(ti.min(settled(beta2)));
                let decay = if decoupled { lr * self.wd } else { 0.0 };
                let (m0, mn) = (&old.m[lo..lo + len], &mut out.m[..len]);
                let (v0, vn) = (&old.v[lo..lo + len], &mut out.v[..len]);
                for j in 0..len {
                    let g = zero_below(grad(j), f.g);
                    let m = beta1 * m0[j] + (1.0 - beta1) * g;
                    let v = beta2 * v0[j] + (1.0 - beta2) * g * g;
                    let p = p0[j] - decay * p0[j] - lr * (m / c1) / ((v / c2).sqrt() + epsilon);
                    let (p, m, v) = (zero_below(p, f.p), zero_below(m, f.m), zero_below(v, f.v));
                    worst = worst.max(mag(p)).max(mag(m)).max(mag(v));
                    pn[j] = p;
                    mn[j] = m;
                    vn[j] = v;
                }
            }
            OptimKind::Sdlm { mu } => {
                let h = &old.h[lo..lo + len];
                for j in 0..len {
                    let g = zero_below(grad(j), f.g);
                    let p = zero_below(p0[j] - lr / (mu + h[j]) * g, f.p);
                    worst = worst.max(mag(p));
                    pn[j] = p;
                }
            }
        }
        worst < f32::INFINITY.to_bits()
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

    /// Each update rule with usual hyperparameters: SGD plain and Nesterov,
    /// Adam and AdamW, SDLM.
    fn every_rule() -> [OptimKind; 5] {
        [
            OptimKind::Sgd {
                momentum: 0.9,
                nesterov: false,
            },
            OptimKind::Sgd {
                momentum: 0.9,
                nesterov: true,
            },
            OptimKind::Adam {
                beta1: 0.9,
                beta2: 0.999,
                epsilon: 1e-8,
                decoupled: false,
            },
            OptimKind::Adam {
                beta1: 0.9,
                beta2: 0.999,
                epsilon: 1e-8,
                decoupled: true,
            },
            OptimKind::Sdlm { mu: 0.02 },
        ]
    }

    /// Every rule, one chunk or two, with and without weight decay: a step
    /// whose new weight or state would overflow (or read a NaN gradient)
    /// changes nothing, and the same values in a frozen entry only do not stop
    /// the step (what is stored there is the old value).
    #[test]
    fn non_finite_results_are_refused_except_in_frozen_entries() {
        let kinds = every_rule();
        // 5,000 parameters: two ranges, the bad entry in the second.
        let n = 5000;
        let bad = 4500;
        for kind in kinds {
            for wd in [0.0, 1e-4] {
                for chunks in [1, 2] {
                    for value in [f32::MAX, f32::NAN, f32::INFINITY] {
                        let mut g = vec![0.25f32; n * chunks];
                        g[(chunks - 1) * n + bad] = value;
                        let mut o = Optimizer::new(kind, 10.0, wd, n).unwrap();
                        if let OptimKind::Sdlm { .. } = kind {
                            o.h = vec![0.0; n];
                        }
                        let p0: Vec<f32> = (0..n).map(|i| 1.0 + i as f32 * 1e-3).collect();
                        let mut p = p0.clone();
                        // Adam normalises the step: its overflow comes from a
                        // squared gradient, which f32::MAX gives too.
                        assert!(
                            !o.step(&mut p, &g, n, None),
                            "{kind:?} {wd} {chunks} {value}"
                        );
                        assert_eq!(p, p0);
                        assert_eq!(o.t, 0);
                        assert!(o.m.iter().chain(&o.v).all(|&x| x == 0.0));
                        o.frozen = bad..bad + 1;
                        assert!(o.step(&mut p, &g, n, None), "frozen {kind:?} {value}");
                        assert_eq!(p[bad], p0[bad]);
                        assert!(p.iter().all(|x| x.is_finite()));
                        assert_ne!(p[0], p0[0]);
                    }
                }
            }
        }
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
    fn no_step_computes_or_stores_a_subnormal() {
        let kinds = every_rule();
        let subnormal = |v: &[f32]| {
            v.iter()
                .filter(|x| **x != 0.0 && x.abs() < f32::MIN_POSITIVE)
                .count()
        };
        for kind in kinds {
            // Weights from just above the subnormal range up, gradients of every
            // size down to subnormal ones, weight decay: without the floors,
            // weights, momenta and moments go subnormal within a few steps.
            let n = 256;
            let mut o = Optimizer::new(kind, 0.003, 0.001, n).unwrap();
            if !o.h.is_empty() {
                o.h = vec![1.0; n];
            }
            let mut p: Vec<f32> = (0..n)
                .map(|i| {
                    f32::MIN_POSITIVE
                        * 1.5f32.powi(i as i32 % 64)
                        * if i % 2 == 0 { 1.0 } else { -1.0 }
                })
                .collect();
            for step in 0..300 {
                let g: Vec<f32> = (0..n)
                    .map(|i| match step % 3 {
                        0 if step < 30 => 1e-30 * (i as f32),
                        1 => f32::from_bits(i as u32),
                        _ => 0.0,
                    })
                    .collect();
                let before = p.clone();
                assert!(o.step(&mut p, &g, n, None), "{kind:?}");
                assert_eq!(subnormal(&p), 0, "{kind:?} step {step}: weights");
                assert_eq!(subnormal(&o.m), 0, "{kind:?} step {step}: first moment");
                assert_eq!(subnormal(&o.v), 0, "{kind:?} step {step}: second moment");
                // The products the next step forms from the stored values are
                // normal or zero.
                let (lr, wd) = (0.003f32, 0.001f32);
                for (j, &pj) in p.iter().enumerate() {
                    let m = o.m.get(j).copied().unwrap_or(0.0);
                    let v = o.v.get(j).copied().unwrap_or(0.0);
                    let products = match kind {
                        OptimKind::Adam { decoupled, .. } => [
                            if decoupled { lr * wd * pj } else { wd * pj },
                            0.9 * m,
                            0.999 * v,
                            lr * m,
                        ],
                        OptimKind::Sgd { .. } => [wd * pj, 0.9 * m, lr * m, 0.0],
                        OptimKind::Sdlm { .. } => [wd * pj, 0.0, 0.0, 0.0],
                    };
                    assert_eq!(
                        subnormal(&products),
                        0,
                        "{kind:?} step {step} entry {j}: {} -> {pj:e}",
                        before[j]
                    );
                }
            }
        }
    }

    #[test]
    fn every_instruction_set_steps_to_the_same_bits() {
        // `dispatch` runs the update compiled for this CPU's best instruction set;
        // a direct call runs the baseline (SSE2) build of the same code.
        let n = 3 * RANGE + 123;
        let chunks = 3;
        let mut x = 0x2545_f491u32;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            // Magnitudes from 1e-30 to 1e3, both signs.
            let e = (x % 110) as i32 - 100;
            10f32.powi(e / 3)
                * (1.0 + (x >> 8) as f32 / 16_777_216.0)
                * if x & 1 == 0 { 1.0 } else { -1.0 }
        };
        let p: Vec<f32> = (0..n).map(|_| next()).collect();
        let m: Vec<f32> = (0..n).map(|_| next()).collect();
        let v: Vec<f32> = (0..n).map(|_| next().abs()).collect();
        let h: Vec<f32> = (0..n).map(|_| next().abs()).collect();
        let grads: Vec<f32> = (0..n * chunks).map(|_| next()).collect();
        for kind in [
            OptimKind::Sgd {
                momentum: 0.9,
                nesterov: true,
            },
            OptimKind::Adam {
                beta1: 0.9,
                beta2: 0.999,
                epsilon: 1e-8,
                decoupled: false,
            },
            OptimKind::Adam {
                beta1: 0.8,
                beta2: 0.99,
                epsilon: 1e-7,
                decoupled: true,
            },
            OptimKind::Sdlm { mu: 0.02 },
        ] {
            let rule = Rule {
                kind,
                lr: 0.003,
                wd: 0.001,
                t: 7,
                frozen: 5..9,
                floors: Floors::new(kind, 0.003, 0.001),
            };
            let old = State {
                p: &p,
                m: &m,
                v: &v,
                h: &h,
            };
            let mut outs = Vec::new();
            for via_dispatch in [false, true] {
                let (mut pn, mut mn, mut vn) = (vec![0.0f32; n], vec![0.0f32; n], vec![0.0f32; n]);
                let mut all = true;
                for (r, ((pr, mr), vr)) in pn
                    .chunks_mut(RANGE)
                    .zip(mn.chunks_mut(RANGE))
                    .zip(vn.chunks_mut(RANGE))
                    .enumerate()
                {
                    let mut out = Range {
                        lo: r * RANGE,
                        p: pr,
                        m: mr,
                        v: vr,
                    };
                    all &= if via_dispatch {
                        dispatch(Update {
                            rule: &rule,
                            out: &mut out,
                            old: &old,
                            grads: &grads,
                            n,
                            chunks,
                        })
                    } else {
                        rule.update(&mut out, &old, &grads, n, chunks)
                    };
                }
                let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                outs.push((all, bits(&pn), bits(&mn), bits(&vn)));
            }
            assert!(outs[0] == outs[1], "{kind:?}");
        }
    }

    #[test]
    fn bias_corrections_settle_at_one() {
        for beta in [0.0f32, 0.5, 0.9, 0.99, 0.999, 0.99999] {
            let s = settled(beta);
            let p = beta.powi(s);
            assert!(
                p == 0.0 || (p >= f32::MIN_POSITIVE && p < 2f32.powi(-39)),
                "{beta}: {p:e}"
            );
            for t in [s, s + 1, s + 1000] {
                assert_eq!(1.0 - beta.powi(t.min(s)), 1.0 - beta.powi(t), "{beta} {t}");
            }
        }
    }

    #[test]
    fn floors_are_tiny() {
        for kind in [
            OptimKind::Sgd {
                momentum: 0.9,
                nesterov: false,
            },
            OptimKind::Adam {
                beta1: 0.9,
                beta2: 0.999,
                epsilon: 1e-8,
                decoupled: false,
            },
        ] {
            let f = Floors::new(kind, 0.003, 0.001);
            for b in [f.p, f.m, f.v, f.g] {
                let x = f32::from_bits(b);
                assert!((f32::MIN_POSITIVE..=1e-17).contains(&x), "{kind:?}: {x:e}");
            }
        }
        // Degenerate hyperparameters cannot make the floors large.
        let f = Floors::new(OptimKind::Sdlm { mu: 0.02 }, 1e-30, 1e-38);
        assert!(f32::from_bits(f.p) <= MAX_FLOOR);
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
