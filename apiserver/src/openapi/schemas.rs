//! The schemas of a group-version's kinds, generated from the `k8s-openapi` types (through
//! their `schemars` implementations) and completed with what Kubernetes adds: each kind's
//! `x-kubernetes-group-version-kind`, and the patch strategies and list types of fields
//! (`patch::meta`), which kubectl reads for client-side apply and server-side apply uses.

use serde_json::{json, Map, Value};

use crate::kinds::Strategy;
use crate::patch::meta;

/// Every schema the given kinds need, keyed by name (`io.k8s.api.core.v1.Pod`), with
/// references of the form `#/components/schemas/<name>`.
pub fn definitions<'a>(kinds: impl Iterator<Item = &'a dyn Strategy>) -> Map<String, Value> {
    let mut generator =
        k8s_openapi::schemars::generate::SchemaSettings::openapi3().into_generator();
    let mut roots = Vec::new();
    for k in kinds {
        let name = k.add_schema(&mut generator);
        let i = k.info();
        roots.push((
            name,
            json!({ "group": i.group, "kind": i.kind, "version": i.version }),
        ));
    }
    let mut defs = generator.take_definitions(true);
    for (name, gvk) in roots {
        if let Some(Value::Object(d)) = defs.get_mut(&name) {
            d.insert("x-kubernetes-group-version-kind".into(), json!([gvk]));
        }
    }
    for (name, def) in defs.iter_mut() {
        let Some(Value::Object(props)) = def.get_mut("properties") else {
            continue;
        };
        for (field, prop) in props.iter_mut() {
            let Some(s) = meta::strategy(name, field) else {
                continue;
            };
            let Value::Object(p) = prop else { continue };
            p.insert("x-kubernetes-patch-strategy".into(), s.strategy.into());
            if !s.merge_key.is_empty() {
                p.insert("x-kubernetes-patch-merge-key".into(), s.merge_key.into());
            }
            if s.strategy.split(',').any(|x| x == "merge") {
                if s.merge_key.is_empty() {
                    p.insert("x-kubernetes-list-type".into(), "set".into());
                } else {
                    let keys: Vec<&str> = if s.list_keys.is_empty() {
                        vec![s.merge_key]
                    } else {
                        s.list_keys.to_vec()
                    };
                    p.insert("x-kubernetes-list-type".into(), "map".into());
                    p.insert("x-kubernetes-list-map-keys".into(), json!(keys));
                }
            }
        }
    }
    defs
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kinds::Kinds;

    #[test]
    fn schemas_carry_kinds_and_patch_strategies() {
        let kinds = Kinds::all();
        let defs = definitions(kinds.iter().collect::<Vec<_>>().iter().map(|k| k.as_ref()));
        let pod = &defs["io.k8s.api.core.v1.Pod"];
        assert_eq!(
            pod["x-kubernetes-group-version-kind"],
            json!([{"group": "", "kind": "Pod", "version": "v1"}])
        );
        let containers = &defs["io.k8s.api.core.v1.PodSpec"]["properties"]["containers"];
        assert_eq!(containers["x-kubernetes-patch-merge-key"], "name");
        assert_eq!(containers["x-kubernetes-patch-strategy"], "merge");
        assert_eq!(
            meta::ref_name(&containers["items"]),
            Some("io.k8s.api.core.v1.Container")
        );
        let ports = &defs["io.k8s.api.core.v1.Container"]["properties"]["ports"];
        assert_eq!(
            ports["x-kubernetes-list-map-keys"],
            json!(["containerPort", "protocol"])
        );
        // Every reference resolves inside the same set of definitions.
        let text = serde_json::to_string(&defs).unwrap_or_default();
        for r in text.split("\"$ref\":\"#/components/schemas/").skip(1) {
            let name = r.split('"').next().unwrap_or("");
            assert!(
                defs.contains_key(name),
                "{name} is referenced but not defined"
            );
        }
    }
}
