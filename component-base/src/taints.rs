//! Taints and tolerations: [`flotilla_core::taints`].
pub use flotilla_core::taints::*;
