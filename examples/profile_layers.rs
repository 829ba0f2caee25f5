//! Times one training chunk (forward, loss, backward) and each of its stages
//! on random data, single-threaded, and prints the split with the multiply-adds
//! of each stage:
//! `cargo run --release --no-default-features --example profile_layers [1|wide]`.

use std::time::Instant;

use _lenet5::arch::{ArchConfig, Init};
use _lenet5::net::{wide_lanes, Forward, TrainChunk, Workspace};
use _lenet5::profile;
use _lenet5::rng::Rng;
use _lenet5::simd::{dispatch, isa};

/// Multiply-adds per image of each timed stage (default network, Table I).
const MACS: [f64; 18] = [
    117_600.0, 0.0, 0.0, 150_000.0, 0.0, 0.0, 48_000.0, 10_080.0, 840.0, 0.0, 1_680.0, 20_160.0,
    96_000.0, 0.0, 150_000.0, 150_000.0, 0.0, 117_600.0,
];

fn main() {
    let lay = ArchConfig::default().layout();
    let mut rng = Rng::new(0);
    let p = lay.init_params(Init::LeCun, &mut rng);
    let which: Vec<usize> = match std::env::args().nth(1).as_deref() {
        Some("1") => vec![1],
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
        let mut train = f64::MAX;
        let mut fwd = f64::MAX;
        for _ in 0..5 {
            let t = Instant::now();
            train_reps(&mut ws, &mut grad);
            train = train.min(t.elapsed().as_secs_f64() / (reps * lanes) as f64);
            let t = Instant::now();
            for _ in 0..reps {
                dispatch(Forward {
                    lay: &lay,
                    p: &p,
                    ws: &mut ws,
                });
            }
            fwd = fwd.min(t.elapsed().as_secs_f64() / (reps * lanes) as f64);
        }
        println!(
            "isa {}, {lanes} image(s) per chunk, 1 thread: train {:.2} us/img ({:.0} img/s, {:.1} GFLOP/s), forward {:.2} us/img ({:.0} img/s)",
            isa().name(),
            train * 1e6,
            1.0 / train,
            2.0 * MACS.iter().sum::<f64>() / train / 1e9,
            fwd * 1e6,
            1.0 / fwd
        );
        profile::enable(true);
        profile::take();
        train_reps(&mut ws, &mut grad);
        profile::enable(false);
        let times = profile::take();
        let total: f64 = times.iter().sum();
        println!(
            "{:<16} {:>9} {:>7} {:>10} {:>9}",
            "stage", "us/img", "share", "MAC/img", "GFLOP/s"
        );
        for (i, name) in profile::STAGES.iter().enumerate() {
            let per = times[i] / (reps * lanes) as f64;
            let gf = if MACS[i] > 0.0 {
                format!("{:.1}", 2.0 * MACS[i] / per / 1e9)
            } else {
                "-".into()
            };
            println!(
                "{name:<16} {:>9.3} {:>6.1}% {:>10.0} {:>9}",
                per * 1e6,
                100.0 * times[i] / total,
                MACS[i],
                gf
            );
        }
    }
}
