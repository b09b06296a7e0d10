//! Discovery documents (`/api`, `/api/v1`, `/apis`, `/apis/<group>[/<version>]`) and
//! `/version`, built from the served kinds so kubectl resolves names and short names.

pub mod aggregated;

use serde_json::{json, Value};

use crate::kinds::Kinds;

/// The Kubernetes version whose API is served (the k8s-openapi types it is built on).
pub const KUBE_MINOR: &str = "33";

pub fn version() -> Value {
    json!({
        "major": "1",
        "minor": KUBE_MINOR,
        "gitVersion": format!("v1.{KUBE_MINOR}.0-flotilla.{}", env!("CARGO_PKG_VERSION")),
        "gitCommit": "",
        "gitTreeState": "clean",
        "buildDate": "",
        "goVersion": "",
        "compiler": "rustc",
        "platform": format!("{}/{}", std::env::consts::OS, match std::env::consts::ARCH { "x86_64" => "amd64", "aarch64" => "arm64", a => a }),
    })
}

pub fn core_versions(server: &str) -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{ "clientCIDR": "0.0.0.0/0", "serverAddress": server }],
    })
}

/// Where a version sorts in kube's order (`CompareKubeAwareVersionStrings`): GA before
/// beta before alpha, higher major then higher minor first, then any other name
/// alphabetically: v10, v2, v1, v11beta2, v10beta3, v3beta1, v12alpha1, v11alpha2, foo1.
pub fn version_priority(v: &str) -> (u8, std::cmp::Reverse<u64>, std::cmp::Reverse<u64>, &str) {
    use std::cmp::Reverse;
    let other = (3, Reverse(0), Reverse(0), v);
    let Some(rest) = v.strip_prefix('v') else {
        return other;
    };
    let digits = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    let Ok(major) = rest[..digits].parse::<u64>() else {
        return other;
    };
    let tail = &rest[digits..];
    if tail.is_empty() {
        return (0, Reverse(major), Reverse(0), "");
    }
    for (class, stage) in [(1, "beta"), (2, "alpha")] {
        if let Some(n) = tail.strip_prefix(stage) {
            if let Ok(minor) = n.parse::<u64>() {
                return (class, Reverse(major), Reverse(minor), "");
            }
        }
    }
    other
}

/// Every group with its versions in kube's priority order (the first is the preferred
/// version).
fn groups(kinds: &Kinds) -> Vec<(&'static str, Vec<&'static str>)> {
    let mut out: Vec<(&str, Vec<&str>)> = Vec::new();
    for k in kinds.iter() {
        let i = k.info();
        if i.group.is_empty() {
            continue;
        }
        let versions = match out.iter_mut().find(|(g, _)| *g == i.group) {
            Some((_, v)) => v,
            None => {
                out.push((i.group, Vec::new()));
                &mut out.last_mut().expect("just pushed").1
            }
        };
        if !versions.contains(&i.version) {
            versions.push(i.version);
        }
    }
    for (_, versions) in &mut out {
        versions.sort_by(|a, b| version_priority(a).cmp(&version_priority(b)));
    }
    out
}

fn group_json(group: &str, versions: &[&str]) -> Value {
    let gvs: Vec<Value> = versions
        .iter()
        .map(|v| json!({ "groupVersion": format!("{group}/{v}"), "version": v }))
        .collect();
    json!({ "name": group, "versions": gvs, "preferredVersion": gvs.first() })
}

pub fn group_list(kinds: &Kinds) -> Value {
    let groups: Vec<Value> = groups(kinds)
        .into_iter()
        .map(|(g, v)| group_json(g, &v))
        .collect();
    json!({ "kind": "APIGroupList", "apiVersion": "v1", "groups": groups })
}

pub fn group(kinds: &Kinds, name: &str) -> Option<Value> {
    let (g, v) = groups(kinds).into_iter().find(|(g, _)| *g == name)?;
    let mut doc = group_json(g, &v);
    doc["kind"] = "APIGroup".into();
    doc["apiVersion"] = "v1".into();
    Some(doc)
}

const VERBS: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

pub fn resource_list(kinds: &Kinds, group: &str, version: &str) -> Option<Value> {
    let mut resources = Vec::new();
    for k in kinds.iter() {
        let i = k.info();
        if i.group != group || i.version != version {
            continue;
        }
        let mut r = json!({
            "name": i.plural,
            "singularName": i.singular,
            "namespaced": i.namespaced,
            "kind": i.kind,
            "verbs": VERBS,
        });
        if !i.short_names.is_empty() {
            r["shortNames"] = json!(i.short_names);
        }
        if !i.categories.is_empty() {
            r["categories"] = json!(i.categories);
        }
        resources.push(r);
        for sub in &i.subresources {
            let mut r = json!({
                "name": format!("{}/{}", i.plural, sub.name),
                "singularName": "",
                "namespaced": i.namespaced,
                "kind": sub.kind,
                "verbs": sub.verbs,
            });
            if let Some((g, v)) = sub.group_version {
                r["group"] = g.into();
                r["version"] = v.into();
            }
            resources.push(r);
        }
    }
    // Create-only collections of subresources (`bindings`), after every kind.
    for k in kinds.iter() {
        let i = k.info();
        if i.group != group || i.version != version {
            continue;
        }
        for sub in &i.subresources {
            if let Some(c) = sub.collection {
                resources.push(json!({ "name": c, "singularName": sub.name, "namespaced": i.namespaced, "kind": sub.kind, "verbs": ["create"] }));
            }
        }
    }
    if resources.is_empty() {
        return None;
    }
    let gv = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    Some(
        json!({ "kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_sort_as_kube_sorts_them() {
        let mut v = vec![
            "foo10",
            "v1",
            "v11alpha2",
            "v2",
            "v12alpha1",
            "v3beta1",
            "foo1",
            "v10beta3",
            "v11beta2",
            "v10",
        ];
        v.sort_by(|a, b| version_priority(a).cmp(&version_priority(b)));
        assert_eq!(
            v,
            [
                "v10",
                "v2",
                "v1",
                "v11beta2",
                "v10beta3",
                "v3beta1",
                "v12alpha1",
                "v11alpha2",
                "foo1",
                "foo10"
            ]
        );
    }

    #[test]
    fn core_and_apps_are_listed_with_short_names() {
        let k = Kinds::all();
        let core = resource_list(&k, "", "v1").unwrap();
        let pods = core["resources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == "pods")
            .unwrap();
        assert_eq!(pods["shortNames"], json!(["po"]));
        assert_eq!(pods["namespaced"], true);
        let nodes = core["resources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == "nodes")
            .unwrap();
        assert_eq!(nodes["namespaced"], false);
        let apps = resource_list(&k, "apps", "v1").unwrap();
        assert!(apps["resources"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["name"] == "deployments" && r["shortNames"] == json!(["deploy"])));
        assert!(group(&k, "coordination.k8s.io").is_some());
        assert!(resource_list(&k, "apps", "v2").is_none());
    }
}
