//! The first values of the parameters: the paper's rule and the modern ones.

use super::config::*;
use super::layout::Layout;
use crate::layers::rbf;

impl Layout {
    /// Fan-in of the unit that each flat parameter feeds, and its fan-out
    /// (for Glorot), plus whether it is a bias.
    fn fans(&self) -> Vec<(usize, usize, bool)> {
        let mut f = vec![(1, 1, false); self.total];
        let mut set = |off: usize, len: usize, fin: usize, fout: usize, bias: bool| {
            for e in &mut f[off..off + len] {
                *e = (fin, fout, bias);
            }
        };
        set(self.c1_w, C1_MAPS * KK, KK, C1_MAPS * KK, false);
        set(self.c1_b, C1_MAPS, KK, C1_MAPS * KK, true);
        if self.has_subsample() {
            set(self.s2_w, C1_MAPS, 4, 1, false);
            set(self.s2_b, C1_MAPS, 4, 1, true);
            set(self.s4_w, C3_MAPS, 4, 1, false);
            set(self.s4_b, C3_MAPS, 4, 1, true);
        }
        for o in 0..C3_MAPS {
            let n_in = self.c3.start[o + 1] - self.c3.start[o];
            let fan_out = C3_MAPS * KK; // a rough count, for Glorot only
            set(
                self.c3_w + self.c3.start[o] * KK,
                n_in * KK,
                n_in * KK,
                fan_out,
                false,
            );
            set(self.c3_b + o, 1, n_in * KK, fan_out, true);
        }
        set(self.c5_w, C5_UNITS * C5_IN, C5_IN, C5_UNITS, false);
        set(self.c5_b, C5_UNITS, C5_IN, C5_UNITS, true);
        set(self.f6_w, F6_UNITS * C5_UNITS, C5_UNITS, F6_UNITS, false);
        set(self.f6_b, F6_UNITS, C5_UNITS, F6_UNITS, true);
        let k = self.cfg.n_classes;
        set(self.out_w, k * F6_UNITS, F6_UNITS, k, false);
        set(self.out_b, self.out_b_len(), F6_UNITS, k, true);
        f
    }

    fn out_b_len(&self) -> usize {
        self.total - self.out_b
    }

    /// Draws a fresh parameter vector.
    pub fn init_params(&self, init: Init, rng: &mut crate::rng::Rng) -> Vec<f32> {
        let fans = self.fans();
        let mut p = vec![0.0f32; self.total];
        let sub = |i: usize| {
            let s2 = self.s2_w..self.s2_w + C1_MAPS;
            let s4 = self.s4_w..self.s4_w + C3_MAPS;
            self.has_subsample() && (s2.contains(&i) || s4.contains(&i))
        };
        for (i, (v, &(fin, fout, bias))) in p.iter_mut().zip(&fans).enumerate() {
            let limit = match init {
                Init::LeCun => 2.4 / fin as f32,
                // The paper's aim (every weighted sum with the same spread) under its two
                // hypotheses: independent random weights give a sum whose spread grows as
                // sqrt(F), whatever the inputs; a subsampling coefficient is one weight
                // on four highly correlated inputs, a spread that grows as F.
                Init::LeCunSqrt if sub(i) => 2.4 / fin as f32,
                Init::LeCunSqrt => 2.4 / (fin as f32).sqrt(),
                Init::He => (6.0 / fin as f32).sqrt(),
                Init::Glorot => (6.0 / (fin + fout) as f32).sqrt(),
            };
            let paper_rule = matches!(init, Init::LeCun | Init::LeCunSqrt);
            *v = if !paper_rule && bias {
                0.0
            } else if !paper_rule && sub(i) {
                // A subsampling coefficient of 1/4 starts as a plain average.
                0.25
            } else {
                rng.uniform(-limit, limit)
            };
        }
        if self.is_rbf() {
            // Prototypes start as the stylised digit bitmaps or the codes (-1 / +1).
            let k = self.cfg.n_classes;
            let values = match self.cfg.prototypes {
                Prototypes::Bitmaps => rbf::bitmaps(),
                Prototypes::Codes => rbf::codes(),
            };
            p[self.out_w..self.out_w + k * F6_UNITS].copy_from_slice(&values[..k * F6_UNITS]);
        }
        p
    }
}
