#![no_main]
//! Any string given to the loss-spec parser gives a spec or an error, never a panic; an error
//! points inside the string and is one line. A spec that builds is then run, forward only, on a
//! tiny batch (binary mask target with one channel, label target with three): it returns a value
//! or a typed error, never a panic, and a value is never NaN.

use burn::tensor::{Device, Int, Tensor, TensorData};
use libfuzzer_sys::fuzz_target;
use segloss::{LossReduction, LossSpec, Target};

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let spec = match LossSpec::parse(s) {
        Ok(spec) => spec,
        Err(e) => {
            assert!(e.pos <= s.len(), "error position {} past the end", e.pos);
            assert!(!e.to_string().contains('\n'), "multi-line error: {e}");
            let _ = e.pretty();
            return;
        }
    };
    let loss = match spec.build() {
        Ok(loss) => loss,
        Err(e) => {
            assert!(!e.to_string().contains('\n'), "multi-line error: {e}");
            return;
        }
    };
    let device = Device::flex();
    let (h, w) = (4, 4);
    let logits: Vec<f32> = (0..3 * h * w)
        .map(|i| ((i * 7 % 11) as f32 - 5.0) * 0.7)
        .collect();
    let mask: Vec<f32> = (0..h * w).map(|i| ((i * 5 % 7) < 3) as u8 as f32).collect();
    let labels: Vec<i64> = (0..h * w).map(|i| (i * 5 % 7 % 3) as i64).collect();
    let runs: [(usize, Target); 2] = [
        (
            1,
            Target::from(Tensor::<4>::from_data(
                TensorData::new(mask, [1, 1, h, w]),
                &device,
            )),
        ),
        (
            3,
            Target::from(Tensor::<3, Int>::from_data(
                TensorData::new(labels, [1, h, w]),
                &device,
            )),
        ),
    ];
    for (c, target) in runs {
        let pred = Tensor::<4>::from_data(
            TensorData::new(logits[..c * h * w].to_vec(), [1, c, h, w]),
            &device,
        );
        let weights = loss
            .needs_weights()
            .then(|| Tensor::<4>::ones([1, c, h, w], &device));
        match loss.try_forward(pred, target, weights, LossReduction::Mean) {
            Ok(v) => {
                let vals: Vec<f32> = v.values.into_data().convert::<f32>().try_into_vec().unwrap();
                assert!(vals.iter().all(|x| !x.is_nan()), "{s}: NaN loss {vals:?}");
            }
            Err(e) => {
                assert!(!e.to_string().contains('\n'), "multi-line error: {e}");
                // SPEC_FUZZ_REPORT=1 lists the specs whose loss overflowed (an error, not a
                // bug of the harness, but worth a look: `-runs=0` over the corpus).
                if matches!(e, segloss::LossError::NonFiniteLoss { .. })
                    && std::env::var_os("SPEC_FUZZ_REPORT").is_some()
                {
                    eprintln!("non-finite loss (C = {c}): {s:?}");
                }
            }
        }
    }
});
