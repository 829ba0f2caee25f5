//! File kinds: whether a path is a regular file (checked before it is opened,
//! so that a named pipe or a device never blocks a reader), and what a file
//! that is not a model file looks like, from its first bytes (for messages).

use std::fs::{self, File, OpenOptions};
use std::io::ErrorKind;
use std::path::Path;

/// Opens `path` for reading if it is a regular file; returns the file and its size.
///
/// The type is checked before opening, because opening a named pipe waits for
/// a writer (and a device may block or never end), and again on the opened
/// file. On Linux the file is also opened non-blocking, so that a pipe swapped
/// in between the two checks cannot block either. A folder is an
/// `IsADirectory` error; any other file that is not regular is `InvalidInput`.
pub(crate) fn open_regular(path: &Path) -> std::io::Result<(File, u64)> {
    check_regular(&fs::metadata(path)?)?;
    let mut options = OpenOptions::new();
    options.read(true);
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::fs::OpenOptionsExt;
        // O_NONBLOCK: no effect on regular files; opening a FIFO returns at once.
        options.custom_flags(0o4000);
    }
    let file = options.open(path)?;
    let meta = file.metadata()?;
    check_regular(&meta)?;
    Ok((file, meta.len()))
}

fn check_regular(meta: &fs::Metadata) -> std::io::Result<()> {
    let kind = meta.file_type();
    if kind.is_file() {
        return Ok(());
    }
    if kind.is_dir() {
        return Err(std::io::Error::new(
            ErrorKind::IsADirectory,
            "is a directory, not a regular file",
        ));
    }
    let mut what = "not a regular file";
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if kind.is_fifo() {
            what = "not a regular file but a named pipe (FIFO)";
        } else if kind.is_socket() {
            what = "not a regular file but a socket";
        } else if kind.is_char_device() || kind.is_block_device() {
            what = "not a regular file but a device";
        }
    }
    Err(std::io::Error::new(ErrorKind::InvalidInput, what))
}

/// What a file that is not a safetensors file looks like, from its first bytes
/// and its size: "a NumPy array file (.npy)", "a Python pickle", "a text
/// file", ... `None` when it could be a (damaged) safetensors file or nothing
/// is recognised.
pub(crate) fn looks_like(head: &[u8], len: u64) -> Option<&'static str> {
    const SIGNATURES: &[(&[u8], &str)] = &[
        (b"\x93NUMPY", "a NumPy array file (.npy)"),
        (
            b"PK\x03\x04",
            "a ZIP archive (a NumPy .npz file, a PyTorch checkpoint, ...)",
        ),
        (
            b"PK\x05\x06",
            "a ZIP archive (a NumPy .npz file, a PyTorch checkpoint, ...)",
        ),
        (b"\x89PNG\r\n\x1a\n", "a PNG image"),
        (b"\xff\xd8\xff", "a JPEG image"),
        (b"GIF87a", "a GIF image"),
        (b"GIF89a", "a GIF image"),
        (b"II*\x00", "a TIFF image"),
        (b"MM\x00*", "a TIFF image"),
        (b"\x89HDF\r\n\x1a\n", "an HDF5 file (a Keras model, ...)"),
        (b"\x1f\x8b", "a gzip-compressed file"),
        (b"%PDF-", "a PDF document"),
    ];
    if len == 0 {
        return Some("an empty file");
    }
    if let Some((_, what)) = SIGNATURES.iter().find(|(sig, _)| head.starts_with(sig)) {
        return Some(what);
    }
    match head {
        [b'R', b'I', b'F', b'F', _, _, _, _, b'W', b'E', b'B', b'P', ..] => {
            return Some("a WebP image")
        }
        [b'B', b'M', ..] if len >= 26 => return Some("a BMP image"),
        // Pickle protocols 2 to 5 start with PROTO and the protocol number.
        [0x80, 2..=5, ..] => return Some("a Python pickle"),
        // IDX: two zero bytes, a type code, 1 to 32 dimensions.
        [0, 0, 0x08 | 0x09 | 0x0B..=0x0E, 1..=32, ..] => {
            return Some("an IDX array file (the MNIST format)")
        }
        // ONNX: a protobuf ModelProto starts with ir_version (field 1, a small
        // varint), then producer_name or opset_import.
        [0x08, 1..=64, 0x12 | 0x3a, ..] => return Some("an ONNX model"),
        _ => {}
    }
    if head.len() >= 9 {
        let mut len8 = [0u8; 8];
        len8.copy_from_slice(&head[..8]);
        let n = u64::from_le_bytes(len8);
        if head[8] == b'{' && n <= len - 8 {
            return None; // safetensors-shaped: a damaged model file
        }
    }
    if looks_like_text(head) {
        return Some("a text file");
    }
    None
}

/// True when `head` is UTF-8 text without control characters other than
/// whitespace (a sequence cut at the end of `head` is accepted).
fn looks_like_text(head: &[u8]) -> bool {
    let text = match std::str::from_utf8(head) {
        Ok(t) => t,
        Err(e) if e.error_len().is_none() => {
            std::str::from_utf8(&head[..e.valid_up_to()]).unwrap_or_default()
        }
        Err(_) => return false,
    };
    !text.is_empty()
        && text
            .chars()
            .all(|c| !c.is_control() || matches!(c, '\t' | '\n' | '\r' | '\x0c'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_are_recognised() {
        let cases: &[(&[u8], Option<&str>)] = &[
            (b"\x93NUMPY\x01\x00", Some("a NumPy array file (.npy)")),
            (b"\x80\x04\x95", Some("a Python pickle")),
            (b"\x08\x07\x12\x07pytorch", Some("an ONNX model")),
            (b"RIFF\x00\x00\x00\x00WEBPVP8 ", Some("a WebP image")),
            (
                b"\x00\x00\x08\x03\x00\x00",
                Some("an IDX array file (the MNIST format)"),
            ),
            (b"hello\n", Some("a text file")),
            (b"caf\xc3", Some("a text file")), // UTF-8 cut at the end
            (b"\x00\x01\x02\x03\x04", None),
            // A length field and a '{': a damaged model file, not text.
            (b"\x02\x00\x00\x00\x00\x00\x00\x00{}", None),
        ];
        for (head, what) in cases {
            assert_eq!(looks_like(head, 1000), *what, "{head:?}");
        }
        assert_eq!(looks_like(b"", 0), Some("an empty file"));
        // "BM" is a BMP image only when the file can hold a BMP header.
        assert_eq!(looks_like(b"BM", 2), Some("a text file"));
        assert_eq!(looks_like(b"BM\x00\x00", 26), Some("a BMP image"));
    }

    #[test]
    fn only_regular_files_open() {
        let d = crate::io::test_dir("sniff");
        let f = d.join("f");
        fs::write(&f, b"abc").unwrap();
        assert_eq!(open_regular(&f).unwrap().1, 3);
        assert_eq!(
            open_regular(&d).unwrap_err().kind(),
            ErrorKind::IsADirectory
        );
        assert_eq!(
            open_regular(&d.join("missing")).unwrap_err().kind(),
            ErrorKind::NotFound
        );
        fs::remove_dir_all(&d).unwrap();
    }
}
