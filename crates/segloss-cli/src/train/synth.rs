//! Deterministic synthetic cell images: grey images of textured cells (ellipses of varied size and
//! brightness), many of them touching or nearly touching, with blur and noise; their instance
//! labels and the binary training mask.
//!
//! This module depends only on `ndarray`, so the tests include it directly.
//!
//! # The mask
//! Touching cells are one blob in a plain foreground mask, and no per-pixel model can split a blob
//! that its target never splits. As in the U-Net paper's data, the training mask therefore keeps a
//! background line between touching cells: a pixel is foreground when its cell covers it and none
//! of its 8 neighbours belongs to another cell ([`separate_instances`]). The lines are 2 pixels
//! wide where cells touch, so the cells stay apart under full (8-) connectivity, which is what the
//! U-Net weight map and the object-level metric use.
//!
//! # Determinism
//! Everything comes from [`Rng`] (SplitMix64) seeded from the caller's seed and the sample's
//! index, with no floating-point reductions whose order could vary: the same seed gives the same
//! images on every machine and thread count.

use ndarray::Array2;

/// A small deterministic random number generator (SplitMix64).
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from a seed.
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    /// A generator for stream `stream` of seed `seed` (independent streams for the same seed).
    pub fn stream(seed: u64, stream: u64) -> Self {
        let mut r = Rng(seed ^ 0x243f_6a88_85a3_08d3);
        let a = r.next_u64();
        Rng(a ^ stream.wrapping_mul(0x9e37_79b9_7f4a_7c15).rotate_left(17))
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in [lo, hi).
    pub fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.uniform()
    }

    /// Uniform integer in [0, n) (n > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (((self.next_u64() >> 32) * n as u64) >> 32) as usize
    }

    /// Standard normal (Box–Muller).
    pub fn normal(&mut self) -> f64 {
        let u1 = self.uniform().max(1e-300);
        let u2 = self.uniform();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }

    /// A random permutation of 0..n (Fisher–Yates).
    pub fn permutation(&mut self, n: usize) -> Vec<usize> {
        let mut v: Vec<usize> = (0..n).collect();
        for i in (1..n).rev() {
            let j = self.below(i + 1);
            v.swap(i, j);
        }
        v
    }
}

/// One image with its labels.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// A name (the file stem for folder data, `synthetic-00042` for generated data).
    pub name: String,
    /// The grey image, `[H, W]`, roughly in [0, 1].
    pub image: Array2<f32>,
    /// Instance labels 1..=K on the mask's foreground, 0 elsewhere.
    pub instances: Array2<u32>,
    /// The binary training mask (0 / 1), with background lines between touching cells.
    pub mask: Array2<f32>,
}

impl Sample {
    /// The number of instances.
    pub fn num_instances(&self) -> usize {
        self.instances.iter().copied().max().unwrap_or(0) as usize
    }
}

/// One cell: an ellipse with its brightness and texture.
#[derive(Debug, Clone)]
struct Cell {
    cx: f64,
    cy: f64,
    a: f64,
    b: f64,
    cos: f64,
    sin: f64,
    bright: f64,
    tex: [(f64, f64, f64); 2],
    tex_amp: f64,
}

impl Cell {
    /// Squared normalised radius of point (x, y) (< 1 inside).
    fn rho2(&self, x: f64, y: f64) -> f64 {
        let dx = x - self.cx;
        let dy = y - self.cy;
        let u = dx * self.cos + dy * self.sin;
        let v = -dx * self.sin + dy * self.cos;
        (u / self.a).powi(2) + (v / self.b).powi(2)
    }

    /// Distance from the centre to the outline in direction `phi`.
    fn radius_towards(&self, phi: f64) -> f64 {
        let t = phi - self.sin.atan2(self.cos);
        let (s, c) = t.sin_cos();
        self.a * self.b / ((self.b * c).powi(2) + (self.a * s).powi(2)).sqrt()
    }
}

/// Instance ownership of every pixel: the cell with the smallest normalised radius among the
/// cells that cover it (so overlapping cells split along a curve), 0 for the background.
fn owners(cells: &[Cell], size: usize) -> (Array2<u32>, Array2<f64>) {
    let mut own = Array2::<u32>::zeros((size, size));
    let mut rho = Array2::<f64>::from_elem((size, size), f64::INFINITY);
    for (k, c) in cells.iter().enumerate() {
        let r = c.a.max(c.b) + 1.0;
        let y0 = ((c.cy - r).floor().max(0.0)) as usize;
        let y1 = ((c.cy + r).ceil().min(size as f64 - 1.0)).max(0.0) as usize;
        let x0 = ((c.cx - r).floor().max(0.0)) as usize;
        let x1 = ((c.cx + r).ceil().min(size as f64 - 1.0)).max(0.0) as usize;
        for y in y0..=y1 {
            for x in x0..=x1 {
                let p = c.rho2(x as f64, y as f64);
                if p < 1.0 && p < rho[[y, x]] {
                    rho[[y, x]] = p;
                    own[[y, x]] = k as u32 + 1;
                }
            }
        }
    }
    (own, rho)
}

/// The training mask and the instances on it: a pixel stays foreground when none of its 8
/// neighbours belongs to a different (non-zero) instance, so touching instances are separated by
/// background lines (2 pixels wide where they touch) and stay apart under 8-connectivity.
/// Instances left with fewer than `min_area` pixels are dropped; the rest are renumbered 1..=K in
/// raster order of their first pixel.
pub fn separate_instances(labels: &Array2<u32>, min_area: usize) -> (Array2<f32>, Array2<u32>) {
    let (h, w) = labels.dim();
    let mut inst = Array2::<u32>::zeros((h, w));
    for y in 0..h {
        for x in 0..w {
            let l = labels[[y, x]];
            if l == 0 {
                continue;
            }
            let mut keep = true;
            'n: for dy in -1i64..=1 {
                for dx in -1i64..=1 {
                    let (yy, xx) = (y as i64 + dy, x as i64 + dx);
                    if yy < 0 || xx < 0 || yy >= h as i64 || xx >= w as i64 {
                        continue;
                    }
                    let m = labels[[yy as usize, xx as usize]];
                    if m != 0 && m != l {
                        keep = false;
                        break 'n;
                    }
                }
            }
            if keep {
                inst[[y, x]] = l;
            }
        }
    }
    // Area filter and renumbering.
    let max = inst.iter().copied().max().unwrap_or(0) as usize;
    let mut area = vec![0usize; max + 1];
    for &l in inst.iter() {
        area[l as usize] += 1;
    }
    let mut map = vec![0u32; max + 1];
    let mut next = 0u32;
    for l in inst.iter_mut() {
        let o = *l as usize;
        if o == 0 {
            continue;
        }
        if area[o] < min_area {
            *l = 0;
            continue;
        }
        if map[o] == 0 {
            next += 1;
            map[o] = next;
        }
        *l = map[o];
    }
    let mask = inst.mapv(|l| if l > 0 { 1.0f32 } else { 0.0 });
    (mask, inst)
}

/// Separable Gaussian blur with standard deviation `sigma` (pixels), edges clamped.
fn blur(img: &Array2<f64>, sigma: f64) -> Array2<f64> {
    if sigma <= 0.0 {
        return img.clone();
    }
    let r = (3.0 * sigma).ceil() as i64;
    let k: Vec<f64> = (-r..=r)
        .map(|i| (-(i * i) as f64 / (2.0 * sigma * sigma)).exp())
        .collect();
    let s: f64 = k.iter().sum();
    let k: Vec<f64> = k.iter().map(|v| v / s).collect();
    let (h, w) = img.dim();
    let mut tmp = Array2::<f64>::zeros((h, w));
    for y in 0..h {
        for x in 0..w {
            let mut acc = 0.0;
            for (j, kv) in k.iter().enumerate() {
                let xx = (x as i64 + j as i64 - r).clamp(0, w as i64 - 1) as usize;
                acc += kv * img[[y, xx]];
            }
            tmp[[y, x]] = acc;
        }
    }
    let mut out = Array2::<f64>::zeros((h, w));
    for y in 0..h {
        for x in 0..w {
            let mut acc = 0.0;
            for (j, kv) in k.iter().enumerate() {
                let yy = (y as i64 + j as i64 - r).clamp(0, h as i64 - 1) as usize;
                acc += kv * tmp[[yy, x]];
            }
            out[[y, x]] = acc;
        }
    }
    out
}

/// Places the cells of one image: about 60 % of them next to an earlier cell (touching, slightly
/// overlapping or a pixel or two apart), the rest anywhere they do not overlap much.
fn place_cells(rng: &mut Rng, size: usize) -> Vec<Cell> {
    let scale = size as f64 / 64.0;
    let area_scale = (size * size) as f64 / (64.0 * 64.0);
    let n_target = ((rng.range(7.0, 12.0) * area_scale).round() as usize).max(2);
    let mut cells: Vec<Cell> = Vec::with_capacity(n_target);
    let mut attempts = 0;
    while cells.len() < n_target && attempts < 400 {
        attempts += 1;
        let a = rng.range(3.8, 8.0) * scale.max(0.5);
        let b = a * rng.range(0.6, 1.0);
        let theta = rng.range(0.0, std::f64::consts::PI);
        let (sin, cos) = theta.sin_cos();
        let freq = |rng: &mut Rng| rng.range(0.5, 1.3);
        let tex = [
            (freq(rng), freq(rng), rng.range(0.0, std::f64::consts::TAU)),
            (freq(rng), -freq(rng), rng.range(0.0, std::f64::consts::TAU)),
        ];
        let mut cell = Cell {
            cx: 0.0,
            cy: 0.0,
            a,
            b,
            cos,
            sin,
            bright: rng.range(0.45, 1.0),
            tex,
            tex_amp: rng.range(0.05, 0.18),
        };
        if !cells.is_empty() && rng.uniform() < 0.6 {
            let j = rng.below(cells.len());
            let phi = rng.range(0.0, std::f64::consts::TAU);
            let other = &cells[j];
            let gap = rng.range(-1.5, 2.0) * scale.max(0.5);
            let d =
                other.radius_towards(phi) + cell.radius_towards(phi + std::f64::consts::PI) + gap;
            cell.cx = other.cx + d * phi.cos();
            cell.cy = other.cy + d * phi.sin();
        } else {
            cell.cx = rng.range(1.0, size as f64 - 1.0);
            cell.cy = rng.range(1.0, size as f64 - 1.0);
        }
        if cell.cx < 1.0
            || cell.cy < 1.0
            || cell.cx > size as f64 - 2.0
            || cell.cy > size as f64 - 2.0
        {
            continue;
        }
        let ok = cells.iter().all(|o| {
            let (dx, dy) = (cell.cx - o.cx, cell.cy - o.cy);
            let d = (dx * dx + dy * dy).sqrt();
            let phi = dy.atan2(dx);
            let reach = o.radius_towards(phi) + cell.radius_towards(phi + std::f64::consts::PI);
            d >= reach - 2.0 * scale.max(0.5)
        });
        if ok {
            cells.push(cell);
        }
    }
    cells
}

/// One synthetic image of side `size` from `seed`.
pub fn synth_sample(size: usize, seed: u64, name: String) -> Sample {
    let mut rng = Rng::new(seed);
    let cells = place_cells(&mut rng, size);
    let (own, rho2) = owners(&cells, size);

    let scale = size as f64 / 64.0;
    // Background: dim, with a slow gradient.
    let bg0 = rng.range(0.05, 0.15);
    let (gx, gy) = (rng.range(-0.05, 0.05), rng.range(-0.05, 0.05));
    let mut img = Array2::<f64>::zeros((size, size));
    for y in 0..size {
        for x in 0..size {
            let (u, v) = (x as f64 / size as f64 - 0.5, y as f64 / size as f64 - 0.5);
            let mut val = bg0 + gx * u + gy * v;
            let k = own[[y, x]] as usize;
            if k > 0 {
                let c = &cells[k - 1];
                let r2 = rho2[[y, x]];
                // Bright centre, darker rim: touching cells show a dip where they meet.
                let profile = 1.0 - 0.5 * r2 * r2.sqrt();
                let (xf, yf) = (x as f64 / scale.max(0.5), y as f64 / scale.max(0.5));
                let t = (c.tex[0].0 * xf + c.tex[0].1 * yf + c.tex[0].2).sin()
                    * (c.tex[1].0 * xf + c.tex[1].1 * yf + c.tex[1].2).sin();
                val = c.bright * profile * (1.0 + c.tex_amp * t);
            }
            img[[y, x]] = val;
        }
    }
    let img = blur(&img, 0.8 * scale.max(0.5));
    let noise = rng.range(0.03, 0.07);
    let image = img.mapv(|v| v as f32);
    let mut image = image;
    for v in image.iter_mut() {
        *v += (noise * rng.normal()) as f32;
    }
    let (mask, instances) = separate_instances(&own, 6);
    Sample {
        name,
        image,
        instances,
        mask,
    }
}

/// `n` synthetic samples of side `size`: sample `i` comes from `(seed, stream, i)` only, so a
/// longer dataset starts with the same images as a shorter one.
pub fn synth_dataset(n: usize, size: usize, seed: u64, stream: u64, prefix: &str) -> Vec<Sample> {
    (0..n)
        .map(|i| {
            let s =
                Rng::stream(seed, stream.wrapping_mul(1_000_003).wrapping_add(i as u64)).next_u64();
            synth_sample(size, s, format!("{prefix}-{i:05}"))
        })
        .collect()
}
