//! Resource quantities: [`flotilla_core::quantity`].
pub use flotilla_core::quantity::*;
