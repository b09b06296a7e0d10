//! Exponential backoff, per key and single: [`flotilla_core::backoff`].
pub use flotilla_core::backoff::*;
