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
//! `LENET5_ISA=scalar` (or `avx2`, `avx512`) forces a choice, for tests.

use std::sync::OnceLock;

/// How `a * b + c` is evaluated inside the kernels.
pub trait Math: Copy + Send + Sync + 'static {
    /// `a * b + c`.
    fn fma(a: f32, b: f32, c: f32) -> f32;
}

/// Separate multiply and add (no FMA instruction assumed).
#[derive(Clone, Copy, Debug)]
pub struct Plain;

/// A fused multiply-add (only used where the CPU has one).
#[derive(Clone, Copy, Debug)]
pub struct Fused;

impl Math for Plain {
    #[inline(always)]
    fn fma(a: f32, b: f32, c: f32) -> f32 {
        a * b + c
    }
}

impl Math for Fused {
    #[inline(always)]
    fn fma(a: f32, b: f32, c: f32) -> f32 {
        a.mul_add(b, c)
    }
}

/// A unit of work whose kernels are compiled for each instruction set.
pub trait SimdTask {
    type Output;
    /// Runs the task. Implementations must be `#[inline(always)]` so that the
    /// kernels are compiled inside the dispatching function.
    fn run<M: Math>(self) -> Self::Output;
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
            Isa::Avx2 => "avx2+fma",
            Isa::Avx512 => "avx512",
        }
    }
}

fn detect() -> Isa {
    #[cfg(target_arch = "x86_64")]
    {
        let avx2 = is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma");
        let avx512 =
            avx2 && is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512vl");
        let wanted = std::env::var("LENET5_ISA").unwrap_or_default();
        match wanted.as_str() {
            "scalar" => Isa::Scalar,
            "avx512" if avx512 => Isa::Avx512,
            _ if avx2 => Isa::Avx2,
            _ => Isa::Scalar,
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        Isa::Scalar
    }
}

/// The instruction set in use (chosen once per process).
pub fn isa() -> Isa {
    static ISA: OnceLock<Isa> = OnceLock::new();
    *ISA.get_or_init(detect)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn run_avx2<T: SimdTask>(task: T) -> T::Output {
    task.run::<Fused>()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,avx512f,avx512vl")]
fn run_avx512<T: SimdTask>(task: T) -> T::Output {
    task.run::<Fused>()
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
        // SAFETY: `isa()` returns Avx512 only after the AVX-512F/VL checks.
        Isa::Avx512 => unsafe { run_avx512(task) },
        _ => task.run::<Plain>(),
    }
}
