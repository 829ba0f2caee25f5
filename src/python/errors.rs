//! Errors: the core's errors as Python exceptions (OSError with errno and
//! path), and the checks of numbers that come from Python.

#![allow(unused_imports)]
use super::*;

impl From<LeNetError> for PyErr {
    fn from(e: LeNetError) -> PyErr {
        match e {
            LeNetError::Value(m) => PyValueError::new_err(m),
            LeNetError::Type(m) => PyTypeError::new_err(m),
            LeNetError::Io {
                context,
                path,
                source,
            } => os_error(&context, path, &source),
            LeNetError::Diverged(m) => PyFloatingPointError::new_err(m),
            LeNetError::Interrupted => PyKeyboardInterrupt::new_err("training interrupted"),
            LeNetError::Memory(m) => PyMemoryError::new_err(m),
        }
    }
}

/// An `OSError` as Python's own file functions raise it: `OSError(errno,
/// strerror, filename)`, which Python turns into `FileNotFoundError`,
/// `PermissionError`, `IsADirectoryError`, ... by the error number.
pub(super) fn os_error(
    context: &str,
    path: Option<std::path::PathBuf>,
    source: &std::io::Error,
) -> PyErr {
    use std::io::ErrorKind;
    // Unix error numbers (the same on Linux and macOS, and in Windows' C library).
    let from_kind = match source.kind() {
        ErrorKind::NotFound => 2,
        ErrorKind::PermissionDenied => 13,
        ErrorKind::AlreadyExists => 17,
        ErrorKind::NotADirectory => 20,
        ErrorKind::IsADirectory => 21,
        ErrorKind::InvalidInput => 22,
        ErrorKind::FileTooLarge => 27,
        ErrorKind::StorageFull => 28,
        ErrorKind::ReadOnlyFilesystem => 30,
        _ => 5,
    };
    let raw = if cfg!(unix) {
        source.raw_os_error()
    } else {
        None
    };
    let errno = raw.unwrap_or(from_kind);
    let mut reason = source.to_string();
    if let Some(code) = raw {
        // std adds " (os error N)"; the number is OSError.errno already.
        let tail = format!(" (os error {code})");
        if let Some(cut) = reason.strip_suffix(&tail) {
            reason = cut.to_string();
        }
    }
    let strerror = format!("{context}: {reason}");
    match path {
        Some(p) => PyOSError::new_err((errno, strerror, p.into_os_string())),
        None => PyOSError::new_err((errno, strerror)),
    }
}

pub(super) fn lock_err<T>(_: T) -> PyErr {
    PyRuntimeError::new_err("internal lock poisoned")
}

pub(super) fn busy() -> PyErr {
    PyRuntimeError::new_err(
        "this model is being trained in another thread; wait for that fit to finish",
    )
}

/// A learning rate as the optimizer keeps it: a positive float32 that is
/// neither subnormal nor rounded to 0 or infinity (1e-50 would silently become 0).
pub(super) fn f32_rate(v: f64) -> PyResult<f32> {
    let r = v as f32;
    if !(v > 0.0 && r.is_normal()) {
        return Err(PyValueError::new_err(format!(
            "learning_rate must be a positive number that float32 holds, from {:e} to {:e}; got {v:e}",
            f32::MIN_POSITIVE,
            f32::MAX
        )));
    }
    Ok(r)
}

/// Label smoothing must be in [0, 1), and applies to the softmax output only.
pub(super) fn check_smoothing(v: f64, rbf: bool) -> PyResult<()> {
    if !(v.is_finite() && (0.0..1.0).contains(&v)) {
        return Err(PyValueError::new_err(format!(
            "label_smoothing must be a finite number in [0, 1); got {v}"
        )));
    }
    if rbf && v > 0.0 {
        return Err(PyValueError::new_err(format!(
            "label_smoothing applies to the cross-entropy of output='softmax'; got {v} with output='rbf'"
        )));
    }
    Ok(())
}

pub(super) fn check_shape(name: &str, want: &[usize], got: &[usize]) -> PyResult<()> {
    if want != got {
        return Err(PyValueError::new_err(format!(
            "{name} must have shape {want:?}; got {got:?}"
        )));
    }
    Ok(())
}
