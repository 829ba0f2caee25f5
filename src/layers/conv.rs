//! C1 and C3: 5x5 valid convolutions over a list of connections (Table I for
//! C3, or every S2 map; C1 has one input). For connection k from input map c_k
//! to output map o_k, with kernel w_k:
//!
//!   a[o][y][x] = b[o] + sum_{k: o_k = o} sum_{ky,kx} w_k[ky][kx] in[c_k][y+ky][x+kx],
//!   dE/dw_k[ky][kx] = sum_{y,x} d[o_k][y][x] in[c_k][y+ky][x+kx],
//!   dE/db[o] = sum_{y,x} d[o][y][x],
//!   dE/din[c][v][u] = sum_{k: c_k = c} sum_{ky,kx} w_k[ky][kx] d[o_k][v-ky][u-kx],
//!
//! d being the gradient wrt the pre-activation a (the activation follows as a
//! separate step; the pooling above applies its slope). In squared mode (`SQ`)
//! the inputs enter the kernel gradients squared (and the caller passes squared
//! kernels for the input gradient).
//!
//! Chunk kernels keep a block of output pixels (vectors of `S::W` images) in
//! registers while they walk the taps; single-image kernels run along rows, a
//! few rows at a time, or (16-wide forward) over the output maps laid flat,
//! several maps fed from each loaded input vector, and the input gradient is the valid convolution of the
//! zero-padded gradient with the flipped kernels (so the forward kernel runs
//! it). The block sizes are chosen per layer shape below (`match OW`), tuned
//! for C1 (28x28 outputs) and C3 (10x10), with a slower fallback that is
//! correct for any shape. The order of the sums differs between the chunk and
//! single-image versions, so one image's results may differ in the last bits.

use crate::model::{C1_SIDE, C3_SIDE, KK, S2_SIDE};
use crate::simd::Simd;

/// Which input map each kernel of a layer reads and which output map it feeds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Connections {
    /// Input map of each connection (ordered by output map, then input map).
    pub input: Vec<usize>,
    /// Output map of each connection.
    pub output: Vec<usize>,
    /// Connections of output map `o` are `start[o]..start[o + 1]`.
    pub start: Vec<usize>,
    /// Connections reading input map `c`, in increasing order.
    pub of_input: Vec<Vec<usize>>,
    /// The connections again, ordered by input map (`of_input` flattened):
    /// those of input map `c` are `t_start[c]..t_start[c + 1]`, ...
    pub t_start: Vec<usize>,
    /// ... each the connection `t_k[j]` from output map `t_out[j]`.
    pub t_k: Vec<usize>,
    pub t_out: Vec<usize>,
}

impl Connections {
    /// The connections of `n_out` output maps over `n_in` input maps where
    /// `connected(c, o)` says whether output map `o` reads input map `c`.
    pub fn new(n_in: usize, n_out: usize, connected: impl Fn(usize, usize) -> bool) -> Self {
        let (mut input, mut output, mut start) = (Vec::new(), Vec::new(), vec![0]);
        for o in 0..n_out {
            for c in (0..n_in).filter(|&c| connected(c, o)) {
                input.push(c);
                output.push(o);
            }
            start.push(input.len());
        }
        let mut of_input = vec![Vec::new(); n_in];
        for (k, &c) in input.iter().enumerate() {
            of_input[c].push(k);
        }
        let t_k: Vec<usize> = of_input.concat();
        let t_out = t_k.iter().map(|&k| output[k]).collect();
        let mut t_start = vec![0];
        for ks in &of_input {
            t_start.push(t_start.last().copied().unwrap_or(0) + ks.len());
        }
        Connections {
            input,
            output,
            start,
            of_input,
            t_start,
            t_k,
            t_out,
        }
    }

    /// Number of connections (kernels).
    pub fn len(&self) -> usize {
        self.input.len()
    }
}

/// C1's connection lists (each of its maps reads the one input) as constants.
const C1_START: [usize; 7] = [0, 1, 2, 3, 4, 5, 6];
const C1_INPUT: [usize; 6] = [0; 6];

/// The lists of output map starts and input maps the kernels walk. For C1
/// (`OW` = 28) they are the constants above, whatever `conns` says (it says
/// the same): with the lists known at compile time the compiler specialises
/// the connection loop, which makes C1 about 10% faster.
#[inline(always)]
fn lists<const OW: usize>(conns: &Connections) -> (&[usize], &[usize]) {
    if OW == C1_SIDE {
        debug_assert!(conns.start == C1_START && conns.input == C1_INPUT);
        (&C1_START, &C1_INPUT)
    } else {
        (&conns.start, &conns.input)
    }
}

/// Forward pass of a chunk, before the activation (see [`forward_chunk_tiled`]).
#[inline(always)]
pub(crate) fn forward_chunk<S: Simd, const IW: usize, const OW: usize>(
    s: S,
    inp: &[f32],
    out: &mut [f32],
    w: &[f32],
    b: &[f32],
    conns: &Connections,
) {
    // Output pixels kept in registers: a quarter of a C1 row, a whole C3 row.
    match OW {
        C1_SIDE => forward_chunk_tiled::<S, IW, OW, 7>(s, inp, out, w, b, conns),
        C3_SIDE => forward_chunk_tiled::<S, IW, OW, OW>(s, inp, out, w, b, conns),
        _ => forward_chunk_tiled::<S, IW, OW, 1>(s, inp, out, w, b, conns),
    }
}

/// Convolution of a chunk of `S::W` images, before the activation. `PX` output pixels are kept in registers; it must divide `OW`.
///
/// # Shapes
/// `inp`: `[C][IW][IW][W]`; `out`: `[O][OW][OW][W]`; `w`: `[n_conn][5][5]`.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn forward_chunk_tiled<S: Simd, const IW: usize, const OW: usize, const PX: usize>(
    s: S,
    inp: &[f32],
    out: &mut [f32],
    w: &[f32],
    b: &[f32],
    conns: &Connections,
) {
    let (conn_start, conn_in) = lists::<OW>(conns);
    let irow = IW * S::W;
    let iplane = IW * irow;
    let orow = OW * S::W;
    let oplane = OW * orow;
    for o in 0..conn_start.len() - 1 {
        for y in 0..OW {
            for x0 in (0..OW).step_by(PX) {
                let mut acc = [s.splat(b[o]); PX];
                for k in conn_start[o]..conn_start[o + 1] {
                    let c = conn_in[k];
                    let wk = &w[k * KK..(k + 1) * KK];
                    for ky in 0..5 {
                        let at = c * iplane + (y + ky) * irow + x0 * S::W;
                        let row = &inp[at..at + (PX + 4) * S::W];
                        for kx in 0..5 {
                            let wv = s.splat(wk[ky * 5 + kx]);
                            for (px, a) in acc.iter_mut().enumerate() {
                                *a = s.fma(wv, s.load(&row[(px + kx) * S::W..]), *a);
                            }
                        }
                    }
                }
                let dst = &mut out[o * oplane + y * orow + x0 * S::W..];
                for (px, a) in acc.iter().enumerate() {
                    s.store(*a, &mut dst[px * S::W..]);
                }
            }
        }
    }
}

/// Kernel gradients for kernel rows `ky0..ky0 + NKY`, walking each output row
/// `XB` pixels at a time so that the `XB` gradient vectors and the `XB + 4`
/// input vectors they meet stay in registers (each input vector feeds up to
/// five taps).
#[inline(always)]
fn kernel_grad_chunk_rows<
    S: Simd,
    const IW: usize,
    const OW: usize,
    const NKY: usize,
    const XB: usize,
    const SQ: bool,
>(
    s: S,
    inp_c: &[f32],
    dpre_o: &[f32],
    gw: &mut [f32],
    ky0: usize,
) {
    let irow = IW * S::W;
    let orow = OW * S::W;
    let mut acc = [[s.splat(0.0); 5]; NKY];
    if XB == 1 {
        // One pixel at a time (best where the rows are short, as in C3).
        for y in 0..OW {
            let drow = &dpre_o[y * orow..(y + 1) * orow];
            for x in 0..OW {
                let d = s.load(&drow[x * S::W..]);
                for (r, acc_r) in acc.iter_mut().enumerate() {
                    let at = (y + ky0 + r) * irow + x * S::W;
                    let irw = &inp_c[at..at + 5 * S::W];
                    for (kx, a) in acc_r.iter_mut().enumerate() {
                        let mut iv = s.load(&irw[kx * S::W..]);
                        if SQ {
                            iv = s.mul(iv, iv);
                        }
                        *a = s.fma(d, iv, *a);
                    }
                }
            }
        }
    }
    for y in (0..OW).filter(|_| XB > 1) {
        let drow = &dpre_o[y * orow..(y + 1) * orow];
        for x0 in (0..OW).step_by(XB) {
            let mut d = [s.splat(0.0); XB];
            for (j, dj) in d.iter_mut().enumerate() {
                *dj = s.load(&drow[(x0 + j) * S::W..]);
            }
            for (r, acc_r) in acc.iter_mut().enumerate() {
                let at = (y + ky0 + r) * irow + x0 * S::W;
                let irw = &inp_c[at..at + (XB + 4) * S::W];
                for (kx, a) in acc_r.iter_mut().enumerate() {
                    for (j, dj) in d.iter().enumerate() {
                        let mut iv = s.load(&irw[(j + kx) * S::W..]);
                        if SQ {
                            iv = s.mul(iv, iv);
                        }
                        *a = s.fma(*dj, iv, *a);
                    }
                }
            }
        }
    }
    for (r, acc_r) in acc.iter().enumerate() {
        for (kx, a) in acc_r.iter().enumerate() {
            gw[(ky0 + r) * 5 + kx] += s.hsum(*a);
        }
    }
}

/// Kernel and bias gradients of a chunk, accumulated into `gw`, `gb` (inputs
/// squared when `SQ`).
#[inline(always)]
pub(crate) fn kernel_grad_chunk<S: Simd, const IW: usize, const OW: usize, const SQ: bool>(
    s: S,
    inp: &[f32],
    dpre: &[f32],
    gw: &mut [f32],
    gb: &mut [f32],
    conns: &Connections,
) {
    // C1's rows walked 7 pixels at a time, kernel rows in groups of 3 + 2; C3's
    // (short rows) one pixel at a time, kernel rows 2 + 2 + 1.
    match OW {
        C1_SIDE => kernel_grad_chunk_tiled::<S, IW, OW, 7, true, SQ>(s, inp, dpre, gw, gb, conns),
        _ => kernel_grad_chunk_tiled::<S, IW, OW, 1, false, SQ>(s, inp, dpre, gw, gb, conns),
    }
}

/// Kernel and bias gradients of a chunk, accumulated.
///
/// # Shapes
/// `dpre`: `[O][OW][OW][W]`, gradient wrt the pre-activation outputs.
#[inline(always)]
fn kernel_grad_chunk_tiled<
    S: Simd,
    const IW: usize,
    const OW: usize,
    const XB: usize,
    const ROWS3: bool,
    const SQ: bool,
>(
    s: S,
    inp: &[f32],
    dpre: &[f32],
    gw: &mut [f32],
    gb: &mut [f32],
    conns: &Connections,
) {
    let (conn_start, conn_in) = lists::<OW>(conns);
    let iplane = IW * IW * S::W;
    let oplane = OW * OW * S::W;
    for o in 0..conn_start.len() - 1 {
        let dpre_o = &dpre[o * oplane..(o + 1) * oplane];
        let mut bacc = s.splat(0.0);
        for px in dpre_o.chunks_exact(S::W) {
            bacc = s.add(bacc, s.load(px));
        }
        gb[o] += s.hsum(bacc);
        for k in conn_start[o]..conn_start[o + 1] {
            let inp_c = &inp[conn_in[k] * iplane..(conn_in[k] + 1) * iplane];
            let gwk = &mut gw[k * KK..(k + 1) * KK];
            // Kernel rows in groups of 3 + 2 or 2 + 2 + 1 (whichever keeps the
            // accumulators in registers for this layer's block width).
            if ROWS3 {
                kernel_grad_chunk_rows::<S, IW, OW, 3, XB, SQ>(s, inp_c, dpre_o, gwk, 0);
                kernel_grad_chunk_rows::<S, IW, OW, 2, XB, SQ>(s, inp_c, dpre_o, gwk, 3);
            } else {
                kernel_grad_chunk_rows::<S, IW, OW, 2, XB, SQ>(s, inp_c, dpre_o, gwk, 0);
                kernel_grad_chunk_rows::<S, IW, OW, 2, XB, SQ>(s, inp_c, dpre_o, gwk, 2);
                kernel_grad_chunk_rows::<S, IW, OW, 1, XB, SQ>(s, inp_c, dpre_o, gwk, 4);
            }
        }
    }
}

/// Input gradient of a chunk, written into `gin` (`[C][IW][IW][W]`); `w` holds
/// the kernels (squared in squared mode).
#[inline(always)]
pub(crate) fn input_grad_chunk<S: Simd, const IW: usize, const OW: usize>(
    s: S,
    dpre: &[f32],
    w: &[f32],
    gin: &mut [f32],
    conns: &Connections,
) {
    let (conns_of_input, conn_out) = (&conns.of_input, &conns.output);
    let orow = OW * S::W;
    let oplane = OW * orow;
    for (c, conns) in conns_of_input.iter().enumerate() {
        for yy in 0..IW {
            let mut acc = [s.splat(0.0); IW];
            for &k in conns {
                let dpre_o = &dpre[conn_out[k] * oplane..(conn_out[k] + 1) * oplane];
                let wk = &w[k * KK..(k + 1) * KK];
                for ky in 0..5 {
                    if yy < ky || yy - ky >= OW {
                        continue;
                    }
                    let drow = &dpre_o[(yy - ky) * orow..(yy - ky + 1) * orow];
                    for kx in 0..5 {
                        let wv = s.splat(wk[ky * 5 + kx]);
                        for x in 0..OW {
                            acc[x + kx] = s.fma(wv, s.load(&drow[x * S::W..]), acc[x + kx]);
                        }
                    }
                }
            }
            let dst = &mut gin[(c * IW + yy) * IW * S::W..];
            for (x, a) in acc.iter().enumerate() {
                s.store(*a, &mut dst[x * S::W..]);
            }
        }
    }
}

/// Forward pass of one image, before the activation (see [`forward_one_tiled`]).
#[inline(always)]
pub(crate) fn forward_one<S: Simd, const IW: usize, const OW: usize>(
    s: S,
    inp: &[f32],
    out: &mut [f32],
    w: &[f32],
    b: &[f32],
    conns: &Connections,
) {
    let (start, input) = lists::<OW>(conns);
    forward_one_lists::<S, IW, OW>(s, inp, out, w, b, start, input)
}

/// [`forward_one`] over connection lists: those of output map `o` are
/// `start[o]..start[o + 1]`, connection `k` reading input map `input[k]`.
#[inline(always)]
fn forward_one_lists<S: Simd, const IW: usize, const OW: usize>(
    s: S,
    inp: &[f32],
    out: &mut [f32],
    w: &[f32],
    b: &[f32],
    start: &[usize],
    input: &[usize],
) {
    // (vectors per row at 8 lanes, rows computed together; for C3, vectors per tile)
    match OW {
        // 16-wide vectors: tiles of `M` maps x `T` vectors, `M T + T + 1` of
        // the 32 registers. (With 8-wide vectors and 16 registers, the row
        // and flat kernels below are faster: C1 3.9 against 4.7 us, C3 6.7
        // against 7.6.)
        C1_SIDE
            if S::W >= 16
                && forward_one_maps::<S, IW, OW, 3, 4>(s, inp, out, w, b, start, input) => {}
        C3_SIDE
            if S::W >= 16
                && forward_one_maps::<S, IW, OW, 4, 3>(s, inp, out, w, b, start, input) => {}
        C1_SIDE => forward_one_tiled::<S, IW, OW, 4, 2, 0>(s, inp, out, w, b, start, input),
        C3_SIDE => forward_one_flat::<S, IW, OW, 9>(s, inp, out, w, b, start, input),
        S2_SIDE => forward_one_tiled::<S, IW, OW, 2, 2, 0>(s, inp, out, w, b, start, input),
        _ => forward_one_tiled::<S, IW, OW, 4, 1, 0>(s, inp, out, w, b, start, input),
    }
}

/// Convolution of one image, vectorised along rows, before the activation
/// (rows of at most 32 pixels).
/// `ceil(OW / W)` vectors cover a row (at most `NV`); `RB` rows are computed
/// together and must divide `OW` (`RB NV` independent multiply-add chains).
/// The first and last `Z` rows of every input plane are known to be zero (the
/// padding of an input gradient): the taps that read them are skipped, which
/// adds only zero products, so the bits are those of the full sum. Reads and
/// writes past the end of a row; buffers carry [`SLACK`].
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn forward_one_tiled<
    S: Simd,
    const IW: usize,
    const OW: usize,
    const NV: usize,
    const RB: usize,
    const Z: usize,
>(
    s: S,
    inp: &[f32],
    out: &mut [f32],
    w: &[f32],
    b: &[f32],
    conn_start: &[usize],
    conn_in: &[usize],
) {
    let iplane = IW * IW;
    let oplane = OW * OW;
    for o in 0..conn_start.len() - 1 {
        for y0 in (0..OW).step_by(RB) {
            let nv = OW.div_ceil(S::W);
            debug_assert!(nv <= NV);
            let mut acc = [[s.splat(b[o]); NV]; RB];
            for k in conn_start[o]..conn_start[o + 1] {
                let c = conn_in[k];
                let wk = &w[k * KK..(k + 1) * KK];
                for ky in 0..5 {
                    for (r, acc_r) in acc.iter_mut().enumerate() {
                        let iy = y0 + r + ky;
                        if Z > 0 && (iy < Z || iy >= IW - Z) {
                            continue;
                        }
                        let at = c * iplane + iy * IW;
                        let row = &inp[at..at + 4 + nv * S::W];
                        for kx in 0..5 {
                            let wv = s.splat(wk[ky * 5 + kx]);
                            for (v, a) in acc_r.iter_mut().enumerate().take(nv) {
                                *a = s.fma(wv, s.load(&row[kx + v * S::W..]), *a);
                            }
                        }
                    }
                }
            }
            // Rows in increasing order: each row's overhang is overwritten by the next.
            for (r, acc_r) in acc.iter().enumerate() {
                let dst = &mut out[o * oplane + (y0 + r) * OW..];
                for (v, a) in acc_r.iter().enumerate().take(nv) {
                    s.store(*a, &mut dst[v * S::W..]);
                }
            }
        }
    }
}

/// Convolution of one image, before the activation, with the output rows laid
/// end to end at the input's row stride: flat position `q = y IW + x` holds
/// output (y, x) for `x < OW` (the other `IW - OW` positions of a row are
/// computed and dropped), so every tap reads one contiguous run of the input
/// plane and a vector is never part empty at a row's end. Tiles of `T`
/// vectors are kept in registers while the taps are walked. For C3 (10x10
/// outputs of 14x14 inputs) 136 flat positions hold the 100 outputs, 73% of
/// the lanes, against 63% for 10-pixel rows in 8- or 16-lane vectors. Each
/// output sums its taps in the order of [`forward_one_tiled`], so both give
/// the same bits. Reads up to `T W` floats past a plane's flat positions;
/// buffers carry [`SLACK`].
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn forward_one_flat<S: Simd, const IW: usize, const OW: usize, const T: usize>(
    s: S,
    inp: &[f32],
    out: &mut [f32],
    w: &[f32],
    b: &[f32],
    conn_start: &[usize],
    conn_in: &[usize],
) {
    let (iplane, oplane) = (IW * IW, OW * OW);
    let tile = T * S::W;
    let tiles = ((OW - 1) * IW + OW).div_ceil(tile);
    let mut flat = [0.0f32; FLAT_MAX];
    assert!(tiles * tile <= FLAT_MAX, "flat output buffer too small");
    for o in 0..conn_start.len() - 1 {
        for t in 0..tiles {
            let q0 = t * tile;
            let mut acc = [s.splat(b[o]); T];
            for k in conn_start[o]..conn_start[o + 1] {
                let base = conn_in[k] * iplane + q0;
                let wk = &w[k * KK..(k + 1) * KK];
                for ky in 0..5 {
                    for kx in 0..5 {
                        let wv = s.splat(wk[ky * 5 + kx]);
                        let at = base + ky * IW + kx;
                        let run = &inp[at..at + tile];
                        for (v, a) in acc.iter_mut().enumerate() {
                            *a = s.fma(wv, s.load(&run[v * S::W..]), *a);
                        }
                    }
                }
            }
            for (v, a) in acc.iter().enumerate() {
                s.store(*a, &mut flat[q0 + v * S::W..]);
            }
        }
        let dst = &mut out[o * oplane..(o + 1) * oplane];
        for (y, row) in dst.chunks_exact_mut(OW).enumerate() {
            row.copy_from_slice(&flat[y * IW..y * IW + OW]);
        }
    }
}

/// Floats of [`forward_one_flat`]'s buffer for one output map.
const FLAT_MAX: usize = 256;

/// Most input maps [`forward_one_maps`] handles.
const MAPS_IN: usize = 16;
/// Floats of [`forward_one_maps`]'s buffer for one output map.
const MAPS_FLAT: usize = 1024;

/// Convolution of one image over the flat layout of [`forward_one_flat`],
/// `M` output maps at a time: each input vector a tap loads feeds the `M`
/// maps' multiply-adds (`M T` accumulators in registers), where the other
/// single-image kernels load it again for every map; that load per
/// multiply-add bound them. The maps of a group that read an input map are
/// known per (group, input map) and the taps loop is compiled for each such
/// set (`MASK`), so no product of an absent connection is computed. Every
/// output sums the bias, then its connections in the order of the lists
/// (increasing input map), then the taps in order, as the other kernels do,
/// so the bits are theirs. Returns false, doing nothing, if the lists are not
/// ordered by input map or the shape is beyond the buffers (the caller then
/// runs another kernel). Reads up to `T W + 4 IW + 4` floats past a plane's
/// flat positions; buffers carry [`SLACK`].
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn forward_one_maps<S: Simd, const IW: usize, const OW: usize, const M: usize, const T: usize>(
    s: S,
    inp: &[f32],
    out: &mut [f32],
    w: &[f32],
    b: &[f32],
    conn_start: &[usize],
    conn_in: &[usize],
) -> bool {
    const { assert!(M <= 4, "a group's mask has at most four bits") };
    let n_out = conn_start.len() - 1;
    let n_in = conn_in.iter().map(|&c| c + 1).max().unwrap_or(0);
    let (iplane, oplane) = (IW * IW, OW * OW);
    let tile = T * S::W;
    let tiles = ((OW - 1) * IW + OW).div_ceil(tile);
    let ordered = (0..n_out).all(|o| {
        conn_in[conn_start[o]..conn_start[o + 1]]
            .windows(2)
            .all(|p| p[0] < p[1])
    });
    if !ordered || n_in > MAPS_IN || tiles * tile > MAPS_FLAT {
        return false;
    }
    let mut flat = [[0.0f32; MAPS_FLAT]; M];
    for o0 in (0..n_out).step_by(M) {
        let live = M.min(n_out - o0);
        // masks[c]: the maps of the group that read input map c, by connection ks[c].
        let mut masks = [0u32; MAPS_IN];
        let mut ks = [[0usize; M]; MAPS_IN];
        for m in 0..live {
            for k in conn_start[o0 + m]..conn_start[o0 + m + 1] {
                masks[conn_in[k]] |= 1 << m;
                ks[conn_in[k]][m] = k;
            }
        }
        for t in 0..tiles {
            let q0 = t * tile;
            let mut acc = [[s.splat(0.0); T]; M];
            for (m, a) in acc.iter_mut().enumerate().take(live) {
                *a = [s.splat(b[o0 + m]); T];
            }
            for c in 0..n_in {
                let base = c * iplane + q0;
                let k = &ks[c];
                macro_rules! arm {
                    ($($mask:literal)*) => {
                        match masks[c] {
                            0 => {}
                            $($mask => taps_maps::<S, IW, M, T, $mask>(s, inp, base, w, k, &mut acc),)*
                            _ => unreachable!("masks have at most four bits"),
                        }
                    };
                }
                arm!(1 2 3 4 5 6 7 8 9 10 11 12 13 14 15);
            }
            for (m, a) in acc.iter().enumerate().take(live) {
                for (v, x) in a.iter().enumerate() {
                    s.store(*x, &mut flat[m][q0 + v * S::W..]);
                }
            }
        }
        for (m, f) in flat.iter().enumerate().take(live) {
            let dst = &mut out[(o0 + m) * oplane..(o0 + m + 1) * oplane];
            for (y, row) in dst.chunks_exact_mut(OW).enumerate() {
                row.copy_from_slice(&f[y * IW..y * IW + OW]);
            }
        }
    }
    true
}

/// The 25 taps of one input map for the maps of a group in `MASK`
/// (see [`forward_one_maps`]); `k[m]` is map `m`'s connection.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn taps_maps<S: Simd, const IW: usize, const M: usize, const T: usize, const MASK: u32>(
    s: S,
    inp: &[f32],
    base: usize,
    w: &[f32],
    k: &[usize; M],
    acc: &mut [[S::V; T]; M],
) {
    let wk: [&[f32]; M] = std::array::from_fn(|m| {
        if MASK >> m & 1 == 1 {
            &w[k[m] * KK..(k[m] + 1) * KK]
        } else {
            &[]
        }
    });
    for ky in 0..5 {
        for kx in 0..5 {
            let at = base + ky * IW + kx;
            let run = &inp[at..at + T * S::W];
            let mut x = [s.splat(0.0); T];
            for (v, xv) in x.iter_mut().enumerate() {
                *xv = s.load(&run[v * S::W..]);
            }
            for (m, a) in acc.iter_mut().enumerate() {
                if MASK >> m & 1 == 1 {
                    let wv = s.splat(wk[m][ky * 5 + kx]);
                    for (av, xv) in a.iter_mut().zip(&x) {
                        *av = s.fma(wv, *xv, *av);
                    }
                }
            }
        }
    }
}

/// `0, 1, 2, ...`: lane numbers, for masks.
const IOTA: [f32; 16] = [
    0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 11.0, 12.0, 13.0, 14.0, 15.0,
];

/// Kernel and bias gradients of one image, accumulated (see [`kernel_grad_one_tiled`]).
#[inline(always)]
pub(crate) fn kernel_grad_one<S: Simd, const IW: usize, const OW: usize, const SQ: bool>(
    s: S,
    inp: &[f32],
    dpre: &[f32],
    gw: &mut [f32],
    gb: &mut [f32],
    conns: &Connections,
) {
    match OW {
        C3_SIDE => kernel_grad_one_tiled::<S, IW, OW, 2, SQ>(s, inp, dpre, gw, gb, conns),
        _ => kernel_grad_one_tiled::<S, IW, OW, 4, SQ>(s, inp, dpre, gw, gb, conns),
    }
}

/// Kernel and bias gradients of one image, accumulated into
/// `gw`, `gb`, vectorised along the output rows: `ceil(OW / W)` vectors a row (at
/// most `NV`), the lanes of the last one beyond the row masked to zero.
///
/// `gw[k][ky][kx] += sum_{y,x} dpre[o_k][y][x] inp[c_k][y+ky][x+kx]` (inputs squared
/// when `SQ`), `gb[o] += sum dpre[o]`. Reads past the end of an input row (those
/// products are masked); buffers carry [`SLACK`].
///
/// # Shapes
/// `inp`: `[C][IW][IW]`; `dpre`: `[O][OW][OW]`.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn kernel_grad_one_tiled<
    S: Simd,
    const IW: usize,
    const OW: usize,
    const NV: usize,
    const SQ: bool,
>(
    s: S,
    inp: &[f32],
    dpre: &[f32],
    gw: &mut [f32],
    gb: &mut [f32],
    conns: &Connections,
) {
    let (conn_start, conn_in) = lists::<OW>(conns);
    let iplane = IW * IW;
    let oplane = OW * OW;
    let nv = OW.div_ceil(S::W);
    debug_assert!(nv <= NV);
    let zero = s.splat(0.0);
    let inside = s.splat((OW - (nv - 1) * S::W) as f32);
    let iota = s.load(&IOTA);
    for o in 0..conn_start.len() - 1 {
        let d_o = &dpre[o * oplane..][..oplane + S::W];
        // The rows of dpre as vectors, the lanes past each row's end zero.
        let mut dv = [[zero; NV]; OW];
        let mut bias = zero;
        for (y, dy) in dv.iter_mut().enumerate() {
            for (v, d) in dy.iter_mut().enumerate().take(nv) {
                let x = s.load(&d_o[y * OW + v * S::W..]);
                *d = if v + 1 == nv {
                    s.select_lt(iota, inside, x, zero)
                } else {
                    x
                };
                bias = s.add(bias, *d);
            }
        }
        gb[o] += s.hsum(bias);
        for k in conn_start[o]..conn_start[o + 1] {
            let inp_c = &inp[conn_in[k] * iplane..];
            let gwk = &mut gw[k * KK..][..KK];
            kernel_grad_one_rows::<S, IW, OW, NV, 2, SQ>(s, inp_c, &dv, nv, gwk, 0);
            kernel_grad_one_rows::<S, IW, OW, NV, 2, SQ>(s, inp_c, &dv, nv, gwk, 2);
            kernel_grad_one_rows::<S, IW, OW, NV, 1, SQ>(s, inp_c, &dv, nv, gwk, 4);
        }
    }
}

/// Kernel rows `ky0..ky0 + NKY` of [`kernel_grad_one_tiled`].
#[inline(always)]
fn kernel_grad_one_rows<
    S: Simd,
    const IW: usize,
    const OW: usize,
    const NV: usize,
    const NKY: usize,
    const SQ: bool,
>(
    s: S,
    inp_c: &[f32],
    dv: &[[S::V; NV]; OW],
    nv: usize,
    gw: &mut [f32],
    ky0: usize,
) {
    let mut acc = [[s.splat(0.0); 5]; NKY];
    for (y, dy) in dv.iter().enumerate() {
        for (v, d) in dy.iter().enumerate().take(nv) {
            for (r, acc_r) in acc.iter_mut().enumerate() {
                let row = &inp_c[(y + ky0 + r) * IW + v * S::W..][..4 + S::W];
                for (kx, a) in acc_r.iter_mut().enumerate() {
                    let mut iv = s.load(&row[kx..]);
                    if SQ {
                        iv = s.mul(iv, iv);
                    }
                    *a = s.fma(*d, iv, *a);
                }
            }
        }
    }
    for (r, acc_r) in acc.iter().enumerate() {
        for (kx, a) in acc_r.iter().enumerate() {
            gw[(ky0 + r) * 5 + kx] += s.hsum(*a);
        }
    }
}

/// Input gradient of one image: the full correlation of `dpre` (`[O][OW][OW]`)
/// with the kernels, as a valid convolution of the gradient zero-padded by 4
/// on every side (`pad`, `[O][PAD][PAD]` with `PAD = OW + 8`, its border zero)
/// with the flipped kernels (`flipped`, one per connection in input-map order),
/// run by the forward kernel with the connections transposed. Writes `gin`
/// (`[C][IW][IW]`); `w` holds the kernels (squared in squared mode).
#[allow(clippy::too_many_arguments)]
#[inline(always)]
pub(crate) fn input_grad_one<S: Simd, const IW: usize, const OW: usize, const PAD: usize>(
    s: S,
    dpre: &[f32],
    w: &[f32],
    gin: &mut [f32],
    conns: &Connections,
    pad: &mut [f32],
    flipped: &mut [f32],
) {
    debug_assert!(PAD == OW + 8 && IW == OW + 4);
    for o in 0..conns.start.len() - 1 {
        for y in 0..OW {
            let at = o * PAD * PAD + (y + 4) * PAD + 4;
            pad[at..at + OW].copy_from_slice(&dpre[(o * OW + y) * OW..][..OW]);
        }
    }
    for (j, &k) in conns.t_k.iter().enumerate() {
        let (src, dst) = (&w[k * KK..][..KK], &mut flipped[j * KK..][..KK]);
        for (d, v) in dst.iter_mut().zip(src.iter().rev()) {
            *d = *v;
        }
    }
    let zero = [0.0f32; 64];
    let bias = &zero[..conns.of_input.len()];
    let (start, out) = (&conns.t_start, &conns.t_out);
    match IW {
        // C3's: 14 rows in 7 pairs of vectors (14 chains, against 4 for the
        // forward's blocks: a row's 25 taps are a chain of dependent FMAs), and
        // none of the taps on the 4 zero rows above and below the gradient.
        S2_SIDE => forward_one_tiled::<S, PAD, IW, 2, 7, 4>(s, pad, gin, flipped, bias, start, out),
        _ => forward_one_lists::<S, PAD, IW>(s, pad, gin, flipped, bias, start, out),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layers::testing::*;
    use crate::layers::SLACK;
    use crate::model::{C1_MAPS, C3_MAPS, IN, TABLE_I};
    use crate::rng::Rng;

    /// The convolution straight from the equation, in f64, for one image.
    fn conv_ref(inp: &[f32], iw: usize, w: &[f32], b: &[f32], cn: &Connections) -> Vec<f64> {
        let ow = iw - 4;
        let n_out = cn.start.len() - 1;
        let mut out = vec![0.0f64; n_out * ow * ow];
        for o in 0..n_out {
            for y in 0..ow {
                for x in 0..ow {
                    let mut a = b[o] as f64;
                    for k in cn.start[o]..cn.start[o + 1] {
                        let c = cn.input[k];
                        for ky in 0..5 {
                            for kx in 0..5 {
                                let v = inp[(c * iw + y + ky) * iw + x + kx] as f64;
                                a += w[k * KK + ky * 5 + kx] as f64 * v;
                            }
                        }
                    }
                    out[(o * ow + y) * ow + x] = a;
                }
            }
        }
        out
    }

    /// Kernel, bias and input gradients from the equations, for one image
    /// (inputs squared in the kernel gradients when `sq`).
    fn grads_ref(
        inp: &[f32],
        iw: usize,
        d: &[f32],
        w: &[f32],
        cn: &Connections,
        sq: bool,
    ) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
        let ow = iw - 4;
        let n_out = cn.start.len() - 1;
        let n_in = cn.of_input.len();
        let mut gw = vec![0.0f64; cn.len() * KK];
        let mut gb = vec![0.0f64; n_out];
        let mut gin = vec![0.0f64; n_in * iw * iw];
        for k in 0..cn.len() {
            let (c, o) = (cn.input[k], cn.output[k]);
            for y in 0..ow {
                for x in 0..ow {
                    let dv = d[(o * ow + y) * ow + x] as f64;
                    for ky in 0..5 {
                        for kx in 0..5 {
                            let at = (c * iw + y + ky) * iw + x + kx;
                            let v = inp[at] as f64;
                            gw[k * KK + ky * 5 + kx] += dv * if sq { v * v } else { v };
                            gin[at] += w[k * KK + ky * 5 + kx] as f64 * dv;
                        }
                    }
                }
            }
        }
        for o in 0..n_out {
            gb[o] = d[o * ow * ow..(o + 1) * ow * ow]
                .iter()
                .map(|&v| v as f64)
                .sum();
        }
        (gw, gb, gin)
    }

    fn table_one() -> Connections {
        Connections::new(C1_MAPS, C3_MAPS, |c, o| TABLE_I[c][o])
    }

    #[test]
    fn connections_of_table_one() {
        let cn = table_one();
        assert_eq!(cn.len(), 60);
        assert_eq!(cn.start[1..4], [3, 6, 9]);
        // Map 15 reads all six S2 maps; S2 map 0 feeds 10 C3 maps (Table I's row 0).
        assert_eq!(cn.input[cn.start[15]..cn.start[16]], [0, 1, 2, 3, 4, 5]);
        assert_eq!(cn.of_input[0].len(), 10);
        for (j, &k) in cn.t_k.iter().enumerate() {
            assert_eq!(cn.t_out[j], cn.output[k]);
        }
        assert_eq!(*cn.t_start.last().unwrap(), 60);
    }

    /// C3 (14 -> 10 over Table I) and C1 (32 -> 28, one input), forward and
    /// every gradient, chunk and single image, against the equations.
    #[test]
    fn forward_and_gradients_match_the_equations() {
        let s = Plain::new();
        let mut rng = Rng::new(3);
        let c1 = Connections::new(1, C1_MAPS, |_, _| true);
        let c3 = table_one();
        for (cn, iw) in [(&c3, S2_SIDE), (&c1, IN)] {
            let ow = iw - 4;
            let (n_in, n_out) = (cn.of_input.len(), cn.start.len() - 1);
            let (ni, no) = (n_in * iw * iw, n_out * ow * ow);
            let w = values(&mut rng, cn.len() * KK);
            let b = values(&mut rng, n_out);
            let imgs: Vec<Vec<f32>> = (0..W).map(|_| values(&mut rng, ni)).collect();
            let ds: Vec<Vec<f32>> = (0..W).map(|_| values(&mut rng, no)).collect();
            let refs: Vec<_> = (0..W).map(|l| conv_ref(&imgs[l], iw, &w, &b, cn)).collect();
            // Single images.
            for l in [0, 5] {
                let mut out = vec![0.0; no + SLACK];
                let mut gw = vec![0.0; cn.len() * KK];
                let mut gb = vec![0.0; n_out];
                let mut gw2 = vec![0.0; cn.len() * KK];
                let mut gb2 = vec![0.0; n_out];
                if iw == IN {
                    forward_one::<_, IN, C1_SIDE>(s, &imgs[l], &mut out, &w, &b, cn);
                    kernel_grad_one::<_, IN, C1_SIDE, false>(
                        s, &imgs[l], &ds[l], &mut gw, &mut gb, cn,
                    );
                    kernel_grad_one::<_, IN, C1_SIDE, true>(
                        s, &imgs[l], &ds[l], &mut gw2, &mut gb2, cn,
                    );
                } else {
                    forward_one::<_, S2_SIDE, C3_SIDE>(s, &imgs[l], &mut out, &w, &b, cn);
                    kernel_grad_one::<_, S2_SIDE, C3_SIDE, false>(
                        s, &imgs[l], &ds[l], &mut gw, &mut gb, cn,
                    );
                    kernel_grad_one::<_, S2_SIDE, C3_SIDE, true>(
                        s, &imgs[l], &ds[l], &mut gw2, &mut gb2, cn,
                    );
                    const PAD: usize = C3_SIDE + 8;
                    let mut pad = vec![0.0; C3_MAPS * PAD * PAD + SLACK];
                    let mut flipped = vec![0.0; cn.len() * KK];
                    let mut gin = vec![0.0; ni + SLACK];
                    input_grad_one::<_, S2_SIDE, C3_SIDE, PAD>(
                        s,
                        &ds[l],
                        &w,
                        &mut gin,
                        cn,
                        &mut pad,
                        &mut flipped,
                    );
                    let (_, _, want) = grads_ref(&imgs[l], iw, &ds[l], &w, cn, false);
                    close(&f64s(&gin[..ni]), &want, 1e-5, "input gradient, one image");
                }
                close(&f64s(&out[..no]), &refs[l], 1e-5, "forward, one image");
                let (want_w, want_b, _) = grads_ref(&imgs[l], iw, &ds[l], &w, cn, false);
                close(&f64s(&gw), &want_w, 1e-5, "kernel gradient, one image");
                close(&f64s(&gb), &want_b, 1e-5, "bias gradient, one image");
                let (want_w2, _, _) = grads_ref(&imgs[l], iw, &ds[l], &w, cn, true);
                close(
                    &f64s(&gw2),
                    &want_w2,
                    1e-5,
                    "squared kernel gradient, one image",
                );
            }
            // A chunk of W images.
            let x = to_chunk(&imgs, ni);
            let d = to_chunk(&ds, no);
            let mut out = vec![0.0; no * W + SLACK];
            let mut gw = vec![0.0; cn.len() * KK];
            let mut gb = vec![0.0; n_out];
            let mut gin = vec![0.0; ni * W + SLACK];
            if iw == IN {
                forward_chunk::<_, IN, C1_SIDE>(s, &x, &mut out, &w, &b, cn);
                kernel_grad_chunk::<_, IN, C1_SIDE, false>(s, &x, &d, &mut gw, &mut gb, cn);
            } else {
                forward_chunk::<_, S2_SIDE, C3_SIDE>(s, &x, &mut out, &w, &b, cn);
                kernel_grad_chunk::<_, S2_SIDE, C3_SIDE, false>(s, &x, &d, &mut gw, &mut gb, cn);
                input_grad_chunk::<_, S2_SIDE, C3_SIDE>(s, &d, &w, &mut gin, cn);
            }
            let (mut want_w, mut want_b) = (vec![0.0; gw.len()], vec![0.0; n_out]);
            for l in 0..W {
                close(&lane(&out, no, l), &refs[l], 1e-5, "forward, chunk");
                let (rw, rb, rin) = grads_ref(&imgs[l], iw, &ds[l], &w, cn, false);
                want_w.iter_mut().zip(&rw).for_each(|(a, b)| *a += b);
                want_b.iter_mut().zip(&rb).for_each(|(a, b)| *a += b);
                if iw != IN {
                    close(&lane(&gin, ni, l), &rin, 1e-5, "input gradient, chunk");
                }
            }
            close(&f64s(&gw), &want_w, 1e-5, "kernel gradient, chunk");
            close(&f64s(&gb), &want_b, 1e-5, "bias gradient, chunk");
        }
    }
}
