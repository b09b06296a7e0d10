//! kube's cost limits on a CRD's CEL rules, kept with the estimate of `cost.rs`:
//! - when the CRD is written, each rule's estimate over the schema's bounds, times how
//!   often it can run in one object, is at most STATIC_RULE_LIMIT, and all rules together
//!   at most STATIC_CRD_LIMIT, with kube's Forbidden errors;
//! - before an object's rules run, each rule's estimate over the object itself is at most
//!   PER_CALL_LIMIT and all of them together at most RUNTIME_BUDGET; otherwise no rule
//!   runs and the object is refused with kube's words for an exhausted budget.
//!
//! The walk visits the nodes kube-cel visits: properties, items (old items by index),
//! additionalProperties, and the junctions at the same value. Pure.

use std::collections::HashMap;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    JSONSchemaPropsOrArray, JSONSchemaPropsOrBool, ValidationRule,
};
use kube_cel::cel::Program;
use serde_json::Value;

use super::cost::{
    estimate, exceeds_message, Scope, PER_CALL_LIMIT, RUNTIME_BUDGET, STATIC_CRD_LIMIT,
    STATIC_RULE_LIMIT,
};
use super::shape::{unbounded_items, Shape};
use crate::error::FieldError;
use crate::schema::Props;

/// A schema's rules and message expressions, parsed once.
pub struct Parsed {
    programs: HashMap<String, Program>,
}

impl Parsed {
    pub fn of(s: &Props) -> Parsed {
        let mut programs = HashMap::new();
        visit_rules(s, &mut |r| {
            for text in [Some(r.rule.as_str()), r.message_expression.as_deref()]
                .into_iter()
                .flatten()
            {
                if !programs.contains_key(text) {
                    if let Ok(p) = Program::compile(text) {
                        programs.insert(text.to_string(), p);
                    }
                }
            }
        });
        Parsed { programs }
    }
}

fn visit_rules(s: &Props, f: &mut dyn FnMut(&ValidationRule)) {
    for r in s.x_kubernetes_validations.iter().flatten() {
        f(r);
    }
    for (_, child, _) in children(s) {
        visit_rules(child, f);
    }
}

/// How a child schema is reached: a property, an item, an additional property, a junction.
enum Edge<'a> {
    Property(&'a str),
    Items,
    Additional,
    Junction,
}

fn children(s: &Props) -> Vec<(Edge<'_>, &Props, String)> {
    let mut out = Vec::new();
    for (name, p) in s.properties.iter().flatten() {
        out.push((Edge::Property(name), p, format!(".properties[{name}]")));
    }
    match &s.items {
        Some(JSONSchemaPropsOrArray::Schema(p)) => {
            out.push((Edge::Items, p.as_ref(), ".items".to_string()))
        }
        Some(JSONSchemaPropsOrArray::Schemas(v)) => {
            for (i, p) in v.iter().enumerate() {
                out.push((Edge::Items, p, format!(".items[{i}]")));
            }
        }
        None => {}
    }
    if let Some(JSONSchemaPropsOrBool::Schema(p)) = &s.additional_properties {
        out.push((
            Edge::Additional,
            p.as_ref(),
            ".additionalProperties".to_string(),
        ));
    }
    for (word, list) in [
        ("allOf", &s.all_of),
        ("anyOf", &s.any_of),
        ("oneOf", &s.one_of),
    ] {
        for (i, p) in list.iter().flatten().enumerate() {
            out.push((Edge::Junction, p, format!(".{word}[{i}]")));
        }
    }
    out
}

fn scope_for(self_: Shape, old: Shape) -> Scope {
    Scope::new()
        .with("self", self_)
        .with("oldSelf", old)
        .with("apiVersion", Shape::string(317))
        .with("apiGroup", Shape::string(253))
        .with("kind", Shape::string(63))
}

/// The CRD-time cost errors of a version's schema at `path` (`…openAPIV3Schema`).
pub fn static_errors(s: &Props, path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let mut costs = Vec::new();
    static_walk(s, path, 1, &mut errs, &mut costs);
    let total = costs.iter().fold(0u64, |t, (_, c)| t.saturating_add(*c));
    if total > STATIC_CRD_LIMIT {
        costs.sort_by(|a, b| b.1.cmp(&a.1));
        for (at, _) in costs.iter().take(4) {
            errs.push(FieldError::forbidden(
                at.clone(),
                "contributed to estimated rule & messageExpression cost total exceeding cost \
                 limit for entire OpenAPIv3 schema",
            ));
        }
        errs.push(FieldError::forbidden(
            path,
            exceeds_message(
                "x-kubernetes-validations estimated rule & messageExpression cost total for \
                 entire OpenAPIv3 schema",
                total,
                STATIC_CRD_LIMIT,
            ),
        ));
    }
    errs
}

fn static_walk(
    s: &Props,
    path: &str,
    cardinality: u64,
    errs: &mut Vec<FieldError>,
    costs: &mut Vec<(String, u64)>,
) {
    if s.x_kubernetes_validations
        .as_ref()
        .is_some_and(|r| !r.is_empty())
    {
        let shape = Shape::of_schema(s);
        for (i, r) in s.x_kubernetes_validations.iter().flatten().enumerate() {
            let at = format!("{path}.x-kubernetes-validations[{i}]");
            let exprs = [
                ("rule", "estimated rule cost", Some(r.rule.as_str())),
                (
                    "messageExpression",
                    "estimated messageExpression cost",
                    r.message_expression.as_deref(),
                ),
            ];
            for (field, what, text) in exprs {
                let Some(Ok(p)) = text.map(Program::compile) else {
                    continue;
                };
                let mut scope = scope_for(shape.clone(), shape.clone());
                let cost = estimate(p.expression(), &mut scope)
                    .cost
                    .saturating_mul(cardinality);
                let at = format!("{at}.{field}");
                if cost > STATIC_RULE_LIMIT {
                    errs.push(FieldError::forbidden(
                        at.clone(),
                        exceeds_message(what, cost, STATIC_RULE_LIMIT),
                    ));
                }
                costs.push((at, cost));
            }
        }
    }
    for (edge, child, suffix) in children(s) {
        let times = match edge {
            Edge::Items => s
                .max_items
                .map_or_else(|| unbounded_items(2), |m| m.max(0) as u64),
            Edge::Additional => s
                .max_properties
                .map_or_else(|| unbounded_items(5), |m| m.max(0) as u64),
            Edge::Property(_) | Edge::Junction => 1,
        };
        static_walk(
            child,
            &format!("{path}{suffix}"),
            cardinality.saturating_mul(times),
            errs,
            costs,
        );
    }
}

/// Why an object's rules may not run, or None when they fit kube's limits.
pub fn runtime_error(
    parsed: &Parsed,
    s: &Props,
    obj: &Value,
    old: Option<&Value>,
) -> Option<FieldError> {
    let mut spent = 0u64;
    runtime_walk(parsed, s, obj, old, "", &mut spent)
}

fn runtime_walk(
    parsed: &Parsed,
    s: &Props,
    v: &Value,
    old: Option<&Value>,
    path: &str,
    spent: &mut u64,
) -> Option<FieldError> {
    if s.x_kubernetes_validations
        .as_ref()
        .is_some_and(|r| !r.is_empty())
    {
        let self_shape = Shape::of_value(v);
        let old_shape = old.map_or_else(Shape::scalar, Shape::of_value);
        for r in s.x_kubernetes_validations.iter().flatten() {
            let Some(rule) = parsed.programs.get(&r.rule) else {
                continue;
            };
            let transition = rule.references().has_variable("oldSelf");
            if transition && old.is_none() && r.optional_old_self != Some(true) {
                continue;
            }
            let mut scope = scope_for(self_shape.clone(), old_shape.clone());
            let mut cost = estimate(rule.expression(), &mut scope).cost;
            if let Some(m) = r.message_expression.as_deref() {
                if let Some(p) = parsed.programs.get(m) {
                    cost = cost.saturating_add(estimate(p.expression(), &mut scope).cost);
                }
            }
            let ty = crate::schema::gofmt::quote(s.type_.as_deref().unwrap_or("object"));
            let field = if path.is_empty() { "<nil>" } else { path };
            if cost > PER_CALL_LIMIT {
                let rule_text = r
                    .message
                    .as_deref()
                    .filter(|m| !m.is_empty())
                    .unwrap_or(&r.rule)
                    .trim();
                return Some(FieldError::invalid_raw(
                    field,
                    ty,
                    format!(
                        "'operation cancelled: actual cost limit exceeded': no further \
                         validation rules will be run due to call cost exceeds limit for \
                         rule: {rule_text}"
                    ),
                ));
            }
            *spent = spent.saturating_add(cost);
            if *spent > RUNTIME_BUDGET {
                return Some(FieldError::invalid_raw(
                    field,
                    ty,
                    "validation failed due to running out of cost budget, no further \
                     validation rules will be run",
                ));
            }
        }
    }
    for (edge, child, _) in children(s) {
        let found = match edge {
            Edge::Property(name) => v
                .get(name)
                .map(|c| (c, old.and_then(|o| o.get(name)), join(path, name))),
            Edge::Items => {
                let Some(items) = v.as_array() else { continue };
                for (i, item) in items.iter().enumerate() {
                    let old_item = old.and_then(|o| o.as_array()).and_then(|a| a.get(i));
                    let at = format!("{path}[{i}]");
                    if let Some(e) = runtime_walk(parsed, child, item, old_item, &at, spent) {
                        return Some(e);
                    }
                }
                None
            }
            Edge::Additional => {
                if s.x_kubernetes_preserve_unknown_fields == Some(true) {
                    continue;
                }
                let Some(map) = v.as_object() else { continue };
                let named = s.properties.as_ref();
                for (key, val) in map {
                    if named.is_some_and(|p| p.contains_key(key)) {
                        continue;
                    }
                    let old_val = old.and_then(|o| o.get(key));
                    if let Some(e) =
                        runtime_walk(parsed, child, val, old_val, &join(path, key), spent)
                    {
                        return Some(e);
                    }
                }
                None
            }
            Edge::Junction => Some((v, old, path.to_string())),
        };
        if let Some((value, old_value, at)) = found {
            if let Some(e) = runtime_walk(parsed, child, value, old_value, &at, spent) {
                return Some(e);
            }
        }
    }
    None
}

fn join(path: &str, name: &str) -> String {
    if path.is_empty() {
        name.to_string()
    } else {
        format!("{path}.{name}")
    }
}
