//! One module per subcommand.

pub mod bench;
pub mod compare;
pub mod distmap;
pub mod eval;
pub mod image;
pub mod loss;
pub mod train;
pub mod weightmap;
