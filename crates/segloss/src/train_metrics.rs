//! Dice, IoU and HD95 as [burn-train](https://docs.rs/burn-train) metrics (cargo feature
//! `train-metrics`), so a burn `Learner` can report the scores a segmentation is judged by.
//!
//! Each metric scores predicted label maps against target label maps, `[N, spatial…]` with one to
//! three spatial axes (`D` = 2, 3 or 4), per sample and per class, with the definitions of
//! [`segloss_core::label_metrics`] (MONAI's, `docs/metrics.md`):
//! - Dice = 2·|P∩G| / (|P| + |G|), IoU = |P∩G| / |P∪G|; both 1 when the class is absent from
//!   prediction and target (the class is only scored if it is listed in
//!   [`with_classes`](SegmentationMetric::with_classes));
//! - HD95 = max(p95 d(P→G), p95 d(G→P)) over the surface voxels, in spacing units (voxels by
//!   default); undefined, and left out of the average, when exactly one of the two masks is empty
//!   (MONAI returns NaN there and averages with `nanmean`).
//!
//! The value of a batch is the mean over its defined (sample, class) scores; the epoch value is the
//! mean over all of them (each batch weighted by its number of defined scores), as MONAI's
//! `DiceMetric(reduction="mean")` / `HausdorffDistanceMetric(percentile=95)` aggregate. A batch
//! with no defined score (HD95 where every prediction or target is empty) leaves the epoch value
//! unchanged and shows NaN as its own value.
//!
//! Scores are computed on the host: the label maps are read back (`into_data`) and each sample is
//! scored in parallel by `segloss-core`.
//!
//! In a `Learner`, implement [`Adaptor`](burn_train::metric::Adaptor)`<SegmentationInput<D>>` for
//! the model's output item, e.g. from logits `[N, C, H, W]`: `logits.argmax(1).squeeze_dim(1)`.
//!
//! ```
//! use burn::tensor::{Device, Int, Tensor};
//! use burn_train::metric::{Metric, MetricMetadata, Numeric};
//! use burn::data::dataloader::Progress;
//! use segloss::train_metrics::{SegmentationInput, SegmentationMetric};
//!
//! let device = Device::flex();
//! // One 2×4 image: prediction [[0,1,1,0],[0,1,1,0]], target [[0,0,1,1],[0,0,1,1]].
//! let pred = Tensor::<3, Int>::from_data([[[0, 1, 1, 0], [0, 1, 1, 0]]], &device);
//! let target = Tensor::<3, Int>::from_data([[[0, 0, 1, 1], [0, 0, 1, 1]]], &device);
//! let input = SegmentationInput::new(pred, target);
//! let meta = MetricMetadata {
//!     progress: Progress { items_processed: 1, items_total: 1, unit: None },
//!     iteration: Some(0),
//!     lr: None,
//! };
//!
//! let mut dice = SegmentationMetric::<3>::dice();
//! dice.update(&input, &meta).unwrap();
//! // |P| = |G| = 4, |P∩G| = 2: Dice = 2·2 / 8.
//! assert_eq!(dice.final_value().current(), 0.5);
//!
//! let mut iou = SegmentationMetric::<3>::iou();
//! iou.update(&input, &meta).unwrap();
//! // |P∪G| = 6.
//! assert!((iou.final_value().current() - 2.0 / 6.0).abs() < 1e-12);
//! ```

use burn::tensor::{Int, Tensor, TensorReadError};
use burn_train::metric::state::{FormatOptions, NumericMetricState};
use burn_train::metric::{
    Metric, MetricAttributes, MetricMetadata, MetricName, Numeric, NumericAttributes, NumericEntry,
    SerializedEntry,
};
use ndarray::{ArrayViewD, IxDyn};
use rayon::prelude::*;

use crate::error::LossError;

/// Predicted and target label maps, `[N, spatial…]` (integer class per voxel), for the metrics of
/// this module.
#[derive(Debug, Clone)]
pub struct SegmentationInput<const D: usize> {
    outputs: Tensor<D, Int>,
    targets: Tensor<D, Int>,
}

impl<const D: usize> SegmentationInput<D> {
    /// Pairs predicted and target label maps.
    ///
    /// # Panics
    /// As [`try_new`](Self::try_new) fails.
    pub fn new(outputs: Tensor<D, Int>, targets: Tensor<D, Int>) -> Self {
        crate::error::or_panic(Self::try_new(outputs, targets))
    }

    /// Pairs predicted and target label maps, checking them.
    ///
    /// # Errors
    /// [`LossError::BadShape`] unless `D` is 2, 3 or 4 (a batch axis and 1–3 spatial axes);
    /// [`LossError::ShapeMismatch`] when the two shapes differ; [`LossError::Empty`] when an axis
    /// is empty.
    pub fn try_new(outputs: Tensor<D, Int>, targets: Tensor<D, Int>) -> Result<Self, LossError> {
        let (a, b) = (outputs.dims(), targets.dims());
        if !(2..=4).contains(&D) {
            return Err(LossError::BadShape {
                what: "label maps".into(),
                got: a.to_vec(),
                expected: "[N, spatial…] with 1 to 3 spatial axes (2 to 4 dims)".into(),
            });
        }
        if a != b {
            return Err(LossError::ShapeMismatch {
                what: "target label map vs predicted label map".into(),
                expected: a.to_vec(),
                got: b.to_vec(),
            });
        }
        if a.contains(&0) {
            return Err(LossError::Empty {
                what: "label maps".into(),
                shape: a.to_vec(),
            });
        }
        Ok(Self { outputs, targets })
    }
}

/// Which score a [`SegmentationMetric`] reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SegmentationScore {
    /// Dice coefficient, 2·|P∩G| / (|P| + |G|); higher is better.
    Dice,
    /// Intersection over union (Jaccard index), |P∩G| / |P∪G|; higher is better.
    Iou,
    /// 95th-percentile symmetric Hausdorff distance of the surfaces, in spacing units; lower is
    /// better.
    Hd95,
}

impl SegmentationScore {
    fn label(self) -> &'static str {
        match self {
            Self::Dice => "Dice",
            Self::Iou => "IoU",
            Self::Hd95 => "HD95",
        }
    }
}

/// A burn-train metric (`Metric` + `Numeric`) reporting Dice, IoU or HD95 of label maps; see the
/// [module documentation](self) for the definitions and the averaging.
#[derive(Clone)]
pub struct SegmentationMetric<const D: usize> {
    score: SegmentationScore,
    name: MetricName,
    classes: Option<Vec<i64>>,
    spacing: Option<Vec<f64>>,
    state: NumericMetricState,
}

impl<const D: usize> SegmentationMetric<D> {
    /// A metric reporting `score`, over every foreground class (label ≠ 0) present in the
    /// prediction or the target of each sample, with unit voxel spacing.
    pub fn new(score: SegmentationScore) -> Self {
        Self {
            score,
            name: MetricName::new(score.label().to_string()),
            classes: None,
            spacing: None,
            state: NumericMetricState::new(),
        }
    }

    /// Dice coefficient.
    pub fn dice() -> Self {
        Self::new(SegmentationScore::Dice)
    }

    /// Intersection over union.
    pub fn iou() -> Self {
        Self::new(SegmentationScore::Iou)
    }

    /// 95th-percentile Hausdorff distance.
    pub fn hd95() -> Self {
        Self::new(SegmentationScore::Hd95)
    }

    /// Scores exactly these class labels in every sample (a class absent from both prediction and
    /// target then scores Dice = IoU = 1 and HD95 = 0).
    ///
    /// # Panics
    /// If `classes` is empty.
    pub fn with_classes(mut self, classes: impl Into<Vec<i64>>) -> Self {
        let classes = classes.into();
        assert!(!classes.is_empty(), "with_classes: give at least one class");
        self.name = MetricName::new(format!("{} {classes:?}", self.score.label()));
        self.classes = Some(classes);
        self
    }

    /// Physical voxel spacing, one positive value per spatial axis (HD95 is then in those units).
    ///
    /// # Panics
    /// If the number of values is not `D − 1` or a value is not finite and positive.
    pub fn with_spacing(mut self, spacing: impl Into<Vec<f64>>) -> Self {
        let spacing = spacing.into();
        assert!(
            spacing.len() + 1 == D && spacing.iter().all(|s| s.is_finite() && *s > 0.0),
            "with_spacing: expected {} finite positive values, got {spacing:?}",
            D.saturating_sub(1)
        );
        self.spacing = Some(spacing);
        self
    }

    /// The defined scores of every (sample, class) pair of a batch.
    fn batch_scores(&self, item: &SegmentationInput<D>) -> Result<Vec<f64>, TensorReadError> {
        let dims = item.outputs.dims();
        let spatial = &dims[1..];
        let read = |t: &Tensor<D, Int>| -> Result<Vec<i64>, TensorReadError> {
            Ok(t.clone()
                .into_data()
                .convert::<i64>()
                .try_into_vec::<i64>()
                .expect("converted to i64"))
        };
        let (p, t) = (read(&item.outputs)?, read(&item.targets)?);
        let s: usize = spatial.iter().product();
        let per_sample: Vec<Vec<f64>> = p
            .par_chunks(s)
            .zip(t.par_chunks(s))
            .map(|(p, t)| {
                let pv = ArrayViewD::from_shape(IxDyn(spatial), p).expect("checked shape");
                let tv = ArrayViewD::from_shape(IxDyn(spatial), t).expect("checked shape");
                let m = segloss_core::label_metrics(
                    &pv,
                    &tv,
                    self.classes.as_deref(),
                    self.spacing.as_deref(),
                    1.0,
                )
                .unwrap_or_else(|e| panic!("{}: {e}", self.score.label()));
                m.into_iter()
                    .filter_map(|(_, m)| match self.score {
                        SegmentationScore::Dice => Some(m.dice),
                        SegmentationScore::Iou => Some(m.iou),
                        SegmentationScore::Hd95 => m.hd95,
                    })
                    .collect()
            })
            .collect();
        Ok(per_sample.concat())
    }

    fn format(&self) -> FormatOptions {
        let f = FormatOptions::new(self.name.clone()).precision(4);
        match (self.score, &self.spacing) {
            (SegmentationScore::Hd95, None) => f.unit("px"),
            _ => f,
        }
    }
}

impl<const D: usize> Metric for SegmentationMetric<D> {
    type Input = SegmentationInput<D>;

    fn name(&self) -> MetricName {
        self.name.clone()
    }

    fn description(&self) -> Option<String> {
        Some(match self.score {
            SegmentationScore::Dice => "mean Dice coefficient over samples and classes".into(),
            SegmentationScore::Iou => {
                "mean intersection over union over samples and classes".into()
            }
            SegmentationScore::Hd95 => {
                "mean 95th-percentile Hausdorff distance over samples and classes".into()
            }
        })
    }

    fn attributes(&self) -> MetricAttributes {
        NumericAttributes {
            unit: (self.score == SegmentationScore::Hd95 && self.spacing.is_none())
                .then(|| "px".to_string()),
            higher_is_better: self.score != SegmentationScore::Hd95,
        }
        .into()
    }

    fn update(
        &mut self,
        item: &SegmentationInput<D>,
        _metadata: &MetricMetadata,
    ) -> Result<SerializedEntry, TensorReadError> {
        let scores = self.batch_scores(item)?;
        let mean = if scores.is_empty() {
            f64::NAN
        } else {
            scores.iter().sum::<f64>() / scores.len() as f64
        };
        self.state.update(mean, scores.len());
        Ok(self.state.compute_update(self.format()))
    }

    fn compute(&mut self) -> Result<SerializedEntry, TensorReadError> {
        Ok(self.state.compute_final(self.format()))
    }

    fn clear(&mut self) {
        self.state.reset();
    }
}

impl<const D: usize> Numeric for SegmentationMetric<D> {
    fn value(&self) -> Option<NumericEntry> {
        Some(self.state.current_value())
    }

    fn running_value(&self) -> Option<NumericEntry> {
        Some(self.state.running_value())
    }

    fn final_value(&self) -> NumericEntry {
        self.state.final_value()
    }
}
