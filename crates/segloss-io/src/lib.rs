//! Array and image I/O for segloss: `.npy`, PNG, TIFF and NIfTI, with atomic writes.
//!
//! # Reading
//!
//! [`read`] picks the format from the file name (case-insensitive):
//!
//! | extension | what is accepted | shape | element type |
//! |---|---|---|---|
//! | `.npy` | versions 1.0, 2.0, 3.0; dtypes `b1`, `u1`–`u8`, `i1`–`i8`, `f2`, `f4`, `f8`, either byte order, C or Fortran order | as stored | as stored (`f2` widened to `f32`) |
//! | `.png` | greyscale, 1/2/4/8/16 bits | `[H, W]` | `u8` (1/2/4/8 bits; raw sample values, e.g. 0/1 for 1-bit) or `u16` |
//! | `.tif`, `.tiff` | greyscale, 8/16/32/64-bit integer or float samples, any number of pages of one size and type | `[H, W]`, or `[pages, H, W]` when there are several pages | as stored |
//! | `.nii`, `.nii.gz` | single-file NIfTI-1 and NIfTI-2, either byte order, gzip detected from the content | `[x, y, z]` as stored (first index fastest in the file) | as stored, or float when scaled (see [`read_nifti`]) |
//!
//! Arrays are always returned in standard (C, row-major) memory layout, whatever the file's
//! order. Everything that is not accepted — RGB/RGBA/palette images, complex or string dtypes,
//! 4D volumes, truncated or corrupt files — is an [`IoError`] whose `Display` is one line that
//! names the file, the value found and what was expected. No input makes a reader panic, and a
//! header that declares more data than its file can hold is refused before anything is
//! allocated for it.
//!
//! # Writing
//!
//! [`write()`] writes an `f32` array (and [`write_map`] an `f32` or `f64` one) as `.npy`,
//! `.tif`/`.tiff` or `.nii`/`.nii.gz` (copying the geometry of a NIfTI input);
//! [`write_npy_f32`], [`write_npy_f64`] and [`write_npy`] write `.npy` whatever the name. Every
//! write goes to a temporary file in the output's folder that is renamed into place once
//! complete, so a failure never leaves a partial file and a reader sees the old file or the
//! new one, never a mix; an existing file is only replaced with [`WriteOptions::force`]. Like
//! `numpy.save`, the writers leave flushing to the disk to the operating system (no `fsync`):
//! the guarantee is against errors and concurrent readers, not against a power cut. On Linux an
//! existing file is replaced by swapping it with the new one in one step (`renameat2` with
//! `RENAME_EXCHANGE`) and then removing it: renaming over an existing file makes ext4 start
//! writing the new file to the disk at once (its `auto_da_alloc` heuristic for programs that do
//! not `fsync`), which took some 4 ms per 4 MiB written; elsewhere, or where the file system
//! cannot swap, the new file is renamed over the old one.
//!
//! ```
//! use ndarray::ArrayD;
//! use segloss_io::{read, write, WriteOptions};
//!
//! let dir = tempfile::tempdir()?;
//! let path = dir.path().join("dist.npy");
//! let a = ArrayD::from_shape_vec(vec![2, 3], vec![0.0f32, 1.0, 2.0, 3.0, 4.0, 5.0])?;
//! write(&path, &a, None, WriteOptions::default())?;
//!
//! let v = read(&path)?;
//! assert_eq!(v.data.shape(), &[2, 3]);
//! assert_eq!(v.data.dtype_name(), "float32");
//! assert_eq!(v.data.to_f32(), a);
//!
//! // A second write without `force` is refused and leaves the file as it was.
//! let err = write(&path, &a, None, WriteOptions::default()).unwrap_err();
//! assert!(matches!(err, segloss_io::IoError::Exists { .. }));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![deny(missing_docs)]

mod error;
mod nifti;
mod npy;
mod png_io;
mod raw;
mod tiff_io;

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use ndarray::ArrayD;

pub use error::IoError;
use error::{read_err, MEMORY};

/// A numeric n-d array as read from a file, keeping its element type.
#[derive(Debug, Clone, PartialEq)]
pub enum ArrayData {
    /// Booleans (`.npy` `b1`).
    Bool(ArrayD<bool>),
    /// Unsigned 8-bit integers.
    U8(ArrayD<u8>),
    /// Unsigned 16-bit integers.
    U16(ArrayD<u16>),
    /// Unsigned 32-bit integers.
    U32(ArrayD<u32>),
    /// Unsigned 64-bit integers.
    U64(ArrayD<u64>),
    /// Signed 8-bit integers.
    I8(ArrayD<i8>),
    /// Signed 16-bit integers.
    I16(ArrayD<i16>),
    /// Signed 32-bit integers.
    I32(ArrayD<i32>),
    /// Signed 64-bit integers.
    I64(ArrayD<i64>),
    /// 32-bit floats (also half-precision data, widened).
    F32(ArrayD<f32>),
    /// 64-bit floats.
    F64(ArrayD<f64>),
}

/// Applies `$body` to the array inside any variant, bound to `$a`.
macro_rules! each {
    ($data:expr, $a:ident => $body:expr) => {
        match $data {
            ArrayData::Bool($a) => $body,
            ArrayData::U8($a) => $body,
            ArrayData::U16($a) => $body,
            ArrayData::U32($a) => $body,
            ArrayData::U64($a) => $body,
            ArrayData::I8($a) => $body,
            ArrayData::I16($a) => $body,
            ArrayData::I32($a) => $body,
            ArrayData::I64($a) => $body,
            ArrayData::F32($a) => $body,
            ArrayData::F64($a) => $body,
        }
    };
}

/// Conversions of one element.
trait Elem: Copy {
    fn f64(self) -> f64;
    fn f32(self) -> f32;
    /// The value as a label, or `None` if it is not a whole number that fits in `i64`.
    fn label(self) -> Option<i64>;
    fn text(self) -> String;
}

macro_rules! int_elem {
    ($($t:ty),*) => {$(
        impl Elem for $t {
            fn f64(self) -> f64 { self as f64 }
            fn f32(self) -> f32 { self as f32 }
            fn label(self) -> Option<i64> { i64::try_from(self).ok() }
            fn text(self) -> String { self.to_string() }
        }
    )*};
}
int_elem!(u8, u16, u32, u64, i8, i16, i32, i64);

impl Elem for bool {
    fn f64(self) -> f64 {
        f64::from(u8::from(self))
    }
    fn f32(self) -> f32 {
        f32::from(u8::from(self))
    }
    fn label(self) -> Option<i64> {
        Some(i64::from(self))
    }
    fn text(self) -> String {
        self.to_string()
    }
}

/// Largest magnitude below which every `f64` whole number converts to `i64` exactly.
const I64_LIMIT: f64 = 9_223_372_036_854_775_808.0;

impl Elem for f32 {
    fn f64(self) -> f64 {
        f64::from(self)
    }
    fn f32(self) -> f32 {
        self
    }
    fn label(self) -> Option<i64> {
        f64::from(self).label()
    }
    fn text(self) -> String {
        self.to_string()
    }
}

impl Elem for f64 {
    fn f64(self) -> f64 {
        self
    }
    fn f32(self) -> f32 {
        self as f32
    }
    fn label(self) -> Option<i64> {
        (self.is_finite() && self.fract() == 0.0 && self.abs() < I64_LIMIT).then_some(self as i64)
    }
    fn text(self) -> String {
        self.to_string()
    }
}

fn labels_of<T: Elem>(a: &ArrayD<T>) -> Result<ArrayD<i64>, IoError> {
    let mut out = Vec::with_capacity(a.len());
    for &x in a.iter() {
        match x.label() {
            Some(l) => out.push(l),
            None => {
                // Find the index of the first bad value (in logical order, like `out`).
                let flat = out.len();
                let mut index = vec![0; a.ndim()];
                let mut rest = flat;
                for (ax, &d) in a.shape().iter().enumerate().rev() {
                    index[ax] = rest % d;
                    rest /= d;
                }
                return Err(IoError::NotLabels {
                    path: PathBuf::new(),
                    value: x.text(),
                    index,
                });
            }
        }
    }
    Ok(ArrayD::from_shape_vec(a.raw_dim(), out).expect("same number of elements"))
}

impl ArrayData {
    /// The shape of the array.
    pub fn shape(&self) -> &[usize] {
        each!(self, a => a.shape())
    }

    /// The number of dimensions.
    pub fn ndim(&self) -> usize {
        self.shape().len()
    }

    /// The number of elements.
    pub fn len(&self) -> usize {
        each!(self, a => a.len())
    }

    /// Whether the array has no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The element type, as numpy names it: `bool`, `uint8` … `uint64`, `int8` … `int64`,
    /// `float32`, `float64`.
    pub fn dtype_name(&self) -> &'static str {
        match self {
            ArrayData::Bool(_) => "bool",
            ArrayData::U8(_) => "uint8",
            ArrayData::U16(_) => "uint16",
            ArrayData::U32(_) => "uint32",
            ArrayData::U64(_) => "uint64",
            ArrayData::I8(_) => "int8",
            ArrayData::I16(_) => "int16",
            ArrayData::I32(_) => "int32",
            ArrayData::I64(_) => "int64",
            ArrayData::F32(_) => "float32",
            ArrayData::F64(_) => "float64",
        }
    }

    /// Whether the elements are floating point.
    pub fn is_float(&self) -> bool {
        matches!(self, ArrayData::F32(_) | ArrayData::F64(_))
    }

    /// The values as `f32` (`true` is 1; wide integers are rounded to the nearest `f32`).
    pub fn to_f32(&self) -> ArrayD<f32> {
        each!(self, a => a.mapv(Elem::f32))
    }

    /// The values as `f64` (`true` is 1; 64-bit integers beyond 2^53 are rounded).
    pub fn to_f64(&self) -> ArrayD<f64> {
        each!(self, a => a.mapv(Elem::f64))
    }

    /// The values as integer labels.
    ///
    /// Integers and booleans convert as they are. Floats are accepted only if every value is a
    /// finite whole number (so `2.0` is label 2). A `u64` above `i64::MAX`, a fraction, NaN or
    /// an infinity gives [`IoError::NotLabels`] naming the first such value and its index
    /// (with an empty path; [`Volume::to_labels`] names the file).
    ///
    /// ```
    /// use ndarray::{arr2, ArrayD};
    /// use segloss_io::ArrayData;
    ///
    /// let ok = ArrayData::F32(arr2(&[[0.0f32, 2.0], [1.0, 0.0]]).into_dyn());
    /// assert_eq!(ok.to_labels().unwrap(), arr2(&[[0i64, 2], [1, 0]]).into_dyn());
    ///
    /// let bad = ArrayData::F64(arr2(&[[0.0, 1.0], [0.5, 0.0]]).into_dyn());
    /// let msg = bad.to_labels().unwrap_err().to_string();
    /// assert_eq!(msg, "expected integer labels, found 0.5 at index [1, 0]");
    /// ```
    pub fn to_labels(&self) -> Result<ArrayD<i64>, IoError> {
        each!(self, a => labels_of(a))
    }
}

macro_rules! from_array {
    ($($variant:ident: $t:ty),*) => {$(
        impl From<ArrayD<$t>> for ArrayData {
            fn from(a: ArrayD<$t>) -> Self {
                ArrayData::$variant(a)
            }
        }
    )*};
}
from_array!(Bool: bool, U8: u8, U16: u16, U32: u32, U64: u64, I8: i8, I16: i16, I32: i32,
    I64: i64, F32: f32, F64: f64);

/// An image or volume read from disk: its data plus geometry.
#[derive(Debug, Clone, PartialEq)]
pub struct Volume {
    /// The array, in the order described in the [crate docs](crate).
    pub data: ArrayData,
    /// The size of a voxel along each axis of `data` (NIfTI `pixdim[1..=ndim]`, absolute
    /// values), or `None` when the file does not say (`.npy`, PNG, TIFF) or a value is zero or
    /// not finite.
    pub spacing: Option<Vec<f64>>,
    /// The file it came from (`<memory>` for the readers of bytes).
    pub source: PathBuf,
    /// The NIfTI header, to copy the geometry from when writing.
    nifti: Option<nifti::Header>,
}

impl Volume {
    /// A volume that did not come from a NIfTI file (so has no header to copy).
    pub fn new(data: ArrayData, spacing: Option<Vec<f64>>, source: impl Into<PathBuf>) -> Self {
        Volume {
            data,
            spacing,
            source: source.into(),
            nifti: None,
        }
    }

    /// Whether this volume came from a NIfTI file, so that [`write()`] can copy its geometry.
    pub fn is_nifti(&self) -> bool {
        self.nifti.is_some()
    }

    /// The shape of the data.
    pub fn shape(&self) -> &[usize] {
        self.data.shape()
    }

    /// [`ArrayData::to_labels`], with the error naming [`Volume::source`].
    pub fn to_labels(&self) -> Result<ArrayD<i64>, IoError> {
        self.data
            .to_labels()
            .map_err(|e| e.with_path(self.source.clone()))
    }
}

/// The file formats, as told by a file name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileFormat {
    /// NumPy `.npy`.
    Npy,
    /// `.png`.
    Png,
    /// `.tif` or `.tiff`.
    Tiff,
    /// `.nii` (`gz: false`) or `.nii.gz` (`gz: true`).
    Nifti {
        /// Whether the name ends in `.gz`.
        gz: bool,
    },
}

impl FileFormat {
    /// The format a file name stands for (case-insensitive), or `None`.
    pub fn from_path(path: &Path) -> Option<FileFormat> {
        let name = path.file_name()?.to_string_lossy().to_ascii_lowercase();
        if name.ends_with(".npy") {
            Some(FileFormat::Npy)
        } else if name.ends_with(".png") {
            Some(FileFormat::Png)
        } else if name.ends_with(".tif") || name.ends_with(".tiff") {
            Some(FileFormat::Tiff)
        } else if name.ends_with(".nii") {
            Some(FileFormat::Nifti { gz: false })
        } else if name.ends_with(".nii.gz") {
            Some(FileFormat::Nifti { gz: true })
        } else {
            None
        }
    }
}

const READ_EXTENSIONS: &str = ".npy, .png, .tif, .tiff, .nii or .nii.gz";
const WRITE_EXTENSIONS: &str = ".npy, .tif, .tiff, .nii or .nii.gz";

/// Reads an array or image, choosing the format by the file name's extension
/// (see the [crate docs](crate)).
pub fn read(path: impl AsRef<Path>) -> Result<Volume, IoError> {
    let path = path.as_ref();
    match FileFormat::from_path(path) {
        Some(FileFormat::Npy) => read_npy(path),
        Some(FileFormat::Png) => read_png(path),
        Some(FileFormat::Tiff) => read_tiff(path),
        Some(FileFormat::Nifti { .. }) => read_nifti(path),
        None => Err(IoError::UnknownExtension {
            path: path.to_path_buf(),
            expected: READ_EXTENSIONS,
        }),
    }
}

/// Opens a file; the length is `None` for something that is not a regular file (a pipe).
fn open(path: &Path) -> Result<(File, Option<u64>), IoError> {
    let file = File::open(path).map_err(|e| read_err(path, e))?;
    let meta = file.metadata().map_err(|e| read_err(path, e))?;
    if meta.is_dir() {
        return Err(read_err(
            path,
            std::io::Error::other("it is a folder, expected a file"),
        ));
    }
    Ok((file, meta.is_file().then_some(meta.len())))
}

fn read_all(path: &Path) -> Result<Vec<u8>, IoError> {
    let (file, len) = open(path)?;
    read_rest(file, len, path)
}

fn read_rest(mut file: File, len: Option<u64>, path: &Path) -> Result<Vec<u8>, IoError> {
    let len = len.and_then(|l| usize::try_from(l).ok()).unwrap_or(0);
    let mut v = Vec::with_capacity(len);
    file.read_to_end(&mut v).map_err(|e| read_err(path, e))?;
    Ok(v)
}

/// Reads a NumPy `.npy` file (any numeric dtype, either byte order, C or Fortran order,
/// format 1.0/2.0/3.0). The data is read straight into the array, without a copy of the file.
///
/// Extra bytes after the data are an error, like missing ones.
pub fn read_npy(path: impl AsRef<Path>) -> Result<Volume, IoError> {
    let path = path.as_ref();
    let (file, len) = open(path)?;
    let data = match len {
        Some(len) => npy::parse(&mut BufReader::new(file), len, path)?,
        None => {
            // A pipe: its length is only known once it is read.
            let bytes = read_rest(file, None, path)?;
            npy::parse(&mut &bytes[..], bytes.len() as u64, path)?
        }
    };
    Ok(Volume::new(data, None, path))
}

/// [`read_npy`] on the bytes of a file in memory.
pub fn npy_from_bytes(bytes: &[u8]) -> Result<Volume, IoError> {
    let path = Path::new(MEMORY);
    let data = npy::parse(&mut &bytes[..], bytes.len() as u64, path)?;
    Ok(Volume::new(data, None, path))
}

/// Reads a greyscale PNG as `[H, W]`: `u8` for 1/2/4/8-bit images (the raw sample values, so a
/// 1-bit mask reads as 0/1), `u16` for 16-bit ones. Transparency (`tRNS`) is ignored; only the
/// first frame of an animated PNG is read.
///
/// RGB, RGBA, grey+alpha and palette images are refused (`expected a greyscale image, found
/// RGB`), even when every pixel happens to be grey: convert them to greyscale first.
pub fn read_png(path: impl AsRef<Path>) -> Result<Volume, IoError> {
    let path = path.as_ref();
    let bytes = read_all(path)?;
    let data = png_io::decode(&bytes, path)?;
    Ok(Volume::new(data, None, path))
}

/// [`read_png`] on the bytes of a file in memory.
pub fn png_from_bytes(bytes: &[u8]) -> Result<Volume, IoError> {
    let path = Path::new(MEMORY);
    Ok(Volume::new(png_io::decode(bytes, path)?, None, path))
}

/// Reads a greyscale TIFF: one page as `[H, W]`, several pages as a volume `[pages, H, W]`.
///
/// Samples may be 8/16/32/64-bit unsigned or signed integers or 16/32/64-bit floats
/// (half floats are widened to `f32`); uncompressed, PackBits, LZW or Deflate. All pages must
/// have one size and sample type. Colour images and 1/2/4-bit images are refused.
pub fn read_tiff(path: impl AsRef<Path>) -> Result<Volume, IoError> {
    let path = path.as_ref();
    let bytes = read_all(path)?;
    let data = tiff_io::decode(&bytes, path)?;
    Ok(Volume::new(data, None, path))
}

/// [`read_tiff`] on the bytes of a file in memory.
pub fn tiff_from_bytes(bytes: &[u8]) -> Result<Volume, IoError> {
    let path = Path::new(MEMORY);
    Ok(Volume::new(tiff_io::decode(bytes, path)?, None, path))
}

/// Reads a single-file NIfTI-1 or NIfTI-2 volume (`.nii`, or `.nii.gz`: compression is detected
/// from the content, not the name).
///
/// - **Shape**: `dim[1..=dim[0]]` as stored, so `[x, y, z]` for a 3D scan (the file's first
///   index varies fastest; the array is still returned in C layout). Trailing dimensions of
///   size 1 beyond the third are dropped (a `[x, y, z, 1]` volume reads as `[x, y, z]`); any
///   other 4D or higher volume is refused. A 3D volume with `z = 1` stays 3D.
/// - **Spacing**: `|pixdim[1..=ndim]|` of the (squeezed) shape; `None` if any is zero or not
///   finite. Units (`xyzt_units`) are not converted.
/// - **Element type**: any real datatype (`uint8`/`int8`/…/`uint64`/`int64`, `float32`,
///   `float64`); binary, complex, RGB and 128-bit float data are refused.
/// - **Scaling**: as nibabel's `get_fdata`, `scl_slope`/`scl_inter` are applied when the slope
///   is finite, non-zero and the pair is not (1, 0); the result is `f32` for data of up to 16
///   bits or `f32`, else `f64`. Label maps are normally stored unscaled and keep their integer
///   type.
/// - Extensions are skipped; bytes after the voxel data are ignored.
pub fn read_nifti(path: impl AsRef<Path>) -> Result<Volume, IoError> {
    let path = path.as_ref();
    let (mut file, len) = open(path)?;
    let Some(len) = len else {
        // A pipe cannot seek: read it whole.
        let bytes = read_rest(file, None, path)?;
        return nifti_bytes(&bytes, path);
    };
    let mut magic = [0u8; 2];
    let got = npy::read_up_to(&mut file, &mut magic).map_err(|e| read_err(path, e))?;
    let gz = got == 2 && magic == [0x1f, 0x8b];
    let mut isize_hint = None;
    if gz && len >= 18 {
        let mut t = [0u8; 4];
        file.seek(SeekFrom::End(-4))
            .and_then(|_| file.read_exact(&mut t))
            .map_err(|e| read_err(path, e))?;
        isize_hint = Some(u32::from_le_bytes(t));
    }
    file.seek(SeekFrom::Start(0))
        .map_err(|e| read_err(path, e))?;
    let d = nifti::decode(
        nifti::Source {
            reader: BufReader::new(file),
            gz,
            stored_len: Some(len),
            isize_hint,
        },
        path,
    )?;
    Ok(Volume {
        data: d.data,
        spacing: d.spacing,
        source: path.to_path_buf(),
        nifti: Some(d.header),
    })
}

/// [`read_nifti`] on the bytes of a file in memory (gzip-compressed or not).
pub fn nifti_from_bytes(bytes: &[u8]) -> Result<Volume, IoError> {
    nifti_bytes(bytes, Path::new(MEMORY))
}

fn nifti_bytes(bytes: &[u8], path: &Path) -> Result<Volume, IoError> {
    let gz = bytes.starts_with(&[0x1f, 0x8b]);
    let isize_hint = (gz && bytes.len() >= 18).then(|| {
        let t = &bytes[bytes.len() - 4..];
        u32::from_le_bytes([t[0], t[1], t[2], t[3]])
    });
    let d = nifti::decode(
        nifti::Source {
            reader: bytes,
            gz,
            stored_len: Some(bytes.len() as u64),
            isize_hint,
        },
        path,
    )?;
    Ok(Volume {
        data: d.data,
        spacing: d.spacing,
        source: path.to_path_buf(),
        nifti: Some(d.header),
    })
}

/// How to write a file.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriteOptions {
    /// Replace an existing file (otherwise [`IoError::Exists`]).
    pub force: bool,
}

fn write_err(path: &Path, detail: impl Into<String>) -> IoError {
    IoError::Write {
        path: path.to_path_buf(),
        detail: detail.into(),
    }
}

/// The folder a file is written into (`.` for a bare file name).
fn folder_of(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Refuses an existing output (unless `opts.force`) and a folder given as the output.
fn check_name(path: &Path, opts: WriteOptions) -> Result<(), IoError> {
    if !opts.force && path.symlink_metadata().is_ok() {
        return Err(IoError::Exists {
            path: path.to_path_buf(),
        });
    }
    if path.is_dir() {
        return Err(write_err(path, "it is a folder, expected a file name"));
    }
    Ok(())
}

/// Checks, before any work is done, that `path` could be written: it must not exist unless
/// `opts.force`, and its folder must exist and accept new files (a temporary file is created
/// and removed to find out).
///
/// The writers check this again themselves; calling it first lets a program fail before a
/// long computation rather than after.
pub fn check_output(path: impl AsRef<Path>, opts: WriteOptions) -> Result<(), IoError> {
    let path = path.as_ref();
    check_name(path, opts)?;
    temp_in(path).map(drop)
}

/// [`check_output`] without creating a file: refuses an existing output (unless `opts.force`), a
/// folder given as the output and a missing output folder, by a few `stat` calls. Whether the
/// folder accepts new files is found out by the write itself (which checks everything again).
pub fn check_output_quick(path: impl AsRef<Path>, opts: WriteOptions) -> Result<(), IoError> {
    let path = path.as_ref();
    check_name(path, opts)?;
    let dir = folder_of(path);
    if !dir.is_dir() {
        return Err(write_err(
            dir,
            if dir.exists() {
                "not a folder"
            } else {
                "the folder does not exist"
            },
        ));
    }
    Ok(())
}

fn temp_in(path: &Path) -> Result<tempfile::NamedTempFile, IoError> {
    let dir = folder_of(path);
    if !dir.is_dir() {
        return Err(write_err(
            dir,
            if dir.exists() {
                "not a folder"
            } else {
                "the folder does not exist"
            },
        ));
    }
    let mut b = tempfile::Builder::new();
    b.prefix(".segloss-").suffix(".tmp");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        // As for any new file: 0666 less the umask (not tempfile's default of 0600).
        b.permissions(std::fs::Permissions::from_mode(0o666));
    }
    b.tempfile_in(dir)
        .map_err(|e| write_err(dir, format!("cannot create a file in this folder: {e}")))
}

/// Writes through a temporary file in the same folder, renamed into place when complete (not
/// fsynced: see the crate docs).
fn atomic_write(
    path: &Path,
    opts: WriteOptions,
    body: impl FnOnce(&mut File) -> Result<(), String>,
) -> Result<(), IoError> {
    if !opts.force && path.symlink_metadata().is_ok() {
        return Err(IoError::Exists {
            path: path.to_path_buf(),
        });
    }
    let mut tmp = temp_in(path)?;
    body(tmp.as_file_mut()).map_err(|d| write_err(path, d))?;
    // Only a file (or a link) is swapped out: a folder at `path` makes the rename below fail.
    let replaces_file = opts.force && path.symlink_metadata().is_ok_and(|m| !m.is_dir());
    if replaces_file && exchange(tmp.path(), path) {
        // The temporary name now holds the replaced file: dropping `tmp` removes it.
        return Ok(());
    }
    let res = if opts.force {
        tmp.persist(path)
    } else {
        tmp.persist_noclobber(path)
    };
    res.map(drop).map_err(|e| {
        if e.error.kind() == std::io::ErrorKind::AlreadyExists {
            IoError::Exists {
                path: path.to_path_buf(),
            }
        } else {
            write_err(path, e.error.to_string())
        }
    })
}

/// Swaps the files `a` and `b` in one step (both must exist; Linux's `renameat2` with
/// `RENAME_EXCHANGE`); `false` when they were not swapped (`b` missing, or a file system or kernel
/// without the call), leaving both as they were.
#[cfg(target_os = "linux")]
fn exchange(a: &Path, b: &Path) -> bool {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let (Ok(ca), Ok(cb)) = (
        CString::new(a.as_os_str().as_bytes()),
        CString::new(b.as_os_str().as_bytes()),
    ) else {
        return false;
    };
    // SAFETY: two valid NUL-terminated paths that outlive the call; the call reads nothing else
    // and either swaps the two directory entries or fails without a change.
    let r = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            ca.as_ptr(),
            libc::AT_FDCWD,
            cb.as_ptr(),
            libc::RENAME_EXCHANGE,
        )
    };
    r == 0
}

/// Elsewhere: never swapped (the caller renames over the old file).
#[cfg(not(target_os = "linux"))]
fn exchange(_a: &Path, _b: &Path) -> bool {
    false
}

fn buffered(
    file: &mut File,
    f: impl FnOnce(&mut BufWriter<&mut File>) -> std::io::Result<()>,
) -> Result<(), String> {
    let mut w = BufWriter::with_capacity(1 << 20, file);
    f(&mut w).and_then(|_| w.flush()).map_err(|e| e.to_string())
}

/// Writes any [`ArrayData`] as a C-order little-endian `.npy` file (format 1.0), whatever the
/// file name, atomically.
pub fn write_npy(
    path: impl AsRef<Path>,
    data: &ArrayData,
    opts: WriteOptions,
) -> Result<(), IoError> {
    atomic_write(path.as_ref(), opts, |f| {
        buffered(f, |w| npy::encode(w, data))
    })
}

/// Writes an `f32` array as `<f4` `.npy` (C order, whatever the array's layout), whatever the
/// file name, atomically.
pub fn write_npy_f32(
    path: impl AsRef<Path>,
    data: &ArrayD<f32>,
    opts: WriteOptions,
) -> Result<(), IoError> {
    atomic_write(path.as_ref(), opts, |f| npy_floats(f, data))
}

/// Writes an `f64` array as `<f8` `.npy`, whatever the file name, atomically.
pub fn write_npy_f64(
    path: impl AsRef<Path>,
    data: &ArrayD<f64>,
    opts: WriteOptions,
) -> Result<(), IoError> {
    atomic_write(path.as_ref(), opts, |f| npy_floats(f, data))
}

/// The element types of written maps: `f32` and `f64` (sealed).
pub trait MapFloat: Copy + Default + Send + Sync + sealed::Sealed + 'static {}
impl MapFloat for f32 {}
impl MapFloat for f64 {}

mod sealed {
    use std::io::{Seek, Write};

    use tiff::encoder::{colortype, TiffEncoder, TiffKind};

    /// What a writer needs to know about a map's element type.
    pub trait Sealed: Copy {
        /// The `.npy` type string (`<f4`, `<f8`).
        const NPY_DESCR: &'static str;
        /// NIfTI `datatype` (16 float32, 64 float64).
        const NIFTI_DATATYPE: i16;
        /// Bytes per element.
        const SIZE: usize;
        /// Appends the little-endian bytes of `self` to `out`.
        fn put_le(self, out: &mut Vec<u8>);
        /// Writes one TIFF page of `w`×`h` samples.
        fn tiff_page<W: Write + Seek, K: TiffKind>(
            enc: &mut TiffEncoder<W, K>,
            w: u32,
            h: u32,
            s: &[Self],
        ) -> Result<(), String>;
    }

    macro_rules! map_float {
        ($t:ty, $descr:literal, $dt:literal, $colour:ty) => {
            impl Sealed for $t {
                const NPY_DESCR: &'static str = $descr;
                const NIFTI_DATATYPE: i16 = $dt;
                const SIZE: usize = std::mem::size_of::<$t>();
                #[inline]
                fn put_le(self, out: &mut Vec<u8>) {
                    out.extend_from_slice(&self.to_le_bytes());
                }
                fn tiff_page<W: Write + Seek, K: TiffKind>(
                    enc: &mut TiffEncoder<W, K>,
                    w: u32,
                    h: u32,
                    s: &[Self],
                ) -> Result<(), String> {
                    enc.write_image::<$colour>(w, h, s)
                        .map(drop)
                        .map_err(|e| e.to_string())
                }
            }
        };
    }
    map_float!(f32, "<f4", 16, colortype::Gray32Float);
    map_float!(f64, "<f8", 64, colortype::Gray64Float);
}
/// The bytes of a float slice as stored little-endian (the slice itself on a little-endian
/// machine, a converted copy otherwise).
fn le_bytes<T: MapFloat>(s: &[T]) -> std::borrow::Cow<'_, [u8]> {
    if cfg!(target_endian = "little") {
        // SAFETY: f32/f64 have no padding and every byte pattern is a valid u8; same lifetime,
        // `size_of_val(s)` bytes.
        std::borrow::Cow::Borrowed(unsafe {
            std::slice::from_raw_parts(s.as_ptr().cast::<u8>(), std::mem::size_of_val(s))
        })
    } else {
        let mut v = Vec::with_capacity(std::mem::size_of_val(s));
        for &x in s {
            x.put_le(&mut v);
        }
        std::borrow::Cow::Owned(v)
    }
}

/// Writes a float array as `.npy` (header, then the data in one write when it is in standard
/// layout).
fn npy_floats<T: MapFloat>(f: &mut File, data: &ArrayD<T>) -> Result<(), String> {
    let header = npy::header_bytes(T::NPY_DESCR, data.shape());
    let mut run = || -> std::io::Result<()> {
        match data.as_slice() {
            Some(s) => {
                f.write_all(&header)?;
                f.write_all(&le_bytes(s))
            }
            None => {
                let mut w = BufWriter::with_capacity(1 << 20, &mut *f);
                w.write_all(&header)?;
                let mut buf = Vec::with_capacity(1 << 16);
                for &x in data.iter() {
                    x.put_le(&mut buf);
                    if buf.len() >= (1 << 16) - 8 {
                        w.write_all(&buf)?;
                        buf.clear();
                    }
                }
                w.write_all(&buf)?;
                w.flush()
            }
        }
    };
    run().map_err(|e| e.to_string())
}

/// Writes an `f32` array, choosing the format by the extension, atomically:
///
/// - `.npy`: `<f4`, C order.
/// - `.tif`/`.tiff`: `f32` greyscale; a 2D array `[H, W]` is one page, a 3D array
///   `[pages, H, W]` one page per slice (uncompressed; BigTIFF past 3 GiB).
/// - `.nii`/`.nii.gz`: `float32` NIfTI-1 (NIfTI-2 if a size exceeds 32767), shape as given with
///   the first index fastest (the layout [`read_nifti`] returns). When `like` came from a NIfTI
///   file its geometry is copied: `pixdim`, `qform`/`sform` codes, quaternion, offsets and
///   `srow` rows, units, slice timing and description; intent, scaling and calibration are
///   reset. Otherwise the voxel size is `like`'s [`Volume::spacing`], or 1.
///
/// PNG is not written (`IoError::UnknownExtension`). [`write_map`] writes `f64` arrays the
/// same way.
pub fn write(
    path: impl AsRef<Path>,
    data: &ArrayD<f32>,
    like: Option<&Volume>,
    opts: WriteOptions,
) -> Result<(), IoError> {
    write_map(path, data, like, opts)
}

/// [`write()`] for `f32` or `f64` arrays: `.npy` `<f4`/`<f8`, TIFF 32/64-bit float samples,
/// NIfTI `float32`/`float64`.
///
/// ```
/// use ndarray::ArrayD;
/// use segloss_io::{read, write_map, WriteOptions};
///
/// let dir = tempfile::tempdir()?;
/// let path = dir.path().join("w.nii");
/// let a = ArrayD::from_shape_vec(vec![2, 2], vec![0.5f64, 1.0, 1.5, 2.0])?;
/// write_map(&path, &a, None, WriteOptions::default())?;
/// let v = read(&path)?;
/// assert_eq!(v.data.dtype_name(), "float64");
/// assert_eq!(v.data.to_f64(), a);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn write_map<T: MapFloat>(
    path: impl AsRef<Path>,
    data: &ArrayD<T>,
    like: Option<&Volume>,
    opts: WriteOptions,
) -> Result<(), IoError> {
    let path = path.as_ref();
    match FileFormat::from_path(path) {
        Some(FileFormat::Npy) => atomic_write(path, opts, |f| npy_floats(f, data)),
        Some(FileFormat::Tiff) => {
            // Refuse bad shapes before touching the disk.
            if !matches!(data.ndim(), 2 | 3) || data.is_empty() {
                return Err(write_err(
                    path,
                    format!(
                        "TIFF holds a non-empty 2D image or 3D stack of pages; found shape {:?}",
                        data.shape()
                    ),
                ));
            }
            atomic_write(path, opts, |f| {
                let mut w = BufWriter::with_capacity(1 << 20, f);
                tiff_io::encode(&mut w, data)?;
                w.flush().map_err(|e| e.to_string())
            })
        }
        Some(FileFormat::Nifti { gz }) => {
            let header = nifti::header_for::<T>(
                data.shape(),
                like.and_then(|v| v.nifti.as_ref()),
                like.and_then(|v| v.spacing.as_deref()),
            )
            .map_err(|d| write_err(path, d))?;
            atomic_write(path, opts, |f| {
                if gz {
                    let w = BufWriter::with_capacity(1 << 20, f);
                    let mut z = flate2::write::GzEncoder::new(w, flate2::Compression::new(1));
                    nifti::encode(&mut z, &header, data)
                        .and_then(|_| z.finish())
                        .and_then(|mut w| w.flush())
                        .map_err(|e| e.to_string())
                } else {
                    buffered(f, |w| nifti::encode(w, &header, data))
                }
            })
        }
        Some(FileFormat::Png) | None => Err(IoError::UnknownExtension {
            path: path.to_path_buf(),
            expected: WRITE_EXTENSIONS,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_write_leaves_nothing_behind() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("out.npy");
        let e = atomic_write(&p, WriteOptions::default(), |f| {
            f.write_all(b"half a file").map_err(|e| e.to_string())?;
            Err("disk full".into())
        })
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            format!("cannot write {}: disk full", p.display())
        );
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 0);

        // Over an existing file with force: the old file survives the failure.
        std::fs::write(&p, b"old").unwrap();
        atomic_write(&p, WriteOptions { force: true }, |_| Err("boom".into())).unwrap_err();
        assert_eq!(std::fs::read(&p).unwrap(), b"old");
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 1);
    }

    #[test]
    fn race_with_another_writer_is_refused_without_force() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("out.npy");
        // The file appears while we are writing.
        let e = atomic_write(&p, WriteOptions::default(), |_| {
            std::fs::write(&p, b"theirs").map_err(|e| e.to_string())
        })
        .unwrap_err();
        assert!(matches!(e, IoError::Exists { .. }), "{e}");
        assert_eq!(std::fs::read(&p).unwrap(), b"theirs");
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 1);
    }
}
