//! The cost estimate and kube's limits: what a CRD may declare, what an object may make a
//! rule do, and what an admission expression may do.

use serde_json::{json, Value};

use super::*;
use crate::schema::cel::{budget, compile, compile_errors};
use crate::schema::Props;
use crate::webhook::expr::{self as admission, Env};

fn props(v: Value) -> Props {
    serde_json::from_value(v).unwrap()
}

fn cost_of(expr: &str, vars: &[(&str, Value)]) -> u64 {
    let p = crate::schema::cel::parse(expr).unwrap();
    let mut scope = Scope::new();
    for (n, v) in vars {
        scope.push(n, crate::schema::cel::shape::Shape::of_value(v));
    }
    estimate(p.expression(), &mut scope).cost
}

#[test]
fn nested_loops_cost_the_product_of_their_lengths() {
    let list = |n: usize| json!((0..n).map(|i| format!("s{i}")).collect::<Vec<_>>());
    let one = cost_of("self.all(x, x.startsWith('s'))", &[("self", list(100))]);
    let two = cost_of(
        "self.all(x, self.all(y, x == y || true))",
        &[("self", list(100))],
    );
    assert!((100..1_000).contains(&one), "{one}");
    assert!((10_000..1_000_000).contains(&two), "{two}");
    // The comprehension's cost grows with the list at hand, not with a guess.
    let big = cost_of(
        "self.all(x, self.all(y, x == y || true))",
        &[("self", list(2_000))],
    );
    assert!(big > PER_CALL_LIMIT, "{big}");
}

#[test]
fn ranges_are_as_long_as_their_argument() {
    let small = cost_of(
        "lists.range(self.n).all(i, i >= 0)",
        &[("self", json!({"n": 10}))],
    );
    assert!(small < 100, "{small}");
    let huge = cost_of(
        "lists.range(self.n).size() > 0",
        &[("self", json!({"n": 1_000_000_000_000i64}))],
    );
    assert!(huge > PER_CALL_LIMIT, "{huge}");
    // An int this estimate cannot bound makes a range of unbounded length.
    let unknown = cost_of(
        "lists.range(int(self.s)).size() > 0",
        &[("self", json!({"s": "5"}))],
    );
    assert!(unknown > PER_CALL_LIMIT, "{unknown}");
}

#[test]
fn map_copies_its_growing_list_each_step() {
    let list = |n: usize| json!((0..n).collect::<Vec<_>>());
    let small = cost_of("self.map(x, x * 2).size() > 0", &[("self", list(100))]);
    let large = cost_of("self.map(x, x * 2).size() > 0", &[("self", list(10_000))]);
    assert!(small < 20_000, "{small}");
    assert!(large > PER_CALL_LIMIT, "{large}");
}

#[test]
fn message_literals_are_refused_when_compiled() {
    let e = crate::schema::cel::parse("Foo{a: 1} == Foo{a: 1}").unwrap_err();
    assert!(e.contains("message construction is not supported"), "{e}");
    assert!(crate::schema::cel::parse("self.a == 1").is_ok());
}

#[test]
fn kubes_words_for_an_estimate_over_budget() {
    let m = exceeds_message("estimated rule cost", 12_000_000, 10_000_000);
    assert!(
        m.starts_with("estimated rule cost exceeds budget by factor of 1.200000x (try"),
        "{m}"
    );
    assert!(exceeds_message("x", 50, 10).contains("factor of 5.0x"));
    assert!(exceeds_message("x", 5_000, 10).contains("factor of more than 100x"));
}

fn crd_schema(list: Value) -> Props {
    props(json!({
        "type": "object",
        "properties": {"spec": {"type": "object", "properties": {"names": list}}}
    }))
}

#[test]
fn a_crd_rule_quadratic_in_an_unbounded_list_is_forbidden() {
    let rule = json!([{"rule": "self.all(x, self.exists_one(y, x == y))"}]);
    let unbounded = crd_schema(json!({
        "type": "array", "items": {"type": "string"}, "x-kubernetes-validations": rule
    }));
    let errs: Vec<String> = compile_errors(&unbounded, "spec.validation.openAPIV3Schema")
        .iter()
        .map(|e| e.to_string())
        .collect();
    let at = "spec.validation.openAPIV3Schema.properties[spec].properties[names]\
              .x-kubernetes-validations[0].rule";
    assert!(
        errs.iter().any(|e| e.starts_with(&format!(
            "{at}: Forbidden: estimated rule cost exceeds budget by factor of more than 100x"
        ))),
        "{errs:?}"
    );
    assert!(
        errs.iter().any(|e| e.contains(
            "openAPIV3Schema: Forbidden: x-kubernetes-validations estimated rule & \
             messageExpression cost total for entire OpenAPIv3 schema exceeds budget"
        )),
        "{errs:?}"
    );
    // Bounded, the same rule is cheap enough.
    let bounded = crd_schema(json!({
        "type": "array", "maxItems": 20,
        "items": {"type": "string", "maxLength": 64}, "x-kubernetes-validations": rule
    }));
    assert!(compile_errors(&bounded, "s").is_empty());
}

#[test]
fn a_rule_inside_list_items_counts_once_per_item() {
    // A cheap rule on each item of an unbounded list passes, as in kube; a string
    // traversal of an unbounded string on each of them does not.
    let cheap = crd_schema(json!({
        "type": "array",
        "items": {"type": "object", "properties": {"n": {"type": "integer"}},
                  "x-kubernetes-validations": [{"rule": "self.n > 0"}]}
    }));
    assert!(compile_errors(&cheap, "s").is_empty());
    let dear = crd_schema(json!({
        "type": "array",
        "items": {"type": "object", "properties": {"s": {"type": "string"}},
                  "x-kubernetes-validations": [{"rule": "self.s.contains('x')"}]}
    }));
    assert!(!compile_errors(&dear, "s").is_empty());
}

#[test]
fn an_object_too_dear_for_its_rules_is_refused_before_they_run() {
    let s = crd_schema(json!({
        "type": "array", "items": {"type": "string"},
        "x-kubernetes-validations": [{"rule": "self.all(x, self.exists_one(y, x == y))",
                                      "message": "names must be unique"}]
    }));
    let rules = compile(&s, "g", "v1", "K").unwrap();
    let with =
        |n: usize| json!({"spec": {"names": (0..n).map(|i| format!("n{i}")).collect::<Vec<_>>()}});
    assert!(rules.check(&s, &with(50), None).is_empty());
    let errs: Vec<String> = rules
        .check(&s, &with(3_000), None)
        .iter()
        .map(|e| e.to_string())
        .collect();
    assert_eq!(
        errs,
        vec![
            "spec.names: Invalid value: \"array\": 'operation cancelled: actual cost limit \
              exceeded': no further validation rules will be run due to call cost exceeds limit \
              for rule: names must be unique"
                .to_string()
        ]
    );
}

#[test]
fn many_cheap_evaluations_exhaust_the_request_budget() {
    // 2,000 items, each with a rule reading a 5,000-byte string 20 times: each call is
    // under the per-call limit, together they are over the request's budget.
    let s = crd_schema(json!({
        "type": "array",
        "items": {"type": "string", "x-kubernetes-validations": [{"rule":
            "[1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20].all(i, self.contains('zz'))"}]}
    }));
    let parsed = budget::Parsed::of(&s);
    let item = "a".repeat(5_000);
    let obj = json!({"spec": {"names": vec![item; 2_000]}});
    let e = budget::runtime_error(&parsed, &s, &obj, None).expect("over budget");
    assert!(
        e.to_string().ends_with(
            "validation failed due to running out of cost budget, no further validation rules \
             will be run"
        ),
        "{e}"
    );
}

#[test]
fn admission_expressions_are_charged_to_one_budget() {
    let obj = json!({"n": 1_000_000_000_000i64, "list": (0..250).collect::<Vec<_>>()});
    let env = Env::new(Some(&obj), None, &json!({}));
    let huge = admission::compile("lists.range(object.n).size() > 0").unwrap();
    assert_eq!(env.test(&huge), Err(admission::CALL_LIMIT.to_string()));
    // About 500,000 each: the twentieth is past the 10,000,000 budget.
    let dear = admission::compile("object.list.all(x, object.list.all(y, y >= 0))").unwrap();
    let mut results = Vec::new();
    for _ in 0..25 {
        results.push(env.test(&dear));
    }
    assert_eq!(results[0], Ok(true));
    assert_eq!(
        results.last().unwrap(),
        &Err(admission::OUT_OF_BUDGET.to_string())
    );
}
