//! Property tests: every fast algorithm against its brute-force reference on small random inputs,
//! 1D/2D/3D, anisotropic spacing.

use ndarray::{ArrayD, IxDyn};
use proptest::prelude::*;
use segloss_core::reference::*;
use segloss_core::*;

/// A shape of 1 to 3 axes, small enough for the quadratic references.
fn shape() -> impl Strategy<Value = Vec<usize>> {
    prop_oneof![
        (1usize..12).prop_map(|a| vec![a]),
        (1usize..9, 1usize..9).prop_map(|(a, b)| vec![a, b]),
        (1usize..5, 1usize..6, 1usize..6).prop_map(|(a, b, c)| vec![a, b, c]),
    ]
}

/// A shape, a spacing for it (or none), and `values` drawn from `0..k` with a bias towards 0 set by `p0`.
fn case(k: u8) -> impl Strategy<Value = (Vec<usize>, Option<Vec<f64>>, Vec<u8>)> {
    shape().prop_flat_map(move |s| {
        let n: usize = s.iter().product();
        let nd = s.len();
        (
            Just(s),
            prop::option::of(prop::collection::vec(0.25f64..3.0, nd)),
            (0.0f64..1.0).prop_flat_map(move |p0| {
                prop::collection::vec(
                    (0.0f64..1.0, 1u8..k.max(2)).prop_map(move |(u, v)| if u < p0 { 0 } else { v }),
                    n,
                )
            }),
        )
    })
}

fn arr(shape: &[usize], v: &[u8]) -> ArrayD<u8> {
    ArrayD::from_shape_vec(IxDyn(shape), v.to_vec()).unwrap()
}

fn close(a: &[f64], b: &[f64], tol: f64) -> std::result::Result<(), TestCaseError> {
    prop_assert_eq!(a.len(), b.len());
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        prop_assert!(
            (x - y).abs() <= tol * (1.0 + y.abs()),
            "index {}: {} vs {} (all: {:?} vs {:?})",
            i,
            x,
            y,
            a,
            b
        );
    }
    Ok(())
}

fn dist(a: &[usize], b: &[usize], sp: &[f64]) -> f64 {
    a.iter()
        .zip(b)
        .zip(sp)
        .map(|((&x, &y), &s)| ((x as f64 - y as f64) * s).powi(2))
        .sum::<f64>()
        .sqrt()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn edt_matches_brute_force((s, sp, v) in case(2)) {
        let a = arr(&s, &v);
        let spr = sp.as_deref();
        let want = edt_reference(&v, &s, spr);
        let got: ArrayD<f64> = edt(&a, spr).unwrap();
        close(got.as_slice().unwrap(), &want, 1e-12)?;
        let got32: ArrayD<f32> = edt(&a, spr).unwrap();
        let got32: Vec<f64> = got32.iter().map(|&x| x as f64).collect();
        close(&got32, &want, 1e-6)?;
        let sq: ArrayD<f64> = edt_squared(&a, spr).unwrap();
        let want2: Vec<f64> = want.iter().map(|x| x * x).collect();
        close(sq.as_slice().unwrap(), &want2, 1e-12)?;
        // The same through a non-contiguous (reversed) view.
        let mut rev = a.view();
        rev.invert_axis(ndarray::Axis(0));
        let got_rev: ArrayD<f64> = edt(&rev, spr).unwrap();
        let owned: Vec<u8> = rev.iter().copied().collect();
        let want_rev = edt_reference(&owned, &s, spr);
        close(got_rev.as_slice().unwrap(), &want_rev, 1e-12)?;
    }

    #[test]
    fn feature_transform_points_at_a_nearest_background_voxel((s, sp, v) in case(2)) {
        let a = arr(&s, &v);
        let sp1 = sp.clone().unwrap_or(vec![1.0; s.len()]);
        let (d, idx): (ArrayD<f64>, _) = feature_transform(&a, sp.as_deref()).unwrap();
        let want = edt_reference(&v, &s, sp.as_deref());
        close(d.as_slice().unwrap(), &want, 1e-12)?;
        let has_bg = v.contains(&0);
        prop_assert_eq!(has_bg, has_background(&a));
        for (i, &j) in idx.iter().enumerate() {
            if has_bg {
                prop_assert_eq!(v[j], 0, "voxel {} points at foreground voxel {}", i, j);
                let dd = dist(&unravel_index(i, &s), &unravel_index(j, &s), &sp1);
                prop_assert!((dd - want[i]).abs() <= 1e-9 * (1.0 + dd), "voxel {}: {} vs {}", i, dd, want[i]);
            } else {
                prop_assert_eq!(i, j);
            }
        }
    }

    #[test]
    fn multilabel_edt_matches_brute_force((s, sp, v) in case(5)) {
        let a = arr(&s, &v);
        let want = multilabel_edt_reference(&v, &s, sp.as_deref());
        let got: ArrayD<f64> = multilabel_edt(&a, sp.as_deref()).unwrap();
        close(got.as_slice().unwrap(), &want, 1e-12)?;
        let sq: ArrayD<f32> = multilabel_edt_squared(&a, sp.as_deref()).unwrap();
        let sq: Vec<f64> = sq.iter().map(|&x| x as f64).collect();
        let want2: Vec<f64> = want.iter().map(|x| x * x).collect();
        close(&sq, &want2, 1e-6)?;
    }

    #[test]
    fn binary_multilabel_equals_edt((s, sp, v) in case(2)) {
        let a = arr(&s, &v);
        let e: ArrayD<f64> = edt(&a, sp.as_deref()).unwrap();
        let m: ArrayD<f64> = multilabel_edt(&a, sp.as_deref()).unwrap();
        close(m.as_slice().unwrap(), e.as_slice().unwrap(), 1e-12)?;
    }

    #[test]
    fn distance_maps_match_their_formulas((s, sp, v) in case(2)) {
        let a = arr(&s, &v);
        let spr = sp.as_deref();
        let inv: Vec<u8> = v.iter().map(|&x| (x == 0) as u8).collect();
        let d_in = edt_reference(&v, &s, spr);
        let d_out = edt_reference(&inv, &s, spr);
        let degenerate = v.iter().all(|&x| x == 0) || v.iter().all(|&x| x != 0);
        let two: ArrayD<f64> = two_sided_edt(&a, spr).unwrap();
        let want_two: Vec<f64> = d_in.iter().zip(&d_out).map(|(x, y)| x + y).collect();
        close(two.as_slice().unwrap(), &want_two, 1e-12)?;
        let phi: ArrayD<f64> = signed_distance_map(&a, spr).unwrap();
        let want_phi: Vec<f64> = (0..v.len())
            .map(|i| if degenerate { 0.0 } else if v[i] != 0 { 1.0 - d_in[i] } else { d_out[i] })
            .collect();
        close(phi.as_slice().unwrap(), &want_phi, 1e-12)?;
        let pen: ArrayD<f64> = penalty_map(&a, spr).unwrap();
        let max_in = d_in.iter().cloned().fold(0.0, f64::max);
        let max_out = d_out.iter().cloned().fold(0.0, f64::max);
        let want_pen: Vec<f64> = (0..v.len())
            .map(|i| {
                let (m, x) = if v[i] != 0 { (max_in, d_in[i]) } else { (max_out, d_out[i]) };
                if m > 0.0 { (m - x) / m } else { 0.0 }
            })
            .collect();
        close(pen.as_slice().unwrap(), &want_pen, 1e-12)?;
        prop_assert!(pen.iter().all(|&x| (0.0..=1.0).contains(&x)));
    }

    #[test]
    fn connected_components_match_flood_fill((s, _sp, v) in case(2)) {
        let a = arr(&s, &v);
        for c in [Connectivity::Face, Connectivity::Full] {
            let (want, wk) = connected_components_reference(&v, &s, c);
            let (got, k) = connected_components(&a, c).unwrap();
            prop_assert_eq!(k, wk);
            prop_assert_eq!(got.as_slice().unwrap(), &want[..], "{:?}", c);
        }
    }

    #[test]
    fn weight_map_is_within_tolerance_of_the_exact_definition(
        (s, sp, v) in case(2),
        w0 in 0.5f64..20.0,
        sigma in 0.3f64..4.0,
        balanced in any::<bool>(),
        face in any::<bool>(),
    ) {
        let a = arr(&s, &v);
        let config = WeightMapConfig {
            w0,
            sigma,
            class_weight: if balanced { ClassWeight::Balanced } else { ClassWeight::None },
            connectivity: if face { Connectivity::Face } else { Connectivity::Full },
            ..Default::default()
        };
        let (inst, _) = connected_components_reference(&v, &s, config.connectivity);
        let want = unet_weight_map_reference(&inst, &s, sp.as_deref(), &config);
        let got: ArrayD<f64> = unet_weight_map(&a, sp.as_deref(), &config).unwrap();
        close(got.as_slice().unwrap(), &want, 1e-4)?;
        for (x, y) in got.iter().zip(&want) {
            prop_assert!((x - y).abs() <= 1e-4, "{} vs {}", x, y);
        }
        let got32: ArrayD<f32> = unet_weight_map(&a, sp.as_deref(), &config).unwrap();
        for (x, y) in got32.iter().zip(&want) {
            prop_assert!((*x as f64 - y).abs() <= 1e-4 + 1e-6 * y.abs(), "{} vs {}", x, y);
        }
        // The in-place form on a bool slice: the same map, into a buffer of stale values.
        let mask: Vec<bool> = v.iter().map(|&x| x != 0).collect();
        let mut into = vec![f32::NAN; mask.len()];
        unet_weight_map_into(&mask, &s, sp.as_deref(), &config, &mut into).unwrap();
        prop_assert_eq!(&into[..], got32.as_slice().unwrap());
        // Into uninitialised memory (a Vec's spare capacity): the same map.
        let mut buf: Vec<f32> = Vec::with_capacity(mask.len());
        let w = unet_weight_map_into_uninit(
            &mask,
            &s,
            sp.as_deref(),
            &config,
            &mut buf.spare_capacity_mut()[..mask.len()],
        )
        .unwrap();
        prop_assert_eq!(&w[..], got32.as_slice().unwrap());
    }

    #[test]
    fn weight_map_from_instances_is_within_tolerance((s, sp, v) in case(5), sigma in 0.3f64..4.0) {
        // Every non-zero value is one instance (touching and disconnected instances included).
        let a = arr(&s, &v);
        let config = WeightMapConfig { sigma, ..Default::default() };
        let (inst, _) = relabel_sequential(&a).unwrap();
        let want = unet_weight_map_reference(inst.as_slice().unwrap(), &s, sp.as_deref(), &config);
        let got: ArrayD<f64> = unet_weight_map_from_instances(&a, sp.as_deref(), &config).unwrap();
        for (x, y) in got.iter().zip(&want) {
            prop_assert!((x - y).abs() <= 1e-4, "{} vs {}", x, y);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn surfaces_and_surface_distances_match_brute_force((s, sp, v) in case(2), w in prop::collection::vec(0u8..2, 300)) {
        let a = arr(&s, &v);
        let other: Vec<u8> = v.iter().zip(w.iter().cycle()).map(|(&x, &y)| x ^ (y & (x | 1) & 1)).collect();
        let b = arr(&s, &other);
        let got = surface(&a).unwrap();
        prop_assert_eq!(got.as_slice().unwrap(), &surface_reference(&v, &s)[..]);
        let want = surface_distances_reference(&v, &other, &s, sp.as_deref());
        let got = surface_distances(&a, &b, sp.as_deref()).unwrap();
        prop_assert_eq!(got.is_some(), want.is_some());
        if let (Some(g), Some(w)) = (got, want) {
            close(&g, &w, 1e-12)?;
        }
    }

    #[test]
    fn binary_metrics_follow_their_definitions((s, sp, v) in case(2), w in prop::collection::vec(0u8..2, 300), tol in 0.0f64..3.0) {
        let other: Vec<u8> = v.iter().zip(w.iter().cycle()).map(|(&x, &y)| if y == 1 { 1 - x.min(1) } else { x }).collect();
        let (a, b) = (arr(&s, &v), arr(&s, &other));
        let m = binary_metrics(&a, &b, sp.as_deref(), tol).unwrap();
        let np = v.iter().filter(|&&x| x != 0).count();
        let nt = other.iter().filter(|&&x| x != 0).count();
        let tp = v.iter().zip(&other).filter(|(&x, &y)| x != 0 && y != 0).count();
        if np + nt == 0 {
            prop_assert_eq!((m.dice, m.iou, m.nsd, m.hd), (1.0, 1.0, 1.0, Some(0.0)));
        } else {
            prop_assert!((m.dice - 2.0 * tp as f64 / (np + nt) as f64).abs() < 1e-12);
            prop_assert!((m.iou - tp as f64 / (np + nt - tp) as f64).abs() < 1e-12);
        }
        if np > 0 && nt > 0 {
            let mut d1 = surface_distances_reference(&v, &other, &s, sp.as_deref()).unwrap();
            let mut d2 = surface_distances_reference(&other, &v, &s, sp.as_deref()).unwrap();
            let hd = d1.iter().chain(&d2).cloned().fold(0.0, f64::max);
            prop_assert!((m.hd.unwrap() - hd).abs() < 1e-12);
            let all: Vec<f64> = d1.iter().chain(&d2).cloned().collect();
            let assd = all.iter().sum::<f64>() / all.len() as f64;
            prop_assert!((m.assd.unwrap() - assd).abs() < 1e-9);
            let nsd = all.iter().filter(|&&d| d <= tol).count() as f64 / all.len() as f64;
            prop_assert!((m.nsd - nsd).abs() < 1e-12);
            d1.sort_by(f64::total_cmp);
            d2.sort_by(f64::total_cmp);
            let p95 = |d: &[f64]| {
                let r = 0.95 * (d.len() - 1) as f64;
                let (lo, hi) = (r.floor() as usize, r.ceil() as usize);
                d[lo] + (d[hi] - d[lo]) * (r - lo as f64)
            };
            prop_assert!((m.hd95.unwrap() - p95(&d1).max(p95(&d2))).abs() < 1e-12);
        } else if np + nt > 0 {
            prop_assert_eq!((m.dice, m.nsd, m.hd, m.hd95, m.assd), (0.0, 0.0, None, None, None));
        }
    }
}

/// Wide 1-D and 2-D masks with long runs of one class (the envelope path of the combined two-sided
/// transform; the shapes of `case` mostly take its brute-force path for short segments), and 3-D ones.
fn wide_case() -> impl Strategy<Value = (Vec<usize>, Option<Vec<f64>>, Vec<bool>)> {
    prop_oneof![
        (1usize..60).prop_map(|a| vec![a]),
        (1usize..12, 1usize..48).prop_map(|(a, b)| vec![a, b]),
        (1usize..4, 1usize..6, 1usize..20).prop_map(|(a, b, c)| vec![a, b, c]),
    ]
    .prop_flat_map(|s| {
        let n: usize = s.iter().product();
        let nd = s.len();
        (
            Just(s),
            prop::option::of(prop::collection::vec(0.25f64..3.0, nd)),
            (0.0f64..1.0).prop_flat_map(move |p| prop::collection::vec(prop::bool::weighted(p), n)),
        )
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn two_sided_squared_matches_brute_force((s, sp, v) in wide_case()) {
        let spr = sp.as_deref();
        let inv: Vec<bool> = v.iter().map(|&x| !x).collect();
        let d_in = edt_reference(&v, &s, spr);
        let d_out = edt_reference(&inv, &s, spr);
        let want: Vec<f64> = d_in.iter().zip(&d_out).map(|(x, y)| (x + y) * (x + y)).collect();
        for serial in [true, false] {
            let mut got = vec![0f64; v.len()];
            two_sided_edt_squared_into(&v, &s, spr, &mut got, serial).unwrap();
            close(&got, &want, 1e-12)?;
        }
        let a = ArrayD::from_shape_vec(IxDyn(&s), v.clone()).unwrap();
        let two: ArrayD<f64> = two_sided_edt(&a, spr).unwrap();
        let want_two: Vec<f64> = d_in.iter().zip(&d_out).map(|(x, y)| x + y).collect();
        close(two.as_slice().unwrap(), &want_two, 1e-12)?;
    }
}

#[test]
fn two_sided_squared_rejects_buffers_of_the_wrong_length() {
    let mut out = [0f32; 5];
    let err = two_sided_edt_squared_into(&[true; 6], &[6], None, &mut out, false).unwrap_err();
    assert!(matches!(err, CoreError::ShapeMismatch { .. }), "{err}");
    let err =
        two_sided_edt_squared_into(&[true; 5], &[6], None, &mut [0f32; 6], false).unwrap_err();
    assert!(matches!(err, CoreError::ShapeMismatch { .. }), "{err}");
}

#[test]
fn weight_map_into_rejects_buffers_of_the_wrong_length() {
    let config = WeightMapConfig::default();
    let err = unet_weight_map_into(&[true; 6], &[6], None, &config, &mut [0f32; 5]).unwrap_err();
    assert!(matches!(err, CoreError::ShapeMismatch { .. }), "{err}");
    let err = unet_weight_map_into(&[true; 5], &[6], None, &config, &mut [0f32; 6]).unwrap_err();
    assert!(matches!(err, CoreError::ShapeMismatch { .. }), "{err}");
    let bad = WeightMapConfig {
        sigma: 0.0,
        ..config
    };
    let err = unet_weight_map_into(&[true; 6], &[6], None, &bad, &mut [0f32; 6]).unwrap_err();
    assert!(
        matches!(err, CoreError::BadParameter { name: "sigma", .. }),
        "{err}"
    );
}

/// Unit-spacing masks with lines longer than the integer passes' reach and few background voxels (the
/// brute force of `intpass` hands the far voxels to the envelope), 2-D and 3-D, long axes in either
/// place.
fn far_case() -> impl Strategy<Value = (Vec<usize>, Vec<u8>)> {
    prop_oneof![
        (1usize..24, 60usize..180).prop_map(|(a, b)| vec![a, b]),
        (60usize..180, 1usize..24).prop_map(|(a, b)| vec![a, b]),
        (1usize..4, 60usize..140, 1usize..10).prop_map(|(a, b, c)| vec![a, b, c]),
        (1usize..4, 1usize..10, 60usize..140).prop_map(|(a, b, c)| vec![a, b, c]),
        (60usize..100, 1usize..6, 1usize..6).prop_map(|(a, b, c)| vec![a, b, c]),
    ]
    .prop_flat_map(|s| {
        let n: usize = s.iter().product();
        (
            Just(s),
            (0.0f64..0.03).prop_flat_map(move |p0| {
                prop::collection::vec((0.0f64..1.0).prop_map(move |u| (u >= p0) as u8), n)
            }),
        )
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 120, ..ProptestConfig::default() })]

    #[test]
    fn edt_on_unit_grids_is_exact((s, v) in far_case()) {
        let a = arr(&s, &v);
        let want = edt_reference(&v, &s, None);
        let got: ArrayD<f64> = edt(&a, None).unwrap();
        prop_assert_eq!(got.as_slice().unwrap(), &want[..]);
        let got32: ArrayD<f32> = edt(&a, None).unwrap();
        let want32: Vec<f32> = want.iter().map(|&x| x as f32).collect();
        prop_assert_eq!(got32.as_slice().unwrap(), &want32[..]);
        let sq: ArrayD<f32> = edt_squared(&a, None).unwrap();
        let want2: Vec<f32> = want.iter().map(|&x| (x * x).round() as f32).collect();
        prop_assert_eq!(sq.as_slice().unwrap(), &want2[..]);
        let inv: Vec<bool> = v.iter().map(|&x| x == 0).collect();
        let d_out = edt_reference(&inv, &s, None);
        let two: ArrayD<f64> = two_sided_edt(&a, None).unwrap();
        let want_two: Vec<f64> = want.iter().zip(&d_out).map(|(x, y)| x + y).collect();
        prop_assert_eq!(two.as_slice().unwrap(), &want_two[..]);
    }
}
