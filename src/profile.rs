//! Optional per-stage timing of the forward and backward passes (wide chunks and
//! single images), for benchmarks: off by default (one relaxed atomic load per
//! stage), switched on by [`enable`], read per thread by [`take`].

use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use crate::model::{wide_lanes, Forward, TrainChunk, Workspace};
use crate::rng::Rng;
use crate::simd::{dispatch, isa, Math, SimdTask};

/// The timed stages, in the order they run.
pub const STAGES: [&str; 18] = [
    "C1 conv",
    "C1 tanh",
    "S2",
    "C3 conv",
    "C3 tanh",
    "S4",
    "C5",
    "F6",
    "output",
    "loss",
    "output back",
    "F6 back",
    "C5 back",
    "S4 back",
    "C3 kernel grad",
    "C3 input grad",
    "S2 back",
    "C1 kernel grad",
];

static ON: AtomicBool = AtomicBool::new(false);

thread_local! {
    static CLOCK: RefCell<(Option<Instant>, [f64; STAGES.len()])> =
        const { RefCell::new((None, [0.0; STAGES.len()])) };
}

/// Switches timing on or off for all threads.
pub fn enable(on: bool) {
    ON.store(on, Ordering::Relaxed);
}

/// Starts timing a chunk on this thread.
#[inline]
pub fn start() {
    if ON.load(Ordering::Relaxed) {
        CLOCK.with(|c| c.borrow_mut().0 = Some(Instant::now()));
    }
}

/// Charges the time since the last mark to `stage`.
#[inline]
pub fn lap(stage: usize) {
    if ON.load(Ordering::Relaxed) {
        CLOCK.with(|c| {
            let mut c = c.borrow_mut();
            let now = Instant::now();
            if let Some(t) = c.0 {
                c.1[stage] += (now - t).as_secs_f64();
            }
            c.0 = Some(now);
        });
    }
}

/// Seconds per stage accumulated on this thread; resets them.
pub fn take() -> [f64; STAGES.len()] {
    CLOCK.with(|c| std::mem::replace(&mut c.borrow_mut().1, [0.0; STAGES.len()]))
}

/// Multiply-adds per image of each timed stage (default network, Table I).
const MACS: [f64; 18] = [
    117_600.0, 0.0, 0.0, 150_000.0, 0.0, 0.0, 48_000.0, 10_080.0, 840.0, 0.0, 1_680.0, 20_160.0,
    96_000.0, 0.0, 150_000.0, 150_000.0, 0.0, 117_600.0,
];

/// Times one training chunk (forward, loss, backward) and each of its stages
/// on random data, on the calling thread, and returns the split as a table with
/// the multiply-adds of each stage. `lanes`: 1 (single images), the wide width,
/// or None for both.
pub fn layer_split(lanes: Option<usize>) -> String {
    use std::fmt::Write;
    let mut text = String::new();
    let lay = crate::model::Config::default().layout();
    let mut rng = Rng::new(0);
    let p = lay.init_params(crate::model::Init::LeCun, &mut rng);
    let peak = fma_peak();
    writeln!(
        text,
        "isa {}: {peak:.1} GFLOP/s per core on independent multiply-adds (the ceiling)",
        isa().name()
    )
    .unwrap();
    let which: Vec<usize> = match lanes {
        Some(1) => vec![1],
        Some(_) => vec![wide_lanes()],
        None => vec![wide_lanes(), 1],
    };
    for lanes in which {
        let mut ws = Workspace::new(lanes, 10);
        for v in ws.x.iter_mut() {
            *v = rng.uniform(-0.1, 1.175);
        }
        let labels: Vec<u32> = (0..lanes as u32).map(|i| i % 10).collect();
        let mut grad = vec![0.0f32; lay.n_params_total()];
        // One image's forward pass as `predict` runs it, from the transposed
        // upper weights.
        let upper_t = (lanes == 1).then(|| crate::model::upper_transposed(&lay, &p));
        let reps = 8000 / lanes;
        let train_reps = |ws: &mut Workspace, grad: &mut [f32]| {
            for _ in 0..reps {
                dispatch(TrainChunk {
                    lay: &lay,
                    p: &p,
                    ws,
                    labels: &labels,
                    weights: None,
                    scale: 1.0 / 64.0,
                    grad,
                });
            }
        };
        let fwd_reps = |ws: &mut Workspace| {
            for _ in 0..reps {
                dispatch(Forward {
                    lay: &lay,
                    p: &p,
                    ws,
                    upper_t: upper_t.as_deref(),
                });
            }
        };
        let mut train = f64::MAX;
        let mut fwd = f64::MAX;
        for _ in 0..5 {
            let t = Instant::now();
            train_reps(&mut ws, &mut grad);
            train = train.min(t.elapsed().as_secs_f64() / (reps * lanes) as f64);
            let t = Instant::now();
            fwd_reps(&mut ws);
            fwd = fwd.min(t.elapsed().as_secs_f64() / (reps * lanes) as f64);
        }
        writeln!(
            text,
            "isa {}, {lanes} image(s) per chunk, 1 thread: train {:.2} us/img ({:.0} img/s, {:.1} GFLOP/s, {:.0}% of the ceiling), forward {:.2} us/img ({:.0} img/s)",
            isa().name(),
            train * 1e6,
            1.0 / train,
            2.0 * MACS.iter().sum::<f64>() / train / 1e9,
            100.0 * 2.0 * MACS.iter().sum::<f64>() / train / 1e9 / peak,
            fwd * 1e6,
            1.0 / fwd
        ).unwrap();
        // Each stage's best of five timed passes (a shared machine's noise only
        // ever adds time); the forward pass's stages on their own too, as one
        // image runs it in wider vectors than the training pass's forward half.
        let mut times = [f64::INFINITY; STAGES.len()];
        let mut fwd_times = [f64::INFINITY; STAGES.len()];
        for _ in 0..5 {
            enable(true);
            take();
            train_reps(&mut ws, &mut grad);
            let split = take();
            fwd_reps(&mut ws);
            enable(false);
            for ((t, f), (u, v)) in times
                .iter_mut()
                .zip(&mut fwd_times)
                .zip(split.iter().zip(take()))
            {
                *t = t.min(*u);
                *f = f.min(v);
            }
        }
        let total: f64 = times.iter().sum();
        writeln!(
            text,
            "{:<16} {:>9} {:>7} {:>10} {:>9} {:>12}",
            "stage", "us/img", "share", "MAC/img", "GFLOP/s", "forward only"
        )
        .unwrap();
        for (i, name) in STAGES.iter().enumerate() {
            let per = times[i] / (reps * lanes) as f64;
            let gf = if MACS[i] > 0.0 {
                format!("{:.1}", 2.0 * MACS[i] / per / 1e9)
            } else {
                "-".into()
            };
            writeln!(
                text,
                "{name:<16} {:>9.3} {:>6.1}% {:>10.0} {:>9} {:>12}",
                per * 1e6,
                100.0 * times[i] / total,
                MACS[i],
                gf,
                match fwd_times[i] {
                    f if f > 0.0 => format!("{:.3}", f / (reps * lanes) as f64 * 1e6),
                    _ => String::new(),
                }
            )
            .unwrap();
        }
    }
    text
}

/// GFLOP/s of one core on multiply-adds alone in the kernel path in use:
/// 12 independent chains of vector FMAs, no memory traffic (best of 5 runs
/// of about 10 ms each). What the kernels' figures are a fraction of.
pub fn fma_peak() -> f64 {
    struct Chains(u64);
    impl SimdTask for Chains {
        type Output = (f32, usize);
        #[inline(always)]
        fn run<M: Math>(self, s: M) -> (f32, usize) {
            let mut acc = [s.splat(0.5); 12];
            let (a, b) = (s.splat(0.999_999), s.splat(1e-7));
            for _ in 0..self.0 {
                for x in acc.iter_mut() {
                    *x = s.fma(*x, a, b);
                }
            }
            (acc.iter().map(|&x| s.hsum(x)).sum(), M::W)
        }
    }
    let iters = std::hint::black_box(200_000u64);
    let mut best = 0.0f64;
    for _ in 0..5 {
        let t = Instant::now();
        let (sum, w) = dispatch(Chains(iters));
        let secs = t.elapsed().as_secs_f64();
        std::hint::black_box(sum);
        best = best.max((iters * 12 * w as u64 * 2) as f64 / secs / 1e9);
    }
    best
}

/// What handing a short parallel loop to other threads costs: a loop of four
/// tasks of `work` us each on 2 threads, then `gap` us of work on the calling
/// thread alone (as between two loops of a batch), run back to back, through
/// `rayon::ThreadPool::install` and through the epoch's [`crate::train::team::Team`].
/// Prints the time per round above the ideal (two tasks' work plus the gap).
pub fn handover_split() -> String {
    use crate::train::team::Team;
    use rayon::prelude::*;
    use std::fmt::Write;
    fn busy(us: u64) {
        let t = Instant::now();
        while t.elapsed().as_micros() < u128::from(us) {
            std::hint::spin_loop();
        }
    }
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .expect("two threads");
    let rounds = 1000;
    let mut out =
        String::from("task us  gap us   rayon install (us over ideal)   team (us over ideal)\n");
    for work in [0u64, 50, 350] {
        for gap in [0u64, 20, 200] {
            let ideal = (2 * work + gap) as f64;
            let t = Instant::now();
            for _ in 0..rounds {
                pool.install(|| (0..4).into_par_iter().for_each(|_| busy(work)));
                busy(gap);
            }
            let rayon_us = t.elapsed().as_secs_f64() * 1e6 / f64::from(rounds) - ideal;
            let team = Team::new(&pool, 1);
            let t = Instant::now();
            for _ in 0..rounds {
                team.run(4, &|_| busy(work));
                busy(gap);
            }
            let team_us = t.elapsed().as_secs_f64() * 1e6 / f64::from(rounds) - ideal;
            drop(team);
            let _ = writeln!(out, "{work:7} {gap:7} {rayon_us:25.1} {team_us:24.1}");
        }
    }
    out
}
