//! Random planar affine distortions of training images (the paper's Section
//! III-C: horizontal and vertical translation, scaling, squeezing and horizontal
//! shearing), resampled bilinearly, generated on the fly.
//!
//! With the image centre `c` (15.5, 15.5) and a random translation `t`, a
//! destination pixel `p'` takes the source value at `p = M^-1 (p' - c - t) + c`,
//! `M = S H`: `S = diag(s (1 + q), s / (1 + q))` scales by `s` and squeezes by
//! `q` (wider and flatter, or narrower and taller, same area), `H = [[1, h], [0, 1]]`
//! shears horizontally. Pixels from outside the image are background.

use crate::data::BACKGROUND;
use crate::error::{LeNetError, Result};
use crate::model::IN;
use crate::rng::Rng;

/// Strengths of the distortions: each parameter is drawn uniformly in
/// `[-strength, +strength]` (scale in `[1 - scale, 1 + scale]`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Distortion {
    /// Largest shift, in pixels, horizontally and vertically.
    pub translate: f32,
    /// Largest relative change of size.
    pub scale: f32,
    /// Largest squeeze factor `q`.
    pub squeeze: f32,
    /// Largest horizontal shear `h` (pixels of shift per pixel of height).
    pub shear: f32,
}

impl Default for Distortion {
    fn default() -> Self {
        Distortion {
            translate: 2.0,
            scale: 0.1,
            squeeze: 0.1,
            shear: 0.2,
        }
    }
}

impl Distortion {
    /// Checks that every strength is finite, non-negative and not degenerate.
    pub fn validate(&self) -> Result<()> {
        let check = |name: &str, v: f32, max: f32| {
            if !(v.is_finite() && (0.0..max).contains(&v)) {
                return Err(LeNetError::value(format!(
                    "distortion {name} must be a number in [0, {max}); got {v}"
                )));
            }
            Ok(())
        };
        check("translate", self.translate, 16.0)?;
        check("scale", self.scale, 0.9)?;
        check("squeeze", self.squeeze, 0.9)?;
        check("shear", self.shear, 2.0)
    }

    /// Draws one transform.
    pub fn draw(&self, rng: &mut Rng) -> Affine {
        let mut sym = |a: f32| rng.uniform(-a, a);
        let tx = sym(self.translate);
        let ty = sym(self.translate);
        let s = 1.0 + sym(self.scale);
        let q = sym(self.squeeze);
        let h = sym(self.shear);
        Affine::new(tx, ty, s, q, h)
    }
}

/// One destination-to-source map.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Affine {
    /// Inverse matrix, row-major.
    inv: [f32; 4],
    /// Translation.
    t: [f32; 2],
}

impl Affine {
    /// The map for translation (tx, ty), scale s, squeeze q and shear h.
    pub fn new(tx: f32, ty: f32, s: f32, q: f32, h: f32) -> Self {
        let sx = s * (1.0 + q);
        let sy = s / (1.0 + q);
        // (S H)^-1 = H^-1 S^-1 = [[1/sx, -h/sy], [0, 1/sy]]
        Affine {
            inv: [1.0 / sx, -h / sy, 0.0, 1.0 / sy],
            t: [tx, ty],
        }
    }

    /// The identity map.
    #[cfg(test)]
    pub fn identity() -> Self {
        Affine::new(0.0, 0.0, 1.0, 0.0, 0.0)
    }

    /// Resamples `src` (`[32][32]`, network units) into lane `lane` of `dst`
    /// (`[32][32][lanes]`).
    pub fn apply(&self, src: &[f32], dst: &mut [f32], lane: usize, lanes: usize) {
        const C: f32 = (IN as f32 - 1.0) / 2.0;
        let at = |x: i32, y: i32| -> f32 {
            if (0..IN as i32).contains(&x) && (0..IN as i32).contains(&y) {
                src[y as usize * IN + x as usize]
            } else {
                BACKGROUND
            }
        };
        for yd in 0..IN {
            let v = yd as f32 - C - self.t[1];
            for xd in 0..IN {
                let u = xd as f32 - C - self.t[0];
                let xs = self.inv[0] * u + self.inv[1] * v + C;
                let ys = self.inv[2] * u + self.inv[3] * v + C;
                let value = if xs.is_finite() && ys.is_finite() && xs.abs() < 1e4 && ys.abs() < 1e4
                {
                    let (x0, y0) = (xs.floor(), ys.floor());
                    let (fx, fy) = (xs - x0, ys - y0);
                    let (x0, y0) = (x0 as i32, y0 as i32);
                    let top = at(x0, y0) * (1.0 - fx) + at(x0 + 1, y0) * fx;
                    let bottom = at(x0, y0 + 1) * (1.0 - fx) + at(x0 + 1, y0 + 1) * fx;
                    top * (1.0 - fy) + bottom * fy
                } else {
                    BACKGROUND
                };
                dst[(yd * IN + xd) * lanes + lane] = value;
            }
        }
    }
}

/// The generator of image `index` in a stream seeded by `seed`: a distortion
/// depends only on these two, never on threads or chunking.
pub fn image_rng(seed: u64, index: u64) -> Rng {
    Rng::new(seed ^ index.wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(17))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image() -> Vec<f32> {
        (0..IN * IN)
            .map(|i| ((i * 37) % 101) as f32 / 100.0)
            .collect()
    }

    #[test]
    fn identity_changes_nothing() {
        let src = image();
        let mut dst = vec![0.0; IN * IN];
        Affine::identity().apply(&src, &mut dst, 0, 1);
        assert_eq!(src, dst);
    }

    #[test]
    fn whole_pixel_translation_shifts() {
        let src = image();
        let mut dst = vec![0.0; IN * IN];
        Affine::new(3.0, -2.0, 1.0, 0.0, 0.0).apply(&src, &mut dst, 0, 1);
        for y in 0..IN {
            for x in 0..IN {
                let (sx, sy) = (x as i32 - 3, y as i32 + 2);
                let want = if (0..32).contains(&sx) && (0..32).contains(&sy) {
                    src[sy as usize * IN + sx as usize]
                } else {
                    BACKGROUND
                };
                assert_eq!(dst[y * IN + x], want, "({x}, {y})");
            }
        }
    }

    #[test]
    fn same_seed_same_distortion() {
        let d = Distortion::default();
        assert_eq!(d.draw(&mut image_rng(5, 9)), d.draw(&mut image_rng(5, 9)));
        assert_ne!(d.draw(&mut image_rng(5, 9)), d.draw(&mut image_rng(5, 10)));
    }
}
