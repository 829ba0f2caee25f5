//! Times one training chunk (forward, loss, backward) and each of its stages
//! on random data, single-threaded, and prints the split with the multiply-adds
//! of each stage:
//! `cargo run --release --no-default-features --example profile_layers [1|wide]`.

fn main() {
    let lanes = match std::env::args().nth(1).as_deref() {
        Some("1") => Some(1),
        Some(_) => Some(usize::MAX),
        None => None,
    };
    print!("{}", _lenet5::profile::layer_split(lanes));
}
