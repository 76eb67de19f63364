//! # segloss-py
//!
//! The native part of the Python package `segloss`: [`segloss_core`]'s maps and metrics on NumPy
//! arrays, with the GIL released while Rust works. The Python package (`python/segloss`) wraps these
//! functions with argument normalisation (dtypes, spacing), docstrings and the MONAI-compatible
//! metrics and PyTorch losses; this module is `segloss._native`.
//!
//! Every function takes the name of its array argument for its error messages, which are the CLI's:
//! `"mask: array of shape [2, 3, 4, 5]: expected a 1D, 2D or 3D image"`.
#![deny(missing_docs)]

use ndarray::{ArrayD, ArrayViewD, Dimension, IxDyn};
use numpy::{IntoPyArray, PyArrayDyn, PyArrayMethods, PyUntypedArray, PyUntypedArrayMethods};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use segloss_core::{ClassWeight, Connectivity, CoreError, Voxel, WeightMapConfig};

/// The element types an input array may have.
trait Elem: Voxel + numpy::Element + PartialOrd + 'static {
    /// The value as `f64`, to check floats for NaN and integrality.
    fn as_f64(self) -> f64;
    /// Whether the type is a float type.
    const FLOAT: bool;
}

macro_rules! elem {
    ($($t:ty: $float:expr),*) => {$(
        impl Elem for $t {
            #[inline]
            fn as_f64(self) -> f64 {
                self as f64
            }
            const FLOAT: bool = $float;
        }
    )*};
}
elem!(u8: false, i8: false, u16: false, i16: false, u32: false, i32: false, u64: false, i64: false,
    f32: true, f64: true);

impl Elem for bool {
    #[inline]
    fn as_f64(self) -> f64 {
        f64::from(u8::from(self))
    }
    const FLOAT: bool = false;
}

/// Runs `$body` with `$v` bound to an `ArrayViewD` of the array `$arr` (any supported dtype), or
/// returns a `TypeError` naming `$name` and the dtype.
macro_rules! with_view {
    ($arr:expr, $name:expr, |$v:ident| $body:expr) => {{
        let arr: &Bound<'_, PyUntypedArray> = $arr;
        with_view!(@try arr, $name, $v, $body;
            bool, u8, i8, u16, i16, u32, i32, u64, i64, f32, f64)
    }};
    (@try $arr:ident, $name:expr, $v:ident, $body:expr; $($t:ty),*) => {{
        $(
            if let Ok(a) = $arr.cast::<PyArrayDyn<$t>>() {
                let ro = a.try_readonly().map_err(|e| PyValueError::new_err(format!("{}: {e}", $name)))?;
                let $v: ArrayViewD<'_, $t> = ro.as_array();
                return $body;
            }
        )*
        Err(PyTypeError::new_err(format!(
            "{}: unsupported dtype {}: expected bool, an integer or a float dtype",
            $name,
            $arr.dtype()
        )))
    }};
}

/// The CLI's checks of an image's shape and spacing, with `name` in place of the file name.
fn check_image(name: &str, shape: &[usize], spacing: Option<&[f64]>) -> PyResult<()> {
    if shape.is_empty() || shape.len() > 3 {
        return Err(PyValueError::new_err(format!(
            "{name}: array of shape {shape:?}: expected a 1D, 2D or 3D image"
        )));
    }
    if shape.contains(&0) {
        return Err(PyValueError::new_err(format!(
            "{name}: empty image of shape {shape:?}: expected at least one voxel"
        )));
    }
    if let Some(s) = spacing {
        if s.len() != shape.len() {
            return Err(PyValueError::new_err(format!(
                "{name}: spacing {s:?} has {} values for a {}D image of shape {shape:?}",
                s.len(),
                shape.len()
            )));
        }
        if let Some((axis, &value)) = s
            .iter()
            .enumerate()
            .find(|(_, v)| !(v.is_finite() && **v > 0.0))
        {
            return Err(PyValueError::new_err(format!(
                "{name}: {}",
                CoreError::BadSpacing { axis, value }
            )));
        }
    }
    Ok(())
}

/// A NaN in a float mask is an error, as in the CLI.
fn check_mask<T: Elem>(name: &str, a: &ArrayViewD<'_, T>) -> PyResult<()> {
    if T::FLOAT {
        if let Some(i) = a.iter().position(|x| x.as_f64().is_nan()) {
            return Err(PyValueError::new_err(format!(
                "{name}: NaN at flat index {i}: expected a mask (0 = background, non-zero = foreground)"
            )));
        }
    }
    Ok(())
}

/// A float label image must hold integers, as in the CLI.
fn check_labels<T: Elem>(name: &str, a: &ArrayViewD<'_, T>) -> PyResult<()> {
    if T::FLOAT {
        if let Some((i, x)) = a
            .indexed_iter()
            .find(|(_, x)| x.as_f64().fract() != 0.0 || !x.as_f64().is_finite())
        {
            return Err(PyValueError::new_err(format!(
                "{name}: expected integer labels, found {} at index {:?}",
                x.as_f64(),
                i.slice()
            )));
        }
    }
    Ok(())
}

fn core_err(name: &str) -> impl Fn(CoreError) -> PyErr + '_ {
    move |e| PyValueError::new_err(format!("{name}: {e}"))
}

/// A float map of either precision, returned as a NumPy array.
enum Map {
    F32(ArrayD<f32>),
    F64(ArrayD<f64>),
}

impl Map {
    fn into_py(self, py: Python<'_>) -> Py<PyAny> {
        match self {
            Map::F32(a) => a.into_pyarray(py).into_any().unbind(),
            Map::F64(a) => a.into_pyarray(py).into_any().unbind(),
        }
    }
}

/// `double`: whether the output is float64 (else float32).
fn float_map<T: Elem>(
    py: Python<'_>,
    v: ArrayViewD<'_, T>,
    name: &str,
    double: bool,
    f64_fn: impl FnOnce(&ArrayViewD<'_, T>) -> Result<ArrayD<f64>, CoreError> + Send,
    f32_fn: impl FnOnce(&ArrayViewD<'_, T>) -> Result<ArrayD<f32>, CoreError> + Send,
) -> PyResult<Py<PyAny>> {
    let m = py
        .detach(|| {
            if double {
                f64_fn(&v).map(Map::F64)
            } else {
                f32_fn(&v).map(Map::F32)
            }
        })
        .map_err(core_err(name))?;
    Ok(m.into_py(py))
}

/// Euclidean distance transform of a mask (non-zero = foreground): each foreground voxel's distance
/// to the nearest background voxel, 0 on the background (`squared`: its square).
#[pyfunction]
#[pyo3(signature = (mask, spacing=None, double=true, squared=false, name="mask"))]
fn edt(
    py: Python<'_>,
    mask: &Bound<'_, PyUntypedArray>,
    spacing: Option<Vec<f64>>,
    double: bool,
    squared: bool,
    name: &str,
) -> PyResult<Py<PyAny>> {
    check_image(name, mask.shape(), spacing.as_deref())?;
    let sp = spacing.as_deref();
    with_view!(mask, name, |v| {
        check_mask(name, &v)?;
        if squared {
            float_map(
                py,
                v,
                name,
                double,
                |a| segloss_core::edt_squared(a, sp),
                |a| segloss_core::edt_squared(a, sp),
            )
        } else {
            float_map(
                py,
                v,
                name,
                double,
                |a| segloss_core::edt(a, sp),
                |a| segloss_core::edt(a, sp),
            )
        }
    })
}

/// Signed distance map (Kervadec's `one_hot2dist`): distance to the object outside, `-(distance to
/// the background - 1)` inside; 0 everywhere for an empty or full mask.
#[pyfunction]
#[pyo3(signature = (mask, spacing=None, double=true, name="mask"))]
fn signed_distance(
    py: Python<'_>,
    mask: &Bound<'_, PyUntypedArray>,
    spacing: Option<Vec<f64>>,
    double: bool,
    name: &str,
) -> PyResult<Py<PyAny>> {
    check_image(name, mask.shape(), spacing.as_deref())?;
    let sp = spacing.as_deref();
    with_view!(mask, name, |v| {
        check_mask(name, &v)?;
        float_map(
            py,
            v,
            name,
            double,
            |a| segloss_core::signed_distance_map(a, sp),
            |a| segloss_core::signed_distance_map(a, sp),
        )
    })
}

/// Distance of every voxel to the nearest voxel of the other side of the mask's boundary (both
/// sides): the distance to the background inside, to the object outside.
#[pyfunction]
#[pyo3(signature = (mask, spacing=None, double=true, name="mask"))]
fn two_sided_edt(
    py: Python<'_>,
    mask: &Bound<'_, PyUntypedArray>,
    spacing: Option<Vec<f64>>,
    double: bool,
    name: &str,
) -> PyResult<Py<PyAny>> {
    check_image(name, mask.shape(), spacing.as_deref())?;
    let sp = spacing.as_deref();
    with_view!(mask, name, |v| {
        check_mask(name, &v)?;
        float_map(
            py,
            v,
            name,
            double,
            |a| segloss_core::two_sided_edt(a, sp),
            |a| segloss_core::two_sided_edt(a, sp),
        )
    })
}

/// Multi-label EDT: each labelled voxel's distance to the nearest voxel with another label
/// (background included), 0 on the background.
#[pyfunction]
#[pyo3(signature = (labels, spacing=None, double=false, name="labels"))]
fn multilabel_edt(
    py: Python<'_>,
    labels: &Bound<'_, PyUntypedArray>,
    spacing: Option<Vec<f64>>,
    double: bool,
    name: &str,
) -> PyResult<Py<PyAny>> {
    check_image(name, labels.shape(), spacing.as_deref())?;
    let sp = spacing.as_deref();
    with_view!(labels, name, |v| {
        check_labels(name, &v)?;
        float_map(
            py,
            v,
            name,
            double,
            |a| segloss_core::multilabel_edt(a, sp),
            |a| segloss_core::multilabel_edt(a, sp),
        )
    })
}

fn parse_connectivity(s: &str) -> PyResult<Connectivity> {
    s.parse::<Connectivity>().map_err(PyValueError::new_err)
}

/// Connected components of a mask, numbered 1..=K in raster order; returns `(labels, K)`.
#[pyfunction]
#[pyo3(signature = (mask, connectivity="full", name="mask"))]
fn connected_components(
    py: Python<'_>,
    mask: &Bound<'_, PyUntypedArray>,
    connectivity: &str,
    name: &str,
) -> PyResult<(Py<PyAny>, usize)> {
    let c = parse_connectivity(connectivity)?;
    check_image(name, mask.shape(), None)?;
    with_view!(mask, name, |v| {
        check_mask(name, &v)?;
        let (labels, k) = py
            .detach(|| segloss_core::connected_components(&v, c))
            .map_err(core_err(name))?;
        Ok((labels.into_pyarray(py).into_any().unbind(), k))
    })
}

/// Whether a label image holds more than one distinct non-zero value (never for `bool`).
fn several_labels<T: Elem>(v: &ArrayViewD<'_, T>) -> bool {
    if std::any::TypeId::of::<T>() == std::any::TypeId::of::<bool>() {
        return false;
    }
    let mut first: Option<T> = None;
    for &x in v.iter() {
        if x.is_foreground() {
            match first {
                None => first = Some(x),
                Some(f) if !f.same_label(x) => return true,
                _ => {}
            }
        }
    }
    false
}

/// U-Net weight map. `instances`: `Some(true)`: every distinct non-zero value is one instance;
/// `Some(false)`: a binary mask whose connected components are the instances; `None`: the former
/// when the image holds more than one distinct non-zero value, else the latter.
#[pyfunction]
#[pyo3(signature = (labels, w0=10.0, sigma=5.0, class_weights="balanced", spacing=None,
    instances=None, connectivity="full", double=false, name="labels"))]
#[allow(clippy::too_many_arguments)]
fn unet_weight_map(
    py: Python<'_>,
    labels: &Bound<'_, PyUntypedArray>,
    w0: f64,
    sigma: f64,
    class_weights: &str,
    spacing: Option<Vec<f64>>,
    instances: Option<bool>,
    connectivity: &str,
    double: bool,
    name: &str,
) -> PyResult<Py<PyAny>> {
    let config = WeightMapConfig {
        w0,
        sigma,
        class_weight: class_weights
            .parse::<ClassWeight>()
            .map_err(PyValueError::new_err)?,
        connectivity: parse_connectivity(connectivity)?,
        ..WeightMapConfig::default()
    };
    config
        .validate()
        .map_err(|e| PyValueError::new_err(format!("w0={w0} sigma={sigma}: {e}")))?;
    check_image(name, labels.shape(), spacing.as_deref())?;
    let sp = spacing.as_deref();
    with_view!(labels, name, |v| {
        let inst = match instances {
            Some(i) => i,
            None => several_labels(&v),
        };
        if inst {
            check_labels(name, &v)?;
            float_map(
                py,
                v,
                name,
                double,
                |a| segloss_core::unet_weight_map_from_instances(a, sp, &config),
                |a| segloss_core::unet_weight_map_from_instances(a, sp, &config),
            )
        } else {
            check_mask(name, &v)?;
            float_map(
                py,
                v,
                name,
                double,
                |a| segloss_core::unet_weight_map(a, sp, &config),
                |a| segloss_core::unet_weight_map(a, sp, &config),
            )
        }
    })
}

/// Binary masks of the same shape as two bool views (the Python side converts other dtypes).
fn bool_pair<'a>(
    pred: &'a Bound<'_, PyUntypedArray>,
    target: &'a Bound<'_, PyUntypedArray>,
) -> PyResult<(
    numpy::PyReadonlyArrayDyn<'a, bool>,
    numpy::PyReadonlyArrayDyn<'a, bool>,
)> {
    let p = pred.cast::<PyArrayDyn<bool>>().map_err(|_| {
        PyTypeError::new_err(format!("y_pred: dtype {}: expected bool", pred.dtype()))
    })?;
    let t = target
        .cast::<PyArrayDyn<bool>>()
        .map_err(|_| PyTypeError::new_err(format!("y: dtype {}: expected bool", target.dtype())))?;
    if p.shape() != t.shape() {
        return Err(PyValueError::new_err(format!(
            "y_pred has shape {:?} but y has shape {:?}: expected masks of the same shape",
            p.shape(),
            t.shape()
        )));
    }
    let ro = |a: &Bound<'a, PyArrayDyn<bool>>| {
        a.try_readonly()
            .map_err(|e| PyValueError::new_err(e.to_string()))
    };
    Ok((ro(p)?, ro(t)?))
}

/// Surface metrics of one binary prediction against one binary target (bool arrays of 1 to 3
/// axes): `(pred_voxels, target_voxels, hd, hd95, assd, nsd)`, the distances `None` when either
/// mask is empty.
#[pyfunction]
#[pyo3(signature = (pred, target, spacing=None, tolerance=1.0))]
#[allow(clippy::type_complexity)]
fn binary_surface_metrics(
    py: Python<'_>,
    pred: &Bound<'_, PyUntypedArray>,
    target: &Bound<'_, PyUntypedArray>,
    spacing: Option<Vec<f64>>,
    tolerance: f64,
) -> PyResult<(usize, usize, Option<f64>, Option<f64>, Option<f64>, f64)> {
    let (p, t) = bool_pair(pred, target)?;
    check_image("y_pred", p.shape(), spacing.as_deref())?;
    let (pv, tv) = (p.as_array(), t.as_array());
    let sp = spacing.as_deref();
    let m = py
        .detach(|| segloss_core::binary_metrics(&pv, &tv, sp, tolerance))
        .map_err(|e| PyValueError::new_err(e.to_string()))?;
    Ok((m.pred_voxels, m.target_voxels, m.hd, m.hd95, m.assd, m.nsd))
}

/// An optional NumPy array.
type OptArray = Option<Py<PyAny>>;

/// Surface distances from `pred`'s surface voxels to `target`'s surface, and back (C order of the
/// surface voxels): `(d_pred_to_target, d_target_to_pred)`, each `None` when the other mask has no
/// surface voxel.
#[pyfunction]
#[pyo3(signature = (pred, target, spacing=None))]
fn surface_distances(
    py: Python<'_>,
    pred: &Bound<'_, PyUntypedArray>,
    target: &Bound<'_, PyUntypedArray>,
    spacing: Option<Vec<f64>>,
) -> PyResult<(OptArray, OptArray)> {
    let (p, t) = bool_pair(pred, target)?;
    check_image("y_pred", p.shape(), spacing.as_deref())?;
    let (pv, tv) = (p.as_array(), t.as_array());
    let sp = spacing.as_deref();
    let (a, b) = py.detach(|| {
        rayon::join(
            || segloss_core::surface_distances(&pv, &tv, sp),
            || segloss_core::surface_distances(&tv, &pv, sp),
        )
    });
    let err = |e: CoreError| PyValueError::new_err(e.to_string());
    let to_py = |d: Option<Vec<f64>>| {
        d.map(|d| {
            ArrayD::from_shape_vec(IxDyn(&[d.len()]), d)
                .expect("one axis of the vector's length")
                .into_pyarray(py)
                .into_any()
                .unbind()
        })
    };
    Ok((to_py(a.map_err(err)?), to_py(b.map_err(err)?)))
}

/// The surface voxels of a mask (face-connected erosion, outside the array is background).
#[pyfunction]
#[pyo3(signature = (mask, name="mask"))]
fn surface(py: Python<'_>, mask: &Bound<'_, PyUntypedArray>, name: &str) -> PyResult<Py<PyAny>> {
    check_image(name, mask.shape(), None)?;
    with_view!(mask, name, |v| {
        check_mask(name, &v)?;
        let s = py
            .detach(|| segloss_core::surface(&v))
            .map_err(core_err(name))?;
        Ok(s.into_pyarray(py).into_any().unbind())
    })
}

/// The number of threads of the pool that runs the kernels.
#[pyfunction]
fn num_threads() -> usize {
    rayon::current_num_threads()
}

/// The native module `segloss._native`.
#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(edt, m)?)?;
    m.add_function(wrap_pyfunction!(signed_distance, m)?)?;
    m.add_function(wrap_pyfunction!(two_sided_edt, m)?)?;
    m.add_function(wrap_pyfunction!(multilabel_edt, m)?)?;
    m.add_function(wrap_pyfunction!(connected_components, m)?)?;
    m.add_function(wrap_pyfunction!(unet_weight_map, m)?)?;
    m.add_function(wrap_pyfunction!(binary_surface_metrics, m)?)?;
    m.add_function(wrap_pyfunction!(surface_distances, m)?)?;
    m.add_function(wrap_pyfunction!(surface, m)?)?;
    m.add_function(wrap_pyfunction!(num_threads, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
