//! `segloss loss` end to end: every oracle case of `tests/fixtures/losses/distribution.json`
//! through the binary (values and `--grad`), float64 and float32 `.npy` inputs, and the bad-input
//! contract (exit code 2, one line on stderr, no output file left behind).

use std::path::{Path, PathBuf};
use std::process::Command;

use ndarray::ArrayD;
use segloss_io::{ArrayData, WriteOptions};
use serde_json::Value;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_segloss"))
}

fn fixture(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures")
        .join(rel)
}

fn arr(v: &Value) -> (Vec<usize>, Vec<f64>) {
    let shape = v["shape"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_u64().unwrap() as usize)
        .collect();
    let data = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_f64().unwrap())
        .collect();
    (shape, data)
}

fn write(path: &Path, data: ArrayData) {
    segloss_io::write_npy(path, &data, WriteOptions { force: true }).unwrap();
}

fn f64_arr(shape: Vec<usize>, data: Vec<f64>) -> ArrayD<f64> {
    ArrayD::from_shape_vec(shape, data).unwrap()
}

/// Writes a case's inputs; `as_f32` stores the predictions as float32.
fn write_case(dir: &Path, c: &Value, as_f32: bool) -> (PathBuf, PathBuf, Option<PathBuf>) {
    let (ps, pd) = arr(&c["pred"]);
    let pred = dir.join("pred.npy");
    let p = f64_arr(ps, pd);
    write(
        &pred,
        if as_f32 {
            ArrayData::F32(p.mapv(|v| v as f32))
        } else {
            ArrayData::F64(p)
        },
    );
    let (ts, td) = arr(&c["target"]);
    let target = dir.join("target.npy");
    if c["target"]["kind"] == "labels" {
        let l = ArrayD::from_shape_vec(ts, td.iter().map(|&v| v as i64).collect()).unwrap();
        write(&target, ArrayData::I64(l));
    } else {
        write(&target, ArrayData::F64(f64_arr(ts, td)));
    }
    let weights = if c["weights"].is_null() {
        None
    } else {
        let (ws, wd) = arr(&c["weights"]);
        let w = dir.join("weights.npy");
        write(&w, ArrayData::F64(f64_arr(ws, wd)));
        Some(w)
    };
    (pred, target, weights)
}

fn flatten_json(v: &Value, out: &mut Vec<f64>) {
    match v {
        Value::Array(a) => a.iter().for_each(|x| flatten_json(x, out)),
        Value::Number(n) => out.push(n.as_f64().unwrap()),
        _ => panic!("unexpected JSON {v}"),
    }
}

fn close(name: &str, what: &str, got: &[f64], want: &[f64], rtol: f64, atol: f64) {
    assert_eq!(got.len(), want.len(), "{name}: {what} length");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= rtol * w.abs() + atol,
            "{name}: {what}[{i}]: got {g}, oracle {w}"
        );
    }
}

fn max_abs(v: &[f64]) -> f64 {
    v.iter().fold(0.0f64, |m, x| m.max(x.abs()))
}

#[test]
fn loss_command_reproduces_the_distribution_oracles() {
    check_file("losses/distribution.json", 100);
}

#[test]
fn loss_command_reproduces_the_region_oracles() {
    check_file("losses/region.json", 130);
}

#[test]
fn loss_command_reproduces_the_boundary_oracles() {
    check_file("losses/boundary.json", 30);
}

/// The `--device` of the oracle checks: `SEGLOSS_TEST_DEVICE` (`flex` by default), as the loss
/// crate's fixture tests.
fn test_device() -> String {
    match std::env::var("SEGLOSS_TEST_DEVICE") {
        Ok(d) if !d.is_empty() => d,
        _ => "flex".to_string(),
    }
}

fn check_file(rel: &str, min_runs: usize) {
    let text = std::fs::read_to_string(fixture(rel)).unwrap();
    let root: Value = serde_json::from_str(&text).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let device = test_device();
    // wgpu runs float32 only: a float64 prediction there is refused (exit 2, one line).
    let has_f64 = device != "wgpu";
    let mut checked = 0;
    for (k, c) in root["cases"].as_array().unwrap().iter().enumerate() {
        let name = c["name"].as_str().unwrap();
        // float64 for every case; float32 for every third (docs/testing.md tolerance 2e-4), or
        // for every case on a device without float64.
        for as_f32 in [false, true] {
            if as_f32 && k % 3 != 0 && has_f64 {
                continue;
            }
            let (pred, target, weights) = write_case(dir.path(), c, as_f32);
            let grad = dir.path().join("grad.npy");
            let _ = std::fs::remove_file(&grad);
            let mut cmd = bin();
            cmd.arg("loss")
                .args(["--device", &device])
                .arg(c["spec"].as_str().unwrap())
                .arg("--pred")
                .arg(&pred)
                .arg("--target")
                .arg(&target)
                .arg("--grad")
                .arg(&grad)
                .arg("--force");
            if let Some(w) = &weights {
                cmd.arg("--weights").arg(w);
            }
            let out = cmd.output().unwrap();
            if !as_f32 && !has_f64 {
                let err = String::from_utf8_lossy(&out.stderr);
                assert_eq!(out.status.code(), Some(2), "{name}: {err}");
                assert_eq!(err.trim().lines().count(), 1, "{name}: {err}");
                assert!(err.contains("float64"), "{name}: {err}");
                assert!(!grad.exists(), "{name}: no gradient file after a refusal");
                continue;
            }
            assert!(
                out.status.success(),
                "{name}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let v: Value = serde_json::from_slice(&out.stdout).unwrap();
            let mut got = Vec::new();
            flatten_json(&v["loss"], &mut got);
            let want = if c["value"].is_number() {
                vec![c["value"].as_f64().unwrap()]
            } else {
                arr(&c["value"]).1
            };
            // shape_aware's U-Net map drops border terms below 5e-5 (segloss-core's cut-off) and
            // its weights are at least 0.5, so its f64 bound is 1e-4 (docs/testing.md).
            let (rtol, gtol) = if as_f32 || name.starts_with("shape_aware") {
                (2e-4, 1e-4)
            } else {
                (1e-5, 1e-5)
            };
            close(
                name,
                "value",
                &got,
                &want,
                rtol,
                1e-9 + rtol * 1e-3 * max_abs(&want),
            );
            let g = segloss_io::read(&grad).unwrap();
            assert_eq!(
                g.data.is_float() && matches!(g.data, ArrayData::F64(_)),
                !as_f32,
                "{name}: gradient dtype follows the prediction's"
            );
            let gv: Vec<f64> = g.data.to_f64().iter().copied().collect();
            let (_, want_g) = arr(&c["grad"]);
            close(name, "grad", &gv, &want_g, gtol, gtol * max_abs(&want_g));
            checked += 1;
        }
    }
    assert!(checked >= min_runs, "only {checked} runs");
}

/// Runs the binary and returns (exit code, stdout, stderr).
fn run(args: &[&str]) -> (i32, String, String) {
    let out = bin().args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn assert_bad(args: &[&str], needle: &str) {
    let (code, _, err) = run(args);
    assert_eq!(code, 2, "{args:?}: expected exit 2, stderr: {err}");
    assert_eq!(
        err.trim_end().lines().count(),
        1,
        "{args:?}: one line, got: {err}"
    );
    assert!(
        err.contains(needle),
        "{args:?}: stderr should mention {needle:?}: {err}"
    );
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn bad_inputs_exit_2_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let p = |n: &str| d.join(n).to_string_lossy().into_owned();
    let pred = ArrayD::from_shape_vec(vec![1, 3, 2, 2], (0..12).map(|v| v as f64 * 0.1).collect())
        .unwrap();
    write(&d.join("pred.npy"), ArrayData::F64(pred.clone()));
    let mut nan = pred.clone();
    nan[[0, 1, 0, 0]] = f64::NAN;
    write(&d.join("nan.npy"), ArrayData::F64(nan));
    let labels = ArrayD::from_shape_vec(vec![1, 2, 2], vec![0i64, 1, 2, 1]).unwrap();
    write(&d.join("labels.npy"), ArrayData::I64(labels));
    let big = ArrayD::from_shape_vec(vec![1, 2, 2], vec![0i64, 1, 7, 1]).unwrap();
    write(&d.join("big.npy"), ArrayData::I64(big));
    let wrong = ArrayD::from_shape_vec(vec![1, 3, 2], vec![0i64; 6]).unwrap();
    write(&d.join("wrong.npy"), ArrayData::I64(wrong));
    let frac = ArrayD::from_shape_vec(vec![1, 2, 2], vec![0.0, 0.5, 1.0, 1.0]).unwrap();
    write(&d.join("frac.npy"), ArrayData::F64(frac));
    let mask_bad = pred.mapv(|v| v * 10.0);
    write(&d.join("mask_bad.npy"), ArrayData::F64(mask_bad));
    let empty = ArrayD::<f64>::zeros(vec![1, 3, 0, 2]);
    write(&d.join("empty.npy"), ArrayData::F64(empty));
    let w_inf =
        ArrayD::from_shape_vec(vec![1, 1, 2, 2], vec![1.0, f64::INFINITY, 1.0, 1.0]).unwrap();
    write(&d.join("w_inf.npy"), ArrayData::F64(w_inf));
    std::fs::write(d.join("trunc.npy"), b"\x93NUMPY\x01\x00").unwrap();
    std::fs::write(d.join("junk.npy"), b"not an npy file at all").unwrap();

    let (pr, lb) = (p("pred.npy"), p("labels.npy"));
    assert_bad(
        &["loss", "dcie", "--pred", &pr, "--target", &lb],
        "unknown loss 'dcie'",
    );
    assert_bad(
        &["loss", "ce(wieght=[1,2,3])", "--pred", &pr, "--target", &lb],
        "unknown argument 'wieght'",
    );
    assert_bad(
        &[
            "loss",
            "ce(label_smoothing=2)",
            "--pred",
            &pr,
            "--target",
            &lb,
        ],
        "label_smoothing",
    );
    assert_bad(
        &["loss", "0.5*ce +", "--pred", &pr, "--target", &lb],
        "expected a loss name",
    );
    assert_bad(
        &["loss", "ce", "--pred", &p("nan.npy"), "--target", &lb],
        "nan.npy",
    );
    assert_bad(
        &["loss", "ce", "--pred", &pr, "--target", &p("big.npy")],
        "label 7 out of range",
    );
    assert_bad(
        &["loss", "ce", "--pred", &pr, "--target", &p("wrong.npy")],
        "[1, 3, 2]",
    );
    assert_bad(
        &["loss", "ce", "--pred", &pr, "--target", &p("frac.npy")],
        "frac.npy",
    );
    assert_bad(
        &["loss", "bce", "--pred", &pr, "--target", &p("mask_bad.npy")],
        "out of range",
    );
    assert_bad(
        &[
            "loss",
            "bce",
            "--pred",
            &p("empty.npy"),
            "--target",
            &p("empty.npy"),
        ],
        "empty.npy",
    );
    assert_bad(
        &["loss", "ce", "--pred", &p("trunc.npy"), "--target", &lb],
        "trunc.npy",
    );
    assert_bad(
        &["loss", "ce", "--pred", &p("junk.npy"), "--target", &lb],
        "junk.npy",
    );
    assert_bad(
        &["loss", "ce", "--pred", &p("missing.npy"), "--target", &lb],
        "missing.npy",
    );
    assert_bad(
        &[
            "loss",
            "weighted_ce",
            "--pred",
            &pr,
            "--target",
            &lb,
            "--weights",
            &p("w_inf.npy"),
        ],
        "w_inf.npy",
    );
    assert_bad(
        &["loss", "weighted_ce", "--pred", &pr, "--target", &lb],
        "--weights",
    );
    assert_bad(
        &[
            "loss",
            "ce",
            "--pred",
            &pr,
            "--target",
            &lb,
            "--weights",
            &pr,
        ],
        "takes no weight map",
    );

    // A loss that overflows f32 from valid inputs (an exponent within the spec's bounds) is an
    // error naming the loss, not a NaN printed as the value: f32 logits confidently wrong at every
    // pixel (labels 0, 1, 2, 1), so −ln(Dice) ≈ 11 and 11^83 overflows.
    let wrong_f32 = ArrayD::from_shape_vec(
        vec![1, 3, 2, 2],
        vec![
            -30.0f32, 30.0, -30.0, 30.0, // class 0 high where the label is 1 or 2
            30.0, -30.0, 30.0, -30.0, // class 1 high where the label is 0 or 2
            -30.0, -30.0, -30.0, -30.0,
        ],
    )
    .unwrap();
    write(&d.join("wrong_f32.npy"), ArrayData::F32(wrong_f32));
    assert_bad(
        &[
            "loss",
            "exp_log(w_dice=0.8,w_ce=0.2,gamma=83)",
            "--pred",
            &p("wrong_f32.npy"),
            "--target",
            &lb,
        ],
        "not finite",
    );

    // An existing --grad file is not overwritten without --force, and is left untouched.
    std::fs::write(d.join("g.npy"), b"keep").unwrap();
    assert_bad(
        &[
            "loss",
            "ce",
            "--pred",
            &pr,
            "--target",
            &lb,
            "--grad",
            &p("g.npy"),
        ],
        "g.npy",
    );
    assert_eq!(std::fs::read(d.join("g.npy")).unwrap(), b"keep");
    // A failed run leaves no gradient file behind.
    assert_bad(
        &[
            "loss",
            "ce",
            "--pred",
            &p("nan.npy"),
            "--target",
            &lb,
            "--grad",
            &p("g2.npy"),
        ],
        "nan.npy",
    );
    assert!(!d.join("g2.npy").exists());

    // Success path, text format.
    let (code, out, err) = run(&[
        "loss", "ce", "--pred", &pr, "--target", &lb, "--format", "text",
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(out.trim().parse::<f64>().unwrap().is_finite());
}

/// `--device` on `loss` and `bench`: flex (alias cpu) runs; a backend this binary was built
/// without is exit code 2 with one line naming the cargo feature to enable.
#[test]
fn device_flag_runs_flex_and_names_the_missing_feature() {
    let dir = tempfile::tempdir().unwrap();
    let pred = dir.path().join("pred.npy");
    let target = dir.path().join("target.npy");
    write(
        &pred,
        ArrayData::F32(
            ArrayD::from_shape_vec(vec![1, 1, 2, 2], vec![0.5, -1.0, 2.0, 0.0]).unwrap(),
        ),
    );
    write(
        &target,
        ArrayData::F32(ArrayD::from_shape_vec(vec![1, 1, 2, 2], vec![1.0, 0.0, 1.0, 0.0]).unwrap()),
    );
    let loss = |device: &str| {
        bin()
            .args(["loss", "bce", "--pred"])
            .arg(&pred)
            .arg("--target")
            .arg(&target)
            .args(["--device", device])
            .output()
            .unwrap()
    };
    let out = loss("flex");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bench = |device: &str| {
        bin()
            .args([
                "bench", "bce", "--shape", "1,1,8,8", "--iters", "1", "--device", device,
            ])
            .output()
            .unwrap()
    };
    assert!(bench("cpu").status.success(), "cpu is an alias of flex");
    for (feature, built) in [
        ("wgpu", cfg!(feature = "wgpu")),
        ("cuda", cfg!(feature = "cuda")),
    ] {
        if built {
            continue;
        }
        for out in [loss(feature), bench(feature)] {
            assert_eq!(out.status.code(), Some(2));
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(err.trim().lines().count(), 1, "{err}");
            assert!(err.contains(&format!("--features {feature}")), "{err}");
        }
    }
    let out = loss("tpu");
    assert_eq!(
        out.status.code(),
        Some(2),
        "an unknown backend is a usage error"
    );
}
