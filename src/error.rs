//! The one error type of the core. Every variant carries the facts a user needs
//! (what was expected, what came); the Python binding maps each variant to the
//! matching Python exception (ValueError, TypeError, OSError, ...).

use thiserror::Error;

/// Errors raised by the core. Bad user input is always an `Err`, never a panic.
#[derive(Debug, Error)]
pub enum LeNetError {
    /// A value (shape, size, hyperparameter, file field) is not what was expected.
    #[error("{0}")]
    Value(String),
    /// An element type is not one the operation accepts.
    #[error("{0}")]
    Type(String),
    /// Reading or writing a file failed. `context` says what was being done
    /// ("cannot read model file"), `path` names the file (Python's
    /// `OSError.filename`), and `source` carries the operating system's error
    /// code (`OSError.errno`).
    #[error("{}", io_message(context, path.as_deref(), source))]
    Io {
        context: String,
        path: Option<std::path::PathBuf>,
        #[source]
        source: std::io::Error,
    },
    /// Training produced a non-finite loss or gradient.
    #[error("{0}")]
    Diverged(String),
    /// Training was stopped by an observer (Ctrl-C or a callback).
    #[error("interrupted")]
    Interrupted,
    /// Memory for a workspace could not be reserved.
    #[error("{0}")]
    Memory(String),
}

/// Result alias used throughout the core.
pub type Result<T> = std::result::Result<T, LeNetError>;

impl LeNetError {
    /// Shorthand for a [`LeNetError::Value`] built from anything printable.
    pub fn value(msg: impl Into<String>) -> Self {
        LeNetError::Value(msg.into())
    }

    /// Shorthand for a [`LeNetError::Io`] about the file `path`.
    pub fn io(context: impl Into<String>, path: &std::path::Path, source: std::io::Error) -> Self {
        LeNetError::Io {
            context: context.into(),
            path: Some(path.to_path_buf()),
            source,
        }
    }
}

/// The text of an I/O error: what was being done, the file, and why it failed.
fn io_message(context: &str, path: Option<&std::path::Path>, source: &std::io::Error) -> String {
    match path {
        Some(p) => format!("{context} '{}': {source}", p.display()),
        None => format!("{context}: {source}"),
    }
}
