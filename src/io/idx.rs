//! Reader for the IDX format, the file format of MNIST and Fashion-MNIST.
//!
//! An IDX file is a 4-byte magic number followed by one big-endian `u32` per
//! dimension and then the elements, big-endian, in row-major (C) order:
//!
//! ```text
//! offset 0: 0x00 0x00 <type code> <number of dimensions d>
//! offset 4: d x u32 (big-endian) dimension sizes
//! offset 4 + 4d: size_0 * ... * size_{d-1} elements of the type
//! ```
//!
//! Type codes: `0x08` u8, `0x09` i8, `0x0B` i16, `0x0C` i32, `0x0D` f32, `0x0E` f64.
//! Files are often gzip-compressed (`*.gz`); [`read_idx_file`] and [`decode_idx`]
//! recognise gzip by its magic bytes (`0x1f 0x8b`), not by the file name.
//!
//! Every malformed input (bad magic, unknown type, truncated or oversized data,
//! sizes whose product overflows) is a [`LeNetError::Value`]; nothing here panics
//! on user input, and memory is only reserved for sizes the input really holds.

use std::io::{BufReader, Read};
use std::path::Path;

use flate2::read::MultiGzDecoder;

use crate::error::{LeNetError, Result};

/// Upper bound on the decoded size (header and data) of one IDX file: 4 GiB.
///
/// The full MNIST training images are 47 MB decoded, so this only stops
/// corrupt or hostile headers (and gzip bombs) from exhausting memory.
pub const MAX_IDX_BYTES: u64 = 4 << 30;

/// Largest number of dimensions accepted (the header byte allows 255).
const MAX_DIMS: usize = 32;

/// Memory reserved up front while reading data whose size is still unconfirmed.
const INITIAL_CAPACITY: usize = 16 << 20;

/// Element type of an IDX file, with its type code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdxType {
    /// `0x08`: unsigned byte.
    U8,
    /// `0x09`: signed byte.
    I8,
    /// `0x0B`: big-endian 16-bit signed integer.
    I16,
    /// `0x0C`: big-endian 32-bit signed integer.
    I32,
    /// `0x0D`: big-endian IEEE-754 single precision.
    F32,
    /// `0x0E`: big-endian IEEE-754 double precision.
    F64,
}

impl IdxType {
    /// The type for an IDX type code, or `None` for an unknown code.
    pub fn from_code(code: u8) -> Option<Self> {
        match code {
            0x08 => Some(IdxType::U8),
            0x09 => Some(IdxType::I8),
            0x0B => Some(IdxType::I16),
            0x0C => Some(IdxType::I32),
            0x0D => Some(IdxType::F32),
            0x0E => Some(IdxType::F64),
            _ => None,
        }
    }

    /// The IDX type code.
    pub fn code(self) -> u8 {
        match self {
            IdxType::U8 => 0x08,
            IdxType::I8 => 0x09,
            IdxType::I16 => 0x0B,
            IdxType::I32 => 0x0C,
            IdxType::F32 => 0x0D,
            IdxType::F64 => 0x0E,
        }
    }

    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            IdxType::U8 | IdxType::I8 => 1,
            IdxType::I16 => 2,
            IdxType::I32 | IdxType::F32 => 4,
            IdxType::F64 => 8,
        }
    }

    /// The NumPy name of the element type ("uint8", "int16", "float32", ...).
    pub fn name(self) -> &'static str {
        match self {
            IdxType::U8 => "uint8",
            IdxType::I8 => "int8",
            IdxType::I16 => "int16",
            IdxType::I32 => "int32",
            IdxType::F32 => "float32",
            IdxType::F64 => "float64",
        }
    }
}

/// The elements of an IDX file, converted to native byte order, row-major.
#[derive(Debug, Clone, PartialEq)]
pub enum IdxData {
    U8(Vec<u8>),
    I8(Vec<i8>),
    I16(Vec<i16>),
    I32(Vec<i32>),
    F32(Vec<f32>),
    F64(Vec<f64>),
}

impl IdxData {
    /// Number of elements.
    pub fn len(&self) -> usize {
        match self {
            IdxData::U8(v) => v.len(),
            IdxData::I8(v) => v.len(),
            IdxData::I16(v) => v.len(),
            IdxData::I32(v) => v.len(),
            IdxData::F32(v) => v.len(),
            IdxData::F64(v) => v.len(),
        }
    }

    /// True when there are no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The element type.
    pub fn dtype(&self) -> IdxType {
        match self {
            IdxData::U8(_) => IdxType::U8,
            IdxData::I8(_) => IdxType::I8,
            IdxData::I16(_) => IdxType::I16,
            IdxData::I32(_) => IdxType::I32,
            IdxData::F32(_) => IdxType::F32,
            IdxData::F64(_) => IdxType::F64,
        }
    }
}

/// A decoded IDX array: its shape and its elements in row-major order.
///
/// # Shapes
/// `shape` has between 1 and 32 entries; `data.len()` equals their product.
#[derive(Debug, Clone, PartialEq)]
pub struct Idx {
    /// Size of each dimension, outermost first (for MNIST images `[n, 28, 28]`).
    pub shape: Vec<usize>,
    /// The elements, row-major, native byte order.
    pub data: IdxData,
}

impl Idx {
    /// The element type.
    pub fn dtype(&self) -> IdxType {
        self.data.dtype()
    }

    /// Number of elements (the product of `shape`).
    pub fn len(&self) -> usize {
        self.data.len()
    }

    /// True when the array holds no elements (some dimension is 0).
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }
}

/// The header fields of an IDX file.
struct Header {
    dtype: IdxType,
    shape: Vec<usize>,
    /// Size of the element data in bytes.
    data_bytes: u64,
}

/// Checks the magic number and returns the element type and the number of dimensions.
fn parse_magic(magic: [u8; 4]) -> Result<(IdxType, usize)> {
    if magic[0] != 0 || magic[1] != 0 {
        return Err(LeNetError::value(format!(
            "not an IDX file: the magic number must start with two zero bytes, found \
             {:#04x} {:#04x}",
            magic[0], magic[1]
        )));
    }
    let dtype = IdxType::from_code(magic[2]).ok_or_else(|| {
        LeNetError::value(format!(
            "unknown IDX type code {:#04x} (expected 0x08 uint8, 0x09 int8, 0x0b int16, \
             0x0c int32, 0x0d float32 or 0x0e float64)",
            magic[2]
        ))
    })?;
    let ndim = usize::from(magic[3]);
    if ndim == 0 || ndim > MAX_DIMS {
        return Err(LeNetError::value(format!(
            "IDX header declares {ndim} dimensions; expected 1 to {MAX_DIMS}"
        )));
    }
    Ok((dtype, ndim))
}

/// Computes the data size in bytes from the dimensions, refusing overflow and
/// anything larger than `max_bytes` (header included).
fn data_size(dtype: IdxType, shape: &[usize], header_bytes: u64, max_bytes: u64) -> Result<u64> {
    let too_large = || {
        LeNetError::value(format!(
            "IDX header declares shape {shape:?} of {}, more than the limit of {max_bytes} bytes",
            dtype.name()
        ))
    };
    let mut count: u64 = 1;
    for &d in shape {
        count = count.checked_mul(d as u64).ok_or_else(too_large)?;
    }
    let bytes = count
        .checked_mul(dtype.size() as u64)
        .ok_or_else(too_large)?;
    match bytes.checked_add(header_bytes) {
        Some(total) if total <= max_bytes => {}
        _ => return Err(too_large()),
    }
    // The element count must also be addressable on this platform.
    usize::try_from(bytes).map_err(|_| too_large())?;
    Ok(bytes)
}

/// Fills `buf` completely from `reader`, or reports how many bytes came.
fn read_full<R: Read>(reader: &mut R, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Reads and checks the header (magic number and dimension sizes).
fn read_header<R: Read>(reader: &mut R, max_bytes: u64) -> Result<Header> {
    let mut magic = [0u8; 4];
    let got = read_full(reader, &mut magic).map_err(read_error)?;
    if got < 4 {
        return Err(LeNetError::value(format!(
            "IDX data is truncated: {got} bytes, too short for the 4-byte magic number"
        )));
    }
    let (dtype, ndim) = parse_magic(magic)?;
    let mut dims = vec![0u8; 4 * ndim];
    let got = read_full(reader, &mut dims).map_err(read_error)?;
    if got < dims.len() {
        return Err(LeNetError::value(format!(
            "IDX header is truncated: {ndim} dimensions need {} bytes of sizes, found {got}",
            dims.len()
        )));
    }
    let shape: Vec<usize> = dims
        .chunks_exact(4)
        .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]) as usize)
        .collect();
    let header_bytes = 4 + 4 * ndim as u64;
    let data_bytes = data_size(dtype, &shape, header_bytes, max_bytes)?;
    Ok(Header {
        dtype,
        shape,
        data_bytes,
    })
}

/// Maps an I/O error met while decoding: corrupt compressed data is a value
/// error (the file is malformed), anything else stays an I/O error.
fn read_error(err: std::io::Error) -> LeNetError {
    use std::io::ErrorKind;
    match err.kind() {
        ErrorKind::InvalidData | ErrorKind::InvalidInput | ErrorKind::UnexpectedEof => {
            LeNetError::value(format!("corrupt compressed IDX data: {err}"))
        }
        _ => LeNetError::Io {
            context: "reading IDX data".to_string(),
            path: None,
            source: err,
        },
    }
}

/// Converts big-endian element bytes to native values.
fn convert(dtype: IdxType, bytes: Vec<u8>) -> IdxData {
    macro_rules! be {
        ($t:ty, $n:literal) => {
            bytes
                .chunks_exact($n)
                .map(|c| {
                    let mut a = [0u8; $n];
                    a.copy_from_slice(c);
                    <$t>::from_be_bytes(a)
                })
                .collect()
        };
    }
    match dtype {
        IdxType::U8 => IdxData::U8(bytes),
        IdxType::I8 => IdxData::I8(bytes.into_iter().map(|b| b as i8).collect()),
        IdxType::I16 => IdxData::I16(be!(i16, 2)),
        IdxType::I32 => IdxData::I32(be!(i32, 4)),
        IdxType::F32 => IdxData::F32(be!(f32, 4)),
        IdxType::F64 => IdxData::F64(be!(f64, 8)),
    }
}

/// Reads one uncompressed IDX array from a stream and checks that the stream
/// ends exactly where the data ends.
///
/// # Errors
/// [`LeNetError::Value`] for a malformed header, data shorter or longer than
/// the header declares, or a declared size above `max_bytes`;
/// [`LeNetError::Io`] when the reader fails.
pub fn read_idx<R: Read>(mut reader: R, max_bytes: u64) -> Result<Idx> {
    let header = read_header(&mut reader, max_bytes)?;
    read_body(reader, header)
}

/// Reads the elements that `header` declares and checks that the stream ends
/// exactly there.
fn read_body<R: Read>(mut reader: R, header: Header) -> Result<Idx> {
    // Checked to fit in usize by `data_size`.
    let expected = header.data_bytes as usize;
    // Reserve no more than a bounded amount before the bytes have really arrived.
    let mut bytes = Vec::with_capacity(expected.min(INITIAL_CAPACITY));
    // One extra byte tells "exactly the declared size" from "more than that".
    (&mut reader)
        .take(header.data_bytes + 1)
        .read_to_end(&mut bytes)
        .map_err(read_error)?;
    if bytes.len() < expected {
        return Err(LeNetError::value(format!(
            "IDX data is truncated: shape {:?} of {} needs {expected} bytes of data, found {}",
            header.shape,
            header.dtype.name(),
            bytes.len()
        )));
    }
    if bytes.len() > expected {
        return Err(LeNetError::value(format!(
            "IDX data is longer than its header declares: shape {:?} of {} needs {expected} \
             bytes of data, but more follow",
            header.shape,
            header.dtype.name()
        )));
    }
    Ok(Idx {
        data: convert(header.dtype, bytes),
        shape: header.shape,
    })
}

/// Parses an uncompressed IDX array held in memory.
///
/// The byte count must match the header exactly.
///
/// # Errors
/// [`LeNetError::Value`] for every malformed input.
pub fn parse_idx(bytes: &[u8]) -> Result<Idx> {
    read_idx(bytes, MAX_IDX_BYTES)
}

/// True when `bytes` start with the gzip magic number.
pub fn is_gzip(bytes: &[u8]) -> bool {
    bytes.len() >= 2 && bytes[0] == 0x1f && bytes[1] == 0x8b
}

/// Parses an IDX array held in memory, gunzipping it first if it is gzip data.
///
/// # Errors
/// [`LeNetError::Value`] for every malformed input (including corrupt gzip data
/// and a decoded size above [`MAX_IDX_BYTES`]).
pub fn decode_idx(bytes: &[u8]) -> Result<Idx> {
    if is_gzip(bytes) {
        read_idx(MultiGzDecoder::new(bytes), MAX_IDX_BYTES)
    } else {
        parse_idx(bytes)
    }
}

/// Most bytes one byte of gzip data can decode to: deflate's best ratio is
/// 1032:1 (a 258-byte match in two bits), and gzip only adds to the input.
const MAX_GZIP_RATIO: u64 = 1032;

/// The header of an IDX file and a reader positioned at its first element.
struct OpenedIdx {
    header: Header,
    reader: Box<dyn Read + Send>,
}

/// Opens an IDX file, reads its header, and checks the declared size against
/// the file's size before any element is read: a plain file must hold exactly
/// the declared bytes, a gzip file must be large enough to decode to them.
fn open_idx_file(path: &Path) -> Result<OpenedIdx> {
    let failed = |e| LeNetError::io("cannot read IDX file", path, e);
    let (file, len) = super::sniff::open_regular(path).map_err(failed)?;
    let mut reader = BufReader::new(file);
    let mut start = [0u8; 2];
    let got = read_full(&mut reader, &mut start).map_err(failed)?;
    let gzip = is_gzip(&start[..got]);
    let rest = std::io::Cursor::new(start[..got].to_vec()).chain(reader);
    let mut reader: Box<dyn Read + Send> = if gzip {
        Box::new(MultiGzDecoder::new(rest))
    } else {
        Box::new(rest)
    };
    let header = read_header(&mut reader, MAX_IDX_BYTES)?;
    let header_bytes = 4 + 4 * header.shape.len() as u64;
    let declared = header_bytes + header.data_bytes;
    if gzip && declared > len.saturating_mul(MAX_GZIP_RATIO) {
        return Err(LeNetError::value(format!(
            "IDX data is truncated: the header declares shape {:?} of {} ({declared} bytes), \
             more than a gzip file of {len} bytes can hold",
            header.shape,
            header.dtype.name()
        )));
    }
    if !gzip && len != declared {
        let found = len.saturating_sub(header_bytes);
        return Err(LeNetError::value(if len < declared {
            format!(
                "IDX data is truncated: shape {:?} of {} needs {} bytes of data, found {found}",
                header.shape,
                header.dtype.name(),
                header.data_bytes
            )
        } else {
            format!(
                "IDX data is longer than its header declares: shape {:?} of {} needs {} \
                 bytes of data, but the file holds {found}",
                header.shape,
                header.dtype.name(),
                header.data_bytes
            )
        }));
    }
    Ok(OpenedIdx { header, reader })
}

/// Adds the file name to an error about `path`'s content.
fn naming(path: &Path) -> impl Fn(LeNetError) -> LeNetError + '_ {
    move |err| match err {
        LeNetError::Value(msg) => LeNetError::Value(format!("{}: {msg}", path.display())),
        LeNetError::Io { source, .. } => LeNetError::io("cannot read IDX file", path, source),
        other => other,
    }
}

/// Reads the header of an IDX file (gzipped or not): the element type and the
/// shape, without reading the elements (a gzip file is inflated only as far as
/// the header). The declared size is checked against the file's size as in
/// [`read_idx_file`], so that a caller can compare the headers of several
/// files before loading any of them.
///
/// # Errors
/// As [`read_idx_file`].
pub fn read_idx_header_file(path: &Path) -> Result<(IdxType, Vec<usize>)> {
    let opened = open_idx_file(path).map_err(naming(path))?;
    Ok((opened.header.dtype, opened.header.shape))
}

/// Reads an IDX file, gzip-compressed or not (detected from its first bytes).
///
/// Only regular files are opened: a named pipe or a device is refused before
/// it is opened (opening a pipe would wait for a writer). The declared size is
/// checked against the file's size before anything is allocated, and gzip data
/// is inflated as a stream that stops one byte after the declared size.
///
/// # Errors
/// [`LeNetError::Io`] when the file cannot be opened or read, or is not a
/// regular file; [`LeNetError::Value`] when its content is not a well-formed
/// IDX array. Messages name the file.
pub fn read_idx_file(path: &Path) -> Result<Idx> {
    let opened = open_idx_file(path).map_err(naming(path))?;
    read_body(opened.reader, opened.header).map_err(naming(path))
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::write::GzEncoder;
    use flate2::Compression;
    use std::io::Write;

    /// Builds an IDX file by hand: magic, big-endian sizes, then `payload`.
    fn idx_bytes(code: u8, shape: &[u32], payload: &[u8]) -> Vec<u8> {
        let mut out = vec![0, 0, code, shape.len() as u8];
        for d in shape {
            out.extend_from_slice(&d.to_be_bytes());
        }
        out.extend_from_slice(payload);
        out
    }

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut enc = GzEncoder::new(Vec::new(), Compression::default());
        enc.write_all(bytes).unwrap();
        enc.finish().unwrap()
    }

    fn value_message(result: Result<Idx>) -> String {
        match result {
            Err(LeNetError::Value(msg)) => msg,
            other => panic!("expected a value error, got {other:?}"),
        }
    }

    #[test]
    fn idx_parses_u8_images() {
        let payload: Vec<u8> = (0..24).collect();
        let idx = parse_idx(&idx_bytes(0x08, &[2, 3, 4], &payload)).unwrap();
        assert_eq!(idx.shape, vec![2, 3, 4]);
        assert_eq!(idx.dtype(), IdxType::U8);
        assert_eq!(idx.data, IdxData::U8(payload));
    }

    #[test]
    fn idx_parses_every_type_big_endian() {
        let i8s = parse_idx(&idx_bytes(0x09, &[3], &[0xff, 0x80, 0x7f])).unwrap();
        assert_eq!(i8s.data, IdxData::I8(vec![-1, -128, 127]));

        let i16s = parse_idx(&idx_bytes(0x0B, &[2], &[0x01, 0x02, 0xff, 0xfe])).unwrap();
        assert_eq!(i16s.data, IdxData::I16(vec![0x0102, -2]));

        let i32s = parse_idx(&idx_bytes(0x0C, &[2], &[0, 0, 1, 0, 0x80, 0, 0, 0])).unwrap();
        assert_eq!(i32s.data, IdxData::I32(vec![256, i32::MIN]));

        // 1.5f32 = 0x3fc00000, -2.0f32 = 0xc0000000
        let f32s = parse_idx(&idx_bytes(0x0D, &[2], &[0x3f, 0xc0, 0, 0, 0xc0, 0, 0, 0])).unwrap();
        assert_eq!(f32s.data, IdxData::F32(vec![1.5, -2.0]));

        // 0.1f64 = 0x3fb999999999999a
        let f64s = parse_idx(&idx_bytes(
            0x0E,
            &[1, 1],
            &[0x3f, 0xb9, 0x99, 0x99, 0x99, 0x99, 0x99, 0x9a],
        ))
        .unwrap();
        assert_eq!(f64s.shape, vec![1, 1]);
        assert_eq!(f64s.data, IdxData::F64(vec![0.1]));
    }

    #[test]
    fn idx_type_codes_round_trip() {
        for code in [0x08u8, 0x09, 0x0B, 0x0C, 0x0D, 0x0E] {
            let t = IdxType::from_code(code).unwrap();
            assert_eq!(t.code(), code);
        }
        assert!(IdxType::from_code(0x0A).is_none());
    }

    #[test]
    fn idx_accepts_zero_sized_dimension() {
        let idx = parse_idx(&idx_bytes(0x08, &[0, 28, 28], &[])).unwrap();
        assert_eq!(idx.shape, vec![0, 28, 28]);
        assert!(idx.is_empty());
    }

    #[test]
    fn idx_rejects_bad_magic() {
        let mut bytes = idx_bytes(0x08, &[1], &[7]);
        bytes[0] = 1;
        assert!(value_message(parse_idx(&bytes)).contains("magic"));
        let msg = value_message(parse_idx(&idx_bytes(0x0A, &[1], &[7])));
        assert!(msg.contains("type code 0x0a"), "{msg}");
        assert!(value_message(parse_idx(&[0, 0, 8, 0])).contains("0 dimensions"));
        assert!(value_message(parse_idx(&[0, 0, 8, 200])).contains("200 dimensions"));
        assert!(value_message(parse_idx(b"hello world")).contains("magic"));
    }

    #[test]
    fn idx_rejects_truncated_input() {
        assert!(value_message(parse_idx(&[])).contains("truncated"));
        assert!(value_message(parse_idx(&[0, 0, 8])).contains("truncated"));
        // header promises 3 dimensions, only 2 sizes present
        let msg = value_message(parse_idx(&[0, 0, 8, 3, 0, 0, 0, 1, 0, 0, 0, 1]));
        assert!(msg.contains("header is truncated"), "{msg}");
        // data one element short
        let msg = value_message(parse_idx(&idx_bytes(0x0C, &[2], &[0; 7])));
        assert!(
            msg.contains("needs 8 bytes") && msg.contains("found 7"),
            "{msg}"
        );
    }

    #[test]
    fn idx_rejects_trailing_bytes() {
        let msg = value_message(parse_idx(&idx_bytes(0x08, &[2, 2], &[1, 2, 3, 4, 5])));
        assert!(msg.contains("longer than its header"), "{msg}");
    }

    #[test]
    fn idx_rejects_huge_dims_without_allocating() {
        // 4 x (2^32 - 1) elements overflow u64 once multiplied by the f64 size.
        let bytes = idx_bytes(0x0E, &[u32::MAX, u32::MAX, u32::MAX, u32::MAX], &[]);
        assert!(value_message(parse_idx(&bytes)).contains("limit"));
        // Fits in u64 but exceeds the limit.
        let bytes = idx_bytes(0x08, &[u32::MAX, 2], &[]);
        assert!(value_message(parse_idx(&bytes)).contains("limit"));
        // A small explicit limit applies to the header too.
        let bytes = idx_bytes(0x08, &[10], &[0; 10]);
        assert!(value_message(read_idx(&bytes[..], 13)).contains("limit"));
        assert!(read_idx(&bytes[..], 18).is_ok());
    }

    #[test]
    fn idx_decodes_gzip_by_magic() {
        let raw = idx_bytes(0x0B, &[2, 1], &[0, 5, 0xff, 0xff]);
        let idx = decode_idx(&gzip(&raw)).unwrap();
        assert_eq!(idx.data, IdxData::I16(vec![5, -1]));
        assert_eq!(decode_idx(&raw).unwrap(), idx);
    }

    #[test]
    fn idx_rejects_corrupt_gzip() {
        let mut gz = gzip(&idx_bytes(0x08, &[64], &[3; 64]));
        let n = gz.len();
        gz.truncate(n - 10);
        assert!(matches!(decode_idx(&gz), Err(LeNetError::Value(_))));
        let mut gz = gzip(&idx_bytes(0x08, &[64], &[3; 64]));
        let n = gz.len();
        gz[n - 6] ^= 0xff; // CRC mismatch
        assert!(matches!(decode_idx(&gz), Err(LeNetError::Value(_))));
        assert!(matches!(
            decode_idx(&[0x1f, 0x8b, 1, 2, 3]),
            Err(LeNetError::Value(_))
        ));
    }

    #[test]
    fn idx_gzip_bomb_is_bounded_by_header() {
        // The header declares 16 bytes, the stream decodes to far more.
        let mut raw = idx_bytes(0x08, &[16], &[]);
        raw.extend(std::iter::repeat_n(0u8, 1 << 20));
        let msg = value_message(decode_idx(&gzip(&raw)));
        assert!(msg.contains("longer than its header"), "{msg}");
    }

    #[test]
    fn idx_reads_files_plain_and_gzipped() {
        let dir = std::env::temp_dir().join(format!("lenet5-idx-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let raw = idx_bytes(0x08, &[2, 2], &[9, 8, 7, 6]);
        let plain = dir.join("plain-idx2-ubyte");
        let gz = dir.join("anything.bin");
        std::fs::write(&plain, &raw).unwrap();
        std::fs::write(&gz, gzip(&raw)).unwrap();
        let a = read_idx_file(&plain).unwrap();
        let b = read_idx_file(&gz).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.data, IdxData::U8(vec![9, 8, 7, 6]));

        let bad = dir.join("bad");
        std::fs::write(&bad, [0u8, 0, 8]).unwrap();
        let msg = value_message(read_idx_file(&bad));
        assert!(msg.contains("bad") && msg.contains("truncated"), "{msg}");

        let tiny = dir.join("tiny");
        std::fs::write(&tiny, [0x1fu8]).unwrap();
        assert!(matches!(read_idx_file(&tiny), Err(LeNetError::Value(_))));

        let missing = dir.join("does-not-exist");
        assert!(matches!(
            read_idx_file(&missing),
            Err(LeNetError::Io { .. })
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn idx_reads_shipped_mnist_subset() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("python/lenet5/data/mnist-5k");
        let images = read_idx_file(&dir.join("t10k-images-idx3-ubyte.gz")).unwrap();
        assert_eq!(images.shape, vec![1000, 28, 28]);
        assert_eq!(images.dtype(), IdxType::U8);
        let labels = read_idx_file(&dir.join("t10k-labels-idx1-ubyte.gz")).unwrap();
        assert_eq!(labels.shape, vec![1000]);
        match labels.data {
            IdxData::U8(v) => {
                for digit in 0..10u8 {
                    assert_eq!(v.iter().filter(|&&l| l == digit).count(), 100);
                }
            }
            other => panic!("labels should be u8, got {:?}", other.dtype()),
        }
    }

    #[test]
    fn idx_sizes_are_checked_against_the_file_before_reading() {
        let dir = std::env::temp_dir().join(format!("lenet5-idx-size-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        // A plain file declaring 3 million images but holding 10 bytes of data.
        let short = dir.join("short");
        std::fs::write(&short, idx_bytes(0x08, &[3_000_000, 28, 28], &[0; 10])).unwrap();
        let msg = match read_idx_header_file(&short) {
            Err(LeNetError::Value(m)) => m,
            other => panic!("expected a value error, got {other:?}"),
        };
        assert!(
            msg.contains("short") && msg.contains("needs 2352000000 bytes of data, found 10"),
            "{msg}"
        );
        let long = dir.join("long");
        std::fs::write(&long, idx_bytes(0x08, &[2], &[1, 2, 3])).unwrap();
        let msg = value_message(read_idx_file(&long));
        assert!(msg.contains("the file holds 3"), "{msg}");
        // A small gzip file declaring more than gzip can expand to.
        let bomb = dir.join("bomb.gz");
        let gz = gzip(&idx_bytes(0x08, &[3_000_000, 28, 28], &[0; 1000]));
        assert!((gz.len() as u64) * MAX_GZIP_RATIO < 2_352_000_016);
        std::fs::write(&bomb, &gz).unwrap();
        let msg = value_message(read_idx_file(&bomb));
        assert!(msg.contains("more than a gzip file of"), "{msg}");
        // The header alone, plain and gzipped.
        let ok = dir.join("ok.gz");
        std::fs::write(&ok, gzip(&idx_bytes(0x0B, &[3, 1], &[0; 6]))).unwrap();
        assert_eq!(
            read_idx_header_file(&ok).unwrap(),
            (IdxType::I16, vec![3, 1])
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn idx_refuses_what_is_not_a_regular_file_without_opening_it() {
        let dir = std::env::temp_dir().join(format!("lenet5-idx-fifo-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let fifo = dir.join("fifo-idx1-ubyte");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status();
        if made.is_ok_and(|s| s.success()) {
            for result in [
                read_idx_file(&fifo).map(|_| ()),
                read_idx_header_file(&fifo).map(|_| ()),
            ] {
                match result {
                    Err(LeNetError::Io { source, path, .. }) => {
                        assert_eq!(source.kind(), std::io::ErrorKind::InvalidInput);
                        assert!(source.to_string().contains("named pipe"), "{source}");
                        assert_eq!(path.as_deref(), Some(fifo.as_path()));
                    }
                    other => panic!("{other:?}"),
                }
            }
        }
        match read_idx_file(&dir) {
            Err(LeNetError::Io { source, .. }) => {
                assert_eq!(source.kind(), std::io::ErrorKind::IsADirectory)
            }
            other => panic!("{other:?}"),
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
