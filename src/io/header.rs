//! The JSON header of a model file: its structure, its limits, and how it is
//! read (as untrusted input) and written, both with `serde_json`.
//!
//! The header is one JSON object, with no whitespace before its `{` and only
//! whitespace (space, tab, line feed, carriage return) after its `}`:
//!
//! ```text
//! {"__metadata__": {"key": "value", ...},
//!  "name": {"dtype": "F32", "shape": [6, 1, 5, 5], "data_offsets": [begin, end]},
//!  ...}
//! ```
//!
//! - `__metadata__` is optional and maps strings to strings;
//! - every other member is a tensor entry with exactly the fields `dtype` (a
//!   string), `shape` (at most [`MAX_RANK`] non-negative integers) and
//!   `data_offsets` (two non-negative integers), each once;
//! - at most [`MAX_TENSORS`] entries; the header is at most [`MAX_HEADER_BYTES`];
//! - no key appears twice in any object, keys compared after their escapes are
//!   decoded (`"\u006b"` is `"k"`);
//! - integers are plain JSON integers that fit in 64 bits: no sign, fraction or
//!   exponent (`-0`, `8.0` and `8e0` are refused).
//!
//! [`parse`] checks all of this and nothing about the data buffer (dtype
//! names, offsets against the buffer and each other: see `model_file`). Only
//! the known structure is descended into, so a deeply nested value is refused
//! at its first level, and strings are the JSON grammar of `serde_json`
//! (closed, valid escapes, paired surrogates, no raw control characters).

use std::cell::RefCell;
use std::collections::{BTreeMap, HashSet};
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};

use super::show;

/// Largest header accepted or written: 1 MiB (a LeNet-5 header is about 1.5 KiB).
pub const MAX_HEADER_BYTES: usize = 1 << 20;

/// Largest number of tensors in one file.
pub const MAX_TENSORS: usize = 1024;

/// Largest number of dimensions of one tensor.
pub const MAX_RANK: usize = 32;

/// The reserved key of the metadata entry.
pub(crate) const METADATA_KEY: &str = "__metadata__";

/// The string metadata of a file.
pub(crate) type Metadata = BTreeMap<String, String>;

/// One tensor entry of the header, before its checks against the data.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Entry {
    pub name: String,
    pub dtype: String,
    pub shape: Vec<usize>,
    pub begin: usize,
    pub end: usize,
}

// ---------------------------------------------------------------------- read

/// The fields of a tensor entry: exactly these, each once (serde refuses an
/// unknown, missing or repeated field).
#[derive(Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a tensor entry (an object of dtype, shape and data_offsets)"
)]
struct Fields {
    dtype: String,
    shape: Shape,
    data_offsets: Offsets,
}

/// `shape`: at most [`MAX_RANK`] non-negative integers.
struct Shape(Vec<usize>);

impl<'de> Deserialize<'de> for Shape {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_seq(Uints {
            what: "shape",
            max: MAX_RANK,
        })
        .map(Shape)
    }
}

/// `data_offsets`: `[begin, end]`.
struct Offsets(usize, usize);

impl<'de> Deserialize<'de> for Offsets {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let o = d.deserialize_seq(Uints {
            what: "data_offsets",
            max: 2,
        })?;
        match o[..] {
            [begin, end] => Ok(Offsets(begin, end)),
            _ => Err(de::Error::custom(format!(
                "data_offsets must be [begin, end]; got {o:?}"
            ))),
        }
    }
}

/// A JSON array of at most `max` non-negative integers, named `what`.
struct Uints {
    what: &'static str,
    max: usize,
}

impl<'de> Visitor<'de> for Uints {
    type Value = Vec<usize>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "{} to be an array of integers", self.what)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<usize>, A::Error> {
        let mut out = Vec::new();
        while let Some(v) = seq.next_element_seed(Uint {
            what: self.what,
            index: out.len(),
        })? {
            if out.len() == self.max {
                return Err(de::Error::custom(format!(
                    "{} has more than {} entries",
                    self.what, self.max
                )));
            }
            out.push(v);
        }
        Ok(out)
    }
}

/// Element `index` of the array `what`: a JSON integer in `0..=usize::MAX`.
struct Uint {
    what: &'static str,
    index: usize,
}

impl<'de> DeserializeSeed<'de> for Uint {
    type Value = usize;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<usize, D::Error> {
        d.deserialize_u64(self)
    }
}

impl Visitor<'_> for Uint {
    type Value = usize;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "{}[{}] to be a non-negative integer",
            self.what, self.index
        )
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<usize, E> {
        usize::try_from(v)
            .map_err(|_| E::custom(format!("{}[{}] is too large: {v}", self.what, self.index)))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<usize, E> {
        Err(E::custom(format!(
            "{}[{}] must be a non-negative integer; got {v}",
            self.what, self.index
        )))
    }

    /// serde_json gives fractions, exponents, `-0` and integers beyond 64
    /// bits as floats.
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<usize, E> {
        if v.fract() == 0.0 && v >= 18_446_744_073_709_551_616.0 {
            Err(E::custom(format!(
                "{}[{}] is too large: {v:e} does not fit in 64 bits",
                self.what, self.index
            )))
        } else {
            Err(E::custom(format!(
                "{}[{}] must be a non-negative integer; got {v:?}",
                self.what, self.index
            )))
        }
    }
}

/// Where the parser is, for the messages of serde's own errors: empty at the
/// top level, else "tensor 'name'", "__metadata__" or "metadata value 'k'".
type Place = RefCell<String>;

/// An error of this module's own, which names its place itself.
fn own_error<E: de::Error>(place: &Place, message: String) -> E {
    place.borrow_mut().clear();
    E::custom(message)
}

/// The header object: tensor entries in the order given, and the metadata.
struct Top<'p> {
    place: &'p Place,
}

impl<'de> Visitor<'de> for Top<'_> {
    type Value = (Vec<Entry>, Metadata);

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("the header to be a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut seen: HashSet<String> = HashSet::new();
        let mut entries = Vec::new();
        let mut metadata = None;
        while let Some(key) = map.next_key::<String>()? {
            if seen.contains(&key) {
                return Err(own_error(
                    self.place,
                    format!("the header has the key {} twice", show(&key)),
                ));
            }
            seen.insert(key.clone());
            if key == METADATA_KEY {
                *self.place.borrow_mut() = METADATA_KEY.into();
                metadata = Some(map.next_value_seed(MetadataSeed { place: self.place })?);
            } else {
                if entries.len() == MAX_TENSORS {
                    return Err(own_error(
                        self.place,
                        format!("more than {MAX_TENSORS} tensors"),
                    ));
                }
                *self.place.borrow_mut() = format!("tensor {}", show(&key));
                let f: Fields = map.next_value()?;
                entries.push(Entry {
                    name: key,
                    dtype: f.dtype,
                    shape: f.shape.0,
                    begin: f.data_offsets.0,
                    end: f.data_offsets.1,
                });
            }
            self.place.borrow_mut().clear();
        }
        Ok((entries, metadata.unwrap_or_default()))
    }
}

/// `__metadata__`: an object of strings, without repeated keys.
struct MetadataSeed<'p> {
    place: &'p Place,
}

impl<'de> DeserializeSeed<'de> for MetadataSeed<'_> {
    type Value = Metadata;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Metadata, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for MetadataSeed<'_> {
    type Value = Metadata;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object of strings")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Metadata, A::Error> {
        let mut out = Metadata::new();
        while let Some(key) = map.next_key::<String>()? {
            if out.contains_key(&key) {
                return Err(own_error(
                    self.place,
                    format!("{METADATA_KEY} has the key {} twice", show(&key)),
                ));
            }
            *self.place.borrow_mut() = format!("metadata value {}", show(&key));
            let value: String = map.next_value()?;
            *self.place.borrow_mut() = METADATA_KEY.into();
            out.insert(key, value);
        }
        Ok(out)
    }
}

/// What starts `text`, for messages.
fn first_char(text: &str) -> String {
    match text.chars().next() {
        None => "the end of the header".into(),
        Some(c) if c.is_ascii_graphic() || c == ' ' => format!("'{c}'"),
        Some(c) => format!("{:?}", c),
    }
}

/// The message of a serde_json error met at `place`: syntax errors say
/// "invalid header JSON"; all carry serde_json's line and column.
fn describe(e: &serde_json::Error, place: &str) -> String {
    use serde_json::error::Category;
    let syntax = matches!(e.classify(), Category::Syntax | Category::Eof);
    match (syntax, place.is_empty()) {
        (true, true) => format!("invalid header JSON: {e}"),
        (true, false) => format!("invalid header JSON in {place}: {e}"),
        (false, true) => e.to_string(),
        (false, false) => format!("{place}: {e}"),
    }
}

/// Parses a header (already checked to be UTF-8 and at most
/// [`MAX_HEADER_BYTES`]): the tensor entries in header order and the metadata.
/// The error is a message naming the problem and where it is.
pub(crate) fn parse(text: &str) -> Result<(Vec<Entry>, Metadata), String> {
    if !text.starts_with('{') {
        return Err(format!(
            "the header must be a JSON object starting with '{{'; found {}",
            first_char(text)
        ));
    }
    let place = Place::default();
    let mut de = serde_json::Deserializer::from_str(text);
    let parsed = de
        .deserialize_map(Top { place: &place })
        .map_err(|e| describe(&e, &place.borrow()))?;
    de.end().map_err(|e| {
        format!("invalid header JSON: unexpected data after the header object ({e})")
    })?;
    Ok(parsed)
}

// ---------------------------------------------------------------------- write

/// The fields of a tensor entry as written, in this order.
#[derive(Serialize)]
struct FieldsOut<'a> {
    dtype: &'a str,
    shape: &'a [usize],
    data_offsets: [usize; 2],
}

/// A header to write: the metadata (left out when empty), then the entries.
struct HeaderOut<'a> {
    entries: &'a [Entry],
    metadata: &'a Metadata,
}

impl Serialize for HeaderOut<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let with_metadata = !self.metadata.is_empty();
        let mut map = s.serialize_map(Some(self.entries.len() + usize::from(with_metadata)))?;
        if with_metadata {
            map.serialize_entry(METADATA_KEY, self.metadata)?;
        }
        for e in self.entries {
            map.serialize_entry(
                &e.name,
                &FieldsOut {
                    dtype: &e.dtype,
                    shape: &e.shape,
                    data_offsets: [e.begin, e.end],
                },
            )?;
        }
        map.end()
    }
}

/// A buffer that refuses to grow beyond [`MAX_HEADER_BYTES`].
struct Capped(Vec<u8>);

impl std::io::Write for Capped {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.0.len() + buf.len() > MAX_HEADER_BYTES {
            return Err(std::io::Error::other("header too large"));
        }
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The header text for `entries` (checked by the caller) and `metadata`,
/// padded with spaces to a multiple of 8 bytes; `None` when it would be larger
/// than [`MAX_HEADER_BYTES`] (found without building more than that).
pub(crate) fn write(entries: &[Entry], metadata: &Metadata) -> Option<Vec<u8>> {
    let mut out = Capped(Vec::new());
    serde_json::to_writer(&mut out, &HeaderOut { entries, metadata }).ok()?;
    let mut text = out.0;
    text.resize(text.len().next_multiple_of(8), b' ');
    // MAX_HEADER_BYTES is a multiple of 8: padding never crosses it.
    (text.len() <= MAX_HEADER_BYTES).then_some(text)
}

// ---------------------------------------------------------------------- tests

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &str, shape: &[usize], begin: usize, end: usize) -> Entry {
        Entry {
            name: name.into(),
            dtype: "F32".into(),
            shape: shape.to_vec(),
            begin,
            end,
        }
    }

    fn err(text: &str) -> String {
        match parse(text) {
            Err(m) => m,
            Ok(v) => panic!("expected an error for {text:?}, got {v:?}"),
        }
    }

    fn assert_err(text: &str, needle: &str) {
        let m = err(text);
        assert!(
            m.contains(needle),
            "{text:?}: message {m:?} lacks {needle:?}"
        );
    }

    const ONE: &str = r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#;

    #[test]
    fn parses_the_structure() {
        let (entries, m) = parse(
            r#"{"__metadata__":{"k":"v","\u00e9":"\ud83d\ude00"},"w":{"shape":[2,3],"dtype":"F32","data_offsets":[0,24]},"b":{"dtype":"F64","shape":[],"data_offsets":[24,24]}}   "#,
        )
        .unwrap();
        assert_eq!(
            entries,
            vec![entry("w", &[2, 3], 0, 24), {
                let mut b = entry("b", &[], 24, 24);
                b.dtype = "F64".into();
                b
            }]
        );
        assert_eq!(m.len(), 2);
        assert_eq!(m["k"], "v");
        assert_eq!(m["é"], "😀");
        assert_eq!(parse("{}").unwrap(), (vec![], Metadata::new()));
    }

    #[test]
    fn duplicate_keys_are_refused_at_every_level() {
        assert_err(
            r#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#,
            "the header has the key 'a' twice",
        );
        // The same key spelt with an escape.
        assert_err(
            r#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"\u0061":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#,
            "the header has the key 'a' twice",
        );
        assert_err(
            r#"{"__metadata__":{},"__metadata__":{}}"#,
            "the header has the key '__metadata__' twice",
        );
        assert_err(
            r#"{"__metadata__":{"k":"1","k":"1"}}"#,
            "__metadata__ has the key 'k' twice",
        );
        for field in ["dtype", "shape", "data_offsets"] {
            let value = match field {
                "dtype" => "\"F32\"",
                "shape" => "[2]",
                _ => "[0,8]",
            };
            let text = ONE.replace(
                &format!("\"{field}\":"),
                &format!("\"{field}\":{value},\"{field}\":"),
            );
            assert_err(&text, &format!("tensor 'a': duplicate field `{field}`"));
        }
    }

    #[test]
    fn unknown_and_missing_fields_are_refused() {
        assert_err(
            r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8],"extra":1}}"#,
            "tensor 'a': unknown field `extra`",
        );
        // An unknown field is refused before its value is read.
        assert_err(
            &format!(r#"{{"a":{{"dtype":"F32","x":{}}}}}"#, "[".repeat(10_000)),
            "unknown field `x`",
        );
        assert_err(r#"{"a":{}}"#, "tensor 'a': missing field `dtype`");
        assert_err(
            r#"{"a":{"dtype":"F32","data_offsets":[0,8]}}"#,
            "missing field `shape`",
        );
        assert_err(
            r#"{"a":{"dtype":"F32","shape":[2]}}"#,
            "missing field `data_offsets`",
        );
    }

    #[test]
    fn wrong_types_are_refused() {
        let cases = [
            (r#"{"a":1}"#, "tensor 'a': invalid type: integer `1`"),
            (
                r#"{"a":{"dtype":7,"shape":[2],"data_offsets":[0,8]}}"#,
                "expected a string",
            ),
            (
                r#"{"a":{"dtype":"F32","shape":{},"data_offsets":[0,8]}}"#,
                "expected shape to be an array",
            ),
            (
                r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,"8"]}}"#,
                "expected data_offsets[1] to be a non-negative integer",
            ),
            (
                r#"{"a":{"dtype":"F32","shape":[null],"data_offsets":[0,8]}}"#,
                "expected shape[0] to be a non-negative integer",
            ),
            (
                r#"{"a":{"dtype":"F32","shape":[true],"data_offsets":[0,8]}}"#,
                "invalid type: boolean",
            ),
            (
                r#"{"__metadata__":[]}"#,
                "__metadata__: invalid type: sequence, expected a JSON object of strings",
            ),
            (
                r#"{"__metadata__":null}"#,
                "__metadata__: invalid type: null",
            ),
            (
                r#"{"__metadata__":{"k":1}}"#,
                "metadata value 'k': invalid type: integer `1`, expected a string",
            ),
            (
                r#"{"__metadata__":{"k":{"x":"y"}}}"#,
                "metadata value 'k': invalid type: map",
            ),
        ];
        for (text, needle) in cases {
            assert_err(text, needle);
        }
    }

    #[test]
    fn integers_are_plain_and_fit_in_64_bits() {
        let with = |o: &str| ONE.replace("[0,8]", o);
        let cases = [
            (
                "[0,-1]",
                "data_offsets[1] must be a non-negative integer; got -1",
            ),
            (
                "[-0,8]",
                "data_offsets[0] must be a non-negative integer; got -0.0",
            ),
            ("[0,8.0]", "must be a non-negative integer; got 8.0"),
            ("[0,8e0]", "must be a non-negative integer; got 8.0"),
            ("[0,0.5]", "must be a non-negative integer; got 0.5"),
            ("[0,18446744073709551616]", "data_offsets[1] is too large"),
            ("[0,99999999999999999999999999999]", "is too large"),
            (
                "[0,1e400]",
                "invalid header JSON in tensor 'a': number out of range",
            ),
            ("[0,08]", "invalid header JSON"),
            ("[0,1.]", "invalid header JSON"),
            ("[0,1e]", "invalid header JSON"),
            ("[0,-]", "invalid header JSON"),
            ("[0,+1]", "invalid header JSON"),
            ("[0]", "data_offsets must be [begin, end]; got [0]"),
            ("[]", "data_offsets must be [begin, end]; got []"),
            ("[0,8,9]", "data_offsets has more than 2 entries"),
            (
                "[0,8,]",
                "invalid header JSON in tensor 'a': trailing comma",
            ),
        ];
        for (offsets, needle) in cases {
            assert_err(&with(offsets), needle);
        }
        let (e, _) = parse(&with("[18446744073709551615,0]")).unwrap();
        assert_eq!(e[0].begin, usize::MAX);
    }

    #[test]
    fn each_limit_holds() {
        // MAX_RANK dimensions are accepted, one more is not.
        let dims = |n: usize| vec!["1"; n].join(",");
        let at = ONE.replace("[2]", &format!("[{}]", dims(MAX_RANK)));
        assert_eq!(parse(&at).unwrap().0[0].shape.len(), MAX_RANK);
        let over = ONE.replace("[2]", &format!("[{}]", dims(MAX_RANK + 1)));
        assert_err(&over, "shape has more than 32 entries");
        // MAX_TENSORS entries are accepted, one more is not.
        let tensors = |n: usize| {
            let body: Vec<String> = (0..n)
                .map(|i| format!(r#""t{i}":{{"dtype":"F32","shape":[0],"data_offsets":[0,0]}}"#))
                .collect();
            format!("{{{}}}", body.join(","))
        };
        assert_eq!(parse(&tensors(MAX_TENSORS)).unwrap().0.len(), MAX_TENSORS);
        let m = err(&tensors(MAX_TENSORS + 1));
        assert!(m.starts_with("more than 1024 tensors"), "{m}");
        // Any number of metadata entries (the header size bounds them).
        let many: Vec<String> = (0..5000).map(|i| format!(r#""k{i}":"v""#)).collect();
        let text = format!(r#"{{"__metadata__":{{{}}}}}"#, many.join(","));
        assert_eq!(parse(&text).unwrap().1.len(), 5000);
    }

    #[test]
    fn deep_and_truncated_headers_are_refused() {
        let deep = "[".repeat(100_000);
        assert_err(
            &format!(r#"{{"a":{deep}"#),
            "tensor 'a': invalid type: sequence",
        );
        assert_err(
            &format!(r#"{{"__metadata__":{{"k":{deep}"#),
            "metadata value 'k': invalid type: sequence",
        );
        assert_err(
            &format!(r#"{{"__metadata__":{deep}"#),
            "__metadata__: invalid type",
        );
        let deep_objects = "{\"a\":".repeat(100_000);
        assert_err(
            &format!("{{\"a\":{{\"dtype\":{deep_objects}"),
            "expected a string",
        );
        // Every prefix of a valid header is refused (and none panics).
        let full = r#"{"__metadata__":{"k":"v\u00e9"},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#;
        for cut in 0..full.len() {
            let m = err(&full[..cut]);
            assert!(
                cut == 0 && m.contains("starting with '{'") || m.contains("invalid header JSON"),
                "{cut}: {m}"
            );
        }
        assert_err("", "found the end of the header");
        assert_err(" {}", "starting with '{'; found ' '");
        assert_err("[]", "JSON object starting with '{'; found '['");
        assert_err("{} x", "unexpected data after the header object");
        assert_err("{}{}", "unexpected data after the header object");
        assert!(parse("{} \t\r\n").is_ok());
        assert_err("{}\u{c}", "after the header object");
    }

    #[test]
    fn strings_follow_the_json_grammar() {
        let cases = [
            (r#"{"a\x":1}"#, "invalid header JSON: invalid escape"),
            (r#"{"a\u12":1}"#, "invalid header JSON"),
            (r#"{"a\ud800":1}"#, "invalid header JSON"),
            (r#"{"a\udc00":1}"#, "invalid header JSON"),
            (r#"{"a\ud800\u0041":1}"#, "invalid header JSON"),
            ("{\"a\u{1}\":1}", "invalid header JSON: control character"),
            (r#"{"abc"#, "invalid header JSON: EOF while parsing"),
            (r#"{'a':1}"#, "invalid header JSON: key must be a string"),
            (
                r#"{"a" 1}"#,
                "invalid header JSON in tensor 'a': expected `:`",
            ),
            (
                r#"{"a":{"dtype":"F32",}}"#,
                "invalid header JSON in tensor 'a': trailing comma",
            ),
        ];
        for (text, needle) in cases {
            assert_err(text, needle);
        }
        let (e, _) = parse(&ONE.replace("\"a\"", r#""x\"\\\/\n\t\u0000""#)).unwrap();
        assert_eq!(e[0].name, "x\"\\/\n\t\0");
    }

    #[test]
    fn write_round_trips_and_is_capped() {
        let entries = vec![
            entry("w\"\n\u{1}é", &[2, 3], 0, 24),
            entry("b", &[], 24, 28),
        ];
        let mut m = Metadata::new();
        m.insert("k\\".into(), "v\u{7f}😀".into());
        let text = write(&entries, &m).unwrap();
        assert!(text.len().is_multiple_of(8));
        let text = String::from_utf8(text).unwrap();
        assert!(text.starts_with(r#"{"__metadata__":{"#), "{text}");
        assert_eq!(parse(&text).unwrap(), (entries.clone(), m));
        assert!(
            write(&entries, &Metadata::new()).is_some_and(|t| t.starts_with(br#"{"w\"\n\u0001"#))
        );
        let mut big = Metadata::new();
        big.insert("k".into(), "x".repeat(MAX_HEADER_BYTES - 40));
        let at_limit = write(&[], &big).unwrap();
        assert!(at_limit.len() <= MAX_HEADER_BYTES && at_limit.len().is_multiple_of(8));
        big.insert("k".into(), "x".repeat(MAX_HEADER_BYTES));
        assert!(write(&[], &big).is_none());
    }
}
