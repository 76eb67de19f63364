//! Region-based and compound losses against their oracles (`tests/fixtures/losses/region.json`,
//! produced by `tools/reference/gen_losses.py` from MONAI, smp and the DESIGN.md formulas),
//! finite differences, edge cases and properties.

mod common;

use common::*;

const FILE: &str = "losses/region.json";

fn check(prefix: &str) -> usize {
    let n = check_fixture_file(FILE, |c| c.name.starts_with(prefix));
    assert!(n > 0, "no fixture case for {prefix}");
    n
}

#[test]
fn dice_matches_monai() {
    check("dice_");
}

#[test]
fn jaccard_matches_monai() {
    check("jaccard_");
}

#[test]
fn generalized_dice_matches_monai() {
    check("generalized_dice_");
}

#[test]
fn tversky_matches_monai() {
    check("tversky_");
}

#[test]
fn focal_tversky_matches_formula() {
    check("focal_tversky_");
}

#[test]
fn sensitivity_specificity_matches_formula() {
    check("sensitivity_specificity_");
}

#[test]
fn log_cosh_dice_matches_formula() {
    check("log_cosh_dice_");
}

#[test]
fn lovasz_matches_smp() {
    check("lovasz_");
}

#[test]
fn mcc_matches_smp() {
    check("mcc_");
}

#[test]
fn combo_matches_formula() {
    check("combo_");
}

#[test]
fn exp_log_matches_formula() {
    check("exp_log_");
}

#[test]
fn sums_match_monai_dice_ce_and_dice_focal() {
    check("sum_");
}
