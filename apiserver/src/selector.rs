//! Label and field selectors: [`flotilla_core::labels`] and [`flotilla_core::fields`],
//! under the paths the apiserver's modules name them by.

pub use flotilla_core::fields::{FieldRequirement, FieldSelector};
pub use flotilla_core::labels::{format_label_selector, LabelOp, LabelRequirement, LabelSelector};
