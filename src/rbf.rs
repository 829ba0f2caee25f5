//! The RBF output layer's prototypes, 84 values of -1 or +1 per class, one for
//! each of F6's units: stylised 7x12 bitmaps of the digits 0-9 (drawn for this
//! library after the style of the paper's Fig. 3), `#` = +1 (ink), `.` = -1,
//! read row by row; or distributed codes, rows of a Hadamard matrix of order 84,
//! any two of which differ in exactly 42 of the 84 units.

/// Number of bitmaps (classes an RBF output can have).
pub const N_BITMAPS: usize = 10;
/// Width and height of a bitmap.
pub const BITMAP_W: usize = 7;
pub const BITMAP_H: usize = 12;

/// The digits, 12 rows of 7 characters each.
pub const DIGITS: [[&str; BITMAP_H]; N_BITMAPS] = [
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
pub fn bitmaps() -> Vec<f32> {
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
pub fn codes() -> Vec<f32> {
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

#[cfg(test)]
mod tests {
    use super::*;

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
