//! Images as the network sees them.
//!
//! Pixels are mapped so that the background is -0.1 and full ink 1.175 (the
//! paper's normalisation): a `u8` value v becomes -0.1 + 1.275 v / 255 and a float
//! v in [0, 1] becomes -0.1 + 1.275 v. 28x28 images are centred on the 32x32
//! input with 2 pixels of background on every side.

use ndarray::{ArrayView3, Axis};

use crate::error::{LeNetError, Result};
use crate::model::IN;
use crate::simd::MAX_LANES;

/// Network value of the background.
pub const BACKGROUND: f32 = -0.1;
/// Network value of full ink minus the background.
pub const INK_RANGE: f32 = 1.275;

/// A pixel type the library accepts.
pub trait Pixel: Copy + Send + Sync + 'static {
    /// Network value of this pixel.
    fn to_net(self) -> f32;
    /// Whether the value is a valid pixel (finite and in range).
    fn valid(self) -> bool;
    /// Type name for messages.
    const NAME: &'static str;
    /// Whether every value of the type is a valid pixel (nothing to check).
    const ALWAYS_VALID: bool = false;
    /// The values as bytes, when they are bytes (copied as they are into a
    /// uint8 store).
    fn as_bytes(_: &[Self]) -> Option<&[u8]> {
        None
    }
}

impl Pixel for u8 {
    #[inline(always)]
    fn to_net(self) -> f32 {
        BACKGROUND + self as f32 * (INK_RANGE / 255.0)
    }
    #[inline(always)]
    fn valid(self) -> bool {
        true
    }
    const NAME: &'static str = "uint8";
    const ALWAYS_VALID: bool = true;
    fn as_bytes(s: &[u8]) -> Option<&[u8]> {
        Some(s)
    }
}

impl Pixel for f32 {
    #[inline(always)]
    fn to_net(self) -> f32 {
        BACKGROUND + self * INK_RANGE
    }
    #[inline(always)]
    fn valid(self) -> bool {
        (0.0..=1.0).contains(&self)
    }
    const NAME: &'static str = "float32";
}

impl Pixel for f64 {
    #[inline(always)]
    fn to_net(self) -> f32 {
        (BACKGROUND as f64 + self * INK_RANGE as f64) as f32
    }
    #[inline(always)]
    fn valid(self) -> bool {
        (0.0..=1.0).contains(&self)
    }
    const NAME: &'static str = "float64";
}

/// A view of images `[n][side][side]` with any strides (negative too).
#[derive(Clone, Copy, Debug)]
pub struct ImageView<'a, T> {
    view: ArrayView3<'a, T>,
    pub n: usize,
    pub side: usize,
}

impl<'a, T: Pixel> ImageView<'a, T> {
    /// Wraps a 3-D array view; the images must be 28x28 or 32x32.
    pub fn new(view: ArrayView3<'a, T>) -> Result<Self> {
        let (n, h, w) = view.dim();
        if h != w || !(h == 28 || h == IN) {
            return Err(LeNetError::value(format!(
                "images must be 28x28 or 32x32; got {h}x{w}"
            )));
        }
        Ok(ImageView { view, n, side: h })
    }

    /// A C-contiguous view of `n` images of `side`x`side` pixels.
    pub fn contiguous(data: &'a [T], n: usize, side: usize) -> Result<Self> {
        let view = ArrayView3::from_shape((n, side, side), data).map_err(|_| {
            LeNetError::value(format!(
                "expected {n} images of {side}x{side} = {} values; got {}",
                n * side * side,
                data.len()
            ))
        })?;
        Self::new(view)
    }

    /// Checks every pixel of image `i`.
    pub fn check(&self, i: usize) -> Result<()> {
        if T::ALWAYS_VALID {
            return Ok(());
        }
        if let Some(pos) = self
            .view
            .index_axis(Axis(0), i)
            .indexed_iter()
            .find(|(_, v)| !v.valid())
        {
            let ((y, x), _) = pos;
            return Err(LeNetError::value(format!(
                "{} pixels must be finite and in [0, 1]; image {i} has a value outside at (row {y}, column {x})",
                T::NAME
            )));
        }
        Ok(())
    }

    /// Writes image `i` in network units into lane `lane` of a chunk input
    /// `dst` (`[32][32][lanes]`).
    #[inline]
    pub fn write_lane(&self, i: usize, dst: &mut [f32], lane: usize, lanes: usize) {
        let pad = (IN - self.side) / 2;
        if pad > 0 {
            // The frame only: whole rows above and below, a few columns beside.
            let end = pad + self.side;
            for y in (0..pad).chain(end..IN) {
                for x in 0..IN {
                    dst[(y * IN + x) * lanes + lane] = BACKGROUND;
                }
            }
            for y in pad..end {
                for x in (0..pad).chain(end..IN) {
                    dst[(y * IN + x) * lanes + lane] = BACKGROUND;
                }
            }
        }
        let img = self.view.index_axis(Axis(0), i);
        for (y, row) in img.outer_iter().enumerate() {
            let row0 = ((y + pad) * IN + pad) * lanes + lane;
            if let Some(s) = row.as_slice() {
                for (x, v) in s.iter().enumerate() {
                    dst[row0 + x * lanes] = v.to_net();
                }
            } else {
                for (x, v) in row.iter().enumerate() {
                    dst[row0 + x * lanes] = v.to_net();
                }
            }
        }
    }
}

impl<T: Pixel> ImageView<'_, T> {
    /// Writes the images `idx` (one per lane) into a chunk input `dst`
    /// (`[32][32][lanes]`), zeroing the lanes past `idx.len()`: the same values
    /// as [`fill_chunk`] with [`ImageView::write_lane`], written a pixel at a
    /// time across the lanes (16 values side by side) rather than an image at a
    /// time with a stride of `lanes` floats, which took an eighth of a batch's
    /// inference.
    pub fn write_chunk(&self, idx: &[usize], dst: &mut [f32], lanes: usize) {
        let live = idx.len();
        debug_assert!(live <= lanes && lanes <= MAX_LANES && dst.len() >= IN * IN * lanes);
        let mut rows: [&[T]; MAX_LANES] = [&[]; MAX_LANES];
        let side = self.side;
        let mut contiguous = lanes > 1 && live <= MAX_LANES;
        if contiguous {
            for (slot, &i) in rows.iter_mut().zip(idx) {
                match self.view.index_axis_move(Axis(0), i).to_slice() {
                    Some(s) => *slot = s,
                    None => {
                        contiguous = false;
                        break;
                    }
                }
            }
        }
        if !contiguous {
            fill_chunk(dst, lanes, idx, |i, d, lane| {
                self.write_lane(i, d, lane, lanes)
            });
            return;
        }
        let rows = &rows[..live];
        // (Workspaces carry slack past the chunk.)
        let dst = &mut dst[..IN * IN * lanes];
        if live < lanes {
            dst.fill(0.0);
        }
        let pad = (IN - side) / 2;
        let end = pad + side;
        for (y, line) in dst.chunks_exact_mut(IN * lanes).enumerate() {
            if y < pad || y >= end {
                for px in line.chunks_exact_mut(lanes) {
                    px[..live].fill(BACKGROUND);
                }
                continue;
            }
            let src0 = (y - pad) * side;
            for (x, px) in line.chunks_exact_mut(lanes).enumerate() {
                let px = &mut px[..live];
                if x < pad || x >= end {
                    px.fill(BACKGROUND);
                } else {
                    let at = src0 + x - pad;
                    for (d, r) in px.iter_mut().zip(rows) {
                        *d = r[at].to_net();
                    }
                }
            }
        }
    }
}

/// Owned training images, copied once from the caller's array.
#[derive(Clone, Debug)]
pub enum ImageStore {
    U8 {
        data: Vec<u8>,
        n: usize,
        side: usize,
    },
    F32 {
        data: Vec<f32>,
        n: usize,
        side: usize,
    },
}

impl ImageStore {
    /// Copies and validates every image of `view`.
    #[cfg(test)]
    pub fn from_view<T: Pixel + Into<f64>>(view: &ImageView<'_, T>, to_u8: bool) -> Result<Self> {
        let mut store = Self::with_capacity(view.n, view.side, to_u8)?;
        store.push_view(view)?;
        Ok(store)
    }

    /// An empty store with room for `n` images of `side`x`side` pixels, kept as
    /// uint8 (`to_u8`) or float32.
    ///
    /// # Errors
    ///
    /// [`LeNetError::Value`] when the pixels do not fit in memory (see
    /// [`crate::train::check_output`]); [`LeNetError::Memory`] when they cannot
    /// be reserved.
    pub fn with_capacity(n: usize, side: usize, to_u8: bool) -> Result<Self> {
        let bytes = if to_u8 { 1 } else { 4 };
        let len = crate::train::check_output(n, side * side, bytes, "the training images")?;
        let fail = |_| {
            LeNetError::Memory(format!(
                "cannot allocate {} MiB for the training images",
                (len * bytes) >> 20
            ))
        };
        Ok(if to_u8 {
            let mut data = Vec::new();
            data.try_reserve_exact(len).map_err(fail)?;
            ImageStore::U8 { data, n: 0, side }
        } else {
            let mut data = Vec::new();
            data.try_reserve_exact(len).map_err(fail)?;
            ImageStore::F32 { data, n: 0, side }
        })
    }

    /// Checks every image of `view` and appends it (rows are copied as slices
    /// where the view has contiguous rows).
    ///
    /// # Errors
    ///
    /// [`LeNetError::Value`] for an invalid pixel or images of another size.
    pub fn push_view<T: Pixel + Into<f64>>(&mut self, view: &ImageView<'_, T>) -> Result<()> {
        let (store_side, count) = match self {
            ImageStore::U8 { side, n, .. } | ImageStore::F32 { side, n, .. } => (*side, *n),
        };
        if view.side != store_side {
            return Err(LeNetError::value(format!(
                "all images must have the same size; got {0}x{0} after {1}x{1}",
                view.side, store_side
            )));
        }
        for i in 0..view.n {
            view.check(i)?;
        }
        // Bytes in C order into a byte store: one copy (60,000 MNIST digits in
        // a few milliseconds, against 150 ms pixel by pixel).
        match (&mut *self, view.view.as_slice().and_then(T::as_bytes)) {
            (ImageStore::U8 { data, .. }, Some(bytes)) => data.extend_from_slice(bytes),
            _ => {
                for i in 0..view.n {
                    let img = view.view.index_axis(Axis(0), i);
                    for row in img.outer_iter() {
                        match self {
                            ImageStore::U8 { data, .. } => {
                                data.extend(row.iter().map(|&v| v.into() as u8));
                            }
                            ImageStore::F32 { data, .. } => {
                                data.extend(row.iter().map(|&v| v.into() as f32));
                            }
                        }
                    }
                }
            }
        }
        match self {
            ImageStore::U8 { n, .. } | ImageStore::F32 { n, .. } => *n = count + view.n,
        }
        Ok(())
    }

    pub fn len(&self) -> usize {
        match self {
            ImageStore::U8 { n, .. } | ImageStore::F32 { n, .. } => *n,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn bytes(&self) -> usize {
        match self {
            ImageStore::U8 { data, .. } => data.len(),
            ImageStore::F32 { data, .. } => data.len() * 4,
        }
    }

    /// Writes the images `idx` into a chunk input (see [`ImageView::write_chunk`]).
    pub fn write_chunk(&self, idx: &[usize], dst: &mut [f32], lanes: usize) {
        match self {
            ImageStore::U8 { data, n, side } => ImageView::contiguous(data, *n, *side)
                .expect("store shape")
                .write_chunk(idx, dst, lanes),
            ImageStore::F32 { data, n, side } => ImageView::contiguous(data, *n, *side)
                .expect("store shape")
                .write_chunk(idx, dst, lanes),
        }
    }

    /// Writes image `i` into a lane of a chunk input.
    #[inline]
    pub fn write_lane(&self, i: usize, dst: &mut [f32], lane: usize, lanes: usize) {
        match self {
            ImageStore::U8 { data, n, side } => ImageView::contiguous(data, *n, *side)
                .expect("store shape")
                .write_lane(i, dst, lane, lanes),
            ImageStore::F32 { data, n, side } => ImageView::contiguous(data, *n, *side)
                .expect("store shape")
                .write_lane(i, dst, lane, lanes),
        }
    }
}

/// Fills a chunk input with the images `idx` (one per lane), zeroing unused lanes.
pub fn fill_chunk(
    dst: &mut [f32],
    lanes: usize,
    idx: &[usize],
    mut write: impl FnMut(usize, &mut [f32], usize),
) {
    if idx.len() < lanes {
        dst.fill(0.0);
    }
    for (lane, &i) in idx.iter().enumerate() {
        write(i, dst, lane);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mapping_and_padding() {
        let img = vec![255u8; 28 * 28];
        let v = ImageView::contiguous(&img, 1, 28).unwrap();
        let mut dst = vec![0.0; 1024];
        v.write_lane(0, &mut dst, 0, 1);
        assert!((dst[0] - BACKGROUND).abs() < 1e-7);
        assert!((dst[2 * 32 + 2] - 1.175).abs() < 1e-6);
        assert!((dst[29 * 32 + 29] - 1.175).abs() < 1e-6);
        assert!((dst[30 * 32 + 30] - BACKGROUND).abs() < 1e-7);
    }

    #[test]
    fn a_chunk_written_across_the_lanes_equals_one_lane_at_a_time() {
        let bytes: Vec<u8> = (0..5 * 28 * 28).map(|i| (i * 37 % 256) as u8).collect();
        let floats: Vec<f32> = (0..5 * 32 * 32).map(|i| (i % 97) as f32 / 96.0).collect();
        let u8s = ImageView::contiguous(&bytes, 5, 28).unwrap();
        let f32s = ImageView::contiguous(&floats, 5, 32).unwrap();
        for lanes in [8, 16] {
            for idx in [&[4usize, 0, 2][..], &[1, 3, 0, 2, 4, 1, 0, 3][..]] {
                let n = IN * IN * lanes;
                let mut want = vec![7.0; n];
                let mut got = vec![7.0; n + 32];
                fill_chunk(&mut want, lanes, idx, |i, d, l| {
                    u8s.write_lane(i, d, l, lanes)
                });
                u8s.write_chunk(idx, &mut got, lanes);
                assert_eq!(&got[..n], &want[..], "uint8, {lanes} lanes");
                fill_chunk(&mut want, lanes, idx, |i, d, l| {
                    f32s.write_lane(i, d, l, lanes)
                });
                f32s.write_chunk(idx, &mut got, lanes);
                assert_eq!(&got[..n], &want[..], "float32, {lanes} lanes");
            }
        }
        // The pixel of image 4 at (row 3, column 5), 28x28 centred: lane 0, position (5, 7).
        let mut got = vec![0.0; IN * IN * 16];
        u8s.write_chunk(&[4], &mut got, 16);
        let v = bytes[4 * 784 + 3 * 28 + 5];
        assert_eq!(
            got[(5 * IN + 7) * 16],
            BACKGROUND + v as f32 * (INK_RANGE / 255.0)
        );
        assert_eq!(got[(5 * IN + 7) * 16 + 1], 0.0);
        assert_eq!(got[0], BACKGROUND);
    }

    #[test]
    fn float_range_is_checked() {
        let img = vec![0.5f32; 1024];
        let mut bad = img.clone();
        bad[7] = f32::NAN;
        assert!(ImageView::contiguous(&img, 1, 32).unwrap().check(0).is_ok());
        assert!(ImageView::contiguous(&bad, 1, 32)
            .unwrap()
            .check(0)
            .is_err());
        bad[7] = 1.5;
        assert!(ImageView::contiguous(&bad, 1, 32)
            .unwrap()
            .check(0)
            .is_err());
    }

    #[test]
    fn negative_strides() {
        let img: Vec<u8> = (0..2 * 28 * 28).map(|i| (i % 251) as u8).collect();
        // Image order reversed.
        let arr = ArrayView3::from_shape((2, 28, 28), &img[..]).unwrap();
        let v = ImageView::new(arr.slice(ndarray::s![..;-1, .., ..])).unwrap();
        let c = ImageView::contiguous(&img, 2, 28).unwrap();
        let (mut a, mut b) = (vec![0.0; 1024], vec![0.0; 1024]);
        v.write_lane(0, &mut a, 0, 1);
        c.write_lane(1, &mut b, 0, 1);
        assert_eq!(a, b);
        assert!(ImageView::contiguous(&img, 3, 28).is_err());
    }
}
