//! admissionregistration.k8s.io/v1 ValidatingAdmissionPolicy and
//! ValidatingAdmissionPolicyBinding: kube's defaults and validation. Evaluating them is
//! `crate::webhook::policy`'s.

use k8s_openapi::api::admissionregistration::v1::{
    MatchResources, ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use crate::error::FieldError;
use crate::kinds::Kind;

pub struct ValidatingAdmissionPolicies;
pub struct ValidatingAdmissionPolicyBindings;

const REASONS: [&str; 4] = [
    "Unauthorized",
    "Forbidden",
    "Invalid",
    "RequestEntityTooLarge",
];
const ACTIONS: [&str; 3] = ["Deny", "Warn", "Audit"];

/// kube's defaults of a MatchResources: Equivalent, match-all selectors, any scope.
fn default_match(m: &mut MatchResources) {
    m.match_policy.get_or_insert_with(|| "Equivalent".into());
    m.namespace_selector
        .get_or_insert_with(LabelSelector::default);
    m.object_selector.get_or_insert_with(LabelSelector::default);
    for r in m
        .resource_rules
        .iter_mut()
        .flatten()
        .chain(m.exclude_resource_rules.iter_mut().flatten())
    {
        r.scope.get_or_insert_with(|| "*".into());
    }
}

fn compiles(errs: &mut Vec<FieldError>, field: String, expr: &str) {
    if expr.trim().is_empty() {
        errs.push(FieldError::required(field, "expression is not specified"));
    } else if let Err(e) = kube_cel::cel::Program::compile(expr) {
        errs.push(FieldError::invalid(
            field,
            expr,
            format!("compilation failed: {e}"),
        ));
    }
}

fn rules_present(m: &MatchResources, at: &str, errs: &mut Vec<FieldError>) {
    if m.resource_rules.as_ref().is_none_or(Vec::is_empty) {
        errs.push(FieldError::required(format!("{at}.resourceRules"), ""));
    }
}

impl Kind for ValidatingAdmissionPolicies {
    type Obj = ValidatingAdmissionPolicy;
    const SINGULAR: &'static str = "validatingadmissionpolicy";
    const CATEGORIES: &'static [&'static str] = &["api-extensions"];
    const STATUS: bool = true;
    const GENERATION: bool = true;

    fn default(p: &mut ValidatingAdmissionPolicy) {
        if let Some(s) = p.spec.as_mut() {
            s.failure_policy.get_or_insert_with(|| "Fail".into());
            if let Some(m) = s.match_constraints.as_mut() {
                default_match(m);
            }
        }
    }

    fn validate(p: &ValidatingAdmissionPolicy) -> Vec<FieldError> {
        let mut errs = Vec::new();
        let Some(s) = &p.spec else {
            errs.push(FieldError::required("spec", ""));
            return errs;
        };
        match &s.match_constraints {
            None => errs.push(FieldError::required("spec.matchConstraints", "")),
            Some(m) => rules_present(m, "spec.matchConstraints", &mut errs),
        }
        let validations = s.validations.as_deref().unwrap_or(&[]);
        if validations.is_empty() && s.audit_annotations.as_ref().is_none_or(Vec::is_empty) {
            errs.push(FieldError::required(
                "spec.validations",
                "validations or auditAnnotations must contain at least one item",
            ));
        }
        for (i, v) in validations.iter().enumerate() {
            compiles(
                &mut errs,
                format!("spec.validations[{i}].expression"),
                &v.expression,
            );
            if let Some(m) = v.message_expression.as_deref().filter(|m| !m.is_empty()) {
                compiles(
                    &mut errs,
                    format!("spec.validations[{i}].messageExpression"),
                    m,
                );
            }
            if let Some(r) = v.reason.as_deref() {
                if !REASONS.contains(&r) {
                    errs.push(FieldError::not_supported(
                        format!("spec.validations[{i}].reason"),
                        r,
                        &REASONS,
                    ));
                }
            }
        }
        for (i, c) in s.match_conditions.iter().flatten().enumerate() {
            compiles(
                &mut errs,
                format!("spec.matchConditions[{i}].expression"),
                &c.expression,
            );
        }
        let mut names = std::collections::HashSet::new();
        for (i, v) in s.variables.iter().flatten().enumerate() {
            if v.name.is_empty() {
                errs.push(FieldError::required(
                    format!("spec.variables[{i}].name"),
                    "",
                ));
            } else if !names.insert(v.name.as_str()) {
                errs.push(FieldError::duplicate(
                    format!("spec.variables[{i}].name"),
                    &v.name,
                ));
            }
            compiles(
                &mut errs,
                format!("spec.variables[{i}].expression"),
                &v.expression,
            );
        }
        if let Some(pk) = &s.param_kind {
            if pk.api_version.as_deref().is_none_or(str::is_empty) {
                errs.push(FieldError::required("spec.paramKind.apiVersion", ""));
            }
            if pk.kind.as_deref().is_none_or(str::is_empty) {
                errs.push(FieldError::required("spec.paramKind.kind", ""));
            }
        }
        if let Some(f) = s.failure_policy.as_deref() {
            if !["Fail", "Ignore"].contains(&f) {
                errs.push(FieldError::not_supported(
                    "spec.failurePolicy",
                    f,
                    &["Fail", "Ignore"],
                ));
            }
        }
        errs
    }
}

impl Kind for ValidatingAdmissionPolicyBindings {
    type Obj = ValidatingAdmissionPolicyBinding;
    const SINGULAR: &'static str = "validatingadmissionpolicybinding";
    const CATEGORIES: &'static [&'static str] = &["api-extensions"];

    fn default(b: &mut ValidatingAdmissionPolicyBinding) {
        if let Some(m) = b.spec.as_mut().and_then(|s| s.match_resources.as_mut()) {
            default_match(m);
        }
    }

    fn validate(b: &ValidatingAdmissionPolicyBinding) -> Vec<FieldError> {
        let mut errs = Vec::new();
        let Some(s) = &b.spec else {
            errs.push(FieldError::required("spec", ""));
            return errs;
        };
        if s.policy_name.as_deref().is_none_or(str::is_empty) {
            errs.push(FieldError::required("spec.policyName", ""));
        }
        let actions = s.validation_actions.as_deref().unwrap_or(&[]);
        if actions.is_empty() {
            errs.push(FieldError::required(
                "spec.validationActions",
                "at least one validation action is required",
            ));
        }
        let mut seen = std::collections::HashSet::new();
        for (i, a) in actions.iter().enumerate() {
            let field = format!("spec.validationActions[{i}]");
            if !ACTIONS.contains(&a.as_str()) {
                errs.push(FieldError::not_supported(field, a, &ACTIONS));
            } else if !seen.insert(a.as_str()) {
                errs.push(FieldError::duplicate(field, a));
            }
        }
        if seen.contains("Deny") && seen.contains("Warn") {
            errs.push(FieldError::invalid_raw(
                "spec.validationActions",
                format!("[]string{{{}}}", actions.iter().map(|a| format!("{a:?}")).collect::<Vec<_>>().join(", ")),
                "must not contain both Deny and Warn (repeating the same validation failure information in the API response and headers serves no purpose)",
            ));
        }
        if let Some(p) = &s.param_ref {
            if p.name.is_some() == p.selector.is_some() {
                errs.push(FieldError::forbidden(
                    "spec.paramRef",
                    "one of name or selector must be specified",
                ));
            }
            match p.parameter_not_found_action.as_deref() {
                None | Some("") => errs.push(FieldError::required(
                    "spec.paramRef.parameterNotFoundAction",
                    "",
                )),
                Some("Allow" | "Deny") => {}
                Some(other) => errs.push(FieldError::not_supported(
                    "spec.paramRef.parameterNotFoundAction",
                    other,
                    &["Allow", "Deny"],
                )),
            }
        }
        errs
    }
}
