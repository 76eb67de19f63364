//! Times segloss-core's maps on the inputs written by `tools/bench/maps/bench.py` and prints one JSON
//! object of best-of-`repeats` wall times in milliseconds. Run through `tools/bench/maps/run.sh`.
//!
//! Usage: `bench_maps DIR [REPEATS]`, threads from `RAYON_NUM_THREADS`.

use std::path::Path;
use std::time::Instant;

use ndarray::{ArrayD, IxDyn, OwnedRepr};
use ndarray_npy::{read_npy, ReadableElement};
use segloss_core::*;

fn load<T: ReadableElement>(dir: &Path, name: &str) -> ArrayD<T> {
    read_npy::<_, ndarray::ArrayBase<OwnedRepr<T>, IxDyn>>(dir.join(name))
        .unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn best<R>(repeats: usize, mut f: impl FnMut() -> R) -> f64 {
    let mut best = f64::INFINITY;
    for _ in 0..repeats {
        let t = Instant::now();
        std::hint::black_box(f());
        best = best.min(t.elapsed().as_secs_f64() * 1e3);
    }
    best
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let dir = Path::new(args.get(1).map(String::as_str).unwrap_or("."));
    let repeats: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(10);
    // Optional third argument: run only this case (for profiling).
    let only = args.get(3).cloned();
    let run = |name: &str| only.as_deref().is_none_or(|o| o == name);
    let mut out = Vec::new();

    if run("edt2d") {
        let m2: ArrayD<u8> = load(dir, "edt2d.npy");
        let m2b = m2.mapv(|x| x != 0);
        out.push((
            "edt2d",
            best(repeats, || edt::<f32, _, _, _>(&m2b, None).unwrap()),
        ));
    }
    if run("edt3d") {
        let m3: ArrayD<u8> = load(dir, "edt3d.npy");
        let m3b = m3.mapv(|x| x != 0);
        out.push((
            "edt3d",
            best(repeats, || edt::<f32, _, _, _>(&m3b, None).unwrap()),
        ));
    }
    if run("labels2d") {
        let l2: ArrayD<u32> = load(dir, "labels2d.npy");
        out.push((
            "labels2d",
            best(repeats, || {
                multilabel_edt::<f32, _, _, _>(&l2, None).unwrap()
            }),
        ));
    }
    let w: ArrayD<u8> = load(dir, "cells.npy");
    let config = WeightMapConfig::default();
    if run("weightmap") {
        out.push((
            "weightmap",
            best(repeats.max(20), || {
                unet_weight_map::<f32, _, _, _>(&w, None, &config).unwrap()
            }),
        ));
    }

    // The 3-D weight map of an instance-label volume, when the inputs include one.
    if run("weight3d") && dir.join("nuclei3d.npy").exists() {
        let l3: ArrayD<u16> = load(dir, "nuclei3d.npy");
        out.push((
            "weight3d",
            best(repeats.min(5), || {
                unet_weight_map_from_instances::<f32, _, _, _>(&l3, None, &config).unwrap()
            }),
        ));
    }

    // Sanity: the result agrees with the Python reference written next to the inputs.
    let want: ArrayD<f64> = load(dir, "cells_weight_reference.npy");
    let got: ArrayD<f64> = unet_weight_map(&w, None, &config).unwrap();
    let worst = got
        .iter()
        .zip(&want)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f64::max);
    let body: Vec<String> = out
        .iter()
        .map(|(k, v)| format!("\"{k}\": {v:.4}"))
        .collect();
    println!(
        "{{{}, \"threads\": {}, \"weightmap_max_abs_err\": {worst:e}}}",
        body.join(", "),
        rayon::current_num_threads()
    );
}
