//! Sums of losses computed in one fused pass, chosen by the parts the terms declare
//! ([`SegLoss::sum_part`](crate::SegLoss::sum_part), [`SumPart`]), never by the terms' types.
//!
//! One fused sum exists: one Dice/Jaccard term plus softmax cross-entropy terms (MONAI's
//! `DiceCELoss`, `a·dice + b·ce`), on softmax logits with label targets, on the CPU kernels: one
//! value check, one softmax forward and one backward for every term. Anything else is computed
//! term by term, with the same value and gradient (tested).

use crate::error::LossError;
use crate::input::host_f32;
use crate::input::{prepare, Flat, InputRules, LossReduction, LossValue, Prepared, Target};
use crate::loss::{DicePart, SumPart};
use crate::region::dice::DiceFormula;
use crate::region::host::{finish, host_step, RegionLayout};
use crate::region::kept_class_weight_values;

/// One term of a sum as the fusion sees it: its weight, the part it declares and its reduction.
pub(crate) struct FusionTerm {
    /// The term's weight.
    pub weight: f64,
    /// What the term declares ([`SegLoss::sum_part`](crate::SegLoss::sum_part)).
    pub part: Option<SumPart>,
    /// The term's reduction (its own, or the sum's).
    pub reduction: LossReduction,
}

/// The weighted sum of `terms` through a fused pass, or `None` where none applies (the terms
/// are then computed one by one): a term declares no part, the parts do not form a fused sum,
/// the terms' reductions differ or are `none`, the target is a mask, the backend or dtype is not
/// the fused kernels'.
pub(crate) fn fused_sum(
    terms: Vec<FusionTerm>,
    pred: &Flat,
    target: &Target,
) -> Result<Option<LossValue>, LossError> {
    let Some(red) = terms.first().map(|t| t.reduction) else {
        return Ok(None);
    };
    if red == LossReduction::None || terms.iter().any(|t| t.reduction != red) {
        return Ok(None);
    }
    let Some((dice, [w_dice, w_ce])) = dice_ce_parts(terms) else {
        return Ok(None);
    };
    if !target.is_labels()
        || pred.shape.len() < 3
        || pred.shape[1] < 2
        || !crate::fused::applies_quiet(&pred.values)
    {
        return Ok(None);
    }
    // Label targets with C >= 2: the default activation resolves to softmax, the one the Dice
    // part was declared for.
    let rules = InputRules::any_activation(dice.name, None);
    let p = prepare(pred.clone(), target.clone(), &rules)?;
    let w = match &dice.weight {
        Some(w) => kept_class_weight_values(&p, w, dice.include_background)?,
        None => None,
    };
    Ok(host_dice_ce(&p, &dice, [w_dice, w_ce], red, w.as_deref()))
}

/// The Dice part and the weights `[w_dice, Σ w_ce]` when the terms are exactly one Dice term and
/// at least one softmax cross-entropy term.
fn dice_ce_parts(terms: Vec<FusionTerm>) -> Option<(DicePart, [f64; 2])> {
    let mut dice = None;
    let mut w_ce = 0.0;
    let mut ce_terms = 0;
    for t in terms {
        match t.part? {
            SumPart::Dice(d) => {
                if dice.is_some() {
                    return None;
                }
                dice = Some((d, t.weight));
            }
            SumPart::SoftmaxCe => {
                w_ce += t.weight;
                ce_terms += 1;
            }
        }
    }
    let (d, w_dice) = dice?;
    (ce_terms > 0).then_some((d, [w_dice, w_ce]))
}

/// `w_dice · dice + w_ce · ce` (MONAI's `DiceCELoss`) in one fused pass over softmax logits with
/// label targets: the region kernel with the cross-entropy row (see
/// [`crate::fused::region_ce_sums`]), the Dice formula on the host, the CE sum reduced as the CE
/// loss does (mean over the N·S pixels, sum, or sum/N). `None` where it does not apply.
pub(crate) fn host_dice_ce(
    p: &Prepared,
    dice: &DicePart,
    [w_dice, w_ce]: [f64; 2],
    reduction: LossReduction,
    output_weights: Option<&[f64]>,
) -> Option<LossValue> {
    if reduction == LossReduction::None
        || p.valid.is_some()
        || p.activation != crate::Activation::Softmax
    {
        return None;
    }
    let labels = p.labels.as_ref()?;
    let s = crate::fused::region_ce_sums(&p.x, labels)?;
    let raw = host_f32(&s)?;
    let (n, c) = (p.n, p.c);
    let f = DiceFormula {
        jaccard: dice.jaccard,
        squared: dice.squared,
        smooth_nr: dice.smooth_nr,
        smooth_dr: dice.smooth_dr,
    };
    let layout = RegionLayout {
        n,
        c,
        rows: c + 1,
        include_background: dice.include_background,
        batch: dice.batch,
    };
    let (dv, mut g) = host_step(&raw, &layout, reduction, output_weights, &f);
    g.iter_mut().for_each(|v| *v *= w_dice);
    let ce_scale = match reduction {
        LossReduction::Mean => 1.0 / (n * p.s()).max(1) as f64,
        LossReduction::BatchMean => 1.0 / n as f64,
        _ => 1.0,
    };
    let mut ce = 0.0f64;
    for i in 0..n {
        let at = (i * (c + 1) + c) * 8;
        ce += f64::from(raw[at]);
        g[at] = w_ce * ce_scale;
    }
    Some(finish(s, w_dice * dv + w_ce * ce * ce_scale, g))
}

#[cfg(test)]
mod tests {
    use burn::tensor::{Device, Int, Tensor};

    use super::*;
    use crate::spec::LossSpec;

    fn terms(spec: &str) -> Vec<FusionTerm> {
        let loss = LossSpec::parse(spec).unwrap().build().unwrap();
        loss.terms
            .iter()
            .map(|t| FusionTerm {
                weight: t.weight,
                part: t.loss.sum_part(),
                reduction: t.reduction.unwrap_or(LossReduction::Mean),
            })
            .collect()
    }

    /// Which sums fuse is decided by the parts the terms declare.
    #[test]
    fn dice_with_softmax_ce_terms_fuse_and_nothing_else() {
        for (spec, weights) in [
            ("dice + ce", Some([1.0, 1.0])),
            ("0.3*ce + 0.7*jaccard(power=2)", Some([0.7, 0.3])),
            ("0.5*dice + 0.25*ce + 0.25*ce", Some([0.5, 0.5])),
            (
                "dice(activation=softmax, weight=[1,2]) + ce",
                Some([1.0, 1.0]),
            ),
        ] {
            let got = dice_ce_parts(terms(spec)).map(|(_, w)| w);
            assert_eq!(got, weights, "{spec}");
        }
        for spec in [
            "dice",
            "ce",
            "dice + bce",
            "dice + dice + ce",
            "dice(ignore_index=0) + ce",
            "dice(soft_label=true) + ce",
            "dice(power=1.5) + ce",
            "dice(activation=sigmoid) + ce",
            "dice + ce(weight=[1,2])",
            "dice + ce(label_smoothing=0.1)",
            "dice + ce(ignore_index=255)",
            "dice + ce + focal",
        ] {
            assert!(dice_ce_parts(terms(spec)).is_none(), "{spec}");
        }
    }

    /// The fused pass runs on softmax logits with labels, and not with a mask, `none` or mixed
    /// reductions.
    #[test]
    fn the_fused_pass_runs_only_where_it_applies() {
        let device = Device::flex();
        let x = Flat::from_tensor(Tensor::<4>::from_floats(
            [[[[0.5, -1.0], [2.0, 0.0]], [[-0.5, 1.0], [0.0, 1.0]]]],
            &device,
        ));
        let labels = Target::from(Tensor::<3, Int>::from_ints([[[0, 1], [1, 0]]], &device));
        let mask = Target::from(Tensor::<4>::from_floats(
            [[[[1.0, 0.0], [0.0, 1.0]], [[0.0, 1.0], [1.0, 0.0]]]],
            &device,
        ));
        let fused =
            |spec: &str, target: &Target| fused_sum(terms(spec), &x, target).unwrap().is_some();
        assert!(fused("dice + ce", &labels));
        assert!(fused("dice(reduction=sum) + ce(reduction=sum)", &labels));
        assert!(!fused("dice + ce", &mask));
        assert!(!fused("dice(reduction=sum) + ce", &labels));
    }
}
