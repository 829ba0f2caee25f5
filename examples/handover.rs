//! What a hand-over of a short parallel loop costs, through rayon's pool and
//! through the epoch's team of spinning threads:
//! `cargo run --release --no-default-features --example handover`.

fn main() {
    print!("{}", _lenet5::profile::handover_split());
}
