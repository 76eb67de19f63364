//! The folder mode of `segloss distmap` / `segloss weightmap`: a folder of mixed formats with one bad
//! file among good ones (exit 2, the bad one named in one line, the good ones written and equal to
//! the single-file runs, nothing partial), `--format`, `--recursive`, `--dtype f64` and the refusal of
//! existing outputs.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use ndarray::{Array2, ArrayD};
use segloss_io::{ArrayData, Volume, WriteOptions};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_segloss"))
}

fn run(args: &[&Path]) -> Output {
    bin().args(args).output().unwrap()
}

fn p(s: &str) -> PathBuf {
    PathBuf::from(s)
}

/// A mask with a few separate squares (several instances, so the weight map has border terms).
fn mask(seed: usize) -> Array2<u8> {
    let mut m = Array2::<u8>::zeros((24, 30));
    for k in 0..4 {
        let (y, x) = ((seed * 7 + k * 5) % 18, (seed * 3 + k * 7) % 24);
        for yy in y..y + 4 {
            for xx in x..x + 4 {
                m[[yy, xx]] = 1;
            }
        }
    }
    m
}

fn write_png(path: &Path, img: &Array2<u8>) {
    let (h, w) = img.dim();
    let f = std::fs::File::create(path).unwrap();
    let mut enc = png::Encoder::new(std::io::BufWriter::new(f), w as u32, h as u32);
    enc.set_color(png::ColorType::Grayscale);
    enc.set_depth(png::BitDepth::Eight);
    let mut wr = enc.write_header().unwrap();
    wr.write_image_data(&img.iter().copied().collect::<Vec<u8>>())
        .unwrap();
}

/// A folder holding the same kind of mask as .npy, .png, .tif and .nii.gz, one bad .npy (a NaN),
/// a text file and a subfolder with one more mask.
fn folder(root: &Path) -> PathBuf {
    let d = root.join("in");
    std::fs::create_dir_all(d.join("sub")).unwrap();
    let opts = WriteOptions { force: true };
    segloss_io::write_npy(d.join("a.npy"), &ArrayData::U8(mask(1).into_dyn()), opts).unwrap();
    write_png(&d.join("b.png"), &mask(2));
    let f3 = mask(3).mapv(f32::from).into_dyn();
    segloss_io::write(d.join("c.tif"), &f3, None, opts).unwrap();
    let f4 = mask(4).mapv(f32::from).into_dyn();
    let like = Volume::new(ArrayData::F32(f4.clone()), Some(vec![1.0, 2.0]), "x");
    segloss_io::write(d.join("d.nii.gz"), &f4, Some(&like), opts).unwrap();
    let mut bad = mask(5).mapv(f64::from);
    bad[[3, 4]] = f64::NAN;
    segloss_io::write_npy(d.join("bad.npy"), &ArrayData::F64(bad.into_dyn()), opts).unwrap();
    std::fs::write(d.join("notes.txt"), "not an image").unwrap();
    segloss_io::write_npy(
        d.join("sub").join("e.npy"),
        &ArrayData::U8(mask(6).into_dyn()),
        opts,
    )
    .unwrap();
    d
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fn read(path: &Path) -> ArrayD<f64> {
    segloss_io::read(path).unwrap().data.to_f64()
}

#[test]
fn a_bad_file_among_good_ones_is_named_and_the_others_are_written() {
    let root = tempfile::tempdir().unwrap();
    let input = folder(root.path());
    let out = root.path().join("out");
    let o = run(&[&p("weightmap"), &input, &p("-o"), &out]);
    assert_eq!(o.status.code(), Some(2), "{o:?}");
    let stderr = String::from_utf8_lossy(&o.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    let bad: Vec<&&str> = lines.iter().filter(|l| l.contains("bad.npy")).collect();
    assert_eq!(bad.len(), 1, "{stderr}");
    assert!(bad[0].contains("NaN"), "{stderr}");
    assert!(
        lines.last().unwrap().contains("1 of 5 files failed"),
        "{stderr}"
    );
    // Names and formats kept (a PNG's map is a TIFF); nothing for the bad file, no temporary files,
    // the subfolder not entered without --recursive.
    assert_eq!(
        names(&out),
        ["a.npy", "b.tif", "c.tif", "d.nii.gz"].map(String::from)
    );
    // Each map is the one a single-file run writes (the NIfTI spacing from its header included).
    let single = root.path().join("single");
    std::fs::create_dir(&single).unwrap();
    for (i, o_name) in [
        ("a.npy", "a.npy"),
        ("b.png", "b.tif"),
        ("c.tif", "c.tif"),
        ("d.nii.gz", "d.nii.gz"),
    ] {
        let s = single.join(o_name);
        let r = run(&[&p("weightmap"), &input.join(i), &p("-o"), &s]);
        assert!(r.status.success(), "{r:?}");
        assert_eq!(read(&out.join(o_name)), read(&s), "{i}");
        assert_eq!(
            segloss_io::read(out.join(o_name))
                .unwrap()
                .data
                .dtype_name(),
            "float32"
        );
    }
    // The NIfTI input's anisotropic spacing was used: its map differs from the isotropic one.
    let iso = single.join("d_iso.npy");
    let r = run(&[
        &p("weightmap"),
        &input.join("d.nii.gz"),
        &p("-o"),
        &iso,
        &p("--spacing"),
        &p("1,1"),
    ]);
    assert!(r.status.success());
    assert_ne!(read(&out.join("d.nii.gz")), read(&iso));

    // A second run refuses the existing outputs before any work, and changes nothing.
    let before = std::fs::read(out.join("a.npy")).unwrap();
    let o = run(&[&p("weightmap"), &input, &p("-o"), &out]);
    assert_eq!(o.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("already exists") && stderr.contains("--force"),
        "{stderr}"
    );
    assert_eq!(std::fs::read(out.join("a.npy")).unwrap(), before);
    // With --force the good ones are rewritten, the bad one still fails.
    let o = run(&[&p("weightmap"), &input, &p("-o"), &out, &p("--force")]);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn format_recursive_and_dtype() {
    let root = tempfile::tempdir().unwrap();
    let input = folder(root.path());
    std::fs::remove_file(input.join("bad.npy")).unwrap();
    let out = root.path().join("maps");
    let o = run(&[
        &p("distmap"),
        &input,
        &p("-o"),
        &out,
        &p("--recursive"),
        &p("--format"),
        &p("npy"),
        &p("--dtype"),
        &p("f64"),
    ]);
    assert!(o.status.success(), "{o:?}");
    assert_eq!(
        names(&out),
        ["a.npy", "b.npy", "c.npy", "d.npy", "sub"].map(String::from)
    );
    assert_eq!(names(&out.join("sub")), ["e.npy"]);
    let v = segloss_io::read(out.join("sub").join("e.npy")).unwrap();
    assert_eq!(v.data.dtype_name(), "float64");
    let single = root.path().join("e.npy");
    let r = run(&[
        &p("distmap"),
        &input.join("sub").join("e.npy"),
        &p("-o"),
        &single,
        &p("--dtype"),
        &p("f64"),
    ]);
    assert!(r.status.success());
    assert_eq!(read(&single), v.data.to_f64());

    // Two inputs that would write one output: both fail, the others are written.
    let two = root.path().join("two");
    std::fs::create_dir(&two).unwrap();
    std::fs::copy(input.join("a.npy"), two.join("x.npy")).unwrap();
    std::fs::copy(input.join("c.tif"), two.join("x.tif")).unwrap();
    std::fs::copy(input.join("c.tif"), two.join("y.tif")).unwrap();
    let out2 = root.path().join("out2");
    let o = run(&[
        &p("distmap"),
        &two,
        &p("-o"),
        &out2,
        &p("--format"),
        &p("npy"),
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(names(&out2), ["y.npy"]);

    // An empty folder is an error, as is a folder given a file as output.
    let empty = root.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let o = run(&[&p("distmap"), &empty, &p("-o"), &root.path().join("o3")]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("no image files"));
    let o = run(&[&p("distmap"), &input, &p("-o"), &single]);
    assert_eq!(o.status.code(), Some(2));
}
