//! The paper's output layer: one Euclidean RBF unit per class over F6's 84
//! outputs x, with prototype w_i (fixed +-1 bitmaps or codes, or trained):
//!
//!   y_i = sum_j (x_j - w_ij)^2,
//!   dE/dx_j = sum_i dE/dy_i 2 (x_j - w_ij),  dE/dw_ij = -sum dE/dy_i 2 (x_j - w_ij),
//!
//! and its two losses on the penalties y (the correct class D):
//!
//!   MLE (Eq. 8): E = y_D,
//!   MAP (Eq. 9): E = y_D + log(exp(-j) + sum_i exp(-y_i)),
//!
//! The prototypes are 84 values of -1 or +1 per class, one for each of F6's
//! units: stylised 7x12 bitmaps of the digits 0-9 (drawn for this
//! library after the style of the paper's Fig. 3), `#` = +1 (ink), `.` = -1,
//! read row by row; or distributed codes, rows of a Hadamard matrix of order 84,
//! any two of which differ in exactly 42 of the 84 units.

use super::lane_weight;
use crate::model::{Workspace, F6_UNITS};

/// Number of bitmaps (classes an RBF output can have).
pub(crate) const N_BITMAPS: usize = 10;

/// Width and height of a bitmap.
#[cfg(test)]
const BITMAP_W: usize = 7;
const BITMAP_H: usize = 12;

/// The digits, 12 rows of 7 characters each.
const DIGITS: [[&str; BITMAP_H]; N_BITMAPS] = [
    [
        ".......", "..###..", ".#...#.", "#.....#", "#.....#", "#.....#", "#.....#", "#.....#",
        ".#...#.", "..###..", ".......", ".......",
    ],
    [
        ".......", "...#...", "..##...", ".#.#...", "...#...", "...#...", "...#...", "...#...",
        "...#...", ".#####.", ".......", ".......",
    ],
    [
        ".......", ".#####.", "#.....#", "......#", ".....#.", "....#..", "...#...", "..#....",
        ".#.....", "#######", ".......", ".......",
    ],
    [
        ".......", "#######", ".....#.", "....#..", "...##..", ".....#.", "......#", "......#",
        "#.....#", ".#####.", ".......", ".......",
    ],
    [
        ".......", "....##.", "...#.#.", "..#..#.", ".#...#.", "#....#.", "#######", ".....#.",
        ".....#.", ".....#.", ".......", ".......",
    ],
    [
        ".......", "#######", "#......", "#......", "######.", "......#", "......#", "......#",
        "#.....#", ".#####.", ".......", ".......",
    ],
    [
        ".......", "..####.", ".#.....", "#......", "######.", "#.....#", "#.....#", "#.....#",
        "#.....#", ".#####.", ".......", ".......",
    ],
    [
        ".......", "#######", "......#", ".....#.", "....#..", "...#...", "..#....", "..#....",
        "..#....", "..#....", ".......", ".......",
    ],
    [
        ".......", ".#####.", "#.....#", "#.....#", ".#####.", "#.....#", "#.....#", "#.....#",
        "#.....#", ".#####.", ".......", ".......",
    ],
    [
        ".......", ".#####.", "#.....#", "#.....#", "#.....#", ".######", "......#", "......#",
        ".....#.", ".####..", ".......", ".......",
    ],
];

/// The prototypes, `[10][84]`, values -1 and +1.
pub(crate) fn bitmaps() -> Vec<f32> {
    DIGITS
        .iter()
        .flat_map(|d| d.iter().flat_map(|row| row.bytes()))
        .map(|c| if c == b'#' { 1.0 } else { -1.0 })
        .collect()
}

/// The prime of the Paley construction: a Hadamard matrix of order `Q + 1 = 84`.
const Q: usize = 83;

/// The distributed codes, `[10][84]`, values -1 and +1: rows 1 to 10 of the
/// Paley (type I) Hadamard matrix `H = I + S` of order 84, where `S` is the
/// skew-symmetric `[[0, 1^T], [-1, Q]]` and `Q[i][j] = chi(j - i)` with `chi`
/// the quadratic character modulo the prime 83 (83 = 3 mod 4). `H H^T = 84 I`:
/// the rows are orthogonal, so any two codes differ in exactly 42 units, and
/// each is orthogonal to row 0 (all ones), so every code has 42 units at +1.
pub(crate) fn codes() -> Vec<f32> {
    let mut residue = [false; Q];
    for x in 1..Q {
        residue[x * x % Q] = true;
    }
    let chi = |a: usize| -> f32 {
        match a % Q {
            0 => 0.0,
            r if residue[r] => 1.0,
            _ => -1.0,
        }
    };
    let n = Q + 1;
    let mut out = Vec::with_capacity(N_BITMAPS * n);
    for row in 1..=N_BITMAPS {
        let i = row - 1; // row of Q
        out.push(-1.0); // the -1 column of S
        for j in 0..Q {
            // Q[i][j] = chi(j - i), and H's diagonal adds 1 where Q[i][i] = 0.
            out.push(if j == i { 1.0 } else { chi(j + Q - i) });
        }
    }
    out
}

/// RBF output: `y[i] = sum_j (x[j] - w[i][j])^2` for each lane.
///
/// # Shapes
/// `inp`: `[84][L]`; `out`: `[K][L]`; `w`: `[K][84]`.
#[inline(always)]
pub(crate) fn forward(inp: &[f32], out: &mut [f32], w: &[f32], k: usize, lanes: usize) {
    let ni = w.len() / k;
    for i in 0..k {
        let wr = &w[i * ni..(i + 1) * ni];
        let o = &mut out[i * lanes..(i + 1) * lanes];
        o.fill(0.0);
        for (j, wv) in wr.iter().enumerate() {
            let x = &inp[j * lanes..(j + 1) * lanes];
            for (ol, xl) in o.iter_mut().zip(x) {
                let d = *xl - *wv;
                *ol += d * d;
            }
        }
    }
}

/// Backward of [`forward`]: writes `gin[j] = sum_i gy[i] 2 (x[j] - w[i][j])`
/// and, if `gw` is given, accumulates `gw[i][j] += sum_lanes -2 gy[i] (x[j] - w[i][j])`.
#[inline(always)]
pub(crate) fn backward(
    inp: &[f32],
    gy: &[f32],
    w: &[f32],
    k: usize,
    lanes: usize,
    gin: &mut [f32],
    gw: Option<&mut [f32]>,
) {
    let ni = w.len() / k;
    gin[..ni * lanes].fill(0.0);
    for i in 0..k {
        let wr = &w[i * ni..(i + 1) * ni];
        let g = &gy[i * lanes..(i + 1) * lanes];
        for (j, wv) in wr.iter().enumerate() {
            let x = &inp[j * lanes..(j + 1) * lanes];
            let gi = &mut gin[j * lanes..(j + 1) * lanes];
            for ((gl, xl), yl) in gi.iter_mut().zip(x).zip(g) {
                *gl += 2.0 * *yl * (*xl - *wv);
            }
        }
    }
    if let Some(gw) = gw {
        for i in 0..k {
            let g = &gy[i * lanes..(i + 1) * lanes];
            for j in 0..ni {
                let x = &inp[j * lanes..(j + 1) * lanes];
                let wv = w[i * ni + j];
                let mut s = 0.0f32;
                for (xl, yl) in x.iter().zip(g) {
                    s += -2.0 * *yl * (*xl - wv);
                }
                gw[i * ni + j] += s;
            }
        }
    }
}

/// The paper's losses on RBF penalties `y` (Eq. 8, and Eq. 9 when `map_j` is
/// given): `E = y_D [+ log(exp(-j) + sum_i exp(-y_i))]`. The gradient wrt
/// `y_i` is `[i == D] - q_i` with `q_i = exp(-y_i) / (exp(-j) + sum_k exp(-y_k))`
/// (no `q` term for MLE). With `SQ` it writes `scale * q_i` instead (zero for
/// MLE), for [`top_curvature`].
pub(crate) fn loss<const SQ: bool>(
    ws: &mut Workspace,
    labels: &[u32],
    weights: Option<&[f32]>,
    scale: f32,
    map_j: Option<f32>,
) -> (f64, usize) {
    let l_n = ws.lanes;
    let k = ws.n_classes;
    ws.gz.fill(0.0);
    let mut loss = 0.0f64;
    let mut correct = 0;
    for (lane, &y) in labels.iter().enumerate() {
        let y = y as usize;
        let pen = |c: usize| ws.z[c * l_n + lane] as f64;
        let arg = (0..k).fold(0, |b, c| if pen(c) < pen(b) { c } else { b });
        correct += usize::from(arg == y);
        let mut e = pen(y);
        // k <= 10 for RBF outputs (checked when the network is built).
        let mut q_buf = [0.0f64; N_BITMAPS];
        let q = &mut q_buf[..k];
        if let Some(j) = map_j {
            // log(exp(-j) + sum exp(-y_i)) computed around its largest term.
            let m = (0..k).map(|c| -pen(c)).fold(-(j as f64), f64::max);
            let mut s = (-(j as f64) - m).exp();
            for (c, qc) in q.iter_mut().enumerate() {
                *qc = (-pen(c) - m).exp();
                s += *qc;
            }
            q.iter_mut().for_each(|v| *v /= s);
            e += m + s.ln();
        }
        let w = lane_weight(weights, lane);
        let scale = scale * w;
        loss += if w == 1.0 { e } else { w as f64 * e };
        for (c, qc) in q.iter().enumerate() {
            let t = if c == y { 1.0 } else { 0.0 };
            ws.gz[c * l_n + lane] = if SQ {
                scale * *qc as f32
            } else {
                scale * (t - qc) as f32
            };
        }
    }
    (loss, correct)
}

/// The curvature pass's top for RBF outputs: the loss's own second derivative
/// wrt each F6 output `x_j` into `ws.g6` (the Gauss-Newton approximation drops
/// the network's nonlinearity, not the loss's, and with fixed prototypes the
/// RBF units belong to the loss). `ws.gz` holds `scale * q_i`, the posteriors
/// of the MAP loss (zero for MLE), and `protos` the prototypes `w_ij`. With
/// `d_ij = x_j - w_ij`, per image
///
///   d2E/dx_j^2 = 2 (1 - sum_i q_i) + 4 (sum_i q_i d_ij^2 - (sum_i q_i d_ij)^2),
///
/// never negative (`1 - sum q` is the rubbish class's posterior, the rest a
/// variance under `q`); 2 for MLE. A trainable prototype gets its own second
/// derivative `2 ([i = D] - q_i) + 4 q_i (1 - q_i) d_ij^2` where that is
/// positive, summed into `grad` (the prototypes' `[K][84]`).
pub(crate) fn top_curvature(
    trainable: bool,
    protos: &[f32],
    ws: &mut Workspace,
    labels: &[u32],
    scale: f32,
    grad: &mut [f32],
) {
    let lanes = ws.lanes;
    let k = ws.n_classes;
    ws.g6[..F6_UNITS * lanes].fill(0.0);
    if scale == 0.0 {
        return;
    }
    for (l, &label) in labels.iter().enumerate() {
        let g = |i: usize| ws.gz[i * lanes + l];
        let qsum: f32 = (0..k).map(g).sum();
        for j in 0..F6_UNITS {
            let x = ws.a6[j * lanes + l];
            let (mut m1, mut m2) = (0.0f32, 0.0f32);
            for i in 0..k {
                let d = x - protos[i * F6_UNITS + j];
                m1 += g(i) * d;
                m2 += g(i) * d * d;
            }
            let c = 2.0 * (scale - qsum) + 4.0 * (m2 - m1 * m1 / scale);
            ws.g6[j * lanes + l] = c.max(0.0);
            if trainable {
                for i in 0..k {
                    let d = x - protos[i * F6_UNITS + j];
                    let t = if i == label as usize { scale } else { 0.0 };
                    let v = 2.0 * (t - g(i)) + 4.0 * g(i) * (1.0 - g(i) / scale) * d * d;
                    grad[i * F6_UNITS + j] += v.max(0.0);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layers::testing::*;
    use crate::rng::Rng;

    /// Penalties and their gradients against the definitions; the MAP loss's
    /// gradient against central differences of the loss in f64.
    #[test]
    fn penalties_and_map_loss_match_the_definitions() {
        let mut rng = Rng::new(4);
        let k = 3;
        let x = values(&mut rng, F6_UNITS);
        let w = values(&mut rng, k * F6_UNITS);
        let mut y = vec![0.0; k];
        forward(&x, &mut y, &w[..k * F6_UNITS], k, 1);
        let pen = |x: &[f64], i: usize| -> f64 {
            (0..F6_UNITS)
                .map(|j| (x[j] - w[i * F6_UNITS + j] as f64).powi(2))
                .sum()
        };
        let xf = f64s(&x[..F6_UNITS]);
        close(
            &f64s(&y),
            &(0..k).map(|i| pen(&xf, i)).collect::<Vec<_>>(),
            1e-6,
            "penalties",
        );
        let (j, label) = (0.1f64, 1usize);
        let map = |x: &[f64]| -> f64 {
            let s: f64 = (-j).exp() + (0..k).map(|i| (-pen(x, i)).exp()).sum::<f64>();
            pen(x, label) + s.ln()
        };
        let mut ws = Workspace::new(1, k);
        ws.z[..k].copy_from_slice(&y);
        let (loss, _) = super::loss::<false>(&mut ws, &[label as u32], None, 1.0, Some(j as f32));
        assert!(
            (loss - map(&xf)).abs() < 1e-4 * map(&xf).abs(),
            "{loss} vs {}",
            map(&xf)
        );
        // dE/dx through the penalties' gradient.
        let mut gin = vec![0.0; F6_UNITS];
        let mut gw = vec![0.0; k * F6_UNITS];
        let gz = ws.gz[..k].to_vec();
        backward(&x, &gz, &w[..k * F6_UNITS], k, 1, &mut gin, Some(&mut gw));
        let h = 1e-5;
        let fd: Vec<f64> = (0..F6_UNITS)
            .map(|i| {
                let (mut up, mut dn) = (xf.clone(), xf.clone());
                up[i] += h;
                dn[i] -= h;
                (map(&up) - map(&dn)) / (2.0 * h)
            })
            .collect();
        close(&f64s(&gin), &fd, 1e-3, "dE/dx");
        // And the prototypes' gradient is the opposite of the inputs' per unit.
        for jj in 0..F6_UNITS {
            let sum: f64 = (0..k).map(|i| gw[i * F6_UNITS + jj] as f64).sum();
            assert!((sum + gin[jj] as f64).abs() < 1e-4);
        }
    }

    #[test]
    fn codes_are_pairwise_orthogonal_and_balanced() {
        let c = codes();
        assert_eq!(c.len(), N_BITMAPS * 84);
        assert!(c.iter().all(|&v| v == 1.0 || v == -1.0));
        for i in 0..N_BITMAPS {
            let a = &c[i * 84..(i + 1) * 84];
            assert_eq!(a.iter().sum::<f32>(), 0.0, "code {i} is not balanced");
            for j in 0..i {
                let b = &c[j * 84..(j + 1) * 84];
                let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
                assert_eq!(dot, 0.0, "codes {i} and {j}");
            }
        }
    }

    #[test]
    fn bitmaps_are_distinct_and_binary() {
        let b = bitmaps();
        assert_eq!(b.len(), N_BITMAPS * BITMAP_W * BITMAP_H);
        assert!(b.iter().all(|&v| v == 1.0 || v == -1.0));
        for d in &DIGITS {
            assert!(d.iter().all(|r| r.len() == BITMAP_W));
        }
        for i in 0..N_BITMAPS {
            for j in 0..i {
                assert_ne!(b[i * 84..(i + 1) * 84], b[j * 84..(j + 1) * 84]);
            }
        }
    }
}
