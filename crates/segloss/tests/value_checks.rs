//! `set_value_checks(false)` skips the value checks but never the shape checks. (Its own test
//! binary: the switch is process-wide.)

use burn::tensor::{Device, Int, Tensor};
use segloss::{set_value_checks, value_checks, CeLossConfig, LossError, LossReduction};

#[test]
fn value_checks_can_be_turned_off_but_shapes_are_always_checked() {
    let d = Device::flex();
    let nan = Tensor::<4>::full([1, 3, 2, 2], f32::NAN, &d);
    let labels = Tensor::<3, Int>::zeros([1, 2, 2], &d);
    let ce = CeLossConfig::new().init();
    assert!(value_checks());
    assert!(matches!(
        ce.try_forward(nan.clone(), labels.clone(), LossReduction::Mean),
        Err(LossError::NonFinite { .. })
    ));
    set_value_checks(false);
    let v = ce
        .try_forward(nan.clone(), labels.clone(), LossReduction::Mean)
        .unwrap();
    assert!(v.values.into_scalar::<f32>().is_nan());
    let bad_shape = Tensor::<3, Int>::zeros([1, 2, 3], &d);
    assert!(matches!(
        ce.try_forward(nan, bad_shape, LossReduction::Mean),
        Err(LossError::BadShape { .. })
    ));
    set_value_checks(true);
}
