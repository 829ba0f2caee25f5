//! Files: lenet5's model files (safetensors), the IDX data files of MNIST,
//! and the one way lenet5 writes a file.
//!
//! - `model_file`: the safetensors format byte by byte, [`encode`], [`decode`],
//!   [`read_file`], [`write_file_atomic`];
//! - `header`: the JSON header of a model file, read and written with
//!   `serde_json`, with its limits ([`MAX_HEADER_BYTES`], [`MAX_TENSORS`],
//!   [`MAX_RANK`]);
//! - `idx`: IDX files, plain or gzip-compressed ([`read_idx_file`], ...);
//! - `atomic`: `write_atomic`, the atomic writer of every file lenet5 makes
//!   (model files here; ONNX exports and downloads through the binding);
//! - `sniff`: regular files only, and what a file that is not a model file
//!   looks like.
//!
//! Every file is untrusted input: malformed content is a
//! [`LeNetError::Value`](crate::LeNetError::Value) naming the file and the
//! problem, a failed read or write a [`LeNetError::Io`](crate::LeNetError::Io)
//! with the operating system's error and the path; nothing here panics on
//! input. The public API is what this module re-exports.

mod atomic;
mod header;
pub(crate) mod idx;
mod model_file;
mod sniff;

/// For the binding, which writes ONNX exports and downloads with it.
#[cfg(feature = "python")]
pub(crate) use atomic::write_atomic;
pub use header::{MAX_HEADER_BYTES, MAX_RANK, MAX_TENSORS};
pub use idx::{
    decode_idx, read_idx, read_idx_file, read_idx_header_file, Idx, IdxData, IdxType, MAX_IDX_BYTES,
};
pub use model_file::{decode, encode, read_file, write_file_atomic, Tensor, MAX_FILE_BYTES};

/// A name for messages: escaped, and cut if long.
pub(crate) fn show(name: &str) -> String {
    const MAX: usize = 80;
    let escaped: String = name.escape_debug().collect();
    if escaped.chars().count() <= MAX {
        format!("'{escaped}'")
    } else {
        let cut: String = escaped.chars().take(MAX).collect();
        format!("'{cut}...' ({} bytes)", name.len())
    }
}

/// A new empty folder for one test (removed by the test).
#[cfg(test)]
pub(crate) fn test_dir(tag: &str) -> std::path::PathBuf {
    use std::sync::atomic::{AtomicU64, Ordering};
    /// Distinguishes the folders of tests running at the same time.
    static DIRS: AtomicU64 = AtomicU64::new(0);
    let d = std::env::temp_dir().join(format!(
        "lenet5-io-{tag}-{}-{}",
        std::process::id(),
        DIRS.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&d).unwrap();
    d
}
