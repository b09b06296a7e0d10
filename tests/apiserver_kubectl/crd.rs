//! CustomResourceDefinitions through kubectl, over two apiservers of one store: a CRD and
//! its objects applied from one directory, served by the other replica, with the schema's
//! defaults, validation (CEL rules too), pruning, printer columns, `explain`, the status and scale
//! subresources, name conflicts, and deletion with the objects.

use std::path::Path;
use std::time::Duration;

use super::common::k8s::{kubectl, kubectl_ok, kubectl_stdin, Apiservers};
use super::common::wait_for;
use super::{json_of, stderr};

const CRD: &str = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: crontabs.stable.example.com
spec:
  group: stable.example.com
  scope: Namespaced
  names:
    plural: crontabs
    singular: crontab
    kind: CronTab
    shortNames: [ct]
  versions:
  - name: v1
    served: true
    storage: true
    subresources:
      status: {}
      scale:
        specReplicasPath: .spec.replicas
        statusReplicasPath: .status.replicas
        labelSelectorPath: .status.labelSelector
    additionalPrinterColumns:
    - {name: Spec, type: string, jsonPath: .spec.cronSpec}
    - {name: Replicas, type: integer, jsonPath: .spec.replicas}
    - {name: Age, type: date, jsonPath: .metadata.creationTimestamp}
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            x-kubernetes-validations:
            - rule: "!has(self.image) || !self.image.endsWith(':latest')"
              message: image must not use the latest tag
            properties:
              cronSpec:
                type: string
                description: How often the job runs, in cron's syntax.
                pattern: '^(\d+|\*)(/\d+)?(\s+(\d+|\*)(/\d+)?){4}$'
                x-kubernetes-validations:
                - {rule: self == oldSelf, message: cronSpec is immutable}
              image: {type: string}
              replicas: {type: integer, minimum: 1, maximum: 10, default: 1}
          status:
            type: object
            properties:
              replicas: {type: integer}
              labelSelector: {type: string}
"#;

fn crontab(name: &str, spec: &str) -> String {
    format!(
        "apiVersion: stable.example.com/v1\nkind: CronTab\nmetadata:\n  name: {name}\nspec:\n{spec}\n"
    )
}

async fn established(kc: &Path, crd: &str) {
    let crd = crd.to_string();
    wait_for(Duration::from_secs(30), "the CRD established", || {
        let kc = kc.to_path_buf();
        let crd = crd.clone();
        async move {
            let c = json_of(&kc, &["get", "crd", &crd]);
            c["status"]["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|c| c["type"] == "Established" && c["status"] == "True")
                .then_some(())
        }
    })
    .await;
}

pub async fn custom_resources(a: &Apiservers) {
    let kc0 = a.kubeconfig(0).to_path_buf();
    let kc1 = a.kubeconfig(1).to_path_buf();
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("a-crd.yaml"), CRD).unwrap();
    std::fs::write(
        dir.path().join("b-crontab.yaml"),
        crontab(
            "my-new-cron-object",
            "  cronSpec: '* * * * */5'\n  image: my-cron-image",
        ),
    )
    .unwrap();
    let d = dir.path().to_str().unwrap();

    // kubectl maps every object of a directory before creating any: on the first apply
    // the CronTab's kind is not known yet (kubectl says "ensure CRDs are installed
    // first"), as with kube-apiserver; once the CRD is established, applying again creates
    // it, through the other replica.
    let first = kubectl(&kc0, &["apply", "-f", d]);
    let out = String::from_utf8_lossy(&first.stdout);
    assert!(
        out.contains(
            "customresourcedefinition.apiextensions.k8s.io/crontabs.stable.example.com created"
        ),
        "{out}{}",
        stderr(&first)
    );
    kubectl_ok(
        &kc1,
        &[
            "wait",
            "--for",
            "condition=established",
            "--timeout=30s",
            "crd/crontabs.stable.example.com",
        ],
    );
    let crd = json_of(&kc1, &["get", "crd", "crontabs.stable.example.com"]);
    let conds = crd["status"]["conditions"].to_string();
    assert!(
        conds.contains("NoConflicts") && conds.contains("InitialNamesAccepted"),
        "{crd}"
    );
    assert_eq!(crd["status"]["acceptedNames"]["kind"], "CronTab", "{crd}");
    assert_eq!(
        crd["status"]["storedVersions"],
        serde_json::json!(["v1"]),
        "{crd}"
    );
    let again = kubectl_ok(&kc1, &["apply", "-f", d]);
    assert!(
        again.contains("crontab.stable.example.com/my-new-cron-object created")
            || again.contains("crontab.stable.example.com/my-new-cron-object unchanged"),
        "{again}"
    );

    // Served by both replicas, by plural, singular and short name, with the CRD's columns
    // and the schema's default (replicas 1).
    for kc in [&kc0, &kc1] {
        let table = kubectl_ok(kc, &["get", "ct"]);
        let mut lines = table.lines();
        let header: Vec<&str> = lines.next().unwrap_or("").split_whitespace().collect();
        assert_eq!(header, ["NAME", "SPEC", "REPLICAS", "AGE"], "{table}");
        let row = lines.next().unwrap_or("");
        assert!(
            row.starts_with("my-new-cron-object")
                && row.contains("* * * * */5")
                && row.contains(" 1 "),
            "{table}"
        );
    }
    let c = json_of(&kc0, &["get", "crontab", "my-new-cron-object"]);
    assert_eq!(c["spec"]["replicas"], 1, "{c}");
    assert_eq!(c["metadata"]["generation"], 1, "{c}");
    let raw = kubectl_ok(
        &kc0,
        &[
            "get",
            "--raw",
            "/apis/stable.example.com/v1/namespaces/default/crontabs",
        ],
    );
    assert!(raw.contains("\"kind\":\"CronTabList\""), "{raw}");

    // explain reads the CRD's schema from OpenAPI.
    let ex = kubectl_ok(&kc1, &["explain", "crontab.spec"]);
    assert!(
        ex.contains("cronSpec") && ex.contains("How often the job runs"),
        "{ex}"
    );

    // The schema validates, in kube's words.
    let bad = |spec: &str| {
        let o = kubectl_stdin(&kc0, &["apply", "-f", "-"], &crontab("bad", spec));
        assert!(!o.status.success(), "{spec} was accepted");
        stderr(&o)
    };
    let e = bad("  cronSpec: '* * * * */5'\n  replicas: 11");
    assert!(
        e.contains("spec.replicas: Invalid value: 11: spec.replicas in body should be less than or equal to 10"),
        "{e}"
    );
    let e = bad("  cronSpec: '* * * * */5'\n  replicas: two");
    assert!(
        e.contains(r#"spec.replicas: Invalid value: "string": spec.replicas in body must be of type integer: "string""#),
        "{e}"
    );
    let e = bad("  cronSpec: 'every minute'");
    assert!(
        e.contains(
            "spec.cronSpec: Invalid value: \"every minute\": spec.cronSpec in body should match"
        ),
        "{e}"
    );

    // CEL rules (x-kubernetes-validations), a transition rule (oldSelf) among them.
    let e = bad("  cronSpec: '* * * * */5'\n  image: web:latest");
    assert!(
        e.contains(r#"spec: Invalid value: "object": image must not use the latest tag"#),
        "{e}"
    );
    let o = kubectl(
        &kc0,
        &[
            "patch",
            "ct",
            "my-new-cron-object",
            "--type=merge",
            "-p",
            r#"{"spec":{"cronSpec":"* * * * */6"}}"#,
        ],
    );
    assert!(
        !o.status.success()
            && stderr(&o)
                .contains(r#"spec.cronSpec: Invalid value: "string": cronSpec is immutable"#),
        "{}",
        stderr(&o)
    );

    // A rule whose cost grows with the square of an unbounded list is refused with the CRD,
    // as kube refuses it; with maxItems it is accepted.
    let quadratic = |max_items: &str| {
        format!(
            r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: tags.cost.example.com
spec:
  group: cost.example.com
  scope: Namespaced
  names: {{plural: tags, kind: Tag}}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            properties:
              names:
                type: array{max_items}
                items: {{type: string, maxLength: 63}}
                x-kubernetes-validations:
                - {{rule: "self.all(x, self.exists_one(y, x == y))", message: names must be unique}}
"#
        )
    };
    let o = kubectl_stdin(&kc0, &["apply", "-f", "-"], &quadratic(""));
    assert!(
        !o.status.success()
            && stderr(&o).contains(
                "spec.validation.openAPIV3Schema.properties[spec].properties[names].x-kubernetes-validations[0].rule: \
                 Forbidden: estimated rule cost exceeds budget by factor of more than 100x"
            ),
        "{}",
        stderr(&o)
    );
    let o = kubectl_stdin(
        &kc0,
        &["apply", "-f", "-"],
        &quadratic("\n                maxItems: 20"),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    kubectl_ok(&kc0, &["delete", "crd", "tags.cost.example.com"]);

    // Unknown fields: refused under kubectl's strict validation, warned about and pruned
    // under --validate=warn.
    let extra = crontab("pruned", "  cronSpec: '* * * * */5'\n  color: blue");
    let o = kubectl_stdin(&kc0, &["apply", "-f", "-"], &extra);
    assert!(
        !o.status.success() && stderr(&o).contains(r#"unknown field "spec.color""#),
        "{}",
        stderr(&o)
    );
    let o = kubectl_stdin(&kc0, &["apply", "--validate=warn", "-f", "-"], &extra);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains(r#"unknown field "spec.color""#),
        "{}",
        stderr(&o)
    );
    let p = json_of(&kc0, &["get", "ct", "pruned"]);
    assert!(
        p["spec"].get("color").is_none() && p["spec"]["replicas"] == 1,
        "{p}"
    );

    // Strategic merge patch is not for custom resources (415); merge patch is.
    let o = kubectl(
        &kc0,
        &["patch", "ct", "pruned", "-p", r#"{"spec":{"image":"x"}}"#],
    );
    assert!(
        !o.status.success()
            && stderr(&o).contains("the body of the request was in an unknown format"),
        "{}",
        stderr(&o)
    );
    kubectl_ok(
        &kc0,
        &[
            "patch",
            "ct",
            "pruned",
            "--type",
            "merge",
            "-p",
            r#"{"spec":{"image":"x"}}"#,
        ],
    );
    assert_eq!(
        json_of(&kc0, &["get", "ct", "pruned"])["metadata"]["generation"],
        2
    );

    // scale through the scale subresource; status only through the status subresource,
    // which does not move the generation.
    kubectl_ok(&kc1, &["scale", "ct", "my-new-cron-object", "--replicas=3"]);
    let c = json_of(&kc0, &["get", "ct", "my-new-cron-object"]);
    assert_eq!(
        (
            c["spec"]["replicas"].as_i64(),
            c["metadata"]["generation"].as_i64()
        ),
        (Some(3), Some(2)),
        "{c}"
    );
    kubectl_ok(
        &kc0,
        &[
            "patch",
            "ct",
            "my-new-cron-object",
            "--subresource=status",
            "--type=merge",
            "-p",
            r#"{"status":{"replicas":3,"labelSelector":"app=cron"}}"#,
        ],
    );
    kubectl_ok(
        &kc0,
        &[
            "patch",
            "ct",
            "my-new-cron-object",
            "--type=merge",
            "-p",
            r#"{"status":{"replicas":9}}"#,
        ],
    );
    let c = json_of(&kc0, &["get", "ct", "my-new-cron-object"]);
    assert_eq!(
        c["status"]["replicas"], 3,
        "a write of the object keeps the status: {c}"
    );
    assert_eq!(c["metadata"]["generation"], 2, "{c}");
    let scale: serde_json::Value = serde_json::from_str(&kubectl_ok(
        &kc1,
        &[
            "get",
            "--raw",
            "/apis/stable.example.com/v1/namespaces/default/crontabs/my-new-cron-object/scale",
        ],
    ))
    .unwrap();
    assert_eq!(scale["status"]["selector"], "app=cron", "{scale}");

    // A second CRD asking for a kind the first holds: NamesAccepted False, not served.
    let clash = CRD
        .replace("crontabs.stable.example.com", "tabs.stable.example.com")
        .replace("plural: crontabs", "plural: tabs")
        .replace("singular: crontab", "singular: tab")
        .replace("shortNames: [ct]", "shortNames: [tb]");
    let o = kubectl_stdin(&kc0, &["create", "-f", "-"], &clash);
    assert!(o.status.success(), "{}", stderr(&o));
    let conflict = wait_for(Duration::from_secs(20), "the name conflict", || {
        let kc = kc1.clone();
        async move {
            let c = json_of(&kc, &["get", "crd", "tabs.stable.example.com"]);
            let conds = c["status"]["conditions"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            conds
                .into_iter()
                .find(|c| c["type"] == "NamesAccepted" && c["status"] == "False")
        }
    })
    .await;
    assert_eq!(conflict["reason"], "ListKindConflict", "{conflict}");
    assert_eq!(
        conflict["message"], "\"CronTabList\" is already in use",
        "{conflict}"
    );
    kubectl_ok(&kc0, &["delete", "crd", "tabs.stable.example.com"]);

    // A cluster-scoped kind.
    let gadgets = CRD
        .replace("crontabs.stable.example.com", "gadgets.stable.example.com")
        .replace("scope: Namespaced", "scope: Cluster")
        .replace("plural: crontabs", "plural: gadgets")
        .replace("singular: crontab", "singular: gadget")
        .replace("kind: CronTab", "kind: Gadget")
        .replace("shortNames: [ct]", "shortNames: [gd]");
    let o = kubectl_stdin(&kc1, &["apply", "-f", "-"], &gadgets);
    assert!(o.status.success(), "{}", stderr(&o));
    established(&kc0, "gadgets.stable.example.com").await;
    let g = "apiVersion: stable.example.com/v1\nkind: Gadget\nmetadata:\n  name: g1\nspec:\n  cronSpec: '0 * * * *'\n";
    let o = kubectl_stdin(&kc0, &["apply", "-f", "-"], g);
    assert!(o.status.success(), "{}", stderr(&o));
    let g1 = json_of(&kc1, &["get", "gadget", "g1"]);
    assert!(g1["metadata"].get("namespace").is_none(), "{g1}");

    // Deleting a CRD deletes its objects first; one held by a finalizer holds the CRD,
    // which refuses new objects meanwhile.
    kubectl_ok(
        &kc0,
        &[
            "patch",
            "ct",
            "pruned",
            "--type=merge",
            "-p",
            r#"{"metadata":{"finalizers":["example.com/hold"]}}"#,
        ],
    );
    kubectl_ok(
        &kc0,
        &[
            "delete",
            "crd",
            "crontabs.stable.example.com",
            "--wait=false",
        ],
    );
    let refused = wait_for(
        Duration::from_secs(20),
        "creates refused while terminating",
        || {
            let kc = kc1.clone();
            async move {
                let o = kubectl_stdin(
                    &kc,
                    &["create", "-f", "-"],
                    &crontab("late", "  cronSpec: '* * * * *'"),
                );
                let e = stderr(&o);
                e.contains("create not allowed while custom resource definition is terminating")
                    .then_some(e)
            }
        },
    )
    .await;
    assert!(!refused.is_empty());
    let left = kubectl_ok(&kc0, &["get", "ct", "-o", "name"]);
    assert_eq!(
        left.trim(),
        "crontab.stable.example.com/pruned",
        "only the held one is left"
    );
    let crd = json_of(&kc0, &["get", "crd", "crontabs.stable.example.com"]);
    assert!(
        crd["status"]["conditions"]
            .to_string()
            .contains("InstanceDeletionCheck"),
        "{crd}"
    );
    kubectl_ok(
        &kc0,
        &[
            "patch",
            "ct",
            "pruned",
            "--type=merge",
            "-p",
            r#"{"metadata":{"finalizers":null}}"#,
        ],
    );
    wait_for(Duration::from_secs(30), "the CRD gone", || {
        let kc = kc1.clone();
        async move {
            let o = kubectl(&kc, &["get", "crd", "crontabs.stable.example.com"]);
            (!o.status.success() && stderr(&o).contains("NotFound")).then_some(())
        }
    })
    .await;
    let o = kubectl(&kc1, &["get", "ct"]);
    assert!(
        !o.status.success(),
        "the kind is gone: {}",
        String::from_utf8_lossy(&o.stdout)
    );

    // Defined again, it starts empty.
    std::fs::remove_file(dir.path().join("b-crontab.yaml")).unwrap();
    kubectl_ok(&kc0, &["apply", "-f", d]);
    established(&kc1, "crontabs.stable.example.com").await;
    let none = kubectl(&kc1, &["get", "ct"]);
    assert!(
        none.status.success() && stderr(&none).contains("No resources found"),
        "{}",
        stderr(&none)
    );
    kubectl_ok(
        &kc0,
        &[
            "delete",
            "crd",
            "crontabs.stable.example.com",
            "gadgets.stable.example.com",
        ],
    );
}
