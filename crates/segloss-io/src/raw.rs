//! Decoding of raw element data (shared by the `.npy` and NIfTI readers).

use std::io::{self, Read};

use ndarray::{ArrayD, IxDyn};

use crate::ArrayData;

/// An element type as stored in a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dtype {
    Bool,
    U8,
    U16,
    U32,
    U64,
    I8,
    I16,
    I32,
    I64,
    /// IEEE half precision, widened to `f32` on reading.
    F16,
    F32,
    F64,
}

impl Dtype {
    pub(crate) fn size(self) -> usize {
        match self {
            Dtype::Bool | Dtype::U8 | Dtype::I8 => 1,
            Dtype::U16 | Dtype::I16 | Dtype::F16 => 2,
            Dtype::U32 | Dtype::I32 | Dtype::F32 => 4,
            Dtype::U64 | Dtype::I64 | Dtype::F64 => 8,
        }
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Dtype::Bool => "bool",
            Dtype::U8 => "uint8",
            Dtype::U16 => "uint16",
            Dtype::U32 => "uint32",
            Dtype::U64 => "uint64",
            Dtype::I8 => "int8",
            Dtype::I16 => "int16",
            Dtype::I32 => "int32",
            Dtype::I64 => "int64",
            Dtype::F16 => "float16",
            Dtype::F32 => "float32",
            Dtype::F64 => "float64",
        }
    }
}

/// Why element data could not be read.
#[derive(Debug)]
pub(crate) enum RawError {
    /// The data ended after `got` bytes.
    Short { got: u64 },
    /// The reader failed.
    Io(io::Error),
    /// The shape cannot be represented (too many elements).
    Shape,
}

const CHUNK: usize = 1 << 16;

/// Reads `count` elements of `N` bytes each, converting each with `conv`.
///
/// At most `cap` elements are reserved up front, so a header that lies about the size
/// cannot make us allocate more than the data that actually arrives.
fn read_vec<T, const N: usize, R: Read>(
    r: &mut R,
    count: usize,
    cap: usize,
    conv: impl Fn([u8; N]) -> T,
) -> Result<Vec<T>, RawError> {
    let mut out = Vec::with_capacity(count.min(cap));
    let total = count.checked_mul(N).ok_or(RawError::Shape)?;
    let mut buf = vec![0u8; CHUNK.min(total.max(1))];
    let mut done = 0usize;
    while done < total {
        let want = (total - done).min(buf.len());
        let mut filled = 0;
        while filled < want {
            match r.read(&mut buf[filled..want]) {
                Ok(0) => {
                    return Err(RawError::Short {
                        got: (done + filled) as u64,
                    })
                }
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(RawError::Io(e)),
            }
        }
        out.extend(buf[..want].chunks_exact(N).map(|c| {
            let mut a = [0u8; N];
            a.copy_from_slice(c);
            conv(a)
        }));
        done += want;
    }
    Ok(out)
}

/// The element types read straight into their vector's memory: primitive integers and floats
/// (no padding; every byte pattern is a value).
trait Native: Copy + Default {
    /// The value with its bytes reversed (the other byte order).
    fn swapped(self) -> Self;
}

macro_rules! native_int {
    ($($t:ty),*) => {$(
        impl Native for $t {
            #[inline(always)]
            fn swapped(self) -> Self {
                self.swap_bytes()
            }
        }
    )*};
}
native_int!(u8, u16, u32, u64, i8, i16, i32, i64);

impl Native for f32 {
    #[inline(always)]
    fn swapped(self) -> Self {
        f32::from_bits(self.to_bits().swap_bytes())
    }
}

impl Native for f64 {
    #[inline(always)]
    fn swapped(self) -> Self {
        f64::from_bits(self.to_bits().swap_bytes())
    }
}

/// `count` elements read into a vector of their own type in as few reads as the reader allows
/// (no staging buffer, no per-element conversion), bytes swapped afterwards when the data's byte
/// order (`little`) is not the machine's.
fn read_native<T: Native, R: Read>(
    r: &mut R,
    count: usize,
    little: bool,
) -> Result<Vec<T>, RawError> {
    let mut v = vec![T::default(); count];
    let bytes = std::mem::size_of_val(&v[..]);
    // SAFETY: `T` is a primitive integer or float (the only `Native` types): no padding, and every
    // byte pattern is a valid `T`; the view covers exactly the `bytes` initialised bytes of `v` and
    // is dropped before `v` is used again.
    let raw = unsafe { std::slice::from_raw_parts_mut(v.as_mut_ptr().cast::<u8>(), bytes) };
    let mut filled = 0;
    while filled < bytes {
        match r.read(&mut raw[filled..]) {
            Ok(0) => return Err(RawError::Short { got: filled as u64 }),
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(RawError::Io(e)),
        }
    }
    if little != cfg!(target_endian = "little") {
        for x in v.iter_mut() {
            *x = x.swapped();
        }
    }
    Ok(v)
}

fn build<T: Copy + Default>(
    shape: &[usize],
    fortran: bool,
    v: Vec<T>,
) -> Result<ArrayD<T>, RawError> {
    if element_count(shape) != Some(v.len()) {
        return Err(RawError::Shape);
    }
    let v = if fortran && shape.len() > 1 {
        // Fortran order for `shape` is C order for the reversed shape.
        let reversed: Vec<usize> = shape.iter().rev().copied().collect();
        reverse_axes(&v, &reversed)
    } else {
        v
    };
    ArrayD::from_shape_vec(IxDyn(shape), v).map_err(|_| RawError::Shape)
}

/// Number of elements of `shape`, or `None` on overflow.
pub(crate) fn element_count(shape: &[usize]) -> Option<usize> {
    shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d))
}

/// Reads an array of `shape` stored as `dtype` in the given byte order and memory order
/// (`fortran`: first index fastest). The result is always in standard (C) layout.
pub(crate) fn read_array<R: Read>(
    r: &mut R,
    dtype: Dtype,
    little: bool,
    shape: &[usize],
    fortran: bool,
    cap: usize,
) -> Result<ArrayData, RawError> {
    let count = element_count(shape).ok_or(RawError::Shape)?;
    macro_rules! num {
        ($variant:ident, $t:ty, $n:literal) => {{
            // A size checked against the file's (`count` within `cap`) is allocated at once and
            // read in place; otherwise in chunks, the vector growing only as data arrives.
            let v = if count <= cap {
                read_native::<$t, R>(r, count, little)?
            } else {
                read_vec::<$t, $n, R>(r, count, cap, |b| {
                    if little {
                        <$t>::from_le_bytes(b)
                    } else {
                        <$t>::from_be_bytes(b)
                    }
                })?
            };
            ArrayData::$variant(build(shape, fortran, v)?)
        }};
    }
    Ok(match dtype {
        Dtype::Bool => {
            let v = read_vec::<bool, 1, R>(r, count, cap, |b| b[0] != 0)?;
            ArrayData::Bool(build(shape, fortran, v)?)
        }
        Dtype::U8 => num!(U8, u8, 1),
        Dtype::U16 => num!(U16, u16, 2),
        Dtype::U32 => num!(U32, u32, 4),
        Dtype::U64 => num!(U64, u64, 8),
        Dtype::I8 => num!(I8, i8, 1),
        Dtype::I16 => num!(I16, i16, 2),
        Dtype::I32 => num!(I32, i32, 4),
        Dtype::I64 => num!(I64, i64, 8),
        Dtype::F16 => {
            let v = read_vec::<f32, 2, R>(r, count, cap, |b| {
                let bits = if little {
                    u16::from_le_bytes(b)
                } else {
                    u16::from_be_bytes(b)
                };
                half::f16::from_bits(bits).to_f32()
            })?;
            ArrayData::F32(build(shape, fortran, v)?)
        }
        Dtype::F32 => num!(F32, f32, 4),
        Dtype::F64 => num!(F64, f64, 8),
    })
}

/// Formats a shape as `[a, b, c]`.
pub(crate) fn fmt_shape(shape: &[usize]) -> String {
    format!("{shape:?}")
}

/// Shows the first bytes of `b` in a readable, escaped form for error messages.
pub(crate) fn show_bytes(b: &[u8]) -> String {
    let head = &b[..b.len().min(16)];
    let mut s = String::from("\"");
    for &c in head {
        s.extend(std::ascii::escape_default(c).map(char::from));
    }
    s.push('"');
    if b.len() > head.len() {
        s.push_str("...");
    }
    s
}

/// Writes into `dst` the planes `planes` (indices along the last axis) of `src` with its axes
/// reversed: `src` holds an array of `shape` in C order, and `dst` receives, in C order, the
/// part `planes` of the array of shape `shape` reversed (which is `src` in Fortran order).
///
/// Works on 32 × 32 tiles of the first and last axes, so both sides are read and written in
/// cache-friendly runs even for large volumes.
fn reverse_axes_into<T: Copy>(
    src: &[T],
    shape: &[usize],
    planes: std::ops::Range<usize>,
    dst: &mut [T],
) {
    const B: usize = 32;
    let nd = shape.len();
    let (n0, nl) = (shape[0], shape[nd - 1]);
    let mid = &shape[1..nd - 1];
    let m: usize = mid.iter().product();
    // Fortran strides of the middle axes.
    let mut fstride = vec![1usize; mid.len()];
    for k in 1..mid.len() {
        fstride[k] = fstride[k - 1] * mid[k - 1];
    }
    let mut idx = vec![0usize; mid.len()];
    let plane = m * n0;
    for mc in 0..m {
        let mf: usize = idx.iter().zip(&fstride).map(|(i, s)| i * s).sum();
        for i0b in (0..n0).step_by(B) {
            for ilb in (planes.start..planes.end).step_by(B) {
                for il in ilb..(ilb + B).min(planes.end) {
                    let d = (il - planes.start) * plane + mf * n0;
                    for i0 in i0b..(i0b + B).min(n0) {
                        dst[d + i0] = src[(i0 * m + mc) * nl + il];
                    }
                }
            }
        }
        // Next middle index in C order (last middle axis fastest).
        for k in (0..mid.len()).rev() {
            idx[k] += 1;
            if idx[k] < mid[k] {
                break;
            }
            idx[k] = 0;
        }
    }
}

/// `src` (an array of `shape` in C order) with its axes reversed, in C order.
pub(crate) fn reverse_axes<T: Copy + Default>(src: &[T], shape: &[usize]) -> Vec<T> {
    if shape.len() < 2 || src.is_empty() {
        return src.to_vec();
    }
    let mut dst = vec![T::default(); src.len()];
    reverse_axes_into(src, shape, 0..shape[shape.len() - 1], &mut dst);
    dst
}

/// Calls `f` with successive pieces of `src` (an array of `shape` in C order) in Fortran order
/// (first index fastest), using a buffer of a few planes rather than a full copy.
pub(crate) fn for_each_fortran_chunk<T: Copy + Default, E>(
    src: &[T],
    shape: &[usize],
    mut f: impl FnMut(&[T]) -> Result<(), E>,
) -> Result<(), E> {
    if shape.len() < 2 || src.is_empty() {
        return f(src);
    }
    let nl = shape[shape.len() - 1];
    let plane = src.len() / nl;
    let per = (1 << 20) / plane.max(1);
    let per = per.clamp(1, 32);
    let mut buf = vec![T::default(); plane * per.min(nl)];
    let mut start = 0;
    while start < nl {
        let end = (start + per).min(nl);
        let piece = &mut buf[..(end - start) * plane];
        reverse_axes_into(src, shape, start..end, piece);
        f(piece)?;
        start = end;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::ArrayD;

    #[test]
    fn reversing_axes_matches_ndarray() {
        for shape in [
            vec![1, 1],
            vec![3, 5],
            vec![40, 70],
            vec![33, 2, 65],
            vec![2, 3, 4, 5],
            vec![35, 1, 3, 1, 34],
        ] {
            let n: usize = shape.iter().product();
            let a = ArrayD::from_shape_vec(IxDyn(&shape), (0..n as u32).collect()).unwrap();
            let want: Vec<u32> = a.t().iter().copied().collect();
            assert_eq!(
                reverse_axes(a.as_slice().unwrap(), &shape),
                want,
                "{shape:?}"
            );
            let mut got = Vec::new();
            for_each_fortran_chunk(a.as_slice().unwrap(), &shape, |c| {
                got.extend_from_slice(c);
                Ok::<(), ()>(())
            })
            .unwrap();
            assert_eq!(got, want, "{shape:?} in chunks");
        }
    }
}
