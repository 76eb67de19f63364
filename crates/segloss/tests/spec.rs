//! The loss-spec grammar (`docs/spec-grammar.md`): what parses, what builds, the errors (with the
//! offending position and the allowed names/keys), and a property test that no input string makes
//! the parser or the builder panic.

use proptest::prelude::*;
use segloss::{loss_names, LossError, LossSpec};

#[test]
fn design_examples_parse_and_build() {
    for s in [
        "dice",
        "bce(pos_weight=3)",
        "0.5*dice(power=2,batch=true) + 0.5*bce",
        "ce(weight=[0.2,1,1],ignore_index=255)",
        "0.7*dice(activation=softmax) + 0.3*ce",
        "dice + focal",
        "  1e-1 * focal ( gamma = 3 ) - 0.5*bce  ",
        "shape_aware(w0=10,sigma=5,class_weight=none)",
        "hausdorff_dt(alpha=2,include_background=false,batch=true)",
    ] {
        let spec = LossSpec::parse(s).unwrap_or_else(|e| panic!("{s}: {}", e.pretty()));
        spec.build().unwrap_or_else(|e| panic!("{s}: {e}"));
    }
    let spec = LossSpec::parse("  1e-1 * focal ( gamma = 3 ) - 0.5*bce  ").unwrap();
    assert_eq!(spec.terms[0].weight, 0.1);
    assert_eq!(spec.terms[1].weight, -0.5);
}

#[test]
fn every_catalogue_name_builds_with_defaults() {
    for name in loss_names() {
        LossSpec::parse(name)
            .unwrap()
            .build()
            .unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    // docs/losses.md, every family
    for name in [
        "bce",
        "balanced_bce",
        "ce",
        "focal",
        "weighted_ce",
        "dice",
        "jaccard",
        "generalized_dice",
        "tversky",
        "focal_tversky",
        "sensitivity_specificity",
        "log_cosh_dice",
        "lovasz",
        "mcc",
        "shape_aware",
        "contour_ce",
        "hausdorff_dt",
        "boundary",
        "cldice",
        "distance_penalized_ce",
        "combo",
        "exp_log",
    ] {
        assert!(
            loss_names().contains(&name),
            "{name} missing from the catalogue"
        );
    }
}

fn spec_err(s: &str) -> (usize, String) {
    let e = match LossSpec::parse(s) {
        Err(e) => e,
        Ok(spec) => match spec.build() {
            Err(LossError::Spec(e)) => e,
            Err(other) => return (usize::MAX, other.to_string()),
            Ok(_) => panic!("{s} should fail"),
        },
    };
    (e.pos, e.to_string())
}

/// Found by the spec fuzzer: a newline in the spec came back raw in "found '…'", so the CLI's
/// one-line error spanned several lines. Control characters are now escaped.
#[test]
fn errors_are_one_line_for_specs_with_newlines_and_tabs() {
    for s in [
        "\n\nlovcee(ae=[1e32805\n\ndis)",
        "dice(\tgamma=1)",
        "dice\r\n+ bcx\n",
    ] {
        let (_, msg) = spec_err(s);
        assert!(
            !msg.contains('\n') && !msg.contains('\r') && !msg.contains('\t'),
            "{msg:?}"
        );
    }
    let (_, msg) = spec_err("\n\nlovcee(ae=[1e32805\n\ndis)");
    assert!(msg.contains("found '\\n'"), "{msg}");
}

#[test]
fn errors_point_at_the_offending_character_and_list_what_is_allowed() {
    let (pos, msg) = spec_err("0.5*dcie + bce");
    assert_eq!(pos, 4);
    assert!(
        msg.contains("unknown loss 'dcie'") && msg.contains("known losses: bce"),
        "{msg}"
    );
    let (pos, msg) = spec_err("bce(pos_wieght=3)");
    assert_eq!(pos, 4);
    assert!(
        msg.contains("unknown argument 'pos_wieght'") && msg.contains("pos_weight"),
        "{msg}"
    );
    let (pos, msg) = spec_err("bce(pos_weight=abc)");
    assert_eq!(pos, 15);
    assert!(msg.contains("pos_weight") && msg.contains("> 0"), "{msg}");
    let (pos, msg) = spec_err("bce(pos_weight=-1)");
    assert_eq!(pos, 15, "{msg}");
    let (_, msg) = spec_err("focal(alpha=2)");
    assert!(msg.contains("alpha") && msg.contains("[0, 1]"), "{msg}");
    let (pos, msg) = spec_err("ce(weight=[1,2,)");
    assert_eq!(pos, 15, "{msg}");
    let (pos, _) = spec_err("bce +");
    assert_eq!(pos, 5);
    let (pos, _) = spec_err("bce(pos_weight=3");
    assert_eq!(pos, 16);
    let (pos, _) = spec_err("2 bce");
    assert_eq!(pos, 2);
    let (pos, msg) = spec_err("");
    assert_eq!(pos, 0);
    assert!(msg.contains("empty"), "{msg}");
    let (_, msg) = spec_err("bce(activation=softmx)");
    assert!(msg.contains("sigmoid | softmax | none"), "{msg}");
    let (_, msg) = spec_err("bce(reduction=none) + dice");
    assert!(msg.contains("single-term"), "{msg}");
    let (pos, msg) = spec_err("bce(pos_weight=1,pos_weight=2)");
    assert_eq!(pos, 17);
    assert!(msg.contains("twice"), "{msg}");
    // the pretty form puts a caret under the offending character
    let e = LossSpec::parse("dice + + bce").unwrap_err();
    let pretty = e.pretty();
    let lines: Vec<&str> = pretty.lines().collect();
    assert_eq!(lines[2].find('^').unwrap() - 2, 7, "{pretty}");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, .. ProptestConfig::default() })]

    /// Arbitrary strings never panic the parser or the builder; an error's position lies inside
    /// the string (or at its end).
    #[test]
    fn parser_never_panics(s in "\\PC{0,40}") {
        match LossSpec::parse(&s) {
            Err(e) => {
                prop_assert!(e.pos <= s.len());
                prop_assert!(!e.to_string().contains('\n'));
            }
            Ok(spec) => {
                if let Err(LossError::Spec(e)) = spec.build() {
                    prop_assert!(e.pos <= s.len());
                }
            }
        }
    }

    /// Strings made of the grammar's own tokens (much likelier to get deep into the parser).
    #[test]
    fn token_soup_never_panics(tokens in prop::collection::vec(prop_oneof![
        Just("dice"), Just("bce"), Just("focal"), Just("("), Just(")"), Just(","), Just("="),
        Just("+"), Just("-"), Just("*"), Just("0.5"), Just("1e9"), Just("-3"), Just("true"),
        Just("["), Just("]"), Just("gamma"), Just("weight"), Just("activation"), Just("softmax"),
        Just(" "), Just("1e999"), Just("nan"), Just("inf"), Just(".")
    ], 0..16)) {
        let s: String = tokens.concat();
        match LossSpec::parse(&s) {
            Err(e) => prop_assert!(e.pos <= s.len()),
            Ok(spec) => { let _ = spec.build(); }
        }
    }
}

/// Found by the spec fuzzer: `jaccard(smooth_nr=1e54)` overflowed f32 into a NaN loss. Smoothing
/// terms are now bounded (≤ 1e12); the largest allowed one still gives a finite loss.
#[test]
fn huge_smoothing_is_rejected_and_the_largest_allowed_is_finite() {
    let (_, msg) = spec_err("jaccard(smooth_nr=1e54,smooth_dr=1e-5)");
    assert!(msg.contains("smooth_nr") && msg.contains("1e12"), "{msg}");
    let device = burn::tensor::Device::flex();
    let x = burn::tensor::Tensor::<4>::from_floats([[[[2.0, -1.0], [0.5, 3.0]]]], &device);
    let y = burn::tensor::Tensor::<4>::from_floats([[[[1.0, 0.0], [0.0, 1.0]]]], &device);
    for spec in [
        "jaccard(smooth_nr=1e12,smooth_dr=1e-5)",
        "dice(smooth_nr=1e-5,smooth_dr=1e12)",
    ] {
        let loss = LossSpec::parse(spec).unwrap().build().unwrap();
        let v = loss
            .forward(x.clone(), y.clone(), None)
            .into_scalar::<f32>();
        assert!(v.is_finite(), "{spec}: {v}");
    }
}

/// Found by the spec fuzzer: tversky(alpha=1.1e128) gave a NaN loss. Every numeric spec parameter
/// is now bounded by 1e12 in magnitude.
#[test]
fn huge_numeric_parameters_are_rejected() {
    for spec in [
        "tversky(alpha=1e128,beta=7)",
        "bce(pos_weight=1e13)",
        "focal(gamma=1e20)",
    ] {
        let (_, msg) = spec_err(spec);
        assert!(msg.contains("at most 1e12 in magnitude"), "{spec}: {msg}");
    }
}

/// The same overflow through the Config API, which has no 1e12 bound: the finiteness check on the
/// computed loss turns it into an error instead of a silent NaN. (Reduced losses on the CPU take
/// the host formula step in f64, where α = 1e128 does not overflow: a finite value, ≈ 1, is then
/// the right answer; `reduction = none` keeps the f32 tensor formula, which overflows.)
#[test]
fn a_loss_that_overflows_is_an_error_not_a_nan() {
    use burn::tensor::{Device, Tensor};
    use segloss::{LossReduction, TverskyLossConfig};
    let d = Device::flex();
    let x = Tensor::<4>::from_floats([[[[1.0, -1.0], [-1.0, 1.0]]]], &d);
    let y = Tensor::<4>::from_floats([[[[1.0, 0.0], [1.0, 1.0]]]], &d);
    let loss = TverskyLossConfig::new()
        .with_alpha(1e128)
        .with_beta(7.0)
        .init();
    for red in [LossReduction::Mean, LossReduction::Sum, LossReduction::None] {
        match loss.try_forward(x.clone(), y.clone(), red) {
            Ok(v) => {
                assert_ne!(red, LossReduction::None);
                let v = v.values.into_scalar::<f32>();
                assert!((v - 1.0).abs() < 1e-3, "{red:?}: {v}");
            }
            Err(err) => {
                assert!(
                    matches!(&err, LossError::NonFiniteLoss { loss } if loss == "tversky"),
                    "{err:?}"
                );
                assert!(err.to_string().contains("overflow f32"), "{err}");
            }
        }
    }
    assert!(loss
        .try_forward(x.clone(), y.clone(), LossReduction::None)
        .is_err());
    // The same loss with a sane alpha is finite (MONAI's case above: 0.3589 at α=0.3, β=0.7).
    let ok = TverskyLossConfig::new()
        .with_alpha(0.3)
        .with_beta(0.7)
        .with_smooth(1e-6)
        .init();
    let v = ok
        .try_forward(x, y, LossReduction::Mean)
        .unwrap()
        .values
        .into_scalar::<f32>();
    assert!((v - 0.3589).abs() < 1e-4, "{v}");
}

/// Found by the spec fuzzer (run 5, through the finiteness check): an exponent within the 1e12
/// bound can still overflow, `exp_log(gamma=83)` raising −ln(Dice) ≈ 20 to the 83rd power. It is
/// an error naming the loss, not a NaN.
#[test]
fn an_exponent_that_overflows_is_an_error() {
    let d = burn::tensor::Device::flex();
    let x = burn::tensor::Tensor::<4>::from_floats([[[[-9.0, 9.0], [9.0, -9.0]]]], &d);
    let y = burn::tensor::Tensor::<4>::from_floats([[[[1.0, 0.0], [0.0, 1.0]]]], &d);
    let loss = LossSpec::parse("exp_log(w_dice=0.8,w_ce=0.2,gamma=83)")
        .unwrap()
        .build()
        .unwrap();
    let err = loss
        .try_forward(x, y, None, segloss::LossReduction::Mean)
        .unwrap_err();
    assert!(
        matches!(&err, LossError::NonFiniteLoss { loss } if loss == "composite"),
        "{err:?}"
    );
}
