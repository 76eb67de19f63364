//! The NumPy `.npy` format, versions 1.0, 2.0 and 3.0.

use std::io::{Read, Write};
use std::path::Path;

use ndarray::ArrayD;

use crate::error::{corrupt, unsupported, IoError};
use crate::raw::{element_count, fmt_shape, read_array, show_bytes, Dtype, RawError};
use crate::ArrayData;

const FORMAT: &str = ".npy";
const MAGIC: &[u8; 6] = b"\x93NUMPY";
/// Headers longer than this are refused (numpy itself refuses headers over 10000 bytes).
const MAX_HEADER: usize = 1 << 20;

/// Parses an `.npy` stream of `avail` bytes in total.
pub(crate) fn parse<R: Read>(r: &mut R, avail: u64, path: &Path) -> Result<ArrayData, IoError> {
    let mut pre = [0u8; 8];
    let got = read_up_to(r, &mut pre).map_err(|e| crate::error::read_err(path, e))?;
    if got < 8 || &pre[..6] != MAGIC {
        if got >= 6 && &pre[..6] != MAGIC || got < 6 && !MAGIC.starts_with(&pre[..got]) {
            return Err(corrupt(
                path,
                FORMAT,
                format!(
                    "bad magic {}; expected \"\\x93NUMPY\"",
                    show_bytes(&pre[..got.min(6)])
                ),
            ));
        }
        return Err(corrupt(
            path,
            FORMAT,
            format!("file is {got} bytes long, too short for the .npy preamble (10 bytes)"),
        ));
    }
    let (major, minor) = (pre[6], pre[7]);
    let len_size = match (major, minor) {
        (1, 0) => 2,
        (2, 0) | (3, 0) => 4,
        _ => {
            return Err(corrupt(
                path,
                FORMAT,
                format!("format version {major}.{minor}; expected 1.0, 2.0 or 3.0"),
            ))
        }
    };
    let mut lb = [0u8; 4];
    let got = read_up_to(r, &mut lb[..len_size]).map_err(|e| crate::error::read_err(path, e))?;
    if got < len_size {
        return Err(corrupt(
            path,
            FORMAT,
            "file ends inside the preamble (expected a header length)",
        ));
    }
    let header_len = u32::from_le_bytes(lb) as usize;
    if header_len > MAX_HEADER {
        return Err(corrupt(
            path,
            FORMAT,
            format!("header length {header_len} bytes; expected at most {MAX_HEADER}"),
        ));
    }
    let mut header = vec![0u8; header_len];
    let got = read_up_to(r, &mut header).map_err(|e| crate::error::read_err(path, e))?;
    if got < header_len {
        return Err(corrupt(
            path,
            FORMAT,
            format!("truncated header: expected {header_len} bytes, found {got}"),
        ));
    }
    let header_total = (8 + len_size + header_len) as u64;
    let text = String::from_utf8_lossy(&header);
    let h = parse_header(&text).map_err(|d| corrupt(path, FORMAT, d))?;
    let (dtype, little) = parse_descr(&h.descr).map_err(|d| unsupported(path, d))?;
    let count = element_count(&h.shape).ok_or_else(|| {
        corrupt(
            path,
            FORMAT,
            format!("shape {} has too many elements", fmt_shape(&h.shape)),
        )
    })?;
    let nbytes = (count as u64)
        .checked_mul(dtype.size() as u64)
        .ok_or_else(|| {
            corrupt(
                path,
                FORMAT,
                format!("shape {} has too many elements", fmt_shape(&h.shape)),
            )
        })?;
    let data_avail = avail.saturating_sub(header_total);
    if data_avail != nbytes {
        let what = if data_avail < nbytes {
            "truncated data"
        } else {
            "size mismatch"
        };
        return Err(corrupt(
            path,
            FORMAT,
            format!(
                "{what}: shape {} of {} needs {nbytes} bytes of data, found {data_avail}",
                fmt_shape(&h.shape),
                h.descr
            ),
        ));
    }
    read_array(r, dtype, little, &h.shape, h.fortran, count).map_err(|e| match e {
        RawError::Short { got } => corrupt(
            path,
            FORMAT,
            format!(
                "truncated data: shape {} of {} needs {nbytes} bytes of data, found {got}",
                fmt_shape(&h.shape),
                h.descr
            ),
        ),
        RawError::Io(e) => crate::error::read_err(path, e),
        RawError::Shape => corrupt(
            path,
            FORMAT,
            format!("shape {} is too large", fmt_shape(&h.shape)),
        ),
    })
}

/// Reads until `buf` is full or the stream ends; returns the number of bytes read.
pub(crate) fn read_up_to<R: Read>(r: &mut R, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

struct Header {
    descr: String,
    fortran: bool,
    shape: Vec<usize>,
}

/// A Python literal, as far as `.npy` headers use them.
#[derive(Debug)]
enum Py {
    Str(String),
    Bool(bool),
    None,
    Int(u64),
    Seq(Vec<Py>),
    Dict(Vec<(Py, Py)>),
}

struct Lexer<'a> {
    s: &'a [u8],
    i: usize,
}

const MAX_DEPTH: usize = 8;

impl Lexer<'_> {
    fn ws(&mut self) {
        while self.i < self.s.len() && self.s[self.i].is_ascii_whitespace() {
            self.i += 1;
        }
    }

    fn peek(&mut self) -> Option<u8> {
        self.ws();
        self.s.get(self.i).copied()
    }

    fn expect(&mut self, c: u8) -> Result<(), String> {
        match self.peek() {
            Some(x) if x == c => {
                self.i += 1;
                Ok(())
            }
            Some(x) => Err(format!(
                "header: expected '{}' at byte {}, found '{}'",
                c as char,
                self.i,
                std::ascii::escape_default(x)
            )),
            None => Err(format!(
                "header: expected '{}' at byte {}, found the end",
                c as char, self.i
            )),
        }
    }

    fn value(&mut self, depth: usize) -> Result<Py, String> {
        if depth > MAX_DEPTH {
            return Err("header: literal nested too deeply".into());
        }
        match self.peek() {
            Some(q @ (b'\'' | b'"')) => {
                self.i += 1;
                let start = self.i;
                while self.i < self.s.len() && self.s[self.i] != q {
                    if self.s[self.i] == b'\\' {
                        self.i += 1;
                    }
                    self.i += 1;
                }
                if self.i >= self.s.len() {
                    return Err("header: unterminated string".into());
                }
                let v = String::from_utf8_lossy(&self.s[start..self.i]).into_owned();
                self.i += 1;
                Ok(Py::Str(v))
            }
            Some(open @ (b'(' | b'[')) => {
                let close = if open == b'(' { b')' } else { b']' };
                self.i += 1;
                let mut items = Vec::new();
                loop {
                    if self.peek() == Some(close) {
                        self.i += 1;
                        break;
                    }
                    items.push(self.value(depth + 1)?);
                    match self.peek() {
                        Some(b',') => self.i += 1,
                        _ => {
                            self.expect(close)?;
                            break;
                        }
                    }
                }
                Ok(Py::Seq(items))
            }
            Some(b'{') => {
                self.i += 1;
                let mut items = Vec::new();
                loop {
                    if self.peek() == Some(b'}') {
                        self.i += 1;
                        break;
                    }
                    let k = self.value(depth + 1)?;
                    self.expect(b':')?;
                    let v = self.value(depth + 1)?;
                    items.push((k, v));
                    match self.peek() {
                        Some(b',') => self.i += 1,
                        _ => {
                            self.expect(b'}')?;
                            break;
                        }
                    }
                }
                Ok(Py::Dict(items))
            }
            Some(c) if c.is_ascii_digit() => {
                let mut v: u64 = 0;
                while self.i < self.s.len() && self.s[self.i].is_ascii_digit() {
                    v = v
                        .checked_mul(10)
                        .and_then(|v| v.checked_add(u64::from(self.s[self.i] - b'0')))
                        .ok_or("header: integer too large")?;
                    self.i += 1;
                }
                // Python 2 long suffix, as in `(3L, 4L)`.
                if self.i < self.s.len() && matches!(self.s[self.i], b'L' | b'l') {
                    self.i += 1;
                }
                Ok(Py::Int(v))
            }
            Some(c) if c.is_ascii_alphabetic() => {
                let start = self.i;
                while self.i < self.s.len() && self.s[self.i].is_ascii_alphanumeric() {
                    self.i += 1;
                }
                match &self.s[start..self.i] {
                    b"True" => Ok(Py::Bool(true)),
                    b"False" => Ok(Py::Bool(false)),
                    b"None" => Ok(Py::None),
                    w => Err(format!(
                        "header: unexpected word '{}'",
                        String::from_utf8_lossy(w)
                    )),
                }
            }
            Some(b'-') => Err("header: negative number where a size was expected".into()),
            Some(c) => Err(format!(
                "header: unexpected character '{}' at byte {}",
                std::ascii::escape_default(c),
                self.i
            )),
            None => Err("header: ends where a value was expected".into()),
        }
    }
}

fn parse_header(text: &str) -> Result<Header, String> {
    let mut lx = Lexer {
        s: text.as_bytes(),
        i: 0,
    };
    let v = lx.value(0)?;
    if lx.peek().is_some() {
        return Err(format!(
            "header: unexpected text after the dictionary at byte {}",
            lx.i
        ));
    }
    let Py::Dict(items) = v else {
        return Err("header is not a dictionary".into());
    };
    let get = |key: &str| {
        items
            .iter()
            .find(|(k, _)| matches!(k, Py::Str(s) if s == key))
            .map(|(_, v)| v)
    };
    let descr = match get("descr") {
        Some(Py::Str(s)) => s.clone(),
        Some(Py::Seq(_)) => {
            return Err(
                "structured (record) dtype; expected a plain numeric dtype such as '<f4'".into(),
            )
        }
        Some(_) => return Err("header 'descr' is not a string".into()),
        None => return Err("header has no 'descr' key".into()),
    };
    let fortran = match get("fortran_order") {
        Some(Py::Bool(b)) => *b,
        Some(_) => return Err("header 'fortran_order' is not True or False".into()),
        None => return Err("header has no 'fortran_order' key".into()),
    };
    let shape = match get("shape") {
        Some(Py::Seq(items)) => items
            .iter()
            .map(|d| match d {
                Py::Int(n) => usize::try_from(*n).map_err(|_| "header: shape too large".into()),
                _ => Err("header 'shape' holds something other than integers".to_string()),
            })
            .collect::<Result<Vec<_>, _>>()?,
        Some(_) => return Err("header 'shape' is not a tuple".into()),
        None => return Err("header has no 'shape' key".into()),
    };
    if shape.len() > 32 {
        return Err(format!(
            "header 'shape' has {} dimensions; expected at most 32",
            shape.len()
        ));
    }
    Ok(Header {
        descr,
        fortran,
        shape,
    })
}

/// Maps a numpy type string such as `<f4` to a dtype and byte order (`true` = little endian).
fn parse_descr(descr: &str) -> Result<(Dtype, bool), String> {
    let native_little = cfg!(target_endian = "little");
    let (little, rest) = match descr.as_bytes().first() {
        Some(b'<') => (true, &descr[1..]),
        Some(b'>') => (false, &descr[1..]),
        Some(b'|' | b'=') => (native_little, &descr[1..]),
        _ => (native_little, descr),
    };
    let dtype = match rest {
        "b1" | "?" => Dtype::Bool,
        "u1" | "B" => Dtype::U8,
        "u2" => Dtype::U16,
        "u4" => Dtype::U32,
        "u8" => Dtype::U64,
        "i1" | "b" => Dtype::I8,
        "i2" => Dtype::I16,
        "i4" => Dtype::I32,
        "i8" => Dtype::I64,
        "f2" | "e" => Dtype::F16,
        "f4" => Dtype::F32,
        "f8" => Dtype::F64,
        _ => {
            let kind = match rest.as_bytes().first() {
                Some(b'c') => "complex numbers",
                Some(b'O') => "Python objects",
                Some(b'U' | b'S' | b'a') => "strings",
                Some(b'V') => "raw bytes (void)",
                Some(b'M' | b'm') => "dates or time deltas",
                Some(b'f') => "extended-precision floats",
                _ => "an unknown type",
            };
            return Err(format!(
                "unsupported .npy dtype '{descr}' ({kind}); expected bool, an integer type \
                 (u1-u8, i1-i8) or a float type (f2, f4, f8)"
            ));
        }
    };
    Ok((dtype, little))
}

/// The numpy type string of `data`, little endian.
fn descr_of(data: &ArrayData) -> &'static str {
    match data {
        ArrayData::Bool(_) => "|b1",
        ArrayData::U8(_) => "|u1",
        ArrayData::U16(_) => "<u2",
        ArrayData::U32(_) => "<u4",
        ArrayData::U64(_) => "<u8",
        ArrayData::I8(_) => "|i1",
        ArrayData::I16(_) => "<i2",
        ArrayData::I32(_) => "<i4",
        ArrayData::I64(_) => "<i8",
        ArrayData::F32(_) => "<f4",
        ArrayData::F64(_) => "<f8",
    }
}

/// The preamble and header of a version 1.0 (or 2.0 when needed) C-order `.npy` file.
pub(crate) fn header_bytes(descr: &str, shape: &[usize]) -> Vec<u8> {
    let dims = match shape {
        [n] => format!("({n},)"),
        _ => format!(
            "({})",
            shape
                .iter()
                .map(usize::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let mut dict = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {dims}, }}");
    let (version, len_size) = if dict.len() + 12 < 65535 {
        (1u8, 2)
    } else {
        (2u8, 4)
    };
    let unpadded = 6 + 2 + len_size + dict.len() + 1;
    let pad = (64 - unpadded % 64) % 64;
    dict.extend(std::iter::repeat_n(' ', pad));
    dict.push('\n');
    let mut out = Vec::with_capacity(unpadded + pad);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[version, 0]);
    if len_size == 2 {
        out.extend_from_slice(&(dict.len() as u16).to_le_bytes());
    } else {
        out.extend_from_slice(&(dict.len() as u32).to_le_bytes());
    }
    out.extend_from_slice(dict.as_bytes());
    out
}

/// Writes `a` as a C-order `.npy` stream of type `descr`, each element encoded by `f`.
pub(crate) fn encode_array<T: Copy, const N: usize, W: Write>(
    w: &mut W,
    descr: &str,
    a: &ArrayD<T>,
    f: impl Fn(T) -> [u8; N],
) -> std::io::Result<()> {
    w.write_all(&header_bytes(descr, a.shape()))?;
    let mut buf = Vec::with_capacity(1 << 16);
    for &x in a.iter() {
        buf.extend_from_slice(&f(x));
        if buf.len() >= (1 << 16) - N {
            w.write_all(&buf)?;
            buf.clear();
        }
    }
    w.write_all(&buf)
}

/// Writes `data` as a C-order little-endian `.npy` stream.
pub(crate) fn encode<W: Write>(w: &mut W, data: &ArrayData) -> std::io::Result<()> {
    let d = descr_of(data);
    match data {
        ArrayData::Bool(a) => encode_array(w, d, a, |x| [u8::from(x)]),
        ArrayData::U8(a) => encode_array(w, d, a, |x| [x]),
        ArrayData::U16(a) => encode_array(w, d, a, u16::to_le_bytes),
        ArrayData::U32(a) => encode_array(w, d, a, u32::to_le_bytes),
        ArrayData::U64(a) => encode_array(w, d, a, u64::to_le_bytes),
        ArrayData::I8(a) => encode_array(w, d, a, i8::to_le_bytes),
        ArrayData::I16(a) => encode_array(w, d, a, i16::to_le_bytes),
        ArrayData::I32(a) => encode_array(w, d, a, i32::to_le_bytes),
        ArrayData::I64(a) => encode_array(w, d, a, i64::to_le_bytes),
        ArrayData::F32(a) => encode_array(w, d, a, f32::to_le_bytes),
        ArrayData::F64(a) => encode_array(w, d, a, f64::to_le_bytes),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_is_aligned_and_parses() {
        for shape in [vec![], vec![3], vec![2, 3, 4]] {
            let h = header_bytes("<f4", &shape);
            assert_eq!(h.len() % 64, 0);
            assert_eq!(*h.last().unwrap(), b'\n');
            let parsed = parse_header(std::str::from_utf8(&h[10..]).unwrap()).unwrap();
            assert_eq!(parsed.shape, shape);
            assert_eq!(parsed.descr, "<f4");
            assert!(!parsed.fortran);
        }
    }

    #[test]
    fn python2_long_suffix_and_trailing_comma() {
        let h =
            parse_header("{'descr': '<i8', 'fortran_order': True, 'shape': (3L, 4L,), }").unwrap();
        assert_eq!(h.shape, vec![3, 4]);
        assert!(h.fortran);
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_stack_overflow() {
        let s = "(".repeat(100_000);
        assert!(parse_header(&s).is_err());
    }
}
