//! Zeroed `f32` buffers whose first element sits on a 64-byte boundary.
//!
//! The allocator only promises 16-byte alignment (large blocks come from `mmap`
//! 16 bytes past a page boundary), so a 64-byte vector of a lane-interleaved
//! buffer would straddle two cache lines on every load and store, which halves
//! what the L1 cache delivers to the AVX-512 kernels. A workspace buffer starts
//! at the first 64-byte boundary of a slightly larger allocation instead.

use std::ops::{Deref, DerefMut};

/// Floats in one cache line.
const LINE: usize = 16;

/// A zeroed buffer of `len` floats starting on a cache line.
pub struct Aligned {
    /// `LINE - 1` floats longer than the buffer, which starts at `off`.
    buf: Vec<f32>,
    off: usize,
}

impl Aligned {
    pub fn zeroed(len: usize) -> Self {
        let buf = vec![0.0f32; len + LINE - 1];
        // The heap block never moves while `buf` lives, so the offset holds.
        let off = buf.as_ptr().align_offset(LINE * 4).min(LINE - 1);
        Aligned { buf, off }
    }
}

impl Aligned {
    fn range(&self) -> std::ops::Range<usize> {
        self.off..self.off + self.buf.len() + 1 - LINE
    }
}

impl Deref for Aligned {
    type Target = [f32];
    fn deref(&self) -> &[f32] {
        &self.buf[self.range()]
    }
}

impl DerefMut for Aligned {
    fn deref_mut(&mut self) -> &mut [f32] {
        let r = self.range();
        &mut self.buf[r]
    }
}

impl Clone for Aligned {
    fn clone(&self) -> Self {
        let mut c = Aligned::zeroed(self.len());
        c.copy_from_slice(self);
        c
    }
}

impl std::fmt::Debug for Aligned {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        (**self).fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_on_a_cache_line_and_holds_zeros() {
        for len in [0, 1, 17, 1000, 100_000] {
            let a = Aligned::zeroed(len);
            assert_eq!(a.len(), len);
            assert_eq!(a.as_ptr() as usize % 64, 0);
            assert!(a.iter().all(|&v| v == 0.0));
            let b = a.clone();
            assert_eq!(b.as_ptr() as usize % 64, 0);
        }
    }
}
