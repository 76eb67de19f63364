//! Branch-free `f32` exp / ln / log1p / sigmoid that LLVM vectorises inside the fused kernels'
//! loops (libm calls do not vectorise). Polynomials from Cephes (`expf`, `logf`), max relative
//! error ≈ 2 ulp on the ranges used here; checked against `std` in the tests below.

pub(crate) use segloss_core::fastmath::exp;
use segloss_core::fastmath::{LN2_HI, LN2_LO};

/// Cephes `logf` coefficients, highest degree first.
const LOG_POLY: [f32; 9] = [
    7.037_683_6e-2,
    -1.151_461e-1,
    1.167_699_9e-1,
    -1.242_014_1e-1,
    1.424_932_3e-1,
    -1.666_805_8e-1,
    2.000_071_4e-1,
    -2.499_999_4e-1,
    3.333_333e-1,
];

/// ln x for a normal x > 0.
#[inline(always)]
pub(crate) fn ln(x: f32) -> f32 {
    let bits = x.to_bits();
    let e = ((bits >> 23) & 0xff) as i32 - 127;
    let m = f32::from_bits((bits & 0x007f_ffff) | 0x3f80_0000);
    let big = m > std::f32::consts::SQRT_2;
    let m = if big { m * 0.5 } else { m };
    let e = (e + big as i32) as f32;
    let t = m - 1.0;
    let z = t * t;
    let mut poly = LOG_POLY[0];
    for &k in &LOG_POLY[1..] {
        poly = poly * t + k;
    }
    let y = poly * t * z + LN2_LO * e - 0.5 * z;
    t + y + LN2_HI * e
}

/// ln(1 + z) for z ≥ 0, accurate for tiny z (Kahan: ln(u)·z/(u − 1) with u = 1 + z rounded).
#[inline(always)]
pub(crate) fn log1p(z: f32) -> f32 {
    let u = 1.0 + z;
    let d = u - 1.0;
    if d == 0.0 {
        z
    } else {
        ln(u) * (z / d)
    }
}

/// `(σ(x), σ(−x), ln(1 + e^−|x|))`, each without cancellation.
#[inline(always)]
pub(crate) fn sigmoid_pair(x: f32) -> (f32, f32, f32) {
    let e = exp(-x.abs());
    let inv = 1.0 / (1.0 + e);
    let big = inv;
    let small = e * inv;
    let (s_pos, s_neg) = if x >= 0.0 { (big, small) } else { (small, big) };
    (s_pos, s_neg, log1p(e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rel(a: f32, b: f64) -> f64 {
        ((a as f64 - b) / b.abs().max(1e-30)).abs()
    }

    #[test]
    fn exp_matches_std() {
        let mut worst = 0.0f64;
        let mut x = -87.0f32;
        while x < 88.0 {
            worst = worst.max(rel(exp(x), (x as f64).exp()));
            x += 0.0137;
        }
        assert!(worst < 5e-7, "{worst}");
        assert!(exp(-1e4) > 0.0 && exp(-1e4) < 2e-38);
        assert!(exp(1e4).is_finite());
    }

    #[test]
    fn ln_and_log1p_match_std() {
        let mut worst = 0.0f64;
        let mut x = 1e-30f32;
        while x < 1e30 {
            worst =
                worst.max(rel(ln(x), (x as f64).ln()).min((ln(x) as f64 - (x as f64).ln()).abs()));
            x *= 1.013;
        }
        assert!(worst < 5e-7, "ln {worst}");
        let mut worst = 0.0f64;
        let mut z = 1e-12f32;
        while z <= 1.0 {
            worst = worst.max(rel(log1p(z), (z as f64).ln_1p()));
            z *= 1.01;
        }
        assert!(worst < 5e-7, "log1p {worst}");
        assert_eq!(log1p(0.0), 0.0);
    }

    #[test]
    fn sigmoid_pair_has_no_cancellation() {
        for x in [-1e4f32, -30.0, -3.0, -1e-3, 0.0, 1e-3, 3.0, 30.0, 1e4] {
            let (p, q, l) = sigmoid_pair(x);
            let xd = x as f64;
            let pd = 1.0 / (1.0 + (-xd).exp());
            let qd = 1.0 / (1.0 + xd.exp());
            assert!(rel(p, pd) < 1e-6 || pd < 1e-37, "{x}: {p} vs {pd}");
            assert!(rel(q, qd) < 1e-6 || qd < 1e-37, "{x}: {q} vs {qd}");
            assert!(
                rel(l, (-xd.abs()).exp().ln_1p()) < 1e-6 || x.abs() > 80.0,
                "{x}"
            );
        }
    }
}
