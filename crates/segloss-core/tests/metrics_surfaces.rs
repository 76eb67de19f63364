//! Surface distances and the distance metrics on inputs larger than the property tests' (blobs in 2-D
//! and 3-D, far-apart and nested shapes, thin shapes, anisotropic spacing) against the brute force of
//! `reference.rs`, and the distances on unit spacing against an EDT of the other surface (as MONAI
//! computes them) bit for bit.

use ndarray::{ArrayD, IxDyn};
use segloss_core::reference::*;
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
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// A union of `count` random balls (radius `rmin..rmax`) plus `noise` random voxels.
fn blobs(shape: &[usize], count: usize, rmin: f64, rmax: f64, noise: usize, seed: u64) -> Vec<u8> {
    let mut rng = Rng(seed | 1);
    let n: usize = shape.iter().product();
    let mut v = vec![0u8; n];
    let coords = |mut i: usize| {
        let mut c = vec![0usize; shape.len()];
        for a in (0..shape.len()).rev() {
            c[a] = i % shape[a];
            i /= shape[a];
        }
        c
    };
    for _ in 0..count {
        let c: Vec<f64> = shape.iter().map(|&s| rng.unit() * s as f64).collect();
        let r = rmin + rng.unit() * (rmax - rmin);
        for (i, x) in v.iter_mut().enumerate() {
            let p = coords(i);
            let d2: f64 = p
                .iter()
                .zip(&c)
                .map(|(&a, &b)| (a as f64 - b).powi(2))
                .sum();
            if d2 <= r * r {
                *x = 1;
            }
        }
    }
    for _ in 0..noise {
        let i = (rng.next() % n as u64) as usize;
        v[i] = 1 - v[i];
    }
    v
}

fn arr(shape: &[usize], v: &[u8]) -> ArrayD<u8> {
    ArrayD::from_shape_vec(IxDyn(shape), v.to_vec()).unwrap()
}

fn check_pair(shape: &[usize], a: &[u8], b: &[u8], sp: Option<&[f64]>, what: &str) {
    let (x, y) = (arr(shape, a), arr(shape, b));
    let want = surface_distances_reference(a, b, shape, sp);
    let got = surface_distances(&x, &y, sp).unwrap();
    match (got, want) {
        (None, None) => {}
        (Some(g), Some(w)) => {
            assert_eq!(g.len(), w.len(), "{what}");
            for (i, (p, q)) in g.iter().zip(&w).enumerate() {
                assert!(
                    (p - q).abs() <= 1e-12 * (1.0 + q),
                    "{what}: {i}: {p} vs {q}"
                );
            }
        }
        (g, w) => panic!("{what}: {g:?} vs {w:?}"),
    }
    // The metrics against their definitions on the brute-force distances.
    let m = binary_metrics(&x, &y, sp, 1.5).unwrap();
    if let (Some(d1), Some(d2)) = (
        surface_distances_reference(a, b, shape, sp),
        surface_distances_reference(b, a, shape, sp),
    ) {
        let hd = d1.iter().chain(&d2).cloned().fold(0.0, f64::max);
        assert!((m.hd.unwrap() - hd).abs() < 1e-12, "{what}: hd");
        let all: Vec<f64> = d1.iter().chain(&d2).cloned().collect();
        let assd = all.iter().sum::<f64>() / all.len() as f64;
        assert!((m.assd.unwrap() - assd).abs() < 1e-9, "{what}: assd");
        let nsd = all.iter().filter(|&&d| d <= 1.5).count() as f64 / all.len() as f64;
        assert!((m.nsd - nsd).abs() < 1e-12, "{what}: nsd");
        let p95 = |d: &mut Vec<f64>| {
            d.sort_by(f64::total_cmp);
            let r = 0.95 * (d.len() - 1) as f64;
            let (lo, hi) = (r.floor() as usize, r.ceil() as usize);
            d[lo] + (d[hi] - d[lo]) * (r - lo as f64)
        };
        let (mut d1, mut d2) = (d1, d2);
        let want95 = p95(&mut d1).max(p95(&mut d2));
        assert!((m.hd95.unwrap() - want95).abs() < 1e-12, "{what}: hd95");
    }
}

#[test]
fn surface_distances_3d_blobs_match_brute_force() {
    let shape = [14, 17, 19];
    for seed in 1..5u64 {
        let a = blobs(&shape, 3, 2.0, 6.0, 10, seed);
        let b = blobs(&shape, 2, 3.0, 7.0, 5, seed + 100);
        check_pair(&shape, &a, &b, None, &format!("3-D seed {seed}"));
        check_pair(
            &shape,
            &a,
            &b,
            Some(&[1.5, 0.8, 1.1]),
            &format!("3-D aniso seed {seed}"),
        );
    }
}

#[test]
fn surface_distances_2d_and_1d_match_brute_force() {
    for seed in 1..6u64 {
        let shape = [37, 45];
        let a = blobs(&shape, 4, 1.0, 9.0, 30, seed);
        let b = blobs(&shape, 3, 2.0, 8.0, 10, seed + 7);
        check_pair(&shape, &a, &b, None, &format!("2-D seed {seed}"));
        check_pair(
            &shape,
            &a,
            &b,
            Some(&[0.7, 1.9]),
            &format!("2-D aniso seed {seed}"),
        );
        let shape = [200];
        let a = blobs(&shape, 5, 1.0, 6.0, 20, seed);
        let b = blobs(&shape, 4, 1.0, 9.0, 8, seed + 3);
        check_pair(&shape, &a, &b, Some(&[0.3]), &format!("1-D seed {seed}"));
    }
}

#[test]
fn far_apart_nested_and_thin_shapes_match_brute_force() {
    let shape = [16, 24, 30];
    let n: usize = shape.iter().product();
    let idx = |z: usize, y: usize, x: usize| (z * 24 + y) * 30 + x;
    // A small cube in one corner and a plate in the other: far apart.
    let mut a = vec![0u8; n];
    let mut b = vec![0u8; n];
    for z in 0..3 {
        for y in 0..3 {
            for x in 0..3 {
                a[idx(z, y, x)] = 1;
            }
        }
    }
    for y in 10..24 {
        for x in 20..30 {
            b[idx(15, y, x)] = 1;
        }
    }
    check_pair(&shape, &a, &b, None, "far apart");
    check_pair(
        &shape,
        &a,
        &b,
        Some(&[2.0, 1.0, 0.5]),
        "far apart, anisotropic",
    );
    // Nested: a ball inside a bigger ball.
    let inner = blobs(&shape, 1, 3.0, 3.5, 0, 5);
    let outer: Vec<u8> = (0..n)
        .map(|i| {
            let (z, y, x) = (i / 720, i / 30 % 24, i % 30);
            let d =
                (z as f64 - 8.0).powi(2) + (y as f64 - 12.0).powi(2) + (x as f64 - 15.0).powi(2);
            u8::from(d <= 49.0)
        })
        .collect();
    check_pair(&shape, &inner, &outer, None, "nested");
    // Thin: one-voxel lines.
    let mut line = vec![0u8; n];
    for x in 0..30 {
        line[idx(4, 7, x)] = 1;
    }
    check_pair(&shape, &line, &outer, None, "line");
}

#[test]
fn surface_distances_on_unit_spacing_equal_the_edt_of_the_other_surface() {
    // MONAI's recipe: distance_transform_edt(~edges_gt)[edges_pred], here with segloss's own EDT.
    let shape = [20, 22, 25];
    let a = blobs(&shape, 3, 3.0, 8.0, 20, 42);
    let b = blobs(&shape, 3, 3.0, 8.0, 20, 43);
    let (x, y) = (arr(&shape, &a), arr(&shape, &b));
    let (ea, eb) = (surface(&x).unwrap(), surface(&y).unwrap());
    let not_eb = eb.mapv(|e| !e);
    let dt: ArrayD<f64> = edt(&not_eb, None).unwrap();
    let want: Vec<f64> = ea
        .iter()
        .zip(dt.iter())
        .filter(|(&e, _)| e)
        .map(|(_, &d)| d)
        .collect();
    let got = surface_distances(&x, &y, None).unwrap().unwrap();
    assert_eq!(got, want);
}
