use super::validate::parse_indexes;
use super::*;
use serde_json::json;

fn job(v: serde_json::Value) -> Job {
    serde_json::from_value(v).unwrap()
}

fn pi() -> Job {
    job(json!({
        "metadata": {"name": "pi", "namespace": "default", "uid": "u-1"},
        "spec": {"template": {"spec": {
            "restartPolicy": "Never",
            "containers": [{"name": "pi", "image": "busybox"}]
        }}}
    }))
}

/// Defaulted and prepared as a create does it.
fn created(mut j: Job) -> Job {
    Jobs::default(&mut j);
    Jobs::prepare_create(&mut j);
    j
}

fn messages(errs: &[FieldError]) -> Vec<String> {
    errs.iter()
        .map(|e| format!("{}: {:?} {}", e.field, e.kind, e.detail))
        .collect()
}

#[test]
fn defaults_and_the_generated_selector() {
    let j = created(pi());
    let spec = j.spec.as_ref().unwrap();
    assert_eq!((spec.completions, spec.parallelism), (Some(1), Some(1)));
    assert_eq!(spec.backoff_limit, Some(6));
    assert_eq!(spec.completion_mode.as_deref(), Some("NonIndexed"));
    assert_eq!(spec.suspend, Some(false));
    assert_eq!(
        spec.pod_replacement_policy.as_deref(),
        Some("TerminatingOrFailed")
    );
    let labels = spec
        .template
        .metadata
        .as_ref()
        .unwrap()
        .labels
        .clone()
        .unwrap();
    assert_eq!(labels[CONTROLLER_UID], "u-1");
    assert_eq!(labels[LEGACY_CONTROLLER_UID], "u-1");
    assert_eq!(labels[JOB_NAME], "pi");
    assert_eq!(labels[LEGACY_JOB_NAME], "pi");
    let sel = spec
        .selector
        .as_ref()
        .unwrap()
        .match_labels
        .clone()
        .unwrap();
    assert_eq!(sel.len(), 1);
    assert_eq!(sel[CONTROLLER_UID], "u-1");
    assert!(Jobs::validate(&j).is_empty(), "{:?}", Jobs::validate(&j));

    // Only parallelism given: completions stay unset (a work queue).
    let mut w = pi();
    w.spec.as_mut().unwrap().parallelism = Some(3);
    let w = created(w);
    assert_eq!(w.spec.as_ref().unwrap().completions, None);
    // backoffLimitPerIndex makes the default backoffLimit unbounded.
    let mut p = pi();
    p.spec.as_mut().unwrap().backoff_limit_per_index = Some(1);
    assert_eq!(created(p).spec.unwrap().backoff_limit, Some(i32::MAX));
    // A Job without labels takes the template's.
    let mut l = pi();
    l.spec.as_mut().unwrap().template.metadata = Some(ObjectMetaLabels::app("web"));
    let l = created(l);
    assert_eq!(l.metadata.labels.unwrap()["app"], "web");
}

struct ObjectMetaLabels;
impl ObjectMetaLabels {
    fn app(v: &str) -> k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
        k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
            labels: Some([("app".to_string(), v.to_string())].into()),
            ..Default::default()
        }
    }
}

#[test]
fn bad_specs_are_kubes_errors() {
    let cases: Vec<(serde_json::Value, &str)> = vec![
        (json!({"completions": -1}), "spec.completions: Invalid(\"-1\") must be greater than or equal to 0"),
        (json!({"parallelism": -2}), "spec.parallelism: Invalid(\"-2\") must be greater than or equal to 0"),
        (json!({"backoffLimit": -1}), "spec.backoffLimit: Invalid(\"-1\") must be greater than or equal to 0"),
        (json!({"activeDeadlineSeconds": -5}), "spec.activeDeadlineSeconds: Invalid(\"-5\") must be greater than or equal to 0"),
        (json!({"completionMode": "Sometimes"}), "spec.completionMode: NotSupported"),
        (json!({"completionMode": "Indexed", "completions": null, "parallelism": 2}), "spec.completions: Required when completion mode is Indexed"),
        (json!({"completionMode": "Indexed", "completions": 3, "parallelism": 100001}), "spec.parallelism: Invalid(\"100001\") must be less than or equal to 100000 when completion mode is Indexed"),
        (json!({"backoffLimitPerIndex": 1}), "spec.backoffLimitPerIndex: Invalid(\"1\") requires indexed completion mode"),
        (json!({"completionMode": "Indexed", "completions": 3, "maxFailedIndexes": 1}), "spec.backoffLimitPerIndex: Required when maxFailedIndexes is specified"),
        (json!({"successPolicy": {"rules": [{"succeededCount": 1}]}}), "spec.successPolicy: Invalid"),
        (json!({"completionMode": "Indexed", "completions": 3, "successPolicy": {"rules": [{"succeededCount": 4}]}}), "must be less than or equal to 3 (the number of specified completions)"),
        (json!({"completionMode": "Indexed", "completions": 3, "successPolicy": {"rules": [{}]}}), "at least one of succeededCount or succeededIndexes must be specified"),
        (json!({"podFailurePolicy": {"rules": [{"action": "FailJob", "onExitCodes": {"operator": "In", "values": [0, 2]}}]}}), "must not be 0 for the In operator"),
        (json!({"podFailurePolicy": {"rules": [{"action": "FailJob", "onExitCodes": {"operator": "In", "values": [3, 2]}}]}}), "must be ordered"),
        (json!({"podFailurePolicy": {"rules": [{"action": "Explode", "onPodConditions": [{"type": "DisruptionTarget"}]}]}}), ".action: NotSupported"),
        (json!({"podFailurePolicy": {"rules": [{"action": "Ignore"}]}}), "specifying one of OnExitCodes and OnPodConditions is required"),
        (json!({"podFailurePolicy": {"rules": [{"action": "FailIndex", "onExitCodes": {"operator": "In", "values": [1]}}]}}), "requires the backoffLimitPerIndex to be set"),
        (json!({"podFailurePolicy": {"rules": [{"action": "FailJob", "onExitCodes": {"containerName": "nope", "operator": "In", "values": [1]}}]}}), "must be one of the container or initContainer names in the pod template"),
    ];
    for (patch, want) in cases {
        let mut v = serde_json::to_value(pi()).unwrap();
        for (k, val) in patch.as_object().unwrap() {
            v["spec"][k] = val.clone();
        }
        let j = created(job(v));
        let got = messages(&Jobs::validate(&j));
        assert!(
            got.iter().any(|m| m.contains(want)),
            "{patch}: want {want:?} in {got:?}"
        );
    }

    // restartPolicy: Always (the pod default) is refused with kube's words.
    let mut a = pi();
    a.spec
        .as_mut()
        .unwrap()
        .template
        .spec
        .as_mut()
        .unwrap()
        .restart_policy = None;
    let got = messages(&Jobs::validate(&created(a)));
    assert!(
        got.iter().any(|m| m
            == "spec.template.spec.restartPolicy: Required valid values: \"OnFailure\", \"Never\""),
        "{got:?}"
    );
    // podFailurePolicy needs Never.
    let mut f = serde_json::to_value(pi()).unwrap();
    f["spec"]["template"]["spec"]["restartPolicy"] = "OnFailure".into();
    f["spec"]["podFailurePolicy"] =
        json!({"rules": [{"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]}]});
    let got = messages(&Jobs::validate(&created(job(f))));
    assert!(
        got.iter()
            .any(|m| m.contains("only \"Never\" is supported when podFailurePolicy is specified")),
        "{got:?}"
    );

    // A selector the template does not carry.
    let mut m = serde_json::to_value(pi()).unwrap();
    m["spec"]["manualSelector"] = true.into();
    m["spec"]["selector"] = json!({"matchLabels": {"app": "x"}});
    let got = messages(&Jobs::validate(&created(job(m))));
    assert!(
        got.iter()
            .any(|m| m.contains("`selector` does not match template `labels`")),
        "{got:?}"
    );
    // A generated selector whose labels were set to something else.
    let mut w = serde_json::to_value(pi()).unwrap();
    w["spec"]["template"]["metadata"] = json!({"labels": {"controller-uid": "other"}});
    let got = messages(&Jobs::validate(&created(job(w))));
    assert!(
        got.iter().any(
            |m| m.contains("spec.template.metadata.labels[controller-uid]")
                && m.contains("must be 'u-1'")
        ),
        "{got:?}"
    );
    // Indexed pods are named `<job>-<index>`: that must stay a DNS label.
    let mut n = serde_json::to_value(pi()).unwrap();
    n["metadata"]["name"] = "a".repeat(62).into();
    n["spec"]["completionMode"] = "Indexed".into();
    n["spec"]["completions"] = 10.into();
    let got = messages(&Jobs::validate(&created(job(n))));
    assert!(
        got.iter()
            .any(|m| m.contains("will not able to create pod with invalid DNS label")),
        "{got:?}"
    );
}

#[test]
fn updates_keep_what_kube_keeps() {
    let old = created(pi());
    let mut new = old.clone();
    new.spec.as_mut().unwrap().parallelism = Some(4);
    new.spec.as_mut().unwrap().suspend = Some(true);
    new.spec.as_mut().unwrap().active_deadline_seconds = Some(60);
    assert!(Jobs::validate_update(&new, &old).is_empty());

    let mut c = old.clone();
    c.spec.as_mut().unwrap().completions = Some(2);
    assert!(messages(&Jobs::validate_update(&c, &old))
        .iter()
        .any(|m| m.starts_with("spec.completions") && m.contains("field is immutable")));
    let mut t = old.clone();
    t.spec
        .as_mut()
        .unwrap()
        .template
        .spec
        .as_mut()
        .unwrap()
        .containers[0]
        .image = Some("other".into());
    assert!(messages(&Jobs::validate_update(&t, &old))
        .iter()
        .any(|m| m.starts_with("spec.template") && m.contains("field is immutable")));
    let mut s = old.clone();
    s.spec.as_mut().unwrap().selector = None;
    assert!(messages(&Jobs::validate_update(&s, &old))
        .iter()
        .any(|m| m.starts_with("spec.selector")));

    // A suspended Job that never started may move its pods elsewhere, nothing more.
    let mut suspended = old.clone();
    suspended.spec.as_mut().unwrap().suspend = Some(true);
    let mut moved = suspended.clone();
    moved
        .spec
        .as_mut()
        .unwrap()
        .template
        .spec
        .as_mut()
        .unwrap()
        .node_selector = Some([("disk".to_string(), "ssd".to_string())].into());
    assert!(Jobs::validate_update(&moved, &suspended).is_empty());
    let mut changed = moved.clone();
    changed
        .spec
        .as_mut()
        .unwrap()
        .template
        .spec
        .as_mut()
        .unwrap()
        .containers[0]
        .image = Some("other".into());
    assert!(!Jobs::validate_update(&changed, &suspended).is_empty());

    // Elastic Indexed Jobs: completions change with parallelism.
    let mut ix = serde_json::to_value(pi()).unwrap();
    ix["spec"]["completionMode"] = "Indexed".into();
    ix["spec"]["completions"] = 3.into();
    ix["spec"]["parallelism"] = 3.into();
    let ix = created(job(ix));
    let mut grown = ix.clone();
    grown.spec.as_mut().unwrap().completions = Some(5);
    grown.spec.as_mut().unwrap().parallelism = Some(5);
    assert!(Jobs::validate_update(&grown, &ix).is_empty());
    let mut lone = ix.clone();
    lone.spec.as_mut().unwrap().completions = Some(5);
    assert!(messages(&Jobs::validate_update(&lone, &ix))
        .iter()
        .any(|m| m.contains("can only be modified in tandem with spec.parallelism")));
}

#[test]
fn index_intervals() {
    assert_eq!(parse_indexes(""), Some(vec![]));
    assert_eq!(parse_indexes("1,3-5,7"), Some(vec![(1, 1), (3, 5), (7, 7)]));
    assert_eq!(parse_indexes("3-1"), None);
    assert_eq!(parse_indexes("1,1"), None);
    assert_eq!(parse_indexes("2,1"), None);
    assert_eq!(parse_indexes("-1"), None);
    assert_eq!(parse_indexes("a"), None);
}
