//! A container's environment as the kubelet builds it: `envFrom` first, then `env` in
//! order, `valueFrom` resolved (configMapKeyRef, secretKeyRef, fieldRef,
//! resourceFieldRef), and `$(VAR)` references to earlier variables expanded in values,
//! command and args (`$$` escapes). Pure; the worker fetches the ConfigMaps and Secrets
//! named by `sources` first.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::{Container, Pod};

/// The data of the ConfigMaps and Secrets a container refers to, by name; a missing name
/// is an object that does not exist.
#[derive(Default, Debug)]
pub struct Sources {
    pub config_maps: BTreeMap<String, BTreeMap<String, String>>,
    pub secrets: BTreeMap<String, BTreeMap<String, Vec<u8>>>,
    /// Each bound claim's volume on this host: its path, and whether it is made when
    /// missing (a hostPath of type DirectoryOrCreate).
    pub claims: BTreeMap<String, (std::path::PathBuf, bool)>,
}

/// What `resolve` needs from the pod's world.
pub struct Fields<'a> {
    pub pod_ip: &'a str,
    pub host_ip: &'a str,
    pub node_name: &'a str,
}

/// The names of the ConfigMaps and Secrets `c` refers to.
pub fn sources(c: &Container) -> (BTreeSet<String>, BTreeSet<String>) {
    let mut cms = BTreeSet::new();
    let mut secrets = BTreeSet::new();
    for f in c.env_from.iter().flatten() {
        if let Some(r) = &f.config_map_ref {
            cms.insert(r.name.clone());
        }
        if let Some(r) = &f.secret_ref {
            secrets.insert(r.name.clone());
        }
    }
    for e in c.env.iter().flatten() {
        if let Some(v) = &e.value_from {
            if let Some(r) = &v.config_map_key_ref {
                cms.insert(r.name.clone());
            }
            if let Some(r) = &v.secret_key_ref {
                secrets.insert(r.name.clone());
            }
        }
    }
    (cms, secrets)
}

/// `$(NAME)` expanded from `vars`; unknown references stay as written; `$$` is `$`.
pub fn expand(s: &str, vars: &BTreeMap<String, String>) -> String {
    let mut out = String::with_capacity(s.len());
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'$' && i + 1 < b.len() {
            if b[i + 1] == b'$' {
                out.push('$');
                i += 2;
                continue;
            }
            if b[i + 1] == b'(' {
                if let Some(end) = s[i + 2..].find(')') {
                    let name = &s[i + 2..i + 2 + end];
                    match vars.get(name) {
                        Some(v) => out.push_str(v),
                        None => out.push_str(&s[i..i + 3 + end]),
                    }
                    i += 3 + end;
                    continue;
                }
            }
        }
        let ch = s[i..].chars().next().unwrap_or('\0');
        out.push(ch);
        i += ch.len_utf8().max(1);
    }
    out
}

fn field(pod: &Pod, f: &Fields, path: &str) -> Result<String, String> {
    let md = &pod.metadata;
    let spec = pod.spec.as_ref();
    Ok(match path {
        "metadata.name" => md.name.clone().unwrap_or_default(),
        "metadata.namespace" => md.namespace.clone().unwrap_or_default(),
        "metadata.uid" => md.uid.clone().unwrap_or_default(),
        "spec.nodeName" => f.node_name.to_string(),
        "spec.serviceAccountName" => spec
            .and_then(|s| s.service_account_name.clone())
            .unwrap_or_default(),
        "status.podIP" | "status.podIPs" => f.pod_ip.to_string(),
        "status.hostIP" | "status.hostIPs" => f.host_ip.to_string(),
        p => {
            let (map, key) = if let Some(k) = p.strip_prefix("metadata.labels['") {
                (md.labels.as_ref(), k)
            } else if let Some(k) = p.strip_prefix("metadata.annotations['") {
                (md.annotations.as_ref(), k)
            } else {
                return Err(format!("unsupported fieldRef {p:?}"));
            };
            let key = key
                .strip_suffix("']")
                .ok_or(format!("bad fieldRef {p:?}"))?;
            map.and_then(|m| m.get(key)).cloned().unwrap_or_default()
        }
    })
}

fn resource(c: &Container, resource: &str, divisor: Option<&str>) -> Result<String, String> {
    let res = c.resources.as_ref();
    let (kind, name) = resource
        .split_once('.')
        .ok_or(format!("unsupported resourceFieldRef {resource:?}"))?;
    let m = match kind {
        "limits" => res.and_then(|r| r.limits.as_ref()),
        "requests" => res.and_then(|r| r.requests.as_ref()),
        _ => return Err(format!("unsupported resourceFieldRef {resource:?}")),
    };
    let q = m.and_then(|m| m.get(name)).map(|q| q.0.clone());
    let Some(q) = q else {
        return Ok("0".to_string());
    };
    let v = flotilla_core::quantity::parse(&q).ok_or(format!("bad quantity {q:?}"))?;
    let d = divisor
        .and_then(flotilla_core::quantity::parse)
        .filter(|d| *d > 0.0)
        .unwrap_or(1.0);
    Ok(format!("{}", (v / d).ceil() as i64))
}

/// The container's environment, in order, or the reason it cannot be built (shown as
/// CreateContainerConfigError). `services` (`service_env.rs`) come first; the
/// container's own variables of the same name replace them, and `$(VAR)` sees them.
pub fn resolve(
    pod: &Pod,
    c: &Container,
    f: &Fields,
    src: &Sources,
    services: &[(String, String)],
) -> Result<Vec<(String, String)>, String> {
    let mut vars: BTreeMap<String, String> = BTreeMap::new();
    let mut order: Vec<String> = Vec::new();
    let mut set = |vars: &mut BTreeMap<String, String>, k: String, v: String| {
        if !vars.contains_key(&k) {
            order.push(k.clone());
        }
        vars.insert(k, v);
    };
    for (k, v) in services {
        set(&mut vars, k.clone(), v.clone());
    }
    for from in c.env_from.iter().flatten() {
        let prefix = from.prefix.clone().unwrap_or_default();
        let text = |m: &BTreeMap<String, Vec<u8>>| -> BTreeMap<String, String> {
            m.iter()
                .map(|(k, v)| (k.clone(), String::from_utf8_lossy(v).into_owned()))
                .collect()
        };
        let (data, name, optional, what) = if let Some(r) = &from.config_map_ref {
            let d = src.config_maps.get(&r.name).cloned();
            (d, &r.name, r.optional, "configmap")
        } else if let Some(r) = &from.secret_ref {
            (
                src.secrets.get(&r.name).map(text),
                &r.name,
                r.optional,
                "secret",
            )
        } else {
            continue;
        };
        match data {
            Some(d) => {
                for (k, v) in d {
                    set(&mut vars, format!("{prefix}{k}"), v);
                }
            }
            None if optional == Some(true) => {}
            None => return Err(format!("{what} \"{name}\" not found")),
        }
    }
    for e in c.env.iter().flatten() {
        let value = match &e.value_from {
            None => expand(e.value.as_deref().unwrap_or(""), &vars),
            Some(v) => {
                if let Some(r) = &v.config_map_key_ref {
                    match src.config_maps.get(&r.name).map(|d| d.get(&r.key)) {
                        Some(Some(v)) => v.clone(),
                        _ if r.optional == Some(true) => continue,
                        Some(None) => {
                            return Err(format!(
                                "couldn't find key {} in ConfigMap {}/{}",
                                r.key,
                                pod.metadata.namespace.as_deref().unwrap_or(""),
                                r.name
                            ))
                        }
                        None => return Err(format!("configmap \"{}\" not found", r.name)),
                    }
                } else if let Some(r) = &v.secret_key_ref {
                    match src.secrets.get(&r.name).map(|d| d.get(&r.key)) {
                        Some(Some(v)) => String::from_utf8_lossy(v).into_owned(),
                        _ if r.optional == Some(true) => continue,
                        Some(None) => {
                            return Err(format!(
                                "couldn't find key {} in Secret {}/{}",
                                r.key,
                                pod.metadata.namespace.as_deref().unwrap_or(""),
                                r.name
                            ))
                        }
                        None => return Err(format!("secret \"{}\" not found", r.name)),
                    }
                } else if let Some(r) = &v.field_ref {
                    field(pod, f, &r.field_path)?
                } else if let Some(r) = &v.resource_field_ref {
                    resource(c, &r.resource, r.divisor.as_ref().map(|q| q.0.as_str()))?
                } else {
                    String::new()
                }
            }
        };
        set(&mut vars, e.name.clone(), value);
    }
    Ok(order
        .into_iter()
        .map(|k| {
            let v = vars.get(&k).cloned().unwrap_or_default();
            (k, v)
        })
        .collect())
}

/// The command and args with `$(VAR)` expanded from the container's environment.
pub fn command(c: &Container, env: &[(String, String)]) -> (Vec<String>, Vec<String>) {
    let vars: BTreeMap<String, String> = env.iter().cloned().collect();
    let ex = |v: &Option<Vec<String>>| -> Vec<String> {
        v.iter().flatten().map(|s| expand(s, &vars)).collect()
    };
    (ex(&c.command), ex(&c.args))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{
        ConfigMapKeySelector, EnvFromSource, EnvVar, EnvVarSource, ObjectFieldSelector,
        SecretEnvSource,
    };

    fn pod() -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "namespace": "ns", "uid": "u1", "labels": {"app": "web"}},
            "spec": {"containers": [{"name": "c"}]}
        }))
        .unwrap()
    }

    const F: Fields = Fields {
        pod_ip: "10.1.2.3",
        host_ip: "192.168.0.1",
        node_name: "n1",
    };

    #[test]
    fn expansion_follows_kubernetes() {
        let vars: BTreeMap<String, String> = [("A".to_string(), "x".to_string())].into();
        assert_eq!(expand("$(A)-$(B)-$$(A)-$", &vars), "x-$(B)-$(A)-$");
        assert_eq!(expand("é$(A", &vars), "é$(A");
    }

    #[test]
    fn values_from_everywhere_in_order() {
        let mut c = Container {
            name: "c".into(),
            ..Default::default()
        };
        c.env_from = Some(vec![EnvFromSource {
            prefix: Some("S_".into()),
            secret_ref: Some(SecretEnvSource {
                name: "s".into(),
                optional: None,
            }),
            ..Default::default()
        }]);
        let from = |path: &str| EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: path.into(),
                api_version: None,
            }),
            ..Default::default()
        };
        c.env = Some(vec![
            EnvVar {
                name: "NAME".into(),
                value_from: Some(from("metadata.name")),
                ..Default::default()
            },
            EnvVar {
                name: "IP".into(),
                value_from: Some(from("status.podIP")),
                ..Default::default()
            },
            EnvVar {
                name: "APP".into(),
                value_from: Some(from("metadata.labels['app']")),
                ..Default::default()
            },
            EnvVar {
                name: "GREETING".into(),
                value_from: Some(EnvVarSource {
                    config_map_key_ref: Some(ConfigMapKeySelector {
                        name: "cm".into(),
                        key: "hello".into(),
                        optional: None,
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            },
            EnvVar {
                name: "URL".into(),
                value: Some("http://$(IP):80/$(NAME)".into()),
                ..Default::default()
            },
        ]);
        let mut src = Sources::default();
        src.secrets
            .insert("s".into(), [("TOKEN".to_string(), b"t".to_vec())].into());
        src.config_maps.insert(
            "cm".into(),
            [("hello".to_string(), "hi".to_string())].into(),
        );
        let env = resolve(&pod(), &c, &F, &src, &[]).unwrap();
        let want: Vec<(String, String)> = [
            ("S_TOKEN", "t"),
            ("NAME", "p"),
            ("IP", "10.1.2.3"),
            ("APP", "web"),
            ("GREETING", "hi"),
            ("URL", "http://10.1.2.3:80/p"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(env, want);
        assert_eq!(sources(&c).0.into_iter().collect::<Vec<_>>(), vec!["cm"]);

        // Service variables come first, lose to the container's own, and expand.
        let mut c2 = c.clone();
        c2.env.get_or_insert_with(Vec::new).push(EnvVar {
            name: "API".into(),
            value: Some("https://$(KUBERNETES_SERVICE_HOST):$(KUBERNETES_SERVICE_PORT)".into()),
            ..Default::default()
        });
        let services = [
            (
                "KUBERNETES_SERVICE_HOST".to_string(),
                "10.96.0.1".to_string(),
            ),
            ("KUBERNETES_SERVICE_PORT".to_string(), "443".to_string()),
            ("NAME".to_string(), "from-a-service".to_string()),
        ];
        let env = resolve(&pod(), &c2, &F, &src, &services).unwrap();
        assert_eq!(env[0], services[0]);
        let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("NAME"), Some("p"), "the container's own wins");
        assert_eq!(get("API"), Some("https://10.96.0.1:443"));
        assert_eq!(env.iter().filter(|(k, _)| k == "NAME").count(), 1);

        // A missing ConfigMap is the kubelet's error, unless optional.
        src.config_maps.clear();
        assert_eq!(
            resolve(&pod(), &c, &F, &src, &[]).unwrap_err(),
            "configmap \"cm\" not found"
        );
    }
}
