//! Divan benchmarks of the maps on synthetic inputs (`cargo bench -p segloss-core`). The side-by-side
//! comparison with scipy / edt / the Python weight-map recipes is `tools/bench/maps/run.sh`.

use divan::Bencher;
use ndarray::{Array2, Array3};
use segloss_core::*;

fn main() {
    divan::main();
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

/// Random disks: about half foreground for `count` ≈ 0.6·area/(π·r²).
fn disks2(n: usize, count: usize, rmin: usize, rmax: usize, seed: u64) -> Array2<bool> {
    let mut rng = Rng(seed);
    let mut m = Array2::from_elem((n, n), false);
    for _ in 0..count {
        let (cy, cx) = (rng.below(n) as isize, rng.below(n) as isize);
        let r = (rmin + rng.below(rmax - rmin + 1)) as isize;
        for y in (cy - r).max(0)..(cy + r + 1).min(n as isize) {
            for x in (cx - r).max(0)..(cx + r + 1).min(n as isize) {
                if (y - cy).pow(2) + (x - cx).pow(2) <= r * r {
                    m[[y as usize, x as usize]] = true;
                }
            }
        }
    }
    m
}

fn balls3(shape: (usize, usize, usize), count: usize, r: isize, seed: u64) -> Array3<bool> {
    let mut rng = Rng(seed);
    let mut m = Array3::from_elem(shape, false);
    for _ in 0..count {
        let c = [rng.below(shape.0), rng.below(shape.1), rng.below(shape.2)].map(|v| v as isize);
        for ((z, y, x), v) in m.indexed_iter_mut() {
            let d = (z as isize - c[0]).pow(2)
                + (y as isize - c[1]).pow(2)
                + (x as isize - c[2]).pow(2);
            if d <= r * r {
                *v = true;
            }
        }
    }
    m
}

/// Touching labels: each pixel takes the label of its nearest seed.
fn voronoi(n: usize, seeds: usize, seed: u64) -> Array2<u32> {
    let mut rng = Rng(seed);
    let mut bg = Array2::from_elem((n, n), 1u8);
    let mut id = Array2::<u32>::zeros((n, n));
    for l in 1..=seeds {
        let (y, x) = (rng.below(n), rng.below(n));
        bg[[y, x]] = 0;
        id[[y, x]] = l as u32;
    }
    let (_, nearest): (Array2<f32>, _) = feature_transform(&bg, None).unwrap();
    nearest.mapv(|i| id.as_slice().unwrap()[i])
}

#[divan::bench]
fn edt_2d_1024(b: Bencher) {
    let m = disks2(1024, 1400, 6, 16, 1);
    b.bench(|| edt::<f32, _, _, _>(&m, None).unwrap());
}

#[divan::bench]
fn edt_3d_64x128x128_aniso(b: Bencher) {
    let m = balls3((64, 128, 128), 60, 10, 2);
    b.bench(|| edt::<f32, _, _, _>(&m, Some(&[2.0, 1.0, 1.0])).unwrap());
}

#[divan::bench]
fn multilabel_edt_1024_500_labels(b: Bencher) {
    let l = voronoi(1024, 500, 3);
    b.bench(|| multilabel_edt::<f32, _, _, _>(&l, None).unwrap());
}

#[divan::bench]
fn signed_distance_map_1024(b: Bencher) {
    let m = disks2(1024, 1400, 6, 16, 4);
    b.bench(|| signed_distance_map::<f32, _, _, _>(&m, None).unwrap());
}

#[divan::bench(args = [Connectivity::Face, Connectivity::Full])]
fn connected_components_1024(b: Bencher, c: Connectivity) {
    let m = disks2(1024, 1400, 6, 16, 5);
    b.bench(|| connected_components(&m, c).unwrap());
}

#[divan::bench]
fn unet_weight_map_512_100_cells(b: Bencher) {
    let m = disks2(512, 110, 6, 13, 6);
    let config = WeightMapConfig::default();
    b.bench(|| unet_weight_map::<f32, _, _, _>(&m, None, &config).unwrap());
}

/// `count` touching nuclei on a `d × h × w` volume (as `nuclei3d` of `tools/bench/files.py`): the
/// voxels within `radius` of a random seed, each labelled by its nearest seed (ids 1..=count).
fn nuclei3(shape: [usize; 3], count: usize, radius: f64, seed: u64) -> Array3<u16> {
    let mut rng = Rng(seed);
    let seeds: Vec<[isize; 3]> = (0..count)
        .map(|_| shape.map(|n| rng.below(n) as isize))
        .collect();
    let mut best = Array3::from_elem(shape, f64::INFINITY);
    let mut lab = Array3::<u16>::zeros(shape);
    let r = radius.floor() as isize;
    for (i, c) in seeds.iter().enumerate() {
        for z in (c[0] - r).max(0)..(c[0] + r + 1).min(shape[0] as isize) {
            for y in (c[1] - r).max(0)..(c[1] + r + 1).min(shape[1] as isize) {
                for x in (c[2] - r).max(0)..(c[2] + r + 1).min(shape[2] as isize) {
                    let d = ((z - c[0]).pow(2) + (y - c[1]).pow(2) + (x - c[2]).pow(2)) as f64;
                    let at = [z as usize, y as usize, x as usize];
                    if d <= radius * radius && d < best[at] {
                        best[at] = d;
                        lab[at] = i as u16 + 1;
                    }
                }
            }
        }
    }
    lab
}

/// The 3-D weight map of `tools/bench/files.py`: 64×256×256, 200 touching nuclei of radius 9.
#[divan::bench]
fn unet_weight_map_3d_64x256x256_200_nuclei(b: Bencher) {
    let lab = nuclei3([64, 256, 256], 200, 9.0, 10);
    let config = WeightMapConfig::default();
    b.bench(|| unet_weight_map_from_instances::<f32, _, _, _>(&lab, None, &config).unwrap());
}

/// Uniform noise with foreground probability `p` (a thresholded random prediction early in training).
fn noise2(n: usize, p: f64, seed: u64) -> Array2<bool> {
    let mut rng = Rng(seed);
    Array2::from_shape_fn((n, n), |_| (rng.next() % 1_000_000) as f64 / 1e6 < p)
}

/// The fields of `hausdorff_dt` on one 256² image: a noisy prediction and a disk target.
#[divan::bench(args = [0.5, 0.1])]
fn two_sided_edt_256_noise(b: Bencher, p: f64) {
    let m = noise2(256, p, 7);
    b.bench(|| two_sided_edt::<f32, _, _, _>(&m, None).unwrap());
}

#[divan::bench]
fn two_sided_edt_256_disks(b: Bencher) {
    let m = disks2(256, 20, 6, 30, 8);
    b.bench(|| two_sided_edt::<f32, _, _, _>(&m, None).unwrap());
}

/// The map of `shape_aware` on one image of `segloss bench --target cells` (about 50 cells).
#[divan::bench]
fn unet_weight_map_256_50_cells(b: Bencher) {
    let m = disks2(256, 50, 5, 9, 9);
    let config = WeightMapConfig::default();
    b.bench(|| unet_weight_map::<f32, _, _, _>(&m, None, &config).unwrap());
}

/// The cells of `segloss bench --target cells` (seed 0): 8 images of 256² with 50 discs of radius
/// 5–9 each, the same generator and random stream as the CLI.
fn bench_cells() -> Vec<bool> {
    struct SplitMix(u64);
    impl SplitMix {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        }
        fn unit(&mut self) -> f64 {
            (self.next() >> 11) as f64 / (1u64 << 53) as f64
        }
    }
    let mut rng = SplitMix(0x5EED);
    let (n, h, w) = (8, 256usize, 256usize);
    let mut out = vec![false; n * h * w];
    for b in 0..n {
        for _ in 0..50 {
            let r = 5.0 + 4.0 * rng.unit();
            let (cy, cx, _cz) = (rng.unit() * h as f64, rng.unit() * w as f64, rng.unit());
            for y in 0..h {
                for x in 0..w {
                    if (y as f64 - cy).powi(2) + (x as f64 - cx).powi(2) <= r * r {
                        out[b * h * w + y * w + x] = true;
                    }
                }
            }
        }
    }
    out
}

/// The maps of one `shape_aware` step on `segloss bench --target cells`: 8 images, one per worker
/// at a time (`parallel: false`), written in place into one batch buffer (as the loss does).
#[divan::bench]
fn unet_weight_maps_8x256_bench_cells(b: Bencher) {
    use rayon::prelude::*;
    let masks = bench_cells();
    let config = WeightMapConfig {
        parallel: false,
        ..WeightMapConfig::default()
    };
    let mut out = vec![0f32; masks.len()];
    b.bench_local(|| {
        out.par_chunks_mut(256 * 256)
            .zip(masks.par_chunks(256 * 256))
            .for_each(|(o, m)| {
                segloss_core::unet_weight_map_into(m, &[256, 256], None, &config, o).unwrap()
            });
    });
}
