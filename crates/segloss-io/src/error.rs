//! The error type of this crate.

use std::fmt;
use std::path::{Path, PathBuf};

/// Everything that can go wrong while reading or writing a file.
///
/// Every variant carries the path of the file concerned, and its `Display` is a single line
/// that names the file, the offending value and what was expected, so a command-line tool can
/// print it verbatim (and exit with status 2).
///
/// Readers that work on bytes in memory (such as [`crate::npy_from_bytes`]) use the path
/// `<memory>`; [`crate::ArrayData::to_labels`] uses an empty path, which `Display` omits.
#[derive(Debug, thiserror::Error)]
pub enum IoError {
    /// The file could not be opened or read (missing, permission denied, I/O error).
    #[error("cannot read {}: {}", show(path), one_line(&source.to_string()))]
    Read {
        /// The file.
        path: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a valid file of its format: bad magic, bad header, truncated data,
    /// a size that does not match the shape.
    #[error("{}: not a valid {format} file: {}", show(path), one_line(detail))]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// The format that was expected (`.npy`, `PNG`, `TIFF`, `NIfTI`).
        format: &'static str,
        /// What is wrong, naming the value found and what was expected.
        detail: String,
    },
    /// The file is valid but holds something this crate does not accept: an unsupported
    /// element type, a colour image where a greyscale one is needed, a 4D volume.
    #[error("{}: {}", show(path), one_line(detail))]
    Unsupported {
        /// The file.
        path: PathBuf,
        /// What was found and what was expected.
        detail: String,
    },
    /// The file name does not end in a known extension.
    #[error(
        "{}: unknown file type; expected a name ending in {}",
        show(path),
        expected
    )]
    UnknownExtension {
        /// The file.
        path: PathBuf,
        /// The extensions that are accepted here, e.g. `.npy, .png, .tif, .tiff, .nii, .nii.gz`.
        expected: &'static str,
    },
    /// A float array was used as a label map but holds a value that is not a whole number.
    #[error(
        "{}expected integer labels, found {value} at index {index:?}",
        prefix(path)
    )]
    NotLabels {
        /// The file (empty when the array did not come from a file).
        path: PathBuf,
        /// The first offending value, as text (`0.5`, `NaN`, `18446744073709551615`).
        value: String,
        /// Its index.
        index: Vec<usize>,
    },
    /// The output file exists and overwriting was not allowed.
    #[error(
        "{} already exists; refusing to overwrite it (use --force to allow)",
        show(path)
    )]
    Exists {
        /// The output file.
        path: PathBuf,
    },
    /// The output file could not be written (its folder is missing or not writable, disk full,
    /// or an array that the format cannot hold).
    #[error("cannot write {}: {}", show(path), one_line(detail))]
    Write {
        /// The output file (or its folder when the folder is the problem).
        path: PathBuf,
        /// What went wrong.
        detail: String,
    },
}

impl IoError {
    /// The path of the file this error is about (empty if none).
    pub fn path(&self) -> &Path {
        match self {
            IoError::Read { path, .. }
            | IoError::Corrupt { path, .. }
            | IoError::Unsupported { path, .. }
            | IoError::UnknownExtension { path, .. }
            | IoError::NotLabels { path, .. }
            | IoError::Exists { path }
            | IoError::Write { path, .. } => path,
        }
    }

    /// The same error about another path (used to name the real file once the bytes-based
    /// reader has failed).
    pub fn with_path(mut self, new: impl Into<PathBuf>) -> Self {
        let new = new.into();
        match &mut self {
            IoError::Read { path, .. }
            | IoError::Corrupt { path, .. }
            | IoError::Unsupported { path, .. }
            | IoError::UnknownExtension { path, .. }
            | IoError::NotLabels { path, .. }
            | IoError::Exists { path }
            | IoError::Write { path, .. } => *path = new,
        }
        self
    }
}

/// The path as shown in messages.
fn show(path: &Path) -> ShowPath<'_> {
    ShowPath(path)
}

struct ShowPath<'a>(&'a Path);

impl fmt::Display for ShowPath<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&one_line(&self.0.display().to_string()))
    }
}

fn prefix(path: &Path) -> String {
    if path.as_os_str().is_empty() {
        String::new()
    } else {
        format!("{}: ", show(path))
    }
}

/// Collapses any line breaks so that a message stays on one line.
pub(crate) fn one_line(s: &str) -> String {
    if s.contains(['\n', '\r']) {
        s.split(['\n', '\r'])
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .collect::<Vec<_>>()
            .join(" ")
    } else {
        s.to_string()
    }
}

/// The path used by the readers that work on bytes in memory.
pub(crate) const MEMORY: &str = "<memory>";

pub(crate) fn corrupt(path: &Path, format: &'static str, detail: impl Into<String>) -> IoError {
    IoError::Corrupt {
        path: path.to_path_buf(),
        format,
        detail: detail.into(),
    }
}

pub(crate) fn unsupported(path: &Path, detail: impl Into<String>) -> IoError {
    IoError::Unsupported {
        path: path.to_path_buf(),
        detail: detail.into(),
    }
}

pub(crate) fn read_err(path: &Path, source: std::io::Error) -> IoError {
    IoError::Read {
        path: path.to_path_buf(),
        source,
    }
}
