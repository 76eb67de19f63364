//! The U-Net weight map on 3-D images (the separable two-nearest-instances passes), against the
//! brute-force definition (`reference::unet_weight_map_reference`) on small random volumes: touching
//! and overlapping balls, single-voxel noise, instance-label images with disconnected instances,
//! binary masks with both connectivities, anisotropic spacing, and parameters whose band is smaller
//! or larger than the volume.

use ndarray::{Array3, ArrayD, IxDyn};
use proptest::prelude::*;
use segloss_core::reference::{connected_components_reference, unet_weight_map_reference};
use segloss_core::*;

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

/// Instance ids on a `d × h × w` volume: `balls` random balls (radius 0–4, ids 1..; later balls
/// overwrite earlier ones, so instances touch) and `noise` single voxels of random ids.
fn scene(shape: [usize; 3], balls: usize, noise: usize, seed: u64) -> Array3<u32> {
    let mut rng = Rng(seed | 1);
    let mut m = Array3::<u32>::zeros(shape);
    for id in 1..=balls as u32 {
        let c: Vec<isize> = shape.iter().map(|&n| rng.below(n) as isize).collect();
        let r = rng.below(5) as isize;
        for z in (c[0] - r).max(0)..(c[0] + r + 1).min(shape[0] as isize) {
            for y in (c[1] - r).max(0)..(c[1] + r + 1).min(shape[1] as isize) {
                for x in (c[2] - r).max(0)..(c[2] + r + 1).min(shape[2] as isize) {
                    let d = (z - c[0]).pow(2) + (y - c[1]).pow(2) + (x - c[2]).pow(2);
                    if d <= r * r {
                        m[[z as usize, y as usize, x as usize]] = id;
                    }
                }
            }
        }
    }
    for _ in 0..noise {
        let i = [
            rng.below(shape[0]),
            rng.below(shape[1]),
            rng.below(shape[2]),
        ];
        m[i] = 1 + rng.below(balls.max(1)) as u32;
    }
    m
}

/// Relabels to 1..=k in order of first appearance (the reference wants consecutive ids).
fn consecutive(ids: &Array3<u32>) -> Vec<u32> {
    let mut map = std::collections::HashMap::new();
    ids.iter()
        .map(|&l| {
            if l == 0 {
                0
            } else {
                let k = map.len() as u32 + 1;
                *map.entry(l).or_insert(k)
            }
        })
        .collect()
}

fn check(got: &[f64], want: &[f64], what: &str) {
    assert_eq!(got.len(), want.len());
    for (i, (x, y)) in got.iter().zip(want).enumerate() {
        assert!((x - y).abs() <= 1e-4, "{what}: voxel {i}: {x} vs {y}");
    }
}

fn run(
    shape: [usize; 3],
    balls: usize,
    noise: usize,
    seed: u64,
    sp: [f64; 3],
    config: WeightMapConfig,
) {
    let ids = scene(shape, balls, noise, seed);
    let dims = [shape[0], shape[1], shape[2]];
    // Instance-label image: every id one instance (possibly disconnected).
    let want = unet_weight_map_reference(&consecutive(&ids), &dims, Some(&sp), &config);
    for parallel in [true, false] {
        let c = WeightMapConfig { parallel, ..config };
        let got: Array3<f64> = unet_weight_map_from_instances(&ids, Some(&sp), &c).unwrap();
        check(
            got.as_slice().unwrap(),
            &want,
            &format!("instances {shape:?} seed {seed} parallel {parallel}"),
        );
        let got32: Array3<f32> = unet_weight_map_from_instances(&ids, Some(&sp), &c).unwrap();
        for (i, (x, y)) in got32.iter().zip(&want).enumerate() {
            assert!(
                (f64::from(*x) - y).abs() <= 2e-4 * (1.0 + y.abs()),
                "f32 {shape:?} seed {seed}: voxel {i}: {x} vs {y}"
            );
        }
    }
    // Binary mask: instances are its connected components.
    let mask = ids.mapv(|l| l != 0);
    for conn in [Connectivity::Face, Connectivity::Full] {
        let (comps, _) = connected_components_reference(mask.as_slice().unwrap(), &dims, conn);
        let want = unet_weight_map_reference(&comps, &dims, Some(&sp), &config);
        let c = WeightMapConfig {
            connectivity: conn,
            ..config
        };
        let got: ArrayD<f64> = unet_weight_map(
            &mask
                .clone()
                .into_dyn()
                .into_shape_with_order(IxDyn(&dims))
                .unwrap(),
            Some(&sp),
            &c,
        )
        .unwrap();
        check(
            got.as_slice().unwrap(),
            &want,
            &format!("mask {conn:?} {shape:?} seed {seed}"),
        );
    }
}

#[test]
fn weight_map_3d_touching_balls_match_brute_force() {
    run(
        [12, 14, 16],
        12,
        6,
        5,
        [1.0, 1.0, 1.0],
        WeightMapConfig::default(),
    );
    run(
        [9, 20, 11],
        8,
        4,
        17,
        [2.5, 1.0, 0.7],
        WeightMapConfig::default(),
    );
}

#[test]
fn weight_map_3d_with_a_narrow_band_matches_brute_force() {
    // σ = 1: the band (~5 voxels) is smaller than the volume, so the cut-off is exercised.
    let config = WeightMapConfig {
        sigma: 1.0,
        ..Default::default()
    };
    run([16, 18, 20], 20, 10, 3, [1.0, 1.0, 1.0], config);
    run([16, 18, 20], 20, 10, 4, [1.5, 0.6, 1.0], config);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 40, ..ProptestConfig::default() })]

    #[test]
    fn weight_map_3d_random_volumes(
        d in 2usize..10,
        h in 2usize..12,
        w in 2usize..12,
        balls in 0usize..10,
        noise in 0usize..8,
        seed in any::<u64>(),
        s0 in 0.4f64..3.0,
        s1 in 0.4f64..2.0,
        s2 in 0.4f64..2.0,
        sigma in 0.3f64..4.0,
        w0 in 0.5f64..20.0,
    ) {
        let config = WeightMapConfig { sigma, w0, ..Default::default() };
        run([d, h, w], balls, noise, seed, [s0, s1, s2], config);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 16, ..ProptestConfig::default() })]

    /// Lines several blocks long (rows up to 64 voxels) with a band shorter than them: the per-block
    /// site ranges, their trimming and the runs of one nearest instance that span blocks.
    #[test]
    fn weight_map_3d_long_lines(
        d in 2usize..4,
        h in 6usize..16,
        w in 20usize..64,
        balls in 2usize..14,
        noise in 0usize..6,
        seed in any::<u64>(),
        s0 in 0.5f64..2.5,
        s1 in 0.5f64..1.5,
        s2 in 0.5f64..1.5,
        sigma in 0.4f64..2.5,
        w0 in 1.0f64..20.0,
    ) {
        let config = WeightMapConfig { sigma, w0, ..Default::default() };
        run([d, h, w], balls, noise, seed, [s0, s1, s2], config);
    }
}
