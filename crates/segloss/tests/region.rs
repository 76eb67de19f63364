//! Region-based and compound losses against their oracles (`tests/fixtures/losses/region.json`,
//! produced by `tools/reference/gen_losses.py` from MONAI, smp and the formulas of `docs/losses.md`),
//! finite differences, edge cases and properties.

mod common;

use common::*;

const FILE: &str = "losses/region.json";

fn check(prefix: &str) -> usize {
    let n = check_fixture_file(FILE, |c| c.name.starts_with(prefix));
    assert!(n > 0, "no fixture case for {prefix}");
    n
}

#[test]
fn dice_matches_monai() {
    check("dice_");
}

#[test]
fn jaccard_matches_monai() {
    check("jaccard_");
}

#[test]
fn generalized_dice_matches_monai() {
    check("generalized_dice_");
}

#[test]
fn tversky_matches_monai() {
    check("tversky_");
}

#[test]
fn focal_tversky_matches_formula() {
    check("focal_tversky_");
}

#[test]
fn sensitivity_specificity_matches_formula() {
    check("sensitivity_specificity_");
}

#[test]
fn log_cosh_dice_matches_formula() {
    check("log_cosh_dice_");
}

#[test]
fn lovasz_matches_smp() {
    check("lovasz_");
}

#[test]
fn mcc_matches_smp() {
    check("mcc_");
}

#[test]
fn combo_matches_formula() {
    check("combo_");
}

#[test]
fn exp_log_matches_formula() {
    check("exp_log_");
}

#[test]
fn sums_match_monai_dice_ce_and_dice_focal() {
    check("sum_");
}

use burn::tensor::{DType, Device, Int, Tensor};
use proptest::prelude::*;
use segloss::{
    ComboLossConfig, DiceLossConfig, ExpLogLossConfig, Flat, GeneralizedDiceLossConfig, LossError,
    LossReduction, LossSpec, LovaszLossConfig, MccLossConfig, Reduction, SegLoss, Target,
    TverskyLossConfig,
};

/// Every spec of this family, for the tests that loop over all of them.
const MASK_SPECS: &[&str] = &[
    "dice",
    "dice(power=2,jaccard=true,batch=true)",
    "jaccard(soft_label=true)",
    "dice(include_background=false,smooth=1)",
    "generalized_dice",
    "generalized_dice(w_type=simple,batch=true)",
    "generalized_dice(w_type=uniform,soft_label=true)",
    "tversky(alpha=0.3,beta=0.7)",
    "tversky(soft_label=true,batch=true)",
    "focal_tversky",
    "focal_tversky(gamma=2,include_background=false)",
    "sensitivity_specificity",
    "sensitivity_specificity(r=0.5,batch=true)",
    "log_cosh_dice",
    "lovasz",
    "lovasz(per_image=true)",
    "mcc",
    "combo",
    "combo(alpha=0.3,beta=0.7,smooth=0)",
];

const LABEL_SPECS: &[&str] = &[
    "dice",
    "dice(include_background=false,batch=true)",
    "jaccard(power=2)",
    "generalized_dice",
    "generalized_dice(batch=true)",
    "tversky",
    "focal_tversky(gamma=2)",
    "sensitivity_specificity",
    "log_cosh_dice(jaccard=true)",
    "lovasz",
    "lovasz(per_image=true)",
    "mcc",
    "combo",
    "exp_log",
    "exp_log(gamma=1,w_dice=0.5,w_ce=0.5)",
];

/// Central finite differences of the loss against the autodiff gradient, on every case whose
/// loss is smooth at the stored point (Lovász is piecewise linear: random points have no ties,
/// and the step is far below the gap between errors).
#[test]
fn gradients_match_finite_differences() {
    if let Some(checked) = check_finite_differences(FILE, |_| true) {
        assert!(checked > 500, "only {checked} finite differences");
    }
}

fn dev() -> Device {
    common::test_device()
}

fn build(spec: &str) -> segloss::CompositeLoss {
    LossSpec::parse(spec)
        .unwrap_or_else(|e| panic!("{}", e.pretty()))
        .build()
        .unwrap_or_else(|e| panic!("{spec}: {e}"))
}

/// Value (reduction mean) and gradient of a spec on flat inputs, on the autodiff flex device.
fn value_and_grad(spec: &str, x: &[f32], shape: &[usize], target: TargetData) -> (f32, Vec<f64>) {
    let d = Device::flex().autodiff();
    let loss = build(spec);
    let p = Flat {
        values: Tensor::<1>::from_floats(x, &d).require_grad(),
        shape: shape.to_vec(),
    };
    let t = target.on(&d);
    let v = loss
        .loss_value(p.clone(), t, None, LossReduction::Mean)
        .unwrap_or_else(|e| panic!("{spec}: {e}"));
    let g = to_vec(p.values.grad(&v.values.clone().backward()).unwrap());
    (v.values.into_scalar::<f32>(), g)
}

#[derive(Clone, Debug)]
enum TargetData {
    Mask(Vec<f32>, Vec<usize>),
    Labels(Vec<i64>, Vec<usize>),
}

impl TargetData {
    fn on(&self, d: &Device) -> Target {
        match self {
            TargetData::Mask(v, s) => {
                Target::mask_flat(Tensor::<1>::from_floats(v.as_slice(), d), s.clone())
            }
            TargetData::Labels(v, s) => {
                Target::labels_flat(Tensor::<1, Int>::from_ints(v.as_slice(), d), s.clone())
            }
        }
    }
}

fn assert_finite(spec: &str, what: &str, v: f32, g: &[f64]) {
    assert!(v.is_finite(), "{spec} ({what}): loss {v}");
    assert!(
        g.iter().all(|x| x.is_finite()),
        "{spec} ({what}): non-finite gradient"
    );
}

/// Empty target with an empty prediction (exact zeros) and with a confident non-empty one; an
/// all-foreground target predicted; all finite, with the documented values.
#[test]
fn empty_and_full_targets() {
    let shape = vec![2, 1, 3, 4];
    let n = 24;
    let zeros = TargetData::Mask(vec![0.0; n], shape.clone());
    let ones = TargetData::Mask(vec![1.0; n], shape.clone());
    // empty target, exactly empty probabilities
    for (spec, want) in [
        ("dice(activation=none)", 0.0),
        ("jaccard(activation=none)", 0.0),
        ("generalized_dice(activation=none)", 0.0),
        ("tversky(activation=none)", 0.0),
        ("focal_tversky(activation=none)", 0.0),
        ("log_cosh_dice(activation=none)", 0.0),
        ("sensitivity_specificity(activation=none)", 0.0),
        ("lovasz(activation=none)", 0.0),
        ("mcc(activation=none)", 0.5),
        ("combo(activation=none)", -0.5),
    ] {
        let (v, g) = value_and_grad(spec, &vec![0.0; n], &shape, zeros.clone());
        assert_finite(spec, "empty/empty", v, &g);
        assert!(
            (v - want).abs() < 1e-5,
            "{spec}: empty target, empty prediction: {v} vs {want}"
        );
    }
    // empty target, confident non-empty prediction (logits +6)
    for (spec, lo, hi) in [
        ("dice", 0.99, 1.0),
        ("jaccard", 0.99, 1.0),
        ("tversky", 0.99, 1.0),
        ("focal_tversky", 0.99, 1.0),
        ("generalized_dice", -1e-6, 1e-6), // every weight is 0 (no class present)
        ("log_cosh_dice", 0.43, 0.434),
        ("sensitivity_specificity", 0.82, 0.83), // (1 − r)·Σp²/(S + 1) = 0.9·12·σ(6)²/13
        ("lovasz", 6.99, 7.01),                  // relu(1 + max x)
        ("mcc", 0.99, 1.01),
        ("exp_log", 0.0, 10.0),
    ] {
        let (v, g) = value_and_grad(spec, &vec![6.0; n], &shape, zeros.clone());
        assert_finite(spec, "empty/full", v, &g);
        assert!(
            v >= lo && v <= hi,
            "{spec}: empty target, full prediction: {v} not in [{lo}, {hi}]"
        );
    }
    // all-foreground target, confident prediction
    for spec in [
        "dice",
        "jaccard",
        "tversky",
        "focal_tversky(gamma=1)",
        "generalized_dice",
        "log_cosh_dice",
        "sensitivity_specificity",
        "lovasz",
    ] {
        let (v, g) = value_and_grad(spec, &vec![12.0; n], &shape, ones.clone());
        assert_finite(spec, "full/full", v, &g);
        assert!(v.abs() < 1e-4, "{spec}: all-foreground predicted: {v}");
    }
    // MCC of a constant target cannot be measured: 0.5 (smp's own test case)
    let (v, _) = value_and_grad("mcc(activation=none)", &vec![1.0; n], &shape, ones.clone());
    assert!((v - 0.5).abs() < 1e-5, "{v}");
}

/// Soft labels: with `soft_label = true`, p = y is a perfect score; the hard-label formula is not.
#[test]
fn soft_labels() {
    let shape = vec![1, 2, 2, 3];
    let y: Vec<f32> = (0..12).map(|i| (i as f32 * 0.37 + 0.05) % 1.0).collect();
    let t = TargetData::Mask(y.clone(), shape.clone());
    for spec in [
        "dice(activation=none,soft_label=true)",
        "jaccard(activation=none,soft_label=true)",
        "tversky(activation=none,soft_label=true)",
        "generalized_dice(activation=none,soft_label=true)",
        "dice(activation=none,power=2)",
    ] {
        let (v, g) = value_and_grad(spec, &y, &shape, t.clone());
        assert_finite(spec, "soft", v, &g);
        assert!(v.abs() < 1e-5, "{spec}: p = y should be perfect: {v}");
    }
    let (v, _) = value_and_grad("dice(activation=none)", &y, &shape, t.clone());
    assert!(v > 0.05, "hard-label dice at p = y with soft y: {v}");
}

/// `batch = true` pools the statistics: the same as per-sample statistics of one sample made of
/// the batch laid side by side.
#[test]
fn batch_pools_statistics() {
    let d = dev();
    let x = Tensor::<4>::from_floats(
        [
            [
                [[0.5, -1.0, 2.0], [1.0, 0.0, -2.0]],
                [[-0.5, 1.0, 0.3], [0.2, 1.5, -1.0]],
            ],
            [
                [[1.5, -0.2, 0.7], [-1.3, 0.4, 2.2]],
                [[0.9, -1.1, 0.1], [0.6, -0.4, 1.2]],
            ],
        ],
        &d,
    ); // [2, 2, 2, 3]
    let y = Tensor::<3, Int>::from_ints([[[0, 1, 1], [1, 0, 0]], [[1, 1, 0], [0, 0, 1]]], &d);
    // side by side: [1, 2, 2, 6]
    let xs = Tensor::cat(x.clone().chunk(2, 0), 3);
    let ys = Tensor::cat(y.clone().chunk(2, 0), 2);
    for (batch, single) in [
        ("dice(batch=true,reduction=none)", "dice(reduction=none)"),
        (
            "jaccard(batch=true,power=2,reduction=none)",
            "jaccard(power=2,reduction=none)",
        ),
        (
            "tversky(batch=true,alpha=0.2,beta=0.8,reduction=none)",
            "tversky(alpha=0.2,beta=0.8,reduction=none)",
        ),
        (
            "generalized_dice(batch=true,reduction=none)",
            "generalized_dice(reduction=none)",
        ),
        (
            "sensitivity_specificity(batch=true,reduction=none)",
            "sensitivity_specificity(reduction=none)",
        ),
        (
            "lovasz(reduction=none)",
            "lovasz(per_image=true,reduction=none)",
        ),
    ] {
        let a = to_vec(
            build(batch)
                .try_forward(x.clone(), y.clone(), None, LossReduction::None)
                .unwrap()
                .values,
        );
        let b = to_vec(
            build(single)
                .try_forward(xs.clone(), ys.clone(), None, LossReduction::None)
                .unwrap()
                .values,
        );
        assert_close(batch, "pooled vs side by side", &a, &b, 1e-5, 1e-6);
    }
    // and per-sample differs from pooled
    let a = build("dice")
        .forward(x.clone(), y.clone(), None)
        .into_scalar::<f32>();
    let b = build("dice(batch=true)")
        .forward(x, y, None)
        .into_scalar::<f32>();
    assert!((a - b).abs() > 1e-4, "{a} {b}");
}

/// A class absent from the whole batch: finite, and each loss treats it as documented.
#[test]
fn class_absent_from_batch() {
    let d = dev();
    let x = Tensor::<4>::from_floats(
        [[
            [[2.0, -1.0], [0.5, 0.0]],
            [[-1.0, 1.5], [0.0, 1.0]],
            [[0.3, 0.2], [-0.4, 0.1]],
        ]],
        &d,
    );
    let y = Tensor::<3, Int>::from_ints([[[0, 1], [0, 1]]], &d); // class 2 absent
    let m = DiceLossConfig::new()
        .init()
        .forward_no_reduction(x.clone(), y.clone());
    let m = to_vec(m);
    assert_eq!(m.len(), 3);
    // the absent class scores as an empty target: 1 − s_nr/(Σp + s_dr) ≈ 1
    assert!(m[2] > 0.99 && m[2] <= 1.0, "{m:?}");
    for spec in LABEL_SPECS {
        let loss = build(spec);
        let v = loss
            .forward(x.clone(), y.clone(), None)
            .into_scalar::<f32>();
        assert!(v.is_finite(), "{spec}: {v}");
    }
    // Lovász-Softmax skips the absent class: adding a class nobody predicts or labels changes
    // nothing
    let x2 = Tensor::<4>::from_floats(
        [[
            [[2.0, -1.0], [0.5, 0.0]],
            [[-1.0, 1.5], [0.0, 1.0]],
            [[-80.0, -80.0], [-80.0, -80.0]],
        ]],
        &d,
    );
    let x1 = x2.clone().slice([0..1, 0..2, 0..2, 0..2]);
    let a = LovaszLossConfig::new()
        .init()
        .forward(x2, y.clone(), Reduction::Mean)
        .into_scalar::<f32>();
    let b = LovaszLossConfig::new()
        .init()
        .forward(x1, y, Reduction::Mean)
        .into_scalar::<f32>();
    assert!((a - b).abs() < 1e-6, "{a} vs {b}");
}

/// Softmax over one channel is an error that says why, for every loss of the family.
#[test]
fn softmax_with_one_channel_is_an_error() {
    let d = dev();
    for name in segloss::loss_names().into_iter().filter(|n| {
        [
            "dice",
            "jaccard",
            "generalized_dice",
            "tversky",
            "focal_tversky",
            "sensitivity_specificity",
            "log_cosh_dice",
            "lovasz",
            "mcc",
            "combo",
            "exp_log",
        ]
        .contains(n)
    }) {
        let loss = build(&format!("{name}(activation=softmax)"));
        let e = loss
            .try_forward(
                Tensor::<4>::zeros([2, 1, 2, 2], &d),
                Tensor::<4>::zeros([2, 1, 2, 2], &d),
                None,
                LossReduction::Mean,
            )
            .unwrap_err();
        assert!(e.to_string().contains("softmax over C = 1"), "{name}: {e}");
    }
}

/// `ignore_index` on every pixel: finite values and gradients, with the documented values.
#[test]
fn ignore_index_everywhere() {
    let shape = vec![2, 3, 2, 2];
    let x: Vec<f32> = (0..24).map(|i| ((i * 7) % 11) as f32 * 0.4 - 2.0).collect();
    let labels = TargetData::Labels(vec![255; 8], vec![2, 2, 2]);
    for (spec, want) in [
        ("dice(ignore_index=255)", Some(0.0)),
        ("jaccard(ignore_index=255)", Some(0.0)),
        ("generalized_dice(ignore_index=255)", Some(0.0)),
        ("tversky(ignore_index=255)", Some(0.0)),
        ("focal_tversky(ignore_index=255)", Some(0.0)),
        ("log_cosh_dice(ignore_index=255)", Some(0.0)),
        ("sensitivity_specificity(ignore_index=255)", Some(0.0)),
        ("lovasz(ignore_index=255)", Some(0.0)),
        ("lovasz(ignore_index=255,per_image=true)", Some(0.0)),
        ("mcc(ignore_index=255)", Some(1.0)),
        ("combo(ignore_index=255)", Some(-1.5)),
        ("exp_log(ignore_index=255)", None),
    ] {
        let (v, g) = value_and_grad(spec, &x, &shape, labels.clone());
        assert_finite(spec, "all ignored", v, &g);
        if let Some(w) = want {
            assert!((v - w).abs() < 1e-5, "{spec}: {v} vs {w}");
        }
        assert!(
            g.iter().all(|g| g.abs() < 1e-6),
            "{spec}: gradient at ignored pixels"
        );
    }
    // sigmoid Lovász hinge with a mask target carrying the ignore value everywhere
    let mask = TargetData::Mask(vec![255.0; 24], shape.clone());
    let (v, g) = value_and_grad("lovasz(ignore_index=255)", &x, &shape, mask);
    assert_finite("lovasz hinge", "all ignored", v, &g);
    assert_eq!(v, 0.0);
}

/// N = 1, C = 1, a single pixel, 1D to 3D: finite for every loss of the family.
#[test]
fn small_and_high_rank_inputs_are_finite() {
    for shape in [
        vec![1, 1, 1],
        vec![1, 1, 1, 1],
        vec![1, 1, 2, 1, 3],
        vec![1, 1, 5],
    ] {
        let n: usize = shape.iter().product();
        let x: Vec<f32> = (0..n).map(|i| i as f32 * 0.7 - 1.0).collect();
        let y: Vec<f32> = (0..n).map(|i| (i % 2) as f32).collect();
        for spec in MASK_SPECS.iter().chain(["exp_log"].iter()) {
            let (v, g) =
                value_and_grad(spec, &x, &shape, TargetData::Mask(y.clone(), shape.clone()));
            assert_finite(spec, &format!("{shape:?}"), v, &g);
        }
    }
}

#[test]
fn forward_no_reduction_shapes() {
    let d = dev();
    let x = Tensor::<5>::zeros([2, 3, 2, 3, 4], &d);
    let l = Tensor::<5, Int>::zeros([2, 1, 2, 3, 4], &d);
    let dice = DiceLossConfig::new();
    assert_eq!(
        dice.init()
            .forward_no_reduction(x.clone(), l.clone())
            .dims(),
        [2, 3]
    );
    assert_eq!(
        dice.clone()
            .with_include_background(false)
            .init()
            .forward_no_reduction(x.clone(), l.clone())
            .dims(),
        [2, 2]
    );
    assert_eq!(
        dice.with_batch(true)
            .init()
            .forward_no_reduction(x.clone(), l.clone())
            .dims(),
        [1, 3]
    );
    assert_eq!(
        TverskyLossConfig::new()
            .init()
            .forward_no_reduction(x.clone(), l.clone())
            .dims(),
        [2, 3]
    );
    assert_eq!(
        GeneralizedDiceLossConfig::new()
            .init()
            .forward_no_reduction(x.clone(), l.clone())
            .dims(),
        [2, 1]
    );
    assert_eq!(
        LovaszLossConfig::new()
            .init()
            .forward_no_reduction(x.clone(), l.clone())
            .dims(),
        [1, 1]
    );
    assert_eq!(
        LovaszLossConfig::new()
            .with_per_image(true)
            .init()
            .forward_no_reduction(x.clone(), l.clone())
            .dims(),
        [2, 1]
    );
    assert_eq!(
        MccLossConfig::new()
            .init()
            .forward_no_reduction(x.clone(), l.clone())
            .dims(),
        [1, 1]
    );
    assert_eq!(
        ComboLossConfig::new()
            .init()
            .forward_no_reduction(x.clone(), l.clone())
            .dims(),
        [1, 1]
    );
    assert_eq!(
        ExpLogLossConfig::new()
            .init()
            .forward_no_reduction(x.clone(), l.clone())
            .dims(),
        [1, 1]
    );
    // Sum and BatchMean of the matrix
    let m = to_vec(
        DiceLossConfig::new()
            .init()
            .forward_no_reduction(x.clone(), l.clone()),
    );
    let s = DiceLossConfig::new()
        .init()
        .forward(x.clone(), l.clone(), Reduction::Sum)
        .into_scalar::<f32>();
    let b = DiceLossConfig::new()
        .init()
        .forward(x, l, Reduction::BatchMean)
        .into_scalar::<f32>();
    let total: f64 = m.iter().sum();
    assert!((s as f64 - total).abs() < 1e-5 && (b as f64 - total / 2.0).abs() < 1e-5);
}

#[test]
fn bad_configurations_and_specs() {
    let d = dev();
    assert!(DiceLossConfig::new().with_power(3.0).try_init().is_err());
    assert!(DiceLossConfig::new().with_power(0.5).try_init().is_err());
    assert!(DiceLossConfig::new()
        .with_smooth_nr(-1.0)
        .try_init()
        .is_err());
    assert!(DiceLossConfig::new()
        .with_weight(Some(vec![1.0, -1.0]))
        .try_init()
        .is_err());
    assert!(TverskyLossConfig::new()
        .with_alpha(-0.1)
        .try_init()
        .is_err());
    assert!(ComboLossConfig::new().with_alpha(1.5).try_init().is_err());
    assert!(ExpLogLossConfig::new().with_smooth(0.0).try_init().is_err());
    assert!(MccLossConfig::new().with_eps(0.0).try_init().is_err());
    for (spec, needle) in [
        ("dice(smooth=1,smooth_nr=0)", "smooth sets both"),
        ("jaccard(jaccard=false)", "unknown argument 'jaccard'"),
        ("dice(power=3)", "invalid power"),
        (
            "generalized_dice(w_type=cubic)",
            "square | simple | uniform",
        ),
        ("lovasz(gamma=2)", "unknown argument 'gamma'"),
        ("tversky(alpha=-1)", "invalid alpha"),
        ("sensitivity_specificity(r=2)", "invalid r"),
        ("combo(beta=1.5)", "invalid beta"),
        ("exp_log(smooth=0)", "invalid smooth"),
        ("mcc(eps=0)", "invalid eps"),
        ("dcie", "dice"),
    ] {
        let e = LossSpec::parse(spec).unwrap().build().unwrap_err();
        assert!(e.to_string().contains(needle), "{spec}: {e}");
    }
    // class weights of the wrong length (checked against C at forward time)
    let x = Tensor::<4>::zeros([1, 3, 2, 2], &d);
    let l = Tensor::<3, Int>::zeros([1, 2, 2], &d);
    let e = DiceLossConfig::new()
        .with_weight(Some(vec![1.0, 2.0]))
        .init()
        .try_forward(x.clone(), l.clone(), LossReduction::Mean)
        .unwrap_err();
    assert!(e.to_string().contains("one weight per class"), "{e}");
    // with include_background=false, C or C − 1 weights are accepted
    for w in [vec![9.0, 1.0, 2.0], vec![1.0, 2.0]] {
        DiceLossConfig::new()
            .with_include_background(false)
            .with_weight(Some(w))
            .init()
            .try_forward(x.clone(), l.clone(), LossReduction::Mean)
            .unwrap();
    }
    // exp_log sigmoid needs one channel
    let e = ExpLogLossConfig::new()
        .init()
        .try_forward(
            x.clone(),
            Tensor::<4>::zeros([1, 3, 2, 2], &d),
            LossReduction::Mean,
        )
        .unwrap_err();
    assert!(e.to_string().contains("C = 1"), "{e}");
    // shape mismatch, label out of range
    let e = DiceLossConfig::new()
        .init()
        .try_forward(
            x.clone(),
            Tensor::<4>::zeros([1, 3, 2, 3], &d),
            LossReduction::Mean,
        )
        .unwrap_err();
    assert!(matches!(e, LossError::ShapeMismatch { .. }), "{e}");
    let e = LovaszLossConfig::new()
        .init()
        .try_forward(
            x,
            Tensor::<3, Int>::full([1, 2, 2], 3, &d),
            LossReduction::Mean,
        )
        .unwrap_err();
    assert!(matches!(e, LossError::LabelOutOfRange { .. }), "{e}");
    // every name of both families is known to the registry
    for n in [
        "dice",
        "jaccard",
        "generalized_dice",
        "tversky",
        "focal_tversky",
        "sensitivity_specificity",
        "log_cosh_dice",
        "lovasz",
        "mcc",
        "combo",
        "exp_log",
    ] {
        assert!(segloss::loss_names().contains(&n), "{n}");
    }
}

#[test]
#[should_panic(expected = "shape mismatch")]
fn forward_panics_with_the_shapes() {
    let d = dev();
    DiceLossConfig::new().init().forward(
        Tensor::<4>::zeros([1, 1, 2, 2], &d),
        Tensor::<4>::zeros([1, 1, 2, 3], &d),
        Reduction::Mean,
    );
}

/// Weighted class losses: the mean is not renormalised (MONAI), weights on one kept channel are
/// ignored (MONAI).
#[test]
fn class_weights_multiply_class_losses() {
    let d = dev();
    let x = Tensor::<4>::from_floats([[[[2.0, -1.0]], [[0.5, 1.0]], [[-0.3, 0.2]]]], &d);
    let l = Tensor::<3, Int>::from_ints([[[0, 1]]], &d);
    let m = to_vec(
        DiceLossConfig::new()
            .init()
            .forward_no_reduction(x.clone(), l.clone()),
    );
    let w = [0.5, 1.0, 2.0];
    let v = DiceLossConfig::new()
        .with_weight(Some(w.to_vec()))
        .init()
        .forward(x.clone(), l.clone(), Reduction::Mean)
        .into_scalar::<f32>() as f64;
    let want = m.iter().zip(w).map(|(a, b)| a * b).sum::<f64>() / 3.0;
    assert!((v - want).abs() < 1e-6, "{v} {want}");
    // C = 1: weight ignored
    let x1 = Tensor::<4>::from_floats([[[[2.0, -1.0]]]], &d);
    let y1 = Tensor::<4>::from_floats([[[[1.0, 0.0]]]], &d);
    let a = DiceLossConfig::new()
        .with_weight(Some(vec![5.0]))
        .init()
        .forward(x1.clone(), y1.clone(), Reduction::Mean);
    let b = DiceLossConfig::new()
        .init()
        .forward(x1, y1, Reduction::Mean);
    assert_eq!(a.into_scalar::<f32>(), b.into_scalar::<f32>());
}

fn strategy() -> impl Strategy<Value = (Vec<f32>, Vec<u8>, usize, Vec<usize>)> {
    // N in 1..3, C in 1..4, 1–3 spatial dims of size 1..4; logits include saturated values.
    (1usize..3, 1usize..4, prop::collection::vec(1usize..4, 1..4)).prop_flat_map(|(n, c, sp)| {
        let numel = n * c * sp.iter().product::<usize>();
        let px = n * sp.iter().product::<usize>();
        let mut shape = vec![n, c];
        shape.extend(sp.iter().copied());
        (
            prop::collection::vec(
                prop_oneof![(-8.0f32..8.0), Just(1e4f32), Just(-1e4f32)],
                numel,
            ),
            prop::collection::vec(0u8..(c as u8).max(2), px),
            Just(c),
            Just(shape),
        )
    })
}

/// The documented range of a spec's value for C channels.
fn range(spec: &str, c: usize, sigmoid: bool) -> (f32, f32) {
    let inf = f32::INFINITY;
    let name = spec.split('(').next().unwrap();
    match name {
        "log_cosh_dice" => (0.0, 0.4339),
        "lovasz" if sigmoid => (0.0, inf),
        "mcc" => (0.0, 2.0),
        "combo" => {
            let alpha = if spec.contains("alpha=0.3") { 0.3 } else { 0.5 };
            (-(1.0 - alpha) * c as f32, inf)
        }
        "exp_log" => (0.0, inf),
        _ => (0.0, 1.0),
    }
}

fn targets(l: &[u8], c: usize, shape: &[usize]) -> (TargetData, TargetData) {
    let n = shape[0];
    let sp = &shape[2..];
    let px: usize = sp.iter().product();
    let mut mask = vec![0f32; n * c * px];
    for b in 0..n {
        for i in 0..px {
            let k = l[b * px + i] as usize;
            if c == 1 {
                mask[b * px + i] = k.min(1) as f32;
            } else {
                mask[(b * c + k % c) * px + i] = 1.0;
            }
        }
    }
    let lab: Vec<i64> = l.iter().map(|&v| (v as usize % c) as i64).collect();
    let mut ls = vec![n];
    ls.extend_from_slice(sp);
    (
        TargetData::Mask(mask, shape.to_vec()),
        TargetData::Labels(lab, ls),
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, .. ProptestConfig::default() })]

    /// Every region and compound loss is finite in value and gradient and within its documented
    /// range, for any finite logits (including ±1e4), any rank, N = 1, C = 1.
    #[test]
    fn finite_and_in_range((x, l, c, shape) in strategy()) {
        let (mask, labels) = targets(&l, c, &shape);
        let mut runs: Vec<(&str, TargetData, bool)> = MASK_SPECS.iter().map(|s| (*s, mask.clone(), true)).collect();
        if c == 1 {
            runs.push(("exp_log", mask.clone(), true));
        } else {
            runs.extend(LABEL_SPECS.iter().map(|s| (*s, labels.clone(), false)));
        }
        for (spec, t, sigmoid) in runs {
            let (v, g) = value_and_grad(spec, &x, &shape, t);
            prop_assert!(v.is_finite(), "{}: loss {}", spec, v);
            prop_assert!(g.iter().all(|x| x.is_finite()), "{}: non-finite gradient", spec);
            let (lo, hi) = range(spec, c, sigmoid);
            prop_assert!(v >= lo - 1e-5 && v <= hi + 1e-5, "{}: {} not in [{}, {}]", spec, v, lo, hi);
        }
    }

    /// A perfect, confident prediction is the minimum: near the documented minimum and no worse
    /// than a less confident or a partly wrong prediction.
    #[test]
    fn minimal_at_perfect_prediction((_x, l, c, shape) in strategy()) {
        let (mask, labels) = targets(&l, c, &shape);
        let TargetData::Mask(m, _) = &mask else { unreachable!() };
        let perfect: Vec<f32> = m.iter().map(|&v| if v > 0.5 { 30.0 } else { -30.0 }).collect();
        let soft: Vec<f32> = m.iter().map(|&v| if v > 0.5 { 1.0 } else { -1.0 }).collect();
        let mut wrong = perfect.clone();
        wrong[0] = -wrong[0];
        let constant = m.iter().all(|&v| v == m[0]);
        let mut runs: Vec<(&str, TargetData)> = MASK_SPECS.iter().map(|s| (*s, mask.clone())).collect();
        if c == 1 { runs.push(("exp_log", mask.clone())); } else {
            runs.extend(LABEL_SPECS.iter().map(|s| (*s, labels.clone())));
        }
        for (spec, t) in runs {
            let f = |x: &[f32]| value_and_grad(spec, x, &shape, t.clone()).0;
            let (vp, vs, vw) = (f(&perfect), f(&soft), f(&wrong));
            let name = spec.split('(').next().unwrap();
            let floor = match name {
                "combo" => range(spec, c, true).0,
                _ => 0.0,
            };
            let slack = match name {
                // with s = 0 an empty class has DSC = 0/Σp = 0 however small Σp: the floor
                // −(1 − α)·C is only reached when every class is present
                "combo" if spec.contains("smooth=0") => f32::INFINITY,
                "exp_log" => 0.05, // max(−ln p, 1e-7)^γ keeps a small floor
                "mcc" if constant => 0.501, // no correlation on a constant target
                _ => 1e-4,
            };
            prop_assert!(vp <= floor + slack, "{}: perfect prediction scores {}", spec, vp);
            prop_assert!(vp <= vs + 1e-5, "{}: perfect {} > less confident {}", spec, vp, vs);
            prop_assert!(vp <= vw + 1e-5, "{}: perfect {} > partly wrong {}", spec, vp, vw);
        }
    }
}

/// The fixture checks above run in f64 as well as f32 on Flex (the harness skips f64 only on a
/// test device without it).
#[test]
fn fixture_checks_cover_f64() {
    assert!(!on_flex() || f64_supported());
}

/// Lovász on one problem of 2×256² = 131 072 elements, longer than the rows burn 0.22's `cumsum`
/// sums right on wgpu: the composed path on the test device against the host path on Flex, in
/// value and gradient (distinct logits, so no ties reorder the Jaccard steps).
#[test]
fn lovasz_on_long_rows_matches_the_host_path() {
    let (n, h, w) = (2usize, 256usize, 256usize);
    let m = n * h * w;
    // A permutation of 0..m (7919 is prime, m a power of two): distinct logits in (−3, 3).
    let pred: Vec<f64> = (0..m)
        .map(|i| ((i * 7919) % m) as f64 / m as f64 * 6.0 - 3.0 + 1.0 / (7.0 * m as f64))
        .collect();
    // A target correlated with the logits (a disc per image) so that the loss is informative.
    let target: Vec<f64> = (0..m)
        .map(|i| {
            let (y, x) = ((i / w) % h, i % w);
            let (dy, dx) = (y as f64 - 128.0, x as f64 - 100.0);
            f64::from(dy * dy + dx * dx < 70.0 * 70.0)
        })
        .collect();
    let shape = vec![n, 1, h, w];
    let c = Case {
        name: "lovasz_long_rows".into(),
        spec: "lovasz".into(),
        oracle: "segloss host path on Flex".into(),
        pred: Arr {
            shape: shape.clone(),
            data: pred,
        },
        target: Arr {
            shape,
            data: target,
        },
        target_is_labels: false,
        weights: None,
        value: Arr {
            shape: vec![1],
            data: vec![0.0],
        },
        grad: None,
    };
    let (v_ref, g_ref) = segloss::with_fused_kernels(true, || {
        run_on_device(&c, &c.pred, DType::F32, true, Device::flex())
    });
    let (v, g) = segloss::with_fused_kernels(false, || run(&c, &c.pred, DType::F32, true));
    assert_close(&c.name, "value", &v, &v_ref, 1e-4, 0.0);
    let (g, g_ref) = (g.unwrap(), g_ref.unwrap());
    let scale = max_abs(&g_ref);
    assert_close(&c.name, "grad", &g, &g_ref, 1e-3, 1e-3 * scale);
}
