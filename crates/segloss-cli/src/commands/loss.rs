//! `segloss loss SPEC --pred P --target T [--weights W] [--grad G] [--format json|text]
//! [--device flex|wgpu|cuda]`.

use std::path::PathBuf;

use burn::tensor::{DType, Device, Int, Tensor, TensorData};
use clap::{Args, ValueEnum};
use segloss::{Flat, LossReduction, LossSpec, SegLoss, Target};
use segloss_io::{ArrayData, WriteOptions};

use crate::device::DeviceArg;
use crate::error::CliError;

/// Output format.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum Format {
    /// `{"loss": …}`.
    Json,
    /// Plain text.
    Text,
}

/// Arguments of `segloss loss`.
#[derive(Args, Debug)]
pub struct LossArgs {
    /// The loss spec, e.g. "dice", "bce(pos_weight=3)", "0.5*focal + 0.5*bce".
    pub spec: String,
    /// Predictions [N, C, *spatial] (.npy, any numeric dtype; logits unless activation=none).
    #[arg(long)]
    pub pred: PathBuf,
    /// Target: a mask of the prediction's shape, or a label map [N, 1, *spatial] / [N, *spatial].
    #[arg(long)]
    pub target: PathBuf,
    /// Per-pixel weight map (weighted_ce): [N, 1, *spatial], [N, *spatial] or [N, C, *spatial].
    #[arg(long)]
    pub weights: Option<PathBuf>,
    /// Write d(loss)/d(pred) here (.npy; float64 for float64 predictions, else float32).
    #[arg(long)]
    pub grad: Option<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Json)]
    pub format: Format,
    /// Overwrite an existing --grad file.
    #[arg(long)]
    pub force: bool,
    /// The backend: flex (CPU), wgpu or cuda (the last two need the cargo feature of that name).
    /// A float64 prediction needs a backend with float64 (flex, cuda); on wgpu it is refused.
    #[arg(long, value_enum, default_value_t = DeviceArg::Flex)]
    pub device: DeviceArg,
}

fn float_tensor(data: &ArrayData, device: &Device, dtype: DType) -> Flat {
    let shape = data.shape().to_vec();
    let values: Vec<f64> = data.to_f64().iter().copied().collect();
    let n = values.len();
    let t: Tensor<1> = Tensor::from_data(TensorData::new(values, [n]), (device, dtype));
    Flat { values: t, shape }
}

fn check_finite(data: &ArrayData, path: &std::path::Path) -> Result<(), CliError> {
    if data.is_float() {
        if let Some((i, v)) = data
            .to_f64()
            .iter()
            .enumerate()
            .find(|(_, v)| !v.is_finite())
        {
            return Err(CliError::input(format!(
                "{}: value {v} at flat index {i}: expected finite numbers",
                path.display()
            )));
        }
    }
    Ok(())
}

/// Runs `segloss loss`.
pub fn run(a: LossArgs) -> Result<(), CliError> {
    let spec = LossSpec::parse(&a.spec).map_err(|e| CliError::input(e.to_string()))?;
    let loss = spec.build()?;
    let pred = segloss_io::read(&a.pred)?;
    let target = segloss_io::read(&a.target)?;
    let weights = match &a.weights {
        Some(p) => Some(segloss_io::read(p)?),
        None => None,
    };
    if loss.needs_weights() && weights.is_none() {
        return Err(CliError::input(format!(
            "loss '{}' needs a per-pixel weight map: pass --weights W",
            a.spec
        )));
    }
    if !loss.needs_weights() {
        if let Some(w) = &a.weights {
            return Err(CliError::input(format!(
                "{}: loss '{}' takes no weight map (only weighted_ce does)",
                w.display(),
                a.spec
            )));
        }
    }
    let pshape = pred.data.shape().to_vec();
    if !(3..=5).contains(&pshape.len()) || pshape.contains(&0) {
        return Err(CliError::input(format!(
            "{}: prediction of shape {pshape:?}: expected [N, C, *spatial] with 1 to 3 spatial dims and no empty axis",
            a.pred.display()
        )));
    }
    check_finite(&pred.data, &a.pred)?;
    if let Some(w) = &weights {
        check_finite(&w.data, a.weights.as_ref().expect("weights path"))?;
    }

    let f64_input = matches!(pred.data, ArrayData::F64(_));
    let base = a.device.device()?;
    let dtype = if !f64_input {
        DType::F32
    } else if a.device != DeviceArg::Wgpu && base.supports_dtype(DType::F64) {
        DType::F64
    } else {
        // Never a silent f32 computation of an f64 request. wgpu is refused even where the
        // adapter reports float64 (Mesa's lavapipe does, and returns wrong float64 results).
        return Err(CliError::input(format!(
            "{}: float64 prediction, but --device {} has no usable float64; convert the \
             prediction to float32 or use --device flex",
            a.pred.display(),
            a.device
        )));
    };
    let device = if a.grad.is_some() {
        base.autodiff()
    } else {
        base
    };
    let mut pred_t = float_tensor(&pred.data, &device, dtype);
    if a.grad.is_some() {
        pred_t.values = pred_t.values.require_grad();
    }

    let tshape = target.data.shape().to_vec();
    let target_t = if tshape == pshape {
        let f = float_tensor(&target.data, &device, dtype);
        Target::mask_flat(f.values, f.shape)
    } else {
        let labels = target.data.to_labels().map_err(|e| {
            CliError::input(format!(
                "{}: {e} (a target whose shape {tshape:?} differs from the prediction's {pshape:?} is a label map of class indices)",
                a.target.display()
            ))
        })?;
        let values: Vec<i64> = labels.iter().copied().collect();
        let n = values.len();
        let t: Tensor<1, Int> = Tensor::from_data(TensorData::new(values, [n]), &device);
        Target::labels_flat(t, tshape)
    };
    let weights_t = weights.map(|w| float_tensor(&w.data, &device, dtype));

    let value = loss
        .loss_value(pred_t.clone(), target_t, weights_t, LossReduction::Mean)
        .map_err(|e| locate(e, &a))?;
    let shape = value.shape.clone();
    let values: Vec<f64> = value
        .values
        .clone()
        .into_data()
        .convert::<f64>()
        .try_to_vec::<f64>()
        .map_err(|e| CliError::Internal(format!("{e:?}")))?;
    if let Some(bad) = values.iter().find(|v| !v.is_finite()) {
        return Err(CliError::Internal(format!(
            "the loss is {bad}; please report this with the input files"
        )));
    }

    if let Some(gpath) = &a.grad {
        let total = value.values.sum();
        let grads = total.backward();
        let g = pred_t
            .values
            .grad(&grads)
            .ok_or_else(|| CliError::Internal("no gradient for the prediction".into()))?;
        let gdata = g.into_data().convert::<f64>();
        let gv: Vec<f64> = gdata
            .try_to_vec::<f64>()
            .map_err(|e| CliError::Internal(format!("{e:?}")))?;
        let opts = WriteOptions { force: a.force };
        let arr = ndarray::ArrayD::from_shape_vec(pshape.clone(), gv)
            .map_err(|e| CliError::Internal(e.to_string()))?;
        if f64_input {
            segloss_io::write_npy_f64(gpath, &arr, opts)?;
        } else {
            segloss_io::write_npy_f32(gpath, &arr.mapv(|v| v as f32), opts)?;
        }
    }

    let is_scalar = shape == [1];
    match a.format {
        Format::Json => {
            let v = if is_scalar {
                serde_json::json!({ "loss": values[0] })
            } else {
                serde_json::json!({ "loss": nest(&values, &shape), "shape": shape })
            };
            println!("{v}");
        }
        Format::Text => {
            if is_scalar {
                println!("{}", values[0]);
            } else {
                println!("shape {shape:?}");
                for v in values {
                    println!("{v}");
                }
            }
        }
    }
    Ok(())
}

/// Prefixes a loss error with the file it is about.
fn locate(e: segloss::LossError, a: &LossArgs) -> CliError {
    use segloss::LossError as E;
    let weights = a.weights.as_ref().map(|w| w.display().to_string());
    let file = match &e {
        E::LabelOutOfRange { .. } | E::TargetOutOfRange { .. } => {
            Some(a.target.display().to_string())
        }
        E::NegativeWeight { .. } => weights,
        E::NonFinite { what } | E::BadShape { what, .. } | E::Empty { what, .. } => {
            if what.contains("weight") {
                weights
            } else if what.contains("target") {
                Some(a.target.display().to_string())
            } else {
                Some(a.pred.display().to_string())
            }
        }
        E::ShapeMismatch { .. } => Some(format!("{} vs {}", a.pred.display(), a.target.display())),
        _ => None,
    };
    match file {
        Some(f) => CliError::input(format!("{f}: {e}")),
        None => CliError::input(e.to_string()),
    }
}

/// Nests a flat C-order vector as JSON arrays of the given shape.
fn nest(values: &[f64], shape: &[usize]) -> serde_json::Value {
    if shape.len() <= 1 {
        return serde_json::Value::Array(values.iter().map(|v| serde_json::json!(v)).collect());
    }
    let step = values.len() / shape[0].max(1);
    serde_json::Value::Array(
        values
            .chunks(step.max(1))
            .map(|c| nest(c, &shape[1..]))
            .collect(),
    )
}
