//! Where each parameter tensor lives in the flat parameter vector.
//!
//! Parameters are kept in one flat `Vec<f32>`. The layout follows PyTorch's
//! tensors (`[out][in][ky][kx]`, `[out][in]`) except for C3, whose kernels are
//! stored only for the connections that exist: one 5x5 kernel per connection,
//! connections ordered by C3 map, then by S2 map. So the vector has exactly as
//! many entries as the network has trainable parameters.

use super::config::*;
use crate::error::{LeNetError, Result};
use crate::layers::conv::Connections;

/// A parameter tensor: its public name and shape, and where it sits in the
/// flat vector.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorSpec {
    pub name: &'static str,
    pub shape: Vec<usize>,
    pub offset: usize,
    /// Entries in the flat vector (for C3 with Table I, fewer than the shape's product).
    pub len: usize,
}

/// Offsets of every tensor in the flat parameter vector, plus the convolutions'
/// connection lists.
#[derive(Clone, Debug)]
pub struct Layout {
    pub cfg: Config,
    pub c1_w: usize,
    pub c1_b: usize,
    pub s2_w: usize,
    pub s2_b: usize,
    pub c3_w: usize,
    pub c3_b: usize,
    pub s4_w: usize,
    pub s4_b: usize,
    pub c5_w: usize,
    pub c5_b: usize,
    pub f6_w: usize,
    pub f6_b: usize,
    pub out_w: usize,
    pub out_b: usize,
    pub total: usize,
    /// C1's connections: each map reads the one input.
    pub(crate) c1: Connections,
    /// C3's connections: Table I, or every S2 map.
    pub(crate) c3: Connections,
}

impl Config {
    /// Builds the parameter layout.
    pub fn layout(&self) -> Layout {
        let c1 = Connections::new(1, C1_MAPS, |_, _| true);
        let c3 = Connections::new(C1_MAPS, C3_MAPS, |c, o| self.connected(c, o));
        let sub = self.pooling == Pooling::Subsample;
        let mut at = 0usize;
        let mut take = |n: usize| {
            let o = at;
            at += n;
            o
        };
        let c1_w = take(C1_MAPS * KK);
        let c1_b = take(C1_MAPS);
        let s2_w = take(if sub { C1_MAPS } else { 0 });
        let s2_b = take(if sub { C1_MAPS } else { 0 });
        let c3_w = take(c3.len() * KK);
        let c3_b = take(C3_MAPS);
        let s4_w = take(if sub { C3_MAPS } else { 0 });
        let s4_b = take(if sub { C3_MAPS } else { 0 });
        let c5_w = take(C5_UNITS * C5_IN);
        let c5_b = take(C5_UNITS);
        let f6_w = take(F6_UNITS * C5_UNITS);
        let f6_b = take(F6_UNITS);
        let out_w = take(self.n_classes * F6_UNITS);
        let out_b = take(if self.output == Output::Rbf {
            0
        } else {
            self.n_classes
        });
        Layout {
            cfg: *self,
            c1_w,
            c1_b,
            s2_w,
            s2_b,
            c3_w,
            c3_b,
            s4_w,
            s4_b,
            c5_w,
            c5_b,
            f6_w,
            f6_b,
            out_w,
            out_b,
            total: at,
            c1,
            c3,
        }
    }
}

impl Layout {
    /// Number of trainable parameters (fixed RBF prototypes excluded).
    pub fn n_params(&self) -> usize {
        self.total - self.frozen().len()
    }

    /// Length of the flat parameter vector (fixed RBF prototypes included).
    pub fn n_params_total(&self) -> usize {
        self.total
    }

    /// Entries of the flat vector that training never changes (the RBF
    /// prototypes, unless they are trainable).
    pub fn frozen(&self) -> std::ops::Range<usize> {
        if self.cfg.output == Output::Rbf && !self.cfg.rbf_trainable {
            self.out_w..self.out_b
        } else {
            self.out_w..self.out_w
        }
    }

    /// Whether the last layer is RBF (penalties: smaller is better).
    pub fn is_rbf(&self) -> bool {
        self.cfg.output == Output::Rbf
    }

    /// Number of C3 connections (kernels).
    pub fn n_conns(&self) -> usize {
        self.c3.len()
    }

    pub(crate) fn has_subsample(&self) -> bool {
        self.cfg.pooling == Pooling::Subsample
    }

    /// The public tensors in their canonical order.
    pub fn tensors(&self) -> Vec<TensorSpec> {
        let k = self.cfg.n_classes;
        let mut v = Vec::new();
        let mut push = |name, shape: Vec<usize>, offset, len| {
            v.push(TensorSpec {
                name,
                shape,
                offset,
                len,
            })
        };
        push("c1.weight", vec![C1_MAPS, 1, K, K], self.c1_w, C1_MAPS * KK);
        push("c1.bias", vec![C1_MAPS], self.c1_b, C1_MAPS);
        if self.has_subsample() {
            push("s2.weight", vec![C1_MAPS], self.s2_w, C1_MAPS);
            push("s2.bias", vec![C1_MAPS], self.s2_b, C1_MAPS);
        }
        push(
            "c3.weight",
            vec![C3_MAPS, C1_MAPS, K, K],
            self.c3_w,
            self.n_conns() * KK,
        );
        push("c3.bias", vec![C3_MAPS], self.c3_b, C3_MAPS);
        if self.has_subsample() {
            push("s4.weight", vec![C3_MAPS], self.s4_w, C3_MAPS);
            push("s4.bias", vec![C3_MAPS], self.s4_b, C3_MAPS);
        }
        push(
            "c5.weight",
            vec![C5_UNITS, C3_MAPS, K, K],
            self.c5_w,
            C5_UNITS * C5_IN,
        );
        push("c5.bias", vec![C5_UNITS], self.c5_b, C5_UNITS);
        push(
            "f6.weight",
            vec![F6_UNITS, C5_UNITS],
            self.f6_w,
            F6_UNITS * C5_UNITS,
        );
        push("f6.bias", vec![F6_UNITS], self.f6_b, F6_UNITS);
        push("output.weight", vec![k, F6_UNITS], self.out_w, k * F6_UNITS);
        if self.cfg.output != Output::Rbf {
            push("output.bias", vec![k], self.out_b, k);
        }
        v
    }

    /// Expands one tensor from the flat vector into its public (dense) layout.
    pub fn export(&self, spec: &TensorSpec, params: &[f32]) -> Vec<f32> {
        let src = &params[spec.offset..spec.offset + spec.len];
        if spec.name != "c3.weight" {
            return src.to_vec();
        }
        let mut dense = vec![0.0f32; C3_MAPS * C1_MAPS * KK];
        for (kc, (&c, &o)) in self.c3.input.iter().zip(&self.c3.output).enumerate() {
            let dst = (o * C1_MAPS + c) * KK;
            dense[dst..dst + KK].copy_from_slice(&src[kc * KK..(kc + 1) * KK]);
        }
        dense
    }

    /// Writes one tensor given in its public layout into the flat vector.
    /// For C3, entries outside the connection map must be exactly zero.
    pub fn import(&self, spec: &TensorSpec, dense: &[f32], params: &mut [f32]) -> Result<()> {
        let dst = &mut params[spec.offset..spec.offset + spec.len];
        if spec.name != "c3.weight" {
            dst.copy_from_slice(dense);
            return Ok(());
        }
        for o in 0..C3_MAPS {
            for c in 0..C1_MAPS {
                if !self.cfg.connected(c, o) {
                    let at = (o * C1_MAPS + c) * KK;
                    if dense[at..at + KK].iter().any(|&v| v != 0.0) {
                        return Err(LeNetError::value(format!(
                            "c3.weight[{o}, {c}] must be all zeros: C3 map {o} is not connected to S2 map {c} in Table I"
                        )));
                    }
                }
            }
        }
        for (kc, (&c, &o)) in self.c3.input.iter().zip(&self.c3.output).enumerate() {
            let src = (o * C1_MAPS + c) * KK;
            dst[kc * KK..(kc + 1) * KK].copy_from_slice(&dense[src..src + KK]);
        }
        Ok(())
    }
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paper_parameter_counts() {
        let l = Config::default().layout();
        assert_eq!(l.c1_b + C1_MAPS - l.c1_w, 156);
        assert_eq!(l.s2_b + C1_MAPS - l.s2_w, 12);
        assert_eq!(l.c3_b + C3_MAPS - l.c3_w, 1516);
        assert_eq!(l.s4_b + C3_MAPS - l.s4_w, 32);
        assert_eq!(l.c5_b + C5_UNITS - l.c5_w, 48120);
        assert_eq!(l.f6_b + F6_UNITS - l.f6_w, 10164);
        assert_eq!(l.out_b + 10 - l.out_w, 850);
        assert_eq!(l.n_params(), 60850);
    }

    #[test]
    fn table_one_rows() {
        // Maps 0-5 see 3 contiguous maps, 6-11 four contiguous, 12-14 four
        // non-contiguous, 15 all six (counted by hand from the paper).
        let counts: Vec<usize> = (0..16)
            .map(|o| (0..6).filter(|&c| TABLE_I[c][o]).count())
            .collect();
        assert_eq!(counts, [3, 3, 3, 3, 3, 3, 4, 4, 4, 4, 4, 4, 4, 4, 4, 6]);
        for o in 0..6 {
            for d in 0..3 {
                assert!(TABLE_I[(o + d) % 6][o]);
            }
        }
        for o in 6..12 {
            for d in 0..4 {
                assert!(TABLE_I[(o - 6 + d) % 6][o]);
            }
        }
        assert_eq!(Config::default().layout().n_conns(), 60);
    }

    #[test]
    fn export_import_roundtrip() {
        let l = Config::default().layout();
        let mut rng = crate::rng::Rng::new(1);
        let p = l.init_params(Init::LeCun, &mut rng);
        let mut q = vec![0.0; p.len()];
        for t in l.tensors() {
            let dense = l.export(&t, &p);
            assert_eq!(dense.len(), t.shape.iter().product::<usize>());
            l.import(&t, &dense, &mut q).unwrap();
        }
        assert_eq!(p, q);
    }

    #[test]
    fn lecun_init_bounds() {
        let l = Config::default().layout();
        let p = l.init_params(Init::LeCun, &mut crate::rng::Rng::new(5));
        assert!(p[l.c1_w..l.c1_b].iter().all(|v| v.abs() <= 2.4 / 25.0));
        assert!(p[l.c5_w..l.c5_b].iter().all(|v| v.abs() <= 2.4 / 400.0));
        // C3 map 15 has 6 inputs: fan-in 150.
        let s = l.c3_w + l.c3.start[15] * KK;
        assert!(p[s..s + 150].iter().all(|v| v.abs() <= 2.4 / 150.0));
    }
}
