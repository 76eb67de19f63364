//! Folders of images: what `distmap`, `weightmap` and `eval` share to find the image files of a
//! folder, and the folder mode of `distmap` / `weightmap` (every image of a folder mapped in
//! parallel into an output folder, each failure reported in one line without stopping the
//! others).

use std::collections::HashMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use clap::ValueEnum;
use rayon::prelude::*;

use crate::commands::image::Timing;
use crate::error::CliError;

/// The image extensions, longest first, lower case.
pub const EXTENSIONS: [&str; 6] = [".nii.gz", ".tiff", ".npy", ".png", ".tif", ".nii"];

/// A file name without its image extension, or `None` if it has none.
pub fn stem_of(name: &str) -> Option<&str> {
    let lower = name.to_ascii_lowercase();
    EXTENSIONS
        .iter()
        .find(|e| lower.ends_with(*e) && lower.len() > e.len())
        .map(|e| &name[..name.len() - e.len()])
}

/// A progress bar on stderr counting `len` items (`unit`), drawn only when stderr is a terminal.
pub fn progress_bar(len: usize, prefix: &'static str, unit: &str) -> indicatif::ProgressBar {
    if !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let b = indicatif::ProgressBar::new(len as u64);
    if let Ok(style) = indicatif::ProgressStyle::with_template(&format!(
        "{{prefix}} [{{bar:30}}] {{pos}}/{{len}} {unit} ({{elapsed}}, eta {{eta}})"
    )) {
        b.set_style(style.progress_chars("=> "));
    }
    b.set_prefix(prefix);
    b
}

/// The format of the maps written by the folder mode (`--format`).
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum OutFormat {
    /// `.npy`.
    Npy,
    /// `.tif` (one float page, or one per slice of a 3-D image).
    Tif,
    /// `.nii` (NIfTI-1).
    Nii,
    /// `.nii.gz` (gzip-compressed NIfTI-1).
    NiiGz,
}

impl OutFormat {
    fn extension(self) -> &'static str {
        match self {
            OutFormat::Npy => ".npy",
            OutFormat::Tif => ".tif",
            OutFormat::Nii => ".nii",
            OutFormat::NiiGz => ".nii.gz",
        }
    }
}

/// The output name of the input file name `name`: its stem with the format's extension, else its
/// own extension (a PNG, which cannot hold floats, becomes a `.tif`).
fn output_name(name: &str, format: Option<OutFormat>) -> String {
    let stem = stem_of(name).unwrap_or(name);
    let ext = &name[stem.len()..];
    match format {
        Some(f) => format!("{stem}{}", f.extension()),
        None if ext.eq_ignore_ascii_case(".png") => format!("{stem}.tif"),
        None => name.to_string(),
    }
}

/// The image files under `dir` (in its subfolders too when `recursive`), sorted, as paths
/// relative to `dir`; hidden entries and `skip` (the output folder) are left out.
fn list_images(dir: &Path, recursive: bool, skip: Option<&Path>) -> Result<Vec<PathBuf>, CliError> {
    let mut found = Vec::new();
    let mut todo = vec![PathBuf::new()];
    while let Some(rel) = todo.pop() {
        let here = dir.join(&rel);
        let entries = std::fs::read_dir(&here)
            .map_err(|e| CliError::input(format!("cannot read folder {}: {e}", here.display())))?;
        for e in entries {
            let e = e.map_err(|e| {
                CliError::input(format!("cannot read folder {}: {e}", here.display()))
            })?;
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                continue;
            }
            let path = e.path();
            if path.is_dir() {
                let same_as_skip = skip.is_some_and(|s| {
                    path.canonicalize()
                        .is_ok_and(|c| s.canonicalize().is_ok_and(|s| s == c))
                });
                if recursive && !same_as_skip {
                    todo.push(rel.join(&name));
                }
                continue;
            }
            if stem_of(&name).is_some() {
                found.push(rel.join(&name));
            }
        }
    }
    found.sort();
    Ok(found)
}

/// What the folder mode is asked to do.
pub struct FolderRun<'a> {
    /// The command's name, for the progress bar and messages (`segloss distmap`).
    pub name: &'static str,
    /// The input folder.
    pub input: &'a Path,
    /// The output folder (created if missing).
    pub output: &'a Path,
    /// Whether to descend into subfolders (mirrored under the output folder).
    pub recursive: bool,
    /// The output format (default: the input's).
    pub format: Option<OutFormat>,
    /// Replace existing outputs.
    pub force: bool,
    /// Print the time spent reading, computing and writing.
    pub timing: bool,
}

impl FolderRun<'_> {
    /// Runs `map_file` on every image of the input folder ([`map_folder`]) when `folder`, else on
    /// the one input file, after refusing an existing output without `force`; prints the time
    /// spent reading, computing and writing when `timing`.
    pub fn run(
        &self,
        folder: bool,
        map_file: impl Fn(&Path, &Path) -> Result<Timing, CliError> + Sync,
    ) -> Result<(), CliError> {
        if folder {
            return map_folder(self, map_file);
        }
        crate::commands::image::check_output_quick(self.output, self.force)?;
        let t = map_file(self.input, self.output)?;
        if self.timing {
            eprintln!("{}: {}", self.name, t.summary());
        }
        Ok(())
    }
}

/// Maps every image file of `run.input` into `run.output` with `map_file(input, output)`, files in
/// parallel. A file that fails is reported on stderr in one line and the others are still
/// processed; the result is then a bad-input error (exit 2) counting the failures. Each output is
/// written atomically, so a failed file leaves nothing behind. Existing outputs are refused
/// before any work unless `run.force`.
pub fn map_folder(
    run: &FolderRun<'_>,
    map_file: impl Fn(&Path, &Path) -> Result<Timing, CliError> + Sync,
) -> Result<(), CliError> {
    if run.output.exists() && !run.output.is_dir() {
        return Err(CliError::input(format!(
            "{} is a folder but the output {} is a file: expected an output folder",
            run.input.display(),
            run.output.display()
        )));
    }
    let files = list_images(run.input, run.recursive, Some(run.output))?;
    if files.is_empty() {
        return Err(CliError::input(format!(
            "no image files in {}: expected files ending in .npy, .png, .tif, .tiff, .nii or .nii.gz{}",
            run.input.display(),
            if run.recursive { "" } else { " (--recursive descends into subfolders)" }
        )));
    }
    // Input → output pairs; names that two inputs would both write, or that would overwrite their
    // own input, fail on their own.
    let mut jobs: Vec<(PathBuf, PathBuf, Option<String>)> = files
        .iter()
        .map(|rel| {
            let name = rel.file_name().unwrap_or_default().to_string_lossy();
            let out_rel = rel.with_file_name(output_name(&name, run.format));
            (run.input.join(rel), run.output.join(out_rel), None)
        })
        .collect();
    let mut by_output: HashMap<PathBuf, Vec<usize>> = HashMap::new();
    for (i, (_, out, _)) in jobs.iter().enumerate() {
        by_output.entry(out.clone()).or_default().push(i);
    }
    for same in by_output.values().filter(|v| v.len() > 1) {
        let names: Vec<String> = same
            .iter()
            .map(|&i| jobs[i].0.display().to_string())
            .collect();
        for &i in same {
            jobs[i].2 = Some(format!(
                "{}: {} inputs ({}) would be written to {}; expected one input per output name \
                 (rename one, or choose another --format)",
                jobs[i].0.display(),
                names.len(),
                names.join(", "),
                jobs[i].1.display()
            ));
        }
    }
    for job in jobs.iter_mut() {
        let same_file = job.0 == job.1
            || job
                .0
                .canonicalize()
                .ok()
                .zip(job.1.canonicalize().ok())
                .is_some_and(|(a, b)| a == b);
        if same_file && job.2.is_none() {
            job.2 = Some(format!(
                "{}: the output would replace its own input; expected another output folder or --format",
                job.0.display()
            ));
        }
    }
    if !run.force {
        let existing: Vec<&PathBuf> = jobs
            .iter()
            .filter(|j| j.2.is_none() && j.1.symlink_metadata().is_ok())
            .map(|j| &j.1)
            .collect();
        if let Some(first) = existing.first() {
            return Err(CliError::input(format!(
                "{} already exists{}: pass --force to replace existing outputs",
                first.display(),
                match existing.len() {
                    1 => String::new(),
                    n => format!(" (and {} more outputs)", n - 1),
                }
            )));
        }
    }
    std::fs::create_dir_all(run.output).map_err(|e| {
        CliError::input(format!(
            "cannot create folder {}: {e}",
            run.output.display()
        ))
    })?;

    let bar = progress_bar(jobs.len(), run.name, "files");
    let failed = AtomicUsize::new(0);
    let total = Mutex::new(Timing::default());
    let t0 = Instant::now();
    jobs.par_iter().for_each(|(input, output, refused)| {
        let result = match refused {
            Some(why) => Err(CliError::input(why.clone())),
            None => output
                .parent()
                .map_or(Ok(()), |p| {
                    std::fs::create_dir_all(p).map_err(|e| {
                        CliError::input(format!("cannot create folder {}: {e}", p.display()))
                    })
                })
                .and_then(|_| map_file(input, output)),
        };
        match result {
            Ok(t) => {
                if let Ok(mut total) = total.lock() {
                    *total += t;
                }
            }
            Err(e) => {
                failed.fetch_add(1, Ordering::Relaxed);
                let text = e.to_string();
                let shown = input.display().to_string();
                let line = if text.contains(&shown) {
                    format!("segloss: {text}")
                } else {
                    format!("segloss: {shown}: {text}")
                };
                bar.suspend(|| eprintln!("{line}"));
            }
        }
        bar.inc(1);
    });
    bar.finish_and_clear();
    let failed = failed.into_inner();
    if run.timing {
        let total = total.into_inner().unwrap_or_default();
        eprintln!(
            "{}: {} files in {:.1} ms; summed over files: {}",
            run.name,
            jobs.len(),
            t0.elapsed().as_secs_f64() * 1e3,
            total.summary()
        );
    }
    if failed > 0 {
        return Err(CliError::input(format!(
            "{failed} of {} files failed (listed above); the others were written to {}",
            jobs.len(),
            run.output.display()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_names_keep_the_stem_and_the_format() {
        assert_eq!(output_name("a.nii.gz", None), "a.nii.gz");
        assert_eq!(output_name("a.NPY", None), "a.NPY");
        assert_eq!(output_name("b.png", None), "b.tif");
        assert_eq!(output_name("b.PNG", Some(OutFormat::Npy)), "b.npy");
        assert_eq!(output_name("c.tiff", Some(OutFormat::NiiGz)), "c.nii.gz");
        assert_eq!(stem_of(".npy"), None);
        assert_eq!(stem_of("x.Nii.Gz"), Some("x"));
    }
}
