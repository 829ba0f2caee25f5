//! The one way lenet5 writes a file: atomically, so that the target holds its
//! previous content or all of the new one, never a mix, whatever happens to the
//! process (model files, ONNX exports and downloaded data sets all go through
//! [`write_atomic`]).
//!
//! The rules:
//! - the bytes go to a new temporary file in the target's folder (so the final
//!   rename stays on one filesystem), `.<file name>.lenet5-save-<pid>-<n>.tmp`,
//!   created exclusively (mode 0o666 less the umask) and locked while in use;
//! - it is written, flushed and fsynced, renamed over the target while still
//!   locked, and the folder is fsynced so that the rename is durable;
//! - on any error the temporary file is removed and the error is an
//!   [`LeNetError::Io`] with the operating system's error (Python's `errno`)
//!   and the target's path (`filename`);
//! - a process killed mid-write leaves its temporary file and never the
//!   target; the next write to the same target removes such files, those whose
//!   lock is free (whose writer no longer runs).

use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use super::sniff::open_regular;
use crate::error::{LeNetError, Result};

/// Distinguishes temporary files of saves running at the same time.
static SAVE_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Marks the temporary files of [`write_atomic`]:
/// `.<file name>.lenet5-save-<pid>-<n>.tmp` beside the target.
const TEMP_MARK: &str = ".lenet5-save-";
const TEMP_SUFFIX: &str = ".tmp";

/// The start of the temporary file names of saves to `file_name`: the name
/// itself, or for names longer than 200 bytes a hash of it.
fn temp_prefix(file_name: &std::ffi::OsStr) -> OsString {
    let mut prefix = OsString::from(".");
    if file_name.len() <= 200 {
        prefix.push(file_name);
    } else {
        // FNV-1a: stable across runs, so a later save finds the same prefix.
        let hash = file_name
            .as_encoded_bytes()
            .iter()
            .fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
                (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
            });
        prefix.push(format!("lenet5-file-{hash:016x}"));
    }
    prefix.push(TEMP_MARK);
    prefix
}

/// True when `name` is `prefix` + `<digits>-<digits>` + `.tmp`.
fn is_temp_of(name: &std::ffi::OsStr, prefix: &std::ffi::OsStr) -> bool {
    let name = name.as_encoded_bytes();
    let Some(rest) = name.strip_prefix(prefix.as_encoded_bytes()) else {
        return false;
    };
    let Some(middle) = rest.strip_suffix(TEMP_SUFFIX.as_bytes()) else {
        return false;
    };
    let mut parts = middle.split(|&b| b == b'-');
    let digits =
        |p: Option<&[u8]>| p.is_some_and(|p| !p.is_empty() && p.iter().all(u8::is_ascii_digit));
    digits(parts.next()) && digits(parts.next()) && parts.next().is_none()
}

/// Removes temporary files left in `dir` by saves to the same file name that
/// were killed before they finished. A save holds a lock on its temporary file
/// until it is renamed, so a file whose lock can be taken belongs to no
/// running save. Best effort: whatever fails is left as it is.
fn remove_stale_temps(dir: &Path, prefix: &std::ffi::OsStr) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        if !is_temp_of(&entry.file_name(), prefix) {
            continue;
        }
        let path = entry.path();
        // Never follow a link or open anything but a regular file.
        if !fs::symlink_metadata(&path).is_ok_and(|m| m.file_type().is_file()) {
            continue;
        }
        if let Ok((file, _)) = open_regular(&path) {
            if file.try_lock().is_ok() {
                let _ = fs::remove_file(&path);
            }
        }
    }
}

/// True when two metadata describe the same file (on Unix: device and inode).
fn same_file(a: &fs::Metadata, b: &fs::Metadata) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        a.dev() == b.dev() && a.ino() == b.ino()
    }
    #[cfg(not(unix))]
    {
        let _ = (a, b);
        true
    }
}

/// Creates and locks a new temporary file in `dir` whose name starts with
/// `prefix`. A stale-file sweep of another save may delete a file between its
/// creation and its lock; that is detected and a new file is made.
fn create_temp(dir: &Path, prefix: &std::ffi::OsStr) -> std::io::Result<(File, PathBuf)> {
    let mut attempt = 0;
    loop {
        let n = SAVE_COUNTER.fetch_add(1, Ordering::Relaxed);
        let mut name = prefix.to_os_string();
        name.push(format!("{}-{n}{TEMP_SUFFIX}", std::process::id()));
        let tmp = dir.join(name);
        let file = OpenOptions::new().write(true).create_new(true).open(&tmp)?;
        if file.lock().is_err() {
            // No locks on this filesystem: no sweep can take one either.
            return Ok((file, tmp));
        }
        let ours = match (file.metadata(), fs::symlink_metadata(&tmp)) {
            (Ok(a), Ok(b)) => same_file(&a, &b),
            _ => false,
        };
        if ours {
            return Ok((file, tmp));
        }
        attempt += 1;
        if attempt >= 8 {
            return Err(std::io::Error::other(
                "the temporary file was removed while it was being created",
            ));
        }
    }
}

/// Writes `bytes` to `path` so that `path` holds either its previous content or
/// all of `bytes`, never a mix, whatever happens to the process.
///
/// The bytes go to a new temporary file in the same folder, named
/// `.<file name>.lenet5-save-<pid>-<n>.tmp`, which is locked, written, flushed
/// and fsynced and then renamed over `path`; the folder is then fsynced so that
/// the rename itself is durable. On failure the temporary file is removed. A
/// process killed mid-write leaves its temporary file behind, never touching
/// `path`; the next save to the same `path` removes such files (those whose
/// lock is free, that is whose save is not running). If `path` is a symbolic
/// link, the link is replaced, not its target.
///
/// Errors name `path` after `context` ("cannot save model file"): an
/// [`LeNetError::Io`] carrying the operating system's error, or a
/// [`LeNetError::Value`] when `path` names no file (`..`, `/`).
pub(crate) fn write_atomic(path: &Path, bytes: &[u8], context: &str) -> Result<()> {
    let failed = |e| LeNetError::io(context, path, e);
    let Some(file_name) = path.file_name() else {
        return Err(LeNetError::Value(format!(
            "{context} '{}': the path does not name a file",
            path.display()
        )));
    };
    let dir: PathBuf = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let prefix = temp_prefix(file_name);
    remove_stale_temps(&dir, &prefix);
    let (mut file, tmp) = create_temp(&dir, &prefix).map_err(failed)?;
    let written = (|| -> std::io::Result<()> {
        file.write_all(bytes)?;
        file.flush()?;
        file.sync_all()?;
        // Renamed while still open and locked, so no sweep can remove it first.
        fs::rename(&tmp, path)
    })();
    drop(file);
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(failed(e));
    }
    sync_dir(&dir).map_err(failed)
}

/// Makes a rename in `dir` durable. Filesystems that cannot fsync a folder
/// are accepted as they are.
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        match File::open(dir).and_then(|d| d.sync_all()) {
            Ok(()) => Ok(()),
            Err(e) if matches!(e.kind(), ErrorKind::InvalidInput | ErrorKind::Unsupported) => {
                Ok(())
            }
            Err(e) => Err(e),
        }
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::test_dir as temp_dir;

    fn listing(d: &Path) -> Vec<OsString> {
        let mut names: Vec<_> = fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn writes_replace_and_leave_nothing_behind() {
        let d = temp_dir("replace");
        let path = d.join("data.bin");
        write_atomic(&path, b"first", "cannot write test file").unwrap();
        write_atomic(&path, b"second", "cannot write test file").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"second");
        assert_eq!(listing(&d), vec![OsString::from("data.bin")]);
        // Onto a folder: the OS error, the path, the context; nothing left.
        let sub = d.join("sub");
        fs::create_dir(&sub).unwrap();
        fs::write(sub.join("x"), b"x").unwrap();
        match write_atomic(&sub, b"x", "cannot write test file") {
            Err(e @ LeNetError::Io { .. }) => {
                assert!(e.to_string().starts_with("cannot write test file '"), "{e}");
                let LeNetError::Io { path, .. } = e else {
                    unreachable!()
                };
                assert_eq!(path.as_deref(), Some(sub.as_path()));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(listing(&d), vec![OsString::from("data.bin"), "sub".into()]);
        // A missing folder keeps its errno.
        match write_atomic(&d.join("no/such/f"), b"x", "cannot write test file") {
            Err(LeNetError::Io { source, .. }) => assert_eq!(source.kind(), ErrorKind::NotFound),
            other => panic!("{other:?}"),
        }
        // A path that names no file.
        assert!(matches!(
            write_atomic(Path::new("/"), b"x", "cannot write test file"),
            Err(LeNetError::Value(m)) if m.contains("does not name a file")
        ));
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_symbolic_link_is_replaced_not_its_target() {
        #[cfg(unix)]
        {
            let d = temp_dir("link");
            let target = d.join("target");
            fs::write(&target, b"kept").unwrap();
            let link = d.join("link");
            std::os::unix::fs::symlink(&target, &link).unwrap();
            write_atomic(&link, b"new", "cannot write test file").unwrap();
            assert_eq!(fs::read(&target).unwrap(), b"kept");
            assert!(fs::symlink_metadata(&link).unwrap().file_type().is_file());
            assert_eq!(fs::read(&link).unwrap(), b"new");
            fs::remove_dir_all(&d).unwrap();
        }
    }

    #[test]
    fn temporary_files_are_recognisable_and_stale_ones_are_removed() {
        let d = temp_dir("stale");
        let path = d.join("m.safetensors");
        let prefix = temp_prefix(path.file_name().unwrap());
        assert_eq!(prefix, OsString::from(".m.safetensors.lenet5-save-"));
        assert!(is_temp_of(
            std::ffi::OsStr::new(".m.safetensors.lenet5-save-12-0.tmp"),
            &prefix
        ));
        for name in [
            ".m.safetensors.lenet5-save-12-.tmp",
            ".m.safetensors.lenet5-save-a-1.tmp",
            ".m.safetensors.lenet5-save-1-2-3.tmp",
            ".m.safetensors.lenet5-save-1-2.tmpx",
            ".n.safetensors.lenet5-save-1-2.tmp",
        ] {
            assert!(!is_temp_of(std::ffi::OsStr::new(name), &prefix), "{name}");
        }
        // Left by killed saves of this target: removed. Another target's, a
        // look-alike name and a save still running (its lock held): kept.
        let stale = d.join(".m.safetensors.lenet5-save-999999-3.tmp");
        let other = d.join(".n.safetensors.lenet5-save-999999-3.tmp");
        let unrelated = d.join(".m.safetensors.lenet5-save-notes.tmp");
        let running = d.join(".m.safetensors.lenet5-save-999999-4.tmp");
        for p in [&stale, &other, &unrelated, &running] {
            fs::write(p, b"partial").unwrap();
        }
        let holder = File::open(&running).unwrap();
        holder.lock().unwrap();
        write_atomic(&path, b"one", "cannot save model file").unwrap();
        assert!(!stale.exists());
        assert!(other.exists() && unrelated.exists() && running.exists());
        drop(holder);
        write_atomic(&path, b"two", "cannot save model file").unwrap();
        assert!(!running.exists());
        assert_eq!(fs::read(&path).unwrap(), b"two");
        // Long names use a stable hash.
        let long = "x".repeat(230);
        let a = temp_prefix(std::ffi::OsStr::new(&long));
        assert_eq!(a, temp_prefix(std::ffi::OsStr::new(&long)));
        assert!(a.len() < 60);
        fs::remove_dir_all(&d).unwrap();
    }
}
