use super::*;
use serde_json::json;

fn crd(plural: &str, kind: &str, short: &[&str]) -> CustomResourceDefinition {
    serde_json::from_value(json!({
        "metadata": {"name": format!("{plural}.example.com")},
        "spec": {"group": "example.com", "scope": "Namespaced",
                 "names": {"plural": plural, "singular": plural.trim_end_matches('s'),
                           "kind": kind, "listKind": format!("{kind}List"),
                           "shortNames": short},
                 "versions": [{"name": "v1", "served": true, "storage": true}]}
    }))
    .unwrap()
}

fn now() -> Time {
    Time(k8s_openapi::jiff::Timestamp::from_second(1_700_000_000).unwrap())
}

fn accepted(
    mut c: CustomResourceDefinition,
    all: &[CustomResourceDefinition],
) -> CustomResourceDefinition {
    c.status = Some(desired(&c, all, &now()));
    c
}

fn cond(c: &CustomResourceDefinitionStatus, t: &str) -> (String, String, String) {
    let c = c
        .conditions
        .iter()
        .flatten()
        .find(|x| x.type_ == t)
        .unwrap();
    (
        c.status.clone(),
        c.reason.clone().unwrap_or_default(),
        c.message.clone().unwrap_or_default(),
    )
}

#[test]
fn fresh_names_are_accepted_and_the_crd_established() {
    let c = crd("widgets", "Widget", &["wd"]);
    let s = desired(&c, &[], &now());
    assert_eq!(
        cond(&s, "NamesAccepted"),
        (
            "True".into(),
            "NoConflicts".into(),
            "no conflicts found".into()
        )
    );
    assert_eq!(
        cond(&s, "Established"),
        (
            "True".into(),
            "InitialNamesAccepted".into(),
            "the initial names have been accepted".into()
        )
    );
    let n = s.accepted_names.unwrap();
    assert_eq!((n.plural.as_str(), n.kind.as_str()), ("widgets", "Widget"));
    assert_eq!(n.short_names, Some(vec!["wd".to_string()]));
}

#[test]
fn names_another_crd_holds_are_refused_in_kubes_words() {
    let first = accepted(crd("widgets", "Widget", &["wd"]), &[]);
    // Another CRD asking for the kind and a short name the first holds.
    let mut second = crd("gadgets", "Widget", &["wd"]);
    second.metadata.name = Some("gadgets.example.com".into());
    let s = desired(&second, &[first.clone()], &now());
    let (status, reason, message) = cond(&s, "NamesAccepted");
    assert_eq!(status, "False");
    // The last conflict found wins, as kube overwrites its condition.
    assert_eq!(reason, "ListKindConflict");
    assert_eq!(message, "\"WidgetList\" is already in use");
    assert_eq!(
        cond(&s, "Established"),
        (
            "False".into(),
            "NotAccepted".into(),
            "not all names are accepted".into()
        )
    );
    let n = s.accepted_names.unwrap();
    assert_eq!(
        n.plural, "gadgets",
        "the names without conflict are accepted"
    );
    assert_eq!(n.kind, "", "the conflicting ones are not");
    assert_eq!(n.short_names, None);

    let only_short = desired(&crd("gizmos", "Gizmo", &["wd", "gz"]), &[first], &now());
    assert_eq!(
        cond(&only_short, "NamesAccepted"),
        (
            "False".into(),
            "ShortNamesConflict".into(),
            "\"wd\" is already in use".into()
        )
    );
}

#[test]
fn names_held_already_are_kept_and_established_stays() {
    let c = accepted(crd("widgets", "Widget", &[]), &[]);
    let again = desired(&c, &[c.clone()], &now());
    assert!(!differs(c.status.as_ref().unwrap(), &again));
    // Another group's CRD with the same names does not conflict.
    let mut other = crd("widgets", "Widget", &[]);
    other.spec.group = "other.io".into();
    other.metadata.name = Some("widgets.other.io".into());
    let s = desired(&other, &[c], &now());
    assert_eq!(cond(&s, "NamesAccepted").0, "True");
}

#[test]
fn transition_times_change_only_with_the_status() {
    let mut s = CustomResourceDefinitionStatus::default();
    let t1 = now();
    let t2 = Time(k8s_openapi::jiff::Timestamp::from_second(1_800_000_000).unwrap());
    set_condition(&mut s, "Terminating", "True", "A", "a", &t1);
    set_condition(&mut s, "Terminating", "True", "B", "b", &t2);
    let c = &s.conditions.as_ref().unwrap()[0];
    assert_eq!(
        (c.reason.as_deref(), c.last_transition_time.as_ref()),
        (Some("B"), Some(&t1))
    );
    set_condition(&mut s, "Terminating", "False", "C", "c", &t2);
    assert_eq!(
        s.conditions.as_ref().unwrap()[0]
            .last_transition_time
            .as_ref(),
        Some(&t2)
    );
}
