//! Round trips and bad-input cases for every format. All files are made by the tests.

use std::path::{Path, PathBuf};

use ndarray::{arr2, arr3, ArrayD, IxDyn};
use segloss_io::*;
use tempfile::TempDir;

fn dir() -> TempDir {
    tempfile::tempdir().unwrap()
}

/// The error's message is one line and mentions every one of `parts`.
#[track_caller]
fn check_msg(err: &IoError, parts: &[&str]) {
    let msg = err.to_string();
    assert!(!msg.contains('\n'), "message has a line break: {msg:?}");
    for p in parts {
        assert!(msg.contains(p), "message {msg:?} does not mention {p:?}");
    }
}

/// Files left in `d`, as names.
fn files_in(d: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(d)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fn put(d: &TempDir, name: &str, bytes: &[u8]) -> PathBuf {
    let p = d.path().join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

// ---------------------------------------------------------------------------------------------
// .npy

/// A hand-made `.npy` file.
fn npy_bytes(version: u8, descr: &str, fortran: bool, shape: &[usize], data: &[u8]) -> Vec<u8> {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let tuple = if shape.len() == 1 {
        format!("({},)", dims[0])
    } else {
        format!("({})", dims.join(", "))
    };
    let f = if fortran { "True" } else { "False" };
    let mut h = format!("{{'descr': '{descr}', 'fortran_order': {f}, 'shape': {tuple}, }}");
    let len_size = if version == 1 { 2 } else { 4 };
    while (10 + len_size - 2 + h.len() + 1) % 64 != 0 {
        h.push(' ');
    }
    h.push('\n');
    let mut out = b"\x93NUMPY".to_vec();
    out.extend_from_slice(&[version, 0]);
    if version == 1 {
        out.extend_from_slice(&(h.len() as u16).to_le_bytes());
    } else {
        out.extend_from_slice(&(h.len() as u32).to_le_bytes());
    }
    out.extend_from_slice(h.as_bytes());
    out.extend_from_slice(data);
    out
}

/// Bytes of `values` as `N`-byte elements, little or big endian.
macro_rules! bytes_of {
    ($vals:expr, $le:expr) => {
        $vals
            .iter()
            .flat_map(|v| {
                if $le {
                    v.to_le_bytes()
                } else {
                    v.to_be_bytes()
                }
            })
            .collect::<Vec<u8>>()
    };
}

#[test]
fn npy_round_trip_every_dtype() {
    let d = dir();
    let s = IxDyn(&[2, 3]);
    let cases: Vec<ArrayData> = vec![
        ArrayD::from_shape_vec(s.clone(), vec![true, false, true, true, false, false])
            .unwrap()
            .into(),
        ArrayD::from_shape_vec(s.clone(), vec![0u8, 1, 2, 3, 254, 255])
            .unwrap()
            .into(),
        ArrayD::from_shape_vec(s.clone(), vec![0u16, 1, 2, 3, 1000, 65535])
            .unwrap()
            .into(),
        ArrayD::from_shape_vec(s.clone(), vec![0u32, 1, 2, 3, 70000, u32::MAX])
            .unwrap()
            .into(),
        ArrayD::from_shape_vec(s.clone(), vec![0u64, 1, 2, 3, 1 << 40, u64::MAX])
            .unwrap()
            .into(),
        ArrayD::from_shape_vec(s.clone(), vec![0i8, -1, 2, -128, 127, 5])
            .unwrap()
            .into(),
        ArrayD::from_shape_vec(s.clone(), vec![0i16, -1, 2, -300, 32767, 5])
            .unwrap()
            .into(),
        ArrayD::from_shape_vec(s.clone(), vec![0i32, -1, 2, -70000, i32::MAX, 5])
            .unwrap()
            .into(),
        ArrayD::from_shape_vec(s.clone(), vec![0i64, -1, 2, i64::MIN, i64::MAX, 5])
            .unwrap()
            .into(),
        ArrayD::from_shape_vec(
            s.clone(),
            vec![0.0f32, -1.5, 2.25, 1e-30, f32::MAX, f32::NAN],
        )
        .unwrap()
        .into(),
        ArrayD::from_shape_vec(s.clone(), vec![0.0f64, -1.5, 2.25, 1e-300, f64::MAX, 7.0])
            .unwrap()
            .into(),
    ];
    for (i, data) in cases.iter().enumerate() {
        let p = d.path().join(format!("a{i}.npy"));
        write_npy(&p, data, WriteOptions::default()).unwrap();
        let v = read(&p).unwrap();
        assert_eq!(v.data.dtype_name(), data.dtype_name());
        assert_eq!(v.data.shape(), &[2, 3]);
        assert_eq!(v.spacing, None);
        assert_eq!(v.source, p);
        if let (ArrayData::F32(a), ArrayData::F32(b)) = (&v.data, data) {
            // NaN != NaN: compare bit patterns.
            let bits = |x: &ArrayD<f32>| x.mapv(f32::to_bits);
            assert_eq!(bits(a), bits(b));
        } else {
            assert_eq!(&v.data, data);
        }
    }
}

#[test]
fn npy_both_byte_orders_every_dtype() {
    let d = dir();
    for le in [true, false] {
        let o = if le { '<' } else { '>' };
        let cases: Vec<(String, Vec<u8>, ArrayData)> = vec![
            (
                "|b1".into(),
                vec![1, 0, 7],
                ArrayD::from_shape_vec(IxDyn(&[3]), vec![true, false, true])
                    .unwrap()
                    .into(),
            ),
            (
                "|u1".into(),
                vec![1, 2, 255],
                ArrayD::from_shape_vec(IxDyn(&[3]), vec![1u8, 2, 255])
                    .unwrap()
                    .into(),
            ),
            (
                "|i1".into(),
                vec![1, 0xff, 0x80],
                ArrayD::from_shape_vec(IxDyn(&[3]), vec![1i8, -1, -128])
                    .unwrap()
                    .into(),
            ),
            (
                format!("{o}u2"),
                bytes_of!([1u16, 2, 65535], le),
                ArrayD::from_shape_vec(IxDyn(&[3]), vec![1u16, 2, 65535])
                    .unwrap()
                    .into(),
            ),
            (
                format!("{o}u4"),
                bytes_of!([1u32, 2, 1 << 31], le),
                ArrayD::from_shape_vec(IxDyn(&[3]), vec![1u32, 2, 1 << 31])
                    .unwrap()
                    .into(),
            ),
            (
                format!("{o}u8"),
                bytes_of!([1u64, 2, 1 << 63], le),
                ArrayD::from_shape_vec(IxDyn(&[3]), vec![1u64, 2, 1 << 63])
                    .unwrap()
                    .into(),
            ),
            (
                format!("{o}i2"),
                bytes_of!([1i16, -2, -32768], le),
                ArrayD::from_shape_vec(IxDyn(&[3]), vec![1i16, -2, -32768])
                    .unwrap()
                    .into(),
            ),
            (
                format!("{o}i4"),
                bytes_of!([1i32, -2, i32::MIN], le),
                ArrayD::from_shape_vec(IxDyn(&[3]), vec![1i32, -2, i32::MIN])
                    .unwrap()
                    .into(),
            ),
            (
                format!("{o}i8"),
                bytes_of!([1i64, -2, i64::MIN], le),
                ArrayD::from_shape_vec(IxDyn(&[3]), vec![1i64, -2, i64::MIN])
                    .unwrap()
                    .into(),
            ),
            (
                format!("{o}f4"),
                bytes_of!([1.5f32, -2.0, 1e30], le),
                ArrayD::from_shape_vec(IxDyn(&[3]), vec![1.5f32, -2.0, 1e30])
                    .unwrap()
                    .into(),
            ),
            (
                format!("{o}f8"),
                bytes_of!([1.5f64, -2.0, 1e300], le),
                ArrayD::from_shape_vec(IxDyn(&[3]), vec![1.5f64, -2.0, 1e300])
                    .unwrap()
                    .into(),
            ),
            // Half floats widen to f32: 1.0, -2.0, 0.5.
            (
                format!("{o}f2"),
                bytes_of!([0x3c00u16, 0xc000, 0x3800], le),
                ArrayD::from_shape_vec(IxDyn(&[3]), vec![1.0f32, -2.0, 0.5])
                    .unwrap()
                    .into(),
            ),
        ];
        for (descr, raw, want) in cases {
            let p = put(&d, "x.npy", &npy_bytes(1, &descr, false, &[3], &raw));
            let v = read_npy(&p).unwrap_or_else(|e| panic!("{descr}: {e}"));
            assert_eq!(v.data, want, "{descr}");
            // The bytes reader agrees with the file reader.
            let b = npy_from_bytes(&std::fs::read(&p).unwrap()).unwrap();
            assert_eq!(b.data, want, "{descr} from bytes");
        }
    }
}

#[test]
fn npy_fortran_order_comes_back_in_logical_order() {
    let d = dir();
    // 2D: [[0, 1, 2], [3, 4, 5]] stored column by column.
    let raw = bytes_of!([0i32, 3, 1, 4, 2, 5], true);
    let p = put(&d, "f.npy", &npy_bytes(1, "<i4", true, &[2, 3], &raw));
    let v = read(&p).unwrap();
    let ArrayData::I32(a) = &v.data else { panic!() };
    assert_eq!(a, &arr2(&[[0, 1, 2], [3, 4, 5]]).into_dyn());
    assert!(a.is_standard_layout());

    // 3D big-endian float64 in Fortran order: element (i, j, k) at i + 2 j + 6 k.
    let want = ArrayD::from_shape_fn(IxDyn(&[2, 3, 4]), |ix| {
        (100 * ix[0] + 10 * ix[1] + ix[2]) as f64
    });
    let mut flat = Vec::new();
    for k in 0..4 {
        for j in 0..3 {
            for i in 0..2 {
                flat.push(want[[i, j, k]]);
            }
        }
    }
    let p = put(
        &d,
        "f3.npy",
        &npy_bytes(1, ">f8", true, &[2, 3, 4], &bytes_of!(flat, false)),
    );
    let v = read(&p).unwrap();
    assert_eq!(v.data, ArrayData::F64(want));
    let ArrayData::F64(a) = &v.data else { panic!() };
    assert!(a.is_standard_layout());
}

#[test]
fn npy_versions_2_and_3_and_odd_shapes() {
    let d = dir();
    for version in [1u8, 2, 3] {
        let p = put(
            &d,
            "v.npy",
            &npy_bytes(
                version,
                "<u2",
                false,
                &[2, 2],
                &bytes_of!([1u16, 2, 3, 4], true),
            ),
        );
        let v = read_npy(&p).unwrap();
        assert_eq!(
            v.data,
            ArrayData::U16(arr2(&[[1u16, 2], [3, 4]]).into_dyn()),
            "version {version}"
        );
    }
    // 0-d, empty and 1-d arrays.
    let p = put(
        &d,
        "s.npy",
        &npy_bytes(1, "<f4", false, &[], &bytes_of!([2.5f32], true)),
    );
    assert_eq!(read(&p).unwrap().data.shape(), &[] as &[usize]);
    let p = put(&d, "e.npy", &npy_bytes(1, "<f4", false, &[0, 3], &[]));
    let v = read(&p).unwrap();
    assert_eq!(v.data.shape(), &[0, 3]);
    assert!(v.data.is_empty());
    // Python 2 style header with long integers.
    let mut b = b"\x93NUMPY\x01\x00".to_vec();
    let h = "{'descr': '|u1', 'fortran_order': False, 'shape': (2L, 1L), }          \n";
    b.extend_from_slice(&(h.len() as u16).to_le_bytes());
    b.extend_from_slice(h.as_bytes());
    b.extend_from_slice(&[7, 9]);
    assert_eq!(npy_from_bytes(&b).unwrap().data.shape(), &[2, 1]);
}

#[test]
fn npy_bad_files_are_errors_naming_the_file() {
    let d = dir();
    let good = npy_bytes(1, "<f4", false, &[2, 3], &bytes_of!([0f32; 6], true));

    // Truncated data, at every length from empty to one byte short.
    for cut in [0, 5, 9, 11, 40, good.len() - 1] {
        let p = put(&d, "cut.npy", &good[..cut]);
        let e = read(&p).unwrap_err();
        assert!(matches!(e, IoError::Corrupt { .. }), "cut {cut}: {e}");
        check_msg(&e, &["cut.npy"]);
    }
    let e = read(put(&d, "t.npy", &good[..good.len() - 3])).unwrap_err();
    check_msg(
        &e,
        &[
            "t.npy",
            "truncated",
            "[2, 3]",
            "<f4",
            "needs 24 bytes",
            "found 21",
        ],
    );

    // Too much data.
    let mut long = good.clone();
    long.extend_from_slice(&[0; 4]);
    check_msg(
        &read(put(&d, "l.npy", &long)).unwrap_err(),
        &["l.npy", "size mismatch", "found 28"],
    );

    // Bad magic, version, header.
    let mut bad = good.clone();
    bad[1] = b'X';
    check_msg(
        &read(put(&d, "m.npy", &bad)).unwrap_err(),
        &["m.npy", "magic", "NUMPY"],
    );
    check_msg(
        &read(put(&d, "png.npy", b"\x89PNG\r\n\x1a\n....")).unwrap_err(),
        &["png.npy", "magic"],
    );
    let mut bad = good.clone();
    bad[6] = 9;
    check_msg(
        &read(put(&d, "v.npy", &bad)).unwrap_err(),
        &["v.npy", "version 9.0", "expected 1.0, 2.0 or 3.0"],
    );
    let mut bad = good.clone();
    bad[10] = b'[';
    check_msg(
        &read(put(&d, "h.npy", &bad)).unwrap_err(),
        &["h.npy", "header"],
    );
    let mut bad = npy_bytes(1, "<f4", false, &[2, 3], &[]);
    let at = bad.windows(7).position(|w| w == b"'shape'").unwrap();
    bad[at + 4] = b'q';
    check_msg(
        &read(put(&d, "k.npy", &bad)).unwrap_err(),
        &["k.npy", "'shape'"],
    );
    // A header length larger than the file.
    let mut bad = good[..10].to_vec();
    bad[8] = 0xff;
    bad[9] = 0xff;
    check_msg(
        &read(put(&d, "hl.npy", &bad)).unwrap_err(),
        &["hl.npy", "truncated header"],
    );
    // A shape whose size overflows.
    let huge = npy_bytes(1, "<f8", false, &[1 << 40, 1 << 40], &[]);
    check_msg(
        &read(put(&d, "o.npy", &huge)).unwrap_err(),
        &["o.npy", "too many elements"],
    );
    let huge = npy_bytes(1, "<f8", false, &[1 << 62], &[]);
    check_msg(&read(put(&d, "o2.npy", &huge)).unwrap_err(), &["o2.npy"]);
}

#[test]
fn npy_unsupported_dtypes() {
    let d = dir();
    for (descr, kind) in [
        ("<c8", "complex"),
        ("<c16", "complex"),
        ("|O", "objects"),
        ("<U5", "strings"),
        ("|S3", "strings"),
        ("|V8", "void"),
        ("<M8[ns]", "dates"),
        ("<f16", "extended"),
        ("<q9", "unknown"),
    ] {
        let p = put(&d, "u.npy", &npy_bytes(1, descr, false, &[1], &[0; 16]));
        let e = read(&p).unwrap_err();
        assert!(matches!(e, IoError::Unsupported { .. }), "{descr}: {e}");
        check_msg(&e, &["u.npy", descr, kind, "expected"]);
    }
    // A structured dtype.
    let mut b = b"\x93NUMPY\x01\x00".to_vec();
    let h = "{'descr': [('a', '<f4'), ('b', '<i4')], 'fortran_order': False, 'shape': (1,), }\n";
    b.extend_from_slice(&(h.len() as u16).to_le_bytes());
    b.extend_from_slice(h.as_bytes());
    b.extend_from_slice(&[0; 8]);
    check_msg(
        &read(put(&d, "rec.npy", &b)).unwrap_err(),
        &["rec.npy", "structured"],
    );
}

#[test]
fn missing_file_and_unknown_extension() {
    let d = dir();
    let e = read(d.path().join("nope.npy")).unwrap_err();
    assert!(matches!(e, IoError::Read { .. }));
    check_msg(&e, &["nope.npy", "cannot read"]);
    let e = read(put(&d, "a.jpg", b"xx")).unwrap_err();
    check_msg(&e, &["a.jpg", ".npy", ".nii.gz"]);
    let e = read(d.path()).unwrap_err();
    check_msg(&e, &["unknown file type"]);
    let sub = d.path().join("folder.npy");
    std::fs::create_dir(&sub).unwrap();
    check_msg(&read(&sub).unwrap_err(), &["folder.npy", "folder"]);
}

// ---------------------------------------------------------------------------------------------
// Labels

#[test]
fn labels_from_every_type() {
    let f = ArrayData::F32(arr2(&[[0.0f32, 3.0], [-1.0, 2.0]]).into_dyn());
    assert_eq!(
        f.to_labels().unwrap(),
        arr2(&[[0i64, 3], [-1, 2]]).into_dyn()
    );
    let b = ArrayData::Bool(arr2(&[[true, false]]).into_dyn());
    assert_eq!(b.to_labels().unwrap(), arr2(&[[1i64, 0]]).into_dyn());
    let u = ArrayData::U64(arr2(&[[1u64, u64::MAX]]).into_dyn());
    check_msg(
        &u.to_labels().unwrap_err(),
        &["18446744073709551615", "[0, 1]"],
    );
    let n = ArrayData::F64(arr3(&[[[0.0, 1.0], [2.0, f64::NAN]]]).into_dyn());
    check_msg(
        &n.to_labels().unwrap_err(),
        &["expected integer labels, found NaN at index [0, 1, 1]"],
    );
    let i = ArrayData::F32(arr2(&[[f32::INFINITY]]).into_dyn());
    check_msg(&i.to_labels().unwrap_err(), &["inf"]);
    let v = Volume::new(
        ArrayData::F32(arr2(&[[0.25f32]]).into_dyn()),
        None,
        "mask.npy",
    );
    check_msg(
        &v.to_labels().unwrap_err(),
        &["mask.npy: expected integer labels, found 0.25 at index [0, 0]"],
    );
    assert_eq!(f.to_f64(), arr2(&[[0.0, 3.0], [-1.0, 2.0]]).into_dyn());
    assert!(f.is_float() && !b.is_float());
}

// ---------------------------------------------------------------------------------------------
// PNG

fn png_bytes(w: u32, h: u32, color: png::ColorType, depth: png::BitDepth, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut out, w, h);
        enc.set_color(color);
        enc.set_depth(depth);
        if color == png::ColorType::Indexed {
            enc.set_palette(vec![0u8, 0, 0, 255, 255, 255]);
        }
        let mut wr = enc.write_header().unwrap();
        wr.write_image_data(data).unwrap();
        wr.finish().unwrap();
    }
    out
}

#[test]
fn png_grey_8_and_16_bit() {
    let d = dir();
    let p = put(
        &d,
        "g8.png",
        &png_bytes(
            3,
            2,
            png::ColorType::Grayscale,
            png::BitDepth::Eight,
            &[0, 1, 2, 250, 251, 255],
        ),
    );
    let v = read(&p).unwrap();
    assert_eq!(
        v.data,
        ArrayData::U8(arr2(&[[0u8, 1, 2], [250, 251, 255]]).into_dyn())
    );
    assert_eq!(v.spacing, None);

    let raw: Vec<u8> = [0u16, 1, 300, 65535]
        .iter()
        .flat_map(|x| x.to_be_bytes())
        .collect();
    let p = put(
        &d,
        "g16.png",
        &png_bytes(
            2,
            2,
            png::ColorType::Grayscale,
            png::BitDepth::Sixteen,
            &raw,
        ),
    );
    assert_eq!(
        read(&p).unwrap().data,
        ArrayData::U16(arr2(&[[0u16, 1], [300, 65535]]).into_dyn())
    );
}

#[test]
fn png_low_bit_grey_reads_raw_sample_values() {
    // 1-bit, width 10: two bytes per row.
    let b = png_bytes(
        10,
        2,
        png::ColorType::Grayscale,
        png::BitDepth::One,
        &[0b1010_0000, 0b0100_0000, 0b1111_1111, 0b1100_0000],
    );
    let v = png_from_bytes(&b).unwrap();
    assert_eq!(
        v.data,
        ArrayData::U8(
            arr2(&[
                [1u8, 0, 1, 0, 0, 0, 0, 0, 0, 1],
                [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]
            ])
            .into_dyn()
        )
    );
    let b = png_bytes(
        3,
        1,
        png::ColorType::Grayscale,
        png::BitDepth::Two,
        &[0b0001_1100],
    );
    assert_eq!(
        png_from_bytes(&b).unwrap().data,
        ArrayData::U8(arr2(&[[0u8, 1, 3]]).into_dyn())
    );
    let b = png_bytes(
        3,
        1,
        png::ColorType::Grayscale,
        png::BitDepth::Four,
        &[0x0f, 0x70],
    );
    assert_eq!(
        png_from_bytes(&b).unwrap().data,
        ArrayData::U8(arr2(&[[0u8, 15, 7]]).into_dyn())
    );
}

#[test]
fn png_colour_images_are_refused() {
    let d = dir();
    // An RGB image whose pixels are all grey is refused too.
    let p = put(
        &d,
        "rgb.png",
        &png_bytes(
            2,
            1,
            png::ColorType::Rgb,
            png::BitDepth::Eight,
            &[5, 5, 5, 9, 9, 9],
        ),
    );
    let e = read(&p).unwrap_err();
    assert!(matches!(e, IoError::Unsupported { .. }));
    check_msg(&e, &["rgb.png", "expected a greyscale image, found RGB"]);
    assert_eq!(
        e.to_string(),
        format!("{}: expected a greyscale image, found RGB", p.display())
    );
    let p = put(
        &d,
        "rgba.png",
        &png_bytes(
            1,
            1,
            png::ColorType::Rgba,
            png::BitDepth::Eight,
            &[1, 2, 3, 4],
        ),
    );
    check_msg(&read(&p).unwrap_err(), &["rgba.png", "found RGBA"]);
    let p = put(
        &d,
        "pal.png",
        &png_bytes(2, 1, png::ColorType::Indexed, png::BitDepth::Eight, &[0, 1]),
    );
    check_msg(&read(&p).unwrap_err(), &["pal.png", "found a palette"]);
    let p = put(
        &d,
        "ga.png",
        &png_bytes(
            1,
            1,
            png::ColorType::GrayscaleAlpha,
            png::BitDepth::Eight,
            &[1, 255],
        ),
    );
    check_msg(&read(&p).unwrap_err(), &["ga.png", "found grey+alpha"]);
}

#[test]
fn png_corrupt_and_truncated() {
    let d = dir();
    let data: Vec<u8> = (0..64 * 64).map(|i| (i * 7 % 251) as u8).collect();
    let good = png_bytes(
        64,
        64,
        png::ColorType::Grayscale,
        png::BitDepth::Eight,
        &data,
    );
    assert!(png_from_bytes(&good).is_ok());
    for cut in [0, 4, 8, 20, 33, good.len() / 2, good.len() - 13] {
        let p = put(&d, "cut.png", &good[..cut]);
        let e = read(&p).unwrap_err();
        assert!(matches!(e, IoError::Corrupt { .. }), "cut {cut}: {e}");
        check_msg(&e, &["cut.png", "PNG"]);
    }
    // A flipped byte in the image data (CRC mismatch).
    let mut bad = good.clone();
    let n = bad.len();
    bad[n / 2] ^= 0x55;
    check_msg(&read(put(&d, "crc.png", &bad)).unwrap_err(), &["crc.png"]);
    check_msg(
        &read(put(&d, "sig.png", b"GIF89a......")).unwrap_err(),
        &["sig.png", "signature"],
    );
}

// ---------------------------------------------------------------------------------------------
// TIFF

fn tiff_pages<C: tiff::encoder::colortype::ColorType>(
    w: u32,
    h: u32,
    pages: &[&[C::Inner]],
) -> Vec<u8>
where
    [C::Inner]: tiff::encoder::TiffValue,
{
    let mut c = std::io::Cursor::new(Vec::new());
    {
        let mut enc = tiff::encoder::TiffEncoder::new(&mut c).unwrap();
        for p in pages {
            enc.write_image::<C>(w, h, p).unwrap();
        }
    }
    c.into_inner()
}

#[test]
fn tiff_grey_types() {
    use tiff::encoder::colortype::*;
    let d = dir();
    let p = put(
        &d,
        "a.tif",
        &tiff_pages::<Gray8>(3, 2, &[&[1, 2, 3, 4, 5, 255]]),
    );
    let v = read(&p).unwrap();
    assert_eq!(
        v.data,
        ArrayData::U8(arr2(&[[1u8, 2, 3], [4, 5, 255]]).into_dyn())
    );
    let p = put(&d, "a.tiff", &tiff_pages::<Gray16>(2, 1, &[&[1, 65535]]));
    assert_eq!(
        read(&p).unwrap().data,
        ArrayData::U16(arr2(&[[1u16, 65535]]).into_dyn())
    );
    let p = put(&d, "b.TIF", &tiff_pages::<Gray32>(2, 1, &[&[1, u32::MAX]]));
    assert_eq!(
        read(&p).unwrap().data,
        ArrayData::U32(arr2(&[[1u32, u32::MAX]]).into_dyn())
    );
    let p = put(
        &d,
        "c.tif",
        &tiff_pages::<Gray32Float>(2, 1, &[&[1.5, -2.0]]),
    );
    assert_eq!(
        read(&p).unwrap().data,
        ArrayData::F32(arr2(&[[1.5f32, -2.0]]).into_dyn())
    );
    let p = put(&d, "d.tif", &tiff_pages::<GrayI16>(2, 1, &[&[-5, 7]]));
    assert_eq!(
        read(&p).unwrap().data,
        ArrayData::I16(arr2(&[[-5i16, 7]]).into_dyn())
    );
    let p = put(&d, "e.tif", &tiff_pages::<Gray64Float>(1, 1, &[&[0.125]]));
    assert_eq!(
        read(&p).unwrap().data,
        ArrayData::F64(arr2(&[[0.125f64]]).into_dyn())
    );
}

#[test]
fn tiff_multi_page_is_a_volume() {
    use tiff::encoder::colortype::*;
    let b = tiff_pages::<Gray16>(2, 2, &[&[1, 2, 3, 4], &[5, 6, 7, 8], &[9, 10, 11, 12]]);
    let v = tiff_from_bytes(&b).unwrap();
    assert_eq!(
        v.data,
        ArrayData::U16(
            arr3(&[[[1u16, 2], [3, 4]], [[5, 6], [7, 8]], [[9, 10], [11, 12]]]).into_dyn()
        )
    );
}

#[test]
fn tiff_bad_files() {
    use tiff::encoder::colortype::*;
    let d = dir();
    // Pages of different sizes.
    let mut c = std::io::Cursor::new(Vec::new());
    {
        let mut enc = tiff::encoder::TiffEncoder::new(&mut c).unwrap();
        enc.write_image::<Gray8>(2, 2, &[1, 2, 3, 4]).unwrap();
        enc.write_image::<Gray8>(3, 1, &[1, 2, 3]).unwrap();
    }
    let e = read(put(&d, "sz.tif", c.get_ref())).unwrap_err();
    check_msg(&e, &["sz.tif", "page 2 is 3x1 but page 1 is 2x2"]);
    // Pages of different types.
    let mut c = std::io::Cursor::new(Vec::new());
    {
        let mut enc = tiff::encoder::TiffEncoder::new(&mut c).unwrap();
        enc.write_image::<Gray8>(1, 1, &[1]).unwrap();
        enc.write_image::<Gray16>(1, 1, &[1]).unwrap();
    }
    check_msg(
        &read(put(&d, "ty.tif", c.get_ref())).unwrap_err(),
        &["ty.tif", "uint16", "uint8"],
    );
    // RGB.
    let b = tiff_pages::<RGB8>(1, 1, &[&[1, 2, 3]]);
    let e = read(put(&d, "rgb.tif", &b)).unwrap_err();
    assert!(matches!(e, IoError::Unsupported { .. }));
    check_msg(&e, &["rgb.tif", "expected a greyscale image, found RGB"]);
    // Truncated at many points, and bad magic.
    let good = tiff_pages::<Gray16>(16, 16, &[&[7u16; 256], &[9u16; 256]]);
    for cut in [0, 3, 8, 100, 300, good.len() - 1] {
        let e = read(put(&d, "cut.tif", &good[..cut])).unwrap_err();
        check_msg(&e, &["cut.tif"]);
    }
    check_msg(
        &read(put(&d, "m.tif", b"PK\x03\x04zip")).unwrap_err(),
        &["m.tif", "magic"],
    );
}

#[test]
fn tiff_write_2d_and_3d_f32() {
    let d = dir();
    let a2 = arr2(&[[0.5f32, 1.0, -2.0], [3.0, 4.0, f32::MAX]]).into_dyn();
    let p = d.path().join("o.tif");
    write(&p, &a2, None, WriteOptions::default()).unwrap();
    assert_eq!(read(&p).unwrap().data, ArrayData::F32(a2.clone()));
    let a3 = ArrayD::from_shape_fn(IxDyn(&[4, 3, 5]), |ix| {
        (ix[0] * 100 + ix[1] * 10 + ix[2]) as f32
    });
    let p = d.path().join("o3.tiff");
    write(&p, &a3, None, WriteOptions::default()).unwrap();
    assert_eq!(read(&p).unwrap().data, ArrayData::F32(a3.clone()));
    // A transposed (non-standard layout) input is written in logical order.
    let t = a2.t().to_owned();
    let p = d.path().join("t.tif");
    write(&p, &t, None, WriteOptions::default()).unwrap();
    assert_eq!(read(&p).unwrap().data, ArrayData::F32(t));
    // 1D / 4D / empty are refused, leaving nothing behind.
    let before = files_in(d.path());
    for shape in [vec![3], vec![1, 2, 2, 2], vec![0, 3]] {
        let a = ArrayD::<f32>::zeros(IxDyn(&shape));
        let e = write(d.path().join("bad.tif"), &a, None, WriteOptions::default()).unwrap_err();
        check_msg(&e, &["bad.tif", "TIFF"]);
    }
    assert_eq!(files_in(d.path()), before);
}

// ---------------------------------------------------------------------------------------------
// NIfTI

/// A hand-made NIfTI-1 file.
struct N1 {
    le: bool,
    dim: [i16; 8],
    datatype: i16,
    bitpix: i16,
    pixdim: [f32; 8],
    vox_offset: f32,
    slope: f32,
    inter: f32,
    magic: [u8; 4],
}

impl N1 {
    fn new(dims: &[i16], datatype: i16, bitpix: i16) -> N1 {
        let mut dim = [1i16; 8];
        dim[0] = dims.len() as i16;
        dim[1..=dims.len()].copy_from_slice(dims);
        N1 {
            le: true,
            dim,
            datatype,
            bitpix,
            pixdim: [1.0, 0.5, 0.75, 2.0, 1.0, 1.0, 1.0, 1.0],
            vox_offset: 352.0,
            slope: 0.0,
            inter: 0.0,
            magic: *b"n+1\0",
        }
    }

    fn bytes(&self, data: &[u8]) -> Vec<u8> {
        let mut b = vec![0u8; 352];
        let le = self.le;
        let mut put = |off: usize, v: &[u8]| b[off..off + v.len()].copy_from_slice(v);
        macro_rules! e {
            ($x:expr) => {
                if le {
                    $x.to_le_bytes()
                } else {
                    $x.to_be_bytes()
                }
            };
        }
        put(0, &e!(348i32));
        for i in 0..8 {
            put(40 + 2 * i, &e!(self.dim[i]));
            put(76 + 4 * i, &e!(self.pixdim[i]));
        }
        put(70, &e!(self.datatype));
        put(72, &e!(self.bitpix));
        put(108, &e!(self.vox_offset));
        put(112, &e!(self.slope));
        put(116, &e!(self.inter));
        put(344, &self.magic);
        b.resize(self.vox_offset as usize, 0xAB); // extension bytes, if any
        b.extend_from_slice(data);
        b
    }
}

fn gz(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

#[test]
fn nifti_reads_types_orders_and_spacing() {
    let d = dir();
    // Shape [x=2, y=3, z=2] int16, first index fastest.
    let want = ArrayD::from_shape_fn(IxDyn(&[2, 3, 2]), |ix| {
        (ix[0] + 10 * ix[1] + 100 * ix[2]) as i16
    });
    let mut flat = Vec::new();
    for z in 0..2 {
        for y in 0..3 {
            for x in 0..2 {
                flat.push(want[[x, y, z]]);
            }
        }
    }
    for le in [true, false] {
        let mut h = N1::new(&[2, 3, 2], 4, 16);
        h.le = le;
        let raw = h.bytes(&bytes_of!(flat, le));
        for (name, bytes) in [
            ("v.nii", raw.clone()),
            ("v.nii.gz", gz(&raw)),
            ("plain-named.nii.gz", raw.clone()),
        ] {
            let v = read(put(&d, name, &bytes)).unwrap_or_else(|e| panic!("{name} le={le}: {e}"));
            assert_eq!(v.data, ArrayData::I16(want.clone()), "{name} le={le}");
            assert_eq!(v.spacing, Some(vec![0.5, 0.75, 2.0]));
            assert!(v.is_nifti());
            assert_eq!(nifti_from_bytes(&bytes).unwrap().data, v.data);
        }
    }
    // Every integer and float datatype.
    let cases: Vec<(i16, i16, Vec<u8>, ArrayData)> = vec![
        (
            2,
            8,
            vec![1, 255],
            ArrayData::U8(ArrayD::from_shape_vec(IxDyn(&[2, 1]), vec![1, 255]).unwrap()),
        ),
        (
            256,
            8,
            vec![1, 255],
            ArrayData::I8(ArrayD::from_shape_vec(IxDyn(&[2, 1]), vec![1, -1]).unwrap()),
        ),
        (
            512,
            16,
            bytes_of!([1u16, 60000], true),
            ArrayData::U16(ArrayD::from_shape_vec(IxDyn(&[2, 1]), vec![1, 60000]).unwrap()),
        ),
        (
            8,
            32,
            bytes_of!([1i32, -60000], true),
            ArrayData::I32(ArrayD::from_shape_vec(IxDyn(&[2, 1]), vec![1, -60000]).unwrap()),
        ),
        (
            768,
            32,
            bytes_of!([1u32, 1 << 31], true),
            ArrayData::U32(ArrayD::from_shape_vec(IxDyn(&[2, 1]), vec![1, 1 << 31]).unwrap()),
        ),
        (
            1024,
            64,
            bytes_of!([1i64, -1], true),
            ArrayData::I64(ArrayD::from_shape_vec(IxDyn(&[2, 1]), vec![1, -1]).unwrap()),
        ),
        (
            1280,
            64,
            bytes_of!([1u64, 1 << 63], true),
            ArrayData::U64(ArrayD::from_shape_vec(IxDyn(&[2, 1]), vec![1, 1 << 63]).unwrap()),
        ),
        (
            16,
            32,
            bytes_of!([1.5f32, -2.0], true),
            ArrayData::F32(ArrayD::from_shape_vec(IxDyn(&[2, 1]), vec![1.5, -2.0]).unwrap()),
        ),
        (
            64,
            64,
            bytes_of!([1.5f64, -2.0], true),
            ArrayData::F64(ArrayD::from_shape_vec(IxDyn(&[2, 1]), vec![1.5, -2.0]).unwrap()),
        ),
    ];
    for (code, bits, raw, want) in cases {
        let b = N1::new(&[2, 1], code, bits).bytes(&raw);
        let v = nifti_from_bytes(&b).unwrap_or_else(|e| panic!("datatype {code}: {e}"));
        assert_eq!(v.data, want, "datatype {code}");
        assert_eq!(v.spacing, Some(vec![0.5, 0.75]));
    }
}

#[test]
fn nifti_extensions_scaling_and_squeezing() {
    // vox_offset past an extension block.
    let mut h = N1::new(&[2, 2], 2, 8);
    h.vox_offset = 400.0;
    let v = nifti_from_bytes(&h.bytes(&[1, 2, 3, 4])).unwrap();
    // x fastest: element (x, y) at x + 2 y.
    assert_eq!(v.data, ArrayData::U8(arr2(&[[1u8, 3], [2, 4]]).into_dyn()));

    // Scaling turns uint8 into float32; identity scaling keeps the type.
    let mut h = N1::new(&[2], 2, 8);
    h.slope = 2.0;
    h.inter = -1.0;
    let v = nifti_from_bytes(&h.bytes(&[1, 3])).unwrap();
    assert_eq!(
        v.data,
        ArrayData::F32(ArrayD::from_shape_vec(IxDyn(&[2]), vec![1.0, 5.0]).unwrap())
    );
    let mut h = N1::new(&[2], 8, 32);
    h.slope = 0.5;
    let v = nifti_from_bytes(&h.bytes(&bytes_of!([4i32, 6], true))).unwrap();
    assert_eq!(
        v.data,
        ArrayData::F64(ArrayD::from_shape_vec(IxDyn(&[2]), vec![2.0, 3.0]).unwrap())
    );
    let mut h = N1::new(&[2], 2, 8);
    h.slope = 1.0;
    assert!(matches!(
        nifti_from_bytes(&h.bytes(&[1, 3])).unwrap().data,
        ArrayData::U8(_)
    ));

    // [x, y, z, 1] is 3D; [x, y, z, 2] is refused; [x, y, 1] stays 3D.
    let v = nifti_from_bytes(&N1::new(&[2, 1, 1, 1, 1], 2, 8).bytes(&[7, 8])).unwrap();
    assert_eq!(v.data.shape(), &[2, 1, 1]);
    assert_eq!(v.spacing.as_ref().map(Vec::len), Some(3));
    let e = nifti_from_bytes(&N1::new(&[2, 2, 2, 2], 2, 8).bytes(&[0; 16])).unwrap_err();
    assert!(matches!(e, IoError::Unsupported { .. }));
    check_msg(
        &e,
        &["expected a 2D or 3D volume, found a 4D volume of shape [2, 2, 2, 2]"],
    );

    // Zero or NaN voxel sizes: no spacing.
    let mut h = N1::new(&[2], 2, 8);
    h.pixdim[1] = 0.0;
    assert_eq!(nifti_from_bytes(&h.bytes(&[1, 2])).unwrap().spacing, None);
    let mut h = N1::new(&[2], 2, 8);
    h.pixdim[1] = -0.5;
    assert_eq!(
        nifti_from_bytes(&h.bytes(&[1, 2])).unwrap().spacing,
        Some(vec![0.5])
    );
}

#[test]
fn nifti_bad_files() {
    let d = dir();
    let h = N1::new(&[4, 4, 4], 16, 32);
    let good = h.bytes(&[0u8; 256]);
    for (name, bytes) in [("c.nii", good.clone()), ("c.nii.gz", gz(&good))] {
        for cut in [0, 3, 100, 348, 351, bytes.len() / 2, bytes.len() - 1] {
            if cut >= bytes.len() || name.ends_with(".gz") && cut == bytes.len() - 1 {
                continue; // only the gzip trailer is cut; the data is complete
            }
            let e = read(put(&d, name, &bytes[..cut])).unwrap_err();
            assert!(
                matches!(e, IoError::Corrupt { .. }),
                "{name} cut {cut}: {e}"
            );
            check_msg(&e, &[name, "NIfTI"]);
        }
    }
    let e = read(put(&d, "t.nii", &good[..good.len() - 6])).unwrap_err();
    check_msg(
        &e,
        &[
            "t.nii",
            "truncated data",
            "[4, 4, 4]",
            "float32",
            "needs 256 bytes",
            "found 250",
        ],
    );
    let e = read(put(&d, "t.nii.gz", &gz(&good[..good.len() - 6]))).unwrap_err();
    check_msg(&e, &["t.nii.gz", "truncated data", "found 250"]);
    // Corrupt gzip data.
    let mut z = gz(&good);
    let n = z.len();
    z[n / 2] ^= 0xff;
    z[n / 2 + 1] ^= 0xff;
    check_msg(&read(put(&d, "z.nii.gz", &z)).unwrap_err(), &["z.nii.gz"]);
    // Bad magic, two-file, bad header size, bad dim[0], bad datatype, bad vox_offset.
    let mut b = N1::new(&[2], 2, 8);
    b.magic = *b"xxxx";
    check_msg(
        &read(put(&d, "m.nii", &b.bytes(&[1, 2]))).unwrap_err(),
        &["m.nii", "magic"],
    );
    b.magic = *b"ni1\0";
    check_msg(
        &read(put(&d, "p.nii", &b.bytes(&[1, 2]))).unwrap_err(),
        &["p.nii", "two-file"],
    );
    check_msg(
        &read(put(&d, "s.nii", &[0u8; 400])).unwrap_err(),
        &["s.nii", "348"],
    );
    let mut b = N1::new(&[2], 2, 8);
    b.dim[0] = 9;
    check_msg(
        &read(put(&d, "d.nii", &b.bytes(&[1, 2]))).unwrap_err(),
        &["d.nii", "dim[0] = 9"],
    );
    let mut b = N1::new(&[2], 2, 8);
    b.dim[1] = -2;
    check_msg(
        &read(put(&d, "d2.nii", &b.bytes(&[1, 2]))).unwrap_err(),
        &["d2.nii", "dim[1] = -2"],
    );
    for (code, what) in [
        (32, "complex64"),
        (128, "RGB24"),
        (1, "binary"),
        (0, "unknown"),
        (3, "code 3"),
    ] {
        let e = read(put(&d, "dt.nii", &N1::new(&[2], code, 8).bytes(&[0; 32]))).unwrap_err();
        assert!(matches!(e, IoError::Unsupported { .. }));
        check_msg(&e, &["dt.nii", what]);
    }
    let mut b = N1::new(&[2], 2, 8);
    b.vox_offset = 352.5;
    let mut bytes = b.bytes(&[]);
    bytes.extend_from_slice(&[1, 2, 3]);
    check_msg(
        &read(put(&d, "vo.nii", &bytes)).unwrap_err(),
        &["vo.nii", "vox_offset = 352.5"],
    );
    // A header that promises far more data than the file has.
    let b = N1::new(&[30000, 30000, 30000], 64, 64).bytes(&[0; 64]);
    check_msg(
        &read(put(&d, "big.nii", &b)).unwrap_err(),
        &["big.nii", "truncated"],
    );
    check_msg(
        &read(put(&d, "big.nii.gz", &gz(&b))).unwrap_err(),
        &["big.nii.gz", "truncated"],
    );
}

#[test]
fn nifti_write_copies_geometry() {
    let d = dir();
    // A source volume with a full geometry, written by this crate from a hand-made header.
    let mut h = N1::new(&[3, 2, 4], 2, 8);
    h.pixdim = [-1.0, 0.8, 0.9, 2.5, 1.0, 1.0, 1.0, 1.0];
    let mut src = h.bytes(&[1u8; 24]);
    src[252..254].copy_from_slice(&1i16.to_le_bytes()); // qform_code
    src[254..256].copy_from_slice(&2i16.to_le_bytes()); // sform_code
    for (i, v) in [0.1f32, 0.2, 0.3, -10.0, 20.0, 30.0].iter().enumerate() {
        src[256 + 4 * i..260 + 4 * i].copy_from_slice(&v.to_le_bytes());
    }
    for (i, v) in [
        0.8f32, 0.0, 0.0, -10.0, 0.0, 0.9, 0.0, 20.0, 0.0, 0.0, 2.5, 30.0,
    ]
    .iter()
    .enumerate()
    {
        src[280 + 4 * i..284 + 4 * i].copy_from_slice(&v.to_le_bytes());
    }
    src[123] = 10; // mm + s
    let src_path = put(&d, "src.nii.gz", &gz(&src));
    let like = read(&src_path).unwrap();

    let out = ArrayD::from_shape_fn(IxDyn(&[3, 2, 4]), |ix| {
        (ix[0] * 100 + ix[1] * 10 + ix[2]) as f32 + 0.5
    });
    for name in ["out.nii.gz", "out.nii"] {
        let p = d.path().join(name);
        write(&p, &out, Some(&like), WriteOptions::default()).unwrap();
        let back = read(&p).unwrap();
        assert_eq!(back.data, ArrayData::F32(out.clone()));
        assert_eq!(
            back.spacing.as_deref().map(|s| s
                .iter()
                .map(|x| (x * 1e5).round() / 1e5)
                .collect::<Vec<_>>()),
            Some(vec![0.8, 0.9, 2.5])
        );
        // Compare the raw header fields that carry geometry.
        let raw = std::fs::read(&p).unwrap();
        let raw = if name.ends_with(".gz") {
            use std::io::Read;
            let mut v = Vec::new();
            flate2::read::GzDecoder::new(&raw[..])
                .read_to_end(&mut v)
                .unwrap();
            v
        } else {
            raw
        };
        assert_eq!(&raw[76..108], &src[76..108], "pixdim"); // including qfac -1
        assert_eq!(
            &raw[252..328],
            &src[252..328],
            "qform/sform, quaternion, offsets, srow"
        );
        assert_eq!(raw[123], 10, "xyzt_units");
        assert_eq!(&raw[70..72], &16i16.to_le_bytes(), "datatype float32");
        assert_eq!(&raw[344..348], b"n+1\0");
        assert_eq!(raw.len(), 352 + 24 * 4);
    }

    // Without `like`: unit voxels and no orientation; with a non-NIfTI `like`, its spacing.
    let p = d.path().join("plain.nii.gz");
    write(&p, &out, None, WriteOptions::default()).unwrap();
    assert_eq!(read(&p).unwrap().spacing, Some(vec![1.0, 1.0, 1.0]));
    let npy_like = Volume::new(
        ArrayData::F32(out.clone()),
        Some(vec![2.0, 3.0, 4.0]),
        "x.npy",
    );
    let p = d.path().join("sp.nii.gz");
    write(&p, &out, Some(&npy_like), WriteOptions::default()).unwrap();
    assert_eq!(read(&p).unwrap().spacing, Some(vec![2.0, 3.0, 4.0]));

    // 2D and a size past 32767 (NIfTI-2).
    let wide = ArrayD::from_shape_fn(IxDyn(&[40000, 2]), |ix| ix[0] as f32 - ix[1] as f32);
    let p = d.path().join("wide.nii.gz");
    write(&p, &wide, None, WriteOptions::default()).unwrap();
    assert_eq!(read(&p).unwrap().data, ArrayData::F32(wide));

    // 0-d and 8-d arrays are refused before anything is written.
    let before = files_in(d.path());
    for shape in [vec![], vec![1; 8]] {
        let e = write(
            d.path().join("bad.nii.gz"),
            &ArrayD::zeros(IxDyn(&shape)),
            None,
            WriteOptions::default(),
        )
        .unwrap_err();
        check_msg(&e, &["bad.nii.gz", "NIfTI holds 1 to 7 dimensions"]);
    }
    assert_eq!(files_in(d.path()), before);
}

// ---------------------------------------------------------------------------------------------
// Writing

#[test]
fn existing_output_is_refused_without_force() {
    let d = dir();
    let a = arr2(&[[1.0f32, 2.0]]).into_dyn();
    for name in ["o.npy", "o.tif", "o.nii.gz", "o.nii"] {
        let p = put(&d, name, b"precious");
        let e = write(&p, &a, None, WriteOptions::default()).unwrap_err();
        assert!(matches!(e, IoError::Exists { .. }));
        check_msg(&e, &[name, "already exists", "--force"]);
        assert_eq!(std::fs::read(&p).unwrap(), b"precious");
        check_msg(
            &check_output(&p, WriteOptions::default()).unwrap_err(),
            &[name],
        );
        check_output(&p, WriteOptions { force: true }).unwrap();
        write(&p, &a, None, WriteOptions { force: true }).unwrap();
        assert_eq!(read(&p).unwrap().data.to_f32(), a);
    }
    let p = put(&d, "g.npy", b"precious");
    assert!(matches!(
        write_npy_f64(&p, &a.mapv(f64::from), WriteOptions::default()),
        Err(IoError::Exists { .. })
    ));
    write_npy_f64(&p, &a.mapv(f64::from), WriteOptions { force: true }).unwrap();
    assert_eq!(read(&p).unwrap().data.dtype_name(), "float64");
    // Only the outputs are left: no temporary files.
    assert_eq!(
        files_in(d.path()),
        vec!["g.npy", "o.nii", "o.nii.gz", "o.npy", "o.tif"]
    );
}

#[test]
fn missing_folder_and_bad_names_are_errors() {
    let d = dir();
    let a = arr2(&[[1.0f32]]).into_dyn();
    let p = d.path().join("no/such/dir/o.npy");
    let e = write(&p, &a, None, WriteOptions::default()).unwrap_err();
    assert!(matches!(e, IoError::Write { .. }));
    check_msg(&e, &["no/such/dir", "does not exist"]);
    check_msg(
        &check_output(&p, WriteOptions::default()).unwrap_err(),
        &["no/such/dir"],
    );
    // A file where the folder should be.
    let f = put(&d, "file", b"x");
    let e = write_npy_f32(f.join("o.npy"), &a, WriteOptions::default()).unwrap_err();
    check_msg(&e, &["file", "not a folder"]);
    // PNG and unknown extensions are not written.
    let e = write(d.path().join("o.png"), &a, None, WriteOptions::default()).unwrap_err();
    check_msg(&e, &["o.png", ".npy, .tif, .tiff, .nii or .nii.gz"]);
    check_msg(
        &write(d.path().join("o.txt"), &a, None, WriteOptions::default()).unwrap_err(),
        &["o.txt"],
    );
    // A folder as output name, even with force.
    let sub = d.path().join("sub.npy");
    std::fs::create_dir(&sub).unwrap();
    assert!(write(&sub, &a, None, WriteOptions { force: true }).is_err());
    assert!(sub.is_dir());
    assert_eq!(files_in(d.path()), vec!["file", "sub.npy"]);
}

#[cfg(unix)]
#[test]
fn outputs_get_ordinary_permissions() {
    use std::os::unix::fs::PermissionsExt;
    let d = dir();
    let reference = d.path().join("ref");
    std::fs::File::create(&reference).unwrap();
    let p = d.path().join("o.npy");
    write_npy_f32(&p, &arr2(&[[1.0f32]]).into_dyn(), WriteOptions::default()).unwrap();
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&p), mode(&reference));
}

#[test]
fn bare_file_name_writes_into_the_current_folder() {
    // `folder_of("x.npy")` is "."; exercise it through check_output only (no cwd changes).
    assert!(check_output(
        "segloss-io-test-does-not-exist.npy",
        WriteOptions::default()
    )
    .is_ok());
}

#[cfg(target_os = "linux")]
#[test]
fn pipes_are_read_whole() {
    use std::io::Write;
    use std::os::fd::AsRawFd;
    let a = arr2(&[[1.5f32, 2.5], [3.5, 4.5]]).into_dyn();
    let d = dir();
    let npy = d.path().join("a.npy");
    let nii = d.path().join("a.nii.gz");
    write(&npy, &a, None, WriteOptions::default()).unwrap();
    write(&nii, &a, None, WriteOptions::default()).unwrap();
    for (file, is_nifti) in [(npy, false), (nii, true)] {
        let bytes = std::fs::read(&file).unwrap();
        let (r, mut w) = std::io::pipe().unwrap();
        let writer = std::thread::spawn(move || w.write_all(&bytes).unwrap());
        let path = format!("/proc/self/fd/{}", r.as_raw_fd());
        let v = if is_nifti {
            read_nifti(&path)
        } else {
            read_npy(&path)
        }
        .unwrap();
        writer.join().unwrap();
        assert_eq!(v.data, ArrayData::F32(a.clone()));
        assert_eq!(v.source, PathBuf::from(&path));
    }
}

#[cfg(unix)]
#[test]
fn forced_writes_replace_files_and_links_not_what_links_point_to() {
    let d = dir();
    let a = arr2(&[[1.0f32, 2.0]]).into_dyn();
    // Replaced again and again: the newest content, no temporary files left.
    let p = put(&d, "o.npy", b"old");
    for k in 0..3 {
        let b = a.mapv(|x| x + k as f32);
        write(&p, &b, None, WriteOptions { force: true }).unwrap();
        assert_eq!(read(&p).unwrap().data.to_f32(), b);
    }
    // A link at the output name is replaced by the file; its target keeps its bytes.
    let target = put(&d, "target.bin", b"keep");
    let link = d.path().join("l.npy");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    write(&link, &a, None, WriteOptions { force: true }).unwrap();
    assert!(!link.symlink_metadata().unwrap().file_type().is_symlink());
    assert_eq!(std::fs::read(&target).unwrap(), b"keep");
    assert_eq!(files_in(d.path()), vec!["l.npy", "o.npy", "target.bin"]);
    // The quick check: an existing file is refused without force, a missing folder always.
    assert!(matches!(
        check_output_quick(&p, WriteOptions::default()),
        Err(IoError::Exists { .. })
    ));
    check_output_quick(&p, WriteOptions { force: true }).unwrap();
    check_output_quick(d.path().join("new.npy"), WriteOptions::default()).unwrap();
    check_msg(
        &check_output_quick(d.path().join("no/o.npy"), WriteOptions::default()).unwrap_err(),
        &["does not exist"],
    );
    assert!(check_output_quick(d.path(), WriteOptions { force: true }).is_err());
}
