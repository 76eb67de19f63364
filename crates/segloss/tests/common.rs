//! Shared helpers of the fixture tests: reading the oracle fixtures of `tests/fixtures/losses/`
//! (produced by `tools/reference/gen_losses.py` from PyTorch / MONAI / smp) and running a case
//! through the spec-built loss on the test device: burn's Flex backend, or the one named by
//! `SEGLOSS_TEST_DEVICE` (`flex`, or `wgpu` / `cuda` in a build with the cargo feature of that
//! name, e.g. `SEGLOSS_TEST_DEVICE=wgpu cargo test -p segloss --features wgpu`).

#![allow(dead_code)]

use std::path::PathBuf;

use burn::tensor::{DType, Device, Int, Tensor, TensorData};
use segloss::{Flat, LossReduction, LossSpec, SegLoss, Target};
use serde_json::Value;

/// Path of a fixture file under the workspace's `tests/fixtures/`.
pub fn fixture_path(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures")
        .join(rel)
}

/// A flat array with its shape.
#[derive(Debug, Clone)]
pub struct Arr {
    pub shape: Vec<usize>,
    pub data: Vec<f64>,
}

impl Arr {
    pub fn from_json(v: &Value) -> Arr {
        let shape = v["shape"]
            .as_array()
            .expect("shape")
            .iter()
            .map(|d| d.as_u64().expect("dim") as usize)
            .collect();
        let data = v["data"]
            .as_array()
            .expect("data")
            .iter()
            .map(|d| d.as_f64().unwrap_or(f64::NAN))
            .collect();
        Arr { shape, data }
    }
}

/// One oracle case.
#[derive(Debug, Clone)]
pub struct Case {
    pub name: String,
    pub spec: String,
    pub oracle: String,
    pub pred: Arr,
    pub target: Arr,
    pub target_is_labels: bool,
    pub weights: Option<Arr>,
    pub value: Arr,
    pub grad: Option<Arr>,
}

/// Reads every case of a fixture file.
pub fn load_cases(rel: &str) -> Vec<Case> {
    let path = fixture_path(rel);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read fixture {}: {e}", path.display()));
    let root: Value = serde_json::from_str(&text).expect("fixture JSON");
    root["cases"]
        .as_array()
        .expect("cases")
        .iter()
        .map(|c| {
            let value = if c["value"].is_number() {
                Arr {
                    shape: vec![1],
                    data: vec![c["value"].as_f64().unwrap()],
                }
            } else {
                Arr::from_json(&c["value"])
            };
            Case {
                name: c["name"].as_str().unwrap().to_string(),
                spec: c["spec"].as_str().unwrap().to_string(),
                oracle: c["oracle"].as_str().unwrap_or("").to_string(),
                pred: Arr::from_json(&c["pred"]),
                target: Arr::from_json(&c["target"]),
                target_is_labels: c["target"]["kind"].as_str() == Some("labels"),
                weights: if c["weights"].is_null() {
                    None
                } else {
                    Some(Arr::from_json(&c["weights"]))
                },
                value,
                grad: if c["grad"].is_null() {
                    None
                } else {
                    Some(Arr::from_json(&c["grad"]))
                },
            }
        })
        .collect()
}

fn flat(device: &Device, a: &Arr, dtype: DType) -> Flat {
    let n = a.data.len();
    Flat {
        values: Tensor::from_data(TensorData::new(a.data.clone(), [n]), (device, dtype)),
        shape: a.shape.clone(),
    }
}

/// The target of a case on a device.
pub fn target_of(device: &Device, c: &Case, pred: &Arr, dtype: DType) -> Target {
    if c.target_is_labels {
        let v: Vec<i64> = c.target.data.iter().map(|&x| x as i64).collect();
        let n = v.len();
        let t: Tensor<1, Int> = Tensor::from_data(TensorData::new(v, [n]), device);
        Target::labels_flat(t, c.target.shape.clone())
    } else {
        let _ = pred;
        let f = flat(device, &c.target, dtype);
        Target::mask_flat(f.values, f.shape)
    }
}

/// Runs a case with predictions `pred` (possibly perturbed) and returns the loss values and,
/// when `with_grad`, d(sum of loss)/d(pred).
pub fn run(c: &Case, pred: &Arr, dtype: DType, with_grad: bool) -> (Vec<f64>, Option<Vec<f64>>) {
    run_on_device(c, pred, dtype, with_grad, test_device())
}

/// [`run`] on a given device.
pub fn run_on_device(
    c: &Case,
    pred: &Arr,
    dtype: DType,
    with_grad: bool,
    base: Device,
) -> (Vec<f64>, Option<Vec<f64>>) {
    let loss = LossSpec::parse(&c.spec)
        .unwrap_or_else(|e| panic!("{}: {}", c.name, e.pretty()))
        .build()
        .unwrap_or_else(|e| panic!("{}: {e}", c.name));
    let device = if with_grad { base.autodiff() } else { base };
    let mut p = flat(&device, pred, dtype);
    if with_grad {
        p.values = p.values.require_grad();
    }
    let target = target_of(&device, c, pred, dtype);
    let weights = c.weights.as_ref().map(|w| flat(&device, w, dtype));
    let v = loss
        .loss_value(p.clone(), target, weights, LossReduction::Mean)
        .unwrap_or_else(|e| panic!("{}: {e}", c.name));
    let vals = to_vec(v.values.clone());
    let grad = if with_grad {
        let grads = v.values.sum().backward();
        Some(to_vec(p.values.grad(&grads).expect("gradient")))
    } else {
        None
    };
    (vals, grad)
}

pub fn to_vec<const D: usize>(t: Tensor<D>) -> Vec<f64> {
    t.into_data().convert::<f64>().try_to_vec::<f64>().unwrap()
}

/// Asserts `got ≈ want` elementwise: |g − w| ≤ rtol·|w| + atol.
pub fn assert_close(name: &str, what: &str, got: &[f64], want: &[f64], rtol: f64, atol: f64) {
    assert_eq!(got.len(), want.len(), "{name}: {what}: length");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            g.is_finite() && (g - w).abs() <= rtol * w.abs() + atol,
            "{name}: {what}[{i}]: got {g}, oracle {w} (|diff| = {:e}, rtol {rtol}, atol {atol})",
            (g - w).abs()
        );
    }
}

/// The largest magnitude of a slice (for gradient tolerances relative to the gradient's scale).
pub fn max_abs(v: &[f64]) -> f64 {
    v.iter().fold(0.0f64, |m, x| m.max(x.abs()))
}

/// The device of the fixture tests: `SEGLOSS_TEST_DEVICE` (`flex` by default).
///
/// # Panics
/// On a name this build has no backend for, naming the cargo feature to enable.
pub fn test_device() -> Device {
    match std::env::var("SEGLOSS_TEST_DEVICE").as_deref() {
        Err(_) | Ok("") | Ok("flex") => Device::flex(),
        #[cfg(feature = "wgpu")]
        Ok("wgpu") => Device::wgpu(burn::tensor::DeviceKind::DefaultDevice),
        #[cfg(feature = "cuda")]
        Ok("cuda") => Device::cuda(burn::tensor::DeviceIndex::Default),
        Ok(other) => panic!(
            "SEGLOSS_TEST_DEVICE={other}: expected flex, or wgpu / cuda in a build with \
             `--features {other}`"
        ),
    }
}

/// Whether the test device is Flex, where the fused CPU kernels run (elsewhere every loss takes
/// the composed path).
pub fn on_flex() -> bool {
    matches!(
        std::env::var("SEGLOSS_TEST_DEVICE").as_deref(),
        Err(_) | Ok("") | Ok("flex")
    )
}

/// Whether the fixture tests run in f64 on the test device: Flex and CUDA do. wgpu is f32 only
/// here: an adapter may report f64 support (Mesa's lavapipe does), but its f64 results are wrong,
/// so its f64 cases are skipped (the CLI refuses a float64 prediction there).
pub fn f64_supported() -> bool {
    std::env::var("SEGLOSS_TEST_DEVICE").as_deref() != Ok("wgpu")
        && test_device().supports_dtype(DType::F64)
}

/// Which implementation of a loss a fixture check runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Path {
    /// `f32` with the fused CPU kernels on (the default path; losses without a fused kernel, or
    /// options it does not cover, compose their formula).
    F32Fused,
    /// `f32` with the fused kernels off for this thread: the composed burn-operation path.
    F32Composed,
    /// `f64` (always composed).
    F64,
}

/// [`run`] on one [`Path`]; also returns how many fused kernels ran (on this thread).
pub fn run_on(
    c: &Case,
    pred: &Arr,
    path: Path,
    with_grad: bool,
) -> (Vec<f64>, Option<Vec<f64>>, usize) {
    let before = segloss::fused_calls();
    let (v, g) = match path {
        Path::F32Fused => segloss::with_fused_kernels(true, || run(c, pred, DType::F32, with_grad)),
        Path::F32Composed => {
            segloss::with_fused_kernels(false, || run(c, pred, DType::F32, with_grad))
        }
        Path::F64 => run(c, pred, DType::F64, with_grad),
    };
    (v, g, segloss::fused_calls() - before)
}

/// The relative value tolerance of the f64 comparisons ([`check_case`]).
pub const F64_VALUE_RTOL: f64 = 1e-5;

/// Compares one case on one path with its oracle: f32 (the tolerances for f32 inputs: value
/// 2e-4 relative, gradient 1e-4 relative to the gradient's scale) or f64 (value 1e-5, gradient
/// 1e-4, tighter in practice). Returns how many fused kernels ran.
pub fn check_case(c: &Case, path: Path) -> usize {
    check_case_with(c, path, F64_VALUE_RTOL)
}

/// [`check_case`] with another relative value tolerance in f64 (for a loss whose map is exact
/// only within a stated tolerance).
pub fn check_case_with(c: &Case, path: Path, f64_value_rtol: f64) -> usize {
    let (v, g, fused) = run_on(c, &c.pred, path, c.grad.is_some());
    let what = |w: &str| format!("{w} ({path:?})");
    if path == Path::F64 {
        assert_close(
            &c.name,
            &what("value"),
            &v,
            &c.value.data,
            f64_value_rtol,
            1e-9,
        );
    } else {
        let scale = max_abs(&c.value.data).max(1e-3);
        assert_close(
            &c.name,
            &what("value"),
            &v,
            &c.value.data,
            2e-4,
            2e-6 * scale,
        );
    }
    if let (Some(g), Some(want)) = (g, &c.grad) {
        let gs = max_abs(&want.data).max(1e-12);
        let atol = if path == Path::F64 { 1e-6 } else { 1e-4 };
        assert_close(&c.name, &what("grad"), &g, &want.data, 1e-4, atol * gs);
    }
    fused
}

/// Checks a whole fixture file against the spec-built losses: values and gradients in f32 (on
/// the default path: fused where a kernel applies) and, where flex supports it, in f64.
pub fn check_fixture_file(rel: &str, filter: impl Fn(&Case) -> bool) -> usize {
    let cases = load_cases(rel);
    let mut n = 0;
    for c in cases.iter().filter(|c| filter(c)) {
        n += 1;
        check_case(c, Path::F32Fused);
        if f64_supported() {
            check_case(c, Path::F64);
        }
    }
    n
}

/// What [`check_fixture_paths`] ran.
#[derive(Debug, Default)]
pub struct PathsChecked {
    /// Cases checked.
    pub cases: usize,
    /// Cases whose f32 run took a fused kernel.
    pub fused: usize,
}

/// [`check_fixture_file`] on every path: f32 with the fused kernels on, f32 with them off (this
/// thread only, see `segloss::with_fused_kernels`), and f64 where flex supports it (relative
/// value tolerance `f64_value_rtol`, [`F64_VALUE_RTOL`] unless the loss states another).
pub fn check_fixture_paths(
    rel: &str,
    filter: impl Fn(&Case) -> bool,
    f64_value_rtol: f64,
) -> PathsChecked {
    let mut out = PathsChecked::default();
    for c in load_cases(rel).iter().filter(|c| filter(c)) {
        out.cases += 1;
        if check_case(c, Path::F32Fused) > 0 {
            out.fused += 1;
        }
        assert_eq!(
            check_case(c, Path::F32Composed),
            0,
            "{}: a fused kernel ran while switched off",
            c.name
        );
        if f64_supported() {
            check_case_with(c, Path::F64, f64_value_rtol);
        }
    }
    out
}

/// Central finite differences of the loss in f64 against the autodiff gradient, at a few
/// elements of every case of a fixture file that has a gradient (saturated cases skipped: the
/// difference quotient at |x| = 1e4 is meaningless). Returns the number of elements checked, or
/// `None` on a test device without f64 (wgpu): a difference quotient in f32 cannot resolve the
/// gradient to a useful tolerance, and the same composed code's f32 gradient is checked there
/// against the oracle's autograd by the fixture tests.
pub fn check_finite_differences(rel: &str, filter: impl Fn(&Case) -> bool) -> Option<usize> {
    if !f64_supported() {
        eprintln!("finite differences of {rel}: not run (the test device has no f64)");
        return None;
    }
    let dtype = DType::F64;
    let (h, tol) = (1e-6, 1e-5);
    let mut checked = 0;
    for c in load_cases(rel)
        .iter()
        .filter(|c| c.grad.is_some() && filter(c))
    {
        // Saturated logits: the difference quotient at |x| = 1e4 is meaningless in float.
        if c.pred.data.iter().any(|v| v.abs() > 50.0) {
            continue;
        }
        let (_, g) = run(c, &c.pred, dtype, true);
        let g = g.unwrap();
        let scale = max_abs(&g).max(1e-8);
        let step = (c.pred.data.len() / 7).max(1);
        for i in (0..c.pred.data.len()).step_by(step) {
            let mut plus = c.pred.clone();
            let mut minus = c.pred.clone();
            plus.data[i] += h;
            minus.data[i] -= h;
            if c.spec.contains("activation=none") && (plus.data[i] > 1.0 || minus.data[i] < 0.0) {
                continue;
            }
            let (vp, _) = run(c, &plus, dtype, false);
            let (vm, _) = run(c, &minus, dtype, false);
            let fd = (vp.iter().sum::<f64>() - vm.iter().sum::<f64>()) / (2.0 * h);
            // The difference quotient cannot resolve changes below the value's rounding.
            let floor = 1e-14 * vp.iter().chain(&vm).fold(1.0f64, |m, v| m.max(v.abs())) / h;
            assert!(
                (fd - g[i]).abs() <= tol * scale + floor,
                "{}: d/dx[{i}]: autodiff {} vs finite difference {fd}",
                c.name,
                g[i]
            );
            checked += 1;
        }
    }
    Some(checked)
}
