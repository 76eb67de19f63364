//! U-Net weight maps (Ronneberger et al. 2015), exact within a stated tolerance, in O(image) memory.
//!
//! `w(x) = w_c(x) + w0 · exp(−(d1(x) + d2(x))² / (2σ²))`, the border term on background voxels only, with
//! `d1`, `d2` the distances (in spacing units) from `x` to the nearest and the second-nearest instance. The
//! term is 0 when the image has fewer than two instances. `w_c` is the class weight ([`ClassWeight`]).
//!
//! # Algorithm
//! The border term falls below the tolerance `ε` once `d1 + d2 > B = σ·√(2·ln(w0/ε))`, so an instance only
//! matters within distance `B` of itself, and only next to another instance.
//!
//! 1-D and 2-D images (the common case) take the crop-free path of `weightmap/plane.rs`: instances as
//! runs along the rows (a run-based labelling of the mask), per instance the squared distances along
//! the columns over its bounding box only, and per row a lower envelope over the instance's columns
//! evaluated only where a border term with a neighbouring instance is possible (a lens between the
//! two boxes); each value is offered as one of the two smallest at that voxel.
//!
//! 3-D images take the separable path of `weightmap/volume.rs`: one pass per axis over the whole
//! volume, each voxel carrying its nearest instance's squared distance and label and the squared
//! distance to the nearest *other* instance (enough for the next pass: the nearest site of another
//! instance than `L` at a line position is its nearest one unless that is `L`, else its second). The
//! first pass sweeps each column both ways from the instance voxels; the later ones take each
//! line's minima 16 positions at a time by a vectorised brute force over the sites within the band
//! of the block (fewer where a bound shows the rest cannot be the minimum; on the last pass `d1`
//! only up to `B/2` and `d2` up to `B − d1`). No per-instance crops: the cost is a few passes over
//! the volume whatever the number of instances and how many touch.
//!
//! Memory stays O(image). Voxels with fewer than two instances within `B` get no border term, which is
//! off by less than `ε` (default 5·10⁻⁵) from the exact definition.

use std::any::TypeId;
use std::mem::MaybeUninit;

use ndarray::{Array, ArrayBase, Data, Dimension};

use crate::edt::{c_order, to_array};
use crate::element::{Float, Voxel};
use crate::error::{CoreError, Result};
use crate::grid::Grid;
use crate::label::{label_buffer, relabel_buffer, Connectivity};

mod plane;
mod volume;

/// The class-weight term `w_c` of the U-Net weight map.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub enum ClassWeight {
    /// `N / (2·N_k)` for the class `k` ∈ {background, foreground} of the voxel, `N_k` its voxel count in the
    /// image and `N` the image's size: both classes weigh the same in total. An image with a single class
    /// gets 0.5 everywhere.
    #[default]
    Balanced,
    /// 1 everywhere.
    None,
}

impl std::str::FromStr for ClassWeight {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "balanced" => Ok(ClassWeight::Balanced),
            "none" => Ok(ClassWeight::None),
            other => Err(format!(
                "unknown class weight {other:?}: expected balanced or none"
            )),
        }
    }
}

/// Parameters of the U-Net weight map.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WeightMapConfig {
    /// Height of the border term, `w0` ≥ 0 (default 10).
    pub w0: f64,
    /// Width of the border term in spacing units, `σ` > 0 (default 5).
    pub sigma: f64,
    /// The class weight (default [`ClassWeight::Balanced`]).
    pub class_weight: ClassWeight,
    /// How voxels of a binary mask connect into instances (default [`Connectivity::Full`]); unused by
    /// [`unet_weight_map_from_instances`].
    pub connectivity: Connectivity,
    /// Largest allowed difference from the exact definition, `ε` > 0 (default 5·10⁻⁵).
    pub tolerance: f64,
    /// Whether one map may split its rows over rayon's threads (default `true`: a single large
    /// image uses every thread). `false` computes it on the calling thread, for callers that
    /// already run one map per task (a batch in parallel), where the splitting only adds work.
    /// The values are the same either way.
    pub parallel: bool,
}

impl Default for WeightMapConfig {
    fn default() -> Self {
        WeightMapConfig {
            w0: 10.0,
            sigma: 5.0,
            class_weight: ClassWeight::Balanced,
            connectivity: Connectivity::Full,
            tolerance: 5e-5,
            parallel: true,
        }
    }
}

impl WeightMapConfig {
    /// Checks the parameters' ranges.
    ///
    /// # Errors
    /// [`CoreError::BadParameter`] naming the first parameter out of range.
    pub fn validate(&self) -> Result<()> {
        if !(self.w0.is_finite() && self.w0 >= 0.0) {
            return Err(CoreError::BadParameter {
                name: "w0",
                value: self.w0,
                expected: "a finite number >= 0",
            });
        }
        if !(self.sigma.is_finite() && self.sigma > 0.0) {
            return Err(CoreError::BadParameter {
                name: "sigma",
                value: self.sigma,
                expected: "a finite number > 0",
            });
        }
        if !(self.tolerance.is_finite() && self.tolerance > 0.0) {
            return Err(CoreError::BadParameter {
                name: "tolerance",
                value: self.tolerance,
                expected: "a finite number > 0",
            });
        }
        Ok(())
    }

    /// The band `B = σ·√(2·ln(w0/ε))` beyond which `d1 + d2` makes the border term smaller than `ε`
    /// (0 when `w0 ≤ ε`).
    pub fn band(&self) -> f64 {
        if self.w0 <= self.tolerance {
            0.0
        } else {
            self.sigma * (2.0 * (self.w0 / self.tolerance).ln()).sqrt()
        }
    }
}

/// U-Net weight map of a binary mask, its instances being the connected components of the foreground
/// (non-zero voxels) with `config.connectivity`. 1 to 3 axes, distances in units of `spacing`.
///
/// # Errors
/// [`CoreError`] for an empty array, more than 3 axes, a bad spacing, or a parameter out of range.
///
/// ```
/// use ndarray::{array, Array2};
/// use segloss_core::{unet_weight_map, ClassWeight, WeightMapConfig};
///
/// // Two one-pixel cells with one background pixel between them.
/// let mask = array![[1, 0, 1]];
/// let config = WeightMapConfig { class_weight: ClassWeight::None, ..Default::default() };
/// let w: Array2<f64> = unet_weight_map(&mask, None, &config)?;
/// // d1 = d2 = 1 at the middle pixel: 1 + 10·exp(−4/50).
/// let middle = 1.0 + 10.0 * (-4.0f64 / 50.0).exp();
/// assert!((w[[0, 1]] - middle).abs() < 1e-12);
/// assert_eq!((w[[0, 0]], w[[0, 2]]), (1.0, 1.0));
///
/// // Balanced class weights: 2 foreground and 1 background pixel out of 3.
/// let w: Array2<f32> = unet_weight_map(&mask, None, &WeightMapConfig::default())?;
/// assert!((w[[0, 0]] - 0.75).abs() < 1e-6);
/// assert!((w[[0, 1]] - (1.5 + 10.0 * (-0.08f32).exp())).abs() < 1e-5);
/// # Ok::<(), segloss_core::CoreError>(())
/// ```
pub fn unet_weight_map<F: Float, T: Voxel, S: Data<Elem = T>, D: Dimension>(
    mask: &ArrayBase<S, D>,
    spacing: Option<&[f64]>,
    config: &WeightMapConfig,
) -> Result<Array<F, D>> {
    config.validate()?;
    let g = Grid::new(mask.shape(), spacing)?;
    let data = c_order(mask);
    let w = if g.shape[0] == 1 {
        let runs = plane::label_runs(&data, &g, config.connectivity);
        weight_map_buffer::<F, T>(&data, &g, config, Source::Plane(&runs))
    } else {
        let (labels, k) = label_buffer(&data, &g, config.connectivity);
        weight_map_buffer::<F, u32>(&labels, &g, config, Source::Labels(&labels, k))
    };
    to_array(mask.raw_dim(), w)
}

/// U-Net weight map of an instance-label image: every distinct non-zero value is one instance (which
/// need not be connected), 0 is the background. Otherwise as [`unet_weight_map`].
///
/// # Errors
/// As [`unet_weight_map`].
///
/// ```
/// use ndarray::{array, Array2};
/// use segloss_core::{unet_weight_map_from_instances, ClassWeight, WeightMapConfig};
///
/// // Two touching cells, 5 and 9: no background pixel between them, so no border term anywhere
/// // but at the background pixel, 1 from cell 9 and 2 from cell 5.
/// let cells = array![[5u16, 9, 0]];
/// let config = WeightMapConfig { class_weight: ClassWeight::None, ..Default::default() };
/// let w: Array2<f64> = unet_weight_map_from_instances(&cells, None, &config)?;
/// assert_eq!(w[[0, 0]], 1.0);
/// assert!((w[[0, 2]] - (1.0 + 10.0 * (-9.0f64 / 50.0).exp())).abs() < 1e-12);
/// # Ok::<(), segloss_core::CoreError>(())
/// ```
pub fn unet_weight_map_from_instances<F: Float, T: Voxel, S: Data<Elem = T>, D: Dimension>(
    instances: &ArrayBase<S, D>,
    spacing: Option<&[f64]>,
    config: &WeightMapConfig,
) -> Result<Array<F, D>> {
    config.validate()?;
    let g = Grid::new(instances.shape(), spacing)?;
    let data = c_order(instances);
    let (labels, k) = relabel_buffer(&data)?;
    let w = if g.shape[0] == 1 {
        let runs = plane::label_image_runs(&labels, k, &g);
        weight_map_buffer::<F, u32>(&labels, &g, config, Source::Plane(&runs))
    } else {
        weight_map_buffer::<F, u32>(&labels, &g, config, Source::Labels(&labels, k))
    };
    to_array(instances.raw_dim(), w)
}

/// [`unet_weight_map`] of a C-order binary mask given as a slice, written into `out`: the
/// allocation-free form for a loss or a data loader that fills one map per sample and channel of a
/// batch buffer in place.
///
/// # Errors
/// [`CoreError::ShapeMismatch`] when `mask` or `out` does not hold one value per voxel of `shape`;
/// otherwise as [`unet_weight_map`].
///
/// ```
/// use segloss_core::{unet_weight_map_into, ClassWeight, WeightMapConfig};
///
/// // Two one-pixel cells with one background pixel between them (as in `unet_weight_map`).
/// let config = WeightMapConfig { class_weight: ClassWeight::None, ..Default::default() };
/// let mut w = [0f64; 3];
/// unet_weight_map_into(&[true, false, true], &[1, 3], None, &config, &mut w)?;
/// assert_eq!((w[0], w[2]), (1.0, 1.0));
/// assert!((w[1] - (1.0 + 10.0 * (-4.0f64 / 50.0).exp())).abs() < 1e-12);
/// # Ok::<(), segloss_core::CoreError>(())
/// ```
pub fn unet_weight_map_into<F: Float>(
    mask: &[bool],
    shape: &[usize],
    spacing: Option<&[f64]>,
    config: &WeightMapConfig,
    out: &mut [F],
) -> Result<()> {
    // SAFETY: `MaybeUninit<F>` has the layout of `F`, and only initialised values are written
    // through the view (`F: Copy` has no destructor to skip).
    let slots = unsafe { &mut *(out as *mut [F] as *mut [MaybeUninit<F>]) };
    unet_weight_map_into_uninit(mask, shape, spacing, config, slots).map(|_| ())
}

/// [`unet_weight_map_into`] into a buffer that need not be initialised (a `Vec`'s spare
/// capacity, say, which then needs no zeroing): every slot is written, and the slice is returned
/// initialised.
///
/// # Errors
/// As [`unet_weight_map_into`]; on an error nothing is written.
///
/// ```
/// use segloss_core::{unet_weight_map_into_uninit, WeightMapConfig};
///
/// let mut buf: Vec<f32> = Vec::with_capacity(3);
/// let w = unet_weight_map_into_uninit(
///     &[true, false, true],
///     &[3],
///     None,
///     &WeightMapConfig::default(),
///     &mut buf.spare_capacity_mut()[..3],
/// )?;
/// assert!(w[1] > w[0]);
/// # Ok::<(), segloss_core::CoreError>(())
/// ```
pub fn unet_weight_map_into_uninit<'a, F: Float>(
    mask: &[bool],
    shape: &[usize],
    spacing: Option<&[f64]>,
    config: &WeightMapConfig,
    out: &'a mut [MaybeUninit<F>],
) -> Result<&'a mut [F]> {
    config.validate()?;
    let g = Grid::for_buffers(shape, spacing, &[mask.len(), out.len()])?;
    if g.shape[0] == 1 {
        let runs = plane::label_runs(mask, &g, config.connectivity);
        weight_map_into::<F, bool>(mask, &g, config, Source::Plane(&runs), out);
    } else {
        let (labels, k) = label_buffer(mask, &g, config.connectivity);
        weight_map_into::<F, u32>(&labels, &g, config, Source::Labels(&labels, k), out);
    }
    // SAFETY: `weight_map_into` writes every slot (its contract), so all are initialised.
    Ok(unsafe { &mut *(out as *mut [MaybeUninit<F>] as *mut [F]) })
}

/// `[lo, hi)` per padded axis.
type BBox = [[usize; 2]; 3];

/// The instances of a weight map.
enum Source<'a> {
    /// A label image with instances 1..=k.
    Labels(&'a [u32], usize),
    /// Runs along the rows of a one-plane image.
    Plane(&'a plane::Runs),
}

/// The weight map on grid `g` of the instances `source` of the foreground of `mask`.
fn weight_map_buffer<F: Float, T: Voxel>(
    mask: &[T],
    g: &Grid,
    config: &WeightMapConfig,
    source: Source<'_>,
) -> Vec<F> {
    let n = mask.len();
    let mut out: Vec<F> = Vec::with_capacity(n);
    weight_map_into(mask, g, config, source, &mut out.spare_capacity_mut()[..n]);
    // SAFETY: `weight_map_into` writes every one of the `n` slots.
    unsafe { out.set_len(n) };
    out
}

/// [`weight_map_buffer`] written into `out` (one slot per voxel), every slot written.
fn weight_map_into<F: Float, T: Voxel>(
    mask: &[T],
    g: &Grid,
    config: &WeightMapConfig,
    source: Source<'_>,
    out: &mut [MaybeUninit<F>],
) {
    let n = mask.len();
    let (k, n_fg) = match source {
        Source::Labels(labels, k) => (k, labels.iter().filter(|&&l| l != 0).count()),
        Source::Plane(runs) => (runs.k, runs.n_fg),
    };
    let n_bg = n - n_fg;
    let (w_bg, w_fg) = match config.class_weight {
        ClassWeight::None => (1.0, 1.0),
        ClassWeight::Balanced => {
            let w = |c: usize| {
                if c == 0 {
                    0.0
                } else {
                    n as f64 / (2.0 * c as f64)
                }
            };
            (w(n_bg), w(n_fg))
        }
    };
    // d1 + d2 never exceeds twice the image's diagonal: a larger band (a huge σ) changes nothing
    // but would overflow the index arithmetic and size tables by the band.
    let diagonal = (0..3)
        .map(|a| (g.shape[a] as f64 * g.spacing[a]).powi(2))
        .sum::<f64>()
        .sqrt();
    let band = config.band().min(2.0 * diagonal + 1.0);
    if k < 2 || band <= 0.0 || n_bg == 0 {
        for (o, v) in out.iter_mut().zip(mask) {
            o.write(F::from_f64(if v.is_foreground() { w_fg } else { w_bg }));
        }
        return;
    }
    let inv = 1.0 / (2.0 * config.sigma * config.sigma);
    let band2 = (band * band) as f32;
    let w0 = config.w0;
    let (f_bg, f_fg) = (F::from_f64(w_bg), F::from_f64(w_fg));
    // Class weights everywhere, then the border term on the background voxels of the rows' touched
    // column ranges (`dirty[r]` of rows of `row_len` voxels) whose two smallest squared distances are
    // within the band.
    let finish = |start: usize,
                  d1: &[f32],
                  d2: &[f32],
                  out: &mut [MaybeUninit<F>],
                  row_len: usize,
                  dirty: &[[u32; 2]]| {
        let mask = &mask[start..start + out.len()];
        if out.is_empty() {
            return;
        }
        if TypeId::of::<F>() == TypeId::of::<f32>() {
            // SAFETY: F is f32 (checked above), so the slot types are the same.
            let out = unsafe { &mut *(out as *mut [MaybeUninit<F>] as *mut [MaybeUninit<f32>]) };
            let (fg, bg) = (w_fg as f32, w_bg as f32);
            let mut term = Vec::new();
            // Per row: class weights outside the touched columns, and inside them the border term
            // added on the background (0 beyond the band), in f32 with a vectorised exp (the f64
            // libm exp was a third of the map's time); its rounding (a few ulp) is far below ε.
            for (r, (o, m)) in out
                .chunks_mut(row_len)
                .zip(mask.chunks(row_len))
                .enumerate()
            {
                let [lo, hi] = dirty[r].map(|x| (x as usize).min(o.len()));
                let hi = hi.max(lo);
                let at = r * row_len;
                let (a, b) = (&d1[at + lo..at + hi], &d2[at + lo..at + hi]);
                if let Some(bits) = T::as_bits(m) {
                    // A bool mask: border terms and class weights in one pass.
                    let terms = BorderTerms { band, inv, w0 };
                    finish_row_bits(o, bits, a, b, lo, &terms, [fg, bg]);
                    continue;
                }
                term.resize(hi - lo, 0f32);
                border_terms(a, b, &mut term, band, inv, w0);
                class_fill(&mut o[..lo], &m[..lo], fg, bg);
                for ((o, &t), v) in o[lo..hi].iter_mut().zip(&term).zip(&m[lo..hi]) {
                    o.write(if v.is_foreground() { fg } else { bg + t });
                }
                class_fill(&mut o[hi..], &m[hi..], fg, bg);
            }
            return;
        }
        for (o, v) in out.iter_mut().zip(mask) {
            *o = MaybeUninit::new(if v.is_foreground() { f_fg } else { f_bg });
        }
        for (r, &[lo, hi]) in dirty.iter().enumerate() {
            let (lo, hi) = (r * row_len + lo as usize, r * row_len + hi as usize);
            if lo >= hi {
                continue;
            }
            for (((o, &a), &b), v) in out[lo..hi]
                .iter_mut()
                .zip(&d1[lo..hi])
                .zip(&d2[lo..hi])
                .zip(&mask[lo..hi])
            {
                if b <= band2 && !v.is_foreground() {
                    let s = (a as f64).sqrt() + (b as f64).sqrt();
                    // Beyond the band the term is below the tolerance.
                    if s <= band {
                        o.write(F::from_f64(w_bg + w0 * (-(s * s) * inv).exp()));
                    }
                }
            }
        }
    };
    // `nearest_two` hands every one of the `n` slots to `finish`, which writes each one.
    match source {
        Source::Labels(labels, _) => {
            volume::volume_nearest_two(labels, g, band, config.parallel, out, &finish)
        }
        Source::Plane(runs) => {
            plane::plane_nearest_two(runs, g, band, config.parallel, out, &finish)
        }
    }
}

/// `w0·exp(−(√a + √b)²·inv)` where `√a + √b ≤ band`, else 0 (branch-free, for vectorised loops).
#[inline(always)]
fn border_term(a: f32, b: f32, band: f32, inv: f32, w0: f32) -> f32 {
    let s = a.sqrt() + b.sqrt();
    let t = w0 * crate::fastmath::exp_baseline(-(s * s) * inv);
    if s <= band {
        t
    } else {
        0.0
    }
}

/// The parameters of the border term `w0·exp(−(√a + √b)² · inv)` (0 where `√a + √b > band`).
struct BorderTerms {
    band: f64,
    inv: f64,
    w0: f64,
}

avx2_dispatch!(
    /// [`finish_row_bits_impl`], with AVX2 where the CPU has it.
    fn finish_row_bits(
        o: &mut [MaybeUninit<f32>],
        m: &[u8],
        d1: &[f32],
        d2: &[f32],
        lo: usize,
        terms: &BorderTerms,
        weights: [f32; 2],
    ) = finish_row_bits_impl
);

/// One finished row of a bool mask (`m`: bytes 0 or 1): the class weights `[fg, bg]` (`fg` on the
/// foreground, `bg` on the background) plus, on the background from column `lo` on, the border
/// terms of the two smallest squared distances `d1`, `d2` (as [`border_terms`], in the same pass).
#[inline(always)]
fn finish_row_bits_impl(
    o: &mut [MaybeUninit<f32>],
    m: &[u8],
    d1: &[f32],
    d2: &[f32],
    lo: usize,
    terms: &BorderTerms,
    [fg, bg]: [f32; 2],
) {
    let hi = lo + d1.len();
    let (band, inv, w0) = (terms.band as f32, terms.inv as f32, terms.w0 as f32);
    class_fill(&mut o[..lo], &m[..lo], fg, bg);
    for (((o, &a), &b), &v) in o[lo..hi]
        .iter_mut()
        .zip(d1)
        .zip(&d2[..d1.len()])
        .zip(&m[lo..hi])
    {
        let t = border_term(a, b, band, inv, w0);
        o.write(if v != 0 { fg } else { bg + t });
    }
    class_fill(&mut o[hi..], &m[hi..], fg, bg);
}

/// The class weights `fg` / `bg` of the voxels of `mask` into `out` (branch-free, vectorised).
#[inline(always)]
fn class_fill<T: Voxel>(out: &mut [MaybeUninit<f32>], mask: &[T], fg: f32, bg: f32) {
    for (o, v) in out.iter_mut().zip(mask) {
        o.write(if v.is_foreground() { fg } else { bg });
    }
}

avx2_dispatch!(
    /// [`border_terms_impl`], with AVX2 where the CPU has it.
    fn border_terms(d1: &[f32], d2: &[f32], out: &mut [f32], band: f64, inv: f64, w0: f64) =
        border_terms_impl
);

/// `w0·exp(−(√a + √b)² / (2σ²))` (`inv = 1 / (2σ²)`) where `√a + √b ≤ band`, else 0, for the two
/// smallest squared distances `a ≤ b` of each voxel of a row; in `f32`, branch-free (vectorised).
#[inline(always)]
fn border_terms_impl(d1: &[f32], d2: &[f32], out: &mut [f32], band: f64, inv: f64, w0: f64) {
    let (band, inv, w0) = (band as f32, inv as f32, w0 as f32);
    let n = out.len();
    let (d1, d2) = (&d1[..n], &d2[..n]);
    for i in 0..n {
        out[i] = border_term(d1[i], d2[i], band, inv, w0);
    }
}

/// Cuts the rows `[a, b)` into `t` stripes of about equal estimated work per worker by recursive
/// bisection, appending the stripe ends to `cuts`. A stripe's work: every crop that overlaps it runs
/// its sweeps in full (0.4 of its size) and its envelopes over its rows inside the stripe (0.6 of its
/// size, spread over its rows), and every voxel of the stripe is finished (0.2).
fn split_rows(
    spans: &[(usize, usize, f64)],
    plane: usize,
    a: usize,
    b: usize,
    t: usize,
    cuts: &mut Vec<usize>,
) {
    if t <= 1 || b - a < 2 {
        cuts.push(b);
        return;
    }
    let (t1, t2) = (t / 2, t - t / 2);
    // Costs of [a, r) and [r, b) for every r, from per-row histograms (O(crops + rows)).
    let n = b - a;
    let mut start_full = vec![0f64; n + 1]; // crops overlapping [a, r): start < r, end > a
    let mut end_full = vec![0f64; n + 1]; // crops overlapping [r, b): end > r, start < b
    let mut density = vec![0f64; n + 1]; // spread part, per row
    for &(lo, hi, size) in spans {
        if hi <= a || lo >= b {
            continue;
        }
        let (l, h) = (lo.max(a) - a, hi.min(b) - a);
        start_full[l] += 0.4 * size;
        end_full[h - 1] += 0.4 * size;
        let per = 0.6 * size / (hi - lo) as f64;
        density[l] += per;
        density[h] -= per;
    }
    // Prefix sums: left(r) uses starts before r; right(r) uses ends at or after r.
    let mut row_cost = vec![0f64; n];
    let mut run = 0.0;
    for i in 0..n {
        run += density[i];
        row_cost[i] = run + 0.2 * plane as f64;
    }
    let mut left = vec![0f64; n + 1];
    let (mut s_full, mut s_rows) = (0.0, 0.0);
    for r in 1..=n {
        s_full += start_full[r - 1];
        s_rows += row_cost[r - 1];
        left[r] = s_full + s_rows;
    }
    let mut right = vec![0f64; n + 1];
    let (mut e_full, mut e_rows) = (0.0, 0.0);
    for r in (0..n).rev() {
        e_full += end_full[r];
        e_rows += row_cost[r];
        right[r] = e_full + e_rows;
    }
    let best = (1..n)
        .min_by(|&x, &y| {
            let cx = (left[x] / t1 as f64).max(right[x] / t2 as f64);
            let cy = (left[y] / t1 as f64).max(right[y] / t2 as f64);
            cx.total_cmp(&cy)
        })
        .unwrap_or(n / 2);
    split_rows(spans, plane, a, a + best, t1, cuts);
    split_rows(spans, plane, a + best, b, t2, cuts);
}

/// The pairs `(i, j)` of instances whose boxes are at most `band` apart (spacing units), by a sort
/// and sweep along the longest axis (in sweep order); empty boxes are in none. Shared by the crop
/// path (3-D) and the plane path (1-D/2-D).
fn near_pairs(boxes: &[BBox], g: &Grid, band: f64) -> Vec<(usize, usize)> {
    let k = boxes.len();
    let ax = (0..3).max_by_key(|&a| g.shape[a]).unwrap_or(2);
    // Capped at the image: a huge band (σ large) must not overflow the sums below.
    let reach = ((band / g.spacing[ax]).ceil() as usize).min(g.shape[ax]);
    let mut order: Vec<usize> = (0..k)
        .filter(|&i| boxes[i][0][0] < boxes[i][0][1])
        .collect();
    order.sort_unstable_by_key(|&i| boxes[i][ax][0]);
    let gap2 = |a: &BBox, b: &BBox| -> f64 {
        (0..3)
            .map(|d| {
                let gap = b[d][0]
                    .saturating_sub(a[d][1] - 1)
                    .max(a[d][0].saturating_sub(b[d][1] - 1));
                let x = gap as f64 * g.spacing[d];
                x * x
            })
            .sum()
    };
    let mut pairs = Vec::new();
    for (oi, &i) in order.iter().enumerate() {
        for &j in &order[oi + 1..] {
            if boxes[j][ax][0] > boxes[i][ax][1] - 1 + reach {
                break;
            }
            if gap2(&boxes[i], &boxes[j]) <= band * band {
                pairs.push((i, j));
            }
        }
    }
    pairs
}
