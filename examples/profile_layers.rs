//! Times each stage of one training chunk (forward, loss, backward) on random
//! data: `cargo run --release --no-default-features --example profile_layers`.

use std::time::Instant;

use _lenet5::arch::{ArchConfig, Init};
use _lenet5::net::{wide_lanes, TrainChunk, Workspace};
use _lenet5::rng::Rng;
use _lenet5::simd::{dispatch, isa};

fn main() {
    let lay = ArchConfig::default().layout();
    let mut rng = Rng::new(0);
    let p = lay.init_params(Init::LeCun, &mut rng);
    let which: Vec<usize> = match std::env::args().nth(1).as_deref() {
        Some("1") => vec![1],
        Some("8") => vec![wide_lanes()],
        _ => vec![wide_lanes(), 1],
    };
    for lanes in which {
        let mut ws = Workspace::new(lanes, 10);
        for v in ws.x.iter_mut() {
            *v = rng.uniform(-0.1, 1.175);
        }
        let labels: Vec<u32> = (0..lanes as u32).map(|i| i % 10).collect();
        let mut grad = vec![0.0f32; lay.n_params()];
        let reps = if lanes == 1 { 4000 } else { 1000 };
        let mut best = f64::MAX;
        for _ in 0..5 {
            let t = Instant::now();
            for _ in 0..reps {
                dispatch(TrainChunk {
                    lay: &lay,
                    p: &p,
                    ws: &mut ws,
                    labels: &labels,
                    scale: 1.0 / 64.0,
                    grad: &mut grad,
                });
            }
            best = best.min(t.elapsed().as_secs_f64() / (reps * lanes) as f64);
        }
        let mut fbest = f64::MAX;
        for _ in 0..5 {
            let t = Instant::now();
            for _ in 0..reps {
                _lenet5::net::forward(&lay, &p, &mut ws);
            }
            fbest = fbest.min(t.elapsed().as_secs_f64() / (reps * lanes) as f64);
        }
        println!(
            "isa {} lanes {lanes}: train {:.1} us/img ({:.0} img/s), forward {:.1} us/img ({:.0} img/s)",
            isa().name(),
            best * 1e6,
            1.0 / best,
            fbest * 1e6,
            1.0 / fbest
        );
    }
}
