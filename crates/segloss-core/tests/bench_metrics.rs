//! Timing runner for `tools/bench/metrics.py --core` (ignored by default): `label_metrics` for class 1
//! on two `.npy` label maps, best of K calls in this process, as `segloss eval --timing` computes them
//! (without starting a process or reading files).
//!
//! ```sh
//! SEGLOSS_BENCH_PRED=p.npy SEGLOSS_BENCH_TARGET=t.npy SEGLOSS_BENCH_REPEATS=7 \
//!   SEGLOSS_BENCH_OUT=out.json RAYON_NUM_THREADS=2 \
//!   cargo test --release -p segloss-core --test bench_metrics -- --ignored
//! ```
//!
//! Writes `{"ms": best, "first_ms": first call, "values": {"hd": …, "hd95": …, "assd": …, "nsd": …}}`.

use std::time::Instant;

use ndarray::ArrayD;
use ndarray_npy::read_npy;
use segloss_core::label_metrics;

#[test]
#[ignore = "a timing runner for tools/bench/metrics.py, not a test"]
fn bench_label_metrics() {
    let var = |k: &str| std::env::var(k).unwrap_or_else(|_| panic!("{k} is not set"));
    let pred: ArrayD<u8> = read_npy(var("SEGLOSS_BENCH_PRED")).unwrap();
    let target: ArrayD<u8> = read_npy(var("SEGLOSS_BENCH_TARGET")).unwrap();
    let repeats: usize = std::env::var("SEGLOSS_BENCH_REPEATS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(7);
    let tol: f64 = std::env::var("SEGLOSS_BENCH_TOL")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1.0);
    let mut best = f64::INFINITY;
    let mut first = 0.0;
    let mut m = None;
    for i in 0..repeats + 1 {
        let t = Instant::now();
        let r = label_metrics(&pred, &target, Some(&[1u8]), None, tol).unwrap();
        let ms = t.elapsed().as_secs_f64() * 1e3;
        if i == 0 {
            first = ms;
        } else {
            best = best.min(ms);
        }
        m = Some(r[0].1);
    }
    let m = m.unwrap();
    let json = format!(
        "{{\"ms\": {best:.4}, \"first_ms\": {first:.4}, \"threads\": {}, \"values\": {{\"hd\": {}, \"hd95\": {}, \"assd\": {}, \"nsd\": {}}}}}",
        rayon::current_num_threads(),
        m.hd.unwrap_or(f64::NAN),
        m.hd95.unwrap_or(f64::NAN),
        m.assd.unwrap_or(f64::NAN),
        m.nsd
    );
    match std::env::var("SEGLOSS_BENCH_OUT") {
        Ok(p) => std::fs::write(p, json).unwrap(),
        Err(_) => println!("{json}"),
    }
}
