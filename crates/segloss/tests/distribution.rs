//! Distribution-based losses against their oracles (`tests/fixtures/losses/distribution.json`,
//! produced by `tools/reference/gen_losses.py` from PyTorch and MONAI), finite differences, and
//! properties.

mod common;

use burn::tensor::{Device, Int, Tensor};
use common::*;
use proptest::prelude::*;
use segloss::{
    BalancedBceLossConfig, BceLossConfig, CeLossConfig, FocalLossConfig, LossError, LossReduction,
    LossSpec, Reduction, WeightedCeLossConfig,
};

const FILE: &str = "losses/distribution.json";

fn check(prefix: &str) {
    let n = check_fixture_file(FILE, |c| {
        c.spec.starts_with(prefix) || c.name.starts_with(prefix)
    });
    assert!(n > 0, "no fixture case for {prefix}");
}

#[test]
fn bce_matches_pytorch() {
    check("bce");
}

#[test]
fn balanced_bce_matches_formula() {
    check("balanced_bce");
}

#[test]
fn ce_matches_pytorch() {
    check("ce");
}

#[test]
fn focal_matches_monai() {
    check("focal");
}

#[test]
fn weighted_ce_matches_pytorch() {
    check("weighted_ce");
}

/// Central finite differences against the autodiff gradient on every case (common.rs).
#[test]
fn gradients_match_finite_differences() {
    if let Some(checked) = check_finite_differences(FILE, |_| true) {
        assert!(checked > 300, "only {checked} finite differences");
    }
}

fn dev() -> Device {
    common::test_device()
}

#[test]
fn bad_inputs_give_typed_errors() {
    let d = dev();
    let x = Tensor::<4>::zeros([2, 3, 4, 4], &d);
    // shape mismatch
    let e = BceLossConfig::new()
        .init()
        .try_forward(
            x.clone(),
            Tensor::<4>::zeros([2, 3, 4, 5], &d),
            LossReduction::Mean,
        )
        .unwrap_err();
    assert!(matches!(e, LossError::ShapeMismatch { .. }), "{e}");
    assert!(e.to_string().contains("[2, 3, 4, 4]") && e.to_string().contains("[2, 3, 4, 5]"));
    // label >= C
    let labels = Tensor::<3, Int>::full([2, 4, 4], 3, &d);
    let e = CeLossConfig::new()
        .init()
        .try_forward(x.clone(), labels, LossReduction::Mean)
        .unwrap_err();
    assert!(
        matches!(
            e,
            LossError::LabelOutOfRange {
                label: 3,
                num_classes: 3,
                ..
            }
        ),
        "{e}"
    );
    // negative label that is not the ignore index
    let labels = Tensor::<3, Int>::full([2, 4, 4], -1, &d);
    let e = CeLossConfig::new()
        .with_ignore_index(Some(255))
        .init()
        .try_forward(x.clone(), labels, LossReduction::Mean)
        .unwrap_err();
    assert!(
        matches!(e, LossError::LabelOutOfRange { label: -1, .. }),
        "{e}"
    );
    // NaN in predictions
    let nan = Tensor::<4>::full([2, 3, 4, 4], f32::NAN, &d);
    let e = BceLossConfig::new()
        .init()
        .try_forward(
            nan,
            Tensor::<4>::zeros([2, 3, 4, 4], &d),
            LossReduction::Mean,
        )
        .unwrap_err();
    assert!(matches!(e, LossError::NonFinite { .. }), "{e}");
    // soft target outside [0, 1]
    let e = BceLossConfig::new()
        .init()
        .try_forward(
            x.clone(),
            Tensor::<4>::full([2, 3, 4, 4], 1.5, &d),
            LossReduction::Mean,
        )
        .unwrap_err();
    assert!(matches!(e, LossError::TargetOutOfRange { .. }), "{e}");
    // Inf in weights
    let w = Tensor::<4>::full([2, 1, 4, 4], f32::INFINITY, &d);
    let e = WeightedCeLossConfig::new()
        .init()
        .try_forward(
            x.clone(),
            Tensor::<4>::zeros([2, 3, 4, 4], &d),
            w,
            LossReduction::Mean,
        )
        .unwrap_err();
    assert!(matches!(e, LossError::NonFinite { .. }), "{e}");
    // negative weights
    let w = Tensor::<4>::full([2, 1, 4, 4], -1.0, &d);
    let e = WeightedCeLossConfig::new()
        .init()
        .try_forward(
            x.clone(),
            Tensor::<4>::zeros([2, 3, 4, 4], &d),
            w,
            LossReduction::Mean,
        )
        .unwrap_err();
    assert!(matches!(e, LossError::NegativeWeight { .. }), "{e}");
    // weight map of the wrong shape
    let w = Tensor::<4>::ones([2, 2, 4, 4], &d);
    let e = WeightedCeLossConfig::new()
        .init()
        .try_forward(
            x.clone(),
            Tensor::<4>::zeros([2, 3, 4, 4], &d),
            w,
            LossReduction::Mean,
        )
        .unwrap_err();
    assert!(matches!(e, LossError::BadShape { .. }), "{e}");
    // empty tensor
    let e = BceLossConfig::new()
        .init()
        .try_forward(
            Tensor::<4>::zeros([2, 1, 0, 4], &d),
            Tensor::<4>::zeros([2, 1, 0, 4], &d),
            LossReduction::Mean,
        )
        .unwrap_err();
    assert!(matches!(e, LossError::Empty { .. }), "{e}");
    // softmax with C = 1
    let e = CeLossConfig::new()
        .init()
        .try_forward(
            Tensor::<4>::zeros([2, 1, 4, 4], &d),
            Tensor::<3, Int>::zeros([2, 4, 4], &d),
            LossReduction::Mean,
        )
        .unwrap_err();
    assert!(e.to_string().contains("softmax over C = 1"), "{e}");
    // probabilities outside [0, 1] with activation=none
    let e = BceLossConfig::new()
        .with_activation(Some(segloss::Activation::None))
        .init()
        .try_forward(
            Tensor::<4>::full([1, 1, 2, 2], 2.0, &d),
            Tensor::<4>::zeros([1, 1, 2, 2], &d),
            LossReduction::Mean,
        )
        .unwrap_err();
    assert!(e.to_string().contains("probabilities"), "{e}");
    // wrong label-map shape
    let e = CeLossConfig::new()
        .init()
        .try_forward(
            x.clone(),
            Tensor::<3, Int>::zeros([2, 4, 5], &d),
            LossReduction::Mean,
        )
        .unwrap_err();
    assert!(matches!(e, LossError::BadShape { .. }), "{e}");
    // bad configuration values
    assert!(BceLossConfig::new()
        .with_pos_weight(-1.0)
        .try_init()
        .is_err());
    assert!(BceLossConfig::new()
        .with_label_smoothing(1.0)
        .try_init()
        .is_err());
    assert!(FocalLossConfig::new().with_gamma(-0.5).try_init().is_err());
    assert!(FocalLossConfig::new()
        .with_alpha(Some(1.5))
        .try_init()
        .is_err());
    assert!(CeLossConfig::new()
        .with_weight(Some(vec![1.0, -2.0]))
        .try_init()
        .is_err());
    // class weights of the wrong length
    let e = CeLossConfig::new()
        .with_weight(Some(vec![1.0, 2.0]))
        .init()
        .try_forward(
            x,
            Tensor::<3, Int>::zeros([2, 4, 4], &d),
            LossReduction::Mean,
        )
        .unwrap_err();
    assert!(
        e.to_string().contains("one weight per counted class"),
        "{e}"
    );
}

#[test]
#[should_panic(expected = "shape mismatch")]
fn forward_panics_with_the_shapes() {
    let d = dev();
    BceLossConfig::new().init().forward(
        Tensor::<4>::zeros([1, 1, 2, 2], &d),
        Tensor::<4>::zeros([1, 1, 2, 3], &d),
        Reduction::Mean,
    );
}

#[test]
fn all_ignored_gives_zero_not_nan() {
    let d = dev();
    let x = Tensor::<4>::ones([1, 3, 2, 2], &d);
    let labels = Tensor::<3, Int>::full([1, 2, 2], 255, &d);
    let v = CeLossConfig::new()
        .with_ignore_index(Some(255))
        .init()
        .forward(x, labels, Reduction::Mean)
        .into_scalar::<f32>();
    assert_eq!(v, 0.0);
}

#[test]
fn single_pixel_n1_c1_is_finite() {
    let d = dev().autodiff();
    let x = Tensor::<3>::from_floats([[[0.3]]], &d).require_grad();
    let y = Tensor::<3>::from_floats([[[1.0]]], &d);
    for spec in [
        "bce",
        "balanced_bce",
        "focal",
        "bce(pos_weight=3,label_smoothing=0.1)",
    ] {
        let loss = LossSpec::parse(spec).unwrap().build().unwrap();
        let v = loss.forward(x.clone(), y.clone(), None);
        let g = x.grad(&v.clone().backward()).unwrap().into_scalar::<f32>();
        let v = v.into_scalar::<f32>();
        assert!(v.is_finite() && g.is_finite(), "{spec}: {v} {g}");
    }
}

fn logits_strategy() -> impl Strategy<Value = (Vec<f32>, Vec<u8>, usize, Vec<usize>)> {
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

fn tensor_dyn(v: &[f32], shape: &[usize], d: &Device) -> segloss::Flat {
    let t = Tensor::<1>::from_floats(v, d);
    segloss::Flat {
        values: t,
        shape: shape.to_vec(),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, .. ProptestConfig::default() })]

    /// Every distribution loss is finite in value and gradient, ≥ 0, for any finite logits
    /// (including ±1e4), any supported rank, N = 1, C = 1.
    #[test]
    fn finite_and_nonnegative((x, l, c, shape) in logits_strategy()) {
        let d = Device::flex().autodiff();
        let n = shape[0];
        let sp = &shape[2..];
        let px: usize = sp.iter().product();
        // A mask target (one-hot of the labels, or the binary labels for C = 1).
        let mut mask = vec![0f32; x.len()];
        for b in 0..n { for i in 0..px {
            let k = l[b * px + i] as usize;
            if c == 1 { mask[b * px + i] = k.min(1) as f32; } else { mask[(b * c + k) * px + i] = 1.0; }
        }}
        let mut specs = vec!["bce", "balanced_bce", "focal", "focal(gamma=0.5,alpha=0.25)", "bce(pos_weight=2,label_smoothing=0.1)"];
        if c >= 2 { specs.extend(["ce", "ce(label_smoothing=0.1)", "focal(activation=softmax)"]); }
        for spec in specs {
            let loss = LossSpec::parse(spec).unwrap().build().unwrap();
            let p = tensor_dyn(&x, &shape, &d);
            let p = segloss::Flat { values: p.values.require_grad(), shape: p.shape };
            let target = if spec.starts_with("ce") || spec.contains("softmax") {
                let lab: Vec<i64> = l.iter().map(|&v| (v as usize % c) as i64).collect();
                let mut ls = vec![n]; ls.extend_from_slice(sp);
                segloss::Target::labels_flat(Tensor::<1, Int>::from_ints(lab.as_slice(), &d), ls)
            } else {
                segloss::Target::mask_flat(Tensor::<1>::from_floats(mask.as_slice(), &d), shape.clone())
            };
            let v = segloss::SegLoss::loss_value(&loss, p.clone(), target, None, LossReduction::Mean).unwrap();
            let g = to_vec(p.values.grad(&v.values.clone().backward()).unwrap());
            let v = to_vec(v.values)[0];
            prop_assert!(v.is_finite() && v >= -1e-6, "{}: loss {}", spec, v);
            prop_assert!(g.iter().all(|x| x.is_finite()), "{}: non-finite gradient", spec);
        }
    }

    /// A perfect, confident prediction gives (near) zero loss and is the minimum: moving any
    /// logit toward the wrong side does not decrease the loss.
    #[test]
    fn minimal_at_perfect_prediction(bits in prop::collection::vec(any::<bool>(), 1..24)) {
        let d = Device::flex();
        let n = bits.len();
        let y: Vec<f32> = bits.iter().map(|&b| b as u8 as f32).collect();
        let perfect: Vec<f32> = bits.iter().map(|&b| if b { 30.0 } else { -30.0 }).collect();
        let worse: Vec<f32> = bits.iter().map(|&b| if b { 1.0 } else { -1.0 }).collect();
        for spec in ["bce", "bce(pos_weight=3)", "focal", "balanced_bce"] {
            let loss = LossSpec::parse(spec).unwrap().build().unwrap();
            let f = |x: &[f32]| loss.forward(
                Tensor::<1>::from_floats(x, &d).reshape([1, 1, n]),
                Tensor::<1>::from_floats(y.as_slice(), &d).reshape([1, 1, n]),
                None,
            ).into_scalar::<f32>();
            let (vp, vw) = (f(&perfect), f(&worse));
            prop_assert!(vp < 1e-6, "{}: {}", spec, vp);
            prop_assert!(vp <= vw, "{}: {} > {}", spec, vp, vw);
        }
    }
}

#[test]
fn forward_no_reduction_shapes() {
    let d = dev();
    let x = Tensor::<5>::zeros([2, 3, 2, 3, 4], &d);
    let y = Tensor::<5>::zeros([2, 3, 2, 3, 4], &d);
    assert_eq!(
        BceLossConfig::new()
            .init()
            .forward_no_reduction(x.clone(), y.clone())
            .dims(),
        [2, 3, 2, 3, 4]
    );
    assert_eq!(
        FocalLossConfig::new()
            .init()
            .forward_no_reduction(x.clone(), y)
            .dims(),
        [2, 3, 2, 3, 4]
    );
    let l = Tensor::<5, Int>::zeros([2, 1, 2, 3, 4], &d);
    assert_eq!(
        CeLossConfig::new()
            .init()
            .forward_no_reduction(x.clone(), l)
            .dims(),
        [2, 1, 2, 3, 4]
    );
    let y = Tensor::<5>::zeros([2, 3, 2, 3, 4], &d);
    let _ = BalancedBceLossConfig::new()
        .init()
        .forward(x, y, Reduction::Sum);
}

/// Probabilities of exactly 0 and 1 (`activation=none`) give finite values and gradients (the
/// logs are clamped at −100 as PyTorch's BCELoss, with a zero gradient where the clamp is active).
#[test]
fn probabilities_at_zero_and_one_are_finite() {
    let d = Device::flex().autodiff();
    let x = Tensor::<3>::from_floats([[[0.0, 1.0, 0.0, 1.0, 0.5]]], &d).require_grad();
    let y = Tensor::<3>::from_floats([[[0.0, 1.0, 1.0, 0.0, 1.0]]], &d);
    for spec in [
        "bce(activation=none)",
        "balanced_bce(activation=none)",
        "focal(activation=none)",
        "bce(activation=none,pos_weight=2)",
    ] {
        let loss = LossSpec::parse(spec).unwrap().build().unwrap();
        let v = loss.forward(x.clone(), y.clone(), None);
        let g = to_vec(x.grad(&v.clone().backward()).unwrap());
        let v = v.into_scalar::<f32>();
        assert!(v.is_finite(), "{spec}: {v}");
        assert!(g.iter().all(|g| g.is_finite()), "{spec}: {g:?}");
    }
}
