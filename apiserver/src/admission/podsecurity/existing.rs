//! What a namespace update that makes its enforce level stricter tells the client about
//! the pods already there (kube's `EvaluatePodsInNamespace`): they keep running, and the
//! warnings group them by what they violate.

use std::collections::BTreeMap;

use serde_json::Value;

use super::{evaluate, reasons, LevelVersion, Pod};

/// At most this many pods are checked (kube's `defaultNamespaceMaxPodsToCheck`).
pub const MAX_PODS: usize = 3000;

/// Whether an update of a namespace's policy from `old` to `new` enforce level needs its
/// pods checked: the enforce level changed, is not privileged, and is not the same
/// version at an equal or laxer level.
pub fn needs_check(old: &LevelVersion, new: &LevelVersion) -> bool {
    if old == new || new.level == super::Level::Privileged {
        return false;
    }
    !(new.version == old.version && new.level <= old.level)
}

/// The warnings for `pods` (whole pod objects) of namespace `ns` under enforce level `lv`.
pub fn warnings(ns: &str, lv: &LevelVersion, pods: &[Value]) -> Vec<String> {
    let total = pods.len();
    let checked = &pods[..total.min(MAX_PODS)];
    // By violation: the lexically first pod name and how many pods.
    let mut by: BTreeMap<String, (String, usize)> = BTreeMap::new();
    for p in checked {
        let v = evaluate(lv.level, &Pod::new(&p["metadata"], &p["spec"]));
        if v.is_empty() {
            continue;
        }
        let name = p["metadata"]["name"].as_str().unwrap_or("").to_string();
        let e = by.entry(reasons(&v)).or_insert_with(|| (name.clone(), 0));
        if name < e.0 {
            e.0 = name;
        }
        e.1 = e.1.saturating_add(1);
    }
    let mut out = Vec::new();
    if checked.len() < total {
        out.push(format!(
            "new PodSecurity enforce level only checked against the first {} of {total} existing pods",
            checked.len()
        ));
    }
    if !by.is_empty() {
        out.push(format!(
            "existing pods in namespace \"{ns}\" violate the new PodSecurity enforce level \"{lv}\""
        ));
    }
    let mut per_pod: Vec<String> = by
        .into_iter()
        .map(|(warning, (name, n))| match n {
            1 => format!("{name}: {warning}"),
            2 => format!("{name} (and 1 other pod): {warning}"),
            n => format!("{name} (and {} other pods): {warning}", n - 1),
        })
        .collect();
    per_pod.sort();
    out.extend(per_pod);
    out
}

#[cfg(test)]
mod tests {
    use super::super::Level;
    use super::*;
    use serde_json::json;

    fn lv(level: Level, version: &str) -> LevelVersion {
        LevelVersion {
            level,
            version: version.into(),
        }
    }

    #[test]
    fn only_a_stricter_enforce_level_is_checked() {
        let b = lv(Level::Baseline, "latest");
        let r = lv(Level::Restricted, "latest");
        assert!(needs_check(&b, &r));
        assert!(!needs_check(&r, &b));
        assert!(!needs_check(&r, &r));
        assert!(!needs_check(&r, &lv(Level::Privileged, "latest")));
        assert!(needs_check(&r, &lv(Level::Baseline, "v1.30")));
    }

    #[test]
    fn violating_pods_are_grouped_by_reason() {
        let pod = |name: &str, spec: Value| json!({"metadata": {"name": name}, "spec": spec});
        let pods = [
            pod(
                "web-b",
                json!({"hostNetwork": true, "containers": [{"name": "c"}]}),
            ),
            pod(
                "web-a",
                json!({"hostNetwork": true, "containers": [{"name": "c"}]}),
            ),
            pod(
                "db",
                json!({"containers": [{"name": "c", "securityContext": {"privileged": true}}]}),
            ),
            pod("ok", json!({"containers": [{"name": "c"}]})),
        ];
        assert_eq!(
            warnings("team", &lv(Level::Baseline, "latest"), &pods),
            [
                "existing pods in namespace \"team\" violate the new PodSecurity enforce level \"baseline:latest\"",
                "db: privileged",
                "web-a (and 1 other pod): host namespaces",
            ]
        );
        assert!(warnings("team", &lv(Level::Baseline, "latest"), &pods[3..]).is_empty());
    }
}
