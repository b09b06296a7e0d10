//! The policy's rules evaluated on kube's documented example and its edge cases.

use super::*;
use crate::authz::ResourceAttributes;

fn user(name: &str, groups: &[&str]) -> User {
    User {
        name: name.into(),
        uid: String::new(),
        groups: groups.iter().map(|g| g.to_string()).collect(),
    }
}

fn res(verb: &str, group: &str, resource: &str, sub: &str, ns: &str, name: &str) -> Attributes {
    Attributes::Resource(ResourceAttributes {
        verb: verb.into(),
        group: group.into(),
        resource: resource.into(),
        subresource: sub.into(),
        namespace: ns.into(),
        name: name.into(),
    })
}

fn path(verb: &str, p: &str) -> Attributes {
    Attributes::NonResource {
        verb: verb.into(),
        path: p.into(),
    }
}

/// kube's documented example policy (trimmed), as written in its docs.
const EXAMPLE: &str = r#"
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages:
  - "RequestReceived"
rules:
  - level: RequestResponse
    resources:
    - group: ""
      resources: ["pods"]
  - level: Metadata
    resources:
    - group: ""
      resources: ["pods/log", "pods/status"]
  - level: None
    resources:
    - group: ""
      resources: ["configmaps"]
      resourceNames: ["controller-leader"]
  - level: None
    users: ["system:kube-proxy"]
    verbs: ["watch"]
    resources:
    - group: ""
      resources: ["endpoints", "services"]
  - level: None
    userGroups: ["system:authenticated"]
    nonResourceURLs:
    - "/api*"
    - "/version"
  - level: Request
    resources:
    - group: ""
      resources: ["configmaps"]
    namespaces: ["kube-system"]
  - level: Metadata
    resources:
    - group: ""
      resources: ["secrets", "configmaps"]
  - level: Request
    resources:
    - group: ""
    - group: "extensions"
  - level: Metadata
    omitStages:
      - "RequestReceived"
"#;

#[test]
fn the_documented_example_evaluates_as_kube_does() {
    let p = Policy::parse(EXAMPLE).expect("the example parses");
    let alice = user("alice", &["system:authenticated"]);
    let level = |u: Option<&User>, a: Attributes| p.evaluate(u, &a).level;
    let u = Some(&alice);
    assert_eq!(
        level(u, res("get", "", "pods", "", "d", "p")),
        Level::RequestResponse
    );
    assert_eq!(
        level(u, res("get", "", "pods", "log", "d", "p")),
        Level::Metadata
    );
    // pods/exec is not named: "" with no resources matches every core resource.
    assert_eq!(
        level(u, res("create", "", "pods", "exec", "d", "p")),
        Level::Request
    );
    assert_eq!(
        level(
            u,
            res("get", "", "configmaps", "", "d", "controller-leader")
        ),
        Level::None
    );
    assert_eq!(
        level(u, res("get", "", "configmaps", "", "kube-system", "x")),
        Level::Request
    );
    assert_eq!(
        level(u, res("get", "", "configmaps", "", "d", "x")),
        Level::Metadata
    );
    assert_eq!(
        level(u, res("create", "", "secrets", "", "d", "")),
        Level::Metadata
    );
    let proxy = user("system:kube-proxy", &[]);
    assert_eq!(
        level(Some(&proxy), res("watch", "", "services", "", "", "")),
        Level::None
    );
    assert_eq!(
        level(Some(&proxy), res("list", "", "services", "", "", "")),
        Level::Request
    );
    assert_eq!(level(u, path("get", "/apis/apps/v1")), Level::None);
    assert_eq!(level(u, path("get", "/version")), Level::None);
    // Without a user the group rule does not match; the catch-all does.
    assert_eq!(level(None, path("get", "/version")), Level::Metadata);
    assert_eq!(
        level(u, res("get", "apps", "deployments", "", "d", "w")),
        Level::Metadata
    );
    // Policy-level omitStages join every rule's.
    let c = p.evaluate(u, &res("get", "", "pods", "", "d", "p"));
    assert_eq!(c.omit_stages, BTreeSet::from([Stage::RequestReceived]));
    assert!(!c.omit_managed_fields);
}

#[test]
fn wildcards_subresources_and_defaults() {
    let p = Policy::parse(
        r#"{"apiVersion":"audit.k8s.io/v1","kind":"Policy","omitManagedFields":true,
            "omitStages":["Panic"],
            "rules":[
              {"level":"Request","resources":[{"group":"apps","resources":["*/scale"]}]},
              {"level":"RequestResponse","resources":[{"group":"apps","resources":["deployments/*"]}],
               "omitManagedFields":false, "omitStages":["ResponseStarted"]},
              {"level":"Metadata","resources":[{"group":"","resources":["*"]}],"namespaces":[""]},
              {"level":"None","nonResourceURLs":["/healthz*","*"]}
            ]}"#,
    )
    .expect("parses");
    let u = user("bob", &[]);
    let cfg = |a: Attributes| p.evaluate(Some(&u), &a);
    assert_eq!(
        cfg(res("patch", "apps", "deployments", "scale", "d", "w")).level,
        Level::Request
    );
    let c = cfg(res("get", "apps", "deployments", "status", "d", "w"));
    assert_eq!(c.level, Level::RequestResponse);
    assert!(!c.omit_managed_fields);
    assert_eq!(
        c.omit_stages,
        BTreeSet::from([Stage::ResponseStarted, Stage::Panic])
    );
    // `deployments/*` is the resource with any subresource, and the resource itself.
    assert_eq!(
        cfg(res("get", "apps", "deployments", "", "d", "w")).level,
        Level::RequestResponse
    );
    // namespaces [""] is cluster-scoped requests only.
    assert_eq!(
        cfg(res("get", "", "nodes", "", "", "n1")).level,
        Level::Metadata
    );
    let c = cfg(res("get", "", "pods", "", "d", "p"));
    assert_eq!(c.level, Level::None);
    assert!(c.omit_managed_fields);
    assert_eq!(c.omit_stages, BTreeSet::from([Stage::Panic]));
    assert_eq!(cfg(path("get", "/healthz/etcd")).level, Level::None);
    assert!(path_matches("/healthz", "/healthz*"));
    assert!(!path_matches("/health", "/healthz*"));
    assert!(path_matches("/anything", "*"));
}

#[test]
fn bad_policies_are_refused_naming_the_field() {
    let head = "apiVersion: audit.k8s.io/v1\nkind: Policy\n";
    let err = |body: &str| {
        Policy::parse(&format!("{head}{body}"))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
    };
    let e = err("rules:\n- level: Everything\n");
    assert!(
        e.starts_with("rules[0].level: Unsupported value: \"Everything\""),
        "{e}"
    );
    assert_eq!(
        err("rules:\n- users: [a]\n"),
        "rules[0].level: Required value"
    );
    let e = err("rules:\n- level: None\n  omitStages: [Done]\n");
    assert!(
        e.starts_with("rules[0].omitStages[0]: Invalid value: \"Done\""),
        "{e}"
    );
    let e = err("omitStages: [Later]\nrules:\n- level: None\n");
    assert!(e.starts_with("omitStages[0]"), "{e}");
    let e = err("rules:\n- level: None\n  nonResourceURLs: [healthz]\n");
    assert!(e.contains("must begin with a '/'"), "{e}");
    let e = err("rules:\n- level: None\n  nonResourceURLs: [\"/a*/b\"]\n");
    assert!(e.contains("must be the final character"), "{e}");
    let e = err("rules:\n- level: None\n  nonResourceURLs: [/a]\n  namespaces: [d]\n");
    assert!(
        e.contains("both regular resources and non-resource URLs"),
        "{e}"
    );
    let e = err("rules:\n- level: None\n  resources: [{group: \"\", resourceNames: [x]}]\n");
    assert!(e.contains("requires at least one resource"), "{e}");
    let e = err("rules:\n- level: None\n  resources: [{group: \"apps/v1\"}]\n");
    assert!(e.starts_with("rules[0].resources.group"), "{e}");
    assert_eq!(err("rules: []\n"), "loaded illegal policy with 0 rules");
    let e = Policy::parse("apiVersion: audit.k8s.io/v1beta2\nkind: Policy\nrules: [{level: None}]")
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(e.starts_with("unknown group version"), "{e}");
    let e = err("rules: {level: None}\n");
    assert!(e.starts_with("failed decoding"), "{e}");
}
