//! One module per subcommand.

pub mod loss;
