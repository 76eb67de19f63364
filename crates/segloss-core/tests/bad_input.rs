//! Bad input gives a typed error, never a panic; degenerate input gives finite, documented answers.

use ndarray::{array, Array, Array2, ArrayD, IxDyn};
use segloss_core::*;

#[test]
fn empty_arrays_are_rejected() {
    let a = Array2::<u8>::zeros((0, 3));
    let e = edt::<f32, _, _, _>(&a, None).unwrap_err();
    assert_eq!(e, CoreError::Empty { shape: vec![0, 3] });
    assert!(e.to_string().contains("[0, 3]"));
    assert!(multilabel_edt::<f32, _, _, _>(&a, None).is_err());
    assert!(connected_components(&a, Connectivity::Full).is_err());
    assert!(unet_weight_map::<f32, _, _, _>(&a, None, &WeightMapConfig::default()).is_err());
    assert!(signed_distance_map::<f32, _, _, _>(&a, None).is_err());
    assert!(penalty_map::<f32, _, _, _>(&a, None).is_err());
}

#[test]
fn too_many_or_too_few_axes_are_rejected() {
    let a = ArrayD::<u8>::zeros(IxDyn(&[2, 2, 2, 2]));
    let e = edt::<f64, _, _, _>(&a, None).unwrap_err();
    assert!(matches!(e, CoreError::Dimensions { got: 4, .. }), "{e}");
    let z = ArrayD::<u8>::zeros(IxDyn(&[]));
    assert!(matches!(
        edt::<f64, _, _, _>(&z, None).unwrap_err(),
        CoreError::Dimensions { got: 0, .. }
    ));
    assert!(connected_components(&a, Connectivity::Face).is_err());
}

#[test]
fn bad_spacing_is_rejected() {
    let a = array![[1u8, 0], [1, 1]];
    let e = edt::<f64, _, _, _>(&a, Some(&[1.0])).unwrap_err();
    assert_eq!(
        e,
        CoreError::SpacingLength {
            got: 1,
            expected: 2
        }
    );
    for bad in [0.0, -1.0, f64::NAN, f64::INFINITY] {
        let e = edt::<f64, _, _, _>(&a, Some(&[1.0, bad])).unwrap_err();
        assert!(matches!(e, CoreError::BadSpacing { axis: 1, .. }), "{e}");
        assert!(
            unet_weight_map::<f32, _, _, _>(&a, Some(&[bad, 1.0]), &Default::default()).is_err()
        );
    }
}

#[test]
fn bad_weight_map_parameters_are_rejected() {
    let a = array![[1u8, 0], [1, 1]];
    for (w0, sigma, tol, name) in [
        (-1.0, 5.0, 1e-5, "w0"),
        (f64::NAN, 5.0, 1e-5, "w0"),
        (10.0, 0.0, 1e-5, "sigma"),
        (10.0, f64::INFINITY, 1e-5, "sigma"),
        (10.0, 5.0, 0.0, "tolerance"),
    ] {
        let c = WeightMapConfig {
            w0,
            sigma,
            tolerance: tol,
            ..Default::default()
        };
        match unet_weight_map::<f32, _, _, _>(&a, None, &c) {
            Err(CoreError::BadParameter { name: n, .. }) => assert_eq!(n, name),
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn no_background_gives_zeros_not_infinity() {
    let a = Array::from_elem((3, 4), true);
    assert!(!has_background(&a));
    let d: Array2<f32> = edt(&a, None).unwrap();
    assert!(d.iter().all(|&x| x == 0.0));
    let (d, idx): (Array2<f64>, _) = feature_transform(&a, None).unwrap();
    assert!(d.iter().all(|&x| x == 0.0));
    assert_eq!(
        idx.iter().copied().collect::<Vec<_>>(),
        (0..12).collect::<Vec<_>>()
    );
    let m: Array2<f64> = multilabel_edt(&Array::from_elem((3, 4), 7u32), None).unwrap();
    assert!(m.iter().all(|&x| x == 0.0));
    for full in [true, false] {
        let a = Array::from_elem((2, 3, 2), full);
        let s: Array<f64, _> = signed_distance_map(&a, None).unwrap();
        assert!(s.iter().all(|&x| x == 0.0));
        let p: Array<f64, _> = penalty_map(&a, None).unwrap();
        assert!(p.iter().all(|&x| x == 0.0));
    }
}

#[test]
fn weight_maps_with_zero_or_one_instance_have_class_weights_only() {
    let empty = Array2::<u8>::zeros((4, 5));
    let w: Array2<f64> = unet_weight_map(&empty, None, &WeightMapConfig::default()).unwrap();
    assert!(w.iter().all(|&x| x == 0.5), "{w:?}");
    let one = array![[0u8, 1, 1, 0], [0, 0, 0, 0]];
    let w: Array2<f64> = unet_weight_map(&one, None, &WeightMapConfig::default()).unwrap();
    // 8 pixels, 2 foreground: 8/4 = 2 on the cell, 8/12 on the background.
    assert_eq!(w[[0, 1]], 2.0);
    assert!((w[[0, 0]] - 8.0 / 12.0).abs() < 1e-15);
    let full = Array::from_elem((3, 3), 1u8);
    let w: Array2<f32> = unet_weight_map(&full, None, &WeightMapConfig::default()).unwrap();
    assert!(w.iter().all(|&x| x == 0.5));
}

#[test]
fn nan_in_float_masks_counts_as_foreground_and_never_leaks() {
    let a = array![[f32::NAN, 0.0, 1.0], [0.5, f32::NAN, 0.0]];
    let d: Array2<f32> = edt(&a, None).unwrap();
    assert!(d.iter().all(|x| x.is_finite()));
    assert_eq!(d[[0, 0]], 1.0);
    let w: Array2<f32> = unet_weight_map(&a, None, &WeightMapConfig::default()).unwrap();
    assert!(w.iter().all(|x| x.is_finite()));
}

#[test]
fn parameters_parse_from_their_cli_names() {
    assert_eq!("face".parse::<Connectivity>(), Ok(Connectivity::Face));
    assert_eq!("full".parse::<Connectivity>(), Ok(Connectivity::Full));
    assert!("diag"
        .parse::<Connectivity>()
        .unwrap_err()
        .contains("face or full"));
    assert_eq!("balanced".parse::<ClassWeight>(), Ok(ClassWeight::Balanced));
    assert_eq!("none".parse::<ClassWeight>(), Ok(ClassWeight::None));
    assert!("x".parse::<ClassWeight>().is_err());
}

#[test]
fn large_images_use_the_parallel_paths_and_agree_with_the_serial_ones() {
    // 300×300 crosses the parallel threshold; compare with the 1-row-at-a-time result of the transposed
    // problem (the kernels differ per axis, the answers must not).
    let n = 300;
    let a = Array2::from_shape_fn((n, n), |(i, j)| ((i * 7 + j * 13) % 17 != 0) as u8);
    let d: Array2<f64> = edt(&a, Some(&[1.5, 0.75])).unwrap();
    let t = a.t().to_owned();
    let dt: Array2<f64> = edt(&t, Some(&[0.75, 1.5])).unwrap();
    for ((i, j), &x) in d.indexed_iter() {
        assert!((x - dt[[j, i]]).abs() < 1e-9);
    }
    let m: Array2<f64> = multilabel_edt(&a.mapv(|x| x as u32 * 3), Some(&[1.5, 0.75])).unwrap();
    for (x, y) in m.iter().zip(d.iter()) {
        assert!((x - y).abs() < 1e-9);
    }
}
