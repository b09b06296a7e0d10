//! kube's EncryptionConfiguration (`apiserver.config.k8s.io/v1`), YAML or JSON, checked
//! as kube's `apis/config/validation` checks it; every error names its field
//! (`resources[0].providers[1].aesgcm.keys[0].secret: ...`) and never a secret.
//!
//! Not supported, refused with a message: `kms` providers, wildcard resources (`*.`,
//! `*.*`, `*.<group>`), and 24-byte aesgcm keys (ring has no AES-192-GCM). A resource is
//! `<plural>` or `<plural>.<group>`; Flotilla keeps every kind's objects under
//! `/registry/<plural>/`, so the group only has to be well-formed. A resource named by
//! several entries gets their providers in entry order (kube's rule); the first one
//! seals.

use std::collections::BTreeMap;
use std::sync::Arc;

use base64::Engine;
use serde::Deserialize;

use super::providers::{Key, Kind, Provider, Transformer};

pub const API_VERSION: &str = "apiserver.config.k8s.io/v1";
pub const KIND: &str = "EncryptionConfiguration";

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct File {
    #[serde(default)]
    api_version: String,
    #[serde(default)]
    kind: String,
    #[serde(default)]
    resources: Vec<ResourceConfig>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ResourceConfig {
    #[serde(default)]
    resources: Vec<String>,
    #[serde(default)]
    providers: Vec<ProviderConfig>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ProviderConfig {
    aesgcm: Option<KeysConfig>,
    aescbc: Option<KeysConfig>,
    secretbox: Option<KeysConfig>,
    identity: Option<Empty>,
    kms: Option<serde_yaml::Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeysConfig {
    #[serde(default)]
    keys: Vec<KeyConfig>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyConfig {
    #[serde(default)]
    name: String,
    #[serde(default)]
    secret: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Empty {}

/// The transformer of each configured resource (plural), or every problem found.
pub fn parse(text: &str) -> Result<BTreeMap<String, Transformer>, String> {
    if text.trim().is_empty() {
        return Err("the encryption provider configuration file is empty".into());
    }
    let file: File = serde_yaml::from_str(text).map_err(|e| e.to_string())?;
    let mut errors = vec![];
    if file.api_version != API_VERSION {
        errors.push(format!(
            "apiVersion: must be {API_VERSION:?}, got {:?}",
            file.api_version
        ));
    }
    if file.kind != KIND {
        errors.push(format!("kind: must be {KIND:?}, got {:?}", file.kind));
    }
    if file.resources.is_empty() {
        errors.push("resources: at least one resources entry is required".into());
    }
    let mut out: BTreeMap<String, Vec<Arc<Provider>>> = BTreeMap::new();
    for (i, entry) in file.resources.iter().enumerate() {
        let path = format!("resources[{i}]");
        let mut plurals = vec![];
        if entry.resources.is_empty() {
            errors.push(format!(
                "{path}.resources: at least one resource is required"
            ));
        }
        for (j, r) in entry.resources.iter().enumerate() {
            if entry.resources[..j].contains(r) {
                errors.push(format!(
                    "{path}.resources[{j}]: {r:?}: the same resource cannot be specified multiple times"
                ));
                continue;
            }
            match plural(r) {
                Ok(p) => plurals.push(p),
                Err(e) => errors.push(format!("{path}.resources[{j}]: {r:?}: {e}")),
            }
        }
        if entry.providers.is_empty() {
            errors.push(format!(
                "{path}.providers: at least one provider is required"
            ));
        }
        let mut providers = vec![];
        for (j, p) in entry.providers.iter().enumerate() {
            match provider(p, &format!("{path}.providers[{j}]")) {
                Ok(p) => providers.push(Arc::new(p)),
                Err(mut e) => errors.append(&mut e),
            }
        }
        for p in plurals {
            out.entry(p).or_default().extend(providers.iter().cloned());
        }
    }
    if !errors.is_empty() {
        return Err(errors.join("; "));
    }
    Ok(out
        .into_iter()
        .map(|(r, p)| (r, Transformer::new(p)))
        .collect())
}

/// The plural a configured resource names, whose objects are under `/registry/<plural>/`.
fn plural(r: &str) -> Result<String, String> {
    if r.is_empty() {
        return Err("a resource must not be empty".into());
    }
    if r.to_lowercase() != r {
        return Err("resource name should not contain capital letters".into());
    }
    if r.contains('*') {
        return Err(
            "wildcard resources ('*.', '*.*', '*.<group>') are not supported; list each resource by name, such as \"secrets\""
                .into(),
        );
    }
    let (plural, group) = r.split_once('.').unwrap_or((r, ""));
    let segment = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
    };
    if !segment(plural) || !(group.is_empty() || segment(group)) {
        return Err(
            "must be <resource> or <resource>.<group> (lower case letters, digits, '-')".into(),
        );
    }
    if group == "events.k8s.io" {
        return Err("'*.events.k8s.io' objects are stored using the 'events' API group in etcd. Use 'events' instead in the config file".into());
    }
    if group == "extensions" {
        return Err("'extensions' group has been removed and cannot be used for encryption".into());
    }
    if matches!(
        plural,
        "apiserveripinfo" | "serviceipallocations" | "servicenodeportallocations"
    ) {
        return Err("resources which do not have REST API/s cannot be encrypted".into());
    }
    Ok(plural.to_string())
}

fn provider(p: &ProviderConfig, path: &str) -> Result<Provider, Vec<String>> {
    let set = [
        p.aesgcm.is_some(),
        p.aescbc.is_some(),
        p.secretbox.is_some(),
        p.identity.is_some(),
        p.kms.is_some(),
    ]
    .iter()
    .filter(|s| **s)
    .count();
    if set == 0 {
        return Err(vec![format!(
            "{path}: provider does not contain any of the expected providers: aesgcm, aescbc, secretbox, identity"
        )]);
    }
    if set > 1 {
        return Err(vec![format!(
            "{path}: more than one provider specified in a single element, should split into different list elements"
        )]);
    }
    if p.kms.is_some() {
        return Err(vec![format!(
            "{path}.kms: KMS providers are not supported; use aesgcm, aescbc or secretbox"
        )]);
    }
    let (kind, keys) = match (&p.aesgcm, &p.aescbc, &p.secretbox) {
        (Some(k), _, _) => (Kind::AesGcm, k),
        (_, Some(k), _) => (Kind::AesCbc, k),
        (_, _, Some(k)) => (Kind::Secretbox, k),
        _ => return Ok(Provider::Identity),
    };
    let path = format!("{path}.{}.keys", kind.name());
    if keys.keys.is_empty() {
        return Err(vec![format!("{path}: at least one key is required")]);
    }
    let mut errors = vec![];
    let mut out = vec![];
    for (i, k) in keys.keys.iter().enumerate() {
        match key(kind, k) {
            Ok(k) => out.push(k),
            Err(e) => errors.push(format!("{path}[{i}].{e}")),
        }
    }
    if errors.is_empty() {
        Ok(Provider::Keys(out))
    } else {
        Err(errors)
    }
}

/// One key; an error starts with the field it is about.
fn key(kind: Kind, k: &KeyConfig) -> Result<Key, String> {
    if k.name.is_empty() {
        return Err("name: name is a mandatory field for a key".into());
    }
    if k.secret.is_empty() {
        return Err("secret: secret is a mandatory field for a key".into());
    }
    let secret = base64::engine::general_purpose::STANDARD
        .decode(k.secret.trim())
        .map_err(|_| "secret: secrets must be base64 encoded".to_string())?;
    Key::new(kind, &k.name, &secret).map_err(|e| format!("secret: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(b: &[u8]) -> String {
        base64::engine::general_purpose::STANDARD.encode(b)
    }

    fn with_providers(providers: &str) -> String {
        format!(
            "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n  - resources: [secrets]\n    providers:\n{providers}"
        )
    }

    fn error(text: &str) -> String {
        match parse(text) {
            Ok(_) => panic!("accepted:\n{text}"),
            Err(e) => e,
        }
    }

    #[test]
    fn encrypt_config_reads_kubes_yaml_and_json() {
        // The example of kube's documentation, less the wildcard entries and with a
        // 32-byte third key (its 25-byte one is not a valid AES key).
        let yaml = "kind: EncryptionConfiguration
apiVersion: apiserver.config.k8s.io/v1
resources:
- resources:
  - events
  providers:
  - identity: {}
- resources:
  - secrets
  - configmaps
  - pandas.awesome.bears.example
  providers:
  - aescbc:
      keys:
      - name: key1
        secret: c2VjcmV0IGlzIHNlY3VyZQ==
  - secretbox:
      keys:
      - name: key2
        secret: YWJjZGVmZ2hpamtsbW5vcHFyc3R1dnd4eXoxMjM0NTY=
- resources:
  - deployments.apps
  - secrets
  providers:
  - aesgcm:
      keys:
      - name: key3
        secret: c2VjcmV0IGlzIHNlY3VyZSwgSSB0aGluayBzbyB0b28=
";
        let r = parse(yaml).unwrap();
        let names: Vec<&str> = r.keys().map(String::as_str).collect();
        assert_eq!(
            names,
            ["configmaps", "deployments", "events", "pandas", "secrets"]
        );
        // Each resource's first provider seals; secrets, named by two entries, get the
        // first entry's providers first; identity seals nothing.
        let seal = |resource: &str| r[resource].seal(b"/registry/x/y", b"{}").unwrap();
        assert!(seal("secrets")
            .unwrap()
            .starts_with(b"k8s:enc:aescbc:v1:key1:"));
        assert!(seal("deployments")
            .unwrap()
            .starts_with(b"k8s:enc:aesgcm:v1:key3:"));
        assert_eq!(seal("events"), None);
        // A secret sealed with the third entry's key still opens.
        let key3 = &r["deployments"]
            .seal(b"/registry/x/y", b"{}")
            .unwrap()
            .unwrap();
        assert_eq!(
            r["secrets"].open(b"/registry/x/y", key3).unwrap(),
            Some(b"{}".to_vec())
        );

        // kube's testdata aes-cbc-multiple-keys.json (JSON is YAML too).
        let json = r#"{
  "kind": "EncryptionConfiguration",
  "apiVersion": "apiserver.config.k8s.io/v1",
  "resources": [
    {
      "resources": ["secrets"],
      "providers": [
        {"aescbc": {"keys": [
          {"name": "A", "secret": "Owq7A4JrJpSjrvH8kXkvl4JmOLzvZ6j9BcGRkR8OPQ4="},
          {"name": "B", "secret": "+qcnfOFX3aRXM9PuY7lQXDWYIQ3GWUdBc3nYBo91SCA="}
        ]}}
      ]
    }
  ]
}"#;
        assert!(parse(json).unwrap().contains_key("secrets"));
    }

    #[test]
    fn encrypt_config_errors_name_the_field() {
        let gcm = |secret: &str| {
            with_providers(&format!(
                "      - aesgcm:\n          keys:\n            - name: key1\n              secret: {secret}\n"
            ))
        };
        let e = error(&gcm(&b64(b"short")));
        assert!(
            e.contains("resources[0].providers[0].aesgcm.keys[0].secret: secret is not of the expected length, got 5"),
            "{e}"
        );
        let e = error(&gcm("not base64!"));
        assert!(
            e.contains("keys[0].secret: secrets must be base64 encoded"),
            "{e}"
        );
        let e = error(&gcm(&b64(&[0u8; 24])));
        assert!(e.contains("keys[0].secret: 24-byte (AES-192)"), "{e}");
        let e = error(&with_providers(
            "      - secretbox:\n          keys:\n            - name: k\n              secret: c2VjcmV0IGlzIHNlY3VyZQ==\n",
        ));
        assert!(e.contains("providers[0].secretbox.keys[0].secret: secret is not of the expected length, got 16, expected one of [32]"), "{e}");
        let e = error(&with_providers("      - aescbc:\n          keys: []\n"));
        assert!(
            e.contains("providers[0].aescbc.keys: at least one key is required"),
            "{e}"
        );
        let e = error(&with_providers(&format!(
            "      - aescbc:\n          keys:\n            - secret: {}\n",
            b64(&[1u8; 32])
        )));
        assert!(
            e.contains("aescbc.keys[0].name: name is a mandatory field"),
            "{e}"
        );
        let e = error(&with_providers(
            "      - identity: {}\n        aescbc: {keys: []}\n",
        ));
        assert!(e.contains("providers[0]: more than one provider"), "{e}");
        let e = error(&with_providers(
            "      - kms:\n          name: p\n          endpoint: unix:///k.sock\n",
        ));
        assert!(
            e.contains("providers[0].kms: KMS providers are not supported"),
            "{e}"
        );
        let e = error(&with_providers("      - aesgmc: {}\n"));
        assert!(
            e.contains("resources[0].providers[0]") && e.contains("aesgmc"),
            "{e}"
        );
        let e = error(
            &with_providers("      - identity: {}\n").replace("[secrets]", "['*.*', Secrets]"),
        );
        assert!(
            e.contains("resources[0].resources[0]: \"*.*\": wildcard"),
            "{e}"
        );
        assert!(
            e.contains(
                "resources[0].resources[1]: \"Secrets\": resource name should not contain capital"
            ),
            "{e}"
        );
        let e = error(
            &with_providers("      - identity: {}\n")
                .replace("[secrets]", "[events.events.k8s.io, secrets, secrets]"),
        );
        assert!(e.contains("resources[0].resources[0]"), "{e}");
        assert!(
            e.contains("resources[0].resources[2]: \"secrets\": the same resource"),
            "{e}"
        );
        let e = error(
            &with_providers("      - identity: {}\n").replace("apiserver.config.k8s.io/v1", "v1"),
        );
        assert!(
            e.contains("apiVersion: must be \"apiserver.config.k8s.io/v1\", got \"v1\""),
            "{e}"
        );
        let e = error("kind: EncryptionConfiguration\napiVersion: apiserver.config.k8s.io/v1\n");
        assert!(e.contains("resources: at least one"), "{e}");
        assert!(error("  \n").contains("empty"));
        // A secret never appears in an error.
        let secret = b64(&[0x5au8; 20]);
        assert!(!error(&gcm(&secret)).contains(&secret));
    }
}
