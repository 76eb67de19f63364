//! Distribution-based losses: per-pixel cross-entropies and their weighted variants.

pub mod balanced_bce;
pub mod bce;
pub mod ce;
pub mod focal;
pub mod weighted_ce;
