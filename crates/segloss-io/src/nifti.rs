//! Single-file NIfTI-1 and NIfTI-2 (`.nii`, `.nii.gz`) reading and `f32` writing.

use std::io::{self, Read, Write};
use std::path::Path;

use ndarray::ArrayD;

use crate::error::{corrupt, read_err, unsupported, IoError};
use crate::npy::read_up_to;
use crate::raw::{element_count, fmt_shape, read_array, show_bytes, Dtype, RawError};
use crate::ArrayData;

const FORMAT: &str = "NIfTI";
const N1_SIZE: usize = 348;
const N2_SIZE: usize = 540;
/// gzip cannot expand data by more than about 1032:1.
const GZ_RATIO: u64 = 1100;

/// A NIfTI header, NIfTI-1 and NIfTI-2 fields in one form.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Header {
    pub version: u8,
    pub dim_info: u8,
    pub dim: [i64; 8],
    pub intent_p: [f64; 3],
    pub intent_code: i32,
    pub datatype: i16,
    pub bitpix: i16,
    pub slice_start: i64,
    pub pixdim: [f64; 8],
    pub vox_offset: f64,
    pub scl_slope: f64,
    pub scl_inter: f64,
    pub slice_end: i64,
    pub slice_code: i32,
    pub xyzt_units: i32,
    pub cal_max: f64,
    pub cal_min: f64,
    pub slice_duration: f64,
    pub toffset: f64,
    pub descrip: [u8; 80],
    pub aux_file: [u8; 24],
    pub qform_code: i32,
    pub sform_code: i32,
    pub quatern: [f64; 3],
    pub qoffset: [f64; 3],
    pub srow: [[f64; 4]; 3],
    pub intent_name: [u8; 16],
}

impl Default for Header {
    fn default() -> Self {
        Header {
            version: 1,
            dim_info: 0,
            dim: [0, 1, 1, 1, 1, 1, 1, 1],
            intent_p: [0.0; 3],
            intent_code: 0,
            datatype: 16,
            bitpix: 32,
            slice_start: 0,
            pixdim: [1.0; 8],
            vox_offset: 352.0,
            scl_slope: 1.0,
            scl_inter: 0.0,
            slice_end: 0,
            slice_code: 0,
            xyzt_units: 0,
            cal_max: 0.0,
            cal_min: 0.0,
            slice_duration: 0.0,
            toffset: 0.0,
            descrip: [0; 80],
            aux_file: [0; 24],
            qform_code: 0,
            sform_code: 0,
            quatern: [0.0; 3],
            qoffset: [0.0; 3],
            srow: [[0.0; 4]; 3],
            intent_name: [0; 16],
        }
    }
}

/// Reads fields of a header in a given byte order.
struct Fields<'a> {
    b: &'a [u8],
    le: bool,
}

macro_rules! getter {
    ($name:ident, $t:ty, $n:literal) => {
        fn $name(&self, off: usize) -> $t {
            let mut a = [0u8; $n];
            a.copy_from_slice(&self.b[off..off + $n]);
            if self.le {
                <$t>::from_le_bytes(a)
            } else {
                <$t>::from_be_bytes(a)
            }
        }
    };
}

impl Fields<'_> {
    getter!(i16, i16, 2);
    getter!(i32, i32, 4);
    getter!(i64, i64, 8);
    getter!(f32, f32, 4);
    getter!(f64, f64, 8);

    fn bytes<const N: usize>(&self, off: usize) -> [u8; N] {
        let mut a = [0u8; N];
        a.copy_from_slice(&self.b[off..off + N]);
        a
    }
}

fn parse_n1(f: &Fields) -> Header {
    let d = |o| f64::from(f.f32(o));
    let mut h = Header {
        version: 1,
        dim_info: f.b[39],
        intent_p: [d(56), d(60), d(64)],
        intent_code: f.i16(68).into(),
        datatype: f.i16(70),
        bitpix: f.i16(72),
        slice_start: f.i16(74).into(),
        vox_offset: d(108),
        scl_slope: d(112),
        scl_inter: d(116),
        slice_end: f.i16(120).into(),
        slice_code: f.b[122].into(),
        xyzt_units: f.b[123].into(),
        cal_max: d(124),
        cal_min: d(128),
        slice_duration: d(132),
        toffset: d(136),
        descrip: f.bytes(148),
        aux_file: f.bytes(228),
        qform_code: f.i16(252).into(),
        sform_code: f.i16(254).into(),
        quatern: [d(256), d(260), d(264)],
        qoffset: [d(268), d(272), d(276)],
        intent_name: f.bytes(328),
        ..Header::default()
    };
    for i in 0..8 {
        h.dim[i] = f.i16(40 + 2 * i).into();
        h.pixdim[i] = d(76 + 4 * i);
    }
    for r in 0..3 {
        for c in 0..4 {
            h.srow[r][c] = d(280 + 16 * r + 4 * c);
        }
    }
    h
}

fn parse_n2(f: &Fields) -> Header {
    let mut h = Header {
        version: 2,
        datatype: f.i16(12),
        bitpix: f.i16(14),
        intent_p: [f.f64(80), f.f64(88), f.f64(96)],
        vox_offset: f.i64(168) as f64,
        scl_slope: f.f64(176),
        scl_inter: f.f64(184),
        cal_max: f.f64(192),
        cal_min: f.f64(200),
        slice_duration: f.f64(208),
        toffset: f.f64(216),
        slice_start: f.i64(224),
        slice_end: f.i64(232),
        descrip: f.bytes(240),
        aux_file: f.bytes(320),
        qform_code: f.i32(344),
        sform_code: f.i32(348),
        quatern: [f.f64(352), f.f64(360), f.f64(368)],
        qoffset: [f.f64(376), f.f64(384), f.f64(392)],
        slice_code: f.i32(496),
        xyzt_units: f.i32(500),
        intent_code: f.i32(504),
        intent_name: f.bytes(508),
        dim_info: f.b[524],
        ..Header::default()
    };
    for i in 0..8 {
        h.dim[i] = f.i64(16 + 8 * i);
        h.pixdim[i] = f.f64(104 + 8 * i);
    }
    for r in 0..3 {
        for c in 0..4 {
            h.srow[r][c] = f.f64(400 + 32 * r + 8 * c);
        }
    }
    h
}

/// Little-endian header bytes (NIfTI-1 when every size fits in 16 bits, else NIfTI-2),
/// followed by the 4-byte extension flag (no extensions).
fn serialize(h: &Header) -> Vec<u8> {
    fn put(b: &mut [u8], off: usize, v: &[u8]) {
        b[off..off + v.len()].copy_from_slice(v);
    }
    if h.version == 1 {
        let mut b = vec![0u8; N1_SIZE + 4];
        put(&mut b, 0, &(N1_SIZE as i32).to_le_bytes());
        b[38] = b'r';
        b[39] = h.dim_info;
        let f = |x: f64| (x as f32).to_le_bytes();
        for i in 0..8 {
            put(&mut b, 40 + 2 * i, &(h.dim[i] as i16).to_le_bytes());
            put(&mut b, 76 + 4 * i, &f(h.pixdim[i]));
        }
        for (i, p) in h.intent_p.iter().enumerate() {
            put(&mut b, 56 + 4 * i, &f(*p));
        }
        put(&mut b, 68, &(h.intent_code as i16).to_le_bytes());
        put(&mut b, 70, &h.datatype.to_le_bytes());
        put(&mut b, 72, &h.bitpix.to_le_bytes());
        put(&mut b, 74, &(h.slice_start as i16).to_le_bytes());
        put(&mut b, 108, &f(h.vox_offset));
        put(&mut b, 112, &f(h.scl_slope));
        put(&mut b, 116, &f(h.scl_inter));
        put(&mut b, 120, &(h.slice_end as i16).to_le_bytes());
        b[122] = h.slice_code as u8;
        b[123] = h.xyzt_units as u8;
        put(&mut b, 124, &f(h.cal_max));
        put(&mut b, 128, &f(h.cal_min));
        put(&mut b, 132, &f(h.slice_duration));
        put(&mut b, 136, &f(h.toffset));
        put(&mut b, 148, &h.descrip);
        put(&mut b, 228, &h.aux_file);
        put(&mut b, 252, &(h.qform_code as i16).to_le_bytes());
        put(&mut b, 254, &(h.sform_code as i16).to_le_bytes());
        for i in 0..3 {
            put(&mut b, 256 + 4 * i, &f(h.quatern[i]));
            put(&mut b, 268 + 4 * i, &f(h.qoffset[i]));
        }
        for r in 0..3 {
            for c in 0..4 {
                put(&mut b, 280 + 16 * r + 4 * c, &f(h.srow[r][c]));
            }
        }
        put(&mut b, 328, &h.intent_name);
        put(&mut b, 344, b"n+1\0");
        b
    } else {
        let mut b = vec![0u8; N2_SIZE + 4];
        put(&mut b, 0, &(N2_SIZE as i32).to_le_bytes());
        put(&mut b, 4, b"n+2\0\r\n\x1a\n");
        put(&mut b, 12, &h.datatype.to_le_bytes());
        put(&mut b, 14, &h.bitpix.to_le_bytes());
        for i in 0..8 {
            put(&mut b, 16 + 8 * i, &h.dim[i].to_le_bytes());
            put(&mut b, 104 + 8 * i, &h.pixdim[i].to_le_bytes());
        }
        for i in 0..3 {
            put(&mut b, 80 + 8 * i, &h.intent_p[i].to_le_bytes());
        }
        put(&mut b, 168, &(h.vox_offset as i64).to_le_bytes());
        put(&mut b, 176, &h.scl_slope.to_le_bytes());
        put(&mut b, 184, &h.scl_inter.to_le_bytes());
        put(&mut b, 192, &h.cal_max.to_le_bytes());
        put(&mut b, 200, &h.cal_min.to_le_bytes());
        put(&mut b, 208, &h.slice_duration.to_le_bytes());
        put(&mut b, 216, &h.toffset.to_le_bytes());
        put(&mut b, 224, &h.slice_start.to_le_bytes());
        put(&mut b, 232, &h.slice_end.to_le_bytes());
        put(&mut b, 240, &h.descrip);
        put(&mut b, 320, &h.aux_file);
        put(&mut b, 344, &h.qform_code.to_le_bytes());
        put(&mut b, 348, &h.sform_code.to_le_bytes());
        for i in 0..3 {
            put(&mut b, 352 + 8 * i, &h.quatern[i].to_le_bytes());
            put(&mut b, 376 + 8 * i, &h.qoffset[i].to_le_bytes());
        }
        for r in 0..3 {
            for c in 0..4 {
                put(&mut b, 400 + 32 * r + 8 * c, &h.srow[r][c].to_le_bytes());
            }
        }
        put(&mut b, 496, &h.slice_code.to_le_bytes());
        put(&mut b, 500, &h.xyzt_units.to_le_bytes());
        put(&mut b, 504, &h.intent_code.to_le_bytes());
        put(&mut b, 508, &h.intent_name);
        b[524] = h.dim_info;
        b
    }
}

fn dtype_of(code: i16) -> Result<Dtype, String> {
    Ok(match code {
        2 => Dtype::U8,
        4 => Dtype::I16,
        8 => Dtype::I32,
        16 => Dtype::F32,
        64 => Dtype::F64,
        256 => Dtype::I8,
        512 => Dtype::U16,
        768 => Dtype::U32,
        1024 => Dtype::I64,
        1280 => Dtype::U64,
        _ => {
            let what = match code {
                0 => "unknown (0)".to_string(),
                1 => "1-bit binary (1)".into(),
                32 => "complex64 (32)".into(),
                128 => "RGB24 (128)".into(),
                1536 => "float128 (1536)".into(),
                1792 => "complex128 (1792)".into(),
                2048 => "complex256 (2048)".into(),
                2304 => "RGBA32 (2304)".into(),
                c => format!("code {c}"),
            };
            return Err(format!(
                "unsupported NIfTI datatype {what}; expected an integer type (2, 4, 8, 256, \
                 512, 768, 1024, 1280) or a float type (16, 64)"
            ));
        }
    })
}

/// A decoded NIfTI file.
pub(crate) struct Decoded {
    pub data: ArrayData,
    pub spacing: Option<Vec<f64>>,
    pub header: Header,
}

/// Where the (possibly compressed) bytes come from and what is known of their size.
pub(crate) struct Source<R> {
    pub reader: R,
    /// `true` when `reader` yields gzip-compressed bytes.
    pub gz: bool,
    /// Size of the stream as stored (compressed size for gzip), when known.
    pub stored_len: Option<u64>,
    /// The gzip trailer's ISIZE field (uncompressed size mod 2^32), when known.
    pub isize_hint: Option<u32>,
}

pub(crate) fn decode<R: Read>(src: Source<R>, path: &Path) -> Result<Decoded, IoError> {
    if src.gz {
        let mut r = flate2::read::MultiGzDecoder::new(src.reader);
        decode_plain(&mut r, true, src.stored_len, src.isize_hint, path)
    } else {
        let mut r = src.reader;
        decode_plain(&mut r, false, src.stored_len, None, path)
    }
}

fn decode_plain<R: Read>(
    r: &mut R,
    gz: bool,
    stored_len: Option<u64>,
    isize_hint: Option<u32>,
    path: &Path,
) -> Result<Decoded, IoError> {
    let io_err = |e: io::Error| {
        if gz {
            corrupt(path, FORMAT, format!("bad gzip data: {e}"))
        } else {
            read_err(path, e)
        }
    };
    let mut hb = vec![0u8; N2_SIZE];
    let got = read_up_to(r, &mut hb[..4]).map_err(io_err)?;
    if got < 4 {
        return Err(corrupt(
            path,
            FORMAT,
            format!("file is {got} bytes long, too short for a NIfTI header"),
        ));
    }
    let size_le = i32::from_le_bytes([hb[0], hb[1], hb[2], hb[3]]);
    let size_be = i32::from_be_bytes([hb[0], hb[1], hb[2], hb[3]]);
    let (hdr_size, le) = match (size_le, size_be) {
        (348, _) => (N1_SIZE, true),
        (_, 348) => (N1_SIZE, false),
        (540, _) => (N2_SIZE, true),
        (_, 540) => (N2_SIZE, false),
        _ => {
            return Err(corrupt(
                path,
                FORMAT,
                format!(
                    "header starts with {}; expected the header size 348 (NIfTI-1) or 540 \
                     (NIfTI-2)",
                    show_bytes(&hb[..4])
                ),
            ))
        }
    };
    let got = read_up_to(r, &mut hb[4..hdr_size]).map_err(io_err)?;
    if got < hdr_size - 4 {
        return Err(corrupt(
            path,
            FORMAT,
            format!(
                "truncated header: expected {hdr_size} bytes, found {}",
                got + 4
            ),
        ));
    }
    let f = Fields {
        b: &hb[..hdr_size],
        le,
    };
    let header = if hdr_size == N1_SIZE {
        match &hb[344..348] {
            b"n+1\0" => {}
            b"ni1\0" => {
                return Err(unsupported(
                    path,
                    "two-file NIfTI (.hdr/.img) is not supported; expected a single .nii or \
                     .nii.gz file",
                ))
            }
            m => {
                return Err(corrupt(
                    path,
                    FORMAT,
                    format!(
                        "magic {}; expected \"n+1\\0\" (Analyze 7.5 files are not supported)",
                        show_bytes(m)
                    ),
                ))
            }
        }
        parse_n1(&f)
    } else {
        match &hb[4..12] {
            b"n+2\0\r\n\x1a\n" => {}
            b"ni2\0\r\n\x1a\n" => {
                return Err(unsupported(
                    path,
                    "two-file NIfTI (.hdr/.img) is not supported; expected a single .nii or \
                     .nii.gz file",
                ))
            }
            m => {
                return Err(corrupt(
                    path,
                    FORMAT,
                    format!("magic {}; expected \"n+2\\0\\r\\n\\x1a\\n\"", show_bytes(m)),
                ))
            }
        }
        parse_n2(&f)
    };

    // Shape: dim[1..=dim[0]], x fastest; trailing singleton dimensions past the third dropped.
    let ndim = header.dim[0];
    if !(1..=7).contains(&ndim) {
        return Err(corrupt(
            path,
            FORMAT,
            format!("dim[0] = {ndim}; expected a number of dimensions from 1 to 7"),
        ));
    }
    let ndim = ndim as usize;
    let mut shape = Vec::with_capacity(ndim);
    for i in 1..=ndim {
        let d = header.dim[i];
        let d = usize::try_from(d).map_err(|_| {
            corrupt(
                path,
                FORMAT,
                format!("dim[{i}] = {d}; expected a non-negative size"),
            )
        })?;
        shape.push(d);
    }
    let stored_shape = shape.clone();
    while shape.len() > 3 && shape.last() == Some(&1) {
        shape.pop();
    }
    if shape.len() > 3 {
        return Err(unsupported(
            path,
            format!(
                "expected a 2D or 3D volume, found a {}D volume of shape {}",
                shape.len(),
                fmt_shape(&stored_shape)
            ),
        ));
    }
    let dtype = dtype_of(header.datatype).map_err(|d| unsupported(path, d))?;

    // Skip the extensions up to the voxel data.
    let vox = header.vox_offset;
    let vox_offset: u64 = if vox == 0.0 {
        hdr_size as u64 + 4
    } else if vox.is_finite() && vox.fract() == 0.0 && vox >= hdr_size as f64 && vox < 1e12 {
        vox as u64
    } else {
        return Err(corrupt(
            path,
            FORMAT,
            format!("vox_offset = {vox}; expected a whole number of bytes, at least {hdr_size}"),
        ));
    };
    let skip = vox_offset - hdr_size as u64;
    let skipped = io::copy(&mut r.by_ref().take(skip), &mut io::sink()).map_err(io_err)?;
    if skipped < skip {
        return Err(corrupt(
            path,
            FORMAT,
            format!(
                "truncated: the file ends at byte {} before the voxel data at vox_offset {vox_offset}",
                hdr_size as u64 + skipped
            ),
        ));
    }

    let count = element_count(&shape).ok_or_else(|| {
        corrupt(
            path,
            FORMAT,
            format!("shape {} has too many voxels", fmt_shape(&shape)),
        )
    })?;
    let nbytes = (count as u64).saturating_mul(dtype.size() as u64);
    let total = vox_offset.saturating_add(nbytes);
    let truncated = |got: u64| {
        corrupt(
            path,
            FORMAT,
            format!(
                "truncated data: shape {} of {} needs {nbytes} bytes of voxel data, found {got}",
                fmt_shape(&shape),
                dtype.name()
            ),
        )
    };
    // How many elements to reserve up front: all of them when the file is known to hold them.
    let cap = match (gz, stored_len) {
        (false, Some(len)) => {
            if len < total {
                return Err(truncated(len.saturating_sub(vox_offset)));
            }
            count
        }
        (true, Some(len))
            if isize_hint == Some(total as u32)
                && total <= len.saturating_mul(GZ_RATIO).saturating_add(1 << 20) =>
        {
            count
        }
        _ => count.min(1 << 20),
    };
    let data = read_array(r, dtype, le, &shape, true, cap).map_err(|e| match e {
        RawError::Short { got } => truncated(got),
        RawError::Io(e) => io_err(e),
        RawError::Shape => corrupt(
            path,
            FORMAT,
            format!("shape {} has too many voxels", fmt_shape(&shape)),
        ),
    })?;
    let data = apply_scaling(data, header.scl_slope, header.scl_inter);

    let spacing: Vec<f64> = (1..=shape.len()).map(|i| header.pixdim[i].abs()).collect();
    let spacing = spacing
        .iter()
        .all(|s| s.is_finite() && *s > 0.0)
        .then_some(spacing);
    Ok(Decoded {
        data,
        spacing,
        header,
    })
}

/// Applies `scl_slope`/`scl_inter` as nibabel's `get_fdata` does: only when the slope is
/// finite and non-zero and the pair is not the identity (1, 0). Scaled data of up to 16-bit
/// integers or `f32` becomes `f32`; wider types become `f64`.
fn apply_scaling(data: ArrayData, slope: f64, inter: f64) -> ArrayData {
    let inter = if inter.is_finite() { inter } else { 0.0 };
    if !slope.is_finite() || slope == 0.0 || (slope == 1.0 && inter == 0.0) {
        return data;
    }
    let narrow = matches!(
        data,
        ArrayData::U8(_)
            | ArrayData::I8(_)
            | ArrayData::U16(_)
            | ArrayData::I16(_)
            | ArrayData::F32(_)
    );
    if narrow {
        let mut a = data.to_f32();
        let (s, i) = (slope as f32, inter as f32);
        a.mapv_inplace(|x| x * s + i);
        ArrayData::F32(a)
    } else {
        let mut a = data.to_f64();
        a.mapv_inplace(|x| x * slope + inter);
        ArrayData::F64(a)
    }
}

/// The header for writing `shape` as `T` (`f32` or `f64`), copying the geometry of `like` when
/// given, else taking the voxel size from `spacing`.
pub(crate) fn header_for<T: crate::MapFloat>(
    shape: &[usize],
    like: Option<&Header>,
    spacing: Option<&[f64]>,
) -> Result<Header, String> {
    if shape.is_empty() || shape.len() > 7 {
        return Err(format!(
            "NIfTI holds 1 to 7 dimensions; found shape {}",
            fmt_shape(shape)
        ));
    }
    let big = shape.iter().any(|&d| d > i16::MAX as usize);
    if shape.iter().any(|&d| d > i64::MAX as usize) {
        return Err(format!("shape {} is too large", fmt_shape(shape)));
    }
    let mut h = Header::default();
    if let Some(l) = like {
        h.dim_info = l.dim_info;
        h.pixdim = l.pixdim;
        h.slice_start = l.slice_start;
        h.slice_end = l.slice_end;
        h.slice_code = l.slice_code;
        h.xyzt_units = l.xyzt_units;
        h.slice_duration = l.slice_duration;
        h.toffset = l.toffset;
        h.descrip = l.descrip;
        h.qform_code = l.qform_code;
        h.sform_code = l.sform_code;
        h.quatern = l.quatern;
        h.qoffset = l.qoffset;
        h.srow = l.srow;
    } else {
        h.descrip[..7].copy_from_slice(b"segloss");
        if let Some(s) = spacing {
            for (i, &v) in s.iter().take(7).enumerate() {
                h.pixdim[i + 1] = v;
            }
        }
    }
    if h.pixdim[0] != 1.0 && h.pixdim[0] != -1.0 {
        h.pixdim[0] = 1.0;
    }
    h.dim = [1; 8];
    h.dim[0] = shape.len() as i64;
    for (i, &d) in shape.iter().enumerate() {
        h.dim[i + 1] = d as i64;
    }
    for p in &mut h.pixdim[shape.len() + 1..] {
        if !(p.is_finite() && *p > 0.0) {
            *p = 1.0;
        }
    }
    if big {
        h.version = 2;
        h.vox_offset = (N2_SIZE + 4) as f64;
    } else {
        h.version = 1;
        h.vox_offset = (N1_SIZE + 4) as f64;
    }
    h.datatype = T::NIFTI_DATATYPE;
    h.bitpix = (T::SIZE * 8) as i16;
    h.scl_slope = 1.0;
    h.scl_inter = 0.0;
    Ok(h)
}

/// Writes a NIfTI stream (uncompressed; the caller wraps it in gzip for `.nii.gz`).
pub(crate) fn encode<W: Write, T: crate::MapFloat>(
    w: &mut W,
    h: &Header,
    data: &ArrayD<T>,
) -> io::Result<()> {
    w.write_all(&serialize(h))?;
    // Voxel data, x (the first index) fastest.
    let data = data.as_standard_layout();
    let flat = data.as_slice().unwrap_or_default();
    let mut bytes = Vec::new();
    crate::raw::for_each_fortran_chunk(flat, data.shape(), |chunk| {
        bytes.clear();
        for &x in chunk {
            x.put_le(&mut bytes);
        }
        w.write_all(&bytes)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn n1_and_n2_headers_round_trip() {
        for shape in [vec![3usize, 4, 5], vec![40000, 2]] {
            let mut h = header_for::<f32>(&shape, None, Some(&[0.5, 2.0, 3.0])).unwrap();
            h.qform_code = 1;
            h.sform_code = 2;
            h.quatern = [0.0, 0.5, 0.25];
            h.qoffset = [-10.0, 20.0, 30.5];
            h.srow = [
                [1.0, 0.0, 0.0, -10.0],
                [0.0, 2.0, 0.0, 20.0],
                [0.0, 0.0, 3.0, 30.5],
            ];
            h.xyzt_units = 10;
            let b = serialize(&h);
            let f = Fields { b: &b, le: true };
            let back = if h.version == 1 {
                parse_n1(&f)
            } else {
                parse_n2(&f)
            };
            assert_eq!(back, h, "shape {shape:?}");
        }
    }
}
