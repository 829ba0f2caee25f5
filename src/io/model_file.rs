//! Model files in the safetensors format: the format, byte by byte, how a
//! file is built from tensors, and how one is read back as untrusted input.
//!
//! ```text
//! bytes 0..8          N, the header length, a little-endian u64
//! bytes 8..8+N        the header: N bytes of UTF-8 JSON (see `header`), padded
//!                     with spaces; lenet5 writes N as a multiple of 8
//! bytes 8+N..         the data buffer: every tensor's elements back to back,
//!                     float32 little-endian, row-major (C) order
//! ```
//!
//! Each tensor's entry in the header gives its `dtype` (`F32`), its `shape`
//! and its `data_offsets` `[begin, end]`, relative to the start of the data
//! buffer; `end - begin` is 4 times the product of the shape (1 for a scalar,
//! shape `[]`). The optional `__metadata__` entry maps strings to strings.
//! [`encode`] writes `__metadata__` first and the tensors in the order given,
//! their ranges following each other from offset 0.
//!
//! [`decode`] trusts nothing: the input must be at least 8 bytes; N must not
//! exceed the bytes that follow it nor [`MAX_HEADER_BYTES`] (both checked
//! before anything is allocated); the header must be valid UTF-8 and pass
//! `header::parse` (its structure, limits and JSON grammar); then every tensor
//! must have a non-empty name, dtype `F32`, `begin <= end <=` the buffer's
//! size, and a shape whose byte count does not overflow and equals
//! `end - begin`; the ranges together must tile the buffer (no overlap, no
//! hole, nothing after the last one); every value must be finite. Any
//! violation is a [`LeNetError::Value`] naming the problem. No input makes it
//! panic, and it never reserves more memory than a small multiple of the
//! input's size. [`read_file`] opens only regular files of at most
//! [`MAX_FILE_BYTES`]; [`write_file_atomic`] writes through the one atomic
//! writer (`atomic`).

use std::collections::{BTreeMap, HashSet};
use std::io::Read;
use std::path::Path;

use super::atomic::write_atomic;
use super::header::{self, Entry, Metadata, MAX_HEADER_BYTES, MAX_RANK, MAX_TENSORS};
use super::show;
use super::sniff::{looks_like, open_regular};
use crate::error::{LeNetError, Result};

/// Largest model file read or written: 64 MiB (a default LeNet-5 is 245 KB;
/// one with the largest supported output layer is about 23 MB).
pub const MAX_FILE_BYTES: u64 = 64 << 20;

/// The only element type this module reads and writes.
const DTYPE: &str = "F32";

/// Bytes per element of [`DTYPE`].
const ELEM: usize = 4;

/// A named float32 tensor in row-major (C) order.
#[derive(Clone, Debug, PartialEq)]
pub struct Tensor {
    pub name: String,
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

fn human_bytes(n: u64) -> String {
    if n >= 1 << 20 && n & ((1 << 20) - 1) == 0 {
        format!("{} MiB", n >> 20)
    } else {
        format!("{n} bytes")
    }
}

// ---------------------------------------------------------------------- encode

/// Checks one tensor before it is written; returns its byte count.
fn check_tensor(t: &Tensor) -> std::result::Result<usize, String> {
    if t.name.is_empty() {
        return Err("tensor names must not be empty".into());
    }
    if t.name == "__metadata__" {
        return Err("'__metadata__' is reserved and cannot name a tensor".into());
    }
    if t.shape.len() > MAX_RANK {
        return Err(format!(
            "tensor {} has {} dimensions; at most {MAX_RANK} are supported",
            show(&t.name),
            t.shape.len()
        ));
    }
    let count = t
        .shape
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .filter(|&c| c == t.data.len())
        .ok_or_else(|| {
            format!(
                "tensor {} has shape {:?} but {} values",
                show(&t.name),
                t.shape,
                t.data.len()
            )
        })?;
    if let Some(i) = t.data.iter().position(|v| !v.is_finite()) {
        return Err(format!(
            "tensor {} has a non-finite value ({}) at element {i}",
            show(&t.name),
            t.data[i]
        ));
    }
    Ok(count * ELEM)
}

/// Serialises tensors and string metadata as a safetensors file.
///
/// Elements are float32 little-endian; the tensors' byte ranges follow each
/// other in the order given; the header lists `__metadata__` first (when
/// `metadata` is not empty) and is padded with spaces to a multiple of 8 bytes.
/// Refuses (with [`LeNetError::Value`]) what [`decode`] would refuse: empty,
/// reserved or repeated names, a shape that does not match the data, a
/// non-finite value, too many tensors, a header or file above the limits.
pub fn encode(tensors: &[Tensor], metadata: &BTreeMap<String, String>) -> Result<Vec<u8>> {
    let fail = |m: String| LeNetError::Value(format!("cannot write model file: {m}"));
    if tensors.len() > MAX_TENSORS {
        return Err(fail(format!(
            "{} tensors; at most {MAX_TENSORS} are supported",
            tensors.len()
        )));
    }
    let mut names = HashSet::with_capacity(tensors.len());
    let mut entries = Vec::with_capacity(tensors.len());
    let mut offset = 0usize;
    for t in tensors {
        let nbytes = check_tensor(t).map_err(fail)?;
        if !names.insert(t.name.as_str()) {
            return Err(fail(format!("tensor name {} appears twice", show(&t.name))));
        }
        let end = offset
            .checked_add(nbytes)
            .filter(|&e| e as u64 <= MAX_FILE_BYTES)
            .ok_or_else(|| {
                fail(format!(
                    "the tensors hold more than the {} a model file may have",
                    human_bytes(MAX_FILE_BYTES)
                ))
            })?;
        entries.push(Entry {
            name: t.name.clone(),
            dtype: DTYPE.into(),
            shape: t.shape.clone(),
            begin: offset,
            end,
        });
        offset = end;
    }
    let header = header::write(&entries, metadata).ok_or_else(|| {
        fail(format!(
            "its header would be more than the {} allowed",
            human_bytes(MAX_HEADER_BYTES as u64)
        ))
    })?;
    let total = 8 + header.len() + offset;
    if total as u64 > MAX_FILE_BYTES {
        return Err(fail(format!(
            "it would be {total} bytes; at most {} are allowed",
            human_bytes(MAX_FILE_BYTES)
        )));
    }
    let mut out = Vec::new();
    out.try_reserve_exact(total).map_err(|_| {
        LeNetError::Memory(format!("cannot reserve {total} bytes for a model file"))
    })?;
    out.extend_from_slice(&(header.len() as u64).to_le_bytes());
    out.extend_from_slice(&header);
    for t in tensors {
        for v in &t.data {
            out.extend_from_slice(&v.to_le_bytes());
        }
    }
    debug_assert_eq!(out.len(), total);
    Ok(out)
}

// ---------------------------------------------------------------------- decode

type Res<T> = std::result::Result<T, String>;

fn decode_inner(bytes: &[u8]) -> Res<(Vec<Tensor>, Metadata)> {
    if bytes.len() < 8 {
        return Err(format!(
            "{} bytes is too short; a safetensors file starts with an 8-byte header length",
            bytes.len()
        ));
    }
    let mut len8 = [0u8; 8];
    len8.copy_from_slice(&bytes[..8]);
    let n = u64::from_le_bytes(len8);
    let rest = (bytes.len() - 8) as u64;
    if n > rest {
        return Err(format!(
            "the header length field says {n} bytes but only {rest} bytes follow it"
        ));
    }
    if n > MAX_HEADER_BYTES as u64 {
        return Err(format!(
            "the header is {n} bytes; at most {} are allowed",
            human_bytes(MAX_HEADER_BYTES as u64)
        ));
    }
    let n = n as usize;
    let header = match std::str::from_utf8(&bytes[8..8 + n]) {
        Ok(text) => text,
        Err(e) => {
            return Err(format!(
                "the header is not valid UTF-8 (at byte {})",
                e.valid_up_to()
            ))
        }
    };
    let buffer = &bytes[8 + n..];
    let (entries, metadata) = header::parse(header)?;

    // Each entry on its own.
    for e in &entries {
        let what = format!("tensor {}", show(&e.name));
        if e.name.is_empty() {
            return Err("a tensor has an empty name".into());
        }
        if e.dtype != DTYPE {
            return Err(format!(
                "{what} has dtype {}; only {DTYPE} (float32, little-endian) is supported",
                show(&e.dtype)
            ));
        }
        if e.begin > e.end || e.end > buffer.len() {
            return Err(format!(
                "{what} has data_offsets [{}, {}] outside the data buffer of {} bytes",
                e.begin,
                e.end,
                buffer.len()
            ));
        }
        let needed = e
            .shape
            .iter()
            .try_fold(1usize, |acc, &d| acc.checked_mul(d))
            .and_then(|c| c.checked_mul(ELEM))
            .ok_or_else(|| format!("{what} has shape {:?}, too many elements", e.shape))?;
        if e.end - e.begin != needed {
            return Err(format!(
                "{what} has data_offsets [{}, {}] but shape {:?} needs {needed} bytes",
                e.begin, e.end, e.shape
            ));
        }
    }

    // Together: the ranges tile the buffer.
    let mut order: Vec<usize> = (0..entries.len()).collect();
    order.sort_by_key(|&i| (entries[i].begin, entries[i].end));
    let mut at = 0usize;
    let mut prev: Option<usize> = None;
    for &i in &order {
        let e = &entries[i];
        if e.begin < at {
            let p = &entries[prev.unwrap_or(i)];
            return Err(format!(
                "tensors {} [{}, {}] and {} [{}, {}] overlap",
                show(&p.name),
                p.begin,
                p.end,
                show(&e.name),
                e.begin,
                e.end
            ));
        }
        if e.begin > at {
            return Err(format!(
                "bytes {at}..{} of the data buffer belong to no tensor",
                e.begin
            ));
        }
        at = e.end;
        prev = Some(i);
    }
    if at != buffer.len() {
        return Err(format!(
            "bytes {at}..{} of the data buffer belong to no tensor",
            buffer.len()
        ));
    }

    let mut tensors = Vec::with_capacity(entries.len());
    let mut slots: Vec<Option<Entry>> = entries.into_iter().map(Some).collect();
    for &i in &order {
        let Some(e) = slots[i].take() else { continue };
        let raw = &buffer[e.begin..e.end];
        let mut data = Vec::with_capacity(raw.len() / ELEM);
        for (j, c) in raw.chunks_exact(ELEM).enumerate() {
            let v = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
            if !v.is_finite() {
                return Err(format!(
                    "tensor {} has a non-finite value ({v}) at element {j}",
                    show(&e.name)
                ));
            }
            data.push(v);
        }
        tensors.push(Tensor {
            name: e.name,
            shape: e.shape,
            data,
        });
    }
    Ok((tensors, metadata))
}

/// Parses a safetensors file held in memory; see the module documentation for
/// every check. Tensors come back in the order of their data in the buffer
/// (the order [`encode`] was given).
pub fn decode(bytes: &[u8]) -> Result<(Vec<Tensor>, BTreeMap<String, String>)> {
    decode_inner(bytes).map_err(|m| LeNetError::Value(format!("model file: {m}")))
}

// ---------------------------------------------------------------------- files

/// Bytes of a file looked at to tell what it is.
const SNIFF_BYTES: usize = 4096;

/// The message for a file that is not a readable safetensors file: what it
/// looks like, then the exact problem.
fn not_a_model(path: &Path, head: &[u8], len: u64, detail: &str) -> LeNetError {
    let shown = path.display();
    LeNetError::Value(match looks_like(head, len) {
        Some(what) => format!(
            "model file '{shown}' is not a lenet5 model file (safetensors) but looks like \
             {what}: {detail}"
        ),
        None => format!("model file '{shown}': {detail}"),
    })
}

/// Reads and decodes a safetensors file. Only regular files are opened (see
/// `sniff::open_regular`); the file's size is checked (at most [`MAX_FILE_BYTES`])
/// before it is read. I/O failures are [`LeNetError::Io`] naming the file; a
/// file that is too large or malformed is [`LeNetError::Value`] naming the
/// file and the problem, and, for a file that is not safetensors at all, what
/// it looks like (a NumPy file, a pickle, text, an image, empty, ...).
pub fn read_file(path: &Path) -> Result<(Vec<Tensor>, BTreeMap<String, String>)> {
    let failed = |e| LeNetError::io("cannot read model file", path, e);
    let (file, len) = open_regular(path).map_err(failed)?;
    let mut reader = file.take(MAX_FILE_BYTES + 1);
    if len > MAX_FILE_BYTES {
        let mut head = Vec::with_capacity(SNIFF_BYTES);
        (&mut reader)
            .take(SNIFF_BYTES as u64)
            .read_to_end(&mut head)
            .map_err(failed)?;
        let detail = format!(
            "{len} bytes; at most {} are allowed",
            human_bytes(MAX_FILE_BYTES)
        );
        return Err(not_a_model(path, &head, len, &detail));
    }
    let mut bytes = Vec::with_capacity(len as usize);
    reader.read_to_end(&mut bytes).map_err(failed)?;
    let got = bytes.len() as u64;
    if got > MAX_FILE_BYTES {
        let detail = format!("more than {} bytes", human_bytes(MAX_FILE_BYTES));
        return Err(not_a_model(path, &bytes[..SNIFF_BYTES], got, &detail));
    }
    decode_inner(&bytes)
        .map_err(|m| not_a_model(path, &bytes[..bytes.len().min(SNIFF_BYTES)], got, &m))
}

/// Writes the bytes of a model file (from [`encode`]) to `path` atomically
/// (see `atomic`); errors say "cannot save model file" and name `path`.
pub fn write_file_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic(path, bytes, "cannot save model file")
}

// ---------------------------------------------------------------------- tests

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::test_dir as temp_dir;
    use crate::model::{Config as ArchConfig, Pooling};
    use proptest::prelude::*;
    use proptest::test_runner::Config;
    use std::ffi::OsString;
    use std::fs::{self, File};
    use std::io::ErrorKind;

    fn t(name: &str, shape: &[usize]) -> Tensor {
        let n: usize = shape.iter().product();
        Tensor {
            name: name.into(),
            shape: shape.to_vec(),
            data: (0..n).map(|i| (i as f32 * 0.37).sin()).collect(),
        }
    }

    fn meta(pairs: &[(&str, &str)]) -> Metadata {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// A LeNet-5's tensors (names and shapes from the layout).
    fn lenet_tensors(pooling: Pooling, k: usize) -> Vec<Tensor> {
        let cfg = ArchConfig {
            n_classes: k,
            pooling,
            ..ArchConfig::default()
        };
        cfg.layout()
            .tensors()
            .iter()
            .map(|s| t(s.name, &s.shape))
            .collect()
    }

    /// A file from a header text and a data buffer.
    fn raw(header: &str, buffer: &[u8]) -> Vec<u8> {
        let mut out = (header.len() as u64).to_le_bytes().to_vec();
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(buffer);
        out
    }

    fn err_of(bytes: &[u8]) -> String {
        match decode(bytes) {
            Err(LeNetError::Value(m)) => m,
            Err(other) => panic!("expected a Value error, got {other:?}"),
            Ok(_) => panic!("expected an error, got a valid file"),
        }
    }

    fn assert_err(bytes: &[u8], needle: &str) {
        let m = err_of(bytes);
        assert!(m.contains(needle), "message {m:?} lacks {needle:?}");
        assert!(m.starts_with("model file: "), "{m}");
    }

    #[test]
    fn round_trip_lenet() {
        for pooling in [Pooling::Subsample, Pooling::Average] {
            let ts = lenet_tensors(pooling, 10);
            let m = meta(&[
                ("format", "lenet5"),
                ("classes", "[0, 1]"),
                ("q", "\"\\\n\u{1}é😀"),
            ]);
            let bytes = encode(&ts, &m).unwrap();
            let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
            assert_eq!(n % 8, 0);
            assert_eq!((8 + n) % 8, 0);
            let (back, m2) = decode(&bytes).unwrap();
            assert_eq!(back, ts);
            assert_eq!(m2, m);
        }
    }

    #[test]
    fn default_lenet_file_size() {
        let bytes = encode(&lenet_tensors(Pooling::Subsample, 10), &Metadata::new()).unwrap();
        // 60,850 trainable values, plus C3's 900 zeros outside Table I.
        let data: usize = (60_850 + 900) * 4;
        assert!(
            bytes.len() > data && bytes.len() < data + 2048,
            "{}",
            bytes.len()
        );
    }

    #[test]
    fn round_trip_edge_shapes() {
        let ts = vec![
            t("scalar", &[]),
            t("empty", &[0, 3]),
            t("also empty", &[4, 0]),
            t("v", &[3]),
        ];
        let (back, m) = decode(&encode(&ts, &Metadata::new()).unwrap()).unwrap();
        assert_eq!(back, ts);
        assert!(m.is_empty());
        let (back, _) = decode(&encode(&[], &Metadata::new()).unwrap()).unwrap();
        assert!(back.is_empty());
    }

    #[test]
    fn encode_refuses_what_decode_would() {
        let nan = Tensor {
            name: "x".into(),
            shape: vec![2],
            data: vec![1.0, f32::NAN],
        };
        let cases: Vec<(Vec<Tensor>, &str)> = vec![
            (vec![t("a", &[2]), t("a", &[3])], "appears twice"),
            (vec![t("", &[2])], "must not be empty"),
            (vec![t("__metadata__", &[2])], "reserved"),
            (vec![nan], "non-finite value (NaN) at element 1"),
            (
                vec![Tensor {
                    name: "x".into(),
                    shape: vec![2, 3],
                    data: vec![0.0; 5],
                }],
                "shape [2, 3] but 5 values",
            ),
            (
                vec![Tensor {
                    name: "x".into(),
                    shape: vec![usize::MAX, 2],
                    data: vec![],
                }],
                "shape",
            ),
            (vec![t("x", &[1; MAX_RANK + 1])], "dimensions"),
        ];
        for (ts, needle) in cases {
            match encode(&ts, &Metadata::new()) {
                Err(LeNetError::Value(m)) => assert!(m.contains(needle), "{m}"),
                other => panic!("{needle}: {other:?}"),
            }
        }
        let many: Vec<Tensor> = (0..=MAX_TENSORS)
            .map(|i| t(&format!("t{i}"), &[1]))
            .collect();
        assert!(encode(&many, &Metadata::new()).is_err());
        let big = meta(&[("k", &"x".repeat(MAX_HEADER_BYTES))]);
        assert!(encode(&[], &big).is_err());
    }

    #[test]
    fn rejects_bad_length_fields() {
        assert_err(b"", "0 bytes is too short");
        assert_err(&[1, 2, 3], "too short");
        let good = encode(&[t("a", &[2])], &Metadata::new()).unwrap();
        for n in [
            u64::MAX,
            1 << 63,
            good.len() as u64,
            (good.len() - 7) as u64,
        ] {
            let mut b = good.clone();
            b[..8].copy_from_slice(&n.to_le_bytes());
            assert_err(&b, "header length field says");
        }
        // Within the file but above the cap.
        let mut big = ((MAX_HEADER_BYTES + 1) as u64).to_le_bytes().to_vec();
        big.resize(8 + MAX_HEADER_BYTES + 8, b' ');
        assert_err(&big, "at most 1 MiB");
        // Shorter than the JSON: the object is cut.
        let mut b = good.clone();
        b[..8].copy_from_slice(&10u64.to_le_bytes());
        assert!(decode(&b).is_err());
        assert_err(&raw("", b""), "starting with '{'");
    }

    #[test]
    fn rejects_bad_json() {
        let buf = [0u8; 8];
        let entry =
            |o: &str| format!("{{\"a\":{{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":{o}}}}}");
        let cases: Vec<(String, &str)> = vec![
            ("[]".into(), "JSON object"),
            (" {}".into(), "starting with '{'"),
            ("{".into(), "invalid header JSON: EOF while parsing an object"),
            ("{}x".into(), "after the header object"),
            ("{} {}".into(), "after the header object"),
            ("{\"a\":1}".into(), "tensor 'a': invalid type: integer `1`, expected a tensor entry"),
            ("{\"a\":{},}".into(), "missing field `dtype`"),
            ("{\"a\" {}}".into(), "expected `:`"),
            ("{\"a\":{\"dtype\":\"F32\",}}".into(), "trailing comma"),
            ("{'a':{}}".into(), "key must be a string"),
            (entry("[0, 8"), "expected `,` or `]`"),
            (entry("[0, 8,]"), "trailing comma"),
            (entry("[0]"), "must be [begin, end]"),
            (entry("[0, 8, 9]"), "more than 2 entries"),
            (entry("[-0, 8]"), "non-negative integer"),
            (entry("[0, 8.0]"), "non-negative integer; got 8.0"),
            (entry("[0, 8e0]"), "non-negative integer"),
            (entry("[0, 08]"), "invalid number"),
            (entry("[0, 1.]"), "invalid number"),
            (entry("[0, 1e]"), "invalid number"),
            (entry("[0, -]"), "invalid number"),
            (entry("[0, 18446744073709551616]"), "too large"),
            (entry("[0, 99999999999999999999999999999]"), "too large"),
            (entry("[0, \"8\"]"), "invalid type: string"),
            (entry("[0, null]"), "invalid type: null"),
            (entry("[0, true]"), "invalid type: boolean"),
            (entry("{\"b\":0}"), "expected data_offsets to be an array"),
            ("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8],\"extra\":1}}".into(), "unknown field `extra`"),
            ("{\"a\":{\"dtype\":\"F32\",\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}".into(), "duplicate field `dtype`"),
            ("{\"a\":{\"dtype\":\"F32\",\"data_offsets\":[0,8]}}".into(), "missing field `shape`"),
            ("{\"a\":{\"dtype\":\"F32\",\"shape\":[2]}}".into(), "missing field `data_offsets`"),
            ("{\"a\":{\"dtype\":7,\"shape\":[2],\"data_offsets\":[0,8]}}".into(), "tensor 'a': invalid type: integer `7`, expected a string"),
            ("{\"a\":{\"dtype\":\"F\\u0033\\u00322\",\"shape\":[2],\"data_offsets\":[0,8]}}".into(), "dtype 'F322'"),
            ("{\"a\\x\":1}".into(), "invalid escape"),
            ("{\"a\\u12\":1}".into(), "invalid escape"),
            ("{\"a\\ud800\":1}".into(), "end of hex escape"),
            ("{\"a\\udc00\":1}".into(), "lone leading surrogate"),
            ("{\"a\\ud800\\u0041\":1}".into(), "lone leading surrogate"),
            ("{\"a\u{1}\":1}".into(), "control character"),
            ("{\"abc".into(), "EOF while parsing a string"),
            ("{\"abc\\".into(), "EOF while parsing a string"),
            ("{\"__metadata__\":{\"k\":1}}".into(), "metadata value 'k': invalid type: integer `1`, expected a string"),
            ("{\"__metadata__\":[]}".into(), "__metadata__: invalid type"),
            ("{\"__metadata__\":null}".into(), "__metadata__: invalid type"),
            ("{\"__metadata__\":{\"k\":\"1\",\"k\":\"2\"}}".into(), "__metadata__ has the key 'k' twice"),
            ("{\"__metadata__\":{\"k\":\"1\",\"\\u006b\":\"2\"}}".into(), "__metadata__ has the key 'k' twice"),
            ("{\"__metadata__\":{},\"__metadata__\":{}}".into(), "the header has the key '__metadata__' twice"),
        ];
        for (header, needle) in cases {
            assert_err(&raw(&header, &buf), needle);
        }
        // Invalid UTF-8 in the header.
        let mut b = raw("{\"\u{e9}\":1}", &buf);
        b[10] = 0xff;
        assert_err(&b, "not valid UTF-8");
        // Nesting never recurses beyond the known structure.
        let deep = format!("{{\"a\":{}", "[".repeat(100_000));
        assert_err(&raw(&deep, &buf), "tensor 'a': invalid type: sequence");
    }

    #[test]
    fn rejects_duplicate_tensor_names() {
        let h = "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},\
                  \"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}";
        assert_err(&raw(h, &[0; 8]), "the header has the key 'a' twice");
    }

    #[test]
    fn rejects_bad_tensors() {
        let one = |dtype: &str, shape: &str, offsets: &str| {
            format!("{{\"c1.weight\":{{\"dtype\":\"{dtype}\",\"shape\":{shape},\"data_offsets\":{offsets}}}}}")
        };
        let buf = vec![0u8; 600];
        assert_err(
            &raw(&one("F32", "[6,1,5,5]", "[0,99]"), &buf[..99]),
            "tensor 'c1.weight' has data_offsets [0, 99] but shape [6, 1, 5, 5] needs 600 bytes",
        );
        assert_err(&raw(&one("F64", "[150]", "[0,600]"), &buf), "dtype 'F64'");
        assert_err(&raw(&one("f32", "[150]", "[0,600]"), &buf), "dtype 'f32'");
        assert_err(
            &raw(&one("F32", "[150]", "[0,604]"), &buf),
            "outside the data buffer of 600 bytes",
        );
        assert_err(&raw(&one("F32", "[150]", "[600,0]"), &buf), "outside");
        assert_err(
            &raw(&one("F32", "[4294967296,4294967296]", "[0,600]"), &buf),
            "too many elements",
        );
        assert_err(
            &raw(&one("F32", "[4611686018427387904]", "[0,600]"), &buf),
            "too many elements",
        );
        assert_err(
            &raw(&one("F32", "[149]", "[4,600]"), &buf),
            "bytes 0..4 of the data buffer belong to no tensor",
        );
        assert_err(
            &raw(&one("F32", "[149]", "[0,596]"), &buf),
            "bytes 596..600",
        );
        assert_err(
            &raw(
                &one(
                    "F32",
                    &format!("[{}]", vec!["1"; MAX_RANK + 1].join(",")),
                    "[0,4]",
                ),
                &buf[..4],
            ),
            "more than 32 entries",
        );
        assert_err(
            &raw(&one("F32", "[150]", "[0,600]"), &[0; 601]),
            "bytes 600..601",
        );
        // Empty name.
        assert_err(
            &raw(
                "{\"\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}",
                &[0; 4],
            ),
            "empty name",
        );
    }

    #[test]
    fn rejects_overlaps_and_holes() {
        let two = |a: (usize, usize), b: (usize, usize)| {
            format!(
                "{{\"a\":{{\"dtype\":\"F32\",\"shape\":[{}],\"data_offsets\":[{},{}]}},\
                 \"b\":{{\"dtype\":\"F32\",\"shape\":[{}],\"data_offsets\":[{},{}]}}}}",
                (a.1 - a.0) / 4,
                a.0,
                a.1,
                (b.1 - b.0) / 4,
                b.0,
                b.1
            )
        };
        let buf = [0u8; 16];
        assert_err(&raw(&two((0, 8), (0, 8)), &buf[..8]), "overlap");
        assert_err(
            &raw(&two((0, 12), (4, 16)), &buf),
            "tensors 'a' [0, 12] and 'b' [4, 16] overlap",
        );
        assert_err(&raw(&two((4, 16), (0, 8)), &buf), "overlap");
        assert_err(&raw(&two((0, 16), (8, 8)), &buf), "overlap");
        assert_err(&raw(&two((0, 4), (8, 16)), &buf), "bytes 4..8");
        // Order in the header does not matter; zero-sized tensors fit anywhere.
        let (ts, _) = decode(&raw(&two((8, 16), (0, 8)), &buf)).unwrap();
        assert_eq!(
            ts.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(),
            ["b", "a"]
        );
        assert!(decode(&raw(&two((0, 16), (16, 16)), &buf)).is_ok());
        assert!(decode(&raw(&two((0, 0), (0, 16)), &buf)).is_ok());
    }

    #[test]
    fn rejects_non_finite_values() {
        for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
            let mut bytes = encode(&[t("w", &[3])], &Metadata::new()).unwrap();
            let at = bytes.len() - 4;
            bytes[at..].copy_from_slice(&bad.to_le_bytes());
            assert_err(&bytes, "tensor 'w' has a non-finite value");
            assert_err(&bytes, "at element 2");
        }
    }

    #[test]
    fn accepts_whitespace_and_unpadded_headers() {
        let h = "{ \"__metadata__\" : { \"a\" : \"b\\/\" } ,\n\t\"x\" : { \"shape\" : [ 1 ] , \"data_offsets\" : [ 0 , 4 ] , \"dtype\" : \"F32\" } }\r\n ";
        let (ts, m) = decode(&raw(h, &1.5f32.to_le_bytes())).unwrap();
        assert_eq!(
            ts,
            vec![Tensor {
                name: "x".into(),
                shape: vec![1],
                data: vec![1.5]
            }]
        );
        assert_eq!(m, meta(&[("a", "b/")]));
    }

    #[test]
    fn long_names_are_cut_in_messages() {
        let name = "n".repeat(5000);
        let h =
            format!("{{\"{name}\":{{\"dtype\":\"F64\",\"shape\":[1],\"data_offsets\":[0,4]}}}}");
        let m = err_of(&raw(&h, &[0; 4]));
        assert!(m.len() < 300 && m.contains("(5000 bytes)"), "{m}");
    }

    #[test]
    fn too_many_tensors() {
        let mut h = String::from("{");
        for i in 0..=MAX_TENSORS {
            if i > 0 {
                h.push(',');
            }
            h.push_str(&format!(
                "\"t{i}\":{{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[0,0]}}"
            ));
        }
        h.push('}');
        assert_err(&raw(&h, b""), "more than 1024 tensors");
    }

    #[test]
    fn files_round_trip_and_replace_atomically() {
        let d = temp_dir("files");
        let path = d.join("model.safetensors");
        let first = encode(&[t("a", &[3])], &meta(&[("v", "1")])).unwrap();
        write_file_atomic(&path, &first).unwrap();
        let second = encode(&[t("b", &[5])], &meta(&[("v", "2")])).unwrap();
        write_file_atomic(&path, &second).unwrap();
        let (ts, m) = read_file(&path).unwrap();
        assert_eq!(ts[0].name, "b");
        assert_eq!(m["v"], "2");
        // No temporary file is left behind.
        let names: Vec<_> = fs::read_dir(&d)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![OsString::from("model.safetensors")]);
        // Saving onto a folder fails and leaves nothing behind.
        let sub = d.join("sub");
        fs::create_dir(&sub).unwrap();
        fs::write(sub.join("x"), b"x").unwrap();
        assert!(matches!(
            write_file_atomic(&sub, &first),
            Err(LeNetError::Io { .. })
        ));
        assert_eq!(fs::read_dir(&d).unwrap().count(), 2);
        // Missing folder.
        assert!(matches!(
            write_file_atomic(&d.join("no/such/dir/m.safetensors"), &first),
            Err(LeNetError::Io { .. })
        ));
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn read_file_errors() {
        let d = temp_dir("read");
        assert!(matches!(
            read_file(&d.join("missing")),
            Err(LeNetError::Io { .. })
        ));
        assert!(matches!(read_file(&d), Err(LeNetError::Io { .. })));
        #[cfg(target_os = "linux")]
        {
            // A named pipe is refused at once instead of waiting for a writer.
            let fifo = d.join("fifo");
            let made = std::process::Command::new("mkfifo").arg(&fifo).status();
            if made.is_ok_and(|s| s.success()) {
                match read_file(&fifo) {
                    Err(LeNetError::Io { source, .. }) => {
                        assert_eq!(source.kind(), ErrorKind::InvalidInput)
                    }
                    other => panic!("{other:?}"),
                }
            }
        }
        let bad = d.join("bad.safetensors");
        fs::write(&bad, b"\xff\xff\xff\xff\xff\xff\xff\xff{}").unwrap();
        match read_file(&bad) {
            Err(LeNetError::Value(m)) => {
                assert!(
                    m.contains("bad.safetensors") && m.contains("header length"),
                    "{m}"
                )
            }
            other => panic!("{other:?}"),
        }
        // A sparse file above the size cap is refused before it is read.
        let huge = d.join("huge.safetensors");
        let f = File::create(&huge).unwrap();
        f.set_len(MAX_FILE_BYTES + 1).unwrap();
        match read_file(&huge) {
            Err(LeNetError::Value(m)) => assert!(m.contains("at most 64 MiB"), "{m}"),
            other => panic!("{other:?}"),
        }
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn io_errors_name_the_file_and_keep_the_os_error() {
        let d = temp_dir("errno");
        let missing = d.join("missing.safetensors");
        match read_file(&missing) {
            Err(LeNetError::Io { path, source, .. }) => {
                assert_eq!(path.as_deref(), Some(missing.as_path()));
                assert_eq!(source.kind(), ErrorKind::NotFound);
            }
            other => panic!("{other:?}"),
        }
        match read_file(&d) {
            Err(LeNetError::Io { source, .. }) => {
                assert_eq!(source.kind(), ErrorKind::IsADirectory)
            }
            other => panic!("{other:?}"),
        }
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn files_that_are_not_safetensors_are_named_by_what_they_look_like() {
        // (first bytes, what the message must say); each padded to 64 bytes.
        let cases: &[(&[u8], &str)] = &[
            (b"\x93NUMPY\x01\x00v\x00{'descr': '<f8'", "NumPy array file"),
            (
                b"\x80\x04\x95\x10\x00\x00\x00\x00\x00\x00\x00",
                "Python pickle",
            ),
            (b"PK\x03\x04\x14\x00\x00\x00", "ZIP archive"),
            (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "PNG image"),
            (b"\xff\xd8\xff\xe0\x00\x10JFIF", "JPEG image"),
            (b"GIF89a\x01\x00", "GIF image"),
            (b"\x1f\x8b\x08\x00\x00\x00", "gzip-compressed file"),
            (b"\x00\x00\x08\x03\x00\x00\x00\x02", "IDX array file"),
            (b"\x89HDF\r\n\x1a\n", "HDF5 file"),
            (b"{\"weights\": [1, 2, 3]}\n", "text file"),
            (b"hello, this is a note\n", "text file"),
        ];
        let d = temp_dir("sniff");
        let path = d.join("five.npy");
        for (head, what) in cases {
            let mut bytes = head.to_vec();
            bytes.resize(64, b' ');
            fs::write(&path, &bytes).unwrap();
            match read_file(&path) {
                Err(LeNetError::Value(m)) => {
                    assert!(
                        m.contains("five.npy")
                            && m.contains(
                                "is not a lenet5 model file (safetensors) but looks like"
                            )
                            && m.contains(what),
                        "{what}: {m}"
                    );
                    // The exact problem follows.
                    assert!(m.contains("header"), "{m}");
                }
                other => panic!("{what}: {other:?}"),
            }
        }
        fs::write(&path, b"").unwrap();
        match read_file(&path) {
            Err(LeNetError::Value(m)) => {
                assert!(
                    m.contains("an empty file") && m.contains("0 bytes is too short"),
                    "{m}"
                )
            }
            other => panic!("{other:?}"),
        }
        // A damaged safetensors file keeps the plain message.
        let good = encode(&[t("a", &[3])], &meta(&[])).unwrap();
        fs::write(&path, &good[..good.len() - 1]).unwrap();
        match read_file(&path) {
            Err(LeNetError::Value(m)) => assert!(!m.contains("looks like"), "{m}"),
            other => panic!("{other:?}"),
        }
        fs::remove_dir_all(&d).unwrap();
    }

    /// Valid files to mutate: small synthetic ones and real LeNet-5 layouts.
    fn seeds() -> Vec<Vec<u8>> {
        let m = meta(&[
            ("format", "lenet5"),
            ("format_version", "1"),
            ("classes", "{\"dtype\": \"<i8\", \"values\": [0, 1, 2]}"),
        ]);
        vec![
            encode(&[t("a", &[2, 3]), t("b", &[1]), t("c", &[0])], &m).unwrap(),
            encode(&[t("x", &[])], &Metadata::new()).unwrap(),
            encode(&lenet_tensors(Pooling::Average, 2), &m).unwrap(),
            encode(&lenet_tensors(Pooling::Subsample, 10), &m).unwrap(),
        ]
    }

    fn header_len(b: &[u8]) -> usize {
        u64::from_le_bytes(b[..8].try_into().unwrap()) as usize
    }

    /// Decoding never panics; a success is a consistent set of tensors that
    /// encodes back to a file decoding to the same thing.
    fn check(bytes: &[u8]) {
        match decode(bytes) {
            Err(LeNetError::Value(m)) => assert!(m.starts_with("model file: ")),
            Err(other) => panic!("non-Value error {other:?}"),
            Ok((ts, m)) => {
                let mut names = HashSet::new();
                let mut total = 0;
                for t in &ts {
                    assert!(names.insert(t.name.clone()));
                    assert_eq!(t.shape.iter().product::<usize>(), t.data.len());
                    assert!(t.data.iter().all(|v| v.is_finite()));
                    total += t.data.len() * 4;
                }
                assert!(total <= bytes.len());
                let again = encode(&ts, &m).expect("a decoded file encodes");
                assert_eq!(decode(&again).expect("and decodes"), (ts, m));
            }
        }
    }

    /// Rebuilds a file with a new header text and the seed's data buffer.
    fn with_header(seed: &[u8], header: &str) -> Vec<u8> {
        raw(header, &seed[8 + header_len(seed)..])
    }

    /// Textual edits of a header that aim at one check each.
    fn edit_header(h: &str, kind: u8, a: usize, b: usize, big: &str) -> String {
        let h = h.trim_end();
        let nums: Vec<(usize, usize)> = {
            let bytes = h.as_bytes();
            let mut v = Vec::new();
            let mut i = 0;
            while i < bytes.len() {
                if bytes[i].is_ascii_digit() {
                    let s = i;
                    while i < bytes.len() && bytes[i].is_ascii_digit() {
                        i += 1;
                    }
                    v.push((s, i));
                } else {
                    i += 1;
                }
            }
            v
        };
        let entries: Vec<(usize, usize)> = {
            // Spans of `"name":{...}` tensor entries (no braces inside them).
            let mut v = Vec::new();
            let mut search = 1;
            while let Some(off) = h.get(search..).and_then(|r| r.find("\":{\"dtype\"")) {
                let colon = search + off + 1;
                let start = h[..colon - 1].rfind('"').unwrap_or(0);
                let end = colon + h[colon..].find('}').map_or(h.len() - colon, |e| e + 1);
                v.push((start, end));
                search = end;
            }
            v
        };
        let mut out = h.to_string();
        match kind % 9 {
            0 if !nums.is_empty() => {
                // A number replaced by a huge, negative, fractional or odd one.
                let (s, e) = nums[a % nums.len()];
                out.replace_range(s..e, big);
            }
            1 if !nums.is_empty() => {
                // A number nudged by a small amount (overlaps, holes, shape mismatches).
                let (s, e) = nums[a % nums.len()];
                let v: i64 = h[s..e].parse().unwrap_or(0);
                let w = v.saturating_add((b % 9) as i64 - 4).max(0);
                out.replace_range(s..e, &w.to_string());
            }
            2 if !entries.is_empty() => {
                // A tensor entry duplicated (same name twice).
                let (s, e) = entries[a % entries.len()];
                let copy = out[s..e].to_string();
                out.insert_str(e, &format!(",{copy}"));
            }
            3 if entries.len() >= 2 => {
                // Two tensors' names swapped.
                let (s1, _) = entries[a % entries.len()];
                let (s2, _) = entries[b % entries.len()];
                let name = |s: usize| -> Option<(usize, usize)> {
                    let e = s + 1 + out.get(s + 1..)?.find('"')?;
                    Some((s, e + 1))
                };
                if let (Some((a1, a2)), Some((b1, b2))) = (name(s1.min(s2)), name(s1.max(s2))) {
                    if a2 <= b1 {
                        let na = out[a1..a2].to_string();
                        let nb = out[b1..b2].to_string();
                        out.replace_range(b1..b2, &na);
                        out.replace_range(a1..a2, &nb);
                    }
                }
            }
            4 if entries.len() >= 2 => {
                // Two tensors' data_offsets swapped or copied (overlaps).
                let offs = |s: usize, e: usize| -> Option<(usize, usize)> {
                    let o = s + out.get(s..e)?.find("data_offsets")? + 14;
                    let p = s + out.get(s..e)?.rfind(']')? + 1;
                    (o <= p).then_some((o, p))
                };
                let (s1, e1) = entries[a % entries.len()];
                let (s2, e2) = entries[b % entries.len()];
                let (lo, hi) = if s1 < s2 {
                    ((s1, e1), (s2, e2))
                } else {
                    ((s2, e2), (s1, e1))
                };
                if let (Some((o1, p1)), Some((o2, p2))) = (offs(lo.0, lo.1), offs(hi.0, hi.1)) {
                    if p1 <= o2 {
                        let x = out[o1..p1].to_string();
                        let y = out[o2..p2].to_string();
                        out.replace_range(o2..p2, &x);
                        if b & 1 == 0 {
                            out.replace_range(o1..p1, &y);
                        }
                    }
                }
            }
            5 => {
                // A key duplicated inside an entry or in the metadata.
                for key in ["\"dtype\":\"F32\",", "\"format\":\"lenet5\","] {
                    if let Some(p) = out.find(key) {
                        out.insert_str(p, key);
                        break;
                    }
                }
            }
            6 => {
                // A byte of the header replaced by a JSON-significant one.
                const SPECIAL: &[u8] = b"{}[]\",:\\ 0-.e\x00u";
                if !out.is_empty() {
                    let at = a % out.len();
                    if out.is_char_boundary(at) && out.is_char_boundary(at + 1) {
                        let c = SPECIAL[b % SPECIAL.len()] as char;
                        out.replace_range(at..at + 1, &c.to_string());
                    }
                }
            }
            7 => {
                // The header cut short or extended.
                let at = a % (out.len() + 1);
                if out.is_char_boundary(at) {
                    out.truncate(at);
                }
                out.push_str(&big[..b % (big.len() + 1)]);
            }
            _ => {
                // A dtype changed.
                let dt = ["F16", "F64", "BF16", "I32", "U8", "f32", "", "F32 "][b % 8];
                if let Some(p) = out.find("\"F32\"") {
                    out.replace_range(p + 1..p + 4, dt);
                }
            }
        }
        out
    }

    fn big_number() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("18446744073709551615".to_string()),
            Just("18446744073709551616".to_string()),
            Just("9223372036854775807".to_string()),
            Just("4611686018427387904".to_string()),
            Just("4294967296".to_string()),
            Just("99999999999999999999999999999999999999".to_string()),
            Just("-1".to_string()),
            Just("1e400".to_string()),
            Just("0.5".to_string()),
            Just("1E2".to_string()),
            Just("00".to_string()),
            Just("null".to_string()),
            Just("\"4\"".to_string()),
            Just("[]".to_string()),
            (0u64..=u64::MAX).prop_map(|v| v.to_string()),
            (0u32..100_000).prop_map(|v| v.to_string()),
        ]
    }

    fn config(cases: u32) -> Config {
        Config {
            cases,
            // Failures are kept as explicit regression tests below instead of a
            // seed file outside this module.
            failure_persistence: None,
            max_shrink_iters: 2_000,
            ..Config::default()
        }
    }

    proptest! {
        #![proptest_config(config(3_000))]
        #[test]
        fn fuzz_bit_flips(
            seed in 0usize..4,
            flips in prop::collection::vec((any::<prop::sample::Index>(), 0u8..8, any::<bool>()), 1..8),
        ) {
            let mut b = seeds().swap_remove(seed);
            let hl = header_len(&b);
            for (i, bit, in_header) in flips {
                // Mostly the length field and the header, sometimes the data.
                let at = if in_header { i.index(8 + hl) } else { i.index(b.len()) };
                b[at] ^= 1 << bit;
            }
            check(&b);
        }
    }

    proptest! {
        #![proptest_config(config(2_000))]
        #[test]
        fn fuzz_truncation_and_length_field(
            seed in 0usize..4,
            cut in any::<prop::sample::Index>(),
            len_kind in 0u8..5,
            len in any::<u64>(),
            delta in -16i64..16,
        ) {
            let s = seeds().swap_remove(seed);
            let hl = header_len(&s) as i64;
            let mut b = s.clone();
            match len_kind {
                0 => b.truncate(cut.index(s.len() + 1)),
                1 => b[..8].copy_from_slice(&len.to_le_bytes()),
                2 => b[..8].copy_from_slice(&((hl + delta).max(0) as u64).to_le_bytes()),
                3 => {
                    b[..8].copy_from_slice(&((hl + delta).max(0) as u64).to_le_bytes());
                    b.truncate(cut.index(s.len() + 1));
                }
                _ => {
                    let at = cut.index(s.len() + 1);
                    b.splice(at..at, std::iter::repeat_n(0x20, (delta.unsigned_abs() as usize) + 1));
                }
            }
            check(&b);
        }
    }

    proptest! {
        #![proptest_config(config(4_000))]
        #[test]
        fn fuzz_header_edits(
            seed in 0usize..4,
            edits in prop::collection::vec((0u8..9, any::<usize>(), any::<usize>(), big_number()), 1..4),
        ) {
            let s = seeds().swap_remove(seed);
            let mut h = String::from_utf8(s[8..8 + header_len(&s)].to_vec()).unwrap();
            for (kind, a, b, big) in edits {
                h = edit_header(&h, kind, a, b, &big);
            }
            check(&with_header(&s, &h));
        }
    }

    /// Generated headers: every field drawn from valid and invalid values.
    fn arb_entry() -> impl Strategy<Value = String> {
        let name = prop_oneof![
            Just("w".to_string()),
            Just("b".to_string()),
            Just("__metadata__".to_string()),
            Just(String::new()),
            "[a-c.\\\\\"\\u{e9}]{0,4}",
        ];
        let dtype = prop_oneof![
            Just("\"F32\"".to_string()),
            Just("\"F64\"".to_string()),
            Just("32".to_string())
        ];
        let dims = prop::collection::vec(
            prop_oneof![0usize..5, Just(usize::MAX), Just(1usize << 62)],
            0..4,
        );
        let offsets = (0usize..40, 0usize..40, 0u8..4);
        (name, dtype, dims, offsets, any::<bool>()).prop_map(
            |(name, dtype, dims, (b, e, k), meta_ok)| {
                let key = serde_json::to_string(&name).unwrap();
                if name == "__metadata__" {
                    return if meta_ok {
                        format!("{key}:{{\"k\":\"v\"}}")
                    } else {
                        format!("{key}:{{\"k\":{b}}}")
                    };
                }
                let n: Option<usize> = dims.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
                let (b, e) = match (k, n) {
                    (0, Some(n)) if n < 10 => (b, b + 4 * n), // consistent size
                    _ => (b, e),
                };
                let shape = dims
                    .iter()
                    .map(|d| d.to_string())
                    .collect::<Vec<_>>()
                    .join(",");
                format!(
                    "{key}:{{\"dtype\":{dtype},\"shape\":[{shape}],\"data_offsets\":[{b},{e}]}}"
                )
            },
        )
    }

    proptest! {
        #![proptest_config(config(3_000))]
        #[test]
        fn fuzz_generated_headers(
            entries in prop::collection::vec(arb_entry(), 0..5),
            buffer_len in 0usize..48,
            fill in prop_oneof![Just(0u8), Just(0x3f), Just(0xff), any::<u8>()],
        ) {
            let header = format!("{{{}}}", entries.join(","));
            check(&raw(&header, &vec![fill; buffer_len]));
        }
    }

    #[test]
    fn fuzz_regressions() {
        // Inputs found by the fuzz targets above that once misbehaved are kept
        // here; none has so far. These are the shapes the targets aim at.
        let s = &seeds()[0];
        let h = String::from_utf8(s[8..8 + header_len(s)].to_vec()).unwrap();
        for kind in 0..9 {
            for a in 0..20 {
                check(&with_header(
                    s,
                    &edit_header(&h, kind, a, a / 3, "18446744073709551616"),
                ));
            }
        }
    }
}
