//! StorageObjectInUseProtection (mutating, persistentvolumeclaims and persistentvolumes):
//! every new claim gets the `kubernetes.io/pvc-protection` finalizer and every new volume
//! `kubernetes.io/pv-protection`, so that deleting one a pod still mounts (a claim) or a
//! claim is still bound to (a volume) only marks it; the controller-manager's protection
//! controllers remove the finalizer once nothing uses it.

use serde_json::Value;

pub const PVC_PROTECTION: &str = "kubernetes.io/pvc-protection";
pub const PV_PROTECTION: &str = "kubernetes.io/pv-protection";

/// Adds `finalizer` to the object unless it carries it already.
pub(super) fn protect(obj: &mut Value, finalizer: &str) {
    if !obj["metadata"].is_object() {
        obj["metadata"] = serde_json::json!({});
    }
    let fins = &mut obj["metadata"]["finalizers"];
    if !fins.is_array() {
        *fins = serde_json::json!([]);
    }
    if let Some(list) = fins.as_array_mut() {
        if !list.iter().any(|f| f == finalizer) {
            list.push(finalizer.into());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_finalizer_is_added_once_beside_others() {
        let mut claim = json!({"metadata": {"name": "c"}});
        protect(&mut claim, PVC_PROTECTION);
        protect(&mut claim, PVC_PROTECTION);
        assert_eq!(claim["metadata"]["finalizers"], json!([PVC_PROTECTION]));
        let mut pv = json!({"metadata": {"name": "v", "finalizers": ["example.com/keep"]}});
        protect(&mut pv, PV_PROTECTION);
        assert_eq!(
            pv["metadata"]["finalizers"],
            json!(["example.com/keep", PV_PROTECTION])
        );
    }
}
