//! A branch-free `f32` exponential that LLVM vectorises inside loops (a libm call does not), shared
//! by the U-Net weight map's border term and the fused loss kernels of the `segloss` crate.
//! Cephes `expf` polynomial, relative error ≈ 2 ulp; checked against `std` below.

const LOG2E: f32 = std::f32::consts::LOG2_E;
/// ln 2 split in a high part (exact in few bits) and the rest, for argument reduction (Cephes).
pub const LN2_HI: f32 = 0.693_359_4;
/// See [`LN2_HI`].
pub const LN2_LO: f32 = -2.121_944_4e-4;
/// 1.5·2^23: added to an integer-valued float `n` (|n| ≤ 2^22), it leaves `n` in the low
/// mantissa bits.
const MAGIC: f32 = 12_582_912.0;

/// e^x from `x` (already clamped) and `n` = x·log2(e) rounded to an integer.
#[inline(always)]
fn exp_reduced(x: f32, n: f32) -> f32 {
    let r = x - n * LN2_HI - n * LN2_LO;
    let r2 = r * r;
    let p = ((((1.987_569_1e-4 * r + 1.398_199_9e-3) * r + 8.333_452e-3) * r + 4.166_579_6e-2) * r
        + 1.666_666_5e-1)
        * r
        + 0.5;
    let p = p * r2 + r + 1.0;
    // 2^n without a float→int conversion (which does not vectorise).
    let bits = (n + MAGIC)
        .to_bits()
        .wrapping_sub(0x4B40_0000)
        .wrapping_add(127)
        << 23;
    p * f32::from_bits(bits)
}

/// e^x, with x clamped to [−87, 88] (so e^−∞ gives 1.6e−38 instead of 0), for loops compiled with
/// SSE4.1 or later (the `segloss` kernels' AVX2 versions), where `floor` is one instruction.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    let x = x.clamp(-87.0, 88.0);
    exp_reduced(x, (x * LOG2E + 0.5).floor())
}

/// [`exp`] for loops compiled for the x86-64 baseline (this crate): without SSE4.1 `floor` is a
/// libm call that stops vectorisation, so `n` is rounded by adding and subtracting 1.5·2^23
/// (this form, in turn, stopped LLVM's SLP vectoriser in the AVX2 kernels of `segloss`).
#[inline(always)]
pub fn exp_baseline(x: f32) -> f32 {
    let x = x.clamp(-87.0, 88.0);
    exp_reduced(x, (x * LOG2E + MAGIC) - MAGIC)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_matches_std() {
        for f in [exp, exp_baseline] {
            let mut worst = 0.0f64;
            let mut x = -87.0f32;
            while x < 88.0 {
                let want = (x as f64).exp();
                worst = worst.max(((f(x) as f64) - want).abs() / want);
                x += 0.0137;
            }
            assert!(worst < 5e-7, "{worst}");
            assert!(f(-1e4) > 0.0 && f(-1e4) < 2e-38);
            assert!(f(1e4).is_finite());
        }
    }
}
