//! `segloss train` / `segloss compare`: the synthetic generator, the metrics and a tiny end-to-end
//! run.
//!
//! The generator and the metrics live in the binary crate; they depend only on ndarray and
//! segloss-core, so they are compiled into this test directly from their source files.

use std::path::Path;
use std::process::Command;

use ndarray::{s, Array2};
use segloss_core::{connected_components, Connectivity};

#[allow(dead_code)]
#[path = "../src/train/synth.rs"]
mod synth;

#[allow(dead_code)]
#[path = "../src/train/metrics.rs"]
mod metrics;

use metrics::{dice_iou, hd95, object_counts, ObjectCounts};

#[test]
fn synthetic_data_is_deterministic_by_seed() {
    let a = synth::synth_dataset(3, 64, 7, 1, "t");
    let b = synth::synth_dataset(3, 64, 7, 1, "t");
    assert_eq!(a, b, "same seed, same data");
    let c = synth::synth_dataset(3, 64, 8, 1, "t");
    assert_ne!(a[0].image, c[0].image, "another seed, other data");
    let d = synth::synth_dataset(3, 64, 7, 2, "t");
    assert_ne!(a[0].image, d[0].image, "another stream, other data");
    // A longer dataset starts with the same images.
    let e = synth::synth_dataset(5, 64, 7, 1, "t");
    assert_eq!(&e[..3], &a[..]);
}

#[test]
fn synthetic_cells_are_crowded_but_separated_in_the_mask() {
    let data = synth::synth_dataset(12, 64, 42, 1, "t");
    let mut cells = 0;
    let mut touching_pairs = 0;
    for s in &data {
        assert_eq!(s.image.dim(), (64, 64));
        assert!(s.image.iter().all(|v| v.is_finite()));
        assert!(s.mask.iter().all(|&v| v == 0.0 || v == 1.0));
        // Instances live on the mask, and the mask's 8-connected components are the instances.
        for (&m, &l) in s.mask.iter().zip(s.instances.iter()) {
            assert_eq!(m > 0.5, l > 0);
        }
        let (_, k) = connected_components(&s.mask, Connectivity::Full).unwrap();
        assert_eq!(
            k,
            s.num_instances(),
            "{}: touching cells must stay apart",
            s.name
        );
        assert!(k >= 3, "{}: only {k} cells", s.name);
        cells += k;
        // Cells whose masks come within 2 pixels of each other (they touch in the image).
        let inst = &s.instances;
        let mut pairs = std::collections::HashSet::new();
        for y in 0..64 {
            for x in 0..64 {
                let a = inst[[y, x]];
                if a == 0 {
                    continue;
                }
                for (dy, dx) in [
                    (0, 2),
                    (2, 0),
                    (2, 2),
                    (2, -2),
                    (1, 2),
                    (2, 1),
                    (2, -1),
                    (1, -2),
                ] {
                    let (yy, xx) = (y as i64 + dy, x as i64 + dx);
                    if yy < 64 && (0..64).contains(&xx) {
                        let b = inst[[yy as usize, xx as usize]];
                        if b > 0 && b != a {
                            pairs.insert((a.min(b), a.max(b)));
                        }
                    }
                }
            }
        }
        touching_pairs += pairs.len();
    }
    assert!(cells >= 12 * 5, "{cells} cells in 12 images");
    assert!(
        touching_pairs >= 12,
        "only {touching_pairs} touching pairs in 12 images"
    );
}

fn squares(rects: &[(usize, usize, usize, usize)], n: usize) -> Array2<u32> {
    let mut a = Array2::<u32>::zeros((n, n));
    for (k, &(y0, y1, x0, x1)) in rects.iter().enumerate() {
        a.slice_mut(s![y0..y1, x0..x1]).fill(k as u32 + 1);
    }
    a
}

#[test]
fn object_f1_on_hand_made_cases() {
    // Two 4×4 cells 2 pixels apart, and a third one further away.
    let truth = squares(&[(2, 6, 2, 6), (2, 6, 8, 12), (10, 14, 10, 14)], 16);
    let mask = truth.mapv(|l| l > 0);

    // Perfect.
    let c = object_counts(&mask, &truth, 0.5);
    assert_eq!(
        c,
        ObjectCounts {
            tp: 3,
            fp: 0,
            fn_: 0
        }
    );
    assert_eq!(c.f1(), 1.0);

    // The two touching cells merged into one blob (the gap filled): the blob's IoU with either
    // cell is 16/40 < 0.5, so it matches neither.
    let mut merged = mask.clone();
    merged.slice_mut(s![2..6, 6..8]).fill(true);
    let c = object_counts(&merged, &truth, 0.5);
    assert_eq!(
        c,
        ObjectCounts {
            tp: 1,
            fp: 1,
            fn_: 2
        }
    );
    assert!((c.f1() - 2.0 / 5.0).abs() < 1e-12);
    // Pixel-wise the merge looks almost perfect.
    let (dice, _) = dice_iou(&merged, &mask);
    assert!(dice > 0.9);

    // A missing cell.
    let mut missing = mask.clone();
    missing.slice_mut(s![10..14, 10..14]).fill(false);
    let c = object_counts(&missing, &truth, 0.5);
    assert_eq!(
        c,
        ObjectCounts {
            tp: 2,
            fp: 0,
            fn_: 1
        }
    );
    assert!((c.f1() - 0.8).abs() < 1e-12);

    // A cell predicted too small (IoU 4/16) and a spurious speck.
    let mut poor = mask.clone();
    poor.slice_mut(s![10..14, 10..14]).fill(false);
    poor.slice_mut(s![10..12, 10..12]).fill(true);
    poor[[0, 15]] = true;
    let c = object_counts(&poor, &truth, 0.5);
    assert_eq!(
        c,
        ObjectCounts {
            tp: 2,
            fp: 2,
            fn_: 1
        }
    );

    // Nothing on either side is perfect; nothing predicted finds nothing.
    let empty = Array2::<bool>::from_elem((16, 16), false);
    let none = Array2::<u32>::zeros((16, 16));
    assert_eq!(object_counts(&empty, &none, 0.5).f1(), 1.0);
    assert_eq!(object_counts(&empty, &truth, 0.5).f1(), 0.0);
}

#[test]
fn dice_iou_and_hd95_on_hand_made_cases() {
    let a = squares(&[(2, 6, 2, 6)], 12).mapv(|l| l > 0);
    let b = squares(&[(2, 6, 5, 9)], 12).mapv(|l| l > 0);
    let empty = Array2::<bool>::from_elem((12, 12), false);
    assert_eq!(dice_iou(&a, &a), (1.0, 1.0));
    assert_eq!(dice_iou(&empty, &empty), (1.0, 1.0));
    let (d, i) = dice_iou(&a, &b);
    assert!((d - 2.0 * 4.0 / 32.0).abs() < 1e-12 && (i - 4.0 / 28.0).abs() < 1e-12);
    assert_eq!(hd95(&a, &a), Some(0.0));
    assert_eq!(hd95(&empty, &empty), Some(0.0));
    assert_eq!(hd95(&a, &empty), None);
    // Single pixels 3 apart.
    let mut p = empty.clone();
    let mut q = empty.clone();
    p[[5, 2]] = true;
    q[[5, 5]] = true;
    assert_eq!(hd95(&p, &q), Some(3.0));
}

fn segloss() -> Command {
    Command::new(env!("CARGO_BIN_EXE_segloss"))
}

fn non_empty(p: &Path) {
    let m = std::fs::metadata(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    assert!(m.len() > 0, "{} is empty", p.display());
}

#[test]
fn tiny_compare_writes_the_report_folder() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("cmp");
    let args = [
        "compare",
        "--quick",
        "--losses",
        "bce; dice",
        "--steps",
        "2",
        "--val-every",
        "1",
        "--repeats",
        "2",
        "--train-images",
        "2",
        "--val-images",
        "2",
        "--size",
        "32",
        "--batch",
        "2",
        "--depth",
        "2",
        "--out",
    ];
    let o = segloss().args(args).arg(&out).output().unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "compare failed: {stderr}");
    for f in [
        "report.md",
        "metrics.csv",
        "curves.png",
        "samples.png",
        "checkpoints/bce.bpk",
        "checkpoints/dice.bpk",
    ] {
        non_empty(&out.join(f));
    }
    // 2 losses × 2 seeds × 2 validations.
    let csv = std::fs::read_to_string(out.join("metrics.csv")).unwrap();
    assert_eq!(csv.lines().count(), 1 + 8, "{csv}");
    assert!(csv.starts_with("loss,spec,repeat,seed,step,final,train_loss,val_dice"));
    let finals: Vec<&str> = csv
        .lines()
        .skip(1)
        .filter(|l| l.split(',').nth(5) == Some("1"))
        .collect();
    assert_eq!(finals.len(), 4, "{csv}");
    assert!(
        finals.iter().all(|l| l.split(',').nth(4) == Some("2")),
        "{csv}"
    );
    let seeds: std::collections::BTreeSet<&str> = csv
        .lines()
        .skip(1)
        .filter_map(|l| l.split(',').nth(3))
        .collect();
    assert_eq!(seeds.into_iter().collect::<Vec<_>>(), ["42", "43"]);
    let report = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(
        report.contains("| `bce` |") && report.contains("| `dice` |"),
        "{report}"
    );
    assert!(
        report.contains("mean ± standard deviation over 2 seeds"),
        "{report}"
    );
    assert!(report.contains(" ± "), "{report}");
    assert!(report.contains("## Conclusions"), "{report}");
    assert!(report.contains("after the last step (step 2)"), "{report}");
    assert!(!report.contains("In progress"), "{report}");
    for png in ["curves.png", "samples.png"] {
        let bytes = std::fs::read(out.join(png)).unwrap();
        assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "{png}");
    }

    // The folder holds results now: a second run needs --force, and says so (exit 2).
    let o = segloss().args(args).arg(&out).output().unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--force"));

    // --min-dice fails the run (exit 1) naming the losses below it; the report is still written.
    let out2 = dir.path().join("cmp2");
    let one_seed: Vec<&str> = args[..args.len() - 1]
        .iter()
        .map(|a| if *a == "2" { "1" } else { a })
        .collect();
    let o = segloss()
        .args(&one_seed)
        .args(["--min-dice", "1", "--out"])
        .arg(&out2)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("--min-dice 1") && stderr.contains("bce"),
        "{stderr}"
    );
    non_empty(&out2.join("report.md"));
}

#[test]
fn bad_compare_and_train_input_is_exit_code_2() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("x");
    let cases: Vec<Vec<&str>> = vec![
        vec!["compare", "--losses", "bce; dcie"],
        vec!["compare", "--losses", " ; "],
        vec!["train", "--loss", "0.5*"],
        vec!["train", "--loss", "bce", "--size", "30"],
        vec!["train", "--loss", "bce", "--steps", "0"],
        vec!["train", "--loss", "bce", "--val-every", "0"],
        vec!["train", "--loss", "bce", "--repeats", "0"],
        vec!["train", "--loss", "bce", "--val-fraction", "1.5"],
        vec!["train", "--loss", "bce", "--percentiles", "99,1"],
        vec!["train", "--loss", "bce", "--min-dice", "2"],
        vec!["train", "--loss", "bce", "--data", "/nonexistent/folder"],
        vec!["train", "--loss", "bce", "--device", "tpu"],
    ];
    for c in cases {
        let o = segloss().args(&c).arg("--out").arg(&out).output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{c:?}: {err}");
        assert_eq!(
            err.trim().lines().count(),
            1,
            "{c:?}: one line expected: {err}"
        );
    }
}

fn write_npy(path: &Path, a: &Array2<f32>) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    segloss_io::write_npy_f32(
        path,
        &a.clone().into_dyn(),
        segloss_io::WriteOptions { force: true },
    )
    .unwrap();
}

/// A folder of `n` synthetic image/mask pairs of side `side` (the first mask binary, the others
/// instance labels), the images in 16-bit-like units.
fn folder_of(root: &Path, n: usize, side: usize) {
    for (i, s) in synth::synth_dataset(n, side, 5, 1, "f").iter().enumerate() {
        let name = format!("cells{i}.npy");
        write_npy(
            &root.join("images").join(&name),
            &s.image.mapv(|v| 300.0 + 2000.0 * v),
        );
        let mask = if i == 0 {
            s.mask.clone()
        } else {
            s.instances.mapv(|l| l as f32)
        };
        write_npy(&root.join("masks").join(&name), &mask);
    }
}

fn train_on(data: &Path, out: &Path, extra: &[&str]) -> std::process::Output {
    segloss()
        .args([
            "train",
            "--loss",
            "0.5*dice + 0.5*bce",
            "--steps",
            "2",
            "--size",
            "32",
            "--depth",
            "2",
            "--batch",
            "2",
        ])
        .args(extra)
        .arg("--data")
        .arg(data)
        .arg("--out")
        .arg(out)
        .output()
        .unwrap()
}

#[test]
fn train_on_a_folder_dataset() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    folder_of(&data, 3, 64);
    let out = dir.path().join("run");
    let o = train_on(&data, &out, &[]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "train failed: {stderr}");
    assert!(
        stderr.contains("2 training images (8192 px")
            && stderr.contains("1 validation images (4096 px"),
        "{stderr}"
    );
    assert!(stderr.contains("percentiles 1 and 99.8"), "{stderr}");
    for f in [
        "report.md",
        "metrics.csv",
        "curves.png",
        "samples.png",
        "model.bpk",
    ] {
        non_empty(&out.join(f));
    }
    let report = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(report.starts_with("# segloss train"), "{report}");
    assert!(report.contains("| `0.5*dice + 0.5*bce` |"), "{report}");
    assert!(report.contains("one seed"), "{report}");

    // A mask missing for an image is bad input.
    std::fs::rename(
        data.join("masks").join("cells2.npy"),
        dir.path().join("cells2.npy"),
    )
    .unwrap();
    let o = train_on(&data, &dir.path().join("run2"), &[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("no mask named 'cells2'"));
}

#[test]
fn a_val_folder_validates_whole_images_of_any_size() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // Two training images of 48×48 and one validation image of 38×45 (not a multiple of 2^depth).
    folder_of(&data, 2, 48);
    let v = synth::synth_dataset(1, 64, 9, 2, "v").remove(0);
    let crop = |a: &Array2<f32>| a.slice(s![3..41, 10..55]).to_owned();
    write_npy(&data.join("val/images/v.npy"), &crop(&v.image));
    write_npy(
        &data.join("val/masks/v.npy"),
        &crop(&v.instances.mapv(|l| l as f32)),
    );
    let out = dir.path().join("run");
    let o = train_on(&data, &out, &["--val-every", "1"]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "train failed: {stderr}");
    assert!(
        stderr.contains("2 training images") && stderr.contains("1 validation images (1710 px"),
        "{stderr}"
    );
    assert!(stderr.contains("from val/"), "{stderr}");
    let csv = std::fs::read_to_string(out.join("metrics.csv")).unwrap();
    assert_eq!(csv.lines().count(), 3, "{csv}");
}

#[test]
fn bad_folders_are_exit_code_2_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let check = |data: &Path, needle: &str| {
        let o = train_on(data, &dir.path().join("out"), &[]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{}: {err}", data.display());
        assert_eq!(err.trim().lines().count(), 1, "one line expected: {err}");
        assert!(err.contains(needle), "expected {needle:?} in: {err}");
    };

    // No pairs at all.
    let empty = dir.path().join("empty");
    std::fs::create_dir_all(empty.join("images")).unwrap();
    std::fs::create_dir_all(empty.join("masks")).unwrap();
    check(&empty, "no image/mask pairs");

    // One pair only.
    let one = dir.path().join("one");
    folder_of(&one, 1, 48);
    check(&one, "cells0.npy: the only image/mask pair");

    // A mask whose shape differs from its image's.
    let shape = dir.path().join("shape");
    folder_of(&shape, 3, 48);
    write_npy(
        &shape.join("masks/cells1.npy"),
        &Array2::<f32>::zeros((48, 40)),
    );
    check(&shape, "cells1.npy: mask shape [48, 40]");

    // An RGB mask.
    let rgb = dir.path().join("rgb");
    folder_of(&rgb, 3, 48);
    segloss_io::write_npy_f32(
        rgb.join("masks/cells2.npy"),
        &ndarray::Array3::<f32>::zeros((48, 48, 3)).into_dyn(),
        segloss_io::WriteOptions { force: true },
    )
    .unwrap();
    check(&rgb, "cells2.npy: shape [48, 48, 3] (an RGB(A) image)");

    // An image smaller than the crops.
    let small = dir.path().join("small");
    folder_of(&small, 3, 24);
    check(&small, "expected at least 32×32 (--size)");
}
