//! Run-time choice of instruction set.
//!
//! The kernels are written once, generic over [`Math`] (how `a * b + c` is
//! computed) and inlined into one entry point per task. [`dispatch`] runs that
//! entry point compiled for the best instruction set this CPU has (AVX2 with FMA
//! on x86-64; plain SSE2 code elsewhere), so a wheel built for a generic x86-64
//! still uses the wide units where they exist and runs correctly where not.
//!
//! Results are bit-identical for a given instruction set; between instruction
//! sets they may differ in the last bits (a fused multiply-add rounds once).
//! The widest path the CPU has is used (see `detect` for why);
//! `LENET5_ISA=scalar` (or `avx2`, `avx512`) forces a choice.

use std::sync::OnceLock;

// Subnormal numbers
//
// A multiply or add with a subnormal operand or result (|x| < 2^-126, about
// 1.2e-38) takes a microcode assist on many x86 CPUs, 10-100x slower. Weight
// decay on units that never fire (dead ReLUs) drives weights and optimizer
// moments towards zero, so without care thousands of them end up subnormal
// and every multiply-add over them is slow.
//
// The usual cure, flush-to-zero and denormals-are-zero in MXCSR (bits 15 and
// 6), is not open to Rust code: the documentation of
// `core::arch::x86_64::_mm_setcsr` (section "Denormals-are-zero/Flush-to-zero
// Mode") says that changing that mode is immediate undefined behaviour, even
// when restored afterwards, because the compiler assumes the default
// floating-point environment (it constant-folds and moves float operations on
// that assumption); inline assembly may change it only inside one `asm!`
// block, restoring it before the block ends. So the crate keeps
// subnormals out of the numbers instead: the weights given to `set_weights`
// and the SDLM curvature pass through [`flush`], and the optimizer stores no
// value so small that its next step would make a subnormal (`optim`,
// "Floors"). The kernels then see normal numbers or zeros. These are integer
// operations on the bits, so they give the same bits on every thread, every
// instruction set and every CPU.

/// Bits of `f32::MIN_POSITIVE`, the smallest normal magnitude.
pub const NORMAL: u32 = 0x0080_0000;

/// `x`, or a zero of its sign if `|x|` is below the magnitude whose bits are
/// `floor`. Compares the bits as integers (no float operation, so a subnormal
/// `x` costs nothing extra) and vectorises; NaN and infinities pass unchanged
/// for any finite `floor`.
#[inline(always)]
pub fn zero_below(x: f32, floor: u32) -> f32 {
    let b = x.to_bits();
    // Magnitude bits and floor are below 2^31: a signed compare, and the
    // select written as a mask (4 vector instructions with SSE2).
    let small = (((b & 0x7fff_ffff) as i32) < floor as i32) as u32;
    f32::from_bits(b & !(small.wrapping_neg() & 0x7fff_ffff))
}

/// `x`, or a zero of the same sign if `x` is subnormal (what flush-to-zero
/// stores).
#[inline(always)]
pub fn flush(x: f32) -> f32 {
    zero_below(x, NORMAL)
}

/// `x * x`, or zero where that is subnormal, without forming the subnormal
/// (|x| < 2^-63 squares below 2^-126). The same bits as `flush(x * x)`.
#[inline(always)]
pub fn square(x: f32) -> f32 {
    let x = zero_below(x, 0x2000_0000); // 2^-63
    x * x
}

/// [`flush`] on every element.
pub fn flush_all(xs: &mut [f32]) {
    for x in xs {
        *x = flush(*x);
    }
}

/// How `a * b + c` is evaluated inside the scalar parts of the kernels.
pub trait Math: Simd {
    /// `a * b + c`.
    fn fma1(a: f32, b: f32, c: f32) -> f32;
}

/// A vector of `f32` lanes and the operations the kernels need on them.
///
/// A value of a type implementing `Simd` is a token: it proves the CPU has the
/// instructions its methods use. Tokens are only made by [`dispatch`].
pub trait Simd: Copy + Send + Sync + 'static {
    /// Lanes per vector.
    const W: usize;
    /// A vector of `W` lanes.
    type V: Copy;
    fn splat(self, x: f32) -> Self::V;
    /// Reads `s[..W]`.
    fn load(self, s: &[f32]) -> Self::V;
    /// Writes `d[..W]`.
    fn store(self, v: Self::V, d: &mut [f32]);
    fn add(self, a: Self::V, b: Self::V) -> Self::V;
    fn sub(self, a: Self::V, b: Self::V) -> Self::V;
    fn mul(self, a: Self::V, b: Self::V) -> Self::V;
    fn div(self, a: Self::V, b: Self::V) -> Self::V;
    /// `a * b + c` (fused where the CPU has it).
    fn fma(self, a: Self::V, b: Self::V, c: Self::V) -> Self::V;
    fn max(self, a: Self::V, b: Self::V) -> Self::V;
    fn min(self, a: Self::V, b: Self::V) -> Self::V;
    fn abs(self, a: Self::V) -> Self::V;
    /// Lane-wise `if a < b { x } else { y }`.
    fn select_lt(self, a: Self::V, b: Self::V, x: Self::V, y: Self::V) -> Self::V;
    /// Lane-wise `if a == b { x } else { y }`.
    fn select_eq(self, a: Self::V, b: Self::V, x: Self::V, y: Self::V) -> Self::V;
    /// Magnitude of `mag` with the sign of `sign`.
    fn copysign(self, mag: Self::V, sign: Self::V) -> Self::V;
    /// Sum of the lanes, lane 0 first.
    #[inline(always)]
    fn hsum(self, v: Self::V) -> f32 {
        let mut a = [0.0f32; 16];
        self.store(v, &mut a);
        let mut s = a[0];
        for x in &a[1..Self::W] {
            s += *x;
        }
        s
    }
}

/// Plain code for any CPU (the compiler may still use SSE2).
#[derive(Clone, Copy, Debug)]
pub struct Plain(());

impl Plain {
    /// The plain token, for tests of the kernels (it needs no CPU feature).
    #[cfg(test)]
    pub(crate) fn new() -> Self {
        Plain(())
    }
}

/// AVX2 and FMA (x86-64), eight lanes.
#[derive(Clone, Copy, Debug)]
pub struct Fused(());

/// AVX-512F (x86-64), sixteen lanes.
#[derive(Clone, Copy, Debug)]
pub struct Avx512(());

impl Math for Plain {
    #[inline(always)]
    fn fma1(a: f32, b: f32, c: f32) -> f32 {
        a * b + c
    }
}

macro_rules! lanewise {
    ($a:expr, $b:expr, |$x:ident, $y:ident| $e:expr) => {{
        let (a, b) = ($a, $b);
        let mut r = [0.0f32; 8];
        for i in 0..8 {
            let ($x, $y) = (a[i], b[i]);
            r[i] = $e;
        }
        r
    }};
}

impl Simd for Plain {
    const W: usize = 8;
    type V = [f32; 8];
    #[inline(always)]
    fn splat(self, x: f32) -> [f32; 8] {
        [x; 8]
    }
    #[inline(always)]
    fn load(self, s: &[f32]) -> [f32; 8] {
        s[..8].try_into().unwrap()
    }
    #[inline(always)]
    fn store(self, v: [f32; 8], d: &mut [f32]) {
        d[..8].copy_from_slice(&v);
    }
    #[inline(always)]
    fn add(self, a: [f32; 8], b: [f32; 8]) -> [f32; 8] {
        lanewise!(a, b, |x, y| x + y)
    }
    #[inline(always)]
    fn sub(self, a: [f32; 8], b: [f32; 8]) -> [f32; 8] {
        lanewise!(a, b, |x, y| x - y)
    }
    #[inline(always)]
    fn mul(self, a: [f32; 8], b: [f32; 8]) -> [f32; 8] {
        lanewise!(a, b, |x, y| x * y)
    }
    #[inline(always)]
    fn div(self, a: [f32; 8], b: [f32; 8]) -> [f32; 8] {
        lanewise!(a, b, |x, y| x / y)
    }
    #[inline(always)]
    fn fma(self, a: [f32; 8], b: [f32; 8], c: [f32; 8]) -> [f32; 8] {
        let mut r = [0.0f32; 8];
        for i in 0..8 {
            r[i] = a[i] * b[i] + c[i];
        }
        r
    }
    #[inline(always)]
    fn max(self, a: [f32; 8], b: [f32; 8]) -> [f32; 8] {
        lanewise!(a, b, |x, y| if x > y { x } else { y })
    }
    #[inline(always)]
    fn min(self, a: [f32; 8], b: [f32; 8]) -> [f32; 8] {
        lanewise!(a, b, |x, y| if x < y { x } else { y })
    }
    #[inline(always)]
    fn abs(self, a: [f32; 8]) -> [f32; 8] {
        a.map(f32::abs)
    }
    #[inline(always)]
    fn select_lt(self, a: [f32; 8], b: [f32; 8], x: [f32; 8], y: [f32; 8]) -> [f32; 8] {
        let mut r = y;
        for i in 0..8 {
            if a[i] < b[i] {
                r[i] = x[i];
            }
        }
        r
    }
    #[inline(always)]
    fn select_eq(self, a: [f32; 8], b: [f32; 8], x: [f32; 8], y: [f32; 8]) -> [f32; 8] {
        let mut r = y;
        for i in 0..8 {
            if a[i] == b[i] {
                r[i] = x[i];
            }
        }
        r
    }
    #[inline(always)]
    fn copysign(self, mag: [f32; 8], sign: [f32; 8]) -> [f32; 8] {
        lanewise!(mag, sign, |x, y| x.copysign(y))
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    #![allow(unsafe_code)]
    //! SAFETY (for every `unsafe` block here): a `Fused` token is only created
    //! by `dispatch` after `is_x86_feature_detected!` confirmed AVX2 and FMA,
    //! and every load and store goes through a bounds-checked `[..8]` slice.
    use super::{Fused, Math, Simd};
    use std::arch::x86_64::*;

    impl Math for Fused {
        #[inline(always)]
        fn fma1(a: f32, b: f32, c: f32) -> f32 {
            a.mul_add(b, c)
        }
    }

    impl Simd for Fused {
        const W: usize = 8;
        type V = __m256;
        #[inline(always)]
        fn splat(self, x: f32) -> __m256 {
            unsafe { _mm256_set1_ps(x) }
        }
        #[inline(always)]
        fn load(self, s: &[f32]) -> __m256 {
            let s = &s[..8];
            unsafe { _mm256_loadu_ps(s.as_ptr()) }
        }
        #[inline(always)]
        fn store(self, v: __m256, d: &mut [f32]) {
            let d = &mut d[..8];
            unsafe { _mm256_storeu_ps(d.as_mut_ptr(), v) }
        }
        #[inline(always)]
        fn add(self, a: __m256, b: __m256) -> __m256 {
            unsafe { _mm256_add_ps(a, b) }
        }
        #[inline(always)]
        fn sub(self, a: __m256, b: __m256) -> __m256 {
            unsafe { _mm256_sub_ps(a, b) }
        }
        #[inline(always)]
        fn mul(self, a: __m256, b: __m256) -> __m256 {
            unsafe { _mm256_mul_ps(a, b) }
        }
        #[inline(always)]
        fn div(self, a: __m256, b: __m256) -> __m256 {
            unsafe { _mm256_div_ps(a, b) }
        }
        #[inline(always)]
        fn fma(self, a: __m256, b: __m256, c: __m256) -> __m256 {
            unsafe { _mm256_fmadd_ps(a, b, c) }
        }
        #[inline(always)]
        fn max(self, a: __m256, b: __m256) -> __m256 {
            // Same rule as the plain code: `if a > b { a } else { b }`.
            unsafe { _mm256_blendv_ps(b, a, _mm256_cmp_ps::<_CMP_GT_OQ>(a, b)) }
        }
        #[inline(always)]
        fn min(self, a: __m256, b: __m256) -> __m256 {
            unsafe { _mm256_blendv_ps(b, a, _mm256_cmp_ps::<_CMP_LT_OQ>(a, b)) }
        }
        #[inline(always)]
        fn abs(self, a: __m256) -> __m256 {
            unsafe { _mm256_andnot_ps(_mm256_set1_ps(-0.0), a) }
        }
        #[inline(always)]
        fn select_lt(self, a: __m256, b: __m256, x: __m256, y: __m256) -> __m256 {
            unsafe { _mm256_blendv_ps(y, x, _mm256_cmp_ps::<_CMP_LT_OQ>(a, b)) }
        }
        #[inline(always)]
        fn select_eq(self, a: __m256, b: __m256, x: __m256, y: __m256) -> __m256 {
            unsafe { _mm256_blendv_ps(y, x, _mm256_cmp_ps::<_CMP_EQ_OQ>(a, b)) }
        }
        #[inline(always)]
        fn copysign(self, mag: __m256, sign: __m256) -> __m256 {
            unsafe {
                let m = _mm256_set1_ps(-0.0);
                _mm256_or_ps(_mm256_andnot_ps(m, mag), _mm256_and_ps(m, sign))
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    #![allow(unsafe_code)]
    //! SAFETY (for every `unsafe` block here): an `Avx512` token is only
    //! created by `dispatch` after `is_x86_feature_detected!` confirmed
    //! AVX-512F, AVX2 and FMA, and every load and store goes through a
    //! bounds-checked `[..16]` slice.
    use super::{Avx512, Math, Simd};
    use std::arch::x86_64::*;

    impl Math for Avx512 {
        #[inline(always)]
        fn fma1(a: f32, b: f32, c: f32) -> f32 {
            a.mul_add(b, c)
        }
    }

    impl Simd for Avx512 {
        const W: usize = 16;
        type V = __m512;
        #[inline(always)]
        fn splat(self, x: f32) -> __m512 {
            unsafe { _mm512_set1_ps(x) }
        }
        #[inline(always)]
        fn load(self, s: &[f32]) -> __m512 {
            let s = &s[..16];
            unsafe { _mm512_loadu_ps(s.as_ptr()) }
        }
        #[inline(always)]
        fn store(self, v: __m512, d: &mut [f32]) {
            let d = &mut d[..16];
            unsafe { _mm512_storeu_ps(d.as_mut_ptr(), v) }
        }
        #[inline(always)]
        fn add(self, a: __m512, b: __m512) -> __m512 {
            unsafe { _mm512_add_ps(a, b) }
        }
        #[inline(always)]
        fn sub(self, a: __m512, b: __m512) -> __m512 {
            unsafe { _mm512_sub_ps(a, b) }
        }
        #[inline(always)]
        fn mul(self, a: __m512, b: __m512) -> __m512 {
            unsafe { _mm512_mul_ps(a, b) }
        }
        #[inline(always)]
        fn div(self, a: __m512, b: __m512) -> __m512 {
            unsafe { _mm512_div_ps(a, b) }
        }
        #[inline(always)]
        fn fma(self, a: __m512, b: __m512, c: __m512) -> __m512 {
            unsafe { _mm512_fmadd_ps(a, b, c) }
        }
        #[inline(always)]
        fn max(self, a: __m512, b: __m512) -> __m512 {
            unsafe { _mm512_mask_blend_ps(_mm512_cmp_ps_mask::<_CMP_GT_OQ>(a, b), b, a) }
        }
        #[inline(always)]
        fn min(self, a: __m512, b: __m512) -> __m512 {
            unsafe { _mm512_mask_blend_ps(_mm512_cmp_ps_mask::<_CMP_LT_OQ>(a, b), b, a) }
        }
        #[inline(always)]
        fn abs(self, a: __m512) -> __m512 {
            unsafe { _mm512_abs_ps(a) }
        }
        #[inline(always)]
        fn select_lt(self, a: __m512, b: __m512, x: __m512, y: __m512) -> __m512 {
            unsafe { _mm512_mask_blend_ps(_mm512_cmp_ps_mask::<_CMP_LT_OQ>(a, b), y, x) }
        }
        #[inline(always)]
        fn select_eq(self, a: __m512, b: __m512, x: __m512, y: __m512) -> __m512 {
            unsafe { _mm512_mask_blend_ps(_mm512_cmp_ps_mask::<_CMP_EQ_OQ>(a, b), y, x) }
        }
        #[inline(always)]
        fn copysign(self, mag: __m512, sign: __m512) -> __m512 {
            unsafe {
                let m = _mm512_set1_epi32(i32::MIN);
                let mag = _mm512_andnot_si512(m, _mm512_castps_si512(mag));
                let sgn = _mm512_and_si512(m, _mm512_castps_si512(sign));
                _mm512_castsi512_ps(_mm512_or_si512(mag, sgn))
            }
        }
    }
}

/// A unit of work whose kernels are compiled for each instruction set.
pub trait SimdTask {
    type Output;
    /// Runs the task. Implementations must be `#[inline(always)]` so that the
    /// kernels are compiled inside the dispatching function.
    fn run<M: Math>(self, m: M) -> Self::Output;
    /// Whether the task works on single images, for which eight lanes beat
    /// sixteen (rows of 10 or 28 pixels fill 8-wide vectors better).
    fn narrow(&self) -> bool {
        false
    }
}

/// The instruction sets the kernels are compiled for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Isa {
    Scalar,
    Avx2,
    Avx512,
}

impl Isa {
    pub fn name(self) -> &'static str {
        match self {
            Isa::Scalar => "scalar",
            Isa::Avx2 => "avx2",
            Isa::Avx512 => "avx512",
        }
    }
}

/// What the CPU offers and how the kernel path was chosen.
#[derive(Clone, Debug)]
pub struct Choice {
    pub isa: Isa,
    /// The value of `LENET5_ISA` (empty when unset).
    pub requested: String,
    /// Why this path: forced by `LENET5_ISA`, or the rule below.
    pub reason: &'static str,
    /// The paths this CPU can run, fastest first.
    pub available: Vec<Isa>,
}

// The rule: the widest path the CPU has. The 16-image AVX-512 kernels were
// measured faster than the 8-image AVX2 ones on every machine with AVX-512 this
// project has run on, Intel and AMD alike (training 35-50% and inference 40% on
// an Intel Xeon of family 6 model 207; 48-60% and 48% on one of model 167;
// 3-37% and 38% on an AMD EPYC Zen 4; about twice on a Zen 5, whose 512-bit
// FMAs run at full width; docs/performance.md); earlier releases kept AVX2 on Intel because a
// bare FMA loop said so, and that was wrong for these kernels (more independent
// accumulators hide the latency at either width, and the 16-image chunks halve
// the loop overhead). A fixed rule rather than a timing at start-up keeps the
// choice, and so the bits of every result, the same in every process on one
// machine: a measured choice could flip between two runs on a noisy machine.
fn detect() -> Choice {
    let requested = std::env::var("LENET5_ISA").unwrap_or_default();
    #[cfg(target_arch = "x86_64")]
    let available = {
        let avx2 = is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma");
        let avx512 = avx2 && is_x86_feature_detected!("avx512f");
        let mut v = Vec::new();
        if avx512 {
            v.push(Isa::Avx512);
        }
        if avx2 {
            v.push(Isa::Avx2);
        }
        v.push(Isa::Scalar);
        v
    };
    #[cfg(not(target_arch = "x86_64"))]
    let available = vec![Isa::Scalar];
    let forced = match requested.as_str() {
        "scalar" => Some(Isa::Scalar),
        "avx2" => Some(Isa::Avx2),
        "avx512" => Some(Isa::Avx512),
        _ => None,
    };
    let (isa, reason) = match forced {
        Some(isa) if available.contains(&isa) => (isa, "forced by LENET5_ISA"),
        Some(_) => (
            available[0],
            "LENET5_ISA names a path this CPU lacks; the widest available instead",
        ),
        None if !requested.is_empty() => (
            available[0],
            "LENET5_ISA is not one of scalar, avx2, avx512; the widest available instead",
        ),
        None => (available[0], "the widest path this CPU has"),
    };
    Choice {
        isa,
        requested,
        reason,
        available,
    }
}

/// The CPU's name from CPUID (leaves 0x80000002-4), e.g. "AMD EPYC 7B13 64-Core
/// Processor"; the vendor string when there is none.
pub fn cpu_name() -> String {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::__cpuid;
        let mut bytes = Vec::with_capacity(48);
        if __cpuid(0x8000_0000).eax >= 0x8000_0004 {
            for leaf in 0x8000_0002u32..=0x8000_0004 {
                let r = __cpuid(leaf);
                for reg in [r.eax, r.ebx, r.ecx, r.edx] {
                    bytes.extend_from_slice(&reg.to_le_bytes());
                }
            }
        }
        let name = String::from_utf8_lossy(&bytes);
        let name = name.trim_matches(char::from(0)).trim();
        if !name.is_empty() {
            return name.split_whitespace().collect::<Vec<_>>().join(" ");
        }
        let r = __cpuid(0);
        let mut v = Vec::with_capacity(12);
        for reg in [r.ebx, r.edx, r.ecx] {
            v.extend_from_slice(&reg.to_le_bytes());
        }
        String::from_utf8_lossy(&v).into_owned()
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        std::env::consts::ARCH.to_string()
    }
}

/// The x86 family, model and stepping from CPUID leaf 1 (display values).
pub fn cpu_signature() -> Option<(u32, u32, u32)> {
    #[cfg(target_arch = "x86_64")]
    {
        let a = std::arch::x86_64::__cpuid(1).eax;
        let base_family = (a >> 8) & 0xf;
        let family = if base_family == 0xf {
            base_family + ((a >> 20) & 0xff)
        } else {
            base_family
        };
        let mut model = (a >> 4) & 0xf;
        if base_family == 0x6 || base_family == 0xf {
            model += ((a >> 16) & 0xf) << 4;
        }
        Some((family, model, a & 0xf))
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        None
    }
}

impl Isa {
    /// Images per wide chunk (lanes of one vector).
    pub fn lanes(self) -> usize {
        match self {
            Isa::Avx512 => MAX_LANES,
            _ => 8,
        }
    }
}

/// The most images a wide chunk holds (AVX-512).
pub const MAX_LANES: usize = 16;

/// The instruction set in use (chosen once per process).
pub fn isa() -> Isa {
    choice().isa
}

/// How the kernel path was chosen (once per process).
pub fn choice() -> &'static Choice {
    static CHOICE: OnceLock<Choice> = OnceLock::new();
    CHOICE.get_or_init(detect)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn run_avx2<T: SimdTask>(task: T) -> T::Output {
    task.run(Fused(()))
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,avx512f")]
fn run_avx512<T: SimdTask>(task: T) -> T::Output {
    task.run(Avx512(()))
}

/// Runs `task` compiled for the best available instruction set.
#[allow(unsafe_code)]
pub fn dispatch<T: SimdTask>(task: T) -> T::Output {
    match isa() {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `isa()` returns Avx2 only after `is_x86_feature_detected!`
        // confirmed AVX2 and FMA on this CPU.
        Isa::Avx2 => unsafe { run_avx2(task) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `isa()` returns Avx512 only after AVX-512F, AVX2 and FMA
        // were detected, so the AVX2 path is valid too.
        Isa::Avx512 if task.narrow() => unsafe { run_avx2(task) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as above; Avx512 implies AVX2 and FMA were detected too.
        Isa::Avx512 => unsafe { run_avx512(task) },
        _ => task.run(Plain(())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flush_zeroes_subnormals_only() {
        let sub = f32::from_bits(1);
        let big_sub = f32::from_bits(0x007f_ffff);
        for (x, want) in [
            (sub, 0.0f32),
            (big_sub, 0.0),
            (-big_sub, -0.0),
            (1e-40, 0.0),
            (-1e-45, -0.0),
            (0.0, 0.0),
            (-0.0, -0.0),
            (f32::MIN_POSITIVE, f32::MIN_POSITIVE),
            (-f32::MIN_POSITIVE, -f32::MIN_POSITIVE),
            (1.0, 1.0),
            (f32::MAX, f32::MAX),
            (f32::INFINITY, f32::INFINITY),
            (f32::NEG_INFINITY, f32::NEG_INFINITY),
        ] {
            assert_eq!(flush(x).to_bits(), want.to_bits(), "{x:e}");
        }
        assert!(flush(f32::NAN).is_nan());
        let mut v = vec![1e-39f32, 2.0, -3e-42, f32::MIN_POSITIVE];
        flush_all(&mut v);
        assert_eq!(v, vec![0.0, 2.0, -0.0, f32::MIN_POSITIVE]);
        assert!(v[2].is_sign_negative());
        let floor = 1e-20f32.to_bits();
        assert_eq!(zero_below(-9e-21, floor).to_bits(), (-0.0f32).to_bits());
        assert_eq!(zero_below(1e-20, floor), 1e-20);
        assert_eq!(zero_below(-2.0, floor), -2.0);
        assert!(zero_below(f32::NAN, floor).is_nan());
        assert_eq!(f32::from_bits(0x2000_0000), 2f32.powi(-63));
        for x in [
            0.0f32,
            1e-30,
            1.0842e-19,
            2f32.powi(-63),
            1.0843e-19,
            3.0,
            -1e-19,
            -2e-19,
        ] {
            let want = flush(x * x);
            assert_eq!(square(x).to_bits(), want.to_bits(), "{x:e}");
        }
        let mut x = 2f32.powi(-64);
        while x < 2f32.powi(-62) {
            assert_eq!(square(x).to_bits(), flush(x * x).to_bits(), "{x:e}");
            assert_eq!(square(-x).to_bits(), flush(x * x).to_bits(), "{x:e}");
            x = f32::from_bits(x.to_bits() + 997);
        }
    }
}
