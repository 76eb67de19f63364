//! Validation metrics of a binary prediction against the truth: Dice, IoU, HD95 and the
//! object-level F1 that tells whether touching cells were separated.
//!
//! This module depends only on `ndarray` and `segloss-core`, so the tests include it directly.
//!
//! Conventions (`docs/metrics.md`): both masks empty → Dice = IoU = 1 and HD95 = 0; exactly one
//! empty → Dice = IoU = 0 and HD95 undefined (`None`, left out of means). Surfaces and HD95 follow
//! MONAI (`use_subvoxels=False`): the surface of a mask is its foreground pixels with a
//! face-neighbour outside the mask (outside the image counts as outside the mask); HD95 is the
//! larger of the two directed 95th percentiles (numpy's linear interpolation) of the distances
//! from one surface to the other.
//!
//! Object-level counts: the predicted objects are the connected components (8-connectivity) of the
//! predicted mask, the true objects the instances; a predicted object matches a true one when their
//! IoU is at least the threshold (0.5), one to one (greedy by IoU, which is the unique matching
//! when the threshold is above 0.5). Unmatched predictions are false positives, unmatched true
//! objects false negatives; a prediction that merges two touching cells matches at most one of
//! them.

use std::collections::HashMap;

use ndarray::Array2;
use segloss_core::{connected_components, edt, relabel_sequential, Connectivity};

/// Dice and IoU of two binary masks (1 and 1 when both are empty).
pub fn dice_iou(pred: &Array2<bool>, truth: &Array2<bool>) -> (f64, f64) {
    let (mut tp, mut np, mut nt) = (0usize, 0usize, 0usize);
    for (&p, &t) in pred.iter().zip(truth.iter()) {
        tp += (p && t) as usize;
        np += p as usize;
        nt += t as usize;
    }
    if np + nt == 0 {
        return (1.0, 1.0);
    }
    let dice = 2.0 * tp as f64 / (np + nt) as f64;
    let iou = tp as f64 / (np + nt - tp) as f64;
    (dice, iou)
}

/// Foreground pixels with a face-neighbour outside the mask (or on the image border).
pub fn surface(mask: &Array2<bool>) -> Array2<bool> {
    let (h, w) = mask.dim();
    Array2::from_shape_fn((h, w), |(y, x)| {
        if !mask[[y, x]] {
            return false;
        }
        y == 0
            || x == 0
            || y + 1 == h
            || x + 1 == w
            || !mask[[y - 1, x]]
            || !mask[[y + 1, x]]
            || !mask[[y, x - 1]]
            || !mask[[y, x + 1]]
    })
}

/// The 95th percentile with numpy's default linear interpolation (`values` non-empty).
fn percentile95(mut values: Vec<f64>) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    let pos = 0.95 * (values.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    let frac = pos - lo as f64;
    values[lo] + (values[hi] - values[lo]) * frac
}

/// Directed distances from every surface pixel of `from` to the nearest surface pixel of `to`.
fn directed(from: &Array2<bool>, to: &Array2<bool>) -> Vec<f64> {
    // EDT of "not on the surface of `to`": every pixel's distance to the nearest surface pixel.
    let not_to = to.mapv(|v| !v);
    let d: Array2<f64> = edt(&not_to, None).expect("a non-empty 2D mask");
    from.iter()
        .zip(d.iter())
        .filter(|(f, _)| **f)
        .map(|(_, d)| *d)
        .collect()
}

/// The 95th-percentile Hausdorff distance in pixels; `None` when exactly one mask is empty.
pub fn hd95(pred: &Array2<bool>, truth: &Array2<bool>) -> Option<f64> {
    let (sp, st) = (surface(pred), surface(truth));
    let (ep, et) = (!sp.iter().any(|v| *v), !st.iter().any(|v| *v));
    match (ep, et) {
        (true, true) => Some(0.0),
        (true, false) | (false, true) => None,
        _ => {
            let a = percentile95(directed(&sp, &st));
            let b = percentile95(directed(&st, &sp));
            Some(a.max(b))
        }
    }
}

/// Object-level counts of one image or a sum over images.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ObjectCounts {
    /// Predicted objects matched to a true object.
    pub tp: usize,
    /// Predicted objects matched to none.
    pub fp: usize,
    /// True objects matched by none.
    pub fn_: usize,
}

impl ObjectCounts {
    /// Precision, 1 when nothing was predicted and nothing was there.
    pub fn precision(&self) -> f64 {
        ratio(self.tp, self.tp + self.fp, self.fn_ == 0)
    }

    /// Recall, 1 when there was nothing to find and nothing was predicted.
    pub fn recall(&self) -> f64 {
        ratio(self.tp, self.tp + self.fn_, self.fp == 0)
    }

    /// F1 = 2·TP / (2·TP + FP + FN); 1 when there are no objects on either side.
    pub fn f1(&self) -> f64 {
        let d = 2 * self.tp + self.fp + self.fn_;
        if d == 0 {
            1.0
        } else {
            2.0 * self.tp as f64 / d as f64
        }
    }
}

impl std::ops::AddAssign for ObjectCounts {
    fn add_assign(&mut self, o: Self) {
        self.tp += o.tp;
        self.fp += o.fp;
        self.fn_ += o.fn_;
    }
}

fn ratio(num: usize, den: usize, empty_is_perfect: bool) -> f64 {
    if den == 0 {
        if empty_is_perfect {
            1.0
        } else {
            0.0
        }
    } else {
        num as f64 / den as f64
    }
}

/// Matches the connected components (8-connectivity) of `pred` to the instances of `truth`
/// (distinct non-zero values; they need not be connected) at IoU ≥ `iou_threshold`.
pub fn object_counts(
    pred: &Array2<bool>,
    truth_instances: &Array2<u32>,
    iou_threshold: f64,
) -> ObjectCounts {
    assert_eq!(
        pred.dim(),
        truth_instances.dim(),
        "prediction and truth shapes differ"
    );
    let (pl, kp) = connected_components(pred, Connectivity::Full).expect("a non-empty 2D mask");
    let (tl, kt) = relabel_sequential(truth_instances).expect("a non-empty 2D label image");
    let mut area_p = vec![0usize; kp + 1];
    let mut area_t = vec![0usize; kt + 1];
    let mut inter: HashMap<(u32, u32), usize> = HashMap::new();
    for (&p, &t) in pl.iter().zip(tl.iter()) {
        area_p[p as usize] += 1;
        area_t[t as usize] += 1;
        if p > 0 && t > 0 {
            *inter.entry((p, t)).or_insert(0) += 1;
        }
    }
    let mut cand: Vec<(f64, u32, u32)> = inter
        .into_iter()
        .filter_map(|((p, t), i)| {
            let u = area_p[p as usize] + area_t[t as usize] - i;
            let iou = i as f64 / u as f64;
            (iou >= iou_threshold).then_some((iou, p, t))
        })
        .collect();
    cand.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
    let mut used_p = vec![false; kp + 1];
    let mut used_t = vec![false; kt + 1];
    let mut tp = 0;
    for (_, p, t) in cand {
        if !used_p[p as usize] && !used_t[t as usize] {
            used_p[p as usize] = true;
            used_t[t as usize] = true;
            tp += 1;
        }
    }
    ObjectCounts {
        tp,
        fp: kp - tp,
        fn_: kt - tp,
    }
}

/// All metrics of one image.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ImageMetrics {
    /// Dice of the masks.
    pub dice: f64,
    /// IoU of the masks.
    pub iou: f64,
    /// HD95 in pixels (`None`: exactly one mask empty).
    pub hd95: Option<f64>,
    /// Object-level counts at IoU ≥ 0.5.
    pub objects: ObjectCounts,
}

/// The metrics of a probability map thresholded at 0.5 against a truth mask and its instances.
pub fn image_metrics(
    prob: &Array2<f32>,
    truth_mask: &Array2<f32>,
    truth_instances: &Array2<u32>,
) -> ImageMetrics {
    let pred = prob.mapv(|p| p > 0.5);
    let truth = truth_mask.mapv(|t| t > 0.5);
    let (dice, iou) = dice_iou(&pred, &truth);
    ImageMetrics {
        dice,
        iou,
        hd95: hd95(&pred, &truth),
        objects: object_counts(&pred, truth_instances, 0.5),
    }
}

/// Metrics over a validation set: Dice, IoU and HD95 averaged over images (HD95 over the images
/// where it is defined), object counts summed over images.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SetMetrics {
    /// Mean Dice.
    pub dice: f64,
    /// Mean IoU.
    pub iou: f64,
    /// Mean HD95 (`None` when undefined on every image).
    pub hd95: Option<f64>,
    /// Summed object counts.
    pub objects: ObjectCounts,
}

impl SetMetrics {
    /// Aggregates per-image metrics (an empty set gives zeros).
    pub fn from_images(items: &[ImageMetrics]) -> SetMetrics {
        let n = items.len().max(1) as f64;
        let hd: Vec<f64> = items.iter().filter_map(|m| m.hd95).collect();
        let mut objects = ObjectCounts::default();
        for m in items {
            objects += m.objects;
        }
        SetMetrics {
            dice: items.iter().map(|m| m.dice).sum::<f64>() / n,
            iou: items.iter().map(|m| m.iou).sum::<f64>() / n,
            hd95: (!hd.is_empty()).then(|| hd.iter().sum::<f64>() / hd.len() as f64),
            objects,
        }
    }
}
