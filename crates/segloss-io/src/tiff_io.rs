//! Greyscale TIFF reading (single- and multi-page) and `f32` TIFF writing.

use std::io::{Cursor, Seek, Write};
use std::path::Path;

use ndarray::{ArrayD, Axis, IxDyn};
use tiff::decoder::{Decoder, DecodingResult, Limits};
use tiff::encoder::TiffEncoder;
use tiff::ColorType;

use crate::error::{corrupt, unsupported, IoError};
use crate::raw::show_bytes;
use crate::ArrayData;

const FORMAT: &str = "TIFF";
/// No TIFF compression we decode expands data by more than this factor (LZW's worst case is
/// below 3000:1), so a file whose pages add up to more than this times its size is refused
/// before the pages are allocated (this also stops pages that share one strip).
const MAX_RATIO: usize = 4096;

/// Page data gathered while decoding, all pages of one element type.
enum Pages {
    U8(Vec<u8>),
    U16(Vec<u16>),
    U32(Vec<u32>),
    U64(Vec<u64>),
    I8(Vec<i8>),
    I16(Vec<i16>),
    I32(Vec<i32>),
    I64(Vec<i64>),
    F32(Vec<f32>),
    F64(Vec<f64>),
}

impl Pages {
    fn name(&self) -> &'static str {
        match self {
            Pages::U8(_) => "uint8",
            Pages::U16(_) => "uint16",
            Pages::U32(_) => "uint32",
            Pages::U64(_) => "uint64",
            Pages::I8(_) => "int8",
            Pages::I16(_) => "int16",
            Pages::I32(_) => "int32",
            Pages::I64(_) => "int64",
            Pages::F32(_) => "float32",
            Pages::F64(_) => "float64",
        }
    }

    fn from_result(r: DecodingResult) -> Pages {
        match r {
            DecodingResult::U8(v) => Pages::U8(v),
            DecodingResult::U16(v) => Pages::U16(v),
            DecodingResult::U32(v) => Pages::U32(v),
            DecodingResult::U64(v) => Pages::U64(v),
            DecodingResult::I8(v) => Pages::I8(v),
            DecodingResult::I16(v) => Pages::I16(v),
            DecodingResult::I32(v) => Pages::I32(v),
            DecodingResult::I64(v) => Pages::I64(v),
            DecodingResult::F16(v) => Pages::F32(v.into_iter().map(|x| x.to_f32()).collect()),
            DecodingResult::F32(v) => Pages::F32(v),
            DecodingResult::F64(v) => Pages::F64(v),
        }
    }

    fn len(&self) -> usize {
        match self {
            Pages::U8(v) => v.len(),
            Pages::U16(v) => v.len(),
            Pages::U32(v) => v.len(),
            Pages::U64(v) => v.len(),
            Pages::I8(v) => v.len(),
            Pages::I16(v) => v.len(),
            Pages::I32(v) => v.len(),
            Pages::I64(v) => v.len(),
            Pages::F32(v) => v.len(),
            Pages::F64(v) => v.len(),
        }
    }

    /// Appends `other`; returns it back if its element type differs.
    fn append(&mut self, other: Pages) -> Result<(), Pages> {
        match (self, other) {
            (Pages::U8(a), Pages::U8(b)) => a.extend(b),
            (Pages::U16(a), Pages::U16(b)) => a.extend(b),
            (Pages::U32(a), Pages::U32(b)) => a.extend(b),
            (Pages::U64(a), Pages::U64(b)) => a.extend(b),
            (Pages::I8(a), Pages::I8(b)) => a.extend(b),
            (Pages::I16(a), Pages::I16(b)) => a.extend(b),
            (Pages::I32(a), Pages::I32(b)) => a.extend(b),
            (Pages::I64(a), Pages::I64(b)) => a.extend(b),
            (Pages::F32(a), Pages::F32(b)) => a.extend(b),
            (Pages::F64(a), Pages::F64(b)) => a.extend(b),
            (_, b) => return Err(b),
        }
        Ok(())
    }

    fn into_array(self, shape: &[usize]) -> Option<ArrayData> {
        let s = IxDyn(shape);
        Some(match self {
            Pages::U8(v) => ArrayData::U8(ArrayD::from_shape_vec(s, v).ok()?),
            Pages::U16(v) => ArrayData::U16(ArrayD::from_shape_vec(s, v).ok()?),
            Pages::U32(v) => ArrayData::U32(ArrayD::from_shape_vec(s, v).ok()?),
            Pages::U64(v) => ArrayData::U64(ArrayD::from_shape_vec(s, v).ok()?),
            Pages::I8(v) => ArrayData::I8(ArrayD::from_shape_vec(s, v).ok()?),
            Pages::I16(v) => ArrayData::I16(ArrayD::from_shape_vec(s, v).ok()?),
            Pages::I32(v) => ArrayData::I32(ArrayD::from_shape_vec(s, v).ok()?),
            Pages::I64(v) => ArrayData::I64(ArrayD::from_shape_vec(s, v).ok()?),
            Pages::F32(v) => ArrayData::F32(ArrayD::from_shape_vec(s, v).ok()?),
            Pages::F64(v) => ArrayData::F64(ArrayD::from_shape_vec(s, v).ok()?),
        })
    }
}

fn colour_name(c: ColorType) -> String {
    match c {
        ColorType::Gray(b) => format!("{b}-bit grey"),
        ColorType::RGB(_) => "RGB".into(),
        ColorType::Palette(_) => "a palette (indexed-colour) image".into(),
        ColorType::GrayA(_) => "grey+alpha".into(),
        ColorType::RGBA(_) => "RGBA".into(),
        ColorType::CMYK(_) => "CMYK".into(),
        ColorType::CMYKA(_) => "CMYK+alpha".into(),
        ColorType::YCbCr(_) => "YCbCr".into(),
        ColorType::Lab(_) => "CIE Lab".into(),
        ColorType::Multiband { num_samples, .. } => format!("{num_samples} samples per pixel"),
        _ => "an unknown colour type".into(),
    }
}

pub(crate) fn decode(bytes: &[u8], path: &Path) -> Result<ArrayData, IoError> {
    if !(bytes.starts_with(b"II") || bytes.starts_with(b"MM")) {
        return Err(corrupt(
            path,
            FORMAT,
            format!(
                "bad magic {}; expected \"II\" or \"MM\"",
                show_bytes(&bytes[..bytes.len().min(4)])
            ),
        ));
    }
    let err = |e: tiff::TiffError| match e {
        tiff::TiffError::UnsupportedError(u) => unsupported(path, format!("unsupported TIFF: {u}")),
        e => corrupt(path, FORMAT, e.to_string()),
    };
    let budget = bytes
        .len()
        .saturating_mul(MAX_RATIO)
        .saturating_add(1 << 20);
    let mut dec = Decoder::new(Cursor::new(bytes))
        .map_err(err)?
        .with_limits(Limits::default());
    let mut used = 0usize;
    let mut pages: Option<Pages> = None;
    let mut first_dims = (0u32, 0u32);
    let mut n_pages = 0usize;
    loop {
        let colour = dec.colortype().map_err(err)?;
        let bits = match colour {
            ColorType::Gray(b @ (8 | 16 | 32 | 64)) => b as usize,
            ColorType::Gray(_) => {
                return Err(unsupported(
                    path,
                    format!(
                        "page {}: expected 8-, 16-, 32- or 64-bit greyscale samples, found {}",
                        n_pages + 1,
                        colour_name(colour)
                    ),
                ))
            }
            other => {
                return Err(unsupported(
                    path,
                    format!(
                        "page {}: expected a greyscale image, found {}",
                        n_pages + 1,
                        colour_name(other)
                    ),
                ))
            }
        };
        let (w, h) = dec.dimensions().map_err(err)?;
        if n_pages == 0 {
            first_dims = (w, h);
        } else if (w, h) != first_dims {
            return Err(unsupported(
                path,
                format!(
                    "page {} is {}x{} but page 1 is {}x{}; expected all pages of one size",
                    n_pages + 1,
                    w,
                    h,
                    first_dims.0,
                    first_dims.1
                ),
            ));
        }
        let page_bytes = (w as usize)
            .saturating_mul(h as usize)
            .saturating_mul(bits / 8)
            .max(64);
        used = used.saturating_add(page_bytes);
        if used > budget {
            return Err(corrupt(
                path,
                FORMAT,
                format!(
                    "truncated: {} page(s) of {}x{} cannot fit in {} bytes",
                    n_pages + 1,
                    w,
                    h,
                    bytes.len()
                ),
            ));
        }
        let page = Pages::from_result(dec.read_image().map_err(err)?);
        if page.len() != (w as usize) * (h as usize) {
            return Err(corrupt(
                path,
                FORMAT,
                format!(
                    "page {}: expected {} samples, decoded {}",
                    n_pages + 1,
                    w as usize * h as usize,
                    page.len()
                ),
            ));
        }
        n_pages += 1;
        match &mut pages {
            None => pages = Some(page),
            Some(all) => {
                let first = all.name();
                all.append(page).map_err(|p| {
                    unsupported(
                        path,
                        format!(
                            "page {n_pages} holds {} but page 1 holds {first}; expected one \
                             sample type in all pages",
                            p.name()
                        ),
                    )
                })?;
            }
        }
        if !dec.more_images() {
            break;
        }
        dec.next_image().map_err(err)?;
    }
    let (w, h) = (first_dims.0 as usize, first_dims.1 as usize);
    let shape: Vec<usize> = if n_pages == 1 {
        vec![h, w]
    } else {
        vec![n_pages, h, w]
    };
    pages
        .and_then(|p| p.into_array(&shape))
        .ok_or_else(|| corrupt(path, FORMAT, "image dimensions are too large"))
}

/// Writes a 2D array as one float page or a 3D array `[pages, H, W]` as several.
pub(crate) fn encode<W: Write + Seek, T: crate::MapFloat>(
    w: W,
    data: &ArrayD<T>,
) -> Result<(), String> {
    let (pages, h, wd) = match data.shape() {
        &[h, w] => (1, h, w),
        &[p, h, w] => (p, h, w),
        s => {
            return Err(format!(
                "TIFF holds 2D images or 3D stacks of pages; found shape {s:?}"
            ))
        }
    };
    if pages == 0 || h == 0 || wd == 0 {
        return Err(format!(
            "TIFF cannot hold an empty image; found shape {:?}",
            data.shape()
        ));
    }
    let (wu, hu) = match (u32::try_from(wd), u32::try_from(h)) {
        (Ok(a), Ok(b)) => (a, b),
        _ => return Err(format!("image of {wd}x{h} is too large for TIFF")),
    };
    let data3 = if data.ndim() == 2 {
        data.view().insert_axis(Axis(0))
    } else {
        data.view()
    };
    let total = pages as u64 * h as u64 * wd as u64 * T::SIZE as u64;
    let big = total > 3 << 30;
    macro_rules! pages {
        ($enc:expr) => {{
            let mut enc = $enc.map_err(|e| e.to_string())?;
            for page in data3.axis_iter(Axis(0)) {
                let page = page.as_standard_layout();
                let s = page.as_slice().expect("standard layout");
                T::tiff_page(&mut enc, wu, hu, s)?;
            }
        }};
    }
    if big {
        pages!(TiffEncoder::new_big(w));
    } else {
        pages!(TiffEncoder::new(w));
    }
    Ok(())
}
