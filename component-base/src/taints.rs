//! Taints and tolerations, as Kubernetes matches them (the scheduler's filters and the
//! node lifecycle controller's evictions).

use k8s_openapi::api::core::v1::{Taint, Toleration};

/// Whether `t` tolerates `taint` (Kubernetes' Toleration.ToleratesTaint): the effect
/// matches or is empty, the key matches or is empty, and with `Equal` the values match.
pub fn tolerates(t: &Toleration, taint: &Taint) -> bool {
    if let Some(e) = t.effect.as_deref().filter(|e| !e.is_empty()) {
        if e != taint.effect {
            return false;
        }
    }
    let key = t.key.as_deref().unwrap_or("");
    if !key.is_empty() && key != taint.key {
        return false;
    }
    match t.operator.as_deref().unwrap_or("Equal") {
        "Exists" => true,
        "Equal" | "" => t.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or(""),
        _ => false,
    }
}

/// Whether any of `tols` tolerates `taint`.
pub fn tolerated(tols: &[Toleration], taint: &Taint) -> bool {
    tols.iter().any(|t| tolerates(t, taint))
}
