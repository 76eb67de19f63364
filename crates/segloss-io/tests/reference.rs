//! Files written by numpy, nibabel, tifffile and Pillow (made by `tests/data/make_reference.py`)
//! read as those tools read them.

use std::path::PathBuf;

use ndarray::{ArrayD, Dimension, IxDyn};
use segloss_io::*;

fn data(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

/// `a[i, j, k] = 100 i + 10 j + k` (weights 10^(ndim-1-axis)), as in the script.
fn idx(shape: &[usize]) -> ArrayD<i64> {
    ArrayD::from_shape_fn(IxDyn(shape), |ix| {
        let ix = ix.slice();
        ix.iter()
            .enumerate()
            .map(|(d, &i)| i as i64 * 10i64.pow((ix.len() - 1 - d) as u32))
            .sum()
    })
}

fn close(a: &[f64], b: &[f64]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-6)
}

#[test]
fn numpy_files() {
    let v = read(data("np_fortran_be_i4.npy")).unwrap();
    assert_eq!(v.data, ArrayData::I32(idx(&[3, 4, 2]).mapv(|x| x as i32)));
    let v = read(data("np_f2.npy")).unwrap();
    assert_eq!(
        v.data,
        ArrayData::F32(idx(&[2, 3]).mapv(|x| x as f32 / 4.0))
    );
    let v = read(data("np_bool.npy")).unwrap();
    assert_eq!(v.data, ArrayData::Bool(idx(&[2, 3]).mapv(|x| x % 2 == 1)));
    let v = read(data("np_v2_u2.npy")).unwrap();
    assert_eq!(v.data, ArrayData::U16(idx(&[2, 3]).mapv(|x| x as u16)));
    let v = read(data("np_v3_f8.npy")).unwrap();
    assert_eq!(v.data, ArrayData::F64(idx(&[2, 3]).mapv(|x| x as f64)));
}

#[test]
fn nibabel_files() {
    let v = read(data("nib_labels_u1.nii.gz")).unwrap();
    assert_eq!(
        v.data,
        ArrayData::U8(idx(&[4, 3, 2]).mapv(|x| (x % 256) as u8))
    );
    assert!(close(v.spacing.as_deref().unwrap(), &[0.8, 0.9, 2.5]));
    // get_fdata applies scl_slope = 2, scl_inter = 1.
    let v = read(data("nib_scaled_i2.nii")).unwrap();
    assert_eq!(
        v.data,
        ArrayData::F32(idx(&[4, 3, 2]).mapv(|x| 2.0 * x as f32 + 1.0))
    );
    let v = read(data("nib2_f4.nii")).unwrap();
    assert_eq!(v.data, ArrayData::F32(idx(&[4, 3, 2]).mapv(|x| x as f32)));
    assert!(close(v.spacing.as_deref().unwrap(), &[0.8, 0.9, 2.5]));
    let v = read(data("nib_4d_singleton_f8.nii.gz")).unwrap();
    assert_eq!(
        v.data,
        ArrayData::F64(idx(&[4, 3, 2]).mapv(|x| 10.0 * x as f64))
    );
    let e = read(data("nib_4d_u1.nii.gz")).unwrap_err();
    assert!(e
        .to_string()
        .contains("found a 4D volume of shape [2, 2, 2, 2]"));
}

#[test]
fn geometry_of_a_nibabel_file_survives_a_write() {
    use std::io::Read;
    let src = read(data("nib_labels_u1.nii.gz")).unwrap();
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("dist.nii.gz");
    write(&p, &src.data.to_f32(), Some(&src), WriteOptions::default()).unwrap();
    let gunzip = |p: &std::path::Path| {
        let mut v = Vec::new();
        flate2::read::MultiGzDecoder::new(std::fs::File::open(p).unwrap())
            .read_to_end(&mut v)
            .unwrap();
        v
    };
    let (a, b) = (gunzip(&data("nib_labels_u1.nii.gz")), gunzip(&p));
    assert_eq!(&a[40..56], &b[40..56], "dim");
    assert_eq!(&a[76..108], &b[76..108], "pixdim");
    assert_eq!(a[123], b[123], "xyzt_units");
    assert_eq!(&a[252..328], &b[252..328], "qform, sform and their codes");
    let back = read(&p).unwrap();
    assert_eq!(back.data, ArrayData::F32(src.data.to_f32()));
    assert_eq!(back.spacing, src.spacing);
}

#[test]
fn tifffile_files() {
    let v = read(data("tf_stack_u2.tif")).unwrap();
    assert_eq!(v.data, ArrayData::U16(idx(&[3, 4, 5]).mapv(|x| x as u16)));
    let v = read(data("tf_f4.tif")).unwrap();
    assert_eq!(
        v.data,
        ArrayData::F32(idx(&[4, 5]).mapv(|x| x as f32 / 2.0))
    );
    let v = read(data("tf_zlib_u1.tif")).unwrap();
    assert_eq!(v.data, ArrayData::U8(idx(&[4, 5]).mapv(|x| x as u8)));
    let v = read(data("tf_big_i2.tif")).unwrap();
    assert_eq!(
        v.data,
        ArrayData::I16(idx(&[2, 4, 5]).mapv(|x| x as i16 - 50))
    );
    let e = read(data("tf_rgb.tif")).unwrap_err();
    assert!(
        e.to_string()
            .ends_with("expected a greyscale image, found RGB"),
        "{e}"
    );
}

#[test]
fn pillow_files() {
    let v = read(data("pil_l.png")).unwrap();
    assert_eq!(v.data, ArrayData::U8(idx(&[4, 5]).mapv(|x| x as u8)));
    let v = read(data("pil_i16.png")).unwrap();
    assert_eq!(
        v.data,
        ArrayData::U16(idx(&[4, 5]).mapv(|x| 100 * x as u16))
    );
    let v = read(data("pil_1bit.png")).unwrap();
    assert_eq!(v.data, ArrayData::U8(idx(&[4, 5]).mapv(|x| (x % 2) as u8)));
    let e = read(data("pil_rgb.png")).unwrap_err();
    assert!(
        e.to_string()
            .ends_with("expected a greyscale image, found RGB"),
        "{e}"
    );
    let e = read(data("pil_p.png")).unwrap_err();
    assert!(e.to_string().contains("found a palette"), "{e}");
}
