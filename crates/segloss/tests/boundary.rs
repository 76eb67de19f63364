//! Boundary-based losses against their oracles (`tests/fixtures/losses/boundary.json`: MONAI
//! `HausdorffDTLoss`, `SoftclDiceLoss`; the boundary and distance-penalised CE formulas with scipy's
//! EDT; `shape_aware` with the U-Net weight map from scipy's labelling and EDT and `contour_ce` with
//! scipy's surfaces and EDT, both differentiated by PyTorch), each on the fused f32 path, the
//! composed f32 path and in f64.

mod common;

use burn::tensor::{Device, Int, Tensor};
use common::*;
use segloss::{LossReduction, LossSpec, Reduction, ShapeAwareLossConfig, WeightedCeLossConfig};

const FILE: &str = "losses/boundary.json";

fn check(prefix: &str) -> PathsChecked {
    check_with(prefix, F64_VALUE_RTOL)
}

fn check_with(prefix: &str, f64_value_rtol: f64) -> PathsChecked {
    let r = check_fixture_paths(FILE, |c| c.name.starts_with(prefix), f64_value_rtol);
    assert!(r.cases > 0, "no fixture case for {prefix}");
    r
}

#[test]
fn hausdorff_dt_matches_monai() {
    let r = check("hausdorff_dt");
    assert!(!on_flex() || r.fused > 0, "{r:?}");
}

#[test]
fn cldice_matches_monai() {
    check("cldice");
}

#[test]
fn boundary_matches_formula() {
    check("boundary_");
}

#[test]
fn distance_penalized_ce_matches_formula() {
    check("distance_penalized_ce");
}

/// The U-Net weight map as scipy gives it (one EDT per connected component, full connectivity)
/// times PyTorch's weighted BCE / CE, values and gradients; the sigmoid cases with a reduction
/// run the fused per-image kernel in f32.
///
/// segloss-core's map is exact within ε = 5e-5 (it drops border terms below ε) where the oracle
/// has no cut-off, and W ≥ 0.5: so the value may differ by up to ε/0.5 = 1e-4 relative, and each
/// gradient element by 1e-4 of itself (the gradient tolerance). The f64 value tolerance is that
/// bound; the cases with σ ≤ 3 drop terms (about 1e-6 relative in the value, 1e-5 of the largest
/// gradient), the others agree to rounding.
#[test]
fn shape_aware_matches_scipy_unet_map_and_torch() {
    let r = check_with("shape_aware_", 1e-4);
    assert!(r.cases >= 20 && (!on_flex() || r.fused >= 10), "{r:?}");
}

/// Surfaces as scipy's `binary_erosion(border_value=0)` and MONAI's `get_mask_edges` give them
/// (the array's border counts as background), distances by scipy's EDT, times PyTorch's
/// BCE / CE, values and gradients.
#[test]
fn contour_ce_matches_scipy_surfaces_and_torch() {
    let r = check("contour_ce_");
    assert!(r.cases >= 15 && (!on_flex() || r.fused >= 5), "{r:?}");
}

/// Finite differences against the autodiff gradient (the maps are constants of the graph, so the
/// quotient sees them fixed as long as no probability crosses 0.5 within ±h).
#[test]
fn gradients_match_finite_differences() {
    if let Some(checked) = check_finite_differences(FILE, |_| true) {
        assert!(checked > 100, "only {checked} finite differences");
    }
}

/// MONAI `tests/losses/test_hausdorff_loss.py` (`TEST_CASES`, rtol 1e-5; transcribed in
/// `docs/peer-cases.md#monai-hausdorffdtloss`). MONAI passes `include_background` explicitly in
/// every case; `other_act` cases (tanh, log_softmax) have no segloss equivalent and are skipped.
#[test]
fn hausdorff_dt_monai_peer_cases() {
    let d = Device::flex();
    let f4 = |v: &[f32], s: [usize; 4]| Tensor::<1>::from_floats(v, &d).reshape(s);
    let f5 = |v: &[f32], s: [usize; 5]| Tensor::<1>::from_floats(v, &d).reshape(s);
    let run = |spec: &str, x: segloss::Flat, y: segloss::Target| -> Vec<f64> {
        let loss = LossSpec::parse(spec).unwrap().build().unwrap();
        to_vec(
            segloss::SegLoss::loss_value(&loss, x, y, None, LossReduction::Mean)
                .unwrap()
                .values,
        )
    };
    let close = |got: &[f64], want: &[f64], case: &str| {
        assert_eq!(got.len(), want.len(), "{case}");
        for (g, w) in got.iter().zip(want) {
            assert!((g - w).abs() <= 1e-5 * w.abs() + 1e-6, "{case}: {g} vs {w}");
        }
    };
    let ib = "hausdorff_dt(include_background=true,activation=sigmoid)";
    let x2 = [1.0, -1.0, -1.0, 1.0];
    let y2 = [1.0, 0.0, 1.0, 1.0];
    // (1,1,2,2) → 0.509329; (1,1,1,2,2) → 0.509329
    let v = run(
        ib,
        segloss::Flat::from_tensor(f4(&x2, [1, 1, 2, 2])),
        f4(&y2, [1, 1, 2, 2]).into(),
    );
    close(&v, &[0.509329], "case 1");
    let v = run(
        ib,
        segloss::Flat::from_tensor(f5(&x2, [1, 1, 1, 2, 2])),
        f5(&y2, [1, 1, 1, 2, 2]).into(),
    );
    close(&v, &[0.509329], "case 2");
    // (1,1,2,2,2) → 0.375718
    let v = run(
        ib,
        segloss::Flat::from_tensor(f5(
            &[1.0, -1.0, 1.0, -1.0, -1.0, 1.0, -1.0, 1.0],
            [1, 1, 2, 2, 2],
        )),
        f5(&[1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0, 1.0], [1, 1, 2, 2, 2]).into(),
    );
    close(&v, &[0.375718], "case 3");
    // (1,2,2,2) → 0.326994; without background → 0.144659
    let x = [1.0, -1.0, -1.0, 1.0, 1.0, -1.0, -1.0, 1.0];
    let y = [1.0, 0.0, 1.0, 1.0, 1.0, 0.0, 0.0, 1.0];
    let v = run(
        ib,
        segloss::Flat::from_tensor(f4(&x, [1, 2, 2, 2])),
        f4(&y, [1, 2, 2, 2]).into(),
    );
    close(&v, &[0.326994], "case 4");
    let v = run(
        "hausdorff_dt(include_background=false,activation=sigmoid)",
        segloss::Flat::from_tensor(f4(&x, [1, 2, 2, 2])),
        f4(&y, [1, 2, 2, 2]).into(),
    );
    close(&v, &[0.144659], "case 6");
    // (2,1,2,2) → 0.455082
    let v = run(
        ib,
        segloss::Flat::from_tensor(f4(
            &[1.0, -1.0, -1.0, 1.0, 1.0, -1.0, -1.0, 1.0],
            [2, 1, 2, 2],
        )),
        f4(&[1.0, 1.0, 1.0, 1.0, 1.0, 0.0, 1.0, 0.0], [2, 1, 2, 2]).into(),
    );
    close(&v, &[0.455082], "case 5");
    // (2,2,3,1) with a label map (2,1,3,1): sigmoid + none → [[0.407765, 0.407765], [0.5, 0.5]];
    // softmax → 0.357016; softmax + sum → 1.428062
    let x = [-1.0, 0.0, 1.0, 1.0, 0.0, -1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0];
    let labels = Tensor::<4, Int>::from_ints([[[[1], [0], [0]]], [[[1], [1], [0]]]], &d);
    let v = run(
        "hausdorff_dt(include_background=true,activation=sigmoid,reduction=none)",
        segloss::Flat::from_tensor(f4(&x, [2, 2, 3, 1])),
        labels.clone().into(),
    );
    close(&v, &[0.407765, 0.407765, 0.5, 0.5], "case 7");
    let v = run(
        "hausdorff_dt(include_background=true,activation=softmax)",
        segloss::Flat::from_tensor(f4(&x, [2, 2, 3, 1])),
        labels.clone().into(),
    );
    close(&v, &[0.357016], "case 8");
    let v = run(
        "hausdorff_dt(include_background=true,activation=softmax,reduction=sum)",
        segloss::Flat::from_tensor(f4(&x, [2, 2, 3, 1])),
        labels.into(),
    );
    close(&v, &[1.428062], "case 9");
}

/// The shape-aware loss equals `weighted_ce` with the weight map `segloss-core` computes from
/// the target (the data-loader path gives the same number as the in-loss path).
#[test]
fn shape_aware_equals_weighted_ce_with_the_unet_map() {
    let d = Device::flex();
    // Two cells of one channel, touching diagonally, plus a third one apart; N = 2.
    let mut mask = vec![0f32; 2 * 12 * 12];
    for (n, cells) in [
        (0usize, &[(2usize, 2usize), (5, 5), (2, 8)][..]),
        (1, &[(6, 6)][..]),
    ] {
        for &(r, c) in cells {
            for dr in 0..3 {
                for dc in 0..3 {
                    mask[n * 144 + (r + dr) * 12 + c + dc] = 1.0;
                }
            }
        }
    }
    let y = Tensor::<1>::from_floats(mask.as_slice(), &d).reshape([2, 1, 12, 12]);
    let x = Tensor::<4>::random(
        [2, 1, 12, 12],
        burn::tensor::Distribution::Normal(0.0, 2.0),
        &d,
    );
    let loss = ShapeAwareLossConfig::new().init();
    let v = loss
        .forward(x.clone(), y.clone(), Reduction::Mean)
        .into_scalar::<f32>();
    let mut w = Vec::new();
    for n in 0..2 {
        let m = ndarray::Array2::from_shape_fn((12, 12), |(r, c)| mask[n * 144 + r * 12 + c] > 0.5);
        let map: ndarray::Array2<f32> =
            segloss_core::unet_weight_map(&m, None, &segloss_core::WeightMapConfig::default())
                .unwrap();
        w.extend(map.iter().copied());
    }
    let w = Tensor::<1>::from_floats(w.as_slice(), &d).reshape([2, 1, 12, 12]);
    let want = WeightedCeLossConfig::new()
        .init()
        .forward(x, y, w, Reduction::Mean)
        .into_scalar::<f32>();
    assert!((v - want).abs() <= 1e-6 * want.abs(), "{v} vs {want}");
}

/// Degenerate but valid targets give finite, documented answers: an empty target, an
/// all-foreground target, a single pixel, N = 1, C = 1, 3D.
#[test]
fn degenerate_targets_are_finite() {
    let d = Device::flex().autodiff();
    for shape in [[1usize, 1, 1, 1, 1], [1, 1, 3, 4, 5], [2, 1, 1, 6, 6]] {
        let numel: usize = shape.iter().product();
        for fill in [0.0f32, 1.0] {
            let x = Tensor::<1>::from_floats(
                (0..numel)
                    .map(|i| (i as f32 * 0.37).sin() * 3.0)
                    .collect::<Vec<_>>()
                    .as_slice(),
                &d,
            )
            .reshape(shape)
            .require_grad();
            let y = Tensor::<5>::full(shape, fill, &d);
            for spec in [
                "shape_aware",
                "contour_ce",
                "hausdorff_dt",
                "boundary",
                "cldice",
                "distance_penalized_ce",
            ] {
                let loss = LossSpec::parse(spec).unwrap().build().unwrap();
                let v = loss.forward(x.clone(), y.clone(), None);
                let g = to_vec(x.grad(&v.clone().backward()).unwrap());
                let v = v.into_scalar::<f32>();
                assert!(v.is_finite(), "{spec} {shape:?} fill {fill}: {v}");
                assert!(
                    g.iter().all(|g| g.is_finite()),
                    "{spec} {shape:?}: gradient"
                );
            }
        }
    }
    // softmax with a label map
    let x = Tensor::<4>::zeros([1, 3, 4, 4], &d).require_grad();
    let l = Tensor::<3, Int>::zeros([1, 4, 4], &d);
    for spec in [
        "shape_aware",
        "contour_ce",
        "hausdorff_dt",
        "boundary",
        "cldice",
        "distance_penalized_ce",
    ] {
        let loss = LossSpec::parse(spec).unwrap().build().unwrap();
        let v = segloss::SegLoss::loss_value(
            &loss,
            segloss::Flat::from_tensor(x.clone()),
            l.clone().into(),
            None,
            LossReduction::Mean,
        )
        .unwrap();
        assert!(to_vec(v.values)[0].is_finite(), "{spec}");
    }
}

/// The surface of a mask by brute force: foreground pixels with a face neighbour in the
/// background or outside the image.
fn brute_boundary(m: &[bool], h: usize, w: usize) -> Vec<bool> {
    (0..h * w)
        .map(|i| {
            let (r, c) = (i / w, i % w);
            m[i] && (r == 0
                || !m[i - w]
                || r + 1 == h
                || !m[i + w]
                || c == 0
                || !m[i - 1]
                || c + 1 == w
                || !m[i + 1])
        })
        .collect()
}

/// contour_ce = weighted_ce with W = 1 + E, E computed here by brute force (distance from each
/// predicted-surface pixel to the nearest target-surface pixel; odd seeds' targets touch the
/// image's edge, where the surface runs along the border).
#[test]
fn contour_ce_matches_brute_force() {
    let d = Device::flex();
    let (h, w) = (7usize, 8usize);
    for seed in 0..6u32 {
        let logits: Vec<f32> = (0..2 * h * w)
            .map(|i| (i as f32 * 0.731 + seed as f32 * 1.3).sin() * 4.0)
            .collect();
        let target: Vec<f32> = (0..2 * h * w)
            .map(|i| {
                let (r, c) = ((i % (h * w)) / w, i % w);
                let n = i / (h * w);
                ((r as i32 - 3).abs() + (c as i32 - 3 - n as i32).abs() <= 2 + (seed % 2) as i32)
                    as u8 as f32
            })
            .collect();
        let mut wmap = vec![1.0f32; 2 * h * w];
        for n in 0..2 {
            let pm: Vec<bool> = logits[n * h * w..(n + 1) * h * w]
                .iter()
                .map(|&x| x > 0.0)
                .collect();
            let tm: Vec<bool> = target[n * h * w..(n + 1) * h * w]
                .iter()
                .map(|&y| y > 0.5)
                .collect();
            let pb = brute_boundary(&pm, h, w);
            let tb = brute_boundary(&tm, h, w);
            for i in 0..h * w {
                if pb[i] {
                    let best = (0..h * w)
                        .filter(|&j| tb[j])
                        .map(|j| {
                            let (dr, dc) = (
                                (i / w) as f64 - (j / w) as f64,
                                (i % w) as f64 - (j % w) as f64,
                            );
                            (dr * dr + dc * dc).sqrt()
                        })
                        .fold(f64::INFINITY, f64::min);
                    if best.is_finite() {
                        wmap[n * h * w + i] += best as f32;
                    }
                }
            }
        }
        let x = Tensor::<1>::from_floats(logits.as_slice(), &d).reshape([2, 1, h, w]);
        let y = Tensor::<1>::from_floats(target.as_slice(), &d).reshape([2, 1, h, w]);
        let wt = Tensor::<1>::from_floats(wmap.as_slice(), &d).reshape([2, 1, h, w]);
        let v = segloss::ContourCeLossConfig::new()
            .init()
            .forward(x.clone(), y.clone(), Reduction::Mean)
            .into_scalar::<f32>();
        let want = WeightedCeLossConfig::new()
            .init()
            .forward(x, y, wt, Reduction::Mean)
            .into_scalar::<f32>();
        assert!(
            (v - want).abs() <= 1e-5 * want.abs(),
            "seed {seed}: {v} vs {want}"
        );
    }
}

/// `contour_ce`'s surfaces are `segloss_core::surface` (the metrics' definition): E computed from
/// it by brute-force distances gives the loss's value, in 2D and 3D, for targets cut by the
/// array's edge.
#[test]
fn contour_ce_uses_the_library_surface() {
    use ndarray::{ArrayD, IxDyn};
    for spatial in [vec![6usize, 7], vec![4, 5, 6]] {
        let s: usize = spatial.iter().product();
        let logits: Vec<f32> = (0..s)
            .map(|i| (i as f32 * 1.37).sin() * 3.0 + 0.2)
            .collect();
        let target: Vec<f32> = (0..s).map(|i| f32::from(u8::from(i % 7 < 4))).collect();
        let mask = |v: &[f32], t: f32| {
            ArrayD::from_shape_vec(IxDyn(&spatial), v.iter().map(|&x| x > t).collect()).unwrap()
        };
        let pb = segloss_core::surface(&mask(&logits, 0.0)).unwrap();
        let tb = segloss_core::surface(&mask(&target, 0.5)).unwrap();
        let coords = |i: usize| -> Vec<f64> {
            let mut out = vec![0.0; spatial.len()];
            let mut rest = i;
            for (k, &n) in spatial.iter().enumerate().rev() {
                out[k] = (rest % n) as f64;
                rest /= n;
            }
            out
        };
        let tpts: Vec<Vec<f64>> = (0..s)
            .filter(|&j| tb.as_slice().unwrap()[j])
            .map(coords)
            .collect();
        let wmap: Vec<f32> = (0..s)
            .map(|i| {
                if !pb.as_slice().unwrap()[i] {
                    return 1.0;
                }
                let p = coords(i);
                let e = tpts
                    .iter()
                    .map(|q| p.iter().zip(q).map(|(a, b)| (a - b) * (a - b)).sum::<f64>())
                    .fold(f64::INFINITY, f64::min)
                    .sqrt();
                1.0 + e as f32
            })
            .collect();
        let (v, want) = match spatial[..] {
            [h, w] => contour_ce_and_weighted_ce(&logits, &target, &wmap, [1, 1, h, w]),
            [a, h, w] => contour_ce_and_weighted_ce(&logits, &target, &wmap, [1, 1, a, h, w]),
            _ => unreachable!(),
        };
        assert!(
            (v - want).abs() <= 1e-5 * want.abs(),
            "{spatial:?}: {v} vs {want}"
        );
    }
}

/// (`contour_ce`, `weighted_ce` with the map `w`) of one f32 image of shape `shape`.
fn contour_ce_and_weighted_ce<const D: usize>(
    x: &[f32],
    y: &[f32],
    w: &[f32],
    shape: [usize; D],
) -> (f32, f32) {
    let d = Device::flex();
    let t = |v: &[f32]| Tensor::<1>::from_floats(v, &d).reshape(shape);
    let v = segloss::ContourCeLossConfig::new()
        .init()
        .forward(t(x), t(y), Reduction::Mean)
        .into_scalar::<f32>();
    let want = WeightedCeLossConfig::new()
        .init()
        .forward(t(x), t(y), t(w), Reduction::Mean)
        .into_scalar::<f32>();
    (v, want)
}

/// Softmax `contour_ce` thresholds by argmax with ties going to the lowest class (numpy's and
/// PyTorch's argmax): equal logits predict class 0 everywhere, whose surface (the image's border)
/// lies on the target's class-0 surface, so the loss is plain cross-entropy, ln 3.
#[test]
fn contour_ce_softmax_ties_go_to_the_lowest_class() {
    let d = Device::flex();
    let x = Tensor::<4>::zeros([1, 3, 6, 7], &d);
    let mut l = vec![0i64; 42];
    for r in 2..4 {
        for c in 2..5 {
            l[r * 7 + c] = 2;
        }
    }
    let l = Tensor::<3, Int>::from_data(burn::tensor::TensorData::new(l, [1, 6, 7]), &d);
    let v = segloss::ContourCeLossConfig::new()
        .init()
        .forward(x, l, Reduction::Mean)
        .into_scalar::<f32>();
    assert!((v - 3f32.ln()).abs() <= 1e-6, "{v}");
}

/// Softmax mode: the instances come from `label ≠ 0`, read from the labels directly; the same
/// target given as a one-hot mask (background channel < 0.5) gives the same loss.
#[test]
fn shape_aware_softmax_labels_match_the_one_hot_mask() {
    let d = Device::flex();
    let (h, w) = (10usize, 11usize);
    let labels: Vec<i64> = (0..2 * h * w)
        .map(|i| {
            let (r, c) = ((i % (h * w)) / w, i % w);
            if (2..5).contains(&r) && (1..4).contains(&c) {
                1
            } else if (3..7).contains(&r) && (5..9).contains(&c) {
                2
            } else {
                0
            }
        })
        .collect();
    let onehot: Vec<f32> = (0..2)
        .flat_map(|n| {
            let labels = &labels;
            (0..3).flat_map(move |k| {
                (0..h * w).map(move |i| (labels[n * h * w + i] == k) as u8 as f32)
            })
        })
        .collect();
    let x = Tensor::<4>::random(
        [2, 3, h, w],
        burn::tensor::Distribution::Normal(0.0, 2.0),
        &d,
    );
    let lt = Tensor::<3, burn::tensor::Int>::from_data(
        burn::tensor::TensorData::new(labels, [2, h, w]),
        &d,
    );
    let mt = Tensor::<4>::from_data(burn::tensor::TensorData::new(onehot, [2, 3, h, w]), &d);
    let loss = ShapeAwareLossConfig::new()
        .with_activation(Some(segloss::Activation::Softmax))
        .init();
    let a = loss
        .forward(x.clone(), lt, Reduction::Mean)
        .into_scalar::<f32>();
    let b = loss.forward(x, mt, Reduction::Mean).into_scalar::<f32>();
    assert!(
        a.is_finite() && (a - b).abs() <= 1e-6 * b.abs(),
        "{a} vs {b}"
    );
}

/// The fused shape-aware kernel makes the value checks on its own pass over the data: a bad value
/// anywhere (not only in the first block) gives the same error as every other loss (`bce`, whose
/// inputs are checked before it runs), in f32 (the fused path) and in f64 (the composed one).
#[test]
fn shape_aware_reports_bad_values_as_the_other_losses_do() {
    use burn::tensor::{DType, TensorData};
    let d = Device::flex();
    let shape = [3usize, 2, 9, 13];
    let n: usize = shape.iter().product();
    let xs: Vec<f64> = (0..n)
        .map(|i| ((i * 37 % 23) as f64 - 11.0) * 0.3)
        .collect();
    let ys: Vec<f64> = (0..n).map(|i| f64::from(u8::from(i % 5 < 2))).collect();
    let at = n - 7; // in the last row, past the 8-lane blocks
    let cases: Vec<(&str, Vec<f64>, Vec<f64>)> = vec![
        ("NaN logit", set(&xs, at, f64::NAN), ys.clone()),
        ("infinite logit", set(&xs, 5, f64::INFINITY), ys.clone()),
        ("NaN target", xs.clone(), set(&ys, at, f64::NAN)),
        ("target 1.5", xs.clone(), set(&ys, 40, 1.5)),
        ("target -0.25", xs.clone(), set(&ys, at, -0.25)),
    ];
    let dtypes = if f64_supported() {
        vec![DType::F32, DType::F64]
    } else {
        vec![DType::F32]
    };
    for dtype in dtypes {
        for (what, x, y) in &cases {
            let t = |v: &[f64]| {
                Tensor::<4>::from_data(TensorData::new(v.to_vec(), shape), &d).cast(dtype)
            };
            let err = |spec: &str| {
                let loss = LossSpec::parse(spec).unwrap().build().unwrap();
                loss.try_forward(t(x), segloss::Target::from(t(y)), None, LossReduction::Mean)
                    .map(|_| ())
                    .unwrap_err()
                    .to_string()
            };
            assert_eq!(err("shape_aware"), err("bce"), "{what} ({dtype:?})");
        }
        // Valid values still give a finite loss.
        let loss = LossSpec::parse("shape_aware").unwrap().build().unwrap();
        let t =
            |v: &[f64]| Tensor::<4>::from_data(TensorData::new(v.to_vec(), shape), &d).cast(dtype);
        let v = loss
            .try_forward(
                t(&xs),
                segloss::Target::from(t(&ys)),
                None,
                LossReduction::Mean,
            )
            .unwrap();
        assert!(v.values.into_scalar::<f64>().is_finite());
    }
}

fn set(v: &[f64], i: usize, value: f64) -> Vec<f64> {
    let mut v = v.to_vec();
    v[i] = value;
    v
}
