//! What a CustomResourceDefinition's status should say, as apiextensions-apiserver's
//! naming, establishing and finalizer controllers decide it: which of the requested names
//! are accepted (a name another CRD of the group has accepted is refused, one this CRD
//! already holds is kept), `NamesAccepted`, `Established` (False `NotAccepted` until the
//! names are accepted, then `Installing`, then True), and `Terminating` while it is deleted.
//! Pure: the controller (`apiextensions.rs`) reads the CRDs and writes the result.

use std::collections::BTreeSet;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceDefinition, CustomResourceDefinitionCondition, CustomResourceDefinitionStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

/// The finalizer that holds a deleted CRD until its objects are gone.
pub const CLEANUP_FINALIZER: &str = "customresourcecleanup.apiextensions.k8s.io";

pub fn condition<'a>(
    crd: &'a CustomResourceDefinition,
    type_: &str,
) -> Option<&'a CustomResourceDefinitionCondition> {
    crd.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_)
}

pub fn is_true(crd: &CustomResourceDefinition, type_: &str) -> bool {
    condition(crd, type_).is_some_and(|c| c.status == "True")
}

/// Sets a condition, keeping its lastTransitionTime unless its status changes.
pub fn set_condition(
    status: &mut CustomResourceDefinitionStatus,
    type_: &str,
    value: &str,
    reason: &str,
    message: &str,
    now: &Time,
) {
    let conditions = status.conditions.get_or_insert_with(Vec::new);
    let next = |last: Option<Time>| CustomResourceDefinitionCondition {
        type_: type_.to_string(),
        status: value.to_string(),
        reason: Some(reason.to_string()),
        message: Some(message.to_string()),
        last_transition_time: last.or_else(|| Some(now.clone())),
    };
    match conditions.iter_mut().find(|c| c.type_ == type_) {
        Some(c) => {
            let last = (c.status == value)
                .then(|| c.last_transition_time.clone())
                .flatten();
            *c = next(last);
        }
        None => conditions.push(next(None)),
    }
}

/// The names other CRDs of the group have accepted: resources (plural, singular, short
/// names) and kinds (kind, list kind).
fn taken(
    crd: &CustomResourceDefinition,
    all: &[CustomResourceDefinition],
) -> (BTreeSet<String>, BTreeSet<String>) {
    let mut resources = BTreeSet::new();
    let mut kinds = BTreeSet::new();
    for other in all {
        if other.metadata.name == crd.metadata.name || other.spec.group != crd.spec.group {
            continue;
        }
        let Some(n) = other
            .status
            .as_ref()
            .and_then(|s| s.accepted_names.as_ref())
        else {
            continue;
        };
        resources.insert(n.plural.clone());
        resources.extend(n.singular.clone());
        resources.extend(n.short_names.iter().flatten().cloned());
        kinds.insert(n.kind.clone());
        kinds.extend(n.list_kind.clone());
    }
    resources.remove("");
    kinds.remove("");
    (resources, kinds)
}

/// kube's equalToAcceptedOrFresh.
fn fresh(requested: &str, accepted: &str, used: &BTreeSet<String>) -> Result<(), String> {
    if requested == accepted || !used.contains(requested) {
        Ok(())
    } else {
        Err(format!("\"{requested}\" is already in use"))
    }
}

/// The status the naming and establishing controllers give `crd`, among `all` CRDs.
pub fn desired(
    crd: &CustomResourceDefinition,
    all: &[CustomResourceDefinition],
    now: &Time,
) -> CustomResourceDefinitionStatus {
    let (resources, kinds) = taken(crd, all);
    let mut status = crd.status.clone().unwrap_or_default();
    let requested = &crd.spec.names;
    let accepted = status.accepted_names.clone().unwrap_or_default();
    let mut names = accepted.clone();
    let mut conflict: Option<(&str, String)> = None;
    let mut note = |reason: &'static str, e: String| {
        conflict = Some((reason, e));
    };
    match fresh(&requested.plural, &accepted.plural, &resources) {
        Ok(()) => names.plural = requested.plural.clone(),
        Err(e) => note("PluralConflict", e),
    }
    let want_singular = requested.singular.clone().unwrap_or_default();
    match fresh(
        &want_singular,
        accepted.singular.as_deref().unwrap_or(""),
        &resources,
    ) {
        Ok(()) => names.singular = requested.singular.clone(),
        Err(e) => note("SingularConflict", e),
    }
    if requested.short_names != accepted.short_names {
        let held: BTreeSet<&String> = accepted.short_names.iter().flatten().collect();
        let errs: Vec<String> = requested
            .short_names
            .iter()
            .flatten()
            .filter(|s| !held.contains(s))
            .filter_map(|s| fresh(s, "", &resources).err())
            .collect();
        match errs.as_slice() {
            [] => names.short_names = requested.short_names.clone(),
            [one] => note("ShortNamesConflict", one.clone()),
            many => note("ShortNamesConflict", format!("[{}]", many.join(", "))),
        }
    }
    match fresh(&requested.kind, &accepted.kind, &kinds) {
        Ok(()) => names.kind = requested.kind.clone(),
        Err(e) => note("KindConflict", e),
    }
    let want_list = requested.list_kind.clone().unwrap_or_default();
    match fresh(
        &want_list,
        accepted.list_kind.as_deref().unwrap_or(""),
        &kinds,
    ) {
        Ok(()) => names.list_kind = requested.list_kind.clone(),
        Err(e) => note("ListKindConflict", e),
    }
    names.categories = requested.categories.clone();
    let names_ok = conflict.is_none();
    match &conflict {
        None => set_condition(
            &mut status,
            "NamesAccepted",
            "True",
            "NoConflicts",
            "no conflicts found",
            now,
        ),
        Some((reason, message)) => {
            set_condition(&mut status, "NamesAccepted", "False", reason, message, now)
        }
    }
    let established = is_true(crd, "Established");
    if !established {
        if names_ok {
            // kube's naming controller says Installing and its establishing controller
            // then True; one step here, since this server serves the names at once.
            set_condition(
                &mut status,
                "Established",
                "True",
                "InitialNamesAccepted",
                "the initial names have been accepted",
                now,
            );
        } else if condition(crd, "Established").is_none() {
            set_condition(
                &mut status,
                "Established",
                "False",
                "NotAccepted",
                "not all names are accepted",
                now,
            );
        }
    }
    status.accepted_names = Some(names);
    status
}

/// Whether two statuses differ in what the controller writes (conditions compared
/// without their times).
pub fn differs(a: &CustomResourceDefinitionStatus, b: &CustomResourceDefinitionStatus) -> bool {
    let strip = |s: &CustomResourceDefinitionStatus| {
        let mut s = s.clone();
        for c in s.conditions.iter_mut().flatten() {
            c.last_transition_time = None;
        }
        s
    };
    strip(a) != strip(b)
}

#[cfg(test)]
mod tests;
