//! The fused CPU kernels (`src/fused`) against the composed burn-operation path of the same losses:
//! value and gradient, f32, for every option the fused path accepts, mask and label targets, 1–3
//! spatial dims, N = 1, C = 1, pixel counts that are not multiples of the kernels' lane and block
//! sizes, and saturated logits (±1e4). Both paths are also checked against the PyTorch/MONAI
//! fixtures by `distribution.rs` and `region.rs` (f32 runs the fused path, f64 the composed one).
//!
//! The paths are chosen per thread with `with_fused_kernels`, so the tests may run in parallel; no
//! test here changes the process-wide `set_fused_kernels`.

use burn::tensor::{Device, Distribution, Int, Tensor, TensorData};
use segloss::{fused_calls, fused_kernels, with_fused_kernels, LossReduction, LossSpec, Target};

fn data<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .unwrap()
}

/// (value, gradient) of `spec` on the given logits and target, fused on or off.
fn run(
    spec: &str,
    logits: &Tensor<4>,
    target: &Target,
    reduction: LossReduction,
    fused: bool,
) -> (Vec<f32>, Vec<f32>) {
    with_fused_kernels(fused, || {
        let loss = LossSpec::parse(spec).unwrap().build().unwrap();
        let x = logits.clone().require_grad();
        let v = loss
            .try_forward(x.clone(), target.clone(), None, reduction)
            .unwrap_or_else(|e| panic!("{spec}: {e}"));
        let grads = v.values.clone().sum().backward();
        let g = x.grad(&grads).expect("gradient");
        (data(v.values), data(g))
    })
}

/// Absolute gradient tolerance: 1e-5 of the largest gradient, except for the Lovász losses. Their
/// per-element gradient is a step `J_i − J_(i−1)` of f32 Jaccard values (as smp computes them),
/// whose rounding differs by a few ulps of J (≤ 6e-8 each) between two correct implementations;
/// and tied errors (frequent in f32 at 2^11–2^19 elements) may come in another order, which hands
/// tied elements each other's (adjacent, nearly equal) steps without changing the loss: both are
/// valid subgradients. Seeds 1–40: up to 6e-7 on a step of 3.6e-4, so 2e-3 of the largest
/// gradient (and 5e-7).
fn grad_atol(spec: &str, gmax: f32) -> f32 {
    let base = 1e-5 * gmax.max(1e-3);
    if spec.contains("lovasz") {
        base.max(5e-7).max(2e-3 * gmax)
    } else {
        base
    }
}

fn close(spec: &str, what: &str, a: &[f32], b: &[f32], rtol: f32, atol: f32) {
    assert_eq!(a.len(), b.len(), "{spec} {what}: lengths");
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert!(x.is_finite(), "{spec} {what}[{i}]: {x}");
        assert!(
            (x - y).abs() <= atol + rtol * y.abs(),
            "{spec} {what}[{i}]: fused {x} vs composed {y}"
        );
    }
}

#[test]
fn fused_kernels_match_the_composed_path() {
    let device = Device::flex().autodiff();
    // Fixed data (FUSED_SEED overrides the seed to explore).
    let seed = std::env::var("FUSED_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(7);
    device.seed(seed);
    // [N, C, H, W]; W·H chosen to leave remainders for the 8 lanes and the 2048-pixel blocks.
    let shapes: [[usize; 4]; 5] = [
        [2, 3, 45, 51],
        [1, 1, 7, 3],
        [3, 2, 64, 65],
        [1, 4, 1, 1],
        [2, 1, 33, 70],
    ];
    let mask_specs = [
        "bce",
        "bce(pos_weight=3)",
        "bce(label_smoothing=0.1)",
        "dice",
        "dice(power=2)",
        "dice(batch=true)",
        "dice(smooth_nr=0,smooth_dr=1e-5)",
        "jaccard",
        "tversky(alpha=0.3,beta=0.7)",
        "tversky(batch=true)",
        "generalized_dice",
        "generalized_dice(w_type=simple,batch=true)",
        "dice(activation=none)",
        "0.5*dice + 0.5*bce",
        "focal",
        "focal(gamma=0)",
        "focal(gamma=0.5,alpha=0.25)",
        "focal(gamma=3,include_background=false)",
        "hausdorff_dt",
        "hausdorff_dt(alpha=1,batch=true)",
        "shape_aware",
        "shape_aware(w0=5,sigma=2,class_weight=none)",
        "0.5*shape_aware(sigma=3) + dice",
        "lovasz",
        "lovasz(per_image=true)",
    ];
    let label_specs = [
        "ce",
        "dice(activation=softmax)",
        "dice(activation=softmax,include_background=false)",
        "dice(activation=softmax,power=2,batch=true)",
        "jaccard(activation=softmax)",
        "tversky(activation=softmax,alpha=0.7,beta=0.3)",
        "generalized_dice(activation=softmax)",
        "generalized_dice(activation=softmax,include_background=false)",
        "dice(activation=sigmoid)",
        "0.5*dice(activation=softmax) + 0.5*ce",
        "dice + ce",
        "ce + 2*dice(include_background=false,batch=true,power=2)",
        "0.3*jaccard(smooth=0) + 0.7*ce(reduction=sum) ",
        "dice(reduction=sum) + ce(reduction=sum)",
        "focal(activation=softmax)",
        "focal(activation=softmax,gamma=0.5,alpha=0.25)",
        "focal(activation=softmax,include_background=false)",
        "dice(activation=softmax) + focal(activation=softmax)",
        "hausdorff_dt(activation=softmax,include_background=false)",
        "hausdorff_dt(activation=softmax,alpha=1.5,batch=true)",
        "lovasz",
        "lovasz(per_image=true)",
        "lovasz(activation=sigmoid,per_image=true)",
    ];
    let soft_specs = [
        "bce",
        "dice",
        "tversky(alpha=0.3,beta=0.7)",
        "focal",
        "focal(gamma=0.5,alpha=0.25)",
        "hausdorff_dt",
        "shape_aware",
    ];
    // Value and gradient of the fused path against the composed one.
    let compare = |spec: &str, input: &Tensor<4>, t: &Target, red: LossReduction, what: &str| {
        let (v1, g1) = run(spec, input, t, red, true);
        let (v0, g0) = run(spec, input, t, red, false);
        close(spec, &format!("{what} value"), &v1, &v0, 2e-5, 1e-6);
        let gmax = g0.iter().fold(0f32, |m, v| m.max(v.abs()));
        close(
            spec,
            &format!("{what} grad"),
            &g1,
            &g0,
            1e-4,
            grad_atol(spec, gmax),
        );
    };
    let mut compared = 0;
    let calls_before = fused_calls();
    for (k, &[n, c, h, w]) in shapes.iter().enumerate() {
        for scale in [3.0f64, 1e4] {
            let logits =
                Tensor::<4>::random([n, c, h, w], Distribution::Normal(0.0, scale), &device);
            let mask = Tensor::<4>::random([n, c, h, w], Distribution::Uniform(0.0, 1.0), &device)
                .greater_elem(0.6)
                .float();
            let probs = burn::tensor::activation::sigmoid(logits.clone().div_scalar(scale));
            let labels =
                Tensor::<3, Int>::random([n, h, w], Distribution::Uniform(0.0, c as f64), &device);
            for spec in mask_specs {
                let input = if spec.contains("activation=none") {
                    &probs
                } else {
                    &logits
                };
                for red in [
                    LossReduction::Mean,
                    LossReduction::Sum,
                    LossReduction::BatchMean,
                ] {
                    if spec.contains('+') && red != LossReduction::Mean {
                        continue;
                    }
                    let t = Target::from(mask.clone());
                    let what = format!("shape {k} scale {scale} {red:?}");
                    compare(spec, input, &t, red, &what);
                    compared += 1;
                }
            }
            // Soft targets (the kernels take a cheaper path for rows of 0/1 targets; these
            // rows take the general one).
            let soft = Tensor::<4>::random([n, c, h, w], Distribution::Uniform(0.0, 1.0), &device);
            for spec in soft_specs {
                let t = Target::from(soft.clone());
                let what = format!("soft shape {k} scale {scale}");
                compare(spec, &logits, &t, LossReduction::Mean, &what);
                compared += 1;
            }
            if c >= 2 {
                for spec in label_specs {
                    let t = Target::from(labels.clone());
                    let what = format!("labels shape {k} scale {scale}");
                    compare(spec, &logits, &t, LossReduction::Mean, &what);
                    compared += 1;
                }
            }
        }
    }
    assert!(compared > 300, "{compared}");
    assert!(
        fused_calls() > calls_before + compared,
        "the fused path ran"
    );
}

/// Fused against composed on 1D and 3D spatial shapes.
#[test]
fn fused_kernels_match_the_composed_path_in_1d_and_3d() {
    let device = Device::flex().autodiff();
    for dims in [vec![2, 3, 100], vec![1, 2, 5, 6, 7]] {
        let numel: usize = dims.iter().product();
        let vals: Vec<f32> = (0..numel)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) * 0.1)
            .collect();
        let ys: Vec<f32> = (0..numel).map(|i| (i * 13 % 7 < 3) as u8 as f32).collect();
        for spec in [
            "bce",
            "dice",
            "tversky(alpha=0.2,beta=0.8)",
            "generalized_dice",
        ] {
            let loss = LossSpec::parse(spec).unwrap().build().unwrap();
            let value = |fused: bool| {
                with_fused_kernels(fused, || {
                    if dims.len() == 3 {
                        let x = Tensor::<3>::from_data(
                            TensorData::new(vals.clone(), dims.clone()),
                            &device,
                        );
                        let y = Tensor::<3>::from_data(
                            TensorData::new(ys.clone(), dims.clone()),
                            &device,
                        );
                        data(loss.forward(x, y, None))
                    } else {
                        let x = Tensor::<5>::from_data(
                            TensorData::new(vals.clone(), dims.clone()),
                            &device,
                        );
                        let y = Tensor::<5>::from_data(
                            TensorData::new(ys.clone(), dims.clone()),
                            &device,
                        );
                        data(loss.forward(x, y, None))
                    }
                })
            };
            close(
                spec,
                &format!("{dims:?}"),
                &value(true),
                &value(false),
                2e-5,
                1e-6,
            );
        }
    }
}

/// Without autodiff (inference) the fused forward runs too.
#[test]
fn fused_forward_runs_without_autodiff() {
    let plain = Device::flex();
    let x = Tensor::<4>::random([2, 3, 9, 9], Distribution::Normal(0.0, 2.0), &plain);
    let l = Tensor::<3, Int>::random([2, 9, 9], Distribution::Uniform(0.0, 3.0), &plain);
    let loss = LossSpec::parse("dice(activation=softmax) + ce")
        .unwrap()
        .build()
        .unwrap();
    let before = fused_calls();
    let a = with_fused_kernels(true, || data(loss.forward(x.clone(), l.clone(), None)));
    assert!(fused_calls() > before, "the fused path ran");
    let b = with_fused_kernels(false, || data(loss.forward(x, l, None)));
    close("dice+ce no autodiff", "value", &a, &b, 2e-5, 1e-6);
}

/// `with_fused_kernels` affects the calling thread only, nests, and restores the previous choice
/// when its closure returns or panics; `fused_calls` counts this thread's fused kernels.
#[test]
fn the_path_choice_is_per_thread_and_scoped() {
    // No test of this binary changes the process-wide default (on).
    assert!(fused_kernels());
    with_fused_kernels(false, || {
        assert!(!fused_kernels());
        let elsewhere = std::thread::spawn(fused_kernels).join().unwrap();
        assert!(elsewhere, "another thread keeps the process-wide default");
        with_fused_kernels(true, || assert!(fused_kernels()));
        assert!(!fused_kernels(), "restored after the inner call");
    });
    assert!(fused_kernels());
    let caught = std::panic::catch_unwind(|| with_fused_kernels(false, || panic!("inside")));
    assert!(caught.is_err());
    assert!(fused_kernels(), "restored after a panic");

    let device = Device::flex();
    let x = Tensor::<4>::from_floats([[[[0.5, -1.0, 2.0]]]], &device);
    let y = Tensor::<4>::from_floats([[[[1.0, 0.0, 1.0]]]], &device);
    let loss = LossSpec::parse("bce").unwrap().build().unwrap();
    let before = fused_calls();
    with_fused_kernels(false, || loss.forward(x.clone(), y.clone(), None));
    assert_eq!(fused_calls(), before, "no fused kernel while off");
    // Another thread's fused kernels do not count here.
    let (x2, y2) = (x.clone(), y.clone());
    std::thread::spawn(move || {
        let loss = LossSpec::parse("bce").unwrap().build().unwrap();
        let before = fused_calls();
        loss.forward(x2, y2, None);
        assert!(fused_calls() > before);
    })
    .join()
    .unwrap();
    assert_eq!(fused_calls(), before);
    loss.forward(x, y, None);
    assert!(
        fused_calls() > before,
        "the fused kernel ran on this thread"
    );
}

/// The fused value checks (one pass for finite/min/max) report what the composed ones do.
#[test]
fn fused_value_checks_report_bad_values() {
    let device = Device::flex();
    let loss = LossSpec::parse("dice").unwrap().build().unwrap();
    let mut vals = vec![0.5f32; 2 * 3 * 40];
    let mask = Tensor::<3>::zeros([2, 3, 40], &device);
    for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
        vals[77] = bad;
        let x = Tensor::<3>::from_data(TensorData::new(vals.clone(), [2, 3, 40]), &device);
        let e = loss
            .try_forward(x, mask.clone(), None, LossReduction::Mean)
            .unwrap_err();
        assert!(
            e.to_string().contains("non-finite value in prediction"),
            "{e}"
        );
    }
    vals[77] = 0.5;
    let x = Tensor::<3>::from_data(TensorData::new(vals, [2, 3, 40]), &device);
    let e = loss
        .try_forward(
            x.clone(),
            mask.clone().add_scalar(1.5),
            None,
            LossReduction::Mean,
        )
        .unwrap_err();
    assert!(
        e.to_string().contains("target value 1.5 out of range"),
        "{e}"
    );
    let probs = LossSpec::parse("dice(activation=none)")
        .unwrap()
        .build()
        .unwrap();
    let e = probs
        .try_forward(x.clone().mul_scalar(3.0), mask, None, LossReduction::Mean)
        .unwrap_err();
    assert!(e.to_string().contains("the prediction has 1.5"), "{e}");
    let ce = LossSpec::parse("ce").unwrap().build().unwrap();
    let mut labels = vec![1i64; 2 * 40];
    labels[5] = 7;
    let l = Tensor::<2, Int>::from_data(TensorData::new(labels.clone(), [2, 40]), &device);
    let e = ce
        .try_forward(x.clone(), l, None, LossReduction::Mean)
        .unwrap_err();
    assert!(e.to_string().contains("label 7 out of range"), "{e}");
    labels[5] = -2;
    let l = Tensor::<2, Int>::from_data(TensorData::new(labels, [2, 40]), &device);
    let e = ce.try_forward(x, l, None, LossReduction::Mean).unwrap_err();
    assert!(e.to_string().contains("label -2 out of range"), "{e}");
}
