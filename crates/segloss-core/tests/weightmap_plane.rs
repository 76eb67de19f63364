//! The U-Net weight map on 1-D and 2-D images larger than its cut-off band (where the lens-limited
//! evaluation matters), against a brute force over the instances' voxels: random disks that touch and
//! overlap, noise (holes, thin and diagonal shapes), wide and long instances, anisotropic spacing, binary
//! masks with both connectivities and instance-label images with disconnected instances.

use ndarray::{Array1, Array2, ArrayD, IxDyn};
use proptest::prelude::*;
use segloss_core::reference::connected_components_reference;
use segloss_core::*;

/// The exact weight map (no cut-off) of instances 1..=k (0 background) by brute force: each background
/// voxel's distance to every instance is the minimum over that instance's voxels.
fn brute_force(inst: &[u32], shape: &[usize], sp: &[f64], config: &WeightMapConfig) -> Vec<f64> {
    let (h, w) = if shape.len() == 2 {
        (shape[0], shape[1])
    } else {
        (1, shape[0])
    };
    let (sy, sx) = if shape.len() == 2 {
        (sp[0], sp[1])
    } else {
        (1.0, sp[0])
    };
    let k = inst.iter().copied().max().unwrap_or(0) as usize;
    let pts: Vec<Vec<(f64, f64)>> = (1..=k as u32)
        .map(|l| {
            (0..h * w)
                .filter(|&i| inst[i] == l)
                .map(|i| ((i / w) as f64 * sy, (i % w) as f64 * sx))
                .collect()
        })
        .collect();
    let n = inst.len();
    let n_fg = inst.iter().filter(|&&l| l != 0).count();
    let cw = |c: usize| match config.class_weight {
        ClassWeight::None => 1.0,
        ClassWeight::Balanced => n as f64 / (2.0 * c as f64),
    };
    (0..n)
        .map(|i| {
            if inst[i] != 0 {
                return cw(n_fg);
            }
            let mut wc = cw(n - n_fg);
            let (y, x) = ((i / w) as f64 * sy, (i % w) as f64 * sx);
            let mut d: Vec<f64> = pts
                .iter()
                .map(|p| {
                    p.iter()
                        .map(|&(a, b)| (a - y).powi(2) + (b - x).powi(2))
                        .fold(f64::INFINITY, f64::min)
                        .sqrt()
                })
                .collect();
            d.sort_by(f64::total_cmp);
            if d.len() >= 2 && d[1].is_finite() {
                let s = d[0] + d[1];
                wc += config.w0 * (-(s * s) / (2.0 * config.sigma * config.sigma)).exp();
            }
            wc
        })
        .collect()
}

/// A small deterministic generator (xorshift).
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Instance ids on an `h × w` image: `disks` random disks (radius 1–7, ids 1..), a few bars (some
/// wider than 48 columns), and a sprinkle of single-voxel noise with random ids.
fn scene(h: usize, w: usize, disks: usize, noise: usize, seed: u64) -> Array2<u32> {
    let mut rng = Rng(seed | 1);
    let mut m = Array2::<u32>::zeros((h, w));
    let mut id = 0u32;
    for _ in 0..disks {
        id += 1;
        let (cy, cx) = (rng.below(h) as isize, rng.below(w) as isize);
        let r = 1 + rng.below(7) as isize;
        for y in (cy - r).max(0)..(cy + r + 1).min(h as isize) {
            for x in (cx - r).max(0)..(cx + r + 1).min(w as isize) {
                if (y - cy).pow(2) + (x - cx).pow(2) <= r * r {
                    m[[y as usize, x as usize]] = id;
                }
            }
        }
    }
    for _ in 0..2 {
        id += 1;
        let (y, x0) = (rng.below(h), rng.below(w / 4 + 1));
        let len = (w / 2 + rng.below(w / 2 + 1)).min(w - x0);
        let thick = 1 + rng.below(3);
        for yy in y..(y + thick).min(h) {
            for x in x0..x0 + len {
                m[[yy, x]] = id;
            }
        }
    }
    for _ in 0..noise {
        let (y, x) = (rng.below(h), rng.below(w));
        m[[y, x]] = 1 + rng.below(id as usize) as u32;
    }
    m
}

fn check(got: &[f64], want: &[f64], what: &str) {
    for (i, (x, y)) in got.iter().zip(want).enumerate() {
        assert!((x - y).abs() <= 1e-4, "{what}: voxel {i}: {x} vs {y}");
    }
}

fn run_2d(
    h: usize,
    w: usize,
    disks: usize,
    noise: usize,
    seed: u64,
    sp: [f64; 2],
    config: WeightMapConfig,
) {
    let ids = scene(h, w, disks, noise, seed);
    let shape = [h, w];
    // Binary mask, both connectivities.
    let mask: Vec<u8> = ids.iter().map(|&l| u8::from(l != 0)).collect();
    for conn in [Connectivity::Full, Connectivity::Face] {
        let c = WeightMapConfig {
            connectivity: conn,
            ..config
        };
        let (inst, _) = connected_components_reference(&mask, &shape, conn);
        let want = brute_force(&inst, &shape, &sp, &c);
        let a = Array2::from_shape_vec((h, w), mask.clone()).unwrap();
        let got: Array2<f64> = unet_weight_map(&a, Some(&sp), &c).unwrap();
        check(
            got.as_slice().unwrap(),
            &want,
            &format!("binary {conn:?} seed {seed}"),
        );
        let got32: Array2<f32> = unet_weight_map(&a, Some(&sp), &c).unwrap();
        for (i, (x, y)) in got32.iter().zip(&want).enumerate() {
            assert!(
                (*x as f64 - y).abs() <= 1e-4 + 1e-6 * y.abs(),
                "binary f32 seed {seed}: voxel {i}: {x} vs {y}"
            );
        }
        // A bool mask (its runs found eight voxels at a time): the same map.
        let b = a.mapv(|v| v != 0);
        let got_bool: Array2<f32> = unet_weight_map(&b, Some(&sp), &c).unwrap();
        assert_eq!(got_bool, got32, "bool mask seed {seed}");
    }
    // Instance labels: touching and disconnected instances (noise voxels join random ids).
    let (inst, _) = relabel_sequential(&ids).unwrap();
    let want = brute_force(inst.as_slice().unwrap(), &shape, &sp, &config);
    let got: Array2<f64> = unet_weight_map_from_instances(&ids, Some(&sp), &config).unwrap();
    check(
        got.as_slice().unwrap(),
        &want,
        &format!("instances seed {seed}"),
    );
}

#[test]
fn weight_map_2d_many_cells_matches_brute_force() {
    for seed in 1..6u64 {
        let config = WeightMapConfig {
            sigma: 2.0 + seed as f64 * 0.4,
            w0: 5.0 + seed as f64,
            class_weight: if seed % 2 == 0 {
                ClassWeight::None
            } else {
                ClassWeight::Balanced
            },
            ..Default::default()
        };
        run_2d(61, 83, 25, 15, seed, [1.0, 1.0], config);
    }
}

#[test]
fn weight_map_2d_anisotropic_matches_brute_force() {
    for (seed, sp) in [
        (11u64, [1.0, 0.6]),
        (12, [0.7, 1.3]),
        (13, [2.0, 0.5]),
        (14, [0.35, 0.9]),
    ] {
        let config = WeightMapConfig {
            sigma: 1.5 + seed as f64 % 3.0,
            ..Default::default()
        };
        run_2d(47, 96, 18, 10, seed, sp, config);
    }
}

#[test]
fn weight_map_1d_matches_brute_force() {
    for seed in 21..27u64 {
        let mut rng = Rng(seed);
        let n = 300;
        let v: Vec<u32> = (0..n)
            .map(|_| {
                if rng.below(4) == 0 {
                    1 + rng.below(12) as u32
                } else {
                    0
                }
            })
            .collect();
        let sp = [0.5 + (seed % 3) as f64 * 0.4];
        let config = WeightMapConfig {
            sigma: 1.0 + (seed % 4) as f64,
            ..Default::default()
        };
        let (inst, _) = relabel_sequential(&Array1::from(v.clone())).unwrap();
        let want = brute_force(inst.as_slice().unwrap(), &[n], &sp, &config);
        let got: Array1<f64> =
            unet_weight_map_from_instances(&Array1::from(v.clone()), Some(&sp), &config).unwrap();
        check(
            got.as_slice().unwrap(),
            &want,
            &format!("1-D instances seed {seed}"),
        );
        let mask: Vec<u8> = v.iter().map(|&l| u8::from(l != 0)).collect();
        let (cc, _) = connected_components_reference(&mask, &[n], Connectivity::Full);
        let want = brute_force(&cc, &[n], &sp, &config);
        let got: Array1<f64> = unet_weight_map(&Array1::from(mask), Some(&sp), &config).unwrap();
        check(
            got.as_slice().unwrap(),
            &want,
            &format!("1-D binary seed {seed}"),
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn weight_map_2d_random_scenes(
        h in 8usize..48,
        w in 8usize..60,
        disks in 2usize..16,
        noise in 0usize..12,
        seed in any::<u64>(),
        sy in 0.4f64..2.0,
        sx in 0.4f64..2.0,
        sigma in 0.5f64..4.0,
        w0 in 0.5f64..20.0,
    ) {
        let config = WeightMapConfig { sigma, w0, ..Default::default() };
        run_2d(h, w, disks, noise, seed, [sy, sx], config);
    }
}

#[test]
fn weight_map_3d_is_unchanged_by_the_plane_path() {
    // A 3-D image of one plane along the first axis goes through the crops; the same image as 2-D
    // through the plane path: both must agree.
    let ids = scene(40, 50, 12, 6, 99);
    let config = WeightMapConfig::default();
    let a2 = ids.mapv(|l| u8::from(l != 0));
    let a3 = a2
        .clone()
        .into_shape_with_order(IxDyn(&[1, 40, 50]))
        .unwrap();
    let a3b = a2
        .clone()
        .into_shape_with_order(IxDyn(&[40, 1, 50]))
        .unwrap();
    let w2: Array2<f64> = unet_weight_map(&a2, None, &config).unwrap();
    let w3: ArrayD<f64> = unet_weight_map(&a3, None, &config).unwrap();
    let w3b: ArrayD<f64> = unet_weight_map(&a3b, None, &config).unwrap();
    for ((x, y), z) in w2.iter().zip(w3.iter()).zip(w3b.iter()) {
        assert!(
            (x - y).abs() <= 1e-4 && (x - z).abs() <= 1e-4,
            "{x} {y} {z}"
        );
    }
}

#[test]
fn weight_map_2d_is_the_same_on_any_number_of_threads() {
    // The stripes (a few per worker) only split the work: every voxel sees the same candidates.
    let ids = scene(300, 260, 120, 40, 7);
    let mask = ids.mapv(|l| u8::from(l != 0));
    let config = WeightMapConfig::default();
    let run = |t: usize| -> Array2<f32> {
        rayon::ThreadPoolBuilder::new()
            .num_threads(t)
            .build()
            .unwrap()
            .install(|| unet_weight_map(&mask, Some(&[1.0, 0.8]), &config).unwrap())
    };
    let one = run(1);
    for t in [2, 3, 7] {
        assert_eq!(run(t), one, "{t} threads");
    }
    // `parallel: false` (one map per task in a batch): the calling thread only, the same map.
    let serial = WeightMapConfig {
        parallel: false,
        ..config
    };
    let got: Array2<f32> = rayon::ThreadPoolBuilder::new()
        .num_threads(4)
        .build()
        .unwrap()
        .install(|| unet_weight_map(&mask, Some(&[1.0, 0.8]), &serial).unwrap());
    assert_eq!(got, one, "parallel: false");
    // The same for instance labels in 3-D (the crop path) and their boxes.
    let vol =
        ndarray::Array3::from_shape_fn((24, 60, 52), |(z, y, x)| ids[[(y * 7 + z) % 300, x * 5]]);
    let a: ndarray::Array3<f64> = unet_weight_map_from_instances(&vol, None, &config).unwrap();
    let b: ndarray::Array3<f64> = unet_weight_map_from_instances(&vol, None, &serial).unwrap();
    assert_eq!(a, b, "3-D, parallel: false");
}

/// Found by the spec fuzzer (`shape_aware(w0=10,sigma=8000000000002002)`): a huge σ made the
/// lens tables as long as the band in rows (an allocation of 2^58 bytes); they now stop at the
/// image, and the map still matches the brute force (every pair of instances interacts).
#[test]
fn weight_map_with_a_huge_sigma_stays_small_and_exact() {
    for sigma in [8e15, 1e300] {
        let config = WeightMapConfig {
            sigma,
            ..WeightMapConfig::default()
        };
        run_2d(24, 31, 5, 3, 11, [1.0, 1.0], config);
    }
}

/// Instances narrower than 64 columns take the brute-force rows, wider ones the envelope: both on
/// one image, touching, against the brute force (a long bar between rows of disks, and a wide
/// ring-shaped instance with holes).
#[test]
fn weight_map_2d_wide_and_narrow_instances_take_both_paths() {
    let (h, w) = (40usize, 180usize);
    let mut m = Array2::<u32>::zeros((h, w));
    for x in 10..170 {
        m[[20, x]] = 1;
        m[[21, x]] = 1;
    }
    for (k, cx) in (15..170).step_by(14).enumerate() {
        let cy = if k % 2 == 0 { 14 } else { 27 };
        for y in cy - 4..=cy + 4 {
            for x in cx - 4..=cx + 4 {
                if (y as isize - cy as isize).pow(2) + (x as isize - cx as isize).pow(2) <= 16 {
                    m[[y, x]] = 2 + k as u32;
                }
            }
        }
    }
    for x in 5..175 {
        if x % 9 != 0 {
            m[[2, x]] = 99;
            m[[37, x]] = 99;
        }
    }
    let config = WeightMapConfig {
        sigma: 3.0,
        ..Default::default()
    };
    let (inst, _) = relabel_sequential(&m).unwrap();
    let want = brute_force(inst.as_slice().unwrap(), &[h, w], &[1.0, 1.0], &config);
    let got: Array2<f64> = unet_weight_map_from_instances(&m, None, &config).unwrap();
    check(got.as_slice().unwrap(), &want, "wide and narrow instances");
    let mask = m.mapv(|l| u8::from(l != 0));
    let (cc, _) =
        connected_components_reference(mask.as_slice().unwrap(), &[h, w], Connectivity::Full);
    let want = brute_force(&cc, &[h, w], &[1.0, 1.0], &config);
    let got: Array2<f64> = unet_weight_map(&mask, None, &config).unwrap();
    check(
        got.as_slice().unwrap(),
        &want,
        "wide and narrow instances (mask)",
    );
}
