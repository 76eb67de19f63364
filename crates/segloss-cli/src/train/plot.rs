//! `curves.png` and `samples.png`, drawn with plotters into memory, encoded as PNG and written
//! atomically. The labels use DejaVu Sans, shipped in `assets/fonts` (Bitstream Vera licence,
//! see `assets/fonts/DejaVuSans-LICENSE.txt`) and registered with plotters at first use, so no
//! system font or fontconfig is needed.

use std::path::Path;
use std::sync::Once;

use ndarray::Array2;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use plotters::style::{register_font, FontStyle};
use segloss_core::{connected_components, Connectivity};

use super::metrics::ImageMetrics;
use super::report::write_atomic;
use super::synth::Sample;
use crate::error::CliError;

/// A per-epoch value to plot.
type Metric = fn(&CurvePoint) -> f64;

/// One point of a validation curve (means over the seeds).
#[derive(Debug, Clone, Copy)]
pub struct CurvePoint {
    /// Optimizer steps done.
    pub step: usize,
    /// Validation Dice.
    pub dice: f64,
    /// Validation object F1.
    pub f1: f64,
}

static FONT: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");
static REGISTER: Once = Once::new();
const FAMILY: &str = "sans-serif";

fn fonts() {
    REGISTER.call_once(|| {
        // The font is compiled in and known to parse; a failure would only lose the text.
        let _ = register_font(FAMILY, FontStyle::Normal, FONT);
    });
}

fn perr<E: std::fmt::Debug>(what: &str) -> impl Fn(E) -> CliError + '_ {
    move |e| CliError::Internal(format!("drawing {what}: {e:?}"))
}

/// Ten distinct line colours (matplotlib's tab10).
const PALETTE: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

fn encode_png(buf: &[u8], w: u32, h: u32) -> Result<Vec<u8>, CliError> {
    let mut out = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut out, w, h);
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        let mut wr = enc
            .write_header()
            .map_err(|e| CliError::Internal(format!("encoding PNG: {e}")))?;
        wr.write_image_data(buf)
            .map_err(|e| CliError::Internal(format!("encoding PNG: {e}")))?;
    }
    Ok(out)
}

/// `curves.png`: validation Dice and object F1 against optimizer steps, one line per loss (the
/// mean over the seeds), with a legend.
pub fn curves_png(runs: &[(String, Vec<CurvePoint>)], path: &Path) -> Result<(), CliError> {
    fonts();
    let (w, h) = (1500u32, 600u32);
    let mut buf = vec![255u8; (w * h * 3) as usize];
    let max_step = runs
        .iter()
        .flat_map(|(_, hh)| hh.iter().map(|e| e.step))
        .max()
        .unwrap_or(1)
        .max(1) as f64;
    {
        let root = BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area();
        root.fill(&WHITE).map_err(perr("curves"))?;
        let (left, right) = root.split_horizontally(w / 2);
        let panels: [(_, &str, &str, Metric); 2] = [
            (left, "Validation Dice", "Dice", |e| e.dice),
            (
                right,
                "Validation object F1 (cells matched at IoU ≥ 0.5)",
                "object F1",
                |e| e.f1,
            ),
        ];
        for (area, title, ylabel, value) in panels {
            let mut chart = ChartBuilder::on(&area)
                .caption(title, (FAMILY, 24))
                .margin(14)
                .x_label_area_size(50)
                .y_label_area_size(64)
                .build_cartesian_2d(0f64..max_step * 1.02, 0f64..1.0)
                .map_err(perr("curves"))?;
            chart
                .configure_mesh()
                .light_line_style(RGBColor(238, 238, 238))
                .bold_line_style(RGBColor(205, 205, 205))
                .x_desc("optimizer step")
                .y_desc(ylabel)
                .label_style((FAMILY, 15))
                .axis_desc_style((FAMILY, 18))
                .x_labels(8)
                .x_label_formatter(&|x| format!("{x:.0}"))
                .y_labels(11)
                .y_label_formatter(&|y| format!("{y:.1}"))
                .draw()
                .map_err(perr("curves"))?;
            for (i, (label, hist)) in runs.iter().enumerate() {
                let color = PALETTE[i % PALETTE.len()];
                let pts: Vec<(f64, f64)> = hist.iter().map(|e| (e.step as f64, value(e))).collect();
                chart
                    .draw_series(LineSeries::new(pts.clone(), color.stroke_width(2)))
                    .map_err(perr("curves"))?
                    .label(label.as_str())
                    .legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 22, y)], color.stroke_width(3))
                    });
                chart
                    .draw_series(pts.iter().map(|&p| Circle::new(p, 3, color.filled())))
                    .map_err(perr("curves"))?;
            }
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::LowerRight)
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK)
                .label_font((FAMILY, 15))
                .draw()
                .map_err(perr("curves"))?;
        }
        root.present().map_err(perr("curves"))?;
    }
    write_atomic(path, &encode_png(&buf, w, h)?)
}

/// A colour for label `k` ≥ 1 (golden-angle hues, bright).
fn label_color(k: u32) -> [u8; 3] {
    let hue = (k as f64 * 137.507_764) % 360.0;
    let c = HSLColor(hue / 360.0, 0.75, 0.55).to_rgba();
    [c.0, c.1, c.2]
}

/// An inferno-like colour ramp for t in [0, 1].
fn ramp(t: f64) -> [u8; 3] {
    const STOPS: [(f64, [f64; 3]); 5] = [
        (0.0, [0.0, 0.0, 4.0]),
        (0.25, [87.0, 16.0, 110.0]),
        (0.5, [188.0, 55.0, 84.0]),
        (0.75, [249.0, 142.0, 9.0]),
        (1.0, [252.0, 255.0, 164.0]),
    ];
    let t = t.clamp(0.0, 1.0);
    for win in STOPS.windows(2) {
        let ((t0, c0), (t1, c1)) = (win[0], win[1]);
        if t <= t1 {
            let f = (t - t0) / (t1 - t0);
            return [0, 1, 2].map(|i| (c0[i] + f * (c1[i] - c0[i])).round() as u8);
        }
    }
    [252, 255, 164]
}

/// One prediction column of `samples.png`.
pub struct PredColumn<'a> {
    /// The loss.
    pub title: &'a str,
    /// Probabilities, one map per shown row.
    pub probs: Vec<&'a Array2<f32>>,
    /// Their metrics.
    pub metrics: Vec<&'a ImageMetrics>,
}

/// `samples.png`: one row per shown validation sample; columns image, truth (one colour per
/// cell), U-Net weight map, then each loss's prediction thresholded at 0.5 (one colour per
/// connected component: a colour spanning two cells is a merge) over its probability in grey,
/// with the image's object F1 under it.
pub fn samples_png(
    rows: &[&Sample],
    weight_maps: &[&Array2<f32>],
    weight_title: &str,
    columns: &[PredColumn<'_>],
    path: &Path,
) -> Result<(), CliError> {
    fonts();
    let size = rows.first().map(|s| s.image.nrows()).unwrap_or(1).max(1);
    let scale = (192 / size).max(1);
    let tile = (size * scale) as u32;
    let gap = 8u32;
    let header = 68u32;
    let caption = 24u32;
    let ncols = 3 + columns.len() as u32;
    let w = gap + ncols * (tile + gap);
    let h = header + rows.len() as u32 * (tile + caption + gap) + gap;
    let mut buf = vec![255u8; (w * h * 3) as usize];
    let wmax = weight_maps
        .iter()
        .flat_map(|m| m.iter().copied())
        .fold(0f32, f32::max)
        .max(1e-6);
    let mut put = |x0: u32, y0: u32, f: &dyn Fn(usize, usize) -> [u8; 3]| {
        for yy in 0..tile {
            for xx in 0..tile {
                let c = f(yy as usize / scale, xx as usize / scale);
                let o = (((y0 + yy) * w + x0 + xx) * 3) as usize;
                buf[o..o + 3].copy_from_slice(&c);
            }
        }
    };
    let col_x = |c: u32| gap + c * (tile + gap);
    let row_y = |r: usize| header + r as u32 * (tile + caption + gap);
    for (r, s) in rows.iter().enumerate() {
        let y0 = row_y(r);
        let (lo, hi) = s
            .image
            .iter()
            .fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), &v| {
                (a.min(v), b.max(v))
            });
        let range = if hi > lo { hi - lo } else { 1.0 };
        put(col_x(0), y0, &|y, x| {
            let g = (((s.image[[y, x]] - lo) / range) * 255.0)
                .round()
                .clamp(0.0, 255.0) as u8;
            [g, g, g]
        });
        put(col_x(1), y0, &|y, x| match s.instances[[y, x]] {
            0 => [0, 0, 0],
            k => label_color(k),
        });
        let wm = weight_maps[r];
        put(col_x(2), y0, &|y, x| ramp((wm[[y, x]] / wmax) as f64));
        for (c, col) in columns.iter().enumerate() {
            let p = col.probs[r];
            let pred = p.mapv(|v| v > 0.5);
            let (cc, _) = connected_components(&pred, Connectivity::Full)
                .map_err(|e| CliError::Internal(format!("components: {e}")))?;
            put(col_x(3 + c as u32), y0, &|y, x| match cc[[y, x]] {
                0 => {
                    let g = (p[[y, x]] * 110.0).round() as u8;
                    [g, g, g]
                }
                k => label_color(k),
            });
        }
    }
    {
        let root = BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area();
        let small = (FAMILY, 14)
            .into_font()
            .color(&BLACK)
            .pos(Pos::new(HPos::Center, VPos::Top));
        let grey = RGBColor(90, 90, 90);
        let mut titles = vec![
            ("image".to_string(), String::new()),
            ("truth".to_string(), "(one colour per cell)".to_string()),
            ("U-Net weight map".to_string(), weight_title.to_string()),
        ];
        for col in columns {
            titles.push((col.title.to_string(), "prediction > 0.5".to_string()));
        }
        for (c, (t1, t2)) in titles.iter().enumerate() {
            let cx = (col_x(c as u32) + tile / 2) as i32;
            let (lines, size) = fit_title(&root, t1, tile.saturating_sub(8));
            for (i, l) in lines.iter().enumerate() {
                let style = (FAMILY, size)
                    .into_font()
                    .color(&BLACK)
                    .pos(Pos::new(HPos::Center, VPos::Top));
                root.draw(&Text::new(l.clone(), (cx, 6 + 19 * i as i32), style))
                    .map_err(perr("samples"))?;
            }
            if !t2.is_empty() {
                let style = (FAMILY, 13)
                    .into_font()
                    .color(&grey)
                    .pos(Pos::new(HPos::Center, VPos::Top));
                root.draw(&Text::new(t2.clone(), (cx, 46), style))
                    .map_err(perr("samples"))?;
            }
        }
        for (r, s) in rows.iter().enumerate() {
            let y = (row_y(r) + tile + 3) as i32;
            let cells = s.num_instances();
            root.draw(&Text::new(
                format!("{} ({cells} cells)", s.name),
                ((col_x(0) + tile / 2) as i32, y),
                small.clone(),
            ))
            .map_err(perr("samples"))?;
            for (c, col) in columns.iter().enumerate() {
                let m = col.metrics[r];
                root.draw(&Text::new(
                    format!(
                        "F1 {:.2}  ({}/{} cells)",
                        m.objects.f1(),
                        m.objects.tp,
                        m.objects.tp + m.objects.fn_
                    ),
                    ((col_x(3 + c as u32) + tile / 2) as i32, y),
                    small.clone(),
                ))
                .map_err(perr("samples"))?;
            }
        }
        root.present().map_err(perr("samples"))?;
    }
    write_atomic(path, &encode_png(&buf, w, h)?)
}

/// Splits a column title into at most two lines (at " + ", "(" or ",") and shrinks the font until
/// each line fits in `width` pixels; returns the lines and the font size.
fn fit_title<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    text: &str,
    width: u32,
) -> (Vec<String>, u32) {
    let measure = |t: &str, size: u32| {
        area.estimate_text_size(t, &(FAMILY, size).into_text_style(area))
            .map(|(w, _)| w)
            .unwrap_or(t.chars().count() as u32 * size / 2)
    };
    if measure(text, 16) <= width {
        return (vec![text.to_string()], 16);
    }
    // The split that balances the two lines best.
    let mut best: Option<(u32, String, String)> = None;
    for (i, ch) in text.char_indices() {
        let cut = match ch {
            '(' => i,
            '+' | ',' => i + 1,
            _ => continue,
        };
        let (a, b) = (
            text[..cut].trim().to_string(),
            text[cut..].trim().to_string(),
        );
        if a.is_empty() || b.is_empty() {
            continue;
        }
        let w = measure(&a, 16).max(measure(&b, 16));
        if best.as_ref().is_none_or(|(bw, _, _)| w < *bw) {
            best = Some((w, a, b));
        }
    }
    let lines = match best {
        Some((_, a, b)) => vec![a, b],
        None => vec![text.to_string()],
    };
    let mut size = 16;
    while size > 9 && lines.iter().any(|l| measure(l, size) > width) {
        size -= 1;
    }
    (lines, size)
}
