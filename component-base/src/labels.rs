//! Label selectors and node selector terms: [`flotilla_core::labels`].
pub use flotilla_core::labels::*;
