//! The parallel paths (row stripes, tiles, plane sweeps) give the same answers as one thread.

use ndarray::{Array2, ArrayD, IxDyn};
use segloss_core::*;

fn pool(n: usize) -> rayon::ThreadPool {
    rayon::ThreadPoolBuilder::new()
        .num_threads(n)
        .build()
        .unwrap()
}

/// A deterministic pseudo-random mask with blobs of about `p` foreground.
fn mask(shape: &[usize], seed: u64, p: f64) -> ArrayD<u8> {
    let mut x = seed | 1;
    let n: usize = shape.iter().product();
    let mut v: Vec<f64> = (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % 1000) as f64 / 1000.0
        })
        .collect();
    // Smooth along the last axis a little so that components span several voxels.
    let last = *shape.last().unwrap();
    for r in v.chunks_mut(last) {
        for j in 1..r.len() {
            r[j] = 0.6 * r[j] + 0.4 * r[j - 1];
        }
    }
    ArrayD::from_shape_vec(IxDyn(shape), v.into_iter().map(|u| (u < p) as u8).collect()).unwrap()
}

#[test]
fn connected_components_agree_across_thread_counts() {
    for shape in [vec![301, 257], vec![37, 61, 53]] {
        for p in [0.3, 0.55] {
            let m = mask(&shape, 11 + shape.len() as u64, p);
            for c in [Connectivity::Face, Connectivity::Full] {
                let one = pool(1).install(|| connected_components(&m, c).unwrap());
                for t in [2, 3, 7] {
                    let many = pool(t).install(|| connected_components(&m, c).unwrap());
                    assert_eq!(one.1, many.1, "{shape:?} {c:?} {t} threads");
                    assert_eq!(one.0, many.0, "{shape:?} {c:?} {t} threads");
                }
            }
        }
    }
}

#[test]
fn maps_agree_across_thread_counts() {
    for (shape, sp) in [
        (vec![300, 280], vec![1.0, 0.5]),
        (vec![40, 60, 70], vec![2.0, 1.0, 0.8]),
    ] {
        let m = mask(&shape, 5, 0.5);
        let run = |t: usize| {
            pool(t).install(|| {
                let e: ArrayD<f32> = edt(&m, Some(&sp)).unwrap();
                let l: ArrayD<f32> = multilabel_edt(&m.mapv(|x| x as u32 * 2), Some(&sp)).unwrap();
                let s: ArrayD<f32> = signed_distance_map(&m, Some(&sp)).unwrap();
                let w: ArrayD<f32> =
                    unet_weight_map(&m, Some(&sp), &WeightMapConfig::default()).unwrap();
                (e, l, s, w)
            })
        };
        let one = run(1);
        for t in [2, 5] {
            let many = run(t);
            assert_eq!(one.0, many.0);
            assert_eq!(one.1, many.1);
            assert_eq!(one.2, many.2);
            for (a, b) in one.3.iter().zip(many.3.iter()) {
                assert!((a - b).abs() <= 1e-5, "{a} vs {b}");
            }
        }
    }
}

#[test]
fn weight_map_of_many_cells_is_within_tolerance_of_the_straightforward_recipe() {
    // 120×110 with ~40 disks: the banded crops against one full EDT per instance (via edt()).
    let (h, w) = (120, 110);
    let mut cells = Array2::<u32>::zeros((h, w));
    let mut x = 99u64;
    let mut rnd = |n: usize| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        (x % n as u64) as usize
    };
    for id in 1..=40u32 {
        let (cy, cx, r) = (rnd(h) as isize, rnd(w) as isize, 2 + rnd(5) as isize);
        for y in 0..h as isize {
            for xx in 0..w as isize {
                if (y - cy).pow(2) + (xx - cx).pow(2) <= r * r {
                    cells[[y as usize, xx as usize]] = id;
                }
            }
        }
    }
    let (inst, k) = relabel_sequential(&cells).unwrap();
    assert!(k > 20);
    let config = WeightMapConfig {
        sigma: 4.0,
        ..Default::default()
    };
    let dist: Vec<Array2<f64>> = (1..=k as u32)
        .map(|i| edt(&inst.mapv(|l| l != i), None).unwrap())
        .collect();
    let n = (h * w) as f64;
    let nf = inst.iter().filter(|&&l| l != 0).count() as f64;
    let got: Array2<f64> = unet_weight_map_from_instances(&cells, None, &config).unwrap();
    for ((y, xx), &g) in got.indexed_iter() {
        let l = inst[[y, xx]];
        let mut want = if l != 0 {
            n / (2.0 * nf)
        } else {
            n / (2.0 * (n - nf))
        };
        if l == 0 {
            let mut d: Vec<f64> = dist.iter().map(|m| m[[y, xx]]).collect();
            d.sort_by(f64::total_cmp);
            want += 10.0 * (-(d[0] + d[1]).powi(2) / 32.0).exp();
        }
        assert!((g - want).abs() <= 1e-4, "({y}, {xx}): {g} vs {want}");
    }
}
