//! Greyscale PNG reading.

use std::io::Cursor;
use std::path::Path;

use ndarray::{ArrayD, IxDyn};

use crate::error::{corrupt, unsupported, IoError};
use crate::raw::show_bytes;
use crate::ArrayData;

const FORMAT: &str = "PNG";
const SIGNATURE: &[u8; 8] = b"\x89PNG\r\n\x1a\n";
/// Deflate cannot expand data by more than about 1032:1; an image that declares more pixels
/// than its file could hold is refused before anything is allocated for it.
const MAX_RATIO: usize = 1100;

pub(crate) fn decode(bytes: &[u8], path: &Path) -> Result<ArrayData, IoError> {
    if !bytes.starts_with(SIGNATURE) {
        return Err(corrupt(
            path,
            FORMAT,
            format!(
                "bad signature {}; expected \"\\x89PNG\\r\\n\\x1a\\n\"",
                show_bytes(&bytes[..bytes.len().min(8)])
            ),
        ));
    }
    let err = |e: png::DecodingError| corrupt(path, FORMAT, e.to_string());
    let mut decoder =
        png::Decoder::new_with_limits(Cursor::new(bytes), png::Limits { bytes: 1 << 30 });
    decoder.set_transformations(png::Transformations::IDENTITY);
    decoder.set_ignore_text_chunk(true);
    decoder.set_ignore_iccp_chunk(true);
    let mut reader = decoder.read_info().map_err(err)?;
    let (color, depth) = {
        let info = reader.info();
        (info.color_type, info.bit_depth)
    };
    let found = match color {
        png::ColorType::Grayscale => None,
        png::ColorType::Rgb => Some("RGB"),
        png::ColorType::Rgba => Some("RGBA"),
        png::ColorType::Indexed => Some("a palette (indexed-colour) image"),
        png::ColorType::GrayscaleAlpha => Some("grey+alpha"),
    };
    if let Some(found) = found {
        return Err(unsupported(
            path,
            format!("expected a greyscale image, found {found}"),
        ));
    }
    let size = reader
        .output_buffer_size()
        .ok_or_else(|| corrupt(path, FORMAT, "image dimensions are too large"))?;
    let limit = bytes
        .len()
        .saturating_mul(MAX_RATIO)
        .saturating_add(1 << 16);
    if size > limit {
        let info = reader.info();
        return Err(corrupt(
            path,
            FORMAT,
            format!(
                "truncated: a {}x{} image cannot fit in {} bytes",
                info.width,
                info.height,
                bytes.len()
            ),
        ));
    }
    let mut buf = vec![0u8; size];
    let out = reader.next_frame(&mut buf).map_err(err)?;
    let (w, h, line) = (out.width as usize, out.height as usize, out.line_size);
    if line.checked_mul(h).is_none_or(|n| n > buf.len()) {
        return Err(corrupt(path, FORMAT, "decoder returned too little data"));
    }
    let rows = buf[..line * h].chunks_exact(line.max(1)).take(h);
    let shape = IxDyn(&[h, w]);
    let shape_err = |_| corrupt(path, FORMAT, "image dimensions are too large");
    Ok(match depth {
        png::BitDepth::Eight => {
            let v: Vec<u8> = rows.flat_map(|r| r[..w].iter().copied()).collect();
            ArrayData::U8(ArrayD::from_shape_vec(shape, v).map_err(shape_err)?)
        }
        png::BitDepth::Sixteen => {
            let v: Vec<u16> = rows
                .flat_map(|r| {
                    r[..2 * w]
                        .chunks_exact(2)
                        .map(|c| u16::from_be_bytes([c[0], c[1]]))
                })
                .collect();
            ArrayData::U16(ArrayD::from_shape_vec(shape, v).map_err(shape_err)?)
        }
        png::BitDepth::One | png::BitDepth::Two | png::BitDepth::Four => {
            let bits = depth as usize;
            let per_byte = 8 / bits;
            let mask = ((1u16 << bits) - 1) as u8;
            let v: Vec<u8> = rows
                .flat_map(|r| {
                    (0..w).map(move |x| {
                        let byte = r[x / per_byte];
                        let shift = 8 - bits * (x % per_byte + 1);
                        (byte >> shift) & mask
                    })
                })
                .collect();
            ArrayData::U8(ArrayD::from_shape_vec(shape, v).map_err(shape_err)?)
        }
    })
}
